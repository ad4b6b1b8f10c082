"""SqlStore against real databases: SQLite files in tmp_path, and a throwaway PostgreSQL
database on 127.0.0.1:5432 (skipped only when that server cannot be reached)."""
from __future__ import annotations

import sqlite3
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Connection, Engine, create_engine, event, inspect, make_url, text

from connectors import sql_store
from connectors.sql_store import SqlStore, open_store, schema_version
from okrsync.errors import StoreError
from okrsync.records import CheckinRecord, KeyResultRecord, ObjectiveRecord, WriteReport

T0 = datetime(2026, 10, 1, 9, 0, tzinfo=timezone.utc)


# --- fixtures and helpers -------------------------------------------------------------------

@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'okr-sync.db'}"




@pytest.fixture(params=["sqlite", "postgresql"])
def any_url(request: pytest.FixtureRequest) -> str:
    """The same test on a SQLite file and on PostgreSQL."""
    return request.getfixturevalue("sqlite_url" if request.param == "sqlite" else "pg_url")


@pytest.fixture
def store(sqlite_url: str) -> Iterator[SqlStore]:
    s = open_store(sqlite_url)
    yield s
    s.close()


def kr_ids(n: int) -> list[str]:
    return [f"kr-{i:02d}" for i in range(1, n + 1)]


def sync(
    store: SqlStore,
    values: dict[str, float],
    *,
    run_id: str | None = None,
    on_manual: str = "keep",
    observed_at: datetime = T0,
    extra: list[CheckinRecord] | None = None,
    title: str = "Make checkout fast",
    upsert: bool = True,
) -> WriteReport:
    """One sync run: objective 'checkout' with a key result per value (``upsert=False``:
    check-ins only, for key results already in the store)."""
    run_id = run_id or uuid.uuid4().hex
    krs = [
        KeyResultRecord(id=k, objective_id="checkout", title=f"KR {k}", source="survey",
                        baseline=0, target=100, unit="%", on_manual=on_manual)
        for k in values
    ]
    checkins = [
        CheckinRecord(kr_id=k, value=v, progress=v / 100, expected=0.5, status="on_track",
                      observed_at=observed_at, source="survey", query="B7",
                      link="file:///survey.csv", run_id=run_id)
        for k, v in values.items()
    ]
    objective = ObjectiveRecord(id="checkout", title=title, owner="payments",
                                config_file="okrs.yaml")
    return store.write_sync(
        run_id=run_id, started_at=observed_at,
        objectives=[objective] if upsert else [], key_results=krs if upsert else [],
        checkins=checkins + (extra or []), config_files=["okrs.yaml"], failed=0,
    )


def counts(url: str) -> dict[str, int]:
    """Rows per okr_ table, read with a plain engine (not through the store)."""
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return {
                t: conn.execute(text(f"SELECT count(*) FROM okr_{t}")).scalar_one()
                for t in ("objectives", "key_results", "checkins", "runs")
            }
    finally:
        engine.dispose()


def stored_version(url: str) -> str | None:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return conn.execute(
                text("SELECT value FROM okr_meta WHERE key = 'schema_version'")
            ).scalar_one_or_none()
    finally:
        engine.dispose()


def assert_one_line(error: pytest.ExceptionInfo[StoreError]) -> str:
    message = str(error.value)
    assert "\n" not in message and "Traceback" not in message and "[SQL" not in message
    return message


# --- schema ---------------------------------------------------------------------------------

def test_schema_created_on_first_use_and_version_recorded(sqlite_url: str) -> None:
    store = SqlStore(sqlite_url)
    assert not Path(sqlite_url.removeprefix("sqlite:///")).exists()  # no schema work yet
    store.ensure_schema()
    store.close()
    engine = create_engine(sqlite_url)
    tables = set(inspect(engine).get_table_names())
    indexes = {i["name"] for i in inspect(engine).get_indexes("okr_checkins")}
    engine.dispose()
    assert tables == {"okr_meta", "okr_objectives", "okr_key_results", "okr_checkins", "okr_runs", "okr_outbox"}
    assert "ix_okr_checkins_kr_observed" in indexes
    assert stored_version(sqlite_url) == str(schema_version()) == "3"


