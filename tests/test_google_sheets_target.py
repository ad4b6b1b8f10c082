"""Publish target google_sheets: each key result's row of a Google Sheet written back, through the real engine
against tests/fake_gsheets.py over HTTP on 127.0.0.1 (token endpoint, values:batchGet, values:batchUpdate with
Google's scopes, sharing roles and per-minute quotas).
"""
from __future__ import annotations

import json
import re
from datetime import datetime, timezone
from pathlib import Path

import pytest
import yaml

from connectors import _http, google_sheets_target
from connectors._gsheets_client import READONLY_SCOPES, CallCounter, SheetsApi
from connectors.sql_store import open_store
from fake_gsheets import (CANARY_TOKEN, CANARY_WRITE_TOKEN, READ_WRITE, FakeGoogle, FakeSpreadsheet, FakeTab,
                          api_error, quota_exceeded, service_account_info, signing_key)
from okrsync import delivery, publish, starter
from okrsync.config import load_plan
from okrsync.engine import RunOptions, Services, sync
from okrsync.errors import SourceError
from okrsync.registry import Registry, default_registry

AS_OF = datetime(2026, 11, 15, 12, 0, tzinfo=timezone.utc)


@pytest.fixture(autouse=True)
def now(monkeypatch):
    """Runs happen at AS_OF (okrsync.engine.now, the engine's clock hook), so the statuses sent do not
    depend on the day the suite runs."""
    from okrsync import engine

    monkeypatch.setattr(engine, "now", lambda: AS_OF)
SHEET_ID = "1OkrSheetAbCdEfGhIjKlMnOpQrStUvWxYz0123456"
HEADER = ["KR id", "Title", "Current", "Progress", "Status", "Last sync", "Source"]
TARGETS = Registry({"google_sheets": google_sheets_target}, kind="publish target", problems=publish.contract_problems)


def okr_tab(ids: list[str], header: list[str] = HEADER) -> FakeTab:
    return FakeTab(0, "OKRs", [list(header)] + [[kr, f"Key result {kr}"] for kr in ids])


@pytest.fixture
def google(monkeypatch):
    fake = FakeGoogle({SHEET_ID: FakeSpreadsheet(SHEET_ID, "Company OKRs", [okr_tab(["a", "b", "c"])])},
                      shared={SHEET_ID}, editors={SHEET_ID})
    with fake.serve():
        monkeypatch.setenv("GOOGLE_SA_JSON", json.dumps(service_account_info(fake.token_uri)))
        _http.clock.follow(fake.now, fake.advance)      # retry waits move the fake's clock (its quotas see them)
        yield fake


def write_config(tmp_path: Path, google: FakeGoogle, values: dict[str, float], extra: str = "",
                 kr_extra: dict[str, str] | None = None, sheet: str = "OKRs") -> Path:
    csv = tmp_path / "m.csv"
    csv.write_text("name,value\n" + "".join(f"{k},{v}\n" for k, v in values.items()), encoding="utf-8")
    lines = ["period: 2026-Q4", "sources:", "  m: {type: spreadsheet, path: m.csv}", "publish:",
             f"  okr-sheet: {{type: google_sheets, spreadsheet: {SHEET_ID}, sheet: {sheet}, "
             f"service_account: \"${{GOOGLE_SA_JSON}}\", api_base: \"{google.api_base}\"{extra}}}",
             "objectives:", "  - id: obj", "    title: Obj", "    key_results:"]
    for i, k in enumerate(values):
        more = (kr_extra or {}).get(k, "")
        lines.append(f"      - {{id: {k}, title: {k}, source: m, metric: {{cell: B{i + 2}}}, baseline: 0, target: 100{more}}}")
    path = tmp_path / "okrs.yaml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def run(path: Path, tmp_path: Path) -> dict:
    plan = load_plan([str(path)], store=f"sqlite:///{tmp_path / 'okr.db'}", targets=TARGETS)
    return sync(plan, RunOptions(), Services(registry=default_registry(), open_store=open_store,
                                                        targets=TARGETS))


