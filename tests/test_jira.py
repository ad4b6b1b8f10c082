"""connectors.jira: request/response handling against `responses`, payloads shaped as Atlassian documents them.

Every mocked endpoint matches its request body exactly (responses.matchers), so a request
the connector should not make finds no mock and fails the key result visibly.
"""
from __future__ import annotations

import base64
import json
import logging
import math
import tracemalloc
from datetime import date, datetime, timezone
from typing import Any

import pytest
import requests
import responses
from pydantic import ValidationError
from responses import matchers

from connectors import _jira_client, jira
from connectors._jira_plan import FieldCatalogue, ScanTotals, condition_of, done_jql, navigator_link, split_order_by
from connectors.jira import Metric, SourceConfig, check, measure
from fake_jira import FIELDS, REMOVED_SEARCH, STORY_POINTS, cloud_page, count, dc_page, errors, issue, server_info, status
from okrsync.errors import RetriableSourceError, SourceError
from okrsync.measure import Measurement, MetricRequest, Period

CANARY = "canary-T0ken-9f2c1e-never-shown"
EMAIL = "okr-bot@example.com"
BASIC = base64.b64encode(f"{EMAIL}:{CANARY}".encode()).decode()
CLOUD = "https://acme.atlassian.net"
DC = "https://jira.acme.example/jira"
API = "/rest/api/2"
PERIOD = Period(date(2026, 10, 1), date(2026, 12, 31), "2026-Q4")
EPIC = "parent = PAY-100"
# The epic's five stories, served in pages of 2, 2 and 1: (Story Points, status category)
EPIC_STORIES = [(3.0, "done"), (5.0, "new"), (None, "done"), (8.0, "indeterminate"), (2.0, "done")]


@pytest.fixture(autouse=True)
def secrets(monkeypatch):
    monkeypatch.setenv("JIRA_API_TOKEN", CANARY)
    monkeypatch.setenv("JIRA_EMAIL", EMAIL)


@pytest.fixture
def waits(clock) -> list[float]:
    """The retry waits asked for, recorded instead of slept (tests/conftest.py)."""
    return clock.waits


@pytest.fixture
def rsps():
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        yield mock


def cloud_source(**extra: Any) -> SourceConfig:
    return SourceConfig.model_validate({"type": "jira", "url": CLOUD, "email": "${JIRA_EMAIL}",
                                        "token": "${JIRA_API_TOKEN}", **extra})


def dc_source(**extra: Any) -> SourceConfig:
    return SourceConfig.model_validate({"type": "jira", "url": DC, "token": "${JIRA_API_TOKEN}", **extra})


def req(kr_id: str, **metric: Any) -> MetricRequest:
    """A request; a count keeps no evidence unless the test asks (the evidence tests below do), so the
    mocks of the counting tests stay the count's own requests."""
    if "jql" in metric and metric.get("aggregate", "count") == "count":
        metric.setdefault("evidence", False)
    return MetricRequest(kr_id=kr_id, metric=Metric(**metric), period=PERIOD, as_of=date(2026, 11, 20))


def value_of(result: Measurement | SourceError) -> float:
    assert isinstance(result, Measurement), f"expected a Measurement, got: {result}"
    return result.value


def error_of(result: Measurement | SourceError) -> str:
    assert isinstance(result, SourceError), f"expected a SourceError, got: {result}"
    return str(result)


def total_calls(results: dict[str, Measurement | SourceError]) -> int:
    return sum(r.calls for r in results.values() if isinstance(r, Measurement))

# ---------------------------------------------------------------------------- mocks


class Site:
    """A mocked Jira site, Cloud or Data Center, registering exact requests and documented answers."""

    def __init__(self, rsps: responses.RequestsMock, cloud: bool):
        self.rsps, self.cloud = rsps, cloud
        self.base = CLOUD if cloud else DC

    def server_info(self) -> Site:
        self.rsps.get(f"{self.base}{API}/serverInfo", json=server_info("Cloud" if self.cloud else "Server", self.base))
        return self

    def fields(self) -> Site:
        self.rsps.get(f"{self.base}{API}/field", json=FIELDS)
        return self

    def count(self, jql: str, n: int, **answer: Any) -> Site:
        if self.cloud:
            self.rsps.post(f"{self.base}{API}/search/approximate-count", match=[matchers.json_params_matcher({"jql": jql})],
                           **(answer or {"json": count(n)}))
        else:
            self.rsps.post(f"{self.base}{API}/search",
                           match=[matchers.json_params_matcher({"jql": jql, "startAt": 0, "maxResults": 0})],
                           **(answer or {"json": dc_page([], 0, 0, n)}))
        return self

    def pages(self, jql: str, fields: list[str], pages: list[list[dict[str, Any]]]) -> Site:
        """Issues in pages; Data Center pages as a server whose maxResults cap is the first page's size."""
        total, start = sum(map(len, pages)), 0
        for number, page in enumerate(pages):
            if self.cloud:
                body: dict[str, Any] = {"jql": jql, "fields": fields, "maxResults": 5000}
                if number:
                    body["nextPageToken"] = f"token-{number}"
                answer = cloud_page(page, f"token-{number + 1}" if number + 1 < len(pages) else None)
                self.rsps.post(f"{self.base}{API}/search/jql", match=[matchers.json_params_matcher(body)], json=answer)
            else:
                body = {"jql": jql, "startAt": start, "maxResults": 1000, "fields": fields}
                answer = dc_page(page, start, len(pages[0]), total)
                self.rsps.post(f"{self.base}{API}/search", match=[matchers.json_params_matcher(body)], json=answer)
            start += len(page)
        return self

    def epic_pages(self, fields: list[str]) -> Site:
        issues = [issue(n, {k: v for k, v in {STORY_POINTS: pts, "status": status(cat, self.base)}.items() if k in fields},
                        base=self.base) for n, (pts, cat) in enumerate(EPIC_STORIES, 101)]
        return self.pages(EPIC, fields, [issues[0:2], issues[2:4], issues[4:5]])

    def source(self) -> SourceConfig:
        return cloud_source() if self.cloud else dc_source()


