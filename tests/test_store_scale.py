"""The store at an organisation's scale: a sync of thousands of key results is a few statements, not
two per key result; the latest check-ins are read in chunks, status filters in SQL; the decisions
are those a sync of one key result at a time makes."""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import Engine, create_engine, event, text

from connectors.sql_store import open_store
from connectors.sql_store.rows import IN_CHUNK
from okrsync.records import CheckinRecord, KeyResultRecord, ObjectiveRecord

T0 = datetime(2026, 10, 1, 9, 0, tzinfo=timezone.utc)


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest, tmp_path) -> str:
    return f"sqlite:///{tmp_path / 'okr.db'}" if request.param == "sqlite" else request.getfixturevalue("pg_url")


def records(n: int) -> list[KeyResultRecord]:
    return [KeyResultRecord(id=f"kr-{i:05d}", objective_id=f"obj-{i % 7}", title=f"KR {i}", source="jira",
                            baseline=0, target=100) for i in range(n)]


def checkin(kr_id: str, value: float, at: datetime, kind: str = "automatic") -> CheckinRecord:
    return CheckinRecord(kr_id=kr_id, value=value, progress=value / 100, expected=0.5, status="on_track",
                         observed_at=at, source="jira", run_id="r", kind=kind)


def write(store, krs: list[KeyResultRecord], checkins: list[CheckinRecord], run_id: str):
    objectives = [ObjectiveRecord(f"obj-{i}", f"Objective {i}") for i in range(7)]
    return store.write_sync(run_id=run_id, started_at=T0, objectives=objectives, key_results=krs, checkins=checkins,
                            config_files=["okrs.yaml"], failed=0)


@contextmanager
def statements() -> Iterator[list[str]]:
    seen: list[str] = []

    def count(conn, cursor, statement, parameters, context, executemany) -> None:
        seen.append(statement.split(None, 1)[0].upper())

    event.listen(Engine, "before_cursor_execute", count)
    try:
        yield seen
    finally:
        event.remove(Engine, "before_cursor_execute", count)


def test_a_sync_of_many_key_results_costs_statements_by_the_chunk_not_by_the_key_result(url):
    with open_store(url) as store:
        few, many = records(20), records(3 * IN_CHUNK)
        write(store, many, [checkin(k.id, 1, T0) for k in many], "seed")
        costs = {}
        for day, (name, krs) in enumerate((("few", few), ("many", many)), start=1):
            with statements() as seen:
                report = write(store, krs, [checkin(k.id, 1 + day, T0 + timedelta(days=day)) for k in krs], name)
            assert report.written == [k.id for k in krs]
            costs[name] = len(seen)
        # 3 chunks of key results locked and their latest check-ins read, instead of 1 each; the inserts
        # are batched by the driver (SQLAlchemy's insertmanyvalues), a handful of statements at most
        assert costs["many"] - costs["few"] <= 2 * 2 + 6
        assert costs["many"] < 40


def test_decisions_match_one_key_result_at_a_time_across_chunks_and_repeats(url):
    with open_store(url) as store:
        krs = records(IN_CHUNK + 10)
        write(store, krs, [checkin(k.id, 5, T0) for k in krs], "seed")
        later = T0 + timedelta(days=1)
        store.add_manual_checkin(krs[-1].id, 7, observed_at=later)          # a newer manual value, in chunk 2
        checkins = [checkin(k.id, 5 if i % 2 else 6, later + timedelta(hours=1)) for i, k in enumerate(krs)]
        checkins += [checkin(krs[0].id, 6, later + timedelta(hours=2)),     # the same key result again: same value
                     checkin(krs[1].id, 9, later + timedelta(hours=2))]     # ... and a new one
        report = write(store, krs, checkins, "run")
        expected_written = [k.id for i, k in enumerate(krs[:-1]) if not i % 2] + [krs[1].id]
        assert sorted(report.written) == sorted(expected_written)
        assert sorted(report.unchanged) == sorted([k.id for i, k in enumerate(krs[:-1]) if i % 2] + [krs[0].id])
        assert report.kept_manual == [krs[-1].id]
        assert [c.value for c in store.history(krs[1].id)] == [5, 9]
        assert [c.value for c in store.history(krs[0].id)] == [5, 6]


