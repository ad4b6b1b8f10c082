"""The Notion publish target end to end: okr-sync's engine (and CLI) against tests/fake_notion.py over
real HTTP, with a real SQLite store. The double's clock is the one the connector's waits move
(conftest's FakeClock follows it), so rate limits and Retry-After are enforced without sleeping."""
from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

import connectors.notion as notion
from conftest import EXAMPLE
from connectors import _http
from connectors._notion_client import parse_id
from connectors.sql_store import open_store
from fake_notion import FakeNotion, okr_workspace, schema
from okrsync import publish, starter
from okrsync.config import load_plan
from okrsync.delivery import check_targets
from okrsync.engine import RunOptions, Services, sync
from okrsync.errors import ConfigError
from okrsync.registry import Registry, default_registry, default_targets

TOKEN = "secret_N0tion-Canary-7f3a9c-never-shown"
TARGETS = Registry({"notion": notion}, kind="publish target", problems=publish.contract_problems)
EXAMPLE_KRS = ["checkout-nps", "checkout-p95", "checkout-success", "self-serve-customers", "self-serve-revenue",
               "weekly-signups", "activated-accounts"]
_CLASS_NAME = re.compile(r"\b[A-Z][A-Za-z]+(?:Error|Exception)\b|Traceback")


@pytest.fixture
def server(monkeypatch):
    monkeypatch.setenv("NOTION_TOKEN", TOKEN)
    with FakeNotion(TOKEN) as fake:
        _http.clock.follow(fake.now, fake.advance)       # the FakeClock of tests/conftest.py
        yield fake


def one_line(message: str) -> bool:
    """A clear error: one line, no class names or tracebacks, a fix after a colon, no token."""
    return bool(message) and "\n" not in message and not _CLASS_NAME.search(message) and ": " in message \
        and TOKEN not in message and len(message) < 700


def publish_block(server: FakeNotion, key_results: str, checkins: str | None = None, extra: str = "") -> str:
    lines = ["publish:", "  okr-notion:", "    type: notion", '    token: "${NOTION_TOKEN}"',
             f"    key_results: https://www.notion.so/acme/OKRs-{key_results.replace('-', '')}?v=0f1e2d3c",
             f"    base_url: {server.url}"]
    if checkins:
        lines.append(f"    checkins: {checkins}")
    return "\n".join(lines + [f"    {x}" for x in extra.splitlines() if x]) + "\n"


def example_with_notion(tmp_path: Path, server: FakeNotion, **kw) -> tuple[Path, object]:
    """config/example.yaml copied into tmp_path, publishing to a Notion workspace set up in the double."""
    space = okr_workspace(server, EXAMPLE_KRS)
    shutil.copytree(EXAMPLE.parent / "data", tmp_path / "data")
    path = tmp_path / "example.yaml"
    path.write_text(EXAMPLE.read_text(encoding="utf-8") + publish_block(server, space.krs_db, space.checkins_db, **kw),
                    encoding="utf-8")
    return path, space


def small_config(tmp_path: Path, server: FakeNotion, values: dict[str, float], space, *, checkins: bool = True,
                 extra: str = "", kr_extra: dict[str, str] | None = None) -> Path:
    """Key results `values` read from one CSV (baseline 0, target 100), publishing to `space`."""
    (tmp_path / "m.csv").write_text("name,value\n" + "".join(f"{k},{v}\n" for k, v in values.items()), encoding="utf-8")
    lines = ["period: 2026-Q4", "sources:", "  m: {type: spreadsheet, path: m.csv}",
             publish_block(server, space.krs_db, space.checkins_db if checkins else None, extra).rstrip("\n"),
             "objectives:", "  - id: obj", "    title: Obj", "    key_results:"]
    for i, k in enumerate(values):
        more = f", {kr_extra[k]}" if kr_extra and k in kr_extra else ""
        lines.append(f"      - {{id: {k}, title: {k}, source: m, metric: {{cell: B{i + 2}}}, baseline: 0, target: 100{more}}}")
    path = tmp_path / "okrs.yaml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def store_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'okr.db'}"


def run(path: Path, tmp_path: Path, **options) -> dict:
    plan = load_plan([str(path)], store=store_url(tmp_path), targets=TARGETS)
    return sync(plan, RunOptions(**options), Services(registry=default_registry(), open_store=open_store, targets=TARGETS))


