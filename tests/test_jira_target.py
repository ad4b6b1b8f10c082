"""Publish target jira: a number field set on each Key Result issue (Cloud and Data Center), with a comment per
new value when asked, through the real engine against tests/fake_jira.py over HTTP on 127.0.0.1."""
from __future__ import annotations

import base64
import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import yaml

from connectors import jira_target
from connectors.sql_store import open_store
from fake_jira import KR_FIELDS, KR_VALUE, FakeIssue, FakeJira, errors
from okrsync import delivery, publish, starter
from okrsync.config import load_plan
from okrsync.engine import RunOptions, Services, sync
from okrsync.publish import Delivery, idempotency_key
from okrsync.registry import Registry, default_registry

AS_OF = datetime(2026, 11, 15, 12, 0, tzinfo=timezone.utc)


@pytest.fixture(autouse=True)
def now(monkeypatch):
    """Runs happen at AS_OF (okrsync.engine.now, the engine's clock hook), so the statuses sent do not
    depend on the day the suite runs."""
    from okrsync import engine

    monkeypatch.setattr(engine, "now", lambda: AS_OF)
EMAIL, TOKEN = "okr-bot@example.com", "jira-CANARY-t0ken-never-shown"
TARGETS = Registry({"jira": jira_target}, kind="publish target", problems=publish.contract_problems)
KEYS = {"a": "OKR-11", "b": "OKR-12", "c": "OKR-13"}


def site(deployment: str = "Cloud", **options) -> FakeJira:
    issues = [FakeIssue(1, project="OKR", type="Objective", summary="Make checkout fast")]
    issues += [FakeIssue(n, project="OKR", type="Key Result", summary=f"Key result {n}", parent="OKR-1")
               for n in (11, 12, 13)]
    issues += [FakeIssue(14, project="OKR", type="Key Result", summary="Orphan KR")]
    return FakeJira(issues, deployment=deployment, email=EMAIL, token=TOKEN, fields=KR_FIELDS, **options)


@pytest.fixture(params=["Cloud", "Server"])
def jira(request, monkeypatch):
    monkeypatch.setenv("JIRA_TOKEN", TOKEN)
    monkeypatch.setenv("JIRA_EMAIL", EMAIL)
    with site(request.param) as fake:
        yield fake


@pytest.fixture
def cloud(monkeypatch):
    monkeypatch.setenv("JIRA_TOKEN", TOKEN)
    monkeypatch.setenv("JIRA_EMAIL", EMAIL)
    with site() as fake:
        yield fake


def write_config(tmp_path: Path, jira: FakeJira, values: dict[str, float], extra: str = ", comment: on_change",
                 keys: dict[str, str] = KEYS, kr_extra: dict[str, str] | None = None) -> Path:
    csv = tmp_path / "m.csv"
    csv.write_text("name,value\n" + "".join(f"{k},{v}\n" for k, v in values.items()), encoding="utf-8")
    email = ' email: "${JIRA_EMAIL}",' if jira.cloud else ""
    lines = ["period: 2026-Q4", "sources:", "  m: {type: spreadsheet, path: m.csv}", "publish:",
             f"  okr-jira: {{type: jira, url: \"{jira.url}\",{email} token: \"${{JIRA_TOKEN}}\", field: KR value{extra}}}",
             "objectives:", "  - id: obj", "    title: Obj", "    key_results:"]
    for i, k in enumerate(values):
        more = (kr_extra or {}).get(k, "")
        mapped = f", publish: {{okr-jira: {keys[k]}}}" if k in keys else ""
        lines.append(f"      - {{id: {k}, title: {k}, source: m, metric: {{cell: B{i + 2}}}, baseline: 0, target: 100"
                     f"{mapped}{more}}}")
    path = tmp_path / "okrs.yaml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def run(path: Path, tmp_path: Path) -> dict:
    plan = load_plan([str(path)], store=f"sqlite:///{tmp_path / 'okr.db'}", targets=TARGETS)
    return sync(plan, RunOptions(), Services(registry=default_registry(), open_store=open_store,
                                                        targets=TARGETS))


