"""`LoadServer`: Jira Cloud, Jira Data Center and GitHub on one local port, over a generated dataset.

    with LoadServer(generate(5_000), latency=0.05) as server:
        server.jira_cloud_url        # http://127.0.0.1:PORT          (deploymentType "Cloud")
        server.jira_dc_url           # http://127.0.0.1:PORT/dc       (Data Center, with a context path)
        server.github_api            # http://127.0.0.1:PORT/api/v3   (GraphQL at /api/graphql)

What it speaks (payload shapes from tests/fake_jira.py and tests/fake_github.py, which follow
the vendors' docs):

- Jira (REST v2 and v3): GET serverInfo (anonymous), GET field, POST search/approximate-count
  (Cloud), GET/POST search/jql with maxResults (100 a page once fields are asked; no `fields`:
  issue ids only, Cloud's default), nextPageToken / isLast (Cloud); both Cloud endpoints refuse
  a query with no condition (400, "Unbounded JQL queries are not allowed here..."); GET/POST search with startAt / maxResults (capped at
  `dc_max_results`) / total (Data Center); the removed Cloud `search` answers 410. Basic auth
  (email:token) on Cloud, bearer on Data Center. A JQL it cannot run: 400 ErrorCollection.
- GitHub: GET /search/issues (per_page <= 100, Link rel="next"/"last", the 1,000-result cap,
  total_count, sort=created), POST /api/graphql (aliased `search(query:, type: ISSUE) { issueCount }`,
  with `first: N` also its first N `nodes` as Issue / PullRequest;
  a refused search nulls `data`, as for a non-null field; a document that does not parse: 200 with
  a "Parse error on ..." error and no data), GET repos/{repo}/milestones[/{n}] (the list: `state`
  open by default, closed or all; v1.x milestones are closed, v2.x open).
  `Authorization: token ...`; a refused search: 422.

Rate limits, as each service does them (None turns one off):
- Jira: a token bucket (`jira_rate=(capacity, refill per second)`); when empty, 429 with
  `Retry-After` (seconds), `X-RateLimit-Limit`, `X-RateLimit-Remaining: 0`, `X-RateLimit-Reset`
  (ISO 8601) and `RateLimit-Reason: jira-burst-based`.
- GitHub: fixed windows per resource (search 30/min, core 5,000/h, graphql 5,000 points/h);
  every answer carries `x-ratelimit-limit/-remaining/-reset/-used/-resource`; a REST request
  over the limit gets 403 "API rate limit exceeded", a GraphQL one 200 with an error of type
  RATE_LIMITED.

Time: the limits run on `now()`, real time plus `offset` (with `frozen=True`, the time the server
was made plus `offset`, so only the recorded waits move it and a test can expect exact waits). Tests patch the connectors' sleep
with `advance`, which records the wait and moves the server's clock instead of sleeping.
Latency (`latency` seconds before each answer) is real.

Faults on demand: `inject(Fault(...))` queues them; each request takes the first fault that
matches its service and path, and its JQL when the fault names one (`jql`: the condition, ORDER BY
left out), after `skip` matching requests. Kinds: "status" (any status,
headers, body), "reset" (half the body, then a TCP reset), "delay" (answer after `seconds`:
a read timeout for a client with a shorter timeout), "malformed" (200, truncated JSON),
"html" (200, a login page).

Every request is logged in `requests` (service, method, path, status), whatever its answer.
"""
from __future__ import annotations

import base64
import json
import math
import re
import socket
import struct
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import fake_github as gh
import fake_jira as fj

from .dataset import Dataset, GitHubItem, JiraIssue
from localhttp import LocalServer
from .queries import JqlError, SearchError, jql_predicate, search_predicate

EMAIL = "okr-bot@example.com"
DC_PREFIX = "/dc"
STORY_POINTS = fj.STORY_POINTS
LOGIN_PAGE = ("<!DOCTYPE html><html><head><title>Log in with Atlassian account</title></head>"
              "<body><form action=\"/login\" method=\"post\"><input name=\"username\"></form></body></html>")