# ---------------------------------------------------------------------------- done when (issue #12)


def test_the_example_config_synced_twice_shows_one_row_per_key_result_and_no_duplicate_check_ins(tmp_path, server):
    path, space = example_with_notion(tmp_path, server)
    first = run(path, tmp_path)
    assert first["publish"]["okr-notion"] | {"seconds": 0} == {
        "type": "notion", "delivered": 7, "kept_manual": 0, "failed": 0, "calls": 20, "seconds": 0, "messages": []}
    second = run(path, tmp_path)
    assert second["counts"]["written"] == 0
    assert second["publish"]["okr-notion"]["delivered"] == 0 and second["publish"]["okr-notion"]["calls"] == 0

    measured = {r["id"]: r for r in first["key_results"]}
    rows = server.rows(space.krs)
    assert sorted(r["KR id"] for r in rows) == sorted(EXAMPLE_KRS)           # one row per key result, no new rows
    for row in rows:
        kr = measured[row["KR id"]]
        assert row["Current"] == kr["value"]
        assert row["Progress"] == pytest.approx(kr["progress"], abs=1e-6)   # a fraction: Notion's percent format shows it
        assert row["Status"] == {"on_track": "On track", "at_risk": "At risk", "off_track": "Off track",
                                 "done": "Done"}[kr["status"]]
        assert row["Last sync"] and row["Source"] == kr["link"]
    checkins = server.rows(space.checkins)
    assert sorted(c["KR id"] for c in checkins) == sorted(EXAMPLE_KRS)      # one check-in row each, none twice
    assert {c["KR id"]: c["Value"] for c in checkins} == {k: measured[k]["value"] for k in EXAMPLE_KRS}
    assert server.count("PATCH") == 7 and server.count("POST", "/v1/pages") == 7
    assert server.count(status=429) == 0


def test_okr_sync_run_publishes_to_notion_and_a_rerun_sends_nothing(tmp_path, server, cli):
    if "notion" not in default_targets().types():
        pytest.skip("the notion target's entry point is not installed here (pip install -e . registers it)")
    path, space = example_with_notion(tmp_path, server)
    first = cli("run", str(path))
    assert first.exit_code == 0, first.output
    assert "okr-notion (notion): 7 delivered, 20 call(s)" in first.output
    second = cli("run", str(path))
    assert second.exit_code == 0 and "okr-notion (notion): 0 delivered, 0 call(s)" in second.output
    assert len(server.rows(space.checkins)) == 7
    assert TOKEN not in first.output + second.output


# ---------------------------------------------------------------------------- writes and the manual-value rule


def test_a_changed_value_updates_its_row_and_adds_one_check_in_in_the_same_minute(tmp_path, server):
    space = okr_workspace(server, ["a", "b"])
    path = small_config(tmp_path, server, {"a": 10, "b": 20}, space)
    run(path, tmp_path)
    before = server.count()
    small_config(tmp_path, server, {"a": 11, "b": 20}, space)
    again = run(path, tmp_path)
    assert again["publish"]["okr-notion"]["delivered"] == 1
    assert server.row_of(space.krs, "KR id", "a")["Current"] == 11
    assert sorted((c["KR id"], c["Value"]) for c in server.rows(space.checkins)) == [("a", 10), ("a", 11), ("b", 20)]
    # reads: 2 per database + one query each; writes: one check-in, one row
    assert server.count() - before == 2 + 1 + 2 + 1 + 1 + 1


def test_a_newer_manual_value_in_notion_is_kept_and_on_manual_overwrite_replaces_it(tmp_path, server):
    space = okr_workspace(server, ["a"])
    path = small_config(tmp_path, server, {"a": 10}, space)
    run(path, tmp_path)
    server.edit(space.row_ids["a"], "Current", 41)                       # a person types 41 in Notion
    small_config(tmp_path, server, {"a": 12}, space)
    kept = run(path, tmp_path)
    assert kept["publish"]["okr-notion"]["kept_manual"] == 1
    assert kept["key_results"][0]["published"] == {"okr-notion": "kept the manual value 41 in okr-notion"}
    assert server.row_of(space.krs, "KR id", "a")["Current"] == 41
    assert sorted(c["Value"] for c in server.rows(space.checkins)) == [10, 12]   # the check-in log still gets 12

    small_config(tmp_path, server, {"a": 13}, space, kr_extra={"a": "on_manual: overwrite"})
    overwritten = run(path, tmp_path)
    assert overwritten["publish"]["okr-notion"]["delivered"] == 1
    assert server.row_of(space.krs, "KR id", "a")["Current"] == 13