def test_reopening_an_existing_store_keeps_its_data(sqlite_url: str) -> None:
    with open_store(sqlite_url) as store:
        sync(store, {"kr-01": 10, "kr-02": 20})
    with open_store(sqlite_url) as store:
        assert [c.value for c in store.history("kr-01")] == [10]
        assert len(store.runs()) == 1
    assert counts(sqlite_url) == {"objectives": 1, "key_results": 2, "checkins": 2, "runs": 1}


def test_version_zero_store_is_migrated(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    with sqlite3.connect(path) as conn:  # an older layout written by hand: only the meta table
        conn.execute("CREATE TABLE okr_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
        conn.execute("INSERT INTO okr_meta VALUES ('schema_version', '0')")
    conn.close()
    url = f"sqlite:///{path}"
    with open_store(url) as store:
        assert sync(store, {"kr-01": 1}).written == ["kr-01"]
    assert stored_version(url) == "3"


def test_older_store_is_upgraded_step_by_step(
    sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    with open_store(sqlite_url) as store:
        sync(store, {"kr-01": 10})
    calls: list[str] = []

    def add_confidence(conn: Connection) -> None:  # a future version 4
        calls.append("v3")
        conn.exec_driver_sql("ALTER TABLE okr_checkins ADD COLUMN confidence REAL")

    def add_tag(conn: Connection) -> None:  # a future version 5
        calls.append("v4")
        conn.exec_driver_sql("ALTER TABLE okr_objectives ADD COLUMN tag TEXT")

    monkeypatch.setattr(sql_store.schema, "MIGRATIONS", [*sql_store.MIGRATIONS, add_confidence, add_tag])
    with open_store(sqlite_url) as store:
        assert [c.value for c in store.history("kr-01")] == [10]
    with open_store(sqlite_url):  # already current: no step runs twice
        pass
    assert calls == ["v3", "v4"]
    assert stored_version(sqlite_url) == "5"
    engine = create_engine(sqlite_url)
    columns = {c["name"] for c in inspect(engine).get_columns("okr_checkins")}
    engine.dispose()
    assert "confidence" in columns


def test_failed_migration_step_leaves_the_store_as_it_was(
    sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    open_store(sqlite_url).close()

    def broken(conn: Connection) -> None:
        conn.exec_driver_sql("ALTER TABLE okr_checkins ADD COLUMN confidence REAL")
        conn.exec_driver_sql("ALTER TABLE okr_no_such_table ADD COLUMN x TEXT")

    monkeypatch.setattr(sql_store.schema, "MIGRATIONS", [*sql_store.MIGRATIONS, broken])
    with pytest.raises(StoreError) as error:
        open_store(sqlite_url)
    assert_one_line(error)
    assert stored_version(sqlite_url) == "3"
    engine = create_engine(sqlite_url)
    columns = {c["name"] for c in inspect(engine).get_columns("okr_checkins")}
    engine.dispose()
    assert "confidence" not in columns  # the DDL was rolled back with the step


def test_newer_store_is_refused(sqlite_url: str) -> None:
    with open_store(sqlite_url) as store:
        sync(store, {"kr-01": 10})
    with sqlite3.connect(sqlite_url.removeprefix("sqlite:///")) as conn:
        conn.execute("UPDATE okr_meta SET value = '99' WHERE key = 'schema_version'")
    conn.close()
    with pytest.raises(StoreError) as error:
        open_store(sqlite_url)
    message = assert_one_line(error)
    assert "schema version 99" in message and "upgrade okr-sync" in message
    assert stored_version(sqlite_url) == "99"
    assert counts(sqlite_url)["checkins"] == 1


# --- write_sync -----------------------------------------------------------------------------

def test_same_values_twice_write_nothing_new(any_url: str) -> None:
    with open_store(any_url) as store:
        first = sync(store, {"kr-01": 10, "kr-02": 20, "kr-03": 30})
        second = sync(store, {"kr-01": 10, "kr-02": 20 + 1e-12, "kr-03": 30},
                      observed_at=T0 + timedelta(days=1), title="Make checkout faster")
        assert store.key_results(["kr-01"])[0].objective_title == "Make checkout faster"
        third = sync(store, {"kr-01": 11, "kr-02": 20, "kr-03": 30},
                     observed_at=T0 + timedelta(days=2))
        assert first.written == ["kr-01", "kr-02", "kr-03"]
        assert second.written == [] and second.unchanged == ["kr-01", "kr-02", "kr-03"]
        assert third.written == ["kr-01"] and third.unchanged == ["kr-02", "kr-03"]
        assert [c.value for c in store.history("kr-01")] == [10, 11]
        assert len(store.history("kr-02")) == 1
        assert [(r["written"], r["unchanged"]) for r in store.runs()] == [(1, 2), (0, 3), (3, 0)]
    assert counts(any_url) == {"objectives": 1, "key_results": 3, "checkins": 4, "runs": 3}


def test_manual_checkin_is_kept_with_on_manual_keep(store: SqlStore) -> None:
    sync(store, {"kr-01": 10})
    store.add_manual_checkin("kr-01", 42, note="from the quarterly review",
                             observed_at=T0 + timedelta(hours=1))
    report = sync(store, {"kr-01": 11}, observed_at=T0 + timedelta(hours=2))
    assert report.kept_manual == ["kr-01"] and report.outcome("kr-01") == "kept_manual"
    assert [(c.kind, c.value) for c in store.history("kr-01")] == [
        ("automatic", 10), ("manual", 42)]
    last = store.key_results()[0].last
    assert last is not None and last.kind == "manual" and last.note == "from the quarterly review"
    assert store.runs(limit=1)[0]["kept_manual"] == 1


def test_manual_checkin_is_overwritten_with_on_manual_overwrite(store: SqlStore) -> None:
    sync(store, {"kr-01": 10}, on_manual="overwrite")
    store.add_manual_checkin("kr-01", 42, observed_at=T0 + timedelta(hours=1))
    assert sync(store, {"kr-01": 10}, on_manual="overwrite",
                observed_at=T0 + timedelta(hours=2)).written == ["kr-01"]
    assert sync(store, {"kr-01": 10}, on_manual="overwrite",
                observed_at=T0 + timedelta(hours=3)).unchanged == ["kr-01"]
    store.add_manual_checkin("kr-01", 50, observed_at=T0 + timedelta(hours=4))
    # the same value as the newest (manual) check-in: nothing to overwrite
    assert sync(store, {"kr-01": 50}, on_manual="overwrite",
                observed_at=T0 + timedelta(hours=5)).unchanged == ["kr-01"]
    assert [(c.kind, c.value) for c in store.history("kr-01")] == [
        ("automatic", 10), ("manual", 42), ("automatic", 10), ("manual", 50)]


def test_manual_checkin_for_unknown_key_result_lists_close_ids(store: SqlStore) -> None:
    sync(store, {"checkout-nps": 30, "checkout-p95": 800, "p1-bugs": 12})
    with pytest.raises(StoreError) as error:
        store.add_manual_checkin("checkout-np", 40)
    message = assert_one_line(error)
    assert "checkout-np'" in message and "checkout-nps" in message and "run a sync" in message
    assert "p1-bugs" not in message
    with pytest.raises(StoreError, match="checkout-nps"):
        store.history("checkout-np")
    assert len(store.history("checkout-nps")) == 1


def test_history_is_oldest_first(store: SqlStore) -> None:
    sync(store, {"kr-01": 3}, observed_at=T0 + timedelta(days=3))
    sync(store, {"kr-01": 1}, observed_at=T0 + timedelta(days=1))
    store.add_manual_checkin("kr-01", 2, observed_at=T0 + timedelta(days=2))
    sync(store, {"kr-01": 4}, observed_at=T0 + timedelta(days=3))  # same instant: by id
    assert [c.value for c in store.history("kr-01")] == [1, 2, 3, 4]


def test_key_results_with_their_latest_checkin(store: SqlStore) -> None:
    berlin = timezone(timedelta(hours=2))
    sync(store, {"kr-02": 5, "kr-01": 7}, observed_at=T0)
    sync(store, {"kr-02": 6}, observed_at=datetime(2026, 10, 2, 11, 0, tzinfo=berlin))
    store.write_sync(
        run_id="r-growth", started_at=T0 + timedelta(days=3),
        objectives=[ObjectiveRecord(id="an-growth", title="Grow")],
        key_results=[KeyResultRecord(id="kr-99", objective_id="an-growth", title="New",
                                     source="gh", baseline=0, target=40)],
        checkins=[], config_files=["growth.yaml"], failed=1,
    )
    states = store.key_results()
    assert [(s.objective_id, s.kr_id) for s in states] == [
        ("an-growth", "kr-99"), ("checkout", "kr-01"), ("checkout", "kr-02")]
    assert states[0].last is None
    last = states[2].last
    assert last is not None and last.value == 6 and last.link == "file:///survey.csv"
    assert last.observed_at == datetime(2026, 10, 2, 9, 0, tzinfo=timezone.utc)
    assert last.observed_at.tzinfo == timezone.utc and last.created_at is not None
    assert last.created_at.tzinfo == timezone.utc
    assert [s.kr_id for s in store.key_results(["kr-02", "nope"])] == ["kr-02"]
    assert store.runs(limit=1)[0]["config_files"] == ["growth.yaml"]
    assert store.runs(limit=1)[0]["failed"] == 1


def test_failing_write_leaves_nothing_half_written(any_url: str) -> None:
    with open_store(any_url) as store:
        sync(store, {"kr-01": 10})
        before = counts(any_url)
        bad = CheckinRecord(kr_id="kr-02", value=1, progress=None, expected=None, status=None,
                            observed_at=T0, kind="bogus")
        with pytest.raises(StoreError) as error:
            sync(store, {"kr-01": 11, "kr-02": 20}, run_id="r-bad", extra=[bad])
        assert "nothing was written" in assert_one_line(error)
        orphan = CheckinRecord(kr_id="kr-unknown", value=1, progress=None, expected=None,
                               status=None, observed_at=T0)
        with pytest.raises(StoreError):
            sync(store, {"kr-03": 30}, extra=[orphan])
        assert counts(any_url) == before
        assert sync(store, {"kr-01": 11}, run_id="r-bad").written == ["kr-01"]


def test_store_locked_past_the_timeout(sqlite_url: str) -> None:
    open_store(sqlite_url).close()
    store = SqlStore(sqlite_url + "?timeout=0.2")
    holder = sqlite3.connect(sqlite_url.removeprefix("sqlite:///"), isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        with pytest.raises(StoreError) as error:
            sync(store, {"kr-01": 10})
        message = assert_one_line(error)
        assert "locked" in message and "okr-sync.db" in message and "timeout" in message
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert counts(sqlite_url)["checkins"] == 0
    assert sync(store, {"kr-01": 10}).written == ["kr-01"]
    store.close()


def test_read_only_store(sqlite_url: str) -> None:
    with open_store(sqlite_url) as store:
        sync(store, {"kr-01": 10})
    path = sqlite_url.removeprefix("sqlite:///")
    with open_store(f"sqlite:///file:{path}?mode=ro&uri=true") as read_only:
        assert read_only.key_results()[0].last is not None  # reading still works
        with pytest.raises(StoreError) as error:
            sync(read_only, {"kr-01": 11})
        message = assert_one_line(error)
        assert "read-only" in message and path in message
        with pytest.raises(StoreError, match="read-only"):
            read_only.add_manual_checkin("kr-01", 5)
    assert counts(sqlite_url)["checkins"] == 1


def test_store_in_a_missing_directory(tmp_path: Path) -> None:
    with pytest.raises(StoreError) as error:
        open_store(f"sqlite:///{tmp_path / 'nowhere' / 'okr.db'}")
    assert "directory" in assert_one_line(error)


def test_urls_and_passwords_stay_out_of_messages() -> None:
    url = "postgresql+psycopg://okr:s3cr3t-pw@127.0.0.1:1/okr?connect_timeout=2"
    store = SqlStore(url)
    assert store.display_url == "postgresql+psycopg://okr:***@127.0.0.1:1/okr?connect_timeout=2"
    with pytest.raises(StoreError) as error:
        store.ensure_schema()
    message = assert_one_line(error)
    assert "s3cr3t" not in message and "127.0.0.1:1" in message and "server" in message
    with pytest.raises(StoreError, match="not a valid SQLAlchemy URL"):
        SqlStore("not a url at all")
    with pytest.raises(StoreError, match="unsupported"):
        SqlStore("mysql://root:pw@localhost/okr")


def test_reading_a_store_without_tables(sqlite_url: str) -> None:
    with pytest.raises(StoreError, match="run a sync first"):
        SqlStore(sqlite_url).key_results()


# --- concurrency ----------------------------------------------------------------------------

def run_together(
    url: str, values_a: dict[str, float], values_b: dict[str, float], *, upsert: bool = True
) -> list[WriteReport]:
    """Two stores (two engines, like two processes) write_sync at the same moment."""
    stores = [open_store(url), open_store(url)]
    barrier = threading.Barrier(2)
    reports: list[WriteReport | None] = [None, None]
    errors: list[BaseException] = []

    def worker(i: int, values: dict[str, float]) -> None:
        try:
            barrier.wait(timeout=10)
            reports[i] = sync(stores[i], values, run_id=f"run-{i}", upsert=upsert)
        except Exception as exc:  # noqa: BLE001 - reported by the assert below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(i, v))
               for i, v in enumerate((values_a, values_b))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    for s in stores:
        s.close()
    assert not errors, errors
    return [r for r in reports if r is not None]


@pytest.mark.parametrize("upsert", [True, False], ids=["with-key-results", "checkins-only"])
def test_concurrent_syncs_with_the_same_values_write_each_checkin_once(
    any_url: str, upsert: bool
) -> None:
    ids = kr_ids(20)
    if not upsert:  # the key results exist; only the row locks keep the two runs apart
        with open_store(any_url) as store:
            sync(store, dict.fromkeys(ids, 0.0), run_id="setup")
    reports = run_together(any_url, dict.fromkeys(ids, 7.0), dict.fromkeys(ids, 7.0),
                           upsert=upsert)
    assert sorted(reports[0].written + reports[1].written) == ids
    assert sorted(reports[0].unchanged + reports[1].unchanged) == ids
    with open_store(any_url) as store:
        assert all([c.value for c in store.history(k)][-1:] == [7.0] for k in ids)
    expected = 20 if upsert else 40
    assert counts(any_url) == {"objectives": 1, "key_results": 20, "checkins": expected,
                               "runs": 2 if upsert else 3}


def test_concurrent_syncs_with_different_values_lose_nothing(any_url: str) -> None:
    ids = kr_ids(20)
    reports = run_together(any_url, dict.fromkeys(ids, 1.0), dict.fromkeys(ids, 2.0))
    assert reports[0].written == ids and reports[1].written == ids
    with open_store(any_url) as store:
        assert all(sorted(c.value for c in store.history(k)) == [1.0, 2.0] for k in ids)
    assert counts(any_url)["checkins"] == 40


def test_concurrent_first_use_creates_the_schema_once(any_url: str) -> None:
    barrier = threading.Barrier(2)
    errors: list[Exception] = []

    def opener() -> None:
        try:
            barrier.wait(timeout=10)
            open_store(any_url).close()
        except Exception as exc:  # noqa: BLE001 - reported by the assert below
            errors.append(exc)

    threads = [threading.Thread(target=opener) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors, errors
    assert stored_version(any_url) == "3"


# --- a real deadlock on PostgreSQL -----------------------------------------------------------

@contextmanager
def crossing_locks(pg_url: str) -> Iterator[dict[str, Any]]:
    """Make the store's next write transaction a real PostgreSQL deadlock victim, once.

    Another connection holds key result kr-01's row. When the store, holding the 'checkout'
    objective's row (its first upsert), is about to upsert the key results, that connection asks
    for the objective's row and is left waiting on the store; only then does the store ask for
    kr-01, closing the cycle. The store's deadlock_timeout is 50 ms and the other's 60 s, so the
    store is the one PostgreSQL aborts (40P01); the other then gets its row and commits. Yields
    {"sqlstates": [...]} (the errors the store's statements met) and the other side's error, if any.
    """
    psycopg = pytest.importorskip("psycopg")
    url = make_url(pg_url)
    conninfo = f"host={url.host} port={url.port} user={url.username} dbname={url.database} connect_timeout=3"
    with psycopg.connect(conninfo.replace(f"dbname={url.database}", "dbname=postgres"), autocommit=True) as admin:
        admin.execute(f'ALTER DATABASE "{url.database}" SET deadlock_timeout = \'50ms\'')
    seen: dict[str, Any] = {"sqlstates": [], "other_error": None}
    other = psycopg.connect(conninfo)
    watcher = psycopg.connect(conninfo, autocommit=True)
    armed = threading.Event()

    def other_wants_the_objective() -> None:
        try:
            other.execute("SELECT id FROM okr_objectives WHERE id = 'checkout' FOR UPDATE")
            other.commit()
        except Exception as exc:  # noqa: BLE001 - reported by the test's asserts
            seen["other_error"] = exc

    def before_execute(conn, cursor, statement, parameters, context, executemany) -> None:
        if not (armed.is_set() and statement.lstrip().startswith("INSERT INTO okr_key_results")):
            return
        armed.clear()
        store_pid = conn.connection.dbapi_connection.info.backend_pid
        threading.Thread(target=other_wants_the_objective, daemon=True).start()
        deadline = time.monotonic() + 10
        while not watcher.execute("SELECT %s = ANY(pg_blocking_pids(%s))",
                                  (store_pid, other.info.backend_pid)).fetchone()[0]:
            assert time.monotonic() < deadline, "the other connection never waited on the store"
            time.sleep(0.01)

    def on_error(context) -> None:
        seen["sqlstates"].append(getattr(context.original_exception, "sqlstate", None))

    try:
        other.execute("SET deadlock_timeout = '60s'")
        other.execute("SET lock_timeout = '20s'")
        other.execute("SELECT id FROM okr_key_results WHERE id = 'kr-01' FOR UPDATE")
        event.listen(Engine, "before_cursor_execute", before_execute)
        event.listen(Engine, "handle_error", on_error)
        armed.set()
        yield seen
    finally:
        event.remove(Engine, "before_cursor_execute", before_execute)
        event.remove(Engine, "handle_error", on_error)
        other.close()
        watcher.close()


def test_postgres_deadlock_victim_is_retried(pg_url: str) -> None:
    with open_store(pg_url) as store:
        sync(store, {"kr-01": 10, "kr-02": 20})
        with crossing_locks(pg_url) as seen:
            report = sync(store, {"kr-01": 11, "kr-02": 21})
        assert seen["sqlstates"] == ["40P01"] and seen["other_error"] is None   # one real deadlock, the store its victim
        assert report.written == ["kr-01", "kr-02"]
        assert [c.value for c in store.history("kr-01")] == [10, 11]
        assert len(store.runs()) == 2


def test_postgres_deadlock_without_a_retry_fails_and_writes_nothing(pg_url: str, monkeypatch) -> None:
    """The same deadlock with the retry taken away: the run fails whole, so the retry is what saves it."""
    monkeypatch.setattr(sql_store.store, "DEADLOCK_ATTEMPTS", 1)
    with open_store(pg_url) as store:
        sync(store, {"kr-01": 10, "kr-02": 20})
        with crossing_locks(pg_url) as seen, pytest.raises(StoreError) as error:
            sync(store, {"kr-01": 11, "kr-02": 21})
        assert seen["sqlstates"] == ["40P01"]
        assert "deadlock" in assert_one_line(error).lower()
        assert [c.value for c in store.history("kr-01")] == [10] and len(store.runs()) == 1
