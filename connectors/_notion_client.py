"""The HTTP side of the Notion target: one `NotionApi` per run, on the official Python client (notion-client).

- notion-client 3.x speaks Notion API version 2025-09-03 ("data sources"), sends the `Notion-Version`
  header and the bearer token, and turns Notion's error bodies ({"object": "error", "status", "code",
  "message"}) into exceptions carrying the status, code and headers. Its own retries are off
  (`retry=False`) and its logger is quiet: connectors/_http.py retries, once, for every connector.
- Every request goes through one httpx transport (`_Wire`) that first waits for the client-side
  `Limiter` (Notion allows an average of 3 requests a second per integration), counts the request
  (`calls`), and caps its socket timeouts to the time left (`_http.capped`).
- Retried: 429 (always: Notion did not take the request; `Retry-After` honoured), 409 conflict_error,
  500, 502, 503, 504 and 529, a timeout and a dropped connection, except for creating a page, which is
  retried only on 429: a page created whose answer was lost is found by the next run's read.
- Failures become `NotionError`s: one line naming what, where and the fix, never the token. Failures
  no later request can escape (401, 403, an unreachable or overloaded Notion, the deadline) are
  `fatal`: the connector stops the batch and every check-in not yet delivered stays pending.

Endpoints (API version 2025-09-03):
    GET   /v1/databases/{id}               the database's data sources ({id, name})
    GET   /v1/data_sources/{id}            a data source's title and property schema
    POST  /v1/data_sources/{id}/query      its rows, 100 a page (start_cursor / has_more)
    PATCH /v1/pages/{id}                   update a row's properties
    POST  /v1/pages                        create a row (parent: {data_source_id})
"""
from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass
from typing import Any, Callable, Iterator, TypeVar
from urllib.parse import urlsplit

import httpx
from notion_client import Client
from notion_client.errors import HTTPResponseError, InvalidPathParameterError, RequestTimeoutError

from connectors import _http
from okrsync import deadline as work_deadline
from okrsync.publish import PublishError
from okrsync.redact import server_text

logger = logging.getLogger(__name__)

API_BASE = "https://api.notion.com"
NOTION_VERSION = "2025-09-03"
RATE = 3.0                     # requests a second: Notion's documented average per integration
PAGE_SIZE = 100                # Notion's largest page of query results
MAX_PAGES = 10_000             # a guard against a server that never says has_more: false
TIMEOUT = 30.0                 # seconds for one request (Notion itself gives up after 60)
DEADLINE_MARGIN = 1.0          # seconds kept free before the deadline for the request itself
POLICY = _http.DEFAULT
RETRY_STATUSES = frozenset({409, 429, 500, 502, 503, 504, 529})
MAX_QUOTED = 300               # characters of Notion's own message quoted in an error

T = TypeVar("T")

_HEX32 = re.compile(r"([0-9a-fA-F]{32})(?![0-9a-fA-F])")
_DASHED = re.compile(r"([0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12})")


def parse_id(text: str) -> str:
    """A Notion id (dashed, lower case) from a pasted URL (https://www.notion.so/acme/OKRs-<32 hex>?v=...)
    or a bare id with or without dashes; ValueError says what to paste instead."""
    raw = text.strip()
    where = urlsplit(raw).path if "://" in raw else raw
    found = _DASHED.findall(where) or _HEX32.findall(where)
    if not found:
        raise ValueError(f"{raw[:80]!r} is not a Notion database URL or id: open the database as a full page and "
                         "paste the URL from the address bar (https://www.notion.so/<workspace>/<32 characters>?v=...), "
                         "or its 32-character id")
    plain = found[-1].replace("-", "").lower()
    return f"{plain[:8]}-{plain[8:12]}-{plain[12:16]}-{plain[16:20]}-{plain[20:]}"


class NotionError(PublishError):
    """A request Notion did not take. `fatal`: no later request of this run can succeed either
    (access, Notion down or overloaded, the deadline), so the batch stops."""

    def __init__(self, message: str, *, fatal: bool = False, status: int | None = None, code: str | None = None):
        super().__init__(message)
        self.fatal, self.status, self.code = fatal, status, code


