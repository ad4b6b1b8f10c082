"""The CLI's contract, in process (so coverage sees it): exit codes 0/1/2, manual check-ins kept
by later runs, and the same output whether a run goes through Prefect or not."""
from __future__ import annotations

import json
import shutil
from datetime import datetime, timezone
from pathlib import Path

import pytest

from conftest import EXAMPLE



NOW = datetime(2026, 11, 20, 12, tzinfo=timezone.utc)


@pytest.fixture(autouse=True)
def now(monkeypatch):
    """Every run happens at NOW (okrsync.engine.now, the engine's clock hook): statuses stay the same
    whenever the suite runs, and a local run and a flow run compare equal."""
    from okrsync import engine

    monkeypatch.setattr(engine, "now", lambda: NOW)


@pytest.fixture
def example(tmp_path) -> Path:
    """A copy of the example config and its data, so a test may break a file."""
    shutil.copytree(EXAMPLE.parent, tmp_path / "config")
    return tmp_path / "config" / EXAMPLE.name


def test_a_clean_run_exits_0_and_a_second_run_writes_nothing(cli, example):
    first = cli("run", str(example), "--no-prefect", "--json")
    assert first.exit_code == 0, first.output
    doc = json.loads(first.stdout)
    assert doc["counts"]["written"] == 7 and doc["counts"]["failed"] == 0
    again = cli("run", str(example), "--no-prefect")
    assert again.exit_code == 0
    assert "0 check-ins written, 7 unchanged" in again.stdout


def test_one_failing_key_result_exits_1_and_the_rest_are_written(cli, example, tmp_path):
    survey = example.parent / "data" / "survey.csv"
    survey.write_text(survey.read_text().replace("NPS,398,38", "NPS,398,n/a"))
    done = cli("run", str(example), "--no-prefect", "--json")
    assert done.exit_code == 1
    rows = {r["id"]: r for r in json.loads(done.stdout)["key_results"]}
    assert "C7" in rows["checkout-nps"]["error"] and "n/a" in rows["checkout-nps"]["error"]
    assert {k for k, r in rows.items() if r["outcome"] == "written"} == set(rows) - {"checkout-nps"}
    status = cli("status", "--json")
    assert {s["kr_id"] for s in json.loads(status.stdout) if s["last"]} == set(rows) - {"checkout-nps"}


def test_bad_config_exits_2_with_file_and_line(cli, example):
    example.write_text(example.read_text().replace("target: 45", "target: forty-five"))
    done = cli("run", str(example), "--no-prefect")
    assert done.exit_code == 2
    assert f"{example}:24: checkout-nps: `target` must be a number" in done.stderr
    assert not (example.parent.parent / "okr-sync.db").exists()


def test_unknown_only_exits_2(cli, example):
    done = cli("run", str(example), "--no-prefect", "--only", "nope")
    assert done.exit_code == 2
    assert "--only nope: no such key result" in done.stderr


def test_a_bad_worker_count_exits_2_without_a_traceback(cli, example, monkeypatch):
    monkeypatch.setenv("OKR_SYNC_MAX_WORKERS", "abc")
    done = cli("run", str(example), "--no-prefect")
    assert done.exit_code == 2
    assert "OKR_SYNC_MAX_WORKERS='abc' must be a whole number from 1 to 32" in done.stderr
    assert "Traceback" not in done.output


def test_a_manual_checkin_is_kept_by_the_next_run(cli, example):
    assert cli("run", str(example), "--no-prefect").exit_code == 0
    manual = cli("checkin", "checkout-nps", "41", "--note", "from the survey tool")
    assert manual.exit_code == 0 and "Recorded manual check-in of 41 for checkout-nps" in manual.stdout
    run = cli("run", str(example), "--no-prefect", "--json")
    assert run.exit_code == 0
    rows = {r["id"]: r for r in json.loads(run.stdout)["key_results"]}
    assert rows["checkout-nps"]["outcome"] == "kept_manual"
    states = {s["kr_id"]: s for s in json.loads(cli("status", "--json").stdout)}
    assert states["checkout-nps"]["last"]["value"] == 41 and states["checkout-nps"]["last"]["kind"] == "manual"


def test_on_manual_overwrite_lets_the_next_run_replace_a_manual_value(cli, example):
    example.write_text(example.read_text().replace("target: 45", "target: 45\n        on_manual: overwrite", 1))
    assert cli("run", str(example), "--no-prefect").exit_code == 0
    assert cli("checkin", "checkout-nps", "41").exit_code == 0
    run = cli("run", str(example), "--no-prefect", "--json")
    rows = {r["id"]: r for r in json.loads(run.stdout)["key_results"]}
    assert rows["checkout-nps"]["outcome"] == "written"
    states = {s["kr_id"]: s for s in json.loads(cli("status", "--json").stdout)}
    assert states["checkout-nps"]["last"]["value"] == 38


def _comparable(doc: dict) -> dict:
    doc = {k: v for k, v in doc.items() if k not in ("run_id", "seconds", "flow_run")}
    doc["key_results"] = [{k: v for k, v in r.items() if k != "observed_at"} for r in doc["key_results"]]
    return doc


def test_a_run_through_prefect_prints_what_a_local_run_prints(cli, example, tmp_path, prefect_harness):
    local = cli("run", str(example), "--no-prefect", "--json", "--store", f"sqlite:///{tmp_path / 'a.db'}")
    flow = cli("run", str(example), "--prefect", "--json", "--store", f"sqlite:///{tmp_path / 'b.db'}")
    assert local.exit_code == flow.exit_code == 0, flow.output
    a, b = json.loads(local.stdout), json.loads(flow.stdout)
    assert a["store"] != b["store"]
    a.pop("store"), b.pop("store")
    assert _comparable(a) == _comparable(b)
    assert a["counts"]["written"] == 7
    assert a["flow_run"] is None and b["flow_run"]["id"]        # a flow run says which: --json's only difference


@pytest.mark.parametrize("value", ["inf", "nan", "1e999"])
def test_checkin_refuses_a_value_that_is_not_finite(cli, example, value):
    assert cli("run", str(example), "--no-prefect").exit_code == 0
    done = cli("checkin", "checkout-nps", value)
    assert done.exit_code == 2
    assert "is not a value a key result can have: give a finite number" in done.stderr
    history = json.loads(cli("history", "checkout-nps", "--json").stdout)
    assert [c["kind"] for c in history] == ["automatic"]


def test_a_store_password_never_reaches_prefect(cli, example, pg_url, prefect_harness):
    """`run --store postgresql+psycopg://user:PASSWORD@...` through Prefect: the flow run's
    parameters, its logs and the output show the URL with the password masked (issue #11, point 7)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId
    from prefect.client.schemas.sorting import FlowRunSort

    password = "canary-Pg-pa55word-9f2e"
    url = pg_url.replace("postgres@", f"postgres:{password}@")      # trust auth: any password is accepted
    done = cli("run", str(example), "--prefect", "--json", "--store", url)
    assert done.exit_code == 0, done.output
    assert password not in done.output and json.loads(done.stdout)["store"].startswith("postgresql+psycopg://postgres:***@")
    with get_client(sync_client=True) as client:
        run = client.read_flow_runs(sort=FlowRunSort.START_TIME_DESC, limit=1)[0]
        logs = client.read_logs(log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[run.id])))
    assert run.parameters["store"] == url.replace(password, "***")
    assert password not in json.dumps(run.parameters) + " ".join(log.message for log in logs)
