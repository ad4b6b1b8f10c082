"""GitHub source and metric validation: what `okr-sync validate` says, before any call."""
from __future__ import annotations

from datetime import date

import pytest
from pydantic import ValidationError

from connectors._github_client import web_root
from connectors.github import Metric, SourceConfig, search_kind
from okrsync.config import json_schema, load_plan, render_metric
from okrsync.errors import ConfigError

CONFIG = """\
period: 2026-Q4
sources:
  gh: {type: github, token: "${GITHUB_TOKEN}"}
objectives:
  - id: eng
    title: Ship faster
    key_results:
      - id: perf-prs
        title: Merge 40 performance PRs
        source: gh
        metric: {search: "repo:acme/checkout is:pr is:merged label:perf merged:>={period.start}", aggregate: count}
        target: 40
      - id: ttm
        title: Median time to merge under 24 h
        source: gh
        metric: {search: "repo:acme/checkout is:pr is:merged merged:>={period.start}", aggregate: median,
                 field: hours_to_merge}
        baseline: 60
        target: 24
      - id: v2
        title: v2.0 milestone closed
        source: gh
        metric: {repo: acme/checkout, milestone: "v2.0", aggregate: percent_done}
        target: 100
      - id: releases
        title: Ship 6 releases
        source: gh
        metric: {repo: acme/checkout, aggregate: releases, since: "{period.start}"}
        target: 6
      - id: triage
        title: Triage 90% of bugs
        source: gh
        metric: {search_done: "repo:acme/checkout is:issue label:bug label:triaged",
                 search_total: "repo:acme/checkout is:issue label:bug"}
        target: 90
"""


def issues_of(path) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_plan([path])
    return [str(issue) for issue in caught.value.issues]


def problems(**metric) -> list[tuple[str, str]]:
    with pytest.raises(ValidationError) as caught:
        Metric.model_validate(metric)
    return [(".".join(map(str, e["loc"])), e["msg"]) for e in caught.value.errors(include_url=False)]


def test_the_documented_shapes_validate_and_render(write_config):
    plan = load_plan([write_config(CONFIG)])
    krs = {kr.id: kr for kr in plan.key_results}
    assert set(krs) == {"perf-prs", "ttm", "v2", "releases", "triage"}
    rendered = render_metric(krs["releases"].metric, krs["releases"].period, date(2026, 11, 20))
    assert str(rendered.since) == "2026-10-01" and rendered.kind == "releases"
    perf = render_metric(krs["perf-prs"].metric, krs["perf-prs"].period, date(2026, 11, 20))
    assert perf.search.endswith("merged:>=2026-10-01") and perf.kind == "search_count"
    assert render_metric(krs["v2"].metric, krs["v2"].period, date(2026, 11, 20)).kind == "milestone"
    assert render_metric(krs["triage"].metric, krs["triage"].period, date(2026, 11, 20)).kind == "ratio"
    assert render_metric(krs["ttm"].metric, krs["ttm"].period, date(2026, 11, 20)).kind == "statistic"


def test_validate_reports_each_mistake_with_file_line_and_fix(write_config):
    broken = (CONFIG
              .replace("label:perf merged", "label:perf -is:pr merged").replace("is:pr is:merged label:perf", "label:perf")
              .replace("aggregate: median,\n                 field: hours_to_merge", "aggregate: median")
              .replace("repo: acme/checkout, milestone", "repo: checkout, milestone")
              .replace('label:bug label:triaged",', 'label:bug label:triaged"}').replace(
                  '\n                 search_total: "repo:acme/checkout is:issue label:bug"}', ""))
    path = write_config(broken)
    found = issues_of(path)
    assert found == [
        f"{path}:11: perf-prs: the search must say `is:issue` or `is:pr` (GitHub answers 422 otherwise): "
        "add one of them to the query",
        f"{path}:16: ttm: aggregate median needs `field: hours_to_merge` (pull requests) or `field: hours_to_close`",
        f"{path}:22: v2: repo must be owner/name, e.g. acme/checkout (got 'checkout')",
        f"{path}:32: triage: a ratio needs both `search_done:` and `search_total:`; add `search_total:`",
    ]