def test_a_manual_edit_in_the_minute_of_okr_syncs_own_write_is_still_kept(tmp_path, server):
    """Notion rounds last_edited_time down to the minute: an edit just after okr-sync wrote shows an
    earlier time than that write, and must not be taken for okr-sync's own."""
    space = okr_workspace(server, ["a"])
    path = small_config(tmp_path, server, {"a": 10}, space, checkins=False)
    run(path, tmp_path)
    server.edit(space.row_ids["a"], "Current", 41)
    small_config(tmp_path, server, {"a": 12}, space, checkins=False)
    assert run(path, tmp_path)["publish"]["okr-notion"]["kept_manual"] == 1
    assert server.row_of(space.krs, "KR id", "a")["Current"] == 41


def test_a_value_typed_before_the_first_sync_is_replaced_and_unrelated_edits_do_not_count_as_manual(tmp_path, server):
    space = okr_workspace(server, ["a"])
    server.edit(space.row_ids["a"], "Current", 3, ago=180)              # a stale value from before okr-sync
    path = small_config(tmp_path, server, {"a": 10}, space, checkins=False)
    assert run(path, tmp_path)["publish"]["okr-notion"]["delivered"] == 1
    server.edit(space.row_ids["a"], "Name", "renamed")                   # a person edits another property
    small_config(tmp_path, server, {"a": 12}, space, checkins=False)
    assert run(path, tmp_path)["publish"]["okr-notion"]["delivered"] == 1
    assert server.row_of(space.krs, "KR id", "a")["Current"] == 12


# ---------------------------------------------------------------------------- exactly once


def test_a_run_that_died_after_notion_took_its_writes_is_not_delivered_twice(tmp_path, server):
    space = okr_workspace(server, ["a", "b"])
    path = small_config(tmp_path, server, {"a": 10, "b": 20}, space)
    run(path, tmp_path)
    writes = server.count("PATCH") + server.count("POST", "/v1/pages")
    import sqlite3

    db = sqlite3.connect(tmp_path / "okr.db")                            # as if the run died before recording
    db.execute("UPDATE okr_outbox SET state = 'pending', delivered_at = NULL, sent_value = NULL")
    db.commit()
    db.close()
    again = run(path, tmp_path)
    assert again["publish"]["okr-notion"]["delivered"] == 2
    assert server.count("PATCH") + server.count("POST", "/v1/pages") == writes   # found there: nothing sent again
    assert len(server.rows(space.checkins)) == 2


def test_a_check_in_row_whose_answer_was_lost_is_found_by_the_next_run_not_created_again(tmp_path, server):
    space = okr_workspace(server, ["a"])
    server.fail(504, "gateway_timeout", path="/v1/pages", method="POST", after=True)   # created, answer lost
    path = small_config(tmp_path, server, {"a": 10}, space)
    first = run(path, tmp_path)
    (message,) = first["publish"]["okr-notion"]["messages"]
    assert one_line(message) and message.startswith("a: Notion answered HTTP 504 gateway_timeout when asked to add "
                                                     'the check-in row of a to the Notion database "Check-ins"')
    assert "may have done it: the next run looks before doing it again" in message
    assert server.count("POST", "/v1/pages") == 1                       # not retried: it may have been taken
    second = run(path, tmp_path)
    assert second["publish"]["okr-notion"]["delivered"] == 1
    assert len(server.rows(space.checkins)) == 1


# ---------------------------------------------------------------------------- faults


