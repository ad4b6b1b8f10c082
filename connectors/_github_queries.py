"""What the GitHub source asks, and how it reads the answers (REST and GraphQL shapes).

- `count_searches`: how many issues/PRs match each search. Two or more distinct searches go
  out as aliased `search(query: $qN, type: ISSUE) { issueCount }` fields, GRAPHQL_BATCH to a
  request; one search, or a host without GraphQL (404, older GitHub Enterprise), uses REST
  `GET /search/issues?q=...&per_page=1` and reads `total_count`. Both are the real total,
  unlike PyGithub's `PaginatedList.totalCount`, which stops at 1,000. A search whose count keeps
  evidence (the first N items: repository#number and title) asks for them in the same request:
  `first: N` and `nodes` beside `issueCount` (one connection resolved once: a GraphQL request
  still costs 1 point), or REST `per_page=N`.
- `search_sample`: the matching items themselves, 100 a page (newest first) up to GitHub's
  1,000-result cap, for duration statistics; its first page also gives the total.
- `find_milestones`: a milestone's open/closed counts, by number (one call) or by title (the
  repository's milestone list, shared by every title asked of that repository).
- `list_releases`: a repository's releases, every page: GitHub promises no order by
  publication date (a release's `created_at` is the date of its commit), so no page can be
  skipped safely.
"""
from __future__ import annotations

import logging
import statistics as stats
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from connectors import _answers, _evidence
from connectors._github_client import PER_PAGE, GitHubClient, GitHubHTTPError
from okrsync.errors import SourceError
from okrsync.redact import server_text

GRAPHQL_BATCH = 20        # searches per GraphQL request: well inside GitHub's node and time limits
GRAPHQL_REASKS = 2        # re-asks when one bad search voids a GraphQL answer (data: null)
SEARCH_CAP = 1000         # GitHub search returns at most this many results
INCOMPLETE_NOTE = "GitHub's search timed out before finishing (incomplete_results), so the figure may be low"
_MAX_LISTED = 10
MAX_QUOTED = 300          # characters of GitHub's own words quoted in an error

logger = logging.getLogger(__name__)

# ---------------------------------------------------------------------------- answers


@dataclass(frozen=True)
class SearchCount:
    total: int
    incomplete: bool = False
    items: tuple[dict[str, str], ...] | None = None     # the first items as evidence, when asked for


@dataclass(frozen=True)
class SearchSample:
    """The first (at most SEARCH_CAP) items of a search, and how many matched in all."""

    total: int
    items: list[dict[str, Any]]
    incomplete: bool = False

    @property
    def truncated(self) -> bool:
        return self.total > len(self.items)


@dataclass(frozen=True)
class Milestone:
    number: int
    title: str
    state: str
    open: int
    closed: int


@dataclass(frozen=True)
class Release:
    tag: str
    published_at: datetime | None
    draft: bool
    prerelease: bool

# ---------------------------------------------------------------------------- helpers


def _when(value: Any) -> datetime | None:
    """An ISO 8601 timestamp as GitHub writes it (2026-10-01T12:00:00Z), or None."""
    if not isinstance(value, str) or not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


def hours(item: dict[str, Any], field: str) -> float | None:
    """Hours from an item's creation to its merge (hours_to_merge) or close (hours_to_close)."""
    created = _when(item.get("created_at"))
    if field == "hours_to_merge":
        end = _when((item.get("pull_request") or {}).get("merged_at"))
    else:
        end = _when(item.get("closed_at"))
    if created is None or end is None:
        return None
    return (end - created).total_seconds() / 3600.0


def statistic(values: list[float], aggregate: str) -> float:
    """median, p90 (linear between closest ranks, as numpy's default) or avg of the values."""
    if aggregate == "avg":
        return stats.fmean(values)
    if aggregate == "median":
        return float(stats.median(values))
    if len(values) == 1:
        return values[0]
    return stats.quantiles(values, n=10, method="inclusive")[8]