@pytest.mark.parametrize("metric, where, words", [
    ({"search": "repo:a/b is:pr", "aggregate": "median", "field": "hours_to_merge"}, "field", "add `is:pr is:merged`"),
    ({"search": "repo:a/b is:issue is:open", "aggregate": "p90", "field": "hours_to_close"}, "field", "add `is:closed`"),
    ({"search": "repo:a/b is:pr", "aggregate": "count", "field": "hours_to_merge"}, "field", "only goes with aggregate"),
    ({"search": "repo:a/b is:pr", "aggregate": "percent_done"}, "aggregate", "use count, median, p90 or avg"),
    ({"search": "repo:a/b is:pr", "since": "2026-10-01"}, "since", "only goes with `repo:`"),
    ({"search": "repo:a/b is:pr", "repo": "a/b"}, "repo", "mixes `search:` and `repo:`"),
    ({"repo": "a/b"}, "aggregate", "say `aggregate: releases`"),
    ({"repo": "a/b", "milestone": "v1", "aggregate": "releases"}, "aggregate", "use percent_done"),
    ({"repo": "a/b", "milestone": "v1", "since": "2026-10-01"}, "since", "only goes with `aggregate: releases`"),
    ({"repo": "a/b", "milestone": 2.0}, "milestone", 'quote the title, e.g. milestone: "2.0"'),
    ({"repo": "a/b", "aggregate": "releases", "since": "last monday"}, "since", "is not a date"),
    ({"search_done": "is:pr x", "search_total": "is:pr", "aggregate": "count"}, "aggregate", "does not go with a ratio"),
    ({"search_total": "is:pr"}, "search_done", "add `search_done:`"),
    ({"search": "  "}, "search", "the search is empty"),
    ({"search": "repo:a/b -is:pr NOT is:issue"}, "search", "must say `is:issue` or `is:pr`"),
    ({}, "search", "the metric is missing"),
])
def test_metric_combinations_are_explained(metric, where, words):
    found = problems(**metric)
    assert len(found) == 1 and found[0][0] == where and words in found[0][1], found


def test_defaults_and_accepted_spellings():
    assert Metric.model_validate({"search": "repo:a/b is:pull-request"}).aggregate == "count"
    assert Metric.model_validate({"repo": "a/b", "milestone": "v2"}).aggregate == "percent_done"
    assert Metric.model_validate({"repo": "a/b", "milestone": 7}).milestone == 7
    assert Metric.model_validate({"repo": "https://github.com/a/b/", "aggregate": "releases"}).repo == "a/b"
    closed = {"search": "repo:a/b is:pr state:closed", "aggregate": "avg", "field": "hours_to_close"}
    assert Metric.model_validate(closed).kind == "statistic"
    assert [search_kind(q) for q in ("is:PR x", "is:issue", "is:issue is:pr", "-is:issue")] == ["pr", "issue", "both", None]


@pytest.mark.parametrize("given, kept", [
    (None, "https://api.github.com"),
    ("https://ghe.acme.com/api/v3/", "https://ghe.acme.com/api/v3"),
    ("https://api.acme.ghe.com", "https://api.acme.ghe.com"),
    ("http://127.0.0.1:8080/api/v3", "http://127.0.0.1:8080/api/v3"),
])
def test_base_url_accepted(given, kept):
    settings = {"type": "github", "token": "${GITHUB_TOKEN}"} | ({"base_url": given} if given else {})
    assert SourceConfig.model_validate(settings).base_url == kept


@pytest.mark.parametrize("given, words", [
    ("https://github.acme.com", "write https://github.acme.com/api/v3"),
    ("https://github.acme.com/api/graphql", "write https://github.acme.com/api/v3"),
    ("https://github.com", "remove `base_url:` for github.com"),
    ("github.acme.com/api/v3", "must be a URL"),
])
def test_base_url_mistakes_say_the_fix(given, words):
    with pytest.raises(ValidationError) as caught:
        SourceConfig.model_validate({"type": "github", "token": "${GITHUB_TOKEN}", "base_url": given})
    assert words in str(caught.value)


def test_plain_text_token_is_refused(write_config):
    path = write_config(CONFIG.replace('token: "${GITHUB_TOKEN}"', "token: ghp_plaintext123"))
    found = issues_of(path)
    assert len(found) == 1 and "plain-text secrets are not allowed" in found[0] and "ghp_plaintext123" not in found[0]


@pytest.mark.parametrize("api, web", [
    ("https://api.github.com", "https://github.com"),
    ("https://ghe.acme.com/api/v3", "https://ghe.acme.com"),
    ("https://api.acme.ghe.com", "https://acme.ghe.com"),
    ("http://127.0.0.1:8080/api/v3", "http://127.0.0.1:8080"),
])
def test_links_open_the_web_host_of_the_api(api, web):
    assert web_root(api) == web


def test_json_schema_lists_the_github_source_and_metric():
    text = str(json_schema())
    assert "hours_to_merge" in text and "percent_done" in text and "'github'" in text
