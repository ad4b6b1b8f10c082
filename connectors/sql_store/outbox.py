"""The publish outbox of the embedded SQL store (a mixin of SqlStore).

A check-in to publish is queued here, one row per publish target, in the same transaction that
writes the check-in (SqlStore.write_sync calls `_queue`). After the write a run claims the pending
rows of its targets (`claim_deliveries`), hands them to the targets, and records each outcome
(`finish_deliveries`): ``delivered``, ``kept_manual`` (the tool showed a newer manual value), or a
failure, which leaves the row pending with one more attempt and the error, for the next run. A claim
lasts OUTBOX_CLAIM_TIMEOUT, so a run that vanished mid-delivery releases its rows; the idempotency key
of each row lets a target recognise a delivery it already took.

A key result mapped to a target for the first time (no row for that pair yet) gets its latest
check-in queued, so adding a target publishes the current values at once.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import case, func, select
from sqlalchemy.engine import Connection

from connectors.sql_store.rows import chunks, readable_checkin_columns, stored
from connectors.sql_store.schema import (
    checkins_table,
    key_results_table,
    objectives_table,
    outbox_table,
    utcnow,
)
from okrsync.publish import Delivery, DeliveryResult, idempotency_key
from okrsync.records import CheckinRecord

OUTBOX_CLAIM_TIMEOUT = timedelta(minutes=15)   # a run that claimed deliveries and vanished releases them

Targets = Mapping[str, Sequence[tuple[str, str | None]]]   # kr_id -> [(target name, external id)]


class Outbox:
    """okr_outbox; needs SqlStore's _transaction, _errors, _engine, _latest_of."""

    def _queue(self, conn: Connection, written: Sequence[tuple[int, CheckinRecord]], publish: Targets,
               now: datetime) -> int:
        """Queue the check-ins just written for their key results' targets, and the latest check-in of
        each key result newly mapped to a target. Returns the rows queued."""
        if not publish:
            return 0
        rows: list[dict[str, Any]] = []
        queued: set[tuple[str, str]] = set()
        for checkin_id, record in written:
            for target, external_id in publish.get(record.kr_id, ()):
                rows.append(_row(target, record.kr_id, checkin_id, external_id, record.observed_at, record.value, now))
                queued.add((target, record.kr_id))
        kr_ids = sorted(publish)
        known = set()
        for chunk in chunks(kr_ids):
            known |= {(r.target, r.kr_id) for r in conn.execute(
                select(outbox_table.c.target, outbox_table.c.kr_id).distinct().where(outbox_table.c.kr_id.in_(chunk)))}
        fresh = {kr_id: [(t, e) for t, e in publish[kr_id] if (t, kr_id) not in known and (t, kr_id) not in queued]
                 for kr_id in kr_ids}
        fresh = {kr_id: pairs for kr_id, pairs in fresh.items() if pairs}
        latest_of = self._latest_of(conn, list(fresh)) if fresh else {}
        for kr_id, pairs in fresh.items():
            latest = latest_of.get(kr_id)
            if latest is None or latest.invalid:
                continue
            for target, external_id in pairs:
                rows.append(_row(target, kr_id, latest.id, external_id, latest.observed_at, latest.value, now))
        if rows:
            conn.execute(outbox_table.insert(), rows)
        return len(rows)

    def _queue_for_known_targets(self, conn: Connection, checkin_id: int, record: CheckinRecord, now: datetime) -> None:
        """A check-in written outside a sync (a manual one) goes to every target the key result was
        published to before, with the external id used last."""
        last = {r.target: r.external_id for r in conn.execute(
            select(outbox_table.c.target, outbox_table.c.external_id)
            .where(outbox_table.c.kr_id == record.kr_id).order_by(outbox_table.c.id))}
        rows = [_row(t, record.kr_id, checkin_id, e, record.observed_at, record.value, now) for t, e in sorted(last.items())]
        if rows:
            conn.execute(outbox_table.insert(), rows)

    def claim_deliveries(self, run_id: str, targets: Iterable[str], kr_ids: Iterable[str] | None = None) -> list[Delivery]:
        """Claim the pending deliveries of these targets (of these key results, if given) for `run_id`:
        oldest check-in first per target. Rows another live run holds are left to it."""
        names = sorted(set(targets))
        if not names:
            return []
        ids = None if kr_ids is None else sorted(set(kr_ids))

        def work(conn: Connection) -> list[Delivery]:
            now = utcnow()
            where = [outbox_table.c.target.in_(names), outbox_table.c.state == "pending"]
            if ids is not None:
                where.append(outbox_table.c.kr_id.in_(ids))
            free = (outbox_table.c.claimed_by.is_(None)) | (outbox_table.c.claimed_at < now - OUTBOX_CLAIM_TIMEOUT)
            conn.execute(outbox_table.update().where(*where, free).values(claimed_by=run_id, claimed_at=now))
            rows = conn.execute(
                select(outbox_table, *[c.label(f"c_{c.name}") for c in readable_checkin_columns()],
                       key_results_table.c.title, key_results_table.c.objective_id, key_results_table.c.baseline,
                       key_results_table.c.target.label("kr_target"), key_results_table.c.unit,
                       key_results_table.c.period_start, key_results_table.c.period_end, key_results_table.c.on_manual,
                       objectives_table.c.title.label("objective_title"))
                .join(checkins_table, checkins_table.c.id == outbox_table.c.checkin_id)
                .join(key_results_table, key_results_table.c.id == outbox_table.c.kr_id)
                .join(objectives_table, objectives_table.c.id == key_results_table.c.objective_id)
                .where(outbox_table.c.claimed_by == run_id, outbox_table.c.state == "pending")
                .order_by(outbox_table.c.target, checkins_table.c.observed_at, outbox_table.c.id)
            ).all()
            pairs = sorted({(r.target, r.kr_id) for r in rows})
            last_sent = self._last_sent(conn, pairs)
            out = []
            for r in rows:
                m = r._mapping
                checkin = stored({c.name: m[f"c_{c.name}"] for c in checkins_table.c})
                if checkin.invalid or checkin.value is None or checkin.observed_at is None:
                    conn.execute(outbox_table.update().where(outbox_table.c.id == m["id"]).values(
                        attempts=outbox_table.c.attempts + 1, claimed_by=None, claimed_at=None, updated_at=now,
                        last_error=f"the check-in cannot be read ({checkin.invalid}): fix or delete that row"))
                    continue
                sent_value, sent_at = last_sent.get((m["target"], m["kr_id"]), (None, None))
                out.append(Delivery(
                    id=m["id"], target=m["target"], kr_id=m["kr_id"], external_id=m["external_id"],
                    idempotency_key=m["idempotency_key"], value=checkin.value, progress=checkin.progress,
                    expected=checkin.expected, status=checkin.status, observed_at=checkin.observed_at,
                    kind=checkin.kind or "automatic", title=m["title"], objective_id=m["objective_id"],
                    objective_title=m["objective_title"], baseline=m["baseline"], target_value=m["kr_target"],
                    unit=m["unit"], period_start=m["period_start"], period_end=m["period_end"],
                    on_manual=m["on_manual"], link=checkin.link, note=checkin.note, run_id=checkin.run_id,
                    last_sent_value=sent_value, last_sent_at=sent_at, attempts=m["attempts"]))
            return out

        return self._transaction("claim deliveries in", work)

    def _last_sent(self, conn: Connection, pairs: list[tuple[str, str]]) -> dict[tuple[str, str], tuple[float, datetime]]:
        """What okr-sync last delivered to each (target, key result), and when."""
        if not pairs:
            return {}
        found: dict[tuple[str, str], tuple[float, datetime]] = {}
        targets = sorted({t for t, _ in pairs})
        for chunk in chunks(sorted({k for _, k in pairs})):
            for r in conn.execute(
                select(outbox_table.c.target, outbox_table.c.kr_id, outbox_table.c.sent_value, outbox_table.c.delivered_at)
                .where(outbox_table.c.state == "delivered", outbox_table.c.target.in_(targets),
                       outbox_table.c.kr_id.in_(chunk))
                .order_by(outbox_table.c.delivered_at, outbox_table.c.id)
            ):
                found[(r.target, r.kr_id)] = (r.sent_value, r.delivered_at)
        return found

    def finish_deliveries(self, run_id: str, results: Mapping[int, DeliveryResult]) -> None:
        """Record what the targets did with this run's claimed deliveries (see the module docstring)."""
        if not results:
            return

        def work(conn: Connection) -> None:
            now = utcnow()
            for outbox_id, result in sorted(results.items()):
                mine = outbox_table.update().where(outbox_table.c.id == outbox_id, outbox_table.c.claimed_by == run_id,
                                                   outbox_table.c.state == "pending")
                if result.outcome == "delivered":
                    conn.execute(mine.values(state="delivered", sent_value=result.sent_value, delivered_at=now,
                                             updated_at=now, last_error=None, claimed_by=None, claimed_at=None))
                elif result.outcome == "kept_manual":
                    conn.execute(mine.values(state="kept_manual", tool_value=result.tool_value, delivered_at=now,
                                             updated_at=now, last_error=result.message, claimed_by=None, claimed_at=None))
                else:
                    conn.execute(mine.values(attempts=outbox_table.c.attempts + 1, last_error=result.message,
                                             updated_at=now, claimed_by=None, claimed_at=None))

        self._transaction("write delivery state to", work)

    def delivery_states(self, targets: Iterable[str] | None = None) -> list[dict[str, Any]]:
        """Per target: pending (of which failing: tried and failed at least once), delivered, kept_manual,
        the oldest pending check-in's time and the latest error; ordered by target."""
        tried = func.sum(case((outbox_table.c.attempts > 0, 1), else_=0)).label("tried")
        query = (select(outbox_table.c.target, outbox_table.c.state, tried,
                        func.count().label("n"), func.min(outbox_table.c.created_at).label("oldest"))
                 .group_by(outbox_table.c.target, outbox_table.c.state))
        if targets is not None:
            query = query.where(outbox_table.c.target.in_(sorted(set(targets))))
        with self._errors("read"), self._engine.connect() as conn:
            states: dict[str, dict[str, Any]] = {}
            for r in conn.execute(query):
                s = states.setdefault(r.target, {"target": r.target, "pending": 0, "failing": 0, "delivered": 0,
                                                 "kept_manual": 0, "oldest_pending": None, "last_error": None})
                s[r.state] += r.n
                if r.state == "pending":
                    s["failing"] += int(r.tried or 0)
                    s["oldest_pending"] = r.oldest
            for name, s in states.items():
                if s["failing"]:
                    s["last_error"] = conn.scalar(
                        select(outbox_table.c.last_error)
                        .where(outbox_table.c.target == name, outbox_table.c.state == "pending",
                               outbox_table.c.attempts > 0)
                        .order_by(outbox_table.c.updated_at.desc(), outbox_table.c.id.desc()).limit(1))
        return [states[k] for k in sorted(states)]

    def deliveries(self, kr_id: str) -> list[dict[str, Any]]:
        """Every delivery of one key result's check-ins (oldest first): target, check-in, state, errors."""
        with self._errors("read"), self._engine.connect() as conn:
            rows = conn.execute(select(outbox_table).where(outbox_table.c.kr_id == kr_id)
                                .order_by(outbox_table.c.id)).all()
        return [{k: v for k, v in r._mapping.items() if k not in ("claimed_by", "claimed_at")} for r in rows]


def _row(target: str, kr_id: str, checkin_id: int, external_id: str | None, observed_at: datetime, value: float,
         now: datetime) -> dict[str, Any]:
    return {"target": target, "kr_id": kr_id, "checkin_id": checkin_id, "external_id": external_id,
            "idempotency_key": idempotency_key(target, kr_id, observed_at, value), "state": "pending",
            "attempts": 0, "created_at": now, "updated_at": now}


