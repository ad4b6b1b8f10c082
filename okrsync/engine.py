"""The sync engine: one sync of a Plan, in plain Python.

    plan -> one batch per source -> measure the batches on a bounded executor -> assess
         -> write the check-ins (one store transaction) -> alerts -> the report (`report:`) -> run summary

The caller decides how batches run (an Executor): `LocalExecutor` (threads) for the CLI's
in-process runs; the Prefect flow `sync-okrs` passes one that makes each batch a Prefect task.
Everything the engine needs from the layers above comes in through `Services` (the connector
registry, the store, the alert webhook), so the core imports neither `connectors` nor `flows`.
Progress is reported through `Services.on_progress` (key results done), never a global.
"""
from __future__ import annotations

import contextvars
import logging
import os
import re
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field, replace
from datetime import date, datetime, time as dtime, timezone
from typing import Any, Callable, Iterator, Protocol, Sequence, TypeVar

from okrsync import deadline, delivery
from okrsync.config import Plan, PlannedKeyResult, PlannedSource, render_metric
from okrsync.contract import READS_THE_PRESENT, Outcome, reads_past, run_batch, with_message
from okrsync.errors import ConfigError, ConfigIssue, OkrSyncError, SourceError
from okrsync.forecast import as_json as forecast_json
from okrsync.forecast import earliest_start, forecast
from okrsync.measure import Measurement, MetricRequest
from okrsync.records import KeyResultRecord
from okrsync.redact import scrub, scrub_data
from okrsync.registry import ConnectorUnusable, Registry
from okrsync.results import apply_report, assess_all, checkins, summary

logger = logging.getLogger(__name__)

T = TypeVar("T")
WORKERS_ENV = "OKR_SYNC_MAX_WORKERS"
DEFAULT_WORKERS = 4
MAX_WORKERS_ALLOWED = 32


def max_workers() -> int:
    """Sources measured at once: $OKR_SYNC_MAX_WORKERS (1..32), default 4."""
    raw = os.environ.get(WORKERS_ENV, "").strip()
    if not raw:
        return DEFAULT_WORKERS
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if not 1 <= value <= MAX_WORKERS_ALLOWED:
        raise ConfigError([ConfigIssue(f"${WORKERS_ENV}", None, None,
                                       f"{WORKERS_ENV}={raw!r} must be a whole number from 1 to {MAX_WORKERS_ALLOWED} "
                                       f"(sources measured at once; default {DEFAULT_WORKERS}): fix or unset it")])
    return value


@dataclass(frozen=True)
class RunOptions:
    dry_run: bool = False
    only: Sequence[str] | None = None       # key result ids (default: all)
    as_of: date | datetime | None = None    # default: now
    run_id: str | None = None               # default: a new one
    deadline: float | None = None           # seconds for the whole run's measuring (each source has its own too)
    take_over: bool = False                 # move key results another config file defines differently to this one


@dataclass(frozen=True)
class SourceBatch:
    """Every key result of one source in one run (from every config file that defines it)."""

    source: PlannedSource
    requests: list[MetricRequest]
    labels: dict[str, str] = field(default_factory=dict)   # kr_id -> the source as its file names it

    def label(self, kr_id: str) -> str:
        return self.labels.get(kr_id, self.source.key)


class Executor(Protocol):
    """How the engine's work is run: `measure_all` yields each batch with its outcomes as it
    finishes; `step` runs one named step (write, alerts)."""

    def measure_all(self, batches: list[SourceBatch],
                    measure: Callable[[SourceBatch], dict[str, Outcome]]) -> Iterator[tuple[SourceBatch, dict[str, Outcome]]]: ...

    def step(self, name: str, fn: Callable[[], T]) -> T: ...


class LocalExecutor:
    """Batches on a bounded thread pool; steps inline."""

    def __init__(self, workers: int | None = None):
        self.workers = workers or max_workers()

    def measure_all(self, batches, measure):
        if not batches:
            return
        with ThreadPoolExecutor(max_workers=min(self.workers, len(batches)), thread_name_prefix="okr-sync") as pool:
            futures = {pool.submit(measure, batch): batch for batch in batches}
            for future in as_completed(futures):
                yield futures[future], future.result()

    def step(self, name: str, fn: Callable[[], T]) -> T:
        return fn()


