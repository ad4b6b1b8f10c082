"""The weekly digest: one chat message per config file for the check-in ritual.

    notify:
      webhook: {secret: okr-slack-webhook}
      digest: "0 9 * * MON"                  # or {cron: "0 9 * * MON", timezone: Europe/Berlin}

At each tick of the cron (`okr-sync serve` deploys it as `okr-digest/<config>-served`; `okr-sync digest CONFIG`
sends it by hand, `--dry-run` prints it), the digest says, for the key results of that file:

- what moved since the last digest (value and status changes, with the tickets that entered and left),
- what is at risk or off track, forecast misses, manual values in force, failing sources,
- and links: the report (`report: {url: ...}`) and each key result's tickets or cells.

It goes to the file's webhook as Slack Block Kit with a plain-text fallback (`text`, which Mattermost,
Rocket.Chat and notifications read). A period's digest is sent once, even when two runs overlap: the
store's digest record (okr_digests) is claimed by one run, marked sent, or released for a retry when
the webhook failed. "Since the last digest" is the period of the last digest sent, else one tick back.

The store and the webhook poster come from the caller, as for alerts (okrsync.notify).
"""
from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Callable, Sequence
from zoneinfo import ZoneInfo

from cronsim import CronSim

from okrsync.config import Plan
from okrsync.errors import ConfigError, ConfigIssue
from okrsync.records import StoredCheckin
from okrsync.redact import scrub_data
from okrsync.report_data import (STATUS_LABEL, EvidenceChange, KeyResultView, count_statuses, evidence_change,
                                 store_errors, view_of)
from okrsync.report_style import fmt, fmt_unit, pct
from okrsync.schedule import DEFAULT_TIMEZONE, cron_fields

SECTION_CHARS = 2900          # Slack: a section's text holds at most 3,000 characters
SECTION_BLOCKS = 3            # at most this many blocks per part of the digest (a message holds 50)
TICKETS_SHOWN = 5             # tickets named per key result that moved

# ---------------------------------------------------------------------------- periods


def last_tick(cron: str, tz: str, moment: datetime) -> datetime:
    """The cron's latest tick at or before ``moment`` (UTC), on wall-clock time in ``tz``."""
    zone = ZoneInfo(tz)
    wall = moment.astimezone(zone).replace(tzinfo=None)
    for candidate in CronSim(cron_fields(cron), wall + timedelta(seconds=1), reverse=True):
        tick = candidate.replace(tzinfo=zone, fold=0).astimezone(timezone.utc)
        if tick <= moment:
            return tick
    raise ValueError(f"cron {cron!r} never fires")   # pragma: no cover - CronSim iterates forever


def cadence_of(plan: Plan, config_file: str) -> tuple[str, str] | None:
    """The file's digest cron and timezone (its own, else the file's schedule's, else UTC)."""
    notify = plan.notify.get(config_file)
    if notify is None or notify.digest is None:
        return None
    file_schedule = plan.schedules.get(config_file)
    tz = notify.digest.timezone or (file_schedule.timezone if file_schedule else None) or DEFAULT_TIMEZONE
    return notify.digest.cron, tz

# ---------------------------------------------------------------------------- what it says


@dataclass(frozen=True)
class Moved:
    kr: KeyResultView
    before_value: float | None
    before_status: str | None
    tickets: EvidenceChange | None
    first_value: float | None = None     # without a value before the window: its first value in the window


@dataclass(frozen=True)
class Digest:
    title: str
    since: datetime
    until: datetime
    key_results: tuple[KeyResultView, ...]
    moved: tuple[Moved, ...] = ()
    report_url: str | None = None
    counts: dict[str, int] = field(default_factory=dict)

    @property
    def at_risk(self) -> list[KeyResultView]:
        order = {"off_track": 0, "at_risk": 1}
        return sorted((k for k in self.key_results if k.status in order), key=lambda k: (order[k.status], k.id))

    @property
    def forecast_misses(self) -> list[KeyResultView]:
        return [k for k in self.key_results if k.forecast is not None and k.forecast.status == "will_miss"]

    @property
    def manual(self) -> list[KeyResultView]:
        return [k for k in self.key_results if k.kind == "manual"]

    @property
    def failing(self) -> dict[str, list[KeyResultView]]:
        by_source: dict[str, list[KeyResultView]] = {}
        for k in self.key_results:
            if k.error:
                by_source.setdefault(k.source or "?", []).append(k)
        return by_source


