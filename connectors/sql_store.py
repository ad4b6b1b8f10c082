"""The embedded OKR store: objectives, key results, check-ins and runs in a SQL database.

The store is URL-driven: ``sqlite:///okr-sync.db`` by default, ``postgresql+psycopg://...``
at scale.  The module reads top to bottom: table definitions, schema migrations, the
:class:`SqlStore` class, :func:`open_store`.

Check-in policy of :meth:`SqlStore.write_sync` (one transaction per run, all or nothing):

- on_manual ``keep``: if the key result's latest check-in (by observed_at, then id) is a
  manual one, the automatic value is not written (``kept_manual``); else, if the latest
  *automatic* check-in has the same value, nothing is written (``unchanged``).
- on_manual ``overwrite``: the automatic value is written whenever it differs from the
  latest check-in of any kind (``unchanged`` otherwise).

Owners: each key result row keeps the config file and line that last wrote it and a hash of
that definition (``definition``, see okrsync.records.KeyResultRecord); every write_sync moves
them to the writing run's, :meth:`SqlStore.take_over` moves them before a run. The engine uses
them to refuse a second config file that defines the same key result differently.

Alerts (optional): a store used by a config with ``notify:`` also gets ``okr_watch`` (what each
key result looked like at the last run: status, failure streak, last success, alerts sent) and
``okr_alerts`` (every alert decided, and when it was delivered). These tables carry their own
version (``watch_schema_version`` in okr_meta, steps in :data:`WATCH_MIGRATIONS`) and are created
on first use, so a store that never alerts keeps exactly the core schema.

Concurrent syncs: on PostgreSQL the key result rows of a run are locked (``FOR UPDATE``,
ordered by id) before deciding, and a transaction PostgreSQL aborts as a deadlock victim is
retried; on SQLite every write transaction starts with ``BEGIN IMMEDIATE`` and waits up to a
busy timeout (30 s, or ``?timeout=`` in the URL).
"""
from __future__ import annotations

import difflib
import math
import re
from functools import lru_cache
import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from typing import Any, TypeVar

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    Date,
    DateTime,
    Dialect,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    Table,
    Text,
    TypeDecorator,
    cast,
    event,
    func,
    inspect,
    select,
    text,
)
from sqlalchemy import exc as sa_exc
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.expression import ColumnElement, FunctionElement
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Engine, create_engine, make_url
from sqlalchemy.engine.url import URL

from okrsync.alerts import Alert, QueuedAlert, Watch
from okrsync.errors import StoreError
from okrsync.records import (
    CheckinRecord,
    KeyResultRecord,
    KeyResultState,
    ObjectiveRecord,
    StoredCheckin,
    WriteReport,
)

SUPPORTED_DIALECTS = ("sqlite", "postgresql")
SQLITE_BUSY_TIMEOUT = 30.0      # seconds a writer waits for another writer's lock
POSTGRES_CONNECT_TIMEOUT = 10   # seconds
VALUE_TOLERANCE = 1e-9          # two values closer than this are "the same value"
SCHEMA_LOCK_KEY = 0x6F6B7273796E63  # PostgreSQL advisory lock held while migrating ("okrsync")
DEADLOCK_ATTEMPTS = 3           # tries of a write PostgreSQL aborted as a deadlock victim
SCHEMA_KEY = "schema_version"
WATCH_SCHEMA_KEY = "watch_schema_version"
ALERT_DELIVERY_ATTEMPTS = 5     # runs that try to deliver one alert before it is left undelivered
ALERT_CLAIM_TIMEOUT = timedelta(minutes=15)  # a run that claimed an alert and vanished releases it

T = TypeVar("T")


def _utcnow() -> datetime:
    return datetime.now(timezone.utc)


def _as_utc(value: datetime) -> datetime:
    """``value`` in UTC; a naive datetime is taken to be UTC already."""
    if value.tzinfo is None:
        return value.replace(tzinfo=timezone.utc)
    return value.astimezone(timezone.utc)


