"""The HTTP side of the Jira source: one `JiraApi` per source per run, on the `jira` package.

- Auth lives in the `jira` client's session: basic auth (email + API token) for Jira Cloud,
  bearer (personal access token) for Data Center. The package's own retries are off
  (`max_retries=0`); connectors/_http.py owns retries, so the two never multiply.
- Every HTTP request is counted (`calls`): a response hook on the session, plus the requests
  that got no response (timeouts, refused connections).
- Retries are connectors/_http.py's, with its default policy: the statuses and network faults it
  retries, the waits servers ask for (`Retry-After`, Jira Cloud's ISO 8601 `X-RateLimit-Reset`).
  Jira's own part is the gate: a query waiting out a limit or an outage holds it, so the
  queries of other threads hold back instead of adding to the load.
- Failures become one-line SourceErrors that never hold a token. Failures no other query can
  escape (401, 403, 404, 410, an HTML page instead of JSON, an unreachable host, rate limits
  or outages that outlast the retries) are fatal: later calls fail at once with the same message.
- Data Center search is `POST /rest/api/2/search`; a server or proxy answering that with 405
  is asked `GET /rest/api/2/search` (the same parameters as a query string) for the rest of the run.

Endpoints (REST v2 exists on Cloud and Data Center alike):
    GET  /rest/api/2/serverInfo                 Cloud or Data Center ("deploymentType")
    GET  /rest/api/2/field                      field names -> ids
    POST /rest/api/2/search/approximate-count   Cloud count: {"count": N}
    POST /rest/api/2/search/jql                 Cloud issues: nextPageToken / isLast (and a count's evidence)
    POST /rest/api/2/search                     Data Center: count (maxResults=0 -> total), issues
    GET  /rest/api/2/search                     ... when POST answers 405 (fields comma-separated)
"""
from __future__ import annotations

import logging
import threading
from typing import Any, Callable, Iterator, TypeVar

import requests
from jira import JIRA, JIRAError

from connectors import _answers, _http
from connectors._jira_plan import ticket_of
from okrsync.errors import RetriableSourceError, SourceError
from okrsync.redact import server_text

logger = logging.getLogger(__name__)

CLOUD_PAGE_SIZE = 5000         # enhanced search's documented most; Jira answers fewer when fields are asked
                               # (100 a page once fields beyond id/key are, today) and the pages say so
DC_PAGE_SIZE = 1000            # Data Center caps maxResults at jira.search.views.default.max (1000)
FATAL_STATUSES = frozenset({401, 403, 404, 410})
POLICY = _http.DEFAULT
MAX_QUOTED = 400               # characters of Jira's own words quoted in an error
MAX_PAGES = 100_000            # a guard against a server that never says isLast

T = TypeVar("T")
SEARCH = "/rest/api/2/search"


class MethodNotAllowed(SourceError):
    """Jira (or a proxy in front of it) answered 405 to the method asked."""


class Rejected(SourceError):
    """Jira answered 400 to a query; `messages` are its own words (ErrorCollection), one per problem."""

    def __init__(self, message: str, messages: list[str]):
        super().__init__(message)
        self.messages = messages


def _fault(exc: BaseException) -> _http.Fault | None:
    if isinstance(exc, JIRAError):
        response = exc.response
        return _http.status_fault(exc.status_code, response.headers if response is not None else None)
    return _http.transport_fault(exc)

# ---------------------------------------------------------------------------- error wording


def _messages(response: requests.Response | None) -> list[str]:
    """Jira's own error texts: ErrorCollection `errorMessages` and `errors` values."""
    if response is None:
        return []
    try:
        body = response.json()
    except ValueError:
        return []
    if not isinstance(body, dict):
        return [str(body)] if isinstance(body, str) else []
    texts = [str(m) for m in body.get("errorMessages") or [] if m]
    errors = body.get("errors")
    if isinstance(errors, dict):
        texts += [f"{k}: {v}" for k, v in errors.items()]
    if not texts and body.get("message"):
        texts.append(str(body["message"]))
    return texts