def test_notion_down_for_a_run_leaves_the_check_ins_pending_and_the_next_run_delivers_them(tmp_path, server):
    space = okr_workspace(server, ["a", "b"])
    server.down = True
    path = small_config(tmp_path, server, {"a": 10, "b": 20}, space)
    down = run(path, tmp_path)
    assert down["counts"]["written"] == 2                                # the store has them ...
    report = down["publish"]["okr-notion"]
    assert report["failed"] == 2 and report["calls"] == 4                # ... one request, tried 4 times
    assert all(one_line(m) and "HTTP 503 service_unavailable" in m and "stay pending" in m for m in report["messages"])
    with open_store(store_url(tmp_path)) as store:
        (state,) = store.delivery_states()
        assert (state["pending"], state["failing"]) == (2, 2)
    server.down = False
    back = run(path, tmp_path)
    assert back["counts"]["written"] == 0 and back["publish"]["okr-notion"]["delivered"] == 2
    assert server.row_of(space.krs, "KR id", "b")["Current"] == 20 and len(server.rows(space.checkins)) == 2


def test_the_connector_stays_under_notions_rate_limit(tmp_path, server):
    space = okr_workspace(server, [f"kr{i}" for i in range(10)])
    path = small_config(tmp_path, server, {f"kr{i}": i for i in range(10)}, space)
    started = server.now()
    result = run(path, tmp_path)
    calls = result["publish"]["okr-notion"]["calls"]
    assert result["publish"]["okr-notion"]["delivered"] == 10 and calls == 26
    assert server.count(status=429) == 0                                 # never over 3 a second ...
    assert server.now() - started >= (calls - 1) / 3.0 - 0.01           # ... because it spaced them so


def test_a_429_is_waited_out_as_retry_after_asks(tmp_path, monkeypatch):
    monkeypatch.setenv("NOTION_TOKEN", TOKEN)
    with FakeNotion(TOKEN, rate=3.0, burst=1.0) as server:
        _http.clock.follow(server.now, server.advance)
        space = okr_workspace(server, ["a", "b", "c"])
        path = small_config(tmp_path, server, {"a": 1, "b": 2, "c": 3}, space, extra="rate_limit: 50")
        result = run(path, tmp_path)
        assert result["publish"]["okr-notion"]["delivered"] == 3
        limited = server.count(status=429)
        assert limited > 0 and result["publish"]["okr-notion"]["calls"] == 12 + limited
        assert 1.0 in server.waits                                       # Retry-After: 1, waited as asked
        assert len(server.rows(space.checkins)) == 3


def test_notion_asking_to_wait_too_long_ends_the_batch_with_when_to_run_again(tmp_path, server):
    space = okr_workspace(server, ["a"])
    server.fail(429, "rate_limited", times=1, retry_after=600)
    path = small_config(tmp_path, server, {"a": 10}, space)
    (message,) = run(path, tmp_path)["publish"]["okr-notion"]["messages"]
    assert one_line(message) and "429 rate_limited" in message and "run again after" in message


def test_the_target_deadline_delivers_what_it_can_and_the_next_run_the_rest(tmp_path, server):
    ids = [f"kr{i}" for i in range(12)]
    space = okr_workspace(server, ids)
    path = small_config(tmp_path, server, {k: i for i, k in enumerate(ids)}, space, extra="deadline: 4")
    first = run(path, tmp_path)["publish"]["okr-notion"]
    assert 0 < first["delivered"] < 12 and first["delivered"] + first["failed"] == 12
    assert all(one_line(m) and "deadline" in m for m in first["messages"])
    path = small_config(tmp_path, server, {k: i for i, k in enumerate(ids)}, space, extra="deadline: 60")
    second = run(path, tmp_path)["publish"]["okr-notion"]
    assert second["delivered"] == first["failed"] and second["failed"] == 0
    assert sorted(c["KR id"] for c in server.rows(space.checkins)) == sorted(ids)


# ---------------------------------------------------------------------------- bad settings, one line each


def _messages(result: dict) -> list[str]:
    return result["publish"]["okr-notion"]["messages"]


def test_a_database_not_shared_with_the_integration(tmp_path, server):
    space = okr_workspace(server, ["a"])
    server.databases[space.krs_db].shared = False
    (message,) = _messages(run(small_config(tmp_path, server, {"a": 1}, space), tmp_path))
    assert one_line(message) and "was not found, or is not shared with the integration" in message
    assert "Connections" in message and space.krs_db in message