class OutOfTime(Exception):
    """The limiter's next wait would pass the target's deadline."""

# ---------------------------------------------------------------------------- the limiter


class Limiter:
    """At most `rate` requests a second, evenly spaced (no bursts: Notion allows some, but does not say
    how many). Waits on `_http.clock`, the one time hook tests replace."""

    def __init__(self, rate: float):
        self.gap = 1.0 / rate
        self._next: float | None = None

    def wait(self, deadline: float | None) -> None:
        now = _http.clock.monotonic()
        due = now if self._next is None else max(now, self._next)
        if deadline is not None and due + DEADLINE_MARGIN > deadline:
            raise OutOfTime()
        if due > now:
            _http.clock.sleep(due - now)
        self._next = due + self.gap

# ---------------------------------------------------------------------------- the transport


class _Wire(httpx.BaseTransport):
    """Every request: the limiter, the count, socket timeouts capped to the time left."""

    def __init__(self, api: NotionApi):
        self._api = api
        self._inner = httpx.HTTPTransport(retries=0)

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self._api.limiter.wait(self._api.deadline)
        self._api.calls += 1
        timeout = request.extensions.get("timeout")
        if isinstance(timeout, dict):
            request.extensions["timeout"] = {k: _http.capped(v) for k, v in timeout.items()}
        self._api.last_response = None
        response = self._inner.handle_request(request)
        self._api.last_response = response
        return response

    def close(self) -> None:
        self._inner.close()

# ---------------------------------------------------------------------------- the client


@dataclass(frozen=True)
class DataSource:
    """A data source as the connector uses it: its id, its database's title, its property schema."""

    id: str
    title: str
    properties: dict[str, dict[str, Any]]


