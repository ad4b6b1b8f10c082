"""The deadline of the work running now: the per-source deadline of the engine, seen by the layers below.

    with deadline.within(120):      # okrsync.engine.within_deadline does this in the source's thread
        ...
        deadline.left()             # seconds left (None: no deadline), e.g. to cap a socket timeout

A context variable, so it follows the thread (and its copied context) that measures one source
and nothing else. A thread pool does not copy it: hand `current()` on and re-enter it with `until`.
Times are `time.monotonic()` moments.
"""
from __future__ import annotations

import time
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Iterator

_ends_at: ContextVar[float | None] = ContextVar("okr_sync_deadline", default=None)


def current() -> float | None:
    """The `time.monotonic()` moment the current work must end by, or None."""
    return _ends_at.get()


def left() -> float | None:
    """Seconds left before the current deadline (0 once it passed), or None without one."""
    ends = _ends_at.get()
    return None if ends is None else max(0.0, ends - time.monotonic())


@contextmanager
def until(moment: float | None) -> Iterator[None]:
    """Run the block under a deadline at `moment` (the earlier of it and any deadline already set)."""
    outer = _ends_at.get()
    ends = moment if outer is None else outer if moment is None else min(outer, moment)
    token = _ends_at.set(ends)
    try:
        yield
    finally:
        _ends_at.reset(token)


def within(seconds: float) -> Iterator[None]:
    """Run the block under a deadline `seconds` from now."""
    return until(time.monotonic() + seconds)


__all__ = ["current", "left", "until", "within"]
