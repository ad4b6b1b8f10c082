"""A stand-in for Google: service-account keys, the token endpoint, the Sheets API v4 and the CSV export.

Payload shapes follow Google's documentation:
- token: POST form {grant_type: urn:ietf:params:oauth:grant-type:jwt-bearer, assertion: <JWT signed with
  the key, aud = token_uri, scope = the scopes>} -> {"access_token", "expires_in", "token_type": "Bearer"};
- spreadsheets.get (fields=properties.title,sheets.properties(...)) -> {"properties": {"title"},
  "sheets": [{"properties": {"sheetId", "title", "index", "sheetType"}}]};
- values:batchGet -> {"spreadsheetId", "valueRanges": [{"range", "majorDimension": "ROWS", "values"}]}, the
  ranges in the order asked, each `range` the whole range asked, trailing empty rows/columns left out;
  `valueRenderOption=UNFORMATTED_VALUE` gives numbers as JSON numbers, FORMATTED_VALUE (the default) as text;
- values:batchUpdate (POST, the sheets.v4 discovery document's BatchUpdateValuesRequest) {"valueInputOption":
  RAW | USER_ENTERED (required: without it Google answers 400 "Invalid valueInputOption:
  INPUT_VALUE_OPTION_UNSPECIFIED"), "data": [{"range", "majorDimension"?, "values"}]} -> BatchUpdateValuesResponse
  {"spreadsheetId", "totalUpdatedRows", "totalUpdatedColumns", "totalUpdatedCells", "totalUpdatedSheets",
  "responses": [{"spreadsheetId", "updatedRange", "updatedRows", "updatedColumns", "updatedCells"}]}; all or
  nothing (a bad range, or values overflowing their range, is a 400 and nothing is written);
- errors -> {"error": {"code", "message", "status"}}.

Scopes: the token endpoint issues a token per scope set (READONLY -> CANARY_TOKEN, the read-write
`spreadsheets` scope -> CANARY_WRITE_TOKEN); reads take either, a write with a read-only token gets
Google's 403 PERMISSION_DENIED "Request had insufficient authentication scopes." (reason
ACCESS_TOKEN_SCOPE_INSUFFICIENT). Sharing: `shared` spreadsheets are readable by the service account,
`editors` writable too; a write to one shared as Viewer only is 403 "The caller does not have permission".
Quotas: `reads_per_minute` and `writes_per_minute` per user (Google's default is 60 each), counted over the
last 60 s of the fake's clock (`now`, moved by `advance`, which tests hand to connectors._http.clock.follow);
past them, Google's 429 RESOURCE_EXHAUSTED "Quota exceeded for quota metric 'Read requests' ...". `faults`
queues answers (status, headers, body) for the next Sheets API requests.

Each endpoint answers only its documented method (token: POST; spreadsheets.get, values:batchGet
and the CSV export: GET; values:batchUpdate: POST): another method gets 405 Method Not Allowed, and an
action the Sheets API does not have (`/v4/spreadsheets/{id}/values:batchGot`, `/v4/spreadsheets/{id}/x`) gets
Google's 404 NOT_FOUND error body, so a client that asks the wrong thing fails here as it would there.

`FakeSpreadsheet` answers those from rows of displayed values; `FakeGoogle.serve()` puts it all behind
a real HTTP server on 127.0.0.1 for end-to-end tests; the `responses_*` helpers stub the same answers
for unit tests.
"""
from __future__ import annotations

import csv
import io
import json
import re
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Iterator
from urllib.parse import parse_qs, urlparse

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from google.auth import jwt

from connectors._tabular import column_index, column_letter

