"""The plain logic of the Jira source: JQL surgery, field names -> ids, running totals.

No HTTP here (that is _jira_client.py); connectors/jira.py ties the two together.

- `split_order_by` / `done_jql`: counts and sums ignore `ORDER BY`, so it is cut off before a
  query is asked (one query for `X` and `X ORDER BY rank`), and the "done" variant of a query
  is `(X) AND statusCategory = Done`.
- `FieldCatalogue`: resolves a field as people name it ("Story Points") to its id
  (customfield_10016) from the field list, with close names when it does not exist.
- `ScanTotals`: the running totals of one pass over a query's issues, fed a page at a time,
  so memory does not grow with the number of issues.
"""
from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, field
from typing import Any, Iterable
from urllib.parse import quote

from connectors import _answers, _evidence
from okrsync.errors import SourceError

DONE_CATEGORY = "done"             # statusCategory.key of every "Done" status, whatever its name
NUMERIC_TYPES = ("number",)        # FieldDetails.schema.type of fields that can be added up
_ORDER_BY = re.compile(r"order\s+by\b", re.IGNORECASE)
_MAX_CLOSE = 3

# ---------------------------------------------------------------------------- JQL


def split_order_by(jql: str) -> tuple[str, str]:
    """(condition, "ORDER BY ...") of a JQL query; the ORDER BY is found outside quotes and parentheses."""
    depth, quote_char, i = 0, "", 0
    while i < len(jql):
        char = jql[i]
        if quote_char:
            if char == "\\":
                i += 2
                continue
            if char == quote_char:
                quote_char = ""
        elif char in "\"'":
            quote_char = char
        elif char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        elif depth == 0 and char in "oO" and (i == 0 or not (jql[i - 1].isalnum() or jql[i - 1] == "_")):
            if _ORDER_BY.match(jql, i):
                return jql[:i].strip(), jql[i:].strip()
        i += 1
    return jql.strip(), ""


def condition_of(jql: str) -> str:
    """The JQL without its ORDER BY: what counts and sums ask."""
    return split_order_by(jql)[0]


def done_jql(condition: str) -> str:
    """The matching issues whose status is in the Done category."""
    return f"({condition}) AND statusCategory = Done"


def navigator_link(url: str, jql: str) -> str:
    """The Jira issue navigator on this JQL: {url}/issues/?jql=..."""
    return f"{url.rstrip('/')}/issues/?jql={quote(jql.strip(), safe='')}"

# ---------------------------------------------------------------------------- fields


@dataclass(frozen=True)
class JiraField:
    """A numeric issue field: its id (what the API speaks) and its name (what people see)."""

    id: str
    name: str


def _type_of(details: dict[str, Any]) -> str:
    schema = details.get("schema")
    return str(schema.get("type")) if isinstance(schema, dict) and schema.get("type") else "untyped"


