"""The HTTP side of the GitHub source: one authenticated PyGithub requester, retries, error mapping.

`GitHubClient` holds the only copy of the token (inside PyGithub's `Auth.Token`) and sends
every REST and GraphQL request through PyGithub's requester, so auth lives in one place.
PyGithub's own `GithubRetry` and request throttling are turned off; retries are
connectors/_http.py's, with its default policy and one GitHub difference:

- a rate limit (403/429, or GraphQL's 200 with RATE_LIMITED) honours `retry-after`; with
  `x-ratelimit-remaining: 0` it waits until `x-ratelimit-reset`; a secondary limit with neither
  header backs off from one minute (SECONDARY), as GitHub's docs ask;
- a wait longer than the policy's max_retry_after fails the key result with the time to run again.

Failures become okrsync SourceError / RetriableSourceError with one-line messages that name
where the token comes from, never its value. `calls` counts every HTTP request sent (retries
included).
"""
from __future__ import annotations

import logging
from datetime import datetime, timezone
from typing import Any, Iterator, Mapping
from urllib.parse import urlsplit, urlunsplit

import requests
from github import Auth, Github, GithubException
from github.Requester import Requester

from connectors import _http
from okrsync.errors import RetriableSourceError, SourceError
from okrsync.redact import server_text

DEFAULT_BASE_URL = "https://api.github.com"
USER_AGENT = "okr-sync"
TIMEOUT_SECONDS = 30
PER_PAGE = 100                   # the most GitHub returns per page
POLICY = _http.DEFAULT
# GitHub's docs, for a secondary rate limit that names no time: "wait for at least one minute before
# retrying ... [then] an exponentially increasing amount of time between retries": 60, 120, 240 s.
SECONDARY = POLICY.but(first_wait=60.0, cap=300.0)
_DETAIL_CHARS = 300

logger = logging.getLogger(__name__)

# ---------------------------------------------------------------------------- errors


class GitHubHTTPError(SourceError):
    """GitHub answered with an error status; `detail` is GitHub's own message."""

    def __init__(self, message: str, status: int, detail: str):
        super().__init__(message)
        self.status = status
        self.detail = detail


class RateLimited(RetriableSourceError):
    """A primary or secondary rate limit; `secondary` when GitHub gave no time to wait."""

    def __init__(self, message: str, retry_after: float | None = None, secondary: bool = False):
        super().__init__(message, retry_after)
        self.secondary = secondary


def _detail(data: Any) -> str:
    """GitHub's message from an error body, with the messages of its `errors` list."""
    if not isinstance(data, dict):
        return ""
    if set(data) <= {"data", "url"} and isinstance(data.get("data"), str):
        return server_text(data["data"], _DETAIL_CHARS)           # a non-JSON body, as PyGithub wraps it
    message = str(data.get("message") or "")
    errors = data.get("errors") if isinstance(data.get("errors"), list) else []
    extra = [str(e.get("message")) for e in errors if isinstance(e, dict) and e.get("message")]
    return server_text("; ".join([m for m in [message] + extra if m]), _DETAIL_CHARS)


def _is_wrapped_text(data: Any) -> bool:
    """PyGithub wraps a body that is not JSON as {"data": text} (plus "url" on a GET)."""
    return isinstance(data, dict) and set(data) <= {"data", "url"} and isinstance(data.get("data"), str)


def _utc(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, timezone.utc).strftime("%H:%M:%S UTC")


def _rate_limit(status: int, headers: Mapping[str, Any], detail: str) -> RateLimited | None:
    """The rate limit a 403/429 reports, or None if it is not one."""
    asked = _http.asked_wait(headers)
    if asked is not None and headers.get("retry-after") is not None:
        return RateLimited(f"GitHub rate limit ({status}): it asked to wait {asked:g} s "
                           f"(until {_http.run_again_after(asked)})", retry_after=asked)
    if asked is not None:
        return RateLimited(f"GitHub API rate limit used up ({status}); it resets at {_reset_time(headers, asked)}",
                           retry_after=asked)
    if status == 429 or Requester.isRateLimitError(detail):
        return RateLimited(f"GitHub secondary rate limit ({status}: {detail or 'too many requests'})",
                           secondary=True)
    return None


def _reset_time(headers: Mapping[str, Any], asked: float) -> str:
    try:
        return _utc(float(headers["x-ratelimit-reset"]))
    except (KeyError, ValueError):
        return _http.run_again_after(asked)


