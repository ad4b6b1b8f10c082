"""A small Tability (API v2) on 127.0.0.1 for end-to-end tests of the `tability` publish target.

Shapes and rules as Tability's API guide documents them (https://guides.tability.app/api/: the pages
Authentication, Pagination, Plans, Outcomes, Checkins):

- every request needs `Authorization: API <personal_api_token>` (else 401); a user without the "API
  access" setting in the workspace gets 403; an unknown workspace, plan or outcome 404;
- lists answer a JSON array, `per_page` items a page, with `X-Per-Page`, `X-Page`, `X-Total` and a
  `Link` header (rel first, last, next, prev; no rel="next" on the last page); `?page=N` asks a page;
- plans, outcomes (id, nano_slug, objective_id, title, from, to, score_format) and check-ins (id,
  outcome_id, checkin_date as midnight UTC, score, confidence red|yellow|green, body, created_at),
  check-ins newest first; an outcome is found by its UUID or its Nano ID.

Not documented by Tability, so chosen here and said so: creating a check-in takes
`{"checkin": {"score", "checkin_date", "confidence", "body"}}` (the shape a public third-party client
sends): `score` a finite number (422 otherwise), `checkin_date` YYYY-MM-DD or an ISO time, `confidence`
one of red, yellow, green; it answers 201 with the check-in. Tability documents no rate limit; this
fake enforces one when given `rate_limit=(requests, seconds)`: over it, 429 with Retry-After (the
seconds until the window frees a place), on its own clock (`now`, `advance`) that a test's FakeClock
can follow.

Faults for tests: `down` (every request 503), `queued` (the next answers: (status, headers, body)),
`delay` (seconds, real time, before each answer: a slow Tability),
`take_then_fail` (the next N check-in POSTs are stored, then answered 502), `echo_auth` (error
bodies repeat the Authorization header, as some servers do).
"""
from __future__ import annotations

import json
import math
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from localhttp import LocalServer

CONFIDENCES = ("red", "yellow", "green")


def _nano() -> str:
    return uuid.uuid4().hex[:12]


@dataclass
class Plan:
    title: str
    id: str = field(default_factory=lambda: str(uuid.uuid4()))
    nano_slug: str = field(default_factory=_nano)
    archived: bool = False


@dataclass
class Outcome:
    plan: Plan
    title: str
    start: float = 0.0
    end: float = 100.0
    id: str = field(default_factory=lambda: str(uuid.uuid4()))
    nano_slug: str = field(default_factory=_nano)
    objective_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    score_format: str = "_number_"
    archived: bool = False


