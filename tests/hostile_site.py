"""A hostile site for tests/test_hostile_servers.py: Jira Cloud, Jira Data Center, GitHub (REST and
GraphQL), Google (token endpoint and Sheets API v4) and an alert webhook behind one local server,
each answering normally until told to answer one route with a hostile answer.

    with HostileSite() as site:
        site.hostile["jc-count"] = echo(400, "jira-errorMessages")
        ...  # sources at site.url + "/jc", "/dc", "/gh/api/v3", "/ghq/api/v3", "/sheets/v4/spreadsheets"

Routes: jc-info, jc-count (Jira Cloud), dc-info, dc-search (Jira Data Center), gh-search (GitHub
REST search), ghq-graphql (GitHub GraphQL), gs-token, gs-meta, gs-values (Google), hook (the webhook).
A hostile answer is `answer(handler, request)`, `request` the whole request as text (request line,
headers with Authorization, body), so it can be echoed back.
"""
from __future__ import annotations

import base64
import json
import threading
from http.server import BaseHTTPRequestHandler
from typing import Any, Callable
from urllib.parse import parse_qs, quote, urlsplit

from localhttp import LocalServer

Answer = Callable[[BaseHTTPRequestHandler, str], None]
STOP = threading.Event()           # set when a site stops: ends drips and hangs
DRIP_FOR = 15.0                    # seconds a drip or a hang lasts at most


def send(handler: BaseHTTPRequestHandler, status: int, body: bytes | str | Any,
         content_type: str = "application/json", headers: dict[str, str] | None = None) -> None:
    data = body if isinstance(body, bytes) else body.encode() if isinstance(body, str) else json.dumps(body).encode()
    handler.send_response(status)
    handler.send_header("Content-Type", content_type)
    handler.send_header("Content-Length", str(len(data)))
    for name, value in (headers or {}).items():
        handler.send_header(name, value)
    handler.end_headers()
    handler.wfile.write(data)


def json_escaped(text: str) -> str:
    """A JSON string literal with every character \\u-escaped: no secret is visible in the raw bytes."""
    return '"' + "".join(f"\\u{ord(c):04x}" for c in text) + '"'


def authorization(request: str) -> str:
    return next((line.split(":", 1)[1].strip() for line in request.splitlines()
                 if line.lower().startswith("authorization:")), "")


def shaped(shape: str, request: str) -> tuple[bytes, str]:
    """The body (and its content type) echoing `request` in one of the shapes servers use."""
    auth = authorization(request)
    said = f"You sent Authorization: {auth}; the request was {request}"
    if shape == "jira-errorMessages":
        return json.dumps({"errorMessages": [said], "errors": {}}).encode(), "application/json"
    if shape == "jira-errors":
        return json.dumps({"errorMessages": [], "errors": {"jql": said, "auth": auth}}).encode(), "application/json"
    if shape == "github-message":
        return json.dumps({"message": said, "documentation_url": "https://docs.github.com/rest"}).encode(), \
            "application/json"
    if shape == "github-errors":
        return json.dumps({"message": "Validation Failed", "errors": [{"resource": "Search", "code": "invalid",
                                                                       "message": said}]}).encode(), "application/json"
    if shape == "google-error":
        return json.dumps({"error": {"code": 400, "message": said, "status": "INVALID_ARGUMENT"}}).encode(), \
            "application/json"
    if shape == "html":
        return f"<!DOCTYPE html><html><body><h1>Error</h1><pre>{said}</pre></body></html>".encode(), "text/html"
    if shape == "text":
        return said.encode(), "text/plain"
    if shape == "json-escaped":
        return ('{"errorMessages": [' + json_escaped(said) + '], "message": ' + json_escaped(said) + "}").encode(), \
            "application/json"
    if shape == "base64":
        token = auth.split(" ", 1)[-1]
        raw = base64.b64decode(token).decode() if auth.startswith("Basic ") else token
        return json.dumps({"errorMessages": [f"credentials {base64.b64encode(raw.encode()).decode()} refused"],
                           "message": f"credentials {base64.b64encode(raw.encode()).decode()} refused"}).encode(), \
            "application/json"
    if shape == "urlencoded":
        return f"error=refused&request={quote(said, safe='')}".encode(), "application/x-www-form-urlencoded"
    raise ValueError(shape)


def echo(status: int, shape: str, headers: dict[str, str] | None = None) -> Answer:
    def answer(handler: BaseHTTPRequestHandler, request: str) -> None:
        body, kind = shaped(shape, request)
        send(handler, status, body, kind, headers)
    return answer


def graphql_errors(handler: BaseHTTPRequestHandler, request: str) -> None:
    """GraphQL's 200 with `errors[]` (no path), echoing the request."""
    send(handler, 200, {"data": None, "errors": [{"type": "FORBIDDEN", "message": f"denied: {request}"}]})


def body(status: int, raw: str, content_type: str = "application/json") -> Answer:
    """A fixed body (wrong types, NaN, 10^400 ... as raw JSON text)."""
    def answer(handler: BaseHTTPRequestHandler, request: str) -> None:
        send(handler, status, raw.encode(), content_type)
    return answer