def test_a_wrong_token_names_where_it_comes_from_never_its_value(tmp_path, server, monkeypatch):
    space = okr_workspace(server, ["a"])
    monkeypatch.setenv("NOTION_TOKEN", "secret_wrong-token-0000000000")
    (message,) = _messages(run(small_config(tmp_path, server, {"a": 1}, space), tmp_path))
    assert one_line(message) and "environment variable NOTION_TOKEN" in message and "401 unauthorized" in message
    assert "secret_wrong-token" not in message


def test_an_integration_without_write_capabilities(tmp_path, server):
    space = okr_workspace(server, ["a", "b"])
    server.read_only = True
    result = run(small_config(tmp_path, server, {"a": 1, "b": 2}, space, checkins=False), tmp_path)
    messages = _messages(result)
    assert len(messages) == 2 and all(one_line(m) and "403 restricted_resource" in m and "capabilities" in m
                                      for m in messages)
    assert server.count("PATCH") == 1                                    # the first refusal stops the batch


def test_missing_properties_and_wrong_types_are_named_with_the_fix(tmp_path, server):
    database, source = server.add_database("OKRs", {"Name": schema("title"), "KR id": schema("rich_text"),
                                                    "Current": schema("rich_text"), "Status": schema("select", options=[])})
    server.add_row(source, {"Name": "a", "KR id": "a"})

    class Space:
        krs_db, checkins_db = database, None
    (message,) = _messages(run(small_config(tmp_path, server, {"a": 1}, Space, checkins=False), tmp_path))
    assert one_line(message)
    assert 'has no properties "Progress" (Number), "Last sync" (Date), "Source" (URL): add them in Notion' in message
    assert "{progress: null, updated: null, link: null}" in message
    assert 'property "Current" is of type Text, okr-sync needs Number' in message
    assert server.count("PATCH") == 0


def test_a_missing_status_option_fails_that_key_result_only(tmp_path, server):
    database, source = server.add_database("OKRs", {"Name": schema("title"), "KR id": schema("rich_text"),
                                                    "Current": schema("number"), "Progress": schema("number"),
                                                    "Status": schema("status", options=["On track", "Done"])})
    for k in ("a", "b"):
        server.add_row(source, {"Name": k, "KR id": k})

    class Space:
        krs_db, checkins_db = database, None
    path = small_config(tmp_path, server, {"a": 100, "b": 1}, Space, checkins=False,
                        extra="properties: {updated: null, link: null}")
    result = run(path, tmp_path)                                         # a is done; b (1 of 100) is off track
    assert result["publish"]["okr-notion"]["delivered"] == 1
    (message,) = _messages(result)
    assert one_line(message) and message.startswith('b: the Status property "Status"')
    assert 'has no option "Off track": add it in Notion' in message
    assert server.row_of(source, "KR id", "a")["Status"] == "Done"


def test_a_key_result_without_a_row_fails_alone_and_says_how_to_add_it(tmp_path, server):
    space = okr_workspace(server, ["a"])
    result = run(small_config(tmp_path, server, {"a": 1, "zz": 2}, space), tmp_path)
    assert result["publish"]["okr-notion"]["delivered"] == 1
    (message,) = _messages(result)
    assert message == 'zz: no row of the Notion database "OKRs" has "KR id" zz: add one (or give the key result ' \
                      "`publish: false`)"


def test_a_database_with_several_data_sources_asks_for_one_and_a_data_source_id_works(tmp_path, server):
    database, _ = server.add_database("OKRs", {"Name": schema("title"), "KR id": schema("rich_text"),
                                               "Current": schema("number")}, sources=2)

    class Space:
        krs_db, checkins_db = database, None
    extra = "properties: {progress: null, status: null, updated: null, link: null}"
    (message,) = _messages(run(small_config(tmp_path, server, {"a": 1}, Space, checkins=False, extra=extra), tmp_path))
    assert one_line(message) and "has 2 data sources" in message and "Copy data source ID" in message
    source = server.databases[database].sources[1]
    server.add_row(source, {"Name": "a", "KR id": "a"})
    Space.krs_db = source
    assert run(small_config(tmp_path, server, {"a": 1}, Space, checkins=False, extra=extra),
               tmp_path)["publish"]["okr-notion"]["delivered"] == 1


