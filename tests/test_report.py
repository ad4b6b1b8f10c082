"""okr-sync report: what it gathers from the store, what it writes, and how it reads in a real browser.

The browser tests drive a headless Chromium (tests/headless.py) over file:// pages: no console error,
no request other than file://, every key result's card and chart, links where they should point,
phone width without sideways scrolling, print to PDF, and screenshots written for people to look at
(into $OKR_SYNC_SCREENSHOTS when set, else the test's tmp folder).
"""
from __future__ import annotations

from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import pytest

from conftest import EXAMPLE
from connectors.sql_store import open_store
from okrsync import report_data
from okrsync.records import CheckinRecord, StoredCheckin
from okrsync.report import write_report
from okrsync.report_style import PALETTE, contrast
from report_history import write_history

NOW = datetime(2026, 12, 30, 12, 0, tzinfo=timezone.utc)


def _checkin(at: datetime, evidence, value=1.0, kind="automatic") -> StoredCheckin:
    return StoredCheckin(kr_id="k", value=value, progress=None, expected=None, status=None, observed_at=at,
                         kind=kind, evidence=evidence)


# ---------------------------------------------------------------------------- plain parts


def test_every_text_colour_meets_wcag_aa_and_every_chart_line_3_to_1():
    for fg in (PALETTE.text, PALETTE.muted, PALETTE.link):
        for bg in (PALETTE.card, PALETTE.page):
            assert contrast(fg, bg) >= 4.5, (fg, bg)
    for name, fg, bg in PALETTE.badges:
        assert contrast(fg, bg) >= 4.5, name
        if name != "error":     # the bar's fill is the badge's text colour, against the bar's track
            assert contrast(fg, PALETTE.track) >= 3, name
    assert contrast(PALETTE.badge("error")[1], PALETTE.track) >= 3
    for colour in PALETTE.series:
        assert contrast(colour, "#ffffff") >= 3, colour


def test_contrast_is_the_wcag_formula():
    assert round(contrast("#000000", "#ffffff"), 1) == 21.0
    assert round(contrast("#767676", "#ffffff"), 2) == 4.54     # the well-known AA grey


def test_evidence_change_is_the_set_difference_on_key_between_the_last_two_checkins_with_evidence():
    t = datetime(2026, 11, 1, tzinfo=timezone.utc)
    history = [_checkin(t, ({"key": "PAY-1"}, {"key": "PAY-2"})),
               _checkin(t + timedelta(days=1), None, kind="manual"),          # no evidence: skipped
               _checkin(t + timedelta(days=2), ({"key": "PAY-2", "title": "b"}, {"key": "PAY-3", "title": "c"}))]
    change = report_data.evidence_change(history)
    assert [e["key"] for e in change.entered] == ["PAY-3"]
    assert [e["key"] for e in change.left] == ["PAY-1"]
    assert change.since == t and [e["key"] for e in change.current] == ["PAY-2", "PAY-3"]
    assert report_data.evidence_change(history[:1]).since is None
    assert report_data.evidence_change([_checkin(t, None)]) is None


@pytest.mark.parametrize("start,end,label", [
    (date(2026, 10, 1), date(2026, 12, 31), "2026-Q4"), (date(2026, 1, 1), date(2026, 6, 30), "2026-H1"),
    (date(2026, 11, 1), date(2026, 11, 30), "2026-11"), (date(2026, 1, 1), date(2026, 12, 31), "2026"),
    (date(2026, 10, 5), date(2026, 12, 31), "2026-10-05 – 2026-12-31")])
def test_period_labels(start, end, label):
    assert report_data.period_label(start, end) == label


@pytest.fixture
def history_store(tmp_path):
    store = open_store(f"sqlite:///{tmp_path / 'history.db'}")
    ids = write_history(store, key_results=12, days=40)
    yield store, ids
    store.close()


def test_gather_reads_each_key_result_with_its_period_history_evidence_and_manual_checkins(history_store):
    store, ids = history_store
    data = report_data.gather(store, now=NOW)
    assert [k.id for k in data.key_results] == ids
    assert [o.id for o in data.objectives] == ["obj-00", "obj-01", "obj-02"]
    kr0 = data.key_results[0]
    assert len(kr0.points) == len(store.history("kr-000"))
    assert kr0.link.startswith("https://jira.example.com/issues/")
    assert kr0.evidence is not None and kr0.evidence.since is not None
    kept = data.key_results[5]                         # ends on a manual check-in: the link is the last sync's
    assert kept.kind == "manual" and kept.link == "https://sheets.example.com/okrs#kr-5"
    assert sum(data.counts.values()) == 12 and data.periods == ["2026-Q4"]
    assert kr0.forecast is not None and kr0.forecast.low <= kr0.forecast.value <= kr0.forecast.high


