"""Schema version 3 and the publish outbox of the embedded SQL store, on SQLite and PostgreSQL."""
from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import create_engine, text

from connectors import sql_store
from connectors.sql_store import open_store
from okrsync.publish import DeliveryResult, delivered, failed, kept_manual
from okrsync.records import CheckinRecord, KeyResultRecord, ObjectiveRecord

T0 = datetime(2026, 11, 2, 9, 0, tzinfo=timezone.utc)


@pytest.fixture
def sqlite_url(tmp_path) -> str:
    return f"sqlite:///{tmp_path / 'okr-sync.db'}"


@pytest.fixture(params=["sqlite", "postgresql"])
def any_url(request) -> str:
    return request.getfixturevalue("sqlite_url" if request.param == "sqlite" else "pg_url")


def write(store, values: dict[str, float], *, at: datetime = T0, publish=None, on_manual="keep"):
    run_id = uuid.uuid4().hex
    krs = [KeyResultRecord(id=k, objective_id="checkout", title=f"KR {k}", source="survey", baseline=0,
                           target=100, on_manual=on_manual) for k in values]
    checkins = [CheckinRecord(kr_id=k, value=v, progress=v / 100, expected=0.5, status="on_track",
                              observed_at=at, source="survey", run_id=run_id) for k, v in values.items()]
    return store.write_sync(run_id=run_id, started_at=at, objectives=[ObjectiveRecord("checkout", "Checkout")],
                            key_results=krs, checkins=checkins, config_files=["okrs.yaml"], failed=0,
                            publish=publish)


def test_a_version_2_store_with_rows_moves_to_version_3_keeping_every_row_and_id(any_url, monkeypatch):
    monkeypatch.setattr(sql_store.schema, "MIGRATIONS", sql_store.MIGRATIONS[:2])
    open_store(any_url).close()                       # a version-2 store, filled as version 2 wrote it
    monkeypatch.undo()
    engine = create_engine(any_url)
    try:
        with engine.begin() as conn:
            conn.execute(text("INSERT INTO okr_objectives (id, title, updated_at) VALUES ('checkout', 'Checkout', :t)"), {"t": T0})
            for kr in ("nps", "p1"):
                conn.execute(text("INSERT INTO okr_key_results (id, objective_id, title, baseline, target, on_manual, updated_at) "
                                  "VALUES (:id, 'checkout', :id, 0, 100, 'keep', :t)"), {"id": kr, "t": T0})
            for kr, value, day in (("nps", 38, 0), ("p1", 4, 0), ("nps", 40, 1)):
                conn.execute(text("INSERT INTO okr_checkins (kr_id, value, observed_at, kind, created_at) "
                                  "VALUES (:kr, :v, :t, 'automatic', :t)"), {"kr": kr, "v": value, "t": T0 + timedelta(days=day)})
            conn.execute(text("INSERT INTO okr_runs (run_id, started_at, finished_at, config_files, written, unchanged, "
                              "kept_manual, failed) VALUES ('r1', :t, :t, '[]', 3, 0, 0, 0)"), {"t": T0})
        with engine.connect() as conn:
            before = conn.execute(text("SELECT id, kr_id, value, kind FROM okr_checkins ORDER BY id")).all()
            assert conn.execute(text("SELECT value FROM okr_meta WHERE key = 'schema_version'")).scalar_one() == "2"
    finally:
        engine.dispose()
    with open_store(any_url) as store:
        assert [(c.value, c.kind) for c in store.history("nps")] == [(38, "automatic"), (40, "automatic")]
        store.write_sync(run_id="bf", started_at=T0, objectives=[], key_results=[], config_files=["okrs.yaml"], failed=0,
                         checkins=[CheckinRecord(kr_id="p1", value=9, progress=None, expected=None, status=None,
                                                 observed_at=T0 - timedelta(days=7), kind="backfill",
                                                 evidence=({"key": "PAY-1", "title": "Crash"},))])
        back = store.history("p1")[0]
        assert (back.kind, back.evidence) == ("backfill", ({"key": "PAY-1", "title": "Crash"},))
    engine = create_engine(any_url)
    try:
        with engine.connect() as conn:
            after = conn.execute(text("SELECT id, kr_id, value, kind FROM okr_checkins WHERE kind <> 'backfill' ORDER BY id")).all()
            assert after == before
            assert conn.execute(text("SELECT value FROM okr_meta WHERE key = 'schema_version'")).scalar_one() == "3"
            with pytest.raises(Exception):          # the kind constraint still holds after the rebuild
                with conn.begin():
                    conn.execute(text("INSERT INTO okr_checkins (kr_id, value, observed_at, kind, created_at) "
                                      "VALUES ('nps', 1, '2026-11-01 00:00:00', 'guess', '2026-11-01 00:00:00')"))
    finally:
        engine.dispose()