READONLY = "https://www.googleapis.com/auth/spreadsheets.readonly"
READ_WRITE = "https://www.googleapis.com/auth/spreadsheets"
GOOGLE_TOKEN_URI = "https://oauth2.googleapis.com/token"
JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
CLIENT_EMAIL = "okr-sync@acme-okrs.iam.gserviceaccount.com"
CANARY_TOKEN = "ya29.CANARY-access-token-must-never-leak"
CANARY_WRITE_TOKEN = "ya29.CANARY-write-token-must-never-leak"
TOKEN_SCOPES = {CANARY_TOKEN: frozenset({READONLY}), CANARY_WRITE_TOKEN: frozenset({READ_WRITE})}
SIGN_IN_PAGE = b"<!DOCTYPE html><html><head><title>Sign in - Google Accounts</title></head><body>Sign in</body></html>"

_KEY: dict[str, str] = {}


def signing_key() -> tuple[str, str]:
    """(private PEM, public PEM) of an RSA key made once per test session."""
    if not _KEY:
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        _KEY["private"] = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                            serialization.NoEncryption()).decode()
        _KEY["public"] = key.public_key().public_bytes(serialization.Encoding.PEM,
                                                       serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    return _KEY["private"], _KEY["public"]


def service_account_info(token_uri: str = GOOGLE_TOKEN_URI) -> dict[str, str]:
    """A service-account JSON key as Google's console downloads it, with the test key."""
    private_pem, _ = signing_key()
    return {
        "type": "service_account", "project_id": "acme-okrs", "private_key_id": "0123456789abcdef",
        "private_key": private_pem, "client_email": CLIENT_EMAIL, "client_id": "104000000000000000001",
        "auth_uri": "https://accounts.google.com/o/oauth2/auth", "token_uri": token_uri,
        "auth_provider_x509_cert_url": "https://www.googleapis.com/oauth2/v1/certs",
        "client_x509_cert_url": "https://www.googleapis.com/robot/v1/metadata/x509/okr-sync%40acme-okrs.iam.gserviceaccount.com",
        "universe_domain": "googleapis.com",
    }


def check_assertion(form: dict[str, str]) -> dict[str, Any]:
    """Verify a token request as Google would: a JWT signed by the key, for Google's token endpoint; its claims.

    (google-auth always addresses the assertion to GOOGLE_TOKEN_URI, whatever the key's token_uri.)
    """
    assert form.get("grant_type") == JWT_BEARER, form.get("grant_type")
    _, public_pem = signing_key()
    return jwt.decode(form["assertion"], certs=public_pem, audience=GOOGLE_TOKEN_URI)


def token_answer(scope: str = READONLY) -> dict[str, Any]:
    """The token for a JWT's `scope` claim (space-separated scopes): the read-write one if it asks for it."""
    token = CANARY_WRITE_TOKEN if READ_WRITE in scope.split() else CANARY_TOKEN
    return {"access_token": token, "expires_in": 3599, "token_type": "Bearer"}


def quota_exceeded(kind: str = "Read") -> dict[str, Any]:
    """Google's 429 body when a per-minute quota is used up (`kind`: Read or Write)."""
    return api_error(429, f"Quota exceeded for quota metric '{kind} requests' and limit '{kind} requests per minute "
                          "per user' of service 'sheets.googleapis.com' for consumer 'project_number:104000000001'.",
                     "RESOURCE_EXHAUSTED")


INSUFFICIENT_SCOPES = {"error": {"code": 403, "message": "Request had insufficient authentication scopes.",
                                 "status": "PERMISSION_DENIED",
                                 "details": [{"@type": "type.googleapis.com/google.rpc.ErrorInfo",
                                              "reason": "ACCESS_TOKEN_SCOPE_INSUFFICIENT", "domain": "googleapis.com",
                                              "metadata": {"service": "sheets.googleapis.com", "method":
                                                           "google.apps.sheets.v4.SpreadsheetsService.BatchUpdateValues"}}]}}


def api_error(code: int, message: str, status: str) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "status": status}}

# ---------------------------------------------------------------------------- the spreadsheet


def _quote(title: str) -> str:
    return title if re.fullmatch(r"[A-Za-z0-9_]+", title) else "'" + title.replace("'", "''") + "'"


@dataclass
class FakeTab:
    """A tab's cells: displayed text (what the source tests give), or numbers (what a write with RAW stores)."""

    gid: int
    title: str
    rows: list[list[Any]]
    sheet_type: str = "GRID"


