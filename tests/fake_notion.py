"""A small Notion on 127.0.0.1 for end-to-end tests of the Notion publish target, API version 2025-09-03.

Built from Notion's OpenAPI description (makenotion/notion-mcp-server, scripts/notion-openapi.json:
"Notion API 2025-09-03 - Data Source Edition") and the documented objects: a database lists its
`data_sources` ({id, name}); a data source holds the property schema ({name: {id, name, type, <type>:
{...}}}); a page (a row) has `parent` {type: data_source_id, data_source_id, database_id}, `properties`
({name: {id, type, <type>: value}}), `created_time` and `last_edited_time` (rounded down to the minute,
as Notion does); a query answers {object: list, results, next_cursor, has_more, type:
page_or_data_source}. Errors are {object: error, status, code, message, request_id}.

What it enforces, as Notion documents it:
- `Authorization: Bearer <token>` (401 unauthorized) and the `Notion-Version` header (400 missing_version;
  this double speaks 2025-09-03 only);
- sharing: a database not shared with the integration is 404 object_not_found, as is an unknown id;
  `read_only` answers writes with 403 restricted_resource (an integration without Update/Insert content);
- the rate limit: a token bucket (`rate` a second, `burst` at once) on the double's clock; over it,
  429 rate_limited with `Retry-After` in whole seconds;
- payloads: page_size 1..100, a valid start_cursor, filters on existing properties of a matching type,
  property values of the property's type (number, select, status, date, url, title, rich_text), a
  select's unknown option created (as Notion does), a status's refused (validation_error), text and URLs
  of at most 2,000 characters.

The clock is the wall clock plus `offset`; `advance(seconds)` moves it (tests/conftest.py's FakeClock
follows it, so the connector's waits move this clock instead of sleeping). Faults: `down` (every request
503 service_unavailable), `fail(status, code, times, path=...)`, and `echo_token` (error messages repeat
the Authorization header, as a careless proxy might).
"""
from __future__ import annotations

import copy
import json
import math
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import urlsplit

from localhttp import LocalServer

VERSION = "2025-09-03"
MAX_PAGE_SIZE = 100
MAX_TEXT = 2000
BOT = {"object": "user", "id": "8f1f2e7c-0b6a-4a4b-9a51-3d1f7c1e9b10"}

# ---------------------------------------------------------------------------- schema and value shapes


def schema(kind: str, **config: Any) -> dict[str, Any]:
    """A property's schema body: schema("number", format="percent"), schema("select", options=[...])."""
    if kind in ("select", "status"):
        options = [{"id": uuid.uuid4().hex[:4], "name": name, "color": "default", "description": None}
                   for name in config.get("options", [])]
        return {"type": kind, kind: {"options": options}}
    if kind == "number":
        return {"type": "number", "number": {"format": config.get("format", "number")}}
    return {"type": kind, kind: {}}


def rich(text: str) -> list[dict[str, Any]]:
    """A rich-text array as Notion answers it."""
    return [{"type": "text", "text": {"content": text, "link": None},
             "annotations": {"bold": False, "italic": False, "strikethrough": False, "underline": False,
                             "code": False, "color": "default"}, "plain_text": text, "href": None}]


def stamp(moment: float) -> str:
    """Notion's created_time / last_edited_time: ISO 8601, rounded down to the minute."""
    shown = datetime.fromtimestamp(moment, timezone.utc).replace(second=0, microsecond=0)
    return shown.strftime("%Y-%m-%dT%H:%M:00.000Z")


def _when(text: Any) -> datetime | None:
    if not isinstance(text, str):
        return None
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def _date_text(moment: datetime, had_time: bool) -> str:
    if not had_time:
        return moment.date().isoformat()
    return moment.isoformat(timespec="milliseconds")


class Refused(Exception):
    """An error answer: status, code, message."""

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.code, self.message, self.headers = status, code, message, headers or {}