def test_the_card_shows_the_forecast_of_okrsync_forecast(history_store, tmp_path):
    """The report asks okrsync.forecast, as `okr-sync status` does: the same forecast on the card."""
    from okrsync.forecast import of_state

    store, _ = history_store
    state = store.key_results(["kr-001"])[0]
    points = [(c.observed_at, c.value) for c in store.history("kr-001")]
    expected, _ = of_state(state, points, NOW)
    data = report_data.gather(store, kr_ids=["kr-001"], now=NOW)
    f = data.key_results[0].forecast
    assert expected is not None and f is not None
    assert (f.value, f.low, f.high, f.status, f.at) == (expected.value, expected.low, expected.high, expected.status,
                                                         date(2026, 12, 31))
    write_report(store, tmp_path / "site", kr_ids=["kr-001"], now=NOW)
    page = (tmp_path / "site" / "objectives" / "obj-00.html").read_text()
    assert "by Dec 31, 2026 (range" in page and expected.status.replace("_", " ") in page
    assert "forecast range" in page


def test_too_little_history_says_why_on_the_card(tmp_path):
    store = open_store(f"sqlite:///{tmp_path / 'short.db'}")
    try:
        write_history(store, key_results=1, days=2)
        (kr,) = report_data.gather(store, now=NOW).key_results
    finally:
        store.close()
    assert kr.forecast is None and "at least 3 days" in kr.forecast_note


def test_the_error_of_the_last_run_shows_on_the_card_and_in_needs_attention(history_store, tmp_path):
    store, _ = history_store
    write_report(store, tmp_path / "site", now=NOW, errors={"kr-002": "source `jira` answered HTTP 401: check the token"})
    index = (tmp_path / "site" / "index.html").read_text()
    page = (tmp_path / "site" / "objectives" / "obj-00.html").read_text()
    assert "Last sync failed:</strong> source `jira` answered HTTP 401: check the token" in page
    attention = index.split('id="attention-h"')[1].split("</section>")[0]
    assert "objectives/obj-00.html#kr-kr-002" in attention


def test_texts_from_the_store_are_escaped(tmp_path):
    from okrsync.records import KeyResultRecord, ObjectiveRecord

    hostile = '<script>alert("x")</script><img src=http://127.0.0.1:9/x.png>'
    with open_store(f"sqlite:///{tmp_path / 'x.db'}") as store:
        store.write_sync(run_id="r1", started_at=NOW, objectives=[ObjectiveRecord("o", hostile, hostile)],
                         key_results=[KeyResultRecord("k", "o", hostile, "s", 0, 10, unit=hostile,
                                                      period_start=date(2026, 10, 1), period_end=date(2026, 12, 31))],
                         checkins=[CheckinRecord("k", 5, 0.5, 0.9, "off_track", NOW, note=hostile,
                                                 link="javascript:alert(1)", evidence=({"key": hostile, "title": hostile,
                                                                                        "url": "javascript:alert(2)"},))],
                         config_files=["x.yaml"], failed=0)
        write_report(store, tmp_path / "site", now=NOW)
    for page in (tmp_path / "site" / "index.html", tmp_path / "site" / "objectives" / "o.html"):
        html = page.read_text()
        assert "<script" not in html and "<img" not in html and "javascript:" not in html
        assert "&lt;script&gt;" in html


# ---------------------------------------------------------------------------- the CLI


def test_report_of_the_example_after_a_run(cli, tmp_path):
    ran = cli("run", str(EXAMPLE), "--no-prefect")
    assert ran.exit_code == 0, ran.output
    done = cli("report", str(EXAMPLE), "--out", "site")
    assert done.exit_code == 0, done.output
    assert "Wrote the report of 7 key result(s) on 3 page(s)" in done.output
    assert (tmp_path / "site" / "index.html").is_file()
    assert sorted(p.name for p in (tmp_path / "site" / "objectives").iterdir()) == ["checkout.html", "growth.html"]


def test_a_spreadsheet_link_setting_becomes_the_checkins_link(cli, tmp_path, write_config):
    data = Path(EXAMPLE).parent / "data" / "survey.csv"
    config = write_config(f"""
period: 2026-Q4
sources:
  survey: {{type: spreadsheet, path: {data}, link: "https://intranet.example.com/okr/survey"}}
objectives:
  - id: checkout
    title: Checkout
    key_results:
      - {{id: checkout-nps, title: NPS, source: survey, metric: {{cell: C7}}, baseline: 30, target: 45}}
""")
    assert cli("run", str(config), "--no-prefect").exit_code == 0
    assert cli("report", str(config), "--out", "site").exit_code == 0
    page = (tmp_path / "site" / "objectives" / "checkout.html").read_text()
    assert 'href="https://intranet.example.com/okr/survey"' in page and "file://" not in page