@dataclass
class FakeSpreadsheet:
    """A spreadsheet of displayed values (strings, as FORMATTED_VALUE and the CSV export give them)."""

    id: str
    title: str
    tabs: list[FakeTab] = field(default_factory=list)
    locale: str = "en_US"

    def tab(self, title: str) -> FakeTab | None:
        return next((t for t in self.tabs if t.title.casefold() == title.casefold()), None)

    def metadata(self) -> dict[str, Any]:
        return {"properties": {"title": self.title, "locale": self.locale},
                "sheets": [{"properties": {"sheetId": t.gid, "title": t.title, "index": i, "sheetType": t.sheet_type}}
                           for i, t in enumerate(self.tabs)]}

    def locate(self, a1: str) -> tuple[FakeTab, int, int, int, int] | None:
        """(tab, first column, first row, last column, last row) of an A1 range ('Tab', 'Tab'!B7, 'Tab'!B7:C9);
        None if it does not parse or names no tab."""
        title_part, _, cells = a1.rpartition("!") if "!" in a1 else (a1, "", "")
        title = title_part[1:-1].replace("''", "'") if title_part.startswith("'") else title_part
        tab = self.tab(title)
        if tab is None:
            return None
        rows, cols = max(len(tab.rows), 1000), max(26, max((len(r) for r in tab.rows), default=0))
        if not cells:
            return tab, 1, 1, cols, rows
        m = re.fullmatch(r"([A-Z]+)(\d+)(?::([A-Z]+)(\d+))?", cells)
        if not m:
            return None
        c1, r1 = column_index(m[1]), int(m[2])
        c2, r2 = (column_index(m[3]), int(m[4])) if m[3] else (c1, r1)
        return tab, c1, r1, c2, r2

    def value_range(self, a1: str, render: str = "FORMATTED_VALUE") -> dict[str, Any] | None:
        """The ValueRange of one A1 range; None if it names no tab."""
        found = self.locate(a1)
        if found is None:
            return None
        tab, c1, r1, c2, r2 = found
        show = _formatted if render == "FORMATTED_VALUE" else (lambda cell: cell)
        values = [[(show(row[c - 1]) if c <= len(row) else "") for c in range(c1, c2 + 1)]
                  for row in (tab.rows[r - 1] if r <= len(tab.rows) else [] for r in range(r1, r2 + 1))]
        values = [_trim(v) for v in values]
        while values and not values[-1]:
            values.pop()
        answer = {"range": f"{_quote(tab.title)}!{column_letter(c1)}{r1}:{column_letter(c2)}{r2}", "majorDimension": "ROWS"}
        if values:
            answer["values"] = values
        return answer

    def batch_get(self, ranges: list[str], render: str = "FORMATTED_VALUE") -> tuple[int, dict[str, Any]]:
        found = []
        for a1 in ranges:
            value_range = self.value_range(a1, render)
            if value_range is None:
                return 400, api_error(400, f"Unable to parse range: {a1}", "INVALID_ARGUMENT")
            found.append(value_range)
        return 200, {"spreadsheetId": self.id, "valueRanges": found}

    def batch_update(self, body: Any) -> tuple[int, dict[str, Any]]:
        """values:batchUpdate: every ValueRange checked first, then all written (all or nothing)."""
        if not isinstance(body, dict):
            return 400, api_error(400, "Invalid JSON payload received.", "INVALID_ARGUMENT")
        option = body.get("valueInputOption") or "INPUT_VALUE_OPTION_UNSPECIFIED"
        if option not in ("RAW", "USER_ENTERED"):
            return 400, api_error(400, f"Invalid valueInputOption: {option}", "INVALID_ARGUMENT")
        data = body.get("data")
        if not isinstance(data, list):
            return 400, api_error(400, "Invalid value at 'data', expected a list of ValueRange.", "INVALID_ARGUMENT")
        writes: list[tuple[FakeTab, int, int, Any]] = []
        responses = []
        for item in data:
            a1 = item.get("range", "") if isinstance(item, dict) else ""
            found = self.locate(a1)
            if found is None:
                return 400, api_error(400, f"Unable to parse range: {a1}", "INVALID_ARGUMENT")
            if item.get("majorDimension", "ROWS") != "ROWS":
                return 400, api_error(400, "Only ROWS is supported by this fake", "INVALID_ARGUMENT")
            tab, c1, r1, c2, r2 = found
            values = item.get("values") or []
            cells = 0
            for dr, row in enumerate(values):
                for dc, cell in enumerate(row):
                    if r1 + dr > r2 or c1 + dc > c2:
                        return 400, api_error(400, f"Requested writing within range [{a1}], but tried writing to "
                                                   f"{'row' if r1 + dr > r2 else 'column'} "
                                                   f"[{r1 + dr if r1 + dr > r2 else column_letter(c1 + dc)}]",
                                              "INVALID_ARGUMENT")
                    if cell is not None and not isinstance(cell, (str, int, float, bool)):
                        return 400, api_error(400, f"Invalid values[{dr}][{dc}]: {json.dumps(cell)[:60]}",
                                              "INVALID_ARGUMENT")
                    if cell is not None:
                        writes.append((tab, r1 + dr, c1 + dc, _entered(cell) if option == "USER_ENTERED" else cell))
                        cells += 1
            responses.append({"spreadsheetId": self.id, "updatedRange": f"{_quote(tab.title)}!{column_letter(c1)}{r1}"
                              + (f":{column_letter(c2)}{r2}" if (c1, r1) != (c2, r2) else ""),
                              "updatedRows": len(values), "updatedColumns": max((len(r) for r in values), default=0),
                              "updatedCells": cells})
        for tab, row, col, cell in writes:
            while len(tab.rows) < row:
                tab.rows.append([])
            cells_of = tab.rows[row - 1]
            while len(cells_of) < col:
                cells_of.append("")
            cells_of[col - 1] = cell
        touched = {(id(t), r) for t, r, _, _ in writes}
        return 200, {"spreadsheetId": self.id, "totalUpdatedRows": len(touched),
                     "totalUpdatedColumns": len({(id(t), c) for t, _, c, _ in writes}), "totalUpdatedCells": len(writes),
                     "totalUpdatedSheets": len({id(t) for t, _, _, _ in writes}), "responses": responses}

    def csv(self, gid: int | None) -> str | None:
        tab = self.tabs[0] if gid is None else next((t for t in self.tabs if t.gid == gid), None)
        if tab is None:
            return None
        out = io.StringIO()
        width = max((len(r) for r in tab.rows), default=0)
        csv.writer(out, lineterminator="\r\n").writerows(r + [""] * (width - len(r)) for r in tab.rows)
        return out.getvalue()