class _GraphQLLimited(Exception):
    """GraphQL reports its rate limit as HTTP 200 with errors of type RATE_LIMITED."""

    def __init__(self, headers: Mapping[str, Any], detail: str):
        super().__init__(detail)
        self.headers, self.detail = headers, detail

    def limit(self) -> RateLimited:
        return _rate_limit(403, self.headers, self.detail) or RateLimited(
            f"GitHub GraphQL rate limit ({self.detail})", secondary=True)


def _lower(headers: Mapping[str, Any] | None) -> dict[str, Any]:
    return {k.lower(): v for k, v in (headers or {}).items()}


def _fault(exc: BaseException) -> _http.Fault | None:
    """What `_http.call` retries: rate limits (by GitHub's rules), then the shared status map and network faults."""
    limited: RateLimited | None = None
    if isinstance(exc, _GraphQLLimited):
        limited = exc.limit()
    elif isinstance(exc, GithubException) and exc.status in (403, 429):
        limited = _rate_limit(exc.status, _lower(exc.headers), _detail(exc.data))
    if limited is not None:
        return _http.Fault(f"a rate limit ({limited})", limited.retry_after, SECONDARY if limited.secondary else None)
    if isinstance(exc, GithubException):
        return _http.status_fault(exc.status, _lower(exc.headers))
    return _http.transport_fault(exc)

# ---------------------------------------------------------------------------- URLs


def web_root(base_url: str) -> str:
    """The web address people open for an API root: api.github.com -> https://github.com,
    https://HOST/api/v3 -> https://HOST, https://api.TENANT.ghe.com -> https://TENANT.ghe.com."""
    parts = urlsplit(base_url.rstrip("/"))
    host = parts.netloc
    if host == "api.github.com":
        return "https://github.com"
    path = parts.path
    if path.endswith("/api/v3"):
        path = path[: -len("/api/v3")]
    elif host.startswith("api."):
        host = host[len("api."):]
    return urlunsplit((parts.scheme, host, path, "", ""))


def next_link(headers: dict[str, Any]) -> str | None:
    """The rel="next" URL of a paginated answer's Link header, if any."""
    for link in requests.utils.parse_header_links(headers.get("link", "") or ""):
        if link.get("rel") == "next" and link.get("url"):
            return link["url"]
    return None

# ---------------------------------------------------------------------------- client


