"""Benchmark: how long a *scheduled* sync takes end to end on a real Prefect server, for both ways
of running okr-sync's deployments side by side, with Prefect's default polling settings:

- `okr-sync serve CONFIG` (deployment `sync-okrs/<config>-served`, the config's `schedule:`);
- `prefect deploy` to a process work pool and `prefect worker start` (a prefect.yaml entry).

    python benchmarks/scheduled_run_bench.py               # 3 scheduled runs each (about 4 minutes)
    python benchmarks/scheduled_run_bench.py --runs 5

It starts `prefect server start` (a scratch PREFECT_HOME, analytics off; tests/prefect_server.py),
gives both deployments the schedule `* * * * *` on a copy of the example config, and waits for the
runs Prefect's scheduler creates. For each completed run it prints the time from its scheduled
moment to the flow run starting (pick-up: the runner's or worker's polling, and starting the flow
run's process) and from start to end (the run itself: loading the config, measuring, writing,
artifacts), and the sum: what an operator waits from the cron moment to the check-ins.

Last line, machine-readable:
summary serve_pickup_s=<median> serve_run_s=<median> serve_total_s=<median> pool_pickup_s=... pool_run_s=... pool_total_s=...
"""
from __future__ import annotations

import argparse
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
EXAMPLE = REPO / "config" / "example.yaml"
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))

from prefect_server import PrefectServer  # noqa: E402  (tests/prefect_server.py: `prefect server start`)

POOL = "okr-sync-bench"
PREFECT_YAML = """\
name: okr-sync-bench
prefect-version: 3.9.1
build: null
push: null
pull: null
deployments:
  - name: bench
    entrypoint: flows/sync.py:sync_okrs
    tags: [okr-sync]
    parameters: {{config_paths: [{config}], store: "sqlite:///{store}"}}
    schedules:
      - cron: "* * * * *"
    work_pool: {{name: {pool}, work_queue_name: default}}
"""


def _completed(server: PrefectServer, name: str, wanted: int, timeout: float) -> list:
    """The first `wanted` completed runs of deployment `name`, waiting up to `timeout` seconds."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterName, FlowRunFilter, \
        FlowRunFilterState, FlowRunFilterStateType
    from prefect.client.schemas.objects import StateType

    deadline = time.monotonic() + timeout
    with server.client_settings(), get_client(sync_client=True) as client:
        while True:
            runs = client.read_flow_runs(
                deployment_filter=DeploymentFilter(name=DeploymentFilterName(any_=[name])),
                flow_run_filter=FlowRunFilter(state=FlowRunFilterState(type=FlowRunFilterStateType(
                    any_=[StateType.COMPLETED, StateType.FAILED, StateType.CRASHED]))))
            if len(runs) >= wanted or time.monotonic() > deadline:
                return sorted(runs, key=lambda r: r.expected_start_time)[:wanted]
            time.sleep(2)


def _figures(runs: list) -> list[tuple[float, float, float]]:
    out = []
    for r in runs:
        if r.state_type.value != "COMPLETED" or r.start_time is None or r.end_time is None:
            raise SystemExit(f"run {r.name} ended {r.state_type.value}: {r.state.message if r.state else ''}")
        pickup = (r.start_time - r.expected_start_time).total_seconds()
        run = (r.end_time - r.start_time).total_seconds()
        out.append((pickup, run, pickup + run))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="scheduled runs to wait for on each side")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="okr-sched-bench-") as scratch:
        work = Path(scratch)
        shutil.copytree(EXAMPLE.parent / "data", work / "data")
        config = work / "bench.yaml"
        config.write_text(EXAMPLE.read_text().replace("period: 2026-Q4", 'period: 2026-Q4\nschedule: {cron: "* * * * *"}'))
        (work / "prefect.yaml").write_text(PREFECT_YAML.format(config=config, store=work / "pool.db", pool=POOL))
        started = time.perf_counter()
        with PrefectServer(work / "prefect") as server:
            print(f"prefect server start: healthy after {time.perf_counter() - started:.1f} s ({server.api_url})")
            env = server.env()
            subprocess.run([sys.executable, "-m", "prefect", "work-pool", "create", POOL, "--type", "process"],
                           env=env, check=True, capture_output=True, timeout=120)
            subprocess.run([sys.executable, "-m", "prefect", "--no-prompt", "deploy", "--all",
                            "--prefect-file", str(work / "prefect.yaml")], cwd=REPO, env=env, check=True,
                           capture_output=True, timeout=120)
            logs = [(work / "serve.log").open("w"), (work / "worker.log").open("w")]
            procs = [subprocess.Popen([sys.executable, "-m", "okrsync.cli", "serve", str(config), "--store",
                                       f"sqlite:///{work / 'served.db'}"], cwd=work, env=env,
                                      stdout=logs[0], stderr=subprocess.STDOUT, start_new_session=True),
                     subprocess.Popen([sys.executable, "-m", "prefect", "worker", "start", "--pool", POOL], cwd=work,
                                      env=env, stdout=logs[1], stderr=subprocess.STDOUT, start_new_session=True)]
            try:
                timeout = 90 + 70 * args.runs
                served = _figures(_completed(server, "bench-served", args.runs, timeout))
                pooled = _figures(_completed(server, "bench", args.runs, timeout))
            finally:
                for p in procs:
                    os.killpg(p.pid, signal.SIGTERM)
                for p in procs:
                    try:
                        p.wait(timeout=30)
                    except subprocess.TimeoutExpired:
                        os.killpg(p.pid, signal.SIGKILL)
                for log in logs:
                    log.close()

    summary = {}
    for side, figures in (("serve", served), ("pool", pooled)):
        print(f"{side}: scheduled → started (pick-up) / started → done (the run) / total, seconds")
        for pickup, run, total in figures:
            print(f"  {pickup:6.2f} / {run:6.2f} / {total:6.2f}")
        for i, what in enumerate(("pickup", "run", "total")):
            summary[f"{side}_{what}_s"] = statistics.median(f[i] for f in figures)
    print("summary " + " ".join(f"{k}={v:.2f}" for k, v in summary.items()))


if __name__ == "__main__":
    main()
