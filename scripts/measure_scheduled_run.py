"""What one scheduled run of a config costs: wall time, and Prefect's share of it.

    python scripts/measure_scheduled_run.py [config/example.yaml] [runs]

Starts a throwaway local Prefect server (the test harness: the same API as `prefect server
start`, on SQLite) and a runner serving the config's deployment as `okr-sync serve` does, with
a temporary SQLite store. Then:

1. `runs` runs, one at a time, each due now; per run it prints the start-up (the flow-run
   process: Python, importing Prefect and okr-sync, loading the flow, until Running), the
   run (Running to Completed), the flow body's own time (sources, progress, store write,
   alerts; from the run's summary artifact), Prefect's share inside the run (task runs,
   states, artifacts), and the wall time the runner spent on the run, process exit included.
2. One run scheduled a few seconds ahead, served by the runner's polling loop: how late it
   starts (the runner prefetches scheduled runs, so start-up happens before the due time).
"""
from __future__ import annotations

import asyncio
import os
import re
import statistics
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")


def main(config: str = "config/example.yaml", runs: int = 5) -> None:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId, ArtifactFilterKey
    from prefect.deployments import run_deployment
    from prefect.runner import Runner
    from prefect.testing.utilities import prefect_test_harness

    from flows.artifacts import SUMMARY_KEY, config_key
    from flows.deployments import plan_deployments, to_deployment

    store = f"sqlite:///{Path(tempfile.mkdtemp()) / 'okr.db'}"
    with prefect_test_harness(server_startup_timeout=120):
        (plan,) = plan_deployments([config])
        runner = Runner(name="measure", pause_on_shutdown=False)
        asyncio.run(runner.aadd_deployment(to_deployment(plan, store=store)))

        def breakdown(run_id) -> tuple[float, float, float]:
            with get_client(sync_client=True) as client:
                run = client.read_flow_run(run_id)
                states = {s.type.value: s.timestamp for s in client.read_flow_run_states(run_id)}
                (artifact,) = client.read_artifacts(artifact_filter=ArtifactFilter(
                    flow_run_id=ArtifactFilterFlowRunId(any_=[run_id]),
                    key=ArtifactFilterKey(any_=[f"{SUMMARY_KEY}-{config_key(plan.config_path)}"])))
            assert run.state.is_completed(), run.state
            body = float(re.search(r"· ([0-9.]+) s\n", artifact.data).group(1))
            return ((states["RUNNING"] - states["PENDING"]).total_seconds(),
                    (run.end_time - run.start_time).total_seconds(), body)

        rows = []
        for _ in range(runs):
            run_id = run_deployment(plan.full_name, timeout=0).id
            started = time.perf_counter()
            asyncio.run(runner.start(run_once=True))      # submit, wait for the process to exit
            wall = time.perf_counter() - started
            startup, duration, body = breakdown(run_id)
            rows.append((startup, duration, body, duration - body, wall))
        print("start-up    run   body  prefect-in-run   wall  (seconds, one run due now)")
        for row in rows + [tuple(statistics.median(c) for c in zip(*rows))]:
            print("{:8.2f} {:6.2f} {:6.2f} {:12.2f} {:8.2f}".format(*row))

        due = datetime.now(timezone.utc) + timedelta(seconds=5)
        run_id = run_deployment(plan.full_name, scheduled_time=due, timeout=0).id

        async def serve_until_done() -> None:
            async with runner:
                while True:
                    await runner._get_and_submit_flow_runs()
                    async with get_client() as client:
                        state = (await client.read_flow_run(run_id)).state
                    if state and state.is_final():
                        return
                    await asyncio.sleep(0.5)
        asyncio.run(serve_until_done())
        with get_client(sync_client=True) as client:
            run = client.read_flow_run(run_id)
        print(f"scheduled run: started {(run.start_time - run.expected_start_time).total_seconds():+.2f}s "
              f"from its due time, ran {(run.end_time - run.start_time).total_seconds():.2f}s")


if __name__ == "__main__":
    main(*(sys.argv[1:2] or ["config/example.yaml"]), *[int(a) for a in sys.argv[2:3]])
