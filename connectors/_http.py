"""The one retry layer of every connector that speaks HTTP (Jira, GitHub, Google Sheets, the webhook).

    RetryPolicy, DEFAULT  how many tries and how long between them; one default for every client
    retriable_status()    the one status map: 429, 500, 502, 503, 504 are retried, every other status fails
    transport_fault()     the network faults retried: a read timeout, a connection dropped or reset (also
                          mid-answer), a JSON answer cut short; refused, unknown host and TLS fail at once
    asked_wait()          how long the server asks to wait (Retry-After, X-RateLimit-Reset)
    call()                one request with retries; raises GaveUp when they end without an answer
    DeadlineAdapter       a requests adapter capping each socket timeout to the time left (`bound(session)`)
    clock                 the one test hook for time: tests replace it (tests/conftest.py `clock`)

A client runs each request through `call`, telling it how to read its HTTP library's exceptions
(`classify`); it keeps its own error wording for what `call` raises. Each retry is logged once,
as a WARNING on the `connectors.http` logger: the service, the request path (never a query string
or host, which may hold a secret), the fault, the wait and "try N of M".

A caller may pass a `deadline` (a `clock.monotonic()` time): no wait runs past it, the retries end
instead. Without one, the deadline of the work running now (okrsync.deadline: the engine's
per-source `deadline:`) is used, and a session passed through `bound` caps each socket timeout
to the time left, so a source past its deadline stops asking instead of lingering.
"""
from __future__ import annotations

import logging
import math
import random
import time
from dataclasses import dataclass, replace
from datetime import datetime, timedelta, timezone
from email.utils import parsedate_to_datetime
from typing import Any, Callable, Mapping, TypeVar
from urllib.parse import urlsplit

import requests
from requests.adapters import HTTPAdapter
from tenacity import RetryCallState, Retrying, retry_if_exception

from okrsync import deadline as work_deadline

logger = logging.getLogger("connectors.http")

T = TypeVar("T")

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})

# ---------------------------------------------------------------------------- time (the test hook)


class Clock:
    """Time as the retry layer sees it. Tests replace the module's `clock` through one fixture."""

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)

    def monotonic(self) -> float:
        return time.monotonic()

    def now(self) -> datetime:
        return datetime.now(timezone.utc)


clock = Clock()

# ---------------------------------------------------------------------------- policy


@dataclass(frozen=True)
class RetryPolicy:
    """How a request is retried.

    tries: at most this many tries (1 try + tries-1 retries)
    first_wait, cap: the backoff waits first_wait, then doubles it each retry, never above cap ...
    jitter: ... plus up to this many seconds at random, so clients that failed together do not retry together
    max_retry_after: a server asking to wait longer than this ends the retries (run again later instead)
    """

    tries: int = 4
    first_wait: float = 1.0
    cap: float = 30.0
    jitter: float = 1.0
    max_retry_after: float = 120.0

    def backoff(self, tries_so_far: int) -> float:
        """The wait after try number `tries_so_far` (1-based) when the server asked for none."""
        return min(self.cap, self.first_wait * 2 ** (tries_so_far - 1) + _random.uniform(0, self.jitter))

    def but(self, **changes: Any) -> RetryPolicy:
        """This policy with some settings changed (a client's documented difference)."""
        return replace(self, **changes)


DEFAULT = RetryPolicy()
_random = random.Random()

# ---------------------------------------------------------------------------- what is worth retrying


@dataclass(frozen=True)
class Fault:
    """A failed try worth retrying: what went wrong (for the log), the wait the server asked for,
    and a policy of its own when this fault backs off differently (GitHub's secondary rate limit)."""

    what: str
    asked: float | None = None
    policy: RetryPolicy | None = None


class StatusError(Exception):
    """An HTTP answer with an error status, raised by an attempt so that `call` can judge it."""

    def __init__(self, response: requests.Response):
        super().__init__(f"HTTP {response.status_code}")
        self.response = response
        self.status = response.status_code


class CutShort(Exception):
    """A 2xx answer that says it is JSON but does not parse: the connection dropped its tail."""


def retriable_status(status: int | None) -> bool:
    """The one status map: a passing fault (429, 500, 502, 503, 504) or not (everything else)."""
    return status in RETRY_STATUSES


def status_fault(status: int | None, headers: Mapping[str, str] | None) -> Fault | None:
    """The Fault of an error status, with the wait its headers ask for; None if it fails at once."""
    if not retriable_status(status):
        return None
    return Fault(f"HTTP {status}", asked_wait(headers or {}))