def _repository(url: Any) -> str | None:
    """owner/name from an item's `repository_url` (https://api.github.com/repos/owner/name, or
    https://HOST/api/v3/repos/owner/name on GitHub Enterprise Server)."""
    if not isinstance(url, str) or "/repos/" not in url:
        return None
    parts = url.split("/repos/", 1)[1].strip("/").split("/")
    return "/".join(parts[:2]) if len(parts) >= 2 else None


def rest_ticket(item: Any) -> dict[str, str] | None:
    """A REST search item as evidence: {"key": "owner/name#12", "title": ...}."""
    if not isinstance(item, dict) or not isinstance(item.get("number"), int):
        return None
    repo = _repository(item.get("repository_url"))
    return _evidence.ticket(f"{repo}#{item['number']}" if repo else f"#{item['number']}", item.get("title"))


def graphql_ticket(node: Any) -> dict[str, str] | None:
    """A GraphQL search node (an Issue or a PullRequest) as evidence."""
    if not isinstance(node, dict) or not isinstance(node.get("number"), int):
        return None
    repository = node.get("repository") if isinstance(node.get("repository"), dict) else {}
    repo = repository.get("nameWithOwner")
    return _evidence.ticket(f"{repo}#{node['number']}" if isinstance(repo, str) and repo else f"#{node['number']}",
                            node.get("title"))


def _tickets(found: Any, read: Any, n: int) -> tuple[dict[str, str], ...]:
    items = found if isinstance(found, list) else []
    return tuple(t for t in map(read, items) if t is not None)[:n]


def _search_error(exc: GitHubHTTPError, host: str) -> SourceError:
    if exc.status == 422:
        return SourceError(f"GitHub rejected the search (422: {exc.detail or 'Validation Failed'}): fix `search:`")
    if exc.status == 404:
        return SourceError(f"{host} has no search API here (404): check base_url (https://HOST/api/v3 for GitHub Enterprise)")
    return exc


def _repo_missing(repo: str, client: GitHubClient) -> SourceError:
    return SourceError(f"repository {repo} not found (404), or the token from {client.token_source} cannot see it: "
                       "check `repo:` (owner/name)")


def _chunks(items: list[str], size: int) -> list[list[str]]:
    return [items[i:i + size] for i in range(0, len(items), size)]

# ---------------------------------------------------------------------------- counts


def count_searches(client: GitHubClient, queries: list[str],
                   evidence: dict[str, int] | None = None) -> dict[str, SearchCount | SourceError]:
    """The total of each distinct search (and its first `evidence[query]` items, in the same request):
    batched through GraphQL when that saves calls."""
    todo = list(dict.fromkeys(queries))
    evidence = evidence or {}
    out: dict[str, SearchCount | SourceError] = {}
    if len(todo) > 1 and client.graphql_available:
        for chunk in _chunks(todo, GRAPHQL_BATCH):
            try:
                out.update(_graphql_counts(client, chunk, evidence))
            except GitHubHTTPError as exc:
                if exc.status not in (404, 410):
                    out.update({q: exc for q in chunk})
                    continue
                client.graphql_available = False
                logger.info("GitHub at %s has no GraphQL API (%d): counting with REST search, one call per query",
                            client.host, exc.status)
                break
            except SourceError as exc:
                out.update({q: exc for q in chunk})
    for query in todo:
        if query not in out:
            out[query] = _rest_count(client, query, evidence.get(query, 0))
    return out


_NODE = "number title repository { nameWithOwner }"
_NODES = f"nodes {{ ... on Issue {{ {_NODE} }} ... on PullRequest {{ {_NODE} }} }}"


def _count_query(firsts: list[int]) -> str:
    """The aliased searches of one request; one with a `first` (evidence) also asks for its nodes."""
    params = ", ".join(f"$q{i}: String!" for i in range(len(firsts)))
    fields = " ".join(f"q{i}: search(query: $q{i}, type: ISSUE, first: {n}) {{ issueCount {_NODES} }}" if n else
                      f"q{i}: search(query: $q{i}, type: ISSUE) {{ issueCount }}" for i, n in enumerate(firsts))
    return f"query OkrSyncCounts({params}) {{ {fields} }}"


