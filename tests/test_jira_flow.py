"""End to end: the real sync flow, a config mixing Jira and spreadsheet key results, a local Jira
(tests/fake_jira.py) on 127.0.0.1 as Cloud and as Data Center, check-ins in a SQLite file."""
from __future__ import annotations

import base64
import json
import logging
import math
from urllib.parse import quote

import pytest

from connectors.sql_store import open_store
from fake_jira import FakeIssue, FakeJira
from flows.sync import sync_okrs

CANARY = "canary-e2e-T0ken-41d7-never-shown"
EMAIL = "okr-bot@example.com"
Q4 = ("2026-10-01", "2026-12-31")
P1_OPEN = "project = PAY AND type = Bug AND priority = P1 AND statusCategory != Done"
EPIC = "parent = PAY-100"
DELIVERED = f'project = PAY AND statusCategory = Done AND resolved >= "{Q4[0]}" AND resolved <= "{Q4[1]}"'
OPEN_STORIES = "project = PAY AND type = Story AND statusCategory != Done"
BUGS_FIXED = "project = PAY AND type = Bug AND statusCategory = Done"
BUGS = "project = PAY AND type = Bug"


def dataset() -> list[FakeIssue]:
    """130 stories under epic PAY-100, 60 bugs, and 1,100 other PAY stories resolved across 2026."""
    issues, n = [], 0
    for i in range(130):
        n += 1
        category = "done" if i % 5 in (0, 1) else ("indeterminate" if i % 5 == 2 else "new")
        issues.append(FakeIssue(n, parent="PAY-100", category=category, points=[1.0, 2.0, 3.0, 5.0, 8.0][i % 5] if i % 7 else None,
                                resolved=f"2026-10-{1 + i % 28:02d}" if category == "done" else None))
    for i in range(60):
        n += 1
        category = "done" if i % 3 else "new"
        issues.append(FakeIssue(n, type="Bug", priority=("P1", "P2", "P3", "P2")[i % 4], category=category,
                                resolved=f"2026-11-{1 + i % 28:02d}" if category == "done" else None))
    for i in range(1100):
        n += 1
        category = "done" if i % 4 else "indeterminate"
        issues.append(FakeIssue(n, category=category, points=float(1 + i % 3),
                                resolved=f"2026-{1 + i % 12:02d}-15" if category == "done" else None))
    return issues


def expected_values(issues: list[FakeIssue]) -> dict[str, float]:
    """What the key results must read, computed from the data directly (not through any JQL)."""
    epic = [i for i in issues if i.parent == "PAY-100"]
    pointed = [i.points for i in epic if i.points is not None]
    delivered = [i for i in issues if i.category == "done" and i.resolved and Q4[0] <= i.resolved <= Q4[1]]
    open_stories = [i for i in issues if i.type == "Story" and i.category != "done"]
    bugs = [i for i in issues if i.type == "Bug"]
    return {
        "p1-bugs": sum(i.type == "Bug" and i.priority == "P1" and i.category != "done" for i in issues),
        "p1-bugs-again": sum(i.type == "Bug" and i.priority == "P1" and i.category != "done" for i in issues),
        "epic-done": 100 * sum(i.category == "done" for i in epic) / len(epic),
        "epic-points-done": 100 * sum(i.points or 0 for i in epic if i.category == "done") / sum(pointed),
        "epic-size": len(epic),
        "avg-story": sum(pointed) / len(pointed),
        "delivered": sum(i.points or 0 for i in delivered),
        "biggest-open": max(i.points for i in open_stories if i.points is not None),
        "bug-fix-rate": 100 * sum(i.category == "done" for i in bugs) / len(bugs),
        "pay-done": 100 * sum(i.category == "done" for i in issues) / len(issues),
        "checkout-nps": 38,
    }


