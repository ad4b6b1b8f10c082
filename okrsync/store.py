"""The OKR store interface: what the engine, the CLI, alerts and publishing need from a store.

The embedded SQL store (`connectors.sql_store.SqlStore`) implements it; another store (a hosted
database, an OKR tool that keeps history) implements the same methods and is handed to the engine
through `Services.open_store`. Every store decides whether an automatic value replaces the current
one with `okrsync.policy.decide`, so manual values win the same way everywhere.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any, Protocol, runtime_checkable

from okrsync.alerts import Alert, QueuedAlert, Watch
from okrsync.publish import Delivery, DeliveryResult
from okrsync.records import (
    CheckinRecord,
    KeyResultRecord,
    KeyResultState,
    ObjectiveRecord,
    StoredCheckin,
    WriteReport,
)


@runtime_checkable
class OkrStore(Protocol):
    """An OKR store: the record of objectives, key results, check-ins, runs, alerts and deliveries."""

    display_url: str                     # where it is, with any password masked

    # -- writing a run --
    def check_writable(self) -> None:
        """StoreError unless a write would be taken (called before a run measures anything)."""

    def write_sync(self, *, run_id: str, started_at: datetime, objectives: list[ObjectiveRecord],
                   key_results: list[KeyResultRecord], checkins: list[CheckinRecord], config_files: list[str],
                   failed: int, publish: Mapping[str, Sequence[tuple[str, str | None]]] | None = None,
                   flow_run_id: str | None = None, flow_run_url: str | None = None) -> WriteReport:
        """One run in one transaction, all or nothing: key results upserted, check-ins decided by
        okrsync.policy, each written check-in queued for its publish targets, the run recorded. The
        report's `previous` holds each key result's latest value before the run."""

    def take_over(self, key_results: list[KeyResultRecord]) -> None: ...

    def add_manual_checkin(self, kr_id: str, value: float, *, note: str | None = None,
                           observed_at: datetime | None = None, progress: float | None = None,
                           expected: float | None = None, status: str | None = None) -> StoredCheckin: ...

    # -- reading --
    def key_results(self, kr_ids: list[str] | None = None, *, last: bool = True) -> list[KeyResultState]:
        """Key results (all, or these) by objective, then id; with their latest check-in unless `last`
        is False (then `last` is None: cheaper, for callers that read only the key results' own columns)."""

    def history(self, kr_id: str) -> list[StoredCheckin]: ...

    def runs(self, limit: int = 20, run_ids: Iterable[str] | None = None) -> list[dict[str, Any]]:
        """The most recent runs, newest first, or those of `run_ids`; every okr_runs column, the Prefect
        flow run (`flow_run_id`, `flow_run_url`) too."""

    def checkin_points(self, kr_ids: Iterable[str] | None = None,
                       since: datetime | None = None) -> dict[str, list[tuple[datetime, float]]]:
        """(observed_at, value) of every readable check-in of these key results (all when None) observed
        at or after `since`, oldest first, by key result: for forecasts and backfill."""

    # -- alerts --
    def update_watch(self, *, run_id: str, kr_ids: Iterable[str],
                     decide: Callable[[dict[str, Watch | None]], tuple[list[Watch], list[Alert]]]) -> list[QueuedAlert]: ...

    def finish_alerts(self, alert_ids: Iterable[int], *, run_id: str, delivered: bool) -> None: ...

    def watches(self, kr_ids: Iterable[str] | None = None, *, create: bool = True) -> dict[str, Watch]: ...

    # -- the digest (okrsync.digest): one per config file and period, claimed by the run that sends it --
    def claim_digest(self, config: str, period: datetime, run_id: str) -> bool: ...

    def finish_digest(self, config: str, period: datetime, run_id: str, *, delivered: bool) -> None: ...

    def digests(self, config: str) -> list[dict[str, Any]]: ...

    # -- the publish outbox --
    def claim_deliveries(self, run_id: str, targets: Iterable[str], kr_ids: Iterable[str] | None = None) -> list[Delivery]: ...

    def finish_deliveries(self, run_id: str, results: Mapping[int, DeliveryResult]) -> None: ...

    def delivery_states(self, targets: Iterable[str] | None = None) -> list[dict[str, Any]]: ...

    def close(self) -> None: ...


__all__ = ["OkrStore"]
