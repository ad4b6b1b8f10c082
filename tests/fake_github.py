"""GitHub API payloads in the shapes of GitHub's REST and GraphQL docs, and a small local GitHub.

The payload builders follow the examples of docs.github.com (REST "Search issues and pull
requests", "Get a milestone", "List releases"; GraphQL `search` -> SearchResultItemConnection
`issueCount`, and with `first: N` its `nodes`: Issue / PullRequest with number, title and
repository { nameWithOwner }). `FakeGitHub` serves them over real HTTP on 127.0.0.1 (a random port) for the
end-to-end test: REST under /api/v3 and GraphQL at /api/graphql, as GitHub Enterprise Server
lays them out, with `Link` pagination and a `token` check. It stops itself after LIFETIME
seconds even if a test forgets to.

Strict where GitHub is: the milestone list answers `state=open` unless asked `state=closed` or
`state=all` (GitHub's default, so a client that forgets `state=all` misses closed milestones), and
a GraphQL document that does not parse gets 200 with `errors: [{"message": "Parse error on ..."}]`
and no `data` (`graphql_parse_error`).
"""
from __future__ import annotations

import json
import re
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

from localhttp import LocalServer

API = "https://api.github.com"
LIFETIME = 120.0

# ---------------------------------------------------------------------------- payloads


def issue_item(number: int, *, repo: str = "acme/checkout", created_at: str = "2026-10-01T00:00:00Z",
               closed_at: str | None = None, merged_at: str | None = None, pr: bool = False,
               api: str = API) -> dict[str, Any]:
    """One item of `GET /search/issues` (issue-search-result-item)."""
    web = "https://github.com" if api == API else api.removesuffix("/api/v3")
    item: dict[str, Any] = {
        "url": f"{api}/repos/{repo}/issues/{number}",
        "repository_url": f"{api}/repos/{repo}",
        "labels_url": f"{api}/repos/{repo}/issues/{number}/labels{{/name}}",
        "comments_url": f"{api}/repos/{repo}/issues/{number}/comments",
        "events_url": f"{api}/repos/{repo}/issues/{number}/events",
        "html_url": f"{web}/{repo}/{'pull' if pr else 'issues'}/{number}",
        "id": 1000 + number, "node_id": f"I_kwDO{number:06d}", "number": number,
        "title": f"Item {number}", "user": {"login": "octocat", "id": 1, "type": "User"},
        "labels": [], "state": "closed" if closed_at else "open", "locked": False, "assignee": None,
        "assignees": [], "milestone": None, "comments": 0, "created_at": created_at,
        "updated_at": closed_at or created_at, "closed_at": closed_at, "author_association": "MEMBER",
        "body": "", "score": 1.0,
    }
    if pr:
        item["pull_request"] = {"url": f"{api}/repos/{repo}/pulls/{number}", "html_url": f"{web}/{repo}/pull/{number}",
                                "diff_url": f"{web}/{repo}/pull/{number}.diff",
                                "patch_url": f"{web}/{repo}/pull/{number}.patch", "merged_at": merged_at}
    return item


def search_page(total: int, items: list[dict[str, Any]] | None = None, incomplete: bool = False) -> dict[str, Any]:
    """The body of `GET /search/issues`."""
    return {"total_count": total, "incomplete_results": incomplete, "items": list(items or [])}


def milestone(number: int, title: str, *, open_issues: int, closed_issues: int, repo: str = "acme/checkout",
              state: str = "open", api: str = API) -> dict[str, Any]:
    """One milestone, as `GET /repos/{owner}/{repo}/milestones/{number}` returns it."""
    return {
        "url": f"{api}/repos/{repo}/milestones/{number}",
        "html_url": f"https://github.com/{repo}/milestones/{title}",
        "labels_url": f"{api}/repos/{repo}/milestones/{number}/labels",
        "id": 1002604 + number, "node_id": f"MDk6TWlsZXN0b25l{number}", "number": number, "state": state,
        "title": title, "description": f"Tracking milestone for {title}",
        "creator": {"login": "octocat", "id": 1, "type": "User"},
        "open_issues": open_issues, "closed_issues": closed_issues,
        "created_at": "2026-07-01T20:09:31Z", "updated_at": "2026-11-03T18:58:10Z",
        "closed_at": "2026-11-03T18:58:10Z" if state == "closed" else None, "due_on": "2026-12-31T08:00:00Z",
    }