def paths(jira: FakeJira, start: int = 0) -> list[str]:
    return [f"{c.method} {c.path}" for c in jira.calls[start:]]


def test_each_value_is_set_once_with_one_comment_and_a_rerun_sends_nothing(jira, tmp_path):
    v = "3" if jira.cloud else "2"
    search = "POST /rest/api/2/search/jql" if jira.cloud else "POST /rest/api/2/search"
    path = write_config(tmp_path, jira, {"a": 10, "b": 45, "c": 100})
    first = run(path, tmp_path)["publish"]["okr-jira"]
    assert (first["delivered"], first["failed"], first["calls"]) == (3, 0, 9)
    assert paths(jira)[:3] == ["GET /rest/api/2/serverInfo", "GET /rest/api/2/field", search]
    assert sorted(paths(jira)[3:]) == sorted([f"PUT /rest/api/{v}/issue/OKR-1{n}" for n in (1, 2, 3)]
                                             + [f"POST /rest/api/{v}/issue/OKR-1{n}/comment" for n in (1, 2, 3)])
    assert jira.calls[2].body["jql"] == 'key in ("OKR-11", "OKR-12", "OKR-13")'
    assert jira.calls[2].body["fields"] == [KR_VALUE, "updated", "comment"]
    assert [jira.value(k) for k in KEYS.values()] == [10.0, 45.0, 100.0]
    (comment,) = jira.comments("OKR-12")
    lines = comment.splitlines()
    assert lines[0] == "okr-sync: KR value is now 45 (from 0 to 100)."
    assert lines[1].startswith("Progress 45%, expected ") and lines[1].endswith("status: On track.")
    assert lines[2].startswith("Behind the number: file://") and lines[3].startswith("okr-sync delivery okr-sync-")
    body = jira.issue_state("OKR-12").comments[0]["body"]
    assert isinstance(body, dict if jira.cloud else str)             # ADF on Cloud (REST v3), text on Data Center

    second = run(path, tmp_path)["publish"]["okr-jira"]
    assert (second["delivered"], second["calls"]) == (0, 0)

    write_config(tmp_path, jira, {"a": 20, "b": 45, "c": 100})
    before = len(jira.calls)
    third = run(path, tmp_path)["publish"]["okr-jira"]
    assert (third["delivered"], third["calls"]) == (1, 5)
    assert paths(jira, before)[3:] == [f"PUT /rest/api/{v}/issue/OKR-11", f"POST /rest/api/{v}/issue/OKR-11/comment"]
    assert jira.value("OKR-11") == 20.0 and len(jira.comments("OKR-11")) == 2


def test_without_comments_only_the_field_is_set(cloud, tmp_path):
    path = write_config(tmp_path, cloud, {"a": 10}, extra=", comment: off")
    result = run(path, tmp_path)["publish"]["okr-jira"]
    assert (result["delivered"], result["calls"]) == (1, 4)
    assert cloud.calls[2].body["fields"] == [KR_VALUE, "updated"] and cloud.comments("OKR-11") == []


def test_a_value_a_person_set_is_kept_unless_the_key_result_says_overwrite(jira, tmp_path):
    path = write_config(tmp_path, jira, {"a": 10, "b": 20}, kr_extra={"b": ", on_manual: overwrite"})
    run(path, tmp_path)
    later = datetime.now(timezone.utc) + timedelta(seconds=5)
    jira.set_value("OKR-11", KR_VALUE, 41, when=later)               # people type over okr-sync's values
    jira.set_value("OKR-12", KR_VALUE, 7, when=later)
    write_config(tmp_path, jira, {"a": 12, "b": 22}, kr_extra={"b": ", on_manual: overwrite"})
    result = run(path, tmp_path)
    assert {r["id"]: r["published"] for r in result["key_results"]} == {
        "a": {"okr-jira": "kept the manual value 41 in okr-jira"}, "b": {"okr-jira": "delivered"}}
    assert (jira.value("OKR-11"), jira.value("OKR-12")) == (41, 22.0)
    assert len(jira.comments("OKR-11")) == 1 and len(jira.comments("OKR-12")) == 2


