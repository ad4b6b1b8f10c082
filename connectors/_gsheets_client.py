"""HTTP for the Google Sheets source: the Sheets API v4 as a service account, and the public CSV export.

Every failure is mapped onto okr-sync's errors here, in one place:

    429, 500, 502, 503, 504, timeouts, lost connections  -> RetriableSourceError, retried here
    Sheets API 403  -> not shared with the service account (or the API is off in its project)
    Sheets API 404  -> no such spreadsheet;  400 -> e.g. an Excel file kept in Drive
    CSV export: a sign-in page (HTML, or a redirect to accounts.google.com), 401, 403 -> not public;
                404 -> no such spreadsheet;  400 -> no tab with that gid

Retries: connectors/_http.py's, with POLICY (longer than the default, see there); the wait is
Google's Retry-After when it sends one. Nothing else retries these calls: gspread's default
HTTPClient does not (its BackOffHTTPClient would), requests' adapters are left at 0 retries. The
token request is google-auth's: it retries it itself (3 attempts), so it is not wrapped again.

`CallCounter` counts the HTTP requests answered (redirect hops not counted), token included.
"""
from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from typing import Any, Callable, TypeVar
from urllib.parse import urlparse

import google.auth.exceptions
import google.auth.transport.requests
import gspread
import requests
from google.oauth2 import service_account
from gspread.urls import SPREADSHEETS_API_V4_BASE_URL

from connectors import _http
from okrsync.errors import RetriableSourceError, SourceError
from okrsync.redact import register, server_text

logger = logging.getLogger(__name__)

API_BASE = SPREADSHEETS_API_V4_BASE_URL            # https://sheets.googleapis.com/v4/spreadsheets
EXPORT_BASE = "https://docs.google.com/spreadsheets/d"
READONLY_SCOPES = ("https://www.googleapis.com/auth/spreadsheets.readonly",)     # the source: reads only
READ_WRITE_SCOPES = ("https://www.googleapis.com/auth/spreadsheets",)            # the publish target writes
METADATA_FIELDS = "properties(title,locale),sheets.properties(sheetId,title,index,sheetType)"
# Google's documented truncated exponential backoff (Sheets API usage limits): the per-minute read
# quota refills each minute, so the waits span one: 2, 4, 8, 16, 32 s (plus jitter) over 6 tries.
POLICY = _http.DEFAULT.but(tries=6, first_wait=2.0, cap=32.0)
TIMEOUT = (10.0, 60.0)                             # connect, read (seconds)
MAX_REDIRECTS = 5
USER_AGENT = "okr-sync (google_sheets source)"
_MAX_MESSAGE = 200

T = TypeVar("T")

# ---------------------------------------------------------------------------- retries and counting


class CallCounter:
    """A requests response hook counting answered HTTP requests (redirect hops excluded)."""

    def __init__(self) -> None:
        self.count = 0

    def __call__(self, response: requests.Response, *args: Any, **kwargs: Any) -> requests.Response:
        if not response.is_redirect:
            self.count += 1
        return response

    def watch(self, session: requests.Session) -> requests.Session:
        session.hooks["response"].append(self)
        return session


def _fault(exc: BaseException) -> _http.Fault | None:
    if isinstance(exc, gspread.exceptions.APIError):
        return _http.status_fault(exc.response.status_code, exc.response.headers)
    return _http.fault_of(exc)


def with_retries(call: Callable[[], T], *, path: str, what: str, deadline: float | None = None,
                 quota: str = "read") -> T:
    """Run `call` (one request to `path`, for `what`) with retries; when they end, the last fault's
    RetriableSourceError saying it gave up. Errors not worth retrying are raised as they are. `quota`
    ("read" or "write") names the per-minute quota a 429 used up."""
    try:
        return _http.call(call, service="Google Sheets", path=path, classify=_fault, policy=POLICY,
                          deadline=deadline)
    except _http.GaveUp as ended:
        error = ended.error
        response = getattr(error, "response", None)
        last = _transient(response, what, quota) if response is not None else _unreachable(error, what)
        if ended.asked_too_long:
            gave_up = f"Google asked to wait {ended.fault.asked:.0f} s, longer than okr-sync waits: {ended.run_again()}"
        else:
            gave_up = f"gave up after {ended.tries} attempts: run again later"
        raise RetriableSourceError(f"{last}; {gave_up}", last.retry_after) from None

