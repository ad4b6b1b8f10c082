"""The HTTP side of the Jira publish target: the Jira source's client (`JiraApi`: auth, counting, retries,
the gate, error wording) plus the few writes the target makes.

    issues(keys, fields)       one search `key in (...)` (paginated; Cloud's enhanced search, Data Center's
                               /rest/api/2/search); keys Jira says do not exist are dropped and the search
                               asked once more without them (one extra call, only then)
    edit(key, field, value)    PUT /rest/api/{3 Cloud | 2 Data Center}/issue/{key} {"fields": {field: value}}
    comments(key)              GET .../issue/{key}/comment, newest first (only when a search's page of an
                               issue's comments was cut short)
    add_comment(key, body)     POST .../issue/{key}/comment: Atlassian Document Format on Cloud (REST v3),
                               text on Data Center (REST v2)

A write Jira refuses for one issue (400: the field is not on its edit screen or not a number; 403; 404:
no such issue, or the account cannot see it; 409: a conflicting edit; 413: the issue's comment limit)
is that issue's `IssueRefused`, with Jira's own words; everything else (401, rate limits and outages that
outlast the retries, an unreachable site) is the source client's error, for the whole batch.
"""
from __future__ import annotations

import json
import re
from typing import Any, Callable

from jira import JIRAError

from connectors._jira_client import JiraApi, Rejected, _messages, _quoted
from okrsync.errors import SourceError

PER_ISSUE_STATUSES = frozenset({400, 403, 404, 409, 413, 422})
COMMENT_PAGE = 100                 # comments asked per page when a search's page of them was cut short
_BAD_KEY = re.compile(r"(?:An issue with key '([^']+)' does not exist|The issue key '([^']+)' for field 'key' is "
                      r"invalid)")
ISSUE_KEY = re.compile(r"[A-Z][A-Z0-9_]*-[1-9][0-9]*")


class IssueRefused(SourceError):
    """Jira refused a write to one issue; `status` is its HTTP status, `said` its own words (quoted)."""

    def __init__(self, status: int, said: str):
        super().__init__(f"HTTP {status}{': Jira says ' + said if said else ''}")
        self.status, self.said = status, said


class JiraEditor(JiraApi):
    """A Jira site as the publish target uses it: read Key Result issues, set a field, comment."""

    @property
    def token_source(self) -> str:
        """Where the token comes from, for messages (never the token)."""
        return self._token_source

    @property
    def version(self) -> str:
        """The REST version written to: 3 on Cloud (comments in ADF), 2 on Data Center (which has no v3)."""
        return "3" if self.cloud else "2"

    def issues(self, keys: list[str], fields: list[str], expand: str | None = None
               ) -> tuple[dict[str, dict[str, Any]], dict[str, str]]:
        """The issues of `keys` with `fields` (by key), and the keys Jira has no issue for (key -> Jira's words)."""
        missing: dict[str, str] = {}
        wanted = list(dict.fromkeys(keys))
        for attempt in range(2):
            if not wanted:
                return {}, missing
            jql = "key in (" + ", ".join(f'"{k}"' for k in wanted) + ")"
            try:
                found: dict[str, dict[str, Any]] = {}
                for page in self.pages(jql, fields, expand):
                    for issue in page:
                        if isinstance(issue.get("key"), str):
                            found[issue["key"]] = issue
                return found, missing
            except Rejected as rejected:
                bad = {(m[1] or m[2]): text for text in rejected.messages for m in [_BAD_KEY.search(text)] if m}
                if attempt or not bad:
                    raise
                missing.update(bad)
                wanted = [k for k in wanted if k not in bad]
        return {}, missing                       # pragma: no cover - the loop returns or raises

    def edit(self, key: str, field_id: str, value: float) -> IssueRefused | None:
        """Set one field of one issue; its IssueRefused when Jira refuses it for that issue."""
        path = f"/rest/api/{self.version}/issue/{key}"
        return self._write(f"the edit of {key}", path, lambda: self._jira._session.put(
            f"{self.url}{path}", data=json.dumps({"fields": {field_id: value}})))

    def comments(self, key: str) -> list[dict[str, Any]] | IssueRefused:
        """The issue's newest comments (a page of COMMENT_PAGE), read through REST v2 (bodies as text)."""
        path = f"/rest/api/2/issue/{key}/comment"
        params = {"orderBy": "-created", "maxResults": COMMENT_PAGE}
        got = self._write(f"the comments of {key}", path, lambda: self._jira._session.get(f"{self.url}{path}",
                                                                                           params=params))
        if isinstance(got, IssueRefused):
            return got
        page = self._last_json
        comments = page.get("comments") if isinstance(page, dict) else None
        return [c for c in comments if isinstance(c, dict)] if isinstance(comments, list) else []

    def add_comment(self, key: str, body: Any) -> IssueRefused | None:
        path = f"/rest/api/{self.version}/issue/{key}/comment"
        return self._write(f"the comment on {key}", path, lambda: self._jira._session.post(
            f"{self.url}{path}", data=json.dumps({"body": body})))

    def _write(self, what: str, path: str, send: Callable[[], Any]) -> IssueRefused | None:
        """One request through the source client's retries and error mapping, but a refusal that concerns
        this issue only comes back as its IssueRefused instead of failing the run's other issues."""
        def attempt() -> IssueRefused | None:
            try:
                response = send()
            except JIRAError as exc:
                if exc.status_code in PER_ISSUE_STATUSES:
                    texts = _messages(exc.response)
                    return IssueRefused(int(exc.status_code), _quoted(texts) if texts else "")
                raise
            self._last_json = response.json() if response.content else None
            return None
        return self._call(what, path, attempt)

    @property
    def _last_json(self) -> Any:
        return getattr(self._local, "json", None)

    @_last_json.setter
    def _last_json(self, value: Any) -> None:
        self._local.json = value


__all__ = ["ISSUE_KEY", "IssueRefused", "JiraEditor"]
