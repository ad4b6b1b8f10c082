"""Publish targets: the OKR tools that receive check-ins besides the store, and their contract.

The store stays the record of history. Each check-in to publish is queued per target in the same
transaction that writes it (the store's outbox), delivered after the write, and retried by later runs
until the target takes it. A publish-target connector (a module or any object; entry-point group
`okr_sync.targets`) provides:

    TYPE: str                                   the `type:` of a target under `publish:`, e.g. "notion"
    TargetConfig: type[pydantic.BaseModel]      the target's settings (`type: Literal[TYPE]`); secrets as
                                                SecretRef (`${ENV}` or `{secret: NAME}`), read in connect
    NEEDS_EXTERNAL_ID: bool                     True when each key result must say its id in the tool
                                                (`publish: {okr-jira: OKR-12}`); False when the target
                                                finds rows itself (Notion and the sheet match "KR id")
    check(target) -> list[str]                  problems visible without the network
    connect(target) -> client                   a client for one run: secrets read now; it has `calls`
                                                (requests sent so far) and `close()`
    deliver(client, target, deliveries) -> {delivery id: DeliveryResult}
                                                every pending check-in of this target in one batch,
                                                oldest first; before writing a value, read the tool's and
                                                keep a newer manual one (okrsync.policy.in_tool/decide)
    probe(client, target, key_results) -> list[str]
                                                `okr-sync publish --check`: access, and that every
                                                mapped key result exists in the tool; one line per problem
    import_okrs(client, target) -> list[ImportedObjective]   (optional) `okr-sync import TYPE`

`deliver_batch` does the rest once, for every target: the client is opened and closed, a connector
that raises fails only its own batch (every delivery stays pending, to be retried), every delivery gets
exactly one result, and every message passes the secret scrubber.
"""
from __future__ import annotations

import hashlib
import logging
import traceback
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any, Callable, Literal, Mapping, Protocol, Sequence, TypeVar

from pydantic import BaseModel

from okrsync.errors import OkrSyncError
from okrsync.redact import scrub

logger = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "okr_sync.targets"
T = TypeVar("T")


class PublishError(OkrSyncError):
    """A target could not take a batch (access, the tool down): every delivery of it stays pending."""


@dataclass(frozen=True)
class Delivery:
    """One check-in to deliver to one target (a row of the store's outbox, with what a tool shows)."""

    id: int                              # the outbox row
    target: str                          # the target's name under `publish:`
    kr_id: str
    external_id: str | None              # the key result's id in the tool (`publish: {target: id}`)
    idempotency_key: str                 # the same for every attempt of this delivery
    value: float
    progress: float | None
    expected: float | None
    status: str | None                   # on_track | at_risk | off_track | done
    observed_at: datetime
    kind: str                            # automatic | manual | backfill
    title: str
    objective_id: str
    objective_title: str
    baseline: float
    target_value: float
    unit: str | None = None
    period_start: date | None = None
    period_end: date | None = None
    on_manual: str = "keep"
    link: str | None = None              # the tickets or cells behind the number
    note: str | None = None
    run_id: str | None = None
    last_sent_value: float | None = None  # what okr-sync last wrote to this tool for this key result
    last_sent_at: datetime | None = None
    attempts: int = 0                    # earlier attempts that failed


Outcome = Literal["delivered", "kept_manual", "failed"]


@dataclass(frozen=True)
class DeliveryResult:
    outcome: Outcome
    message: str | None = None           # failed: why, and the fix; kept_manual: what was kept
    sent_value: float | None = None      # delivered: the value written to the tool
    tool_value: float | None = None      # kept_manual: the manual value found there


def delivered(delivery: Delivery) -> DeliveryResult:
    return DeliveryResult("delivered", sent_value=delivery.value)


def kept_manual(delivery: Delivery, tool_value: float) -> DeliveryResult:
    return DeliveryResult("kept_manual", f"kept the manual value {tool_value:g} in {delivery.target}",
                          tool_value=tool_value)


def failed(message: str) -> DeliveryResult:
    return DeliveryResult("failed", message)


def idempotency_key(target: str, kr_id: str, observed_at: datetime, value: float) -> str:
    """A key for one check-in delivered to one target, stable across attempts and runs (and across
    two stores measuring the same thing at the same moment: no store-local id goes in)."""
    raw = f"{target}\0{kr_id}\0{observed_at.isoformat()}\0{value!r}"
    return "okr-sync-" + hashlib.sha256(raw.encode()).hexdigest()[:32]


