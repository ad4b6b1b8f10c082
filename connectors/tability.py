"""Publish target `tability`: each check-in becomes a check-in on the key result's Tability outcome.

    publish:
      tability: {type: tability, token: "${TABILITY_TOKEN}", workspace: acme}
    objectives:
      - id: checkout
        key_results:
          - id: checkout-nps
            publish: {tability: 4815162342}      # the outcome's id (UUID or Nano ID): NEEDS_EXTERNAL_ID

A check-in carries `score` (the value), `checkin_date` (the day it was measured, UTC), `confidence`
(on_track and done -> green, at_risk -> yellow, off_track -> red) and a `body` with the value, progress,
the link to what is behind the number, and a last line `okr-sync-id: <idempotency key>` that marks it
as okr-sync's.

Per run and outcome with pending check-ins: one read of the outcome's check-ins (all pages), then, for
each pending check-in, oldest first:

1. exactly once: a check-in carrying its idempotency key is already there, or one of okr-sync's for the
   same day with the same score: nothing is sent (a run that died after Tability took it);
2. manual values win: the outcome's newest check-in (by date, then creation) is a person's, newer than
   okr-sync's last one there: it is kept (``kept the manual value 41 in tability``) unless the key result
   says `on_manual: overwrite` (okrsync.policy.in_tool/decide); if it already shows the value, nothing;
3. else one POST.

Calls per run: 2 per key result whose value changed (one read, one write); 0 when nothing is pending.
Faults: see connectors/_tability_client.py. One outcome failing (not found, refused) fails only its key
result; a refused token, no access, or Tability down stops the batch and leaves the rest pending.
"""
from __future__ import annotations

import re
import time
from collections import defaultdict
from contextlib import contextmanager
from datetime import datetime, timezone
from typing import Any, Iterator, Literal, Sequence
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field

from connectors._answers import BadNumber, number
from connectors._tability_client import (
    API_BASE,
    CONFIDENCE,
    Checkin,
    Client,
    NotFound,
    Refused,
    TabilityError,
    TargetDown,
    checkin_body,
)
from okrsync import deadline, policy
from okrsync.publish import (
    Delivery,
    DeliveryResult,
    ImportedKeyResult,
    ImportedObjective,
    delivered,
    failed,
    kept_manual,
)
from okrsync.refs import SecretRef

TYPE = "tability"
NEEDS_EXTERNAL_ID = True
MARK = "okr-sync-id: "
_KEY = re.compile(re.escape(MARK) + r"(okr-sync-[0-9a-f]{32})")
_SLUG = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]*$")
MARGIN = 3.0                    # seconds kept before the target's deadline to hand back what was done
STATUS_WORDS = {"on_track": "on track", "at_risk": "at risk", "off_track": "off track", "done": "done"}


