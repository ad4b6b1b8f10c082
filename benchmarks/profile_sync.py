"""Profile one in-process sync (no Prefect) of the benchmark's workload against the load server.

    python benchmarks/profile_sync.py                 # 500 key results, 50,000 issues, 50 ms
    python benchmarks/profile_sync.py --size 100 --filter sql_store

Runs the sync twice (the second one profiled, a fresh store each time), prints each run's load
and sync seconds and the profile's top functions matching --filter. For finding where okr-sync's
own time goes; not a benchmark (sync_bench.py is).
"""
from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
for extra in (REPO, REPO / "tests", REPO / "benchmarks"):
    sys.path.insert(0, str(extra))

import sync_bench as bench  # noqa: E402
from loadserver import LoadServer, generate  # noqa: E402
from loadserver.workload import workload  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=500)
    parser.add_argument("--issues", type=int, default=50_000)
    parser.add_argument("--latency", type=float, default=0.05)
    parser.add_argument("--filter", default="okrsync|connectors")
    args = parser.parse_args()
    os.environ.update({"JIRA_API_TOKEN": bench.TOKEN, "JIRA_EMAIL": bench.EMAIL, "GITHUB_TOKEN": bench.TOKEN})
    from flows.services import local_services
    from okrsync.config import load_plan
    from okrsync.engine import RunOptions, sync

    with LoadServer(generate(args.issues, seed=7), token=bench.TOKEN, email=bench.EMAIL, latency=args.latency,
                    jira_rate=None, github_search_per_minute=None, github_core_per_hour=None,
                    graphql_points_per_hour=None, lifetime=600) as server, \
            tempfile.TemporaryDirectory(prefix="okr-profile-") as tmp:
        work = workload(args.size, seed=11, duplication=0.4)
        bench._warm(server, work)
        config = Path(tmp) / "okrs.yaml"
        config.write_text(work.config(jira_url=server.jira_cloud_url, github_api=server.github_api), encoding="utf-8")
        profile = cProfile.Profile()
        for attempt in (1, 2):
            started = time.perf_counter()
            plan = load_plan([str(config)], f"sqlite:///{tmp}/okr-{attempt}.db")
            loaded = time.perf_counter()
            if attempt == 2:
                profile.enable()
            result = sync(plan, RunOptions(), local_services())
            profile.disable()
            print(f"run {attempt}: load {loaded - started:.2f} s, sync {time.perf_counter() - loaded:.2f} s, "
                  f"{result['source_calls']} calls, {result['counts']['failed']} failed")
        pstats.Stats(profile).sort_stats("cumulative").print_stats(args.filter, 40)


if __name__ == "__main__":
    main()
