"""A small Jira on 127.0.0.1 for end-to-end tests, and the payload shapes the unit tests share.

The shapes follow Atlassian's REST docs (the Jira Cloud platform OpenAPI, 1001.0.0-SNAPSHOT,
in /work/shared/reference): `ServerInformation` (plus `deploymentType`: "Cloud" on Cloud,
"Server" on Data Center), `FieldDetails`, `SearchAndReconcileResults` (enhanced search:
`issues`, `nextPageToken`, `isLast`), `JQLCountResultsBean` (`{"count": N}`), `SearchResults`
(Data Center search: `startAt`, `maxResults`, `total`, `issues`), `IssueBean`, `StatusDetails`
with its `StatusCategory`, and `ErrorCollection` (`errorMessages`, `errors`).

`FakeJira` speaks the endpoints the connector uses, checks credentials like Jira (basic auth
for Cloud, bearer for Data Center), pages like Jira (Cloud: 100 issues and an opaque
nextPageToken; Data Center: startAt/maxResults up to its cap), answers the removed Cloud
`/search` with 410, serves Data Center search by POST or by GET (query string, `fields`
comma-separated; `refuse_post_search` makes POST answer 405, as some proxies do), and evaluates the small JQL subset the tests write (AND, parentheses,
= != > >= < <= and IN over project, type, priority, status, statusCategory, parent, created,
resolved and "Story Points"; ORDER BY ignored). Unknown fields get Jira's 400 answer, and so
does a date Jira would not parse (`jql_date`: the four absolute formats and relative durations,
nothing else) and, on Cloud's enhanced search and approximate count, a query with no condition
(`require_bounded`).
"""
from __future__ import annotations

import base64
import json
import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs, urlsplit

from localhttp import LocalServer

STORY_POINTS = "customfield_10016"
LIFETIME = 120.0                   # seconds: the server shuts itself down after this, whatever the test does
CATEGORY = {  # statusCategory key -> (id, name, colour), as Jira has them
    "new": (2, "To Do", "blue-gray"),
    "indeterminate": (4, "In Progress", "yellow"),
    "done": (3, "Done", "green"),
}
STATUS_NAME = {"new": "To Do", "indeterminate": "In Progress", "done": "Done"}

# ---------------------------------------------------------------------------- payload shapes


def server_info(deployment: str = "Cloud", base_url: str = "https://your-domain.atlassian.net") -> dict[str, Any]:
    """GET /rest/api/2/serverInfo (ServerInformation example, plus deploymentType)."""
    cloud = deployment == "Cloud"
    return {"baseUrl": base_url, "buildDate": "2020-03-26T22:20:59.000+0000", "buildNumber": 582 if cloud else 9120000,
            "defaultLocale": {"locale": "en_AU"}, "deploymentType": deployment,
            "scmInfo": "1f51473f5c7b75c1a69a0090f4832cdc5053702a", "serverTime": "2020-03-31T16:43:50.000+0000",
            "serverTimeZone": "Australia/Sydney", "serverTitle": "My Jira instance",
            "version": "1001.0.0-SNAPSHOT" if cloud else "9.12.0", "versionNumbers": [1001, 0, 0] if cloud else [9, 12, 0]}


def _field(fid: str, name: str, schema: dict[str, Any], clause: list[str], custom: bool = False) -> dict[str, Any]:
    out = {"clauseNames": clause, "custom": custom, "id": fid, "key": fid, "name": name, "navigable": True,
           "orderable": True, "schema": schema, "searchable": True}
    if custom:
        out["untranslatedName"] = name
    return out


