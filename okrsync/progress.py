"""Progress math: from a measured value to progress, expected progress and status.

- progress = (value - baseline) / (target - baseline). The direction follows from target vs
  baseline (lower-is-better when target < baseline). It is NOT clamped: 1.2 means 120 %
  (over-achievement stays visible) and a value that moved the wrong way gives a negative.
- expected = the share of the period elapsed at `as_of` (0 before it starts, 1 after it ends).
- status: `done` once the target is reached; otherwise by how far progress trails expected:
  trailing by at most `at_risk` -> on_track, by at most `off_track` -> at_risk, else off_track.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone

from okrsync.measure import Period

ON_TRACK, AT_RISK, OFF_TRACK, DONE = "on_track", "at_risk", "off_track", "done"
STATUSES = (ON_TRACK, AT_RISK, OFF_TRACK, DONE)


@dataclass(frozen=True)
class Thresholds:
    """How far (as a share of the whole target) progress may trail expected progress."""

    at_risk: float = 0.10
    off_track: float = 0.25


@dataclass(frozen=True)
class Assessment:
    progress: float
    expected: float
    status: str


def direction(baseline: float, target: float) -> str:
    """'increase' or 'decrease'; ValueError when target equals baseline (no range to progress over)."""
    if target == baseline:
        raise ValueError("target equals baseline, so progress cannot be measured")
    return "increase" if target > baseline else "decrease"


def progress(value: float, baseline: float, target: float) -> float:
    """Share of the way from baseline to target; 1.0 = target reached, may exceed 1 or be negative."""
    direction(baseline, target)
    return (value - baseline) / (target - baseline)


def expected_progress(period: Period, as_of: date | datetime) -> float:
    """Share of the period elapsed at `as_of`: the period runs from start 00:00 to end 24:00 (UTC)."""
    start = datetime.combine(period.start, time.min, tzinfo=timezone.utc)
    end = datetime.combine(period.end, time.min, tzinfo=timezone.utc) + timedelta(days=1)
    if isinstance(as_of, datetime):
        moment = as_of if as_of.tzinfo else as_of.replace(tzinfo=timezone.utc)
    else:
        # a bare date means the end of that day: on the period's last day, all time has elapsed
        moment = datetime.combine(as_of, time.min, tzinfo=timezone.utc) + timedelta(days=1)
    share = (moment - start) / (end - start)
    return min(1.0, max(0.0, share))


def status(progress_value: float, expected: float, thresholds: Thresholds = Thresholds()) -> str:
    if progress_value >= 1.0:
        return DONE
    gap = expected - progress_value
    if gap <= thresholds.at_risk:
        return ON_TRACK
    if gap <= thresholds.off_track:
        return AT_RISK
    return OFF_TRACK


def assess(value: float, baseline: float, target: float, period: Period,
           as_of: date | datetime, thresholds: Thresholds = Thresholds()) -> Assessment:
    """Progress, expected progress and status of one measured value."""
    p = progress(value, baseline, target)
    e = expected_progress(period, as_of)
    return Assessment(progress=p, expected=e, status=status(p, e, thresholds))