def body_kind(content_type: str | None, text: str, empty: bool) -> str:
    """What a server sent instead of the JSON asked for, in a few words (never its content): an HTML
    page (a login or proxy page), an empty answer, or an answer of another type. `text` is the start of
    the body, `empty` whether it had no bytes."""
    kind = (content_type or "").split(";")[0].strip().lower()
    start = text.lstrip()[:200].lower()
    if "html" in kind or start.startswith(("<!doctype html", "<html")):
        return "an HTML page"
    if empty:
        return "an empty answer"
    return f"an answer of type {kind}" if kind else "an answer that is not JSON"


def connection_reason(exc: BaseException) -> str:
    """Why a connection failed, in a few words: refused, host not found, TLS, or failed (dropped, reset).
    Read from the error's text, so it serves any HTTP library's connection error (requests, httpx)."""
    text = str(exc).lower()
    if "refused" in text:
        return "connection refused"
    if "name or service not known" in text or "nodename nor servname" in text or "getaddrinfo" in text:
        return "host not found"
    if "ssl" in text or "certificate" in text:
        return "TLS/certificate error"
    return "connection failed"


def transport_fault(exc: BaseException) -> Fault | None:
    """The Fault of a failure of the network in between, or None if retrying cannot help."""
    if isinstance(exc, CutShort):
        return Fault("a JSON answer cut short")
    if isinstance(exc, requests.Timeout):
        return Fault("no answer in time")
    if isinstance(exc, requests.exceptions.ChunkedEncodingError):
        return Fault("a connection dropped mid-answer")
    if isinstance(exc, requests.ConnectionError) and connection_reason(exc) == "connection failed":
        return Fault("a dropped connection")
    return None


def fault_of(exc: BaseException) -> Fault | None:
    """The default `classify`: StatusError and the network faults of `requests`."""
    if isinstance(exc, StatusError):
        return status_fault(exc.status, exc.response.headers)
    return transport_fault(exc)


def says_json(response: requests.Response | None) -> bool:
    """Whether an answer declares a JSON body (so a body that does not parse was cut short)."""
    if response is None or not response.content:
        return False
    return "json" in (response.headers.get("Content-Type") or "").lower()

# ---------------------------------------------------------------------------- how long the server asks to wait


def asked_wait(headers: Mapping[str, Any]) -> float | None:
    """Seconds the server asks us to wait, or None if it does not say.

    - `Retry-After`: seconds or an HTTP date (RFC 9110 10.2.3);
    - `X-RateLimit-Reset` as ISO 8601 (Jira Cloud, e.g. 2026-11-20T12:01Z);
    - `X-RateLimit-Reset` as epoch seconds together with `X-RateLimit-Remaining: 0` (GitHub's
      primary limit): until that second has passed, so one second more than the difference.
    """
    lower = {str(k).lower(): str(v).strip() for k, v in headers.items() if v is not None}
    now = clock.now()
    retry_after = lower.get("retry-after", "")
    if retry_after:
        try:
            return max(0.0, float(retry_after))
        except ValueError:
            pass
        try:
            return _until(parsedate_to_datetime(retry_after), now)
        except (TypeError, ValueError, IndexError):
            pass
    reset = lower.get("x-ratelimit-reset", "")
    if not reset:
        return None
    try:
        epoch = float(reset)
    except ValueError:
        try:
            return _until(datetime.fromisoformat(reset.replace("Z", "+00:00")), now)
        except ValueError:
            return None
    if lower.get("x-ratelimit-remaining") != "0":
        return None                                 # GitHub sends the reset on every answer: only a used-up limit counts
    return math.ceil(max(epoch - now.timestamp(), 0.0)) + 1.0


def _until(moment: datetime, now: datetime) -> float:
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return max(0.0, (moment - now).total_seconds())


def run_again_after(seconds: float) -> str:
    """When a wait of `seconds` from now ends, as people read it: 12:01:30 UTC."""
    return (clock.now() + timedelta(seconds=seconds)).strftime("%H:%M:%S UTC")

# ---------------------------------------------------------------------------- the retry loop


class GaveUp(Exception):
    """The retries ended without an answer. `error` is the last try's exception, `fault` what it was,
    `tries` how many were made, `reason` why they ended: "tries", "asked" (the server asked for a
    longer wait than the policy allows) or "deadline" (the next wait would run past it)."""

    def __init__(self, error: BaseException, fault: Fault, tries: int, reason: str):
        super().__init__(f"{fault.what} ({reason}, {tries} tries)")
        self.error, self.fault, self.tries, self.reason = error, fault, tries, reason

    @property
    def asked_too_long(self) -> bool:
        return self.reason == "asked"

    def run_again(self) -> str:
        """What to tell a user about when to run again."""
        if self.reason == "asked" and self.fault.asked is not None:
            return f"run again after {run_again_after(self.fault.asked)}"
        return "try again later"


