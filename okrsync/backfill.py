"""`okr-sync backfill`: a key result's history at past dates, as check-ins of kind `backfill`.

    backfill(plan, BackfillOptions(every=7), services) -> summary (counts, one entry per key result)

Every key result whose metric can be measured as of a past date (okrsync.contract.reads_past: `{as_of}`
in its query, a spreadsheet `date_column:`) is measured at each date from `start` (default: the
earliest period start of the key results) to `end` (default: yesterday, UTC), every `every` days, as
of the end of that day, and only at the dates inside its own period. The others are listed as skipped,
with the reason. Each check-in is observed at the end of its date, so a backfill run again finds them
in the store and measures nothing it already has: idempotent, and a re-run costs no API calls.

Cost: the key results of one source are measured together, DATES_PER_BATCH dates at a time, through
the source's normal batch (identical queries once, GitHub's GraphQL batching, Jira's dedup): at most
one call per distinct query and date (a Jira sum reads its pages, as in a run), plus each batch's
fixed calls (Jira's serverInfo). Each batch may take the source's `deadline:` once per date in it.

Backfilled check-ins are history only: they are not queued for publish targets and send no alerts.
"""
from __future__ import annotations

import math
import time
import uuid
from collections import defaultdict
from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta
from typing import Any, Sequence

from okrsync.config import Plan, PlannedKeyResult, render_metric
from okrsync.contract import READS_THE_PRESENT
from okrsync import engine
from okrsync.engine import (
    Services,
    SourceBatch,
    as_of_moment,
    looks_back,
    masked_url,
    measure_batch,
    owned_record,
    prepare_store,
    selected,
    write_run,
)
from okrsync.errors import OkrSyncError
from okrsync.measure import Measurement, MetricRequest
from okrsync.progress import assess
from okrsync.records import CheckinRecord
from okrsync.redact import scrub, scrub_data

DATES_PER_BATCH = 4          # dates measured in one source batch (one connection, one serverInfo, ...)
MAX_DATES = 1000             # a guard against --every 1d over decades


class BackfillError(ValueError):
    """The dates asked for make no backfill (the message says what to change)."""


@dataclass(frozen=True)
class BackfillOptions:
    start: date | None = None               # default: the earliest period start of the key results
    end: date | None = None                 # default: yesterday (UTC)
    every: int = 7                          # days between two dates
    dry_run: bool = False
    only: Sequence[str] | None = None
    run_id: str | None = None


def dates_between(start: date, end: date, every: int) -> list[date]:
    """start, start + every, ... up to end (inclusive)."""
    if every < 1:
        raise BackfillError("--every must be at least one day, e.g. 1d or 1w")
    count = (end - start).days // every + 1
    if count > MAX_DATES:
        raise BackfillError(f"{start}..{end} every {every} day(s) is {count} dates: backfill at most {MAX_DATES} "
                            "at once (a later --from, or a longer --every)")
    return [start + timedelta(days=every * k) for k in range(max(0, count))]


def plan_dates(krs: list[PlannedKeyResult], options: BackfillOptions, today: date) -> list[date]:
    """The dates of this backfill; BackfillError naming the option to change."""
    end = options.end or today - timedelta(days=1)
    if end >= today:
        raise BackfillError(f"--to {end} is not in the past: a backfill fills the days before today ({today}, UTC); "
                            "today's value comes from `okr-sync run`")
    start = options.start or min((kr.period.start for kr in krs), default=end)
    if start > end:
        raise BackfillError(f"--from {start} is after --to {end}: nothing to backfill")
    return dates_between(start, end, options.every)


def planned(plan: Plan, options: BackfillOptions, registry: Any, today: date
            ) -> tuple[list[PlannedKeyResult], list[date], dict[str, list[date]], dict[str, str]]:
    """(key results, dates, the dates each key result is measured at, why each other one is skipped);
    BackfillError for dates that make no backfill, ConfigError for a bad `only`."""
    krs = selected(plan, options.only)
    dates = plan_dates(krs, options, today)
    wanted: dict[str, list[date]] = {}
    skipped: dict[str, str] = {}
    for kr in krs:
        if not looks_back(registry, kr):
            skipped[kr.id] = READS_THE_PRESENT
            continue
        inside = [d for d in dates if kr.period.start <= d <= kr.period.end]
        if inside:
            wanted[kr.id] = inside
        else:
            skipped[kr.id] = f"its period {kr.period} has no date in {dates[0]}..{dates[-1]}"
    return krs, dates, wanted, skipped