RATE_LIMITED_BODY = {"message": "API rate limit exceeded for user ID 1. If you reach out to GitHub Support for help, "
                                "please include the request ID 0000:0000:0000000:0000000:00000000.",
                     "documentation_url": "https://docs.github.com/rest/overview/rate-limits-for-the-rest-api",
                     "status": "403"}
SECONDARY_BODY = {"message": "You have exceeded a secondary rate limit. Please wait a few minutes before you try again. "
                             "If you reach out to GitHub Support for help, please include the request ID 0000.",
                  "documentation_url": "https://docs.github.com/free-pro-team@latest/rest/overview/rate-limits-for-the-rest-api#about-secondary-rate-limits",
                  "status": "403"}
_JIRA_PATH = re.compile(r"^(?P<dc>/dc)?/rest/api/(?:2|3)/(?P<rest>.*)$")


@dataclass
class Fault:
    """One injected failure; `times` requests get it, after `skip` matching ones pass."""

    kind: str = "status"                 # status | reset | delay | malformed | html
    service: str = "any"                 # jira | github | any
    path: str = ""                       # a substring of the request path it hits ("" = any)
    times: int = 1
    skip: int = 0
    status: int = 503
    headers: dict[str, str] = field(default_factory=dict)
    body: Any = None
    seconds: float = 0.0
    jql: str | None = None               # only Jira requests for this condition (ORDER BY ignored)

    def hits(self, service: str, path: str, jql: str | None = None) -> bool:
        return (self.service in ("any", service) and self.path in path
                and (self.jql is None or (jql is not None and condition(jql) == condition(self.jql))))


def condition(jql: str) -> str:
    """A JQL's condition: ORDER BY and the whitespace around it left out."""
    return re.split(r"\border\s+by\b", jql, maxsplit=1, flags=re.IGNORECASE)[0].strip()


@dataclass(frozen=True)
class Request:
    service: str
    method: str
    path: str
    status: int
    body: Any = None


class _Bucket:
    """Jira's token bucket: `capacity` requests, refilled at `rate` a second."""

    def __init__(self, capacity: int, rate: float, now: float):
        self.capacity, self.rate, self.tokens, self.at = capacity, rate, float(capacity), now

    def take(self, now: float) -> float:
        """0 if a token was taken, else the seconds until one is there."""
        self.tokens = min(self.capacity, self.tokens + (now - self.at) * self.rate)
        self.at = now
        if self.tokens >= 1:
            self.tokens -= 1
            return 0.0
        return (1 - self.tokens) / self.rate


class _Window:
    """GitHub's fixed window: `limit` per `seconds`, reset at a whole epoch second."""

    def __init__(self, resource: str, limit: int, seconds: float):
        self.resource, self.limit, self.seconds = resource, limit, seconds
        self.used, self.reset = 0, 0.0

    def take(self, now: float, cost: int = 1) -> bool:
        if now >= self.reset:
            self.used, self.reset = 0, float(math.ceil(now + self.seconds))
        if self.used + cost > self.limit:
            return False
        self.used += cost
        return True

    def headers(self) -> dict[str, str]:
        return {"x-ratelimit-limit": str(self.limit), "x-ratelimit-remaining": str(max(0, self.limit - self.used)),
                "x-ratelimit-reset": str(int(self.reset)), "x-ratelimit-used": str(self.used),
                "x-ratelimit-resource": self.resource}