FIELDS: list[dict[str, Any]] = [  # GET /rest/api/2/field (FieldDetails)
    _field("summary", "Summary", {"system": "summary", "type": "string"}, ["summary"]),
    _field("description", "Description", {"system": "description", "type": "string"}, ["description"]),
    _field("status", "Status", {"system": "status", "type": "status"}, ["status"]),
    _field("priority", "Priority", {"system": "priority", "type": "priority"}, ["priority"]),
    _field("timeoriginalestimate", "Original estimate", {"system": "timeoriginalestimate", "type": "number"},
           ["originalEstimate", "timeoriginalestimate"]),
    _field(STORY_POINTS, "Story Points", {"custom": "com.atlassian.jira.plugin.system.customfieldtypes:float",
                                          "customId": 10016, "type": "number"}, ["cf[10016]", "Story Points"], True),
    _field("customfield_10026", "Story point estimate", {"custom": "com.pyxis.greenhopper.jira:jsw-story-points",
                                                         "customId": 10026, "type": "number"},
           ["cf[10026]", "Story point estimate"], True),
    _field("customfield_10020", "Sprint", {"custom": "com.pyxis.greenhopper.jira:gh-sprint", "customId": 10020,
                                           "items": "json", "type": "array"}, ["cf[10020]", "Sprint"], True),
]


def status(category: str, base: str = "https://your-domain.atlassian.net") -> dict[str, Any]:
    """An issue's `status` field (StatusDetails with its StatusCategory)."""
    cid, cname, colour = CATEGORY[category]
    return {"self": f"{base}/rest/api/2/status/1000{cid}", "description": "", "iconUrl": f"{base}/images/icons/statuses/open.png",
            "name": STATUS_NAME[category], "id": f"1000{cid}",
            "statusCategory": {"self": f"{base}/rest/api/2/statuscategory/{cid}", "id": cid, "key": category,
                               "colorName": colour, "name": cname}}


def issue(number: int, fields: dict[str, Any], project: str = "PAY",
          base: str = "https://your-domain.atlassian.net") -> dict[str, Any]:
    """One IssueBean as search answers it: only the fields asked for."""
    iid = str(10000 + number)
    return {"expand": "", "fields": fields, "id": iid, "key": f"{project}-{number}", "self": f"{base}/rest/api/2/issue/{iid}"}


def cloud_page(issues: list[dict[str, Any]], next_token: str | None = None) -> dict[str, Any]:
    """POST /rest/api/2/search/jql (SearchAndReconcileResults); no nextPageToken on the last page."""
    page: dict[str, Any] = {"isLast": next_token is None, "issues": issues}
    if next_token is not None:
        page["nextPageToken"] = next_token
    return page


def dc_page(issues: list[dict[str, Any]], start: int, max_results: int, total: int) -> dict[str, Any]:
    """POST /rest/api/2/search on Data Center (SearchResults)."""
    return {"expand": "names,schema", "issues": issues, "maxResults": max_results, "startAt": start, "total": total}


def count(n: int) -> dict[str, Any]:
    """POST /rest/api/2/search/approximate-count (JQLCountResultsBean)."""
    return {"count": n}


def errors(*messages: str, **by_field: str) -> dict[str, Any]:
    """An ErrorCollection body."""
    return {"errorMessages": list(messages), "errors": dict(by_field)}


UNBOUNDED = "Unbounded JQL queries are not allowed here. Please add a search restriction to your query."
REMOVED_SEARCH = errors("The requested API has been removed. Please migrate to the /rest/api/3/search/jql API. "
                        "A full migration guideline is available at https://developer.atlassian.com/changelog/#CHANGE-2046")

# ---------------------------------------------------------------------------- data


@dataclass(frozen=True)
class FakeIssue:
    """What the fake knows of an issue; `render` gives the API shape."""

    number: int
    type: str = "Story"
    priority: str = "P3"
    category: str = "new"
    parent: str | None = None
    points: float | None = None
    created: str = "2026-09-15"
    resolved: str | None = None
    project: str = "PAY"

    @property
    def key(self) -> str:
        return f"{self.project}-{self.number}"

    def value(self, name: str) -> Any:
        name = name.lower()
        return {"project": self.project, "type": self.type, "issuetype": self.type, "priority": self.priority,
                "status": STATUS_NAME[self.category], "statuscategory": CATEGORY[self.category][1],
                "parent": self.parent, "created": self.created, "resolved": self.resolved,
                "story points": self.points, "cf[10016]": self.points, "key": self.key}[name]

    def render(self, wanted: list[str], base: str) -> dict[str, Any]:
        every = {"status": status(self.category, base), STORY_POINTS: self.points,
                 "priority": {"name": self.priority}, "issuetype": {"name": self.type}, "summary": f"Issue {self.key}"}
        return issue(self.number, {f: every[f] for f in wanted if f in every}, self.project, base)

