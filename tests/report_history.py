"""A store with made-up history, written through the store's public writes, for the report's tests,
its benchmark (benchmarks/report_bench.py) and the screenshot (scripts/report_screenshot.py).

    write_history(store, key_results=100, days=90)    # 100 key results, a check-in a day for 90 days

Objectives of five key results each. Values follow a straight trend plus seeded noise, so some key
results end on track, some at risk, some off track, some done; every fourth one is lower-is-better,
every third carries evidence (ticket keys that come and go), and a few have manual check-ins (one
kept at the end). One write_sync per day, as a daily scheduled run would.
"""
from __future__ import annotations

import random
from datetime import date, datetime, time, timedelta, timezone

from okrsync.measure import Period
from okrsync.progress import assess
from okrsync.records import CheckinRecord, KeyResultRecord, ObjectiveRecord

PERIOD = Period(date(2026, 10, 1), date(2026, 12, 31), "2026-Q4")
PACE = (1.15, 1.0, 0.85, 0.7, 0.55, 1.35)    # how fast each key result moves against the calendar


def key_result_records(count: int, period: Period = PERIOD) -> tuple[list[ObjectiveRecord], list[KeyResultRecord]]:
    objectives, krs = [], []
    for i in range(count):
        oid = f"obj-{i // 5:02d}"
        if i % 5 == 0:
            objectives.append(ObjectiveRecord(oid, f"Objective {i // 5 + 1}: make team {i // 5 + 1} faster", f"team-{i // 5 + 1}"))
        lower = i % 4 == 3
        baseline, target = (900.0, 500.0) if lower else (float(10 * (i % 3)), float(40 + 10 * (i % 5)))
        krs.append(KeyResultRecord(
            id=f"kr-{i:03d}", objective_id=oid, title=f"Key result {i + 1}: " + (
                f"bring latency from {baseline:g} ms to {target:g} ms" if lower else f"reach {target:g} from {baseline:g}"),
            source="jira" if i % 3 == 0 else "sheet", baseline=baseline, target=target, unit="ms" if lower else None,
            period_start=period.start, period_end=period.end, on_manual="overwrite" if i % 7 == 3 else "keep"))
    return objectives, krs


def _evidence(i: int, day: int, value: float) -> tuple[dict, ...]:
    """Tickets behind a count: a window of ticket numbers that moves on as days pass."""
    n = max(0, min(12, int(value) % 13))
    first = 100 * i + day // 3
    return tuple({"key": f"PAY-{k}", "title": f"Ticket {k} of key result {i}",
                  "url": f"https://jira.example.com/browse/PAY-{k}"} for k in range(first, first + n))


def write_history(store, key_results: int = 100, days: int = 90, seed: int = 7, period: Period = PERIOD) -> list[str]:
    """Write `days` daily runs for `key_results` key results; returns their ids."""
    rng = random.Random(seed)
    objectives, krs = key_result_records(key_results, period)
    start = datetime.combine(period.start, time(7, 0), tzinfo=timezone.utc)
    for day in range(days):
        moment = start + timedelta(days=day)
        checkins = []
        for i, kr in enumerate(krs):
            share = min(1.0, (day + 1) / ((period.end - period.start).days + 1))
            pace = PACE[i % len(PACE)]
            value = kr.baseline + (kr.target - kr.baseline) * share * pace + rng.uniform(-1.5, 1.5) * (abs(kr.target - kr.baseline) / 40)
            value = round(value, 1)
            a = assess(value, kr.baseline, kr.target, period, moment)
            link = (f"https://jira.example.com/issues/?jql=project%20%3D%20PAY%20AND%20kr%20%3D%20{i}" if kr.source == "jira"
                    else f"https://sheets.example.com/okrs#kr-{i}")
            checkins.append(CheckinRecord(
                kr_id=kr.id, value=value, progress=a.progress, expected=a.expected, status=a.status, observed_at=moment,
                source=kr.source, query=f"metric {i}", link=link, run_id=f"history-{day:03d}",
                evidence=_evidence(i, day, value) if i % 3 == 0 else None))
            if i % 7 == 3 and day == days // 2:
                checkins.append(CheckinRecord(kr_id=kr.id, value=value + 2, progress=None, expected=None, status=a.status,
                                              observed_at=moment + timedelta(hours=2), source="manual", kind="manual",
                                              note="recounted by hand"))
        store.write_sync(run_id=f"history-{day:03d}", started_at=moment, objectives=objectives, key_results=krs,
                         checkins=checkins, config_files=["history.yaml"], failed=0)
    last = start + timedelta(days=days - 1, hours=3)
    for i, kr in enumerate(krs):
        if i % 11 == 5:
            value = kr.baseline + (kr.target - kr.baseline) * 0.5
            a = assess(value, kr.baseline, kr.target, period, last)
            store.add_manual_checkin(kr.id, value, note="agreed in the review", observed_at=last, progress=a.progress,
                                     expected=a.expected, status=a.status)
    return [k.id for k in krs]
