"""End to end: the real sync flow under Prefect's test harness, on the example config, into SQLite."""
from __future__ import annotations

import json
import shutil
from datetime import datetime, timezone

import pytest

from conftest import EXAMPLE
from connectors.sql_store import open_store
from flows.sync import sync_okrs

AS_OF = datetime(2026, 11, 20, 12, tzinfo=timezone.utc)
EXPECTED_VALUES = {
    "checkout-nps": 38, "checkout-p95": 590, "checkout-success": 97.12,
    "self-serve-customers": 304, "self-serve-revenue": 24320, "weekly-signups": 55,
    "activated-accounts": 234,                           # the rows dated on or before Nov 20
}


@pytest.fixture(autouse=True)
def now(monkeypatch):
    """Runs happen at AS_OF (okrsync.engine.now, the engine's clock hook), whenever the suite runs."""
    from okrsync import engine

    monkeypatch.setattr(engine, "now", lambda: AS_OF)


@pytest.fixture
def store_url(tmp_path):
    return f"sqlite:///{tmp_path / 'okr.db'}"


def test_example_syncs_and_second_run_adds_no_duplicates(prefect_harness, store_url):
    first = sync_okrs(config_paths=[str(EXAMPLE)], store=store_url)
    assert first["counts"]["failed"] == 0, [r["error"] for r in first["key_results"]]
    got = {r["id"]: r["value"] for r in first["key_results"]}
    assert got == pytest.approx(EXPECTED_VALUES)
    assert first["counts"]["written"] == len(EXPECTED_VALUES)

    store = open_store(store_url)
    try:
        states = {s.kr_id: s for s in store.key_results()}
        assert set(states) == set(EXPECTED_VALUES)
        nps = states["checkout-nps"].last
        assert nps.value == 38 and nps.kind == "automatic" and nps.run_id == first["run_id"]
        assert nps.progress == pytest.approx(8 / 15) and nps.status in ("on_track", "at_risk", "off_track")
        assert nps.link.startswith("file://") and "survey.csv" in nps.link
        p95 = states["checkout-p95"].last
        assert p95.progress == pytest.approx((590 - 900) / (500 - 900))   # lower is better
    finally:
        store.close()

    second = sync_okrs(config_paths=[str(EXAMPLE)], store=store_url)
    assert second["counts"]["written"] == 0
    assert second["counts"]["unchanged"] == len(EXPECTED_VALUES)
    store = open_store(store_url)
    try:
        assert all(len(store.history(kr)) == 1 for kr in EXPECTED_VALUES)
    finally:
        store.close()


def test_dry_run_writes_nothing(prefect_harness, tmp_path, store_url):
    result = sync_okrs(config_paths=[str(EXAMPLE)], store=store_url, dry_run=True)
    assert result["counts"]["synced"] == len(EXPECTED_VALUES)
    assert {r["outcome"] for r in result["key_results"]} == {"dry_run"}
    assert not (tmp_path / "okr.db").exists()


def test_one_failing_key_result_does_not_stop_the_others(prefect_harness, tmp_path, store_url):
    data = tmp_path / "data"
    shutil.copytree(EXAMPLE.parent / "data", data)
    config = tmp_path / "broken.yaml"
    config.write_text(EXAMPLE.read_text().replace("metric: {cell: C7}", "metric: {cell: Z99}"))
    result = sync_okrs(config_paths=[str(config)], store=store_url)
    by_id = {r["id"]: r for r in result["key_results"]}
    assert result["counts"]["failed"] == 1
    assert "Z99" in by_id["checkout-nps"]["error"]
    assert all(r["error"] is None and r["outcome"] == "written" for k, r in by_id.items() if k != "checkout-nps")


def test_run_publishes_table_artifact(prefect_harness, store_url):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    result = sync_okrs(config_paths=[str(EXAMPLE)], store=store_url)
    with get_client(sync_client=True) as client:
        artifacts = client.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=["okr-sync-run-example"])))
    assert artifacts, "no okr-sync-run-example artifact"
    newest = max(artifacts, key=lambda a: a.created)
    assert result["run_id"] in newest.description
    assert "checkout-nps" in str(newest.data)


def test_okr_sync_log_lines_reach_the_flow_run_log_and_tasks_name_their_source(prefect_harness, store_url):
    import logging
    import time

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId, LogFilter, LogFilterFlowRunId

    extra = logging.getLogger("prefect.extra")
    level = extra.level
    extra.setLevel(logging.INFO)                     # as under `serve` or a worker (the tests run at WARNING)
    try:
        state = sync_okrs(config_paths=[str(EXAMPLE)], store=store_url, return_state=True)
    finally:
        extra.setLevel(level)
    result = state.result()
    with get_client(sync_client=True) as client:
        flow_run_id = state.state_details.flow_run_id
        for _ in range(100):                         # the log worker ships records in the background
            logs = client.read_logs(log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run_id])))
            if any("run " in log.message for log in logs):
                break
            time.sleep(0.1)
        tasks = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])))
    messages = [log.message for log in logs]
    assert any(m.startswith("source survey: 1 key results, 0 failed, 1 calls") for m in messages), messages
    assert any(m.startswith(f"run {result['run_id']}: 7 key results, 7 synced, 0 failed") for m in messages), messages
    names = {t.name.rsplit("-", 1)[0] for t in tasks}
    assert {"measure survey", "measure signups", "measure metrics", "measure activations", "write-checkins"} <= names, names


