"""`evidence:` on a count metric (Jira, GitHub): how many of the matching tickets each check-in keeps.

    metric: {jql: "project = PAY AND statusCategory = Done", evidence: 20}    # keep up to 20
    metric: {search: "repo:acme/app is:pr is:merged", evidence: false}          # keep none

Unset, a count keeps DEFAULT; `true` means the default too. At most MOST: the most one answer of
Jira (Cloud's enhanced search pages) or GitHub (REST `per_page`, GraphQL `first`) carries, so the
tickets come with the count in one answer wherever the API allows it. Other metrics keep none, and
saying `evidence:` on them is a mistake `okr-sync validate` names.
"""
from __future__ import annotations

from typing import Annotated, Any, Literal, Union

from pydantic import BeforeValidator

DEFAULT = 50
MOST = 100
ONLY_COUNTS = "`evidence:` keeps the tickets behind a count: it goes with a count only; remove it"


def _setting(value: Any) -> Any:
    if value is True:
        return DEFAULT
    if value is None or value is False:
        return value
    if isinstance(value, int) and 1 <= value <= MOST:
        return value
    raise ValueError(f"evidence must be a whole number from 1 to {MOST} (the tickets kept with each check-in; "
                     f"default {DEFAULT}) or false (none), not {value!r}")


Setting = Annotated[Union[int, Literal[False], None], BeforeValidator(_setting)]


def limit(setting: int | bool | None, counts: bool) -> int:
    """How many tickets a metric keeps with its check-in: 0 when it is not a count or says false."""
    if not counts or setting is False:
        return 0
    return DEFAULT if setting is None or setting is True else int(setting)


def ticket(key: Any, title: Any) -> dict[str, str] | None:
    """One evidence item, {"key": ..., "title": ...}; None if the answer gave no key."""
    if not isinstance(key, str) or not key:
        return None
    return {"key": key, "title": title if isinstance(title, str) else ""}


__all__ = ["DEFAULT", "MOST", "ONLY_COUNTS", "Setting", "limit", "ticket"]