@pytest.fixture(params=["Cloud", "Data Center"])
def site(request, rsps) -> Site:
    return Site(rsps, cloud=request.param == "Cloud")


@pytest.fixture
def cloud(rsps) -> Site:
    return Site(rsps, cloud=True)


@pytest.fixture
def dc(rsps) -> Site:
    return Site(rsps, cloud=False)

# ---------------------------------------------------------------------------- every aggregate, both deployments


def test_every_aggregate_on_both_deployments(site: Site, rsps):
    site.server_info().fields()
    site.count("project = PAY AND priority = P1 AND statusCategory != Done", 7)
    site.epic_pages([STORY_POINTS, "status"])                         # one pass answers five key results
    site.count("project = PAY AND fixVersion = 2.0", 40)
    site.count("(project = PAY AND fixVersion = 2.0) AND statusCategory = Done", 30)
    site.count("type = Bug AND resolved >= 2026-10-01", 3)
    site.count("type = Bug AND created >= 2026-10-01", 12)

    results = measure(site.source(), [
        req("p1-bugs", jql="project = PAY AND priority = P1 AND statusCategory != Done", aggregate="count"),
        req("points", jql=EPIC, aggregate="sum", field="Story Points"),
        req("avg-size", jql=EPIC, aggregate="avg", field="Story Points"),
        req("smallest", jql=EPIC, aggregate="min", field="Story Points"),
        req("largest", jql=EPIC + " ORDER BY Rank ASC", aggregate="max", field="story points"),
        req("release-done", jql="project = PAY AND fixVersion = 2.0", aggregate="percent_done"),
        req("epic-points-done", jql=EPIC, aggregate="percent_done", weight="Story Points"),
        req("bug-ratio", jql_done="type = Bug AND resolved >= 2026-10-01", jql_total="type = Bug AND created >= 2026-10-01"),
    ])

    got = {k: value_of(v) for k, v in results.items()}
    assert got == pytest.approx({"p1-bugs": 7, "points": 18, "avg-size": 4.5, "smallest": 2, "largest": 8,
                                 "release-done": 75, "epic-points-done": 100 * 5 / 18, "bug-ratio": 25})
    # 1 serverInfo + 1 field list + 1 count + 3 pages + 2 counts + 2 counts, each asked once and counted once
    assert len(rsps.calls) == 10
    assert total_calls(results) == 10
    assert results["p1-bugs"].calls == 3 and results["points"].calls == 3 and results["avg-size"].calls == 0
    paths = [c.request.url.removeprefix(site.base) for c in rsps.calls]
    assert f"{API}/search" not in paths if site.cloud else all("search/jql" not in p for p in paths)
    link = results["largest"].link
    assert link == f"{site.base}/issues/?jql=parent%20%3D%20PAY-100%20ORDER%20BY%20Rank%20ASC"
    assert results["bug-ratio"].link.endswith("jql=type%20%3D%20Bug%20AND%20created%20%3E%3D%202026-10-01")
    assert results["points"].query == f"sum of Story Points over: {EPIC}"


def test_cloud_auth_is_basic_email_and_token_dc_auth_is_bearer_pat(site: Site, rsps):
    site.server_info().count("project = PAY", 4)
    assert value_of(measure(site.source(), [req("kr", jql="project = PAY")])["kr"]) == 4
    sent = rsps.calls[-1].request.headers["Authorization"]
    assert sent == (f"Basic {BASIC}" if site.cloud else f"Bearer {CANARY}")


def test_count_asks_one_count_and_fetches_no_issue(site: Site, rsps):
    site.server_info().count("project = PAY AND priority = P1", 1234)
    results = measure(site.source(), [req("kr", jql="project = PAY AND priority = P1 ORDER BY created DESC")])
    assert value_of(results["kr"]) == 1234
    assert [c.request.method for c in rsps.calls] == ["GET", "POST"]          # serverInfo, one count
    assert results["kr"].calls == 2
    body = json.loads(rsps.calls[1].request.body)
    assert body["jql"] == "project = PAY AND priority = P1"                   # ORDER BY is not asked for counts
    assert "fields" not in body and (site.cloud or body["maxResults"] == 0)


