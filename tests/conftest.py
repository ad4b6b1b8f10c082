"""Shared fixtures. Prefect's test harness starts once per session, and only for tests that ask."""
from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from pathlib import Path

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
os.environ.setdefault("PREFECT_SERVER_LOGGING_LEVEL", "WARNING")

import pytest  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
EXAMPLE = REPO / "config" / "example.yaml"
PG_ADMIN = "host=127.0.0.1 port=5432 user=postgres dbname=postgres connect_timeout=3"


class FakeClock:
    """connectors._http.clock in tests: `sleep` records the wait in `waits` and moves time on by it,
    so nothing sleeps. Time starts at `start` (epoch seconds), or follows another clock (`follow`)."""

    def __init__(self, start: float = 1_795_000_000.0):          # 2026-11-18 UTC
        self.start = start
        self.waits: list[float] = []
        self._elapsed = 0.0
        self._time: Callable[[], float] = lambda: self.start + self._elapsed
        self._advance: Callable[[float], None] | None = None

    def follow(self, time: Callable[[], float], advance: Callable[[float], None]) -> None:
        """Read the time from `time` and move it on with `advance` (e.g. a local server's clock)."""
        self._time, self._advance = time, advance

    def sleep(self, seconds: float) -> None:
        self.waits.append(seconds)
        if self._advance is not None:
            self._advance(seconds)
        else:
            self._elapsed += seconds

    def monotonic(self) -> float:
        return self._time()

    def now(self) -> datetime:
        return datetime.fromtimestamp(self._time(), timezone.utc)


@pytest.fixture(autouse=True)
def clock(monkeypatch) -> FakeClock:
    """The one test hook for time: every retry wait of every connector is recorded in `clock.waits`,
    never slept (autouse, so no test sleeps through a retry by accident)."""
    from connectors import _http

    fake = FakeClock()
    monkeypatch.setattr(_http, "clock", fake)
    return fake


@pytest.fixture(scope="session")
def prefect_harness():
    """A real Prefect engine with a temporary database, shared by every flow test."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


@pytest.fixture(scope="session")
def prefect_server(tmp_path_factory):
    """`prefect server start` on a free port of 127.0.0.1 (its own PREFECT_HOME, analytics off), as
    an operator runs it; for tests with serve, work pools and workers side by side. Once per session."""
    from prefect_server import PrefectServer

    with PrefectServer(tmp_path_factory.mktemp("prefect-server")) as server:
        yield server


@pytest.fixture
def write_config(tmp_path):
    """Write YAML text to a config file in tmp_path and return its path."""
    def write(text: str, name: str = "okrs.yaml") -> Path:
        path = tmp_path / name
        path.write_text(text, encoding="utf-8")
        return path
    return write


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A fresh PostgreSQL database on 127.0.0.1:5432, dropped afterwards; skips if no server."""
    psycopg = pytest.importorskip("psycopg")
    try:
        admin = psycopg.connect(PG_ADMIN, autocommit=True)
    except psycopg.OperationalError as exc:
        pytest.skip(f"PostgreSQL not reachable at 127.0.0.1:5432 (.ci/run starts it): {str(exc).splitlines()[0]}")
    name = f"okr_test_{uuid.uuid4().hex[:12]}"
    with admin:
        admin.execute(f'CREATE DATABASE "{name}"')
        try:
            yield f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
        finally:
            admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                          "WHERE datname = %s AND pid <> pg_backend_pid()", (name,))
            admin.execute(f'DROP DATABASE IF EXISTS "{name}"')


@pytest.fixture
def restored_cli_loggers() -> Iterator[None]:
    """The CLI sets okr-sync's loggers up as a process would (level, a stderr handler): undo it after."""
    import logging

    loggers = [logging.getLogger(name) for name in ("okrsync", "connectors")]
    saved = [(lg, lg.level, lg.propagate, list(lg.handlers)) for lg in loggers]
    yield
    for logger, level, propagate, handlers in saved:
        logger.setLevel(level)
        logger.propagate = propagate
        logger.handlers[:] = handlers


@pytest.fixture
def cli(tmp_path, monkeypatch, restored_cli_loggers):
    """`okr-sync ARGS...` in-process (typer's CliRunner, so coverage sees it), in tmp_path, with the
    store at tmp_path/okr.db unless --store says otherwise. Returns typer's Result."""
    from typer.testing import CliRunner

    from okrsync.cli import app

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("OKR_SYNC_STORE", f"sqlite:///{tmp_path / 'okr.db'}")
    runner = CliRunner()

    def invoke(*args: str):
        return runner.invoke(app, list(args), catch_exceptions=False)
    return invoke
