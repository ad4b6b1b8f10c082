"""Manual values win: the one keep/overwrite decision every OKR store and publish target uses.

An automatic value arrives for a key result that already shows a value somewhere (the store's latest
check-in, or the value in an OKR tool). `decide` says what to do:

- the current value is a person's (manual) and the key result says `on_manual: keep` (the default):
  keep it (``kept_manual``), whatever the automatic value;
- the current value equals the automatic one, and so does its status when both have one: nothing to
  write (``unchanged``); the same value with another status (expected progress moved on, or a
  back-dated run) is written, so the status shown is the one measured;
- otherwise: write it (``written``); `on_manual: overwrite` writes over a manual value too.

Whether a value is manual is the caller's knowledge: in the store a check-in of kind ``manual``; in a
tool, `in_tool` decides: the tool's value differs from what okr-sync last wrote there and was changed
after that write (or, if okr-sync never wrote there, after the check-in being delivered was observed).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

VALUE_TOLERANCE = 1e-9          # two values closer than this are "the same value"

Decision = Literal["written", "unchanged", "kept_manual"]


@dataclass(frozen=True)
class Current:
    """The value a key result shows now, and whether a person put it there (and its status, when known)."""

    value: float
    manual: bool
    status: str | None = None


def same_value(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=VALUE_TOLERANCE, abs_tol=VALUE_TOLERANCE)


def decide(new_value: float, current: Current | None, on_manual: str = "keep", new_status: str | None = None) -> Decision:
    """``written``, ``unchanged`` or ``kept_manual`` for one automatic value (see the module docstring)."""
    if current is None:
        return "written"
    if current.manual and on_manual != "overwrite":
        return "kept_manual"
    if not same_value(current.value, new_value):
        return "written"
    moved = new_status is not None and current.status is not None and new_status != current.status
    return "written" if moved else "unchanged"


def in_tool(tool_value: float | None, tool_changed_at: datetime | None, *, last_sent_value: float | None,
            last_sent_at: datetime | None, observed_at: datetime, delivering: float | None = None) -> Current | None:
    """The value an OKR tool shows, as `decide` needs it (None: the tool shows no value).

    It is manual when it is not what okr-sync last wrote there (or okr-sync never wrote there) and the
    tool says it changed after okr-sync's last write there (or, never written, after `observed_at`, the
    moment the value being delivered was measured). A tool that does not say when a value changed
    (`tool_changed_at` None): a value that differs from okr-sync's last write is manual; with no last
    write, it is not (the first delivery writes). A tool already showing `delivering`, the value being
    delivered, is never a person's conflict, whoever put it there (e.g. a run that wrote it and died
    before recording the delivery): `decide` then finds it unchanged."""
    if tool_value is None or not math.isfinite(tool_value):
        return None
    if delivering is not None and same_value(tool_value, delivering):
        return Current(tool_value, manual=False)
    if last_sent_value is not None and same_value(tool_value, last_sent_value):
        return Current(tool_value, manual=False)
    if tool_changed_at is None:
        return Current(tool_value, manual=last_sent_value is not None)
    since = last_sent_at if last_sent_at is not None else observed_at
    return Current(tool_value, manual=tool_changed_at > since)


__all__ = ["Current", "Decision", "decide", "in_tool", "same_value", "VALUE_TOLERANCE"]