def test_paging_follows_next_page_token_until_is_last_on_cloud(cloud: Site, rsps):
    cloud.server_info().fields().epic_pages([STORY_POINTS])
    results = measure(cloud.source(), [req("kr", jql=EPIC, aggregate="sum", field="Story Points")])
    assert value_of(results["kr"]) == 18
    bodies = [json.loads(c.request.body) for c in rsps.calls if c.request.url.endswith("/search/jql")]
    assert [b.get("nextPageToken") for b in bodies] == [None, "token-1", "token-2"]
    # the most the docs allow is asked; Jira decides how many a page holds and the tokens follow that
    assert all(b["fields"] == [STORY_POINTS] and b["maxResults"] == 5000 for b in bodies)


def test_paging_on_data_center_advances_by_what_the_server_returned(dc: Site, rsps):
    dc.server_info().fields().epic_pages([STORY_POINTS])            # the server caps pages at 2 issues
    results = measure(dc.source(), [req("kr", jql=EPIC, aggregate="max", field="Story Points")])
    assert value_of(results["kr"]) == 8
    starts = [json.loads(c.request.body)["startAt"] for c in rsps.calls if c.request.url.endswith("/search")]
    assert starts == [0, 2, 4]


def test_identical_queries_are_asked_once_and_counts_of_read_queries_are_free(cloud: Site, rsps):
    cloud.server_info().fields()
    cloud.count("project = PAY", 50).count("(project = PAY) AND statusCategory = Done", 20)
    cloud.epic_pages([STORY_POINTS, "status"])
    results = measure(cloud.source(), [
        req("a", jql="project = PAY"),
        req("b", jql="  project = PAY ORDER BY created DESC"),
        req("c", jql="project = PAY", aggregate="percent_done"),
        req("d", jql=EPIC, aggregate="sum", field="Story Points"),
        req("e", jql=EPIC),                                         # read from d's issues
        req("f", jql=EPIC, aggregate="percent_done"),               # ... and so is this
    ])
    assert {k: value_of(v) for k, v in results.items()} == pytest.approx(
        {"a": 50, "b": 50, "c": 40, "d": 18, "e": 5, "f": 60})
    assert len(rsps.calls) == 1 + 1 + 2 + 3
    assert [results[k].calls for k in "abcdef"] == [3, 0, 1, 3, 0, 0]


def test_story_points_resolved_once_by_name_case_or_id(cloud: Site, rsps):
    cloud.server_info().fields().epic_pages([STORY_POINTS])
    results = measure(cloud.source(), [req("a", jql=EPIC, aggregate="sum", field="Story Points"),
                                       req("b", jql=EPIC, aggregate="min", field="STORY POINTS"),
                                       req("c", jql=EPIC, aggregate="max", field=STORY_POINTS),
                                       req("d", jql=EPIC, aggregate="avg", field="cf[10016]")])
    assert [value_of(results[k]) for k in "abcd"] == [18, 2, 8, 4.5]
    assert sum(c.request.url.endswith("/field") for c in rsps.calls) == 1


def test_unknown_field_lists_close_names_and_the_others_still_measure(cloud: Site):
    cloud.server_info().fields().count("project = PAY", 3)
    results = measure(cloud.source(), [req("bad", jql=EPIC, aggregate="sum", field="Story Pionts"),
                                       req("ok", jql="project = PAY")])
    message = error_of(results["bad"])
    assert message.startswith('no Jira field is named "Story Pionts": did you mean "Story Points"')
    assert "Story point estimate" in message
    assert value_of(results["ok"]) == 3


@pytest.mark.parametrize("name, expected", [
    ("Sprint", 'Jira field "Sprint" (customfield_10020) holds array values, not numbers'),
    ("Velocity", 'no Jira field is named "Velocity": the number fields are "Original estimate", "Story Points", '
                 '"Story point estimate"'),
])
def test_field_errors_say_what_to_write(name, expected):
    with pytest.raises(SourceError) as caught:
        FieldCatalogue(FIELDS).resolve(name)
    assert str(caught.value).startswith(expected)


def test_two_number_fields_with_one_name_ask_for_the_id():
    twin = dict(FIELDS[5], id="customfield_10099", key="customfield_10099")
    with pytest.raises(SourceError, match=r'2 Jira fields are named "Story Points" \(customfield_10016, '
                                          r"customfield_10099\): write the id"):
        FieldCatalogue([*FIELDS, twin]).resolve("Story Points")
    assert FieldCatalogue([*FIELDS, twin]).resolve("customfield_10099").id == "customfield_10099"


def test_no_field_list_without_a_field_metric(site: Site, rsps):
    site.server_info().count("project = PAY", 2).count("(project = PAY) AND statusCategory = Done", 1)
    results = measure(site.source(), [req("kr", jql="project = PAY", aggregate="percent_done")])
    assert value_of(results["kr"]) == 50
    assert not any(c.request.url.endswith("/field") for c in rsps.calls)


def test_undefined_values_are_clear_errors(cloud: Site):
    cloud.server_info().fields()
    cloud.count("project = NONE", 0).count("(project = NONE) AND statusCategory = Done", 0)
    no_points = [issue(1, {STORY_POINTS: None, "status": status("done")}), issue(2, {STORY_POINTS: None, "status": status("new")})]
    cloud.pages("project = EMPTY", [STORY_POINTS, "status"], [no_points])
    results = measure(cloud.source(), [req("pct", jql="project = NONE", aggregate="percent_done"),
                                       req("avg", jql="project = EMPTY", aggregate="avg", field="Story Points"),
                                       req("sum", jql="project = EMPTY", aggregate="sum", field="Story Points"),
                                       req("weighted", jql="project = EMPTY", aggregate="percent_done", weight="Story Points")])
    assert "no issues match the JQL, so percent done is undefined" in error_of(results["pct"])
    assert error_of(results["avg"]).startswith('none of the 2 matching issues has a value in "Story Points"')
    assert value_of(results["sum"]) == 0
    assert error_of(results["weighted"]).startswith('the 2 matching issues have no "Story Points" (total 0)')
    assert results["sum"].calls == 5                                    # every call lands on the one measured

