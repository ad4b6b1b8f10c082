"""What moved a count between check-ins: the tickets that entered and left its evidence.

    changes(history)  ->  one entry per check-in: None, or {"entered": [...], "left": [...], "partial", "since"}

A check-in of a Jira or GitHub count keeps the tickets behind it (`evidence`, up to the metric's
`evidence: N`). Each check-in with evidence is compared with the previous one that has some: the
tickets in it and not before entered the set, those before and not in it left it. When either list
holds fewer tickets than its count (more matched than `evidence: N` keeps), the difference covers
only the tickets listed: `partial` says so.
"""
from __future__ import annotations

from typing import Any, Sequence

from okrsync.records import StoredCheckin


def _partial(checkin: StoredCheckin) -> bool:
    return checkin.value is not None and len(checkin.evidence or ()) < checkin.value


def changes(history: Sequence[StoredCheckin]) -> list[dict[str, Any] | None]:
    """For each check-in (oldest first), what entered and left its evidence since the previous check-in
    with evidence; None for a check-in without evidence, or the first one with some."""
    out: list[dict[str, Any] | None] = []
    previous: StoredCheckin | None = None
    for checkin in history:
        if checkin.evidence is None or checkin.invalid:
            out.append(None)
            continue
        if previous is None:
            out.append(None)
        else:
            before = {t.get("key"): t for t in previous.evidence or ()}
            now = {t.get("key"): t for t in checkin.evidence}
            out.append({"entered": [t for k, t in now.items() if k not in before],
                        "left": [t for k, t in before.items() if k not in now],
                        "partial": _partial(previous) or _partial(checkin),
                        "since": previous.observed_at.isoformat() if previous.observed_at else None})
        previous = checkin
    return out


def describe(change: dict[str, Any] | None, shown: int = 5) -> str:
    """One line: `+3 entered: PAY-12 Fix refunds, PAY-14 …; −1 left: PAY-7 Old bug` ('' when nothing moved)."""
    if change is None:
        return ""
    parts = []
    for sign, name in (("+", "entered"), ("−", "left")):
        tickets = change[name]
        if not tickets:
            continue
        listed = ", ".join(f"{t.get('key')} {_short(t.get('title') or '')}".strip() for t in tickets[:shown])
        more = f" and {len(tickets) - shown} more" if len(tickets) > shown else ""
        parts.append(f"{sign}{len(tickets)} {name}: {listed}{more}")
    line = "; ".join(parts) or "no change in the tickets"
    return line + (" (among the tickets listed only)" if change["partial"] else "")


def _short(title: str, limit: int = 40) -> str:
    return title if len(title) <= limit else title[: limit - 1] + "…"


__all__ = ["changes", "describe"]
