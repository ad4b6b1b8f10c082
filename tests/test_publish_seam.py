"""The publish seam: targets named under `publish:`, check-ins queued in the store's outbox with the
write, delivered after it by the target's connector, retried on later runs, never twice, and a newer
manual value in the tool kept (okrsync.policy). The target here is an in-memory tool; each real
target (Notion, Google Sheets, Jira, Tability, webhook) has its own tests over HTTP."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Literal

import pytest
from pydantic import BaseModel, ConfigDict

from connectors.sql_store import open_store
from okrsync import policy
from okrsync.config import load_plan
from okrsync.engine import RunOptions, Services, sync
from okrsync.errors import ConfigError
from okrsync.publish import DeliveryResult, PublishError, delivered, failed, kept_manual
from okrsync.registry import Registry, default_registry



class MemoryConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: Literal["memory"]
    needs_ids: bool = False


class Tool:
    """An OKR tool in memory: each key result's value there and when it last changed."""

    def __init__(self):
        self.values: dict[str, tuple[float, datetime]] = {}
        self.writes: list[tuple[str, float, str]] = []     # (key result, value, idempotency key)
        self.down = False
        self.calls = 0


class MemoryTarget:
    TYPE = "memory"
    TargetConfig = MemoryConfig
    NEEDS_EXTERNAL_ID = False

    def __init__(self, tool: Tool):
        self.tool = tool

    def check(self, target):
        return []

    def connect(self, target):
        return self.tool

    def deliver(self, client, target, deliveries):
        client.calls += 1
        if client.down:
            raise PublishError("memory tool is down (503): it is retried on the next run")
        out: dict[int, DeliveryResult] = {}
        for d in deliveries:
            key = d.external_id or d.kr_id
            shown = client.values.get(key)
            current = policy.in_tool(shown[0] if shown else None, shown[1] if shown else None,
                                     last_sent_value=d.last_sent_value, last_sent_at=d.last_sent_at,
                                     observed_at=d.observed_at)
            decision = policy.decide(d.value, current, d.on_manual)
            if decision == "kept_manual":
                out[d.id] = kept_manual(d, current.value)
                continue
            if decision == "written":
                client.values[key] = (d.value, datetime.now(timezone.utc))
                client.writes.append((key, d.value, d.idempotency_key))
            out[d.id] = delivered(d)
        return out

    def probe(self, client, target, key_results):
        return [f"{kr}: not found in the memory tool" for kr, _ in key_results if kr.startswith("missing")]

    def close(self):
        pass


class NeedsIds(MemoryTarget):
    TYPE = "memory"
    NEEDS_EXTERNAL_ID = True


def write_config(tmp_path, values: dict[str, int], publish: str, kr_publish: dict[str, str] | None = None) -> str:
    csv = tmp_path / "m.csv"
    csv.write_text("name,value\n" + "".join(f"{k},{v}\n" for k, v in values.items()), encoding="utf-8")
    lines = ["period: 2026-Q4", "sources:", "  m: {type: spreadsheet, path: m.csv}", publish, "objectives:",
             "  - id: obj", "    title: Obj", "    key_results:"]
    for i, k in enumerate(values):
        extra = f", publish: {kr_publish[k]}" if kr_publish and k in kr_publish else ""
        lines.append(f"      - {{id: {k}, title: {k}, source: m, metric: {{cell: B{i + 2}}}, baseline: 0, target: 100{extra}}}")
    path = tmp_path / "okrs.yaml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return str(path)


def run(path, tmp_path, connector, **options):
    targets = Registry({"memory": connector}, kind="publish target",
                       problems=__import__("okrsync.publish", fromlist=["x"]).contract_problems)
    plan = load_plan([path], store=f"sqlite:///{tmp_path / 'okr.db'}", targets=targets)
    services = Services(registry=default_registry(), open_store=open_store, targets=targets)
    return sync(plan, RunOptions(**options), services)


PUBLISH = "publish:\n  okr-tool: {type: memory}"


