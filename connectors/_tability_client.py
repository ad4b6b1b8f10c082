"""HTTP for the Tability publish target: every fact about Tability's API v2 okr-sync relies on, in one place.

What was confirmed from Tability's API guide (https://guides.tability.app/api/, the stored copy of its
pages "Authentication", "Pagination", "Plans", "Outcomes", "Checkins", "Search"):

    base            https://api.tability.app/v2
    auth            `Authorization: API <personal_api_token>` (the token on https://tability.app/account); the
                    user needs the "API access" setting in the workspace; GET /whoami checks a token
    pagination      `X-Per-Page`, `X-Page`, `X-Total` headers and a `Link` header with rel="next" (and first,
                    last, prev); no rel="next" means the last page; pages are asked with `?page=N`
    plans           GET /workspaces/:workspaceID/plans                      [{id, nano_slug, title, start_at, ...}]
    outcomes        GET /workspaces/:workspaceID/plans/:planID/outcomes     [{id, nano_slug, objective_id, title,
                                                                              from, to, score_format, ...}]
    check-ins       GET /workspaces/:workspaceID/outcomes/:outcomeID/checkins
                    [{id, outcome_id, checkin_date: "2023-11-16T00:00:00.000Z", score, confidence: red|yellow|green,
                      body, created_at, ...}], newest first; :outcomeID is the outcome's UUID or Nano ID

Not confirmed from Tability's own pages (the stored copy of the Checkins page ends before its POST section):

    create          POST /workspaces/:workspaceID/outcomes/:outcomeID/checkins with
                    {"checkin": {"score", "checkin_date", "confidence", "body"}}: the shape a public
                    third-party Tability client (tability-mcp) sends; `checkin_body` below is the one place to
                    change if Tability documents another
    workspace id    the workspace's slug (e.g. acme) in place of its UUID, as that client documents
    rate limits     none documented; a 429 is retried after its Retry-After like every other API here

Faults, mapped here and nowhere else:

    401             TargetDown: the token is refused (every outcome would fail: the batch stops)
    403             TargetDown: the token's user has no API access to the workspace
    404             NotFound: no such outcome (or workspace) -- that key result alone fails
    400, 422        Refused: Tability refused this check-in -- that key result alone fails
    429, 5xx, timeouts, dropped connections   retried (connectors/_http.py, Retry-After honoured); when
                    the retries end, TargetDown: the tool is down or rate limiting, the batch stops

A GET is retried freely. A POST is retried only when Tability surely did not take it (429, a connection
that never opened); after an answer that leaves it unknown (5xx, a read timeout, a connection dropped),
the outcome's check-ins are read again and the POST is repeated only if the check-in is not there.
`calls` counts every request sent.
"""
from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass
from datetime import date, datetime, timezone
from typing import Any, Callable
from urllib.parse import parse_qs, quote, urlsplit

import requests
from pydantic import SecretStr

from connectors import _http
from connectors._answers import BadNumber, number
from okrsync.publish import PublishError
from okrsync.redact import register_derived, server_text

logger = logging.getLogger(__name__)

API_BASE = "https://api.tability.app/v2"
AUTH_SCHEME = "API"                                    # Authorization: API <personal_api_token>
TOKEN_PAGE = "https://tability.app/account"
TIMEOUT = (10.0, 30.0)                                 # seconds to connect, to read an answer
POLICY = _http.DEFAULT
MAX_PAGES = 1000                                       # a Link header that never ends is a broken server
USER_AGENT = "okr-sync (tability publish target)"
CONFIDENCE = {"on_track": "green", "at_risk": "yellow", "off_track": "red", "done": "green"}
CONFIDENCES = frozenset({"green", "yellow", "red"})    # the values Tability's check-ins carry
_NEXT = re.compile(r'<([^>]*)>\s*;\s*rel="?next"?', re.IGNORECASE)


def plans_path(workspace: str) -> str:
    return f"/workspaces/{_seg(workspace)}/plans"