# ---------------------------------------------------------------------------- data


@dataclass
class Source:
    id: str
    database_id: str
    name: str
    properties: dict[str, dict[str, Any]]       # name -> {id, name, type, <type>: {...}}


@dataclass
class Database:
    id: str
    title: str
    sources: list[str]
    shared: bool = True


@dataclass
class Page:
    id: str
    source_id: str
    values: dict[str, dict[str, Any]]           # name -> {id, type, <type>: value}
    created: float
    edited: float
    in_trash: bool = False


@dataclass
class Request:
    method: str
    path: str
    status: int
    body: Any = None


@dataclass
class _Bucket:
    rate: float
    burst: float
    tokens: float
    at: float

    def take(self, now: float) -> float | None:
        """None if a request may go now, else the seconds until it may."""
        self.tokens = min(self.burst, self.tokens + (now - self.at) * self.rate)
        self.at = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return None
        return (1.0 - self.tokens) / self.rate


@dataclass
class Fault:
    status: int
    code: str
    path: str = ""
    method: str = ""
    times: int = 1
    retry_after: int | None = None
    after: bool = False            # do the work first, then answer the error (an answer lost on the way back)


class FakeNotion:
    """See the module docstring. Use as a context manager."""

    def __init__(self, token: str = "secret_token", *, rate: float | None = 3.0, burst: float = 3.0,
                 lifetime: float = 120.0):
        self.token = token
        self.offset = 0.0
        self.waits: list[float] = []
        self.requests: list[Request] = []
        self.databases: dict[str, Database] = {}
        self.sources: dict[str, Source] = {}
        self.pages: dict[str, Page] = {}
        self.down = False
        self.read_only = False
        self.echo_token = False
        self.faults: list[Fault] = []
        self._lock = threading.RLock()
        self._bucket = _Bucket(rate, burst, burst, self.now()) if rate else None
        self._http = LocalServer(self._handle, lifetime=lifetime)

    # ------------------------------------------------------------------ lifecycle, clock, views

    def __enter__(self) -> FakeNotion:
        self._http.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._http.stop()

    @property
    def url(self) -> str:
        return self._http.url

    def now(self) -> float:
        return time.time() + self.offset

    def advance(self, seconds: float) -> None:
        self.waits.append(seconds)
        self.offset += seconds

    def count(self, method: str | None = None, path: str = "", status: int | None = None) -> int:
        return sum(1 for r in list(self.requests) if (method is None or r.method == method) and path in r.path
                   and (status is None or r.status == status))

    def fail(self, status: int, code: str, times: int = 1, *, path: str = "", method: str = "",
             retry_after: int | None = None, after: bool = False) -> None:
        """The next `times` requests to `path` (a part of it) by `method` answer `status` / `code`; `after`:
        the request is carried out first (a row is created or changed) and its answer lost."""
        with self._lock:
            self.faults.append(Fault(status, code, path, method, times, retry_after, after))

    # ------------------------------------------------------------------ building the workspace

    def add_database(self, title: str, properties: dict[str, dict[str, Any]], *, shared: bool = True,
                     sources: int = 1) -> tuple[str, str]:
        """A database with `sources` data sources of the same schema; returns (database id, first data source id)."""
        database = Database(str(uuid.uuid4()), title, [], shared)
        for n in range(sources):
            source = Source(str(uuid.uuid4()), database.id, title if n == 0 else f"{title} {n + 1}",
                            {name: {"id": uuid.uuid4().hex[:4], "name": name, **copy.deepcopy(body)}
                             for name, body in properties.items()})
            self.sources[source.id] = source
            database.sources.append(source.id)
        self.databases[database.id] = database
        return database.id, database.sources[0]

    def add_row(self, source_id: str, values: dict[str, Any]) -> str:
        """A row made by a person, `values` as plain Python (numbers, option names, text, datetimes)."""
        source = self.sources[source_id]
        page = Page(str(uuid.uuid4()), source_id, {}, self.now(), self.now())
        for name, prop in source.properties.items():
            page.values[name] = self._empty(prop)
        for name, value in values.items():
            page.values[name] = self._plain_value(source.properties[name], value)
        self.pages[page.id] = page
        return page.id

    def edit(self, page_id: str, name: str, value: Any, *, ago: float = 0.0) -> None:
        """A person changes one value of a row, now or `ago` seconds ago."""
        page = self.pages[page_id]
        page.values[name] = self._plain_value(self.sources[page.source_id].properties[name], value)
        page.edited = self.now() - ago

    def rows(self, source_id: str) -> list[dict[str, Any]]:
        """The rows of a data source as plain Python: {property name: value}."""
        out = []
        for page in self.pages.values():
            if page.source_id == source_id and not page.in_trash:
                out.append({name: _plain(v) for name, v in page.values.items()})
        return out

    def row_of(self, source_id: str, name: str, text: str) -> dict[str, Any]:
        (row,) = [r for r in self.rows(source_id) if r.get(name) == text]
        return row

    @staticmethod
    def _empty(prop: dict[str, Any]) -> dict[str, Any]:
        kind = prop["type"]
        empty: Any = [] if kind in ("title", "rich_text") else None
        return {"id": prop["id"], "type": kind, kind: empty}

    def _plain_value(self, prop: dict[str, Any], value: Any) -> dict[str, Any]:
        kind = prop["type"]
        if kind in ("title", "rich_text"):
            body: Any = rich(str(value)) if value else []
        elif kind in ("select", "status"):
            option = next(o for o in prop[kind]["options"] if o["name"] == value) if value else None
            body = {"id": option["id"], "name": option["name"], "color": option["color"]} if option else None
        elif kind == "date":
            body = {"start": value.isoformat() if isinstance(value, datetime) else value, "end": None,
                    "time_zone": None} if value else None
        else:
            body = value
        return {"id": prop["id"], "type": kind, kind: body}

    # ------------------------------------------------------------------ one request

    def _handle(self, http: BaseHTTPRequestHandler, method: str) -> None:
        length = int(http.headers.get("Content-Length") or 0)
        raw = http.rfile.read(length) if length else b""
        path = urlsplit(http.path).path
        headers: dict[str, str] = {}
        try:
            with self._lock:
                body = self._admit(http, method, path, raw)
                status, answer = 200, self._route(method, path, body)
                self._injected(method, path, after=True)
        except Refused as exc:
            status, headers = exc.status, exc.headers
            message = exc.message
            if self.echo_token:
                message += f" (request header Authorization: {http.headers.get('Authorization')})"
            answer = {"object": "error", "status": exc.status, "code": exc.code, "message": message,
                      "request_id": str(uuid.uuid4())}
        with self._lock:
            self.requests.append(Request(method, path, status, raw.decode("utf-8", "replace")[:2000] if raw else None))
        data = json.dumps(answer).encode()
        http.send_response(status)
        http.send_header("Content-Type", "application/json; charset=utf-8")
        http.send_header("Content-Length", str(len(data)))
        for name, value in headers.items():
            http.send_header(name, value)
        http.end_headers()
        http.wfile.write(data)

    def _admit(self, http: BaseHTTPRequestHandler, method: str, path: str, raw: bytes) -> Any:
        """Auth, version, rate limit and faults, in Notion's order; then the JSON body."""
        if http.headers.get("Authorization") != f"Bearer {self.token}":
            raise Refused(401, "unauthorized", "API token is invalid.")
        version = http.headers.get("Notion-Version")
        if not version:
            raise Refused(400, "missing_version", "Notion-Version header failed validation: Notion-Version header "
                                                  "should be defined, instead was `undefined`.")
        if version != VERSION:
            raise Refused(400, "validation_error", f"this double speaks Notion-Version {VERSION} only, not {version}")
        if self._bucket is not None:
            wait = self._bucket.take(self.now())
            if wait is not None:
                raise Refused(429, "rate_limited", "You have been rate limited. Please try again in a few minutes.",
                              {"Retry-After": str(max(1, math.ceil(wait)))})
        if self.down:
            raise Refused(503, "service_unavailable", "Notion is unavailable, please try again later.")
        self._injected(method, path, after=False)
        if not raw:
            return None
        try:
            return json.loads(raw)
        except ValueError:
            raise Refused(400, "invalid_json", "Error parsing JSON body.") from None

    def _injected(self, method: str, path: str, *, after: bool) -> None:
        for fault in self.faults:
            if (fault.times > 0 and fault.after == after and fault.path in path
                    and (not fault.method or fault.method == method)):
                fault.times -= 1
                extra = {"Retry-After": str(fault.retry_after)} if fault.retry_after is not None else {}
                raise Refused(fault.status, fault.code, f"injected {fault.code}", extra)

    def _route(self, method: str, path: str, body: Any) -> dict[str, Any]:
        parts = path.strip("/").split("/")
        if parts[:2] == ["v1", "databases"] and len(parts) == 3 and method == "GET":
            return self._database(parts[2])
        if parts[:2] == ["v1", "data_sources"] and len(parts) == 3 and method == "GET":
            return self._source_object(self._source(parts[2]))
        if parts[:2] == ["v1", "data_sources"] and len(parts) == 4 and parts[3] == "query" and method == "POST":
            return self._query(self._source(parts[2]), body or {})
        if parts[:2] == ["v1", "pages"] and len(parts) == 3 and method == "PATCH":
            return self._update(parts[2], body or {})
        if parts == ["v1", "pages"] and method == "POST":
            return self._create(body or {})
        raise Refused(400, "invalid_request_url", "Invalid request URL.")

    # ------------------------------------------------------------------ objects

    @staticmethod
    def _norm(raw: str) -> str:
        plain = raw.replace("-", "").lower()
        if len(plain) != 32:
            return raw
        return f"{plain[:8]}-{plain[8:12]}-{plain[12:16]}-{plain[16:20]}-{plain[20:]}"

    def _database(self, raw: str) -> dict[str, Any]:
        database = self.databases.get(self._norm(raw))
        if database is None or not database.shared:
            raise Refused(404, "object_not_found", f"Could not find database with ID: {self._norm(raw)}. Make sure the "
                                                   "relevant pages and databases are shared with your integration.")
        return {"object": "database", "id": database.id, "title": rich(database.title), "description": [],
                "parent": {"type": "page_id", "page_id": str(uuid.uuid5(uuid.NAMESPACE_URL, database.id))},
                "is_inline": False, "in_trash": False, "is_locked": False,
                "created_time": stamp(0), "last_edited_time": stamp(self.now()), "created_by": BOT, "last_edited_by": BOT,
                "data_sources": [{"id": s, "name": self.sources[s].name} for s in database.sources],
                "icon": None, "cover": None, "url": f"https://www.notion.so/{database.id.replace('-', '')}",
                "public_url": None}

    def _source(self, raw: str) -> Source:
        source = self.sources.get(self._norm(raw))
        if source is None or not self.databases[source.database_id].shared:
            raise Refused(404, "object_not_found", f"Could not find data_source with ID: {self._norm(raw)}. Make sure "
                                                   "the relevant pages and databases are shared with your integration.")
        return source

    def _source_object(self, source: Source) -> dict[str, Any]:
        return {"object": "data_source", "id": source.id, "created_time": stamp(0), "last_edited_time": stamp(self.now()),
                "created_by": BOT, "last_edited_by": BOT, "properties": source.properties,
                "parent": {"type": "database_id", "database_id": source.database_id},
                "database_parent": {"type": "page_id", "page_id": str(uuid.uuid5(uuid.NAMESPACE_URL, source.database_id))},
                "archived": False, "in_trash": False, "is_inline": False, "icon": None, "cover": None,
                "title": rich(source.name), "description": [], "url": f"https://www.notion.so/{source.id.replace('-', '')}"}

    def _page_object(self, page: Page) -> dict[str, Any]:
        source = self.sources[page.source_id]
        return {"object": "page", "id": page.id, "created_time": stamp(page.created), "last_edited_time": stamp(page.edited),
                "created_by": BOT, "last_edited_by": BOT, "cover": None, "icon": None,
                "parent": {"type": "data_source_id", "data_source_id": source.id, "database_id": source.database_id},
                "archived": page.in_trash, "in_trash": page.in_trash, "is_locked": False, "properties": page.values,
                "url": f"https://www.notion.so/{page.id.replace('-', '')}", "public_url": None}

    # ------------------------------------------------------------------ query

    def _query(self, source: Source, body: dict[str, Any]) -> dict[str, Any]:
        size = body.get("page_size", MAX_PAGE_SIZE)
        if not isinstance(size, int) or isinstance(size, bool) or size < 1:
            raise Refused(400, "validation_error", f"body failed validation: body.page_size should be a number, "
                                                   f"instead was `{json.dumps(size)}`.")
        if size > MAX_PAGE_SIZE:
            raise Refused(400, "validation_error", f"body failed validation: body.page_size should be ≤ `{MAX_PAGE_SIZE}`, "
                                                   f"instead was `{size}`.")
        rows = [p for p in self.pages.values() if p.source_id == source.id and not p.in_trash]
        rows.sort(key=lambda p: (p.created, p.id))
        test = self._filter(source, body.get("filter"), depth=0) if body.get("filter") is not None else (lambda p: True)
        matched = [p for p in rows if test(p)]
        start = 0
        cursor = body.get("start_cursor")
        if cursor is not None:
            ids = [p.id for p in matched]
            if cursor not in ids:
                raise Refused(400, "validation_error", f"body failed validation: body.start_cursor should be a valid "
                                                       f"cursor, instead was `{json.dumps(cursor)}`.")
            start = ids.index(cursor)
        chunk = matched[start:start + size]
        more = start + size < len(matched)
        return {"object": "list", "results": [self._page_object(p) for p in chunk],
                "next_cursor": matched[start + size].id if more else None, "has_more": more,
                "type": "page_or_data_source", "page_or_data_source": {}, "request_id": str(uuid.uuid4())}

    def _filter(self, source: Source, spec: Any, depth: int) -> Any:
        if not isinstance(spec, dict):
            raise Refused(400, "validation_error", "body failed validation: body.filter should be an object.")
        for joiner in ("and", "or"):
            if joiner in spec:
                if depth >= 2:
                    raise Refused(400, "validation_error", "body failed validation: filters may be nested two levels "
                                                           "deep at most.")
                tests = [self._filter(source, s, depth + 1) for s in spec[joiner]]
                return (lambda p: all(t(p) for t in tests)) if joiner == "and" else (lambda p: any(t(p) for t in tests))
        name = spec.get("property")
        prop = source.properties.get(name) if isinstance(name, str) else None
        if prop is None:
            raise Refused(400, "validation_error", f"Could not find property with name or id: {name}")
        kind = prop["type"]
        conditions = spec.get(kind)
        other = [k for k in spec if k not in ("property", kind)]
        if not isinstance(conditions, dict) or other:
            raise Refused(400, "validation_error", f"body failed validation: body.filter.{(other or ['?'])[0]} does not "
                                                   f"match the type of property \"{name}\" ({kind}).")
        (op, arg), = conditions.items()
        return lambda p: _matches(kind, p.values.get(name), op, arg)

    # ------------------------------------------------------------------ writes

    def _update(self, raw: str, body: dict[str, Any]) -> dict[str, Any]:
        page = self.pages.get(self._norm(raw))
        if page is None or not self.databases[self.sources[page.source_id].database_id].shared:
            raise Refused(404, "object_not_found", f"Could not find page with ID: {self._norm(raw)}. Make sure the "
                                                   "relevant pages and databases are shared with your integration.")
        if self.read_only:
            raise Refused(403, "restricted_resource", "Insufficient permissions for this endpoint.")
        values = self._values(self.sources[page.source_id], body.get("properties") or {})
        page.values.update(values)
        page.edited = self.now()
        return self._page_object(page)

    def _create(self, body: dict[str, Any]) -> dict[str, Any]:
        parent = body.get("parent")
        if not isinstance(parent, dict):
            raise Refused(400, "validation_error", "body failed validation: body.parent should be defined, instead was "
                                                   "`undefined`.")
        if parent.get("data_source_id"):
            source = self._source(str(parent["data_source_id"]))
        elif parent.get("database_id"):
            database = self.databases.get(self._norm(str(parent["database_id"])))
            if database is None or not database.shared:
                raise Refused(404, "object_not_found", "Could not find database with ID: "
                                                       f"{parent['database_id']}. Make sure the relevant pages and "
                                                       "databases are shared with your integration.")
            if len(database.sources) != 1:
                raise Refused(400, "validation_error", "The database has several data sources: use a data_source_id "
                                                       "parent.")
            source = self.sources[database.sources[0]]
        else:
            raise Refused(400, "validation_error", "body failed validation: body.parent should have a data_source_id.")
        if self.read_only:
            raise Refused(403, "restricted_resource", "Insufficient permissions for this endpoint.")
        values = self._values(source, body.get("properties") or {})
        page = Page(str(uuid.uuid4()), source.id, {n: self._empty(p) for n, p in source.properties.items()},
                    self.now(), self.now())
        page.values.update(values)
        self.pages[page.id] = page
        return self._page_object(page)

    def _values(self, source: Source, given: Any) -> dict[str, dict[str, Any]]:
        if not isinstance(given, dict):
            raise Refused(400, "validation_error", "body failed validation: body.properties should be an object.")
        out = {}
        for name, value in given.items():
            prop = source.properties.get(name) or next((p for p in source.properties.values() if p["id"] == name), None)
            if prop is None:
                raise Refused(400, "validation_error", f"{name} is not a property that exists.")
            kind = prop["type"]
            if not isinstance(value, dict) or kind not in value:
                raise Refused(400, "validation_error", f"{prop['name']} is expected to be {kind}.")
            out[prop["name"]] = {"id": prop["id"], "type": kind, kind: self._value(prop, value[kind])}
        return out

    def _value(self, prop: dict[str, Any], value: Any) -> Any:
        name, kind = prop["name"], prop["type"]
        bad = Refused(400, "validation_error", f"body failed validation: body.properties.{name}.{kind} does not "
                                               f"match the {kind} shape, instead was `{json.dumps(value)[:100]}`.")
        if kind == "number":
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
                raise bad
            return value
        if kind == "url":
            if value is not None and not isinstance(value, str):
                raise bad
            if isinstance(value, str) and len(value) > MAX_TEXT:
                raise Refused(400, "validation_error", f"body failed validation: body.properties.{name}.url.length "
                                                       f"should be ≤ `{MAX_TEXT}`, instead was `{len(value)}`.")
            return value
        if kind in ("title", "rich_text"):
            if not isinstance(value, list):
                raise bad
            out = []
            for item in value:
                content = item.get("text", {}).get("content") if isinstance(item, dict) else None
                if not isinstance(content, str):
                    raise bad
                if len(content) > MAX_TEXT:
                    raise Refused(400, "validation_error", f"body failed validation: body.properties.{name}.{kind}[0]"
                                                           f".text.content.length should be ≤ `{MAX_TEXT}`, instead "
                                                           f"was `{len(content)}`.")
                out += rich(content)
            return out
        if kind in ("select", "status"):
            if value is None:
                return None
            if not isinstance(value, dict) or not isinstance(value.get("name"), str):
                raise bad
            options = prop[kind]["options"]
            option = next((o for o in options if o["name"] == value["name"]), None)
            if option is None and kind == "status":
                raise Refused(400, "validation_error", f"Invalid status option. Status option \"{value['name']}\" does "
                                                       "not exist\".")
            if option is None:
                if "," in value["name"]:
                    raise Refused(400, "validation_error", f"Select option names may not hold commas: {value['name']}")
                option = {"id": uuid.uuid4().hex[:4], "name": value["name"], "color": "default", "description": None}
                options.append(option)
            return {"id": option["id"], "name": option["name"], "color": option["color"]}
        if kind == "date":
            if value is None:
                return None
            start = value.get("start") if isinstance(value, dict) else None
            moment = _when(start)
            if moment is None:
                raise bad
            return {"start": _date_text(moment, "T" in start), "end": None, "time_zone": None}
        raise Refused(400, "validation_error", f"{name} is a {kind} property, which this double does not write.")


