"""Deployments end to end, under the session's Prefect harness (its API server on 127.0.0.1):

- `okr-sync serve CONFIG` (a real subprocess) registers one deployment per config with the
  config's schedules; a run started on demand executes in a served subprocess, writes
  check-ins, resolves the webhook from a Prefect Secret block, and publishes the artifacts.
- `prefect deploy` of the repository's prefect.yaml to a process work pool, and one run picked
  up by a process worker (`prefect worker start --run-once`, in-process).

Every wait is bounded; a process still running at the end is killed.
"""
from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from datetime import date, timedelta
from pathlib import Path
from typing import Callable, TypeVar

import pytest

from conftest import EXAMPLE, REPO
from connectors.sql_store import open_store
from flows.sync import sync_okrs  # at import, so Prefect's logging setup happens before any test
from fast_flows import no_heartbeats  # noqa: F401 - a fixture (the in-process baseline run)
from webhook_receiver import WebhookReceiver

T = TypeVar("T")
TEAM = """\
period: {{start: {start}, end: {end}}}
store: sqlite:///okr.db
schedule: {{cron: "0 7 * * 1-5", timezone: Europe/Berlin}}
notify: {{webhook: {{secret: okr-serve-hook}}}}
sources:
  survey:  {{type: spreadsheet, path: data/survey.csv}}
  signups: {{type: spreadsheet, path: data/signups.csv}}
objectives:
  - id: checkout
    title: Make checkout fast and reliable
    key_results:
      - id: checkout-nps
        title: Raise checkout NPS from 30 to 45
        source: survey
        metric: {{cell: C7}}
        baseline: 30
        target: 45
        schedule: {{cron: "0 * * * *"}}
      - id: support-score
        title: Support scores 4.5
        source: survey
        metric: {{cell: C99}}
        target: 4.5
      - id: self-serve-customers
        title: Win 600 self-serve customers this quarter
        source: signups
        metric: {{column: customers, aggregate: sum, where: {{channel: self-serve}}}}
        target: 600
"""


