"""The test doubles refuse what the vendors refuse, so a connector that relies on leniency fails here.

Each test names the vendor behaviour it pins (Jira Cloud's OpenAPI in /work/shared/reference,
GitHub's and Google's REST docs); the connectors' own tests then run against these fakes.
"""
from __future__ import annotations

import base64
import json
from datetime import datetime, timedelta

import pytest
import requests

import fake_github as gh
import fake_jira as fj
from fake_gsheets import CANARY_TOKEN, FakeGoogle, FakeSpreadsheet, FakeTab
from fake_github import FakeGitHub, milestone
from fake_jira import FakeIssue, FakeJira, JqlError, jql_date
from loadserver import LoadServer, generate
from loadserver.queries import jql_predicate

TOKEN = "token"
TIMEOUT = 10
DATE_ERROR = "Valid formats include: 'yyyy/MM/dd HH:mm', 'yyyy-MM-dd HH:mm', 'yyyy/MM/dd', 'yyyy-MM-dd'"

# ---------------------------------------------------------------------------- JQL dates


@pytest.mark.parametrize("raw,expected", [
    ("2026/10/01 13:45", datetime(2026, 10, 1, 13, 45)),
    ("2026-10-01 13:45", datetime(2026, 10, 1, 13, 45)),
    ("2026/10/01", datetime(2026, 10, 1)),
    ("2026-10-01", datetime(2026, 10, 1)),
])
def test_jql_absolute_dates_in_jiras_four_formats(raw, expected):
    assert jql_date(raw, "created") == expected


@pytest.mark.parametrize("raw,delta", [("-1w", -timedelta(weeks=1)), ("-4d", -timedelta(days=4)),
                                       ("4w 2d", timedelta(weeks=4, days=2)), ("-5h", -timedelta(hours=5))])
def test_jql_relative_dates_count_from_now(raw, delta):
    now = datetime(2026, 11, 20, 12, 0)
    assert jql_date(raw, "created", now) == now + delta


@pytest.mark.parametrize("raw", ["{period.start}", "2026-13-01", "2026-10-01T00:00:00", "01/10/2026", "yesterday",
                                 "-1x", ""])
def test_jql_dates_jira_cannot_parse_are_its_400(raw):
    with pytest.raises(JqlError, match=f"Date value '{raw}' for field 'resolved' is invalid"):
        jql_date(raw, "resolved")


@pytest.mark.parametrize("evaluate", [
    lambda jql: fj.matcher(jql)(FakeIssue(1, created="2026-10-05")),
    lambda jql: jql_predicate(jql)(generate(5, github_items=0).jira[0]),
], ids=["fake_jira", "loadserver"])
def test_both_evaluators_refuse_an_unrendered_date_and_compare_real_ones_as_dates(evaluate):
    with pytest.raises(JqlError, match=DATE_ERROR):
        evaluate('created >= "{period.start}"')
    # as strings, "2026/01/01" > "2026-12-31"; as dates it is earlier, so every 2026 issue matches
    assert evaluate('created >= "2026/01/01"') is True
    assert evaluate('created < "2026/01/01"') is False

# ---------------------------------------------------------------------------- Jira Cloud search


def _cloud_auth() -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"okr-bot@example.com:{TOKEN}".encode()).decode()}


@pytest.mark.parametrize("path", ["/rest/api/2/search/jql", "/rest/api/2/search/approximate-count"])
@pytest.mark.parametrize("jql", ["", "ORDER BY created DESC", "  order by key"])
def test_fake_jira_cloud_refuses_unbounded_jql(path, jql):
    with FakeJira([FakeIssue(1)]) as site:
        answer = requests.post(site.url + path, json={"jql": jql}, headers=_cloud_auth(), timeout=TIMEOUT)
    assert answer.status_code == 400
    assert answer.json() == fj.errors(fj.UNBOUNDED)


def test_fake_jira_data_center_search_allows_an_unbounded_query():
    with FakeJira([FakeIssue(1), FakeIssue(2)], deployment="Server") as site:
        answer = requests.post(site.url + "/rest/api/2/search", json={"jql": "ORDER BY created"},
                               headers={"Authorization": f"Bearer {TOKEN}"}, timeout=TIMEOUT)
    assert answer.status_code == 200 and answer.json()["total"] == 2


@pytest.fixture(scope="module")
def load():
    with LoadServer(generate(200, github_items=200), token=TOKEN, jira_rate=None, github_search_per_minute=None,
                    github_core_per_hour=None, graphql_points_per_hour=None) as server:
        yield server


def test_load_server_cloud_search_without_fields_returns_only_ids(load):
    answer = requests.post(load.jira_cloud_url + "/rest/api/3/search/jql", json={"jql": "project = PAY"},
                           headers=_cloud_auth(), timeout=TIMEOUT)
    issues = answer.json()["issues"]
    assert answer.status_code == 200 and issues
    assert all(set(i) == {"id"} for i in issues)
    asked = requests.post(load.jira_cloud_url + "/rest/api/3/search/jql",
                          json={"jql": "project = PAY", "fields": ["status"]}, headers=_cloud_auth(), timeout=TIMEOUT)
    assert all(set(i["fields"]) == {"status"} for i in asked.json()["issues"])


