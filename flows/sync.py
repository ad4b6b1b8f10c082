"""The `sync-okrs` Prefect flow: the sync engine (okrsync.engine) run with one Prefect task per
source batch, so scheduled and deployed runs show each source, the write and the alerts in the UI.

Orchestration only: the engine does the work, connectors do the talking (this module never
speaks HTTP), flows/artifacts.py publishes the run summary as artifacts. okr-sync's own log
lines (one per source, one per run, retries) reach the flow run's log.

The CLI, which has already loaded and validated the plan, hands it over with `prepared(...)`
so a run loads its config once; deployments pass only `config_paths`.
"""
from __future__ import annotations

import logging
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, Callable, Iterator

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.futures import as_completed
from prefect.task_runners import ThreadPoolTaskRunner

from flows import artifacts
from flows.services import local_services
from okrsync.config import Plan, load_plan
from okrsync.engine import DEFAULT_WORKERS, RunOptions, SourceBatch, max_workers, sync
from okrsync.errors import ConfigError

OKR_SYNC_LOGGERS = ("okrsync", "connectors")


def _workers() -> int:
    try:
        return max_workers()
    except ConfigError:  # the CLI reports a bad value before a run starts; a deployment keeps the default
        return DEFAULT_WORKERS


@dataclass
class _Prepared:
    plan: Plan
    on_progress: Callable[[int], None] | None
    result: dict[str, Any] | None = None       # the run summary, handed back beside Prefect


_prepared: ContextVar[_Prepared | None] = ContextVar("okr_sync_prepared", default=None)


@contextmanager
def prepared(plan: Plan, on_progress: Callable[[int], None] | None = None) -> Iterator[_Prepared]:
    """Within this block, `sync_okrs` uses this already-loaded plan and reports progress to
    `on_progress` (the CLI's progress bar) instead of loading its config files again; it puts the
    run summary in the yielded holder's `result` and returns Prefect only its counts (Prefect walks
    a flow's return value, thousands of entries at an organisation's scale)."""
    holder = _Prepared(plan, on_progress)
    token = _prepared.set(holder)
    try:
        yield holder
    finally:
        _prepared.reset(token)


@task(name="okr-sync-step", cache_policy=NO_CACHE, retries=0)
def _step(fn: Callable[[], Any]) -> Any:
    """One piece of the engine's work (a source batch, the store write, the alerts) as a task."""
    return fn()


class PrefectExecutor:
    """The engine's executor under Prefect: each source batch and each step is a task run,
    named after what it does (`measure jira`, `write-checkins`).

    A task returns a small record (what it did, in counts); the engine's data (a batch's outcomes,
    the store's report) is handed back beside Prefect, which would otherwise walk every entry of it
    (thousands at an organisation's scale) for futures and states."""

    def measure_all(self, batches: list[SourceBatch], measure):
        answers: dict[int, dict[str, Any]] = {}

        def run(index: int, batch: SourceBatch) -> dict[str, Any]:
            outcomes = measure(batch)
            answers[index] = outcomes
            return _batch_record(batch, outcomes)

        futures = {_step.with_options(name=f"measure {b.source.key}").submit(lambda i=i, b=b: run(i, b)): i
                   for i, b in enumerate(batches)}
        for future in as_completed(list(futures)):
            future.result()                 # a task that raised raises here, as before
            index = futures[future]
            yield batches[index], answers.pop(index)

    def step(self, name: str, fn: Callable[[], Any]) -> Any:
        box: dict[str, Any] = {}

        def run() -> str:
            box["value"] = fn()
            return name

        _step.with_options(name=name)(run)
        return box["value"]


def _batch_record(batch: SourceBatch, outcomes: dict[str, Any]) -> dict[str, Any]:
    """What a measuring task returns to Prefect: counts, not the outcomes."""
    failed = sum(1 for v in outcomes.values() if isinstance(v, Exception))
    return {"source": batch.source.key, "key_results": len(outcomes), "failed": failed,
            "calls": sum(getattr(v, "calls", 0) or 0 for v in outcomes.values())}


class _ToFlowRun(logging.Handler):
    """Hands okr-sync's records to Prefect's API log handler, stamped with this flow run's id, so
    records from any thread (a connector's own pool has no Prefect context) reach the run's log."""

    def __init__(self, target: logging.Handler, flow_run_id: Any):
        super().__init__()
        self.target, self.flow_run_id = target, flow_run_id

    def emit(self, record: logging.LogRecord) -> None:
        if getattr(record, "flow_run_id", None) is None:
            record.flow_run_id = self.flow_run_id
        self.target.handle(record)


@contextmanager
def _logs_to_flow_run() -> Iterator[None]:
    """okr-sync's loggers write to the flow run's log, at Prefect's configured level."""
    from prefect.context import get_run_context

    extra = logging.getLogger("prefect.extra")
    flow_run_id = get_run_context().flow_run.id
    handlers = [_ToFlowRun(h, flow_run_id) for h in extra.handlers]
    levels: dict[logging.Logger, int] = {}
    for name in OKR_SYNC_LOGGERS:
        logger = logging.getLogger(name)
        levels[logger] = logger.level
        if logger.level == logging.NOTSET or logger.level > extra.level:
            logger.setLevel(extra.level or logging.INFO)
        for handler in handlers:
            logger.addHandler(handler)
    try:
        yield
    finally:
        for logger, level in levels.items():
            for handler in handlers:
                logger.removeHandler(handler)
            logger.setLevel(level)


@flow(name="sync-okrs", task_runner=ThreadPoolTaskRunner(max_workers=_workers()), log_prints=False)
def sync_okrs(config_paths: list[str], store: str | None = None, dry_run: bool = False,
              only: list[str] | None = None, as_of: datetime | date | None = None,
              deadline: float | None = None, take_over: bool = False) -> dict[str, Any]:
    """Sync the key results of one or more config files into the OKR store.

    Args:
        config_paths: YAML config files (one per team, say).
        store: SQLAlchemy URL overriding the config's `store:` and $OKR_SYNC_STORE.
        dry_run: measure and assess, write nothing.
        only: key result ids to sync (default: all).
        as_of: measure as of this moment, or the end of this day (UTC) (default: now); fills `{as_of}` in
            queries. A day before today needs metrics that can look back ({as_of}, a spreadsheet date_column).
        deadline: seconds the whole run may spend measuring (each source also has its own).
        take_over: move key results that another config file defines differently to these files.

    Returns:
        The run summary: counts and one entry per key result (value, progress, status, link, error).
    """
    given = _prepared.get()
    with _logs_to_flow_run():
        plan = given.plan if given is not None else load_plan(config_paths, store)
        services = local_services(executor=PrefectExecutor(), on_progress=given.on_progress if given else None)
        services.flow_run = this_flow_run()
        result = sync(plan, RunOptions(dry_run=dry_run, only=only, as_of=as_of, deadline=deadline,
                                       take_over=take_over), services)
    if result.get("store_error"):   # INFO: the CLI says it in one line itself; the UI's run log shows it too
        get_run_logger().info("nothing measured, the store is unusable: %s", result["store_error"])
    artifacts.publish(result, {kr.id: kr.config_file for kr in plan.key_results})
    if given is not None:
        given.result = result
        return {k: v for k, v in result.items() if k not in ("key_results", "alerts")}
    return result


def this_flow_run() -> tuple[str, str | None]:
    """The running flow run's id and its page in the Prefect UI (None when no UI address is known:
    a temporary server that stops with the process has none worth keeping)."""
    from prefect.context import get_run_context
    from prefect.utilities.urls import url_for

    run = get_run_context().flow_run
    return str(run.id), url_for(run)
