"""okr-sync backfill: history at past dates as check-ins of kind `backfill`, idempotent, the key results
it cannot fill listed with the reason, within dates x distinct queries of API calls, never queued
for publish targets; then `status` shows a forecast."""
from __future__ import annotations

import json
import shutil
from datetime import date, datetime, time, timedelta, timezone
from pathlib import Path

import pytest

from conftest import EXAMPLE
from connectors.sql_store import open_store
from fake_github import FakeGitHub
from fake_jira import FakeIssue, FakeJira
from flows.services import local_services
from okrsync import engine
from okrsync.backfill import DATES_PER_BATCH, BackfillError, BackfillOptions, backfill, dates_between
from okrsync.config import load_plan
from okrsync.contract import READS_THE_PRESENT
from okrsync.engine import RunOptions, Services, sync
from okrsync.registry import Registry, default_registry

TODAY = datetime(2026, 11, 29, 15, 0, tzinfo=timezone.utc)
WEEKLY = [date(2026, 10, 1) + timedelta(weeks=k) for k in range(9)]        # 10-01 .. 11-26
TOKEN = "backfill-CANARY-token-8e1f"
EMAIL = "okr-bot@example.com"


@pytest.fixture(autouse=True)
def today(monkeypatch):
    monkeypatch.setattr(engine, "now", lambda: TODAY)


@pytest.fixture
def example(tmp_path) -> Path:
    shutil.copytree(EXAMPLE.parent, tmp_path / "config")
    return tmp_path / "config" / EXAMPLE.name


def end_of(day: date) -> datetime:
    return datetime.combine(day, time.max, tzinfo=timezone.utc)


