"""The engine's services wired to okr-sync's own connectors: the SQL store, the alert webhook,
the installed source connectors. Imports no Prefect, so the CLI's in-process runs stay light."""
from __future__ import annotations

from typing import Any, Callable

from okrsync.engine import Executor, LocalExecutor, Services
from okrsync.registry import default_registry, default_targets


def local_services(executor: Executor | None = None, on_progress: Callable[[int], None] | None = None) -> Services:
    """Services for one run: threads unless another executor is given (the Prefect flow's)."""
    return Services(registry=default_registry(), open_store=_open_store, post_webhook=_post_json,
                    executor=executor or LocalExecutor(), on_progress=on_progress, targets=default_targets())


def _open_store(url: str) -> Any:
    from connectors.sql_store import open_store   # SQLAlchemy loads only when a run writes

    return open_store(url)


def _post_json(*args: Any, **kwargs: Any) -> int:
    from connectors.webhook import post_json      # requests loads only when alerts go out

    return post_json(*args, **kwargs)

