"""Source connector for GitHub (github.com and GitHub Enterprise Server): issues, pull requests,
milestones and releases.

A key result's metric is one of:

    {search: "repo:acme/app is:pr is:merged label:perf", aggregate: count}     # matching items
    {search: "... is:pr is:merged ...", aggregate: median|p90|avg, field: hours_to_merge}
    {search: "... is:issue is:closed ...", aggregate: median|p90|avg, field: hours_to_close}
    {search_done: "...", search_total: "..."}                                   # 100 * done / total
    {repo: acme/app, milestone: "v2.0", aggregate: percent_done}                # closed share
    {repo: acme/app, aggregate: releases, since: "{period.start}"}              # releases published

A search count keeps the items behind it with each check-in (`evidence: N`, default 50, `false`
for none), from the same request as the count (GraphQL `nodes` beside `issueCount`, REST
`per_page=N`). A search that uses `{as_of}` (`closed:<={as_of}`), or releases counted up to the
as-of date, can be measured as of a past date (`reads_past`).

How it asks (see connectors/_github_queries.py): counts come from the search API's own total
(never PyGithub's `totalCount`, capped at 1,000); every distinct search of a batch is asked
once, and two or more counts go out as aliased `search { issueCount }` fields of one GraphQL
request (REST `GET /search/issues?per_page=1` per query where GraphQL is unavailable).
Duration statistics page through the search at 100 a page and say when GitHub's 1,000-result
cap truncates them; a count of the same search comes free from the first page.
"""
from __future__ import annotations

import re
import sys
from collections import defaultdict
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, datetime, time, timezone
from typing import Any, Iterator, Literal, Sequence
from urllib.parse import quote_plus, urlsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic_core import InitErrorDetails, PydanticCustomError

from connectors import _evidence
from connectors import _github_queries as ask
from connectors._github_client import DEFAULT_BASE_URL, TIMEOUT_SECONDS, GitHubClient, web_root
from okrsync.contract import run_batch
from okrsync.errors import SourceError
from okrsync.measure import Measurement, MetricRequest
from okrsync.refs import SecretRef

TYPE = "github"
SEARCH_AGGREGATES = ("count", "median", "p90", "avg")
STATISTICS = ("median", "p90", "avg")
FIELDS = ("hours_to_merge", "hours_to_close")

_REPO = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9-]{0,38})/[A-Za-z0-9._-]{1,100}$")
_IS_KIND = "say `is:issue` or `is:pr` (GitHub answers 422 otherwise)"

# ---------------------------------------------------------------------------- config


class SourceConfig(BaseModel):
    """github.com, or a GitHub Enterprise Server through `base_url`."""

    model_config = ConfigDict(extra="forbid")

    type: Literal[TYPE]
    token: SecretRef = Field(description='A token with read access: "${GITHUB_TOKEN}" or {secret: NAME}')
    base_url: str = Field(DEFAULT_BASE_URL, description="The REST API root; GitHub Enterprise Server: https://HOST/api/v3")
    timeout: int = Field(TIMEOUT_SECONDS, ge=1, le=300, description="Seconds to wait for one answer from GitHub")

    @field_validator("base_url")
    @classmethod
    def _api_root(cls, value: str) -> str:
        url = value.strip().rstrip("/")
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("base_url must be a URL like https://github.example.com/api/v3 "
                             f"(got {re.sub(r'//[^/?#]*@', '//', value)!r})")
        if parts.username or parts.password:
            raise ValueError("base_url must not hold credentials: give the token as `token:`")
        host = parts.hostname.lower()
        if host in ("github.com", "www.github.com"):
            raise ValueError("base_url is the API root, not the web site: remove `base_url:` for github.com")
        if host == "api.github.com" or host.startswith("api."):
            return url
        if not parts.path.endswith("/api/v3"):
            root = f"{parts.scheme}://{parts.netloc}{parts.path.removesuffix('/api/graphql').removesuffix('/api')}"
            raise ValueError(f"for GitHub Enterprise Server, base_url is the REST API root: write {root}/api/v3")
        return url

# ---------------------------------------------------------------------------- metric