def config_text(url: str, cloud: bool) -> str:
    email = '\n    email: "${JIRA_EMAIL}"' if cloud else ""
    return f"""period: 2026-Q4
sources:
  jira:
    type: jira
    url: {url}{email}
    token: "${{JIRA_API_TOKEN}}"
  survey: {{type: spreadsheet, path: survey.csv}}
objectives:
  - id: payments
    title: Ship the new payments flow
    key_results:
      - {{id: p1-bugs, title: Fewer than 3 open P1 bugs, source: jira, baseline: 20, target: 3,
         metric: {{jql: '{P1_OPEN}', aggregate: count}}}}
      - {{id: epic-done, title: Finish the epic, source: jira, target: 100,
         metric: {{jql: '{EPIC}', aggregate: percent_done}}}}
      - {{id: epic-points-done, title: 80% of the epic's points done, source: jira, target: 80,
         metric: {{jql: '{EPIC} ORDER BY rank', aggregate: percent_done, weight: Story Points}}}}
      - {{id: epic-size, title: Keep the epic under 150 stories, source: jira, baseline: 200, target: 150,
         metric: {{jql: '{EPIC}'}}}}
      - {{id: avg-story, title: Stories average 3 points or less, source: jira, baseline: 8, target: 3,
         metric: {{jql: '{EPIC}', aggregate: avg, field: Story Points}}}}
      - {{id: delivered, title: Deliver 120 story points this quarter, source: jira, target: 120,
         metric: {{jql: 'project = PAY AND statusCategory = Done AND resolved >= "{{period.start}}" AND resolved <= "{{period.end}}"',
                  aggregate: sum, field: Story Points}}}}
      - {{id: biggest-open, title: No open story above 5 points, source: jira, baseline: 13, target: 5,
         metric: {{jql: '{OPEN_STORIES}', aggregate: max, field: story points}}}}
      - {{id: bug-fix-rate, title: Fix 90% of the bugs, source: jira, target: 90,
         metric: {{jql_done: '{BUGS_FIXED}', jql_total: '{BUGS}'}}}}
      - {{id: pay-done, title: Most PAY work done, source: jira, target: 90,
         metric: {{jql: 'project = PAY', aggregate: percent_done}}}}
      - {{id: typo, title: A key result with a typo in its JQL, source: jira, target: 1,
         metric: {{jql: 'projct = PAY'}}}}
  - id: quality
    title: Quality
    key_results:
      - {{id: p1-bugs-again, title: Same query for the other team, source: jira, baseline: 20, target: 3,
         metric: {{jql: '{P1_OPEN}'}}}}
      - {{id: checkout-nps, title: Raise checkout NPS from 30 to 45, source: survey, metric: {{cell: B2}},
         baseline: 30, target: 45}}
"""


def pages(n: int, size: int) -> int:
    return max(1, math.ceil(n / size))


def expected_jira_calls(fake: FakeJira, cloud: bool) -> int:
    """serverInfo + field list + 1 call per distinct count + 1 per page of each query read; on Cloud, + 1
    for the evidence of the one count that keeps some (P1_OPEN: Data Center gets it with the count, and
    epic-size's tickets come from the epic's pages)."""
    size = 100 if cloud else fake.dc_max_results
    reads = [EPIC, DELIVERED, OPEN_STORIES]                        # epic-size / epic-done come from the epic's pages
    counts = [P1_OPEN, BUGS_FIXED, BUGS, "project = PAY", "(project = PAY) AND statusCategory = Done", "projct = PAY"]
    evidence = 1 if cloud else 0
    return 2 + len(counts) + evidence + sum(pages(len(fake.matching(q)), size) for q in reads) + 1   # + the queued 429


def every_issue_baseline(fake: FakeJira) -> int:
    """What fetching every matching issue costs: pages of 100 for each key result's query (both, for a
    ratio), + 1 for the typo's rejected query; serverInfo and the field list not even counted."""
    queries = [P1_OPEN, EPIC, EPIC, EPIC, EPIC, DELIVERED, OPEN_STORIES, BUGS_FIXED, BUGS, "project = PAY", P1_OPEN]
    return sum(pages(len(fake.matching(q)), 100) for q in queries) + 1