def test_each_check_in_is_delivered_once_and_an_unchanged_value_is_not_sent_again(tmp_path):
    tool = Tool()
    path = write_config(tmp_path, {"a": 10, "b": 20}, PUBLISH)
    first = run(path, tmp_path, MemoryTarget(tool))
    assert first["publish"]["okr-tool"]["delivered"] == 2 and first["publish"]["okr-tool"]["failed"] == 0
    assert {r["id"]: r["published"] for r in first["key_results"]} == {"a": {"okr-tool": "delivered"},
                                                                        "b": {"okr-tool": "delivered"}}
    assert sorted((k, v) for k, v, _ in tool.writes) == [("a", 10), ("b", 20)]
    second = run(path, tmp_path, MemoryTarget(tool))
    assert second["publish"]["okr-tool"]["delivered"] == 0 and len(tool.writes) == 2
    write_config(tmp_path, {"a": 11, "b": 20}, PUBLISH)
    third = run(path, tmp_path, MemoryTarget(tool))
    assert third["publish"]["okr-tool"]["delivered"] == 1
    assert [(k, v) for k, v, _ in tool.writes][-1] == ("a", 11)
    assert len({key for _, _, key in tool.writes}) == 3              # one idempotency key per check-in


def test_a_tool_that_is_down_keeps_the_check_ins_pending_and_the_next_run_delivers_them(tmp_path):
    tool = Tool()
    tool.down = True
    path = write_config(tmp_path, {"a": 10}, PUBLISH)
    down = run(path, tmp_path, MemoryTarget(tool))
    assert down["counts"]["written"] == 1                            # the store has the check-in ...
    assert down["publish"]["okr-tool"]["failed"] == 1                # ... the tool does not, yet
    assert "memory tool is down (503)" in down["publish"]["okr-tool"]["messages"][0]
    with open_store(f"sqlite:///{tmp_path / 'okr.db'}") as store:
        (state,) = store.delivery_states()
        assert (state["pending"], state["failing"]) == (1, 1)
    tool.down = False
    back = run(path, tmp_path, MemoryTarget(tool))
    assert back["counts"]["written"] == 0 and back["publish"]["okr-tool"]["delivered"] == 1
    assert [(k, v) for k, v, _ in tool.writes] == [("a", 10)]


def test_a_newer_manual_value_in_the_tool_is_kept_unless_the_key_result_says_overwrite(tmp_path):
    tool = Tool()
    path = write_config(tmp_path, {"a": 10}, PUBLISH)
    run(path, tmp_path, MemoryTarget(tool))
    tool.values["a"] = (41.0, datetime.now(timezone.utc) + timedelta(seconds=1))      # a person typed 41
    write_config(tmp_path, {"a": 12}, PUBLISH)
    kept = run(path, tmp_path, MemoryTarget(tool))
    assert kept["publish"]["okr-tool"]["kept_manual"] == 1
    assert kept["key_results"][0]["published"] == {"okr-tool": "kept the manual value 41 in okr-tool"}
    assert tool.values["a"][0] == 41
    assert policy.decide(12, policy.Current(41, manual=True), "overwrite") == "written"


def test_a_target_that_needs_ids_skips_key_results_without_one_and_says_how_to_map_them(tmp_path):
    tool = Tool()
    path = write_config(tmp_path, {"a": 10, "b": 20}, "publish:\n  okr-jira: {type: memory}", {"a": "{okr-jira: OKR-12}"})
    result = run(path, tmp_path, NeedsIds(tool))
    assert [(k, v) for k, v, _ in tool.writes] == [("OKR-12", 10)]
    (line,) = result["publish"]["okr-jira"]["skipped"]
    assert line.startswith("b: not published to okr-jira") and "publish: {okr-jira: <its id>}" in line


def test_publish_false_opts_a_key_result_out(tmp_path):
    tool = Tool()
    path = write_config(tmp_path, {"a": 10, "b": 20}, PUBLISH, {"b": "false"})
    run(path, tmp_path, MemoryTarget(tool))
    assert [k for k, _, _ in tool.writes] == ["a"]


