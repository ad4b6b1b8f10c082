"""The store against rows it did not write (issue #11): non-finite numbers are refused on the way in;
check-ins edited by hand or left by an older version (NaN, inf, NULL, text, garbage timestamps) are
read as invalid, never a crash, and a sync treats them as no previous value; an unreadable
schema_version is refused, never rewritten. Real SQLite files and PostgreSQL (`pg_url`)."""
from __future__ import annotations

import json
import math
import sqlite3
from datetime import datetime, timezone
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from typer.testing import CliRunner

from connectors.sql_store import SqlStore, open_store
from okrsync.cli import app
from okrsync.errors import StoreError
from okrsync.records import CheckinRecord, KeyResultRecord, ObjectiveRecord
from okrsync.render import INVALID

T0 = datetime(2026, 10, 1, 9, 0, tzinfo=timezone.utc)
from one_kr_config import CONFIG


pytestmark = pytest.mark.usefixtures("restored_cli_loggers")


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'okr.db'}"
    return request.getfixturevalue("pg_url")


@pytest.fixture
def config(tmp_path: Path) -> Path:
    (tmp_path / "survey.csv").write_text("question,score\nnps,38\n", encoding="utf-8")
    path = tmp_path / "okrs.yaml"
    path.write_text(CONFIG, encoding="utf-8")
    return path


def write(store: SqlStore, value: float, *, progress: float | None = 0.5, target: float = 45,
          observed_at: datetime = T0, run_id: str = "r1"):
    return store.write_sync(
        run_id=run_id, started_at=observed_at, objectives=[ObjectiveRecord(id="checkout", title="Checkout")],
        key_results=[KeyResultRecord(id="nps", objective_id="checkout", title="NPS", source="survey",
                                     baseline=30, target=target)],
        checkins=[CheckinRecord(kr_id="nps", value=value, progress=progress, expected=0.5, status="on_track",
                                observed_at=observed_at, run_id=run_id)],
        config_files=["okrs.yaml"], failed=0)


def raw(url: str, *statements: str) -> None:
    """Statements run past the store, as a person with a SQL shell (or an older okr-sync) would."""
    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            for statement in statements:
                conn.execute(text(statement))
    finally:
        engine.dispose()


def checkin_count(url: str) -> int:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return conn.execute(text("SELECT count(*) FROM okr_checkins")).scalar_one()
    finally:
        engine.dispose()


def insert(kr_id: str, value: str, observed_at: str, *, progress: str = "NULL", expected: str = "NULL",
           note: str = "NULL") -> str:
    return ("INSERT INTO okr_checkins (kr_id, value, progress, expected, observed_at, kind, note, created_at) "
            f"VALUES ('{kr_id}', {value}, {progress}, {expected}, {observed_at}, 'automatic', {note}, "
            "'2026-10-01 09:00:00')")


def cli(*args: str) -> tuple[int, str, str]:
    done = CliRunner().invoke(app, list(args))
    assert done.exception is None or isinstance(done.exception, SystemExit), repr(done.exception)
    return done.exit_code, done.stdout, done.stderr


# --- writes ---------------------------------------------------------------------------------

@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_a_non_finite_number_is_refused_naming_the_key_result(url: str, bad: float) -> None:
    with open_store(url) as store:
        write(store, 38)
        for attempt in (lambda: write(store, bad, run_id="r2"),
                        lambda: write(store, 39, progress=bad, run_id="r3"),
                        lambda: write(store, 39, target=bad, run_id="r4"),
                        lambda: store.add_manual_checkin("nps", bad)):
            with pytest.raises(StoreError) as error:
                attempt()
            message = str(error.value)
            assert "'nps'" in message and "not a finite number" in message and "nothing was written" in message
            assert "\n" not in message
        assert [c.value for c in store.history("nps")] == [38]
        assert len(store.runs()) == 1


# --- reads ----------------------------------------------------------------------------------

