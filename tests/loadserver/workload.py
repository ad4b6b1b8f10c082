"""Key-result configs over the generated dataset, with what each must read computed from the data.

`workload(size)` builds `size` key results the way teams write them: Jira counts, percent
done, story-point sums, bug-fix ratios, GitHub search counts and ratios, milestone progress,
a few merge-time medians; and, like real configs, many of them repeat a query another team
already asks (`duplication`, sometimes with a different ORDER BY). Each key result carries an
oracle: its expected value computed by filtering the dataset's attributes directly in Python,
never through the server's JQL / search evaluators, so a wrong evaluator or connector shows.
"""
from __future__ import annotations

import json
import random
import statistics
from dataclasses import dataclass, field
from typing import Any, Callable

from .dataset import LABELS, MILESTONES, PROJECTS, REPOS, Dataset, GitHubItem, JiraIssue

Q4 = ("2026-10-01", "2026-12-31")
STORY_POINTS = "Story Points"


@dataclass(frozen=True)
class JiraCond:
    """A conjunction of attribute tests, written as JQL and checked in Python."""

    project: str | None = None
    type: str | None = None
    priority: str | None = None
    done: bool | None = None               # statusCategory = Done / != Done
    parent: str | None = None
    label: str | None = None
    resolved_in_q4: bool = False

    def jql(self) -> str:
        parts = []
        if self.project:
            parts.append(f"project = {self.project}")
        if self.parent:
            parts.append(f"parent = {self.parent}")
        if self.type:
            parts.append(f"type = {self.type}")
        if self.priority:
            parts.append(f"priority = {self.priority}")
        if self.label:
            parts.append(f"labels = {self.label}")
        if self.done is not None:
            parts.append("statusCategory " + ("= Done" if self.done else "!= Done"))
        if self.resolved_in_q4:
            parts.append('resolved >= "{period.start}" AND resolved <= "{period.end}"')
        return " AND ".join(parts)

    def matches(self, i: JiraIssue) -> bool:
        return ((self.project is None or i.project == self.project) and (self.type is None or i.type == self.type)
                and (self.priority is None or i.priority == self.priority)
                and (self.done is None or (i.category == "done") == self.done)
                and (self.parent is None or i.parent == self.parent)
                and (self.label is None or self.label in i.labels)
                and (not self.resolved_in_q4 or (i.resolved is not None and Q4[0] <= i.resolved <= Q4[1])))


@dataclass(frozen=True)
class GhCond:
    repo: str
    pr: bool
    state: str | None = None               # open | closed
    merged: bool = False
    label: str | None = None
    created_from: str | None = None

    def query(self) -> str:
        parts = [f"repo:{self.repo}", "is:pr" if self.pr else "is:issue"]
        if self.merged:
            parts.append("is:merged")
        elif self.state:
            parts.append(f"is:{self.state}")
        if self.label:
            parts.append(f"label:{self.label}")
        if self.created_from:
            parts.append(f"created:>={self.created_from}")
        return " ".join(parts)

    def matches(self, i: GitHubItem) -> bool:
        return (i.repo == self.repo and i.pr == self.pr and (not self.merged or i.merged)
                and (self.state is None or self.merged or i.state == self.state)
                and (self.label is None or self.label in i.labels)
                and (self.created_from is None or i.created_at.date().isoformat() >= self.created_from))


Oracle = Callable[[Dataset], "float | None"]      # None: the key result must fail (an error is its right answer)


@dataclass
class KeyResult:
    id: str
    source: str
    metric: dict[str, Any]
    oracle: Oracle
    queries: tuple[str, ...]                      # the distinct API questions it needs (for the lower bound)
    target: float = 100.0