_HUGE: dict[str, bytes] = {}


def huge(status: int, key: str) -> Answer:
    """A 50 MB JSON error body whose message holds the request, then 50 MB of padding."""
    def answer(handler: BaseHTTPRequestHandler, request: str) -> None:
        pad = _HUGE.setdefault("pad", b"A" * (50 * 1024 * 1024))
        head = json.dumps(request)[1:-1].encode()
        send(handler, status, b'{"%s": ["' % key.encode() + head + b" " + pad + b'"], "message": "' + head + b' x"}')
    return answer


def drip(handler: BaseHTTPRequestHandler, request: str) -> None:
    """Headers, then a byte a second (no socket timeout catches it)."""
    handler.send_response(200)
    handler.send_header("Content-Type", "application/json")
    handler.send_header("Content-Length", "1000")
    handler.end_headers()
    handler.wfile.flush()
    for _ in range(int(DRIP_FOR)):
        try:
            handler.wfile.write(b" ")
            handler.wfile.flush()
        except OSError:
            return
        if STOP.wait(1.0):
            return


def hang(handler: BaseHTTPRequestHandler, request: str) -> None:
    """Accepts the request, never answers."""
    STOP.wait(DRIP_FOR)


class HostileSite:
    """The local server; `hostile` maps a route to its hostile answer, `hook_bodies` the webhook's POSTs."""

    def __init__(self, *, counts: dict[str, int] | None = None, access_token: str = "ya29.test", hook_path: str = "/hook"):
        self.counts = {"jc": 7, "dc": 5, "gh": 11, "ghq": 13, **(counts or {})}
        self.access_token = access_token
        self.hook_path = hook_path
        self.hostile: dict[str, Answer] = {}
        self.hook_bodies: list[str] = []
        self.seen: list[str] = []
        self._server = LocalServer(self._handle)

    @property
    def url(self) -> str:
        return self._server.url

    def __enter__(self) -> HostileSite:
        STOP.clear()
        self._server.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        STOP.set()
        self._server.stop()

    def _handle(self, handler: BaseHTTPRequestHandler, method: str) -> None:
        length = int(handler.headers.get("Content-Length") or 0)
        raw = handler.rfile.read(length) if length else b""
        request = f"{method} {handler.path}\n{handler.headers}\n{raw.decode(errors='replace')}"
        route = self._route(method, handler.path, raw)
        self.seen.append(route)
        if route == "hook":
            self.hook_bodies.append(raw.decode(errors="replace"))
        answer = self.hostile.get(route)
        if answer is not None:
            answer(handler, request)
            return
        self._normal(handler, route, handler.path)

    def _route(self, method: str, path: str, raw: bytes) -> str:
        p = urlsplit(path).path
        if p.startswith(self.hook_path):
            return "hook"
        if p == "/token":
            return "gs-token"
        if p.startswith("/sheets/"):
            return "gs-values" if ":batchGet" in p else "gs-meta"
        for site in ("jc", "dc"):
            if p.startswith(f"/{site}/"):
                return f"{site}-info" if p.endswith("/serverInfo") else f"{site}-count" if site == "jc" else "dc-search"
        if p.startswith("/ghq/api/graphql"):
            return "ghq-graphql"
        if p.startswith("/gh/api/v3/search") or p.startswith("/ghq/api/v3/search"):
            return "gh-search"
        return "unknown"

    def _normal(self, handler: BaseHTTPRequestHandler, route: str, path: str) -> None:
        if route in ("jc-info", "dc-info"):
            cloud = route == "jc-info"
            send(handler, 200, {"versionNumbers": [1001, 0, 0] if cloud else [9, 12, 0], "version": "9.12.0",
                                "deploymentType": "Cloud" if cloud else "Server"})
        elif route == "jc-count":
            send(handler, 200, {"count": self.counts["jc"]})
        elif route == "dc-search":
            send(handler, 200, {"startAt": 0, "maxResults": 0, "total": self.counts["dc"], "issues": []})
        elif route == "gh-search":
            send(handler, 200, {"total_count": self.counts["gh"], "incomplete_results": False, "items": []})
        elif route == "ghq-graphql":
            send(handler, 200, {"data": {"q0": {"issueCount": self.counts["ghq"]},
                                         "q1": {"issueCount": self.counts["ghq"] + 1}}})
        elif route == "gs-token":
            send(handler, 200, {"access_token": self.access_token, "expires_in": 3600, "token_type": "Bearer"})
        elif route == "gs-meta":
            send(handler, 200, {"properties": {"title": "KPIs", "locale": "en_US"},
                                "sheets": [{"properties": {"sheetId": 0, "title": "Sheet1", "index": 0,
                                                           "sheetType": "GRID"}}]})
        elif route == "gs-values":
            ranges = parse_qs(urlsplit(path).query).get("ranges", [])
            send(handler, 200, {"spreadsheetId": "x", "valueRanges": [
                {"range": r, "majorDimension": "ROWS", "values": [["42"]]} for r in ranges]})
        elif route == "hook":
            send(handler, 200, "ok", "text/plain")
        else:
            send(handler, 404, {"message": "Not Found"})