def until(what: str, probe: Callable[[], T | None], timeout: float, every: float = 0.25) -> T:
    """Poll `probe` until it returns something truthy; fail naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        got = probe()
        if got:
            return got
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(every)


def prefect_env() -> dict[str, str]:
    """The environment of a user's shell pointed at the harness's API server."""
    import prefect.settings

    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env.update(PREFECT_API_URL=prefect.settings.PREFECT_API_URL.value(), PREFECT_SERVER_ANALYTICS_ENABLED="false")
    return env


def final_run(client, run_id, timeout: float):
    def probe():
        run = client.read_flow_run(run_id)
        return run if run.state and run.state.is_final() else None
    return until(f"flow run {run_id} to finish", probe, timeout)


def deployment_named(client, name: str):
    from prefect.exceptions import ObjectNotFound

    def probe():
        try:
            return client.read_deployment_by_name(name)
        except ObjectNotFound:
            return None
    return probe


def set_nps(team: Path, value: int) -> None:
    (team / "data" / "survey.csv").write_text(
        "question,responses,score\nOverall satisfaction,412,4.1\nWould recommend,398,3.9\nCheckout speed,405,3.6\n"
        f"Payment options,377,4.4\nSupport,120,4.0\nNPS,398,{value}\n")


def test_serve_runs_each_config_on_demand_with_its_schedules(no_heartbeats, tmp_path):
    from prefect.blocks.system import Secret
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId
    from prefect.deployments import run_deployment

    team = tmp_path / "team"
    shutil.copytree(EXAMPLE.parent / "data", team / "data")
    today = date.today()      # a period around today, so statuses do not depend on the calendar
    config = team / "payments.yaml"
    config.write_text(TEAM.format(start=today - timedelta(days=10), end=today + timedelta(days=9)), encoding="utf-8")
    store = f"sqlite:///{team / 'okr.db'}"

    with WebhookReceiver(path="/services/T2/B2/served") as hook:
        Secret(value=hook.url).save("okr-serve-hook", overwrite=True)
        baseline = sync_okrs(config_paths=[str(config)])            # NPS 38: on track
        assert baseline["counts"]["written"] == 2
        set_nps(team, 33)                                           # off track from now on

        log = (tmp_path / "serve.log").open("w")
        serve = subprocess.Popen([sys.executable, "-m", "okrsync.cli", "serve", str(config)], cwd=tmp_path,
                                 env={**prefect_env(), "PREFECT_RUNNER_POLL_FREQUENCY": "1"},   # default: 10s
                                 stdout=log, stderr=subprocess.STDOUT)
        try:
            with get_client(sync_client=True) as client:
                deployment = until("the served deployment", deployment_named(client, "sync-okrs/payments-served"), 60)
                schedules = sorted((s.schedule.cron, s.schedule.timezone, s.parameters, s.active)
                                   for s in deployment.schedules)
                assert schedules == [
                    ("0 * * * *", "Europe/Berlin", {"only": ["checkout-nps"]}, True),
                    ("0 7 * * 1-5", "Europe/Berlin", {"only": ["support-score", "self-serve-customers"]}, True)]
                assert deployment.parameters == {"config_paths": [str(config.resolve())]}

                started = run_deployment("sync-okrs/payments-served", timeout=0)   # `prefect deployment run`
                run = final_run(client, started.id, 90)
                assert run.state.is_completed(), (run.state.message, (tmp_path / "serve.log").read_text()[-3000:])
                artifacts = {a.key: a for a in client.read_artifacts(
                    artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[run.id])))}
        finally:
            serve.send_signal(signal.SIGINT)
            try:
                serve.wait(timeout=30)
            except subprocess.TimeoutExpired:
                serve.kill()
                serve.wait()
                pytest.fail("okr-sync serve did not stop on SIGINT within 30s")
            log.close()
        posts = list(hook.posts)

    with open_store(store) as s:
        assert [c.value for c in s.history("checkout-nps")] == [38, 33]
        assert s.history("checkout-nps")[-1].run_id != baseline["run_id"]
    # the webhook came from the Secret block, read inside the served run; one post, failures first, each
    # alert with a link to the served flow run in the UI (the spreadsheet's file:// link is left out)
    flow_run = f"{prefect_env()['PREFECT_API_URL'].removesuffix('/api')}/runs/flow-run/{run.id}"
    assert len(posts) == 1
    assert posts[0]["text"].splitlines()[1:] == [
        ":x: *support-score* (Support scores 4.5): source `survey` failed 2 runs in a row: team/data/survey.csv: "
        f"cell C99 is empty; check `cell:` and `sheet:` · <{flow_run}|flow run>",
        ":red_circle: *checkout-nps* (Raise checkout NPS from 30 to 45): on_track → off_track; now 33 (target 45, "
        f"20% of the way) · <{flow_run}|flow run>"]

    rows = {r["key result"]: r for r in json.loads(artifacts["okr-sync-run-payments"].data)}
    assert set(rows) == {"checkout-nps", "support-score", "self-serve-customers"}
    assert (rows["checkout-nps"]["value"], rows["checkout-nps"]["previous"], rows["checkout-nps"]["change"],
            rows["checkout-nps"]["status"]) == (33, 38, -5, "off_track")
    assert rows["checkout-nps"]["link"].startswith("file://") and "survey.csv" in rows["checkout-nps"]["link"]
    assert rows["self-serve-customers"]["change"] == 0 and rows["self-serve-customers"]["value"] == 304
    assert rows["support-score"]["status"] == "error" and "C99" in rows["support-score"]["error"]
    summary = artifacts["okr-sync-summary-payments"].data
    assert summary.index("### Failed (1)") < summary.index("### Alerts (2)") < summary.index("### Key results")
    assert "| support-score | survey |" in summary and "| checkout-nps | 33 | −5 |" in summary

    with get_client(sync_client=True) as client:    # stopping serve paused its schedules
        assert client.read_deployment_by_name("sync-okrs/payments-served").paused is True


def test_prefect_yaml_deploys_to_a_process_pool_and_a_worker_runs_it(prefect_harness, tmp_path):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId
    from prefect.deployments import run_deployment
    from prefect.workers.process import ProcessWorker

    env = prefect_env()
    with get_client(sync_client=True) as client:        # `prefect work-pool create okr-sync --type process`
        client.create_work_pool(WorkPoolCreate(name="okr-sync", type="process",
                                               base_job_template=ProcessWorker.get_default_base_job_template()))
    deploy = subprocess.run([sys.executable, "-m", "prefect", "--no-prompt", "deploy", "--all"], cwd=REPO, env=env,
                            capture_output=True, text=True, timeout=120)
    assert deploy.returncode == 0, deploy.stdout[-3000:] + deploy.stderr[-3000:]

    with get_client(sync_client=True) as client:
        deployment = client.read_deployment_by_name("sync-okrs/example")
        assert deployment.work_pool_name == "okr-sync" and deployment.entrypoint == "flows/sync.py:sync_okrs"
        assert deployment.pull_steps == [{"prefect.deployments.steps.set_working_directory": {"directory": str(REPO)}}]
        assert sorted((s.schedule.cron, s.schedule.timezone, s.parameters) for s in deployment.schedules) == [
            ("0 * * * *", "Europe/Berlin", {"only": ["checkout-nps"]}),
            ("0 7 * * 1-5", "Europe/Berlin", {"only": ["checkout-p95", "checkout-success", "self-serve-customers",
                                                      "self-serve-revenue", "weekly-signups", "activated-accounts"]})]

    store = f"sqlite:///{tmp_path / 'okr.db'}"
    started = run_deployment("sync-okrs/example", parameters={"store": store}, timeout=0)
    # what `prefect worker start --pool okr-sync --run-once` runs, in this process (saves a start-up):
    # one poll, the run executed as a subprocess in the deployment's directory, waited for
    asyncio.run(ProcessWorker(work_pool_name="okr-sync").start(run_once=True))

    with get_client(sync_client=True) as client:
        run = final_run(client, started.id, 30)
        assert run.state.is_completed(), run.state.message
        runs = client.read_flow_runs(deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[deployment.id])))
        assert [r.id for r in runs] == [started.id]
    with open_store(store) as s:
        states = {st.kr_id: st for st in s.key_results()}
        assert len(states) == 7 and all(st.last is not None and st.last.run_id for st in states.values())
        assert states["checkout-nps"].last.value == 38


# ---------------------------------------------------------------------------- the commands' edges


def cli(*args: str, stdin: str | None = None):
    from typer.testing import CliRunner

    from okrsync.cli import app

    return CliRunner().invoke(app, list(args), input=stdin)


def test_serve_check_lists_deployments_schedules_and_on_demand_key_results(tmp_path):
    shutil.copytree(EXAMPLE.parent / "data", tmp_path / "data")
    config = tmp_path / "growth.yaml"
    config.write_text(EXAMPLE.read_text().replace(
        "        target: 600                    # baseline defaults to 0\n",
        '        target: 600\n        schedule: {cron: "30 6 * * *", timezone: Asia/Tokyo}\n'))
    done = cli("serve", str(config), "--check")
    assert done.exit_code == 0, done.output
    assert "sync-okrs/growth-served" in done.output and "30 6 * * * (Asia/Tokyo)" in done.output
    assert "self-serve-customers" in done.output and "on demand only (no schedule:)" in done.output


def test_serve_refuses_a_bad_config_with_every_mistake_and_no_traceback(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(EXAMPLE.read_text().replace("period: 2026-Q4", 'period: 2026-Q4\nschedule: {cron: "0 7 * *"}\n'
                                               "notify: {webhook: https://hooks.slack.com/services/T/B/x}"))
    done = cli("serve", str(bad))
    assert done.exit_code == 2
    assert f"{bad}:7: cron '0 7 * *' is not a valid schedule" in done.output
    assert f"{bad}:8: `webhook`: plain-text secrets are not allowed in the config" in done.output
    assert "Traceback" not in done.output and "hooks.slack.com" not in done.output


@pytest.mark.parametrize("name, stdin, message", [
    ("Jira_Token", "x", "'Jira_Token' is not a valid block name: use lowercase letters, digits and dashes, e.g. jira-token"),
    ("jira-token", "\n", "no value given: pipe it in, e.g. `printenv MY_TOKEN | okr-sync secret set jira-token`"),
])
def test_secret_set_refuses_bad_names_and_empty_input(name, stdin, message):
    done = cli("secret", "set", name, stdin=stdin)
    assert done.exit_code == 2 and message in done.output


def test_registering_again_replaces_the_schedules_with_the_configs(prefect_harness, tmp_path):
    from prefect.client.orchestration import get_client

    from flows.deployments import plan_deployments, to_deployment

    shutil.copytree(EXAMPLE.parent / "data", tmp_path / "data")
    config = tmp_path / "cadence.yaml"
    hourly_nps = '        target: 45\n        schedule: {cron: "0 * * * *"}\n'
    for text in (EXAMPLE.read_text().replace("period: 2026-Q4", 'period: 2026-Q4\nschedule: {cron: "@daily"}')
                 .replace("        target: 45\n", hourly_nps),
                 EXAMPLE.read_text().replace("period: 2026-Q4", 'period: 2026-Q4\nschedule: {cron: "@daily"}')):
        config.write_text(text, encoding="utf-8")
        (plan,) = plan_deployments([config])
        to_deployment(plan).apply()                     # what `serve` does at every start
    with get_client(sync_client=True) as client:
        deployment = client.read_deployment_by_name("sync-okrs/cadence-served")
    # the hourly schedule of checkout-nps is gone with its `schedule:`, not left running
    assert [(s.schedule.cron, s.parameters) for s in deployment.schedules] == [("@daily", {})]