def _qualifiers(query: str) -> set[str]:
    """The qualifiers a search asks for (lower case), leaving out negated ones (-is:pr, NOT is:pr)."""
    found: set[str] = set()
    previous = ""
    for token in query.split():
        word = token.lower()
        if not word.startswith("-") and previous != "not":
            found.add(word.strip("()"))
        previous = word
    return found


def search_kind(query: str) -> str | None:
    """'pr', 'issue', 'both' or None: what the search says it looks for."""
    words = _qualifiers(query)
    pr = bool(words & {"is:pr", "is:pull-request"})
    issue = "is:issue" in words
    return "both" if pr and issue else "pr" if pr else "issue" if issue else None


def _date_or_template(value: Any) -> Any:
    """A date, or (before placeholders are filled in) text holding one such as "{period.start}"."""
    if value is None or isinstance(value, date):
        return value.date() if isinstance(value, datetime) else value
    text = str(value).strip()
    if "{" in text:
        return text
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise ValueError(f"{value!r} is not a date: write YYYY-MM-DD or \"{{period.start}}\"") from None


def _invalid(problems: list[tuple[str, str]], metric: Metric) -> ValidationError:
    """A ValidationError locating each problem at its key, so `okr-sync validate` names it."""
    return ValidationError.from_exception_data("Metric", [
        InitErrorDetails(type=PydanticCustomError("github_metric", "{message}", {"message": message}),
                         loc=(key,), input=getattr(metric, key, None))
        for key, message in problems])


