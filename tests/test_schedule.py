"""Schedules: cron and timezone parsing, cadences per config, which key results are due when.

Every clock here is a fixed moment passed in (a frozen clock): nothing depends on today.
"""
from __future__ import annotations

import shutil
from datetime import datetime, timezone
from pathlib import Path

import pytest
from pydantic import ValidationError

from conftest import EXAMPLE
from flows.deployments import deployment_name, plan_deployments
from okrsync.config import load_plan
from okrsync.errors import ConfigError
from okrsync.schedule import Cadence, ScheduleConfig, cadences, due_at, fires_at, next_fire, unscheduled

UTC = timezone.utc


def at(text: str) -> datetime:
    """A UTC moment from 'YYYY-MM-DD HH:MM'."""
    return datetime.strptime(text, "%Y-%m-%d %H:%M").replace(tzinfo=UTC)


WEEKDAY_7_BERLIN = Cadence("0 7 * * 1-5", "Europe/Berlin", ("checkout-nps", "weekly-signups"), whole_file=True)
HOURLY = Cadence("0 * * * *", "UTC", ("p1-bugs",), whole_file=False)

# ---------------------------------------------------------------------------- parsing


def test_schedule_accepts_five_field_cron_macros_and_iana_timezones():
    s = ScheduleConfig.model_validate({"cron": "0  7 * * mon-fri", "timezone": "America/New_York"})
    assert (s.cron, s.timezone) == ("0 7 * * mon-fri", "America/New_York")
    assert ScheduleConfig.model_validate({"cron": "@hourly"}).timezone is None


@pytest.mark.parametrize("cron", ["0 25 * * *", "0 0 * * * *", "H * * * *", "every day", "* * *"])
def test_bad_cron_says_how_to_write_one(cron):
    with pytest.raises(ValidationError) as error:
        ScheduleConfig.model_validate({"cron": cron})
    message = str(error.value)
    assert f"cron {cron!r} is not a valid schedule" in message and "e.g. \"0 7 * * 1-5\"" in message


def test_unknown_timezone_suggests_the_closest_name():
    with pytest.raises(ValidationError) as error:
        ScheduleConfig.model_validate({"cron": "0 7 * * *", "timezone": "Europe/Berln"})
    assert "unknown timezone 'Europe/Berln': did you mean Europe/Berlin?" in str(error.value)

# ---------------------------------------------------------------------------- cadences


def test_key_results_group_by_cron_and_timezone_inheriting_the_files_zone():
    file_schedule = ScheduleConfig(cron="0 7 * * 1-5", timezone="Europe/Berlin")
    krs = [("a", None), ("b", ScheduleConfig(cron="0 * * * *")), ("c", None),
           ("d", ScheduleConfig(cron="0 7 * * 1-5")),                      # same as the file's: merged
           ("e", ScheduleConfig(cron="0 * * * *", timezone="UTC"))]
    got = cadences(file_schedule, krs)
    assert [(c.cron, c.timezone, c.kr_ids, c.whole_file) for c in got] == [
        ("0 7 * * 1-5", "Europe/Berlin", ("a", "c", "d"), False),
        ("0 * * * *", "Europe/Berlin", ("b",), False),                    # inherits Berlin
        ("0 * * * *", "UTC", ("e",), False),
    ]


def test_one_cadence_for_the_whole_file_runs_without_only():
    got = cadences(ScheduleConfig(cron="@daily"), [("a", None), ("b", None)])
    assert got == [Cadence("@daily", "UTC", ("a", "b"), whole_file=True)]


def test_without_a_file_schedule_only_key_results_with_their_own_are_scheduled():
    krs = [("a", None), ("b", ScheduleConfig(cron="30 6 * * *", timezone="Asia/Tokyo"))]
    assert cadences(None, krs) == [Cadence("30 6 * * *", "Asia/Tokyo", ("b",), whole_file=False)]
    assert unscheduled(None, krs) == ["a"]
    assert unscheduled(ScheduleConfig(cron="@daily"), krs) == []

# ---------------------------------------------------------------------------- when (frozen clock)


@pytest.mark.parametrize("moment, due", [
    ("2026-11-23 06:00", True),     # Monday 07:00 in Berlin (CET, UTC+1)
    ("2026-11-23 05:00", False),    # 07:00 UTC would be wrong
    ("2026-11-23 07:00", False),    # 08:00 Berlin
    ("2026-11-28 06:00", False),    # Saturday
    ("2026-06-15 05:00", True),     # Monday 07:00 in Berlin summer time (CEST, UTC+2)
    ("2026-06-15 06:00", False),
])
def test_weekday_morning_cron_fires_at_local_time_across_summer_time(moment, due):
    assert fires_at(WEEKDAY_7_BERLIN, at(moment)) is due


def test_a_moment_anywhere_in_the_minute_counts_and_naive_moments_are_utc():
    assert fires_at(WEEKDAY_7_BERLIN, datetime(2026, 11, 23, 6, 0, 59, 999, tzinfo=UTC))
    assert fires_at(WEEKDAY_7_BERLIN, datetime(2026, 11, 23, 6, 0))
    assert not fires_at(WEEKDAY_7_BERLIN, datetime(2026, 11, 23, 6, 1, tzinfo=UTC))


def test_next_fire_from_a_frozen_clock():
    friday_evening = at("2026-11-27 18:00")
    assert next_fire(WEEKDAY_7_BERLIN, friday_evening) == at("2026-11-30 06:00")   # Monday
    assert next_fire(HOURLY, at("2026-11-27 18:20")) == at("2026-11-27 19:00")


