"""The embedded SQL store's class: opening, schema upgrades, writes and reads.

Check-in policy of :meth:`SqlStore.write_sync` (one transaction per run, all or nothing): each
incoming automatic check-in is decided by :func:`okrsync.policy.decide` against the key result's
latest check-in (by observed_at, then id; a manual one counts as manual). A back-dated one
(observed before its run started: ``--as-of`` a past moment) is decided against the check-in just
before it in time instead, the latest one observed at or before it, so it is compared with what the
key result showed then; being in the past, it never becomes the latest, and the next run is compared
with the latest one, not with it:

- on_manual ``keep``: if that check-in is a manual one, the automatic value is not written
  (``kept_manual``); else, if it has the same value and the same status, nothing is written
  (``unchanged``); the same value with another status is written.
- on_manual ``overwrite``: the automatic value is written whenever its value or status differs
  from that check-in of any kind (``unchanged`` otherwise).

Check-ins of kind ``backfill`` (history filled in by ``okr-sync backfill``) are written unless the
key result already has a check-in observed at that very moment (``unchanged``), so a backfill run
again writes nothing new; they are never queued for publish targets unless ``publish`` says so.

Owners: each key result row keeps the config file and line that last wrote it and a hash of
that definition (``definition``, see okrsync.records.KeyResultRecord); every write_sync moves
them to the writing run's, :meth:`SqlStore.take_over` moves them before a run. The engine uses
them to refuse a second config file that defines the same key result differently.

Concurrent syncs: on PostgreSQL the key result rows of a run are locked (``FOR UPDATE``,
ordered by id) before deciding, and a transaction PostgreSQL aborts as a deadlock victim is
retried; on SQLite every write transaction starts with ``BEGIN IMMEDIATE`` and waits up to a
busy timeout (30 s, or ``?timeout=`` in the URL).
"""
from __future__ import annotations

import difflib
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy import Table, event, inspect, select, text
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import Connection, Engine, create_engine, make_url
from sqlalchemy.engine.url import URL
from sqlalchemy.sql.expression import ColumnElement, Select

from connectors.sql_store import schema
from connectors.sql_store.alert_queue import AlertQueue
from connectors.sql_store.errors import explain, one_line
from connectors.sql_store.outbox import Outbox
from connectors.sql_store.rows import (
    VERSION_TEXT,
    checkin_row,
    chunks,
    clip,
    dedupe,
    moment,
    number,
    readable_checkin_columns,
    stored,
    upsert_insert,
)
from connectors.sql_store.schema import (
    SCHEMA_KEY,
    WATCH_SCHEMA_KEY,
    as_utc,
    checkins_table,
    key_results_table,
    meta_table,
    metadata,
    objectives_table,
    runs_table,
    utcnow,
)
from okrsync import policy
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
SCHEMA_LOCK_KEY = 0x6F6B7273796E63  # PostgreSQL advisory lock held while migrating ("okrsync")
DEADLOCK_ATTEMPTS = 3           # tries of a write PostgreSQL aborted as a deadlock victim
WRITE_CHUNK = 500              # rows a write statement carries: a run of 5,000 key results writes in tenths

T = TypeVar("T")


_IDS_PER_QUERY = 500