def plan_outcomes_path(workspace: str, plan: str) -> str:
    return f"/workspaces/{_seg(workspace)}/plans/{_seg(plan)}/outcomes"


def checkins_path(workspace: str, outcome: str) -> str:
    return f"/workspaces/{_seg(workspace)}/outcomes/{_seg(outcome)}/checkins"


def checkin_body(score: float, checkin_date: date, confidence: str | None, body: str) -> dict[str, Any]:
    """The JSON of a new check-in (see the module docstring: the one unconfirmed shape)."""
    checkin: dict[str, Any] = {"score": score, "checkin_date": checkin_date.isoformat(), "body": body}
    if confidence is not None:
        checkin["confidence"] = confidence
    return {"checkin": checkin}


def _seg(value: str) -> str:
    return quote(str(value), safe="")

# ---------------------------------------------------------------------------- errors


class TabilityError(PublishError):
    """Tability did not do what was asked; the message says what and the fix."""


class TargetDown(TabilityError):
    """Every further request would fail too (token refused, no access, the tool down or rate limiting)."""


class NotFound(TabilityError):
    """No such outcome (or workspace)."""


class Refused(TabilityError):
    """Tability refused this one request (400, 422)."""


class _Unsure(Exception):
    """A POST answered so that whether Tability took it is unknown (5xx, read timeout, dropped connection)."""

    def __init__(self, error: BaseException):
        super().__init__(str(error))
        self.error = error

# ---------------------------------------------------------------------------- answers


@dataclass(frozen=True)
class Checkin:
    """One check-in on an outcome, as okr-sync needs it."""

    id: str
    day: date | None                   # checkin_date
    score: float | None
    body: str
    created_at: datetime | None

    @property
    def order(self) -> tuple[date, datetime]:
        """Newest last: by check-in date, then by when it was created."""
        return (self.day or date.min, self.created_at or datetime.min.replace(tzinfo=timezone.utc))


