"""A Slack-like incoming-webhook receiver on 127.0.0.1 for end-to-end alert tests.

    with WebhookReceiver(path="/services/T0/B0/secret") as hook:
        ...            # post to hook.url
        hook.posts     # [{"text": ...}, ...], one per accepted POST
        hook.answers = [(500, "rollup_error", {})]   # answer the next POSTs like this, then 200 "ok"
        hook.received  # [(headers, raw body bytes), ...] of the POSTs answered 200, for signature checks
        hook.stall = 1.0   # wait this long before answering each POST (a client's read timeout)

It answers like Slack: 200 "ok" on its path, 404 "no_service" elsewhere. It runs in a daemon
thread and stops when the `with` block ends.
"""
from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class WebhookReceiver:
    def __init__(self, path: str = "/services/T000/B000/XXXX"):
        self.path = path
        self.posts: list[dict[str, Any]] = []       # bodies of the POSTs answered 200
        self.requests: list[str] = []               # every request line's path, answered or not
        self.answers: list[tuple[int, str, dict[str, str]]] = []
        self.received: list[tuple[dict[str, str], bytes]] = []
        self.stall = 0.0
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                if receiver.stall:
                    time.sleep(receiver.stall)
                with receiver._lock:
                    receiver.requests.append(self.path)
                    if self.path != receiver.path:
                        status, text, headers = 404, "no_service", {}
                    elif receiver.answers:
                        status, text, headers = receiver.answers.pop(0)
                    else:
                        status, text, headers = 200, "ok", {}
                        receiver.posts.append(json.loads(body))
                        receiver.received.append((dict(self.headers.items()), body))
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(text)))
                self.end_headers()
                self.wfile.write(text.encode())

            def log_message(self, *args: Any) -> None:  # keep test output quiet
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}{self.path}"

    def __enter__(self) -> WebhookReceiver:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