def _at(history: Sequence[StoredCheckin], moment: datetime) -> StoredCheckin | None:
    """The latest readable check-in observed at or before ``moment``."""
    found = None
    for c in history:
        if c.invalid or c.observed_at is None or c.value is None:
            continue
        if c.observed_at <= moment:
            found = c
    return found


def build(store: Any, kr_ids: Sequence[str], *, since: datetime, now: datetime, title: str,
          report_url: str | None = None) -> Digest:
    """What moved between ``since`` and ``now``, and where each key result stands now."""
    states = store.key_results(sorted(set(kr_ids))) if kr_ids else []
    errors = store_errors(store, [s.kr_id for s in states]) if states else {}
    views, moved = [], []
    for state in states:
        history = store.history(state.kr_id)
        view = view_of(state, history, now, errors.get(state.kr_id))
        views.append(view)
        before = _at(history, since)
        value_moved = view.value is not None and (before is None or before.value != view.value)
        status_moved = before is not None and view.status != (before.status or "no_data") and view.status != "no_data"
        if value_moved or status_moved:
            with_evidence = [c for c in history if c.evidence is not None and c.observed_at is not None and not c.invalid]
            earlier = [c for c in with_evidence if c.observed_at <= since]
            tickets = evidence_change([earlier[-1], with_evidence[-1]]) if earlier and with_evidence[-1] is not earlier[-1] else None
            first = next((c.value for c in history if not c.invalid and c.observed_at is not None and c.value is not None
                          and c.observed_at > since), None) if before is None else None
            moved.append(Moved(view, before.value if before else None, before.status if before else None, tickets, first))
    return Digest(title=title, since=since, until=now, key_results=tuple(views), moved=tuple(moved),
                  report_url=report_url, counts=count_statuses(views))

# ---------------------------------------------------------------------------- wording


def _esc(text: Any) -> str:
    """Text safe in Slack mrkdwn (&, <, > are its control characters)."""
    return str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _url(url: str) -> str:
    return url.replace("|", "%7C").replace(">", "%3E").replace("<", "%3C").replace(" ", "%20")


def _link(url: str | None, label: str, slack: bool) -> str:
    if not url or not url.startswith(("https://", "http://")):
        return ""
    return f"<{_url(url)}|{_esc(label)}>" if slack else f"{label}: {url}"


def _day(moment: datetime) -> str:
    return f"{moment:%a} {moment:%b} {moment.day}"


def _change(old: float | None, new: float | None) -> str:
    if old is None or new is None:
        return ""
    delta = new - old
    return " (±0)" if delta == 0 else f" ({'+' if delta > 0 else '−'}{fmt(abs(delta))})"


def _who(kr: KeyResultView, slack: bool) -> str:
    return f"*{_esc(kr.id)}* {_esc(kr.title)}" if slack else f"{kr.id} ({kr.title})"


def _tickets(change: EvidenceChange | None, slack: bool) -> str:
    if change is None or not change.moved:
        return ""

    def names(items: tuple[dict, ...]) -> str:
        shown = []
        for e in items[:TICKETS_SHOWN]:
            key = str(e.get("key"))
            url = e.get("url")
            shown.append(_link(url, key, True) if slack and isinstance(url, str) and url.startswith("http")
                         else (_esc(key) if slack else key))
        more = len(items) - TICKETS_SHOWN
        return ", ".join(shown) + (f" and {more} more" if more > 0 else "")

    parts = []
    if change.entered:
        parts.append(f"+{len(change.entered)} entered: {names(change.entered)}")
    if change.left:
        parts.append(f"−{len(change.left)} left: {names(change.left)}")
    return "; ".join(parts)


