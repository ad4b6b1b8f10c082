"""What the report and the digest show, gathered from an OKR store through its public reads.

    data = gather(store, kr_ids=[...], now=...)     # store: key_results(ids), history(id), watches()

One pass: the key results (each with its latest check-in), then each one's history for its chart,
its latest evidence change and its forecast. Plain data out (no HTML, no Slack): okrsync.report_html
draws it, okrsync.digest words it. The forecast and the evidence change are asked of one function
each (`forecast_of`: okrsync.forecast; `evidence_change`).
"""
from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, timezone
from typing import Any, Iterable, Sequence

from okrsync.records import KeyResultState, StoredCheckin

STATUS_ORDER = ("off_track", "at_risk", "on_track", "done", "no_data")
STATUS_LABEL = {"on_track": "on track", "at_risk": "at risk", "off_track": "off track", "done": "done",
                "no_data": "no data yet"}


@dataclass(frozen=True)
class Point:
    """One check-in on a chart."""

    at: datetime
    value: float
    kind: str                        # automatic | manual | backfill
    status: str | None = None
    note: str | None = None


@dataclass(frozen=True)
class EvidenceChange:
    """The tickets behind the number that entered or left between two check-ins."""

    entered: tuple[dict, ...]
    left: tuple[dict, ...]
    since: datetime | None           # the earlier check-in's moment (None: no earlier one with evidence)
    current: tuple[dict, ...]        # every ticket behind the latest number

    @property
    def moved(self) -> bool:
        return bool(self.entered or self.left)


@dataclass(frozen=True)
class Forecast:
    """The period-end value projected from the trend (okrsync.forecast), with its range."""

    value: float
    low: float
    high: float
    at: date                         # the period end
    status: str                      # will_reach | at_risk | will_miss
    reaches_target_on: date | None = None


@dataclass(frozen=True)
class KeyResultView:
    id: str
    title: str
    objective_id: str
    objective_title: str
    owner: str | None
    unit: str | None
    baseline: float
    target: float
    source: str | None
    period_start: date | None
    period_end: date | None
    value: float | None              # the latest check-in's (None: none yet, or an unreadable one)
    progress: float | None
    expected: float | None
    status: str                      # the latest check-in's status, or no_data
    updated_at: datetime | None
    kind: str | None                 # the latest check-in's kind
    note: str | None
    link: str | None                 # http(s): the tickets or cells behind the number
    file_link: str | None            # file://: a path on the runner, shown but not linked
    query: str | None
    error: str | None                # why the last sync could not measure it
    points: tuple[Point, ...] = ()
    evidence: EvidenceChange | None = None
    forecast: Forecast | None = None
    forecast_note: str | None = None   # why there is no forecast

    @property
    def lower_is_better(self) -> bool:
        return self.target < self.baseline


@dataclass(frozen=True)
class ObjectiveView:
    id: str
    title: str
    owner: str | None
    key_results: tuple[KeyResultView, ...]

    @property
    def counts(self) -> dict[str, int]:
        return count_statuses(self.key_results)


@dataclass(frozen=True)
class ReportData:
    title: str
    generated_at: datetime
    objectives: tuple[ObjectiveView, ...]
    public_url: str | None = None
    key_results: tuple[KeyResultView, ...] = field(default=())

    @property
    def counts(self) -> dict[str, int]:
        return count_statuses(self.key_results)

    @property
    def failing(self) -> int:
        return sum(1 for k in self.key_results if k.error)

    @property
    def periods(self) -> list[str]:
        seen = dict.fromkeys(period_label(k.period_start, k.period_end) for k in self.key_results
                             if k.period_start and k.period_end)
        return list(seen)


def count_statuses(krs: Iterable[KeyResultView]) -> dict[str, int]:
    """Key results by status, every status present (0 when none), in STATUS_ORDER."""
    found = Counter(k.status for k in krs)
    return {s: found.get(s, 0) for s in STATUS_ORDER}