def rows(google: FakeGoogle) -> dict[str, list]:
    tab = google.spreadsheets[SHEET_ID].tabs[0]
    return {r[0]: r for r in tab.rows[1:]}


def test_two_runs_write_each_row_once_and_a_rerun_sends_nothing(google, tmp_path):
    path = write_config(tmp_path, google, {"a": 10, "b": 45, "c": 100})
    first = run(path, tmp_path)
    sheet = first["publish"]["okr-sheet"]
    assert (sheet["delivered"], sheet["failed"], sheet["calls"]) == (3, 0, 3)     # token, batchGet, batchUpdate
    assert rows(google)["a"][:5] == ["a", "Key result a", 10.0, 0.1, "Off track"]
    assert re.fullmatch(r"20\d\d-\d\d-\d\d \d\d:\d\d UTC", rows(google)["a"][5])   # when it was measured
    assert rows(google)["a"][6].startswith("file://") and rows(google)["a"][6].endswith("#B2")
    assert rows(google)["b"][2:5] == [45.0, 0.45, "On track"] and rows(google)["c"][4] == "Done"
    (body,) = google.bodies
    assert body["valueInputOption"] == "RAW" and len(body["data"]) == 15          # 5 cells x 3 rows, one request
    assert google.scopes == [READ_WRITE]

    second = run(path, tmp_path)
    assert second["publish"]["okr-sheet"]["delivered"] == 0 and second["publish"]["okr-sheet"]["calls"] == 0
    assert google.writes() == 1

    write_config(tmp_path, google, {"a": 20, "b": 45, "c": 100})
    third = run(path, tmp_path)
    assert third["publish"]["okr-sheet"]["delivered"] == 1 and third["publish"]["okr-sheet"]["calls"] == 3
    assert google.bodies[-1]["data"] == [{"range": "'OKRs'!C2", "majorDimension": "ROWS", "values": [[20.0]]},
                                         {"range": "'OKRs'!D2", "majorDimension": "ROWS", "values": [[0.2]]}]


def test_a_value_a_person_typed_is_kept_unless_the_key_result_says_overwrite(google, tmp_path):
    path = write_config(tmp_path, google, {"a": 10, "b": 20}, kr_extra={"b": ", on_manual: overwrite"})
    run(path, tmp_path)
    rows(google)["a"][2] = 41          # a person types 41 over okr-sync's 10, and 7 over b's 20
    rows(google)["b"][2] = 7
    write_config(tmp_path, google, {"a": 12, "b": 22}, kr_extra={"b": ", on_manual: overwrite"})
    result = run(path, tmp_path)
    published = {r["id"]: r["published"] for r in result["key_results"]}
    assert published == {"a": {"okr-sheet": "kept the manual value 41 in okr-sheet"}, "b": {"okr-sheet": "delivered"}}
    assert rows(google)["a"][2:4] == [41, 0.1] and rows(google)["b"][2:4] == [22.0, 0.22]
    with open_store(f"sqlite:///{tmp_path / 'okr.db'}") as store:
        (state,) = store.delivery_states()
    assert (state["kept_manual"], state["pending"]) == (1, 0)


def test_the_sheet_down_for_a_run_keeps_check_ins_pending_and_the_next_run_writes_only_the_newest(google, tmp_path):
    path = write_config(tmp_path, google, {"a": 10})
    google.faults = [(503, {}, api_error(503, "The service is currently unavailable.", "UNAVAILABLE"))] * 6
    down = run(path, tmp_path)
    assert down["counts"]["written"] == 1 and down["publish"]["okr-sheet"]["failed"] == 1
    (message,) = down["publish"]["okr-sheet"]["messages"]
    assert message.startswith("a: Google Sheet 1OkrSheetA…, reading the values: Google answered HTTP 503")
    assert "gave up after 6 attempts: run again later" in message and "\n" not in message
    write_config(tmp_path, google, {"a": 30})
    google.faults = [(503, {}, api_error(503, "The service is currently unavailable.", "UNAVAILABLE"))] * 6
    run(path, tmp_path)                                                   # a second check-in waits too
    google.faults = []
    back = run(path, tmp_path)
    assert back["counts"]["written"] == 0 and back["publish"]["okr-sheet"]["delivered"] == 2
    (body,) = google.bodies
    assert [d["values"] for d in body["data"][:2]] == [[[30.0]], [[0.3]]]    # the newest only, written once
    with open_store(f"sqlite:///{tmp_path / 'okr.db'}") as store:
        (state,) = store.delivery_states()
    assert (state["delivered"], state["pending"]) == (2, 0)