def _moment(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def _day(value: Any) -> date | None:
    if not isinstance(value, str) or len(value) < 10:
        return None
    try:
        return date.fromisoformat(value[:10])
    except ValueError:
        return None


def parse_checkin(item: Any) -> Checkin | None:
    """A check-in object of Tability's answer, or None if it is not one."""
    if not isinstance(item, dict) or item.get("id") is None:
        return None
    try:
        score = number(item.get("score"))
    except BadNumber:
        score = None
    body = item.get("body")
    return Checkin(id=str(item["id"]), day=_day(item.get("checkin_date")), score=score,
                   body=body if isinstance(body, str) else "", created_at=_moment(item.get("created_at")))

# ---------------------------------------------------------------------------- the client


class Client:
    """Tability's API v2 for one workspace, as one user (a personal API token). `calls`: requests sent."""

    def __init__(self, token: SecretStr, workspace: str, *, token_where: str, base_url: str = API_BASE,
                 timeout: tuple[float, float] = TIMEOUT):
        self.workspace = workspace
        self.base_url = base_url.rstrip("/")
        self.token_where = token_where                 # "environment variable TABILITY_TOKEN", never the value
        self.timeout = timeout
        self.calls = 0
        header = f"{AUTH_SCHEME} {token.get_secret_value()}"
        register_derived(header)
        self._session = _http.bound(requests.Session())   # no retries of requests' own; sockets end by the deadline
        self._session.headers.update({"Authorization": header, "Accept": "application/json",
                                      "User-Agent": USER_AGENT})

    def close(self) -> None:
        self._session.close()

    # -- reads

    def whoami(self) -> dict[str, Any]:
        body, _ = self._get("/whoami", "check the token")
        if not isinstance(body, dict):
            raise TabilityError(f"Tability's /whoami answered {_what(body)}, not a user: check `base_url`")
        return body

    def plans(self, pages: int = MAX_PAGES) -> list[dict[str, Any]]:
        return [p for p in self._pages(plans_path(self.workspace), f"read the plans of workspace `{self.workspace}`",
                                       pages) if isinstance(p, dict)]

    def plan_outcomes(self, plan: str) -> list[dict[str, Any]]:
        return [o for o in self._pages(plan_outcomes_path(self.workspace, plan), f"read the outcomes of plan {plan}")
                if isinstance(o, dict)]

    def checkins(self, outcome: str) -> list[Checkin]:
        """Every check-in of an outcome (all pages). NotFound if Tability has no such outcome."""
        items = self._pages(checkins_path(self.workspace, outcome), f"read the check-ins of outcome {outcome}")
        return [c for c in (parse_checkin(i) for i in items) if c is not None]

    # -- the one write

    def create_checkin(self, outcome: str, payload: dict[str, Any], *, already_there: Callable[[list[Checkin]], bool]
                       ) -> Checkin | None:
        """POST a check-in: the check-in Tability answers with (None if its answer holds none, or if a retry found
        it already there: `already_there` judges the outcome's check-ins, read again after an answer that left
        it unknown)."""
        path = checkins_path(self.workspace, outcome)
        what = f"write a check-in on outcome {outcome}"
        data = json.dumps(payload).encode("utf-8")
        unsure = [False]

        def attempt() -> Checkin | None:
            if unsure[0] and already_there(self.checkins(outcome)):
                return None                                    # the earlier POST was taken after all
            unsure[0] = False
            self.calls += 1
            try:
                response = self._session.post(self.base_url + path, data=data, timeout=self.timeout,
                                              headers={"Content-Type": "application/json"})
            except (requests.ConnectTimeout, requests.exceptions.ProxyError):
                raise                                          # never reached Tability: safe to send again
            except requests.RequestException as exc:
                unsure[0] = _http.transport_fault(exc) is not None
                raise _Unsure(exc) if unsure[0] else exc
            if response.status_code in _http.RETRY_STATUSES and response.status_code != 429:
                unsure[0] = True
                raise _Unsure(_http.StatusError(response))
            self._check(response, what)
            try:
                return parse_checkin(response.json())
            except ValueError:
                return None

        def classify(exc: BaseException) -> _http.Fault | None:
            if isinstance(exc, _Unsure):
                inner = exc.error
                if isinstance(inner, _http.StatusError):
                    return _http.Fault(f"HTTP {inner.status}", _http.asked_wait(inner.response.headers))
                return _http.transport_fault(inner)
            return _http.fault_of(exc)

        return self._call(attempt, path, what, classify)

    # -- plumbing

    def _get(self, path: str, what: str, page: int | None = None) -> tuple[Any, requests.Response]:
        url = self.base_url + path
        params = {"page": page} if page is not None else None

        def attempt() -> tuple[Any, requests.Response]:
            self.calls += 1
            response = self._session.get(url, params=params, timeout=self.timeout)
            self._check(response, what)
            try:
                return response.json(), response
            except ValueError:
                if _http.says_json(response):
                    raise _http.CutShort() from None
                raise TabilityError(f"Tability answered a page that is not JSON when asked to {what}: "
                                    "check `base_url` (it should be https://api.tability.app/v2)") from None

        return self._call(attempt, path, what, _http.fault_of)

    def _pages(self, path: str, what: str, pages: int = MAX_PAGES) -> list[Any]:
        """Every item of a list endpoint (at most `pages` pages): page 1, then each rel="next" page the Link
        header names."""
        items: list[Any] = []
        page: int | None = None
        seen: set[int] = set()
        for _ in range(pages):
            body, response = self._get(path, what, page)
            if not isinstance(body, list):
                raise TabilityError(f"Tability answered {_what(body)} when asked to {what}, not a list: "
                                    "check `base_url` and `workspace`")
            items.extend(body)
            nxt = next_page(response.headers.get("Link"))
            if nxt is None or nxt in seen or not body:
                return items
            seen.add(nxt)
            page = nxt
        if pages < MAX_PAGES:
            return items
        raise TabilityError(f"Tability kept naming a next page after {MAX_PAGES} pages when asked to {what}")

    def _call(self, attempt: Callable[[], Any], path: str, what: str,
              classify: Callable[[BaseException], _http.Fault | None]) -> Any:
        try:
            return _http.call(attempt, service="Tability", path=path, classify=classify, policy=POLICY)
        except _http.GaveUp as ended:
            error = ended.error.error if isinstance(ended.error, _Unsure) else ended.error
            why = _fault_words(error)
            if ended.asked_too_long:
                raise TargetDown(f"Tability asks to wait {ended.fault.asked:g} s ({why}) to {what}: the check-ins stay "
                                 f"pending, {ended.run_again()}") from None
            if ended.reason == "deadline":
                raise TargetDown(f"the target's deadline came while trying to {what} ({why}): the check-ins stay "
                                 "pending for the next run; raise the target's `deadline:` if this repeats") from None
            raise TargetDown(f"Tability failed {ended.tries} times to {what} ({why}): the check-ins stay pending for "
                             "the next run") from None
        except _Unsure as exc:                                  # not worth retrying (a refused connection)
            raise TargetDown(f"Tability could not be reached to {what} ({_fault_words(exc.error)}): check `base_url` "
                             "and the network; the check-ins stay pending") from None
        except requests.RequestException as exc:
            raise TargetDown(f"Tability could not be reached to {what} ({_fault_words(exc)}): check `base_url` and the "
                             "network; the check-ins stay pending") from None

    def _check(self, response: requests.Response, what: str) -> None:
        """Return for a 2xx; raise StatusError for what is retried, else the mapped TabilityError."""
        status = response.status_code
        if 200 <= status < 300:
            return
        if _http.retriable_status(status):
            raise _http.StatusError(response)
        said = _said(response)
        if status == 401:
            raise TargetDown(f"Tability refused the token in {self.token_where} (HTTP 401{said}): copy your Personal "
                             f"API token from {TOKEN_PAGE} into {self.token_where}")
        if status == 403:
            raise TargetDown(f"Tability denied access to workspace `{self.workspace}` (HTTP 403{said}): the token's user "
                             "needs the \"API access\" setting in that workspace (ask a workspace admin), and "
                             "`workspace:` must be its slug or id")
        if status == 404:
            raise NotFound(f"Tability answered HTTP 404{said} when asked to {what}")
        if status in (400, 422):
            raise Refused(f"Tability refused to {what} (HTTP {status}{said})")
        raise TabilityError(f"Tability answered HTTP {status}{said} when asked to {what}")


def next_page(link: str | None) -> int | None:
    """The page number of a Link header's rel="next" URL (None: this was the last page)."""
    if not link:
        return None
    match = _NEXT.search(link)
    if not match:
        return None
    pages = parse_qs(urlsplit(match.group(1)).query).get("page")
    try:
        return int(pages[0]) if pages else None
    except ValueError:
        return None


def _said(response: requests.Response) -> str:
    """Tability's own words about an error, short and scrubbed (a server may echo the token)."""
    try:
        body = response.json()
    except ValueError:
        body = response.text
    if isinstance(body, dict):
        body = body.get("error") or body.get("errors") or body.get("message") or body
    text = server_text(body if isinstance(body, str) else json.dumps(body), 160) if body else ""
    return f": {text}" if text else ""


def _what(body: Any) -> str:
    return {dict: "an object", list: "a list", str: "text"}.get(type(body), "nothing usable")


def _fault_words(exc: BaseException) -> str:
    if isinstance(exc, _http.StatusError):
        return f"HTTP {exc.status}"
    if isinstance(exc, requests.Timeout):
        return "no answer in time"
    if isinstance(exc, _http.CutShort):
        return "an answer cut short"
    if isinstance(exc, requests.ConnectionError):
        return _http.connection_reason(exc)
    return exc.__class__.__name__


__all__ = ["API_BASE", "CONFIDENCE", "CONFIDENCES", "Checkin", "Client", "NotFound", "Refused", "TabilityError",
           "TargetDown", "checkin_body", "checkins_path", "next_page", "parse_checkin", "plan_outcomes_path",
           "plans_path"]