class UtcDateTime(TypeDecorator[datetime]):
    """A timestamp stored as UTC and always read back tz-aware in UTC.

    Naive datetimes are taken to be UTC. SQLite keeps no zone, so UTC is re-attached on read.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        value = _as_utc(value)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return _as_utc(value)


# --- tables ---------------------------------------------------------------------------------

metadata = MetaData()

meta_table = Table(
    "okr_meta",
    metadata,
    Column("key", Text, primary_key=True),
    Column("value", Text, nullable=False),
)

objectives_table = Table(
    "okr_objectives",
    metadata,
    Column("id", Text, primary_key=True),
    Column("title", Text, nullable=False),
    Column("owner", Text),
    Column("config_file", Text),
    Column("updated_at", UtcDateTime, nullable=False),
)

key_results_table = Table(
    "okr_key_results",
    metadata,
    Column("id", Text, primary_key=True),
    Column("objective_id", Text, ForeignKey("okr_objectives.id"), nullable=False),
    Column("title", Text, nullable=False),
    Column("source", Text),
    Column("baseline", Float, nullable=False),
    Column("target", Float, nullable=False),
    Column("unit", Text),
    Column("period_start", Date),
    Column("period_end", Date),
    Column("on_manual", Text, nullable=False, server_default="keep"),
    Column("updated_at", UtcDateTime, nullable=False),
    # version 2: who defines it (the config file and line that last wrote it, and a hash of
    # that definition: KeyResultRecord.definition), and its status thresholds
    Column("config_file", Text),
    Column("config_line", Integer),
    Column("definition", Text),
    Column("at_risk", Float),
    Column("off_track", Float),
    CheckConstraint("on_manual IN ('keep', 'overwrite')", name="ck_okr_key_results_on_manual"),
)

checkins_table = Table(
    "okr_checkins",
    metadata,
    # INTEGER on SQLite so the column is the rowid (autoincrementing), BIGINT elsewhere
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True),
    Column("kr_id", Text, ForeignKey("okr_key_results.id"), nullable=False),
    Column("value", Float, nullable=False),
    Column("progress", Float),
    Column("expected", Float),
    Column("status", Text),
    Column("observed_at", UtcDateTime, nullable=False),
    Column("source", Text),
    Column("query", Text),
    Column("link", Text),
    Column("run_id", Text),
    Column("kind", Text, nullable=False),
    Column("note", Text),
    Column("created_at", UtcDateTime, nullable=False),
    CheckConstraint("kind IN ('automatic', 'manual')", name="ck_okr_checkins_kind"),
    Index("ix_okr_checkins_kr_observed", "kr_id", "observed_at"),
)

runs_table = Table(
    "okr_runs",
    metadata,
    Column("run_id", Text, primary_key=True),
    Column("started_at", UtcDateTime, nullable=False),
    Column("finished_at", UtcDateTime, nullable=False),
    Column("config_files", JSON, nullable=False),
    Column("written", Integer, nullable=False),
    Column("unchanged", Integer, nullable=False),
    Column("kept_manual", Integer, nullable=False),
    Column("failed", Integer, nullable=False),
)

# Optional tables for alerts, versioned apart (WATCH_MIGRATIONS), created on first use.

watch_table = Table(
    "okr_watch",
    metadata,
    Column("kr_id", Text, ForeignKey("okr_key_results.id"), primary_key=True),
    Column("status", Text),
    Column("value", Float),
    Column("last_success_at", UtcDateTime),
    Column("failure_streak", Integer, nullable=False, server_default="0"),
    Column("last_error", Text),
    Column("failing_alerted", Boolean, nullable=False, server_default="0"),
    Column("stale_alerted", Boolean, nullable=False, server_default="0"),
    Column("first_seen_at", UtcDateTime),
    Column("seen_at", UtcDateTime),
)

alerts_table = Table(
    "okr_alerts",
    metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True),
    Column("kr_id", Text, ForeignKey("okr_key_results.id"), nullable=False),
    Column("kind", Text, nullable=False),
    Column("message", Text, nullable=False),
    Column("status", Text),
    Column("run_id", Text),
    Column("created_at", UtcDateTime, nullable=False),
    Column("claimed_by", Text),
    Column("claimed_at", UtcDateTime),
    Column("sent_at", UtcDateTime),
    Column("attempts", Integer, nullable=False, server_default="0"),
    Index("ix_okr_alerts_pending", "kr_id", "sent_at"),
)


# --- migrations -----------------------------------------------------------------------------
# MIGRATIONS[i] upgrades a store from schema version i to i + 1, so schema_version() is the
# length of the list. Version 0 is a store with no tables (or a meta row saying 0). Never edit a step
# that has shipped: append a new one. When a later step changes a table, replace step 1's
# create_all with the literal version-1 DDL so old stores still pass through every step.

_v1 = MetaData()
objectives_table.to_metadata(_v1)  # unchanged since version 1; the foreign key below needs it
_key_results_v1 = Table(
    "okr_key_results",
    _v1,
    Column("id", Text, primary_key=True),
    Column("objective_id", Text, ForeignKey("okr_objectives.id"), nullable=False),
    Column("title", Text, nullable=False),
    Column("source", Text),
    Column("baseline", Float, nullable=False),
    Column("target", Float, nullable=False),
    Column("unit", Text),
    Column("period_start", Date),
    Column("period_end", Date),
    Column("on_manual", Text, nullable=False, server_default="keep"),
    Column("updated_at", UtcDateTime, nullable=False),
    CheckConstraint("on_manual IN ('keep', 'overwrite')", name="ck_okr_key_results_on_manual"),
)


def _create_v1(conn: Connection) -> None:
    """Version 1: the okr_* tables and the (kr_id, observed_at) index (okr_key_results as it was)."""
    metadata.create_all(conn, tables=[objectives_table])
    _key_results_v1.create(conn)
    metadata.create_all(conn, tables=[checkins_table, runs_table])


def _add_owner_v2(conn: Connection) -> None:
    """Version 2: a key result's owner (config file, line, definition hash) and thresholds."""
    for name, sql_type in (("config_file", "TEXT"), ("config_line", "INTEGER"), ("definition", "TEXT"),
                           ("at_risk", "FLOAT"), ("off_track", "FLOAT")):
        conn.exec_driver_sql(f"ALTER TABLE okr_key_results ADD COLUMN {name} {sql_type}")


