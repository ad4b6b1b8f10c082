"""End to end: the real sync flow, a config mixing GitHub and spreadsheet key results, a local
GitHub API on 127.0.0.1 (tests/fake_github.py) and a SQLite store in tmp_path."""
from __future__ import annotations

import json
import logging
import shutil

import pytest

from conftest import EXAMPLE
from connectors.sql_store import open_store
from fake_github import FakeGitHub, issue_item, milestone, release
from flows.sync import sync_okrs

TOKEN_ENV = "OKR_E2E_GITHUB_TOKEN"
CANARY = "ghp_E2ECANARY5f4e3d2c1b0a9f8e7d6c5b4a39281706"
PERF = "repo:acme/checkout is:pr is:merged label:perf merged:>=2026-10-01"
MERGED = "repo:acme/checkout is:pr is:merged merged:>=2026-10-01"
SECURITY = "repo:acme/checkout is:issue is:open label:security"
TRIAGED = "repo:acme/checkout is:issue label:bug label:triaged"
BUGS = "repo:acme/checkout is:issue label:bug"

CONFIG = """\
period: 2026-Q4
sources:
  survey: {type: spreadsheet, path: data/survey.csv}
  gh: {type: github, token: "${OKR_E2E_GITHUB_TOKEN}", base_url: "BASE_URL"}
objectives:
  - id: checkout
    title: Make checkout fast and reliable
    key_results:
      - id: checkout-nps
        title: Raise checkout NPS from 30 to 45
        source: survey
        metric: {cell: C7}
        baseline: 30
        target: 45
      - id: perf-prs
        title: Merge 1,500 performance PRs this quarter
        source: gh
        metric: {search: "repo:acme/checkout is:pr is:merged label:perf merged:>={period.start}", aggregate: count}
        target: 1500
      - id: no-security-issues
        title: No open security issues
        source: gh
        metric: {search: "repo:acme/checkout is:issue is:open label:security"}
        baseline: 10
        target: 0
      - id: time-to-merge
        title: Median time to merge under 24 h
        source: gh
        metric: {search: "repo:acme/checkout is:pr is:merged merged:>={period.start}", aggregate: median,
                 field: hours_to_merge}
        baseline: 60
        target: 24
        unit: h
      - id: triage
        title: Triage 90% of bugs
        source: gh
        metric: {search_done: "repo:acme/checkout is:issue label:bug label:triaged",
                 search_total: "repo:acme/checkout is:issue label:bug"}
        target: 90
        unit: "%"
      - id: v2-done
        title: v2.0 milestone closed
        source: gh
        metric: {repo: acme/checkout, milestone: "v2.0", aggregate: percent_done}
        target: 100
      - id: releases
        title: Ship 6 releases this quarter
        source: gh
        metric: {repo: acme/checkout, aggregate: releases, since: "{period.start}"}
        target: 6
"""


def fake_github() -> FakeGitHub:
    merged = [issue_item(n, pr=True, created_at="2026-10-05T00:00:00Z", merged_at=f"2026-10-0{5 + d}T{h:02d}:00:00Z")
              for n, (d, h) in enumerate([(0, 10), (0, 20), (1, 16)], start=1)]          # 10 h, 20 h, 40 h
    return FakeGitHub(
        CANARY,
        searches={MERGED: merged, SECURITY: [issue_item(7), issue_item(8)]},
        totals={PERF: 1234, TRIAGED: 27, BUGS: 36},
        milestones={"acme/checkout": [milestone(3, "v1.9", open_issues=0, closed_issues=5, state="closed"),
                                      milestone(7, "v2.0", open_issues=3, closed_issues=9)]},
        releases={"acme/checkout": [release(3, "v2.1.0", published_at="2026-11-02T09:00:00Z"),
                                    release(2, "v2.0.0", published_at="2026-10-07T09:00:00Z"),
                                    release(1, "v1.9.0", published_at="2026-09-01T09:00:00Z")]},
    )


