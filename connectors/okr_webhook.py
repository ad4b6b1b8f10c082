"""Publish target `webhook`: a run's pending check-ins as signed JSON documents POSTed to a URL (Zapier,
Make, n8n, or your own service). The alert poster is connectors/webhook.py; this one is for OKR data.

    publish:
      okr-hook: {type: webhook, url: "${OKR_HOOK_URL}", secret: "${OKR_HOOK_SECRET}"}
      # max_checkins: 500          # at most this many check-ins in one document (1..5000)
      # timeout: 15                # seconds to wait for the receiver's answer

One document per run holds the pending check-ins, oldest first (`PAYLOAD_SCHEMA`: one object per check-in
with its idempotency key); a run with more than `max_checkins` sends several documents, one after the
other, and stops at the first one that fails (the rest stay pending). Nothing pending: no call.

Each POST carries:
    X-OKR-Sync-Signature: sha256=<hex HMAC-SHA256 of the exact body bytes, keyed with the secret>
    Idempotency-Key: <the document's id>    the same check-ins resent make the same id
The signature covers the body only (as GitHub signs its webhooks), so any HMAC step can check it; the
body holds `sent_at`, so the signed content has its time in it: receivers reject old documents (replays).

Retries (connectors/_http.py): 429 (after its Retry-After), 500, 502, 503, 504, refused or dropped
connections are retried within the run with the same bytes and Idempotency-Key. A read timeout is not:
the receiver may have the document and be slow; the check-ins stay pending and the next run sends them
again, with the same idempotency keys, for the receiver to dedupe. So a receiver gets every check-in at
least once and must dedupe by `idempotency_key` (or the document `id`). There is no "value in the tool"
to read: every document taken counts as delivered.

The URL and the secret are secrets: both are registered with the scrubber when read, and messages name
where they come from ("environment variable OKR_HOOK_URL"), never their value.
"""
from __future__ import annotations

import hashlib
import hmac
import json
import time
from datetime import datetime, timezone
from typing import Any, Literal, Sequence
from urllib.parse import urlsplit

import requests
from pydantic import BaseModel, ConfigDict, Field

from connectors import _http
from okrsync import deadline
from okrsync.publish import Delivery, DeliveryResult, PublishError, delivered, failed
from okrsync.redact import register, server_text
from okrsync.refs import SecretRef

TYPE = "webhook"
NEEDS_EXTERNAL_ID = False
SIGNATURE_HEADER = "X-OKR-Sync-Signature"
IDEMPOTENCY_HEADER = "Idempotency-Key"
DOCUMENT_TYPE = "okr-sync.checkins"
PING_TYPE = "okr-sync.ping"
VERSION = 1
CONNECT_TIMEOUT = 5.0
MIN_SECRET = 16                     # characters: a signing secret shorter than this is guessable
POLICY = _http.DEFAULT
USER_AGENT = "okr-sync (webhook publish target)"