@dataclass
class Services:
    """What the layers above give the engine."""

    registry: Registry
    open_store: Callable[[str], Any]                           # url -> an OKR store (connectors.sql_store)
    post_webhook: Callable[..., int] | None = None             # (url: SecretStr, payload, where=) -> calls
    executor: Executor = field(default_factory=LocalExecutor)
    on_progress: Callable[[int], None] | None = None           # n more key results done
    targets: Registry | None = None                            # publish-target connectors (okrsync.publish)
    flow_run: tuple[str, str | None] | None = None             # (Prefect flow-run id, its URL) when run as one

    def progress(self, n: int) -> None:
        if self.on_progress is not None and n:
            self.on_progress(n)


def now() -> datetime:
    """The current time (UTC) as the engine sees it: a run's start, and "today" for telling a past
    date. The one hook for a test that runs the engine at a given moment (monkeypatch it)."""
    return datetime.now(timezone.utc)


def as_of_moment(as_of: date | datetime | None, current: datetime | None = None) -> datetime:
    """The moment measured: now, a given time (UTC if naive), or the end of a given day (UTC)."""
    if as_of is None:
        return current or now()
    if isinstance(as_of, datetime):
        return as_of if as_of.tzinfo else as_of.replace(tzinfo=timezone.utc)
    return datetime.combine(as_of, dtime.max, tzinfo=timezone.utc)


def selected(plan: Plan, only: Sequence[str] | None) -> list[PlannedKeyResult]:
    """The plan's key results, or those named by `only` (ConfigError naming unknown ids)."""
    if not only:
        return list(plan.key_results)
    wanted = set(only)
    unknown = sorted(wanted - {kr.id for kr in plan.key_results})
    if unknown:
        known = ", ".join(kr.id for kr in plan.key_results)
        raise ConfigError([ConfigIssue(", ".join(plan.files), None, u,
                                       f"no key result has this id (check --only; known: {known})") for u in unknown])
    return [kr for kr in plan.key_results if kr.id in wanted]


def is_past(moment: datetime, current: datetime | None = None) -> bool:
    """Whether `moment` falls on a day before today (UTC): measuring then needs a metric that can
    look back (okrsync.contract.reads_past)."""
    return moment.date() < (current or now()).date()


def looks_back(registry: Registry, kr: PlannedKeyResult) -> bool:
    """Whether the key result's metric can be measured as of a past date; True when its connector
    cannot be loaded (measuring says why)."""
    try:
        connector = registry.get(kr.source_type)
    except (KeyError, ConnectorUnusable):
        return True
    return reads_past(connector, kr.metric)


def batches_for(plan: Plan, krs: list[PlannedKeyResult], as_of: date,
                refuse: Callable[[PlannedKeyResult], str | None] | None = None
                ) -> tuple[list[SourceBatch], dict[str, str]]:
    """One batch per source, its metrics' placeholders filled in; an error per metric that cannot be,
    or that `refuse` gives a reason not to measure."""
    requests: dict[str, list[MetricRequest]] = {}
    labels: dict[str, dict[str, str]] = {}
    errors: dict[str, str] = {}
    for kr in krs:
        reason = refuse(kr) if refuse is not None else None
        if reason is not None:
            errors[kr.id] = reason
            continue
        try:
            metric = render_metric(kr.metric, kr.period, as_of)
        except ValueError as exc:
            errors[kr.id] = f"metric is invalid once its placeholders are filled in: {exc}".splitlines()[0]
            continue
        requests.setdefault(kr.source_key, []).append(
            MetricRequest(kr_id=kr.id, metric=metric, period=kr.period, as_of=as_of))
        labels.setdefault(kr.source_key, {})[kr.id] = kr.source_label or kr.source_key
    return [SourceBatch(plan.sources[key], reqs, labels[key]) for key, reqs in requests.items()], errors


