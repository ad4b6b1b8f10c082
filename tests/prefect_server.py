"""A real Prefect server for tests that need what an operator runs: `prefect server start`.

    with PrefectServer(tmp_path / "prefect") as server:
        server.api_url                 # http://127.0.0.1:PORT/api
        server.env()                   # an environment for `okr-sync serve`, `prefect deploy`, a worker
        with server.client_settings(): # in-process clients (get_client) talk to it
            ...

The server runs as a subprocess on a free port of 127.0.0.1, with its own PREFECT_HOME (its
SQLite database and settings) under the given directory and analytics off. Start-up waits for
`/api/health` (bounded); the process is stopped (SIGTERM, then SIGKILL) when the block ends.
"""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

STARTUP_TIMEOUT = 120.0        # a busy machine takes a while to create the database


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PrefectServer(AbstractContextManager):
    def __init__(self, home: Path):
        self.home = Path(home)
        self.port = free_port()
        self.api_url = f"http://127.0.0.1:{self.port}/api"
        self.log_path = self.home / "server.log"
        self._process: subprocess.Popen | None = None

    def env(self, **extra: str) -> dict[str, str]:
        """An environment pointed at this server and nothing else: no PREFECT_* of the caller's, a
        PREFECT_HOME of its own for the clients (profiles, storage), analytics off."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
        client_home = self.home / "client"
        client_home.mkdir(parents=True, exist_ok=True)
        env.update(PREFECT_API_URL=self.api_url, PREFECT_HOME=str(client_home),
                   PREFECT_SERVER_ANALYTICS_ENABLED="false", **extra)
        return env

    def client_settings(self) -> Any:
        """A context in which this process's Prefect clients talk to this server."""
        from prefect.settings import PREFECT_API_URL, temporary_settings

        return temporary_settings(updates={PREFECT_API_URL: self.api_url})

    def start(self) -> PrefectServer:
        self.home.mkdir(parents=True, exist_ok=True)
        env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
        env.update(PREFECT_HOME=str(self.home), PREFECT_SERVER_ANALYTICS_ENABLED="false",
                   PREFECT_SERVER_LOGGING_LEVEL="WARNING")
        with self.log_path.open("w") as log:
            self._process = subprocess.Popen(
                [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1", "--port", str(self.port)],
                env=env, cwd=self.home, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(f"prefect server start exited with {self._process.returncode}:\n{self._log_tail()}")
            try:
                with urllib.request.urlopen(f"{self.api_url}/health", timeout=2) as answer:
                    if answer.status == 200:
                        return self
            except OSError:
                pass
            time.sleep(0.25)
        self.stop()
        raise RuntimeError(f"prefect server start was not healthy within {STARTUP_TIMEOUT:.0f}s:\n{self._log_tail()}")

    def stop(self) -> None:
        if self._process is None or self._process.poll() is not None:
            return
        os.killpg(self._process.pid, signal.SIGTERM)
        try:
            self._process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(self._process.pid, signal.SIGKILL)
            self._process.wait(timeout=10)

    def _log_tail(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-3000:]
        except OSError:
            return "(no log)"

    def __enter__(self) -> PrefectServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