def test_an_issue_edited_elsewhere_keeps_getting_okr_sync_values(cloud, tmp_path):
    path = write_config(tmp_path, cloud, {"a": 10})
    run(path, tmp_path)
    cloud.set_value("OKR-11", "summary", "Renamed", when=datetime.now(timezone.utc) + timedelta(seconds=5))
    write_config(tmp_path, cloud, {"a": 12})
    assert run(path, tmp_path)["publish"]["okr-jira"]["delivered"] == 1     # `updated` moved, the value did not
    assert cloud.value("OKR-11") == 12.0


def deliveries(n: int = 1, value: float = 10.0) -> list[Delivery]:
    when = datetime(2026, 11, 15, 12, 0, tzinfo=timezone.utc)
    return [Delivery(id=i + 1, target="okr-jira", kr_id=f"kr{i}", external_id=f"OKR-1{i + 1}",
                     idempotency_key=idempotency_key("okr-jira", f"kr{i}", when, value), value=value, progress=0.1,
                     expected=0.5, status="off_track", observed_at=when, kind="automatic", title="KR", objective_id="o",
                     objective_title="O", baseline=0.0, target_value=100.0, link="https://example.com/x")
            for i in range(n)]


def target(jira: FakeJira, **options) -> jira_target.TargetConfig:
    return jira_target.TargetConfig.model_validate({"type": "jira", "url": jira.url, "email": EMAIL if jira.cloud else None,
                                                    "token": "${JIRA_TOKEN}", "comment": "on_change", **options})


def deliver(jira: FakeJira, batch: list[Delivery], **options) -> dict:
    config = target(jira, **options)
    return publish.deliver_batch(jira_target, config, batch).results


def test_a_delivery_retried_after_a_run_died_is_neither_written_nor_commented_twice(jira):
    batch = deliveries(2)
    assert {r.outcome for r in deliver(jira, batch).values()} == {"delivered"}
    writes = len(jira.writes())
    again = deliver(jira, batch)                                       # the claim expired: the same check-ins again
    assert {r.outcome for r in again.values()} == {"delivered"}
    assert len(jira.writes()) == writes and [len(jira.comments(k)) for k in ("OKR-11", "OKR-12")] == [1, 1]


def test_when_the_search_shows_only_some_comments_the_newest_are_read_before_commenting(cloud):
    cloud.comment_page = 2
    state = cloud.issue_state("OKR-11")
    for n in range(3):
        state.comments.append({"id": str(n), "body": f"older comment {n}", "created": "", "updated": ""})
    batch = deliveries(1)
    deliver(cloud, batch)
    assert len(cloud.comments("OKR-11")) == 4
    before = len(cloud.calls)
    deliver(cloud, batch)
    assert paths(cloud, before)[3:] == ["GET /rest/api/2/issue/OKR-11/comment"]     # no edit, no second comment
    assert len(cloud.comments("OKR-11")) == 4


def test_an_unknown_issue_fails_alone_and_the_others_are_written(jira, tmp_path):
    path = write_config(tmp_path, jira, {"a": 10, "b": 20}, keys={"a": "OKR-99", "b": "OKR-12"})
    result = run(path, tmp_path)["publish"]["okr-jira"]
    assert result["delivered"] == 1 and result["calls"] == 6           # one more search, without OKR-99
    (message,) = result["messages"]
    assert message == ("a: Jira has no issue OKR-99 (An issue with key 'OKR-99' does not exist for field 'key'), or "
                       "the account behind environment variable JIRA_TOKEN cannot see it: check the key result's "
                       "`publish:` id")
    assert jira.value("OKR-12") == 20.0


