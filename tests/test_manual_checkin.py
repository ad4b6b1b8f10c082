"""Manual check-ins get a status (issue #15): `okr-sync checkin KR VALUE` computes progress, expected
progress and status like a sync, from the key result's baseline, target, period and thresholds as
stored, and `status` / `history` show them. CLI in process on real SQLite files.

The period is built around today (10 days before to 10 days after), so expected progress is about
half whatever day the test runs; a value 30 % of the way then trails it by 18..22 points."""
from __future__ import annotations

import json
import shutil
import sqlite3
from datetime import date, timedelta
from pathlib import Path

import pytest

from conftest import EXAMPLE

TODAY = date.today()
PERIOD = f"period: {{start: {TODAY - timedelta(days=10)}, end: {TODAY + timedelta(days=10)}}}"
THIRTY_PERCENT = "34.5"    # checkout-nps: baseline 30, target 45


def example(tmp_path: Path, thresholds: str = "") -> Path:
    shutil.copytree(EXAMPLE.parent, tmp_path / "config")
    config = tmp_path / "config" / EXAMPLE.name
    config.write_text(config.read_text().replace("period: 2026-Q4", PERIOD + thresholds, 1))
    return config


def test_a_manual_checkin_gets_expected_and_status_and_status_and_history_show_them(cli, tmp_path):
    config = example(tmp_path)
    assert cli("run", str(config), "--no-prefect").exit_code == 0
    done = cli("checkin", "checkout-nps", THIRTY_PERCENT, "--note", "from the survey tool")
    assert done.exit_code == 0, done.output
    assert "Recorded manual check-in of 34.5 for checkout-nps: 30% progress" in done.stdout
    assert done.stdout.rstrip().endswith("at_risk.")     # trails expected by more than 0.10, at most 0.25

    last = {s["kr_id"]: s["last"] for s in json.loads(cli("status", "--json").stdout)}["checkout-nps"]
    assert last["kind"] == "manual" and last["status"] == "at_risk"
    assert last["progress"] == pytest.approx(0.3) and 0.45 < last["expected"] < 0.55
    board = cli("status").stdout
    assert "at_risk (manual)" in board and "- (manual)" not in board
    history = cli("history", "checkout-nps")
    assert "expected" in history.stdout and history.stdout.count("at_risk") == 1
    manual = json.loads(cli("history", "checkout-nps", "--json").stdout)[-1]
    assert (manual["kind"], manual["status"], manual["expected"]) == ("manual", "at_risk", last["expected"])


def test_a_manual_checkin_uses_the_key_results_thresholds_as_stored(cli, tmp_path):
    config = example(tmp_path, "\nthresholds: {at_risk: 0.3, off_track: 0.5}")
    assert cli("run", str(config), "--no-prefect").exit_code == 0
    assert cli("checkin", "checkout-nps", THIRTY_PERCENT).exit_code == 0
    last = {s["kr_id"]: s["last"] for s in json.loads(cli("status", "--json").stdout)}["checkout-nps"]
    assert last["status"] == "on_track"        # the same gap is within this config's at_risk


def test_a_key_result_stored_without_thresholds_uses_the_defaults(cli, tmp_path):
    config = example(tmp_path, "\nthresholds: {at_risk: 0.3, off_track: 0.5}")
    assert cli("run", str(config), "--no-prefect").exit_code == 0
    with sqlite3.connect(tmp_path / "okr.db") as conn:     # as a store upgraded from version 1 keeps it
        conn.execute("UPDATE okr_key_results SET at_risk = NULL, off_track = NULL")
    assert cli("checkin", "checkout-nps", THIRTY_PERCENT).exit_code == 0
    last = {s["kr_id"]: s["last"] for s in json.loads(cli("status", "--json").stdout)}["checkout-nps"]
    assert last["status"] == "at_risk"


def test_a_manual_value_at_the_target_is_done(cli, tmp_path):
    config = example(tmp_path)
    assert cli("run", str(config), "--no-prefect").exit_code == 0
    done = cli("checkin", "checkout-nps", "45")
    assert done.exit_code == 0 and ": 100% progress, " in done.stdout and done.stdout.rstrip().endswith(", done.")
