"""Benchmark: okr-sync against naive full extraction, on a local Jira Cloud + GitHub with latency.

    python benchmarks/sync_bench.py                      # 50,000 issues, 10/100/500 key results, 50 ms
    python benchmarks/sync_bench.py --issues 5000 --sizes 10,100

For each size it builds a config the way teams write them (tests/loadserver/workload.py: Jira
counts, percent done, story-point sums, bug-fix ratios, GitHub search counts and ratios,
milestones, merge-time medians; 40% of key results repeat another's query), then runs, each in
its own process against the same server (tests/loadserver, every request delayed `--latency`):

- okr-sync: the real `sync-okrs` flow into a SQLite file (Prefect started by a warm-up flow run
  first; that start is reported apart);
- the baseline: for every key result, every matching issue fetched with the same libraries
  (`jira` enhanced search over all pages, PyGithub paginated search) and counted client-side,
  one key result after another, as extraction scripts do.

API calls are counted by the server. Memory is the peak RSS (ru_maxrss) of each client process,
Prefect and the libraries included. The lower bound is distinct queries x latency / 4 (the
requests okr-sync allows in flight per service); `vs bound` is okr-sync's wall time over that
bound plus one warm Prefect flow run's fixed cost. Rate limits are off here (they would only add
waiting; the fault suite tests them); values are checked against the dataset.

The last line is machine-readable, for the largest size:
summary calls_per_kr=<x> calls_ratio_vs_baseline=<y> wall_ratio_vs_baseline=<z> wall_vs_lower_bound=<w>
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

from loadserver import LoadServer, generate  # noqa: E402
from loadserver.workload import Workload, workload  # noqa: E402

TOKEN = "bench-token"
EMAIL = "okr-bot@example.com"
IN_FLIGHT = 4                    # requests okr-sync keeps in flight per service (connectors.jira.PARALLEL_QUERIES)
PERIOD = {"{period.start}": "2026-10-01", "{period.end}": "2026-12-31"}


def _fill(text: str) -> str:
    for key, value in PERIOD.items():
        text = text.replace(key, value)
    return text


def _warm(server: LoadServer, work: Workload) -> None:
    """Evaluate every query once on the server, so neither client pays for the server's first look."""
    for kr in work.key_results:
        for key, text in kr.metric.items():
            if not isinstance(text, str):
                continue
            if key.startswith("jql"):
                jql = _fill(text).split(" ORDER BY")[0]
                server.jira_matching(jql)
                server.jira_matching(f"({jql}) AND statusCategory = Done")
            elif key.startswith("search"):
                server.github_matching(text)


