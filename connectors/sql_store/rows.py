"""Rows in and out of the store: check-in rows to write, and rows anyone may have written read
without trusting them.

SQLite is typeless and a row may be edited by hand or written by an older version, so check-ins are
read with their numbers and timestamps raw (readable_checkin_columns) and judged in Python (stored):
a bad field makes the check-in invalid, never a crash.
"""
from __future__ import annotations

import math
import re
from collections.abc import Iterable
from datetime import datetime
from functools import lru_cache
from typing import Any

from sqlalchemy import Text, cast
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.expression import ColumnElement, FunctionElement

from connectors.sql_store.schema import as_utc, checkins_table
from okrsync.alerts import QueuedAlert, Watch
from okrsync.records import CheckinRecord, StoredCheckin

def dedupe(rows: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows by id (the last one wins), sorted by id so concurrent writers lock in one order."""
    by_id = {row["id"]: row for row in rows}
    return [by_id[k] for k in sorted(by_id)]


def upsert_insert(dialect: str) -> Any:
    """The dialect's `insert` construct (with on_conflict_do_update). Imported when first needed, so a
    run on SQLite never loads the PostgreSQL dialect (and its asyncpg module)."""
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    return insert


IN_CHUNK = 500          # ids in one IN (...) list: far below any database's limit on bound parameters


def chunks(items: list[str], size: int = IN_CHUNK) -> Iterable[list[str]]:
    """`items` in lists of at most `size`, for IN (...) clauses."""
    for i in range(0, len(items), size):
        yield items[i:i + size]


def checkin_row(record: CheckinRecord, created_at: datetime) -> dict[str, Any]:
    return {
        "kr_id": record.kr_id, "value": float(record.value), "progress": record.progress,
        "expected": record.expected, "status": record.status, "observed_at": record.observed_at,
        "source": record.source, "query": record.query, "link": record.link,
        "run_id": record.run_id, "kind": record.kind, "note": record.note,
        "created_at": created_at, "evidence": None if record.evidence is None else list(record.evidence),
    }


# SQLite is typeless and a row may be edited by hand or written by an older version, so check-ins
# are read with their numbers and timestamps raw (readable_checkin_columns) and judged in Python
# (stored): a bad field makes the check-in invalid, never a crash.

VERSION_TEXT = re.compile(r"[0-9]{1,9}")
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
def readable_checkin_columns() -> tuple[ColumnElement[Any], ...]:
    """okr_checkins' columns, timestamps as text (see _MomentText) and numbers without conversion.
    Built once: the same column objects let SQLAlchemy reuse its compiled statements."""
    return tuple(_MomentText(c).label(c.name) if c.name in _MOMENT_COLUMNS else c for c in checkins_table.c)


def number(raw: Any) -> float | None:
    """``raw`` as a finite float, or None (NULL, NaN, inf, text, bytes, a boolean)."""
    if isinstance(raw, bool) or not isinstance(raw, (int, float)):
        return None
    try:
        number = float(raw)
    except OverflowError:  # an int too large for a float
        return None
    return number if math.isfinite(number) else None


def moment(raw: Any) -> datetime | None:
    """A stored timestamp as a UTC datetime, or None if it is not one."""
    if isinstance(raw, datetime):
        return as_utc(raw)
    if not isinstance(raw, str):
        return None
    return _moment_text(raw)


@lru_cache(maxsize=4096)
def _moment_text(raw: str) -> datetime | None:
    """A timestamp read as text, parsed once: every check-in of a run shares its moment, so a read of
    150,000 check-ins holds a few hundred distinct ones (datetimes are immutable, sharing is safe)."""
    text_ = raw.strip()
    if text_.endswith(" BC"):
        return None
    try:
        return as_utc(datetime.fromisoformat(text_.removesuffix(" AD")))
    except ValueError:
        return None


def text_field(raw: Any) -> str | None:
    """A text field as str (SQLite may hand back a number or bytes from a hand-edited row)."""
    return raw if raw is None or isinstance(raw, str) else clip(repr(raw))


def clip(text_: str, limit: int = 60) -> str:
    return text_ if len(text_) <= limit else text_[: limit - 1] + "…"


def stored(row: Any) -> StoredCheckin:
    """A check-in row as read (see readable_checkin_columns), judged: ``invalid`` says what is wrong."""
    problems = []
    numbers: dict[str, float | None] = {}
    for name in _NUMBER_COLUMNS:
        raw = row[name]
        numbers[name] = number(raw)
        if numbers[name] is None and (raw is not None or name == "value"):
            problems.append(f"{name} {clip(repr(raw))} is not a finite number")
    observed_at = moment(row["observed_at"])
    if observed_at is None:
        problems.append(f"observed_at {clip(repr(row['observed_at']))} is not a date and time")
    invalid = "; ".join(problems) or None
    return StoredCheckin(
        kr_id=row["kr_id"], value=None if invalid else numbers["value"], progress=numbers["progress"],
        expected=numbers["expected"], status=text_field(row["status"]), observed_at=observed_at,
        source=text_field(row["source"]), query=text_field(row["query"]), link=text_field(row["link"]),
        run_id=text_field(row["run_id"]), kind=text_field(row["kind"]), note=text_field(row["note"]), id=row["id"],
        created_at=moment(row["created_at"]), invalid=invalid, evidence=evidence_field(row.get("evidence")),
    )


def evidence_field(raw: Any) -> tuple[dict[str, Any], ...] | None:
    """Stored evidence as a tuple of mappings (the tickets behind the number), or None if there is
    none or it is not a list of mappings (a hand-edited row)."""
    if isinstance(raw, list) and all(isinstance(item, dict) for item in raw):
        return tuple(raw)
    return None


def watch_row(row: Any) -> Watch:
    return Watch(
        kr_id=row["kr_id"], status=row["status"], value=row["value"],
        last_success_at=row["last_success_at"], failure_streak=row["failure_streak"],
        last_error=row["last_error"], failing_alerted=bool(row["failing_alerted"]),
        stale_alerted=bool(row["stale_alerted"]), first_seen_at=row["first_seen_at"],
        seen_at=row["seen_at"], forecast=row.get("forecast"),
    )


def queued_row(row: Any) -> QueuedAlert:
    return QueuedAlert(
        kr_id=row["kr_id"], kind=row["kind"], message=row["message"], status=row["status"],
        id=row["id"], run_id=row["run_id"], created_at=row["created_at"], sent_at=row["sent_at"],
        attempts=row["attempts"],
    )