# ---------------------------------------------------------------------------- retries


def test_429_waits_as_long_as_retry_after_says(cloud: Site, rsps, waits):
    cloud.server_info()
    url = f"{CLOUD}{API}/search/approximate-count"
    rsps.post(url, status=429, headers={"Retry-After": "7"}, json=errors("Rate limit exceeded."))
    rsps.post(url, json=count(9))
    results = measure(cloud.source(), [req("kr", jql="project = PAY")])
    assert value_of(results["kr"]) == 9
    assert waits == [7.0]
    assert results["kr"].calls == 3                                     # the 429 was a call too


def test_503_waits_until_x_ratelimit_reset(cloud: Site, rsps, waits, clock):
    clock.start = datetime(2026, 11, 20, 12, 0, 30, tzinfo=timezone.utc).timestamp()
    cloud.server_info()
    url = f"{CLOUD}{API}/search/approximate-count"
    rsps.post(url, status=503, headers={"X-RateLimit-Reset": "2026-11-20T12:01Z"}, json=errors("Service unavailable"))
    rsps.post(url, status=429, headers={"Retry-After": "Fri, 20 Nov 2026 12:01:15 GMT"}, json=errors("Rate limited"))
    rsps.post(url, json=count(2))
    assert value_of(measure(cloud.source(), [req("kr", jql="project = PAY")])["kr"]) == 2
    assert waits == [30.0, 15.0]                    # the clock moved on by the first wait: 12:01:00 + 15 s


def test_without_headers_backoff_is_exponential_capped_jittered_and_bounded(cloud: Site, rsps, waits):
    cloud.server_info()
    rsps.post(f"{CLOUD}{API}/search/approximate-count", status=429, json=errors("Rate limit exceeded."))
    results = measure(cloud.source(), [req("a", jql="project = PAY"), req("b", jql="project = OPS")])
    tries = [c for c in rsps.calls if c.request.url.endswith("approximate-count")]
    # the jira package's own retries are off: one query is tried POLICY.tries times while the other,
    # in flight with it (PARALLEL_QUERIES), holds back at the gate, then stops with the same error
    assert _jira_client.POLICY.tries == 4 <= len(tries) <= _jira_client.POLICY.tries + 1
    assert len(waits) == 3
    for n, wait in enumerate(waits):
        assert 2 ** n <= wait <= 2 ** n + _jira_client.POLICY.jitter
    assert error_of(results["a"]) == "Jira kept rate-limiting (HTTP 429): try again later"
    assert isinstance(results["a"], RetriableSourceError)
    assert error_of(results["b"]) == error_of(results["a"])


def test_a_retry_after_beyond_the_cap_is_not_waited_for(cloud: Site, rsps, waits):
    cloud.server_info()
    rsps.post(f"{CLOUD}{API}/search/approximate-count", status=429, headers={"Retry-After": "3600"},
              json=errors("Rate limit exceeded."))
    result = measure(cloud.source(), [req("kr", jql="project = PAY")])["kr"]
    assert waits == [] and len(rsps.calls) == 2
    assert error_of(result) == ("Jira kept rate-limiting (HTTP 429) (it asks to wait 3600 s): "
                                "run again after 12:06:40 UTC")               # the fake clock's 11:06:40 + 1 h
    assert result.retry_after == 3600

# ---------------------------------------------------------------------------- errors


def test_bad_jql_quotes_jira_and_the_other_key_results_still_measure(site: Site):
    site.server_info()
    site.count("project = PAY AND sprnt = 5", 0,
               status=400, json=errors("Field 'sprnt' does not exist or you do not have permission to view it."))
    site.count("project = PAY", 11)
    results = measure(site.source(), [req("bad", jql="project = PAY AND sprnt = 5"), req("good", jql="project = PAY")])
    assert error_of(results["bad"]) == (
        "Jira rejected the JQL 'project = PAY AND sprnt = 5': Jira says \"Field 'sprnt' does not exist or you do not "
        "have permission to view it.\": fix the query (try it in Jira's issue search first)")
    assert value_of(results["good"]) == 11
    assert results["good"].calls == 3                                   # serverInfo + the failed count + its own


def test_401_names_the_variables_and_stops_asking(cloud: Site, rsps):
    cloud.server_info()
    rsps.post(f"{CLOUD}{API}/search/approximate-count", status=401,
              json=errors("You are not authenticated. Authentication required to perform this operation."))
    results = measure(cloud.source(), [req(f"kr{i}", jql=f"project = P{i}") for i in range(12)])
    message = error_of(results["kr0"])
    assert message.startswith("Jira refused the credentials (HTTP 401): check the API token in environment variable "
                              "JIRA_API_TOKEN and the email in environment variable JIRA_EMAIL")
    assert all(error_of(r) == message for r in results.values())
    # serverInfo, then only the queries already in flight when the first 401 came back (PARALLEL_QUERIES at
    # most, racing it); the others hold back at the gate and take its error
    assert 2 <= len(rsps.calls) <= 1 + jira.PARALLEL_QUERIES