class FakeTability:
    def __init__(self, token: str = "tab-personal-token-0123456789", workspace: str = "acme", per_page: int = 25,
                 rate_limit: tuple[int, float] | None = None):
        self.token = token
        self.workspace = workspace
        self.workspace_id = str(uuid.uuid4())
        self.user_id = str(uuid.uuid4())
        self.membership_id = str(uuid.uuid4())
        self.per_page = per_page
        self.rate_limit = rate_limit
        self.api_access = True
        self.plans: list[Plan] = []
        self.outcomes: list[Outcome] = []
        self.checkins: dict[str, list[dict[str, Any]]] = {}     # outcome UUID -> check-ins as stored
        self.requests: list[tuple[str, str]] = []                # (method, path with query) of every request
        self.queued: list[tuple[int, dict[str, str], Any]] = []
        self.down = False
        self.take_then_fail = 0
        self.echo_auth = False
        self.delay = 0.0
        self.limited = 0                                          # requests answered 429
        self.max_in_window = 0                                    # most requests served within one window
        self._served: list[float] = []
        self._offset = 0.0
        self._lock = threading.Lock()
        self._server = LocalServer(self._handle)

    # -- lifecycle and clock

    def start(self) -> FakeTability:
        self._server.start()
        return self

    def stop(self) -> None:
        self._server.stop()

    def __enter__(self) -> FakeTability:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        return f"{self._server.url}/v2"

    def now(self) -> float:
        return time.time() + self._offset

    def advance(self, seconds: float) -> None:
        self._offset += seconds

    # -- data

    def add_plan(self, title: str, **kw: Any) -> Plan:
        plan = Plan(title, **kw)
        self.plans.append(plan)
        return plan

    def add_outcome(self, plan: Plan, title: str, start: float = 0.0, end: float = 100.0, **kw: Any) -> Outcome:
        outcome = Outcome(plan, title, start, end, **kw)
        self.outcomes.append(outcome)
        self.checkins[outcome.id] = []
        return outcome

    def add_checkin(self, outcome: Outcome, score: float, day: date, body: str = "", confidence: str = "green"
                    ) -> dict[str, Any]:
        """A check-in a person enters in Tability, created now (on this fake's clock)."""
        with self._lock:
            return self._store(outcome, score, day, confidence, body)

    def checkins_of(self, outcome: Outcome) -> list[dict[str, Any]]:
        return list(self.checkins[outcome.id])

    def writes(self) -> list[tuple[str, str]]:
        return [r for r in self.requests if r[0] == "POST"]

    # -- serving

    def _handle(self, handler: BaseHTTPRequestHandler, method: str) -> None:
        length = int(handler.headers.get("Content-Length") or 0)
        raw = handler.rfile.read(length) if length else b""
        if self.delay:
            time.sleep(self.delay)
        with self._lock:
            status, headers, body = self._answer(handler, method, raw)
        data = json.dumps(body).encode()
        handler.send_response(status)
        for name, value in headers.items():
            handler.send_header(name, value)
        handler.send_header("Content-Type", "application/json; charset=utf-8")
        handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        handler.wfile.write(data)

    def _answer(self, handler: BaseHTTPRequestHandler, method: str, raw: bytes) -> tuple[int, dict[str, str], Any]:
        self.requests.append((method, handler.path))
        if self.rate_limit is not None:
            limit, window = self.rate_limit
            now = self.now()
            self._served = [t for t in self._served if t > now - window]
            if len(self._served) >= limit:
                self.limited += 1
                wait = max(1, math.ceil(self._served[0] + window - now))
                return 429, {"Retry-After": str(wait)}, {"error": "Too many requests"}
            self._served.append(now)
            self.max_in_window = max(self.max_in_window, len(self._served))
        auth = handler.headers.get("Authorization") or ""
        if auth != f"API {self.token}":
            message = "Invalid API token" + (f" (got {auth!r})" if self.echo_auth else "")
            return 401, {}, {"error": message}
        if self.down:
            return 503, {}, {"error": "Service Unavailable"}
        if self.queued:
            return self.queued.pop(0)
        parts = urlsplit(handler.path)
        segments = [unquote(s) for s in parts.path.split("/") if s]
        query = parse_qs(parts.query)
        if segments[:1] != ["v2"]:
            return 404, {}, {"error": "Not found"}
        segments = segments[1:]
        if method == "GET" and segments == ["whoami"]:
            return 200, {}, {"id": self.user_id, "email": "okr-bot@acme.com", "firstname": "OKR", "lastname": "Bot"}
        if len(segments) < 3 or segments[0] != "workspaces":
            return 404, {}, {"error": "Not found"}
        if segments[1] not in (self.workspace, self.workspace_id):
            return 404, {}, {"error": "Workspace not found"}
        if not self.api_access:
            return 403, {}, {"error": "API access is not enabled for this user" + (f" ({auth})" if self.echo_auth else "")}
        rest = segments[2:]
        if method == "GET" and rest == ["plans"]:
            return self._page(parts.path, query, [self._plan(p) for p in self.plans])
        if method == "GET" and len(rest) == 3 and rest[0] == "plans" and rest[2] == "outcomes":
            plan = next((p for p in self.plans if rest[1] in (p.id, p.nano_slug)), None)
            if plan is None:
                return 404, {}, {"error": "Plan not found"}
            return self._page(parts.path, query, [self._outcome(o) for o in self.outcomes if o.plan is plan])
        if len(rest) == 3 and rest[0] == "outcomes" and rest[2] == "checkins":
            outcome = next((o for o in self.outcomes if rest[1] in (o.id, o.nano_slug)), None)
            if outcome is None:
                return 404, {}, {"error": "Outcome not found"}
            if method == "GET":
                newest_first = sorted(self.checkins[outcome.id], key=lambda c: (c["checkin_date"], c["created_at"]),
                                      reverse=True)
                return self._page(parts.path, query, newest_first)
            return self._create(handler, outcome, raw)
        return 404, {}, {"error": "Not found"}

    def _create(self, handler: BaseHTTPRequestHandler, outcome: Outcome, raw: bytes) -> tuple[int, dict[str, str], Any]:
        if "application/json" not in (handler.headers.get("Content-Type") or ""):
            return 400, {}, {"error": "Content-Type must be application/json"}
        try:
            payload = json.loads(raw)
        except ValueError:
            return 400, {}, {"error": "The body is not JSON"}
        checkin = payload.get("checkin") if isinstance(payload, dict) else None
        if not isinstance(checkin, dict):
            return 400, {}, {"error": "param is missing or the value is empty: checkin"}
        score = checkin.get("score")
        if isinstance(score, bool) or not isinstance(score, (int, float)) or not math.isfinite(score):
            return 422, {}, {"errors": {"score": ["is not a number"]}}
        day = checkin.get("checkin_date")
        try:
            when = date.fromisoformat(day[:10]) if isinstance(day, str) else (None if day is None else 0)
        except ValueError:
            when = 0
        if when == 0:
            return 422, {}, {"errors": {"checkin_date": ["is not a date"]}}
        confidence = checkin.get("confidence")
        if confidence is not None and confidence not in CONFIDENCES:
            return 422, {}, {"errors": {"confidence": [f"must be one of {', '.join(CONFIDENCES)}"]}}
        body = checkin.get("body")
        if body is not None and not isinstance(body, str):
            return 422, {}, {"errors": {"body": ["must be text"]}}
        stored = self._store(outcome, float(score), when or datetime.fromtimestamp(self.now(), timezone.utc).date(),
                             confidence or "green", body or "")
        if self.take_then_fail:
            self.take_then_fail -= 1
            return 502, {}, {"error": "Bad Gateway"}
        return 201, {}, stored

    def _store(self, outcome: Outcome, score: float, day: date, confidence: str, body: str) -> dict[str, Any]:
        created = _iso(self.now())
        checkin = {"id": str(uuid.uuid4()), "workspace_id": self.workspace_id, "nano_slug": _nano(),
                   "outcome_id": outcome.id, "checkin_date": f"{day.isoformat()}T00:00:00.000Z", "score": score,
                   "confidence": confidence, "body": body, "created_at": created, "updated_at": created,
                   "is_remote": False, "cached_reactions": "{}", "cached_views_count": 0,
                   "membership": {"id": self.membership_id, "workspace_id": self.workspace_id, "user_id": self.user_id,
                                  "role": "user", "cached_email": "okr-bot@acme.com"}}
        self.checkins[outcome.id].append(checkin)
        return checkin

    def _page(self, path: str, query: dict[str, list[str]], items: list[Any]) -> tuple[int, dict[str, str], Any]:
        try:
            page = max(1, int((query.get("page") or ["1"])[0]))
        except ValueError:
            return 400, {}, {"error": "page must be a number"}
        last = max(1, math.ceil(len(items) / self.per_page))
        link = lambda n, rel: f'<{self._server.url}{path}?page={n}>; rel="{rel}"'  # noqa: E731
        links = [link(1, "first"), link(last, "last")]
        if page < last:
            links.append(link(page + 1, "next"))
        if page > 1:
            links.append(link(page - 1, "prev"))
        start = (page - 1) * self.per_page
        headers = {"X-Per-Page": str(self.per_page), "X-Page": str(page), "X-Total": str(len(items)),
                   "Link": ", ".join(links)}
        return 200, headers, items[start:start + self.per_page]

    def _plan(self, p: Plan) -> dict[str, Any]:
        return {"id": p.id, "parent_id": None, "workspace_id": self.workspace_id, "nano_slug": p.nano_slug,
                "title": p.title, "plan_icon": "", "start_at": "2026-10-01T00:00:00.000Z",
                "finish_at": "2026-12-31T00:00:00.000Z", "state": "published", "archived": p.archived,
                "active": True, "expired": False, "parent": None}

    def _outcome(self, o: Outcome) -> dict[str, Any]:
        current = max(self.checkins[o.id], key=lambda c: (c["checkin_date"], c["created_at"]), default=None)
        return {"id": o.id, "workspace_id": self.workspace_id, "nano_slug": o.nano_slug, "objective_id": o.objective_id,
                "rank": "~a", "title": o.title, "description": "", "from": o.start, "to": o.end,
                "score_format": o.score_format, "is_pending_checkin": False, "archived": o.archived,
                "completed": False, "outcome_type": "improve_metric", "weight": 1, "current_checkin": current}


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.") + f"{int(epoch * 1000) % 1000:03d}Z"
