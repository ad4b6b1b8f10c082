"""Fault suite, part 1: the network. A 50-key-result config (Jira Cloud, Jira Data Center, GitHub)
synced through the real flow against the local load server (tests/loadserver) while it injects
one kind of fault; every key result must end correctly synced or with a clear one-line error,
nothing written twice, and a clean re-run must write exactly what the faulty run could not.

Retry waits never sleep: the connectors' `sleep` records the wait and moves the server's clock
(`server.waits`), so rate limits that reset with time behave as they would.
"""
from __future__ import annotations

import logging
from collections import Counter

import pytest

from faultkit import (CANARY, DATA, EXPECTED, IDS, WORK, artifacts_text, backoff_ok, check_run, check_secrets,
                      check_store, local_site, recover, store_url, sync, write_config)
from loadserver import Fault
from loadserver.server import SECONDARY_BODY, condition

JIRA_IDS = {kr.id for kr in WORK.key_results if kr.source == "jira"}
DC_IDS = {kr.id for kr in WORK.key_results if kr.source == "jira_dc"}
GITHUB_IDS = {kr.id for kr in WORK.key_results if kr.source == "github"}


@pytest.fixture(autouse=True)
def _debug_logs(caplog):
    for name in ("connectors", "flows", "urllib3", "jira", "github", "okrsync"):
        caplog.set_level(logging.DEBUG, logger=name)


def test_the_workload_is_what_the_suite_claims():
    """50 key results on three sources, every one measurable, queries repeated across teams."""
    assert len(IDS) == 50 and JIRA_IDS and DC_IDS and GITHUB_IDS
    assert all(v is not None for v in EXPECTED.values())
    assert WORK.distinct_queries() < 50
    assert len(DATA.jira) == 3_000


def test_no_fault_every_key_result_exact_and_cheap(prefect_harness, tmp_path, monkeypatch, caplog, capfd):
    with local_site(monkeypatch) as server:
        config, url = write_config(tmp_path, server), store_url(tmp_path)
        result = sync(config, url)
        calls = server.count()
    assert check_run(result, may_fail=set()) == {}
    check_store(url, present=set(IDS))
    assert result["source_calls"] == calls                       # Measurement.calls add up to the real total
    # + serverInfo and the field list per Jira site, + on Jira Cloud one call per distinct count for the tickets
    # behind it (Data Center and GitHub bring them in the count's own answer)
    cloud_evidence = len({condition(kr.metric["jql"]) for kr in WORK.key_results
                          if kr.source == "jira" and "jql" in kr.metric and kr.metric.get("aggregate", "count") == "count"})
    assert calls <= WORK.distinct_queries() + 4 + cloud_evidence
    assert server.waits == []
    check_secrets(result, artifacts_text(), tmp_path=tmp_path, caplog=caplog, capfd=capfd)


def test_jira_429_with_retry_after_is_waited_as_asked(prefect_harness, tmp_path, monkeypatch, caplog, capfd):
    with local_site(monkeypatch) as server:
        server.inject(Fault(service="jira", path="/search", status=429, times=3,
                            headers={"Retry-After": "7", "RateLimit-Reason": "jira-burst-based"}))
        config, url = write_config(tmp_path, server), store_url(tmp_path)
        result = sync(config, url)
        assert server.waits == [7.0, 7.0, 7.0]
        check_run(result, may_fail=set())
        recover(config, url, result, server)
    check_secrets(result, tmp_path=tmp_path, caplog=caplog, capfd=capfd)


def test_jira_429_without_retry_after_backs_off(prefect_harness, tmp_path, monkeypatch, caplog, capfd):
    with local_site(monkeypatch) as server:
        server.inject(Fault(service="jira", path="/dc/", status=429, times=2))
        config, url = write_config(tmp_path, server), store_url(tmp_path)
        result = sync(config, url)
        assert len(server.waits) == 2 and backoff_ok(server.waits[0], 1) and backoff_ok(server.waits[1], 2)
        check_run(result, may_fail=set())
        recover(config, url, result, server)
    check_secrets(result, tmp_path=tmp_path, caplog=caplog, capfd=capfd)


