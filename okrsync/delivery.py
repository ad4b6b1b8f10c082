"""Delivering the outbox: the engine's publish step, and `okr-sync publish` (the same step alone).

After a run's check-ins are written (and queued in the outbox in the same transaction), the run
claims the pending deliveries of its key results for its publish targets, hands each target its batch
(oldest check-in first) within the target's deadline, and records each outcome in the store target by
target, so one target that is down never holds back the others and nothing it took is delivered again.
"""
from __future__ import annotations

import logging
import time
from collections import defaultdict
from typing import Any, Callable, Iterable

from okrsync.config import Plan, PlannedKeyResult
from okrsync.errors import OkrSyncError
from okrsync.publish import BatchResult, Delivery, deliver_batch, failed, probe_target
from okrsync.redact import scrub
from okrsync.registry import ConnectorUnusable, Registry

logger = logging.getLogger(__name__)


def queued_targets(plan: Plan, krs: Iterable[PlannedKeyResult]) -> dict[str, list[tuple[str, str | None]]]:
    """What the store queues for each key result: its targets, less those that need an id it lacks."""
    out: dict[str, list[tuple[str, str | None]]] = {}
    for kr in krs:
        mapped = [(name, ext) for name, ext in kr.publish
                  if name in plan.targets and (ext is not None or not plan.targets[name].needs_external_id)]
        if mapped:
            out[kr.id] = mapped
    return out


def missing_ids(plan: Plan, krs: Iterable[PlannedKeyResult]) -> dict[str, list[str]]:
    """Per target, a line for each key result skipped because it has no id in that target."""
    out: dict[str, list[str]] = defaultdict(list)
    for kr in krs:
        for name, ext in kr.publish:
            target = plan.targets.get(name)
            if target is not None and target.needs_external_id and ext is None:
                out[name].append(f"{kr.id}: not published to {name}, which needs the key result's id there: add "
                                 f"`publish: {{{name}: <its id>}}` to it in {kr.config_file}"
                                 f"{f':{kr.line}' if kr.line else ''}, or `publish: false`")
    return dict(out)


def preview(plan: Plan, krs: list[PlannedKeyResult], rows: list[dict[str, Any]]) -> dict[str, Any]:
    """--dry-run: per target, what a run would write there (nothing is sent, the store is not read)."""
    by_id = {row["id"]: row for row in rows}
    skipped = missing_ids(plan, krs)
    out: dict[str, Any] = {}
    for name, target in plan.targets.items():
        would = []
        for kr in krs:
            mapped = dict(kr.publish)
            ext = mapped.get(name)
            if name not in mapped or (target.needs_external_id and ext is None):
                continue
            row = by_id.get(kr.id)
            if row is None or row.get("value") is None:
                continue
            would.append({"kr": kr.id, "external_id": ext, "value": row["value"], "progress": row.get("progress"),
                          "status": row.get("status")})
        out[name] = {"type": target.type, "would_write": would, "skipped": skipped.get(name, [])}
    return out


def publish_pending(plan: Plan, open_store: Callable[[str], Any], targets: Registry | None, run_id: str,
                    kr_ids: Iterable[str] | None = None,
                    within: Callable[[Callable[[], BatchResult], float, str], BatchResult | None] | None = None
                    ) -> dict[str, Any]:
    """Deliver what is pending for the plan's targets (of `kr_ids`, default the plan's key results).
    Returns, per target: delivered, kept_manual and failed counts, calls, seconds and messages (one per
    key result kept or failed); and per key result (`by_kr`) what happened in each target."""
    report: dict[str, Any] = {name: _empty(t.type) for name, t in plan.targets.items()}
    by_kr: dict[str, dict[str, str]] = defaultdict(dict)
    if not plan.targets:
        return {"targets": report, "by_kr": {}}
    ids = [kr.id for kr in plan.key_results] if kr_ids is None else list(kr_ids)
    store = open_store(plan.store_url)
    try:
        claimed = store.claim_deliveries(run_id, list(plan.targets), ids)
        batches: dict[str, list[Delivery]] = defaultdict(list)
        for d in claimed:
            batches[d.target].append(d)
        for name, batch in batches.items():
            started = time.perf_counter()
            target = plan.targets[name]
            result = _deliver(targets, target, batch, within)
            store.finish_deliveries(run_id, result.results)
            entry = report[name]
            entry["calls"] += result.calls
            entry["seconds"] = round(time.perf_counter() - started, 3)
            for d in batch:
                r = result.results[d.id]
                entry[r.outcome] += 1
                if r.outcome == "delivered":
                    by_kr[d.kr_id][name] = "delivered"
                else:
                    line = scrub(r.message or r.outcome)
                    entry["messages"].append(f"{d.kr_id}: {line}")
                    by_kr[d.kr_id][name] = line
            logger.info("publish target %s: %d check-ins, %d delivered, %d kept manual, %d failed, %d calls, %.2f s",
                        name, len(batch), entry["delivered"], entry["kept_manual"], entry["failed"], entry["calls"],
                        time.perf_counter() - started)
    finally:
        store.close()
    return {"targets": report, "by_kr": dict(by_kr)}


def _empty(ttype: str) -> dict[str, Any]:
    return {"type": ttype, "delivered": 0, "kept_manual": 0, "failed": 0, "calls": 0, "seconds": 0.0, "messages": []}


def _deliver(targets: Registry | None, target: Any, batch: list[Delivery],
             within: Callable[[Callable[[], BatchResult], float, str], BatchResult | None] | None) -> BatchResult:
    if targets is None:
        return BatchResult({d.id: failed("no publish targets are installed in this okr-sync") for d in batch})
    try:
        connector = targets.get(target.type)
    except (KeyError, ConnectorUnusable) as exc:
        message = str(exc) if isinstance(exc, ConnectorUnusable) else f"no connector is installed for publish target type `{target.type}`"
        return BatchResult({d.id: failed(message) for d in batch})
    work = lambda: deliver_batch(connector, target.config, batch)  # noqa: E731
    result = work() if within is None else within(work, target.deadline, f"publish target {target.name}")
    if result is None:
        message = (f"deadline of {target.deadline:g} s passed while delivering to {target.name} (the tool answers too "
                   "slowly or not at all); it is retried on the next run: check the tool, or raise its `deadline:`")
        return BatchResult({d.id: failed(message) for d in batch})
    return result


def check_targets(plan: Plan, targets: Registry | None) -> dict[str, Any]:
    """`okr-sync publish --check`: per target, its problems (access, key results missing in the tool)."""
    out: dict[str, Any] = {}
    for name, target in plan.targets.items():
        mapped = [(kr.id, dict(kr.publish).get(name)) for kr in plan.key_results if name in dict(kr.publish)]
        try:
            if targets is None:
                raise OkrSyncError("no publish targets are installed in this okr-sync")
            connector = targets.get(target.type)
            problems, calls = probe_target(connector, target.config, mapped)
        except (KeyError, ConnectorUnusable, OkrSyncError) as exc:
            problems, calls = [str(exc) if not isinstance(exc, KeyError) else f"no connector for type `{target.type}`"], 0
        out[name] = {"type": target.type, "key_results": len(mapped), "problems": problems, "calls": calls}
    return out


__all__ = ["queued_targets", "missing_ids", "preview", "publish_pending", "check_targets"]
