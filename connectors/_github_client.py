"""The HTTP side of the GitHub source: one authenticated PyGithub requester, retries, error mapping.

`GitHubClient` holds the only copy of the token (inside PyGithub's `Auth.Token`) and sends
every REST and GraphQL request through PyGithub's requester, so auth lives in one place.
PyGithub's own `GithubRetry` and request throttling are turned off; tenacity owns retries:

- a rate limit (403/429) honours `retry-after`; with `x-ratelimit-remaining: 0` it waits until
  `x-ratelimit-reset`; a secondary limit with neither header backs off 60 s, 120 s, 240 s;
- 5xx answers, timeouts, dropped connections (also mid-answer) and JSON answers cut short
  back off 2 s, 4 s, 8 s;
- at most MAX_ATTEMPTS tries, and never a single wait above MAX_WAIT_SECONDS (a limit that
  resets later fails the key result with the time to run again).

`sleep` and `clock` are module attributes so tests can patch them and assert the waits asked
for without sleeping. Failures become okrsync SourceError / RetriableSourceError with one-line
messages that name where the token comes from, never its value. `calls` counts every HTTP
request sent (retries included).
"""
from __future__ import annotations

import logging
import math
import time
from datetime import datetime, timezone
from typing import Any, Callable, Iterator
from urllib.parse import urlsplit, urlunsplit

import requests
from github import Auth, Github, GithubException
from github.Requester import Requester
from tenacity import RetryCallState, Retrying, retry_if_exception, stop_after_attempt

from okrsync.errors import RetriableSourceError, SourceError

DEFAULT_BASE_URL = "https://api.github.com"
USER_AGENT = "okr-sync"
TIMEOUT_SECONDS = 30
PER_PAGE = 100                   # the most GitHub returns per page
MAX_ATTEMPTS = 4
BACKOFF_SECONDS = 2.0            # transient faults: 2, 4, 8 s
SECONDARY_WAIT_SECONDS = 60.0    # secondary rate limit without retry-after: 60, 120, 240 s
MAX_WAIT_SECONDS = 300.0         # never sleep longer than this for one retry
_DETAIL_CHARS = 300

logger = logging.getLogger(__name__)

sleep: Callable[[float], None] = time.sleep     # patched in tests
clock: Callable[[], float] = time.time          # patched in tests

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
        text = " ".join(data["data"].split())          # a non-JSON body, as PyGithub wraps it
        return text[:_DETAIL_CHARS]
    message = str(data.get("message") or "")
    extra = [str(e.get("message")) for e in data.get("errors") or [] if isinstance(e, dict) and e.get("message")]
    text = "; ".join([m for m in [message] + extra if m])
    return text[:_DETAIL_CHARS]


def _is_wrapped_text(data: Any) -> bool:
    """PyGithub wraps a body that is not JSON as {"data": text} (plus "url" on a GET)."""
    return isinstance(data, dict) and set(data) <= {"data", "url"} and isinstance(data.get("data"), str)


def _utc(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, timezone.utc).strftime("%H:%M:%S UTC")


def _rate_limit(status: int, headers: dict[str, Any], detail: str) -> RateLimited | None:
    """The rate limit a 403/429 reports, or None if it is not one."""
    retry_after = headers.get("retry-after")
    if retry_after is not None:
        try:
            seconds = max(float(retry_after), 0.0)
        except ValueError:
            seconds = None
        if seconds is not None:
            return RateLimited(f"GitHub rate limit ({status}): it asked to wait {seconds:g} s "
                               f"(until {_utc(clock() + seconds)})", retry_after=seconds)
    if str(headers.get("x-ratelimit-remaining", "")).strip() == "0" and headers.get("x-ratelimit-reset"):
        try:
            reset = float(headers["x-ratelimit-reset"])
        except ValueError:
            reset = None
        if reset is not None:
            wait = math.ceil(max(reset - clock(), 0.0)) + 1.0     # the reset second itself, plus one
            return RateLimited(f"GitHub API rate limit used up ({status}); it resets at {_utc(reset)}",
                               retry_after=wait)
    if status == 429 or Requester.isRateLimitError(detail):
        return RateLimited(f"GitHub secondary rate limit ({status}: {detail or 'too many requests'})",
                           secondary=True)
    return None

# ---------------------------------------------------------------------------- retry policy


def _worth_retrying(exc: BaseException) -> bool:
    if not isinstance(exc, RetriableSourceError):
        return False
    return exc.retry_after is None or exc.retry_after <= MAX_WAIT_SECONDS