def test_jira_rate_limit_enforced_by_the_server(prefect_harness, tmp_path, monkeypatch, caplog, capfd):
    """A bucket of 4 requests refilled at 1 a second: Jira's 429s come from the server's own
    limiter, each Retry-After is honoured, and the run completes."""
    with local_site(monkeypatch, jira_rate=(4, 1.0)) as server:
        config, url = write_config(tmp_path, server), store_url(tmp_path)
        result = sync(config, url)
        limited = [r for r in server.requests if r.status == 429]
        check_run(result, may_fail=set())
        assert limited and len(server.waits) == len(limited)
        assert all(w >= 1 and w == int(w) for w in server.waits)
        recover(config, url, result, server)
    check_secrets(result, tmp_path=tmp_path, caplog=caplog, capfd=capfd)


def test_github_secondary_and_graphql_rate_limits(prefect_harness, tmp_path, monkeypatch, caplog, capfd):
    """A secondary limit (403 + retry-after) and GraphQL's 200-with-RATE_LIMITED (remaining 0, a reset).
    The server's clock moves only by the waits, so the second wait is exact however long the run takes."""
    with local_site(monkeypatch, frozen=True) as server:
        reset = int(server.now()) + 40
        server.inject(Fault(service="github", path="/api/graphql", status=403, headers={"retry-after": "30"},
                            body=SECONDARY_BODY),
                      Fault(service="github", path="/api/graphql", status=200,
                            headers={"x-ratelimit-remaining": "0", "x-ratelimit-reset": str(reset),
                                     "x-ratelimit-resource": "graphql"},
                            body={"errors": [{"type": "RATE_LIMITED", "message": "API rate limit exceeded for user ID 1."}]}))
        config, url = write_config(tmp_path, server), store_url(tmp_path)
        result = sync(config, url)
        # the reset, 30 s of waiting later: 10 s away at most, rounded up, plus the reset second itself
        assert server.waits == [30.0, 11.0]
        check_run(result, may_fail=set())
        recover(config, url, result, server)
    check_secrets(result, tmp_path=tmp_path, caplog=caplog, capfd=capfd)


def test_github_primary_limit_used_up_fails_only_what_it_stops(prefect_harness, tmp_path, monkeypatch, caplog, capfd):
    """One core request an hour: the first repository's milestones are read; the next ones wait
    for a reset an hour away, so their key results say when to run again; the rest are exact."""
    with local_site(monkeypatch, github_core_per_hour=1) as server:
        config, url = write_config(tmp_path, server), store_url(tmp_path)
        result = sync(config, url)
        milestone_ids = {kr.id for kr in WORK.key_results if "milestone" in kr.metric}
        failed = check_run(result, may_fail=milestone_ids)
        assert failed and all("rate limit used up" in e and "run again after that" in e for e in failed.values())
        assert server.waits == []                                     # an hour is too long to wait now
        server.offset += 3600                                         # the re-run comes after the reset,
        server.windows["core"].limit = 5000                           # with the usual hourly budget
        recover(config, url, result, server)
    check_secrets(result, tmp_path=tmp_path, caplog=caplog, capfd=capfd)


def test_github_search_limit_waits_for_its_reset(prefect_harness, tmp_path, monkeypatch, caplog, capfd):
    """One search a minute: the statistic's second page meets 403 with x-ratelimit-remaining 0, so
    the connector waits until x-ratelimit-reset (at most a minute) and goes on."""
    with local_site(monkeypatch, github_search_per_minute=1) as server:
        config, url = write_config(tmp_path, server), store_url(tmp_path)
        result = sync(config, url)
        limited = [r for r in server.requests if r.status == 403]
        check_run(result, may_fail=set())
        assert len(limited) == len(server.waits) >= 1 and all(1 <= w <= 62 for w in server.waits)
        recover(config, url, result, server)
    check_secrets(result, tmp_path=tmp_path, caplog=caplog, capfd=capfd)