def measure_batch(registry: Registry, batch: SourceBatch, ends_at: float | None = None) -> dict[str, Outcome]:
    """One source's batch through its connector, within the source's deadline (and the run's, a
    `time.monotonic()` moment); logs one line for the source."""
    started = time.perf_counter()
    source = batch.source
    try:
        connector = registry.get(source.type)
    except (KeyError, ConnectorUnusable) as exc:
        error = SourceError(str(exc) if isinstance(exc, ConnectorUnusable)
                            else f"no connector is installed for source type `{source.type}`")
        return {r.kr_id: error for r in batch.requests}
    seconds = source.deadline if ends_at is None else max(0.0, min(source.deadline, ends_at - time.monotonic()))
    answered = within_deadline(lambda: run_batch(connector, source.config, batch.requests), seconds,
                               f"source {source.key}")
    if answered is None:
        which = "the run's --deadline" if ends_at is not None and seconds < source.deadline else f"`deadline:` ({source.deadline:g} s)"
        errors: dict[str, SourceError] = {}     # one per name the files give the source
        for label in {batch.label(r.kr_id) for r in batch.requests}:
            errors[label] = SourceError(f"deadline of {seconds:g} s passed while measuring source `{label}` (its server "
                                        f"answers too slowly or not at all): check the server, or raise {which}")
        answered = {r.kr_id: errors[batch.label(r.kr_id)] for r in batch.requests}
    outcomes = {kr_id: _scrubbed(outcome) for kr_id, outcome in answered.items()}
    failed = sum(1 for v in outcomes.values() if not isinstance(v, Measurement))
    calls = sum(getattr(v, "calls", 0) or 0 for v in outcomes.values())
    logger.info("source %s: %d key results, %d failed, %d calls, %.2f s", source.key, len(batch.requests),
                failed, calls, time.perf_counter() - started)
    return outcomes


def within_deadline(work: Callable[[], T], seconds: float, name: str) -> T | None:
    """`work()`'s result, or None if it has not finished within `seconds`.

    It runs in a daemon thread (with the caller's context, so Prefect's run context and logging
    follow): a server that drips its answer a byte at a time, which no socket timeout catches, is
    left behind instead of holding the run, and cannot keep the process from exiting. The work runs
    under `okrsync.deadline.within(seconds)`, so the HTTP layer ends its retries and socket waits
    by then too (only a drip outlives it, in the thread left behind)."""
    box: dict[str, Any] = {}
    context = contextvars.copy_context()

    def bounded() -> T:
        with deadline.within(seconds):          # the HTTP layer's retries and socket timeouts end before it
            return work()

    def run() -> None:
        try:
            box["result"] = context.run(bounded)
        except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread below
            box["error"] = exc

    thread = threading.Thread(target=run, name=f"okr-sync {name}", daemon=True)
    thread.start()
    thread.join(seconds)
    if thread.is_alive():
        logger.warning("%s: deadline of %g s passed; its key results fail, the others go on", name, seconds)
        return None
    if "error" in box:
        raise box["error"]
    return box["result"]


def _scrubbed(outcome: Outcome) -> Outcome:
    """An outcome whose texts hold no registered secret (a server may echo a token in an error)."""
    if isinstance(outcome, Measurement):
        texts = {k: getattr(outcome, k) for k in ("link", "query", "note") if getattr(outcome, k)}
        clean: dict[str, Any] = {k: scrub(v) for k, v in texts.items()}
        if outcome.evidence:
            evidence = tuple({k: scrub(v) if isinstance(v, str) else v for k, v in item.items()}
                             for item in outcome.evidence)
            if evidence != outcome.evidence:
                clean["evidence"] = evidence
        return outcome if clean == texts else replace(outcome, **clean)
    message = str(outcome)
    clean = scrub(message)
    return outcome if clean == message else with_message(outcome, clean)