class SqlStore(AlertQueue, Outbox):
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
                f"{one_line(exc, parsed.password)}{hint}"
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
        self._migrate(SCHEMA_KEY, schema.MIGRATIONS)

    def ensure_watch_schema(self) -> None:
        """Create or upgrade the optional alert tables (okr_watch, okr_alerts)."""
        self.ensure_schema()
        self._migrate(WATCH_SCHEMA_KEY, schema.WATCH_MIGRATIONS)

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
        if isinstance(raw, str) and VERSION_TEXT.fullmatch(raw):
            return int(raw)
        shown = raw if not isinstance(raw, str) else clip(raw)
        raise StoreError(
            f"OKR store {self.display_url}: okr_meta.{key} is {shown!r}, not a schema version "
            f"okr-sync writes (0 to {schema.schema_version() if key == SCHEMA_KEY else len(schema.WATCH_MIGRATIONS)}); "
            "the store is damaged or not an okr-sync store: restore it from a backup, "
            "or point --store at another database"
        )

    def _check_not_newer(self, version: int, known: int | None = None) -> None:
        known = schema.schema_version() if known is None else known
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
        publish: Mapping[str, Sequence[tuple[str, str | None]]] | None = None,
        flow_run_id: str | None = None,
        flow_run_url: str | None = None,
    ) -> WriteReport:
        """Write one sync run in one transaction: upsert objectives and key results, add the
        check-ins the policy allows (see the module docstring), record the run.

        Check-ins of kind ``manual`` are written as given. A check-in for a key result that is
        neither in ``key_results`` nor in the store fails the run. On any failure: StoreError,
        and nothing of the run is written; a value, progress, expected, baseline or target that
        is not a finite number is refused the same way.

        ``publish`` maps key result ids to their publish targets (name, external id): each check-in
        written is queued for them in the outbox in the same transaction (see outbox.py).
        """
        self._refuse_non_finite(key_results, checkins)
        now = utcnow()
        obj_rows = dedupe(
            {"id": o.id, "title": o.title, "owner": o.owner, "config_file": o.config_file,
             "updated_at": now}
            for o in objectives
        )
        kr_rows = dedupe(
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
            on_manual_of = self._lock_key_results(conn, {c.kr_id for c in checkins})
            # every key result's latest check-in in one read, the new ones in one insert: a run of
            # thousands of key results costs a few statements, not two per key result
            latest = self._latest_of(conn, [k.id for k in key_results] + [c.kr_id for c in checkins])
            report.previous = {kr_id: c.value for kr_id, c in latest.items()}
            seen: set[str] = set()
            pending: list[CheckinRecord] = []
            taken = self._observed(conn, {c.kr_id for c in checkins if c.kind == "backfill"})
            written: list[tuple[int, CheckinRecord]] = []

            def insert_pending() -> None:
                # the new ids are needed only to queue check-ins for publish targets
                queued = [r for r in pending if (publish or {}).get(r.kr_id)]
                plain = [r for r in pending if not (publish or {}).get(r.kr_id)]
                for i in range(0, len(queued), WRITE_CHUNK):
                    part = queued[i:i + WRITE_CHUNK]
                    new_ids = conn.execute(
                        checkins_table.insert().returning(checkins_table.c.id, sort_by_parameter_order=True),
                        [checkin_row(record, now) for record in part]).scalars().all()
                    written.extend(zip(new_ids, part))
                for i in range(0, len(plain), WRITE_CHUNK):
                    conn.execute(checkins_table.insert(), [checkin_row(r, now) for r in plain[i:i + WRITE_CHUNK]])
                pending.clear()

            for record in checkins:
                on_manual = on_manual_of.get(record.kr_id, "keep")
                if record.kind == "manual":
                    outcome = "written"
                elif record.kind == "backfill":
                    outcome = self._new_moment(record, taken)
                elif as_utc(record.observed_at) < as_utc(started_at):
                    # back-dated (--as-of a past moment): against the check-in just before it in time
                    if record.kr_id in seen:
                        insert_pending()
                    before = self._latest(conn, record.kr_id, record.observed_at)
                    outcome = self._decide(record, before, on_manual)
                else:
                    if record.kr_id in seen:      # its second check-in in this run: against what is written now
                        insert_pending()
                        latest[record.kr_id] = self._latest(conn, record.kr_id)
                    outcome = self._decide(record, latest.get(record.kr_id), on_manual)
                seen.add(record.kr_id)
                if outcome == "written":
                    pending.append(record)
                getattr(report, outcome).append(record.kr_id)
            insert_pending()
            report.queued = self._queue(conn, written, publish or {}, now)
            conn.execute(
                runs_table.insert().values(
                    run_id=run_id, started_at=started_at, finished_at=utcnow(),
                    config_files=list(config_files), written=len(report.written),
                    unchanged=len(report.unchanged), kept_manual=len(report.kept_manual),
                    failed=failed, flow_run_id=flow_run_id, flow_run_url=flow_run_url,
                )
            )
            return report

        return self._transaction("write the sync run to", work)

    def take_over(self, key_results: list[KeyResultRecord]) -> None:
        """Make these records' config file, line and definition the owners of those of their key
        results the store has (the rest of each definition is written by the next sync)."""
        rows = dedupe({"id": k.id, "config_file": k.config_file, "config_line": k.config_line,
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
            observed_at=observed_at or utcnow(), source="manual", kind="manual", note=note,
        )
        self._refuse_non_finite([], [record])

        def work(conn: Connection) -> StoredCheckin:
            if kr_id not in self._lock_key_results(conn, {kr_id}):
                raise self._unknown_kr(conn, kr_id)
            now = utcnow()
            new_id = conn.execute(
                checkins_table.insert().values(checkin_row(record, now)).returning(checkins_table.c.id)
            ).scalar_one()
            self._queue_for_known_targets(conn, new_id, record, now)
            row = conn.execute(select(*readable_checkin_columns()).where(checkins_table.c.id == new_id)).one()
            return stored(row._mapping)

        return self._transaction("add a manual check-in to", work)

    def _refuse_non_finite(self, key_results: Iterable[KeyResultRecord], checkins: Iterable[CheckinRecord]) -> None:
        """StoreError naming the first key result with a number that is not finite (NaN, inf, or
        not a number at all): PostgreSQL would keep it and every later read would have to doubt it."""
        fields = [(k.id, name, getattr(k, name)) for k in key_results for name in ("baseline", "target")]
        fields += [(c.kr_id, name, getattr(c, name)) for c in checkins for name in ("value", "progress", "expected")
                   if name == "value" or getattr(c, name) is not None]
        for kr_id, name, raw in fields:
            if number(raw) is None:
                raise StoreError(
                    f"OKR store {self.display_url}: key result {kr_id!r}: {name} {clip(repr(raw))} is not a "
                    "finite number, so nothing was written: measure it again or enter a finite value"
                )

    def _lock_key_results(self, conn: Connection, kr_ids: set[str]) -> dict[str, str]:
        """Lock the key results' rows (PostgreSQL; ordered by id against deadlocks) and
        return each known one's on_manual policy."""
        found: dict[str, str] = {}
        for chunk in chunks(sorted(kr_ids)):      # in id order, chunk after chunk: the locks keep their order
            rows = conn.execute(
                select(key_results_table.c.id, key_results_table.c.on_manual)
                .where(key_results_table.c.id.in_(chunk))
                .order_by(key_results_table.c.id)
                .with_for_update()
            )
            found.update({r.id: r.on_manual for r in rows})
        return found

    @staticmethod
    def _new_moment(record: CheckinRecord, taken: set[tuple[str, datetime]]) -> str:
        """A backfilled check-in: ``written`` unless the key result has one observed at that very moment
        (`taken`, the pairs stored, and those of this run so far)."""
        when = as_utc(record.observed_at)
        if (record.kr_id, when) in taken:
            return "unchanged"
        taken.add((record.kr_id, when))
        return "written"

    @staticmethod
    def _decide(record: CheckinRecord, latest: StoredCheckin | None, on_manual: str) -> str:
        """``written``, ``unchanged`` or ``kept_manual`` for one incoming automatic check-in, given the
        check-in it is compared with (the latest, or for a back-dated one the one just before it;
        okrsync.policy): the same value with another status is written."""
        if latest is None or latest.invalid:  # a row the store cannot trust is no previous value
            return "written"
        return policy.decide(record.value, policy.Current(latest.value, manual=latest.kind == "manual",
                                                          status=latest.status), on_manual, record.status)

    def _latest_of(self, conn: Connection, kr_ids: Iterable[str]) -> dict[str, StoredCheckin]:
        """Each key result's latest check-in, as `_latest` finds it (those with none left out), read in
        one statement per IN_CHUNK key results."""
        found: dict[str, StoredCheckin] = {}
        for chunk in chunks(sorted(set(kr_ids))):
            query = (select(*readable_checkin_columns())
                     .select_from(key_results_table.join(
                         checkins_table, checkins_table.c.id == _latest_id(key_results_table.c.id)))
                     .where(key_results_table.c.id.in_(chunk)))
            for row in conn.execute(query):
                checkin = stored(row._mapping)
                if checkin.observed_at is None:   # cannot be the latest: see _latest
                    checkin = self._latest(conn, checkin.kr_id)
                if checkin is not None:
                    found[checkin.kr_id] = checkin
        return found

    def _observed(self, conn: Connection, kr_ids: set[str]) -> set[tuple[str, datetime]]:
        """(key result, observed_at) of every readable check-in of these key results."""
        if not kr_ids:
            return set()
        columns = {c.name: c for c in readable_checkin_columns()}
        found: set[tuple[str, datetime]] = set()
        for chunk in chunks(sorted(kr_ids)):
            rows = conn.execute(select(columns["kr_id"], columns["observed_at"])
                                .where(checkins_table.c.kr_id.in_(chunk)))
            found.update((r.kr_id, when) for r in rows if (when := moment(r.observed_at)) is not None)
        return found

    def _latest(self, conn: Connection, kr_id: str, at_or_before: datetime | None = None) -> StoredCheckin | None:
        """The key result's latest check-in (by observed_at, then id), or the latest observed at or
        before `at_or_before`. A row whose observed_at cannot be read cannot be placed in time, so it
        is never the latest (it still shows in history); it may sort first (SQLite puts text after
        dates, PostgreSQL 'infinity' last)."""
        query = select(*readable_checkin_columns()).where(checkins_table.c.kr_id == kr_id)
        if at_or_before is not None:
            query = query.where(checkins_table.c.observed_at <= at_or_before)
        rows = conn.execute(query.order_by(checkins_table.c.observed_at.desc(), checkins_table.c.id.desc()))
        for row in rows:
            checkin = stored(row._mapping)
            if checkin.observed_at is not None:
                return checkin
        return None

    # -- reads --

    def key_results(self, kr_ids: list[str] | None = None, *, last: bool = True) -> list[KeyResultState]:
        """Key results ordered by objective, then id, each with its latest check-in (``last=False``:
        without, `last` None, and no check-in read).

        With ``kr_ids``, only those; ids not in the store are left out.
        """
        if kr_ids is None:
            queries = [_states_query(None, last)]
        else:   # the database looks at these key results only
            queries = [_states_query(chunk, last) for chunk in chunks(sorted(set(kr_ids)))]
        states = []
        with self._errors("read"), self._engine.connect() as conn:
            rows = [row for query in queries for row in conn.execute(query).all()]
            if len(queries) > 1:
                rows.sort(key=lambda row: (row.objective_id, row.id))
            for row in rows:
                m = row._mapping
                checkin = None
                if last and m["last_id"] is not None:
                    checkin = stored({c.name: m[f"last_{c.name}"] for c in checkins_table.c})
                    if checkin.observed_at is None:  # cannot be the latest: see _latest
                        checkin = self._latest(conn, m["id"])
                states.append(
                    KeyResultState(
                        objective_id=m["objective_id"], objective_title=m["objective_title"],
                        owner=m["owner"], kr_id=m["id"], title=m["title"], baseline=m["baseline"],
                        target=m["target"], unit=m["unit"], source=m["source"], last=checkin,
                        period_start=m["period_start"], period_end=m["period_end"],
                        at_risk=number(m["at_risk"]), off_track=number(m["off_track"]),
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
                select(*readable_checkin_columns())
                .where(checkins_table.c.kr_id == kr_id)
                .order_by(checkins_table.c.observed_at, checkins_table.c.id)
            ).all()
        return [stored(r._mapping) for r in rows]

    def checkin_points(self, kr_ids: Iterable[str] | None = None,
                       since: datetime | None = None) -> dict[str, list[tuple[datetime, float]]]:
        """(observed_at, value) of every readable check-in of these key results (all when None),
        observed at or after `since`, oldest first, by key result: one query per IN_CHUNK key results,
        for forecasts and backfill. Rows the store cannot trust are left out."""
        columns = {c.name: c for c in readable_checkin_columns()}
        base = select(columns["kr_id"], columns["observed_at"], columns["value"])
        if since is not None:
            base = base.where(checkins_table.c.observed_at >= since)
        order = (checkins_table.c.kr_id, checkins_table.c.observed_at, checkins_table.c.id)
        queries = ([base.order_by(*order)] if kr_ids is None else
                   [base.where(checkins_table.c.kr_id.in_(chunk)).order_by(*order)
                    for chunk in chunks(sorted(set(kr_ids)))])
        found: dict[str, list[tuple[datetime, float]]] = {}
        with self._errors("read"), self._engine.connect() as conn:
            for query in queries:
                for row in conn.execute(query):
                    when, value = moment(row.observed_at), number(row.value)
                    if when is not None and value is not None:
                        found.setdefault(row.kr_id, []).append((when, value))
        return found

    def runs(self, limit: int = 20, run_ids: Iterable[str] | None = None) -> list[dict[str, Any]]:
        """The most recent runs, newest first; with `run_ids`, those runs (however old, no limit).
        Each row has every okr_runs column, the Prefect flow run (`flow_run_id`, `flow_run_url`) too."""
        order = (runs_table.c.started_at.desc(), runs_table.c.run_id.desc())
        with self._errors("read"), self._engine.connect() as conn:
            if run_ids is None:
                return [dict(r._mapping) for r in conn.execute(select(runs_table).order_by(*order).limit(limit))]
            wanted = sorted({r for r in run_ids if r})
            rows = [dict(r._mapping) for i in range(0, len(wanted), _IDS_PER_QUERY)   # within SQLite's bound parameters
                    for r in conn.execute(select(runs_table).where(runs_table.c.run_id.in_(wanted[i:i + _IDS_PER_QUERY])))]
        return sorted(rows, key=lambda r: (r["started_at"], r["run_id"]), reverse=True)

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
        insert = upsert_insert(self.dialect)
        stmt = insert(table)
        stmt = stmt.on_conflict_do_update(
            index_elements=[table.c[key]],
            set_={name: stmt.excluded[name] for name in rows[0] if name != key},
        )
        for i in range(0, len(rows), WRITE_CHUNK):    # a few hundred rows a statement: a run's memory stays small
            conn.execute(stmt, rows[i:i + WRITE_CHUNK])

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
            reason, hint = explain(exc, self._url.password)
            raise StoreError(
                f"could not {action} the OKR store {self.display_url}: {reason}"
                + (f"; {hint}" if hint else "")
                + (" (nothing was written)" if action.startswith(("write", "add")) else "")
            ) from exc


def _latest_id(kr_id: ColumnElement[str]) -> ColumnElement[int]:
    """The id of key result `kr_id`'s latest check-in (observed_at, then id, descending): a correlated
    subquery the (kr_id, observed_at) index answers with one seek, however many check-ins there are."""
    newer = checkins_table.alias("newer")
    return (select(newer.c.id).where(newer.c.kr_id == kr_id)
            .order_by(newer.c.observed_at.desc(), newer.c.id.desc()).limit(1).scalar_subquery())


def _states_query(kr_ids: list[str] | None, last: bool = True) -> Select:
    """Key results (all, or these) with their objective and (`last`) latest check-in (`last_*`
    columns), ordered by objective, then id."""
    query = (
        select(
            key_results_table,
            objectives_table.c.title.label("objective_title"),
            objectives_table.c.owner,
            *([c.label(f"last_{c.name}") for c in readable_checkin_columns()] if last else []),
        )
        .join(objectives_table, objectives_table.c.id == key_results_table.c.objective_id)
        .order_by(key_results_table.c.objective_id, key_results_table.c.id)
    )
    if last:
        query = query.outerjoin(checkins_table, checkins_table.c.id == _latest_id(key_results_table.c.id))
    return query if kr_ids is None else query.where(key_results_table.c.id.in_(kr_ids))


def open_store(url: str) -> SqlStore:
    """A store for ``url`` with its schema created or upgraded."""
    store = SqlStore(url)
    try:
        store.ensure_schema()
    except BaseException:
        store.close()
        raise
    return store



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



__all__ = ["SqlStore", "open_store"]
