"""A temporary Prefect server for a run when no Prefect API is configured (`okr-sync run --prefect`
on a machine without PREFECT_API_URL), kept out of the run's process.

Prefect would start one itself, in a process of its own (uvicorn serving
`prefect.server.api.server:create_app`), but to do so it imports its whole server package into the
run's process: about 80 MB and a second, at 10 key results as at 5,000. This starts the same
server the same way (same command, same settings, same start-up deadline) without that import,
points this process at it for the run, and stops it afterwards, once the run's logs and events
have reached it. Orchestration only: no okr-sync work here.
"""
from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import IO, Iterator

PORT_IN_USE = 3                  # uvicorn's exit code when the port was taken meanwhile
STOP_SECONDS = 5.0               # SIGTERM, then SIGKILL after this long (as Prefect does)
DRAIN_SECONDS = 10.0             # the run's logs and events sent before the server stops

class ServerDidNotStart(RuntimeError):
    """The temporary server did not answer /health in time, or exited."""


def _free_port() -> int:
    with contextlib.closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _start(port: int, log: IO[bytes]) -> subprocess.Popen[bytes]:
    import prefect
    from prefect.settings import get_current_settings

    env = {**os.environ, "PREFECT_UI_ENABLED": "0", "PREFECT__SERVER_EPHEMERAL": "1", "PREFECT__SERVER_FINAL": "1",
           **get_current_settings().to_environment_variables(exclude_unset=True)}
    return subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "--app-dir", str(Path(prefect.__file__).resolve().parent.parent),
         "--factory", "prefect.server.api.server:create_app", "--host", "127.0.0.1", "--port", str(port),
         "--log-level", "error", "--lifespan", "on"],
        env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=log)


def _last_line(log: IO[bytes]) -> str:
    """The server's last log line, fit to quote (secrets scrubbed, one line, bounded)."""
    from okrsync.redact import server_text

    log.seek(0)
    lines = [ln for ln in log.read().decode("utf-8", "replace").splitlines() if ln.strip()]
    return server_text(lines[-1]) if lines else "nothing logged"


def _wait_healthy(process: subprocess.Popen[bytes], url: str, deadline: float) -> bool:
    """True once Prefect's client finds the API healthy; False if the process exited with PORT_IN_USE;
    raises otherwise."""
    from prefect.client.orchestration import SyncPrefectClient

    with SyncPrefectClient(url, httpx_settings={"timeout": 2.0}) as client:
        while time.monotonic() < deadline:
            code = process.poll()
            if code == PORT_IN_USE:
                return False
            if code is not None:
                raise ServerDidNotStart(f"the temporary Prefect server exited with code {code}")
            if client.api_healthcheck() is None:
                return True
            time.sleep(0.1)
    raise ServerDidNotStart("the temporary Prefect server did not answer in time (raise "
                            "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS, or set PREFECT_API_URL to a running server)")


def _stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=STOP_SECONDS)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def _drain() -> None:
    """Send what the run logged and emitted to the server while it still runs (Prefect would do it at exit)."""
    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker

    for worker in (APILogWorker, EventsWorker):
        with contextlib.suppress(Exception):
            worker.drain_all(timeout=DRAIN_SECONDS, at_exit=False)


@contextlib.contextmanager
def temporary_server() -> Iterator[str]:
    """Start Prefect's temporary server in a process of its own and point this process's Prefect at it
    for the block; yields its API URL. ServerDidNotStart (with the server's last log line) if it does not
    answer within PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS."""
    from prefect.settings import (PREFECT_API_URL, PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS, PREFECT_UI_URL,
                                  temporary_settings)

    deadline = time.monotonic() + float(PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS.value())
    with tempfile.TemporaryFile() as log:
        process = None
        try:
            for _ in range(3):                         # a port taken between choosing it and binding it: another
                port = _free_port()
                url = f"http://127.0.0.1:{port}/api"
                process = _start(port, log)
                if _wait_healthy(process, url, deadline):
                    break
            else:
                raise ServerDidNotStart("the temporary Prefect server found no free port")
        except ServerDidNotStart as failed:
            if process is not None and process.poll() is None:
                _stop(process)
            raise ServerDidNotStart(f"{failed} ({_last_line(log)})") from None
        try:
            # no UI address: the server serves none and stops with the command, so flow runs get no page
            # (Prefect's url_for answers None), as under Prefect's own temporary server
            with temporary_settings(updates={PREFECT_API_URL: url, PREFECT_UI_URL: ""}):
                try:
                    yield url
                finally:
                    _drain()
        finally:
            _stop(process)


@contextlib.contextmanager
def prefect_api() -> Iterator[str]:
    """The Prefect API a run reports to for the block: the one configured (PREFECT_API_URL, a profile),
    else a temporary server started for it (`temporary_server`)."""
    from prefect.settings import PREFECT_API_URL

    configured = PREFECT_API_URL.value()
    if configured:
        yield configured
        return
    with temporary_server() as url:
        yield url


__all__ = ["prefect_api", "temporary_server", "ServerDidNotStart"]