def test_backfill_then_status_shows_a_forecast_and_a_second_backfill_writes_nothing(cli, example, tmp_path):
    first = cli("backfill", str(example), "--json")
    assert first.exit_code == 0, first.output
    doc = json.loads(first.stdout)
    rows = {r["id"]: r for r in doc["key_results"]}
    assert (doc["from"], doc["to"], doc["dates"]) == ("2026-10-01", "2026-11-26", 9)
    assert doc["counts"] == {"key_results": 7, "backfilled": 1, "skipped": 6, "measured": 9, "written": 9,
                             "already": 0, "failed": 0}
    assert {k for k, r in rows.items() if r["skipped"] == READS_THE_PRESENT} == set(rows) - {"activated-accounts"}
    assert [v["value"] for v in rows["activated-accounts"]["values"]] == [0, 24, 51, 76, 107, 136, 169, 199, 234]
    assert doc["source_calls"] == -(-9 // DATES_PER_BATCH)         # one read of the CSV per batch of dates

    with open_store(f"sqlite:///{tmp_path / 'okr.db'}") as store:
        history = store.history("activated-accounts")
        assert [(c.kind, c.observed_at) for c in history] == [("backfill", end_of(d)) for d in WEEKLY]
        assert store.runs(limit=1)[0]["run_id"] == doc["run_id"] and store.runs(limit=1)[0]["written"] == 9

    status = cli("status", "--json")
    states = {s["kr_id"]: s for s in json.loads(status.stdout)}
    forecast = states["activated-accounts"]["forecast"]
    assert forecast is not None and forecast["at"] == "2026-12-31" and forecast["days"] == 9
    assert forecast["status"] in ("will_reach", "at_risk", "will_miss") and forecast["low"] <= forecast["value"] <= forecast["high"]
    shown = cli("status")
    assert "forecast" in shown.stdout and forecast["status"] in shown.stdout

    again = cli("backfill", str(example), "--json")
    redo = json.loads(again.stdout)
    assert again.exit_code == 0 and redo["counts"]["written"] == 0 and redo["counts"]["already"] == 9
    assert redo["counts"]["measured"] == 0 and redo["source_calls"] == 0      # known dates are not asked again
    table = cli("backfill", str(example))
    assert "0 check-ins written, 9 already there; 6 skipped" in table.stdout
    assert "this metric reads the present; add {as_of} to its query or a date_column" in table.stdout


def test_a_run_after_the_backfill_adds_today_and_the_forecast_shows_in_its_table(cli, example):
    assert cli("backfill", str(example)).exit_code == 0
    done = cli("run", str(example), "--no-prefect", "--json")
    rows = {r["id"]: r for r in json.loads(done.stdout)["key_results"]}
    assert rows["activated-accounts"]["value"] == 266 and rows["activated-accounts"]["outcome"] == "written"
    assert rows["activated-accounts"]["forecast"]["days"] == 10
    assert rows["checkout-nps"]["forecast"] is None and "at least 3 days" in rows["checkout-nps"]["forecast_reason"]
    table = cli("run", str(example), "--no-prefect")
    assert "forecast" in table.stdout and rows["activated-accounts"]["forecast"]["status"] in table.stdout


def test_a_dry_run_measures_and_writes_nothing(cli, example, tmp_path):
    done = cli("backfill", str(example), "--dry-run", "--json")
    doc = json.loads(done.stdout)
    assert done.exit_code == 0 and doc["dry_run"] and doc["counts"]["measured"] == 9 and doc["counts"]["written"] == 0
    assert not (tmp_path / "okr.db").exists()


@pytest.mark.parametrize(("args", "message"), [
    (["--every", "3h"], "--every '3h' is not a whole number of days"),
    (["--to", "2026-11-29"], "--to 2026-11-29 is not in the past"),
    (["--from", "2026-11-20", "--to", "2026-11-10"], "--from 2026-11-20 is after --to 2026-11-10"),
    (["--from", "1.10.2026"], "--from '1.10.2026' is not a date"),
    (["--only", "nope"], "--only nope: no such key result"),
])
def test_dates_that_make_no_backfill_exit_2_with_the_fix(cli, example, args, message):
    done = cli("backfill", str(example), *args)
    assert done.exit_code == 2 and message in done.stderr


def test_dates_run_from_the_start_every_n_days_up_to_the_end():
    assert dates_between(date(2026, 10, 1), date(2026, 10, 20), 7) == [date(2026, 10, 1), date(2026, 10, 8),
                                                                        date(2026, 10, 15)]
    assert dates_between(date(2026, 10, 1), date(2026, 10, 3), 1) == [date(2026, 10, 1), date(2026, 10, 2),
                                                                       date(2026, 10, 3)]
    with pytest.raises(BackfillError, match="at most 1000"):
        dates_between(date(2020, 1, 1), date(2026, 1, 1), 1)

# ---------------------------------------------------------------------------- Jira and GitHub

ISSUES = [FakeIssue(n, type="Bug" if n % 3 else "Story", category="done" if n % 2 else "new",
                    created=f"2026-{9 + n % 3:02d}-{1 + n % 27:02d}",
                    resolved=f"2026-{10 + n % 2:02d}-{1 + n % 27:02d}" if n % 2 else None) for n in range(1, 60)]
RESOLVED = 'project = PAY AND resolved <= "{as_of}"'
BUGS_RESOLVED = 'project = PAY AND type = Bug AND resolved <= "{as_of}"'
CREATED = 'project = PAY AND created <= "{as_of}"'
SEARCHES = ("repo:acme/app is:pr is:merged merged:<={as_of}", "repo:acme/app is:issue is:closed closed:<={as_of}",
            "repo:acme/app is:issue created:<={as_of}")


def api_config(tmp_path: Path, jira_url: str, github_api: str) -> Path:
    krs = [f"      - {{id: jira-{i}, title: J{i}, source: jira, target: 100, metric: {{jql: '{q}', evidence: false}}}}"
           for i, q in enumerate((RESOLVED, BUGS_RESOLVED, CREATED, RESOLVED))]            # RESOLVED twice
    krs.append(f"      - {{id: jira-ratio, title: R, source: jira, target: 100, "
               f"metric: {{jql_done: '{BUGS_RESOLVED}', jql_total: '{CREATED}'}}}}")       # the same two queries again
    krs += [f"      - {{id: gh-{i}, title: G{i}, source: gh, target: 100, metric: {{search: \"{q}\", evidence: false}}}}"
            for i, q in enumerate(SEARCHES + SEARCHES[:1])]
    krs.append("      - {id: gh-milestone, title: M, source: gh, target: 100, "
               "metric: {repo: acme/app, milestone: v2.0, aggregate: percent_done}}")
    config = tmp_path / "okrs.yaml"
    config.write_text(f"""period: 2026-Q4
sources:
  jira: {{type: jira, url: {jira_url}, email: {EMAIL}, token: "${{BACKFILL_TOKEN}}"}}
  gh: {{type: github, token: "${{BACKFILL_TOKEN}}", base_url: {github_api}}}
objectives:
  - id: o
    title: History from the APIs
    key_results:
""" + "\n".join(krs) + "\n", encoding="utf-8")
    return config


def test_api_calls_stay_within_dates_times_distinct_queries(tmp_path, monkeypatch):
    monkeypatch.setenv("BACKFILL_TOKEN", TOKEN)
    totals = {q.replace("{as_of}", d.isoformat()): 3 * k + i for k, d in enumerate(WEEKLY) for i, q in enumerate(SEARCHES)}
    with FakeJira(ISSUES, email=EMAIL, token=TOKEN) as jira, FakeGitHub(TOKEN, totals=totals) as gh:
        plan = load_plan([api_config(tmp_path, jira.url, gh.base_url)], f"sqlite:///{tmp_path / 'okr.db'}")
        progress: list[int] = []
        result = backfill(plan, BackfillOptions(), local_services(on_progress=progress.append))
        jira_calls, gh_calls = list(jira.calls), list(gh.requests)
        again = backfill(plan, BackfillOptions(), local_services())
        asked_again = len(jira.calls) - len(jira_calls) + len(gh.requests) - len(gh_calls)

    rows = {r["id"]: r for r in result["key_results"]}
    assert rows["gh-milestone"]["skipped"] == READS_THE_PRESENT
    assert result["counts"]["failed"] == 0 and result["counts"]["written"] == 9 * 9     # 9 key results, 9 dates
    assert sum(progress) == 9 * 9                                        # the bar: key results x dates
    batches = -(-9 // DATES_PER_BATCH)
    # Jira: 3 distinct queries a date (dedup across key results and the ratio), + serverInfo per batch
    searches = [c for c in jira_calls if c.path.endswith("approximate-count")]
    assert len(searches) == 3 * 9 and len(jira_calls) == 3 * 9 + batches
    # GitHub: 3 distinct searches a date, batched through GraphQL (20 a request): 12 a batch of 4 dates
    assert all(path == "/api/graphql" for _, path, _ in gh_calls) and len(gh_calls) == batches
    assert len(jira_calls) + len(gh_calls) <= 9 * (3 + 3) + 2 * batches
    assert again["counts"]["written"] == 0 and asked_again == 0          # idempotent, and nothing asked again

    with open_store(plan.store_url) as store:
        jira_history = store.history("jira-0")
        gh_history = store.history("gh-1")
    resolved_by = [sum(1 for i in ISSUES if i.resolved and i.resolved <= d.isoformat()) for d in WEEKLY]
    assert [c.value for c in jira_history] == resolved_by                # each date's own answer
    assert [c.value for c in gh_history] == [3 * k + 1 for k in range(9)]
    assert {c.kind for c in jira_history + gh_history} == {"backfill"}


def test_backfilled_check_ins_are_not_queued_for_publish_targets(tmp_path):
    from test_publish_seam import MemoryTarget, Tool
    from okrsync.publish import contract_problems

    (tmp_path / "a.csv").write_text("week,n\n2026-10-02,5\n2026-10-20,7\n", encoding="utf-8")
    config = tmp_path / "okrs.yaml"
    config.write_text("period: 2026-Q4\nsources: {s: {type: spreadsheet, path: a.csv}}\n"
                      "publish:\n  okr-tool: {type: memory}\nobjectives:\n"
                      "  - {id: o, title: O, key_results: [{id: n, title: N, source: s, target: 100, "
                      "metric: {column: n, aggregate: sum, date_column: week}}]}\n", encoding="utf-8")
    tool = Tool()
    targets = Registry({"memory": MemoryTarget(tool)}, kind="publish target", problems=contract_problems)
    plan = load_plan([config], store=f"sqlite:///{tmp_path / 'okr.db'}", targets=targets)
    services = Services(registry=default_registry(), open_store=open_store, targets=targets)
    done = backfill(plan, BackfillOptions(), services)
    assert done["counts"]["written"] == 9
    with open_store(plan.store_url) as store:
        assert [s["pending"] + s["delivered"] for s in store.delivery_states(["okr-tool"])] in ([], [0])
    sync(plan, RunOptions(), services)                                   # a run publishes its own check-in
    assert [w[1] for w in tool.writes] == [12]


def test_a_key_result_whose_period_has_no_date_in_range_is_skipped_with_why(tmp_path):
    (tmp_path / "a.csv").write_text("week,n\n2026-10-02,5\n", encoding="utf-8")
    config = tmp_path / "okrs.yaml"
    config.write_text("period: 2026-Q4\nsources: {s: {type: spreadsheet, path: a.csv}}\nobjectives:\n"
                      "  - {id: o, title: O, key_results: [{id: q4, title: Q4, source: s, target: 100, "
                      "metric: {column: n, aggregate: sum, date_column: week}},\n"
                      "    {id: q1, title: next year, source: s, target: 100, period: 2027-Q1, "
                      "metric: {column: n, aggregate: sum, date_column: week}}]}\n", encoding="utf-8")
    plan = load_plan([config], f"sqlite:///{tmp_path / 'okr.db'}")
    done = backfill(plan, BackfillOptions(every=1, start=date(2026, 11, 1)), local_services())
    rows = {r["id"]: r for r in done["key_results"]}
    assert rows["q4"]["dates"] == 28 and rows["q4"]["written"] == 28
    assert rows["q1"]["skipped"] == "its period 2027-Q1 has no date in 2026-11-01..2026-11-28"
