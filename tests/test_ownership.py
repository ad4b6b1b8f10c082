"""Two configs, one key result (issue #15): the store knows which config file owns a key result, so
`okr-sync run` refuses a second file's different definition (exit 2, both file:line places, nothing
measured) unless --take-over; identical definitions in two files are fine. CLI in process on real
SQLite files; the schema step that adds owners once on PostgreSQL."""
from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path

import pytest
from sqlalchemy import create_engine, inspect, text

from conftest import EXAMPLE
from connectors import sql_store
from connectors.sql_store import open_store

NPS_LINE = 19   # checkout-nps's `- id:` line in config/example.yaml


def copy_example(tmp_path: Path, name: str, change: tuple[str, str] | None = None) -> Path:
    """The example config and its data in tmp_path/name, with one text replaced."""
    shutil.copytree(EXAMPLE.parent, tmp_path / name)
    config = tmp_path / name / EXAMPLE.name
    if change:
        assert change[0] in config.read_text()
        config.write_text(config.read_text().replace(*change, 1))
    return config


def nps_checkins(tmp_path: Path) -> list[tuple[float, str]]:
    with sqlite3.connect(tmp_path / "okr.db") as conn:
        return conn.execute("SELECT value, run_id FROM okr_checkins WHERE kr_id = 'checkout-nps' ORDER BY id").fetchall()


def runs(tmp_path: Path) -> int:
    with sqlite3.connect(tmp_path / "okr.db") as conn:
        return conn.execute("SELECT count(*) FROM okr_runs").fetchone()[0]


def test_a_second_file_defining_a_key_result_differently_is_refused_before_measuring(cli, tmp_path):
    a = copy_example(tmp_path, "a")
    b = copy_example(tmp_path, "b", ("target: 45", "target: 50"))
    assert cli("run", str(a), "--no-prefect").exit_code == 0

    done = cli("run", str(b), "--no-prefect")
    assert done.exit_code == 2, done.output
    assert f"{b}:{NPS_LINE}: checkout-nps: {a.resolve()}:{NPS_LINE} defines this key result differently" in done.stderr
    assert "pass --take-over to move it to this file" in done.stderr
    assert "Traceback" not in done.output and done.stdout == ""
    assert [v for v, _ in nps_checkins(tmp_path)] == [38] and runs(tmp_path) == 1   # nothing measured, nothing written


def test_take_over_moves_the_key_result_to_the_new_file_and_then_refuses_the_old_one(cli, tmp_path):
    a = copy_example(tmp_path, "a")
    b = copy_example(tmp_path, "b", ("target: 45", "target: 50"))
    survey = tmp_path / "b" / "data" / "survey.csv"
    survey.write_text(survey.read_text().replace("NPS,398,38", "NPS,398,40"))
    assert cli("run", str(a), "--no-prefect").exit_code == 0

    moved = cli("run", str(b), "--no-prefect", "--take-over", "--json")
    assert moved.exit_code == 0, moved.output
    rows = {r["id"]: r for r in json.loads(moved.stdout)["key_results"]}
    assert rows["checkout-nps"]["value"] == 40 and rows["checkout-nps"]["target"] == 50
    with open_store(f"sqlite:///{tmp_path / 'okr.db'}") as store:
        state = store.key_results(["checkout-nps"])[0]
    assert (state.config_file, state.config_line, state.target) == (str(b.resolve()), NPS_LINE, 50)

    back = cli("run", str(a), "--no-prefect")
    assert back.exit_code == 2
    assert f"{a}:{NPS_LINE}: checkout-nps: {b.resolve()}:{NPS_LINE} defines this key result differently" in back.stderr
    assert [v for v, _ in nps_checkins(tmp_path)] == [38, 40]    # no 38 -> 40 -> 38