MIGRATIONS: list[Callable[[Connection], None]] = [_create_v1, _add_owner_v2]


def _create_watch_v1(conn: Connection) -> None:
    """Watch version 1: okr_watch and okr_alerts."""
    metadata.create_all(conn, tables=[watch_table, alerts_table])


WATCH_MIGRATIONS: list[Callable[[Connection], None]] = [_create_watch_v1]


def schema_version() -> int:
    """The schema version this code writes (the number of migration steps)."""
    return len(MIGRATIONS)


# --- the store ------------------------------------------------------------------------------

class SqlStore:
    """An OKR store in one SQL database, addressed by a SQLAlchemy URL."""

    def __init__(self, url: str):
        try:
            parsed = make_url(url)
        except (sa_exc.ArgumentError, ValueError):
            raise StoreError(
                "the OKR store URL is not a valid SQLAlchemy URL "
                "(expected e.g. sqlite:///okr-sync.db or postgresql+psycopg://user@host/db)"
            ) from None
        self._url: URL = parsed
        if parsed.get_backend_name() not in SUPPORTED_DIALECTS:
            raise StoreError(
                f"OKR store {self.display_url}: unsupported database "
                f"{parsed.get_backend_name()!r}; use sqlite:/// or postgresql+psycopg://"
            )
        connect_args: dict[str, Any] = {}
        if self.dialect == "sqlite" and "timeout" not in parsed.query:
            connect_args["timeout"] = SQLITE_BUSY_TIMEOUT
        if self.dialect == "postgresql" and "connect_timeout" not in parsed.query:
            connect_args["connect_timeout"] = POSTGRES_CONNECT_TIMEOUT
        try:
            self._engine: Engine = create_engine(parsed, connect_args=connect_args)
        except Exception as exc:  # a missing driver module, a bad query argument
            hint = ""
            if isinstance(exc, ModuleNotFoundError) and parsed.get_backend_name() == "postgresql":
                hint = "; install the PostgreSQL driver: pip install -e '.[postgres]'"
            raise StoreError(
                f"OKR store {self.display_url}: cannot set up the database driver: "
                f"{_one_line(exc, parsed.password)}{hint}"
            ) from exc
        if self.dialect == "sqlite":
            _install_sqlite_transactions(self._engine)

    @property
    def display_url(self) -> str:
        """The store's URL with any password masked, fit for messages and logs."""
        return self._url.render_as_string(hide_password=True)

    @property
    def dialect(self) -> str:
        """``"sqlite"`` or ``"postgresql"``."""
        return self._url.get_backend_name()

    # -- schema --

    def ensure_schema(self) -> None:
        """Create the tables on first use, or upgrade an older store step by step.

        A store written by a newer okr-sync is refused. A store already at this version is
        only read, so a read-only store can still be opened for status and history.
        """
        self._migrate(SCHEMA_KEY, MIGRATIONS)

    def ensure_watch_schema(self) -> None:
        """Create or upgrade the optional alert tables (okr_watch, okr_alerts)."""
        self.ensure_schema()
        self._migrate(WATCH_SCHEMA_KEY, WATCH_MIGRATIONS)

    def _migrate(self, key: str, steps: list[Callable[[Connection], None]]) -> None:
        """Run the steps a store lacks of one versioned part of the schema, in one transaction."""
        with self._errors("open"):
            with self._engine.connect() as conn, conn.begin():
                current = self._read_version(conn, key)
            self._check_not_newer(current, len(steps))
            if current == len(steps):
                return
            with self._write() as conn:
                if self.dialect == "postgresql":  # one migrator at a time
                    lock = text("SELECT pg_advisory_xact_lock(:key)")
                    conn.execute(lock, {"key": SCHEMA_LOCK_KEY})
                current = self._read_version(conn, key)  # another process may have migrated meanwhile
                self._check_not_newer(current, len(steps))
                if current == 0:
                    metadata.create_all(conn, tables=[meta_table])
                for step in steps[current:]:
                    step(conn)
                self._set_version(conn, len(steps), key)

    def _read_version(self, conn: Connection, key: str = SCHEMA_KEY) -> int:
        """The stored version (0: no meta table or no row yet). A version that is not a whole
        number >= 0 is refused, never rewritten: migrating from it would guess at the tables."""
        if not inspect(conn).has_table(meta_table.name):
            return 0
        row = conn.execute(select(meta_table.c.value).where(meta_table.c.key == key)).first()
        if row is None:
            return 0
        raw = row.value
        if isinstance(raw, str) and _VERSION.fullmatch(raw):
            return int(raw)
        shown = raw if not isinstance(raw, str) else _clip(raw)
        raise StoreError(
            f"OKR store {self.display_url}: okr_meta.{key} is {shown!r}, not a schema version "
            f"okr-sync writes (0 to {schema_version() if key == SCHEMA_KEY else len(WATCH_MIGRATIONS)}); "
            "the store is damaged or not an okr-sync store: restore it from a backup, "
            "or point --store at another database"
        )

    def _check_not_newer(self, version: int, known: int | None = None) -> None:
        known = schema_version() if known is None else known
        if version > known:
            raise StoreError(
                f"OKR store {self.display_url} has schema version {version}, but this okr-sync "
                f"only knows versions up to {known}: upgrade okr-sync to use this store"
            )

    def _set_version(self, conn: Connection, version: int, key: str = SCHEMA_KEY) -> None:
        self._upsert(conn, meta_table, [{"key": key, "value": str(version)}], "key")

    def check_writable(self) -> None:
        """StoreError unless the store takes a write: a transaction adds a row to okr_meta and
        rolls back (the row must be new: SQLite leaves a page it would rewrite unchanged alone, and
        so never finds its journal cannot be made). A locked, read-only or unwritable store fails
        here, before a sync measures anything; a full disk shows only when a write needs a new page."""
        with self._errors("write to"):
            with self._engine.connect().execution_options(okr_write=True) as conn, conn.begin() as transaction:
                conn.execute(meta_table.insert().values(key=f"write_check {uuid.uuid4().hex}", value=""))
                transaction.rollback()

    # -- writes --

    def write_sync(
        self,
        *,
        run_id: str,
        started_at: datetime,
        objectives: list[ObjectiveRecord],
        key_results: list[KeyResultRecord],
        checkins: list[CheckinRecord],
        config_files: list[str],
        failed: int,
    ) -> WriteReport:
        """Write one sync run in one transaction: upsert objectives and key results, add the
        check-ins the policy allows (see the module docstring), record the run.

        Check-ins of kind ``manual`` are written as given. A check-in for a key result that is
        neither in ``key_results`` nor in the store fails the run. On any failure: StoreError,
        and nothing of the run is written; a value, progress, expected, baseline or target that
        is not a finite number is refused the same way.
        """
        self._refuse_non_finite(key_results, checkins)
        now = _utcnow()
        obj_rows = _dedupe(
            {"id": o.id, "title": o.title, "owner": o.owner, "config_file": o.config_file,
             "updated_at": now}
            for o in objectives
        )
        kr_rows = _dedupe(
            {"id": k.id, "objective_id": k.objective_id, "title": k.title, "source": k.source,
             "baseline": float(k.baseline), "target": float(k.target), "unit": k.unit,
             "period_start": k.period_start, "period_end": k.period_end,
             "on_manual": k.on_manual, "updated_at": now, "config_file": k.config_file,
             "config_line": k.config_line, "definition": k.definition, "at_risk": k.at_risk,
             "off_track": k.off_track}
            for k in key_results
        )

        def work(conn: Connection) -> WriteReport:
            report = WriteReport()
            self._upsert(conn, objectives_table, obj_rows, "id")
            self._upsert(conn, key_results_table, kr_rows, "id")
            policy = self._lock_key_results(conn, {c.kr_id for c in checkins})
            for record in checkins:
                outcome = self._decide(conn, record, policy.get(record.kr_id, "keep"))
                if outcome == "written":
                    conn.execute(checkins_table.insert().values(_checkin_row(record, now)))
                getattr(report, outcome).append(record.kr_id)
            conn.execute(
                runs_table.insert().values(
                    run_id=run_id, started_at=started_at, finished_at=_utcnow(),
                    config_files=list(config_files), written=len(report.written),
                    unchanged=len(report.unchanged), kept_manual=len(report.kept_manual),
                    failed=failed,
                )
            )
            return report

        return self._transaction("write the sync run to", work)

    def take_over(self, key_results: list[KeyResultRecord]) -> None:
        """Make these records' config file, line and definition the owners of those of their key
        results the store has (the rest of each definition is written by the next sync)."""
        rows = _dedupe({"id": k.id, "config_file": k.config_file, "config_line": k.config_line,
                        "definition": k.definition} for k in key_results)

        def work(conn: Connection) -> None:
            for row in rows:
                conn.execute(key_results_table.update().where(key_results_table.c.id == row["id"])
                             .values(config_file=row["config_file"], config_line=row["config_line"],
                                     definition=row["definition"]))

        self._transaction("write to", work)

    def add_manual_checkin(
        self,
        kr_id: str,
        value: float,
        *,
        note: str | None = None,
        observed_at: datetime | None = None,
        progress: float | None = None,
        expected: float | None = None,
        status: str | None = None,
    ) -> StoredCheckin:
        """Record a value a person entered; with on_manual ``keep`` syncs will not bury it."""
        record = CheckinRecord(
            kr_id=kr_id, value=value, progress=progress, expected=expected, status=status,
            observed_at=observed_at or _utcnow(), source="manual", kind="manual", note=note,
        )
        self._refuse_non_finite([], [record])

        def work(conn: Connection) -> StoredCheckin:
            if kr_id not in self._lock_key_results(conn, {kr_id}):
                raise self._unknown_kr(conn, kr_id)
            new_id = conn.execute(
                checkins_table.insert().values(_checkin_row(record, _utcnow())).returning(checkins_table.c.id)
            ).scalar_one()
            row = conn.execute(select(*_readable_checkin_columns()).where(checkins_table.c.id == new_id)).one()
            return _stored(row._mapping)

        return self._transaction("add a manual check-in to", work)

    def _refuse_non_finite(self, key_results: Iterable[KeyResultRecord], checkins: Iterable[CheckinRecord]) -> None:
        """StoreError naming the first key result with a number that is not finite (NaN, inf, or
        not a number at all): PostgreSQL would keep it and every later read would have to doubt it."""
        fields = [(k.id, name, getattr(k, name)) for k in key_results for name in ("baseline", "target")]
        fields += [(c.kr_id, name, getattr(c, name)) for c in checkins for name in ("value", "progress", "expected")
                   if name == "value" or getattr(c, name) is not None]
        for kr_id, name, raw in fields:
            if _number(raw) is None:
                raise StoreError(
                    f"OKR store {self.display_url}: key result {kr_id!r}: {name} {_clip(repr(raw))} is not a "
                    "finite number, so nothing was written: measure it again or enter a finite value"
                )

    def _lock_key_results(self, conn: Connection, kr_ids: set[str]) -> dict[str, str]:
        """Lock the key results' rows (PostgreSQL; ordered by id against deadlocks) and
        return each known one's on_manual policy."""
        if not kr_ids:
            return {}
        rows = conn.execute(
            select(key_results_table.c.id, key_results_table.c.on_manual)
            .where(key_results_table.c.id.in_(sorted(kr_ids)))
            .order_by(key_results_table.c.id)
            .with_for_update()
        )
        return {r.id: r.on_manual for r in rows}

    def _decide(self, conn: Connection, record: CheckinRecord, on_manual: str) -> str:
        """``written``, ``unchanged`` or ``kept_manual`` for one incoming check-in."""
        if record.kind != "automatic":
            return "written"
        latest = self._latest(conn, record.kr_id)
        if latest is None or latest.invalid:  # a row the store cannot trust is no previous value
            return "written"
        if on_manual == "overwrite":
            return "unchanged" if _same(latest.value, record.value) else "written"
        if latest.kind == "manual":
            return "kept_manual"
        return "unchanged" if _same(latest.value, record.value) else "written"

    def _latest(self, conn: Connection, kr_id: str) -> StoredCheckin | None:
        """The key result's latest check-in (by observed_at, then id). A row whose observed_at
        cannot be read cannot be placed in time, so it is never the latest (it still shows in
        history); it may sort first (SQLite puts text after dates, PostgreSQL 'infinity' last)."""
        rows = conn.execute(
            select(*_readable_checkin_columns())
            .where(checkins_table.c.kr_id == kr_id)
            .order_by(checkins_table.c.observed_at.desc(), checkins_table.c.id.desc())
        )
        for row in rows:
            checkin = _stored(row._mapping)
            if checkin.observed_at is not None:
                return checkin
        return None

    # -- alerts --

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
            now = _utcnow()
            insert = postgresql.insert if self.dialect == "postgresql" else sqlite.insert
            conn.execute(insert(watch_table).on_conflict_do_nothing(index_elements=[watch_table.c.kr_id]),
                         [{"kr_id": k} for k in ids])
            rows = conn.execute(
                select(watch_table).where(watch_table.c.kr_id.in_(ids))
                .order_by(watch_table.c.kr_id).with_for_update()
            ).all()
            previous = {r.kr_id: (_watch(r._mapping) if r.seen_at is not None else None) for r in rows}
            watches, alerts = decide(previous)
            for w in watches:
                conn.execute(watch_table.update().where(watch_table.c.kr_id == w.kr_id).values(
                    status=w.status, value=w.value, last_success_at=w.last_success_at,
                    failure_streak=w.failure_streak, last_error=w.last_error,
                    failing_alerted=w.failing_alerted, stale_alerted=w.stale_alerted,
                    first_seen_at=w.first_seen_at, seen_at=w.seen_at))
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
            return [_queued(r._mapping) for r in claimed]

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
                conn.execute(mine.values(sent_at=_utcnow()))
            else:
                conn.execute(mine.values(attempts=alerts_table.c.attempts + 1, claimed_by=None, claimed_at=None))

        self._transaction("write alert state to", work)

    def watches(self, kr_ids: Iterable[str] | None = None) -> dict[str, Watch]:
        """The key results' watches (those seen by a run with alerts), by id."""
        self.ensure_watch_schema()
        query = select(watch_table).where(watch_table.c.seen_at.is_not(None))
        if kr_ids is not None:
            query = query.where(watch_table.c.kr_id.in_(sorted(set(kr_ids))))
        with self._errors("read"), self._engine.connect() as conn:
            return {r.kr_id: _watch(r._mapping) for r in conn.execute(query)}

    def alerts(self, kr_id: str | None = None) -> list[QueuedAlert]:
        """Every alert decided (oldest first), delivered or not; only ``kr_id``'s if given."""
        self.ensure_watch_schema()
        query = select(alerts_table).order_by(alerts_table.c.id)
        if kr_id is not None:
            query = query.where(alerts_table.c.kr_id == kr_id)
        with self._errors("read"), self._engine.connect() as conn:
            return [_queued(r._mapping) for r in conn.execute(query)]

    # -- reads --

    def key_results(self, kr_ids: list[str] | None = None) -> list[KeyResultState]:
        """Key results ordered by objective, then id, each with its latest check-in.

        With ``kr_ids``, only those; ids not in the store are left out.
        """
        ranked = select(
            *_readable_checkin_columns(),
            func.row_number()
            .over(partition_by=checkins_table.c.kr_id,
                  order_by=(checkins_table.c.observed_at.desc(), checkins_table.c.id.desc()))
            .label("rank"),
        ).subquery()
        last = select(ranked).where(ranked.c.rank == 1).subquery()
        query = (
            select(
                key_results_table,
                objectives_table.c.title.label("objective_title"),
                objectives_table.c.owner,
                *[c.label(f"last_{c.name}") for c in last.c if c.name != "rank"],
            )
            .join(objectives_table, objectives_table.c.id == key_results_table.c.objective_id)
            .outerjoin(last, last.c.kr_id == key_results_table.c.id)
            .order_by(key_results_table.c.objective_id, key_results_table.c.id)
        )
        if kr_ids is not None:
            query = query.where(key_results_table.c.id.in_(kr_ids))
        states = []
        with self._errors("read"), self._engine.connect() as conn:
            for row in conn.execute(query).all():
                m = row._mapping
                last_row = {c.name: m[f"last_{c.name}"] for c in checkins_table.c}
                last = _stored(last_row) if last_row["id"] is not None else None
                if last is not None and last.observed_at is None:  # cannot be the latest: see _latest
                    last = self._latest(conn, m["id"])
                states.append(
                    KeyResultState(
                        objective_id=m["objective_id"], objective_title=m["objective_title"],
                        owner=m["owner"], kr_id=m["id"], title=m["title"], baseline=m["baseline"],
                        target=m["target"], unit=m["unit"], source=m["source"], last=last,
                        period_start=m["period_start"], period_end=m["period_end"],
                        at_risk=_number(m["at_risk"]), off_track=_number(m["off_track"]),
                        config_file=m["config_file"], config_line=m["config_line"], definition=m["definition"],
                    )
                )
        return states

    def history(self, kr_id: str) -> list[StoredCheckin]:
        """Every check-in of one key result, oldest first (by observed_at, then id)."""
        with self._errors("read"), self._engine.connect() as conn:
            known = select(key_results_table.c.id).where(key_results_table.c.id == kr_id)
            if conn.scalar(known) is None:
                raise self._unknown_kr(conn, kr_id)
            rows = conn.execute(
                select(*_readable_checkin_columns())
                .where(checkins_table.c.kr_id == kr_id)
                .order_by(checkins_table.c.observed_at, checkins_table.c.id)
            ).all()
        return [_stored(r._mapping) for r in rows]

    def runs(self, limit: int = 20) -> list[dict[str, Any]]:
        """The most recent runs, newest first."""
        with self._errors("read"), self._engine.connect() as conn:
            rows = conn.execute(
                select(runs_table)
                .order_by(runs_table.c.started_at.desc(), runs_table.c.run_id.desc())
                .limit(limit)
            ).all()
        return [dict(r._mapping) for r in rows]

    def close(self) -> None:
        """Release the store's connections."""
        self._engine.dispose()

    def __enter__(self) -> SqlStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- helpers --

    def _transaction(self, action: str, work: Callable[[Connection], T]) -> T:
        """Run ``work`` in one write transaction; retried when PostgreSQL aborts it as a
        deadlock victim or serialization failure, otherwise a StoreError on failure."""
        for attempt in range(1, DEADLOCK_ATTEMPTS + 1):
            with self._errors(action):
                try:
                    with self._write() as conn:
                        return work(conn)
                except sa_exc.OperationalError as exc:
                    sqlstate = getattr(exc.orig, "sqlstate", None)
                    if attempt == DEADLOCK_ATTEMPTS or sqlstate not in ("40P01", "40001"):
                        raise
        raise AssertionError("unreachable")

    @contextmanager
    def _write(self) -> Iterator[Connection]:
        """A write transaction: BEGIN IMMEDIATE on SQLite; committed on success."""
        with self._engine.connect().execution_options(okr_write=True) as conn, conn.begin():
            yield conn

    def _upsert(self, conn: Connection, table: Table, rows: list[dict[str, Any]], key: str) -> None:
        """Insert rows, or update every other column of rows whose key exists."""
        if not rows:
            return
        insert = postgresql.insert if self.dialect == "postgresql" else sqlite.insert
        stmt = insert(table)
        stmt = stmt.on_conflict_do_update(
            index_elements=[table.c[key]],
            set_={name: stmt.excluded[name] for name in rows[0] if name != key},
        )
        conn.execute(stmt, rows)

    def _unknown_kr(self, conn: Connection, kr_id: str) -> StoreError:
        known = list(conn.scalars(select(key_results_table.c.id).order_by(key_results_table.c.id)))
        close = difflib.get_close_matches(kr_id, known, n=5, cutoff=0.5)
        hint = f" Close ids: {', '.join(close)}." if close else ""
        return StoreError(
            f"OKR store {self.display_url} has no key result {kr_id!r}: check the id, "
            f"or run a sync first if it is new.{hint}"
        )

    @contextmanager
    def _errors(self, action: str) -> Iterator[None]:
        """Turn a database failure into a one-line StoreError naming the store."""
        try:
            yield
        except sa_exc.SQLAlchemyError as exc:
            reason, hint = _explain(exc, self._url.password)
            raise StoreError(
                f"could not {action} the OKR store {self.display_url}: {reason}"
                + (f"; {hint}" if hint else "")
                + (" (nothing was written)" if action.startswith(("write", "add")) else "")
            ) from exc