@pytest.mark.parametrize("path,jql,message", [
    ("/rest/api/3/search/jql", "ORDER BY created DESC", fj.UNBOUNDED),
    ("/rest/api/2/search/approximate-count", "", fj.UNBOUNDED),
    ("/rest/api/2/search/approximate-count", 'project = PAY AND resolved >= "{period.start}"', DATE_ERROR),
])
def test_load_server_cloud_refuses_what_cloud_refuses(load, path, jql, message):
    answer = requests.post(load.jira_cloud_url + path, json={"jql": jql}, headers=_cloud_auth(), timeout=TIMEOUT)
    assert answer.status_code == 400
    assert message in answer.json()["errorMessages"][0]

# ---------------------------------------------------------------------------- GitHub


def _gh(url: str, **params) -> requests.Response:
    return requests.get(url, params=params, headers={"Authorization": f"token {TOKEN}"}, timeout=TIMEOUT)


def _graphql(url: str, query: str) -> requests.Response:
    return requests.post(url, json={"query": query, "variables": {"q0": "repo:acme/app"}},
                         headers={"Authorization": f"token {TOKEN}"}, timeout=TIMEOUT)


def test_fake_github_lists_open_milestones_unless_asked_for_all():
    listed = [milestone(1, "v1.0", open_issues=0, closed_issues=3, state="closed"),
              milestone(2, "v2.0", open_issues=1, closed_issues=1)]
    with FakeGitHub(TOKEN, milestones={"acme/app": listed}) as site:
        url = f"{site.base_url}/repos/acme/app/milestones"
        assert [m["title"] for m in _gh(url).json()] == ["v2.0"]
        assert [m["title"] for m in _gh(url, state="closed").json()] == ["v1.0"]
        assert [m["title"] for m in _gh(url, state="all").json()] == ["v1.0", "v2.0"]
        assert _gh(url, state="done").status_code == 422


def test_load_server_lists_open_milestones_unless_asked_for_all(load):
    url = f"{load.github_api}/repos/acme/app/milestones"
    assert {m["state"] for m in _gh(url).json()} == {"open"}
    assert {m["state"] for m in _gh(url, state="all").json()} == {"open", "closed"}


GOOD = "query($q0: String!) { q0: search(query: $q0, type: ISSUE) { issueCount } }"


@pytest.mark.parametrize("broken,at", [
    ("query($q0: String!) { q0: search(query: $q0, type: ISSUE) { issueCount } } }", '"}" (RCURLY) at [1, 76]'),
    ("query($q0: String!) { q0: search(query: $q0, type: ISSUE { issueCount } }", '"}" (RCURLY) at [1, 73]'),
    ("query($q0: String!) { q0: search(query: $q0, type: ISSUE) { issueCount }", "end of file"),
    ("q0: search(query: $q0, type: ISSUE) { issueCount }", '"q0:" (IDENTIFIER)'),
])
def test_unparsable_graphql_is_a_parse_error_without_data(load, broken, at):
    with FakeGitHub(TOKEN, totals={"repo:acme/app": 3}) as site:
        for url in (f"{site.root}/api/graphql", f"{load.root}/api/graphql"):
            answer = _graphql(url, broken)
            assert answer.status_code == 200
            body = answer.json()
            assert "data" not in body and body["errors"][0]["message"].startswith("Parse error on ")
            assert at in body["errors"][0]["message"]
        assert _graphql(f"{site.root}/api/graphql", GOOD).json() == gh.graphql_counts({"q0": 3})
    assert _graphql(f"{load.root}/api/graphql", GOOD).json()["data"]["q0"]["issueCount"] > 0

# ---------------------------------------------------------------------------- Google


@pytest.fixture
def google() -> FakeGoogle:
    sheet = FakeSpreadsheet("sheet1", "OKR metrics", [FakeTab(0, "Survey", [["NPS", "38"]])])
    return FakeGoogle({"sheet1": sheet}, shared={"sheet1"}, public={"sheet1"}, base="https://sheets.googleapis.com")


AUTH = {"authorization": f"Bearer {CANARY_TOKEN}"}
API = "https://sheets.googleapis.com/v4/spreadsheets/sheet1"


def test_google_answers_the_documented_gets(google):
    status, _, body = google.handle("GET", f"{API}/values:batchGet?ranges=Survey!B1", AUTH, b"")
    assert status == 200 and json.loads(body)["valueRanges"][0]["values"] == [["38"]]
    status, _, body = google.handle("GET", API, AUTH, b"")
    assert status == 200 and json.loads(body)["properties"]["title"] == "OKR metrics"


@pytest.mark.parametrize("method,url", [
    ("POST", f"{API}/values:batchGet?ranges=Survey!B1"),
    ("POST", API),
    ("DELETE", API),
    ("GET", "https://sheets.googleapis.com/token"),
    ("POST", "https://sheets.googleapis.com/spreadsheets/d/sheet1/export?format=csv"),
])
def test_google_refuses_a_method_the_endpoint_does_not_serve(google, method, url):
    status, _, body = google.handle(method, url, AUTH, b"")
    assert status == 405 and json.loads(body)["error"]["code"] == 405


@pytest.mark.parametrize("action", ["values:batchGot", "values:get", "sheets", "values/Survey!B1/extra"])
def test_google_unknown_sheets_action_is_not_found(google, action):
    status, _, body = google.handle("GET", f"{API}/{action}", AUTH, b"")
    assert status == 404 and json.loads(body)["error"]["status"] == "NOT_FOUND"