def _moved_line(m: Moved, slack: bool) -> str:
    kr = m.kr
    text = f"{_who(kr, slack)}: "
    if m.before_value is None and m.first_value is not None:
        text += (f"new, {fmt(m.first_value)} → {fmt_unit(kr.value, kr.unit)}{_change(m.first_value, kr.value)}"
                 if m.first_value != kr.value else f"new, {fmt_unit(kr.value, kr.unit)}")
    elif m.before_value is None:
        text += f"new, {fmt_unit(kr.value, kr.unit)}"
    else:
        text += f"{fmt(m.before_value)} → {fmt_unit(kr.value, kr.unit)}{_change(m.before_value, kr.value)}"
    if m.before_status and m.before_status != kr.status:
        text += f" · {STATUS_LABEL.get(m.before_status, m.before_status)} → {STATUS_LABEL.get(kr.status, kr.status)}"
    tickets = _tickets(m.tickets, slack)
    link = _link(kr.link, "tickets" if m.tickets else "data", slack)
    return text + (f" · {tickets}" if tickets else "") + (f" · {link}" if link else "")


def _standing(kr: KeyResultView, slack: bool) -> str:
    line = (f"{_who(kr, slack)}: {STATUS_LABEL.get(kr.status, kr.status)}, {pct(kr.progress)} of the way"
            + (f", {pct(kr.expected)} expected" if kr.expected is not None else "")
            + f" · {fmt_unit(kr.value, kr.unit)} of {fmt_unit(kr.target, kr.unit)}")
    link = _link(kr.link, "data", slack)
    return line + (f" · {link}" if link else "")


def _miss(kr: KeyResultView, slack: bool) -> str:
    f = kr.forecast
    assert f is not None
    return (f"{_who(kr, slack)}: forecast {fmt_unit(f.value, kr.unit)} ({fmt(f.low)}–{fmt(f.high)}) by {f.at:%b} {f.at.day}, "
            f"target {fmt_unit(kr.target, kr.unit)}")


def _manual(kr: KeyResultView, slack: bool) -> str:
    when = f"{kr.updated_at:%b} {kr.updated_at.day}" if kr.updated_at else "?"
    note = f" (“{_esc(kr.note) if slack else kr.note}”)" if kr.note else ""
    return f"{_who(kr, slack)}: {fmt_unit(kr.value, kr.unit)} entered by hand on {when}{note}; automatic values do not replace it"


def _failing(source: str, krs: list[KeyResultView], slack: bool) -> str:
    names = ", ".join(_esc(k.id) if slack else k.id for k in krs)
    error = krs[0].error or ""
    return f"source `{_esc(source) if slack else source}` ({names}): {_esc(error) if slack else error}"


def sections(d: Digest, slack: bool) -> list[tuple[str, list[str]]]:
    """(heading, lines) of each part that has something to say."""
    parts = [
        (f"Moved since {_day(d.since)}", [_moved_line(m, slack) for m in d.moved]),
        ("At risk or off track", [_standing(k, slack) for k in d.at_risk]),
        ("Forecast misses", [_miss(k, slack) for k in d.forecast_misses]),
        ("Manual values in force", [_manual(k, slack) for k in d.manual]),
        ("Failing sources", [_failing(s, krs, slack) for s, krs in d.failing.items()]),
    ]
    if not d.moved:
        parts[0] = (f"Moved since {_day(d.since)}", ["nothing moved"])
    return [(h, lines) for h, lines in parts if lines]


def _summary(d: Digest) -> str:
    counts = ", ".join(f"{n} {STATUS_LABEL[s]}" for s, n in d.counts.items() if n)
    return f"{len(d.key_results)} key result{'s' if len(d.key_results) != 1 else ''}: {counts or 'none yet'}"


def text(d: Digest) -> str:
    """The digest as plain text (the payload's fallback, and what `okr-sync digest --dry-run` prints)."""
    lines = [f"{d.title} · {_day(d.since)} – {_day(d.until)}", _summary(d)]
    for heading, items in sections(d, slack=False):
        lines += ["", f"{heading}:"] + [f"- {line}" for line in items]
    if d.report_url:
        lines += ["", f"Report: {d.report_url}"]
    return "\n".join(lines)


