"""From measurements to per-key-result results, check-in records and the run summary."""
from __future__ import annotations

import math
from dataclasses import dataclass, fields
from datetime import datetime, timezone
from typing import Any, Callable, TypeVar

from okrsync.config import PlannedKeyResult
from okrsync.errors import SourceError
from okrsync.measure import Measurement
from okrsync.progress import assess
from okrsync.records import CheckinRecord, WriteReport

T = TypeVar("T")


@dataclass
class KeyResultResult:
    """One key result's outcome in one run: its measured state, or the error that stopped it."""

    id: str
    objective_id: str
    title: str
    source: str
    baseline: float
    target: float
    unit: str | None = None
    value: float | None = None
    progress: float | None = None
    expected: float | None = None
    status: str | None = None
    link: str | None = None
    query: str | None = None
    observed_at: datetime | None = None
    note: str | None = None
    error: str | None = None
    outcome: str | None = None       # written | unchanged | kept_manual | dry_run | None (failed)
    evidence: tuple[dict[str, str], ...] | None = None   # the tickets behind a count (kept with the check-in)

    def as_json(self) -> dict[str, Any]:
        """The run summary's row; the evidence stays in the store (`okr-sync history KR --changes`),
        only how many tickets it lists is shown here."""
        data = {name: getattr(self, name) for name in _FIELDS}     # the fields are plain values (evidence: popped)
        data["observed_at"] = self.observed_at.isoformat() if self.observed_at else None
        evidence = data.pop("evidence")
        data["evidence_count"] = None if evidence is None else len(evidence)
        return data


_FIELDS = tuple(f.name for f in fields(KeyResultResult))
ATTENTION = {"failed": 0, "off_track": 1, "at_risk": 2}     # what a summary of many key results shows first


def row_kind(row: dict[str, Any]) -> str:
    """`failed`, or the status of a run summary's key-result row."""
    return "failed" if row["error"] else row["status"] or "-"


def attention_first(rows: list[T], kind: Callable[[T], str], rank: dict[str, int] = ATTENTION) -> list[T]:
    """`rows` with those needing attention first (failed, then off track, then at risk), each kind in
    its own order."""
    return [row for _, _, row in sorted((rank.get(kind(row), len(rank)), i, row) for i, row in enumerate(rows))]


def assess_all(krs: list[PlannedKeyResult], outcomes: dict[str, Measurement | SourceError | str],
               as_of: datetime, observed_at: datetime | None = None) -> list[KeyResultResult]:
    """Progress, expected progress and status for every measured key result, in plan order; each
    observed at `observed_at` when given (a run as of a given moment), else when its source said."""
    results = []
    for kr in krs:
        r = KeyResultResult(id=kr.id, objective_id=kr.objective_id, title=kr.title, source=kr.source_label or kr.source_key,
                            baseline=kr.baseline, target=kr.target, unit=kr.unit)
        got = outcomes.get(kr.id)
        if isinstance(got, Measurement) and not _finite(got.value):
            r.error = (f"the source gave {got.value!r}, which is not a finite number (an overflowing sum, or text "
                       "read as a number?): check the data behind it")
        elif isinstance(got, Measurement):
            a = assess(got.value, kr.baseline, kr.target, kr.period, as_of, kr.thresholds)
            r.value, r.progress, r.expected, r.status = got.value, a.progress, a.expected, a.status
            r.link, r.query, r.observed_at, r.note = got.link, got.query, observed_at or got.observed_at, got.note
            r.evidence = got.evidence
        elif got is None:
            r.error = "not measured: the source returned nothing for this key result"
        else:
            r.error = str(got) or got.__class__.__name__
        results.append(r)
    return results


def _finite(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def checkins(results: list[KeyResultResult], run_id: str) -> list[CheckinRecord]:
    return [CheckinRecord(kr_id=r.id, value=r.value, progress=r.progress, expected=r.expected, status=r.status,
                          observed_at=r.observed_at or datetime.now(timezone.utc), source=r.source,
                          query=r.query, link=r.link, run_id=run_id, note=r.note, evidence=r.evidence)
            for r in results if r.error is None and r.value is not None]


def apply_report(results: list[KeyResultResult], report: WriteReport | None, store_error: str | None) -> None:
    outcome = {} if report is None else report.outcomes()
    for r in results:
        if r.error is not None:
            continue
        if store_error is not None:
            r.error = store_error
        elif report is None:
            r.outcome = "dry_run"
        else:
            r.outcome = outcome.get(r.id)


def summary(run_id: str, results: list[KeyResultResult], *, as_of: datetime, dry_run: bool,
            store: str, calls: int, seconds: float) -> dict[str, Any]:
    failed = [r for r in results if r.error]
    return {
        "run_id": run_id,
        "as_of": as_of.isoformat(),
        "dry_run": dry_run,
        "store": store,
        "counts": {
            "key_results": len(results),
            "synced": len(results) - len(failed),
            "failed": len(failed),
            "written": sum(r.outcome == "written" for r in results),
            "unchanged": sum(r.outcome == "unchanged" for r in results),
            "kept_manual": sum(r.outcome == "kept_manual" for r in results),
        },
        "source_calls": calls,
        "seconds": round(seconds, 3),
        "key_results": [r.as_json() for r in results],
    }
