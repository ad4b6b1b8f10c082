"""`okr-sync serve` and a process work pool side by side on one real Prefect server
(`prefect server start`, started once per session by the `prefect_server` fixture), as an
operator who tries both paths of the README would run them:

- prefect.yaml (`prefect deploy --all`) gives `sync-okrs/example`; `okr-sync serve` of the same
  config gives `sync-okrs/example-served`: two deployments, each run by its own side (a run of
  the work pool's waits for the worker; serve never picks it up), and stopping serve (SIGTERM)
  pauses only its own;
- serve refuses, in one line each and before registering anything, names taken by a work pool's
  deployment or by one it did not register;
- serve stops, leaving it alone, when `prefect deploy` takes one of its names while it runs;
- serve says in one line (no traceback) when the Prefect API cannot be reached.

Every wait is bounded; a process still running at the end is killed.
"""
from __future__ import annotations

import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import EXAMPLE, REPO
from connectors.sql_store import open_store
from test_deployments import deployment_named, final_run, until

POOL = "okr-sync"                   # prefect.yaml's work pool


@pytest.fixture(scope="module")
def pool(prefect_server):
    """The process work pool of prefect.yaml on the session's server (`prefect work-pool create`)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.workers.process import ProcessWorker

    with prefect_server.client_settings(), get_client(sync_client=True) as client:
        client.create_work_pool(WorkPoolCreate(name=POOL, type="process",
                                               base_job_template=ProcessWorker.get_default_base_job_template()))
    return POOL


def start_serve(server, cwd: Path, *args: str) -> subprocess.Popen:
    log = (cwd / "serve.log").open("w")
    return subprocess.Popen([sys.executable, "-m", "okrsync.cli", "serve", *args], cwd=cwd,
                            env=server.env(PREFECT_RUNNER_POLL_FREQUENCY="1"),     # default: every 10 s
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)


def stopped(process: subprocess.Popen, how: signal.Signals | None, timeout: float = 30) -> int:
    """Send `how` (if any) and wait for the process to end; kill it and fail if it does not."""
    if how is not None:
        process.send_signal(how)
    try:
        return process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        pytest.fail(f"okr-sync serve did not stop within {timeout:.0f}s" + (f" of {how.name}" if how else ""))


def log_of(cwd: Path) -> str:
    return (cwd / "serve.log").read_text(errors="replace")


def team_config(tmp_path: Path, name: str) -> Path:
    shutil.copytree(EXAMPLE.parent / "data", tmp_path / "data", dirs_exist_ok=True)
    config = tmp_path / f"{name}.yaml"
    config.write_text(EXAMPLE.read_text(encoding="utf-8"), encoding="utf-8")
    return config


def test_serve_and_a_work_pool_each_keep_and_run_their_own_deployment(prefect_server, pool, tmp_path):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId
    from prefect.deployments import run_deployment

    env = prefect_server.env()
    deploy = subprocess.run([sys.executable, "-m", "prefect", "--no-prompt", "deploy", "--all"], cwd=REPO, env=env,
                            capture_output=True, text=True, timeout=120)
    assert deploy.returncode == 0, deploy.stdout[-3000:] + deploy.stderr[-3000:]
    served_db, pool_db = tmp_path / "served.db", tmp_path / "pool.db"

    serve = start_serve(prefect_server, tmp_path, str(EXAMPLE), "--store", f"sqlite:///{served_db}")
    try:
        with prefect_server.client_settings(), get_client(sync_client=True) as client:
            served = until("the served deployment", deployment_named(client, "sync-okrs/example-served"), 60)
            pooled = client.read_deployment_by_name("sync-okrs/example")
            # two deployments of one config, each marked as what it is
            assert served.id != pooled.id
            assert (served.work_pool_name, sorted(served.tags)) == (None, ["okr-sync", "okr-sync-serve"])
            assert (pooled.work_pool_name, pooled.tags) == (POOL, ["okr-sync"])
            assert served.parameters["config_paths"] == [str(EXAMPLE)]
            assert not pooled.paused and not served.paused

            pool_run = run_deployment("sync-okrs/example", parameters={"store": f"sqlite:///{pool_db}"}, timeout=0)
            served_run = run_deployment("sync-okrs/example-served", timeout=0)
            done = final_run(client, served_run.id, 90)
            assert done.state.is_completed(), (done.state.message, log_of(tmp_path)[-3000:])
            # serve has polled since the work pool's run was created: it left that run to the worker
            assert client.read_flow_run(pool_run.id).state.is_scheduled()

            # `prefect worker start --pool okr-sync --run-once`: the worker runs it, in the repository
            worker = subprocess.run([sys.executable, "-m", "prefect", "worker", "start", "--pool", POOL, "--run-once"],
                                    cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
            pool_done = final_run(client, pool_run.id, 30)
            assert pool_done.state.is_completed(), (pool_done.state.message, worker.stdout[-2000:], worker.stderr[-2000:])
            logs = {run.id: [log.message for log in client.read_logs(
                log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[run.id])))] for run in (done, pool_done)}
    finally:
        code = stopped(serve, signal.SIGTERM)
    assert code == 0, log_of(tmp_path)[-3000:]

    with prefect_server.client_settings(), get_client(sync_client=True) as client:
        assert client.read_deployment_by_name("sync-okrs/example-served").paused is True     # its own: paused
        pooled_after = client.read_deployment_by_name("sync-okrs/example")
    assert pooled_after.paused is False and pooled_after.work_pool_name == POOL          # the pool's: untouched
    assert pooled_after.updated == pooled.updated

    # each run wrote its own store, and each store knows the flow run that wrote it
    for db, run in ((served_db, done), (pool_db, pool_done)):
        with open_store(f"sqlite:///{db}") as s:
            (row,) = s.runs()
            assert row["flow_run_id"] == str(run.id) and row["written"] == 7
            assert row["flow_run_url"] == f"{prefect_server.api_url[:-len('/api')]}/runs/flow-run/{run.id}"
    # okr-sync's own lines reach each run's log in Prefect: one per source, one for the run
    for run_id, messages in logs.items():
        assert any(m.startswith("source survey: 1 key results, 0 failed, 1 calls") for m in messages), messages
        assert any(m.startswith("run ") and "7 key results, 7 synced, 0 failed, 7 written" in m for m in messages), messages


def test_serve_refuses_names_it_did_not_register_in_one_line_each(prefect_server, pool, tmp_path):
    from prefect.client.orchestration import get_client

    from flows.sync import sync_okrs

    a, b = team_config(tmp_path, "team-a"), team_config(tmp_path, "team-b")
    with prefect_server.client_settings(), get_client(sync_client=True) as client:
        flow_id = client.create_flow_from_name("sync-okrs")
        # a work pool's deployment that happens to have serve's name for team-a.yaml
        client.create_deployment(flow_id=flow_id, name="team-a-served", work_pool_name=POOL,
                                 entrypoint="flows/sync.py:sync_okrs", tags=["okr-sync"],
                                 parameters={"config_paths": [str(a)]})
        # one served by hand (`sync_okrs.serve(...)` registers this way): no work pool, no serve tag
        sync_okrs.to_deployment("team-b-served", parameters={"config_paths": [str(b)]}).apply()
        before = {n: client.read_deployment_by_name(f"sync-okrs/{n}") for n in ("team-a-served", "team-b-served")}

    serve = start_serve(prefect_server, tmp_path, str(a), str(b))
    code = stopped(serve, None, timeout=60)
    output = log_of(tmp_path)
    assert code == 2, output[-3000:]
    assert ("error: deployment sync-okrs/team-a-served belongs to work pool `okr-sync` (registered by `prefect deploy`): "
            "okr-sync serve will not take it over; rename the config file, or delete that deployment first "
            "(`prefect deployment delete sync-okrs/team-a-served`)") in output
    assert ("error: deployment sync-okrs/team-b-served lacks the tag `okr-sync-serve` that okr-sync serve gives its "
            "deployments (something else registered it): okr-sync serve will not take it over") in output
    assert "Traceback" not in output and "Serving" not in output
    with prefect_server.client_settings(), get_client(sync_client=True) as client:
        for name, was in before.items():
            now = client.read_deployment_by_name(f"sync-okrs/{name}")
            assert (now.updated, now.paused, now.work_pool_name, now.tags) == (was.updated, False, was.work_pool_name, was.tags)


def test_serve_stops_when_prefect_deploy_takes_one_of_its_deployments(prefect_server, pool, tmp_path):
    from prefect.client.orchestration import get_client

    config = team_config(tmp_path, "team-c")
    serve = start_serve(prefect_server, tmp_path, str(config))
    try:
        with prefect_server.client_settings(), get_client(sync_client=True) as client:
            served = until("the served deployment", deployment_named(client, "sync-okrs/team-c-served"), 60)
            # what `prefect deploy` of a prefect.yaml entry named team-c-served does: the server upserts
            # the deployment by flow and name, so the same deployment now belongs to the work pool
            client.create_deployment(flow_id=served.flow_id, name="team-c-served", work_pool_name=POOL,
                                     entrypoint="flows/sync.py:sync_okrs", tags=["okr-sync"],
                                     parameters={"config_paths": [str(config)]})
        code = stopped(serve, None, timeout=30)
    finally:
        if serve.poll() is None:
            stopped(serve, signal.SIGTERM)
    output = log_of(tmp_path)
    assert code == 2, output[-3000:]
    assert ("error: deployment sync-okrs/team-c-served now belongs to work pool `okr-sync` (registered by `prefect "
            "deploy`): okr-sync serve stopped rather than run it") in output
    assert "Traceback" not in output
    with prefect_server.client_settings(), get_client(sync_client=True) as client:
        taken = client.read_deployment_by_name("sync-okrs/team-c-served")
    assert taken.id == served.id and taken.work_pool_name == POOL and taken.paused is False


def test_serve_says_in_one_line_when_the_prefect_api_cannot_be_reached(tmp_path):
    from prefect_server import PrefectServer, free_port

    env = PrefectServer(tmp_path / "prefect").env()
    env["PREFECT_API_URL"] = f"http://127.0.0.1:{free_port()}/api"            # nothing listens there
    done = subprocess.run([sys.executable, "-m", "okrsync.cli", "serve", str(EXAMPLE)], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 1
    assert done.stderr.strip().splitlines()[-1].startswith(
        "error: could not register the deployments with the Prefect API (ConnectError: ")
    assert "check that the Prefect server is up and PREFECT_API_URL points at it" in done.stderr
    assert "Traceback" not in done.stderr + done.stdout