def test_a_field_missing_from_the_edit_screen_fails_that_issue_with_jiras_words(jira, tmp_path):
    jira.off_screen.add("OKR-11")
    path = write_config(tmp_path, jira, {"a": 10, "b": 20})
    result = run(path, tmp_path)["publish"]["okr-jira"]
    (message,) = result["messages"]
    assert message == ('a: Jira refused to set "KR value" (customfield_10042) on OKR-11 (HTTP 400): Jira says '
                       "\"customfield_10042: Field 'customfield_10042' cannot be set. It is not on the appropriate "
                       "screen, or unknown.\": add the field to the edit screen of the issue's type, and check the "
                       "account may edit the issue")
    assert result["delivered"] == 1 and jira.comments("OKR-11") == []


def test_an_edit_or_a_comment_jira_forbids_fails_that_issue_only(cloud, tmp_path):
    forbidden = (403, {}, errors("You do not have permission to edit issues in this project."))
    cloud.answers[("PUT", "/rest/api/3/issue/OKR-11")] = forbidden
    cloud.answers[("POST", "/rest/api/3/issue/OKR-12/comment")] = (403, {}, errors("No permission to add comments."))
    path = write_config(tmp_path, cloud, {"a": 10, "b": 20, "c": 30})
    result = run(path, tmp_path)["publish"]["okr-jira"]
    assert result["delivered"] == 1 and cloud.value("OKR-13") == 30.0
    assert result["messages"] == [
        'a: Jira refused the edit of OKR-11 (HTTP 403): Jira says "You do not have permission to edit issues in this '
        'project.": the account behind environment variable JIRA_TOKEN needs the Edit issues permission in that project',
        'b: value set, comment not added: Jira refused the comment of OKR-12 (HTTP 403): Jira says "No permission to '
        'add comments.": the account behind environment variable JIRA_TOKEN needs the Add comments permission in that '
        "project"]
    cloud.answers.clear()
    again = run(path, tmp_path)["publish"]["okr-jira"]                  # retried: a's edit, b's comment only
    assert again["delivered"] == 2 and cloud.value("OKR-11") == 10.0
    assert [len(cloud.comments(k)) for k in ("OKR-11", "OKR-12", "OKR-13")] == [1, 1, 1]


@pytest.mark.parametrize("name, expected", [
    ("KR note", 'Jira field "KR note" (customfield_10043) holds string values, not numbers: name a number field '
                "such as Story Points (`field:` of the publish target)"),
    ("KR valeu", 'no Jira field is named "KR valeu"'),
])
def test_a_field_that_is_not_a_number_field_fails_the_batch_in_one_line(cloud, tmp_path, name, expected):
    path = write_config(tmp_path, cloud, {"a": 10, "b": 20})
    path.write_text(path.read_text().replace("field: KR value", f"field: {name}"), encoding="utf-8")
    result = run(path, tmp_path)["publish"]["okr-jira"]
    assert result["failed"] == 2 and all(expected in m for m in result["messages"]), result["messages"]
    assert not cloud.writes()


def test_the_field_can_be_named_by_its_id(cloud, tmp_path):
    path = write_config(tmp_path, cloud, {"a": 10}, extra=", comment: off")
    path.write_text(path.read_text().replace("field: KR value", f"field: {KR_VALUE}"), encoding="utf-8")
    assert run(path, tmp_path)["publish"]["okr-jira"]["delivered"] == 1 and cloud.value("OKR-11") == 10.0


def test_a_rate_limit_is_waited_out_as_jira_asks(cloud, tmp_path, clock):
    path = write_config(tmp_path, cloud, {"a": 10})
    cloud.queued = [(429, {"Retry-After": "7"}, errors("Rate limit exceeded."))] * 2
    result = run(path, tmp_path)["publish"]["okr-jira"]
    assert result["delivered"] == 1 and clock.waits == [7.0, 7.0]