def test_5xx_bursts_are_retried(prefect_harness, tmp_path, monkeypatch, caplog, capfd):
    with local_site(monkeypatch) as server:
        server.inject(Fault(service="jira", path="/search", status=502, times=2, skip=3),
                      Fault(service="jira", path="/dc/", status=503, times=3),
                      Fault(service="github", status=500, times=2),
                      Fault(service="github", status=502, times=1))
        config, url = write_config(tmp_path, server), store_url(tmp_path)
        result = sync(config, url)
        check_run(result, may_fail=set())
        assert len(server.waits) == 8 and server.faults == []
        recover(config, url, result, server)
    check_secrets(result, tmp_path=tmp_path, caplog=caplog, capfd=capfd)


def _jira_conditions(metric: dict) -> set[str]:
    return {condition(metric[k]) for k in ("jql", "jql_done", "jql_total") if k in metric}


def test_a_jira_500_fails_only_the_key_results_of_that_query(prefect_harness, tmp_path, monkeypatch, caplog, capfd):
    """Every request for one JQL (the one most key results share) answers 500, whichever thread
    asks first: exactly the key results that need it fail, saying to try again later."""
    jira_krs = [kr for kr in WORK.key_results if kr.source in ("jira", "jira_dc")]
    shared = Counter(c for kr in jira_krs for c in _jira_conditions(kr.metric) if "{" not in c)
    target, _ = shared.most_common(1)[0]
    needing = {kr.id for kr in jira_krs if target in _jira_conditions(kr.metric)}
    assert len(needing) >= 2                                      # the test shows a query failing several key results
    with local_site(monkeypatch) as server:
        server.inject(Fault(service="jira", path="/rest/api/2/search", status=500, times=10_000, jql=target,
                            body={"errorMessages": ["Internal server error"], "errors": {}}))
        config, url = write_config(tmp_path, server), store_url(tmp_path)
        result = sync(config, url)
        failed = check_run(result)
        assert set(failed) == needing
        assert all("(HTTP 500)" in e and "try again later" in e for e in failed.values())
        recover(config, url, result, server)
    check_secrets(result, tmp_path=tmp_path, caplog=caplog, capfd=capfd)


def test_connection_reset_mid_response_is_retried(prefect_harness, tmp_path, monkeypatch, caplog, capfd):
    with local_site(monkeypatch) as server:
        server.inject(Fault(kind="reset", service="jira", path="/rest/api/2/search/jql", skip=1),
                      Fault(kind="reset", service="jira", path="/dc/rest/api/2/search"),
                      Fault(kind="reset", service="github", path="/api/graphql"))
        config, url = write_config(tmp_path, server), store_url(tmp_path)
        result = sync(config, url)
        assert server.faults == [] and len(server.waits) == 3
        check_run(result, may_fail=set())
        recover(config, url, result, server)
    check_secrets(result, tmp_path=tmp_path, caplog=caplog, capfd=capfd)


def test_read_timeout_is_retried(prefect_harness, tmp_path, monkeypatch, caplog, capfd):
    with local_site(monkeypatch) as server:
        # timeouts well above a busy machine's normal answer, delays well above the timeouts
        server.inject(Fault(kind="delay", seconds=4, service="jira", path="/rest/api/2/search/approximate-count"),
                      Fault(kind="delay", seconds=4, service="github", path="/api/graphql"))
        config, url = write_config(tmp_path, server, jira_timeout=2, github_timeout=2), store_url(tmp_path)
        result = sync(config, url)
        assert server.faults == [] and len(server.waits) == 2
        check_run(result, may_fail=set())
        recover(config, url, result, server)
    check_secrets(result, tmp_path=tmp_path, caplog=caplog, capfd=capfd)


def test_malformed_json_is_retried(prefect_harness, tmp_path, monkeypatch, caplog, capfd):
    """A 200 whose JSON body is cut short (a proxy dropping the tail) is a passing fault."""
    with local_site(monkeypatch) as server:
        server.inject(Fault(kind="malformed", service="jira", path="/search", skip=2),
                      Fault(kind="malformed", service="github", path="/api/graphql"))
        config, url = write_config(tmp_path, server), store_url(tmp_path)
        result = sync(config, url)
        assert server.faults == []
        check_run(result, may_fail=set())
        recover(config, url, result, server)
    check_secrets(result, tmp_path=tmp_path, caplog=caplog, capfd=capfd)