class TargetConfig(BaseModel):
    """An HTTP(S) endpoint that receives check-ins as signed JSON documents."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["webhook"]
    url: SecretRef = Field(description="the receiver's URL (a secret: whoever has it can post): \"${OKR_HOOK_URL}\"")
    secret: SecretRef = Field(description=f"the signing secret, at least {MIN_SECRET} characters: \"${{OKR_HOOK_SECRET}}\"")
    max_checkins: int = Field(500, ge=1, le=5000, description="at most this many check-ins in one document")
    timeout: float = Field(15.0, gt=0, le=120, description="seconds to wait for the receiver's answer")


def check(target: TargetConfig) -> list[str]:
    return []                       # both settings are secrets, read (and checked) when a run connects

# ---------------------------------------------------------------------------- the document


PAYLOAD_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "okr-sync webhook document, version 1",
    "type": "object",
    "required": ["id", "type", "version", "target", "sent_at", "part", "parts", "checkins"],
    "additionalProperties": False,
    "properties": {
        "id": {"type": "string", "pattern": "^okr-sync-(doc|ping)-[0-9a-f]{32}$",
               "description": "the document's id, also the Idempotency-Key header; the same check-ins make the same id"},
        "type": {"enum": [DOCUMENT_TYPE, PING_TYPE],
                 "description": "okr-sync.ping (no check-ins) is sent by `okr-sync publish --check` only"},
        "version": {"const": VERSION},
        "target": {"type": "string", "description": "the target's name under `publish:` (`check` in a ping)"},
        "sent_at": {"type": "string", "format": "date-time", "description": "when this document was sent (UTC)"},
        "part": {"type": "integer", "minimum": 1, "description": "this document's number among the run's documents"},
        "parts": {"type": "integer", "minimum": 1, "description": "how many documents the run sends"},
        "checkins": {"type": "array", "items": {"$ref": "#/$defs/checkin"}},
    },
    "$defs": {
        "checkin": {
            "type": "object",
            "required": ["idempotency_key", "kr_id", "title", "objective", "value", "baseline", "target", "unit",
                         "progress", "expected", "status", "observed_at", "kind", "link", "note", "period"],
            "additionalProperties": False,
            "properties": {
                "idempotency_key": {"type": "string", "pattern": "^okr-sync-[0-9a-f]{32}$",
                                    "description": "the same for every delivery of this check-in: dedupe on it"},
                "kr_id": {"type": "string"},
                "title": {"type": "string"},
                "objective": {"type": "object", "required": ["id", "title"], "additionalProperties": False,
                              "properties": {"id": {"type": "string"}, "title": {"type": "string"}}},
                "value": {"type": "number"},
                "baseline": {"type": "number"},
                "target": {"type": "number"},
                "unit": {"type": ["string", "null"]},
                "progress": {"type": ["number", "null"], "description": "(value - baseline) / (target - baseline)"},
                "expected": {"type": ["number", "null"], "description": "the share of the period elapsed"},
                "status": {"enum": ["on_track", "at_risk", "off_track", "done", None]},
                "observed_at": {"type": "string", "format": "date-time"},
                "kind": {"enum": ["automatic", "manual", "backfill"]},
                "link": {"type": ["string", "null"], "description": "what is behind the number (tickets, cells)"},
                "note": {"type": ["string", "null"]},
                "period": {"type": "object", "required": ["start", "end"], "additionalProperties": False,
                           "properties": {"start": {"type": ["string", "null"], "format": "date"},
                                          "end": {"type": ["string", "null"], "format": "date"}}},
            },
        },
    },
}


def _utc(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


def checkin(d: Delivery) -> dict[str, Any]:
    """One check-in as the document carries it."""
    return {"idempotency_key": d.idempotency_key, "kr_id": d.kr_id, "title": d.title,
            "objective": {"id": d.objective_id, "title": d.objective_title}, "value": d.value,
            "baseline": d.baseline, "target": d.target_value, "unit": d.unit, "progress": d.progress,
            "expected": d.expected, "status": d.status, "observed_at": _utc(d.observed_at), "kind": d.kind,
            "link": d.link, "note": d.note,
            "period": {"start": d.period_start.isoformat() if d.period_start else None,
                       "end": d.period_end.isoformat() if d.period_end else None}}


def document(target: str, deliveries: Sequence[Delivery], part: int = 1, parts: int = 1,
             sent_at: datetime | None = None, kind: str = DOCUMENT_TYPE) -> dict[str, Any]:
    """The JSON document for these check-ins; its id depends only on their idempotency keys (and the target)."""
    keys = "\0".join([target, *(d.idempotency_key for d in deliveries)])
    if kind == PING_TYPE:
        keys += f"\0{time.time_ns()}"
    digest = hashlib.sha256(keys.encode()).hexdigest()[:32]
    prefix = "okr-sync-ping-" if kind == PING_TYPE else "okr-sync-doc-"
    return {"id": prefix + digest, "type": kind, "version": VERSION, "target": target,
            "sent_at": _utc(sent_at or datetime.now(timezone.utc)), "part": part, "parts": parts,
            "checkins": [checkin(d) for d in deliveries]}


def encode(doc: dict[str, Any]) -> bytes:
    """The exact bytes sent (and signed): compact UTF-8 JSON."""
    return json.dumps(doc, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode("utf-8")


def sign(secret: str, body: bytes) -> str:
    """The X-OKR-Sync-Signature value: sha256=<hex HMAC-SHA256 of the body, keyed with the secret>."""
    return "sha256=" + hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()

# ---------------------------------------------------------------------------- posting


class Client:
    """One run's poster to the receiver. `calls`: POSTs sent."""

    def __init__(self, url: str, secret: str, *, where: str, timeout: float):
        self._url, self._secret, self.where, self.timeout = url, secret, where, timeout
        self.calls = 0
        self._session = _http.bound(requests.Session())      # no retries of requests' own; sockets end by the deadline

    def close(self) -> None:
        self._session.close()

    def post(self, doc: dict[str, Any]) -> None:
        """POST one document (retried as the module docstring says); PublishError when it was not taken."""
        body = encode(doc)
        headers = {"Content-Type": "application/json; charset=utf-8", "User-Agent": USER_AGENT,
                   SIGNATURE_HEADER: sign(self._secret, body), IDEMPOTENCY_HEADER: doc["id"]}
        where = self.where

        def attempt() -> None:
            self.calls += 1
            try:
                response = self._session.post(self._url, data=body, headers=headers,
                                              timeout=(CONNECT_TIMEOUT, self.timeout))
            except requests.ReadTimeout:
                raise PublishError(f"the webhook in {where} did not answer within {self.timeout:g} s; not sent again in "
                                   "this run (it may have arrived): the check-ins stay pending and the next run sends "
                                   "them with the same idempotency keys") from None
            if 200 <= response.status_code < 300:
                return
            if _http.retriable_status(response.status_code):
                raise _http.StatusError(response)
            raise PublishError(_refused(response, where))

        try:
            _http.call(attempt, service="webhook target", path=f"the URL in {where}", policy=POLICY)
        except _http.GaveUp as ended:
            what = _fault(ended.error)
            if ended.asked_too_long:
                raise PublishError(f"the webhook in {where} asked to wait {ended.fault.asked:g} s ({what}): the "
                                   f"check-ins stay pending, {ended.run_again()}") from None
            raise PublishError(f"the webhook in {where} failed {ended.tries} times ({what}): the check-ins stay pending "
                               "for the next run") from None
        except requests.RequestException as exc:           # not worth retrying: refused, no such host, TLS
            why = _http.connection_reason(exc) if isinstance(exc, requests.ConnectionError) else exc.__class__.__name__
            raise PublishError(f"the webhook in {where} could not be called ({why}): check the URL in {where}; the "
                               "check-ins stay pending") from None