def _graphql_counts(client: GitHubClient, chunk: list[str],
                    evidence: dict[str, int] | None = None) -> dict[str, SearchCount | SourceError]:
    """Counts of one chunk in one request; a search GitHub refuses fails alone."""
    out: dict[str, SearchCount | SourceError] = {}
    evidence = evidence or {}
    pending = list(chunk)
    for _ in range(GRAPHQL_REASKS + 1):
        aliases = {f"q{i}": query for i, query in enumerate(pending)}
        body = client.graphql(_count_query([evidence.get(q, 0) for q in pending]), dict(aliases))
        data = body.get("data") if isinstance(body.get("data"), dict) else {}
        refused: dict[str, str] = {}
        general: list[str] = []
        for error in body.get("errors") or []:
            if not isinstance(error, dict):
                continue
            path = error.get("path") if isinstance(error.get("path"), list) else []
            message = server_text(error.get("message") or error.get("type") or "error", MAX_QUOTED)
            if path and isinstance(path[0], str) and path[0] in aliases:
                refused.setdefault(path[0], message)
            else:
                general.append(message)
        for alias, query in aliases.items():
            node = data.get(alias)
            if alias in refused:
                out[query] = SourceError(f"GitHub refused the search ({refused[alias]}): fix `search:`")
            elif isinstance(node, dict) and node.get("issueCount") is not None:
                counted = _counted(node["issueCount"], client.host, "GraphQL `issueCount`")
                n = evidence.get(query, 0)
                if n and isinstance(counted, SearchCount):
                    counted = SearchCount(counted.total, counted.incomplete, _tickets(node.get("nodes"), graphql_ticket, n))
                out[query] = counted
        pending = [q for q in pending if q not in out]
        if not pending:
            return out
        if general or not refused:
            reason = server_text("; ".join(general), MAX_QUOTED) if general else "no count in its answer"
            error = SourceError(f"GitHub GraphQL answered with an error ({reason})")
            return {**out, **{q: error for q in pending}}
        logger.debug("GraphQL answer voided by %d refused searches; asking the other %d again", len(refused), len(pending))
    error = SourceError("GitHub GraphQL gave no count for this search after several tries")
    return {**out, **{q: error for q in pending}}


def _rest_count(client: GitHubClient, query: str, evidence: int = 0) -> SearchCount | SourceError:
    try:
        _, data = client.get("/search/issues", {"q": query, "per_page": max(1, evidence)})
    except GitHubHTTPError as exc:
        return _search_error(exc, client.host)
    except SourceError as exc:
        return exc
    total = data.get("total_count") if isinstance(data, dict) else None
    if total is None:
        return SourceError(f"GitHub at {client.host} answered the search without a total_count: check base_url")
    counted = _counted(total, client.host, "`total_count`")
    if not isinstance(counted, SearchCount):
        return counted
    items = _tickets(data.get("items"), rest_ticket, evidence) if evidence else None
    return SearchCount(counted.total, bool(data.get("incomplete_results")), items)


def _counted(value: Any, host: str, what: str) -> SearchCount | SourceError:
    """A search's total as GitHub stated it, or the per-key-result error of a bad one (negative, text, 10^400)."""
    try:
        return SearchCount(_answers.count(value))
    except _answers.BadNumber as bad:
        return SourceError(f"GitHub at {host} answered the search with {bad} as {what}: not stored; check base_url "
                           "and run again")

# ---------------------------------------------------------------------------- items


def search_sample(client: GitHubClient, query: str) -> SearchSample | SourceError:
    """The matching items, newest first, PER_PAGE a page, stopping at the total or the 1,000 cap."""
    items: list[dict[str, Any]] = []
    total: int | None = None
    incomplete = False
    params = {"q": query, "per_page": PER_PAGE, "sort": "created", "order": "desc"}
    try:
        for page in client.pages("/search/issues", params):
            if not isinstance(page, dict) or page.get("total_count") is None or not isinstance(page.get("items"), list):
                return SourceError(f"GitHub at {client.host} answered the search without total_count and items: "
                                   "check base_url")
            if total is None:
                counted = _counted(page["total_count"], client.host, "`total_count`")
                if isinstance(counted, SourceError):
                    return counted
                total = counted.total
            incomplete = incomplete or bool(page.get("incomplete_results"))
            items.extend(i for i in page["items"] if isinstance(i, dict))
            if not page["items"] or len(items) >= min(total, SEARCH_CAP):
                break
    except GitHubHTTPError as exc:
        return _search_error(exc, client.host)
    except SourceError as exc:
        return exc
    return SearchSample(total or 0, items[:SEARCH_CAP], incomplete)