def test_html_login_page_with_200_stops_the_source_clearly(prefect_harness, tmp_path, monkeypatch, caplog, capfd):
    """An SSO proxy answering every call with its login page: each key result says so, and a Jira
    site, once it answered so, is asked no more."""
    with local_site(monkeypatch) as server:
        server.inject(Fault(kind="html", service="jira", path="/rest/api/2/", times=10_000),
                      Fault(kind="html", service="github", times=10_000))
        config, url = write_config(tmp_path, server), store_url(tmp_path)
        result = sync(config, url)
        failed = check_run(result)
        assert set(failed) == set(IDS)
        assert all("an HTML page instead of JSON (a login or SSO page, or a proxy?)" in e
                   for k, e in failed.items() if k in JIRA_IDS | DC_IDS)
        assert all("answered with a page that is not JSON" in e and "check base_url" in e
                   for k, e in failed.items() if k in GITHUB_IDS)
        assert server.count("jira") == 2                             # one serverInfo per site, then nothing
        assert result["source_calls"] == server.count()              # spent calls are reported, all failed or not
        recover(config, url, result, server)
    check_secrets(result, tmp_path=tmp_path, caplog=caplog, capfd=capfd)


@pytest.mark.parametrize("status", [401, 403])
def test_401_and_403_midway(prefect_harness, tmp_path, monkeypatch, caplog, capfd, status):
    """The token is revoked mid-run: what was read stays right, the rest of each source says what to check."""
    with local_site(monkeypatch) as server:
        denied = {"errorMessages": ["You do not have permission."], "errors": {}} if status == 403 else None
        server.inject(Fault(service="jira", path="/rest/api/2/search", status=status, skip=4, times=10_000, body=denied),
                      Fault(service="github", status=status, times=10_000))
        config, url = write_config(tmp_path, server), store_url(tmp_path)
        result = sync(config, url)
        failed = check_run(result)
        assert GITHUB_IDS <= set(failed) and set(failed) & JIRA_IDS
        wording = {401: ("Jira refused the credentials (HTTP 401)", "GitHub rejected the token from environment variable "
                                                                     "GITHUB_TOKEN"),
                   403: ("(HTTP 403)", "GitHub refused access (403")}[status]
        assert all(wording[0] in e for k, e in failed.items() if k in JIRA_IDS | DC_IDS)
        assert all(wording[1] in e for k, e in failed.items() if k in GITHUB_IDS)
        if status == 401:                                             # a refused token is not asked again
            assert server.count("github") == 1
        recover(config, url, result, server)
    check_secrets(result, tmp_path=tmp_path, caplog=caplog, capfd=capfd)


def test_jql_error_on_one_key_result_only(prefect_harness, tmp_path, monkeypatch, caplog, capfd):
    typo = ("      - {id: typo, title: typo, source: jira, baseline: 0, target: 1, metric: {jql: 'projct = PAY'}}\n"
            "      - {id: typo-dc, title: typo, source: jira_dc, baseline: 0, target: 1, "
            "metric: {jql: 'project = PAY AND', aggregate: count}}\n")
    with local_site(monkeypatch) as server:
        config, url = write_config(tmp_path, server, typo), store_url(tmp_path)
        result = sync(config, url)
    failed = check_run(result, extra={"typo", "typo-dc"}, may_fail=set(), must_fail={
        "typo": "Jira rejected the JQL 'projct = PAY': Jira says \"Field 'projct' does not exist",
        "typo-dc": "Jira rejected the JQL 'project = PAY AND'"})
    assert set(failed) == {"typo", "typo-dc"} and all("fix the query" in e for e in failed.values())
    check_store(url, present=set(IDS))
    check_secrets(result, tmp_path=tmp_path, caplog=caplog, capfd=capfd)
    assert CANARY not in artifacts_text()
