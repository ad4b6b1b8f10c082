"""The `sync-okrs` Prefect flow: one flow run = one sync of one or more config files.

Orchestration only: load the plan, run one task per source (a batch of key results), assess
progress, write the check-ins in one store transaction, send the alerts due (config files with
`notify:`; flows/alerting.py), publish the run as Prefect artifacts (flows/artifacts.py).
Connectors do the talking; this module never speaks HTTP.
"""
from __future__ import annotations

import os
import time
import traceback
import uuid
from datetime import date, datetime, time as dtime, timezone
from typing import Any, Callable

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.task_runners import ThreadPoolTaskRunner

from connectors import connector_for
from flows import artifacts
from flows.alerting import send_alerts
from okrsync.config import Plan, PlannedSource, load_plan
from okrsync.contract import run_batch
from okrsync.errors import ConfigError, ConfigIssue, OkrSyncError, SourceError
from okrsync.measure import Measurement, MetricRequest
from okrsync.results import apply_report, assess_all, checkins, requests_by_source, summary

MAX_WORKERS = int(os.environ.get("OKR_SYNC_MAX_WORKERS", "4"))

# The CLI sets this to drive its progress bar: called with (source_key, key results done).
_progress_listener: Callable[[str, int], None] | None = None


def set_progress_listener(listener: Callable[[str, int], None] | None) -> None:
    global _progress_listener
    _progress_listener = listener


def _report_progress(source_key: str, done: int) -> None:
    if _progress_listener is not None:
        _progress_listener(source_key, done)


@task(name="measure-source", cache_policy=NO_CACHE, retries=0)
def measure_source(source: PlannedSource, requests: list[MetricRequest]) -> dict[str, Measurement | SourceError]:
    """Measure every key result of one source in one batch; errors are per key result."""
    logger = get_run_logger()
    try:
        outcomes = run_batch(connector_for(source.type), source.config, requests)
    except OkrSyncError as exc:
        outcomes = {r.kr_id: SourceError(f"source `{source.name}`: {exc}") for r in requests}
    except Exception as exc:  # noqa: BLE001 - a connector bug must not stop the other sources
        logger.debug("source %s failed:\n%s", source.key, traceback.format_exc())
        outcomes = {r.kr_id: SourceError(f"source `{source.name}` failed unexpectedly: {exc.__class__.__name__}")
                    for r in requests}
    for r in requests:
        outcomes.setdefault(r.kr_id, SourceError("the connector returned no result for this key result"))
    failed = [k for k, v in outcomes.items() if not isinstance(v, Measurement)]
    if failed:
        logger.warning("source %s: %d of %d key results failed", source.key, len(failed), len(requests))
    _report_progress(source.key, len(requests))
    return outcomes


@task(name="write-checkins", cache_policy=NO_CACHE, retries=0)
def write_checkins(plan: Plan, kr_ids: list[str], records: list, run_id: str, started_at: datetime, failed: int):
    """Write the run's check-ins to the store in one transaction.

    Returns (WriteReport, previous values): each key result's latest check-in value before
    this run, for "change since the previous check-in"."""
    from connectors.sql_store import open_store

    store = open_store(plan.store_url)
    try:
        wanted = set(kr_ids)
        previous = {s.kr_id: s.last.value for s in store.key_results(sorted(wanted)) if s.last is not None}
        krs = [kr.record() for kr in plan.key_results if kr.id in wanted]
        objective_ids = {kr.objective_id for kr in krs}
        report = store.write_sync(run_id=run_id, started_at=started_at,
                                  objectives=[o for o in plan.objectives if o.id in objective_ids],
                                  key_results=krs, checkins=records, config_files=plan.files, failed=failed)
        return report, previous
    finally:
        store.close()


def _as_of_moment(as_of: date | datetime | None) -> datetime:
    if as_of is None:
        return datetime.now(timezone.utc)
    if isinstance(as_of, datetime):
        return as_of if as_of.tzinfo else as_of.replace(tzinfo=timezone.utc)
    return datetime.combine(as_of, dtime.max, tzinfo=timezone.utc)


@flow(name="sync-okrs", task_runner=ThreadPoolTaskRunner(max_workers=MAX_WORKERS), log_prints=False)
def sync_okrs(config_paths: list[str], store: str | None = None, dry_run: bool = False,
              only: list[str] | None = None, as_of: datetime | None = None) -> dict[str, Any]:
    """Sync the key results of one or more config files into the OKR store.

    Args:
        config_paths: YAML config files (one per team, say).
        store: SQLAlchemy URL overriding the config's `store:` and $OKR_SYNC_STORE.
        dry_run: measure and assess, write nothing.
        only: key result ids to sync (default: all).
        as_of: measure as of this moment (default: now); fills `{as_of}` in queries.

    Returns:
        The run summary: counts and one entry per key result (value, progress, status, link, error).
    """
    started = time.perf_counter()
    started_at = datetime.now(timezone.utc)
    run_id = uuid.uuid4().hex[:12]
    moment = _as_of_moment(as_of)
    plan = load_plan(config_paths, store)
    krs = plan.key_results
    if only:
        unknown = sorted(set(only) - {kr.id for kr in krs})
        if unknown:
            raise ConfigError([ConfigIssue(", ".join(plan.files), None, u, "no key result has this id (check --only)")
                               for u in unknown])
        krs = [kr for kr in krs if kr.id in set(only)]

    batches, outcomes = requests_by_source(plan, krs, moment.date())
    futures = {key: measure_source.submit(plan.sources[key], reqs) for key, reqs in batches.items()}
    calls = 0
    for key, future in futures.items():
        measured = future.result()
        outcomes.update(measured)
        calls += sum(getattr(m, "calls", 0) for m in measured.values())
    unrendered = sum(isinstance(v, str) for v in outcomes.values())   # metrics that failed to render
    if unrendered:
        _report_progress("config", unrendered)

    results = assess_all(krs, outcomes, moment)
    report, store_error, previous = None, None, {}
    if not dry_run:
        records = checkins(results, run_id)
        try:
            report, previous = write_checkins(plan, [kr.id for kr in krs], records, run_id, started_at,
                                              sum(1 for r in results if r.error))
        except OkrSyncError as exc:
            store_error = str(exc)
            get_run_logger().error("%s", store_error)
    apply_report(results, report, store_error)
    result = summary(run_id, results, as_of=moment, dry_run=dry_run, store=_masked(plan.store_url),
                     calls=calls, seconds=time.perf_counter() - started)
    for row in result["key_results"]:
        before = previous.get(row["id"])
        row["previous"] = before
        row["change"] = None if before is None or row["value"] is None else round(row["value"] - before, 9)
    if not dry_run and store_error is None and plan.notify:
        result["alerts"] = send_alerts(plan, result["key_results"], run_id, moment)
    result["seconds"] = round(time.perf_counter() - started, 3)
    artifacts.publish(result)
    return result


def _masked(url: str) -> str:
    try:
        from sqlalchemy.engine import make_url

        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - an unparsable URL is shown without its userinfo
        return url.split("@")[-1]