# ---------------------------------------------------------------------------- messages


def sheet_label(spreadsheet_id: str) -> str:
    """How messages name a spreadsheet whose title is not known: Google Sheet 1AbCdEfGhI…"""
    return f"Google Sheet {_short_id(spreadsheet_id)}"


def _short_id(spreadsheet_id: str) -> str:
    """A spreadsheet id cut short: the id of a sheet shared by link is the key to it."""
    return f"{spreadsheet_id[:10]}…" if len(spreadsheet_id) > 12 else spreadsheet_id


def _log_path(url: str, spreadsheet_id: str) -> str:
    """A request's path for the retry log line, the spreadsheet id cut short."""
    return urlparse(url).path.replace(spreadsheet_id, _short_id(spreadsheet_id))


def one_line(text: Any) -> str:
    """A server's text squeezed onto one line, scrubbed, and cut to a readable length."""
    return server_text(text, _MAX_MESSAGE)


def _google_error(response: requests.Response) -> tuple[str, str]:
    """(status, message) of a Google API error body {"error": {"code", "message", "status"}}, or ("", "")."""
    try:
        body = response.json()
    except ValueError:
        return "", ""
    error = body.get("error", {}) if isinstance(body, dict) else body
    if not isinstance(error, dict):
        return "", one_line(error)
    return str(error.get("status") or ""), one_line(error.get("message") or "")


def _transient(response: requests.Response, what: str, quota: str = "read") -> RetriableSourceError:
    status, message = _google_error(response)
    wait = _http.asked_wait(response.headers)
    if response.status_code == 429:
        detail = f": {message}" if message else ""
        return RetriableSourceError(
            f"{what}: Google's {quota} quota is used up (HTTP 429{detail}); the Sheets API allows 60 {quota}s per "
            "minute per user: spread syncs apart or ask for more quota in the Google Cloud console", wait)
    return RetriableSourceError(f"{what}: Google answered HTTP {response.status_code}"
                                + (f" ({message})" if message else "") + ", a passing fault", wait)


def _unreachable(exc: BaseException, what: str) -> RetriableSourceError:
    if isinstance(exc, _http.CutShort):
        return RetriableSourceError(f"{what}: Google's answer was cut short (its JSON does not parse)")
    kind = "timed out" if isinstance(exc, requests.Timeout) else "could not connect"
    return RetriableSourceError(f"{what}: {kind} ({type(exc).__name__})")

# ---------------------------------------------------------------------------- Sheets API (service account)


@dataclass(frozen=True)
class Tab:
    """One tab of a spreadsheet: its gid (sheetId), title and position."""

    gid: int
    title: str
    index: int
    grid: bool = True                  # False for a chart sheet, which holds no cells


@dataclass(frozen=True)
class Spreadsheet:
    """What the metadata call tells: the title, the locale numbers are displayed in (e.g. en_US), the tabs in order."""

    title: str
    locale: str
    tabs: list[Tab]


