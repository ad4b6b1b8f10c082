"""True as-of: a run as of a past date measures it for every source type that can look back ({as_of}
in a Jira or GitHub query, a spreadsheet or Google Sheets `date_column:`), refuses the metrics that
cannot, stamps the check-ins at the end of that day, and never leaves the store showing a stale value
or status afterwards."""
from __future__ import annotations

import json
import uuid
from datetime import date, datetime, time, timezone
from pathlib import Path

import openpyxl
import pytest
from pydantic import ValidationError

from connectors import google_sheets, spreadsheet
from connectors.sql_store import open_store
from fake_github import FakeGitHub
from fake_gsheets import FakeGoogle, FakeSpreadsheet, FakeTab
from fake_jira import FakeIssue, FakeJira
from flows.services import local_services
from okrsync import engine
from okrsync.config import load_plan
from okrsync.contract import READS_THE_PRESENT
from okrsync.engine import RunOptions, sync
from okrsync.errors import SourceError
from okrsync.measure import Measurement, MetricRequest, Period

Q4 = Period(date(2026, 10, 1), date(2026, 12, 31), "2026-Q4")
TODAY = datetime(2026, 11, 29, 15, 0, tzinfo=timezone.utc)
END_OF_NOV_15 = datetime.combine(date(2026, 11, 15), time.max, tzinfo=timezone.utc)
SHEET_ID = "1AsOfSheetAbCdEfGhIjKlMnOpQrStUv0123456789"
TOKEN = "as-of-CANARY-token-51c2"
EMAIL = "okr-bot@example.com"

# week, plan, activated: not in date order on purpose, one row without a date
ROWS = [["week", "plan", "activated"], ["2026-10-02", "self-serve", "24"], ["2026-10-16", "self-serve", "25"],
        ["2026-10-09", "self-serve", "27"], ["", "self-serve", "1000"], ["2026-10-09", "sales", "9"],
        ["2026-11-20", "self-serve", "35"]]


@pytest.fixture(autouse=True)
def today(monkeypatch):
    """The engine runs on 2026-11-29 (okrsync.engine.now, its one clock hook)."""
    monkeypatch.setattr(engine, "now", lambda: TODAY)


def csv_source(tmp_path: Path) -> spreadsheet.SourceConfig:
    path = tmp_path / "activations.csv"
    path.write_text("\n".join(",".join(r) for r in ROWS) + "\n", encoding="utf-8")
    return spreadsheet.SourceConfig.model_validate({"type": "spreadsheet", "path": str(path)})


def asked(kr_id: str, model, as_of: date, **metric) -> MetricRequest:
    return MetricRequest(kr_id, model.model_validate(metric), Q4, as_of)


def value_of(result: Measurement | SourceError) -> float:
    assert isinstance(result, Measurement), f"expected a Measurement, got: {result}"
    return result.value

# ---------------------------------------------------------------------------- spreadsheets


def test_a_date_column_counts_only_the_rows_dated_by_then(tmp_path):
    src = csv_source(tmp_path)
    metric = {"column": "activated", "aggregate": "sum", "where": {"plan": "self-serve"}, "date_column": "week"}
    got = spreadsheet.measure(src, [asked("oct-10", spreadsheet.Metric, date(2026, 10, 10), **metric),
                                    asked("oct-16", spreadsheet.Metric, date(2026, 10, 16), **metric),
                                    asked("nov-29", spreadsheet.Metric, date(2026, 11, 29), **metric),
                                    asked("sep-30", spreadsheet.Metric, date(2026, 9, 30), **metric)])
    assert value_of(got["oct-10"]) == 24 + 27                 # 10-16 and the undated row do not count
    assert value_of(got["oct-16"]) == 24 + 27 + 25            # a row dated on the day counts
    assert value_of(got["nov-29"]) == 24 + 27 + 25 + 35
    assert value_of(got["sep-30"]) == 0                       # nothing had happened yet: a sum of no rows is 0
    assert got["oct-10"].note == "sum of 2 values dated on or before 2026-10-10"
    assert got["oct-10"].calls + got["oct-16"].calls + got["nov-29"].calls + got["sep-30"].calls == 1   # one pass


