"""The query languages the load server evaluates: a JQL subset and GitHub's search qualifiers.

JQL: AND / OR / NOT, parentheses, `= != > >= < <=`, `IN (...)`, `NOT IN (...)`, `IS [NOT] EMPTY`
over project, type/issuetype, priority, status, statusCategory, labels, parent, created,
resolved, key and "Story Points" (cf[10016]); ORDER BY is ignored. An unknown field, a syntax
error or a date Jira would not parse (tests/fake_jira.py `jql_date`; an issue's day compares as
its midnight) raises JqlError with Jira's wording (the server answers 400 with it).

GitHub search: whitespace-separated qualifiers repo:, is:(issue|pr|open|closed|merged|unmerged),
state:, label: / -label:, milestone:, created: / closed: / merged: (`>=D`, `<=D`, `>D`, `<D`,
`D..D`, `D`); bare words must appear in the title ("Item N" here, so they rarely match).
An unknown repository or `is:` value raises SearchError with GitHub's 422 wording.
"""
from __future__ import annotations

import re
from datetime import date, datetime, time, timezone
from typing import Callable

from fake_jira import DATE_FIELDS, JqlError, day, jql_date

from .dataset import REPOS, GitHubItem, JiraIssue

# ---------------------------------------------------------------------------- JQL


_TOKEN = re.compile(r'\s*(?:(\()|(\))|(,)|"((?:[^"\\]|\\.)*)"|\'((?:[^\'\\]|\\.)*)\'|(!=|>=|<=|=|>|<)|([^\s()",=!<>]+))')
_CATEGORY_NAMES = {"new": "to do", "indeterminate": "in progress", "done": "done"}
_STATUS_NAMES = {"new": "to do", "indeterminate": "in progress", "done": "done"}


def _jira_value(issue: JiraIssue, name: str):
    if name == "project":
        return issue.project
    if name in ("type", "issuetype"):
        return issue.type
    if name == "priority":
        return issue.priority
    if name == "status":
        return _STATUS_NAMES[issue.category]
    if name == "statuscategory":
        return _CATEGORY_NAMES[issue.category]
    if name == "labels":
        return issue.labels
    if name == "parent":
        return issue.parent
    if name == "created":
        return issue.created
    if name == "resolved":
        return issue.resolved
    if name == "key":
        return issue.key
    return issue.points                                # story points


JQL_FIELDS = {"project", "type", "issuetype", "priority", "status", "statuscategory", "labels", "parent",
              "created", "resolved", "key", "story points", "cf[10016]"}
Predicate = Callable[[JiraIssue], bool]


def _tokens(jql: str) -> list[tuple[str, str]]:
    out, pos, jql = [], 0, jql.strip()
    while pos < len(jql):
        m = _TOKEN.match(jql, pos)
        if not m or m.end() == pos:
            raise JqlError(f"Error in the JQL Query: the character '{jql[pos]}' is a reserved JQL character.")
        pos = m.end()
        for kind, text in zip(("(", ")", ",", "str", "str", "op", "word"), m.groups()):
            if text is not None:
                out.append((kind, text))
                break
    for i in range(len(out) - 1):                      # ORDER BY ... is not a condition
        if out[i][0] == "word" and out[i][1].lower() == "order" and out[i + 1][1].lower() == "by":
            return out[:i]
    return out


def jql_predicate(jql: str) -> Predicate:
    """A predicate over JiraIssue for `jql`; JqlError as Jira words it."""
    tokens = _tokens(jql)
    if not tokens:                     # no condition: every issue (Cloud's search refuses it first, Data Center does not)
        return lambda i: True
    pos = 0

    def peek_word() -> str:
        return tokens[pos][1].lower() if pos < len(tokens) and tokens[pos][0] == "word" else ""

    def take() -> tuple[str, str]:
        nonlocal pos
        if pos >= len(tokens):
            raise JqlError("Error in the JQL Query: Expecting either a value, list or function but got 'end of query'.")
        pos += 1
        return tokens[pos - 1]

    def disjunction() -> Predicate:
        terms = [conjunction()]
        while peek_word() == "or":
            take()
            terms.append(conjunction())
        return terms[0] if len(terms) == 1 else (lambda i: any(t(i) for t in terms))

    def conjunction() -> Predicate:
        terms = [negation()]
        while peek_word() == "and":
            take()
            terms.append(negation())
        return terms[0] if len(terms) == 1 else (lambda i: all(t(i) for t in terms))

    def negation() -> Predicate:
        if peek_word() == "not":
            take()
            inner = negation()
            return lambda i: not inner(i)
        return atom()

    def atom() -> Predicate:
        kind, text = take()
        if kind == "(":
            inner = disjunction()
            if take()[0] != ")":
                raise JqlError("Error in the JQL Query: Expecting ')'.")
            return inner
        name = text
        if peek_word() == "points" and name.lower() == "story":
            name = f"{name} {take()[1]}"
        field = name.lower()
        if field not in JQL_FIELDS:
            raise JqlError(f"Field '{name}' does not exist or you do not have permission to view it.")
        kind, op = take()
        word = op.lower() if kind == "word" else ""
        if word == "is":
            negate = peek_word() == "not"
            if negate:
                take()
            if take()[1].lower() != "empty":
                raise JqlError("Error in the JQL Query: Expecting 'EMPTY' after IS.")
            return lambda i: _empty(_jira_value(i, field)) != negate
        if word in ("in", "not"):
            negate = word == "not"
            if negate and take()[1].lower() != "in":
                raise JqlError("Error in the JQL Query: Expecting 'IN' after NOT.")
            if take()[0] != "(":
                raise JqlError("Error in the JQL Query: Expecting '(' after IN.")
            values = []
            while True:
                values.append(take()[1].lower())
                sep = take()[0]
                if sep == ")":
                    break
                if sep != ",":
                    raise JqlError("Error in the JQL Query: Expecting ',' or ')'.")
            return lambda i: _has_any(_jira_value(i, field), values) != negate
        if kind != "op":
            raise JqlError(f"Error in the JQL Query: Expecting operator but got '{op}'.")
        return _compare(field, op, take()[1])

    predicate = disjunction()
    if pos != len(tokens):
        raise JqlError(f"Error in the JQL Query: Expecting either 'OR' or 'AND' but got '{tokens[pos][1]}'.")
    return predicate