def test_the_write_quota_is_waited_out_as_google_asks(google, tmp_path, clock):
    path = write_config(tmp_path, google, {"a": 10, "b": 20})
    google.writes_per_minute = 0                                           # used up for the next minute
    google.faults = []
    original = google._over_quota

    def quota(kind: str) -> bool:                                         # free again once a minute has passed
        if kind == "Write" and clock.waits and sum(clock.waits) >= 60:
            google.writes_per_minute = 60
        return original(kind)
    google._over_quota = quota
    result = run(path, tmp_path)
    assert result["publish"]["okr-sheet"]["delivered"] == 2
    assert len(clock.waits) >= 2 and sum(clock.waits) >= 60             # backed off, as Google documents for 429
    assert rows(google)["a"][2] == 10.0


def test_a_quota_still_used_up_after_the_retries_fails_the_batch_in_one_line_and_it_is_retried(google, tmp_path):
    path = write_config(tmp_path, google, {"a": 10})
    google.faults = [(429, {}, quota_exceeded("Read"))] * 6                 # every try of the read
    result = run(path, tmp_path)
    (message,) = result["publish"]["okr-sheet"]["messages"]
    assert "Google's read quota is used up (HTTP 429" in message and "60 reads per minute" in message
    google.faults = []
    assert run(path, tmp_path)["publish"]["okr-sheet"]["delivered"] == 1


@pytest.mark.parametrize("change, expected", [
    ({"sheet": "Goals"}, "Google Sheet 1OkrSheetA… has no tab 'Goals': check `sheet:`"),
    ({"match": "Key"}, "tab 'OKRs' of Google Sheet 1OkrSheetA… has no column 'Key' in row 1: add it"),
    ({"properties": "{value: Now}"}, "has no column 'Now' in row 1: add it, or change `properties:`"),
])
def test_a_wrong_tab_or_column_fails_each_key_result_with_one_line_naming_it(google, tmp_path, change, expected):
    extra = "".join(f", {k}: {v}" for k, v in change.items() if k != "sheet")
    path = write_config(tmp_path, google, {"a": 10, "b": 20}, extra=extra, sheet=change.get("sheet", "OKRs"))
    result = run(path, tmp_path)
    messages = result["publish"]["okr-sheet"]["messages"]
    assert len(messages) == 2 and all(expected in m and "\n" not in m for m in messages), messages
    assert result["counts"]["written"] == 2 and google.writes() == 0


def test_a_key_result_without_a_row_fails_alone_and_the_others_are_written(google, tmp_path):
    path = write_config(tmp_path, google, {"a": 10, "zz": 20})
    result = run(path, tmp_path)
    assert result["publish"]["okr-sheet"]["delivered"] == 1
    (message,) = result["publish"]["okr-sheet"]["messages"]
    assert message.startswith("zz: no row of tab 'OKRs' of Google Sheet 1OkrSheetA… has 'zz' in its 'KR id' column: "
                              "add a row for this key result")
    assert rows(google)["a"][2] == 10.0


def test_a_missing_optional_column_is_skipped_and_a_row_can_be_mapped_by_id(google, tmp_path):
    google.spreadsheets[SHEET_ID].tabs[0] = FakeTab(0, "OKRs", [["KR id", "Current", "Status"], ["Checkout NPS", "n/a"],
                                                                ["other", ""]])
    path = write_config(tmp_path, google, {"nps": 40}, kr_extra={"nps": ", publish: {okr-sheet: Checkout NPS}"})
    (message,) = run(path, tmp_path)["publish"]["okr-sheet"]["messages"]
    assert message == ("nps: 'OKRs'!B2 holds the text 'n/a', not a number: clear it or type a number (or let "
                       "okr-sync overwrite it with `on_manual: overwrite`)")
    rows(google)["Checkout NPS"][1] = ""
    result = run(path, tmp_path)
    assert result["publish"]["okr-sheet"]["delivered"] == 1
    assert rows(google)["Checkout NPS"] == ["Checkout NPS", 40.0, "On track"]