class SheetsApi:
    """The Sheets API v4 for one spreadsheet as a service account: with the read-only scope for the source,
    with the read-write `spreadsheets` scope (`scopes=READ_WRITE_SCOPES`) for the publish target.

    Built on gspread's HTTPClient (no retries of its own) over a google-auth AuthorizedSession.
    """

    def __init__(self, info: dict[str, Any], spreadsheet_id: str, *, api_base: str = API_BASE,
                 counter: CallCounter | None = None, key_label: str = "the service account key",
                 deadline: float | None = None, scopes: tuple[str, ...] = READONLY_SCOPES):
        self.spreadsheet_id = spreadsheet_id
        self.deadline = deadline                    # a clock.monotonic() time no retry wait may pass (_http)
        self.label = sheet_label(spreadsheet_id)
        self.api_base = api_base.rstrip("/")
        self.client_email = str(info.get("client_email") or "the service account")
        self.counter = counter or CallCounter()
        self.writes = scopes == READ_WRITE_SCOPES
        try:
            self.credentials = service_account.Credentials.from_service_account_info(info, scopes=list(scopes))
        except (ValueError, KeyError, TypeError):
            raise SourceError(f"{key_label} is not a usable service-account key (its private_key could not be read): "
                              "download a new JSON key in the Google Cloud console (IAM & Admin > Service accounts > "
                              "Keys > Add key)") from None
        self._token_session = self.counter.watch(_http.bound(requests.Session()))
        self._token_request = google.auth.transport.requests.Request(self._token_session)
        self._session = google.auth.transport.requests.AuthorizedSession(self.credentials,
                                                                         auth_request=self._token_request)
        self._session.headers["User-Agent"] = USER_AGENT
        self._session.hooks["response"].append(self._register_token)
        _http.bound(self._session)                 # socket timeouts end by the source's deadline
        self.http = gspread.Client(auth=self.credentials, session=self.counter.watch(self._session)).http_client
        self.http.set_timeout(TIMEOUT)

    def close(self) -> None:
        """Release the connections."""
        self._session.close()
        self._token_session.close()

    def _register_token(self, response: requests.Response, *args: Any, **kwargs: Any) -> requests.Response:
        """Register the access token the request carried (a refresh may have just made it): a server may echo it."""
        register(self.credentials.token)
        return response

    def authorize(self) -> None:
        """Get an access token now, so a refused key is reported as such (google-auth retries this call itself)."""
        try:
            self.credentials.refresh(self._token_request)
            register(self.credentials.token)
        except google.auth.exceptions.RefreshError as exc:
            code, description = _refresh_error(exc)
            if getattr(exc, "retryable", False):
                raise RetriableSourceError(f"Google's token endpoint failed ({code or 'server error'}) for "
                                           f"{self.client_email}: run again later") from None
            raise SourceError(f"Google refused the key of service account {self.client_email} ({code}"
                              f"{': ' + description if description else ''}): the key may have been deleted or the "
                              "account disabled; create a new JSON key in the Google Cloud console") from None
        except google.auth.exceptions.TransportError as exc:
            cause = type(exc.__cause__ or exc).__name__
            raise RetriableSourceError(f"could not reach Google's token endpoint ({cause}): check the network and "
                                       "run again") from None

    def spreadsheet(self) -> Spreadsheet:
        """The spreadsheet's title, locale and tabs (one call: spreadsheets.get with a field mask)."""
        body = self._get(f"{self.api_base}/{self.spreadsheet_id}", {"fields": METADATA_FIELDS}, "reading the tabs")
        tabs = []
        for sheet in body.get("sheets", []):
            props = sheet.get("properties", {})
            tabs.append(Tab(gid=int(props.get("sheetId", 0)), title=str(props.get("title", "")),
                            index=int(props.get("index", len(tabs))), grid=props.get("sheetType", "GRID") == "GRID"))
        props = body.get("properties", {})
        return Spreadsheet(str(props.get("title", "")), str(props.get("locale", "")),
                           sorted(tabs, key=lambda tab: tab.index))

    def values(self, ranges: list[str], render: str = "FORMATTED_VALUE") -> list[dict[str, Any]]:
        """The valueRanges of `ranges`, in the order asked (one call: values:batchGet). `render`: FORMATTED_VALUE
        (as displayed, the source) or UNFORMATTED_VALUE (numbers as numbers, whatever the format and locale)."""
        params = {"ranges": ranges, "valueRenderOption": render, "majorDimension": "ROWS"}
        body = self._get(f"{self.api_base}/{self.spreadsheet_id}/values:batchGet", params, "reading the values")
        found = body.get("valueRanges", [])
        if not isinstance(found, list) or not all(isinstance(r, dict) for r in found):
            raise SourceError(f"{self.label}, reading the values: Google Sheets answered `valueRanges` that are not a "
                              "list of ranges: check `spreadsheet:` and run again")
        if len(found) != len(ranges):
            raise SourceError(f"Google Sheets returned {len(found)} ranges for the {len(ranges)} asked")
        return found

    def update_values(self, data: list[dict[str, Any]], value_input: str = "RAW") -> dict[str, Any]:
        """Write `data` (ValueRanges: {"range", "values"}) in one call: values:batchUpdate, atomic (all or nothing).
        RAW stores numbers as numbers and text as text (no formula or date parsing)."""
        body = {"valueInputOption": value_input, "data": data}
        return self._request("post", f"{self.api_base}/{self.spreadsheet_id}/values:batchUpdate", None,
                             "writing the values", body)

    def _get(self, url: str, params: dict[str, Any], what: str) -> dict[str, Any]:
        return self._request("get", url, params, what)

    def _request(self, method: str, url: str, params: dict[str, Any] | None, what: str,
                 payload: dict[str, Any] | None = None) -> dict[str, Any]:
        def attempt() -> dict[str, Any]:
            response = self.http.request(method, url, params=params, json=payload)
            try:
                body = response.json()
                if isinstance(body, dict):
                    return body
            except ValueError:
                if _http.says_json(response):
                    raise _http.CutShort() from None
            raise SourceError(f"{self.label}, {what}: Google Sheets answered something other than a JSON object "
                              f"(HTTP {response.status_code}): check `spreadsheet:`")
        try:
            return with_retries(attempt, path=_log_path(url, self.spreadsheet_id), what=f"{self.label}, {what}",
                                deadline=self.deadline, quota="write" if method == "post" else "read")
        except gspread.exceptions.APIError as exc:
            raise self._failure(exc.response, what) from None
        except requests.RequestException as exc:
            raise _unreachable(exc, f"{self.label}, {what}") from None

    def _failure(self, response: requests.Response, what: str) -> SourceError:
        status = response.status_code
        kind, message = _google_error(response)
        email = self.client_email
        if status == 403 and ("SERVICE_DISABLED" in response.text or "has not been used" in message
                              or "is disabled" in message):
            link = re.search(r"https://console\.(?:developers|cloud)\.google\.com/\S+", message)
            where = f"at {link.group(0).rstrip('.')}" if link else "(APIs & Services > Library)"
            return SourceError(f"the Google Sheets API is not enabled in the Google Cloud project of {email}: "
                               f"enable it {where}, wait a few minutes and run again")
        if status == 403 and ("ACCESS_TOKEN_SCOPE_INSUFFICIENT" in response.text or "insufficient authentication scopes"
                              in message):
            return SourceError(f"{self.label}, {what}: Google refused the request for lack of the "
                               f"{'read-write' if not self.writes else 'needed'} scope (HTTP 403 "
                               "ACCESS_TOKEN_SCOPE_INSUFFICIENT): writing needs the `spreadsheets` scope, which only "
                               "the publish target asks for; if a domain-wide policy limits the account's scopes, "
                               "allow https://www.googleapis.com/auth/spreadsheets for it")
        if status == 403:
            role = "an Editor" if self.writes else "a Viewer"
            return SourceError(f"{self.label} is not shared with the service account {email}"
                               f"{' as an Editor' if self.writes else ''}: open it in Google Sheets, click Share and "
                               f"add {email} as {role}")
        if status == 404:
            return SourceError(f"spreadsheet {self.spreadsheet_id} not found: check `spreadsheet:` (copy the URL "
                               "from the browser's address bar)")
        if status == 401:
            return SourceError(f"Google rejected the access token of {email} (HTTP 401): check that its key is still "
                               "valid in the Google Cloud console")
        if status == 400 and "not supported for this document" in message:
            return SourceError("this file is an Excel workbook kept in Google Drive, which the Sheets API cannot read: "
                               "open it and use File > Save as Google Sheets, then point `spreadsheet:` at the copy")
        return SourceError(f"{self.label}, {what}: Google Sheets answered HTTP {status}{' ' + kind if kind else ''}"
                           + (f": {message}" if message else ""))


