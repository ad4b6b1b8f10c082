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
(`require_bounded`), and a `key in (...)` / `key = ...` naming an issue that does not exist ("An
issue with key 'X' does not exist for field 'key'.") or that is no issue key ("The issue key 'X' for
field 'key' is invalid."), one message per key, as Jira does.

What the publish target (connectors/jira_target.py) writes, after the Cloud platform OpenAPI: `PUT
/rest/api/{2|3}/issue/{key}` {"fields": {id: value}} -> 204 (404 for an unknown issue; 400 with
`errors` {id: "Field 'id' cannot be set. It is not on the appropriate screen, or unknown."} for a field
not on the issue's edit screen, {id: "Operation value must be a number"} for a number field given
anything else); `GET/POST /rest/api/{2|3}/issue/{key}/comment` (PageOfComments {startAt, maxResults,
total, comments}, `orderBy` created/-created; a new Comment answers 201; REST v3 bodies are Atlassian
Document Format, a v3 body that is not one gets 400, v2 bodies are text and v2 shows ADF ones as their
text); a search's `comment` field is a PageOfComments of at most `comment_page` comments (the oldest:
a client must not assume the newest are there), `updated` is when the issue last changed (an edit or a
comment moves it), `expand=editmeta` lists the fields on each issue's edit screen. REST v3 exists on
Cloud only (Data Center answers 404). `queued` answers (e.g. 429 with Retry-After) go to the next calls,
`answers` to every call of one method and path (e.g. a 403 for one issue's edit).
"""
from __future__ import annotations

import base64
import json
import re
import threading
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs, urlsplit

from localhttp import LocalServer

STORY_POINTS = "customfield_10016"
KR_VALUE = "customfield_10042"          # the publish target's number field on Key Result issues
KR_NOTE = "customfield_10043"           # a text field of the same name style, for wrong-type tests
EPIC_LINK = "customfield_10014"
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


KR_FIELDS: list[dict[str, Any]] = FIELDS + [  # a site with Key Result issues: their number field, a text one, Epic Link
    _field(KR_VALUE, "KR value", {"custom": "com.atlassian.jira.plugin.system.customfieldtypes:float",
                                  "customId": 10042, "type": "number"}, ["cf[10042]", "KR value"], True),
    _field(KR_NOTE, "KR note", {"custom": "com.atlassian.jira.plugin.system.customfieldtypes:textfield",
                                "customId": 10043, "type": "string"}, ["cf[10043]", "KR note"], True),
    _field(EPIC_LINK, "Epic Link", {"custom": "com.pyxis.greenhopper.jira:gh-epic-link", "customId": 10014,
                                    "type": "any"}, ["cf[10014]", "Epic Link"], True),
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
    summary: str | None = None
    epic: str | None = None              # Data Center's Epic Link (an epic's key)

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
                 "priority": {"name": self.priority}, "issuetype": {"name": self.type},
                 "summary": self.summary or f"Issue {self.key}", EPIC_LINK: self.epic}
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
    """Jira's 400: the message it would give (`messages`: several, one per bad key)."""

    def __init__(self, *messages: str):
        super().__init__(messages[0] if messages else "")
        self.messages = list(messages)


_KEY_CLAUSE = re.compile(r"\b(?:key|issuekey)\s*(?:in\s*\(([^)]*)\)|=\s*(\"[^\"]*\"|'[^']*'|[^\s()]+))", re.IGNORECASE)
ISSUE_KEY = re.compile(r"[A-Z][A-Z0-9_]+-[1-9][0-9]*")


def check_keys(jql: str, known: set[str]) -> None:
    """Jira's 400 for every key a `key in (...)` or `key = ...` clause names that is not an issue key or no issue."""
    problems = []
    for m in _KEY_CLAUSE.finditer(jql):
        for raw in (m[1] if m[1] is not None else m[2]).split(","):
            value = raw.strip().strip("\"'")
            if not ISSUE_KEY.fullmatch(value):
                problems.append(f"The issue key '{value}' for field 'key' is invalid.")
            elif value not in known:
                problems.append(f"An issue with key '{value}' does not exist for field 'key'.")
    if problems:
        raise JqlError(*problems)


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


def jira_time(moment: datetime) -> str:
    """Jira's timestamp format: 2026-11-15T12:00:00.000+0000."""
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}+0000"


def adf_text(body: Any) -> str:
    """The text of an Atlassian Document Format body (paragraphs on their own lines), as REST v2 shows it."""
    if isinstance(body, str):
        return body
    lines = []
    for block in body.get("content", []) if isinstance(body, dict) else []:
        lines.append("".join(node.get("text", "") for node in block.get("content", []) if isinstance(node, dict)))
    return "\n".join(lines)


def is_adf(body: Any) -> bool:
    return (isinstance(body, dict) and body.get("type") == "doc" and body.get("version") == 1
            and isinstance(body.get("content"), list))