def test_jira_down_for_a_run_keeps_the_check_ins_pending_and_the_next_run_delivers(cloud, tmp_path):
    path = write_config(tmp_path, cloud, {"a": 10, "b": 20})
    cloud.queued = [(503, {}, errors("Service Unavailable"))] * 10
    down = run(path, tmp_path)
    assert down["counts"]["written"] == 2 and down["publish"]["okr-jira"]["failed"] == 2
    assert all("Jira is unavailable (HTTP 503): try again later" in m for m in down["publish"]["okr-jira"]["messages"])
    cloud.queued = []
    back = run(path, tmp_path)["publish"]["okr-jira"]
    assert back["delivered"] == 2 and cloud.value("OKR-12") == 20.0
    with open_store(f"sqlite:///{tmp_path / 'okr.db'}") as store:
        (state,) = store.delivery_states()
    assert (state["delivered"], state["pending"]) == (2, 0)


def test_a_refused_token_fails_in_one_line_and_no_token_shows_even_when_jira_echoes_it(cloud, tmp_path, monkeypatch,
                                                                                         caplog):
    basic = base64.b64encode(f"{EMAIL}:{TOKEN}".encode()).decode()
    path = write_config(tmp_path, cloud, {"a": 10})
    cloud.queued = [(400, {}, errors(f"Bad header: Basic {basic} for {TOKEN}"))]
    echoed = run(path, tmp_path)["publish"]["okr-jira"]
    assert "Bad header: Basic *** for ***" in echoed["messages"][0]
    monkeypatch.setenv("JIRA_TOKEN", "wrong-token-also-secret")
    refused = run(path, tmp_path)
    (message,) = refused["publish"]["okr-jira"]["messages"]
    assert message.startswith("a: Jira refused the credentials (HTTP 401): check the API token in environment variable "
                              "JIRA_TOKEN and the email in environment variable JIRA_EMAIL")
    shown = json.dumps([echoed, refused], default=str) + caplog.text + (tmp_path / "okr.db").read_bytes().decode("latin-1")
    for secret in (TOKEN, basic, "wrong-token-also-secret"):
        assert secret not in shown


def test_a_malformed_or_shared_issue_key_fails_before_any_call(cloud):
    batch = deliveries(2)
    bad = [Delivery(**{**batch[0].__dict__, "external_id": "okr 12"}),
           Delivery(**{**batch[1].__dict__, "external_id": "OKR-11", "kr_id": "other"}),
           Delivery(**{**batch[0].__dict__, "id": 9, "external_id": "OKR-11"})]
    results = deliver(cloud, bad)
    assert results[1].message == "'okr 12' is not a Jira issue key (like OKR-12): fix the key result's `publish:` id"
    assert results[2].message == results[9].message == ("OKR-11 is the issue of several key results (other, kr0): "
                                                        "give each key result its own issue")
    assert cloud.calls == []


def test_check_reports_missing_issues_and_fields_off_the_edit_screen(jira, tmp_path):
    jira.off_screen.add("OKR-12")
    path = write_config(tmp_path, jira, {"a": 10, "b": 20, "c": 30}, keys={"a": "OKR-11", "b": "OKR-12", "c": "OKR-77"})
    plan = load_plan([str(path)], store=f"sqlite:///{tmp_path / 'okr.db'}", targets=TARGETS)
    report = delivery.check_targets(plan, TARGETS)["okr-jira"]
    assert report["problems"] == [
        "b: \"KR value\" is not on the edit screen of OKR-12 (or the account may not edit it): add the field to the "
        "screen of the issue's type, and give the account Edit issues",
        "c: Jira has no issue OKR-77 (An issue with key 'OKR-77' does not exist for field 'key'), or the account "
        "cannot see it: fix its `publish:` id"]
    assert report["calls"] == 4 and not jira.writes()                  # serverInfo, fields, 2 searches


def test_settings_are_the_sources_plus_the_field_and_comment(tmp_path):
    config = jira_target.TargetConfig.model_validate({"type": "jira", "url": "https://acme.atlassian.net",
                                                      "token": "${JIRA_TOKEN}", "comment": False})
    assert (config.field, config.comment) == ("KR value", "off")
    assert jira_target.check(config) == ["acme.atlassian.net is Jira Cloud, which signs in with an email and an API "
                                         "token: add `email:` (the token's account) next to `token:`"]
    with pytest.raises(ValueError, match="plain-text secrets are not allowed"):
        jira_target.TargetConfig.model_validate({"type": "jira", "url": "https://jira.acme.com", "token": "abc123"})