@dataclass
class Workload:
    key_results: list[KeyResult] = field(default_factory=list)

    def expected(self, data: Dataset) -> dict[str, float | None]:
        return {kr.id: kr.oracle(data) for kr in self.key_results}

    def distinct_queries(self) -> int:
        return len({q for kr in self.key_results for q in kr.queries})

    def config(self, *, jira_url: str, github_api: str, jira_dc_url: str | None = None,
               store: str | None = None, jira_timeout: float = 5, github_timeout: int = 5) -> str:
        """The config YAML: sources `jira` (Cloud), `jira_dc` (if used), `github`."""
        lines = ["period: 2026-Q4"] + ([f"store: {store!r}"] if store else []) + [
            "sources:",
            f"  jira: {{type: jira, url: {jira_url}, email: \"${{JIRA_EMAIL}}\", token: \"${{JIRA_API_TOKEN}}\", timeout: {jira_timeout:g}}}",
            f"  github: {{type: github, base_url: {github_api}, token: \"${{GITHUB_TOKEN}}\", timeout: {github_timeout}}}"]
        if jira_dc_url:
            lines.append(f"  jira_dc: {{type: jira, url: {jira_dc_url}, token: \"${{JIRA_API_TOKEN}}\", "
                         f"timeout: {jira_timeout:g}}}")
        lines += ["objectives:", "  - id: load", "    title: Keep the numbers true", "    key_results:"]
        for kr in self.key_results:
            if kr.source == "jira_dc" and not jira_dc_url:
                continue
            lines.append(f"      - {{id: {kr.id}, title: {kr.id}, source: {kr.source}, baseline: 0, target: {kr.target:g}, "
                         f"metric: {json.dumps(kr.metric)}}}")
        return "\n".join(lines) + "\n"

# ---------------------------------------------------------------------------- oracles


def _jira_count(cond: JiraCond) -> Oracle:
    return lambda d: float(sum(1 for i in d.jira if cond.matches(i)))


def _jira_percent_done(cond: JiraCond) -> Oracle:
    def value(d: Dataset) -> float | None:
        found = [i for i in d.jira if cond.matches(i)]
        return 100.0 * sum(i.category == "done" for i in found) / len(found) if found else None
    return value


def _jira_points(cond: JiraCond, how: str) -> Oracle:
    def value(d: Dataset) -> float | None:
        points = [i.points for i in d.jira if cond.matches(i) and i.points is not None]
        if how == "sum":
            return float(sum(points))
        return statistics.fmean(points) if points else None
    return value


def _jira_ratio(done: JiraCond, total: JiraCond) -> Oracle:
    def value(d: Dataset) -> float | None:
        n = sum(1 for i in d.jira if total.matches(i))
        return 100.0 * sum(1 for i in d.jira if done.matches(i)) / n if n else None
    return value


def _gh_count(cond: GhCond) -> Oracle:
    return lambda d: float(sum(1 for i in d.github if cond.matches(i)))


def _gh_ratio(done: GhCond, total: GhCond) -> Oracle:
    def value(d: Dataset) -> float | None:
        n = sum(1 for i in d.github if total.matches(i))
        return 100.0 * sum(1 for i in d.github if done.matches(i)) / n if n else None
    return value


def _gh_milestone(repo: str, title: str) -> Oracle:
    def value(d: Dataset) -> float | None:
        found = [i for i in d.github if i.repo == repo and i.milestone == title]
        return 100.0 * sum(i.state == "closed" for i in found) / len(found) if found else None
    return value


def _gh_median_merge(cond: GhCond) -> Oracle:
    def value(d: Dataset) -> float | None:
        found = sorted((i for i in d.github if cond.matches(i)), key=lambda i: i.created_at, reverse=True)[:1000]
        hours = [(i.merged_at - i.created_at).total_seconds() / 3600 for i in found if i.merged_at]
        return float(statistics.median(hours)) if hours else None
    return value

# ---------------------------------------------------------------------------- generation