def test_written_check_ins_are_queued_per_target_in_the_same_transaction(any_url):
    targets = {"nps": [("okr-notion", None), ("okr-jira", "OKR-12")], "p1": [("okr-notion", None)]}
    with open_store(any_url) as store:
        report = write(store, {"nps": 38, "p1": 4}, publish=targets)
        assert report.queued == 3
        claimed = store.claim_deliveries("run-a", ["okr-notion", "okr-jira"])
        assert sorted((d.target, d.kr_id, d.external_id, d.value) for d in claimed) == [
            ("okr-jira", "nps", "OKR-12", 38), ("okr-notion", "nps", None, 38), ("okr-notion", "p1", None, 4)]
        assert {d.title for d in claimed} == {"KR nps", "KR p1"} and claimed[0].objective_title == "Checkout"
        assert store.claim_deliveries("run-b", ["okr-notion", "okr-jira"]) == []     # run-a holds them
        by = {(d.target, d.kr_id): d for d in claimed}
        store.finish_deliveries("run-a", {
            by["okr-notion", "nps"].id: delivered(by["okr-notion", "nps"]),
            by["okr-notion", "p1"].id: kept_manual(by["okr-notion", "p1"], 41),
            by["okr-jira", "nps"].id: failed("okr-jira: issue OKR-12 does not exist: fix publish: in the config"),
        })
        states = {s["target"]: s for s in store.delivery_states()}
        assert (states["okr-notion"]["delivered"], states["okr-notion"]["kept_manual"], states["okr-notion"]["pending"]) == (1, 1, 0)
        assert (states["okr-jira"]["pending"], states["okr-jira"]["failing"]) == (1, 1)
        assert "OKR-12 does not exist" in states["okr-jira"]["last_error"]
        (retry,) = store.claim_deliveries("run-c", ["okr-notion", "okr-jira"])     # only the failed one comes back
        assert (retry.target, retry.attempts) == ("okr-jira", 1)
        store.finish_deliveries("run-c", {retry.id: delivered(retry)})
        write(store, {"nps": 40, "p1": 4}, at=T0 + timedelta(days=1), publish=targets)  # p1 unchanged: not queued
        nxt = store.claim_deliveries("run-d", ["okr-notion", "okr-jira"])
        assert sorted((d.target, d.kr_id, d.value, d.last_sent_value) for d in nxt) == [
            ("okr-jira", "nps", 40, 38), ("okr-notion", "nps", 40, 38)]
        assert all(d.last_sent_at is not None for d in nxt)


def test_a_target_added_later_gets_each_key_results_latest_check_in_once(sqlite_url):
    with open_store(sqlite_url) as store:
        write(store, {"nps": 38})
        write(store, {"nps": 38}, publish={"nps": [("okr-sheet", None)]})     # unchanged, but new to okr-sheet
        (first,) = store.claim_deliveries("r1", ["okr-sheet"])
        assert first.value == 38
        store.finish_deliveries("r1", {first.id: delivered(first)})
        write(store, {"nps": 38}, publish={"nps": [("okr-sheet", None)]})
        assert store.claim_deliveries("r2", ["okr-sheet"]) == []


def test_a_manual_check_in_goes_to_the_targets_the_key_result_was_published_to(sqlite_url):
    with open_store(sqlite_url) as store:
        write(store, {"nps": 38}, publish={"nps": [("okr-jira", "OKR-12")]})
        (first,) = store.claim_deliveries("r1", ["okr-jira"])
        store.finish_deliveries("r1", {first.id: delivered(first)})
        store.add_manual_checkin("nps", 44, note="survey re-run")
        (manual,) = store.claim_deliveries("r2", ["okr-jira"])
        assert (manual.value, manual.kind, manual.external_id) == (44, "manual", "OKR-12")


def test_a_claim_of_a_run_that_vanished_expires(sqlite_url, monkeypatch):
    with open_store(sqlite_url) as store:
        write(store, {"nps": 38}, publish={"nps": [("hook", None)]})
        (held,) = store.claim_deliveries("gone", ["hook"])
        monkeypatch.setattr(sql_store.outbox, "OUTBOX_CLAIM_TIMEOUT", timedelta(0))
        (again,) = store.claim_deliveries("next", ["hook"])
        assert again.id == held.id and again.idempotency_key == held.idempotency_key
        store.finish_deliveries("gone", {held.id: DeliveryResult("delivered", sent_value=38)})   # too late: not its own
        assert store.delivery_states()[0]["pending"] == 1


def test_the_sql_store_is_an_okr_store(sqlite_url):
    from okrsync.store import OkrStore

    with open_store(sqlite_url) as store:
        assert isinstance(store, OkrStore)
    assert not isinstance(object(), OkrStore)
