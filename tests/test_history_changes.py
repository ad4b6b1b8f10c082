"""`okr-sync history KR --changes`: which tickets entered and left a count between check-ins (the evidence
each check-in keeps), in the table and in --json."""
from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

from connectors.sql_store import open_store
from okrsync.changes import changes, describe
from okrsync.records import CheckinRecord, KeyResultRecord, ObjectiveRecord

T0 = datetime(2026, 11, 2, 9, tzinfo=timezone.utc)


def tickets(*keys: str) -> tuple[dict[str, str], ...]:
    return tuple({"key": k, "title": f"Fix {k.lower()}"} for k in keys)


def write(url: str, *checkins: tuple[float, tuple | None]) -> None:
    with open_store(url) as store:
        for day, (value, evidence) in enumerate(checkins):
            store.write_sync(run_id=f"r{day}", started_at=T0 + timedelta(days=day),
                             objectives=[ObjectiveRecord("pay", "Payments")],
                             key_results=[KeyResultRecord("closed-bugs", "pay", "Close bugs", "jira", 0, 40)],
                             checkins=[CheckinRecord("closed-bugs", value, value / 40, 0.5, "on_track",
                                                     T0 + timedelta(days=day), source="jira", evidence=evidence)],
                             config_files=["okrs.yaml"], failed=0)


def test_history_changes_lists_what_entered_and_left(cli, tmp_path):
    url = f"sqlite:///{tmp_path / 'okr.db'}"
    write(url, (2, tickets("PAY-7", "PAY-9")), (4, tickets("PAY-9", "PAY-12", "PAY-14", "PAY-15")),
          (3, tickets("PAY-12", "PAY-14", "PAY-15")), (5, None))
    shown = cli("history", "closed-bugs", "--changes")
    assert shown.exit_code == 0, shown.output
    text = " ".join(shown.stdout.split())
    assert "+3 entered: PAY-12 Fix pay-12, PAY-14 Fix pay-14, PAY-15 Fix pay-15; −1 left: PAY-7 Fix pay-7" in text
    assert "−1 left: PAY-9 Fix pay-9" in text and "first list" in text

    doc = json.loads(cli("history", "closed-bugs", "--changes", "--json").stdout)
    assert [d["changes"] is None for d in doc] == [True, False, False, True]
    assert [t["key"] for t in doc[1]["changes"]["entered"]] == ["PAY-12", "PAY-14", "PAY-15"]
    assert [t["key"] for t in doc[1]["changes"]["left"]] == ["PAY-7"] and doc[1]["changes"]["partial"] is False
    assert doc[1]["changes"]["since"] == T0.isoformat()
    assert doc[2]["evidence"] == [{"key": k, "title": f"Fix {k.lower()}"} for k in ("PAY-12", "PAY-14", "PAY-15")]
    plain = json.loads(cli("history", "closed-bugs", "--json").stdout)
    assert "changes" not in plain[0] and plain[0]["evidence"][0]["key"] == "PAY-7"


def test_a_list_shorter_than_its_count_says_the_changes_are_among_the_tickets_listed(tmp_path):
    url = f"sqlite:///{tmp_path / 'okr.db'}"
    write(url, (120, tickets("PAY-1", "PAY-2")), (121, tickets("PAY-2", "PAY-3")))
    with open_store(url) as store:
        found = changes(store.history("closed-bugs"))
    assert found[1]["partial"] is True
    assert describe(found[1]) == ("+1 entered: PAY-3 Fix pay-3; −1 left: PAY-1 Fix pay-1 "
                                  "(among the tickets listed only)")
    assert describe({"entered": [], "left": [], "partial": False}) == "no change in the tickets"
