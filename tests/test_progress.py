"""Progress math: both directions, over-achievement, period edges, status thresholds."""
from __future__ import annotations

import math
from datetime import date, datetime, timezone

import pytest

from okrsync.measure import Period
from okrsync.progress import (AT_RISK, DONE, OFF_TRACK, ON_TRACK, Thresholds, assess, direction,
                              expected_progress, progress, status)

Q4 = Period(date(2026, 10, 1), date(2026, 12, 31), "2026-Q4")


def test_increase_progress():
    assert direction(30, 45) == "increase"
    assert progress(38, 30, 45) == pytest.approx(8 / 15)


def test_decrease_progress_lower_is_better():
    assert direction(20, 3) == "decrease"
    assert progress(11.5, 20, 3) == pytest.approx(0.5)
    assert progress(25, 20, 3) < 0          # moved the wrong way: shown as negative, not hidden


def test_over_achievement_is_not_clamped():
    assert progress(48, 30, 45) == pytest.approx(1.2)
    assert progress(0, 20, 3) == pytest.approx(20 / 17)


def test_zero_width_range_rejected():
    with pytest.raises(ValueError, match="target equals baseline"):
        progress(5, 10, 10)


def test_expected_progress_period_edges():
    assert expected_progress(Q4, date(2026, 9, 30)) == 0.0                       # before the start
    assert expected_progress(Q4, datetime(2026, 10, 1, tzinfo=timezone.utc)) == 0.0
    assert expected_progress(Q4, date(2026, 12, 31)) == 1.0                      # end of the last day
    assert expected_progress(Q4, date(2027, 2, 1)) == 1.0                        # after the end
    mid = datetime(2026, 11, 15, 12, tzinfo=timezone.utc)
    assert expected_progress(Q4, mid) == pytest.approx((31 + 14.5) / 92)


def test_naive_datetime_taken_as_utc():
    assert expected_progress(Q4, datetime(2026, 11, 15, 12)) == expected_progress(
        Q4, datetime(2026, 11, 15, 12, tzinfo=timezone.utc))


@pytest.mark.parametrize("p,e,expected", [
    (0.50, 0.55, ON_TRACK),    # trailing by 0.05 <= 0.10
    (0.50, 0.70, AT_RISK),
    (0.50, 0.80, OFF_TRACK),
    (0.90, 0.50, ON_TRACK),    # ahead of plan
    (1.00, 0.10, DONE),
    (1.30, 1.00, DONE),
    (-0.2, 0.00, AT_RISK),     # went backwards before the period began
])
def test_status_thresholds(p, e, expected):
    assert status(p, e) == expected


@pytest.mark.parametrize("p,thresholds", [
    (0.0, Thresholds()),                                 # the defaults: 0.0 + 0.1 and 0.0 + 0.25 are exact
    (0.5, Thresholds(at_risk=0.125, off_track=0.25)),    # binary fractions: every sum and difference exact
    (0.25, Thresholds(at_risk=0.25, off_track=0.5)),
])
def test_status_exactly_on_each_threshold_and_one_ulp_past_it(p, thresholds):
    """On a threshold the better status holds; the smallest step past it gives the worse one."""
    for limit, on, past in ((thresholds.at_risk, ON_TRACK, AT_RISK), (thresholds.off_track, AT_RISK, OFF_TRACK)):
        expected = p + limit
        assert expected - p == limit                     # exact in binary: the gap sits on the threshold
        assert status(p, expected, thresholds) == on
        beyond = math.nextafter(expected, 2.0)
        assert beyond - p > limit
        assert status(p, beyond, thresholds) == past


def test_custom_thresholds():
    assert status(0.5, 0.7, Thresholds(at_risk=0.25, off_track=0.5)) == ON_TRACK
    assert status(0.5, 0.9, Thresholds(at_risk=0.25, off_track=0.5)) == AT_RISK


def test_assess_decreasing_key_result_done():
    a = assess(2, 20, 3, Q4, date(2026, 11, 1))
    assert a.status == DONE and a.progress == pytest.approx(18 / 17)
