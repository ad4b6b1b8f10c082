"""The CLI's tables at an organisation's scale: over SUMMARY_ROWS key results, counts by status and the
key results needing attention first (failures, off track, at risk); `--all` for every row."""
from __future__ import annotations

import re
from datetime import datetime, timezone

from rich.console import Console

from okrsync import render
from okrsync.records import KeyResultState, StoredCheckin

STATUSES = ("on_track", "done", "on_track", "at_risk", "on_track", "off_track", "on_track", "done")


def run_result(n: int) -> dict:
    rows = []
    for i in range(n):
        failed = i % 25 == 24
        rows.append({"id": f"kr-{i:04d}", "value": None if failed else float(i), "baseline": 0.0, "target": 100.0,
                     "progress": None if failed else i / 100, "expected": 0.5,
                     "status": None if failed else STATUSES[i % len(STATUSES)],
                     "link": f"https://example.com/{i}", "query": None, "source": "jira", "unit": None,
                     "error": "Jira rejected the JQL: fix the query" if failed else None})
    failed = sum(1 for r in rows if r["error"])
    return {"run_id": "abc123", "as_of": "2026-11-20T12:00:00+00:00", "dry_run": False, "store": "sqlite:///x.db",
            "counts": {"key_results": n, "synced": n - failed, "failed": failed, "written": n - failed, "unchanged": 0,
                       "kept_manual": 0}, "seconds": 1.0, "source_calls": 7, "key_results": rows}


def shown(draw) -> str:
    console = Console(record=True, width=250)
    draw(console)
    return console.export_text()


def ids_in(text: str) -> list[str]:
    return re.findall(r"kr-\d{4}", text)


def test_a_run_of_up_to_summary_rows_key_results_shows_every_row_in_order():
    text = shown(lambda c: render.run_table(c, run_result(render.SUMMARY_ROWS)))
    assert ids_in(text) == [f"kr-{i:04d}" for i in range(render.SUMMARY_ROWS)]
    assert "not shown" not in text and "key results: " not in text


def test_a_large_run_shows_counts_then_failures_off_track_and_at_risk_first():
    result = run_result(1000)
    text = shown(lambda c: render.run_table(c, result))
    assert "1,000 key results: 40 failed, 120 off_track, 120 at_risk, 480 on_track, 240 done" in text
    listed = ids_in(text)
    assert len(listed) == render.SUMMARY_ROWS
    kinds = {r["id"]: ("failed" if r["error"] else r["status"]) for r in result["key_results"]}
    assert [kinds[i] for i in listed] == ["failed"] * 40 + ["off_track"] * 10       # worst first, then in order
    assert listed[:3] == ["kr-0024", "kr-0049", "kr-0074"]
    assert "950 more key results not shown: `okr-sync run --all` shows every row" in text
    assert "960 of 1000 key results synced; 960 check-ins written" in text         # the closing line as before


def test_all_shows_every_row_of_a_large_run():
    text = shown(lambda c: render.run_table(c, run_result(120), show_all=True))
    assert ids_in(text) == [f"kr-{i:04d}" for i in range(120)]
    assert "not shown" not in text


def state(i: int, status: str | None) -> KeyResultState:
    last = None if status is None else StoredCheckin(
        kr_id=f"kr-{i:04d}", value=float(i), progress=0.4, expected=0.5, status=status,
        observed_at=datetime(2026, 11, 1, tzinfo=timezone.utc), id=i)
    return KeyResultState(objective_id=f"obj-{i // 10}", objective_title="An objective", owner=None,
                          kr_id=f"kr-{i:04d}", title=f"Key result {i}", baseline=0.0, target=10.0, unit=None,
                          source="jira", last=last)