def test_401_for_a_data_center_token(dc: Site, rsps):
    dc.server_info()
    rsps.post(f"{DC}{API}/search", status=401, body="")
    message = error_of(measure(dc.source(), [req("a", jql="project = PAY")])["a"])
    assert message == ("Jira refused the credentials (HTTP 401): check the personal access token in environment "
                       "variable JIRA_API_TOKEN (Jira Cloud also needs `email:`)")


def test_403_captcha(dc: Site, rsps):
    dc.server_info()
    rsps.post(f"{DC}{API}/search", status=403, headers={"X-Authentication-Denied-Reason": "CAPTCHA_CHALLENGE; login-url=x"})
    message = error_of(measure(dc.source(), [req("a", jql="project = PAY")])["a"])
    assert message.startswith(f"Jira denied access to {API}/search (HTTP 403)")
    assert "Jira asks for a CAPTCHA (CAPTCHA_CHALLENGE): log in once in a browser" in message


def test_404_means_a_wrong_url_and_nothing_more_is_asked(rsps):
    rsps.get(f"{DC}{API}/serverInfo", status=404, body="<html><body>Not Found</body></html>", content_type="text/html")
    results = measure(dc_source(), [req("a", jql="project = PAY"), req("b", jql="project = OPS")])
    assert error_of(results["a"]) == (f"Jira answered 404 Not Found for {API}/serverInfo: check `url:` ({DC}); a Data "
                                      "Center site may need its context path, e.g. https://jira.example.com/jira")
    assert error_of(results["b"]) == error_of(results["a"]) and len(rsps.calls) == 1


def test_410_when_the_site_removed_the_old_search(rsps):
    rsps.get(f"{CLOUD}{API}/serverInfo", json=server_info("Server"))        # a proxy hiding deploymentType
    rsps.post(f"{CLOUD}{API}/search", status=410, json=REMOVED_SEARCH)
    message = error_of(measure(cloud_source(), [req("a", jql="project = PAY")])["a"])
    assert message.startswith(f'Jira answered 410 Gone for {API}/search: Jira says "The requested API has been removed.')
    assert message.endswith("this Jira has removed that API (serverInfo said Data Center)")


def test_timeout(cloud: Site, rsps, waits):
    """A read timeout is retried (a slow moment passes), then reported with what to change."""
    cloud.server_info()
    rsps.post(f"{CLOUD}{API}/search/approximate-count", body=requests.exceptions.ReadTimeout("read timed out"))
    result = measure(cloud_source(timeout=12), [req("a", jql="project = PAY")])["a"]
    assert len(waits) == 3 and len(rsps.calls) == 1 + 4
    assert isinstance(result, RetriableSourceError)
    assert str(result) == (f"Jira did not answer {API}/search/approximate-count within 12 s: try again later, "
                           "or raise `timeout:` on the source")


def test_html_login_page_instead_of_json(rsps):
    rsps.get(f"{DC}{API}/serverInfo", body="<!DOCTYPE html><html><title>Log in - Jira</title></html>",
             content_type="text/html;charset=UTF-8")
    message = error_of(measure(dc_source(), [req("a", jql="project = PAY")])["a"])
    assert message == (f"Jira answered {API}/serverInfo with an HTML page instead of JSON (a login or SSO page, or a "
                       f"proxy?): check that `url:` ({DC}) is the Jira site itself and that environment variable "
                       "JIRA_API_TOKEN holds a valid token")


def test_unreachable_host(rsps):
    rsps.get(f"{CLOUD}{API}/serverInfo", body=requests.exceptions.ConnectionError("[Errno 111] Connection refused"))
    result = measure(cloud_source(), [req("a", jql="project = PAY")])["a"]
    assert str(result) == f"cannot reach Jira at {CLOUD} (connection refused): check `url:` and the network"


def test_missing_token_variable(monkeypatch, rsps):
    monkeypatch.delenv("JIRA_API_TOKEN")
    result = measure(cloud_source(), [req("a", jql="project = PAY")])["a"]
    assert str(result) == "environment variable JIRA_API_TOKEN is not set: export it before running"
    assert len(rsps.calls) == 0


