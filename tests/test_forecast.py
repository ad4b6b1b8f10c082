"""okrsync.forecast on synthetic series with known answers: linear, flat, noisy, reached early,
regressing, lower-is-better, an outlier, and too little history."""
from __future__ import annotations

import random
from datetime import date, datetime, time, timedelta, timezone

import pytest

from okrsync.forecast import AT_RISK, WILL_MISS, WILL_REACH, daily, forecast, theil_sen
from okrsync.measure import Period

Q4 = Period(date(2026, 10, 1), date(2026, 12, 31), "2026-Q4")
START = datetime(2026, 10, 1, tzinfo=timezone.utc)
END_X = 92.0                                          # days from the start of Q4 to the end of its last day


def at(day: float) -> datetime:
    """The moment `day` days after the period starts (fractions are hours into the day)."""
    return START + timedelta(days=day)


def series(values: dict[float, float]) -> list[tuple[datetime, float]]:
    return [(at(day), value) for day, value in values.items()]


def run(points, *, baseline=0.0, target=100.0, moment=at(60)):
    return forecast(points, baseline=baseline, target=target, period=Q4, moment=moment)


def test_a_straight_line_is_projected_exactly():
    found, reason = run(series({d: 10 + 2 * d for d in (0, 7, 14, 21, 28)}))
    assert reason is None and found is not None
    assert found.slope_per_day == pytest.approx(2)
    assert found.value == pytest.approx(10 + 2 * END_X)                  # 194 at the end of Dec 31
    assert found.low == found.high == found.value                         # no residuals: no range
    assert found.status == WILL_REACH and found.at == date(2026, 12, 31)
    assert found.reaches_target_on == date(2026, 11, 15)                  # 10 + 2x = 100 at x = 45
    assert found.days == 5


def test_a_flat_series_stays_where_it_is_and_misses():
    found, _ = run(series({d: 40 for d in (0, 10, 20, 30, 40)}))
    assert found.value == pytest.approx(40) and found.slope_per_day == 0
    assert found.status == WILL_MISS and found.reaches_target_on is None


def test_a_noisy_line_lands_near_the_truth_with_a_range_around_it():
    rng = random.Random(4)
    truth = lambda d: 5 + 1.1 * d                                         # noqa: E731 - 106.2 at the end
    points = series({d: truth(d) + rng.uniform(-6, 6) for d in range(0, 61, 2)})
    found, _ = run(points)
    assert found.slope_per_day == pytest.approx(1.1, abs=0.1)
    assert found.low < found.value < found.high
    assert found.low <= truth(END_X) <= found.high
    assert abs(found.value - truth(END_X)) < 6


def test_a_target_reached_early_stays_will_reach():
    found, _ = run(series({0: 0, 7: 30, 14: 60, 21: 90, 28: 120, 35: 150}), moment=at(40))
    assert found.status == WILL_REACH
    assert found.reaches_target_on == date(2026, 10, 24)                  # crossed 100 on day 23.3
    assert found.reaches_target_on < at(40).date()


def test_a_regressing_key_result_will_miss():
    found, _ = run(series({0: 60, 10: 55, 20: 48, 30: 44, 40: 37}))
    assert found.slope_per_day < 0 and found.value < 60
    assert found.status == WILL_MISS and found.reaches_target_on is None  # heading away from the target


def test_lower_is_better_reads_the_trend_downwards():
    found, _ = run(series({0: 900, 14: 820, 28: 740, 42: 660}), baseline=900, target=500)
    assert found.value == pytest.approx(900 - 80 / 14 * END_X)            # about 374 ms
    assert found.status == WILL_REACH
    assert found.reaches_target_on == date(2026, 12, 10)                  # 900 - 5.71x = 500 at x = 70


def test_at_risk_when_only_the_hopeful_end_of_the_range_reaches_it():
    # a line to 96 at the end, with check-ins up to 8 above and below it
    wobble = {0: 0, 5: 8, 10: -8, 15: 8, 20: -8, 25: 8, 30: -8, 35: 8, 40: -8, 45: 8, 50: -8}
    found, _ = run(series({d: 96 / END_X * d + w for d, w in wobble.items()}), moment=at(55))
    assert found.value < 100 < found.high
    assert found.status == AT_RISK


def test_one_wild_reading_does_not_tilt_the_line():
    points = series({d: 2 * d for d in range(0, 50, 5)})
    points[4] = (points[4][0], 500.0)                                     # a typo in the sheet
    found, _ = run(points)
    assert found.slope_per_day == pytest.approx(2)
    assert found.value == pytest.approx(2 * END_X)


def test_one_value_per_day_the_last_one_observed():
    points = [(at(0.25), 5.0), (at(0.75), 7.0), (at(3.5), 9.0)]
    assert daily(points, Q4, at(10)) == [(at(0.75), 7.0), (at(3.5), 9.0)]


def test_too_little_history_gives_no_forecast_and_says_why():
    found, reason = run(series({0: 1, 0.5: 2, 7: 3}))                     # two distinct days
    assert found is None and "at least 3 days" in reason and "has 2" in reason and "okr-sync backfill" in reason