def release(number: int, tag: str, *, published_at: str | None, draft: bool = False, prerelease: bool = False,
            created_at: str = "2026-01-01T00:00:00Z", repo: str = "acme/checkout", api: str = API) -> dict[str, Any]:
    """One release, as `GET /repos/{owner}/{repo}/releases` lists them."""
    return {
        "url": f"{api}/repos/{repo}/releases/{number}", "html_url": f"https://github.com/{repo}/releases/{tag}",
        "assets_url": f"{api}/repos/{repo}/releases/{number}/assets",
        "upload_url": f"https://uploads.github.com/repos/{repo}/releases/{number}/assets{{?name,label}}",
        "tarball_url": f"{api}/repos/{repo}/tarball/{tag}", "zipball_url": f"{api}/repos/{repo}/zipball/{tag}",
        "id": number, "node_id": f"MDc6UmVsZWFzZ{number}", "tag_name": tag, "target_commitish": "main",
        "name": tag, "body": "", "draft": draft, "prerelease": prerelease, "created_at": created_at,
        "published_at": published_at, "author": {"login": "octocat", "id": 1, "type": "User"}, "assets": [],
    }


def graphql_counts(counts: dict[str, int], nodes: dict[str, list[dict[str, Any]]] | None = None) -> dict[str, Any]:
    """A GraphQL answer to aliased `search(...) { issueCount }` fields: {alias: count}; an alias in `nodes`
    (asked with `first: N` and `nodes { ... on Issue {...} ... on PullRequest {...} }`) also gets its nodes."""
    nodes = nodes or {}
    return {"data": {alias: {"issueCount": n, **({"nodes": nodes[alias]} if alias in nodes else {})}
                     for alias, n in counts.items()}}


def graphql_node(item: dict[str, Any]) -> dict[str, Any]:
    """A REST search item as a GraphQL `search` node (SearchResultItem: an Issue or a PullRequest) with the
    fields okr-sync asks: number, title, repository { nameWithOwner }."""
    repo = item["repository_url"].split("/repos/", 1)[1]
    return {"__typename": "PullRequest" if "pull_request" in item else "Issue", "number": item["number"],
            "title": item["title"], "repository": {"nameWithOwner": repo}}