def _empty(value) -> bool:
    return value is None or value == ()


def _has_any(value, wanted: list[str]) -> bool:
    if isinstance(value, tuple):
        return any(v.lower() in wanted for v in value)
    return value is not None and str(value).lower() in wanted


def _compare(field: str, op: str, raw: str) -> Predicate:
    if raw.lower() == "empty":
        return lambda i: _empty(_jira_value(i, field)) == (op == "=")
    want_text = raw.lower()
    when = jql_date(raw, field) if field in DATE_FIELDS else None
    numeric = field in ("story points", "cf[10016]")
    if numeric:
        try:
            want_num = float(raw)
        except ValueError:
            raise JqlError(f"The value '{raw}' is not valid for field '{field}'.") from None

    def test(issue: JiraIssue) -> bool:
        have = _jira_value(issue, field)
        if isinstance(have, tuple):                     # labels: = means "has", != means "has not"
            has = want_text in (v.lower() for v in have)
            return has if op == "=" else (not has if op == "!=" else False)
        if have is None:
            return False                                 # Jira: a comparison never matches an empty field
        if when is not None:
            a, b = day(have), when
        elif numeric:
            a, b = float(have), want_num
        else:
            a, b = str(have).lower(), want_text
        return {"=": a == b, "!=": a != b, ">": a > b, ">=": a >= b, "<": a < b, "<=": a <= b}[op]
    return test

# ---------------------------------------------------------------------------- GitHub search


class SearchError(ValueError):
    """GitHub's 422 answer to a search it refuses."""


_IS = {"issue", "pr", "pull-request", "open", "closed", "merged", "unmerged"}
_RANGE = re.compile(r"^(>=|<=|>|<)?(\d{4}-\d{2}-\d{2})(?:\.\.(\d{4}-\d{2}-\d{2}))?$")
SearchPredicate = Callable[[GitHubItem], bool]


def _moment(day: str, end: bool) -> datetime:
    return datetime.combine(date.fromisoformat(day), time.max if end else time.min, tzinfo=timezone.utc)


def _date_test(spec: str) -> Callable[[datetime | None], bool]:
    m = _RANGE.match(spec)
    if not m:
        raise SearchError(f"Invalid date range {spec!r}")
    op, first, second = m.groups()
    if second:
        lo, hi = _moment(first, False), _moment(second, True)
        return lambda t: t is not None and lo <= t <= hi
    lo, hi = _moment(first, False), _moment(first, True)
    return {None: lambda t: t is not None and lo <= t <= hi, ">=": lambda t: t is not None and t >= lo,
            ">": lambda t: t is not None and t > hi, "<=": lambda t: t is not None and t <= hi,
            "<": lambda t: t is not None and t < lo}[op]


def search_predicate(query: str) -> SearchPredicate:
    """A predicate over GitHubItem for a search string; SearchError like GitHub's 422."""
    tests: list[SearchPredicate] = []
    for word in query.split():
        negate = word.startswith("-")
        key, _, value = word.lstrip("-").partition(":")
        key = key.lower()
        if not value:
            text = key
            test: SearchPredicate = lambda i, t=text: t in f"item {i.number}"
        elif key == "repo":
            if value not in REPOS:
                raise SearchError("The listed users and repositories cannot be searched either because the resources "
                                  "do not exist or you do not have permission to view them.")
            test = lambda i, v=value: i.repo == v
        elif key == "is":
            v = value.lower()
            if v not in _IS:
                raise SearchError(f"'{value}' is not a valid value for is:")
            test = {"issue": lambda i: not i.pr, "pr": lambda i: i.pr, "pull-request": lambda i: i.pr,
                    "open": lambda i: i.state == "open", "closed": lambda i: i.state == "closed",
                    "merged": lambda i: i.merged, "unmerged": lambda i: i.pr and not i.merged}[v]
        elif key == "state":
            test = lambda i, v=value.lower(): i.state == v
        elif key == "label":
            test = lambda i, v=value.lower(): v in i.labels
        elif key == "milestone":
            test = lambda i, v=value.strip('"'): i.milestone == v
        elif key in ("created", "closed", "merged"):
            when = _date_test(value)
            attr = {"created": "created_at", "closed": "closed_at", "merged": "merged_at"}[key]
            test = lambda i, w=when, a=attr: w(getattr(i, a))
        else:
            test = lambda i, t=word.lower(): t in f"item {i.number}"
        tests.append((lambda i, t=test: not t(i)) if negate else test)
    return lambda i: all(t(i) for t in tests)
