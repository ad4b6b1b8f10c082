"""Source connector for Jira Cloud and Jira Data Center: key results from the JQL teams already use.

A source (`type: jira`) is a site `url:` with `email:` + `token:` (Jira Cloud API token, basic
auth) or `token:` alone (Data Center personal access token, bearer). A key result's metric:

    {jql: ..., aggregate: count}                                number of matching issues (the default)
    {jql: ..., aggregate: sum|avg|min|max, field: Story Points}  a number field, named as Jira shows it
    {jql: ..., aggregate: percent_done}                          share (0-100) of issues in a Done status
    {jql: ..., aggregate: percent_done, weight: Story Points}    ... of their points
    {jql_done: ..., jql_total: ...}                              100 * count(done) / count(total)

A `count` keeps the tickets behind it with each check-in (`evidence: N`, default 50, `false` for
none): on Data Center from the count's own call (`search` with maxResults=N and fields=summary,
whose `total` stays the exact count); on Cloud, whose count endpoint returns a number only, from
a page of enhanced `search/jql` (maxResults=N, fields=summary) asked first: when it is the last page
it holds every matching issue and is the count too (one call), else the count endpoint follows (one
call more than a count without evidence); from the issues already read when the same condition is
read for a sum.

A metric whose JQL uses `{as_of}` (`resolved <= "{as_of} 23:59"`, `status WAS "Done" ON "{as_of}"`) can
be measured as of a past date (`reads_past`), so `--as-of` and `okr-sync backfill` measure it.

What one run costs, per source: 1 serverInfo call (Cloud or Data Center?); 1 field-list call if
some metric names a field; then 1 call per distinct count (Cloud `search/approximate-count`,
Data Center `search` with maxResults=0, or N for evidence) and 1 call per page of issues for the
metrics that must read issues (sum/avg/min/max, weighted percent_done). `percent_done` without a weight is
two counts, `(jql)` and `(jql) AND statusCategory = Done`. Identical queries (ORDER BY aside)
are asked once; a count of a query whose issues are read anyway costs nothing more. Up to
PARALLEL_QUERIES distinct queries are in flight at once, so a run's wall time is about the
round trips of its longest chain, not of all its queries end to end.
"""
from __future__ import annotations

import logging
import re
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import datetime, timezone
from typing import Any, Callable, Literal, Sequence
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from connectors import _evidence
from connectors._jira_client import JiraApi
from connectors._jira_plan import FieldCatalogue, JiraField, ScanTotals, condition_of, done_jql, navigator_link
from okrsync import deadline
from okrsync.contract import run_batch
from okrsync.errors import SourceError
from okrsync.measure import Measurement, MetricRequest
from okrsync.redact import register_derived
from okrsync.refs import SecretRef

TYPE = "jira"
Aggregate = Literal["count", "sum", "avg", "min", "max", "percent_done"]
FIELD_AGGREGATES = ("sum", "avg", "min", "max")
CLOUD_HOSTS = (".atlassian.net", ".jira.com")
PARALLEL_QUERIES = 4           # distinct queries in flight at once per source (each waits ~one round trip)
NOT_BASE_PATHS = ("/rest/", "/browse/", "/issues/", "/secure/", "/projects/", "/plugins/")
ONE_OF = ("give `jql:` (with `aggregate: count|sum|avg|min|max|percent_done`), "
          "or `jql_done:` and `jql_total:` for a ratio")

logger = logging.getLogger(__name__)

# ---------------------------------------------------------------------------- config


def _shown_url(value: str) -> str:
    """A URL for a message, without the `user:password@` a mistaken one may hold."""
    return re.sub(r"//[^/?#]*@", "//", value)