class NotionApi:
    """Notion as this connector uses it; every method raises NotionError on failure."""

    def __init__(self, token: str, *, token_source: str, base_url: str = API_BASE, rate: float = RATE,
                 timeout: float = TIMEOUT, deadline: float | None = None):
        self.calls = 0
        self.token_source = token_source
        self.limiter = Limiter(rate)
        self.last_response: httpx.Response | None = None
        left = work_deadline.left()
        self.deadline = deadline if deadline is not None else (
            None if left is None else _http.clock.monotonic() + left)
        quiet = logging.getLogger("connectors.notion.sdk")          # its failures are ours to word
        self._http = httpx.Client(transport=_Wire(self), follow_redirects=False)
        self._client = Client(auth=token, base_url=base_url.rstrip("/"), timeout_ms=int(timeout * 1000),
                              notion_version=NOTION_VERSION, retry=False, logger=quiet, log_level=logging.CRITICAL,
                              client=self._http)

    def close(self) -> None:
        self._http.close()

    # ------------------------------------------------------------------ endpoints

    def database(self, database_id: str) -> dict[str, Any]:
        return self._call(f"read database {database_id}", f"/v1/databases/{database_id}",
                          lambda: self._client.databases.retrieve(database_id=database_id))

    def data_source(self, data_source_id: str) -> dict[str, Any]:
        return self._call(f"read data source {data_source_id}", f"/v1/data_sources/{data_source_id}",
                          lambda: self._client.data_sources.retrieve(data_source_id=data_source_id))

    def query(self, data_source_id: str, filter: dict[str, Any] | None = None) -> Iterator[dict[str, Any]]:
        """Every row of a data source that `filter` matches, a page of PAGE_SIZE at a time."""
        cursor: str | None = None
        for _ in range(MAX_PAGES):
            body: dict[str, Any] = {"page_size": PAGE_SIZE}
            if filter is not None:
                body["filter"] = filter
            if cursor:
                body["start_cursor"] = cursor
            page = self._call("read the rows of a database", f"/v1/data_sources/{data_source_id}/query",
                              lambda: self._client.data_sources.query(data_source_id=data_source_id, **body))
            results = page.get("results") if isinstance(page, dict) else None
            if not isinstance(results, list):
                raise NotionError("Notion answered a query without `results` (a proxy in between?): check `base_url`",
                                  fatal=True)
            yield from (r for r in results if isinstance(r, dict) and r.get("object") == "page")
            cursor = page.get("next_cursor") if page.get("has_more") else None
            if not cursor:
                return
        raise NotionError(f"Notion kept paging past {MAX_PAGES * PAGE_SIZE} rows: check the database", fatal=True)

    def update_page(self, page_id: str, properties: dict[str, Any], what: str = "update a row") -> dict[str, Any]:
        return self._call(what, f"/v1/pages/{page_id}",
                          lambda: self._client.pages.update(page_id=page_id, properties=properties))

    def create_page(self, data_source_id: str, properties: dict[str, Any], what: str = "add a row") -> dict[str, Any]:
        parent = {"type": "data_source_id", "data_source_id": data_source_id}
        return self._call(what, "/v1/pages",
                          lambda: self._client.pages.create(parent=parent, properties=properties), creates=True)

    # ------------------------------------------------------------------ the one way to call

    def _call(self, what: str, path: str, fn: Callable[[], T], *, creates: bool = False) -> T:
        try:
            answer = _http.call(lambda: self._try(fn), service="Notion", path=path, policy=POLICY,
                                classify=_creating if creates else _fault, deadline=self.deadline)
        except _http.GaveUp as ended:
            raise self._gave_up(ended, what) from None
        except OutOfTime:
            raise NotionError("the target's deadline came before this was sent (Notion takes about 3 requests a "
                              "second): the next run goes on from here; for many key results raise the target's "
                              "`deadline:`", fatal=True) from None
        except (HTTPResponseError, RequestTimeoutError, httpx.HTTPError, _http.CutShort, ValueError) as exc:
            raise self._error(exc, what) from None
        if not isinstance(answer, dict):
            raise NotionError(f"Notion answered something that is not a JSON object when asked to {what}: check "
                              "`base_url`", fatal=True)
        return answer

    def _try(self, fn: Callable[[], T]) -> T:
        try:
            return fn()
        except json.JSONDecodeError:
            if _says_json(self.last_response):
                raise _http.CutShort() from None
            raise

    def _gave_up(self, ended: _http.GaveUp, what: str) -> NotionError:
        exc = ended.error
        if isinstance(exc, HTTPResponseError):
            status = f"HTTP {exc.status}" + (f" {_code(exc)}" if _code(exc) else "")
            if exc.status == 429:
                return NotionError(f"Notion kept answering {status} (its rate limit, about 3 requests a second per "
                                   f"integration; another tool on the same integration?): {ended.run_again()}",
                                   fatal=True, status=429, code="rate_limited")
            if exc.status == 409:
                return NotionError(f"Notion answered {status} {ended.tries} times when asked to {what} (others "
                                   "editing the same row?): it is retried on the next run", status=409, code=_code(exc))
            return NotionError(f"Notion answered {status} {ended.tries} times (Notion is down or overloaded): the "
                               f"check-ins stay pending; {ended.run_again()}", fatal=True, status=exc.status)
        return NotionError(f"Notion could not be reached ({ended.fault.what}, {ended.tries} tries): the check-ins "
                           f"stay pending; {ended.run_again()}", fatal=True)

    def _error(self, exc: BaseException, what: str) -> NotionError:
        if isinstance(exc, HTTPResponseError):
            return self._refused(exc, what)
        if isinstance(exc, RequestTimeoutError):
            return NotionError(f"Notion did not answer in time when asked to {what}, and may have done it: the next run "
                               "looks before doing it again")
        if isinstance(exc, httpx.ConnectError):
            reason = _http.connection_reason(exc)
            return NotionError(f"Notion could not be reached ({reason}): check `base_url` and the network; the "
                               "check-ins stay pending", fatal=True)
        if isinstance(exc, (httpx.HTTPError, _http.CutShort)):
            return NotionError(f"the connection to Notion dropped when asked to {what}, which it may have done: the "
                               "next run looks before doing it again")
        if isinstance(exc, InvalidPathParameterError):
            return NotionError("a Notion id holds characters no id has: check `key_results:` and `checkins:`",
                               fatal=True)
        return NotionError(f"Notion answered {_what_body(self.last_response)} when asked to {what} (a proxy or a "
                           "login page in between?): check `base_url`", fatal=True)

    def _refused(self, exc: HTTPResponseError, what: str) -> NotionError:
        code = _code(exc)
        said = _said(exc)
        status = f"HTTP {exc.status}" + (f" {code}" if code else "")
        if exc.status == 401:
            return NotionError(f"Notion refused the token in {self.token_source} ({status}): create an internal "
                               "integration at https://www.notion.so/profile/integrations and put its token there",
                               fatal=True, status=401, code=code)
        if exc.status == 403:
            return NotionError(f"the Notion integration may not {what} ({status}{said}): give it the Read, Update and "
                               "Insert content capabilities (https://www.notion.so/profile/integrations)",
                               fatal=True, status=403, code=code)
        if code == "missing_version" or (exc.status == 400 and "notion-version" in said.lower()):
            return NotionError(f"the server at `base_url` does not speak Notion API version {NOTION_VERSION} "
                               f"({status}{said}): check `base_url`", fatal=True, status=400, code=code)
        if not code and not exc.body.lstrip().startswith("{"):
            return NotionError(f"Notion answered {status} with {_what_body(self.last_response)} when asked to {what} "
                               "(a proxy or a login page in between?): check `base_url`", fatal=True, status=exc.status)
        if exc.status >= 500:
            return NotionError(f"Notion answered {status} when asked to {what}, and may have done it: the next run "
                               "looks before doing it again", status=exc.status, code=code)
        return NotionError(f"Notion refused to {what} ({status}{said}): check that property in Notion; it is retried "
                           "on the next run", status=exc.status, code=code)