def _packed(heading: str, lines: list[str]) -> list[str]:
    """The lines of one part as section texts of at most SECTION_CHARS, at most SECTION_BLOCKS of them."""
    texts, current, used = [], f"*{_esc(heading)}*", 0
    for i, line in enumerate(lines):
        bullet = f"\n• {line}"
        if len(current) + len(bullet) > SECTION_CHARS:
            texts.append(current)
            current = ""
            if len(texts) == SECTION_BLOCKS:
                break
            bullet = bullet.lstrip("\n")
        current += bullet
        used = i + 1
    if current and len(texts) < SECTION_BLOCKS:
        texts.append(current)
    left = len(lines) - used
    if left > 0:
        texts[-1] = texts[-1][: SECTION_CHARS - 40] + f"\n…and {left} more"
    return texts


def slack_payload(d: Digest) -> dict[str, Any]:
    """A Slack incoming-webhook body: Block Kit blocks, and `text` (the plain fallback)."""
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": d.title[:150], "emoji": True}},
        {"type": "context", "elements": [{"type": "mrkdwn", "text": _esc(f"{_day(d.since)} – {_day(d.until)} · {_summary(d)}")}]},
    ]
    for heading, lines in sections(d, slack=True):
        blocks.append({"type": "divider"})
        blocks += [{"type": "section", "text": {"type": "mrkdwn", "text": t}} for t in _packed(heading, lines)]
    if d.report_url:
        blocks.append({"type": "actions", "elements": [
            {"type": "button", "text": {"type": "plain_text", "text": "Open the OKR report"}, "url": d.report_url}]})
    return {"text": text(d), "blocks": blocks}

# ---------------------------------------------------------------------------- sending


def send_digest(plan: Plan, config_file: str, open_store: Callable[[str], Any], post: Callable[..., int] | None, *,
                now: datetime | None = None, run_id: str | None = None, dry_run: bool = False) -> dict[str, Any]:
    """Build the file's digest for the current period and post it once.

    Returns {"sent": bool, "reason": str | None, "period": datetime, "since": datetime, "text": str,
    "payload": dict, "calls": int}; raises ConfigError when the file has no `notify:` (or, to send, no
    `digest:`), OkrSyncError when the store cannot be used or the webhook refuses (the period stays
    open for a later run)."""
    moment = now or datetime.now(timezone.utc)
    run_id = run_id or "digest-" + uuid.uuid4().hex[:12]
    notify = plan.notify.get(config_file)
    cadence = cadence_of(plan, config_file)
    if notify is None or (cadence is None and not dry_run):
        fix = ("add `notify: {webhook: ..., digest: \"0 9 * * MON\"}`" if notify is None
               else "add `digest: \"0 9 * * MON\"` under `notify:`")
        raise ConfigError([ConfigIssue(config_file, None, None, f"no weekly digest is configured: {fix}")])
    cron, tz = cadence or ("0 9 * * MON", DEFAULT_TIMEZONE)
    period = last_tick(cron, tz, moment)
    key = str(Path(config_file).resolve())
    kr_ids = [kr.id for kr in plan.key_results if kr.config_file == config_file]
    report = plan.reports.get(config_file)
    outcome: dict[str, Any] = {"sent": False, "reason": None, "period": period, "calls": 0}
    store = open_store(plan.store_url)
    try:
        if not dry_run and not store.claim_digest(key, period, run_id):
            outcome["reason"] = f"already sent (or being sent) for the period from {period:%Y-%m-%d %H:%M} UTC"
            return outcome
        sent = [row["period"] for row in store.digests(key) if row["sent_at"] is not None and row["period"] <= period]
        since = sent[0] if sent else last_tick(cron, tz, period - timedelta(seconds=1))
        try:
            digest = build(store, kr_ids, since=since, now=moment, title=f"OKR digest · {Path(config_file).name}",
                           report_url=report.url if report else None)
            payload = scrub_data(slack_payload(digest))
            outcome.update(since=since, text=payload["text"], payload=payload)
            if dry_run:
                return outcome
            assert post is not None
            outcome["calls"] += post(notify.webhook.reveal(), payload, where=notify.webhook.describe())
        except BaseException:
            store.finish_digest(key, period, run_id, delivered=False)
            raise
        store.finish_digest(key, period, run_id, delivered=True)
        outcome["sent"] = True
        return outcome
    finally:
        store.close()


__all__ = ["Digest", "Moved", "build", "text", "slack_payload", "sections", "send_digest", "last_tick", "cadence_of"]