class SourceConfig(BaseModel):
    """A Jira Cloud or Data Center site and the credentials to read it."""

    model_config = ConfigDict(extra="forbid")

    type: Literal[TYPE]
    url: str = Field(description="The site's address: https://acme.atlassian.net, or a Data Center base URL "
                                 "with its context path, e.g. https://jira.acme.com/jira")
    email: SecretRef | str | None = Field(
        None, description="Jira Cloud: the email of the API token's account (plain, \"${VAR}\" or {secret: NAME}); "
                          "leave out for a Data Center personal access token")
    token: SecretRef = Field(description="Jira Cloud API token, or Data Center personal access token: "
                                         "\"${VARIABLE}\" or {secret: NAME}")
    timeout: float = Field(30.0, gt=0, le=600, description="Seconds to wait for each answer from Jira")

    @field_validator("url")
    @classmethod
    def _base_url(cls, value: str) -> str:
        try:
            parts = urlsplit(value.strip())
            parts.port                   # noqa: B018 - raises ValueError for a port that cannot exist
        except ValueError as exc:
            raise ValueError(f"url {_shown_url(value)!r} is not a web address ({exc}): write the Jira site, e.g. "
                             "https://acme.atlassian.net") from None
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"url {_shown_url(value)!r} is not a web address: write the Jira site, e.g. https://acme.atlassian.net")
        if parts.username or parts.password:
            raise ValueError("url must not hold credentials: give them as `email:` and `token:`")
        path = parts.path.rstrip("/")
        for marker in NOT_BASE_PATHS:
            at = (path + "/").find(marker)
            if at >= 0:
                raise ValueError(f"url must be the site's base address, not a page or API path: drop "
                                 f"{path[at:] or marker.rstrip('/')!r} (e.g. https://{parts.netloc}{path[:at]})")
        if parts.query or parts.fragment:
            raise ValueError(f"url must be the site's base address: drop the part after {'?' if parts.query else '#'}")
        return f"{parts.scheme}://{parts.netloc}{path}"

    @field_validator("email", mode="before")
    @classmethod
    def _email(cls, value: Any) -> Any:
        if value is None or isinstance(value, SecretRef):
            return value
        try:
            return SecretRef.model_validate(value)
        except ValidationError:
            if isinstance(value, str) and "@" in value and "${" not in value:
                return value.strip()
            raise ValueError("email must be the account's email address (plain, \"${VARIABLE}\" or {secret: NAME})") from None

    @property
    def host(self) -> str:
        return urlsplit(self.url).hostname or ""

    def reveal_email(self) -> str | None:
        return self.email.reveal().get_secret_value() if isinstance(self.email, SecretRef) else self.email

    def describe_email(self) -> str | None:
        if self.email is None:
            return None
        return self.email.describe() if isinstance(self.email, SecretRef) else f"`email:` ({self.email})"


class Metric(BaseModel):
    """What a key result asks of Jira: a JQL query and how to reduce it, or a ratio of two queries."""

    model_config = ConfigDict(extra="forbid")

    jql: str | None = Field(None, description="JQL of the issues to measure, e.g. project = PAY AND priority = P1; "
                                              "may use {period.start}, {period.end}, {as_of}")
    aggregate: Aggregate | None = Field(None, description="count (default), sum|avg|min|max of `field:`, "
                                                          "or percent_done (0-100, status category Done)")
    field: str | None = Field(None, description="sum/avg/min/max: a number field as Jira shows it, e.g. Story Points")
    weight: str | None = Field(None, description="percent_done: weigh each issue by this number field, e.g. Story Points")
    jql_done: str | None = Field(None, description="ratio: JQL of the issues done; value = 100 * done / total")
    jql_total: str | None = Field(None, description="ratio: JQL of all the issues")
    evidence: _evidence.Setting = Field(None, description=(
        f"count: keep up to N matching issues (key and summary) with each check-in (default {_evidence.DEFAULT}, "
        f"at most {_evidence.MOST}); false: none"))

    @field_validator("jql", "field", "weight", "jql_done", "jql_total")
    @classmethod
    def _not_blank(cls, value: str | None) -> str | None:
        if value is not None and not value.strip():
            raise ValueError("is empty: write it, or leave the key out")
        return value.strip() if value is not None else None

    @model_validator(mode="after")
    def _one_shape(self) -> Metric:
        if self.jql_done is not None or self.jql_total is not None:
            if self.jql_done is None or self.jql_total is None:
                given, missing = ("jql_done", "jql_total") if self.jql_done is not None else ("jql_total", "jql_done")
                raise ValueError(f"`{given}:` needs `{missing}:` too: the value is 100 * done / total")
            extra = [f"`{n}:`" for n in ("jql", "aggregate", "field", "weight", "evidence") if getattr(self, n) is not None]
            if extra:
                raise ValueError(f"{' and '.join(extra)} do not go with `jql_done:`/`jql_total:`: " + ONE_OF)
            for name in ("jql_done", "jql_total"):
                _check_condition(name, getattr(self, name))
            return self
        if self.jql is None:
            raise ValueError(ONE_OF)
        _check_condition("jql", self.jql)
        aggregate = self.aggregate or "count"
        if aggregate in FIELD_AGGREGATES and self.field is None:
            raise ValueError(f"`aggregate: {aggregate}` needs `field:`, the number field to reduce, e.g. `field: Story Points`")
        if self.field is not None and aggregate not in FIELD_AGGREGATES:
            fix = (f"for the share of points done write `weight: {self.field}`" if aggregate == "percent_done" else
                   "add `aggregate: sum|avg|min|max`" if self.aggregate is None else "remove it")
            raise ValueError(f"`field:` goes with `aggregate: sum|avg|min|max`: {fix}")
        if self.weight is not None and aggregate != "percent_done":
            raise ValueError("`weight:` goes with `aggregate: percent_done`: add it, or remove `weight:`")
        if self.evidence is not None and aggregate != "count":
            raise ValueError(_evidence.ONLY_COUNTS)
        return self

    @property
    def kind(self) -> str:
        """count, sum, avg, min, max, percent_done or ratio."""
        return "ratio" if self.jql_done is not None else (self.aggregate or "count")

    @property
    def field_name(self) -> str | None:
        """The field this metric reads (`field:` or `weight:`), if any."""
        return self.field or self.weight

    @property
    def tickets(self) -> int:
        """How many matching issues its check-ins keep (0: none)."""
        return _evidence.limit(self.evidence, self.kind == "count")


