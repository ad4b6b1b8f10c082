"""The store at scale: two flow runs of overlapping configs write to one PostgreSQL database at
the same moment. Against the server on 127.0.0.1:5432 (trust auth) in a throwaway database;
skipped, saying why, only when no server can be reached (.ci/run starts one)."""
from __future__ import annotations

import contextvars
import shutil
import threading
from pathlib import Path
from typing import Any

import pytest

from conftest import EXAMPLE
from connectors.sql_store import SqlStore, open_store
from flows.sync import sync_okrs
from fast_flows import no_heartbeats  # noqa: F401 - a fixture
from webhook_receiver import WebhookReceiver

CHECKOUT = {"checkout-nps": 38, "checkout-p95": 590, "checkout-success": 97.12}
GROWTH = {"self-serve-customers": 304, "self-serve-revenue": 24320, "weekly-signups": 55,
          "activated-accounts": 266}
NOTIFY = 'notify: {webhook: "${OKR_PG_TEST_WEBHOOK}", on: [status_change]}\n'




@pytest.fixture
def overlapping(tmp_path: Path) -> tuple[Path, Path]:
    """The example config (seven key results), and a second config with its checkout objective only."""
    shutil.copytree(EXAMPLE.parent / "data", tmp_path / "data")
    text = EXAMPLE.read_text(encoding="utf-8")
    everything, checkout = tmp_path / "company.yaml", tmp_path / "payments.yaml"
    everything.write_text(NOTIFY + text, encoding="utf-8")
    checkout.write_text(NOTIFY + text[:text.index("  - id: growth")], encoding="utf-8")
    return everything, checkout


def together(configs: list[Path], store: str, monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """Run one flow per config in its own thread; both reach the store write at the same moment."""
    barrier = threading.Barrier(len(configs), timeout=60)
    original = SqlStore.write_sync

    def write_when_all_are_ready(self, **kwargs):
        barrier.wait()                       # no run writes before every run is about to
        return original(self, **kwargs)

    monkeypatch.setattr(SqlStore, "write_sync", write_when_all_are_ready)
    results: list[Any] = [None] * len(configs)

    def run(i: int) -> None:
        try:
            results[i] = sync_okrs(config_paths=[str(configs[i])], store=store)
        except BaseException as exc:  # noqa: BLE001 - reported by the asserts below
            results[i] = exc
            barrier.abort()

    # each thread starts from a copy of this context: the harness's settings, heartbeats off
    threads = [threading.Thread(target=contextvars.copy_context().run, args=(run, i)) for i in range(len(configs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not any(t.is_alive() for t in threads), "a sync did not finish within 120s"
    monkeypatch.setattr(SqlStore, "write_sync", original)
    for r in results:
        assert isinstance(r, dict), r
        assert r["counts"]["failed"] == 0, [k["error"] for k in r["key_results"] if k["error"]]
    return results


def test_two_concurrent_syncs_of_overlapping_configs_lose_and_duplicate_nothing(
        no_heartbeats, pg_url, overlapping, monkeypatch):
    everything, checkout = overlapping
    with WebhookReceiver(path="/services/T3/B3/pg") as hook:
        monkeypatch.setenv("OKR_PG_TEST_WEBHOOK", hook.url)
        first = together([everything, checkout], pg_url, monkeypatch)
        written = [set(r["id"] for r in res["key_results"] if r["outcome"] == "written") for res in first]
        assert written[0] | written[1] == set(CHECKOUT) | set(GROWTH)
        assert written[0] & written[1] == set()              # each overlapping key result written by one run
        assert set(GROWTH) <= written[0]

        survey = everything.parent / "data" / "survey.csv"
        survey.write_text(survey.read_text().replace("NPS,398,38", "NPS,398,33"))     # on_track -> off_track
        second = together([everything, checkout], pg_url, monkeypatch)
        outcomes = sorted(next(r["outcome"] for r in res["key_results"] if r["id"] == "checkout-nps") for res in second)
        assert outcomes == ["unchanged", "written"]
        posts = list(hook.posts)

    with open_store(pg_url) as store:
        history = {kr: [c.value for c in store.history(kr)] for kr in {**CHECKOUT, **GROWTH}}
        alerts = store.alerts()
    assert history == {**{kr: [v] for kr, v in {**CHECKOUT, **GROWTH}.items()}, "checkout-nps": [38, 33]}
    # the change was seen by both runs, decided once (under the store's lock) and posted once
    assert [(a.kr_id, a.kind) for a in alerts] == [("checkout-nps", "status_change")]
    assert len(posts) == 1 and "*checkout-nps*" in posts[0]["text"] and "→ off_track" in posts[0]["text"]