def call(attempt: Callable[[], T], *, service: str, path: str,
         classify: Callable[[BaseException], Fault | None] = fault_of, policy: RetryPolicy = DEFAULT,
         deadline: float | None = None, before_wait: Callable[[float], None] | None = None) -> T:
    """Run `attempt` (one request) until it returns, retrying what `classify` calls a Fault.

    An exception `classify` maps to None is raised at once; when the retries end, GaveUp.
    `before_wait(seconds)` runs before each wait (Jira holds its gate there; it may raise).
    `deadline` is a `clock.monotonic()` time no wait may run past; by default the current work's
    (okrsync.deadline), if any."""
    if deadline is None and (left := work_deadline.left()) is not None:
        deadline = clock.monotonic() + left
    last: list[Any] = [None, None]               # the last try's exception and its Fault, judged once
    ended: list[str] = []

    def fault(state: RetryCallState) -> Fault:
        exc = state.outcome.exception() if state.outcome else None
        if last[0] is not exc:
            last[:] = [exc, classify(exc) if exc is not None else None]
        assert last[1] is not None                 # only asked about tries `retry` chose to retry
        return last[1]

    def wait(state: RetryCallState) -> float:
        this = fault(state)
        if this.asked is not None:
            return this.asked
        return (this.policy or policy).backoff(state.attempt_number)

    def stop(state: RetryCallState) -> bool:
        this = fault(state)
        if state.attempt_number >= (this.policy or policy).tries:
            ended.append("tries")
        elif this.asked is not None and this.asked > (this.policy or policy).max_retry_after:
            ended.append("asked")
        elif deadline is not None and clock.monotonic() + state.upcoming_sleep > deadline:
            ended.append("deadline")
        return bool(ended)

    def give_up(state: RetryCallState) -> T:
        exc = state.outcome.exception() if state.outcome else None
        assert exc is not None
        raise GaveUp(exc, fault(state), state.attempt_number, ended[-1]) from None

    def log(state: RetryCallState) -> None:
        this = fault(state)
        seconds = state.next_action.sleep if state.next_action else 0.0
        logger.warning("%s: %s for %s; retrying in %.1f s (try %d of %d)", service, this.what, _safe(path),
                       seconds, state.attempt_number + 1, (this.policy or policy).tries)

    def pause(seconds: float) -> None:
        if before_wait is not None:
            before_wait(seconds)
        clock.sleep(seconds)

    retrying = Retrying(retry=retry_if_exception(lambda exc: classify(exc) is not None), wait=wait, stop=stop,
                        retry_error_callback=give_up, before_sleep=log, sleep=pause, reraise=True)
    return retrying(attempt)


# ---------------------------------------------------------------------------- socket timeouts


MIN_SOCKET_TIMEOUT = 0.1          # seconds: a deadline already passed still lets a request fail cleanly

Timeout = float | tuple[float | None, float | None] | None


def capped(timeout: Timeout) -> Timeout:
    """`timeout` (requests' seconds or (connect, read)) no longer than the current work's time left."""
    left = work_deadline.left()
    if left is None:
        return timeout
    left = max(left, MIN_SOCKET_TIMEOUT)
    if isinstance(timeout, tuple):
        return tuple(left if t is None else min(t, left) for t in timeout)  # type: ignore[return-value]
    return left if timeout is None else min(timeout, left)


class DeadlineAdapter(HTTPAdapter):
    """requests' adapter (no retries of its own) whose socket timeouts end by the current deadline."""

    def __init__(self) -> None:
        super().__init__(max_retries=0)

    def send(self, request: requests.PreparedRequest, *args: Any, timeout: Timeout = None,
             **kwargs: Any) -> requests.Response:
        return super().send(request, *args, timeout=capped(timeout), **kwargs)


def bound(session: requests.Session) -> requests.Session:
    """`session`, its requests' socket timeouts capped to the current deadline's time left."""
    adapter = DeadlineAdapter()
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session


def _safe(path: str) -> str:
    """A request path fit for a log line: no scheme, host, query string or fragment."""
    return urlsplit(path).path or "/"


__all__ = ["DEFAULT", "RETRY_STATUSES", "Clock", "CutShort", "DeadlineAdapter", "Fault", "GaveUp", "RetryPolicy", "StatusError",
           "asked_wait", "bound", "call", "capped", "clock", "connection_reason", "fault_of", "retriable_status", "run_again_after",
           "says_json", "status_fault", "transport_fault"]