def _check_condition(name: str, jql: str) -> None:
    if not condition_of(jql):
        raise ValueError(f"`{name}` has no condition before ORDER BY: Jira needs a bounded query, "
                         "e.g. `project = PAY ORDER BY rank`")

# ---------------------------------------------------------------------------- the batch

Key = tuple[str, str]      # ("count" | "done" | "scan", condition): one query of the batch


def _keys(metric: Metric) -> list[Key]:
    """The queries a metric needs, before merging with the rest of the batch."""
    if metric.kind == "ratio":
        return [("count", condition_of(metric.jql_done or "")), ("count", condition_of(metric.jql_total or ""))]
    where = condition_of(metric.jql or "")
    if metric.kind == "count":
        return [("count", where)]
    if metric.kind == "percent_done" and metric.weight is None:
        return [("count", where), ("done", where)]
    return [("scan", where)]


def _describe(metric: Metric, field: JiraField | None) -> str:
    """The query as stored with the check-in."""
    if metric.kind == "ratio":
        return f"done: {metric.jql_done} / total: {metric.jql_total}"
    if metric.kind == "count":
        return metric.jql or ""
    if metric.kind == "percent_done":
        by = f" by {field.name}" if field else ""
        return f"percent done{by} of: {metric.jql}"
    return f"{metric.kind} of {field.name if field else metric.field} over: {metric.jql}"


def _value(metric: Metric, field: JiraField | None, get: Callable[[Key], Any]) -> float:
    """The key result's value from the answers of its queries; SourceError if undefined."""
    kind = metric.kind
    if kind == "ratio":
        done, total = get(("count", condition_of(metric.jql_done or ""))), get(("count", condition_of(metric.jql_total or "")))
        if total == 0:
            raise SourceError("jql_total matches no issues, so the ratio is undefined: check `jql_total:`")
        return 100.0 * done / total
    where = condition_of(metric.jql or "")
    if kind == "count":
        return float(get(("count", where)))
    if kind == "percent_done" and field is None:
        total, done = get(("count", where)), get(("done", where))
        if total == 0:
            raise SourceError("no issues match the JQL, so percent done is undefined: check `jql:`")
        return min(100.0, 100.0 * done / total)
    assert field is not None
    scan: ScanTotals = get(("scan", where))
    totals = scan.fields[field.id]
    if kind == "percent_done":
        if totals.total == 0:
            raise SourceError(f'the {scan.issues} matching issues have no "{field.name}" (total 0), so percent done '
                              f"by {field.name} is undefined: estimate them, or drop `weight:`")
        return 100.0 * totals.done_total / totals.total
    if kind == "sum":
        return totals.total
    if totals.n == 0:
        raise SourceError(f'none of the {scan.issues} matching issues has a value in "{field.name}", so its {kind} '
                          "is undefined: check the JQL, or fill in the field")
    return {"avg": totals.total / totals.n, "min": totals.low, "max": totals.high}[kind]