def error_body(message: str, status: int, errors: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """A REST error body: {"message", "documentation_url", "status"} (+ "errors" on 422)."""
    body: dict[str, Any] = {"message": message, "documentation_url": "https://docs.github.com/rest", "status": str(status)}
    if errors is not None:
        body["errors"] = errors
    return body

def milestones_in_state(milestones: list[dict[str, Any]], query: dict[str, list[str]]) -> list[dict[str, Any]] | None:
    """The milestones `GET /repos/{owner}/{repo}/milestones` lists for `state` (default open); None for
    a state GitHub refuses (422)."""
    state = query.get("state", ["open"])[0]
    if state not in ("open", "closed", "all"):
        return None
    return [m for m in milestones if state == "all" or m.get("state", "open") == state]


_GQL_TOKEN = re.compile(r'\s*(?:(#[^\n]*)|("(?:[^"\\]|\\.)*")|([{}()\[\]])|([^\s{}()\[\]"#]+))')
_CLOSING = {"}": ("{", "RCURLY"), ")": ("(", "RPAREN"), "]": ("[", "RBRACKET")}


def graphql_parse_error(document: str) -> dict[str, Any] | None:
    """GitHub's answer to a GraphQL document that does not parse (brackets that do not pair up, or no
    operation), as the 200 body it sends: {"errors": [{"message": "Parse error on ...", "locations"}]};
    None when the document parses as far as this checks."""
    stack: list[str] = []
    pos, text = 0, document.rstrip()
    def error(token: str, kind: str, at: int) -> dict[str, Any]:
        line = text.count("\n", 0, at) + 1
        column = at - (text.rfind("\n", 0, at) + 1) + 1
        return {"errors": [{"message": f'Parse error on "{token}" ({kind}) at [{line}, {column}]',
                            "locations": [{"line": line, "column": column}]}]}
    first = True
    while pos < len(text):
        m = _GQL_TOKEN.match(text, pos)
        if not m:
            return error(text[pos], "UNKNOWN_CHAR", pos)
        at, pos = m.start(m.lastindex), m.end()
        comment, string, bracket, word = m.groups()
        if comment:
            continue
        if first and not (bracket == "{" or word in ("query", "mutation", "subscription", "fragment")):
            return error(m[m.lastindex], "STRING" if string else "IDENTIFIER", at)
        first = False
        if bracket in ("{", "(", "["):
            stack.append(bracket)
        elif bracket:
            opener, kind = _CLOSING[bracket]
            if not stack or stack.pop() != opener:
                return error(bracket, kind, at)
    if first:
        return {"errors": [{"message": "Parse error on end of file (EOF)"}]}
    if stack:
        return {"errors": [{"message": 'Parse error on end of file (EOF)', "locations": [{"line": text.count("\n") + 1,
                                                                                        "column": 1}]}]}
    return None

# ---------------------------------------------------------------------------- the server

_ALIAS = re.compile(r"(\w+)\s*:\s*search\(\s*query:\s*\$(\w+)\s*,\s*type:\s*ISSUE\s*(?:,\s*first:\s*(\d+)\s*)?\)")


def aliases(document: str) -> list[tuple[str, str, int | None]]:
    """(alias, variable, first) of each aliased `search(query: $v, type: ISSUE[, first: N])` field."""
    return [(alias, var, int(first) if first else None) for alias, var, first in _ALIAS.findall(document)]


class FakeGitHub:
    """A local GitHub Enterprise-like API with fixed data; `requests` logs (method, path, query)."""

    def __init__(self, token: str, *, searches: dict[str, list[dict[str, Any]]] | None = None,
                 totals: dict[str, int] | None = None, milestones: dict[str, list[dict[str, Any]]] | None = None,
                 releases: dict[str, list[dict[str, Any]]] | None = None, graphql: bool = True,
                 failures: list[int] | None = None):
        self.token = token
        self.searches = searches or {}
        self.totals = totals or {}
        self.milestones = milestones or {}
        self.releases = releases or {}
        self.graphql = graphql
        self.failures = list(failures or [])      # statuses to answer the first requests with
        self.requests: list[tuple[str, str, dict[str, list[str]]]] = []
        self._http: LocalServer | None = None

    @property
    def root(self) -> str:
        assert self._http is not None
        return self._http.url

    @property
    def base_url(self) -> str:
        return f"{self.root}/api/v3"

    def total(self, query: str) -> int:
        return self.totals.get(query, len(self.searches.get(query, [])))

    def __enter__(self) -> FakeGitHub:
        self._http = LocalServer(self._handle, lifetime=LIFETIME, keep_alive=False).start()
        return self

    def __exit__(self, *exc: Any) -> None:
        assert self._http is not None
        self._http.stop()

    # -- answering

    def _handle(self, http: BaseHTTPRequestHandler, method: str) -> None:
        parts = urlsplit(http.path)
        query = parse_qs(parts.query)
        self.requests.append((method, parts.path, query))
        if self.failures:
            status = self.failures.pop(0)
            return self._send(http, status, error_body("Service Unavailable", status))
        if http.headers.get("Authorization") != f"token {self.token}":
            return self._send(http, 401, error_body("Bad credentials", 401))
        if method == "POST" and parts.path == "/api/graphql":
            if not self.graphql:
                return self._send(http, 404, error_body("Not Found", 404))
            length = int(http.headers.get("Content-Length") or 0)
            body = json.loads(http.rfile.read(length) or b"{}")
            broken = graphql_parse_error(str(body.get("query", "")))
            if broken is not None:
                return self._send(http, 200, broken)
            variables = body.get("variables") or {}
            found = aliases(body.get("query", ""))
            counts = {alias: self.total(variables[var]) for alias, var, _ in found}
            nodes = {alias: [graphql_node(i) for i in self.searches.get(variables[var], [])[:first]]
                     for alias, var, first in found if first}
            return self._send(http, 200, graphql_counts(counts, nodes))
        if method == "GET" and parts.path == "/api/v3/search/issues":
            q = query.get("q", [""])[0]
            return self._paginate(http, parts.path, query, self.searches.get(q, []), total=self.total(q), search=True)
        match = re.fullmatch(r"/api/v3/repos/([^/]+/[^/]+)/(milestones|releases)(?:/(\d+))?", parts.path)
        if method == "GET" and match:
            repo, what, number = match.groups()
            table = self.milestones if what == "milestones" else self.releases
            if repo not in table:
                return self._send(http, 404, error_body("Not Found", 404))
            if number is not None:
                found = [m for m in table[repo] if m.get("number") == int(number)]
                return self._send(http, 200, found[0]) if found else self._send(http, 404, error_body("Not Found", 404))
            rows = table[repo] if what == "releases" else milestones_in_state(table[repo], query)
            if rows is None:
                return self._send(http, 422, error_body("Validation Failed", 422, [
                    {"resource": "Milestone", "field": "state", "code": "invalid"}]))
            return self._paginate(http, parts.path, query, rows)
        self._send(http, 404, error_body("Not Found", 404))

    def _paginate(self, http: BaseHTTPRequestHandler, path: str, query: dict[str, list[str]],
                  rows: list[dict[str, Any]], total: int | None = None, search: bool = False) -> None:
        per_page = int(query.get("per_page", ["30"])[0])
        page = int(query.get("page", ["1"])[0])
        available = min(total if total is not None else len(rows), 1000 if search else len(rows))
        last = max(1, -(-available // per_page))
        chunk = rows[(page - 1) * per_page: page * per_page]
        headers = {}
        if page < last:
            def link(n: int) -> str:
                params = {k: v[0] for k, v in query.items()} | {"page": str(n)}
                return f"<{self.root}{path}?{urlencode(params)}>"
            headers["Link"] = f'{link(page + 1)}; rel="next", {link(last)}; rel="last"'
        body: Any = search_page(total or 0, chunk) if search else chunk
        self._send(http, 200, body, headers)

    @staticmethod
    def _send(http: BaseHTTPRequestHandler, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(body).encode()
        http.send_response(status)
        http.send_header("Content-Type", "application/json; charset=utf-8")
        http.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            http.send_header(name, value)
        http.end_headers()
        http.wfile.write(data)