def open_store(url: str) -> SqlStore:
    """A store for ``url`` with its schema created or upgraded."""
    store = SqlStore(url)
    try:
        store.ensure_schema()
    except BaseException:
        store.close()
        raise
    return store


# --- module helpers -------------------------------------------------------------------------

def _install_sqlite_transactions(engine: Engine) -> None:
    """SQLAlchemy's pysqlite recipe: we emit BEGIN ourselves (IMMEDIATE for writes, so two
    writers queue on the busy timeout instead of failing on upgrade), with foreign keys on."""

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # sqlite3 must not emit BEGIN itself
        dbapi_connection.execute("PRAGMA foreign_keys = ON")

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        write = conn.get_execution_options().get("okr_write", False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")


def _dedupe(rows: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows by id (the last one wins), sorted by id so concurrent writers lock in one order."""
    by_id = {row["id"]: row for row in rows}
    return [by_id[k] for k in sorted(by_id)]


def _same(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=VALUE_TOLERANCE, abs_tol=VALUE_TOLERANCE)


def _checkin_row(record: CheckinRecord, created_at: datetime) -> dict[str, Any]:
    return {
        "kr_id": record.kr_id, "value": float(record.value), "progress": record.progress,
        "expected": record.expected, "status": record.status, "observed_at": record.observed_at,
        "source": record.source, "query": record.query, "link": record.link,
        "run_id": record.run_id, "kind": record.kind, "note": record.note,
        "created_at": created_at,
    }


# --- reading rows anyone may have written ----------------------------------------------------
# SQLite is typeless and a row may be edited by hand or written by an older version, so check-ins
# are read with their numbers and timestamps raw (_readable_checkin_columns) and judged in Python
# (_stored): a bad field makes the check-in invalid, never a crash.

_VERSION = re.compile(r"[0-9]{1,9}")
_NUMBER_COLUMNS = ("value", "progress", "expected")
_MOMENT_COLUMNS = ("observed_at", "created_at")


class _MomentText(FunctionElement[str]):
    """A timestamp column as text in UTC, whatever the row holds: SQLite's stored text as is;
    PostgreSQL's formatted (NULL for 'infinity'), since its driver refuses to load
    'infinity' or years past 9999 as Python datetimes."""

    type = Text()
    inherit_cache = True
    name = "okr_moment_text"


@compiles(_MomentText, "sqlite")
def _moment_text_sqlite(element: _MomentText, compiler: Any, **kw: Any) -> str:
    return compiler.process(cast(list(element.clauses)[0], Text), **kw)


@compiles(_MomentText, "postgresql")
def _moment_text_postgresql(element: _MomentText, compiler: Any, **kw: Any) -> str:
    column = compiler.process(list(element.clauses)[0], **kw)
    return f"to_char({column} AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US AD')"


@lru_cache(maxsize=1)
def _readable_checkin_columns() -> tuple[ColumnElement[Any], ...]:
    """okr_checkins' columns, timestamps as text (see _MomentText) and numbers without conversion.
    Built once: the same column objects let SQLAlchemy reuse its compiled statements."""
    return tuple(_MomentText(c).label(c.name) if c.name in _MOMENT_COLUMNS else c for c in checkins_table.c)


def _number(raw: Any) -> float | None:
    """``raw`` as a finite float, or None (NULL, NaN, inf, text, bytes, a boolean)."""
    if isinstance(raw, bool) or not isinstance(raw, (int, float)):
        return None
    try:
        number = float(raw)
    except OverflowError:  # an int too large for a float
        return None
    return number if math.isfinite(number) else None


def _moment(raw: Any) -> datetime | None:
    """A stored timestamp as a UTC datetime, or None if it is not one."""
    if isinstance(raw, datetime):
        return _as_utc(raw)
    if not isinstance(raw, str):
        return None
    text_ = raw.strip()
    if text_.endswith(" BC"):
        return None
    try:
        return _as_utc(datetime.fromisoformat(text_.removesuffix(" AD")))
    except ValueError:
        return None


def _text(raw: Any) -> str | None:
    """A text field as str (SQLite may hand back a number or bytes from a hand-edited row)."""
    return raw if raw is None or isinstance(raw, str) else _clip(repr(raw))


def _clip(text_: str, limit: int = 60) -> str:
    return text_ if len(text_) <= limit else text_[: limit - 1] + "…"


def _stored(row: Any) -> StoredCheckin:
    """A check-in row as read (see _readable_checkin_columns), judged: ``invalid`` says what is wrong."""
    problems = []
    numbers: dict[str, float | None] = {}
    for name in _NUMBER_COLUMNS:
        raw = row[name]
        numbers[name] = _number(raw)
        if numbers[name] is None and (raw is not None or name == "value"):
            problems.append(f"{name} {_clip(repr(raw))} is not a finite number")
    observed_at = _moment(row["observed_at"])
    if observed_at is None:
        problems.append(f"observed_at {_clip(repr(row['observed_at']))} is not a date and time")
    invalid = "; ".join(problems) or None
    return StoredCheckin(
        kr_id=row["kr_id"], value=None if invalid else numbers["value"], progress=numbers["progress"],
        expected=numbers["expected"], status=_text(row["status"]), observed_at=observed_at,
        source=_text(row["source"]), query=_text(row["query"]), link=_text(row["link"]),
        run_id=_text(row["run_id"]), kind=_text(row["kind"]), note=_text(row["note"]), id=row["id"],
        created_at=_moment(row["created_at"]), invalid=invalid,
    )


def _watch(row: Any) -> Watch:
    return Watch(
        kr_id=row["kr_id"], status=row["status"], value=row["value"],
        last_success_at=row["last_success_at"], failure_streak=row["failure_streak"],
        last_error=row["last_error"], failing_alerted=bool(row["failing_alerted"]),
        stale_alerted=bool(row["stale_alerted"]), first_seen_at=row["first_seen_at"],
        seen_at=row["seen_at"],
    )


def _queued(row: Any) -> QueuedAlert:
    return QueuedAlert(
        kr_id=row["kr_id"], kind=row["kind"], message=row["message"], status=row["status"],
        id=row["id"], run_id=row["run_id"], created_at=row["created_at"], sent_at=row["sent_at"],
        attempts=row["attempts"],
    )


def _one_line(exc: BaseException, password: str | None) -> str:
    """The first line of an error's message, without the driver's SQL dump or a password."""
    orig = getattr(exc, "orig", None) or exc
    lines = [ln.strip() for ln in str(orig).splitlines() if ln.strip()]
    line = lines[0] if lines else type(orig).__name__
    if password:
        line = line.replace(password, "***")
    return line


_HINTS: list[tuple[tuple[str, ...], str]] = [
    (("readonly", "read-only", "read only"),
     "the store is read-only: check the file's permissions and the URL (mode=ro)"),
    (("database is locked", "lock timeout"),
     ("another process held the store past the busy timeout: wait for the other sync to "
      "finish, or raise ?timeout= in the URL")),
    (("unable to open database file",),
     "check that the store file's directory exists and is writable"),
    (("disk is full", "no space left", "disk full"), "free some disk space"),
    (("no such table", 'relation "okr_'),
     "the store has no okr-sync tables yet: run a sync first (or check the URL)"),
    (("does not exist",), "check the URL's database name and user"),
    (("connection refused", "could not connect", "connection to server", "timeout expired"),
     "check that the database server is running and the URL's host, port and user"),
    (("constraint", "violates", "foreign key"),
     ("a record broke a rule of the store (unknown key result or objective, bad kind or "
      "on_manual, duplicate run id)")),
]


def _explain(exc: sa_exc.SQLAlchemyError, password: str | None) -> tuple[str, str | None]:
    """A one-line reason and a hint on what to check."""
    reason = _one_line(exc, password)
    lowered = reason.lower()
    for needles, hint in _HINTS:
        if any(n in lowered for n in needles):
            return reason, hint
    return reason, None


__all__ = ["MIGRATIONS", "WATCH_MIGRATIONS", "SqlStore", "open_store", "schema_version"]
