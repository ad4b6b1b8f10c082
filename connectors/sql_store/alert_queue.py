"""The alert queue of the embedded SQL store (a mixin of SqlStore).

A store used by a config with ``notify:`` also gets ``okr_watch`` (what each key result looked like
at the last run: status, failure streak, last success, alerts sent), ``okr_alerts`` (every alert
decided, and when it was delivered) and ``okr_digests`` (each config's digest per period, claimed by
the run that sends it). These tables carry their own version (``watch_schema_version``
in okr_meta, steps in schema.WATCH_MIGRATIONS) and are created on first use, so a store that never
alerts keeps exactly the core schema.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.engine import Connection

from connectors.sql_store.rows import queued_row, upsert_insert, watch_row
from connectors.sql_store.schema import WATCH_SCHEMA_KEY, alerts_table, digests_table, utcnow, watch_table
from okrsync.alerts import Alert, QueuedAlert, Watch

ALERT_DELIVERY_ATTEMPTS = 5     # runs that try to deliver one alert before it is left undelivered
ALERT_CLAIM_TIMEOUT = timedelta(minutes=15)  # a run that claimed an alert and vanished releases it


class AlertQueue:
    """okr_watch and okr_alerts; needs SqlStore's _transaction, _errors, _engine, dialect."""


    def update_watch(
        self,
        *,
        run_id: str,
        kr_ids: Iterable[str],
        decide: Callable[[dict[str, Watch | None]], tuple[list[Watch], list[Alert]]],
    ) -> list[QueuedAlert]:
        """Apply one run to the key results' watches and queue the alerts due, in one transaction.

        The watch rows are locked (PostgreSQL ``FOR UPDATE``, in id order; SQLite ``BEGIN
        IMMEDIATE``) while ``decide`` sees the previous watches (None: never seen) and returns
        the new ones and the alerts due, so two concurrent runs never decide the same change
        twice. Returns the alerts this run must deliver: its own, plus older undelivered ones of
        these key results that no live run holds (claimed by ``run_id``; see finish_alerts).
        """
        ids = sorted(set(kr_ids))
        if not ids:
            return []
        self.ensure_watch_schema()

        def work(conn: Connection) -> list[QueuedAlert]:
            now = utcnow()
            insert = upsert_insert(self.dialect)
            conn.execute(insert(watch_table).on_conflict_do_nothing(index_elements=[watch_table.c.kr_id]),
                         [{"kr_id": k} for k in ids])
            rows = conn.execute(
                select(watch_table).where(watch_table.c.kr_id.in_(ids))
                .order_by(watch_table.c.kr_id).with_for_update()
            ).all()
            previous = {r.kr_id: (watch_row(r._mapping) if r.seen_at is not None else None) for r in rows}
            watches, alerts = decide(previous)
            for w in watches:
                conn.execute(watch_table.update().where(watch_table.c.kr_id == w.kr_id).values(
                    status=w.status, value=w.value, last_success_at=w.last_success_at,
                    failure_streak=w.failure_streak, last_error=w.last_error,
                    failing_alerted=w.failing_alerted, stale_alerted=w.stale_alerted,
                    first_seen_at=w.first_seen_at, seen_at=w.seen_at, forecast=w.forecast))
            if alerts:
                conn.execute(alerts_table.insert(), [
                    {"kr_id": a.kr_id, "kind": a.kind, "message": a.message, "status": a.status,
                     "run_id": run_id, "created_at": now, "claimed_by": run_id, "claimed_at": now}
                    for a in alerts])
            conn.execute(
                alerts_table.update()
                .where(alerts_table.c.kr_id.in_(ids), alerts_table.c.sent_at.is_(None),
                       alerts_table.c.attempts < ALERT_DELIVERY_ATTEMPTS,
                       (alerts_table.c.claimed_by.is_(None)) | (alerts_table.c.claimed_at < now - ALERT_CLAIM_TIMEOUT))
                .values(claimed_by=run_id, claimed_at=now))
            claimed = conn.execute(
                select(alerts_table).where(alerts_table.c.claimed_by == run_id, alerts_table.c.sent_at.is_(None))
                .order_by(alerts_table.c.id)).all()
            return [queued_row(r._mapping) for r in claimed]

        return self._transaction("write alert state to", work)

    def finish_alerts(self, alert_ids: Iterable[int], *, run_id: str, delivered: bool) -> None:
        """Mark claimed alerts delivered, or release them (one more failed attempt) for a later run."""
        ids = sorted(set(alert_ids))
        if not ids:
            return

        def work(conn: Connection) -> None:
            mine = alerts_table.update().where(alerts_table.c.id.in_(ids), alerts_table.c.claimed_by == run_id,
                                               alerts_table.c.sent_at.is_(None))
            if delivered:
                conn.execute(mine.values(sent_at=utcnow()))
            else:
                conn.execute(mine.values(attempts=alerts_table.c.attempts + 1, claimed_by=None, claimed_at=None))

        self._transaction("write alert state to", work)

    def watches(self, kr_ids: Iterable[str] | None = None, *, create: bool = True) -> dict[str, Watch]:
        """The key results' watches (those seen by a run with alerts), by id. With ``create=False`` a
        store that never alerted gives {} and is left as it is (a report only reads)."""
        if create:
            self.ensure_watch_schema()
        query = select(watch_table).where(watch_table.c.seen_at.is_not(None))
        if kr_ids is not None:
            query = query.where(watch_table.c.kr_id.in_(sorted(set(kr_ids))))
        with self._errors("read"), self._engine.connect() as conn:
            if not create and self._read_version(conn, WATCH_SCHEMA_KEY) == 0:
                return {}
            return {r.kr_id: watch_row(r._mapping) for r in conn.execute(query)}

    def alerts(self, kr_id: str | None = None) -> list[QueuedAlert]:
        """Every alert decided (oldest first), delivered or not; only ``kr_id``'s if given."""
        self.ensure_watch_schema()
        query = select(alerts_table).order_by(alerts_table.c.id)
        if kr_id is not None:
            query = query.where(alerts_table.c.kr_id == kr_id)
        with self._errors("read"), self._engine.connect() as conn:
            return [queued_row(r._mapping) for r in conn.execute(query)]

    # -- the digest: one per config file and period --

    def claim_digest(self, config: str, period: datetime, run_id: str) -> bool:
        """Claim the digest of ``config`` for ``period`` (the cron tick it belongs to): True for exactly one
        caller while it is unsent and unclaimed (a claim older than ALERT_CLAIM_TIMEOUT is released, and
        a period tried ALERT_DELIVERY_ATTEMPTS times is given up). Two overlapping runs: one gets it."""
        self.ensure_watch_schema()

        def work(conn: Connection) -> bool:
            now = utcnow()
            insert = upsert_insert(self.dialect)
            conn.execute(insert(digests_table).on_conflict_do_nothing(
                index_elements=[digests_table.c.config, digests_table.c.period]),
                [{"config": config, "period": period, "created_at": now}])
            claimed = conn.execute(
                digests_table.update()
                .where(digests_table.c.config == config, digests_table.c.period == period,
                       digests_table.c.sent_at.is_(None), digests_table.c.attempts < ALERT_DELIVERY_ATTEMPTS,
                       (digests_table.c.claimed_by.is_(None)) | (digests_table.c.claimed_at < now - ALERT_CLAIM_TIMEOUT))
                .values(claimed_by=run_id, claimed_at=now))
            return claimed.rowcount == 1

        return self._transaction("write digest state to", work)

    def finish_digest(self, config: str, period: datetime, run_id: str, *, delivered: bool) -> None:
        """Mark a claimed digest sent, or release it (one more failed attempt) for a later run."""
        def work(conn: Connection) -> None:
            mine = digests_table.update().where(digests_table.c.config == config, digests_table.c.period == period,
                                                digests_table.c.claimed_by == run_id, digests_table.c.sent_at.is_(None))
            if delivered:
                conn.execute(mine.values(sent_at=utcnow()))
            else:
                conn.execute(mine.values(attempts=digests_table.c.attempts + 1, claimed_by=None, claimed_at=None))

        self._transaction("write digest state to", work)

    def digests(self, config: str) -> list[dict]:
        """The config's digests, newest period first: {period, sent_at, attempts, claimed_by}."""
        self.ensure_watch_schema()
        query = (select(digests_table.c.period, digests_table.c.sent_at, digests_table.c.attempts,
                        digests_table.c.claimed_by)
                 .where(digests_table.c.config == config).order_by(digests_table.c.period.desc()))
        with self._errors("read"), self._engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(query)]
