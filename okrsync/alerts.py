"""Which alerts are due after a sync: pure decisions over what the store remembers.

    notify:
      webhook: "${OKR_SYNC_WEBHOOK}"          # or {secret: okr-sync-webhook}; Slack-compatible
      on: [status_change, target_reached, source_failing, stale, recovered]   # default: all
    stale_after: 2d                           # per file or per key result: 90m, 36h, 2d, 1w

The store keeps one `Watch` per key result. After each run, `decide(watch, observation, moment)`
gives the key result's new watch and the alerts due, each sent once per change:

- status_change   the status differs from the last one measured (on_track -> at_risk, ...)
- target_reached  the status became `done`
- source_failing  measuring the key result failed twice in a row (once per failing streak)
- stale           no successful measurement for longer than `stale_after` (once per streak)
- recovered       it measures again after a `source_failing` alert
- forecast        the end-of-period forecast flips (will_reach -> at_risk, at_risk -> will_miss, ...);
                  a key result without a forecast (too little history) sets no baseline for it

The first observation of a key result sets its baseline and sends nothing. An observation
older than the one the watch last saw (a back-dated `--as-of` run) changes nothing.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from okrsync.refs import SecretRef
from okrsync.schedule import ScheduleConfig

STATUS_CHANGE, TARGET_REACHED, SOURCE_FAILING, STALE, RECOVERED, FORECAST = (
    "status_change", "target_reached", "source_failing", "stale", "recovered", "forecast")
ALERT_KINDS = (STATUS_CHANGE, TARGET_REACHED, SOURCE_FAILING, STALE, RECOVERED, FORECAST)
FAILURES_BEFORE_ALERT = 2        # "fails twice in a row"
AlertKind = Literal["status_change", "target_reached", "source_failing", "stale", "recovered", "forecast"]

# Failures first: they are what someone must act on.
_ORDER = {SOURCE_FAILING: 0, STALE: 1, STATUS_CHANGE: 2, FORECAST: 3, TARGET_REACHED: 4, RECOVERED: 5}
_ICON = {SOURCE_FAILING: ":x:", STALE: ":hourglass:", TARGET_REACHED: ":tada:", RECOVERED: ":white_check_mark:"}
_FORECAST_ICON = {"will_reach": ":chart_with_upwards_trend:", "at_risk": ":warning:",
                  "will_miss": ":chart_with_downwards_trend:"}
_STATUS_ICON = {"on_track": ":large_green_circle:", "at_risk": ":large_yellow_circle:",
                "off_track": ":red_circle:", "done": ":tada:"}

# ---------------------------------------------------------------------------- durations

_DURATION_PART = re.compile(r"(\d+)\s*(weeks?|w|days?|d|hours?|h|minutes?|mins?|m)(?![a-z])", re.I)
_UNITS = {"w": timedelta(weeks=1), "d": timedelta(days=1), "h": timedelta(hours=1), "m": timedelta(minutes=1)}


def parse_duration(text: str | int | float) -> timedelta:
    """`90m`, `36h`, `2d`, `1w`, `2 days`, or combined like `1d 12h`; ValueError naming the fix otherwise."""
    spec = str(text).strip()
    parts = _DURATION_PART.findall(spec)
    if not parts or _DURATION_PART.sub("", spec).strip():
        raise ValueError(f"duration {text!r} is not understood: write e.g. 90m, 36h, 2d or 1w")
    total = sum((int(n) * _UNITS[unit[0].lower()] for n, unit in parts), timedelta())
    if total <= timedelta():
        raise ValueError(f"duration {text!r} must be longer than zero, e.g. 2d")
    return total


def format_duration(span: timedelta) -> str:
    """A short human duration: `3d 4h`, `1d 12h`, `45min` (minutes only under a day)."""
    minutes = int(span.total_seconds() // 60)
    days, rest = divmod(minutes, 24 * 60)
    hours, mins = divmod(rest, 60)
    parts = [f"{days}d" if days else "", f"{hours}h" if hours else "", f"{mins}min" if mins and not days else ""]
    return " ".join(p for p in parts if p) or "0min"

# ---------------------------------------------------------------------------- config


class NotifyConfig(BaseModel):
    """Where alerts go (a Slack-compatible incoming webhook) and which ones."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    webhook: SecretRef = Field(description='the webhook URL: "${VARIABLE}" or {secret: NAME}; it holds a secret')
    on: list[AlertKind] = Field(default_factory=lambda: list(ALERT_KINDS), min_length=1,
                                description="which alerts to send (default: all)")
    digest: ScheduleConfig | None = Field(None, description=(
        'a weekly (or any cron) digest to the same webhook: "0 9 * * MON", or {cron: ..., timezone: ...} '
        "(default timezone: the file's schedule's, else UTC); see okrsync/digest.py"))

    @field_validator("digest", mode="before")
    @classmethod
    def _cron_text(cls, value: Any) -> Any:
        """`digest: "0 9 * * MON"` is short for `digest: {cron: "0 9 * * MON"}`."""
        return {"cron": value} if isinstance(value, str) else value

    @model_validator(mode="before")
    @classmethod
    def _yaml_on(cls, value: Any) -> Any:
        """YAML 1.1 reads a bare `on:` key as the boolean true; take it as `on`."""
        if isinstance(value, dict) and True in value and "on" not in value:
            value = {("on" if k is True else k): v for k, v in value.items()}
        return value