def test_status_of_some_key_results_filters_in_sql_and_keeps_the_order(url):
    with open_store(url) as store:
        krs = records(2 * IN_CHUNK + 3)
        write(store, krs, [checkin(k.id, 1, T0) for k in krs], "seed")
        write(store, krs, [checkin(k.id, 2, T0 + timedelta(days=1)) for k in krs[::2]], "again")
        everything = store.key_results()
        assert [(s.objective_id, s.kr_id) for s in everything] == sorted((k.objective_id, k.id) for k in krs)
        wanted = [k.id for k in krs[::3]] + ["kr-not-there"]
        some = store.key_results(wanted)
        assert [s.kr_id for s in some] == [s.kr_id for s in everything if s.kr_id in set(wanted)]
        last = {s.kr_id: s.last.value for s in some}
        assert last == {k.id: (2 if i % 2 == 0 else 1) for i, k in enumerate(krs) if i % 3 == 0}


def test_the_latest_check_in_skips_one_whose_time_cannot_be_read(tmp_path):
    url = f"sqlite:///{tmp_path / 'okr.db'}"
    with open_store(url) as store:
        krs = records(3)
        write(store, krs, [checkin(k.id, 4, T0) for k in krs], "seed")
    engine = create_engine(url)
    with engine.begin() as conn:     # a hand-edited row whose observed_at sorts after every date in SQLite
        conn.execute(text("INSERT INTO okr_checkins (kr_id, value, observed_at, kind, created_at) "
                          "VALUES ('kr-00001', 99, 'not a date', 'automatic', '2026-10-01 09:00:00')"))
    engine.dispose()
    with open_store(url) as store:
        assert {s.kr_id: s.last.value for s in store.key_results()} == {k.id: 4 for k in krs}
        report = write(store, krs, [checkin(k.id, 4, T0 + timedelta(days=1)) for k in krs], "again")
        assert report.unchanged == [k.id for k in krs]


def test_the_report_gives_each_key_results_value_before_the_run(url):
    with open_store(url) as store:
        krs = records(4)
        write(store, krs[:3], [checkin(k.id, 10 + i, T0) for i, k in enumerate(krs[:3])], "seed")
        later = T0 + timedelta(days=1)
        # kr 0 measured again, kr 1 failed this run (no check-in), kr 2 measured the same, kr 3 is new
        report = write(store, krs, [checkin(krs[0].id, 20, later), checkin(krs[2].id, 12, later),
                                    checkin(krs[3].id, 1, later)], "run")
        assert report.previous == {krs[0].id: 10, krs[1].id: 11, krs[2].id: 12}
        assert (report.written, report.unchanged) == ([krs[0].id, krs[3].id], [krs[2].id])


def test_a_large_run_queues_each_key_results_own_check_in_across_write_chunks(url):
    from connectors.sql_store.store import WRITE_CHUNK

    krs = records(2 * WRITE_CHUNK + 7)
    values = {k.id: float(i) for i, k in enumerate(krs)}
    with open_store(url) as store:
        report = store.write_sync(run_id="big", started_at=T0, objectives=[ObjectiveRecord(f"obj-{i}", f"O {i}") for i in range(7)],
                                  key_results=krs, checkins=[checkin(k.id, values[k.id], T0) for k in krs],
                                  config_files=["okrs.yaml"], failed=0,
                                  publish={k.id: [("okr-hook", None)] for k in krs if values[k.id] % 2 == 0})
        assert len(report.written) == len(krs) and report.queued == WRITE_CHUNK + 4
        claimed = store.claim_deliveries("run-a", ["okr-hook"])
        assert len(claimed) == WRITE_CHUNK + 4
        assert all(d.value == values[d.kr_id] for d in claimed)          # each queued row points at its own check-in
        assert {s.kr_id: s.last.value for s in store.key_results()} == values
