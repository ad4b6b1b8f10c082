"""When key results sync on their own: the `schedule:` of a config file and of a key result.

    schedule: {cron: "0 7 * * 1-5", timezone: Europe/Berlin}   # a config file: every key result
      - id: p1-bugs
        schedule: {cron: "0 * * * *"}                          # a key result with its own cadence

A key result without its own schedule follows its file's. A key result's schedule without a
timezone takes its file's timezone, else UTC. Key results sharing the same cron and timezone
form one `Cadence`: one Prefect schedule, one flow run per tick for all of them.

Cron times are read with cronsim (standard cron semantics: day-of-month OR day-of-week, wall-clock
times in the schedule's timezone across daylight-saving changes), the way Prefect's scheduler
reads the same cron string; nothing here imports Prefect.
"""
from __future__ import annotations

import difflib
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Iterable
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from cronsim import CronSim, CronSimError
from pydantic import BaseModel, ConfigDict, Field, field_validator

DEFAULT_TIMEZONE = "UTC"
MACROS = ("@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly")
CRON_HELP = ('write five fields, minute hour day-of-month month day-of-week, e.g. "0 7 * * 1-5" '
             "(07:00 on weekdays) or \"0 * * * *\" (hourly)")

# ---------------------------------------------------------------------------- config


class ScheduleConfig(BaseModel):
    """A cron schedule with its timezone, as written in a config file."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    cron: str = Field(description='five cron fields, e.g. "0 7 * * 1-5" (07:00 on weekdays), or @hourly/@daily')
    timezone: str | None = Field(None, description="IANA timezone, e.g. Europe/Berlin (default: the file's, else UTC)")

    @field_validator("cron")
    @classmethod
    def _valid_cron(cls, value: str) -> str:
        text = " ".join(value.split())
        if not (text.lower() in MACROS or len(text.split()) == 5) or not _prefect_accepts(text):
            raise ValueError(f"cron {value!r} is not a valid schedule: {CRON_HELP}")
        return text

    @field_validator("timezone")
    @classmethod
    def _valid_timezone(cls, value: str | None) -> str | None:
        if value is None:
            return None
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            close = difflib.get_close_matches(value, sorted(available_timezones()), n=1)
            hint = f"did you mean {close[0]}?" if close else "use an IANA name such as Europe/Berlin, America/New_York or UTC"
            raise ValueError(f"unknown timezone {value!r}: {hint}") from None
        return value


_MACRO_FIELDS = {"@yearly": "0 0 1 1 *", "@annually": "0 0 1 1 *", "@monthly": "0 0 1 * *",
                 "@weekly": "0 0 * * 0", "@daily": "0 0 * * *", "@midnight": "0 0 * * *", "@hourly": "0 * * * *"}


def _fields(cron: str) -> str:
    return _MACRO_FIELDS.get(cron.lower(), cron)


def cron_fields(cron: str) -> str:
    """The five cron fields of a cron string or a macro (@daily -> 0 0 * * *)."""
    return _fields(cron)


def _prefect_accepts(cron: str) -> bool:
    """A cron string cron (and so Prefect) can run: five valid fields, or a macro."""
    try:
        CronSim(_fields(cron), datetime(2026, 1, 1, tzinfo=timezone.utc))
    except CronSimError:
        return False
    return True

# ---------------------------------------------------------------------------- cadences


@dataclass(frozen=True)
class Cadence:
    """One cron + timezone and the key results of one config file that run on it."""

    cron: str
    timezone: str
    kr_ids: tuple[str, ...]
    whole_file: bool          # True: every key result of the file (run without `only`)

    def describe(self) -> str:
        return f"{self.cron} ({self.timezone})"


def effective(own: ScheduleConfig | None, file_schedule: ScheduleConfig | None) -> tuple[str, str] | None:
    """(cron, timezone) a key result runs on: its own, else its file's; None if neither."""
    file_tz = (file_schedule.timezone if file_schedule else None) or DEFAULT_TIMEZONE
    if own is not None:
        return own.cron, own.timezone or file_tz
    if file_schedule is not None:
        return file_schedule.cron, file_tz
    return None


def cadences(file_schedule: ScheduleConfig | None,
             key_results: Iterable[tuple[str, ScheduleConfig | None]]) -> list[Cadence]:
    """Group one file's key results (id, own schedule) by the cron and timezone they run on.

    Key results with neither their own schedule nor a file schedule are in no cadence (they run
    on demand only); see `unscheduled`.
    """
    krs = list(key_results)
    groups: dict[tuple[str, str], list[str]] = {}
    for kr_id, own in krs:
        when = effective(own, file_schedule)
        if when is not None:
            groups.setdefault(when, []).append(kr_id)
    everyone = [kr_id for kr_id, _ in krs]
    return [Cadence(cron, tz, tuple(ids), whole_file=len(groups) == 1 and ids == everyone)
            for (cron, tz), ids in groups.items()]


def unscheduled(file_schedule: ScheduleConfig | None,
                key_results: Iterable[tuple[str, ScheduleConfig | None]]) -> list[str]:
    """The key results that no schedule runs (only on demand)."""
    return [kr_id for kr_id, own in key_results if effective(own, file_schedule) is None]

# ---------------------------------------------------------------------------- when


def next_fire(cadence: Cadence, after: datetime) -> datetime:
    """The first tick of the cadence at or after `after` (a tz-aware moment), in UTC."""
    start = after if after.tzinfo else after.replace(tzinfo=timezone.utc)
    zone = ZoneInfo(cadence.timezone)
    # Cron runs on wall-clock times; a time skipped by a spring-forward runs that much later and a
    # time repeated by a fall-back runs once, the first time (fold=0), as Prefect's scheduler does.
    wall = start.astimezone(zone).replace(tzinfo=None) - timedelta(microseconds=1)   # cronsim: strictly after
    for candidate in CronSim(_fields(cadence.cron), wall - timedelta(hours=3)):
        moment = candidate.replace(tzinfo=zone, fold=0).astimezone(timezone.utc)
        if moment >= start:
            return moment
    raise ValueError(f"cron {cadence.cron!r} never fires")   # pragma: no cover - CronSim iterates forever


def fires_at(cadence: Cadence, moment: datetime) -> bool:
    """Does the cadence tick in the minute that holds `moment`?"""
    minute = _minute(moment)
    return next_fire(cadence, minute) < minute + timedelta(minutes=1)


def due_at(all_cadences: Iterable[Cadence], moment: datetime) -> list[str]:
    """The key results due in the minute that holds `moment`, in cadence order."""
    due: list[str] = []
    for cadence in all_cadences:
        if fires_at(cadence, moment):
            due.extend(k for k in cadence.kr_ids if k not in due)
    return due


def _minute(moment: datetime) -> datetime:
    aware = moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)
    return aware.astimezone(timezone.utc).replace(second=0, microsecond=0)