class _Batch:
    """One source's key results in one run: plan the distinct queries, ask each once, compose.

    A key result needs queries (`_keys`); a query whose issues are read ("scan") also answers
    the counts of the same condition, so those are not asked. Each distinct query is asked
    once, its calls recorded; a failed query fails only the key results that need it.
    """

    def __init__(self, api: JiraApi, url: str, metrics: dict[str, Metric]):
        self.api = api
        self.url = url
        self.metrics = metrics
        self.fields: dict[str, JiraField] = {}                 # kr_id -> the field it reads
        self.results: dict[str, Measurement | SourceError] = {}
        self.keys: dict[str, list[Key]] = {}                   # kr_id -> its queries
        self.scans: dict[str, set[str]] = {}                   # condition read issue by issue -> field ids
        self.answers: dict[Key, Any] = {}                      # int, ScanTotals or SourceError
        self.spent: dict[Key, int] = {}                        # calls each query took
        self.sampled: dict[str, int] = {}                      # condition -> issues its counts keep as evidence
        self.samples: dict[str, list[dict[str, str]] | SourceError] = {}   # condition -> those issues

    def run(self) -> dict[str, Measurement | SourceError]:
        """The batch's results; SourceError if the site cannot be reached at all (e.g. a refused token)."""
        self.api.detect()
        self._resolve_fields()
        self._plan()
        self._ask_all()
        self._compose()
        return self._charge()

    def _resolve_fields(self) -> None:
        """Field names -> ids, from one field-list call, only if some metric names a field."""
        named = {k: m.field_name for k, m in self.metrics.items() if m.field_name}
        if not named:
            return
        try:
            catalogue = FieldCatalogue(self.api.fields())
        except SourceError as error:
            self.results.update({k: error for k in named})
            return
        for kr_id, name in named.items():
            try:
                self.fields[kr_id] = catalogue.resolve(name)
            except SourceError as error:
                self.results[kr_id] = error

    def _plan(self) -> None:
        self.keys = {k: _keys(m) for k, m in self.metrics.items() if k not in self.results}
        for kr_id, keys in self.keys.items():
            if keys[0][0] == "scan":
                self.scans.setdefault(keys[0][1], set()).add(self.fields[kr_id].id)
            if self.metrics[kr_id].tickets:
                where = keys[0][1]
                self.sampled[where] = max(self.sampled.get(where, 0), self.metrics[kr_id].tickets)

    def _served_by(self, key: Key) -> Key:
        """The query that answers `key`: a count of a condition read anyway comes from its issues."""
        return ("scan", key[1]) if key[1] in self.scans else key

    def _ask_all(self) -> None:
        """Each distinct query once, up to PARALLEL_QUERIES at a time (each thread counts its own calls)."""
        done_wanted = {condition_of(self.metrics[k].jql or "") for k in self.keys if self.metrics[k].kind == "percent_done"}
        todo = list(dict.fromkeys(self._served_by(k) for keys in self.keys.values() for k in keys))
        # Reads of issues are chains of pages, each waiting for the one before: start them first,
        # so the one-call counts fill the other threads meanwhile instead of queueing behind them.
        todo.sort(key=lambda k: k[0] != "scan")

        ends = deadline.current()                 # a pool thread does not inherit the source's deadline

        def ask(key: Key) -> tuple[Key, Any, int]:
            before = self.api.thread_calls()
            try:
                with deadline.until(ends):
                    answer: Any = self._ask(key, key[1] in done_wanted)
            except SourceError as error:
                answer = error
            return key, answer, self.api.thread_calls() - before

        if not todo:
            return
        with ThreadPoolExecutor(max_workers=min(PARALLEL_QUERIES, len(todo)), thread_name_prefix="jira-query") as pool:
            for key, answer, spent in pool.map(ask, todo):
                self.answers[key] = answer
                self.spent[key] = spent

    def _ask(self, key: Key, with_status: bool) -> Any:
        kind, where = key
        if kind == "count":
            if self.sampled.get(where):
                total, self.samples[where] = self.api.count_and_sample(where, self.sampled[where])
                return total
            return self.api.count(where)
        if kind == "done":
            return self.api.count(done_jql(where))
        totals = ScanTotals(tuple(sorted(self.scans[where])), sample=self.sampled.get(where, 0))
        extra = (["status"] if with_status else []) + (["summary"] if totals.sample else [])
        for page in self.api.pages(where, list(totals.field_ids) + extra):
            totals.feed(page)
        logger.debug("read %d issues for %r", totals.issues, where)
        return totals

    def _tickets(self, where: str, n: int) -> tuple[tuple[dict[str, str], ...] | None, str | None]:
        """The evidence of a count of `where` (its first `n` issues) and, if it could not be read, why."""
        found = self.samples.get(where)
        scanned = self.answers.get(("scan", where))
        if found is None and isinstance(scanned, ScanTotals):
            found = scanned.tickets
        if isinstance(found, SourceError):
            return None, f"the tickets behind the count were not read: {found}"
        return (None, None) if found is None else (tuple(found[:n]), None)

    def _get(self, key: Key) -> Any:
        answer = self.answers[self._served_by(key)]
        if isinstance(answer, SourceError):
            raise answer
        if isinstance(answer, ScanTotals) and key[0] != "scan":
            return answer.done if key[0] == "done" else answer.issues
        return answer

    def _compose(self) -> None:
        observed_at = datetime.now(timezone.utc)
        for kr_id, keys in self.keys.items():
            metric, field = self.metrics[kr_id], self.fields.get(kr_id)
            try:
                value = _value(metric, field, self._get)
            except SourceError as error:
                self.results[kr_id] = error
                continue
            link = navigator_link(self.url, (metric.jql_total if metric.kind == "ratio" else metric.jql) or "")
            evidence, note = self._tickets(keys[0][1], metric.tickets) if metric.tickets else (None, None)
            self.results[kr_id] = Measurement(value=value, link=link, query=_describe(metric, field),
                                              observed_at=observed_at, evidence=evidence, note=note)

    def _charge(self) -> dict[str, Measurement | SourceError]:
        """Give each query's calls to the first key result that needs it; what is left (serverInfo,
        the field list, calls behind failed key results) to the first measured one."""
        measured = [k for k in self.metrics if isinstance(self.results.get(k), Measurement)]
        if not measured:
            return self.results
        owner: dict[Key, str] = {}
        for kr_id, keys in self.keys.items():
            for key in keys:
                owner.setdefault(self._served_by(key), kr_id)
        charged = dict.fromkeys(measured, 0)
        for key, calls in self.spent.items():
            if owner.get(key) in charged:
                charged[owner[key]] += calls
        charged[measured[0]] += self.api.calls - sum(charged.values())
        for kr_id, calls in charged.items():
            self.results[kr_id] = replace(self.results[kr_id], calls=calls)
        return self.results

