"""The `okr-digest` Prefect flow: one config file's weekly digest (okrsync.digest), deployed by `okr-sync
serve` as `okr-digest/<config>-served` on the file's `notify: digest:` cron. Orchestration only: the core
decides what the digest says and sends it once per period through the store's digest record."""
from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger

from flows.services import local_services
from okrsync.config import load_plan
from okrsync.digest import send_digest

FLOW_NAME = "okr-digest"


@flow(name=FLOW_NAME, log_prints=False)
def send_okr_digest(config_path: str, store: str | None = None) -> dict[str, Any]:
    """Post the digest of one config file to its `notify:` webhook, once per period of its `digest:` cron.

    Args:
        config_path: the config file (absolute, as `serve` registers it).
        store: SQLAlchemy URL overriding the config's `store:` and $OKR_SYNC_STORE.

    Returns:
        {"sent": bool, "reason": why not, "period": the cron tick, "calls": webhook calls}.
    """
    plan = load_plan([config_path], store)
    services = local_services()
    outcome = send_digest(plan, config_path, services.open_store, services.post_webhook)
    logger = get_run_logger()
    if outcome["sent"]:
        logger.info("digest of %s sent for the period from %s", config_path, outcome["period"])
    else:
        logger.info("digest of %s not sent: %s", config_path, outcome["reason"])
    return {"sent": outcome["sent"], "reason": outcome["reason"], "period": str(outcome["period"]),
            "calls": outcome["calls"]}