def test_a_file_link_is_shown_as_a_path_not_linked(cli, tmp_path):
    assert cli("run", str(EXAMPLE), "--no-prefect").exit_code == 0
    assert cli("report", "--out", "site").exit_code == 0
    page = (tmp_path / "site" / "objectives" / "checkout.html").read_text()
    assert 'href="file:' not in page and "survey.csv" in page and "set <code>link:</code> on source survey" in page


def test_a_bad_link_setting_is_a_config_error(cli, write_config):
    config = write_config("""
period: 2026-Q4
sources:
  survey: {type: spreadsheet, path: data.csv, link: "file:///srv/okr/survey.csv"}
objectives:
  - id: o
    title: O
    key_results:
      - {id: k, title: K, source: survey, metric: {cell: C7}, target: 45}
""")
    done = cli("validate", str(config))
    assert done.exit_code == 2
    assert "okrs.yaml:4: sources.survey: link 'file:///srv/okr/survey.csv' must be an http(s) URL" in done.output


def test_without_the_report_extra_one_line_says_how_to_install_it(cli, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "pygal" else real(name, *a))
    done = cli("report", "--out", "site")
    assert done.exit_code == 1
    assert done.output.strip() == "error: the report needs pygal, which is not installed: pip install 'okr-sync[report]'"


def test_an_unwritable_out_folder_is_one_line(cli, tmp_path):
    assert cli("run", str(EXAMPLE), "--no-prefect").exit_code == 0
    (tmp_path / "blocked").write_text("a file, not a folder")
    done = cli("report", "--out", "blocked")
    assert done.exit_code == 1
    assert done.output.startswith("error: cannot write the report to blocked (") and "Traceback" not in done.output


def test_pages_of_objectives_no_longer_in_the_report_are_removed(history_store, tmp_path):
    store, _ = history_store
    write_report(store, tmp_path / "site", now=NOW)
    assert len(list((tmp_path / "site" / "objectives").glob("*.html"))) == 3
    write_report(store, tmp_path / "site", kr_ids=["kr-000"], now=NOW)
    assert [p.name for p in (tmp_path / "site" / "objectives").glob("*.html")] == ["obj-00.html"]


# ---------------------------------------------------------------------------- after a run


def test_a_flow_run_rewrites_the_report_and_its_artifact_links_it(prefect_harness, write_config, tmp_path, monkeypatch):
    from okrsync import engine
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    from flows.sync import sync_okrs

    text = Path(EXAMPLE).read_text().replace("path: data/", f"path: {Path(EXAMPLE).parent / 'data'}/")
    config = write_config("report: {out: site, url: \"https://okrs.example.com/example/\"}\n" + text)
    monkeypatch.setattr(engine, "now", lambda: datetime(2026, 11, 20, 12, tzinfo=timezone.utc))   # the run's moment
    result = sync_okrs(config_paths=[str(config)], store=f"sqlite:///{tmp_path / 'okr.db'}")
    assert result["report"]["errors"] == []
    assert result["report"]["reports"][str(config)]["key_results"] == 7
    assert (tmp_path / "site" / "objectives" / "growth.html").is_file()
    with get_client(sync_client=True) as client:
        found = client.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=["okr-sync-summary-okrs"])))
    markdown = next(a.data for a in found if result["run_id"] in (a.description or ""))
    risky = [r["id"] for r in result["key_results"] if r["status"] in ("at_risk", "off_track")]
    assert "Status: " in markdown and f"### At risk or off track ({len(risky)})" in markdown
    assert all(f"| {kr} |" in markdown.split("### At risk or off track")[1] for kr in risky)
    assert "Report: [https://okrs.example.com/example/](https://okrs.example.com/example/)" in markdown


def test_a_report_that_cannot_be_written_never_fails_the_run(cli, write_config, tmp_path):
    text = Path(EXAMPLE).read_text().replace("path: data/", f"path: {Path(EXAMPLE).parent / 'data'}/")
    (tmp_path / "blocked").write_text("a file where the folder should be")
    config = write_config("report: {out: blocked}\n" + text)
    done = cli("run", str(config), "--no-prefect")
    assert done.exit_code == 0
    assert "warning: report of okrs.yaml not written: cannot write" in done.output and "check `report: out:`" in done.output