class LoadServer:
    """See the module docstring. Use as a context manager."""

    def __init__(self, data: Dataset, *, token: str = "token", email: str = EMAIL, latency: float = 0.0,
                 jira_rate: tuple[int, float] | None = (100, 10.0), github_search_per_minute: int | None = 30,
                 github_core_per_hour: int | None = 5000, graphql_points_per_hour: int | None = 5000,
                 dc_max_results: int = 1000, lifetime: float = 120.0, frozen: bool = False):
        self.data = data
        self._frozen_at = time.time() if frozen else None
        self.token, self.email, self.latency = token, email, latency
        self.dc_max_results = dc_max_results
        self.offset = 0.0
        self.waits: list[float] = []
        self.requests: list[Request] = []
        self.faults: list[Fault] = []
        self._lock = threading.Lock()
        self._jira_cache: dict[str, list[JiraIssue] | JqlError] = {}
        self._gh_cache: dict[str, list[GitHubItem] | SearchError] = {}
        now = self.now()
        self._buckets = {dc: _Bucket(jira_rate[0], jira_rate[1], now) for dc in (False, True)} if jira_rate else {}
        self.windows = {name: _Window(name, limit, seconds) for name, limit, seconds in
                         (("search", github_search_per_minute, 60.0), ("core", github_core_per_hour, 3600.0),
                          ("graphql", graphql_points_per_hour, 3600.0)) if limit}
        self._http = LocalServer(self._handle, lifetime=lifetime)

    # ------------------------------------------------------------------ lifecycle and views

    def __enter__(self) -> LoadServer:
        self._http.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._http.stop()

    @property
    def root(self) -> str:
        return self._http.url

    @property
    def jira_cloud_url(self) -> str:
        return self.root

    @property
    def jira_dc_url(self) -> str:
        return self.root + DC_PREFIX

    @property
    def github_api(self) -> str:
        return self.root + "/api/v3"

    def now(self) -> float:
        return (time.time() if self._frozen_at is None else self._frozen_at) + self.offset

    def advance(self, seconds: float) -> None:
        """A patched `sleep`: record the wait and move the server's clock by it."""
        self.waits.append(seconds)
        self.offset += seconds

    def inject(self, *faults: Fault) -> None:
        with self._lock:
            self.faults.extend(faults)

    def count(self, service: str | None = None, path: str = "") -> int:
        return sum(1 for r in list(self.requests) if (service is None or r.service == service) and path in r.path)

    def jira_matching(self, jql: str) -> list[JiraIssue]:
        """The issues a JQL matches (cached); JqlError for a query Jira would refuse."""
        found = self._jira_cache.get(jql)
        if found is None:
            try:
                predicate = jql_predicate(jql)
                found = [i for i in self.data.jira if predicate(i)]
            except JqlError as exc:
                found = exc
            self._jira_cache[jql] = found
        if isinstance(found, JqlError):
            raise found
        return found

    def github_matching(self, query: str) -> list[GitHubItem]:
        """The items a search matches, newest first (cached); SearchError for a refused search."""
        found = self._gh_cache.get(query)
        if found is None:
            try:
                predicate = search_predicate(query)
                found = sorted((i for i in self.data.github if predicate(i)), key=lambda i: i.created_at, reverse=True)
            except SearchError as exc:
                found = exc
            self._gh_cache[query] = found
        if isinstance(found, SearchError):
            raise found
        return found

    # ------------------------------------------------------------------ one request

    def _handle(self, http: BaseHTTPRequestHandler, method: str) -> None:
        length = int(http.headers.get("Content-Length") or 0)
        raw = http.rfile.read(length) if length else b""
        parts = urlsplit(http.path)
        path = parts.path
        service = "github" if path.startswith("/api/") else "jira"
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = None
        query = {k: v for k, v in parse_qs(parts.query).items()}
        if self.latency:
            time.sleep(self.latency)
        jql = body.get("jql") if isinstance(body, dict) else query.get("jql", [None])[0]
        fault = self._take_fault(service, path, jql if isinstance(jql, str) else None)
        if fault is not None and fault.kind != "delay":
            self._log(service, method, path, fault.status if fault.kind == "status" else 200, body)
            return self._fault(http, service, fault)
        if fault is not None:
            time.sleep(fault.seconds)
        if service == "jira":
            status, headers, payload = self._jira(method, path, query, body, http.headers.get("Authorization"))
        else:
            status, headers, payload = self._github(method, path, query, body, http.headers.get("Authorization"))
        self._log(service, method, path, status, body)
        self._send(http, status, payload, headers)

    def _log(self, service: str, method: str, path: str, status: int, body: Any) -> None:
        with self._lock:
            self.requests.append(Request(service, method, path, status, body))

    def _take_fault(self, service: str, path: str, jql: str | None) -> Fault | None:
        with self._lock:
            for fault in self.faults:
                if not fault.hits(service, path, jql):
                    continue
                if fault.skip > 0:
                    fault.skip -= 1
                    return None
                fault.times -= 1
                if fault.times <= 0:
                    self.faults.remove(fault)
                return fault
        return None

    def _fault(self, http: BaseHTTPRequestHandler, service: str, fault: Fault) -> None:
        if fault.kind == "status":
            body = fault.body if fault.body is not None else (
                fj.errors(f"HTTP {fault.status}") if service == "jira" else gh.error_body(f"HTTP {fault.status}", fault.status))
            return self._send(http, fault.status, body, fault.headers)
        if fault.kind == "html":
            return self._send_raw(http, 200, LOGIN_PAGE.encode(), "text/html;charset=UTF-8", fault.headers)
        if fault.kind == "malformed":
            return self._send_raw(http, 200, b'{"issues": [{"id": "10001", "fields": {', "application/json", {})
        # reset: promise a whole body, send half of it, then a TCP reset
        data = json.dumps({"issues": [], "total_count": 0, "padding": "x" * 2000}).encode()
        http.send_response(200)
        http.send_header("Content-Type", "application/json")
        http.send_header("Content-Length", str(len(data)))
        http.end_headers()
        http.wfile.write(data[: len(data) // 2])
        http.wfile.flush()
        http.close_connection = True
        http.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        http.connection.close()

    @staticmethod
    def _send(http: BaseHTTPRequestHandler, status: int, payload: Any, headers: dict[str, str]) -> None:
        LoadServer._send_raw(http, status, json.dumps(payload).encode(), "application/json;charset=UTF-8", headers)

    @staticmethod
    def _send_raw(http: BaseHTTPRequestHandler, status: int, data: bytes, kind: str, headers: dict[str, str]) -> None:
        try:
            http.send_response(status)
            http.send_header("Content-Type", kind)
            http.send_header("Content-Length", str(len(data)))
            for name, value in headers.items():
                http.send_header(name, value)
            http.end_headers()
            http.wfile.write(data)
        except OSError:                       # the client gave up (a read timeout): nothing to answer
            http.close_connection = True

    # ------------------------------------------------------------------ Jira

    def _jira_authorised(self, dc: bool, header: str | None) -> bool:
        if dc:
            return header == f"Bearer {self.token}"
        return header == "Basic " + base64.b64encode(f"{self.email}:{self.token}".encode()).decode()

    def _jira(self, method: str, path: str, query: dict[str, list[str]], body: Any,
              auth: str | None) -> tuple[int, dict[str, str], Any]:
        m = _JIRA_PATH.match(path)
        if not m:
            return 404, {}, fj.errors("null for uri: " + path)
        dc, rest = bool(m.group("dc")), m.group("rest").rstrip("/")
        base = self.jira_dc_url if dc else self.jira_cloud_url
        if (method, rest) == ("GET", "serverInfo"):
            return 200, {}, fj.server_info("Server" if dc else "Cloud", base)
        if not self._jira_authorised(dc, auth):
            return 401, {}, fj.errors("You are not authenticated. Authentication required to perform this operation.")
        limited = self._jira_limit(dc)
        if limited:
            return limited
        params = dict(body) if method == "POST" and isinstance(body, dict) else _flat(query)
        try:
            if (method, rest) == ("GET", "field"):
                return 200, {}, fj.FIELDS
            if rest == "search/approximate-count" and method == "POST" and not dc:
                fj.require_bounded(str(params.get("jql", "")))
                return 200, {}, fj.count(len(self.jira_matching(str(params.get("jql", "")))))
            if rest == "search/jql" and not dc:
                fj.require_bounded(str(params.get("jql", "")))
                return 200, {}, self._cloud_search(params, base)
            if rest == "search":
                return (410, {}, fj.REMOVED_SEARCH) if not dc else (200, {}, self._dc_search(params, base))
        except JqlError as exc:
            return 400, {}, fj.errors(str(exc))
        return 404, {}, fj.errors("null for uri: " + path)

    def _jira_limit(self, dc: bool) -> tuple[int, dict[str, str], Any] | None:
        bucket = self._buckets.get(dc)
        if bucket is None:
            return None
        with self._lock:
            wait = bucket.take(self.now())
        if not wait:
            return None
        seconds = max(1, math.ceil(wait))
        reset = datetime.fromtimestamp(self.now() + seconds, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        headers = {"Retry-After": str(seconds), "X-RateLimit-Limit": str(bucket.capacity),
                   "X-RateLimit-Remaining": "0", "X-RateLimit-Reset": reset}
        if not dc:
            headers["RateLimit-Reason"] = "jira-burst-based"
        return 429, headers, fj.errors("Rate limit exceeded.")

    def _cloud_search(self, params: dict[str, Any], base: str) -> dict[str, Any]:
        found = self.jira_matching(str(params.get("jql", "")))
        fields = _fields(params.get("fields"), default="id")
        token = params.get("nextPageToken")
        start = int(base64.b64decode(token).decode()) if token else 0
        size = min(int(params.get("maxResults") or 50), 100 if fields not in ([], ["id"], ["key"]) else 5000)
        chunk = found[start:start + size]
        more = start + size < len(found)
        next_token = base64.b64encode(str(start + size).encode()).decode() if more else None
        issues = [{"id": str(10000 + i.number)} if fields == ["id"] else _render(i, fields, base) for i in chunk]
        return fj.cloud_page(issues, next_token)

    def _dc_search(self, params: dict[str, Any], base: str) -> dict[str, Any]:
        found = self.jira_matching(str(params.get("jql", "")))
        fields = _fields(params.get("fields"))
        start = int(params.get("startAt") or 0)
        asked = params.get("maxResults")
        size = min(50 if asked is None else int(asked), self.dc_max_results)
        chunk = found[start:start + size]
        return fj.dc_page([_render(i, fields, base) for i in chunk], start, size, len(found))

    # ------------------------------------------------------------------ GitHub

    def _github(self, method: str, path: str, query: dict[str, list[str]], body: Any,
                auth: str | None) -> tuple[int, dict[str, str], Any]:
        if auth != f"token {self.token}":
            return 401, {}, gh.error_body("Bad credentials", 401)
        if method == "POST" and path == "/api/graphql":
            return self._graphql(body if isinstance(body, dict) else {})
        resource = "search" if path.startswith("/api/v3/search/") else "core"
        window = self.windows.get(resource)
        if window is not None:
            with self._lock:
                allowed = window.take(self.now())
                headers = window.headers()
            if not allowed:
                return 403, headers, RATE_LIMITED_BODY
        else:
            headers = {}
        if method == "GET" and path == "/api/v3/search/issues":
            q = query.get("q", [""])[0]
            try:
                found = self.github_matching(q)
            except SearchError as exc:
                return 422, headers, gh.error_body("Validation Failed", 422,
                                                   [{"message": str(exc), "resource": "Search", "field": "q", "code": "invalid"}])
            items = [_item(i, self.github_api) for i in found[:1000]]
            return self._paginate(path, query, items, headers, total=len(found), search=True)
        m = re.fullmatch(r"/api/v3/repos/([^/]+/[^/]+)/milestones(?:/(\d+))?", path)
        if method == "GET" and m:
            repo, number = m.groups()
            milestones = self._milestones(repo)
            if milestones is None:
                return 404, headers, gh.error_body("Not Found", 404)
            if number is not None:
                found = [x for x in milestones if x["number"] == int(number)]
                return (200, headers, found[0]) if found else (404, headers, gh.error_body("Not Found", 404))
            listed = gh.milestones_in_state(milestones, query)
            if listed is None:
                return 422, headers, gh.error_body("Validation Failed", 422, [
                    {"resource": "Milestone", "field": "state", "code": "invalid"}])
            return self._paginate(path, query, listed, headers)
        return 404, headers, gh.error_body("Not Found", 404)

    def _graphql(self, body: dict[str, Any]) -> tuple[int, dict[str, str], Any]:
        document = str(body.get("query", ""))
        aliases = gh.aliases(document)
        variables = body.get("variables") or {}
        window = self.windows.get("graphql")
        headers: dict[str, str] = {}
        if window is not None:
            with self._lock:
                allowed = window.take(self.now(), cost=1)
                headers = window.headers()
            if not allowed:
                return 200, headers, {"errors": [{"type": "RATE_LIMITED",
                                                  "message": "API rate limit exceeded for user ID 1."}]}
        if not document.strip():
            return 200, headers, {"errors": [{"message": "A query attribute must be specified and must be a string."}]}
        broken = gh.graphql_parse_error(document)
        if broken is not None:
            return 200, headers, broken
        data, errors = {}, []
        for alias, var, first in aliases:
            try:
                found = self.github_matching(str(variables.get(var, "")))
                data[alias] = {"issueCount": len(found)}
                if first:                                   # `first: N` with `nodes`: the first N items
                    data[alias]["nodes"] = [gh.graphql_node(_item(i, self.github_api)) for i in found[:first]]
            except SearchError as exc:
                errors.append({"type": "INVALID_SEARCH", "path": [alias], "locations": [{"line": 1, "column": 1}],
                               "message": str(exc)})
        return 200, headers, ({"data": None, "errors": errors} if errors else {"data": data})

    def _milestones(self, repo: str) -> list[dict[str, Any]] | None:
        items = [i for i in self.data.github if i.repo == repo]
        if not items:
            return None
        titles = sorted({i.milestone for i in items if i.milestone})
        return [gh.milestone(n, t, open_issues=sum(i.milestone == t and i.state == "open" for i in items),
                             closed_issues=sum(i.milestone == t and i.state == "closed" for i in items),
                             state="closed" if t.startswith("v1.") else "open", repo=repo, api=self.github_api) for n, t in enumerate(titles, start=1)]

    def _paginate(self, path: str, query: dict[str, list[str]], rows: list[Any], headers: dict[str, str],
                  total: int | None = None, search: bool = False) -> tuple[int, dict[str, str], Any]:
        per_page = min(100, int(query.get("per_page", ["30"])[0]))
        page = int(query.get("page", ["1"])[0])
        last = max(1, -(-len(rows) // per_page))
        chunk = rows[(page - 1) * per_page: page * per_page]
        headers = dict(headers)
        if page < last:
            def link(n: int) -> str:
                params = {k: v[0] for k, v in query.items()} | {"page": str(n)}
                return f"<{self.root}{path}?{urlencode(params)}>"
            headers["Link"] = f'{link(page + 1)}; rel="next", {link(last)}; rel="last"'
        return 200, headers, (gh.search_page(total or 0, chunk) if search else chunk)

# ---------------------------------------------------------------------------- rendering


def _flat(query: dict[str, list[str]]) -> dict[str, Any]:
    out: dict[str, Any] = {k: v[0] for k, v in query.items()}
    if "fields" in query:
        out["fields"] = [f for v in query["fields"] for f in v.split(",") if f]
    return out


def _fields(value: Any, default: str = "*navigable") -> list[str]:
    """The fields asked for; none asked: Data Center's default (navigable fields) or Cloud's (`id`)."""
    if value is None:
        return [default]
    if isinstance(value, str):
        return [f for f in value.split(",") if f]
    return [str(f) for f in value]


def _render(issue: JiraIssue, wanted: list[str], base: str) -> dict[str, Any]:
    every = {"summary": f"Issue {issue.key}", "status": fj.status(issue.category, base),
             "priority": {"name": issue.priority}, "issuetype": {"name": issue.type}, "labels": list(issue.labels),
             "created": f"{issue.created}T09:00:00.000+0000",
             "resolutiondate": f"{issue.resolved}T17:00:00.000+0000" if issue.resolved else None,
             STORY_POINTS: issue.points, "project": {"key": issue.project},
             "parent": {"key": issue.parent} if issue.parent else None}
    if any(w.startswith("*") for w in wanted):
        chosen = every
    else:
        chosen = {f: every[f] for f in wanted if f in every}
    return fj.issue(issue.number, chosen, issue.project, base)


def _iso(moment: datetime | None) -> str | None:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ") if moment else None


def _item(item: GitHubItem, api: str) -> dict[str, Any]:
    out = gh.issue_item(item.number, repo=item.repo, created_at=_iso(item.created_at) or "", closed_at=_iso(item.closed_at),
                        merged_at=_iso(item.merged_at), pr=item.pr, api=api)
    out["labels"] = [{"name": name} for name in item.labels]
    return out