def test_bad_settings_are_config_errors_with_the_file_line_and_fix(tmp_path, server):
    space = okr_workspace(server, ["a"])
    path = small_config(tmp_path, server, {"a": 1}, space, extra="properties: {colour: Red}")
    text = path.read_text().replace(f"OKRs-{space.krs_db.replace('-', '')}?v=0f1e2d3c", "not-a-notion-link")
    path.write_text(text)
    with pytest.raises(ConfigError) as error:
        load_plan([str(path)], store=store_url(tmp_path), targets=TARGETS)
    first, second = str(error.value).splitlines()
    assert first.endswith("okrs.yaml:8: publish.okr-notion: `key_results`: 'https://www.notion.so/acme/not-a-notion-link' "
                          "is not a Notion database URL or id: open the database as a full page and paste the URL from "
                          "the address bar (https://www.notion.so/<workspace>/<32 characters>?v=...), or its "
                          "32-character id")
    assert second.endswith("okrs.yaml:11: publish.okr-notion: unknown key `colour`: allowed keys: value, progress, "
                           "status, updated, link")


def test_the_token_never_shows_even_when_notion_echoes_it(tmp_path, server):
    space = okr_workspace(server, ["a"])
    server.echo_token = True
    server.fail(400, "validation_error", path="/v1/pages/", method="PATCH")
    result = run(small_config(tmp_path, server, {"a": 1}, space), tmp_path)
    (message,) = _messages(result)
    assert "validation_error" in message and "Bearer ***" in message and TOKEN not in message
    assert TOKEN not in str(result)
    assert TOKEN.encode() not in (tmp_path / "okr.db").read_bytes()


# ---------------------------------------------------------------------------- check and import


def test_publish_check_names_every_problem_and_nothing_is_written(tmp_path, server):
    space = okr_workspace(server, ["a"])
    server.sources[space.checkins].properties["Status"]["select"]["options"] = [{"id": "x", "name": "Done",
                                                                                "color": "green"}]
    plan = load_plan([str(small_config(tmp_path, server, {"a": 1, "zz": 2}, space))], store=store_url(tmp_path),
                     targets=TARGETS)
    checked = check_targets(plan, TARGETS)["okr-notion"]
    assert checked["calls"] == 5 and checked["key_results"] == 2
    assert checked["problems"] == [
        "the Select property \"Status\" of the Notion database \"Check-ins\" has no option 'On track', 'At risk', "
        "'Off track': add them in Notion",
        'zz: no row of the Notion database "OKRs" has "KR id" zz: add one']
    assert server.count("PATCH") == server.count("POST", "/v1/pages") == 0


def test_import_writes_a_starter_config_from_the_key_results_database(tmp_path, server):
    space = okr_workspace(server, [])
    src = server.sources[space.krs]
    src.properties["Objective"]["select"]["options"] += [{"id": "o1", "name": "Fast checkout", "color": "blue"},
                                                         {"id": "o2", "name": "Growth", "color": "red"}]
    server.add_row(space.krs, {"Name": "Raise NPS to 45", "KR id": "checkout-nps", "Baseline": 30, "Target": 45,
                               "Objective": "Fast checkout"})
    server.add_row(space.krs, {"Name": "Win 600 customers", "Target": 600, "Objective": "Growth"})
    text, count = starter.import_config(TARGETS, "notion", ["token=${NOTION_TOKEN}", f"key_results={space.krs_db}",
                                                             f"base_url={server.url}"], None, tmp_path)
    assert count == 2
    import yaml

    doc = yaml.safe_load(text)
    assert doc["publish"]["okr-notion"]["key_results"] == space.krs_db
    assert [(o["id"], [(k["id"], k["title"], k.get("baseline"), k["target"]) for k in o["key_results"]])
            for o in doc["objectives"]] == [
        ("fast-checkout", [("checkout-nps", "Raise NPS to 45", 30, 45)]),
        ("growth", [("win-600-customers", "Win 600 customers", None, 600)])]
    assert TOKEN not in text


def test_the_import_command_prints_the_starter_config(tmp_path, server, cli):
    if "notion" not in default_targets().types():
        pytest.skip("the notion target's entry point is not installed here (pip install -e . registers it)")
    space = okr_workspace(server, ["checkout-nps"])
    result = cli("import", "notion", "-s", "token=${NOTION_TOKEN}", "-s", f"key_results={space.krs_db}",
                 "-s", f"base_url={server.url}")
    assert result.exit_code == 0, result.output
    assert "id: checkout-nps" in result.output and TOKEN not in result.output


