"""The store's tables and their migrations (schema versions).

Reading order: the UTC timestamp type, the tables as this version writes them, then the migration
steps: MIGRATIONS[i] upgrades a store from version i to i + 1 (see the note above the list), and
WATCH_MIGRATIONS does the same for the optional alert tables.
"""
from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timezone

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
    UniqueConstraint,
)
from sqlalchemy.engine import Connection

SCHEMA_KEY = "schema_version"                 # okr_meta key of the core schema's version
WATCH_SCHEMA_KEY = "watch_schema_version"     # okr_meta key of the alert tables' version

def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def as_utc(value: datetime) -> datetime:
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
        value = as_utc(value)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return as_utc(value)


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
    # version 3: the tickets behind the number (a JSON list), and the kind `backfill`
    Column("evidence", JSON),
    CheckConstraint("kind IN ('automatic', 'manual', 'backfill')", name="ck_okr_checkins_kind"),
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
    # version 3: the Prefect flow run that made it (None for an in-process run)
    Column("flow_run_id", Text),
    Column("flow_run_url", Text),
)

# version 3: the outbox. Each check-in to publish is queued here per publish target in the same
# transaction that writes it, delivered after the write, and retried by later runs until the
# target takes it (state `delivered`) or keeps a newer manual value (`kept_manual`).
outbox_table = Table(
    "okr_outbox",
    metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True),
    Column("target", Text, nullable=False),                  # the publish target's name in the config
    Column("kr_id", Text, ForeignKey("okr_key_results.id"), nullable=False),
    Column("checkin_id", BigInteger().with_variant(Integer, "sqlite"), ForeignKey("okr_checkins.id"), nullable=False),
    Column("external_id", Text),                             # the key result's id in the tool, if it needs one
    Column("idempotency_key", Text, nullable=False),
    Column("state", Text, nullable=False),
    Column("attempts", Integer, nullable=False, server_default="0"),
    Column("last_error", Text),
    Column("sent_value", Float),                             # what was written to the tool
    Column("tool_value", Float),                             # the manual value found there and kept
    Column("created_at", UtcDateTime, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
    Column("delivered_at", UtcDateTime),
    Column("claimed_by", Text),
    Column("claimed_at", UtcDateTime),
    CheckConstraint("state IN ('pending', 'delivered', 'kept_manual')", name="ck_okr_outbox_state"),
    UniqueConstraint("target", "checkin_id", name="uq_okr_outbox_target_checkin"),
    Index("ix_okr_outbox_target_state", "target", "state"),
    Index("ix_okr_outbox_target_kr", "target", "kr_id"),
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
    # watch version 3: the last forecast status, for `forecast` alerts
    Column("forecast", Text),
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


# Watch version 2: one row per config file and digest period (okrsync.digest): claimed by the run that
# sends it, so two overlapping runs post a period's digest once.
digests_table = Table(
    "okr_digests",
    metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True),
    Column("config", Text, nullable=False),                 # the config file (absolute path)
    Column("period", UtcDateTime, nullable=False),          # the cron tick the digest belongs to
    Column("created_at", UtcDateTime, nullable=False),
    Column("claimed_by", Text),
    Column("claimed_at", UtcDateTime),
    Column("sent_at", UtcDateTime),
    Column("attempts", Integer, nullable=False, server_default="0"),
    UniqueConstraint("config", "period", name="uq_okr_digests_config_period"),
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


_checkins_v1 = Table(
    "okr_checkins",
    _v1,
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
_runs_v1 = Table(
    "okr_runs",
    _v1,
    Column("run_id", Text, primary_key=True),
    Column("started_at", UtcDateTime, nullable=False),
    Column("finished_at", UtcDateTime, nullable=False),
    Column("config_files", JSON, nullable=False),
    Column("written", Integer, nullable=False),
    Column("unchanged", Integer, nullable=False),
    Column("kept_manual", Integer, nullable=False),
    Column("failed", Integer, nullable=False),
)


def _create_v1(conn: Connection) -> None:
    """Version 1: the okr_* tables and the (kr_id, observed_at) index (as they were)."""
    metadata.create_all(conn, tables=[objectives_table])
    _key_results_v1.create(conn)
    _checkins_v1.create(conn)
    _runs_v1.create(conn)


def _add_owner_v2(conn: Connection) -> None:
    """Version 2: a key result's owner (config file, line, definition hash) and thresholds."""
    for name, sql_type in (("config_file", "TEXT"), ("config_line", "INTEGER"), ("definition", "TEXT"),
                           ("at_risk", "FLOAT"), ("off_track", "FLOAT")):
        conn.exec_driver_sql(f"ALTER TABLE okr_key_results ADD COLUMN {name} {sql_type}")


_CHECKIN_COLUMNS_V2 = [c.name for c in _checkins_v1.c]


def _history_and_outbox_v3(conn: Connection) -> None:
    """Version 3: check-ins gain `evidence` and the kind `backfill`; runs gain the Prefect flow run;
    the outbox of check-ins to publish. SQLite cannot change a CHECK constraint, so there the
    check-ins table is rebuilt (same rows, same ids)."""
    if conn.dialect.name == "sqlite":
        conn.exec_driver_sql("DROP INDEX IF EXISTS ix_okr_checkins_kr_observed")
        conn.exec_driver_sql("ALTER TABLE okr_checkins RENAME TO okr_checkins_v2")
        checkins_table.create(conn)
        columns = ", ".join(_CHECKIN_COLUMNS_V2)
        conn.exec_driver_sql(f"INSERT INTO okr_checkins ({columns}) SELECT {columns} FROM okr_checkins_v2")
        conn.exec_driver_sql("DROP TABLE okr_checkins_v2")
    else:
        conn.exec_driver_sql("ALTER TABLE okr_checkins DROP CONSTRAINT ck_okr_checkins_kind")
        conn.exec_driver_sql("ALTER TABLE okr_checkins ADD CONSTRAINT ck_okr_checkins_kind "
                             "CHECK (kind IN ('automatic', 'manual', 'backfill'))")
        conn.exec_driver_sql("ALTER TABLE okr_checkins ADD COLUMN evidence JSON")
    for name in ("flow_run_id", "flow_run_url"):
        conn.exec_driver_sql(f"ALTER TABLE okr_runs ADD COLUMN {name} TEXT")
    outbox_table.create(conn)


MIGRATIONS: list[Callable[[Connection], None]] = [_create_v1, _add_owner_v2, _history_and_outbox_v3]


_watch_v1 = MetaData()
key_results_table.to_metadata(_watch_v1)          # the foreign keys below need it (never created from here)
_watch_table_v1 = Table(
    "okr_watch",
    _watch_v1,
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
alerts_table.to_metadata(_watch_v1)               # unchanged since watch version 1


def _create_watch_v1(conn: Connection) -> None:
    """Watch version 1: okr_watch and okr_alerts (as they were)."""
    _watch_v1.create_all(conn, tables=[_watch_table_v1, _watch_v1.tables["okr_alerts"]])


def _create_digests_v2(conn: Connection) -> None:
    """Watch version 2: okr_digests (the weekly digest, sent once per period)."""
    digests_table.create(conn)


def _forecast_watch_v3(conn: Connection) -> None:
    """Watch version 3: each key result's last forecast status (okr_watch.forecast)."""
    conn.exec_driver_sql("ALTER TABLE okr_watch ADD COLUMN forecast TEXT")


WATCH_MIGRATIONS: list[Callable[[Connection], None]] = [_create_watch_v1, _create_digests_v2, _forecast_watch_v3]


def schema_version() -> int:
    """The schema version this code writes (the number of migration steps)."""
    return len(MIGRATIONS)