class TargetConfig(BaseModel):
    """A Tability workspace that receives check-ins on its outcomes."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["tability"]
    token: SecretRef = Field(description="a Personal API token (https://tability.app/account): \"${TABILITY_TOKEN}\" "
                                         "or {secret: NAME}")
    workspace: str = Field(min_length=1, description="the workspace's slug (as in https://tability.app/acme/...) or id")
    plan: str | None = Field(None, description="a plan (id, Nano ID or title): `okr-sync import` reads only it, and "
                                               "`publish --check` finds the outcomes in it with one read")
    base_url: str = Field(API_BASE, description="the API's address, for a proxy or a test double")


def check(target: TargetConfig) -> list[str]:
    """Settings that cannot work, found without the network."""
    problems = []
    if not _SLUG.match(target.workspace):
        hint = ""
        parts = [p for p in urlsplit(target.workspace).path.split("/") if p]
        if "://" in target.workspace and parts:
            hint = f" (from that address: `workspace: {parts[0]}`)"
        problems.append(f"`workspace: {target.workspace}` is not a Tability workspace slug or id: write the part of "
                        f"your Tability address after tability.app/{hint}")
    base = urlsplit(target.base_url)
    if base.scheme not in ("http", "https") or not base.netloc or base.query or base.username:
        problems.append(f"`base_url: {target.base_url}` is not an http(s) address without credentials or a query: "
                        f"leave it out to use {API_BASE}")
    return problems


def connect(target: TargetConfig) -> Client:
    return Client(target.token.reveal(), target.workspace, token_where=target.token.describe(),
                  base_url=target.base_url)

# ---------------------------------------------------------------------------- deliver


def deliver(client: Client, target: TargetConfig, deliveries: Sequence[Delivery]) -> dict[int, DeliveryResult]:
    """Every pending check-in of this target (oldest first): see the module docstring."""
    results: dict[int, DeliveryResult] = {}
    by_outcome: dict[str, list[Delivery]] = defaultdict(list)
    for d in deliveries:
        by_outcome[str(d.external_id)].append(d)
    stopped: str | None = None
    with _time_to_answer():
        for outcome, group in by_outcome.items():
            if stopped is None and (left := deadline.left()) is not None and left <= 0:
                stopped = ("the target's deadline came before this check-in's turn: it stays pending for the next "
                           "run; raise the target's `deadline:` if this repeats")
            if stopped is not None:
                results.update({d.id: failed(stopped) for d in group})
                continue
            try:
                history = client.checkins(outcome)
                for d in group:
                    try:
                        results[d.id] = _deliver_one(client, target, outcome, d, history)
                    except Refused as exc:              # this check-in alone
                        results[d.id] = failed(str(exc))
            except TargetDown as exc:
                stopped = str(exc)
                results.update({d.id: failed(stopped) for d in group if d.id not in results})
            except NotFound:
                results.update({d.id: failed(_missing(outcome, target)) for d in group})
            except TabilityError as exc:
                results.update({d.id: failed(str(exc)) for d in group if d.id not in results})
    return results


def _deliver_one(client: Client, target: TargetConfig, outcome: str, d: Delivery, history: list[Checkin]
                 ) -> DeliveryResult:
    if _taken(history, d):
        return delivered(d)
    current = _current(history, d)
    decision = policy.decide(d.value, current, d.on_manual)
    if decision == "kept_manual" and current is not None:
        return kept_manual(d, current.value)
    if decision == "unchanged":
        return delivered(d)
    day = d.observed_at.date()
    payload = checkin_body(d.value, day, CONFIDENCE.get(d.status or ""), body_text(d))
    made = client.create_checkin(outcome, payload, already_there=lambda seen: _taken(seen, d))
    created = made.created_at if made is not None and made.created_at is not None else datetime.now(timezone.utc)
    history.append(Checkin(id=made.id if made is not None else f"new:{d.idempotency_key}", day=day, score=d.value,
                           body=payload["checkin"]["body"], created_at=created))    # the next check-in's "newest"
    return delivered(d)


def key_of(checkin: Checkin) -> str | None:
    """The idempotency key okr-sync wrote into a check-in's body, or None (a person's check-in)."""
    found = _KEY.search(checkin.body)
    return found.group(1) if found else None


def _taken(history: list[Checkin], d: Delivery) -> bool:
    """Whether this check-in is there already: its key, or one of okr-sync's that day with the same score."""
    day = d.observed_at.date()
    for c in history:
        key = key_of(c)
        if key == d.idempotency_key:
            return True
        if key is not None and c.day == day and c.score is not None and policy.same_value(c.score, d.value):
            return True
    return False


def _current(history: list[Checkin], d: Delivery) -> policy.Current | None:
    """What the outcome shows now, and whether a person put it there (okrsync.policy.in_tool)."""
    if not history:
        return None
    newest = max(history, key=lambda c: c.order)
    if newest.score is None:
        return None
    if key_of(newest) is not None:
        return policy.Current(newest.score, manual=False)
    ours = [c for c in history if key_of(c) is not None]
    last = max(ours, key=lambda c: c.order) if ours else None
    return policy.in_tool(newest.score, newest.created_at,
                          last_sent_value=last.score if last is not None else d.last_sent_value,
                          last_sent_at=last.created_at if last is not None else d.last_sent_at,
                          observed_at=d.observed_at)


def body_text(d: Delivery) -> str:
    """A check-in's text as people read it in Tability; its last line marks it as okr-sync's."""
    unit = f" {d.unit}" if d.unit and d.unit != "%" else (d.unit or "")
    line = f"{d.value:g}{unit}"
    if d.progress is not None:
        line += f": {d.progress:.0%} of the way from {d.baseline:g} to {d.target_value:g}"
        if d.expected is not None:
            line += f" (expected {d.expected:.0%})"
    if d.status:
        line += f", {STATUS_WORDS.get(d.status, d.status)}"
    lines = [line]
    if d.link:
        lines.append(f"Behind the number: {d.link}")
    if d.note:
        lines.append(d.note)
    origin = "a manual check-in in okr-sync" if d.kind == "manual" else "okr-sync"
    lines.append(f"Written by {origin} ({MARK}{d.idempotency_key})")
    return "\n".join(lines)