def _key(kr_id: str, day: date) -> str:
    return f"{kr_id}@{day.isoformat()}"


def backfill(plan: Plan, options: BackfillOptions, services: Services) -> dict[str, Any]:
    """Fill the history; return the summary. ConfigError for a bad `only` or a key result another
    config file owns (before anything is measured), BackfillError for dates that make no backfill;
    every other failure is reported per key result and date (or as the store's error)."""
    started = time.perf_counter()
    started_at = engine.now()
    run_id = options.run_id or "backfill-" + uuid.uuid4().hex[:8]
    krs, dates, wanted, skipped = planned(plan, options, services.registry, started_at.date())
    rows: dict[str, dict[str, Any]] = {kr.id: {"id": kr.id, "source": kr.source_key, "dates": len(wanted.get(kr.id, [])),
                                               "written": 0, "already": 0, "failed": 0, "errors": [], "values": [],
                                               "skipped": skipped.get(kr.id)} for kr in krs}
    measured_krs = [kr for kr in krs if kr.id in wanted]
    total = sum(len(d) for d in wanted.values())

    store_error, owned = None, {}
    if not options.dry_run and measured_krs:
        owned = {kr.id: owned_record(plan, kr) for kr in measured_krs}
        store_error = prepare_store(services, plan, measured_krs, False, owned)
        if store_error is None:
            store_error = _drop_known(services, plan, measured_krs, wanted, rows)
    if store_error is not None:
        services.progress(total)
        return _summary(run_id, plan, rows, dates, options, 0, started, store_error=scrub(store_error))
    services.progress(total - sum(len(d) for d in wanted.values()))

    batches, failed = _batches(plan, measured_krs, wanted)
    for key, error in failed.items():
        _fail(rows, key, error)
    services.progress(len(failed))
    calls = 0
    by_key: dict[str, tuple[PlannedKeyResult, date]] = {_key(kr.id, d): (kr, d) for kr in measured_krs
                                                          for d in wanted[kr.id]}
    records: list[CheckinRecord] = []
    for batch, outcomes in services.executor.measure_all(batches, lambda b: measure_batch(services.registry, b)):
        services.progress(len(batch.requests))
        for key, got in outcomes.items():
            calls += getattr(got, "calls", 0) or 0
            kr, day = by_key[key]
            if not isinstance(got, Measurement):
                _fail(rows, key, str(got) or got.__class__.__name__)
                continue
            record = _record(kr, day, got, run_id)
            if isinstance(record, str):
                _fail(rows, key, record)
                continue
            records.append(record)
            rows[kr.id]["values"].append({"date": day.isoformat(), "value": record.value, "status": record.status})
    for row in rows.values():
        row["values"].sort(key=lambda v: v["date"])

    if not options.dry_run and records:
        store_error = _write(services, plan, measured_krs, records, run_id, started_at,
                             sum(r["failed"] for r in rows.values()), owned, rows)
    return _summary(run_id, plan, rows, dates, options, calls, started, store_error=scrub(store_error) if store_error else None)


def _drop_known(services: Services, plan: Plan, krs: list[PlannedKeyResult], wanted: dict[str, list[date]],
                rows: dict[str, dict[str, Any]]) -> str | None:
    """Leave out of `wanted` the dates whose check-in the store has already (observed at that very end of
    day); None, or the store's error."""
    try:
        store = services.open_store(plan.store_url)
    except OkrSyncError as exc:
        return str(exc)
    try:
        read = getattr(store, "checkin_points", None)
        points = read([kr.id for kr in krs]) if read is not None else {}
    except OkrSyncError as exc:
        return str(exc)
    finally:
        store.close()
    for kr in krs:
        known = {when for when, _ in points.get(kr.id, [])}
        keep = [d for d in wanted[kr.id] if as_of_moment(d) not in known]
        rows[kr.id]["already"] = len(wanted[kr.id]) - len(keep)
        wanted[kr.id] = keep
    return None


