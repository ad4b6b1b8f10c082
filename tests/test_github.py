"""connectors.github against `responses` mocks built from GitHub's documented payload shapes.

Covers counts (REST total_count above 1,000; GraphQL batched, deduped, chunked, 200-with-errors,
404 fallback on Enterprise), duration statistics (Link pagination, the 1,000 cap), milestones,
releases, error mapping (401/403/404/422, timeouts, non-JSON), rate limits (primary, secondary,
retry-after) with the waits asserted and time patched out, and that the token never leaks.
"""
from __future__ import annotations

import json
import logging
from datetime import date, datetime, timedelta, timezone
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
import requests
import responses
from responses import matchers

from connectors import _github_client
from connectors.github import Metric, SourceConfig, measure
from fake_github import FakeGitHub, error_body, graphql_counts, issue_item, milestone, release, search_page
from okrsync.errors import SourceError
from okrsync.measure import Measurement, MetricRequest, Period

PERIOD = Period(date(2026, 10, 1), date(2026, 12, 31), "2026-Q4")
AS_OF = date(2026, 11, 20)
TOKEN_ENV = "OKR_TEST_GITHUB_TOKEN"
CANARY = "ghp_CANARY7d1f0e9b5a3c2d4e6f8a0b1c2d3e4f5a6b"
NOW = 1_795_000_000.0                      # the patched clock: 2026-11-18 UTC
API = "https://api.github.com:443"         # PyGithub always writes the port into the URL it requests
LINKED = "https://api.github.com"          # ...but GitHub's Link headers name no port
SEARCH = f"{API}/search/issues"
GRAPHQL = f"{API}/graphql"
PERF = "repo:acme/checkout is:pr is:merged label:perf merged:>=2026-10-01"
SECURITY = "repo:acme/checkout is:issue is:open label:security"


@pytest.fixture(autouse=True)
def token(monkeypatch):
    monkeypatch.setenv(TOKEN_ENV, CANARY)


@pytest.fixture(autouse=True)
def waits(clock) -> list[float]:
    """Every retry wait asked for, in seconds; nothing ever sleeps (tests/conftest.py)."""
    clock.start = NOW
    return clock.waits


def backed_off(waits: list[float], first: float = _github_client.POLICY.first_wait) -> bool:
    """The waits are the policy's backoff from `first`: doubling, plus at most the jitter."""
    jitter = _github_client.POLICY.jitter
    return all(first * 2 ** n <= w <= first * 2 ** n + jitter for n, w in enumerate(waits))


@pytest.fixture
def gh():
    with responses.RequestsMock(assert_all_requests_are_fired=True) as mock:
        yield mock


def source(**settings) -> SourceConfig:
    return SourceConfig.model_validate({"type": "github", "token": "${" + TOKEN_ENV + "}", **settings})


def run(metrics: dict[str, dict], **settings) -> dict[str, Measurement | SourceError]:
    """Measure the metrics; a search count keeps no evidence unless the test asks (the evidence tests
    do), so the mocks of the counting tests stay the count's own requests."""
    requests_ = [MetricRequest(kr, Metric.model_validate(_no_evidence(m)), PERIOD, AS_OF) for kr, m in metrics.items()]
    return measure(source(**settings), requests_)


def _no_evidence(metric: dict) -> dict:
    if "search" in metric and metric.get("aggregate", "count") == "count":
        return {"evidence": False, **metric}
    return metric


def ok(result: Measurement | SourceError) -> Measurement:
    assert isinstance(result, Measurement), f"expected a Measurement, got: {result}"
    return result


def failed(result: Measurement | SourceError) -> str:
    assert isinstance(result, SourceError), f"expected a SourceError, got: {result}"
    return str(result)


def total_calls(results: dict[str, Measurement | SourceError]) -> int:
    return sum(r.calls for r in results.values() if isinstance(r, Measurement))


def count_params(query: str) -> list:
    return [matchers.query_param_matcher({"q": query, "per_page": "1"})]


def graphql_callback(answers: dict[str, int], seen: list[dict] | None = None):
    """Answer aliased issueCount searches from `answers` (query -> count), recording each body."""
    def reply(request):
        body = json.loads(request.body)
        if seen is not None:
            seen.append(body)
        counts = {alias: answers[q] for alias, q in body["variables"].items()}
        return 200, {}, json.dumps(graphql_counts(counts))
    return reply