def _refresh_error(exc: google.auth.exceptions.RefreshError) -> tuple[str, str]:
    """(error, error_description) of a refused token request, never anything else from it."""
    data = exc.args[1] if len(exc.args) > 1 else None
    if isinstance(data, dict):
        return one_line(data.get("error", "refused")), one_line(data.get("error_description", ""))
    return "refused", ""

# ---------------------------------------------------------------------------- public CSV export


class TabNotExported(SourceError):
    """The export refused one tab (e.g. no tab with that gid); other tabs may still be read."""


def public_session(counter: CallCounter) -> requests.Session:
    """A plain session (no credentials) for the public CSV export."""
    session = _http.bound(requests.Session())
    session.max_redirects = MAX_REDIRECTS
    session.headers["User-Agent"] = USER_AGENT
    return counter.watch(session)


def export_csv(session: requests.Session, spreadsheet_id: str, gid: int | None, *,
               export_base: str = EXPORT_BASE, deadline: float | None = None) -> str:
    """The CSV text of one tab (the first tab if gid is None) of a sheet shared as "anyone with the link"."""
    url = f"{export_base.rstrip('/')}/{spreadsheet_id}/export"
    params = {"format": "csv"} if gid is None else {"format": "csv", "gid": str(gid)}
    tab = "the first tab" if gid is None else f"tab gid={gid}"
    label = sheet_label(spreadsheet_id)

    def attempt() -> requests.Response:
        try:
            response = session.get(url, params=params, timeout=TIMEOUT)
        except requests.TooManyRedirects:
            raise SourceError(f"{label}, exporting {tab} as CSV: Google redirected too many times") from None
        if _http.retriable_status(response.status_code):
            raise _http.StatusError(response)
        return response

    try:
        response = with_retries(attempt, path=_log_path(url, spreadsheet_id), what=f"{label}, exporting {tab} as CSV",
                                deadline=deadline)
    except requests.RequestException as exc:
        raise _unreachable(exc, f"{label}, exporting {tab} as CSV") from None
    if response.status_code == 404:
        raise SourceError(f"spreadsheet {spreadsheet_id} not found: check `spreadsheet:` (copy the URL from the "
                          "browser's address bar)")
    if response.status_code == 400:
        raise TabNotExported(f"{label}: Google could not export {tab} (HTTP 400): check the gid, the number after "
                             "#gid= in the address bar when that tab is open")
    if response.status_code in (401, 403) or _sign_in_page(response):
        raise SourceError(f"{label} is not public: Google answered with a sign-in page instead of CSV. "
                          "Share it as \"Anyone with the link: Viewer\" (Share > General access), or give the source "
                          "a `service_account:` and share the sheet with that account")
    if not response.ok:
        raise SourceError(f"{label}, exporting {tab} as CSV: Google answered HTTP {response.status_code}")
    return response.content.decode("utf-8-sig", errors="replace")


def _sign_in_page(response: requests.Response) -> bool:
    """True when Google answered a web page (a sign-in page) rather than CSV."""
    hops = [r.headers.get("Location", "") for r in response.history] + [response.url or ""]
    if any(urlparse(hop).hostname == "accounts.google.com" for hop in hops):
        return True
    if "text/html" in response.headers.get("Content-Type", "").lower():
        return True
    head = response.content[:512].lstrip().lower()
    return head.startswith(b"<!doctype html") or head.startswith(b"<html")