class FieldCatalogue:
    """The site's field list, to resolve names like "Story Points" to ids like customfield_10016."""

    def __init__(self, fields: Iterable[dict[str, Any]]):
        self.fields = [f for f in fields if isinstance(f.get("id"), str)]

    def resolve(self, name: str) -> JiraField:
        """The field people call `name` (or its id / JQL clause name); SourceError if none or not numeric."""
        wanted = name.strip()
        folded = wanted.casefold()
        candidates = ([f for f in self.fields if f["id"] == wanted]
                      or [f for f in self.fields if str(f.get("name", "")) == wanted]
                      or [f for f in self.fields if str(f.get("name", "")).casefold() == folded]
                      or [f for f in self.fields if folded in (str(c).casefold() for c in f.get("clauseNames") or [])])
        if not candidates:
            raise SourceError(self._not_found(wanted))
        numeric = [f for f in candidates if _type_of(f) in NUMERIC_TYPES]
        if not numeric:
            found = candidates[0]
            raise SourceError(f'Jira field "{found.get("name", found["id"])}" ({found["id"]}) holds '
                              f'{_type_of(found)} values, not numbers: name a number field such as Story Points')
        if len(numeric) > 1:
            ids = ", ".join(f["id"] for f in numeric)
            raise SourceError(f'{len(numeric)} Jira fields are named "{wanted}" ({ids}): write the id of the one '
                              f"you mean, e.g. `field: {numeric[0]['id']}`")
        return JiraField(numeric[0]["id"], str(numeric[0].get("name") or numeric[0]["id"]))

    def _not_found(self, wanted: str) -> str:
        names = list(dict.fromkeys(str(f.get("name")) for f in self.fields if f.get("name")))
        numeric = list(dict.fromkeys(str(f.get("name")) for f in self.fields
                                     if f.get("name") and _type_of(f) in NUMERIC_TYPES))
        by_fold = {n.casefold(): n for n in names}
        close = [by_fold[c] for c in difflib.get_close_matches(wanted.casefold(), list(by_fold), n=_MAX_CLOSE, cutoff=0.6)]
        close += [n for fold, n in by_fold.items() if wanted.casefold() in fold and n not in close]
        if close:
            hint = "did you mean " + " or ".join(f'"{c}"' for c in close[:_MAX_CLOSE]) + "?"
        elif numeric:
            hint = "the number fields are " + ", ".join(f'"{n}"' for n in numeric[:10]) + \
                   (f" and {len(numeric) - 10} more" if len(numeric) > 10 else "")
        else:
            hint = "this account sees no number fields"
        return f'no Jira field is named "{wanted}": {hint} (write the name as Jira shows it, or its id)'

# ---------------------------------------------------------------------------- running totals


def _number(value: Any, fid: str) -> float | None:
    try:
        return _answers.number(value)
    except _answers.BadNumber as bad:
        raise SourceError(f"Jira answered {bad} in field {fid}: not stored; check the issues' values") from None


def is_done(fields: dict[str, Any]) -> bool:
    """Whether an issue's status is in the Done category (`status.statusCategory.key == "done"`)."""
    category = fields.get("statusCategory")
    if not isinstance(category, dict):
        status = fields.get("status")
        category = status.get("statusCategory") if isinstance(status, dict) else None
    return isinstance(category, dict) and category.get("key") == DONE_CATEGORY


@dataclass
class FieldTotals:
    """Running totals of one numeric field over the issues seen; issues without a value are skipped."""

    n: int = 0
    total: float = 0.0
    done_total: float = 0.0
    low: float | None = None
    high: float | None = None

    def add(self, value: float, done: bool) -> None:
        self.n += 1
        self.total += value
        if done:
            self.done_total += value
        self.low = value if self.low is None else min(self.low, value)
        self.high = value if self.high is None else max(self.high, value)


def ticket_of(issue: Any) -> dict[str, str] | None:
    """An issue as evidence: {"key": "PAY-12", "title": its summary}; None without a key."""
    if not isinstance(issue, dict):
        return None
    values = issue.get("fields") if isinstance(issue.get("fields"), dict) else {}
    return _evidence.ticket(issue.get("key"), values.get("summary"))


@dataclass
class ScanTotals:
    """Everything the key results of one query need from its issues, in constant memory (and the
    first `sample` issues, as evidence, when a count of the same query keeps them)."""

    field_ids: tuple[str, ...]
    issues: int = 0
    done: int = 0
    fields: dict[str, FieldTotals] = field(default_factory=dict)
    sample: int = 0
    tickets: list[dict[str, str]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.fields = {fid: FieldTotals() for fid in self.field_ids}

    def feed(self, issues: Iterable[dict[str, Any]]) -> None:
        for issue in issues:
            values = issue.get("fields") or {}
            done = is_done(values)
            self.issues += 1
            self.done += done
            if len(self.tickets) < self.sample and (found := ticket_of(issue)) is not None:
                self.tickets.append(found)
            for fid, totals in self.fields.items():
                number = _number(values.get(fid), fid)
                if number is not None:
                    totals.add(number, done)