# ---------------------------------------------------------------------------- public


def reads_past(metric: Metric) -> bool:
    """A metric whose JQL uses `{as_of}` can be measured as of a past date."""
    return any("{as_of}" in q for q in (metric.jql, metric.jql_done, metric.jql_total) if q)


def check(source: SourceConfig, metrics: Sequence[Metric]) -> list[str]:
    """Problems visible without calling Jira: a Cloud site without `email:` (metrics are checked by Metric)."""
    if source.email is None and source.host.endswith(CLOUD_HOSTS):
        return [f"{source.host} is Jira Cloud, which signs in with an email and an API token: add "
                "`email:` (the token's account) next to `token:`"]
    return []


def connect(source: SourceConfig, client: type[JiraApi] = JiraApi) -> JiraApi:
    """A client for the source (or the publish target, which passes its own `client` class), its secrets read
    now; SourceError naming a missing variable/block."""
    token = source.token.reveal().get_secret_value()
    email = source.reveal_email()
    if email:
        register_derived(f"{email}:{token}")    # Cloud's Basic credentials, as a server may echo them back
    return client(source.url, token=token, token_source=source.token.describe(), email=email,
                  email_source=source.describe_email(), timeout=source.timeout)


def answer(api: JiraApi, source: SourceConfig, requests: Sequence[MetricRequest]) -> dict[str, Measurement | SourceError]:
    """Answer a batch: each distinct query asked once, errors confined to their key results."""
    metrics: dict[str, Metric] = {request.kr_id: request.metric for request in requests}
    results = _Batch(api, source.url, metrics).run()
    logger.info("jira %s: %d key results, %d measured, %d API calls", source.url, len(metrics),
                sum(isinstance(r, Measurement) for r in results.values()), api.calls)
    return results


def measure(source: SourceConfig, requests: list[MetricRequest]) -> dict[str, Measurement | SourceError]:
    """Measure a batch through the shared runner (okrsync.contract.run_batch)."""
    return run_batch(sys.modules[__name__], source, requests)