# ---------------------------------------------------------------------------- JQL (a small subset)

_TOKEN = re.compile(r'\s*(?:(\()|(\))|(,)|"((?:[^"\\]|\\.)*)"|\'((?:[^\'\\]|\\.)*)\'|(!=|>=|<=|=|>|<)|([^\s()",=!<>]+))')
_FIELDS = {"project", "type", "issuetype", "priority", "status", "statuscategory", "parent", "created", "resolved",
           "story points", "cf[10016]", "key"}


DATE_FIELDS = {"created", "resolved"}
_ABSOLUTE = ("%Y/%m/%d %H:%M", "%Y-%m-%d %H:%M", "%Y/%m/%d", "%Y-%m-%d")
_DURATION = re.compile(r"([-+]?)((?:\s*\d+[wdhm])+)")
_UNIT = {"w": timedelta(weeks=1), "d": timedelta(days=1), "h": timedelta(hours=1), "m": timedelta(minutes=1)}


class JqlError(ValueError):
    """Jira's 400: the message it would give."""


def jql_date(raw: str, name: str, now: datetime | None = None) -> datetime:
    """A JQL date value as Jira parses it: "yyyy/MM/dd HH:mm", "yyyy-MM-dd HH:mm", "yyyy/MM/dd",
    "yyyy-MM-dd", or a duration from now ("-1w", "-4d", "4w 2d", "-5h"); anything else (a typo, an
    unrendered "{period.start}", an ISO timestamp) is Jira's 400."""
    text = raw.strip()
    for pattern in _ABSOLUTE:
        try:
            return datetime.strptime(text, pattern)
        except ValueError:
            pass
    m = _DURATION.fullmatch(text)
    if m:
        span = sum((int(n) * _UNIT[u] for n, u in re.findall(r"(\d+)([wdhm])", m[2])), timedelta())
        return (now or datetime.now()) + (-span if m[1] == "-" else span)
    raise JqlError(f"Date value '{raw}' for field '{name}' is invalid. Valid formats include: 'yyyy/MM/dd HH:mm', "
                   "'yyyy-MM-dd HH:mm', 'yyyy/MM/dd', 'yyyy-MM-dd', or a period format e.g. '-5d', '4w 2d'.")


def day(value: str) -> datetime:
    """A fake issue's stored day ("yyyy-MM-dd") as the moment JQL compares: its midnight."""
    return datetime.strptime(value, "%Y-%m-%d")


def require_bounded(jql: str) -> None:
    """Cloud's enhanced search and approximate count refuse a query with no condition (nothing,
    or only ORDER BY): Jira's 400."""
    if re.fullmatch(r"\s*(?:order\s+by\b.*)?", jql, re.IGNORECASE | re.DOTALL):
        raise JqlError(UNBOUNDED)


def _tokens(jql: str) -> list[tuple[str, str]]:
    out, pos = [], 0
    jql = jql.strip()
    while pos < len(jql):
        m = _TOKEN.match(jql, pos)
        if not m or m.end() == pos:
            raise JqlError(f"Error in the JQL Query: the character '{jql[pos]}' is a reserved JQL character.")
        pos = m.end()
        kinds = ("(", ")", ",", "str", "str", "op", "word")
        for kind, text in zip(kinds, m.groups()):
            if text is not None:
                out.append((kind, text))
                break
    return out