def _plain(value: dict[str, Any]) -> Any:
    """A page's value as plain Python."""
    kind = value.get("type")
    body = value.get(kind)
    if kind in ("title", "rich_text"):
        return "".join(t.get("plain_text", "") for t in body or []) or None
    if kind in ("select", "status"):
        return body["name"] if body else None
    if kind == "date":
        return body["start"] if body else None
    return body


def _matches(kind: str, value: dict[str, Any] | None, op: str, arg: Any) -> bool:
    have = _plain(value) if value else None
    if op == "is_empty":
        return have is None
    if op == "is_not_empty":
        return have is not None
    if have is None:
        return False
    if kind == "date":
        mine, theirs = _when(have), _when(arg)
        if mine is None or theirs is None:
            return False
        return {"equals": mine == theirs, "before": mine < theirs, "after": mine > theirs,
                "on_or_before": mine <= theirs, "on_or_after": mine >= theirs}.get(op, False)
    if kind in ("title", "rich_text"):
        return {"equals": have == arg, "does_not_equal": have != arg, "contains": str(arg) in have}.get(op, False)
    return {"equals": have == arg, "does_not_equal": have != arg}.get(op, False)


# ---------------------------------------------------------------------------- the OKR databases


KR_PROPERTIES = {"Name": schema("title"), "KR id": schema("rich_text"), "Current": schema("number"),
                 "Progress": schema("number", format="percent"),
                 "Status": schema("status", options=["On track", "At risk", "Off track", "Done"]),
                 "Last sync": schema("date"), "Source": schema("url"), "Baseline": schema("number"),
                 "Target": schema("number"), "Objective": schema("select", options=[])}
CHECKIN_PROPERTIES = {"Check-in": schema("title"), "KR id": schema("rich_text"), "Value": schema("number"),
                      "Date": schema("date"), "Progress": schema("number", format="percent"),
                      "Status": schema("select", options=["On track", "At risk", "Off track", "Done"]),
                      "Source": schema("url")}


@dataclass
class Workspace:
    """The two databases the Notion target writes, as a team would set them up."""

    krs_db: str
    krs: str
    checkins_db: str
    checkins: str
    row_ids: dict[str, str] = field(default_factory=dict)


def okr_workspace(notion: FakeNotion, key_results: list[str], *, titles: dict[str, str] | None = None) -> Workspace:
    krs_db, krs = notion.add_database("OKRs", KR_PROPERTIES)
    ci_db, ci = notion.add_database("Check-ins", CHECKIN_PROPERTIES)
    space = Workspace(krs_db, krs, ci_db, ci)
    for kr in key_results:
        space.row_ids[kr] = notion.add_row(krs, {"Name": (titles or {}).get(kr, kr), "KR id": kr})
    return space
