"""After the check-ins are written: decide the alerts due and deliver them.

Only key results of config files with a `notify:` section take part. The store decides under
lock (okrsync.alerts.decide over each key result's watch) and queues the alerts due; they are
posted one message per webhook and marked delivered. An alert that could not be delivered stays
queued and is retried by the next run (up to a few times). Alerting never fails the sync: its
problems are logged and returned in the run summary.

Each alert goes out with its links: the key result's latest link (this run's, else its last
check-in's: the tickets behind the number for Jira and GitHub, the sheet for Google Sheets; a
local file's `file://` link is left out, a chat reader cannot open it) and the Prefect flow run
of the run that decided it (okr_runs.flow_run_url, when the run was a flow run with a known UI).

The store and the webhook poster come from the caller (connectors.sql_store, connectors.webhook).
"""
from __future__ import annotations

import logging
import traceback
from collections import defaultdict
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import Any, Callable

from okrsync.alerts import Alert, Observation, QueuedAlert, Watch, decide, ordered, slack_payload
from okrsync.config import Plan
from okrsync.errors import OkrSyncError
from okrsync.refs import SecretRef

logger = logging.getLogger(__name__)

LINK_LABELS = {"jira": "tickets", "github": "tickets", "google_sheets": "sheet"}   # what a source's link opens


def observations(plan: Plan, rows: list[dict[str, Any]]) -> dict[str, Observation]:
    """This run's outcome of every key result whose config file has `notify:`."""
    krs = {kr.id: kr for kr in plan.key_results}
    found = {}
    for r in rows:
        kr = krs.get(r["id"])
        if kr is None or kr.config_file not in plan.notify:
            continue
        found[kr.id] = Observation(kr_id=kr.id, title=kr.title, source=r["source"], target=kr.target,
                                   value=r["value"], status=r["status"], progress=r["progress"], unit=kr.unit,
                                   link=r["link"], error=r["error"], stale_after=kr.stale_after,
                                   forecast=r.get("forecast"))
    return found


def _web(url: str | None) -> bool:
    return bool(url) and url.startswith(("https://", "http://"))


def alert_links(plan: Plan, seen: dict[str, Observation], store: Any,
                queued: list[QueuedAlert]) -> Callable[[QueuedAlert], tuple[tuple[str, str], ...]]:
    """Each queued alert's links: (label, URL) of the key result's latest web link and of the flow run
    of the run that decided the alert. Two store reads at most, only when alerts are due."""
    if not queued:
        return lambda alert: ()
    data = {kr_id: obs.link for kr_id, obs in seen.items() if _web(obs.link)}
    missing = sorted({a.kr_id for a in queued} - set(data))
    flow_runs: dict[str, str] = {}
    try:
        if missing:                      # a failing source measured nothing: its last check-in's link
            data.update({s.kr_id: s.last.link for s in store.key_results(missing) if s.last and _web(s.last.link)})
        flow_runs = {r["run_id"]: r["flow_run_url"] for r in store.runs(run_ids={a.run_id for a in queued if a.run_id})
                     if _web(r["flow_run_url"])}
    except OkrSyncError as exc:          # the alerts still go out, with the links known so far
        logger.warning("alerts go out without some links: %s", exc)
    label = {kr.id: LINK_LABELS.get(kr.source_type, "data") for kr in plan.key_results}

    def links(alert: QueuedAlert) -> tuple[tuple[str, str], ...]:
        found = [(label.get(alert.kr_id, "data"), data[alert.kr_id])] if alert.kr_id in data else []
        if alert.run_id in flow_runs:
            found.append(("flow run", flow_runs[alert.run_id]))
        return tuple(found)
    return links


def send_alerts(plan: Plan, rows: list[dict[str, Any]], run_id: str, moment: datetime,
                open_store: Callable[[str], Any], post: Callable[..., int]) -> dict[str, Any]:
    """Decide the alerts due after this run, post them to each file's webhook, record delivery.

    Returns {"alerts": [{kr_id, kind, message, delivered}], "errors": [...], "calls": n}.
    """
    seen = observations(plan, rows)
    outcome: dict[str, Any] = {"alerts": [], "errors": [], "calls": 0}
    if not seen:
        return outcome
    config_of = {kr.id: kr.config_file for kr in plan.key_results}

    def decide_all(previous: dict[str, Watch | None]) -> tuple[list[Watch], list[Alert]]:
        watches, due = [], []
        for kr_id, obs in seen.items():
            watch, alerts = decide(previous.get(kr_id), obs, moment, frozenset(plan.notify[config_of[kr_id]].on))
            watches.append(watch)
            due.extend(alerts)
        return watches, due

    try:
        store = open_store(plan.store_url)
    except OkrSyncError as exc:
        outcome["errors"].append(str(exc))
        logger.warning("alerts skipped: %s", exc)
        return outcome
    try:
        queued = store.update_watch(run_id=run_id, kr_ids=list(seen), decide=decide_all)
        linked = alert_links(plan, seen, store, queued)
        batches: dict[SecretRef, list[QueuedAlert]] = defaultdict(list)
        files: dict[SecretRef, set[str]] = defaultdict(set)
        for alert in ordered(queued):
            ref = plan.notify[config_of[alert.kr_id]].webhook
            batches[ref].append(replace(alert, links=linked(alert)))
            files[ref].add(Path(config_of[alert.kr_id]).name)
        for ref, batch in batches.items():
            header = f"okr-sync · {', '.join(sorted(files[ref]))} · {len(batch)} alert{'s' if len(batch) != 1 else ''}"
            delivered = False
            try:
                outcome["calls"] += post(ref.reveal(), slack_payload(batch, header), where=ref.describe())
                delivered = True
            except OkrSyncError as exc:  # the webhook refused, or its variable or Secret block is missing
                outcome["calls"] += getattr(exc, "calls", 0)
                outcome["errors"].append(str(exc))
                logger.warning("%d alert(s) not delivered: %s", len(batch), exc)
            store.finish_alerts([a.id for a in batch], run_id=run_id, delivered=delivered)
            outcome["alerts"] += [{"kr_id": a.kr_id, "kind": a.kind, "message": a.message, "delivered": delivered,
                                   "links": [{"label": label, "url": url} for label, url in a.links]} for a in batch]
    except OkrSyncError as exc:
        outcome["errors"].append(str(exc))
        logger.warning("alerts skipped: %s", exc)
    except Exception as exc:  # noqa: BLE001 - a bug in alerting must not undo a written sync
        logger.debug("alerting failed:\n%s", traceback.format_exc())
        outcome["errors"].append(f"alerting failed unexpectedly: {exc.__class__.__name__}")
        logger.warning("alerting failed unexpectedly: %s", exc.__class__.__name__)
    finally:
        store.close()
    return outcome