def test_each_config_of_a_run_gets_its_own_artifacts(prefect_harness, tmp_path, store_url):
    """Two config files in one flow run: `okr-sync-run-<config>` and `okr-sync-summary-<config>` for each,
    holding that file's key results only, so the UI's latest artifact of a config is its own."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    shutil.copytree(EXAMPLE.parent / "data", tmp_path / "data")
    text = EXAMPLE.read_text(encoding="utf-8")
    header, objectives = text.split("objectives:\n")
    checkout, growth = objectives.split("  - id: growth\n")
    (tmp_path / "payments.yaml").write_text(f"{header}objectives:\n{checkout}", encoding="utf-8")
    (tmp_path / "Growth Team.yaml").write_text(f"{header}objectives:\n  - id: growth\n{growth}", encoding="utf-8")

    state = sync_okrs(config_paths=[str(tmp_path / "payments.yaml"), str(tmp_path / "Growth Team.yaml")],
                      store=store_url, as_of=AS_OF, return_state=True)
    result = state.result()
    assert result["counts"]["written"] == 7
    with get_client(sync_client=True) as client:
        artifacts = {a.key: a for a in client.read_artifacts(artifact_filter=ArtifactFilter(
            flow_run_id=ArtifactFilterFlowRunId(any_=[state.state_details.flow_run_id])))}
    assert set(artifacts) == {"okr-sync-run-payments", "okr-sync-summary-payments",
                              "okr-sync-run-growth-team", "okr-sync-summary-growth-team"}
    assert [r["key result"] for r in json.loads(artifacts["okr-sync-run-payments"].data)] == [
        "checkout-nps", "checkout-p95", "checkout-success"]
    assert [r["key result"] for r in json.loads(artifacts["okr-sync-run-growth-team"].data)] == [
        "self-serve-customers", "self-serve-revenue", "weekly-signups", "activated-accounts"]
    summary = artifacts["okr-sync-summary-growth-team"].data
    assert summary.startswith(f"## okr-sync run {result['run_id']} of growth-team · as of 2026-11-20 12:00 UTC")
    assert "**4 key results** · 4 synced · 0 failed · 4 check-ins written" in summary
    assert "checkout-nps" not in summary
    assert artifacts["okr-sync-run-payments"].description == (
        f"okr-sync run {result['run_id']} of payments: 3 synced, 0 failed, 3 check-ins written")


def test_the_flow_run_is_kept_with_the_run_and_shown_by_history(prefect_harness, cli, tmp_path, monkeypatch):
    """`okr-sync run --prefect`: --json says which flow run it was (id and its page in the UI), the store
    keeps both with the run, and `history` shows each check-in's flow run (the table and --json)."""
    import prefect.settings
    from rich.console import Console

    import okrsync.cli

    shutil.copytree(EXAMPLE.parent, tmp_path / "config")
    config = str(tmp_path / "config" / "example.yaml")
    local = json.loads(cli("run", config, "--no-prefect", "--as-of", "2026-11-20T06:00:00", "--json").stdout)
    survey = tmp_path / "config" / "data" / "survey.csv"
    survey.write_text(survey.read_text().replace("NPS,398,38", "NPS,398,40"))       # a new value: a new check-in
    done = cli("run", config, "--prefect", "--as-of", AS_OF.isoformat(), "--json")
    flow = json.loads(done.stdout)
    ui = prefect.settings.PREFECT_UI_URL.value()
    assert local["flow_run"] is None and ui
    assert flow["flow_run"] == {"id": flow["flow_run"]["id"], "url": f"{ui}/runs/flow-run/{flow['flow_run']['id']}"}

    with open_store(f"sqlite:///{tmp_path / 'okr.db'}") as s:
        runs = {r["run_id"]: r for r in s.runs()}
    assert (runs[flow["run_id"]]["flow_run_id"], runs[flow["run_id"]]["flow_run_url"]) == (
        flow["flow_run"]["id"], flow["flow_run"]["url"])
    assert runs[local["run_id"]]["flow_run_id"] is None

    history = json.loads(cli("history", "checkout-nps", "--json").stdout)
    assert [(c["run_id"], c["flow_run"]) for c in history] == [(local["run_id"], None),
                                                               (flow["run_id"], flow["flow_run"])]
    monkeypatch.setattr(okrsync.cli, "out", Console(width=400))      # wide enough that no cell folds
    rows = [line for line in cli("history", "checkout-nps").stdout.splitlines() if "│" in line]
    assert [cell.strip() for cell in rows[-2].split("│")[7:8]] == [flow["run_id"]]
    assert [cell.strip() for cell in rows[-1].split("│")[7:8]] == [flow["flow_run"]["url"]]   # below its run
    shown = cli("run", config, "--prefect", "--as-of", AS_OF.isoformat())
    assert shown.stdout.splitlines()[-1].startswith(f"Prefect flow run: {ui}/runs/flow-run/")