# ---------------------------------------------------------------------------- counts


def test_one_count_reads_rest_total_count_beyond_1000(gh):
    gh.get(SEARCH, json=search_page(4321, [issue_item(1, pr=True, merged_at="2026-10-02T00:00:00Z")]),
           match=count_params(PERF))
    result = ok(run({"perf-prs": {"search": PERF, "aggregate": "count"}})["perf-prs"])
    assert result.value == 4321                             # PyGithub's totalCount would stop at 1,000
    assert result.calls == 1 and len(gh.calls) == 1
    assert result.query == PERF and result.note is None
    assert result.link == ("https://github.com/search?q=repo%3Aacme%2Fcheckout+is%3Apr+is%3Amerged+label%3Aperf+"
                           "merged%3A%3E%3D2026-10-01&type=pullrequests")
    assert gh.calls[0].request.headers["Authorization"] == f"token {CANARY}"


def test_incomplete_results_are_noted(gh):
    gh.get(SEARCH, json=search_page(17, incomplete=True), match=count_params(SECURITY))
    result = ok(run({"sec": {"search": SECURITY}})["sec"])
    assert result.value == 17 and "incomplete_results" in result.note
    assert result.link.endswith("&type=issues")


def test_counts_go_in_one_graphql_request_with_identical_searches_asked_once(gh):
    done = "repo:acme/checkout is:issue is:closed label:bug"
    total = "repo:acme/checkout is:issue label:bug"
    seen: list[dict] = []
    gh.add_callback(responses.POST, GRAPHQL,
                    callback=graphql_callback({PERF: 1500, SECURITY: 2, done: 30, total: 40}, seen))
    results = run({
        "perf-prs": {"search": PERF},
        "perf-prs-again": {"search": PERF, "aggregate": "count"},
        "security": {"search": SECURITY},
        "bug-ratio": {"search_done": done, "search_total": total},
        "open-bugs": {"search": total},
    })
    assert len(gh.calls) == 1
    body = seen[0]
    assert sorted(body["variables"].values()) == sorted([PERF, SECURITY, done, total])
    assert body["query"].count("search(query: $q") == 4 and "issueCount" in body["query"]
    assert ok(results["perf-prs"]).value == ok(results["perf-prs-again"]).value == 1500
    assert ok(results["security"]).value == 2 and ok(results["open-bugs"]).value == 40
    ratio = ok(results["bug-ratio"])
    assert ratio.value == pytest.approx(75.0) and ratio.note == "30 of 40"
    assert ratio.query == f"{done} / {total}" and "is%3Aclosed" in ratio.link
    assert [r.calls for r in results.values()] == [1, 0, 0, 0, 0]
    assert total_calls(results) == 1


def test_many_counts_are_chunked(gh):
    queries = [f"repo:acme/r{i} is:issue is:open" for i in range(45)]
    seen: list[dict] = []
    gh.add_callback(responses.POST, GRAPHQL, callback=graphql_callback({q: i for i, q in enumerate(queries)}, seen))
    results = run({f"kr{i}": {"search": q} for i, q in enumerate(queries)})
    assert [len(b["variables"]) for b in seen] == [20, 20, 5]
    assert [ok(results[f"kr{i}"]).value for i in range(45)] == list(range(45))
    assert total_calls(results) == 3


def test_graphql_error_for_one_search_fails_only_that_key_result(gh):
    refused = "repo:acme/gone is:issue is:open"
    message = ("The listed users and repositories cannot be searched either because the resources do not exist "
               "or you do not have permission to view them.")
    gh.post(GRAPHQL, json={"data": {"q0": {"issueCount": 5}, "q1": None},
                           "errors": [{"type": "INVALID", "path": ["q1"], "locations": [{"line": 1, "column": 90}],
                                       "message": message}]})
    results = run({"ok": {"search": SECURITY}, "bad": {"search": refused}})
    assert ok(results["ok"]).value == 5 and ok(results["ok"]).calls == 1
    assert message in failed(results["bad"]) and "fix `search:`" in failed(results["bad"])