# ---------------------------------------------------------------------------- milestones


def _milestone(data: Any) -> Milestone | None:
    if not isinstance(data, dict) or not isinstance(data.get("number"), int):
        return None
    try:
        opened, closed = (_answers.count(data.get(k) or 0) for k in ("open_issues", "closed_issues"))
    except _answers.BadNumber:
        return None                     # counts GitHub cannot have meant: read as a milestone without them
    return Milestone(number=data["number"], title=str(data.get("title") or ""), state=str(data.get("state") or ""),
                     open=opened, closed=closed)


def _pick(title: str, seen: list[Milestone], exact_only: bool = False) -> Milestone | None:
    exact = [m for m in seen if m.title == title]
    if exact or exact_only:
        return exact[0] if exact else None
    folded = [m for m in seen if m.title.strip().casefold() == title.strip().casefold()]
    return folded[0] if len(folded) == 1 else None


def find_milestones(client: GitHubClient, repo: str,
                    keys: list[str | int]) -> dict[str | int, Milestone | SourceError]:
    """Each milestone asked of one repository, by number or by title."""
    out: dict[str | int, Milestone | SourceError] = {}
    for number in [k for k in keys if isinstance(k, int)]:
        try:
            _, data = client.get(f"/repos/{repo}/milestones/{number}")
        except GitHubHTTPError as exc:
            out[number] = (SourceError(f"no milestone #{number} in {repo} (404), or the repository does not exist "
                                       f"or the token from {client.token_source} cannot see it: check `milestone:` "
                                       "and `repo:`") if exc.status == 404 else exc)
            continue
        except SourceError as exc:
            out[number] = exc
            continue
        out[number] = _milestone(data) or SourceError(f"GitHub answered milestone #{number} of {repo} without "
                                                      "its counts: check base_url")
    titles = [k for k in keys if isinstance(k, str)]
    if not titles:
        return out
    seen: list[Milestone] = []
    try:
        for page in client.pages(f"/repos/{repo}/milestones", {"state": "all", "per_page": PER_PAGE}):
            seen.extend(m for m in map(_milestone, page if isinstance(page, list) else []) if m is not None)
            if all(_pick(t, seen, exact_only=True) for t in titles):
                break
    except GitHubHTTPError as exc:
        error = _repo_missing(repo, client) if exc.status == 404 else exc
        return {**out, **{t: error for t in titles}}
    except SourceError as exc:
        return {**out, **{t: exc for t in titles}}
    names = ", ".join(f'"{m.title}"' for m in seen[:_MAX_LISTED]) + (" ..." if len(seen) > _MAX_LISTED else "")
    for title in titles:
        out[title] = _pick(title, seen) or SourceError(
            f"no milestone \"{title}\" in {repo}: check `milestone:`; "
            + (f"its milestones are {names}" if seen else "the repository has no milestones"))
    return out

# ---------------------------------------------------------------------------- releases


def list_releases(client: GitHubClient, repo: str) -> list[Release] | SourceError:
    """Every release of the repository (drafts included; the caller filters)."""
    found: list[Release] = []
    try:
        for page in client.pages(f"/repos/{repo}/releases", {"per_page": PER_PAGE}):
            for data in page if isinstance(page, list) else []:
                if isinstance(data, dict):
                    found.append(Release(tag=str(data.get("tag_name") or ""), published_at=_when(data.get("published_at")),
                                         draft=bool(data.get("draft")), prerelease=bool(data.get("prerelease"))))
    except GitHubHTTPError as exc:
        return _repo_missing(repo, client) if exc.status == 404 else exc
    except SourceError as exc:
        return exc
    return found