def test_token_value_never_appears_in_messages_logs_or_output(rsps, waits, caplog, capsys):
    """Every failure path at once, with DEBUG logging everywhere; the canary must not show up."""
    caplog.set_level(logging.DEBUG)
    rsps.get(f"{CLOUD}{API}/serverInfo", json=server_info("Cloud"))
    rsps.get(f"{CLOUD}{API}/field", json=FIELDS)
    count_url = f"{CLOUD}{API}/search/approximate-count"
    rsps.post(count_url, match=[matchers.json_params_matcher({"jql": "bad jql"})], status=400,
              json=errors("Error in the JQL Query: Expecting operator but got 'jql'."))
    rsps.post(count_url, match=[matchers.json_params_matcher({"jql": "project = SLOW"})],
              body=requests.exceptions.ReadTimeout("timed out"))
    rsps.post(count_url, match=[matchers.json_params_matcher({"jql": "project = LIMIT"})], status=429,
              headers={"Retry-After": "1"}, json=errors("Rate limit exceeded."))
    results = measure(cloud_source(), [req("bad", jql="bad jql"), req("slow", jql="project = SLOW"),
                                       req("field", jql="project = PAY", aggregate="sum", field="Nope"),
                                       req("limit", jql="project = LIMIT"), req("after", jql="project = PAY")])
    rsps.reset()
    rsps.get(f"{CLOUD}{API}/serverInfo", json=server_info("Cloud"))
    rsps.post(count_url, status=401, json=errors("Unauthorized"))
    results.update({f"401-{k}": v for k, v in measure(cloud_source(), [req("a", jql="project = PAY")]).items()})

    assert all(isinstance(r, SourceError) for r in results.values()), results
    assert f"Basic {BASIC}" in {c.request.headers["Authorization"] for c in rsps.calls}   # the canary was in play
    seen = "\n".join([*(str(r) for r in results.values()), *(repr(r.args) for r in results.values()),
                      *(f"{r.getMessage()} {r.args!r}" for r in caplog.records), *capsys.readouterr()])
    for secret in (CANARY, BASIC):
        assert secret not in seen

# ---------------------------------------------------------------------------- config and metric models


def test_source_config_normalises_url_and_rejects_paths_and_plain_tokens():
    assert cloud_source(url="https://acme.atlassian.net/").url == CLOUD
    assert dc_source(url="https://jira.acme.example/jira/").url == DC
    assert cloud_source(email=EMAIL).reveal_email() == EMAIL
    cases = {
        "https://acme.atlassian.net/rest/api/2": "not a page or API path: drop '/rest/api/2' (e.g. https://acme.atlassian.net)",
        "https://acme.atlassian.net/browse/PAY-1": "drop '/browse/PAY-1'",
        "https://me:pw@acme.atlassian.net": "url must not hold credentials",
        "acme.atlassian.net": "is not a web address",
    }
    for url, expected in cases.items():
        with pytest.raises(ValidationError, match=expected.replace("(", r"\(").replace(")", r"\)")):
            cloud_source(url=url)
    with pytest.raises(ValidationError, match="plain-text secrets are not allowed"):
        cloud_source(token="abc123")


def test_check_wants_an_email_for_jira_cloud():
    metrics = [Metric(jql="project = PAY")]
    assert check(dc_source(), metrics) == []
    assert check(cloud_source(), metrics) == []
    problem = check(SourceConfig.model_validate({"type": "jira", "url": CLOUD, "token": "${T}"}), metrics)
    assert problem == ["acme.atlassian.net is Jira Cloud, which signs in with an email and an API token: add `email:` "
                       "(the token's account) next to `token:`"]


@pytest.mark.parametrize("metric, expected", [
    ({"jql": "project = PAY", "aggregate": "sum"}, "`aggregate: sum` needs `field:`"),
    ({"jql": "project = PAY", "field": "Story Points"}, "add `aggregate: sum|avg|min|max`"),
    ({"jql": "project = PAY", "aggregate": "percent_done", "field": "Story Points"}, "write `weight: Story Points`"),
    ({"jql": "project = PAY", "weight": "Story Points"}, "`weight:` goes with `aggregate: percent_done`"),
    ({"jql_done": "project = PAY"}, "`jql_done:` needs `jql_total:` too"),
    ({"jql_done": "a = 1", "jql_total": "a = 2", "aggregate": "count"}, "`aggregate:` do not go with `jql_done:`"),
    ({"aggregate": "count"}, "give `jql:`"),
    ({"jql": "ORDER BY created"}, "`jql` has no condition before ORDER BY"),
    ({"jql": "  "}, "is empty"),
    ({"jql": "project = PAY", "aggregate": "median"}, "Input should be 'count', 'sum'"),
])
def test_metric_mistakes_say_how_to_fix_them(metric, expected):
    with pytest.raises(ValidationError, match=expected.replace("|", r"\|")):
        Metric.model_validate(metric)


def test_config_with_a_jira_source_validates_and_reports_mistakes_by_line(tmp_path, monkeypatch):
    from okrsync.config import load_plan
    from okrsync.errors import ConfigError

    config = tmp_path / "okrs.yaml"
    config.write_text(f"""period: 2026-Q4
sources:
  jira: {{type: jira, url: "{CLOUD}", email: "${{JIRA_EMAIL}}", token: "${{JIRA_API_TOKEN}}"}}
objectives:
  - id: pay
    title: Payments
    key_results:
      - id: points
        title: Deliver 120 points
        source: jira
        metric: {{jql: 'project = PAY AND resolved >= "{{period.start}}"', aggregate: sum}}
        target: 120
""")
    with pytest.raises(ConfigError) as caught:
        load_plan([config])
    message = str(caught.value)
    assert message.startswith(f"{config}:11: points: ") and len(caught.value.issues) == 1
    assert "`aggregate: sum` needs `field:`, the number field to reduce, e.g. `field: Story Points`" in message
    config.write_text(config.read_text().replace("aggregate: sum}", "aggregate: sum, field: Story Points}"))
    plan = load_plan([config])
    assert plan.sources["jira"].config.url == CLOUD


