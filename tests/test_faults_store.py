"""Fault suite, part 2: the store and the process. The same 50 key results as tests/test_faults.py;
the store becomes unwritable mid-run (SQLite locked by another connection; SQLite full, with a
real SQLITE_FULL from `PRAGMA max_page_count`), or the CLI process is SIGKILLed mid-sync. After
each: nothing half-written, nothing twice, and a re-run leaves every key result stored once."""
from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from sqlalchemy import event
from sqlalchemy.engine import Engine

from faultkit import (CANARY, EMAIL, IDS, artifacts_text, check_run, check_secrets, check_store, local_site,
                      store_url, sync, write_config)

REPO = Path(__file__).resolve().parent.parent
FIRST = IDS[:10]                  # synced before the fault, so the store has history when it strikes


def _db(tmp_path: Path) -> Path:
    return tmp_path / "okr.db"


def _integrity(path: Path) -> str:
    with sqlite3.connect(path) as conn:
        return conn.execute("PRAGMA integrity_check").fetchone()[0]


def _all_failed_with(result: dict, *texts: str) -> None:
    failed = check_run(result)
    assert set(failed) == set(IDS)
    assert all(all(t in e for t in texts) for e in failed.values()), next(iter(failed.values()))


def test_store_locked_by_another_connection(prefect_harness, tmp_path, monkeypatch, caplog, capfd):
    with local_site(monkeypatch) as server:
        config, url = write_config(tmp_path, server), store_url(tmp_path, "?timeout=0.5")
        sync(config, url, only=FIRST)
        holder = sqlite3.connect(_db(tmp_path), isolation_level=None)
        holder.execute("BEGIN EXCLUSIVE")                       # another process mid-write, holding the file
        try:
            result = sync(config, url)
        finally:
            holder.execute("ROLLBACK")
            holder.close()
        _all_failed_with(result, "database is locked", "raise ?timeout= in the URL")
        assert set(check_store(url)) == set(FIRST)                # the first run's rows, untouched
        again = sync(config, url)
    check_run(again, may_fail=set())
    outcomes = {r["id"]: r["outcome"] for r in again["key_results"]}
    assert {k for k, o in outcomes.items() if o == "unchanged"} == set(FIRST)
    check_store(url, present=set(IDS))
    check_secrets(result, again, tmp_path=tmp_path, caplog=caplog, capfd=capfd)


def test_store_disk_full(prefect_harness, tmp_path, monkeypatch, caplog, capfd):
    """SQLite answers SQLITE_FULL ("database or disk is full") once the file may not grow: the
    run's transaction rolls back whole, and the key results say so."""
    db = _db(tmp_path)
    with local_site(monkeypatch) as server:
        config, url = write_config(tmp_path, server), store_url(tmp_path)
        sync(config, url, only=FIRST)
        with sqlite3.connect(db) as conn:
            pages = conn.execute("PRAGMA page_count").fetchone()[0]

        def cap(dbapi_connection, _record) -> None:           # only our store file, never Prefect's database
            files = [row[2] for row in dbapi_connection.execute("PRAGMA database_list")]
            if str(db) in files:
                dbapi_connection.execute(f"PRAGMA max_page_count = {pages}")

        event.listen(Engine, "connect", cap)
        try:
            result = sync(config, url)
        finally:
            event.remove(Engine, "connect", cap)
        _all_failed_with(result, "database or disk is full", "free some disk space", "(nothing was written)")
        assert set(check_store(url)) == set(FIRST) and _integrity(db) == "ok"
        again = sync(config, url)
    check_run(again, may_fail=set())
    check_store(url, present=set(IDS))
    check_secrets(result, again, tmp_path=tmp_path, caplog=caplog, capfd=capfd)


def _cli(config: Path, url: str, env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "okrsync.cli", "run", str(config), "--store", url, "--json"],
                            cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)


def test_sigkill_mid_sync_then_rerun(prefect_harness, tmp_path, monkeypatch, caplog, capfd):
    """`okr-sync run` killed with SIGKILL while it is asking the APIs (150 ms each); the re-run
    completes: every key result stored exactly once, the earlier history intact, the file sound."""
    from prefect.settings import PREFECT_API_URL

    db = _db(tmp_path)
    with local_site(monkeypatch, latency=0.15) as server:
        config, url = write_config(tmp_path, server), store_url(tmp_path)
        server.latency = 0.0
        sync(config, url, only=FIRST)
        server.latency = 0.15
        env = {**os.environ, "PREFECT_API_URL": PREFECT_API_URL.value(), "JIRA_API_TOKEN": CANARY,
               "JIRA_EMAIL": EMAIL, "GITHUB_TOKEN": CANARY, "PYTHONPATH": str(REPO)}
        before = server.count()
        killed = _cli(config, url, env)
        deadline = time.monotonic() + 90
        while server.count() < before + 12 and killed.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert killed.poll() is None, killed.communicate()          # still mid-sync
        os.kill(killed.pid, signal.SIGKILL)
        out, err = killed.communicate(timeout=30)
        assert killed.returncode == -signal.SIGKILL
        asked_when_killed = server.count() - before
        assert set(check_store(url)) == set(FIRST) and _integrity(db) == "ok"

        server.latency = 0.0
        rerun = _cli(config, url, env)
        out2, err2 = rerun.communicate(timeout=120)
    assert rerun.returncode == 0, err2[-2000:]
    assert 12 <= asked_when_killed
    values = check_store(url, present=set(IDS))
    assert all(len(v) == 1 for v in values.values())
    # every artifact of the session so far, the CLI runs' included (they report to the same Prefect API)
    check_secrets(out, err, out2, err2, artifacts_text(), tmp_path=tmp_path, caplog=caplog, capfd=capfd)