def test_rows_are_read_with_one_paginated_query_not_one_per_key_result(tmp_path, server):
    ids = [f"kr{i:03d}" for i in range(230)]
    space = okr_workspace(server, ids)
    path = small_config(tmp_path, server, {k: 1 for k in ids[:3]}, space, checkins=False)
    run(path, tmp_path)
    assert server.count("POST", "/query") == 3                          # 230 rows: pages of 100, 100, 30
    assert server.count("PATCH") == 3


def test_many_key_results_read_their_check_ins_by_date_alone_and_add_none_twice(tmp_path, server):
    ids = [f"kr{i:02d}" for i in range(25)]                              # more than one query names by id
    space = okr_workspace(server, ids)
    path = small_config(tmp_path, server, {k: i for i, k in enumerate(ids)}, space)
    assert run(path, tmp_path)["publish"]["okr-notion"]["delivered"] == 25
    import sqlite3

    db = sqlite3.connect(tmp_path / "okr.db")                            # every delivery pending again
    db.execute("UPDATE okr_outbox SET state = 'pending', delivered_at = NULL, sent_value = NULL")
    db.commit()
    db.close()
    posts = server.count("POST", "/v1/pages")
    assert run(path, tmp_path)["publish"]["okr-notion"]["delivered"] == 25
    assert server.count("POST", "/v1/pages") == posts and len(server.rows(space.checkins)) == 25


def test_settings_checked_offline(tmp_path, server):
    space = okr_workspace(server, ["a"])
    path = small_config(tmp_path, server, {"a": 1}, space,
                        extra="properties: {progress: Current}\ncheckin_properties: {kr: Value}")
    path.write_text(path.read_text().replace(f"checkins: {space.checkins_db}", f"checkins: {space.krs_db}"))
    with pytest.raises(ConfigError) as error:
        load_plan([str(path)], store=store_url(tmp_path), targets=TARGETS)
    shown = str(error.value)
    assert "`checkins:` names the key-results database: give the check-ins a database of their own" in shown
    assert '`properties`: value and progress both name the property "Current": each needs one of its own' in shown
    assert '`checkin_properties`: kr and value both name the property "Value"' in shown
    assert server.count() == 0


@pytest.mark.parametrize("text", [
    "https://www.notion.so/acme/OKRs-0123456789abcdef0123456789ABCDEF?v=fedcba9876543210fedcba9876543210",
    "https://www.notion.so/0123456789abcdef0123456789abcdef",
    "0123456789abcdef0123456789abcdef", " 01234567-89ab-cdef-0123-456789abcdef "])
def test_a_database_is_named_by_its_url_or_id(text):
    assert parse_id(text) == "01234567-89ab-cdef-0123-456789abcdef"


def test_a_link_that_is_no_database_says_what_to_paste():
    with pytest.raises(ValueError, match="paste the URL from the address bar"):
        parse_id("https://www.notion.so/acme/Quarterly-OKRs")


def test_a_login_page_or_a_closed_port_instead_of_notion(tmp_path, server):
    from localhttp import LocalServer

    def login_page(http, method):
        body = b"<!doctype html><html><body>Sign in to continue</body></html>"
        http.send_response(200)
        http.send_header("Content-Type", "text/html")
        http.send_header("Content-Length", str(len(body)))
        http.end_headers()
        http.wfile.write(body)

    space = okr_workspace(server, ["a"])
    path = small_config(tmp_path, server, {"a": 1}, space)
    proxy = LocalServer(login_page).start()
    try:
        path.write_text(path.read_text().replace(server.url, proxy.url))
        (message,) = _messages(run(path, tmp_path))
    finally:
        proxy.stop()
    assert one_line(message) and "Notion answered an HTML page when asked to read database" in message
    assert "check `base_url`" in message
    (closed,) = _messages(run(path, tmp_path))                          # the proxy is gone: nothing listens there
    assert one_line(closed) and "Notion could not be reached (connection refused)" in closed
    assert server.count() == 0