def _fresh(rng: random.Random, n: int, dc_share: float) -> KeyResult:
    """One key result with a (probably) new query."""
    project, label = rng.choice(PROJECTS), rng.choice(LABELS)
    repo = rng.choice(REPOS)
    roll = rng.random()
    source = "jira_dc" if rng.random() < dc_share else "jira"
    kid = f"kr-{n:04d}"
    if roll < 0.22:
        cond = JiraCond(project=project, type=rng.choice(("Bug", "Story", "Task")), priority=rng.choice(("P1", "P2", "P3")),
                        done=False)
        return KeyResult(kid, source, {"jql": cond.jql(), "aggregate": "count"}, _jira_count(cond), (source + cond.jql(),))
    if roll < 0.34:
        cond = JiraCond(parent=f"{project}-{rng.randrange(1, 21)}")
        q = cond.jql()
        return KeyResult(kid, source, {"jql": q, "aggregate": "percent_done"}, _jira_percent_done(cond),
                         (source + q, source + f"({q}) done"))
    if roll < 0.44:
        cond = JiraCond(project=project, done=True, resolved_in_q4=True, label=label if rng.random() < 0.7 else None)
        return KeyResult(kid, source, {"jql": cond.jql(), "aggregate": "sum", "field": STORY_POINTS},
                         _jira_points(cond, "sum"), (source + "scan" + cond.jql(),), target=500)
    if roll < 0.50:
        cond = JiraCond(parent=f"{project}-{rng.randrange(1, 21)}", done=False)
        return KeyResult(kid, source, {"jql": cond.jql(), "aggregate": "avg", "field": STORY_POINTS},
                         _jira_points(cond, "avg"), (source + "scan" + cond.jql(),), target=3)
    if roll < 0.62:
        done, total = JiraCond(project=project, type="Bug", done=True), JiraCond(project=project, type="Bug")
        return KeyResult(kid, source, {"jql_done": done.jql(), "jql_total": total.jql()}, _jira_ratio(done, total),
                         (source + done.jql(), source + total.jql()))
    if roll < 0.66:
        cond = JiraCond(project=project, label=label, done=False)
        return KeyResult(kid, source, {"jql": cond.jql()}, _jira_count(cond), (source + cond.jql(),))
    if roll < 0.82:
        cond = GhCond(repo, pr=rng.random() < 0.6, merged=rng.random() < 0.5, state=rng.choice(("open", "closed")),
                      label=rng.choice(("bug", "perf", "security", "customer")))
        return KeyResult(kid, "github", {"search": cond.query(), "aggregate": "count"}, _gh_count(cond), ("gh" + cond.query(),))
    if roll < 0.90:
        pr = rng.random() < 0.5
        done, total = GhCond(repo, pr=pr, state="closed", label="bug"), GhCond(repo, pr=pr, label="bug")
        return KeyResult(kid, "github", {"search_done": done.query(), "search_total": total.query()},
                         _gh_ratio(done, total), ("gh" + done.query(), "gh" + total.query()))
    if roll < 0.97:
        title = rng.choice(MILESTONES)
        return KeyResult(kid, "github", {"repo": repo, "milestone": title, "aggregate": "percent_done"},
                         _gh_milestone(repo, title), ("ghm" + repo,))
    cond = GhCond(repo, pr=True, merged=True, label="perf", created_from="2026-10-01")
    return KeyResult(kid, "github", {"search": cond.query(), "aggregate": "median", "field": "hours_to_merge"},
                     _gh_median_merge(cond), ("ghs" + cond.query(),), target=24)


def workload(size: int, *, seed: int = 11, duplication: float = 0.4, dc_share: float = 0.0) -> Workload:
    """`size` key results; a `duplication` share of them repeat an earlier key result's metric."""
    rng = random.Random(seed)
    out = Workload()
    for n in range(1, size + 1):
        if out.key_results and rng.random() < duplication:
            twin = rng.choice(out.key_results)
            metric = dict(twin.metric)
            if "jql" in metric and rng.random() < 0.3:
                metric["jql"] += " ORDER BY created DESC"       # same question, another order
            out.key_results.append(KeyResult(f"kr-{n:04d}", twin.source, metric, twin.oracle, twin.queries, twin.target))
        else:
            out.key_results.append(_fresh(rng, n, dc_share))
    return out


def github_coverage(first: int) -> list[KeyResult]:
    """Key results that reach the GitHub endpoints a random draw may miss: milestones of other
    repositories (by title, a closed one, which GitHub lists only when asked `state=all`, and by
    number) and a duration statistic paging the REST search."""
    pages = GhCond("acme/app", pr=True, merged=True)
    return [
        KeyResult(f"kr-{first:04d}", "github", {"repo": "acme/api", "milestone": "v1.0", "aggregate": "percent_done"},
                  _gh_milestone("acme/api", "v1.0"), ("ghmacme/api",)),
        # milestone #2 of acme/web: the server numbers a repository's milestones by sorted title (v1.0, v1.1, ...)
        KeyResult(f"kr-{first + 1:04d}", "github", {"repo": "acme/web", "milestone": 2, "aggregate": "percent_done"},
                  _gh_milestone("acme/web", "v1.1"), ("ghmacme/web#2",)),
        KeyResult(f"kr-{first + 2:04d}", "github", {"search": pages.query(), "aggregate": "median", "field": "hours_to_merge"},
                  _gh_median_merge(pages), ("ghs" + pages.query(),), target=24),
    ]