def test_a_time_skipped_by_the_spring_forward_runs_as_prefect_runs_it():
    # 02:30 does not exist in Berlin on 2026-03-29 (clocks jump 02:00 -> 03:00); Prefect's
    # scheduler runs it at 03:30 local time that day, 01:30 UTC.
    nightly = Cadence("30 2 * * *", "Europe/Berlin", ("kr",), whole_file=True)
    assert next_fire(nightly, at("2026-03-29 00:00")) == at("2026-03-29 01:30")
    assert next_fire(nightly, at("2026-03-30 00:00")) == at("2026-03-30 00:30")    # CEST: 02:30 = 00:30 UTC


def test_which_key_results_are_due_at_a_given_time():
    both = [WEEKDAY_7_BERLIN, HOURLY]
    assert due_at(both, at("2026-11-23 06:00")) == ["checkout-nps", "weekly-signups", "p1-bugs"]
    assert due_at(both, at("2026-11-23 09:00")) == ["p1-bugs"]
    assert due_at(both, at("2026-11-23 09:30")) == []

# ---------------------------------------------------------------------------- from config files


SCHEDULED = """\
period: 2026-Q4
schedule: {cron: "0 7 * * 1-5", timezone: Europe/Berlin}
sources:
  survey:  {type: spreadsheet, path: data/survey.csv}
  signups: {type: spreadsheet, path: data/signups.csv}
objectives:
  - id: checkout
    title: Make checkout fast and reliable
    key_results:
      - id: checkout-nps
        title: Raise checkout NPS from 30 to 45
        source: survey
        metric: {cell: C7}
        baseline: 30
        target: 45
        schedule: {cron: "0 * * * *"}
      - id: weekly-signups
        title: Reach 60 self-serve customers a week
        source: signups
        metric: {column: customers, aggregate: last, where: {channel: self-serve}}
        baseline: 30
        target: 60
"""


@pytest.fixture
def team_dir(tmp_path: Path) -> Path:
    shutil.copytree(EXAMPLE.parent / "data", tmp_path / "data")
    return tmp_path


def test_config_schedules_reach_the_plan_and_the_deployment(team_dir):
    config = team_dir / "payments team.yaml"
    config.write_text(SCHEDULED, encoding="utf-8")
    plan = load_plan([config])
    assert plan.schedules[str(config)] == ScheduleConfig(cron="0 7 * * 1-5", timezone="Europe/Berlin")
    assert {kr.id: kr.schedule for kr in plan.key_results} == {
        "checkout-nps": ScheduleConfig(cron="0 * * * *"), "weekly-signups": None}

    (deployment,) = plan_deployments([config])
    assert deployment.name == "payments-team-served" and deployment.full_name == "sync-okrs/payments-team-served"
    assert deployment.config_path == str(config.resolve())
    assert [(c.describe(), deployment.schedule_parameters(c)) for c in deployment.cadences] == [
        ("0 * * * * (Europe/Berlin)", {"only": ["checkout-nps"]}),
        ("0 7 * * 1-5 (Europe/Berlin)", {"only": ["weekly-signups"]}),
    ]
    nexts = deployment.next_runs(after=at("2026-11-27 18:20"))      # Friday evening
    assert [when for _, when in nexts] == [at("2026-11-27 19:00"), at("2026-11-30 06:00")]


def test_schedule_mistakes_are_reported_with_file_line_and_key_result(team_dir):
    config = team_dir / "okrs.yaml"
    config.write_text(SCHEDULED.replace("timezone: Europe/Berlin", "timezone: Europe/Berln")
                      .replace('schedule: {cron: "0 * * * *"}', 'schedule: {cron: "0 * * *"}'), encoding="utf-8")
    with pytest.raises(ConfigError) as error:
        load_plan([config])
    lines = [str(i) for i in error.value.issues]
    assert lines == [
        f"{config}:2: unknown timezone 'Europe/Berln': did you mean Europe/Berlin?",
        f"{config}:16: checkout-nps: cron '0 * * *' is not a valid schedule: write five fields, minute hour "
        "day-of-month month day-of-week, e.g. \"0 7 * * 1-5\" (07:00 on weekdays) or \"0 * * * *\" (hourly)",
    ]


def test_deployments_need_distinct_names_and_agreeing_key_results(team_dir):
    (team_dir / "a").mkdir()
    first, second = team_dir / "okrs.yaml", team_dir / "a" / "okrs.yaml"
    first.write_text(SCHEDULED, encoding="utf-8")
    second.write_text(SCHEDULED.replace("path: data/", f"path: {team_dir}/data/").replace("target: 45", "target: 50"),
                      encoding="utf-8")
    with pytest.raises(ConfigError) as error:
        plan_deployments([first, second])
    messages = [i.message for i in error.value.issues]
    assert messages[0] == "these files would all be deployment `okrs-served`: give them different file names"
    assert messages[1].startswith("key result `checkout-nps` is also in") and "defined differently" in messages[1]
    assert len(messages) == 2     # weekly-signups is the same in both: overlapping configs are fine


def test_deployment_names_drop_characters_prefect_refuses_and_say_they_are_served():
    assert deployment_name("config/team a&b.yaml") == "team-a-b-served"
    assert deployment_name(Path("/x/<>.yaml")) == "config-served"