@dataclass(frozen=True)
class ImportedKeyResult:
    id: str
    title: str
    external_id: str | None = None
    baseline: float | None = None
    target: float | None = None
    unit: str | None = None


@dataclass(frozen=True)
class ImportedObjective:
    id: str
    title: str
    owner: str | None = None
    key_results: list[ImportedKeyResult] = field(default_factory=list)


class TargetConnector(Protocol):
    TYPE: str
    TargetConfig: type[BaseModel]
    NEEDS_EXTERNAL_ID: bool

    def check(self, target: Any) -> list[str]: ...

    def connect(self, target: Any) -> Any: ...

    def deliver(self, client: Any, target: Any, deliveries: Sequence[Delivery]) -> Mapping[int, DeliveryResult]: ...

    def probe(self, client: Any, target: Any, key_results: Sequence[tuple[str, str | None]]) -> list[str]: ...


REQUIRED = ("TYPE", "TargetConfig", "NEEDS_EXTERNAL_ID", "check", "connect", "deliver", "probe")


def contract_problems(connector: Any) -> list[str]:
    """What a target connector lacks to meet the contract ([] when it conforms)."""
    problems = [f"has no `{name}`" for name in REQUIRED if not hasattr(connector, name)]
    if problems:
        return problems
    if not isinstance(connector.TYPE, str) or not connector.TYPE:
        problems.append("`TYPE` must be a non-empty string")
    if not (isinstance(connector.TargetConfig, type) and issubclass(connector.TargetConfig, BaseModel)):
        problems.append("`TargetConfig` must be a pydantic model class")
    for name in ("check", "connect", "deliver", "probe"):
        if not callable(getattr(connector, name)):
            problems.append(f"`{name}` must be callable")
    return problems


@dataclass
class BatchResult:
    results: dict[int, DeliveryResult]
    calls: int = 0


def _with_client(connector: Any, target: Any, work: Callable[[Any], T]) -> tuple[T | str, int]:
    """`work(client)` on a client of the target opened for it and closed after: its result, or the one-line
    reason it failed (a connector bug fails only this target), and the calls the client spent."""
    client = None
    calls = 0
    outcome: T | str
    try:
        client = connector.connect(target)
        outcome = work(client)
    except OkrSyncError as exc:
        outcome = str(exc)
    except Exception as exc:  # noqa: BLE001 - a connector bug fails its batch, never the run
        logger.debug("the %s target raised:\n%s", connector.TYPE, traceback.format_exc())
        outcome = (f"the {connector.TYPE} target failed unexpectedly ({exc.__class__.__name__}); "
                   "run with --verbose for details")
    finally:
        if client is not None:
            calls = int(getattr(client, "calls", 0) or 0)
            try:
                client.close()
            except Exception:  # noqa: BLE001 - closing must not lose the outcome
                logger.debug("closing the %s client failed", connector.TYPE, exc_info=True)
    return outcome, calls


def deliver_batch(connector: Any, target: Any, deliveries: Sequence[Delivery]) -> BatchResult:
    """Deliver one target's pending check-ins through its connector: one result per delivery."""
    got, calls = _with_client(connector, target, lambda client: dict(connector.deliver(client, target, list(deliveries))))
    results = {d.id: failed(got) for d in deliveries} if isinstance(got, str) else got
    out: dict[int, DeliveryResult] = {}
    for d in deliveries:
        one = results.get(d.id)
        if not isinstance(one, DeliveryResult):
            one = failed("the target returned no result for this check-in")
        if one.message:
            one = DeliveryResult(one.outcome, scrub(one.message), one.sent_value, one.tool_value)
        out[d.id] = one
    return BatchResult(out, calls)


def probe_target(connector: Any, target: Any, key_results: Sequence[tuple[str, str | None]]) -> tuple[list[str], int]:
    """`okr-sync publish --check` for one target: its problems (scrubbed) and the calls spent."""
    problems = list(connector.check(target))
    if problems:
        return [scrub(p) for p in problems], 0
    got, calls = _with_client(connector, target, lambda client: list(connector.probe(client, target, list(key_results))))
    return [scrub(p) for p in ([got] if isinstance(got, str) else got)], calls


__all__ = ["ENTRY_POINT_GROUP", "PublishError", "Delivery", "DeliveryResult", "BatchResult", "delivered",
           "kept_manual", "failed", "idempotency_key", "ImportedKeyResult", "ImportedObjective",
           "TargetConnector", "contract_problems", "deliver_batch", "probe_target"]