def test_graphql_answer_voided_by_one_search_asks_the_others_again(gh):
    refused = "repo:acme/gone is:issue is:open"
    seen: list[dict] = []

    def reply(request):
        body = json.loads(request.body)
        seen.append(body)
        if refused in body["variables"].values():
            alias = next(a for a, q in body["variables"].items() if q == refused)
            return 200, {}, json.dumps({"data": None, "errors": [
                {"type": "INVALID", "path": [alias], "message": "Could not resolve repository acme/gone"}]})
        return 200, {}, json.dumps(graphql_counts({a: 7 for a in body["variables"]}))

    gh.add_callback(responses.POST, GRAPHQL, callback=reply)
    results = run({"a": {"search": SECURITY}, "b": {"search": refused}, "c": {"search": PERF}})
    assert len(seen) == 2 and sorted(seen[1]["variables"].values()) == sorted([SECURITY, PERF])
    assert ok(results["a"]).value == 7 and ok(results["c"]).value == 7
    assert "Could not resolve repository acme/gone" in failed(results["b"])
    assert total_calls(results) == 2


def test_graphql_200_with_a_general_error_is_an_error(gh):
    gh.post(GRAPHQL, json={"errors": [{"message": "Something went wrong while executing your query. "
                                                  "Please include `C0DE:1234` when reporting this issue."}]})
    results = run({"a": {"search": SECURITY}, "b": {"search": PERF}})
    for kr in "ab":
        assert "Something went wrong while executing your query" in failed(results[kr])


def test_graphql_rate_limited_as_200_waits_for_the_reset(gh, waits):
    gh.post(GRAPHQL, json={"errors": [{"type": "RATE_LIMITED", "message": "API rate limit exceeded for user ID 1."}]},
            headers={"x-ratelimit-limit": "5000", "x-ratelimit-remaining": "0", "x-ratelimit-reset": str(int(NOW) + 30),
                     "x-ratelimit-resource": "graphql"})
    gh.add_callback(responses.POST, GRAPHQL, callback=graphql_callback({SECURITY: 3, PERF: 4}))
    results = run({"a": {"search": SECURITY}, "b": {"search": PERF}})
    assert waits == [31.0]
    assert ok(results["a"]).value == 3 and ok(results["b"]).value == 4
    assert total_calls(results) == 2


def test_enterprise_without_graphql_falls_back_to_rest_per_query(gh):
    base = "https://ghe.acme.com/api/v3"
    gh.post("https://ghe.acme.com:443/api/graphql", status=404, json=error_body("Not Found", 404))
    for query, total in ((SECURITY, 2), (PERF, 1200), ("repo:acme/checkout is:issue", 9)):
        gh.get("https://ghe.acme.com:443/api/v3/search/issues", json=search_page(total), match=count_params(query))
    results = run({"sec": {"search": SECURITY}, "perf": {"search": PERF},
                   "ratio": {"search_done": SECURITY, "search_total": "repo:acme/checkout is:issue"}}, base_url=base)
    assert ok(results["perf"]).value == 1200 and ok(results["ratio"]).value == pytest.approx(200 / 9)
    assert ok(results["sec"]).link == ("https://ghe.acme.com/search?q=repo%3Aacme%2Fcheckout+is%3Aissue+is%3Aopen+"
                                       "label%3Asecurity&type=issues")
    assert total_calls(results) == 4 and len(gh.calls) == 4


def test_ratio_over_an_empty_total_is_an_error(gh):
    gh.add_callback(responses.POST, GRAPHQL, callback=graphql_callback({SECURITY: 0, PERF: 0}))
    result = run({"r": {"search_done": SECURITY, "search_total": PERF}})["r"]
    assert "search_total matches nothing" in failed(result)

# ---------------------------------------------------------------------------- statistics


def _merged_items(count: int, start: int = 0) -> list[dict]:
    """PRs created 2026-10-01 and merged (i % 50) + 1 hours later."""
    created = datetime(2026, 10, 1, tzinfo=timezone.utc)
    return [issue_item(i, pr=True, created_at=created.strftime("%Y-%m-%dT%H:%M:%SZ"),
                       closed_at=(created + timedelta(hours=i % 50 + 1)).strftime("%Y-%m-%dT%H:%M:%SZ"),
                       merged_at=(created + timedelta(hours=i % 50 + 1)).strftime("%Y-%m-%dT%H:%M:%SZ"))
            for i in range(start, start + count)]