def matcher(jql: str):
    """A predicate over FakeIssue for `jql` (ORDER BY ignored); JqlError like Jira's 400."""
    tokens = _tokens(jql)
    lowered = [t[1].lower() if t[0] == "word" else None for t in tokens]
    for i in range(len(tokens) - 1):
        if lowered[i] == "order" and lowered[i + 1] == "by":
            tokens = tokens[:i]
            break
    if not tokens:                     # no condition: every issue (Cloud's search refuses it first, Data Center does not)
        return lambda i: True
    pos = 0

    def peek() -> tuple[str, str] | None:
        return tokens[pos] if pos < len(tokens) else None

    def take() -> tuple[str, str]:
        nonlocal pos
        if pos >= len(tokens):
            raise JqlError("Error in the JQL Query: Expecting either a value, list or function but got 'end of query'.")
        pos += 1
        return tokens[pos - 1]

    def expr():
        terms = [term()]
        while peek() and peek()[0] == "word" and peek()[1].lower() == "and":
            take()
            terms.append(term())
        return lambda i: all(t(i) for t in terms)

    def term():
        kind, text = take()
        if kind == "(":
            inner = expr()
            if take()[0] != ")":
                raise JqlError("Error in the JQL Query: Expecting ')'.")
            return inner
        name = text
        if peek() and peek()[0] == "word" and f"{name} {peek()[1]}".lower() == "story points":
            name = f"{name} {take()[1]}"
        if name.lower() not in _FIELDS:
            raise JqlError(f"Field '{name}' does not exist or you do not have permission to view it.")
        op_kind, op = take()
        if op_kind == "word" and op.lower() in ("in", "not"):
            negate = op.lower() == "not"
            if negate:
                take()
            if take()[0] != "(":
                raise JqlError("Error in the JQL Query: Expecting '(' after IN.")
            values = []
            while True:
                values.append(take()[1].lower())
                sep = take()[0]
                if sep == ")":
                    break
            return lambda i: (str(i.value(name)).lower() in values) != negate
        if op_kind != "op":
            raise JqlError(f"Error in the JQL Query: Expecting operator but got '{op}'.")
        value = take()[1]
        return _compare(name, op, value)

    predicate = expr()
    if pos != len(tokens):
        raise JqlError(f"Error in the JQL Query: Expecting either 'OR' or 'AND' but got '{tokens[pos][1]}'.")
    return predicate


def _compare(name: str, op: str, value: str):
    when = jql_date(value, name) if name.lower() in DATE_FIELDS and value.lower() != "empty" else None

    def test(item: FakeIssue) -> bool:
        have = item.value(name)
        if value.lower() == "empty":
            return (have is None) == (op == "=")
        if have is None:
            return op == "!="
        if when is not None:
            have, want = day(have), when
        elif isinstance(have, float):
            want: Any = float(value)
        else:
            have, want = str(have).lower(), value.lower()
        return {"=": have == want, "!=": have != want, ">": have > want, ">=": have >= want,
                "<": have < want, "<=": have <= want}[op]
    return test

# ---------------------------------------------------------------------------- server


@dataclass
class Call:
    method: str
    path: str
    body: Any