def test_a_dry_run_shows_what_each_target_would_get_and_sends_nothing(tmp_path):
    tool = Tool()
    path = write_config(tmp_path, {"a": 10}, PUBLISH)
    result = run(path, tmp_path, MemoryTarget(tool), dry_run=True)
    assert result["publish"]["okr-tool"]["would_write"] == [
        {"kr": "a", "external_id": None, "value": 10.0, "progress": 0.1, "status": result["key_results"][0]["status"]}]
    assert tool.writes == [] and tool.calls == 0


def test_publish_mistakes_are_reported_with_the_file_line_and_fix(tmp_path):
    path = write_config(tmp_path, {"a": 10, "b": 20}, "publish:\n  okr-tool: {type: memroy}\n  other: {type: memory, colour: red}",
                        {"a": "{okr-tol: X-1}", "b": "true"})
    with pytest.raises(ConfigError) as error:
        run(path, tmp_path, MemoryTarget(Tool()))
    text = str(error.value)
    assert "okrs.yaml:5: publish.okr-tool: unknown publish target type 'memroy': did you mean `memory`?" in text
    assert "publish.other" in text and "colour" in text
    assert "a: unknown publish target `okr-tol`" in text
    assert "b: " in text and "`publish: true` is the default" in text


def test_a_run_as_of_a_past_date_records_history_but_publishes_nothing(tmp_path):
    """A check-in measured as of a past day is history: sent to a tool it would set the key result there
    back to an older value than the one it shows."""
    tool = Tool()
    (tmp_path / "weekly.csv").write_text("week,n\n2026-10-05,10\n2026-11-02,20\n", encoding="utf-8")
    path = tmp_path / "okrs.yaml"
    path.write_text("period: 2026-Q4\nsources:\n  w: {type: spreadsheet, path: weekly.csv}\n" + PUBLISH + "\n"
                    "objectives:\n  - id: obj\n    title: Obj\n    key_results:\n"
                    "      - {id: a, title: a, source: w, metric: {column: n, aggregate: sum, date_column: week}, target: 100}\n",
                    encoding="utf-8")
    past = run(str(path), tmp_path, MemoryTarget(tool), as_of=datetime(2026, 10, 20).date())
    assert past["counts"]["written"] == 1 and past["key_results"][0]["value"] == 10
    assert past["publish"]["okr-tool"]["delivered"] == 0 and tool.writes == []
    with open_store(f"sqlite:///{tmp_path / 'okr.db'}") as store:
        assert store.delivery_states() == []
    present = run(str(path), tmp_path, MemoryTarget(tool))
    assert present["publish"]["okr-tool"]["delivered"] == 1
    assert [(k, v) for k, v, _ in tool.writes] == [("a", 30)]


def test_validate_notes_key_results_a_target_cannot_receive_without_their_id(tmp_path, monkeypatch, cli):
    from okrsync import registry

    targets = Registry({"memory": NeedsIds(Tool())}, kind="publish target",
                       problems=__import__("okrsync.publish", fromlist=["x"]).contract_problems)
    monkeypatch.setattr(registry, "default_targets", lambda: targets)
    monkeypatch.setattr("okrsync.config.default_targets", lambda: targets)
    path = write_config(tmp_path, {"a": 10, "b": 20}, "publish:\n  okr-jira: {type: memory}", {"a": "{okr-jira: OKR-12}"})
    result = cli("validate", path)
    assert result.exit_code == 0, result.output
    assert "1 publish targets" in result.output
    assert "note: b: not published to okr-jira, which needs the key result's id there" in result.output
    assert "note: a:" not in result.output


def test_a_tool_already_showing_the_value_being_delivered_is_no_manual_conflict():
    then = datetime(2026, 11, 15, 12, 0, tzinfo=timezone.utc)
    later = then + timedelta(hours=1)      # changed after okr-sync's last write there: a person's, if it differed
    shown = policy.in_tool(41.0, later, last_sent_value=38.0, last_sent_at=then, observed_at=then, delivering=41.0)
    assert shown == policy.Current(41.0, manual=False) and policy.decide(41.0, shown) == "unchanged"
    other = policy.in_tool(41.0, later, last_sent_value=38.0, last_sent_at=then, observed_at=then, delivering=44.0)
    assert other.manual and policy.decide(44.0, other) == "kept_manual"