def _trim(row: list[Any]) -> list[Any]:
    while row and row[-1] == "":
        row = row[:-1]
    return row


def _formatted(cell: Any) -> Any:
    """A cell as FORMATTED_VALUE shows it (no number format applied): text as is, 41.0 as "41"."""
    if isinstance(cell, bool):
        return str(cell).upper()
    if isinstance(cell, float):
        return f"{cell:g}" if cell.is_integer() or abs(cell) >= 1e-4 else repr(cell)
    return str(cell) if isinstance(cell, int) else cell


def _entered(cell: Any) -> Any:
    """USER_ENTERED: text that reads as a plain number becomes one (dates and formulas are not modelled)."""
    if isinstance(cell, str):
        try:
            return float(cell) if re.fullmatch(r"-?\d+(?:\.\d+)?", cell.strip()) else cell
        except ValueError:
            return cell
    return cell

# ---------------------------------------------------------------------------- a real HTTP server


@dataclass
class FakeGoogle:
    """Token endpoint, Sheets API and CSV export on 127.0.0.1, for the end-to-end tests.

    `shared`: ids readable by the service account; `public`: ids exported without credentials.
    `handle` also serves as a `responses` callback (see `respond`), with Google's own addresses.
    """

    spreadsheets: dict[str, FakeSpreadsheet]
    shared: set[str] = field(default_factory=set)
    public: set[str] = field(default_factory=set)
    editors: set[str] = field(default_factory=set)                    # shared as Editor: writes allowed
    reads_per_minute: int | None = 60
    writes_per_minute: int | None = 60
    faults: list[tuple[int, dict[str, str], Any]] = field(default_factory=list)   # next Sheets API answers
    offset: float = 0.0                                                # the fake's clock: time.time() + offset
    bodies: list[Any] = field(default_factory=list)                   # JSON bodies of values:batchUpdate
    requests: list[tuple[str, str]] = field(default_factory=list)     # (method, url)
    scopes: list[str] = field(default_factory=list)
    base: str = ""
    token_uri: str = GOOGLE_TOKEN_URI
    sign_in_url: str = "https://accounts.google.com/ServiceLogin?continue=https://docs.google.com/"

    _used: dict[str, list[float]] = field(default_factory=lambda: {"Read": [], "Write": []})

    def now(self) -> float:
        return time.time() + self.offset

    def advance(self, seconds: float) -> None:
        self.offset += seconds

    def writes(self) -> int:
        return sum(1 for method, url in self.requests if method == "POST" and "values:batchUpdate" in url)

    def _over_quota(self, kind: str) -> bool:
        limit = self.reads_per_minute if kind == "Read" else self.writes_per_minute
        if limit is None:
            return False
        now = self.now()
        used = self._used[kind] = [t for t in self._used[kind] if t > now - 60.0]
        if len(used) >= limit:
            return True
        used.append(now)
        return False

    @property
    def api_base(self) -> str:
        return f"{self.base}/v4/spreadsheets"

    @property
    def export_base(self) -> str:
        return f"{self.base}/spreadsheets/d"

    def handle(self, method: str, url: str, headers: dict[str, str], body: bytes) -> tuple[int, dict[str, str], bytes]:
        self.requests.append((method, url))
        parsed = urlparse(url)
        query = parse_qs(parsed.query)
        path = parsed.path
        if path == "/token":
            if method != "POST":
                return _wrong_method(method, path)
            form = {k: v[0] for k, v in parse_qs(body.decode()).items()}
            try:
                claims = check_assertion(form)
            except Exception:  # noqa: BLE001 - any bad assertion is refused like Google does
                return _json(400, {"error": "invalid_grant", "error_description": "Invalid JWT Signature."})
            self.scopes.append(claims.get("scope", ""))
            return _json(200, token_answer(claims.get("scope", "")))
        if path.startswith("/v4/spreadsheets/"):
            return self._sheets_api(method, path, query, headers, body)
        if path == "/ServiceLogin" or urlparse(url).hostname == "accounts.google.com":
            return 200, {"Content-Type": "text/html; charset=utf-8"}, SIGN_IN_PAGE
        match = re.fullmatch(r"/spreadsheets/d/([^/]+)/export", path)
        if match:
            if method != "GET":
                return _wrong_method(method, path)
            sheet = self.spreadsheets.get(match[1])
            if sheet is None:
                return 404, {"Content-Type": "text/html"}, b"<html><body>Sorry, unable to open the file.</body></html>"
            if match[1] not in self.public:
                return 302, {"Location": self.sign_in_url}, b""
            text = sheet.csv(int(query["gid"][0]) if "gid" in query else None)
            if text is None:
                return 400, {"Content-Type": "text/html"}, b"<html><body>Bad Request</body></html>"
            return 200, {"Content-Type": "text/csv; charset=utf-8"}, text.encode()
        return 404, {"Content-Type": "text/plain"}, b"no such route"

    def _sheets_api(self, method: str, path: str, query: dict[str, list[str]],
                    headers: dict[str, str], body: bytes = b"") -> tuple[int, dict[str, str], bytes]:
        """spreadsheets.get (GET /v4/spreadsheets/{id}), values:batchGet (GET .../{id}/values:batchGet) and
        values:batchUpdate (POST .../{id}/values:batchUpdate)."""
        sheet_id, _, action = path.removeprefix("/v4/spreadsheets/").partition("/")
        methods = {"": "GET", "values:batchGet": "GET", "values:batchUpdate": "POST"}
        if action not in methods:
            return _json(404, api_error(404, f"The requested URL {path} was not found on this server.", "NOT_FOUND"))
        if method != methods[action]:
            return _wrong_method(method, path)
        auth = headers.get("authorization", "")
        scopes = TOKEN_SCOPES.get(auth.removeprefix("Bearer ")) if auth.startswith("Bearer ") else None
        if scopes is None:
            return _json(401, api_error(401, "Request had invalid authentication credentials.", "UNAUTHENTICATED"))
        writing = method == "POST"
        if writing and READ_WRITE not in scopes:
            return _json(403, INSUFFICIENT_SCOPES)
        if self.faults:
            status, out_headers, answer = self.faults.pop(0)
            return status, {"Content-Type": "application/json; charset=UTF-8", **out_headers}, json.dumps(answer).encode()
        if self._over_quota("Write" if writing else "Read"):
            return _json(429, quota_exceeded("Write" if writing else "Read"))
        sheet = self.spreadsheets.get(sheet_id)
        if sheet is None:
            return _json(404, api_error(404, "Requested entity was not found.", "NOT_FOUND"))
        if sheet_id not in self.shared | self.editors or writing and sheet_id not in self.editors:
            return _json(403, api_error(403, "The caller does not have permission", "PERMISSION_DENIED"))
        if action == "values:batchUpdate":
            try:
                payload = json.loads(body or b"null")
            except ValueError:
                return _json(400, api_error(400, "Invalid JSON payload received.", "INVALID_ARGUMENT"))
            self.bodies.append(payload)
            return _json(*sheet.batch_update(payload))
        if action == "values:batchGet":
            render = query.get("valueRenderOption", ["FORMATTED_VALUE"])[0]
            return _json(*sheet.batch_get(query.get("ranges", []), render))
        return _json(200, sheet.metadata())

    @contextmanager
    def serve(self) -> Iterator[FakeGoogle]:
        """Run on 127.0.0.1:<free port> until the block ends (daemon threads, sockets time out after 10 s)."""
        fake = self

        class Handler(BaseHTTPRequestHandler):
            timeout = 10

            def _answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                headers = {k.lower(): v for k, v in self.headers.items()}
                status, out_headers, out = fake.handle(self.command, self.path, headers, body)
                self.send_response(status)
                for key, value in out_headers.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(out)))
                self.end_headers()
                self.wfile.write(out)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _answer

            def log_message(self, *args: Any) -> None:
                pass

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        server.daemon_threads = True
        self.base = f"http://127.0.0.1:{server.server_address[1]}"
        self.token_uri, self.sign_in_url = f"{self.base}/token", f"{self.base}/ServiceLogin?continue=x"
        thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        thread.start()
        try:
            yield self
        finally:
            server.shutdown()
            server.server_close()
            thread.join(timeout=5)


def respond(fake: FakeGoogle):
    """A `responses` callback answering as `fake` does."""
    def callback(request: Any) -> tuple[int, dict[str, str], bytes]:
        body = request.body or b""
        headers = {k.lower(): v for k, v in request.headers.items()}
        return fake.handle(request.method, request.url, headers, body.encode() if isinstance(body, str) else body)
    return callback


def _wrong_method(method: str, path: str) -> tuple[int, dict[str, str], bytes]:
    """Google's front end to a known address asked with a method it does not serve."""
    return _json(405, api_error(405, f"Method {method} is not allowed for {path}.", "METHOD_NOT_ALLOWED"))


def _json(status: int, body: dict[str, Any]) -> tuple[int, dict[str, str], bytes]:
    return status, {"Content-Type": "application/json; charset=UTF-8"}, json.dumps(body).encode()