class Metric(BaseModel):
    """A search (count or duration statistic), a ratio of two searches, a milestone or releases."""

    model_config = ConfigDict(extra="forbid")

    search: str | None = Field(None, description="A GitHub issue/PR search, as typed on github.com; must say is:issue or is:pr")
    search_done: str | None = Field(None, description="Ratio: the 'done' search (numerator)")
    search_total: str | None = Field(None, description="Ratio: the 'all' search (denominator)")
    repo: str | None = Field(None, description="owner/name, for `milestone:` or `aggregate: releases`")
    milestone: str | int | None = Field(None, description="A milestone title (or its number)")
    aggregate: Literal["count", "median", "p90", "avg", "percent_done", "releases"] | None = Field(
        None, description="search: count (default), median, p90 or avg; milestone: percent_done; repo: releases")
    field: Literal["hours_to_merge", "hours_to_close"] | None = Field(
        None, description="For median/p90/avg: hours from creation to merge (PRs) or to close")
    since: date | str | None = Field(None, description="Releases published on or after this date, e.g. \"{period.start}\"")
    until: date | str | None = Field(None, description="Releases published on or before this date (default: the as-of date)")
    prereleases: bool = Field(True, description="Count prereleases among releases")
    evidence: _evidence.Setting = Field(None, description=(
        f"search count: keep up to N matching items (owner/name#number and title) with each check-in "
        f"(default {_evidence.DEFAULT}, at most {_evidence.MOST}); false: none"))

    @field_validator("search", "search_done", "search_total")
    @classmethod
    def _says_kind(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if not value.strip():
            raise ValueError("the search is empty: write a query such as 'repo:acme/app is:pr is:merged'")
        if search_kind(value) is None:
            raise ValueError(f"the search must {_IS_KIND}: add one of them to the query")
        return value.strip()

    @field_validator("repo")
    @classmethod
    def _owner_name(cls, value: str | None) -> str | None:
        if value is None:
            return None
        text = value.strip().removeprefix("https://github.com/").strip("/")
        if not _REPO.match(text):
            raise ValueError(f"repo must be owner/name, e.g. acme/checkout (got {value!r})")
        return text

    @field_validator("milestone", mode="before")
    @classmethod
    def _title_or_number(cls, value: Any) -> Any:
        if isinstance(value, bool) or isinstance(value, float):
            raise ValueError(f"milestone {value!r} reads as a number: quote the title, e.g. milestone: \"{value}\"")
        if isinstance(value, str) and not value.strip():
            raise ValueError("milestone is empty: give its title, e.g. milestone: \"v2.0\"")
        return value

    @field_validator("since", "until", mode="before")
    @classmethod
    def _dates(cls, value: Any) -> Any:
        return _date_or_template(value)

    @model_validator(mode="after")
    def _one_kind(self) -> Metric:
        problems = self._problems()
        if problems:
            raise _invalid(problems, self)
        if self.aggregate is None:
            self.aggregate = "count" if self.search else "percent_done" if self.milestone is not None else None
        return self

    def _problems(self) -> list[tuple[str, str]]:
        """Which keys go together: one kind of metric, with the aggregate and field it allows."""
        if self.evidence is not None and not (self.search and (self.aggregate or "count") == "count"):
            return [("evidence", _evidence.ONLY_COUNTS + " (a `search:` with aggregate count)")]
        kinds = [k for k, given in (("search", self.search), ("search_done", self.search_done or self.search_total),
                                    ("repo", self.repo)) if given]
        if len(kinds) != 1:
            what = "is missing" if not kinds else f"mixes {' and '.join(f'`{k}:`' for k in kinds)}"
            return [(kinds[-1] if kinds else "search",
                     f"the metric {what}: give `search:` (with aggregate count|median|p90|avg), "
                     "`search_done:` with `search_total:`, or `repo:` with `milestone:` or `aggregate: releases`")]
        extra = [k for k in ("since", "until") if getattr(self, k) is not None] + (["prereleases"] if not self.prereleases else [])
        if self.search:
            return self._search_problems(extra)
        if self.search_done or self.search_total:
            missing = "search_total" if self.search_done else "search_done"
            if not (self.search_done and self.search_total):
                return [(missing, f"a ratio needs both `search_done:` and `search_total:`; add `{missing}:`")]
            stray = [k for k in ("aggregate", "field", "milestone") if getattr(self, k) is not None] + extra
            return [(k, f"`{k}:` does not go with a ratio (its value is 100 x done / total): remove it") for k in stray]
        return self._repo_problems(extra)

    def _search_problems(self, extra: list[str]) -> list[tuple[str, str]]:
        problems = [(k, f"`{k}:` only goes with `repo:`: remove it, or put the condition in the search "
                        "(e.g. merged:>={period.start})") for k in ["milestone"] * (self.milestone is not None) + extra]
        aggregate = self.aggregate or "count"
        if aggregate not in SEARCH_AGGREGATES:
            return problems + [("aggregate", f"aggregate {aggregate} does not go with `search:`: use count, median, p90 or avg")]
        if aggregate == "count":
            if self.field is not None:
                problems.append(("field", f"`field: {self.field}` only goes with aggregate median, p90 or avg: "
                                          "remove it to count, or change the aggregate"))
            return problems
        if self.field is None:
            return problems + [("field", f"aggregate {aggregate} needs `field: hours_to_merge` (pull requests) "
                                         "or `field: hours_to_close`")]
        words = _qualifiers(self.search or "")
        if self.field == "hours_to_merge" and not ({"is:pr", "is:pull-request"} & words and "is:merged" in words):
            problems.append(("field", "hours_to_merge needs a search of merged pull requests: add `is:pr is:merged`"))
        if self.field == "hours_to_close" and not words & {"is:closed", "state:closed", "is:merged"}:
            problems.append(("field", "hours_to_close needs a search of closed items: add `is:closed`"))
        return problems

    def _repo_problems(self, extra: list[str]) -> list[tuple[str, str]]:
        if self.field is not None:
            return [("field", "`field:` only goes with a `search:` and aggregate median, p90 or avg: remove it")]
        if self.milestone is not None:
            if self.aggregate not in (None, "percent_done"):
                return [("aggregate", f"aggregate {self.aggregate} does not go with `milestone:`: use percent_done")]
            return [(k, f"`{k}:` only goes with `aggregate: releases`: remove it") for k in extra]
        if self.aggregate != "releases":
            return [("aggregate", "with `repo:` alone, say `aggregate: releases` to count releases, "
                                  "or add `milestone:` for a milestone's closed share")]
        return []

    @property
    def tickets(self) -> int:
        """How many matching items its check-ins keep (0: none)."""
        return _evidence.limit(self.evidence, self.kind == "search_count")

    @property
    def kind(self) -> str:
        """search_count | statistic | ratio | milestone | releases"""
        if self.search:
            return "search_count" if self.aggregate == "count" else "statistic"
        if self.search_done:
            return "ratio"
        return "milestone" if self.milestone is not None else "releases"

# ---------------------------------------------------------------------------- answers


@dataclass(frozen=True)
class _Answer:
    value: float
    query: str
    link: str
    note: str | None = None
    evidence: tuple[dict[str, str], ...] | None = None


class _Ledger:
    """Which key results each batch of API calls served, so every call is charged exactly once."""

    def __init__(self, client: GitHubClient):
        self.client = client
        self.spent: list[tuple[set[str], int]] = []

    @contextmanager
    def spend(self, resources: set[str]) -> Iterator[None]:
        before = self.client.calls
        try:
            yield
        finally:
            self.spent.append((resources, self.client.calls - before))

    def charges(self, uses: dict[str, set[str]], measured: list[str]) -> dict[str, int]:
        """Each batch's calls go to the first measured key result it served; the rest to the first one."""
        charged: dict[str, int] = defaultdict(int)
        leftover = 0
        for resources, calls in self.spent:
            payer = next((kr for kr in measured if uses[kr] & resources), None)
            if payer is None:
                leftover += calls
            else:
                charged[payer] += calls
        if measured:
            charged[measured[0]] += leftover
        return charged


def _plural(count: int, noun: str) -> str:
    return f"{count:,} {noun}" + ("" if count == 1 else "s")


def _day_start(day: date) -> datetime:
    return datetime.combine(day, time.min, tzinfo=timezone.utc)


def _day_end(day: date) -> datetime:
    return datetime.combine(day, time.max, tzinfo=timezone.utc)


class _Asker:
    """Answers one batch of key results with as few calls as GitHub allows."""

    def __init__(self, client: GitHubClient, web: str):
        self.client = client
        self.web = web
        self.ledger = _Ledger(client)

    def search_link(self, query: str) -> str:
        kind = "pullrequests" if search_kind(query) == "pr" else "issues"
        return f"{self.web}/search?q={quote_plus(query)}&type={kind}"

    def answer(self, metrics: dict[str, Metric], as_of: dict[str, date]) -> dict[str, Measurement | SourceError]:
        uses: dict[str, set[str]] = {}
        for kr_id, m in metrics.items():
            uses[kr_id] = ({f"search:{q}" for q in (m.search, m.search_done, m.search_total) if q}
                           | ({f"milestones:{m.repo}"} if m.kind == "milestone" else set())
                           | ({f"releases:{m.repo}"} if m.kind == "releases" else set()))
        samples = self._samples(metrics)
        counts = self._counts(metrics, samples)
        milestones = self._milestones(metrics)
        releases = self._releases(metrics)

        answers: dict[str, _Answer | SourceError] = {}
        for kr_id, m in metrics.items():
            try:
                if m.kind == "statistic":
                    answers[kr_id] = self._statistic(m, samples[m.search or ""])
                elif m.kind == "search_count":
                    answers[kr_id] = self._count(m.search or "", counts[m.search or ""], m.tickets)
                elif m.kind == "ratio":
                    answers[kr_id] = self._ratio(m.search_done or "", m.search_total or "", counts)
                elif m.kind == "milestone":
                    answers[kr_id] = self._milestone(m, milestones[(m.repo or "", m.milestone)])
                else:
                    answers[kr_id] = self._released(m, releases[m.repo or ""], as_of[kr_id])
            except SourceError as error:
                answers[kr_id] = error
        measured = [k for k in metrics if isinstance(answers[k], _Answer)]
        charged = self.ledger.charges(uses, measured)
        observed_at = datetime.now(timezone.utc)
        results: dict[str, Measurement | SourceError] = {}
        for kr_id, got in answers.items():
            results[kr_id] = got if isinstance(got, SourceError) else Measurement(
                value=got.value, link=got.link, query=got.query, observed_at=observed_at,
                calls=charged.get(kr_id, 0), note=got.note, evidence=got.evidence)
        return results

    # -- asking

    def _samples(self, metrics: dict[str, Metric]) -> dict[str, ask.SearchSample | SourceError]:
        wanted = dict.fromkeys(m.search for m in metrics.values() if m.kind == "statistic" and m.search)
        out: dict[str, ask.SearchSample | SourceError] = {}
        for query in wanted:
            with self.ledger.spend({f"search:{query}"}):
                out[query] = ask.search_sample(self.client, query)
        return out

    def _counts(self, metrics: dict[str, Metric],
                samples: dict[str, ask.SearchSample | SourceError]) -> dict[str, ask.SearchCount | SourceError]:
        wanted = dict.fromkeys(q for m in metrics.values() if m.kind in ("search_count", "ratio")
                               for q in (m.search, m.search_done, m.search_total) if q)
        evidence: dict[str, int] = {}
        for m in metrics.values():
            if m.tickets and m.search:
                evidence[m.search] = max(evidence.get(m.search, 0), m.tickets)
        out: dict[str, ask.SearchCount | SourceError] = {}
        for query in wanted:
            sample = samples.get(query)
            if isinstance(sample, ask.SearchSample):          # its first page already told the total (and the items)
                items = tuple(t for t in map(ask.rest_ticket, sample.items) if t is not None)[:evidence[query]] \
                    if evidence.get(query) else None
                out[query] = ask.SearchCount(sample.total, sample.incomplete, items)
        todo = [q for q in wanted if q not in out]
        if todo:
            with self.ledger.spend({f"search:{q}" for q in todo}):
                out.update(ask.count_searches(self.client, todo, evidence))
        return out

    def _milestones(self, metrics: dict[str, Metric]) -> dict[tuple[str, Any], ask.Milestone | SourceError]:
        by_repo: dict[str, list[str | int]] = defaultdict(list)
        for m in metrics.values():
            if m.kind == "milestone" and m.repo and m.milestone not in by_repo[m.repo]:
                by_repo[m.repo].append(m.milestone)  # type: ignore[arg-type]
        out: dict[tuple[str, Any], ask.Milestone | SourceError] = {}
        for repo, keys in by_repo.items():
            with self.ledger.spend({f"milestones:{repo}"}):
                out.update({(repo, key): found for key, found in ask.find_milestones(self.client, repo, keys).items()})
        return out

    def _releases(self, metrics: dict[str, Metric]) -> dict[str, list[ask.Release] | SourceError]:
        out: dict[str, list[ask.Release] | SourceError] = {}
        for repo in dict.fromkeys(m.repo for m in metrics.values() if m.kind == "releases" and m.repo):
            with self.ledger.spend({f"releases:{repo}"}):
                out[repo] = ask.list_releases(self.client, repo)
        return out

    # -- reading the answers

    def _count(self, query: str, got: ask.SearchCount | SourceError, tickets: int = 0) -> _Answer:
        if isinstance(got, SourceError):
            raise got
        note = ask.INCOMPLETE_NOTE if got.incomplete else None
        evidence = got.items[:tickets] if tickets and got.items is not None else None
        return _Answer(float(got.total), query, self.search_link(query), note, evidence)

    def _ratio(self, done_q: str, total_q: str, counts: dict[str, ask.SearchCount | SourceError]) -> _Answer:
        done, total = counts[done_q], counts[total_q]
        if isinstance(done, SourceError) and isinstance(total, SourceError) and str(done) == str(total):
            raise done                                  # e.g. a rejected token: no side to name
        for side, got in (("search_done", done), ("search_total", total)):
            if isinstance(got, SourceError):
                raise SourceError(f"{side}: {got}")
        assert isinstance(done, ask.SearchCount) and isinstance(total, ask.SearchCount)
        if total.total == 0:
            raise SourceError("search_total matches nothing, so the ratio is undefined: check `search_total:`")
        note = f"{done.total:,} of {total.total:,}"
        if done.incomplete or total.incomplete:
            note += f"; {ask.INCOMPLETE_NOTE}"
        return _Answer(100.0 * done.total / total.total, f"{done_q} / {total_q}", self.search_link(done_q), note)

    def _statistic(self, m: Metric, got: ask.SearchSample | SourceError) -> _Answer:
        if isinstance(got, SourceError):
            raise got
        field, aggregate, query = m.field or "", m.aggregate or "", m.search or ""
        hours = [h for h in (ask.hours(item, field) for item in got.items) if h is not None]
        noun = "merged pull request" if field == "hours_to_merge" else "closed item"
        if not hours:
            raise SourceError(f"no {noun}s with dates among the {_plural(len(got.items), 'search result')}, "
                              f"so {aggregate}({field}) has no values: check `search:`")
        note = f"{aggregate} over {_plural(len(hours), noun)}"
        if got.truncated:
            note += (f"; over the {len(got.items):,} most recently created of {got.total:,} matches only "
                     f"(GitHub search returns at most {ask.SEARCH_CAP:,})")
        if got.incomplete:
            note += f"; {ask.INCOMPLETE_NOTE}"
        return _Answer(ask.statistic(hours, aggregate), f"{aggregate}({field}) of {query}", self.search_link(query), note)

    def _milestone(self, m: Metric, got: ask.Milestone | SourceError) -> _Answer:
        if isinstance(got, SourceError):
            raise got
        total = got.open + got.closed
        if total == 0:
            raise SourceError(f"milestone \"{got.title}\" in {m.repo} has no issues or pull requests yet, so its "
                              "closed share is undefined: add work to it, or check `milestone:`")
        return _Answer(100.0 * got.closed / total, f"milestone \"{got.title}\" in {m.repo}",
                       f"{self.web}/{m.repo}/milestone/{got.number}",
                       f"{got.closed:,} of {total:,} closed" + (" (milestone closed)" if got.state == "closed" else ""))

    def _released(self, m: Metric, got: list[ask.Release] | SourceError, as_of: date) -> _Answer:
        if isinstance(got, SourceError):
            raise got
        dates = {}
        for key in ("since", "until"):     # placeholders were filled in after validation: read the dates now
            try:
                dates[key] = _date_or_template(getattr(m, key))
            except ValueError:
                dates[key] = getattr(m, key)
            if isinstance(dates[key], str):
                raise SourceError(f"`{key}:` {getattr(m, key)!r} is not a date once placeholders are filled in: "
                                  "write YYYY-MM-DD or \"{period.start}\"")
        since = dates["since"]
        until = dates["until"] or as_of
        lo = _day_start(since) if since else None
        hi = _day_end(until)
        counted = [r for r in got if r.published_at is not None and not r.draft
                   and (m.prereleases or not r.prerelease)
                   and (lo is None or r.published_at >= lo) and r.published_at <= hi]
        span = f"{since or 'ever'}..{until}"
        note = f"{_plural(len(counted), 'release')} published {span}" + ("" if m.prereleases else ", prereleases left out")
        return _Answer(float(len(counted)), f"releases of {m.repo} published {span}", f"{self.web}/{m.repo}/releases", note)

# ---------------------------------------------------------------------------- public


def reads_past(metric: Metric) -> bool:
    """Whether the metric can be measured as of a past date: a search that uses `{as_of}` (e.g.
    `closed:<={as_of}`), or releases counted up to the as-of date (`until` unset or `{as_of}`)."""
    if metric.kind == "releases":
        return metric.until is None or "{as_of}" in str(metric.until)
    return any("{as_of}" in q for q in (metric.search, metric.search_done, metric.search_total) if q)


def check(source: SourceConfig, metrics: Sequence[Metric]) -> list[str]:
    """Nothing more to check offline: SourceConfig and Metric already say all GitHub allows without asking it."""
    return []


def connect(source: SourceConfig) -> GitHubClient:
    """A client for the source, its token read now; SourceError naming a missing variable/block."""
    token = source.token.reveal()
    return GitHubClient(token.get_secret_value(), token_source=source.token.describe(),
                        base_url=source.base_url, timeout=source.timeout)


def answer(client: GitHubClient, source: SourceConfig, requests: Sequence[MetricRequest]
           ) -> dict[str, Measurement | SourceError]:
    """Answer a batch in as few API calls as possible; errors stay with their key results."""
    metrics: dict[str, Metric] = {request.kr_id: request.metric for request in requests}
    as_of = {request.kr_id: request.as_of for request in requests}
    return _Asker(client, web_root(source.base_url)).answer(metrics, as_of)


def measure(source: SourceConfig, requests: list[MetricRequest]) -> dict[str, Measurement | SourceError]:
    """Measure a batch through the shared runner (okrsync.contract.run_batch)."""
    return run_batch(sys.modules[__name__], source, requests)