# ---------------------------------------------------------------------------- records


@dataclass(frozen=True)
class Watch:
    """What the store remembers of one key result between runs, for alerts."""

    kr_id: str
    status: str | None = None               # the last status measured
    value: float | None = None              # the last value measured
    last_success_at: datetime | None = None  # the last run that measured it
    failure_streak: int = 0                 # runs in a row that could not measure it
    last_error: str | None = None
    failing_alerted: bool = False           # a source_failing alert went out for this streak
    stale_alerted: bool = False             # a stale alert went out since the last success
    first_seen_at: datetime | None = None
    seen_at: datetime | None = None         # the moment of the last run applied
    forecast: str | None = None             # the last forecast status (will_reach | at_risk | will_miss)


@dataclass(frozen=True)
class Observation:
    """One key result's outcome in one run, as alerts need it."""

    kr_id: str
    title: str
    source: str
    target: float
    value: float | None = None
    status: str | None = None
    progress: float | None = None
    unit: str | None = None
    link: str | None = None
    error: str | None = None
    stale_after: timedelta | None = None
    forecast: dict[str, Any] | None = None  # okrsync.forecast.Forecast.as_json(), None without one


@dataclass(frozen=True)
class Alert:
    """One alert: what happened to which key result, in one line a person reads, and the links to
    follow it up (set when it is delivered, okrsync.notify): the tickets or data behind the number,
    the Prefect flow run that saw it."""

    kr_id: str
    kind: str
    message: str
    status: str | None = None       # the key result's status now, when measured (a forecast alert: the new forecast)
    links: tuple[tuple[str, str], ...] = ()   # (label, URL), e.g. ("tickets", "https://acme.atlassian.net/issues/?jql=...")


@dataclass(frozen=True)
class QueuedAlert(Alert):
    """An alert as the store keeps it: decided once, delivered by the run that claimed it."""

    id: int = 0
    run_id: str | None = None
    created_at: datetime | None = None
    sent_at: datetime | None = None
    attempts: int = 0                # failed deliveries so far

# ---------------------------------------------------------------------------- decisions


def decide(previous: Watch | None, obs: Observation, moment: datetime,
           kinds: frozenset[str] | set[str] = frozenset(ALERT_KINDS)) -> tuple[Watch, list[Alert]]:
    """The key result's new watch and the alerts due (only those of `kinds`)."""
    if previous is not None and previous.seen_at is not None and moment < previous.seen_at:
        return previous, []
    before = previous or Watch(obs.kr_id, first_seen_at=moment)
    alerts: list[Alert] = []
    if obs.error is None:
        outlook = (obs.forecast or {}).get("status")
        now = replace(before, status=obs.status, value=obs.value, last_success_at=moment, failure_streak=0,
                      last_error=None, failing_alerted=False, stale_alerted=False, seen_at=moment, forecast=outlook)
        if before.failing_alerted:
            alerts.append(Alert(obs.kr_id, RECOVERED, _recovered(obs, before), obs.status))
        if previous is not None and before.status is not None and obs.status != before.status:
            if obs.status == "done":
                alerts.append(Alert(obs.kr_id, TARGET_REACHED, _target_reached(obs), obs.status))
            else:
                alerts.append(Alert(obs.kr_id, STATUS_CHANGE, _status_change(obs, before.status), obs.status))
        if previous is not None and before.forecast is not None and outlook is not None and outlook != before.forecast:
            alerts.append(Alert(obs.kr_id, FORECAST, _forecast_flip(obs, before.forecast), outlook))
    else:
        streak = before.failure_streak + 1
        now = replace(before, failure_streak=streak, last_error=obs.error, seen_at=moment)
        if streak >= FAILURES_BEFORE_ALERT and not before.failing_alerted:
            now = replace(now, failing_alerted=True)
            alerts.append(Alert(obs.kr_id, SOURCE_FAILING, _failing(obs, streak)))
        since = before.last_success_at or before.first_seen_at or moment
        if obs.stale_after is not None and moment - since > obs.stale_after and not before.stale_alerted:
            now = replace(now, stale_alerted=True)
            alerts.append(Alert(obs.kr_id, STALE, _stale(obs, before, moment - since)))
    return now, [a for a in alerts if a.kind in kinds and (a.kind != RECOVERED or SOURCE_FAILING in kinds)]