@pytest.mark.parametrize("deployment", ["Cloud", "Server"])
def test_jira_and_spreadsheet_key_results_sync_end_to_end(prefect_harness, tmp_path, monkeypatch, caplog, capfd,
                                                            clock, deployment):
    for name in ("connectors", "urllib3", "jira", "flows"):
        caplog.set_level(logging.DEBUG, logger=name)
    monkeypatch.setenv("JIRA_API_TOKEN", CANARY)
    monkeypatch.setenv("JIRA_EMAIL", EMAIL)
    waits = clock.waits                                                         # tests/conftest.py
    (tmp_path / "survey.csv").write_text("question,score\nNPS,38\n", encoding="utf-8")
    store_url = f"sqlite:///{tmp_path / 'okr.db'}"
    cloud = deployment == "Cloud"
    issues = dataset()

    with FakeJira(issues, deployment=deployment, email=EMAIL, token=CANARY) as fake:
        fake.queued.append((429, {"Retry-After": "2"}, {"errorMessages": ["Rate limit exceeded."], "errors": {}}))
        config = tmp_path / "okrs.yaml"
        config.write_text(config_text(fake.url, cloud), encoding="utf-8")
        first = sync_okrs(config_paths=[str(config)], store=store_url)
        jira_calls = len(fake.calls)
        second = sync_okrs(config_paths=[str(config)], store=store_url)
        p1_open = [{"key": i.key, "title": f"Issue {i.key}"} for i in fake.matching(P1_OPEN)]
        epic = [{"key": i.key, "title": f"Issue {i.key}"} for i in fake.matching(EPIC)][:50]

    rows = {r["id"]: r for r in first["key_results"]}
    assert first["counts"]["failed"] == 1
    assert rows["typo"]["error"] == ("Jira rejected the JQL 'projct = PAY': Jira says \"Field 'projct' does not exist "
                                     "or you do not have permission to view it.\": fix the query (try it in Jira's "
                                     "issue search first)")
    measured = {k: r["value"] for k, r in rows.items() if k != "typo"}
    assert measured == pytest.approx(expected_values(issues))
    assert all(r["outcome"] == "written" for k, r in rows.items() if k != "typo")
    assert rows["epic-points-done"]["link"] == f"{fake.url}/issues/?jql={quote(EPIC + ' ORDER BY rank', safe='')}"
    assert rows["delivered"]["query"] == f"sum of Story Points over: {DELIVERED}"

    assert waits == [2.0]                                                      # the 429, retried as asked
    assert jira_calls == expected_jira_calls(fake, cloud)
    assert first["source_calls"] == jira_calls + 1                             # + one read of survey.csv
    assert jira_calls < every_issue_baseline(fake)
    assert all(c.path != "/rest/api/2/search" for c in fake.calls) if cloud else \
        all("search/jql" not in c.path and "approximate" not in c.path for c in fake.calls)

    assert second["counts"]["written"] == 0 and second["counts"]["unchanged"] == len(measured)
    store = open_store(store_url)
    try:
        states = {s.kr_id: s for s in store.key_results()}
        p1 = states["p1-bugs"].last
        assert p1.value == expected_values(issues)["p1-bugs"] and p1.kind == "automatic"
        assert p1.link == f"{fake.url}/issues/?jql={quote(P1_OPEN, safe='')}" and p1.query == P1_OPEN
        assert p1.evidence is not None and list(p1.evidence) == p1_open and len(p1_open) == p1.value   # the whole set
        assert list(states["p1-bugs-again"].last.evidence) == p1_open
        assert list(states["epic-size"].last.evidence) == epic                  # the first 50 of the epic's pages
        assert states["delivered"].last.evidence is None                        # a sum keeps none
        assert len(store.history("delivered")) == 1
    finally:
        store.close()

    shown = "\n".join([json.dumps([first, second], default=str), caplog.text, *capfd.readouterr(),
                       (tmp_path / "okr.db").read_bytes().decode("latin-1")])
    for secret in (CANARY, base64.b64encode(f"{EMAIL}:{CANARY}".encode()).decode()):
        assert secret not in shown