def test_bad_numbers_read_as_invalid_on_sqlite(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'okr.db'}"
    with open_store(url) as store:
        write(store, 38)
    raw(url,
        insert("nps", "'n/a'", "'2026-10-02 09:00:00'", note="'[/bold] typed by hand'"),
        insert("nps", "9e999", "'2026-10-03 09:00:00'"),
        insert("nps", "40", "'2026-10-04 09:00:00'", progress="'lots'"),
        insert("nps", "41", "'2026-10-05 09:00:00'", expected="-9e999"),
        insert("nps", "X'00ff'", "'2026-10-06 09:00:00'"))
    with open_store(url) as store:
        rows = store.history("nps")
        last = store.key_results(["nps"])[0].last
    assert [c.value for c in rows] == [38, None, None, None, None, None]
    assert [c.invalid for c in rows] == [
        None, "value 'n/a' is not a finite number", "value inf is not a finite number",
        "progress 'lots' is not a finite number", "expected -inf is not a finite number",
        "value b'\\x00\\xff' is not a finite number"]
    assert rows[3].progress is None and rows[4].expected is None and rows[1].note == "[/bold] typed by hand"
    assert last is not None and last.id == rows[-1].id and last.value is None and last.invalid


def test_null_value_in_a_table_an_older_version_made(tmp_path: Path) -> None:
    """A value column without NOT NULL (an older layout, or one rebuilt by hand) holding NULL."""
    path = tmp_path / "okr.db"
    with open_store(f"sqlite:///{path}") as store:
        write(store, 38)
    with sqlite3.connect(path) as conn:
        ddl = conn.execute("SELECT sql FROM sqlite_master WHERE name = 'okr_checkins'").fetchone()[0]
        assert "value FLOAT NOT NULL" in ddl
        conn.executescript("ALTER TABLE okr_checkins RENAME TO old_checkins;"
                           + ddl.replace("value FLOAT NOT NULL", "value FLOAT") + ";"
                           "INSERT INTO okr_checkins SELECT * FROM old_checkins; DROP TABLE old_checkins;"
                           + insert("nps", "NULL", "'2026-10-02 09:00:00'"))
    conn.close()
    with open_store(f"sqlite:///{path}") as store:
        last = store.key_results()[0].last
        assert last is not None and last.value is None and last.invalid == "value None is not a finite number"
        assert write(store, 38, run_id="r2", observed_at=datetime(2026, 10, 3, tzinfo=timezone.utc)).written == ["nps"]


def test_bad_numbers_read_as_invalid_on_postgresql(pg_url: str) -> None:
    with open_store(pg_url) as store:
        write(store, 38)
    raw(pg_url,
        insert("nps", "'NaN'", "'2026-10-02 09:00:00+00'"),
        insert("nps", "'-Infinity'", "'2026-10-03 09:00:00+00'"),
        insert("nps", "40", "'2026-10-04 09:00:00+00'", progress="'Infinity'", expected="'NaN'"))
    with open_store(pg_url) as store:
        rows = store.history("nps")
        last = store.key_results()[0].last
    assert [c.invalid for c in rows] == [
        None, "value nan is not a finite number", "value -inf is not a finite number",
        "progress inf is not a finite number; expected nan is not a finite number"]
    assert all(c.value is None and c.progress is None for c in rows[1:])
    assert last is not None and last.id == rows[-1].id and last.invalid


@pytest.mark.parametrize("observed", [
    pytest.param(("sqlite", "'garbage'", "'garbage'"), id="sqlite-text"),
    pytest.param(("sqlite", "12345", "'12345'"), id="sqlite-number"),
    pytest.param(("sqlite", "'2026-13-45 99:99:99'", "'2026-13-45 99:99:99'"), id="sqlite-no-such-day"),
    pytest.param(("postgresql", "'infinity'", "None"), id="pg-infinity"),
    pytest.param(("postgresql", "'12000-01-01 00:00:00+00'", "'12000-01-01 00:00:00.000000 AD'"), id="pg-year-12000"),
    pytest.param(("postgresql", "'0044-03-15 00:00:00+00 BC'", "'0044-03-15 00:00:00.000000 BC'"), id="pg-bc"),
])
def test_an_unreadable_observed_at_is_invalid_and_never_the_latest(
        request: pytest.FixtureRequest, tmp_path: Path, observed: tuple[str, str, str]) -> None:
    dialect, stored, shown = observed
    url = f"sqlite:///{tmp_path / 'okr.db'}" if dialect == "sqlite" else request.getfixturevalue("pg_url")
    with open_store(url) as store:
        write(store, 38)
    raw(url, insert("nps", "99", stored))
    with open_store(url) as store:
        rows = store.history("nps")
        bad = next(c for c in rows if c.invalid)
        assert bad.observed_at is None and bad.value is None
        assert bad.invalid == f"observed_at {shown} is not a date and time"
        last = store.key_results()[0].last
        assert last is not None and last.value == 38 and last.invalid is None  # the readable one is the latest
        assert write(store, 38, run_id="r2", observed_at=datetime(2026, 10, 2, tzinfo=timezone.utc)).unchanged == ["nps"]
        assert write(store, 39, run_id="r3", observed_at=datetime(2026, 10, 3, tzinfo=timezone.utc)).written == ["nps"]
        assert store.key_results()[0].last.value == 39