class GitHubClient:
    """Sends REST and GraphQL requests for one source; counts them in `calls`."""

    def __init__(self, token: str, *, token_source: str, base_url: str = DEFAULT_BASE_URL,
                 timeout: int = TIMEOUT_SECONDS, deadline: float | None = None):
        self._github = Github(auth=Auth.Token(token), base_url=base_url, timeout=timeout, user_agent=USER_AGENT,
                              per_page=PER_PAGE, retry=None, seconds_between_requests=None,
                              seconds_between_writes=None)
        self._requester = self._github.requester
        self.token_source = token_source          # e.g. "environment variable GITHUB_TOKEN"
        self.host = urlsplit(base_url).netloc
        self.timeout = timeout
        self.deadline = deadline                    # a clock.monotonic() time no retry wait may pass (_http)
        self.calls = 0
        self.graphql_available = True               # False once the host answered 404 to GraphQL
        self._fatal: SourceError | None = None     # a rejected token: no point asking again

    def close(self) -> None:
        self._github.close()

    def get(self, url: str, params: dict[str, Any] | None = None) -> tuple[dict[str, Any], Any]:
        """GET a REST path (or an absolute URL from a Link header): (headers, JSON)."""
        return self._send("GET", url, params, None, graphql=False)

    def pages(self, url: str, params: dict[str, Any] | None = None) -> Iterator[Any]:
        """Each page of a paginated REST list, following Link rel="next"; stop iterating to stop asking."""
        headers, data = self.get(url, params)
        yield data
        while (url := next_link(headers)) is not None:
            headers, data = self.get(url)
            yield data

    def graphql(self, query: str, variables: dict[str, Any]) -> dict[str, Any]:
        """POST a GraphQL query; the whole body, `errors` included (rate limits are raised)."""
        _, body = self._send("POST", self._requester.graphql_url, None,
                             {"query": query, "variables": variables}, graphql=True)
        if not isinstance(body, dict):
            raise SourceError(f"GitHub GraphQL at {self.host} answered without a JSON object: check base_url")
        return body

    # -- one request, retried

    def _send(self, verb: str, url: str, params: dict[str, Any] | None, body: Any,
              *, graphql: bool) -> tuple[dict[str, Any], Any]:
        if self._fatal is not None:
            raise self._fatal
        try:
            return _http.call(lambda: self._once(verb, url, params, body, graphql), service="GitHub", path=url,
                              classify=_fault, policy=POLICY, deadline=self.deadline)
        except _http.GaveUp as ended:
            error = self._error(ended.error)
            if not isinstance(error, RetriableSourceError):
                raise error from None
            if ended.asked_too_long:
                raise type(error)(f"{error}: too long to wait now, run again after that", error.retry_after) from None
            if ended.tries > 1:
                raise type(error)(f"{error} (gave up after {ended.tries} tries)", error.retry_after) from None
            raise error from None
        except (GithubException, _GraphQLLimited, requests.RequestException, AssertionError, RuntimeError) as exc:
            raise self._error(exc) from None

    def _once(self, verb: str, url: str, params: dict[str, Any] | None, body: Any,
              graphql: bool) -> tuple[dict[str, Any], Any]:
        self.calls += 1
        logger.debug("GitHub %s %s %s (call %d)", verb, url, params or "", self.calls)
        try:
            headers, data = self._requester.requestJsonAndCheck(verb, url, parameters=params, input=body)
        except ValueError:                           # PyGithub: a body opening with { or [ that does not parse
            raise _http.CutShort() from None
        if _is_wrapped_text(data):
            raise SourceError(f"GitHub at {self.host} answered with a page that is not JSON "
                              f"(\"{_detail(data)[:80]}\"): check base_url (https://HOST/api/v3 for GitHub Enterprise)")
        if graphql and isinstance(data, dict):
            limited = [e for e in data.get("errors") or [] if isinstance(e, dict) and e.get("type") == "RATE_LIMITED"]
            if limited:
                raise _GraphQLLimited(_lower(headers), str(limited[0].get("message") or "rate limited"))
        return headers, data

    def _error(self, exc: BaseException) -> SourceError:
        """The SourceError of a failed request, in GitHub's words."""
        if isinstance(exc, GithubException):
            return self._http_error(exc.status, _lower(exc.headers), exc.data)
        if isinstance(exc, _GraphQLLimited):
            return exc.limit()
        if isinstance(exc, requests.exceptions.Timeout):
            return RetriableSourceError(f"GitHub at {self.host} did not answer within {self.timeout} s")
        if isinstance(exc, requests.exceptions.ConnectionError):
            return RetriableSourceError(f"cannot connect to GitHub at {self.host}: check base_url and the network")
        if isinstance(exc, requests.exceptions.ChunkedEncodingError):
            return RetriableSourceError(f"GitHub at {self.host} dropped the connection mid-answer")
        if isinstance(exc, _http.CutShort):
            return RetriableSourceError(f"GitHub at {self.host} sent a JSON answer cut short (it does not parse)")
        if isinstance(exc, AssertionError):          # PyGithub refuses a URL on another host or port
            return SourceError(f"GitHub at {self.host} linked to a page on another host or port: "
                               "check base_url (use the address GitHub itself reports)")
        if isinstance(exc, RuntimeError):            # PyGithub refuses redirects to another host
            return SourceError(f"GitHub at {self.host} redirected elsewhere ({str(exc).split(',')[0]}): "
                               "check base_url")
        return SourceError(f"GitHub at {self.host} could not be asked ({type(exc).__name__}): check base_url")

    def _http_error(self, status: int, headers: Mapping[str, Any], data: Any) -> SourceError:
        detail = _detail(data)
        if status == 401:
            self._fatal = GitHubHTTPError(
                f"GitHub rejected the token from {self.token_source} (401 {detail or 'Bad credentials'}): "
                "check that it is valid and not expired, and set it again", status, detail)
            return self._fatal
        if status in (403, 429):
            limited = _rate_limit(status, headers, detail)
            if limited is not None:
                return limited
        if status == 403:
            return GitHubHTTPError(
                f"GitHub refused access (403: {detail or 'Forbidden'}): the token from {self.token_source} may lack "
                "a scope (classic tokens need `repo` for private repositories; fine-grained tokens need read access "
                "to issues, pull requests and contents), or the organization requires SSO authorization for it",
                status, detail)
        if status >= 500:
            return RetriableSourceError(f"GitHub at {self.host} had a server error ({status}"
                                        + (f": {detail[:120]}" if detail else "") + ")")
        return GitHubHTTPError(f"GitHub answered {status}" + (f": {detail}" if detail else ""), status, detail)