def period_label(start: date | None, end: date | None) -> str:
    """2026-Q4, 2026-H1, 2026-11, 2026, or 2026-10-01 – 2026-12-31."""
    if start is None or end is None:
        return "no period"
    next_day = end + timedelta(days=1)
    if start.day == 1 and next_day.day == 1:
        months = (next_day.year - start.year) * 12 + next_day.month - start.month
        if months == 3 and start.month % 3 == 1:
            return f"{start.year}-Q{start.month // 3 + 1}"
        if months == 6 and start.month in (1, 7):
            return f"{start.year}-H{1 if start.month == 1 else 2}"
        if months == 12 and start.month == 1:
            return str(start.year)
        if months == 1:
            return f"{start:%Y-%m}"
    return f"{start} – {end}"


def _finite(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and math.isfinite(value) else None


def in_period(checkin: StoredCheckin, start: date | None, end: date | None) -> bool:
    """A readable check-in observed within the period (every readable one when there is no period)."""
    if checkin.invalid or checkin.observed_at is None or _finite(checkin.value) is None:
        return False
    if start is None or end is None:
        return True
    first = datetime.combine(start, time.min, tzinfo=timezone.utc)
    after = datetime.combine(end + timedelta(days=1), time.min, tzinfo=timezone.utc)
    return first <= checkin.observed_at < after


def evidence_change(history: Sequence[StoredCheckin]) -> EvidenceChange | None:
    """What entered and left the latest check-in's evidence since the previous check-in that had any
    (set difference on each item's "key"); None when the latest check-in with evidence has none."""
    with_evidence = [c for c in history if c.evidence is not None and not c.invalid]
    if not with_evidence:
        return None
    last = with_evidence[-1]
    current = tuple(e for e in last.evidence or () if isinstance(e, dict) and e.get("key") is not None)
    if len(with_evidence) < 2:
        return EvidenceChange(entered=(), left=(), since=None, current=current)
    before = with_evidence[-2]
    old = {str(e["key"]): e for e in before.evidence or () if isinstance(e, dict) and e.get("key") is not None}
    new = {str(e["key"]): e for e in current}
    return EvidenceChange(entered=tuple(new[k] for k in new if k not in old),
                          left=tuple(old[k] for k in old if k not in new),
                          since=before.observed_at, current=current)


def forecast_of(state: KeyResultState, history: Sequence[StoredCheckin], now: datetime) -> tuple[Forecast | None, str | None]:
    """The key result's period-end forecast from its check-ins, or None and why not: the one place the
    report and the digest ask for one, of ``okrsync.forecast.of_state`` (the same forecast as `status`)."""
    from okrsync.forecast import of_state

    points = [(c.observed_at, float(c.value)) for c in history    # type: ignore[arg-type]
              if not c.invalid and c.observed_at is not None and _finite(c.value) is not None]
    return _as_forecast(of_state(state, points, now), state)


def _as_forecast(got: Any, state: KeyResultState) -> tuple[Forecast | None, str | None]:
    """Read the forecast module's answer: a mapping or an object with value/low/high/at/status
    (and reaches_target_on), or None / {"forecast": None, "reason": ...}."""
    if got is None:
        return None, "not enough history for a forecast"
    if isinstance(got, tuple) and len(got) == 2:
        got, reason = got
        if got is None:
            return None, str(reason or "not enough history for a forecast")
    read = got.get if isinstance(got, dict) else (lambda name, default=None: getattr(got, name, default))
    if read("value") is None:
        return None, str(read("reason") or "not enough history for a forecast")
    at = read("at") or state.period_end
    at = at.date() if isinstance(at, datetime) else at
    reach = read("reaches_target_on")
    reach = reach.date() if isinstance(reach, datetime) else reach
    return Forecast(value=float(read("value")), low=float(read("low", read("value"))),
                    high=float(read("high", read("value"))), at=at, status=str(read("status") or ""),
                    reaches_target_on=reach), None


def _links(link: str | None) -> tuple[str | None, str | None]:
    if not link:
        return None, None
    if link.startswith(("https://", "http://")):
        return link, None
    if link.startswith("file://"):
        return None, link
    return None, None


def view_of(state: KeyResultState, history: Sequence[StoredCheckin], now: datetime,
            error: str | None = None) -> KeyResultView:
    """One key result as the report shows it."""
    last = state.last
    readable = last is not None and not last.invalid
    linked = next((c.link for c in reversed(history) if c.link and not c.invalid), None)   # a manual one has none
    link, file_link = _links(linked or (last.link if last is not None else None))
    points = tuple(Point(c.observed_at, float(c.value), c.kind, c.status, c.note)   # type: ignore[arg-type]
                   for c in history if in_period(c, state.period_start, state.period_end))
    forecast, why = forecast_of(state, history, now)
    return KeyResultView(
        id=state.kr_id, title=state.title, objective_id=state.objective_id, objective_title=state.objective_title,
        owner=state.owner, unit=state.unit, baseline=state.baseline, target=state.target, source=state.source,
        period_start=state.period_start, period_end=state.period_end,
        value=_finite(last.value) if readable else None,
        progress=_finite(last.progress) if readable else None,
        expected=_finite(last.expected) if readable else None,
        status=(last.status or "no_data") if readable and last.status in STATUS_LABEL else "no_data",
        updated_at=last.observed_at if last is not None else None,
        kind=last.kind if last is not None else None, note=last.note if last is not None else None,
        link=link, file_link=file_link, query=last.query if last is not None else None,
        error=error, points=points, evidence=evidence_change(history), forecast=forecast, forecast_note=why)


def store_errors(store: Any, kr_ids: Sequence[str]) -> dict[str, str]:
    """The last error of each key result still failing, as the store's alert state remembers it (only
    stores used by a config with `notify:` keep it; others give {}). Never creates tables."""
    watches = getattr(store, "watches", None)
    if watches is None:
        return {}
    try:
        found = watches(kr_ids, create=False)
    except TypeError:        # a store whose watches() cannot read without creating its tables
        return {}
    return {k: w.last_error for k, w in found.items() if w.failure_streak and w.last_error}


def gather(store: Any, *, kr_ids: Iterable[str] | None = None, now: datetime | None = None,
           errors: dict[str, str] | None = None, title: str | None = None,
           public_url: str | None = None) -> ReportData:
    """Read the store once for the report: each key result (only ``kr_ids`` if given), its history,
    evidence change and forecast, grouped by objective in the store's order. ``errors`` (this run's)
    win over the errors the store remembers."""
    moment = now or datetime.now(timezone.utc)
    ids = None if kr_ids is None else sorted(set(kr_ids))
    states: list[KeyResultState] = store.key_results(ids) if ids is None or ids else []
    failing = store_errors(store, [s.kr_id for s in states]) if states else {}
    failing.update(errors or {})
    views = [view_of(s, store.history(s.kr_id), moment, failing.get(s.kr_id)) for s in states]
    objectives: dict[str, list[KeyResultView]] = {}
    for v in views:
        objectives.setdefault(v.objective_id, []).append(v)
    grouped = tuple(ObjectiveView(oid, krs[0].objective_title, krs[0].owner, tuple(krs)) for oid, krs in objectives.items())
    return ReportData(title=title or "OKR report", generated_at=moment, objectives=grouped,
                      public_url=public_url, key_results=tuple(views))


__all__ = ["Point", "EvidenceChange", "Forecast", "KeyResultView", "ObjectiveView", "ReportData", "gather",
           "view_of", "evidence_change", "forecast_of", "period_label", "count_statuses", "store_errors",
           "STATUS_ORDER", "STATUS_LABEL"]