def _batches(plan: Plan, krs: list[PlannedKeyResult], wanted: dict[str, list[date]]
             ) -> tuple[list[SourceBatch], dict[str, str]]:
    """One batch per source and DATES_PER_BATCH dates, each request keyed `kr@date` (connectors key
    their answers by the request's kr_id); an error per metric whose placeholders cannot be filled in."""
    by_source: dict[str, dict[date, list[MetricRequest]]] = defaultdict(lambda: defaultdict(list))
    failed: dict[str, str] = {}
    for kr in krs:
        for day in wanted[kr.id]:
            try:
                metric = render_metric(kr.metric, kr.period, day)
            except ValueError as exc:
                failed[_key(kr.id, day)] = f"metric is invalid once its placeholders are filled in: {exc}".splitlines()[0]
                continue
            by_source[kr.source_key][day].append(MetricRequest(kr_id=_key(kr.id, day), metric=metric,
                                                               period=kr.period, as_of=day))
    batches = []
    for key, by_day in by_source.items():
        days = sorted(by_day)
        for i in range(0, len(days), DATES_PER_BATCH):
            chunk = days[i:i + DATES_PER_BATCH]
            source = plan.sources[key]
            batches.append(SourceBatch(replace(source, deadline=source.deadline * len(chunk)),
                                       [r for day in chunk for r in by_day[day]]))
    return batches, failed


def _record(kr: PlannedKeyResult, day: date, got: Measurement, run_id: str) -> CheckinRecord | str:
    """The backfilled check-in of one date, observed at its end; or why the value cannot be kept."""
    value = got.value
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return f"the source gave {value!r}, which is not a finite number: check the data behind it"
    moment = as_of_moment(day)
    a = assess(value, kr.baseline, kr.target, kr.period, moment, kr.thresholds)
    return CheckinRecord(kr_id=kr.id, value=float(value), progress=a.progress, expected=a.expected, status=a.status,
                         observed_at=moment, source=kr.source_key, query=got.query, link=got.link, run_id=run_id,
                         kind="backfill", note=got.note, evidence=got.evidence)


def _fail(rows: dict[str, dict[str, Any]], key: str, error: str) -> None:
    kr_id, day = key.rsplit("@", 1)
    row = rows[kr_id]
    row["failed"] += 1
    if len(row["errors"]) < 3:
        row["errors"].append({"date": day, "error": scrub(error)})


def _write(services: Services, plan: Plan, krs: list[PlannedKeyResult], records: list[CheckinRecord], run_id: str,
           started_at: datetime, failed: int, owned: dict[str, Any], rows: dict[str, dict[str, Any]]) -> str | None:
    """All the backfilled check-ins in one transaction (none queued for publish targets); None, or the
    store's error (nothing written)."""
    try:
        store = services.open_store(plan.store_url)
    except OkrSyncError as exc:
        return str(exc)
    try:
        report = write_run(store, services, plan, krs, records, run_id, started_at, failed, owned, publish=None)
    except OkrSyncError as exc:
        return str(exc)
    finally:
        store.close()
    for kr_id in report.written:
        rows[kr_id]["written"] += 1
    for kr_id in report.unchanged:          # written meanwhile by another backfill: already there
        rows[kr_id]["already"] += 1
    return None


def _summary(run_id: str, plan: Plan, rows: dict[str, dict[str, Any]], dates: list[date], options: BackfillOptions,
             calls: int, started: float, store_error: str | None = None) -> dict[str, Any]:
    found = list(rows.values())
    result = {
        "run_id": run_id,
        "dry_run": options.dry_run,
        "store": masked_url(plan.store_url),
        "from": dates[0].isoformat() if dates else None,
        "to": dates[-1].isoformat() if dates else None,
        "every_days": options.every,
        "dates": len(dates),
        "counts": {
            "key_results": len(found),
            "backfilled": sum(1 for r in found if r["skipped"] is None),
            "skipped": sum(1 for r in found if r["skipped"] is not None),
            "measured": sum(len(r["values"]) for r in found),
            "written": sum(r["written"] for r in found),
            "already": sum(r["already"] for r in found),
            "failed": sum(r["failed"] for r in found),
        },
        "source_calls": calls,
        "seconds": round(time.perf_counter() - started, 3),
        "key_results": found,
    }
    if store_error is not None:
        result["store_error"] = store_error
    return scrub_data(result)


__all__ = ["BackfillOptions", "BackfillError", "backfill", "planned", "dates_between", "plan_dates", "DATES_PER_BATCH"]