def test_github_and_spreadsheet_key_results_sync_end_to_end(prefect_harness, tmp_path, monkeypatch, caplog):
    caplog.set_level(logging.DEBUG)
    monkeypatch.setenv(TOKEN_ENV, CANARY)
    shutil.copytree(EXAMPLE.parent / "data", tmp_path / "data")
    store_url = f"sqlite:///{tmp_path / 'okr.db'}"
    with fake_github() as server:
        config = tmp_path / "okrs.yaml"
        config.write_text(CONFIG.replace("BASE_URL", server.base_url), encoding="utf-8")
        first = sync_okrs(config_paths=[str(config)], store=store_url)
        github_calls = len(server.requests)
        second = sync_okrs(config_paths=[str(config)], store=store_url)

    rows = {r["id"]: r for r in first["key_results"]}
    assert first["counts"]["failed"] == 0, [r["error"] for r in first["key_results"]]
    assert {k: r["value"] for k, r in rows.items()} == pytest.approx({
        "checkout-nps": 38, "perf-prs": 1234, "no-security-issues": 2, "time-to-merge": 20,
        "triage": 75, "v2-done": 75, "releases": 2})
    web = server.root
    assert rows["perf-prs"]["link"] == (f"{web}/search?q=repo%3Aacme%2Fcheckout+is%3Apr+is%3Amerged+label%3Aperf+"
                                        "merged%3A%3E%3D2026-10-01&type=pullrequests")
    assert rows["v2-done"]["link"] == f"{web}/acme/checkout/milestone/7"
    assert rows["releases"]["link"] == f"{web}/acme/checkout/releases"
    assert rows["no-security-issues"]["progress"] == pytest.approx(0.8)          # 10 -> 0, now 2

    # one search page, one GraphQL request for the 4 distinct counts, one milestone list, one release list
    assert [(method, path) for method, path, _ in server.requests[:github_calls]] == [
        ("GET", "/api/v3/search/issues"), ("POST", "/api/graphql"),
        ("GET", "/api/v3/repos/acme/checkout/milestones"), ("GET", "/api/v3/repos/acme/checkout/releases")]
    assert first["source_calls"] == github_calls + 1                             # + the spreadsheet read

    assert second["counts"]["written"] == 0 and second["counts"]["unchanged"] == 7
    store = open_store(store_url)
    try:
        last = {s.kr_id: s.last for s in store.key_results()}
        assert last["v2-done"].link == f"{web}/acme/checkout/milestone/7" and last["v2-done"].value == 75
        assert last["time-to-merge"].note == "median over 3 merged pull requests"
        # the items behind a count come in the same GraphQL request (nodes beside issueCount)
        assert list(last["no-security-issues"].evidence) == [{"key": "acme/checkout#7", "title": "Item 7"},
                                                             {"key": "acme/checkout#8", "title": "Item 8"}]
        assert last["perf-prs"].evidence == () and last["triage"].evidence is None   # none served; a ratio keeps none
    finally:
        store.close()
    shown = json.dumps(first, default=str) + json.dumps(second, default=str) + caplog.text
    assert CANARY not in shown and CANARY not in (tmp_path / "okr.db").read_bytes().decode("latin-1")


def test_a_rejected_token_fails_only_the_github_key_results(prefect_harness, tmp_path, monkeypatch):
    monkeypatch.setenv(TOKEN_ENV, "ghp_not_the_right_one")
    shutil.copytree(EXAMPLE.parent / "data", tmp_path / "data")
    with fake_github() as server:
        config = tmp_path / "okrs.yaml"
        config.write_text(CONFIG.replace("BASE_URL", server.base_url), encoding="utf-8")
        result = sync_okrs(config_paths=[str(config)], store=f"sqlite:///{tmp_path / 'okr.db'}")
        asked = len(server.requests)
    rows = {r["id"]: r for r in result["key_results"]}
    assert rows["checkout-nps"]["error"] is None and rows["checkout-nps"]["outcome"] == "written"
    github = [r for k, r in rows.items() if k != "checkout-nps"]
    assert all(r["error"].startswith(f"GitHub rejected the token from environment variable {TOKEN_ENV} (401")
               for r in github)
    assert asked == 1 and "ghp_not_the_right_one" not in json.dumps(result, default=str)
