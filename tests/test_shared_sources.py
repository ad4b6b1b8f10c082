"""Sources shared across config files: sources alike (type, settings, secret references, deadline) are
one source for the run, whichever files define them, so a query two teams ask goes out once; output
and the store still name each key result's source as its file does."""
from __future__ import annotations

from pathlib import Path
from typing import Literal

import pytest
from pydantic import BaseModel, ConfigDict, SecretStr

from connectors import spreadsheet
from connectors.sql_store import open_store
from fake_jira import FakeIssue, FakeJira
from flows.services import local_services
from okrsync.config import load_plan
from okrsync.contract import LocalClient, source_identity
from okrsync.engine import RunOptions, Services, owned_record, sync
from okrsync.measure import Measurement
from okrsync.registry import Registry

EMAIL = "okr-bot@example.com"
TOKEN = "shared-T0ken-never-shown"
P1 = "project = PAY AND priority = P1 AND statusCategory != Done"
BUGS = "project = PAY AND type = Bug"
PAY = "project = PAY"


def jira_file(folder: Path, name: str, objective: str, krs: list[tuple[str, str]], *, source: str = "jira",
              url: str = "https://acme.atlassian.net", token: str = '"${JIRA_API_TOKEN}"', extra: str = "") -> str:
    lines = ["period: 2026-Q4", "sources:",
             f"  {source}: {{type: jira, url: {url}, email: \"${{JIRA_EMAIL}}\", token: {token}{extra}}}",
             "objectives:", f"  - id: {objective}", "    title: An objective", "    key_results:"]
    lines += [f"      - {{id: {kr_id}, title: {kr_id}, source: {source}, metric: {{jql: '{jql}'}}, baseline: 10, target: 0}}"
              for kr_id, jql in krs]
    path = folder / name
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return str(path)


@pytest.fixture(autouse=True)
def jira_env(monkeypatch):
    monkeypatch.setenv("JIRA_API_TOKEN", TOKEN)
    monkeypatch.setenv("JIRA_EMAIL", EMAIL)
    monkeypatch.setenv("OTHER_TOKEN", TOKEN)


def test_identical_sources_in_two_files_are_one_source_named_as_the_files_name_it(tmp_path):
    a = jira_file(tmp_path, "a.yaml", "pay", [("p1", P1)])
    b = jira_file(tmp_path, "b.yaml", "web", [("bugs", BUGS)])
    plan = load_plan([a, b])
    assert list(plan.sources) == ["jira"]
    assert plan.sources["jira"].defined_in == ((a, "jira"), (b, "jira"))
    krs = {kr.id: kr for kr in plan.key_results}
    assert krs["p1"].source_key == krs["bugs"].source_key == "jira"
    assert [krs[k].record().source for k in ("p1", "bugs")] == ["jira", "jira"]


def test_sources_alike_under_other_names_are_one_source_and_keep_their_owners_definition(tmp_path):
    a = jira_file(tmp_path, "a.yaml", "pay", [("p1", P1)])
    b = jira_file(tmp_path, "b.yaml", "web", [("bugs", BUGS)], source="atlassian")
    plan = load_plan([a, b])
    assert len(plan.sources) == 1
    krs = {kr.id: kr for kr in plan.key_results}
    assert krs["p1"].source_key == krs["bugs"].source_key
    assert (krs["bugs"].source_name, krs["bugs"].record().source) == ("atlassian", "atlassian")
    alone = load_plan([b])
    # the definition the store compares (and the owner it keeps) is the same whether b.yaml runs alone or not
    assert owned_record(plan, krs["bugs"]) == owned_record(alone, alone.key_results[0])


def test_two_sources_alike_in_one_file_stay_two_and_another_file_joins_the_first(tmp_path):
    a = jira_file(tmp_path, "a.yaml", "pay", [("p1", P1)],
                  extra='}\n  jira2: {type: jira, url: https://acme.atlassian.net, email: "${JIRA_EMAIL}", '
                        'token: "${JIRA_API_TOKEN}"')
    b = jira_file(tmp_path, "b.yaml", "web", [("bugs", BUGS)])
    plan = load_plan([a, b])
    assert sorted(plan.sources) == ["jira", "jira2"]                       # as a.yaml alone has them
    assert plan.sources["jira"].defined_in == ((a, "jira"), (b, "jira"))
    assert {kr.id: kr.source_key for kr in plan.key_results} == {"p1": "jira", "bugs": "jira"}


@pytest.mark.parametrize("difference", [
    {"extra": ", timeout: 10"},                                   # answers may differ (a slower site times out)
    {"extra": ", deadline: 30"},
    {"token": '"${OTHER_TOKEN}"'},                                # another credential, even with the same value
    {"token": "{secret: jira-token}"},
    {"url": "https://other.atlassian.net"},
])
def test_sources_that_differ_stay_apart_and_are_named_by_file(tmp_path, difference):
    a = jira_file(tmp_path, "a.yaml", "pay", [("p1", P1)])
    b = jira_file(tmp_path, "b.yaml", "web", [("bugs", BUGS)], **difference)
    plan = load_plan([a, b])
    assert sorted(plan.sources) == ["a.yaml:jira", "b.yaml:jira"]
    krs = {kr.id: kr for kr in plan.key_results}
    assert (krs["p1"].source_key, krs["bugs"].source_key) == ("a.yaml:jira", "b.yaml:jira")
    assert krs["bugs"].record().source == "b.yaml:jira"