def _wait(state: RetryCallState) -> float:
    """Seconds to wait before the next try: what GitHub asked for, else a backoff."""
    exc = state.outcome.exception() if state.outcome else None
    tries = state.attempt_number
    if isinstance(exc, RetriableSourceError) and exc.retry_after is not None:
        return exc.retry_after
    if isinstance(exc, RateLimited) and exc.secondary:
        return min(SECONDARY_WAIT_SECONDS * 2 ** (tries - 1), MAX_WAIT_SECONDS)
    return min(BACKOFF_SECONDS * 2 ** (tries - 1), MAX_WAIT_SECONDS)


def _log_wait(state: RetryCallState) -> None:
    exc = state.outcome.exception() if state.outcome else None
    wait = state.next_action.sleep if state.next_action else 0
    logger.warning("%s; waiting %.0f s before try %d of %d", exc, wait, state.attempt_number + 1, MAX_ATTEMPTS)

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
                 timeout: int = TIMEOUT_SECONDS):
        self._github = Github(auth=Auth.Token(token), base_url=base_url, timeout=timeout, user_agent=USER_AGENT,
                              per_page=PER_PAGE, retry=None, seconds_between_requests=None,
                              seconds_between_writes=None)
        self._requester = self._github.requester
        self.token_source = token_source          # e.g. "environment variable GITHUB_TOKEN"
        self.host = urlsplit(base_url).netloc
        self.timeout = timeout
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
        retrying = Retrying(stop=stop_after_attempt(MAX_ATTEMPTS), wait=_wait, retry=retry_if_exception(_worth_retrying),
                            sleep=lambda seconds: sleep(seconds), before_sleep=_log_wait, reraise=True)
        try:
            return retrying(self._once, verb, url, params, body, graphql)
        except RetriableSourceError as exc:
            tries = retrying.statistics.get("attempt_number", 1)
            if exc.retry_after is not None and exc.retry_after > MAX_WAIT_SECONDS:
                raise type(exc)(f"{exc}: too long to wait now, run again after that", exc.retry_after) from None
            if tries > 1:
                raise type(exc)(f"{exc} (gave up after {tries} tries)", exc.retry_after) from None
            raise

    def _once(self, verb: str, url: str, params: dict[str, Any] | None, body: Any,
              graphql: bool) -> tuple[dict[str, Any], Any]:
        self.calls += 1
        logger.debug("GitHub %s %s %s (call %d)", verb, url, params or "", self.calls)
        try:
            headers, data = self._requester.requestJsonAndCheck(verb, url, parameters=params, input=body)
        except GithubException as exc:
            raise self._http_error(exc.status, {k.lower(): v for k, v in (exc.headers or {}).items()},
                                   exc.data) from None
        except requests.exceptions.Timeout:
            raise RetriableSourceError(f"GitHub at {self.host} did not answer within {self.timeout} s") from None
        except requests.exceptions.ConnectionError:
            raise RetriableSourceError(f"cannot connect to GitHub at {self.host}: check base_url and the network") from None
        except requests.exceptions.ChunkedEncodingError:
            raise RetriableSourceError(f"GitHub at {self.host} dropped the connection mid-answer") from None
        except ValueError:                           # PyGithub: a body opening with { or [ that does not parse
            raise RetriableSourceError(f"GitHub at {self.host} sent a JSON answer cut short (it does not parse)") from None
        except AssertionError:                       # PyGithub refuses a URL on another host or port
            raise SourceError(f"GitHub at {self.host} linked to a page on another host or port: "
                              "check base_url (use the address GitHub itself reports)") from None
        except RuntimeError as exc:                  # PyGithub refuses redirects to another host
            raise SourceError(f"GitHub at {self.host} redirected elsewhere ({str(exc).split(',')[0]}): "
                              "check base_url") from None
        if _is_wrapped_text(data):
            raise SourceError(f"GitHub at {self.host} answered with a page that is not JSON "
                              f"(\"{_detail(data)[:80]}\"): check base_url (https://HOST/api/v3 for GitHub Enterprise)")
        if graphql and isinstance(data, dict):
            self._raise_graphql_rate_limit(headers, data)
        return headers, data

    def _raise_graphql_rate_limit(self, headers: dict[str, Any], data: dict[str, Any]) -> None:
        """GraphQL reports its rate limit as HTTP 200 with errors of type RATE_LIMITED."""
        limited = [e for e in data.get("errors") or [] if isinstance(e, dict) and e.get("type") == "RATE_LIMITED"]
        if limited:
            detail = str(limited[0].get("message") or "rate limited")
            raise _rate_limit(403, headers, detail) or RateLimited(f"GitHub GraphQL rate limit ({detail})", secondary=True)

    def _http_error(self, status: int, headers: dict[str, Any], data: Any) -> SourceError:
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
