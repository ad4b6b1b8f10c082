"""Plain records the flow hands to an OKR store and the store hands back to the CLI.

Every OKR store connector (connectors/sql_store.py today, external OKR tools later) speaks
in these types, so the flow and CLI never know which store they talk to.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime


@dataclass(frozen=True)
class ObjectiveRecord:
    id: str
    title: str
    owner: str | None = None
    config_file: str | None = None


@dataclass(frozen=True)
class KeyResultRecord:
    id: str
    objective_id: str
    title: str
    source: str                      # the source's name in the config, e.g. "survey"
    baseline: float
    target: float
    unit: str | None = None
    period_start: date | None = None
    period_end: date | None = None
    on_manual: str = "keep"          # "keep" | "overwrite": what an automatic value does to a newer manual one
    at_risk: float | None = None     # status thresholds (okrsync.progress.Thresholds); None: the defaults
    off_track: float | None = None
    config_file: str | None = None   # the owner: the config file (absolute path) and line defining it
    config_line: int | None = None
    definition: str | None = None    # a hash of the definition (see okrsync.engine.owned_record)


@dataclass(frozen=True)
class CheckinRecord:
    """One observation of one key result, to be written."""

    kr_id: str
    value: float
    progress: float | None           # 0.0 .. 1.0+ (1.2 = 120 %), None if not computable
    expected: float | None
    status: str | None               # on_track | at_risk | off_track | done
    observed_at: datetime
    source: str | None = None
    query: str | None = None
    link: str | None = None
    run_id: str | None = None
    kind: str = "automatic"          # "automatic" | "manual" | "backfill"
    note: str | None = None
    evidence: tuple[dict, ...] | None = None   # the tickets behind the number: [{"key": "PAY-12", "title": ...}]


@dataclass(frozen=True)
class StoredCheckin(CheckinRecord):
    """A check-in as read back from the store.

    A row the store cannot trust (a value, progress or expected that is not a finite number, an
    observed_at that is not a date; written by hand or by an older version) is still returned, with
    ``invalid`` saying what is wrong, ``value`` None (no reader takes it as a previous value) and each
    unreadable field None.
    """

    value: float | None              # type: ignore[assignment]  # None when the row is invalid
    id: int = 0
    created_at: datetime | None = None
    invalid: str | None = None       # what is wrong with the row, e.g. "value 'n/a' is not a finite number"


@dataclass
class WriteReport:
    """What a store did with each check-in of one run."""

    written: list[str] = field(default_factory=list)      # kr ids with a new check-in
    unchanged: list[str] = field(default_factory=list)    # same value as the last automatic check-in
    kept_manual: list[str] = field(default_factory=list)  # a newer manual check-in was kept (on_manual: keep)
    queued: int = 0                                       # outbox rows queued for publish targets
    previous: dict[str, float | None] = field(default_factory=dict)   # each key result's latest value before
    #                                        the run (None: its latest check-in is invalid); none: no check-in

    def outcomes(self) -> dict[str, str]:
        """What happened to each key result, by id (one pass, however many there are)."""
        return {kr_id: name for name in ("written", "unchanged", "kept_manual") for kr_id in getattr(self, name)}

    def outcome(self, kr_id: str) -> str | None:
        return self.outcomes().get(kr_id)


@dataclass(frozen=True)
class KeyResultState:
    """A key result as the store knows it, with its latest check-in (None if it has none)."""

    objective_id: str
    objective_title: str
    owner: str | None
    kr_id: str
    title: str
    baseline: float
    target: float
    unit: str | None
    source: str | None
    last: StoredCheckin | None
    period_start: date | None = None
    period_end: date | None = None
    at_risk: float | None = None      # status thresholds as stored; None: written before they were kept
    off_track: float | None = None
    config_file: str | None = None    # the owner (see KeyResultRecord); None: written before owners were kept
    config_line: int | None = None
    definition: str | None = None