def test_a_large_status_board_shows_counts_then_those_needing_attention():
    states = [state(i, None if i == 7 else STATUSES[i % len(STATUSES)]) for i in range(200)]
    text = shown(lambda c: render.status_table(c, states))
    assert "200 key results: 25 off_track, 25 at_risk, 100 on_track, 49 done, 1 no check-in" in text
    listed = ids_in(text)
    assert len(listed) == render.SUMMARY_ROWS
    assert listed[:25] == [f"kr-{i:04d}" for i in range(5, 200, 8)]                 # off track first
    assert listed[25:50] == [f"kr-{i:04d}" for i in range(3, 200, 8)]               # then at risk
    assert "150 more key results not shown: `okr-sync status --all` shows every row" in text
    everything = shown(lambda c: render.status_table(c, states, show_all=True))
    assert len(ids_in(everything)) == 200


def test_a_large_status_board_forecasts_only_the_rows_it_shows():
    states = [state(i, STATUSES[i % len(STATUSES)]) for i in range(200)]
    asked: list[list[str]] = []

    def forecasts_for(rows):
        asked.append([s.kr_id for s in rows])
        return {s.kr_id: {"value": 9.5, "low": 9.0, "high": 10.0, "status": "at_risk"} for s in rows}

    text = shown(lambda c: render.status_table(c, states, forecasts_for))
    assert len(asked) == 1 and asked[0] == ids_in(text) and len(asked[0]) == render.SUMMARY_ROWS
    assert text.count("9.5 (9–10) at_risk") == render.SUMMARY_ROWS
    asked.clear()
    everything = shown(lambda c: render.status_table(c, states, forecasts_for, show_all=True))
    assert len(asked[0]) == 200 and everything.count("at_risk") >= 200


def test_artifacts_of_a_large_run_hold_those_needing_attention_first_and_say_how_many_in_all():
    from flows import artifacts

    small = run_result(artifacts.ARTIFACT_ROWS)
    assert [r["key result"] for r in artifacts.table_rows(small)] == [r["id"] for r in small["key_results"]]
    assert "not shown here" not in artifacts.summary_markdown(small)

    large = run_result(artifacts.ARTIFACT_ROWS + 500)
    rows = artifacts.table_rows(large)
    assert len(rows) == artifacts.ARTIFACT_ROWS
    failed = [r["id"] for r in large["key_results"] if r["error"]]
    assert [r["key result"] for r in rows[:len(failed)]] == failed                 # failures first
    assert [r["status"] for r in rows[len(failed):len(failed) + 3]] == ["off_track"] * 3
    markdown = artifacts.summary_markdown(large)
    assert f"### Failed ({len(failed)})" in markdown and "**1500 key results**" in markdown
    assert "500 more key results not shown here: the 1,000 needing attention first" in markdown
    failed_part = markdown.split("### Failed")[1].split("###")[0]
    listed_part = markdown.split("### Key results")[1]
    assert failed_part.count("| kr-") + listed_part.count("| kr-") == artifacts.ARTIFACT_ROWS
    assert len(markdown.encode()) < 1_000_000                        # well under what Prefect's event bus carries


def test_run_and_status_summarise_a_large_config_and_all_shows_every_row(cli, tmp_path):
    (tmp_path / "scores.csv").write_text("team,score\n" + "".join(f"t{i},{i}\n" for i in range(60)), encoding="utf-8")
    krs = "".join(f"      - {{id: kr-{i:04d}, title: Score {i}, source: scores, metric: {{cell: B{i + 2}}}, "
                  f"target: {100 if i % 3 else 1}}}\n" for i in range(60))
    (tmp_path / "okrs.yaml").write_text("period: {start: 2026-01-01, end: 2026-12-31}\n"
                                        "sources:\n  scores: {type: spreadsheet, path: scores.csv}\n"
                                        "objectives:\n  - id: obj\n    title: Scores\n    key_results:\n" + krs,
                                        encoding="utf-8")
    summary = cli("run", "okrs.yaml")
    assert summary.exit_code == 0, summary.output
    assert "60 key results: " in summary.output and "10 more key results not shown" in summary.output
    assert len(set(ids_in(summary.output))) == render.SUMMARY_ROWS
    every = cli("run", "okrs.yaml", "--all")
    assert len(set(ids_in(every.output))) == 60 and "not shown" not in every.output
    status = cli("status")
    assert "10 more key results not shown: `okr-sync status --all`" in status.output
    assert len(set(ids_in(cli("status", "--all").output))) == 60