def _missing(outcome: str, target: TargetConfig) -> str:
    return (f"Tability has no outcome {outcome} in workspace `{target.workspace}` (HTTP 404): check the key result's "
            "`publish:` id (the outcome's UUID or Nano ID, from its address in Tability) and the target's `workspace:`")


@contextmanager
def _time_to_answer() -> Iterator[None]:
    """Run under a deadline a little before the target's, so what was delivered is handed back in time."""
    left = deadline.left()
    if left is None:
        yield
        return
    with deadline.until(time.monotonic() + max(0.0, left - min(MARGIN, left * 0.1))):
        yield

# ---------------------------------------------------------------------------- probe and import


def probe(client: Client, target: TargetConfig, key_results: Sequence[tuple[str, str | None]]) -> list[str]:
    """`okr-sync publish --check`: the token, the workspace, and every mapped outcome (one line per problem)."""
    problems: list[str] = []
    try:
        client.whoami()
        client.plans(pages=1)          # the workspace exists and the user may use its API
    except TabilityError as exc:
        return [str(exc) if not isinstance(exc, NotFound) else
                f"Tability has no workspace `{target.workspace}` (HTTP 404): write its slug (from your Tability "
                "address) or id as `workspace:`"]
    known: set[str] | None = None
    if target.plan:
        try:
            plan = _find_plan(client, target.plan)
            known = {str(o.get(k)) for o in client.plan_outcomes(str(plan["id"])) for k in ("id", "nano_slug")}
        except TabilityError as exc:
            return [str(exc)]
    for kr_id, outcome in key_results:
        if outcome is None:
            problems.append(f"{kr_id}: has no Tability outcome id: add `publish: {{<target name>: <outcome id>}}` to it, "
                            "or `publish: false`")
            continue
        if known is not None:
            if outcome not in known:
                problems.append(f"{kr_id}: plan `{target.plan}` has no outcome {outcome}: check the key result's "
                                "`publish:` id")
            continue
        try:
            client.checkins(outcome)
        except NotFound:
            problems.append(f"{kr_id}: {_missing(outcome, target)}")
        except TabilityError as exc:
            problems.append(f"{kr_id}: {exc}")
            if isinstance(exc, TargetDown):
                break
    return problems


def import_okrs(client: Client, target: TargetConfig) -> list[ImportedObjective]:
    """Plans become objectives and their outcomes key results (id, title, from -> baseline, to -> target)."""
    plans = [_find_plan(client, target.plan)] if target.plan else [p for p in client.plans() if not p.get("archived")]
    objectives = []
    for plan in plans:
        krs = []
        for o in client.plan_outcomes(str(plan.get("id"))):
            if o.get("archived"):
                continue
            external = o.get("nano_slug") or o.get("id")
            title = str(o.get("title") or external)
            krs.append(ImportedKeyResult(id=title, title=title, external_id=str(external),
                                         baseline=_number(o.get("from")), target=_number(o.get("to")),
                                         unit="%" if "%" in str(o.get("score_format") or "") else None))
        title = str(plan.get("title") or plan.get("nano_slug") or plan.get("id"))
        objectives.append(ImportedObjective(id=title, title=title, key_results=krs))
    return objectives


def _find_plan(client: Client, wanted: str) -> dict[str, Any]:
    plans = client.plans()
    for p in plans:
        if wanted in (str(p.get("id")), str(p.get("nano_slug")), str(p.get("title"))):
            return p
    names = ", ".join(str(p.get("title")) for p in plans[:8]) or "none"
    raise TabilityError(f"workspace has no plan `{wanted}` (by id, Nano ID or title): its plans are {names}")


def _number(value: Any) -> float | None:
    try:
        return number(value)
    except BadNumber:
        return None


__all__ = ["TYPE", "NEEDS_EXTERNAL_ID", "TargetConfig", "check", "connect", "deliver", "probe", "import_okrs",
           "body_text", "key_of", "MARK"]