def _fault(exc: BaseException) -> _http.Fault | None:
    """What is worth retrying for a request that may be sent twice (a read, or setting a row's values)."""
    if isinstance(exc, HTTPResponseError):
        if exc.status in RETRY_STATUSES:
            return _http.Fault(f"HTTP {exc.status}", _http.asked_wait(exc.headers))
        return None
    if isinstance(exc, RequestTimeoutError):
        return _http.Fault("no answer in time")
    if isinstance(exc, _http.CutShort):
        return _http.Fault("a JSON answer cut short")
    if isinstance(exc, (httpx.ReadError, httpx.WriteError, httpx.RemoteProtocolError)):
        return _http.Fault("a dropped connection")
    return None


def _creating(exc: BaseException) -> _http.Fault | None:
    """Creating a row: only a 429 is retried (Notion did not take it); anything else may have created it."""
    if isinstance(exc, HTTPResponseError) and exc.status == 429:
        return _http.Fault("HTTP 429", _http.asked_wait(exc.headers))
    return None


def _code(exc: HTTPResponseError) -> str:
    code = getattr(exc.code, "value", exc.code)
    return "" if code == "notionhq_client_response_error" else str(code or "")


def _said(exc: HTTPResponseError) -> str:
    """Notion's own message, quoted (scrubbed, one line, capped); the client's generic text is dropped."""
    message = str(exc)
    if not message or message.startswith("Request to Notion API failed with status"):
        return ""
    return f': "{server_text(message, MAX_QUOTED)}"'


def _says_json(response: httpx.Response | None) -> bool:
    return response is not None and "json" in (response.headers.get("Content-Type") or "").lower()


def _what_body(response: httpx.Response | None) -> str:
    if response is None:
        return "no answer"
    try:
        text = response.text
    except (httpx.ResponseNotRead, UnicodeDecodeError):
        text = ""
    return _http.body_kind(response.headers.get("Content-Type"), text, not text.strip())


__all__ = ["API_BASE", "NOTION_VERSION", "PAGE_SIZE", "RATE", "DataSource", "Limiter", "NotionApi", "NotionError",
           "OutOfTime", "parse_id"]