def _client(args: list[str], env: dict[str, str]) -> dict:
    done = subprocess.run([sys.executable, str(REPO / "benchmarks" / "_clients.py"), *args], env=env, cwd=REPO,
                          capture_output=True, text=True, timeout=1800)
    if done.returncode != 0:
        raise SystemExit(f"{args[0]} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _wrong(values: dict, expected: dict) -> int:
    return sum(1 for k, want in expected.items()
               if want is not None and (values.get(k) is None or abs(float(values[k]) - want) > 1e-6 * max(1, abs(want))))


def measure(server: LoadServer, size: int, latency: float, work_dir: Path, env: dict[str, str]) -> dict:
    work = workload(size, seed=11, duplication=0.4)
    _warm(server, work)
    expected = work.expected(server.data)
    config = work_dir / f"okrs-{size}.yaml"
    config.write_text(work.config(jira_url=server.jira_cloud_url, github_api=server.github_api), encoding="utf-8")
    spec = work_dir / f"baseline-{size}.json"
    spec.write_text(json.dumps({"jira_url": server.jira_cloud_url, "github_api": server.github_api, "email": EMAIL,
                                "key_results": [{"id": kr.id, "source": kr.source,
                                                 "metric": {k: _fill(v) if isinstance(v, str) else v
                                                            for k, v in kr.metric.items()}}
                                                for kr in work.key_results]}), encoding="utf-8")
    before = server.count()
    okr = _client(["okr-sync", str(config), f"sqlite:///{work_dir / f'okr-{size}.db'}"], env)
    okr_calls = server.count() - before
    before = server.count()
    base = _client(["baseline", str(spec)], env)
    base_calls = server.count() - before
    distinct = work.distinct_queries()
    bound = distinct * latency / IN_FLIGHT
    return {"size": size, "distinct": distinct, "okr_calls": okr_calls, "base_calls": base_calls,
            "okr_wall": okr["seconds"], "base_wall": base["seconds"], "bound": bound,
            "prefect_start": okr["prefect_start"], "prefect_run": okr["prefect_run"],
            "vs_bound": okr["seconds"] / (bound + okr["prefect_run"]),
            "okr_rss": okr["peak_rss_mb"], "base_rss": base["peak_rss_mb"],
            "okr_wrong": _wrong(okr["values"], expected), "base_wrong": _wrong(base["values"], expected),
            "okr_errors": okr["errors"]}


def table(rows: list[dict]) -> str:
    head = ("| key results | distinct queries | API calls okr-sync | API calls baseline | baseline/okr-sync calls "
            "| calls per KR | wall s okr-sync | wall s baseline | baseline/okr-sync wall | lower bound s "
            "| okr-sync vs bound+Prefect | peak RSS MB okr-sync | peak RSS MB baseline | wrong values okr-sync / baseline |")
    lines = [head, "|" + "---|" * head.count("|")[:-1] if False else "|" + "---|" * (head.count("|") - 1)]
    for r in rows:
        lines.append(f"| {r['size']} | {r['distinct']} | {r['okr_calls']} | {r['base_calls']} "
                     f"| {r['base_calls'] / r['okr_calls']:.1f} | {r['okr_calls'] / r['size']:.2f} "
                     f"| {r['okr_wall']:.2f} | {r['base_wall']:.2f} | {r['base_wall'] / r['okr_wall']:.1f} "
                     f"| {r['bound']:.2f} | {r['vs_bound']:.2f} | {r['okr_rss']:.0f} | {r['base_rss']:.0f} "
                     f"| {r['okr_wrong']} / {r['base_wrong']} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--issues", type=int, default=50_000, help="Jira issues in the dataset (GitHub items: a fifth)")
    parser.add_argument("--sizes", default="10,100,500", help="key results per config, comma-separated")
    parser.add_argument("--latency", type=float, default=0.05, help="seconds the server waits before each answer")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]

    started = time.perf_counter()
    data = generate(args.issues, seed=args.seed)
    print(f"dataset: {len(data.jira):,} Jira issues, {len(data.github):,} GitHub items (seed {args.seed}); "
          f"latency {args.latency * 1000:.0f} ms; rate limits off", flush=True)
    env = {**os.environ, "JIRA_API_TOKEN": TOKEN, "JIRA_EMAIL": EMAIL, "GITHUB_TOKEN": TOKEN,
           "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "PREFECT_LOGGING_LEVEL": "ERROR",
           "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120", "PYTHONPATH": str(REPO)}
    rows = []
    with tempfile.TemporaryDirectory(prefix="okr-bench-") as tmp, \
            LoadServer(data, token=TOKEN, email=EMAIL, latency=args.latency, jira_rate=None,
                       github_search_per_minute=None, github_core_per_hour=None, graphql_points_per_hour=None,
                       lifetime=3600) as server:
        env["PREFECT_HOME"] = str(Path(tmp) / "prefect")
        for size in sizes:
            row = measure(server, size, args.latency, Path(tmp), env)
            rows.append(row)
            print(f"size {size}: done ({time.perf_counter() - started:.0f} s so far); Prefect start "
                  f"{row['prefect_start']:.1f} s, a warm flow run {row['prefect_run']:.2f} s; "
                  f"okr-sync errors: {len(row['okr_errors'])}", flush=True)
    print()
    print(table(rows))
    print()
    last = rows[-1]
    print(f"summary calls_per_kr={last['okr_calls'] / last['size']:.3f} "
          f"calls_ratio_vs_baseline={last['base_calls'] / last['okr_calls']:.1f} "
          f"wall_ratio_vs_baseline={last['base_wall'] / last['okr_wall']:.1f} "
          f"wall_vs_lower_bound={last['vs_bound']:.2f}")


if __name__ == "__main__":
    main()