def test_two_key_results_on_one_row_fail_both_instead_of_taking_turns(google, tmp_path):
    path = write_config(tmp_path, google, {"a": 10, "b": 20, "c": 30}, kr_extra={"b": ", publish: {okr-sheet: a}"})
    result = run(path, tmp_path)["publish"]["okr-sheet"]
    assert result["messages"] == [f"{kr}: 'a' is the row of several key results (a, b): give each key result its own "
                                  "row (`publish: {okr-sheet: <id>}`)" for kr in ("a", "b")]
    assert rows(google)["a"] == ["a", "Key result a"] and rows(google)["c"][2] == 30.0


def test_a_sheet_shared_as_viewer_fails_with_the_sharing_fix(google, tmp_path):
    google.editors.clear()
    path = write_config(tmp_path, google, {"a": 10})
    (message,) = run(path, tmp_path)["publish"]["okr-sheet"]["messages"]
    assert ("is not shared with the service account okr-sync@acme-okrs.iam.gserviceaccount.com as an Editor: open it "
            "in Google Sheets, click Share and add okr-sync@acme-okrs.iam.gserviceaccount.com as an Editor") in message
    assert "it is written on the next run" in message


def test_a_read_only_token_is_refused_on_writes_as_google_documents(google):
    counter = CallCounter()
    api = SheetsApi(service_account_info(google.token_uri), SHEET_ID, api_base=google.api_base, counter=counter,
                    scopes=READONLY_SCOPES)
    try:
        with pytest.raises(SourceError) as error:
            api.update_values([{"range": "'OKRs'!C2", "values": [[1]]}])
    finally:
        api.close()
    assert "HTTP 403 ACCESS_TOKEN_SCOPE_INSUFFICIENT" in str(error.value)
    assert rows(google)["a"] == ["a", "Key result a"]


def test_the_double_refuses_what_google_refuses(google):
    sheet = google.spreadsheets[SHEET_ID]
    assert sheet.batch_update({"data": []}) == (400, api_error(400, "Invalid valueInputOption: "
                                                                    "INPUT_VALUE_OPTION_UNSPECIFIED", "INVALID_ARGUMENT"))
    status, body = sheet.batch_update({"valueInputOption": "RAW", "data": [
        {"range": "'OKRs'!C2", "values": [[1]]}, {"range": "'OKRs'!C3", "values": [[1, 2]]}]})
    assert status == 400 and "but tried writing to column [D]" in body["error"]["message"]
    assert rows(google)["a"] == ["a", "Key result a"]                       # all or nothing
    assert sheet.batch_update({"valueInputOption": "RAW", "data": [{"range": "'Nope'!A1", "values": [[1]]}]})[0] == 400


def test_tokens_and_the_key_never_show_even_when_google_echoes_them(google, tmp_path, caplog):
    path = write_config(tmp_path, google, {"a": 10})
    google.faults = [(400, {}, api_error(400, f"Bad token Bearer {CANARY_WRITE_TOKEN} in request", "INVALID_ARGUMENT"))]
    result = run(path, tmp_path)
    (message,) = result["publish"]["okr-sheet"]["messages"]
    assert "Bad token Bearer ***" in message
    private_pem, _ = signing_key()
    shown = json.dumps(result, default=str) + caplog.text + (tmp_path / "okr.db").read_bytes().decode("latin-1")
    for secret in (CANARY_WRITE_TOKEN, CANARY_TOKEN, private_pem.splitlines()[1]):
        assert secret not in shown


