"""Where a key result will end its period: a robust trend through its check-ins, projected to the end.

    forecast(points, baseline=0, target=600, period=Q4, moment=now) -> (Forecast | None, reason | None)

The method, in plain words (docs/history.md says the same for people):

1. Take the key result's check-ins inside its period up to `moment` (backfilled ones included) and
   keep one value per day: the last one observed that day. Fewer than MIN_DAYS days: no forecast,
   and the reason says so.
2. Draw a line through them with the Theil–Sen method: the slope is the median of the slopes between
   every pair of days, the intercept the median of (value − slope × day). A median ignores a few wild
   values, so one bad reading or a one-off jump does not tilt the line the way a least-squares fit
   would.
3. Read the line at the end of the period: that is the forecast `value`. The range `low`..`high` adds
   to it how far the check-ins sat from the line (the 10th and 90th percentile of those residuals), so
   a bumpy history gives a wide range and a steady one a narrow range.
4. `status`: `will_reach` when the value reaches the target, `at_risk` when only the hopeful end of
   the range does, `will_miss` when not even that does. `reaches_target_on` is the day the line
   crosses the target, if it does within the period while heading towards it.

Why no library: scipy.stats.theilslopes does step 2, but would add numpy and scipy (tens of MB) to a
tool that otherwise needs neither, for a median of at most one slope per pair of the period's days
(a quarter: 92 days, 4,186 pairs). The standard library's `statistics` gives the medians and
percentiles.
"""
from __future__ import annotations

import math
import statistics
from dataclasses import asdict, dataclass
from datetime import date, datetime, time, timedelta, timezone
from typing import Any, Iterable

from okrsync.measure import Period
from okrsync.records import KeyResultState

MIN_DAYS = 3                      # distinct days of check-ins a forecast needs
WILL_REACH, AT_RISK, WILL_MISS = "will_reach", "at_risk", "will_miss"
STATUSES = (WILL_REACH, AT_RISK, WILL_MISS)
DAY = 86400.0


@dataclass(frozen=True)
class Forecast:
    """The projected value at the end of the period (`at`), its range, and what that means."""

    value: float
    low: float
    high: float
    at: date                              # the period's last day (the value is read at its end)
    reaches_target_on: date | None        # the day the trend crosses the target, if within the period
    status: str                           # will_reach | at_risk | will_miss
    days: int = 0                         # distinct days of check-ins it was drawn from
    slope_per_day: float = 0.0

    def as_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["at"] = self.at.isoformat()
        data["reaches_target_on"] = self.reaches_target_on.isoformat() if self.reaches_target_on else None
        return data


def _utc(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def earliest_start(starts: Iterable[date | None]) -> datetime | None:
    """The first moment of the earliest of these periods (UTC midnight of its first day): the check-ins
    the forecasts of their key results read start there. None when no period is known."""
    known = [s for s in starts if s is not None]
    return datetime.combine(min(known), time.min, tzinfo=timezone.utc) if known else None


def _start(period: Period) -> datetime:
    return datetime.combine(period.start, time.min, tzinfo=timezone.utc)


def _end(period: Period) -> datetime:
    return datetime.combine(period.end, time.min, tzinfo=timezone.utc) + timedelta(days=1)


def daily(points: Iterable[tuple[datetime, float]], period: Period, moment: datetime) -> list[tuple[datetime, float]]:
    """One point per UTC day in the period up to `moment`: the last value observed that day."""
    start, end, moment = _start(period), _end(period), _utc(moment)
    last: dict[date, tuple[datetime, float]] = {}
    for when, value in points:
        when = _utc(when)
        if value is None or not math.isfinite(value) or not (start <= when < end) or when > moment:
            continue
        kept = last.get(when.date())
        if kept is None or when >= kept[0]:
            last[when.date()] = (when, float(value))
    return [last[d] for d in sorted(last)]


def theil_sen(xs: list[float], ys: list[float]) -> tuple[float, float]:
    """(intercept, slope): the median of pairwise slopes, and the median of y − slope·x."""
    slopes: list[float] = []
    for i, (xi, yi) in enumerate(zip(xs, ys)):
        slopes.extend([(y - yi) / (x - xi) for x, y in zip(xs[i + 1:], ys[i + 1:]) if x != xi])
    slope = statistics.median(slopes) if slopes else 0.0
    intercept = statistics.median(y - slope * x for x, y in zip(xs, ys))
    return intercept, slope


def _reached(value: float, baseline: float, target: float) -> bool:
    return value >= target if target > baseline else value <= target


def forecast(points: Iterable[tuple[datetime, float]], *, baseline: float, target: float, period: Period,
             moment: datetime) -> tuple[Forecast | None, str | None]:
    """The key result's forecast at the end of `period`, or None and why (see the module docstring)."""
    moment = _utc(moment)
    if moment >= _end(period):
        return None, f"the period ended on {period.end}"
    if target == baseline:
        return None, "target equals baseline"
    kept = daily(points, period, moment)
    if len(kept) < MIN_DAYS:
        return None, (f"needs check-ins on at least {MIN_DAYS} days of the period (has {len(kept)}): "
                      "run `okr-sync backfill` to fill the history, or wait for more runs")
    start = _start(period)
    xs = [(when - start).total_seconds() / DAY for when, _ in kept]
    ys = [value for _, value in kept]
    intercept, slope = theil_sen(xs, ys)
    end_x = (_end(period) - start).total_seconds() / DAY
    value = intercept + slope * end_x
    residuals = [y - (intercept + slope * x) for x, y in zip(xs, ys)]
    deciles = statistics.quantiles(residuals, n=10, method="inclusive")     # the 10th, 20th, ... 90th percentile
    low, high = value + min(0.0, deciles[0]), value + max(0.0, deciles[-1])
    hopeful = high if target > baseline else low
    status = WILL_REACH if _reached(value, baseline, target) else AT_RISK if _reached(hopeful, baseline, target) else WILL_MISS
    crossing = None
    if slope != 0 and (slope > 0) == (target > baseline):
        x = (target - intercept) / slope
        if x <= end_x:
            crossing = max(period.start, (start + timedelta(days=max(0.0, x))).date())
            crossing = min(crossing, period.end)
    return Forecast(value=_round(value), low=_round(low), high=_round(high), at=period.end,
                    reaches_target_on=crossing, status=status, days=len(kept), slope_per_day=_round(slope)), None


def of_state(state: KeyResultState, points: Iterable[tuple[datetime, float]],
             moment: datetime) -> tuple[Forecast | None, str | None]:
    """`forecast` for a key result as the store keeps it (`okr-sync status`)."""
    if state.period_start is None or state.period_end is None:
        return None, "the store keeps no period for this key result: run a sync first"
    return forecast(points, baseline=state.baseline, target=state.target,
                    period=Period(state.period_start, state.period_end), moment=moment)


def _round(value: float) -> float:
    return round(value, 6)


def as_json(found: Forecast | None) -> dict[str, Any] | None:
    return None if found is None else found.as_json()


__all__ = ["Forecast", "forecast", "of_state", "daily", "earliest_start", "theil_sen", "as_json", "MIN_DAYS", "STATUSES",
           "WILL_REACH", "AT_RISK", "WILL_MISS"]