@dataclass
class IssueState:
    """What the publish target changes on an issue: field values, when it last changed, its comments."""

    values: dict[str, Any] = field(default_factory=dict)
    updated: datetime = field(default_factory=lambda: datetime(2026, 9, 15, 9, 0, tzinfo=timezone.utc))
    comments: list[dict[str, Any]] = field(default_factory=list)


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
    fields: list[dict[str, Any]] = field(default_factory=lambda: FIELDS)      # GET /rest/api/{2,3}/field
    screen: set[str] = field(default_factory=lambda: {KR_VALUE, KR_NOTE, "summary"})   # on every edit screen
    off_screen: set[str] = field(default_factory=set)      # issue keys whose edit screen lacks the fields above
    comment_page: int = 100                 # comments in a search's `comment` field and a comment page
    state: dict[str, IssueState] = field(default_factory=dict)
    calls: list[Call] = field(default_factory=list)
    queued: list[tuple[int, dict[str, str], Any]] = field(default_factory=list)   # answers for the next API calls
    answers: dict[tuple[str, str], tuple[int, dict[str, str], Any]] = field(default_factory=dict)  # (method, path) -> answer
    _matched: dict[str, list[FakeIssue]] = field(default_factory=dict, repr=False)

    def __enter__(self) -> FakeJira:
        self._lock = threading.Lock()
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

    def issue_state(self, key: str) -> IssueState:
        return self.state.setdefault(key, IssueState())

    def set_value(self, key: str, field_id: str, value: Any, when: datetime | None = None) -> None:
        """A person edits a field of an issue (now, unless `when` says)."""
        state = self.issue_state(key)
        state.values[field_id] = value
        state.updated = when or datetime.now(timezone.utc)

    def value(self, key: str, field_id: str = KR_VALUE) -> Any:
        return self.issue_state(key).values.get(field_id)

    def comments(self, key: str) -> list[str]:
        """The text of each comment on an issue, oldest first."""
        return [adf_text(c["body"]) for c in self.issue_state(key).comments]

    def writes(self) -> list[Call]:
        return [c for c in self.calls if c.method in ("PUT", "POST") and "/issue/" in c.path]

    def matching(self, jql: str) -> list[FakeIssue]:
        check_keys(jql, {i.key for i in self.issues})
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
        with self._lock:
            status, headers, payload = self._answer(method, path, body, handler.headers.get("Authorization"), query)
        data = json.dumps(payload).encode() if payload is not None else b""
        handler.send_response(status)
        handler.send_header("Content-Type", "application/json;charset=UTF-8")
        handler.send_header("Content-Length", str(len(data)))
        for name, value in headers.items():
            handler.send_header(name, value)
        handler.end_headers()
        handler.wfile.write(data)

    def _answer(self, method: str, path: str, body: Any, auth: str | None,
                query: dict[str, list[str]] | None = None) -> tuple[int, dict[str, str], Any]:
        if (method, path) == ("GET", "/rest/api/2/serverInfo"):             # anonymous, like Jira
            return 200, {}, server_info(self.deployment, self.url)
        if not self._authorised(auth):
            return 401, {}, errors("You are not authenticated. Authentication required to perform this operation.")
        if self.queued:
            return self.queued.pop(0)
        if (method, path) in self.answers:
            return self.answers[(method, path)]
        version, _, rest = path.removeprefix("/rest/api/").partition("/")
        if version == "3" and not self.cloud:
            return 404, {}, errors("null for uri: " + path)
        try:
            if method == "GET" and rest == "field" and version in ("2", "3"):
                return 200, {}, self.fields
            if version in ("2", "3") and rest.startswith("issue/"):
                return self._issue(method, version, rest, body, query or {})
            if (method, path) == ("POST", "/rest/api/3/search/jql"):
                require_bounded(body["jql"])
                return 200, {}, self._cloud_search(body, "3")
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
            return 400, {}, errors(*exc.messages)
        return 404, {}, errors("null for uri: " + path)

    # ------------------------------------------------------------------ the publish target's writes

    def _issue(self, method: str, version: str, rest: str, body: Any,
               query: dict[str, list[str]]) -> tuple[int, dict[str, str], Any]:
        m = re.fullmatch(r"issue/([^/]+)(/comment)?", rest)
        key = m[1] if m else ""
        if m is None or key not in {i.key for i in self.issues}:
            return 404, {}, errors("Issue does not exist or you do not have permission to see it.")
        state = self.issue_state(key)
        now = datetime.now(timezone.utc)
        if m[2] is None:
            if method != "PUT":
                return 405, {}, errors("Method Not Allowed")
            if not isinstance(body, dict) or not isinstance(body.get("fields"), dict):
                return 400, {}, errors("No content to map due to end-of-input")
            types = {f["id"]: (f.get("schema") or {}).get("type") for f in self.fields}
            refused = {}
            for fid, value in body["fields"].items():
                if fid not in self.screen or key in self.off_screen:
                    refused[fid] = f"Field '{fid}' cannot be set. It is not on the appropriate screen, or unknown."
                elif types.get(fid) == "number" and (isinstance(value, bool) or not isinstance(value, (int, float))
                                                     and value is not None):
                    refused[fid] = "Operation value must be a number"
            if refused:
                return 400, {}, errors(**refused)
            state.values.update(body["fields"])
            state.updated = now
            return 204, {}, None
        if method == "GET":
            order = (query.get("orderBy") or ["created"])[0]
            start = int((query.get("startAt") or ["0"])[0])
            size = min(int((query.get("maxResults") or [str(self.comment_page)])[0]), self.comment_page)
            listed = list(reversed(state.comments)) if order == "-created" else list(state.comments)
            return 200, {}, self._comment_page(listed[start:start + size], start, size, len(listed), version)
        if method != "POST":
            return 405, {}, errors("Method Not Allowed")
        text = body.get("body") if isinstance(body, dict) else None
        if version == "3" and not is_adf(text):
            return 400, {}, errors(comment="Operation value must be an Atlassian Document (see the Atlassian "
                                           "Document Format)")
        if version == "2" and not isinstance(text, str):
            return 400, {}, errors(comment="Comment body can not be empty!")
        comment = {"id": str(10000 + sum(len(s.comments) for s in self.state.values())), "body": text,
                   "author": {"displayName": "OKR bot", "active": True}, "created": jira_time(now),
                   "updated": jira_time(now)}
        comment["self"] = f"{self.url}/rest/api/{version}/issue/{key}/comment/{comment['id']}"
        state.comments.append(comment)
        state.updated = now
        return 201, {}, self._shown_comment(comment, version)

    def _shown_comment(self, comment: dict[str, Any], version: str) -> dict[str, Any]:
        body = comment["body"]
        if version == "2":
            body = adf_text(body)
        elif isinstance(body, str):
            body = {"type": "doc", "version": 1, "content": [{"type": "paragraph", "content": [
                {"type": "text", "text": line}]} for line in body.split("\n")]}
        return {**comment, "body": body}

    def _comment_page(self, comments: list[dict[str, Any]], start: int, size: int, total: int,
                      version: str) -> dict[str, Any]:
        return {"comments": [self._shown_comment(c, version) for c in comments], "maxResults": size,
                "startAt": start, "total": total}

    def _render(self, item: FakeIssue, wanted: list[str], expand: str, version: str) -> dict[str, Any]:
        """An issue as search shows it: FakeIssue's fields, plus the state the publish target changes."""
        out = item.render(wanted, self.url)
        state = self.state.get(item.key) or IssueState()
        by_id = {f["id"]: f for f in self.fields}
        for name in wanted:
            if name == "updated":
                out["fields"]["updated"] = jira_time(state.updated)
            elif name == "comment":
                out["fields"]["comment"] = self._comment_page(state.comments[:self.comment_page], 0, self.comment_page,
                                                              len(state.comments), version)
            elif name == "parent" and item.parent:
                parent = next((i for i in self.issues if i.key == item.parent), None)
                out["fields"]["parent"] = {"id": str(10000 + parent.number) if parent else "1", "key": item.parent,
                                           "fields": {"summary": parent.summary if parent and parent.summary
                                                      else f"Issue {item.parent}"}}
            elif name in by_id and name not in out["fields"]:
                out["fields"][name] = state.values.get(name)
        if "editmeta" in (expand or ""):
            on_screen = set() if item.key in self.off_screen else self.screen
            out["editmeta"] = {"fields": {fid: {"key": fid, "name": by_id[fid]["name"], "operations": ["set"],
                                                "required": False, "schema": by_id[fid]["schema"]}
                                          for fid in sorted(on_screen) if fid in by_id}}
        return out

    def _cloud_search(self, body: dict[str, Any], version: str = "2") -> dict[str, Any]:
        found = self.matching(body["jql"])
        start = int(base64.b64decode(body["nextPageToken"]).decode()) if body.get("nextPageToken") else 0
        size = min(int(body.get("maxResults", 50)), 100 if body.get("fields") not in (None, ["id"], ["key"]) else 5000)
        chunk = found[start:start + size]
        more = start + size < len(found)
        token = base64.b64encode(str(start + size).encode()).decode() if more else None
        return cloud_page([self._render(i, body.get("fields") or [], body.get("expand") or "", version) for i in chunk],
                          token)

    def _dc_search(self, body: dict[str, Any]) -> dict[str, Any]:
        found = self.matching(body["jql"])
        start = int(body.get("startAt", 0))
        size = min(int(body.get("maxResults", 50)), self.dc_max_results)
        chunk = found[start:start + size]
        fields = body.get("fields") or []
        return dc_page([self._render(i, fields, body.get("expand") or "", "2") for i in chunk], start, size, len(found))