def test_check_finds_the_missing_rows_and_proves_write_access_without_changing_a_cell(google, tmp_path):
    path = write_config(tmp_path, google, {"a": 10, "zz": 20})
    plan = load_plan([str(path)], store=f"sqlite:///{tmp_path / 'okr.db'}", targets=TARGETS)
    report = delivery.check_targets(plan, TARGETS)["okr-sheet"]
    assert report["problems"] == ["zz: no row of tab 'OKRs' of Google Sheet 1OkrSheetA… has 'zz' in its 'KR id' "
                                  "column: add one"]
    assert report["calls"] == 3 and rows(google)["a"] == ["a", "Key result a"]
    assert google.bodies == [{"valueInputOption": "RAW", "data": [{"range": "'OKRs'!A1", "values": [["KR id"]]}]}]
    google.editors.clear()
    (problem, _) = delivery.check_targets(plan, TARGETS)["okr-sheet"]["problems"]
    assert "as an Editor" in problem


def test_settings_mistakes_are_found_offline(tmp_path, google):
    missing = tmp_path / "nokey.json"
    config = google_sheets_target.TargetConfig.model_validate(
        {"type": "google_sheets", "spreadsheet": SHEET_ID, "sheet": "OKRs", "service_account": str(missing),
         "properties": {"value": "KR id"}})
    problems = google_sheets_target.check(config)
    assert problems[0].startswith(f"service account key file {missing} not found")
    assert problems[1] == "`match:` and `properties:` name the column 'kr id' more than once: give each its own column"
    with pytest.raises(ValueError, match="do not paste the key into the config"):
        google_sheets_target.TargetConfig.model_validate(
            {"type": "google_sheets", "spreadsheet": SHEET_ID, "sheet": "OKRs",
             "service_account": service_account_info()})


def test_import_reads_the_rows_into_a_starter_config(google, tmp_path):
    google.spreadsheets[SHEET_ID].tabs[0] = FakeTab(0, "OKRs", [
        ["Objective", "KR id", "Key result", "Baseline", "Target", "Unit"],
        ["Fast checkout", "checkout-nps", "Raise NPS to 45", 30, 45, ""],
        ["Fast checkout", "P1 bugs", "Fewer P1 bugs", "20", "3", "bugs"],
        ["Grow", "signups", "More signups", "", 1000, ""]])
    text, count = starter.import_config(TARGETS, "google_sheets", [
        f"spreadsheet={SHEET_ID}", "sheet=OKRs", "service_account=${GOOGLE_SA_JSON}", f"api_base={google.api_base}"],
        "okr-sheet", tmp_path)
    assert count == 3
    doc = yaml.safe_load(text)
    assert [o["title"] for o in doc["objectives"]] == ["Fast checkout", "Grow"]
    nps, bugs = doc["objectives"][0]["key_results"]
    assert (nps["id"], nps["title"], nps["baseline"], nps["target"], "publish" in nps) == (
        "checkout-nps", "Raise NPS to 45", 30.0, 45.0, False)
    assert (bugs["id"], bugs["publish"], bugs["unit"], bugs["baseline"]) == ("p1-bugs", {"okr-sheet": "P1 bugs"}, "bugs",
                                                                             20.0)
    assert doc["publish"]["okr-sheet"]["service_account"] == "${GOOGLE_SA_JSON}"


def test_okr_sync_run_on_the_command_line_publishes_to_the_sheet(cli, google, tmp_path):
    from okrsync.registry import default_targets

    if "google_sheets" not in default_targets():
        pytest.skip("the google_sheets publish target is not registered in this environment's installed metadata "
                    "(pip install -e . registers it)")
    path = write_config(tmp_path, google, {"a": 10, "zz": 20})
    ran = cli("run", str(path), "--no-prefect")
    assert ran.exit_code == 1                                             # a delivery failed
    assert "okr-sheet (google_sheets): 1 delivered, 1 failed (retried on the next run), 3 call(s)" in ran.output
    assert ("zz: no row of tab 'OKRs' of Google Sheet 1OkrSheetA… has 'zz' in its 'KR id' column: add a row for this "
            "key result (or name its row's id with `publish: {okr-sheet: <id>}`)") in ran.output
    assert rows(google)["a"][2] == 10.0 and CANARY_WRITE_TOKEN not in ran.output
    status = cli("status")
    assert status.exit_code == 0 and "okr-sheet" in status.output