def sync(plan: Plan, options: RunOptions, services: Services) -> dict[str, Any]:
    """Run one sync; return the run summary (counts, one entry per key result). ConfigError for a
    bad `only`, or (before measuring) a key result another config file owns (see check_owners);
    every other failure is reported per key result (or as the store's error)."""
    started = time.perf_counter()
    started_at = now()
    run_id = options.run_id or uuid.uuid4().hex[:12]
    moment = as_of_moment(options.as_of, started_at)
    krs = selected(plan, options.only)

    # a day before today can only be measured by a metric that says how to look back ({as_of} in its
    # query, a spreadsheet's date_column). Every check-in of a run is observed at the run's moment:
    # its as-of (never later than now: nothing is observed in the future), else when it started
    refuse = None
    if is_past(moment, started_at):
        refuse = lambda kr: None if looks_back(services.registry, kr) else READS_THE_PRESENT  # noqa: E731
    observed_at = min(moment, started_at)
    batches, unrendered = batches_for(plan, krs, moment.date(), refuse)
    outcomes: dict[str, Outcome | str] = dict(unrendered)
    services.progress(len(unrendered))
    calls = 0
    # before any source is asked: an unusable store's error becomes every key result's, and a key
    # result another config file owns is a ConfigError (both checks in one visit to the store)
    owned = {} if options.dry_run else {kr.id: owned_record(plan, kr) for kr in krs}   # once: checked, then written
    store_error = None if options.dry_run else prepare_store(services, plan, krs, options.take_over, owned)
    unusable = store_error
    if store_error is not None:
        services.progress(sum(len(b.requests) for b in batches))
        outcomes.update({r.kr_id: store_error for b in batches for r in b.requests})
        batches = []
    ends_at = None if options.deadline is None else time.monotonic() + options.deadline
    for batch, measured in services.executor.measure_all(batches, lambda b: measure_batch(services.registry, b, ends_at)):
        outcomes.update(measured)
        calls += sum(getattr(m, "calls", 0) or 0 for m in measured.values())
        services.progress(len(batch.requests))

    results = assess_all(krs, outcomes, moment, observed_at)
    report, previous, points = None, {}, {}
    if not options.dry_run and store_error is None:
        records = checkins(results, run_id)
        failed = sum(1 for r in results if r.error)
        written = services.executor.step(
            "write-checkins", lambda: write_checkins(services, plan, krs, records, run_id, started_at, failed, owned))
        if isinstance(written, str):
            store_error = written
            logger.error("%s", store_error)
        else:
            report, previous, points = written
    apply_report(results, report, store_error)
    result = scrub_data(summary(run_id, results, as_of=moment, dry_run=options.dry_run,
                                store=masked_url(plan.store_url), calls=calls, seconds=time.perf_counter() - started))
    by_id = {kr.id: kr for kr in krs}
    for row in result["key_results"]:
        before = previous.get(row["id"])
        row["previous"] = before
        row["change"] = None if before is None or row["value"] is None else round(row["value"] - before, 9)
        row["forecast"], row["forecast_reason"] = _forecast_of(by_id[row["id"]], points, moment, options.dry_run,
                                                               store_error)
    if plan.targets:
        if options.dry_run:
            result["publish"] = delivery.preview(plan, krs, [] if moment < started_at else result["key_results"])
        elif store_error is None:
            published = services.executor.step(
                "publish", lambda: _publish(plan, services, run_id, [kr.id for kr in krs]))
            result["publish"] = published["targets"]
            for row in result["key_results"]:
                row["published"] = published["by_kr"].get(row["id"], {})
    if not options.dry_run and store_error is None and plan.notify and services.post_webhook is not None:
        from okrsync.notify import send_alerts

        result["alerts"] = services.executor.step(
            "send-alerts", lambda: send_alerts(plan, result["key_results"], run_id, moment,
                                               services.open_store, services.post_webhook))
    if not options.dry_run and store_error is None and plan.reports:
        from okrsync.report import regenerate

        errors = {row["id"]: row["error"] for row in result["key_results"] if row["error"]}
        files = {kr.config_file: [] for kr in plan.key_results}
        for kr in plan.key_results:
            files[kr.config_file].append(kr.id)
        result["report"] = services.executor.step(
            "write-report", lambda: regenerate(plan.reports, services.open_store, plan.store_url, files, errors))
    flow_run_id, flow_run_url = services.flow_run or (None, None)
    result["flow_run"] = {"id": flow_run_id, "url": flow_run_url} if flow_run_id else None
    if unusable is not None:                  # nothing was measured: callers say so in one line
        result["store_error"] = scrub(unusable)
    result["seconds"] = round(time.perf_counter() - started, 3)
    c = result["counts"]
    logger.info("run %s: %d key results, %d synced, %d failed, %d written, %d source calls, %.2f s", run_id,
                c["key_results"], c["synced"], c["failed"], c["written"], calls, result["seconds"])
    return result