def _quoted(texts: list[str]) -> str:
    joined = " ".join(t.strip().rstrip(".") + "." for t in texts)
    return f'"{server_text(joined, MAX_QUOTED)}"'


def _what_body(response: requests.Response | None) -> str:
    if response is None:
        return "an empty answer"
    return _http.body_kind(response.headers.get("Content-Type"), response.text or "", not response.content)

# ---------------------------------------------------------------------------- client


class JiraApi:
    """A Jira site as this connector uses it; every method raises SourceError on failure."""

    def __init__(self, url: str, *, token: str, token_source: str, email: str | None = None,
                 email_source: str | None = None, timeout: float = 30.0, deadline: float | None = None):
        self.url = url.rstrip("/")
        self.timeout = timeout
        self.calls = 0
        self.cloud: bool | None = None
        self.fatal: SourceError | None = None
        self.deadline = deadline                    # a clock.monotonic() time no retry wait may pass (_http)
        self._search_by_get: bool | None = None      # Data Center search: None until POST was tried once
        self._probe = threading.Lock()              # held by the one query finding that out
        self._token_source = token_source
        self._email_source = email_source
        self._lock = threading.Lock()               # queries may be asked from several threads at once
        self._local = threading.local()             # per thread: its last response, its calls, the gate held
        self._gate = threading.Lock()               # held by the one query waiting out a limit or outage
        auth: dict[str, Any] = {"basic_auth": (email, token)} if email else {"token_auth": token}
        self._jira = JIRA(server=self.url, get_server_info=False, max_retries=0, timeout=timeout,
                          logging=False, options={"check_update": False}, **auth)
        _http.bound(self._jira._session)            # socket timeouts end by the source's deadline
        self._jira._session.hooks["response"].append(self._count)

    def close(self) -> None:
        self._jira.close()

    @property
    def _last_response(self) -> requests.Response | None:
        return getattr(self._local, "response", None)

    @_last_response.setter
    def _last_response(self, response: requests.Response | None) -> None:
        self._local.response = response

    def thread_calls(self) -> int:
        """The requests sent so far by the calling thread (to charge a query its own calls)."""
        return getattr(self._local, "calls", 0)

    def _add_call(self) -> None:
        with self._lock:
            self.calls += 1
        self._local.calls = self.thread_calls() + 1

    def _count(self, response: requests.Response, *args: Any, **kwargs: Any) -> requests.Response:
        self._add_call()
        self._last_response = response
        return response

    # ------------------------------------------------------------------ the one way to call

    def _call(self, what: str, path: str, fn: Callable[[], T]) -> T:
        """Run `fn` (one API request) with retries; map every failure to a SourceError.

        A query that must wait (a rate limit, an outage) holds the source's gate while it waits
        and retries, so the queries of other threads hold back instead of adding to the load."""
        if self.fatal is not None:
            raise self.fatal
        try:
            return _http.call(lambda: self._try(fn), service="Jira", path=path, classify=_fault, policy=POLICY,
                              deadline=self.deadline, before_wait=self._hold_gate)
        except _http.GaveUp as ended:
            raise self._error(ended.error, what, path, ended) from None
        except (JIRAError, requests.RequestException, ValueError) as exc:
            raise self._error(exc, what, path, None) from None
        finally:
            if getattr(self._local, "holding", False):
                self._local.holding = False
                self._gate.release()

    def _try(self, fn: Callable[[], T]) -> T:
        if not getattr(self._local, "holding", False):
            with self._gate:                       # another query is waiting out a limit: wait with it
                pass
        if self.fatal is not None:
            raise self.fatal
        self._last_response = None
        try:
            return fn()
        except (requests.Timeout, requests.ConnectionError):
            self._add_call()                       # sent, but no response came back
            raise
        except ValueError:
            if _http.says_json(self._last_response):
                raise _http.CutShort() from None
            raise

    def _hold_gate(self, seconds: float) -> None:
        """Before a wait: take the gate (if not held yet); unless a query in another thread has
        meanwhile found the source unusable (then stop: its error is this query's too)."""
        if not getattr(self._local, "holding", False):
            self._gate.acquire()
            self._local.holding = True
        if self.fatal is not None:
            raise self.fatal

    def _error(self, exc: BaseException, what: str, path: str, ended: _http.GaveUp | None) -> SourceError:
        tries = ended.tries if ended else 1
        if isinstance(exc, JIRAError):
            return self._http_error(exc, what, path, ended)
        if isinstance(exc, requests.Timeout):
            return RetriableSourceError(f"Jira did not answer {path} within {self.timeout:g} s: try again later, "
                                        "or raise `timeout:` on the source")
        if isinstance(exc, requests.ConnectionError):
            return self._fail(RetriableSourceError(f"cannot reach Jira at {self.url} "
                                                   f"({_http.connection_reason(exc)}): check `url:` and the network"))
        if isinstance(exc, requests.exceptions.ChunkedEncodingError):
            return RetriableSourceError(f"Jira dropped the connection while answering {path} ({tries} tries): "
                                        "try again later")
        if isinstance(exc, _http.CutShort):
            return RetriableSourceError(f"Jira's answers to {path} were cut short (invalid JSON, {tries} tries): "
                                        "try again later")
        if isinstance(exc, ValueError):            # a 2xx answer that is not JSON
            got = _what_body(self._last_response)
            return self._fail(SourceError(
                f"Jira answered {path} with {got} instead of JSON (a login or SSO page, or a proxy?): "
                f"check that `url:` ({self.url}) is the Jira site itself and that {self._token_source} "
                "holds a valid token"))
        return SourceError(f"Jira could not be asked for {path} ({type(exc).__name__}): check `url:`")

    def _fail(self, error: SourceError) -> SourceError:
        self.fatal = error
        return error

    def _http_error(self, exc: JIRAError, what: str, path: str, ended: _http.GaveUp | None) -> SourceError:
        status = exc.status_code or 0
        response = exc.response
        texts = _messages(response)
        jira_says = f": Jira says {_quoted(texts)}" if texts else ""
        if status == 400:
            return Rejected(f"Jira rejected {what}{jira_says}: fix the query (try it in Jira's issue search first)", texts)
        if status == 401:
            who = (f"the API token in {self._token_source} and the email in {self._email_source} "
                   "(Jira Cloud: an API token from id.atlassian.com with its account's email)"
                   if self._email_source else
                   f"the personal access token in {self._token_source} (Jira Cloud also needs `email:`)")
            return self._fail(SourceError(f"Jira refused the credentials (HTTP 401): check {who}"))
        if status == 403:
            reason = response.headers.get("X-Authentication-Denied-Reason") if response is not None else None
            hint = (f"Jira asks for a CAPTCHA ({reason.split(';')[0]}): log in once in a browser, then retry"
                    if reason else f"the account behind {self._token_source} lacks permission for this, "
                                   "or token access is disabled on this site")
            return self._fail(SourceError(f"Jira denied access to {path} (HTTP 403){jira_says}: {hint}"))
        if status == 404:
            return self._fail(SourceError(
                f"Jira answered 404 Not Found for {path}: check `url:` ({self.url}); a Data Center site "
                "may need its context path, e.g. https://jira.example.com/jira"))
        if status == 410:
            said = "" if self.cloud is None else f" (serverInfo said {'Cloud' if self.cloud else 'Data Center'})"
            return self._fail(SourceError(
                f"Jira answered 410 Gone for {path}{jira_says}: this Jira has removed that API{said}"))
        if status == 405:
            return MethodNotAllowed(f"Jira answered 405 Method Not Allowed for {path}: a proxy in front of Jira "
                                    "may refuse the request; check `url:`")
        if status in (429, 502, 503, 504):       # outlasted the retries: no other query gets through either
            asked = ended.fault.asked if ended else None
            again = ended.run_again() if ended else "try again later"
            if status == 429:
                ask = f" (it asks to wait {asked:g} s)" if asked else ""
                text = f"Jira kept rate-limiting (HTTP 429){ask}: {again}"
            else:
                text = f"Jira is unavailable (HTTP {status}): {again}"
            return self._fail(RetriableSourceError(text, retry_after=asked))
        if status >= 500:
            return RetriableSourceError(f"Jira failed on {what} (HTTP {status}){jira_says}: try again later")
        return SourceError(f"Jira answered HTTP {status} for {path}{jira_says}")

    # ------------------------------------------------------------------ endpoints

    def detect(self) -> bool:
        """Ask serverInfo once: True for Jira Cloud, False for Data Center / Server."""
        info = self._call("serverInfo", "/rest/api/2/serverInfo", self._jira.server_info)
        if not isinstance(info, dict) or "versionNumbers" not in info:
            raise self._fail(SourceError(f"{self.url}/rest/api/2/serverInfo did not answer like Jira: check `url:`"))
        self.cloud = info.get("deploymentType") == "Cloud"
        self._jira.deploymentType = info.get("deploymentType")   # the `jira` client's Cloud-only calls check it
        logger.info("Jira at %s: %s %s", self.url, "Cloud" if self.cloud else "Data Center",
                    info.get("version", ""))
        return self.cloud

    def fields(self) -> list[dict[str, Any]]:
        """Every issue field the account can see (id, name, schema)."""
        found = self._call("the field list", "/rest/api/2/field", self._jira.fields)
        if not isinstance(found, list):
            raise SourceError("Jira's field list (/rest/api/2/field) is not a list: check `url:`")
        return [f for f in found if isinstance(f, dict) and "id" in f]

    def count(self, jql: str) -> int:
        """Issues matching `jql`: one call, no issue fetched."""
        what = f"the JQL {jql!r}"
        if self.cloud:
            path = "/rest/api/2/search/approximate-count"
            body = self._call(what, path, lambda: self._jira.approximate_issue_count(jql, json_result=True))
            value = body.get("count") if isinstance(body, dict) else None
        else:
            path = SEARCH
            body = self._dc_search(what, {"jql": jql, "startAt": 0, "maxResults": 0})
            value = body.get("total") if isinstance(body, dict) else None
        if value is None:
            raise SourceError(f"Jira answered {path} without a count: check `url:` ({self.url})")
        try:
            return _answers.count(value)
        except _answers.BadNumber as bad:
            raise SourceError(f"Jira answered {path} with {bad} for {what}: not stored; check `url:` ({self.url}) "
                              "and run again") from None

    def count_and_sample(self, jql: str, n: int) -> tuple[int, list[dict[str, str]] | SourceError]:
        """Issues matching `jql`, and the first `n` of them as evidence ({"key", "title"}), or the
        SourceError that kept them from being read (the count stands). Data Center: one call, the
        count's own (`total` is exact whatever maxResults asks); Cloud, whose count endpoint gives a
        number only: one enhanced-search page of `n` issues with their summary, which is the count
        too when it is the last page (every matching issue on it), else the count endpoint after it."""
        what = f"the JQL {jql!r}"
        if not self.cloud:
            body = self._dc_search(what, {"jql": jql, "startAt": 0, "maxResults": n, "fields": ["summary"]})
            value = body.get("total") if isinstance(body, dict) else None
            if value is None:
                raise SourceError(f"Jira answered {SEARCH} without a count: check `url:` ({self.url})")
            try:
                total = _answers.count(value)
            except _answers.BadNumber as bad:
                raise SourceError(f"Jira answered {SEARCH} with {bad} for {what}: not stored; check `url:` "
                                  f"({self.url}) and run again") from None
            return total, _tickets(body, SEARCH, n)
        path = "/rest/api/2/search/jql"
        try:
            body = self._call(what, path, lambda: self._jira._get_json(
                "search/jql", params={"jql": jql, "fields": ["summary"], "maxResults": n}, use_post=True))
        except SourceError as error:
            return self.count(jql), error
        tickets = _tickets(body, path, n)
        if isinstance(tickets, list) and body.get("isLast") is True and not body.get("nextPageToken"):
            issues = _issues_of(body, path)
            if len(issues) <= n:
                return len(issues), tickets
        return self.count(jql), tickets

    def pages(self, jql: str, fields: list[str], expand: str | None = None) -> Iterator[list[dict[str, Any]]]:
        """The issues matching `jql`, a page at a time, with only `fields` (and `expand`, e.g. "editmeta")."""
        return self._cloud_pages(jql, fields, expand) if self.cloud else self._dc_pages(jql, fields, expand)

    def _cloud_pages(self, jql: str, fields: list[str], expand: str | None = None) -> Iterator[list[dict[str, Any]]]:
        path, what = "/rest/api/2/search/jql", f"the JQL {jql!r}"
        token: str | None = None
        seen: set[str] = set()
        for _ in range(MAX_PAGES):
            query: dict[str, Any] = {"jql": jql, "fields": fields, "maxResults": CLOUD_PAGE_SIZE}
            if expand:
                query["expand"] = expand
            if token:
                query["nextPageToken"] = token
            body = self._call(what, path, lambda: self._jira._get_json("search/jql", params=query, use_post=True))
            issues = _issues_of(body, path)
            yield issues
            token = body.get("nextPageToken")
            if body.get("isLast") or not token:
                return
            if token in seen:
                raise SourceError(f"Jira repeated a nextPageToken for {what}: paging stopped, try again later")
            seen.add(token)
        raise SourceError(f"more than {MAX_PAGES} pages for {what}: narrow the JQL")

    def _dc_pages(self, jql: str, fields: list[str], expand: str | None = None) -> Iterator[list[dict[str, Any]]]:
        what = f"the JQL {jql!r}"
        start = 0
        for _ in range(MAX_PAGES):
            query: dict[str, Any] = {"jql": jql, "startAt": start, "maxResults": DC_PAGE_SIZE, "fields": fields}
            if expand:
                query["expand"] = expand.split(",")           # SearchRequestBean: expand is a list on Data Center
            body = self._dc_search(what, query)
            issues = _issues_of(body, SEARCH)
            yield issues
            start += len(issues)
            total = body.get("total")
            if not issues or not isinstance(total, int) or start >= total:
                return
        raise SourceError(f"more than {MAX_PAGES} pages for {what}: narrow the JQL")

    def _dc_search(self, what: str, query: dict[str, Any]) -> Any:
        """Data Center search: POST; GET with the same parameters once POST answered 405. The first
        search finds out (the others wait for it), so the run spends one extra call at most."""
        if self._search_by_get is None:
            with self._probe:
                if self._search_by_get is None:
                    try:
                        body = self._call(what, SEARCH, lambda: self._jira._get_json("search", params=query,
                                                                                      use_post=True))
                    except MethodNotAllowed:
                        self._search_by_get = True
                        logger.info("Jira at %s refused POST %s (405); searching with GET", self.url, SEARCH)
                    else:
                        self._search_by_get = False
                        return body
        if not self._search_by_get:
            return self._call(what, SEARCH, lambda: self._jira._get_json("search", params=query, use_post=True))
        params = {k: ",".join(v) if isinstance(v, list) else v for k, v in query.items()}
        return self._call(what, SEARCH, lambda: self._jira._get_json("search", params=params))


def _tickets(body: Any, path: str, n: int) -> list[dict[str, str]] | SourceError:
    """The first `n` issues of a search answer as evidence; a SourceError if it holds no issue list."""
    try:
        issues = _issues_of(body, path)
    except SourceError as error:
        return error
    return [t for t in map(ticket_of, issues) if t is not None][:n]


def _issues_of(body: Any, path: str) -> list[dict[str, Any]]:
    issues = body.get("issues") if isinstance(body, dict) else None
    if not isinstance(issues, list):
        raise SourceError(f"Jira answered {path} without an `issues` list: check `url:`")
    return [i for i in issues if isinstance(i, dict)]