def test_identical_definitions_in_two_files_and_edits_in_the_owning_file_are_fine(cli, tmp_path):
    a = copy_example(tmp_path, "a")
    b = copy_example(tmp_path, "b")
    assert cli("run", str(a), "--no-prefect").exit_code == 0
    assert cli("run", str(b), "--no-prefect").exit_code == 0    # the same definition
    b.write_text(b.read_text().replace("target: 45", "target: 50", 1))           # b wrote it last: b may change it
    edited = cli("run", str(b), "--no-prefect", "--json")
    assert edited.exit_code == 0, edited.output
    assert {r["id"]: r["target"] for r in json.loads(edited.stdout)["key_results"]}["checkout-nps"] == 50


def test_a_dry_run_is_not_refused_and_writes_nothing(cli, tmp_path):
    a = copy_example(tmp_path, "a")
    b = copy_example(tmp_path, "b", ("target: 45", "target: 50"))
    assert cli("run", str(a), "--no-prefect").exit_code == 0
    assert cli("run", str(b), "--no-prefect", "--dry-run").exit_code == 0
    assert runs(tmp_path) == 1


def test_the_refusal_through_prefect_is_the_same_and_take_over_works(cli, tmp_path, prefect_harness):
    a = copy_example(tmp_path, "a")
    b = copy_example(tmp_path, "b", ("target: 45", "target: 50"))
    assert cli("run", str(a), "--no-prefect").exit_code == 0
    refused = cli("run", str(b), "--prefect")
    assert refused.exit_code == 2
    assert f"{b}:{NPS_LINE}: checkout-nps: {a.resolve()}:{NPS_LINE} defines this key result differently" in refused.stderr
    assert runs(tmp_path) == 1
    moved = cli("run", str(b), "--prefect", "--take-over", "--json")
    assert moved.exit_code == 0, moved.output
    assert runs(tmp_path) == 2


@pytest.fixture(params=["sqlite", "postgresql"])
def any_url(request, tmp_path):
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'old.db'}"
    return request.getfixturevalue("pg_url")


def test_a_version_1_store_gains_owners_and_its_key_results_are_owned_by_the_next_run(
        cli, tmp_path, any_url, monkeypatch):
    monkeypatch.setattr(sql_store.schema, "MIGRATIONS", sql_store.MIGRATIONS[:1])
    open_store(any_url).close()
    monkeypatch.undo()
    engine = create_engine(any_url)
    try:
        assert "definition" not in {c["name"] for c in inspect(engine).get_columns("okr_key_results")}
        with engine.begin() as conn:     # a key result a version-1 okr-sync wrote from another file
            conn.execute(text("INSERT INTO okr_objectives (id, title, config_file, updated_at) "
                              "VALUES ('checkout', 'Checkout', 'old.yaml', '2026-11-01 00:00:00')"))
            conn.execute(text("INSERT INTO okr_key_results (id, objective_id, title, source, baseline, target, "
                              "period_start, period_end, on_manual, updated_at) VALUES ('checkout-nps', 'checkout', "
                              "'Old title', 'survey', 30, 40, '2026-10-01', '2026-12-31', 'keep', '2026-11-01 00:00:00')"))
    finally:
        engine.dispose()

    b = copy_example(tmp_path, "b", ("target: 45", "target: 50"))
    upgraded = cli("run", str(b), "--no-prefect", "--store", any_url)
    assert upgraded.exit_code == 0, upgraded.output       # a version-1 row has no owner: nobody is refused
    engine = create_engine(any_url)
    try:
        with engine.connect() as conn:
            assert conn.execute(text("SELECT value FROM okr_meta WHERE key = 'schema_version'")).scalar_one() == str(sql_store.schema_version())
            owner = conn.execute(text("SELECT config_file, config_line, title, target, at_risk, off_track "
                                      "FROM okr_key_results WHERE id = 'checkout-nps'")).one()
    finally:
        engine.dispose()
    assert tuple(owner) == (str(b.resolve()), NPS_LINE, "Raise checkout NPS from 30 to 45", 50, 0.10, 0.25)
    a = copy_example(tmp_path, "a")
    assert cli("run", str(a), "--no-prefect", "--store", any_url).exit_code == 2