@dataclass
class FakeJira:
    """A Jira site on 127.0.0.1:<free port>; use as a context manager so it stops (it also stops itself
    after LIFETIME seconds)."""

    issues: list[FakeIssue]
    deployment: str = "Cloud"
    email: str = "okr-bot@example.com"
    token: str = "token"
    dc_max_results: int = 1000              # Data Center's jira.search.views.default.max
    refuse_post_search: bool = False        # POST /rest/api/2/search answers 405 (a proxy allowing only GET)
    calls: list[Call] = field(default_factory=list)
    queued: list[tuple[int, dict[str, str], Any]] = field(default_factory=list)   # answers for the next API calls
    _matched: dict[str, list[FakeIssue]] = field(default_factory=dict, repr=False)

    def __enter__(self) -> FakeJira:
        self._http = LocalServer(self._handle, lifetime=LIFETIME).start()     # keep-alive, as a real Jira front end
        return self

    def __exit__(self, *exc: Any) -> None:
        self._http.stop()

    @property
    def url(self) -> str:
        return self._http.url

    @property
    def cloud(self) -> bool:
        return self.deployment == "Cloud"

    def matching(self, jql: str) -> list[FakeIssue]:
        if jql not in self._matched:
            predicate = matcher(jql)
            self._matched[jql] = [i for i in self.issues if predicate(i)]
        return self._matched[jql]

    # ------------------------------------------------------------------ request handling

    def _authorised(self, header: str | None) -> bool:
        if self.cloud:
            expected = base64.b64encode(f"{self.email}:{self.token}".encode()).decode()
            return header == f"Basic {expected}"
        return header == f"Bearer {self.token}"

    def _handle(self, handler: BaseHTTPRequestHandler, method: str) -> None:
        length = int(handler.headers.get("Content-Length") or 0)
        raw = handler.rfile.read(length) if length else b""
        body = json.loads(raw) if raw else None
        path, query = urlsplit(handler.path).path, parse_qs(urlsplit(handler.path).query)
        if method == "GET" and path == "/rest/api/2/search":             # the same parameters as the POST body
            body = {k: v[0].split(",") if k == "fields" else v[0] for k, v in query.items()}
        self.calls.append(Call(method, path, body))
        status, headers, payload = self._answer(method, path, body, handler.headers.get("Authorization"))
        data = json.dumps(payload).encode()
        handler.send_response(status)
        handler.send_header("Content-Type", "application/json;charset=UTF-8")
        handler.send_header("Content-Length", str(len(data)))
        for name, value in headers.items():
            handler.send_header(name, value)
        handler.end_headers()
        handler.wfile.write(data)

    def _answer(self, method: str, path: str, body: Any, auth: str | None) -> tuple[int, dict[str, str], Any]:
        if (method, path) == ("GET", "/rest/api/2/serverInfo"):             # anonymous, like Jira
            return 200, {}, server_info(self.deployment, self.url)
        if not self._authorised(auth):
            return 401, {}, errors("You are not authenticated. Authentication required to perform this operation.")
        if self.queued:
            return self.queued.pop(0)
        try:
            if (method, path) == ("GET", "/rest/api/2/field"):
                return 200, {}, FIELDS
            if (method, path) == ("POST", "/rest/api/2/search/approximate-count") and self.cloud:
                require_bounded(body["jql"])
                return 200, {}, count(len(self.matching(body["jql"])))
            if (method, path) == ("POST", "/rest/api/2/search/jql") and self.cloud:
                require_bounded(body["jql"])
                return 200, {}, self._cloud_search(body)
            if (method, path) == ("POST", "/rest/api/2/search") and self.refuse_post_search:
                return 405, {"Allow": "GET, HEAD"}, errors("Method Not Allowed")
            if path == "/rest/api/2/search" and method in ("GET", "POST"):
                return (410, {}, REMOVED_SEARCH) if self.cloud else (200, {}, self._dc_search(body))
        except JqlError as exc:
            return 400, {}, errors(str(exc))
        return 404, {}, errors("null for uri: " + path)

    def _cloud_search(self, body: dict[str, Any]) -> dict[str, Any]:
        found = self.matching(body["jql"])
        start = int(base64.b64decode(body["nextPageToken"]).decode()) if body.get("nextPageToken") else 0
        size = min(int(body.get("maxResults", 50)), 100 if body.get("fields") not in (None, ["id"], ["key"]) else 5000)
        chunk = found[start:start + size]
        more = start + size < len(found)
        token = base64.b64encode(str(start + size).encode()).decode() if more else None
        return cloud_page([i.render(body.get("fields") or [], self.url) for i in chunk], token)

    def _dc_search(self, body: dict[str, Any]) -> dict[str, Any]:
        found = self.matching(body["jql"])
        start = int(body.get("startAt", 0))
        size = min(int(body.get("maxResults", 50)), self.dc_max_results)
        chunk = found[start:start + size]
        return dc_page([i.render(body.get("fields") or [], self.url) for i in chunk], start, size, len(found))