def test_one_spreadsheet_named_two_ways_from_one_folder_is_one_source(tmp_path):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "survey.csv").write_text("question,score\nnps,38\n", encoding="utf-8")
    texts = {"a.yaml": ("survey", "data/survey.csv", "nps-a"), "b.yaml": ("poll", "./data/../data/survey.csv", "nps-b")}
    for name, (source, path, kr_id) in texts.items():
        (tmp_path / name).write_text(
            f"period: 2026-Q4\nsources:\n  {source}: {{type: spreadsheet, path: {path}}}\nobjectives:\n"
            f"  - id: obj-{kr_id}\n    title: O\n    key_results:\n"
            f"      - {{id: {kr_id}, title: NPS, source: {source}, metric: {{cell: B2}}, baseline: 30, target: 45}}\n",
            encoding="utf-8")
    plan = load_plan([str(tmp_path / "a.yaml"), str(tmp_path / "b.yaml")], f"sqlite:///{tmp_path / 'okr.db'}")
    assert len(plan.sources) == 1
    result = sync(plan, RunOptions(dry_run=True), local_services())
    assert {r["id"]: (r["value"], r["source"]) for r in result["key_results"]} == {
        "nps-a": (38, "survey"), "nps-b": (38, "poll")}
    assert result["source_calls"] == 1                 # the file is read once for both


class KeySource(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: Literal["keyed"]
    key: SecretStr


def test_a_secret_held_in_the_settings_is_compared_by_value_and_a_connector_may_say_what_is_alike():
    class Plain:
        pass

    same, other = KeySource(type="keyed", key="one"), KeySource(type="keyed", key="two")
    assert source_identity(Plain, same) == source_identity(Plain, KeySource(type="keyed", key="one"))
    assert source_identity(Plain, same) != source_identity(Plain, other)
    assert "one" not in repr(source_identity(Plain, same))       # a digest, not the value

    class Coarse:
        @staticmethod
        def source_identity(source):
            return "all alike"

    assert source_identity(Coarse, same) == source_identity(Coarse, other)


def test_identical_queries_of_two_files_go_out_once_per_run(tmp_path):
    issues = [FakeIssue(n, type=("Bug", "Story")[n % 2], priority=("P1", "P2")[n % 3 == 0]) for n in range(1, 41)]
    with FakeJira(issues, email=EMAIL, token=TOKEN) as fake:
        a = jira_file(tmp_path, "a.yaml", "pay", [("p1", P1), ("bugs", BUGS)], url=fake.url)
        b = jira_file(tmp_path, "b.yaml", "web", [("p1-web", P1), ("pay-all", PAY)], url=fake.url)
        plan = load_plan([a, b], f"sqlite:///{tmp_path / 'okr.db'}")
        result = sync(plan, RunOptions(), local_services())
        calls = [c.path for c in fake.calls]
    rows = {r["id"]: r for r in result["key_results"]}
    assert result["counts"]["failed"] == 0
    assert rows["p1"]["value"] == rows["p1-web"]["value"] == sum(
        1 for i in issues if i.priority == "P1" and i.category != "done")
    assert calls.count("/rest/api/2/serverInfo") == 1                        # once per site, not per file
    # P1 asked once for both files: one page of its tickets (Cloud evidence), which holds every match
    # and so is the count too (no approximate-count call)
    assert sum(c.endswith("search/jql") for c in calls) == 3
    assert sum("approximate-count" in c for c in calls) == 0
    assert len(calls) == result["source_calls"] == 4
    with open_store(plan.store_url) as store:
        assert {s.kr_id: s.source for s in store.key_results()} == dict.fromkeys(rows, "jira")
        assert {s.kr_id: s.last.source for s in store.key_results()} == dict.fromkeys(rows, "jira")


class SlowSource(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: Literal["slow"]


class SlowMetric(BaseModel):
    model_config = ConfigDict(extra="forbid")
    value: float = 1.0


class SlowConnector:
    TYPE = "slow"
    SourceConfig = SlowSource
    Metric = SlowMetric

    def __init__(self) -> None:
        self.batches: list[list[str]] = []

    def check(self, source, metrics):
        return []

    def connect(self, source):
        return LocalClient()

    def answer(self, client, source, requests):
        import time

        self.batches.append([r.kr_id for r in requests])
        time.sleep(1.5)
        return {r.kr_id: Measurement(value=r.metric.value) for r in requests}


def test_a_shared_source_past_its_deadline_names_itself_as_each_file_does(tmp_path):
    for name, source, kr_id in (("a.yaml", "slow", "kr-a"), ("b.yaml", "laggard", "kr-b")):
        (tmp_path / name).write_text(
            f"period: 2026-Q4\nsources:\n  {source}: {{type: slow, deadline: 0.2}}\nobjectives:\n"
            f"  - id: obj-{kr_id}\n    title: O\n    key_results:\n"
            f"      - {{id: {kr_id}, title: T, source: {source}, metric: {{value: 3}}, target: 5}}\n", encoding="utf-8")
    connector = SlowConnector()
    registry = Registry({"slow": connector, "spreadsheet": spreadsheet})
    plan = load_plan([str(tmp_path / "a.yaml"), str(tmp_path / "b.yaml")], f"sqlite:///{tmp_path / 'okr.db'}",
                     registry=registry)
    result = sync(plan, RunOptions(dry_run=True), Services(registry=registry, open_store=open_store))
    assert connector.batches == [["kr-a", "kr-b"]]                            # one batch for both files
    errors = {r["id"]: r["error"] for r in result["key_results"]}
    assert errors["kr-a"].startswith("deadline of 0.2 s passed while measuring source `slow` ")
    assert errors["kr-b"].startswith("deadline of 0.2 s passed while measuring source `laggard` ")
