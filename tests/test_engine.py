"""The sync engine in plain Python (no Prefect): batches per source on a bounded executor, failures
kept to their key results, progress through a callback, the store and the webhook as services."""
from __future__ import annotations

import threading
import time
from types import SimpleNamespace
from typing import Literal

import pytest
from pydantic import BaseModel, ConfigDict

from connectors import spreadsheet
from connectors.sql_store import open_store
from okrsync.config import load_plan
from okrsync.contract import LocalClient
from okrsync.engine import LocalExecutor, RunOptions, Services, max_workers, sync
from okrsync.errors import ConfigError, SourceError, StoreError
from okrsync.measure import Measurement
from okrsync.registry import Registry


class FakeSource(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: Literal["fake"]
    delay: float = 0.0


class FakeMetric(BaseModel):
    model_config = ConfigDict(extra="forbid")
    value: float = 0.0
    explode: bool = False


class FakeConnector:
    """A source whose answers the test decides; it records how many batches ran at once."""

    TYPE = "fake"
    SourceConfig = FakeSource
    Metric = FakeMetric

    def __init__(self):
        self.lock = threading.Lock()
        self.running = 0
        self.most_at_once = 0

    def check(self, source, metrics):
        return []

    def connect(self, source):
        return LocalClient()

    def answer(self, client, source, requests):
        with self.lock:
            self.running += 1
            self.most_at_once = max(self.most_at_once, self.running)
        try:
            time.sleep(source.delay)
            if any(r.metric.explode for r in requests):
                raise RuntimeError("boom")
            client.calls += 1
            return {r.kr_id: Measurement(value=r.metric.value, calls=0) for r in requests}
        finally:
            with self.lock:
                self.running -= 1


def fake_config(tmp_path, sources: dict[str, float], krs: list[tuple[str, str, dict]], notify: str = "") -> str:
    (tmp_path / "survey.csv").write_text("question,score\nnps,38\n", encoding="utf-8")
    lines = ["period: 2026-Q4", notify, "sources:", "  survey: {type: spreadsheet, path: survey.csv}"]
    lines += [f"  {name}: {{type: fake, delay: {delay}}}" for name, delay in sources.items()]
    lines += ["objectives:", "  - id: obj", "    title: An objective", "    key_results:",
              "      - {id: nps, title: NPS, source: survey, metric: {cell: B2}, baseline: 30, target: 45}"]
    for kr_id, source, metric in krs:
        body = ", ".join(f"{k}: {str(v).lower() if isinstance(v, bool) else v}" for k, v in metric.items())
        lines.append(f"      - {{id: {kr_id}, title: {kr_id}, source: {source}, metric: {{{body}}}, target: 10}}")
    path = tmp_path / "okrs.yaml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return str(path)


@pytest.fixture
def fake():
    return FakeConnector()


@pytest.fixture
def registry(fake):
    return Registry({"fake": fake, "spreadsheet": spreadsheet})


def services(registry, store=open_store, **kw) -> Services:
    return Services(registry=registry, open_store=store, **kw)


def test_a_connector_that_raises_fails_only_its_own_batch(tmp_path, registry):
    config = fake_config(tmp_path, {"a": 0, "b": 0}, [("ok", "a", {"value": 4}), ("bad", "b", {"explode": True})])
    plan = load_plan([config], f"sqlite:///{tmp_path / 'okr.db'}", registry=registry)
    result = sync(plan, RunOptions(), services(registry))
    rows = {r["id"]: r for r in result["key_results"]}
    assert rows["ok"]["value"] == 4 and rows["ok"]["outcome"] == "written"
    assert rows["nps"]["value"] == 38 and rows["nps"]["outcome"] == "written"
    assert rows["bad"]["value"] is None
    assert rows["bad"]["error"].startswith("the fake connector failed unexpectedly (RuntimeError)")
    assert result["counts"] == {"key_results": 3, "synced": 2, "failed": 1, "written": 2, "unchanged": 0,
                                "kept_manual": 0}
    with open_store(plan.store_url) as store:
        assert {s.kr_id for s in store.key_results() if s.last} == {"ok", "nps"}


def test_batches_run_on_a_bounded_executor_and_progress_counts_every_key_result(tmp_path, registry, fake):
    sources = {f"s{i}": 0.05 for i in range(6)}
    krs = [(f"kr{i}", f"s{i}", {"value": i}) for i in range(6)]
    plan = load_plan([fake_config(tmp_path, sources, krs)], f"sqlite:///{tmp_path / 'okr.db'}", registry=registry)
    done: list[int] = []
    result = sync(plan, RunOptions(dry_run=True), services(registry, executor=LocalExecutor(2), on_progress=done.append))
    assert result["counts"]["synced"] == 7
    assert fake.most_at_once == 2                 # six sleeping batches, two threads
    assert sum(done) == 7
    assert result["source_calls"] == 6 + 1        # one per fake batch, one pass over the CSV


def test_a_store_that_fails_while_alerting_keeps_the_written_sync_and_reports_it(tmp_path, registry):
    notify = "notify: {webhook: '${OKR_TEST_HOOK}'}"
    config = fake_config(tmp_path, {"a": 0}, [("ok", "a", {"value": 4})], notify=notify)
    plan = load_plan([config], f"sqlite:///{tmp_path / 'okr.db'}", registry=registry)
    opened = []

    class AlertingFails:
        def __init__(self, store):
            self._store = store

        def __getattr__(self, name):
            return getattr(self._store, name)

        def update_watch(self, **kw):
            raise StoreError("could not write alert state to the OKR store: disk I/O error")

    def flaky_store(url):
        store = open_store(url)
        opened.append(store)
        return store if len(opened) == 1 else AlertingFails(store)   # the write works, alerting does not

    posted = []
    result = sync(plan, RunOptions(), services(registry, store=flaky_store,
                                               post_webhook=lambda *a, **k: posted.append(a) or 1))
    assert result["counts"]["written"] == 2 and result["counts"]["failed"] == 0
    assert result["alerts"]["errors"] == ["could not write alert state to the OKR store: disk I/O error"]
    assert posted == []
    with open_store(plan.store_url) as store:
        assert {s.kr_id for s in store.key_results() if s.last} == {"ok", "nps"}


def test_unknown_only_ids_are_a_config_error(tmp_path, registry):
    plan = load_plan([fake_config(tmp_path, {"a": 0}, [("ok", "a", {"value": 1})])], registry=registry)
    with pytest.raises(ConfigError, match="no key result has this id"):
        sync(plan, RunOptions(only=["nope"]), services(registry))


@pytest.mark.parametrize("raw", ["abc", "0", "-3", "1000"])
def test_a_bad_worker_count_is_a_config_error(monkeypatch, raw):
    monkeypatch.setenv("OKR_SYNC_MAX_WORKERS", raw)
    with pytest.raises(ConfigError, match="OKR_SYNC_MAX_WORKERS"):
        max_workers()


def test_a_missing_connector_fails_its_key_results_at_validation(tmp_path):
    config = fake_config(tmp_path, {"a": 0}, [("ok", "a", {"value": 1})])
    with pytest.raises(ConfigError) as caught:
        load_plan([config], registry=Registry({"spreadsheet": spreadsheet}))
    assert "unknown source type 'fake'" in str(caught.value)


def test_a_broken_plugin_is_reported_not_raised(tmp_path):
    broken = SimpleNamespace(TYPE="fake", SourceConfig=FakeSource, Metric=FakeMetric)   # no check/connect/answer
    config = fake_config(tmp_path, {"a": 0}, [("ok", "a", {"value": 1})])
    with pytest.raises(ConfigError) as caught:
        load_plan([config], registry=Registry({"fake": broken, "spreadsheet": spreadsheet}))
    assert "the connector for source type `fake` has no `check`" in str(caught.value)


def test_source_errors_keep_their_message(tmp_path, registry, fake, monkeypatch):
    def refuse(source):
        raise SourceError("the token in environment variable FAKE_TOKEN is not set: export it")

    monkeypatch.setattr(fake, "connect", refuse)
    plan = load_plan([fake_config(tmp_path, {"a": 0}, [("ok", "a", {"value": 1})])], registry=registry)
    result = sync(plan, RunOptions(dry_run=True), services(registry))
    rows = {r["id"]: r for r in result["key_results"]}
    assert rows["ok"]["error"] == "the token in environment variable FAKE_TOKEN is not set: export it"
    assert rows["nps"]["error"] is None