def test_last_takes_the_latest_dated_row_not_the_last_line(tmp_path):
    src = csv_source(tmp_path)
    metric = {"column": "activated", "aggregate": "last", "where": {"plan": "self-serve"}, "date_column": "week"}
    got = spreadsheet.measure(src, [asked("a", spreadsheet.Metric, date(2026, 10, 12), **metric),
                                    asked("b", spreadsheet.Metric, date(2026, 9, 1), **metric)])
    assert value_of(got["a"]) == 27                           # 10-09's row, though 10-16's comes before it
    assert "no rows dated on or before 2026-09-01" in str(got["b"])


def test_a_cell_that_is_not_a_date_names_the_cell_and_the_fix(tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text("week,activated\n2026-10-02,4\nnext week,5\n", encoding="utf-8")
    src = spreadsheet.SourceConfig.model_validate({"type": "spreadsheet", "path": str(path)})
    got = spreadsheet.measure(src, [asked("kr", spreadsheet.Metric, date(2026, 11, 1), column="activated",
                                          aggregate="sum", date_column="week")])["kr"]
    assert str(got).endswith("bad.csv A3: 'next week' is not a date: write dates as YYYY-MM-DD (or format the column as dates)")


def test_a_cell_metric_cannot_have_a_date_column():
    with pytest.raises(ValidationError, match="`date_column:` only goes with `column:`"):
        spreadsheet.Metric.model_validate({"cell": "B7", "date_column": "week"})
    assert spreadsheet.reads_past(spreadsheet.Metric.model_validate({"column": "a", "aggregate": "sum", "date_column": "d"}))
    assert not spreadsheet.reads_past(spreadsheet.Metric.model_validate({"column": "a", "aggregate": "sum"}))


def test_xlsx_date_cells_are_read_as_dates(tmp_path):
    workbook = openpyxl.Workbook()
    sheet = workbook.active
    sheet.title = "Weekly"
    sheet.append(["week", "activated"])
    for day, n in ((date(2026, 10, 2), 24), (date(2026, 10, 9), 27), (datetime(2026, 10, 16, 9, 30), 25)):
        sheet.append([day, n])
    path = tmp_path / "weekly.xlsx"
    workbook.save(path)
    src = spreadsheet.SourceConfig.model_validate({"type": "spreadsheet", "path": str(path)})
    got = spreadsheet.measure(src, [asked("kr", spreadsheet.Metric, date(2026, 10, 16), sheet="Weekly",
                                          column="activated", aggregate="sum", date_column="week")])["kr"]
    assert value_of(got) == 76


def test_google_sheets_date_column_as_of_a_past_date():
    sheet = FakeSpreadsheet(SHEET_ID, "Growth", [FakeTab(0, "Activations", ROWS)])
    with FakeGoogle({SHEET_ID: sheet}, public={SHEET_ID}).serve() as fake:
        src = google_sheets.SourceConfig.model_validate({"type": "google_sheets", "spreadsheet": SHEET_ID,
                                                         "export_base": fake.export_base})
        metric = {"column": "activated", "aggregate": "sum", "where": {"plan": "self-serve"}, "date_column": "week"}
        got = google_sheets.measure(src, [asked("then", google_sheets.Metric, date(2026, 10, 10), **metric),
                                          asked("now", google_sheets.Metric, date(2026, 11, 29), **metric)])
        exports = len(fake.requests)
    assert value_of(got["then"]) == 51 and value_of(got["now"]) == 111
    assert exports == 1                                       # one export of the tab answers both dates
    assert google_sheets.reads_past(google_sheets.Metric.model_validate(metric))

# ---------------------------------------------------------------------------- through the engine

JIRA_ISSUES = [FakeIssue(1, category="done", resolved="2026-10-20"), FakeIssue(2, category="done", resolved="2026-11-10"),
               FakeIssue(3, category="done", resolved="2026-11-20"), FakeIssue(4, category="new")]
RESOLVED_BY = 'project = PAY AND resolved <= "{as_of}"'
CLOSED_BY = "repo:acme/checkout is:issue is:closed closed:<={as_of}"


def mixed_config(tmp_path: Path, jira_url: str, github_api: str) -> Path:
    csv_source(tmp_path)
    (tmp_path / "survey.csv").write_text("question,score\nNPS,38\n", encoding="utf-8")
    config = tmp_path / "okrs.yaml"
    config.write_text(f"""period: 2026-Q4
sources:
  sheet: {{type: spreadsheet, path: activations.csv}}
  survey: {{type: spreadsheet, path: survey.csv}}
  jira: {{type: jira, url: {jira_url}, email: {EMAIL}, token: "${{AS_OF_TOKEN}}"}}
  gh: {{type: github, token: "${{AS_OF_TOKEN}}", base_url: {github_api}}}
objectives:
  - id: o
    title: History
    key_results:
      - {{id: activated, title: Activations, source: sheet, target: 400,
         metric: {{column: activated, aggregate: sum, where: {{plan: self-serve}}, date_column: week}}}}
      - {{id: resolved, title: Issues resolved, source: jira, target: 10, metric: {{jql: '{RESOLVED_BY}'}}}}
      - {{id: closed, title: Issues closed, source: gh, target: 20, metric: {{search: "{CLOSED_BY}"}}}}
      - {{id: nps, title: NPS, source: survey, baseline: 30, target: 45, metric: {{cell: B2}}}}
      - {{id: open-bugs, title: Open issues now, source: jira, baseline: 10, target: 0, metric: {{jql: 'project = PAY AND statusCategory != Done'}}}}
""", encoding="utf-8")
    return config


def test_a_past_date_is_measured_where_a_metric_can_look_back_and_refused_where_it_cannot(tmp_path, monkeypatch):
    monkeypatch.setenv("AS_OF_TOKEN", TOKEN)
    store = f"sqlite:///{tmp_path / 'okr.db'}"
    with FakeJira(JIRA_ISSUES, email=EMAIL, token=TOKEN) as jira, \
            FakeGitHub(TOKEN, totals={"repo:acme/checkout is:issue is:closed closed:<=2026-11-15": 7}) as gh:
        plan = load_plan([mixed_config(tmp_path, jira.url, gh.base_url)], store)
        result = sync(plan, RunOptions(as_of=date(2026, 11, 15)), local_services())
        jql_asked = {c.body["jql"] for c in jira.calls if isinstance(c.body, dict) and "jql" in c.body}
    rows = {r["id"]: r for r in result["key_results"]}
    assert rows["activated"]["value"] == 24 + 27 + 25         # rows dated on or before 2026-11-15
    assert rows["resolved"]["value"] == 2                     # resolved on 10-20 and 11-10
    assert rows["closed"]["value"] == 7
    assert rows["nps"]["error"] == rows["open-bugs"]["error"] == READS_THE_PRESENT
    assert READS_THE_PRESENT == "this metric reads the present; add {as_of} to its query or a date_column"
    assert 'project = PAY AND resolved <= "2026-11-15"' in jql_asked
    assert not any("statusCategory != Done" in q for q in jql_asked)         # a refused metric is never asked
    assert {r["observed_at"] for r in result["key_results"] if r["value"] is not None} == {END_OF_NOV_15.isoformat()}
    with open_store(store) as s:
        history = s.history("activated")
    assert [(c.observed_at, c.value) for c in history] == [(END_OF_NOV_15, 76)]
    assert history[0].expected == pytest.approx(46 / 92)      # expected progress as of the end of Nov 15


def test_today_as_a_date_still_reads_the_present_and_is_never_observed_in_the_future(tmp_path):
    (tmp_path / "survey.csv").write_text("question,score\nNPS,38\n", encoding="utf-8")
    config = tmp_path / "okrs.yaml"
    config.write_text("period: 2026-Q4\nsources: {survey: {type: spreadsheet, path: survey.csv}}\nobjectives:\n"
                      "  - {id: o, title: O, key_results: [{id: nps, title: NPS, source: survey, baseline: 30, "
                      "target: 45, metric: {cell: B2}}]}\n", encoding="utf-8")
    plan = load_plan([config], f"sqlite:///{tmp_path / 'okr.db'}")
    row = sync(plan, RunOptions(as_of=TODAY.date()), local_services())["key_results"][0]
    assert row["value"] == 38 and row["observed_at"] == TODAY.isoformat()


def test_the_run_after_a_back_dated_run_compares_with_the_latest_check_in(tmp_path, monkeypatch):
    """A back-dated check-in goes into the past: the next run is compared with what the key result shows
    now (the latest check-in by observed_at), so it is neither written twice nor wrongly "unchanged"."""
    src = tmp_path / "activations.csv"
    config = tmp_path / "okrs.yaml"
    config.write_text("period: 2026-Q4\nsources: {sheet: {type: spreadsheet, path: activations.csv}}\nobjectives:\n"
                      "  - {id: o, title: O, key_results: [{id: activated, title: A, source: sheet, target: 400, "
                      "metric: {column: activated, aggregate: sum, date_column: week}}]}\n", encoding="utf-8")
    src.write_text("week,activated\n2026-10-02,100\n2026-11-20,150\n", encoding="utf-8")
    plan = load_plan([config], f"sqlite:///{tmp_path / 'okr.db'}")
    services = local_services()

    now_run = sync(plan, RunOptions(), services)["key_results"][0]
    assert (now_run["value"], now_run["outcome"]) == (250, "written")
    past = sync(plan, RunOptions(as_of=date(2026, 11, 1)), services)["key_results"][0]
    assert (past["value"], past["outcome"]) == (100, "written")      # before: nothing; written into the past
    again = sync(plan, RunOptions(), services)["key_results"][0]
    assert (again["value"], again["outcome"]) == (250, "unchanged")  # compared with the 250 of today, not the 100
    src.write_text("week,activated\n2026-10-02,100\n", encoding="utf-8")   # a row deleted: the value goes back
    back = sync(plan, RunOptions(), services)["key_results"][0]
    assert (back["value"], back["outcome"]) == (100, "written")      # 100 differs from today's 250
    with open_store(plan.store_url) as s:
        assert s.key_results()[0].last.value == 100 and s.key_results()[0].last.observed_at == TODAY
        assert [c.value for c in s.history("activated")] == [100, 250, 100]


def test_a_status_that_changes_is_rewritten_even_when_the_value_did_not(tmp_path):
    """No new rows between two dates: the same value, but expected progress moved on, so the status did."""
    (tmp_path / "activations.csv").write_text("week,activated\n2026-10-02,100\n", encoding="utf-8")
    config = tmp_path / "okrs.yaml"
    config.write_text("period: 2026-Q4\nsources: {sheet: {type: spreadsheet, path: activations.csv}}\nobjectives:\n"
                      "  - {id: o, title: O, key_results: [{id: activated, title: A, source: sheet, target: 400, "
                      "metric: {column: activated, aggregate: sum, date_column: week}}]}\n", encoding="utf-8")
    plan = load_plan([config], f"sqlite:///{tmp_path / 'okr.db'}")
    services = local_services()
    early = sync(plan, RunOptions(as_of=date(2026, 10, 10)), services)["key_results"][0]
    late = sync(plan, RunOptions(as_of=date(2026, 11, 10)), services)["key_results"][0]
    same = sync(plan, RunOptions(as_of=date(2026, 11, 10)), services)["key_results"][0]
    assert early["value"] == late["value"] == 100
    assert (early["status"], late["status"]) == ("on_track", "at_risk")   # 25 % done, 45 % of the period gone
    assert (late["outcome"], same["outcome"]) == ("written", "unchanged")
    with open_store(plan.store_url) as s:
        assert [c.status for c in s.history("activated")] == ["on_track", "at_risk"]


def test_the_cli_takes_a_date_as_its_end_and_refuses_what_is_not_one(cli, tmp_path):
    (tmp_path / "activations.csv").write_text("week,activated\n2026-10-02,100\n2026-11-20,150\n", encoding="utf-8")
    config = tmp_path / "okrs.yaml"
    config.write_text("period: 2026-Q4\nsources: {sheet: {type: spreadsheet, path: activations.csv}}\nobjectives:\n"
                      "  - {id: o, title: O, key_results: [{id: activated, title: A, source: sheet, target: 400, "
                      "metric: {column: activated, aggregate: sum, date_column: week}}]}\n", encoding="utf-8")
    done = cli("run", str(config), "--no-prefect", "--as-of", "2026-11-15", "--json")
    assert done.exit_code == 0, done.output
    row = json.loads(done.stdout)["key_results"][0]
    assert row["value"] == 100 and row["observed_at"] == END_OF_NOV_15.isoformat()
    bad = cli("run", str(config), "--no-prefect", "--as-of", "15/11/2026")
    assert bad.exit_code == 2 and "--as-of '15/11/2026' is not a date: write e.g. 2026-11-15" in bad.stderr

# ---------------------------------------------------------------------------- the store's side


def test_policy_same_value_another_status_is_written_same_both_is_unchanged():
    from okrsync import policy

    before = policy.Current(40.0, manual=False, status="on_track")
    assert policy.decide(40.0, before, new_status="on_track") == "unchanged"
    assert policy.decide(40.0, before, new_status="at_risk") == "written"
    assert policy.decide(40.0, policy.Current(40.0, manual=False)) == "unchanged"   # a tool shows no status
    assert policy.decide(40.0, policy.Current(40.0, manual=True, status="on_track"), new_status="at_risk") == "kept_manual"


def test_backfilled_check_ins_are_deduplicated_on_key_result_and_moment(tmp_path):
    from okrsync.records import CheckinRecord, KeyResultRecord, ObjectiveRecord

    def write(store, *records):
        return store.write_sync(run_id=uuid.uuid4().hex, started_at=TODAY, objectives=[ObjectiveRecord("o", "O")],
                                key_results=[KeyResultRecord("kr", "o", "KR", "s", 0, 100)], checkins=list(records),
                                config_files=[], failed=0)

    def checkin(day: int, value: float, kind: str = "backfill") -> CheckinRecord:
        moment = datetime.combine(date(2026, 10, day), time.max, tzinfo=timezone.utc)
        return CheckinRecord("kr", value, value / 100, 0.1, "on_track", moment, kind=kind)

    with open_store(f"sqlite:///{tmp_path / 'okr.db'}") as store:
        assert write(store, checkin(1, 5), checkin(8, 5), checkin(15, 9)).written == ["kr"] * 3   # same values: kept
        again = write(store, checkin(1, 5), checkin(8, 6), checkin(22, 9))
        assert again.written == ["kr"] and again.unchanged == ["kr", "kr"]     # only 10-22 is new
        write(store, checkin(29, 12, kind="automatic"))
        assert write(store, checkin(29, 12)).unchanged == ["kr"]               # a run's check-in at that moment
        points = store.checkin_points(["kr"])["kr"]
        assert [v for _, v in points] == [5, 5, 9, 9, 12]
        assert store.checkin_points(["kr"], since=datetime(2026, 10, 20, tzinfo=timezone.utc))["kr"][0][1] == 9