def _forecast_of(kr: PlannedKeyResult, points: dict[str, list[tuple[datetime, float]]], moment: datetime,
                 dry_run: bool, store_error: str | None) -> tuple[dict[str, Any] | None, str | None]:
    """A key result's forecast for the run summary (from its check-ins in the store, this run's
    included), or None and why."""
    if dry_run:
        return None, "not computed in a dry run (it reads the key result's history from the store)"
    if store_error is not None:
        return None, "the store could not be used"
    found, reason = forecast(points.get(kr.id, []), baseline=kr.baseline, target=kr.target, period=kr.period,
                             moment=moment)
    return forecast_json(found), reason


def _publish(plan: Plan, services: Services, run_id: str, kr_ids: list[str]) -> dict[str, Any]:
    """The publish step: deliver the outbox to the plan's targets; a store that fails here fails every
    target's line (the check-ins are written and stay queued for the next run)."""
    skipped = delivery.missing_ids(plan, [kr for kr in plan.key_results if kr.id in set(kr_ids)])
    try:
        published = delivery.publish_pending(plan, services.open_store, services.targets, run_id, kr_ids,
                                             within=within_deadline)
    except OkrSyncError as exc:
        message = scrub(f"could not deliver to the publish targets: {exc}")
        logger.error("%s", message)
        published = {"targets": {name: {"type": t.type, "delivered": 0, "kept_manual": 0, "failed": 0, "calls": 0,
                                        "seconds": 0.0, "messages": [message]} for name, t in plan.targets.items()},
                     "by_kr": {}}
    for name, lines in skipped.items():
        published["targets"][name]["skipped"] = lines
    return published


def prepare_store(services: Services, plan: Plan, krs: list[PlannedKeyResult], take_over: bool,
                  owned: dict[str, KeyResultRecord] | None = None) -> str | None:
    """Why the store cannot be used (opened, its schema current, a write taken), or None; ConfigError
    if another config file owns one of `krs` (see check_owners)."""
    try:
        store = services.open_store(plan.store_url)
    except OkrSyncError as exc:
        return str(exc)
    try:
        check = getattr(store, "check_writable", None)   # a locked, read-only or unwritable store fails here
        if check is not None:
            check()
        owners_in(store, plan, krs, take_over, owned)
    except ConfigError:
        raise
    except OkrSyncError as exc:
        return str(exc)
    finally:
        store.close()
    return None


def write_checkins(services: Services, plan: Plan, krs: list[PlannedKeyResult], records: list, run_id: str,
                   started_at: datetime, failed: int, owned: dict[str, KeyResultRecord] | None = None
                   ) -> tuple[Any, dict[str, float], dict[str, list[tuple[datetime, float]]]] | str:
    """Write the run's check-ins in one transaction. Returns (WriteReport, each key result's latest
    value before this run, its check-ins of the period afterwards), the second for "change since the
    previous check-in", the third for the forecast; or the store's error (nothing of the run was
    written)."""
    try:
        store = services.open_store(plan.store_url)
    except OkrSyncError as exc:
        return str(exc)
    try:
        # a run measured as of a past moment records history; publishing it would set a tool's key
        # result back to an older value than the one it shows, so only present runs are queued
        back_dated = any(r.observed_at < started_at for r in records)
        report = write_run(store, services, plan, krs, records, run_id, started_at, failed, owned,
                           publish={} if back_dated else delivery.queued_targets(plan, krs))
        return report, dict(report.previous), period_points(store, krs)
    except OkrSyncError as exc:
        return str(exc)
    finally:
        store.close()


