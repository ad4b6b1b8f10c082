"""An unusable store through `okr-sync run` (issue #11), in-process with CliRunner: a locked or
missing-directory store ends the run with one line and exit 1 before anything is measured; a
read-only or unwritable store is found only when the run writes (the key results fail, nothing is
written), while SqlStore.check_writable finds both up front. Once under Prefect (--prefect)."""
from __future__ import annotations

import json
import shutil
import sqlite3
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from typer.testing import CliRunner

import okrsync.engine as engine
from connectors.sql_store import open_store
from okrsync.cli import app
from okrsync.errors import StoreError

from one_kr_config import CONFIG


pytestmark = pytest.mark.usefixtures("restored_cli_loggers")


@pytest.fixture
def config(tmp_path: Path) -> Path:
    (tmp_path / "survey.csv").write_text("question,score\nnps,38\n", encoding="utf-8")
    path = tmp_path / "okrs.yaml"
    path.write_text(CONFIG, encoding="utf-8")
    return path


@pytest.fixture
def measured(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The sources the engine measured (each batch it handed to a connector)."""
    seen: list[str] = []
    real = engine.measure_batch

    def spy(registry, batch, *args, **kwargs):
        seen.append(batch.source.key)
        return real(registry, batch, *args, **kwargs)

    monkeypatch.setattr(engine, "measure_batch", spy)
    return seen


def run(config: Path, url: str, *flags: str) -> tuple[int, str, str]:
    done = CliRunner().invoke(app, ["run", str(config), "--store", url, *flags])
    assert done.exception is None or isinstance(done.exception, SystemExit), repr(done.exception)
    return done.exit_code, done.stdout, done.stderr


def checkins(db: Path) -> int:
    with sqlite3.connect(db) as conn:
        count = conn.execute("SELECT count(*) FROM okr_checkins").fetchone()[0]
    conn.close()
    return count


@contextmanager
def locked(db: Path) -> Iterator[None]:
    """Another process mid-write, holding the whole file."""
    holder = sqlite3.connect(db, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        yield
    finally:
        holder.execute("ROLLBACK")
        holder.close()


@contextmanager
def immutable(path: Path) -> Iterator[None]:
    """`path` unwritable even for root (chattr +i); skips where the filesystem cannot do it."""
    chattr = shutil.which("chattr")
    if chattr is None or subprocess.run([chattr, "+i", str(path)], capture_output=True).returncode != 0:
        pytest.skip("chattr +i is not available here")
    try:
        yield
    finally:
        subprocess.run([chattr, "-i", str(path)], check=True)


def assert_one_line_error(code: int, out: str, err: str, *texts: str) -> None:
    lines = [line for line in err.splitlines() if line.strip()]   # the progress bar leaves a blank line
    assert code == 1 and out == "" and len(lines) == 1, err
    assert lines[0].startswith("error: ") and all(t in lines[0] for t in texts), err


def test_a_locked_store_ends_the_run_before_measuring(config: Path, tmp_path: Path, measured: list[str]) -> None:
    db = tmp_path / "okr.db"
    assert run(config, f"sqlite:///{db}", "--no-prefect")[0] == 0 and measured == ["survey"]
    measured.clear()
    with locked(db):
        code, out, err = run(config, f"sqlite:///{db}?timeout=0.2", "--no-prefect")
    assert_one_line_error(code, out, err, "database is locked", "raise ?timeout= in the URL")
    assert measured == [] and checkins(db) == 1


def test_a_store_in_a_missing_directory_ends_the_run_before_measuring(
        config: Path, tmp_path: Path, measured: list[str]) -> None:
    code, out, err = run(config, f"sqlite:///{tmp_path / 'nowhere' / 'okr.db'}", "--no-prefect")
    assert_one_line_error(code, out, err, "unable to open database file", "directory exists")
    assert measured == [] and not (tmp_path / "nowhere").exists()


FAULTS = {   # what makes the store refuse a write, and the hint its error gives
    "read-only": "the store is read-only",
    "unwritable": "check that the store file's directory exists and is writable",
}
# A full store is not here: one run of one key result fits in the pages the file already has, so
# PRAGMA max_page_count never bites; tests/test_faults_store.py::test_store_disk_full covers SQLITE_FULL.


@contextmanager
def fault(name: str, tmp_path: Path) -> Iterator[str]:
    """The store of tmp_path refusing writes as `name` says; yields the URL to use."""
    db = tmp_path / "okr.db"
    if name == "read-only":
        yield f"sqlite:///file:{db}?mode=ro&uri=true"
        return
    with immutable(tmp_path):
        yield f"sqlite:///{db}"


@pytest.mark.parametrize("name", sorted(FAULTS))
def test_a_store_that_refuses_the_write_ends_the_run_before_measuring(
        config: Path, tmp_path: Path, measured: list[str], name: str) -> None:
    """The engine's store check takes a write (check_writable), so these are found before any source
    is asked: one line, exit 1; with --json every key result carries the error. Nothing written."""
    db = tmp_path / "okr.db"
    assert run(config, f"sqlite:///{db}", "--no-prefect")[0] == 0
    (tmp_path / "survey.csv").write_text("question,score\nnps,39\n", encoding="utf-8")   # a new value to write
    measured.clear()
    with fault(name, tmp_path) as url:
        code, out, err = run(config, url, "--no-prefect")
        assert_one_line_error(code, out, err, "could not write to the OKR store", FAULTS[name])
        code, out, err = run(config, url, "--no-prefect", "--json")
    assert code == 1 and "Traceback" not in out + err and measured == []
    doc = json.loads(out)
    (row,) = doc["key_results"]
    assert row["error"] == doc["store_error"] and FAULTS[name] in row["error"]
    assert checkins(db) == 1


@contextmanager
def writer_holding(db: Path) -> Iterator[str]:
    """Another process holding the write lock (readers still get in); yields a URL that waits 0.2 s."""
    holder = sqlite3.connect(db, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        yield f"sqlite:///{db}?timeout=0.2"
    finally:
        holder.execute("ROLLBACK")
        holder.close()


@pytest.mark.parametrize("name", ["read-only", "unwritable", "locked"])
def test_check_writable_finds_a_store_that_cannot_take_a_write(tmp_path: Path, name: str) -> None:
    db = tmp_path / "okr.db"
    with open_store(f"sqlite:///{db}") as store:
        store.check_writable()                              # a sound store passes
    hint = {"locked": "database is locked", **FAULTS}[name]
    with writer_holding(db) if name == "locked" else fault(name, tmp_path) as url:
        with open_store(url) as store, pytest.raises(StoreError) as error:
            store.check_writable()
    message = str(error.value)
    assert "\n" not in message and message.startswith("could not write to the OKR store") and hint in message
    with sqlite3.connect(db) as conn:                       # the probe left nothing behind
        assert conn.execute("SELECT key FROM okr_meta").fetchall() == [("schema_version",)]
    conn.close()


def test_check_writable_on_a_read_only_postgresql_database(pg_url: str) -> None:
    from sqlalchemy import make_url

    with open_store(pg_url) as store:
        store.check_writable()
    psycopg = pytest.importorskip("psycopg")
    name = make_url(pg_url).database
    with psycopg.connect("host=127.0.0.1 port=5432 user=postgres dbname=postgres", autocommit=True) as admin:
        admin.execute(f'ALTER DATABASE "{name}" SET default_transaction_read_only = on')
    with open_store(pg_url) as store, pytest.raises(StoreError) as error:
        store.check_writable()
    assert "read-only transaction" in str(error.value) and "\n" not in str(error.value)


# --- once under Prefect ------------------------------------------------------------------------

def test_a_locked_store_under_prefect_exits_1_with_the_error_before_measuring(
        prefect_harness, config: Path, tmp_path: Path, measured: list[str]) -> None:
    db = tmp_path / "okr.db"
    open_store(f"sqlite:///{db}").close()
    with locked(db):
        code, out, err = run(config, f"sqlite:///{db}?timeout=0.2", "--prefect")
    assert code == 1 and out == "" and measured == []
    last = [line for line in err.splitlines() if line.strip()][-1]
    assert last.startswith("error: could not open the OKR store") and "database is locked" in last


def test_a_locked_store_under_prefect_prints_only_the_one_line(
        prefect_harness, config: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    db = tmp_path / "okr.db"
    open_store(f"sqlite:///{db}").close()
    with locked(db):
        code, out, err = run(config, f"sqlite:///{db}?timeout=0.2", "--prefect")
    # Prefect's handlers print wherever they were set up, so look at the records that carry a traceback
    assert [r.getMessage() for r in caplog.records if r.exc_info] == []
    assert_one_line_error(code, out, err, "database is locked")