def test_json_schema_lists_the_jira_source_and_metric():
    from okrsync.config import json_schema

    text = json.dumps(json_schema())
    assert '"jira"' in text and "jql_total" in text and "percent_done" in text

# ---------------------------------------------------------------------------- JQL and totals


def test_order_by_is_split_outside_quotes_and_parentheses():
    assert split_order_by('summary ~ "order by" AND project = PAY order  by rank') == (
        'summary ~ "order by" AND project = PAY', "order  by rank")
    assert split_order_by("(a = 1 ORDER BY x) AND b = 2") == ("(a = 1 ORDER BY x) AND b = 2", "")
    assert split_order_by("reorder = 1") == ("reorder = 1", "")
    assert condition_of("project = PAY ORDER BY created DESC") == "project = PAY"
    assert done_jql("a = 1 OR b = 2") == "(a = 1 OR b = 2) AND statusCategory = Done"
    assert navigator_link("https://x.example/jira/", 'text ~ "a&b"') == "https://x.example/jira/issues/?jql=text%20~%20%22a%26b%22"


def test_scan_totals_keep_running_figures_only():
    totals = ScanTotals((STORY_POINTS,))
    totals.feed([issue(1, {STORY_POINTS: 2, "status": status("done")}), issue(2, {STORY_POINTS: True}),
                 issue(3, {STORY_POINTS: "5"}), issue(4, {"status": status("indeterminate")}), issue(5, {STORY_POINTS: 4.5})])
    points = totals.fields[STORY_POINTS]
    assert (totals.issues, totals.done, points.n, points.total, points.done_total, points.low, points.high) == (
        5, 1, 2, 6.5, 2, 2, 4.5)
    assert set(vars(totals)) == {"field_ids", "issues", "done", "fields", "sample", "tickets"}
    assert totals.tickets == []                                                   # no issue is kept


def test_scan_totals_keep_at_most_the_sample_as_evidence():
    totals = ScanTotals((STORY_POINTS,), sample=2)
    totals.feed([issue(n, {STORY_POINTS: 1, "summary": f"Story {n}"}) for n in range(1, 6)])
    assert totals.issues == 5 and totals.tickets == [{"key": "PAY-1", "title": "Story 1"},
                                                     {"key": "PAY-2", "title": "Story 2"}]


def test_invalid_metric_in_a_request_is_that_key_results_error(cloud: Site):
    cloud.server_info().count("project = PAY", 1)
    results = measure(cloud.source(), [MetricRequest("bad", {"jql": "x = 1", "aggregate": "sum"}, PERIOD, date(2026, 11, 1)),
                                       req("good", jql="project = PAY")])
    assert error_of(results["bad"]).startswith("invalid metric: `aggregate: sum` needs `field:`")
    assert value_of(results["good"]) == 1


def test_module_registers_as_the_jira_source_type():
    from connectors import connector_for, source_types

    assert "jira" in source_types() and connector_for("jira") is jira

# ---------------------------------------------------------------------------- Data Center search by GET


def test_data_center_searches_with_get_when_post_answers_405():
    """A proxy that allows only GET: one POST finds out, every search after it (counts and pages) is a GET."""
    from fake_jira import FakeIssue, FakeJira

    issues = [FakeIssue(i, points=float(i), category="done" if i % 2 else "new") for i in range(1, 2_501)]
    with FakeJira(issues, deployment="Server", token=CANARY, refuse_post_search=True) as fake:
        results = measure(dc_source(url=fake.url), [
            req("open", jql="project = PAY AND statusCategory != Done"),
            req("done", jql="project = PAY AND statusCategory = Done"),
            req("points", jql="project = PAY", aggregate="sum", field="Story Points")])
        searches = [c for c in fake.calls if c.path == "/rest/api/2/search"]
    assert value_of(results["open"]) == 1_250 and value_of(results["done"]) == 1_250
    assert value_of(results["points"]) == sum(range(1, 2_501))
    assert [c.method for c in searches].count("POST") == 1                     # one extra call, once per run
    pages = [c.body for c in searches if c.method == "GET" and c.body["maxResults"] != "0"]
    assert [p["startAt"] for p in pages] == ["0", "1000", "2000"]
    assert all(p["fields"] == [STORY_POINTS] for p in pages)                   # comma-separated, read back as a list
    assert total_calls(results) == len(fake.calls)


def test_data_center_405_to_get_as_well_is_one_clear_error():
    from fake_jira import FakeJira

    refused = (405, {"Allow": "HEAD"}, errors("Method Not Allowed"))
    with FakeJira([], deployment="Server", token=CANARY, queued=[refused, refused]) as fake:
        result = measure(dc_source(url=fake.url), [req("a", jql="project = PAY")])["a"]
        asked = [c.method for c in fake.calls if c.path == "/rest/api/2/search"]
    assert asked == ["POST", "GET"]
    assert error_of(result) == (f"Jira answered 405 Method Not Allowed for {API}/search: a proxy in front of Jira may "
                                "refuse the request; check `url:`")

# ---------------------------------------------------------------------------- streaming