def test_a_sync_takes_an_invalid_latest_checkin_as_no_previous_value(url: str) -> None:
    with open_store(url) as store:
        write(store, 38)
        nan = "'NaN'" if store.dialect == "postgresql" else "'n/a'"
        raw(url, insert("nps", nan, "'2026-10-02 09:00:00'"))
        assert store.key_results()[0].last.invalid
        later = datetime(2026, 10, 3, tzinfo=timezone.utc)
        assert write(store, 38, run_id="r2", observed_at=later).written == ["nps"]       # not "unchanged"
        assert write(store, 38, run_id="r3", observed_at=later).unchanged == ["nps"]     # healed: a trusted latest
        assert store.key_results()[0].last.invalid is None


# --- the CLI over bad rows -------------------------------------------------------------------

def test_status_history_and_run_show_invalid_rows(url: str, config: Path) -> None:
    with open_store(url) as store:
        write(store, 38)
        bad = "'NaN'" if store.dialect == "postgresql" else "'n/a'"
    raw(url, insert("nps", bad, "'2026-10-02 09:00:00'", note="'[red]oops'"))
    problem = "value nan is not a finite number" if url.startswith("postgresql") else \
        "value 'n/a' is not a finite number"

    code, out, err = cli("status", "--store", url)
    assert code == 0, err
    assert INVALID in out and problem in out and "Traceback" not in out + err

    code, out, err = cli("status", "--store", url, "--json")
    assert code == 0, err
    (state,) = json.loads(out)
    assert state["last"]["invalid"] == problem and state["last"]["value"] is None

    code, out, err = cli("history", "nps", "--store", url)
    assert code == 0, err
    assert out.count(INVALID) == 1 and "[red]oops" in out

    code, out, err = cli("history", "nps", "--store", url, "--json")
    assert code == 0, err
    assert [(c["value"], c["invalid"]) for c in json.loads(out)] == [(38, None), (None, problem)]

    code, out, err = cli("run", str(config), "--store", url, "--no-prefect", "--json")
    assert code == 0, err
    (row,) = json.loads(out)["key_results"]
    assert (row["value"], row["previous"], row["change"], row["outcome"]) == (38, None, None, "written")


# --- schema version --------------------------------------------------------------------------

@pytest.mark.parametrize("version", ["-1", "abc", "1.5", "", " 1", "１"])
def test_an_unreadable_schema_version_is_refused_never_rewritten(url: str, version: str) -> None:
    with open_store(url) as store:
        write(store, 38)
    raw(url, f"UPDATE okr_meta SET value = '{version}' WHERE key = 'schema_version'")
    with pytest.raises(StoreError) as error:
        open_store(url)
    message = str(error.value)
    assert f"okr_meta.schema_version is {version!r}" in message and "restore it from a backup" in message
    assert "\n" not in message
    code, out, err = cli("status", "--store", url)
    assert code == 1 and out == ""
    assert err.startswith("error: ") and err.count("\n") == 1 and "schema_version" in err
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            assert conn.execute(text("SELECT value FROM okr_meta WHERE key = 'schema_version'")).scalar_one() == version
    finally:
        engine.dispose()
    assert checkin_count(url) == 1


def test_an_unreadable_watch_schema_version_is_refused(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'okr.db'}"
    with open_store(url) as store:
        store.ensure_watch_schema()
    raw(url, "UPDATE okr_meta SET value = '-1' WHERE key = 'watch_schema_version'")
    with open_store(url) as store, pytest.raises(StoreError, match="okr_meta.watch_schema_version is '-1'"):
        store.watches()
