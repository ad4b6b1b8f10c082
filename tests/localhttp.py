"""The plumbing every local test server shares: a threaded HTTP server on 127.0.0.1:<free port>
that stops itself after a bounded lifetime, whatever the test does."""
from __future__ import annotations

import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable

LIFETIME = 120.0                 # seconds


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:   # a client that hung up is no news
        pass


class LocalServer:
    """Serves `handle(handler, method)` for GET/POST/PATCH/PUT/DELETE until stopped (or `lifetime` passes)."""

    def __init__(self, handle: Callable[[BaseHTTPRequestHandler, str], None], *, lifetime: float = LIFETIME,
                 keep_alive: bool = True):
        outer_handle = handle

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1" if keep_alive else "HTTP/1.0"
            timeout = 30

            def setup(self) -> None:
                super().setup()
                # headers and body go out in two writes: without this, Nagle's algorithm holds the body
                # until the client's delayed ACK (~40 ms), a wait no real server adds
                self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

            def log_message(self, *args: Any) -> None:     # keep test output quiet
                pass

            def do_GET(self) -> None:
                outer_handle(self, "GET")

            def do_POST(self) -> None:
                outer_handle(self, "POST")

            def do_PATCH(self) -> None:
                outer_handle(self, "PATCH")

            def do_PUT(self) -> None:
                outer_handle(self, "PUT")

            def do_DELETE(self) -> None:
                outer_handle(self, "DELETE")

        self._server = _QuietServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._watchdog = threading.Timer(lifetime, self._server.shutdown)
        self._watchdog.daemon = True

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> LocalServer:
        self._thread.start()
        self._watchdog.start()
        return self

    def stop(self) -> None:
        self._watchdog.cancel()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
