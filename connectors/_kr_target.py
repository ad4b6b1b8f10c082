"""What publish targets that keep ONE value per key result share (a Google Sheet row, a Jira issue).

Such a target writes a key result's newest check-in only: a batch may hold several check-ins of one
key result (runs the tool missed), the older ones are superseded by the newest and settle with it.

    newest_per_key(deliveries, key_of)   the batch grouped by where it goes in the tool, newest last
    judge(delivery, tool_value, when)    okrsync.policy's decision for the value the tool shows now
    settle(group, result)                one result per delivery of a group, from the newest one's result
    STATUS_LABELS                        how a status reads in a tool (On track, At risk, Off track, Done)
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Callable, Iterable

from okrsync import policy
from okrsync.publish import Delivery, DeliveryResult

STATUS_LABELS = {"on_track": "On track", "at_risk": "At risk", "off_track": "Off track", "done": "Done"}


@dataclass
class Group:
    """The check-ins of one key result bound for one place in the tool (`key`: a row's KR id, an issue key)."""

    key: str
    newest: Delivery
    older: list[Delivery] = field(default_factory=list)

    @property
    def kr_ids(self) -> list[str]:
        return list(dict.fromkeys(d.kr_id for d in (*self.older, self.newest)))


def newest_per_key(deliveries: Iterable[Delivery], key_of: Callable[[Delivery], str]) -> list[Group]:
    """The batch by place in the tool, in first-seen order; the newest check-in (by observed_at, then outbox
    id) is the one to write."""
    groups: dict[str, Group] = {}
    for d in deliveries:
        key = key_of(d)
        group = groups.get(key)
        if group is None:
            groups[key] = Group(key, d)
        elif (d.observed_at, d.id) >= (group.newest.observed_at, group.newest.id):
            group.older.append(group.newest)
            group.newest = d
        else:
            group.older.append(d)
    return list(groups.values())


def judge(d: Delivery, tool_value: float | None, changed_at: datetime | None) -> tuple[policy.Decision, float | None]:
    """okrsync.policy's decision for writing `d` over what the tool shows (`tool_value`, last changed at
    `changed_at` if the tool says), and the tool's value (the tool already showing `d`'s value is unchanged:
    see policy.in_tool)."""
    current = policy.in_tool(tool_value, changed_at, last_sent_value=d.last_sent_value, last_sent_at=d.last_sent_at,
                             observed_at=d.observed_at, delivering=d.value)
    return policy.decide(d.value, current, d.on_manual), tool_value


def settle(group: Group, result: DeliveryResult) -> dict[int, DeliveryResult]:
    """The newest check-in's result, and the same for the older ones it supersedes: delivered ones record the
    value now in the tool (so okr-sync's "last written there" stays true), kept or failed ones the same."""
    out = {group.newest.id: result}
    for d in group.older:
        out[d.id] = result
    return out


__all__ = ["STATUS_LABELS", "Group", "judge", "newest_per_key", "settle"]