def ordered(alerts: list[Alert]) -> list[Alert]:
    """Failures first, then status changes, targets reached, recoveries."""
    return sorted(alerts, key=lambda a: (_ORDER.get(a.kind, 9), a.kr_id))

# ---------------------------------------------------------------------------- wording


def _num(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:,.2f}".rstrip("0").rstrip(".") if value != int(value) else f"{int(value):,}"


def _with_unit(value: float | None, unit: str | None) -> str:
    return _num(value) + (f" {unit}" if unit else "")


def _who(obs: Observation) -> str:
    return f"*{obs.kr_id}* ({obs.title})"


def _status_change(obs: Observation, old: str) -> str:
    pct = "" if obs.progress is None else f", {100 * obs.progress:.0f}% of the way"
    return (f"{_who(obs)}: {old} → {obs.status}; now {_with_unit(obs.value, obs.unit)}"
            f" (target {_with_unit(obs.target, obs.unit)}{pct})")


def _target_reached(obs: Observation) -> str:
    return f"{_who(obs)}: target reached: {_with_unit(obs.value, obs.unit)} (target {_with_unit(obs.target, obs.unit)})"


def _failing(obs: Observation, streak: int) -> str:
    return f"{_who(obs)}: source `{obs.source}` failed {streak} runs in a row: {obs.error}"


def _stale(obs: Observation, before: Watch, age: timedelta) -> str:
    last = ("never measured" if before.last_success_at is None else
            f"last value {_with_unit(before.value, obs.unit)} at {before.last_success_at:%Y-%m-%d %H:%M} UTC")
    return (f"{_who(obs)}: no successful update for {format_duration(age)} "
            f"(stale after {format_duration(obs.stale_after or age)}); {last}; latest error: {obs.error}")


def _forecast_flip(obs: Observation, old: str) -> str:
    f = obs.forecast or {}
    when = f" (the trend reaches it on {f['reaches_target_on']})" if f.get("reaches_target_on") else ""
    return (f"{_who(obs)}: forecast {old} → {f.get('status')}: {_with_unit(f.get('value'), obs.unit)} expected by "
            f"{f.get('at')}, range {_num(f.get('low'))}–{_num(f.get('high'))} (target "
            f"{_with_unit(obs.target, obs.unit)}){when}")


def _recovered(obs: Observation, before: Watch) -> str:
    return (f"{_who(obs)}: source `{obs.source}` works again after {before.failure_streak} failed runs; "
            f"now {_with_unit(obs.value, obs.unit)}")


def icon(alert: Alert) -> str:
    """The emoji a chat shows before the alert."""
    if alert.kind == STATUS_CHANGE:
        return _STATUS_ICON.get(alert.status or "", ":warning:")
    if alert.kind == FORECAST:
        return _FORECAST_ICON.get(alert.status or "", ":crystal_ball:")
    return _ICON.get(alert.kind, ":bell:")


def slack_link(label: str, url: str) -> str:
    """A mrkdwn link, `<url|label>`: `&`, `<` and `>` are Slack's control characters, written as HTML
    entities (Slack's "Formatting text" reference), and a `|` in the URL would end it early (%7C)."""
    safe = url.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace("|", "%7C")
    return f"<{safe}|{label}>"


def slack_payload(alerts: list[Alert], header: str) -> dict[str, str]:
    """A Slack-compatible incoming-webhook body, `{"text": ...}` in mrkdwn, failures first; each alert
    is followed by its links (` · <url|tickets> · <url|flow run>`).

    Slack, Mattermost, Rocket.Chat and Discord's `/slack` endpoint all read `text` and its `<url|label>` links.
    """
    lines = [f"*{header}*"] + [f"{icon(a)} {a.message}" + "".join(f" · {slack_link(label, url)}" for label, url in a.links)
                               for a in ordered(alerts)]
    return {"text": "\n".join(lines)}