def test_check_ins_outside_the_period_or_after_the_moment_do_not_count():
    points = [(START - timedelta(days=3), 0.0)] + series({1: 10, 2: 20}) + [(at(70), 500.0)]
    found, reason = run(points, moment=at(30))
    assert found is None and "has 2" in reason


def test_no_forecast_once_the_period_is_over():
    found, reason = run(series({0: 1, 7: 2, 14: 3}), moment=datetime.combine(date(2027, 1, 1), time(6), timezone.utc))
    assert found is None and reason == "the period ended on 2026-12-31"


def test_theil_sen_is_the_median_of_pairwise_slopes():
    intercept, slope = theil_sen([0, 1, 2, 3, 4], [0, 1, 2, 3, 40])     # slopes: six 1s, then 10, 13, 19, 37
    assert slope == pytest.approx(1.0) and intercept == pytest.approx(0.0)

# ---------------------------------------------------------------------------- the `forecast` alert


def outlook(status: str | None, value: float = 380.0) -> dict | None:
    return None if status is None else {"value": value, "low": value - 5, "high": value + 10, "at": "2026-12-31",
                                        "reaches_target_on": None, "status": status}


def observe(status: str | None, **kw):
    from okrsync.alerts import Observation

    return Observation(kr_id="activated", title="Activate 400 accounts", source="sheet", target=400.0, value=266.0,
                       status="on_track", progress=0.66, unit="accounts", forecast=outlook(status, **kw))


def test_a_forecast_that_flips_alerts_once_and_one_that_holds_does_not():
    from okrsync.alerts import decide, icon

    t0 = datetime(2026, 11, 20, 12, tzinfo=timezone.utc)
    watch, alerts = decide(None, observe("will_reach"), t0)
    assert alerts == [] and watch.forecast == "will_reach"                  # the first forecast is the baseline
    watch, alerts = decide(watch, observe("will_reach"), t0 + timedelta(hours=1))
    assert alerts == []
    watch, alerts = decide(watch, observe("will_miss"), t0 + timedelta(hours=2))
    assert [(a.kind, a.status) for a in alerts] == [("forecast", "will_miss")]
    assert alerts[0].message == ("*activated* (Activate 400 accounts): forecast will_reach → will_miss: 380 accounts "
                                 "expected by 2026-12-31, range 375–390 (target 400 accounts)")
    assert icon(alerts[0]) == ":chart_with_downwards_trend:"
    watch, alerts = decide(watch, observe(None), t0 + timedelta(hours=3))   # too little history: no baseline
    assert alerts == [] and watch.forecast is None
    watch, alerts = decide(watch, observe("at_risk"), t0 + timedelta(hours=4))
    assert alerts == []                                                     # a first forecast again
    _, alerts = decide(watch, observe("at_risk"), t0 + timedelta(hours=5), frozenset({"status_change"}))
    assert alerts == []


def test_the_forecast_of_the_watch_survives_the_store(tmp_path):
    from connectors.sql_store import open_store
    from okrsync.alerts import Watch
    from okrsync.records import KeyResultRecord, ObjectiveRecord

    t0 = datetime(2026, 11, 20, 12, tzinfo=timezone.utc)
    with open_store(f"sqlite:///{tmp_path / 'okr.db'}") as store:
        store.write_sync(run_id="seed", started_at=t0, objectives=[ObjectiveRecord("o", "O")],
                         key_results=[KeyResultRecord("kr", "o", "KR", "s", 0, 400)], checkins=[], config_files=[],
                         failed=0)
        store.update_watch(run_id="r1", kr_ids=["kr"],
                           decide=lambda previous: ([Watch("kr", status="on_track", seen_at=t0, forecast="at_risk")], []))
        assert store.watches(["kr"])["kr"].forecast == "at_risk"


def test_the_forecast_reaches_the_run_artifacts():
    from flows.artifacts import summary_markdown, table_rows

    row = {"id": "activated", "value": 266.0, "change": 32.0, "previous": 234.0, "baseline": 0.0, "target": 400.0,
           "progress": 0.665, "expected": 0.65, "status": "on_track", "link": "file:///a.csv", "error": None,
           "unit": "accounts", "source": "sheet", "forecast": outlook("will_miss"), "forecast_reason": None}
    bare = {**row, "id": "nps", "forecast": None, "forecast_reason": "needs check-ins on at least 3 days"}
    result = {"run_id": "r1", "as_of": "2026-11-29T15:00:00+00:00", "dry_run": False, "source_calls": 1, "seconds": 0.2,
              "counts": {"key_results": 2, "synced": 2, "failed": 0, "written": 2, "unchanged": 0, "kept_manual": 0},
              "key_results": [row, bare]}
    rows = table_rows(result)
    assert (rows[0]["forecast"], rows[0]["forecast range"], rows[0]["forecast status"]) == (
        380.0, "380 (375–390) will_miss", "will_miss")
    assert (rows[1]["forecast"], rows[1]["forecast status"]) == (None, None)
    text = summary_markdown(result)
    assert "| forecast |" in text and "| 380 (375–390) will_miss |" in text
