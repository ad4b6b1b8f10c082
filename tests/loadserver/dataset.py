"""A deterministic dataset for the load server: Jira issues and GitHub issues / pull requests.

`generate(issues=50_000, seed=7)` always builds the same data for the same arguments (a
`random.Random(seed)`, no clock). Values are spread so the queries the configs write match
everything from a handful of issues to most of a project:

- Jira: projects PAY, WEB, OPS, DATA, MOB; types Story/Bug/Task; priorities P1..P4; status
  category new / indeterminate / done; Story Points (or none); created in 2026, resolved a
  few weeks later when done; labels; a parent epic key for most issues.
- GitHub: repositories acme/app, acme/api, acme/web; issues and pull requests, open or
  closed (pull requests mostly merged when closed), labels, a milestone title, timestamps.
"""
from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone

PROJECTS = ("PAY", "WEB", "OPS", "DATA", "MOB")
TYPES = ("Story", "Story", "Story", "Bug", "Bug", "Task")
PRIORITIES = ("P1", "P2", "P2", "P3", "P3", "P3", "P4")
CATEGORIES = ("new", "indeterminate", "done", "done")
POINTS = (1.0, 2.0, 3.0, 5.0, 8.0, None)
LABELS = ("perf", "security", "tech-debt", "customer", "infra")
EPICS_PER_PROJECT = 20
REPOS = ("acme/app", "acme/api", "acme/web")
GH_LABELS = ("bug", "perf", "security", "docs", "customer")
MILESTONES = ("v1.0", "v1.1", "v2.0", "v2.1")
YEAR_START = date(2026, 1, 1)


@dataclass(slots=True)
class JiraIssue:
    """One Jira issue as the server knows it (`fields` renders it as the API does)."""

    number: int
    project: str
    type: str
    priority: str
    category: str
    points: float | None
    created: str                 # YYYY-MM-DD
    resolved: str | None
    labels: tuple[str, ...]
    parent: str | None

    @property
    def key(self) -> str:
        return f"{self.project}-{self.number}"


@dataclass(slots=True)
class GitHubItem:
    """One GitHub issue or pull request."""

    repo: str
    number: int
    pr: bool
    state: str                   # open | closed
    merged: bool
    labels: tuple[str, ...]
    milestone: str | None
    created_at: datetime
    closed_at: datetime | None
    merged_at: datetime | None


@dataclass
class Dataset:
    jira: list[JiraIssue] = field(default_factory=list)
    github: list[GitHubItem] = field(default_factory=list)


def _day(rng: random.Random, start: date = YEAR_START, span: int = 330) -> date:
    return start + timedelta(days=rng.randrange(span))


def generate(issues: int = 50_000, github_items: int | None = None, seed: int = 7) -> Dataset:
    """`issues` Jira issues and `github_items` (default issues // 5) GitHub items, from `seed`."""
    rng = random.Random(seed)
    data = Dataset()
    numbers = dict.fromkeys(PROJECTS, 0)
    for _ in range(issues):
        project = rng.choice(PROJECTS)
        numbers[project] += 1
        number = numbers[project]
        category = rng.choice(CATEGORIES)
        created = _day(rng)
        resolved = min(created + timedelta(days=rng.randrange(1, 60)), date(2026, 12, 31)) if category == "done" else None
        labels = tuple(sorted(set(rng.sample(LABELS, rng.choice((0, 0, 1, 1, 2))))))
        parent = f"{project}-{rng.randrange(1, EPICS_PER_PROJECT + 1)}" if number > EPICS_PER_PROJECT and rng.random() < 0.8 else None
        data.jira.append(JiraIssue(number, project, rng.choice(TYPES), rng.choice(PRIORITIES), category,
                                   rng.choice(POINTS), created.isoformat(), resolved.isoformat() if resolved else None,
                                   labels, parent))
    counters = dict.fromkeys(REPOS, 0)
    for _ in range(issues // 5 if github_items is None else github_items):
        repo = rng.choice(REPOS)
        counters[repo] += 1
        pr = rng.random() < 0.55
        created = datetime.combine(_day(rng), datetime.min.time(), timezone.utc) + timedelta(minutes=rng.randrange(1440))
        closed = rng.random() < 0.7
        closed_at = created + timedelta(hours=rng.randrange(1, 400)) if closed else None
        merged = pr and closed and rng.random() < 0.85
        labels = tuple(sorted(set(rng.sample(GH_LABELS, rng.choice((0, 1, 1, 2))))))
        data.github.append(GitHubItem(repo, counters[repo], pr, "closed" if closed else "open", merged, labels,
                                      rng.choice(MILESTONES + (None,)), created, closed_at, closed_at if merged else None))
    return data