def write_run(store: Any, services: Services, plan: Plan, krs: list[PlannedKeyResult], records: list, run_id: str,
              started_at: datetime, failed: int, owned: dict[str, KeyResultRecord] | None,
              publish: dict[str, list[tuple[str, str | None]]] | None) -> Any:
    """One run's objectives, key results (with their owners) and check-ins in the store's one
    transaction (write_sync), with the Prefect flow run when there is one; the store's WriteReport."""
    objective_ids = {kr.objective_id for kr in krs}
    flow_run_id, flow_run_url = services.flow_run or (None, None)
    return store.write_sync(run_id=run_id, started_at=started_at,
                            objectives=[o for o in plan.objectives if o.id in objective_ids],
                            key_results=[(owned or {}).get(kr.id) or owned_record(plan, kr) for kr in krs],
                            checkins=records, config_files=plan.files, failed=failed, publish=publish,
                            flow_run_id=flow_run_id, flow_run_url=flow_run_url)


def period_points(store: Any, krs: list[PlannedKeyResult]) -> dict[str, list[tuple[datetime, float]]]:
    """Each key result's check-ins (observed_at, value) from the earliest period start on: one read.
    A store without `checkin_points` (another OKR store) gives none, and so no forecasts."""
    read = getattr(store, "checkin_points", None)
    if read is None or not krs:
        return {}
    return read([kr.id for kr in krs], since=earliest_start(kr.period.start for kr in krs))


def owned_record(plan: Plan, kr: PlannedKeyResult) -> KeyResultRecord:
    """The key result as the store keeps it: its definition, thresholds and owner (the config file,
    absolute, and line). `definition` hashes what `serve` also compares (objective, title, source type
    and name, baseline, target, unit, period, on_manual, metric), not the source's settings."""
    return replace(kr.record(), at_risk=kr.thresholds.at_risk, off_track=kr.thresholds.off_track,
                   config_file=kr.owner_file, config_line=kr.line, definition=kr.definition)


def check_owners(open_store: Callable[[str], Any], plan: Plan, krs: list[PlannedKeyResult], take_over: bool) -> None:
    """owners_in, on a store opened (and closed) for it."""
    store = open_store(plan.store_url)
    try:
        owners_in(store, plan, krs, take_over)
    finally:
        store.close()


def owners_in(store: Any, plan: Plan, krs: list[PlannedKeyResult], take_over: bool,
              owned: dict[str, KeyResultRecord] | None = None) -> None:
    """ConfigError naming both places of each key result the store has from another config file with
    a different definition (identical definitions are fine); with `take_over`, those move to this run's
    files instead. Rows written before owners were kept have none and are never refused."""
    records = owned or {kr.id: owned_record(plan, kr) for kr in krs}
    stored = {s.kr_id: s for s in store.key_results(sorted(records), last=False)}
    taken = [(kr, stored[kr.id]) for kr in krs if kr.id in stored and _owned_elsewhere(stored[kr.id], records[kr.id])]
    if take_over and taken:
        store.take_over([records[kr.id] for kr, _ in taken])
        logger.warning("took over %s from %s", ", ".join(kr.id for kr, _ in taken),
                       ", ".join(sorted({s.config_file for _, s in taken})))
        return
    if taken:
        raise ConfigError([ConfigIssue(kr.config_file, kr.line, kr.id, (
            f"{s.config_file}{f':{s.config_line}' if s.config_line else ''} defines this key result differently "
            "and wrote it to this store last: make the two identical, or pass --take-over to move it to this file"))
            for kr, s in taken])


def _owned_elsewhere(stored: Any, record: KeyResultRecord) -> bool:
    return bool(stored.config_file and stored.definition and stored.config_file != record.config_file
                and stored.definition != record.definition)


_PASSWORD = re.compile(r"^([A-Za-z0-9+.-]+://[^:/@]*):[^@]*@")


def masked_url(url: str) -> str:
    """A store URL with its password hidden, for output: postgresql://user:***@host/db."""
    return _PASSWORD.sub(r"\1:***@", url)


__all__ = ["RunOptions", "SourceBatch", "Executor", "LocalExecutor", "Services", "sync", "measure_batch",
           "batches_for", "selected", "now", "as_of_moment", "is_past", "looks_back", "max_workers", "masked_url",
           "write_checkins", "period_points", "prepare_store", "within_deadline", "owned_record", "check_owners"]