def test_reading_issues_streams_in_constant_memory():
    """Summing 5,000 issues (50 pages from a local Jira) peaks no higher than summing 500:
    pages are reduced as they come, never kept (all 5,000 parsed issues would take megabytes)."""
    from fake_jira import FakeIssue, FakeJira

    def peak(n: int) -> int:
        issues = [FakeIssue(i, points=1.0, category="done") for i in range(1, n + 1)]
        with FakeJira(issues, email=EMAIL, token=CANARY) as fake:
            source = cloud_source(url=fake.url)
            tracemalloc.start()
            try:
                result = measure(source, [req("kr", jql="project = PAY", aggregate="sum", field="Story Points")])["kr"]
                top = tracemalloc.get_traced_memory()[1]
            finally:
                tracemalloc.stop()
            assert value_of(result) == n and result.calls == 2 + math.ceil(n / 100)
        return top

    small, large = peak(500), peak(5_000)
    assert large - small < 1024 * 1024, (small, large)

# ---------------------------------------------------------------------------- evidence


def p1_issues(base: str, numbers: range) -> list[dict[str, Any]]:
    return [issue(n, {"summary": f"P1 bug {n}"}, base=base) for n in numbers]


def test_data_center_evidence_comes_with_the_count_in_one_call(dc: Site, rsps):
    jql = "project = PAY AND priority = P1"
    dc.server_info()
    rsps.post(f"{DC}{API}/search",
              match=[matchers.json_params_matcher({"jql": jql, "startAt": 0, "maxResults": 3, "fields": ["summary"]})],
              json=dc_page(p1_issues(DC, range(1, 4)), 0, 3, 1234))
    result = measure(dc.source(), [req("kr", jql=jql, evidence=3)])["kr"]
    assert value_of(result) == 1234                                        # `total`, not the page's length
    assert result.evidence == ({"key": "PAY-1", "title": "P1 bug 1"}, {"key": "PAY-2", "title": "P1 bug 2"},
                               {"key": "PAY-3", "title": "P1 bug 3"})
    assert len(rsps.calls) == 2 and result.calls == 2                      # serverInfo + the count: no extra call


def test_cloud_evidence_that_holds_every_issue_is_the_count_too(cloud: Site, rsps):
    jql = "project = PAY AND priority = P1"
    cloud.server_info().count(jql, 999)                                    # would be wrong if it were asked
    rsps.post(f"{CLOUD}{API}/search/jql",
              match=[matchers.json_params_matcher({"jql": jql, "fields": ["summary"], "maxResults": 50})],
              json=cloud_page(p1_issues(CLOUD, range(7, 9))))
    results = measure(cloud.source(), [req("a", jql=jql, evidence=None), req("b", jql=jql + " ORDER BY key", evidence=20)])
    assert value_of(results["a"]) == value_of(results["b"]) == 2           # the last page's issues, all of them
    assert [t["key"] for t in results["a"].evidence] == [t["key"] for t in results["b"].evidence] == ["PAY-7", "PAY-8"]
    assert len(rsps.calls) == 2 and results["a"].calls == 2                # serverInfo, one page: no count call
    assert not any("approximate-count" in c.request.url for c in rsps.calls)


def test_cloud_evidence_of_more_issues_than_it_shows_costs_one_call_more_than_the_count(cloud: Site, rsps):
    jql = "project = PAY"
    cloud.server_info().count(jql, 1234)
    rsps.post(f"{CLOUD}{API}/search/jql",
              match=[matchers.json_params_matcher({"jql": jql, "fields": ["summary"], "maxResults": 3})],
              json=cloud_page(p1_issues(CLOUD, range(1, 4)), next_token="more"))
    result = measure(cloud.source(), [req("kr", jql=jql, evidence=3)])["kr"]
    assert value_of(result) == 1234 and [t["key"] for t in result.evidence] == ["PAY-1", "PAY-2", "PAY-3"]
    assert len(rsps.calls) == 3 and result.calls == 3                      # serverInfo, the page, the count


def test_evidence_off_asks_nothing_more_and_a_failed_evidence_call_keeps_the_count(cloud: Site, rsps):
    cloud.server_info().count("project = PAY", 5).count("project = OPS", 6)
    rsps.post(f"{CLOUD}{API}/search/jql", status=500, json=errors("Internal server error"))
    results = measure(cloud.source(), [req("off", jql="project = PAY", evidence=False),
                                       req("broken", jql="project = OPS", evidence=10)])
    assert results["off"].evidence is None and value_of(results["off"]) == 5
    assert value_of(results["broken"]) == 6 and results["broken"].evidence is None
    assert results["broken"].note.startswith("the tickets behind the count were not read: Jira failed")


def test_evidence_only_goes_with_counts():
    with pytest.raises(ValidationError, match="goes with a count only"):
        Metric(jql=EPIC, aggregate="sum", field="Story Points", evidence=10)
    with pytest.raises(ValidationError, match="from 1 to 100"):
        Metric(jql=EPIC, evidence=500)
    assert Metric(jql=EPIC).tickets == 50 and Metric(jql=EPIC, evidence=False).tickets == 0
    assert Metric(jql=EPIC, aggregate="percent_done").tickets == 0
    assert jira.reads_past(Metric(jql='resolved <= "{as_of}"')) and not jira.reads_past(Metric(jql=EPIC))
    assert jira.reads_past(Metric(jql_done='status WAS Done ON "{as_of}"', jql_total=EPIC))