def paged_search(items: list[dict], total: int | None = None, per_page: int = 100):
    """A /search/issues callback paginating `items` with Link headers, as GitHub does (max 1,000)."""
    total = len(items) if total is None else total

    def reply(request):
        query = {k: v[0] for k, v in parse_qs(urlsplit(request.url).query).items()}
        page = int(query.get("page", "1"))
        last = -(-min(total, 1000) // per_page)
        headers = {}
        if page < last:
            nxt = urlencode({**query, "page": page + 1})
            url = f"{LINKED}/search/issues"
            headers["Link"] = f'<{url}?{nxt}>; rel="next", <{url}?{urlencode({**query, "page": last})}>; rel="last"'
        return 200, headers, json.dumps(search_page(total, items[(page - 1) * per_page: page * per_page]))
    return reply


def test_duration_statistics_page_through_results_and_share_the_count(gh):
    items = _merged_items(250)
    gh.add_callback(responses.GET, SEARCH, callback=paged_search(items))
    results = run({
        "median": {"search": PERF, "aggregate": "median", "field": "hours_to_merge"},
        "p90": {"search": PERF, "aggregate": "p90", "field": "hours_to_merge"},
        "avg": {"search": PERF, "aggregate": "avg", "field": "hours_to_merge"},
        "count": {"search": PERF, "aggregate": "count"},
    })
    hours = sorted(i % 50 + 1 for i in range(250))               # 1..50, five times each
    assert ok(results["median"]).value == pytest.approx(25.5)
    assert ok(results["avg"]).value == pytest.approx(sum(hours) / 250)
    assert ok(results["p90"]).value == pytest.approx(hours[224] + 0.1 * (hours[225] - hours[224]))
    assert ok(results["count"]).value == 250                      # from the first page's total_count
    assert ok(results["median"]).note == "median over 250 merged pull requests"
    first = parse_qs(urlsplit(gh.calls[0].request.url).query)
    assert first == {"q": [PERF], "per_page": ["100"], "sort": ["created"], "order": ["desc"]}
    assert len(gh.calls) == 3 and total_calls(results) == 3


def test_statistic_says_when_the_1000_cap_truncates_it(gh):
    gh.add_callback(responses.GET, SEARCH, callback=paged_search(_merged_items(1000), total=2500))
    result = ok(run({"m": {"search": PERF, "aggregate": "median", "field": "hours_to_merge"}})["m"])
    assert len(gh.calls) == 10 and result.calls == 10
    assert "1,000 most recently created of 2,500 matches only" in result.note


def test_hours_to_close_of_issues(gh):
    query = "repo:acme/checkout is:issue is:closed label:bug"
    items = [issue_item(1, created_at="2026-10-01T00:00:00Z", closed_at="2026-10-01T10:00:00Z"),
             issue_item(2, created_at="2026-10-02T00:00:00Z", closed_at="2026-10-03T06:00:00Z"),
             issue_item(3, created_at="2026-10-02T00:00:00Z", closed_at=None)]
    gh.get(SEARCH, json=search_page(3, items))
    result = ok(run({"m": {"search": query, "aggregate": "avg", "field": "hours_to_close"}})["m"])
    assert result.value == pytest.approx((10 + 30) / 2) and result.note == "avg over 2 closed items"


def test_statistic_with_nothing_merged_is_an_error(gh):
    gh.get(SEARCH, json=search_page(0, []))
    result = run({"m": {"search": PERF, "aggregate": "median", "field": "hours_to_merge"}})["m"]
    assert "no merged pull requests" in failed(result) and "check `search:`" in failed(result)

# ---------------------------------------------------------------------------- milestones and releases


def test_milestones_by_title_share_one_paginated_listing(gh):
    url = f"{API}/repos/acme/checkout/milestones"
    page2 = f"{LINKED}/repos/acme/checkout/milestones?state=all&per_page=100&page=2"
    gh.get(url, json=[milestone(3, "v1.9", open_issues=0, closed_issues=12, state="closed"),
                      milestone(5, "v2.1", open_issues=8, closed_issues=0)],
           headers={"Link": f'<{page2}>; rel="next", <{page2}>; rel="last"'},
           match=[matchers.query_param_matcher({"state": "all", "per_page": "100"})])
    gh.get(url, json=[milestone(7, "v2.0", open_issues=3, closed_issues=9)],
           match=[matchers.query_param_matcher({"state": "all", "per_page": "100", "page": "2"})])
    results = run({"v2": {"repo": "acme/checkout", "milestone": "v2.0", "aggregate": "percent_done"},
                   "v19": {"repo": "acme/checkout", "milestone": "V1.9"}})
    v2 = ok(results["v2"])
    assert v2.value == pytest.approx(75.0) and v2.note == "9 of 12 closed"
    assert v2.link == "https://github.com/acme/checkout/milestone/7"
    assert ok(results["v19"]).value == 100 and ok(results["v19"]).note == "12 of 12 closed (milestone closed)"
    assert len(gh.calls) == 2 and total_calls(results) == 2


def test_milestone_by_number_is_one_call(gh):
    gh.get(f"{API}/repos/acme/checkout/milestones/7", json=milestone(7, "v2.0", open_issues=1, closed_issues=3))
    result = ok(run({"m": {"repo": "acme/checkout", "milestone": 7}})["m"])
    assert result.value == 75 and result.calls == 1


def test_missing_milestone_and_missing_repo_are_named(gh):
    gh.get(f"{API}/repos/acme/checkout/milestones", json=[milestone(5, "v2.1", open_issues=1, closed_issues=1)])
    gh.get(f"{API}/repos/acme/gone/milestones", status=404, json=error_body("Not Found", 404))
    results = run({"a": {"repo": "acme/checkout", "milestone": "v3"}, "b": {"repo": "acme/gone", "milestone": "v1"}})
    assert failed(results["a"]) == 'no milestone "v3" in acme/checkout: check `milestone:`; its milestones are "v2.1"'
    assert "repository acme/gone not found (404)" in failed(results["b"])
    assert f"environment variable {TOKEN_ENV}" in failed(results["b"]) and "check `repo:`" in failed(results["b"])


def test_releases_published_in_the_period(gh):
    url = f"{API}/repos/acme/checkout/releases"
    page2 = f"{LINKED}/repos/acme/checkout/releases?per_page=100&page=2"
    gh.get(url, json=[release(9, "v2.2.0", published_at=None, draft=True),
                      release(8, "v2.1.0", published_at="2026-11-21T09:00:00Z"),     # after as-of
                      release(7, "v2.1.0-rc1", published_at="2026-11-02T09:00:00Z", prerelease=True),
                      release(6, "v2.0.1", published_at="2026-10-01T00:00:00Z")],
           headers={"Link": f'<{page2}>; rel="next"'}, match=[matchers.query_param_matcher({"per_page": "100"})])
    gh.get(url, json=[release(5, "v2.0.0", published_at="2026-09-30T23:59:59Z", created_at="2026-10-15T00:00:00Z")],
           match=[matchers.query_param_matcher({"per_page": "100", "page": "2"})])
    results = run({"all": {"repo": "acme/checkout", "aggregate": "releases", "since": "2026-10-01"},
                   "final": {"repo": "acme/checkout", "aggregate": "releases", "since": date(2026, 10, 1),
                             "prereleases": False}})
    assert ok(results["all"]).value == 2 and ok(results["final"]).value == 1
    assert ok(results["all"]).link == "https://github.com/acme/checkout/releases"
    assert ok(results["final"]).note == "1 release published 2026-10-01..2026-11-20, prereleases left out"
    assert total_calls(results) == 2

# ---------------------------------------------------------------------------- errors


def test_bad_token_names_the_variable_and_stops_asking(gh):
    gh.get(SEARCH, status=401, json=error_body("Bad credentials", 401))
    results = run({"a": {"search": SECURITY}, "m": {"repo": "acme/checkout", "aggregate": "releases"}})
    for kr in "am":
        assert failed(results[kr]).startswith(f"GitHub rejected the token from environment variable {TOKEN_ENV} "
                                              "(401 Bad credentials)")
    assert len(gh.calls) == 1


def test_forbidden_without_rate_limit_headers_is_a_missing_scope(gh):
    gh.get(SEARCH, status=403, json=error_body("Resource not accessible by personal access token", 403),
           headers={"x-ratelimit-remaining": "4999", "x-accepted-github-permissions": "issues=read"})
    message = failed(run({"a": {"search": SECURITY}})["a"])
    assert message.startswith("GitHub refused access (403: Resource not accessible by personal access token)")
    assert "scope" in message and f"environment variable {TOKEN_ENV}" in message


def test_422_quotes_githubs_message(gh):
    detail = ("The listed users and repositories cannot be searched either because the resources do not exist "
              "or you do not have permission to view them.")
    gh.get(SEARCH, status=422, json=error_body("Validation Failed", 422, [
        {"message": detail, "resource": "Search", "field": "q", "code": "invalid"}]))
    message = failed(run({"a": {"search": SECURITY}})["a"])
    assert message == f"GitHub rejected the search (422: Validation Failed; {detail}): fix `search:`"


def test_timeouts_are_retried_then_reported(gh, waits):
    for _ in range(4):
        gh.get(SEARCH, body=requests.exceptions.ReadTimeout("read timed out"))
    message = failed(run({"a": {"search": SECURITY}}, timeout=5)["a"])
    assert message == "GitHub at api.github.com did not answer within 5 s (gave up after 4 tries)"
    assert len(waits) == 3 and backed_off(waits) and len(gh.calls) == 4


def test_server_error_is_retried(gh, waits):
    gh.get(SEARCH, status=502, body="<html><body>Bad gateway</body></html>")
    gh.get(SEARCH, json=search_page(6))
    result = ok(run({"a": {"search": SECURITY}})["a"])
    assert result.value == 6 and result.calls == 2 and len(waits) == 1 and backed_off(waits)


def test_pygithubs_own_retries_are_off_so_tries_do_not_multiply(waits):
    """Over real HTTP (no mock between PyGithub and urllib3): 4 tries are 4 requests, not 4 x GithubRetry's."""
    with FakeGitHub(CANARY, failures=[503] * 4) as server:
        message = failed(run({"a": {"search": SECURITY}}, base_url=server.base_url)["a"])
        asked = len(server.requests)
    assert asked == 4 and len(waits) == 3 and backed_off(waits)
    assert message == "GitHub at 127.0.0.1:%s had a server error (503: Service Unavailable) (gave up after 4 tries)" % (
        server.base_url.split(":")[2].split("/")[0])


def test_a_next_page_on_another_host_is_refused(gh):
    gh.get(f"{API}/repos/acme/checkout/releases", json=[release(1, "v1", published_at="2026-10-02T00:00:00Z")],
           headers={"Link": '<https://elsewhere.example.com/repos/acme/checkout/releases?page=2>; rel="next"'})
    message = failed(run({"r": {"repo": "acme/checkout", "aggregate": "releases"}})["r"])
    assert "linked to a page on another host or port" in message and "check base_url" in message


def test_a_body_that_is_not_json_is_reported(gh):
    gh.get(SEARCH, body="<!DOCTYPE html><html><title>Sign in</title></html>", content_type="text/html")
    message = failed(run({"a": {"search": SECURITY}})["a"])
    assert "answered with a page that is not JSON" in message and "check base_url" in message


def test_missing_token_variable_fails_every_key_result_without_a_call(gh, monkeypatch):
    monkeypatch.delenv(TOKEN_ENV)
    results = run({"a": {"search": SECURITY}, "b": {"search": PERF}})
    assert all(failed(r) == f"environment variable {TOKEN_ENV} is not set: export it before running"
               for r in results.values())
    assert len(gh.calls) == 0

# ---------------------------------------------------------------------------- rate limits


def test_primary_rate_limit_waits_until_reset(gh, waits):
    gh.get(SEARCH, status=403, json=error_body("API rate limit exceeded for user ID 1.", 403),
           headers={"x-ratelimit-limit": "30", "x-ratelimit-remaining": "0", "x-ratelimit-used": "30",
                    "x-ratelimit-reset": str(int(NOW) + 42), "x-ratelimit-resource": "search"})
    gh.get(SEARCH, json=search_page(5))
    result = ok(run({"a": {"search": SECURITY}})["a"])
    assert waits == [43.0] and result.value == 5 and result.calls == 2


def test_retry_after_is_honoured(gh, waits):
    gh.get(SEARCH, status=429, json=error_body("You have exceeded a secondary rate limit.", 429),
           headers={"retry-after": "7"})
    gh.get(SEARCH, json=search_page(5))
    assert ok(run({"a": {"search": SECURITY}})["a"]).value == 5
    assert waits == [7.0]


def test_secondary_rate_limit_backs_off_at_least_a_minute(gh, waits):
    secondary = error_body("You have exceeded a secondary rate limit. Please wait a few minutes before you try "
                           "again. If you reach out to GitHub Support for help, please include the request ID "
                           "CAFE:1234.", 403)
    gh.get(SEARCH, status=403, json=secondary)
    gh.get(SEARCH, status=403, json=secondary)
    gh.get(SEARCH, json=search_page(5))
    assert ok(run({"a": {"search": SECURITY}})["a"]).value == 5
    assert len(waits) == 2 and backed_off(waits, first=60.0)              # at least a minute, then doubled


def test_rate_limit_tries_are_bounded(gh, waits):
    for _ in range(4):
        gh.get(SEARCH, status=429, json=error_body("Too many requests", 429))
    message = failed(run({"a": {"search": SECURITY}})["a"])
    assert len(waits) == 3 and backed_off(waits, first=60.0) and len(gh.calls) == 4
    assert "secondary rate limit" in message and "gave up after 4 tries" in message


def test_a_reset_far_away_fails_now_and_says_when(gh, waits):
    reset = int(NOW) + 3600
    gh.get(SEARCH, status=403, json=error_body("API rate limit exceeded for user ID 1.", 403),
           headers={"x-ratelimit-remaining": "0", "x-ratelimit-reset": str(reset)})
    message = failed(run({"a": {"search": SECURITY}})["a"])
    when = datetime.fromtimestamp(reset, timezone.utc).strftime("%H:%M:%S UTC")
    assert message == f"GitHub API rate limit used up (403); it resets at {when}: too long to wait now, run again after that"
    assert waits == [] and len(gh.calls) == 1

# ---------------------------------------------------------------------------- secrets


def test_token_never_appears_in_messages_logs_or_results(gh, waits, caplog):
    caplog.set_level(logging.DEBUG)                                   # PyGithub's request logging included
    gh.add_callback(responses.POST, GRAPHQL, callback=graphql_callback({SECURITY: 1, PERF: 2}))
    gh.get(f"{API}/repos/acme/checkout/milestones", json=[milestone(1, "v1", open_issues=1, closed_issues=1)])
    gh.get(f"{API}/repos/acme/gone/milestones", status=404, json=error_body("Not Found", 404))
    gh.get(f"{API}/repos/acme/slow/releases", status=429, json=error_body("Too many requests", 429),
           headers={"retry-after": "1"})
    gh.get(f"{API}/repos/acme/slow/releases", status=401, json=error_body("Bad credentials", 401))
    results = run({"a": {"search": SECURITY}, "b": {"search": PERF},
                   "m": {"repo": "acme/checkout", "milestone": "v1"},
                   "r": {"repo": "acme/gone", "milestone": "v1"},
                   "s": {"repo": "acme/slow", "aggregate": "releases"}})
    assert all(call.request.headers["Authorization"] == f"token {CANARY}" for call in gh.calls)
    assert any("GitHub POST" in r.getMessage() for r in caplog.records)   # the logs did record the calls
    shown = " ".join(str(r) for r in results.values()) + repr(results) + caplog.text
    shown += " ".join(str(r.args) for r in caplog.records)
    assert CANARY not in shown and CANARY[4:20] not in shown
    assert "401" in failed(results["s"]) and "not found" in failed(results["r"])

# ---------------------------------------------------------------------------- the closing figures


def largest_config() -> dict[str, dict]:
    """40 key results: 30 counts over 24 distinct searches, 3 ratios, 3 statistics, 3 milestones, 1 releases."""
    metrics: dict[str, dict] = {}
    for i in range(30):
        metrics[f"count-{i}"] = {"search": f"repo:acme/r{i % 24} is:issue is:open label:okr"}
    for i in range(3):
        metrics[f"ratio-{i}"] = {"search_done": f"repo:acme/r{i} is:issue is:closed label:okr",
                                 "search_total": f"repo:acme/r{i} is:issue label:okr"}
    for aggregate in ("median", "p90", "avg"):
        metrics[f"merge-{aggregate}"] = {"search": PERF, "aggregate": aggregate, "field": "hours_to_merge"}
    for i, title in enumerate(("v1", "v2", "v3")):
        metrics[f"milestone-{title}"] = {"repo": "acme/checkout", "milestone": title}
    metrics["releases"] = {"repo": "acme/checkout", "aggregate": "releases", "since": "2026-10-01"}
    return metrics


def _serve_largest(gh, graphql: bool) -> None:
    if graphql:
        gh.add_callback(responses.POST, GRAPHQL, callback=graphql_callback(_CountAll()))
    else:
        gh.post(GRAPHQL, status=404, json=error_body("Not Found", 404))

    def search(request):
        query = parse_qs(urlsplit(request.url).query)
        if query["q"][0] == PERF:
            return paged_search(_merged_items(120))(request)
        return 200, {}, json.dumps(search_page(11))
    gh.add_callback(responses.GET, SEARCH, callback=search)
    gh.get(f"{API}/repos/acme/checkout/milestones",
           json=[milestone(n, f"v{n}", open_issues=n, closed_issues=10 - n) for n in (1, 2, 3)])
    gh.get(f"{API}/repos/acme/checkout/releases", json=[release(1, "v1.0", published_at="2026-10-05T00:00:00Z")])


class _CountAll(dict):
    def __missing__(self, query: str) -> int:
        return 11


@pytest.mark.parametrize("graphql, expected_calls", [(True, 6), (False, 1 + 30 + 2 + 1 + 1)])
def test_largest_config_call_count(gh, graphql, expected_calls):
    """Batched: 2 GraphQL requests (30 distinct counts) + 2 search pages + 1 milestone list + 1 release list.
    Without GraphQL (404, then REST per distinct search): 1 + 30 + 2 + 1 + 1."""
    _serve_largest(gh, graphql)
    results = run(largest_config())
    assert all(isinstance(r, Measurement) for r in results.values()), [str(r) for r in results.values()]
    assert total_calls(results) == len(gh.calls) == expected_calls
    distinct_counts = len({q for m in largest_config().values()
                           for q in (m.get("search"), m.get("search_done"), m.get("search_total"))
                           if q and q != PERF})
    assert distinct_counts == 24 + 6                   # 30 count key results over 24 searches, + 6 ratio sides

# ---------------------------------------------------------------------------- evidence


def test_rest_count_keeps_its_items_from_the_same_call(gh):
    items = [issue_item(n) for n in (11, 12)]
    gh.get(SEARCH, json=search_page(2, items), match=[matchers.query_param_matcher({"q": SECURITY, "per_page": "50"})])
    result = ok(measure(source(), [MetricRequest("sec", Metric.model_validate({"search": SECURITY}), PERIOD, AS_OF)])["sec"])
    assert result.value == 2 and result.calls == 1
    assert result.evidence == ({"key": "acme/checkout#11", "title": "Item 11"}, {"key": "acme/checkout#12", "title": "Item 12"})


def test_graphql_counts_carry_their_nodes_in_the_same_request(gh):
    seen: list[dict] = []

    def reply(request):
        body = json.loads(request.body)
        seen.append(body)
        nodes = {"q0": [{"__typename": "PullRequest", "number": 5, "title": "Faster checkout",
                         "repository": {"nameWithOwner": "acme/checkout"}}]}
        return 200, {}, json.dumps(graphql_counts({"q0": 1234, "q1": 17}, nodes))

    gh.add_callback(responses.POST, GRAPHQL, callback=reply)
    requests_ = [MetricRequest("perf", Metric.model_validate({"search": PERF, "evidence": 5}), PERIOD, AS_OF),
                 MetricRequest("sec", Metric.model_validate({"search": SECURITY, "evidence": False}), PERIOD, AS_OF)]
    results = measure(source(), requests_)
    assert ok(results["perf"]).value == 1234 and results["perf"].evidence == (
        {"key": "acme/checkout#5", "title": "Faster checkout"},)
    assert ok(results["sec"]).value == 17 and results["sec"].evidence is None
    (body,) = seen                                                           # one request for both
    assert "q0: search(query: $q0, type: ISSUE, first: 5) { issueCount nodes {" in body["query"]
    assert "q1: search(query: $q1, type: ISSUE) { issueCount }" in body["query"]


def test_evidence_only_goes_with_search_counts():
    with pytest.raises(ValueError, match="goes with a count only"):
        Metric.model_validate({"search": PERF, "aggregate": "median", "field": "hours_to_merge", "evidence": 3})
    with pytest.raises(ValueError, match="goes with a count only"):
        Metric.model_validate({"repo": "acme/checkout", "milestone": "v2", "evidence": 3})
    from connectors.github import reads_past
    assert reads_past(Metric.model_validate({"search": "repo:a/b is:issue closed:<={as_of}"}))
    assert not reads_past(Metric.model_validate({"search": SECURITY}))
    assert reads_past(Metric.model_validate({"repo": "a/b", "aggregate": "releases"}))          # until: the as-of date
    assert not reads_past(Metric.model_validate({"repo": "a/b", "aggregate": "releases", "until": "2026-12-31"}))
    assert not reads_past(Metric.model_validate({"repo": "a/b", "milestone": "v2"}))