def test_import_reads_key_result_issues_with_their_objectives(monkeypatch, tmp_path):
    monkeypatch.setenv("JIRA_TOKEN", TOKEN)
    with site("Server") as dc:
        dc.issues[1] = FakeIssue(11, project="OKR", type="Key Result", summary="Raise NPS", epic="OKR-1")
        text, count = starter.import_config(TARGETS, "jira", [f"url={dc.url}", "token=${JIRA_TOKEN}",
                                                              "jql=project = OKR AND type = \"Key Result\""],
                                            "okr-jira", tmp_path)
    assert count == 4
    doc = yaml.safe_load(text)
    titles = {o["title"]: [(kr["id"], kr["title"], kr["publish"]) for kr in o["key_results"]] for o in doc["objectives"]}
    assert titles == {"Make checkout fast": [("okr-11", "Raise NPS", {"okr-jira": "OKR-11"}),
                                             ("okr-12", "Key result 12", {"okr-jira": "OKR-12"}),
                                             ("okr-13", "Key result 13", {"okr-jira": "OKR-13"})],
                      "Key results from Jira": [("okr-14", "Orphan KR", {"okr-jira": "OKR-14"})]}
    assert doc["publish"]["okr-jira"]["token"] == "${JIRA_TOKEN}"


def test_the_double_refuses_what_jira_refuses(cloud, monkeypatch):
    config = target(cloud)
    client = jira_target.connect(config)
    try:
        client.detect()
        assert client.add_comment("OKR-11", "plain text on REST v3").status == 400    # v3 takes ADF only
        assert client.edit("OKR-11", KR_VALUE, "41").status == 400                     # a number field takes numbers
        assert client.edit("OKR-404", KR_VALUE, 1).status == 404
        assert client.edit("OKR-11", KR_VALUE, 41) is None and cloud.value("OKR-11") == 41
    finally:
        client.close()


def test_okr_sync_import_and_publish_check_on_the_command_line(cli, monkeypatch, tmp_path):
    from okrsync.registry import default_targets

    if "jira" not in default_targets():
        pytest.skip("the jira publish target is not registered in this environment's installed metadata "
                    "(pip install -e . registers it)")
    monkeypatch.setenv("JIRA_TOKEN", TOKEN)
    with site("Server") as dc:
        dc.off_screen.add("OKR-14")
        imported = cli("import", "jira", "-s", f"url={dc.url}", "-s", "token=${JIRA_TOKEN}", "-s",
                       "jql=project = OKR AND issuetype = \"Key Result\"", "--out", "okrs.yaml")
        assert imported.exit_code == 0, imported.output
        assert "Wrote 4 key result(s) to okrs.yaml" in imported.output
        doc = yaml.safe_load((tmp_path / "okrs.yaml").read_text(encoding="utf-8"))
        (tmp_path / "m.csv").write_text("name,value\nx,1\n", encoding="utf-8")
        doc["sources"] = {"m": {"type": "spreadsheet", "path": "m.csv"}}
        for objective in doc["objectives"]:
            for kr in objective["key_results"]:
                kr.update(source="m", metric={"cell": "B2"}, target=10)
        (tmp_path / "okrs.yaml").write_text(yaml.safe_dump(doc), encoding="utf-8")
        checked = cli("publish", "okrs.yaml", "--check")
    assert checked.exit_code == 1, checked.output
    assert checked.output.splitlines() == [
        "okr-jira (jira): 1 problem(s), 4 key result(s) mapped, 3 call(s)",
        '  okr-14: "KR value" is not on the edit screen of OKR-14 (or the account may not edit it): add the field '
        "to the screen of the issue's type, and give the account Edit issues"]
    assert TOKEN not in imported.output + checked.output