def _refused(response: requests.Response, where: str) -> str:
    said = server_text(response.text, 80) if response.text.strip() else ""
    said = f" ({said})" if said else ""
    status = response.status_code
    if status in (401, 403):
        fix = f"the receiver refused the document: check that it verifies with the secret okr-sync signs with, and the URL in {where}"
    elif status in (404, 410):
        fix = f"nothing receives at that address any more: update the URL in {where}"
    else:
        fix = f"check the receiver, and the URL in {where}"
    return f"the webhook in {where} answered HTTP {status}{said}: {fix}; the check-ins stay pending"


def _fault(exc: BaseException) -> str:
    if isinstance(exc, _http.StatusError):
        return f"HTTP {exc.status}"
    if isinstance(exc, requests.Timeout):
        return "no connection in time"
    if isinstance(exc, requests.ConnectionError):
        return _http.connection_reason(exc)
    return exc.__class__.__name__


def connect(target: TargetConfig) -> Client:
    """Read the URL and the secret (both registered with the scrubber) and check them."""
    where = target.url.describe()
    url = target.url.reveal().get_secret_value().strip()
    parts = urlsplit(url)
    for secret in (url, parts.path + (f"?{parts.query}" if parts.query else ""), parts.path):
        if len(secret) > 1:
            register(secret)                 # urllib3 logs the path; a path can be the key (Zapier's is)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise PublishError(f"the webhook URL in {where} is not an http(s) URL: put the receiver's full https://... "
                           "address there")
    key = target.secret.reveal().get_secret_value()
    if len(key) < MIN_SECRET:
        raise PublishError(f"the webhook secret in {target.secret.describe()} is shorter than {MIN_SECRET} characters: "
                           "use a long random one, e.g. the output of `openssl rand -hex 32`")
    return Client(url, key, where=where, timeout=target.timeout)

# ---------------------------------------------------------------------------- the contract


def deliver(client: Client, target: TargetConfig, deliveries: Sequence[Delivery]) -> dict[int, DeliveryResult]:
    """Every pending check-in, `max_checkins` to a document, oldest first; the first failing document stops the run's."""
    results: dict[int, DeliveryResult] = {}
    size = target.max_checkins
    chunks = [list(deliveries[i:i + size]) for i in range(0, len(deliveries), size)]
    stopped: str | None = None
    for part, chunk in enumerate(chunks, 1):
        if stopped is None and (left := deadline.left()) is not None and left <= 0:
            stopped = "the target's deadline came before this document's turn: it stays pending for the next run"
        if stopped is not None:
            results.update({d.id: failed(stopped) for d in chunk})
            continue
        try:
            client.post(document(chunk[0].target, chunk, part, len(chunks)))
        except PublishError as exc:
            stopped = str(exc) if part == 1 else f"{exc} (documents 1 to {part - 1} of {len(chunks)} were taken)"
            results.update({d.id: failed(stopped) for d in chunk})
            continue
        results.update({d.id: delivered(d) for d in chunk})
    return results


def probe(client: Client, target: TargetConfig, key_results: Sequence[tuple[str, str | None]]) -> list[str]:
    """`okr-sync publish --check`: POST one signed ping document (type okr-sync.ping, no check-ins)."""
    try:
        client.post(document("check", [], kind=PING_TYPE))
    except PublishError as exc:
        return [str(exc)]
    return []


__all__ = ["TYPE", "NEEDS_EXTERNAL_ID", "TargetConfig", "PAYLOAD_SCHEMA", "SIGNATURE_HEADER", "IDEMPOTENCY_HEADER",
           "check", "connect", "deliver", "probe", "document", "encode", "sign", "checkin"]
