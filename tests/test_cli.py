"""The CLI as a user runs it: a subprocess, the README's commands, on the example config."""
from __future__ import annotations

import json
import os
import subprocess
import sys

from conftest import EXAMPLE


def okr_sync(*args: str, cwd, env_extra: dict | None = None, timeout: int = 240) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env.update(env_extra or {})
    env.pop("OKR_SYNC_STORE", None)
    return subprocess.run([sys.executable, "-m", "okrsync.cli", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout)


def test_validate_ok(tmp_path):
    done = okr_sync("validate", str(EXAMPLE), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "OK: 2 objectives, 7 key results" in done.stdout


def test_validate_broken_config_prints_every_error_exit_2(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(EXAMPLE.read_text().replace("target: 45", "target: forty-five")
                   .replace("source: signups\n        metric: {column: customers, aggregate: sum",
                            "source: signup\n        metric: {column: customers, aggregate: total"), encoding="utf-8")
    done = okr_sync("validate", str(bad), cwd=tmp_path)
    assert done.returncode == 2
    assert f"{bad}:24: checkout-nps: `target` must be a number" in done.stderr
    assert f"{bad}:45: self-serve-customers: unknown source `signup`: did you mean `signups`?" in done.stderr
    assert "Traceback" not in done.stderr + done.stdout


def test_run_json_then_status_and_history(tmp_path):
    run = okr_sync("run", str(EXAMPLE), "--json", cwd=tmp_path)
    assert run.returncode == 0, run.stderr[-2000:]
    doc = json.loads(run.stdout)
    rows = {r["id"]: r for r in doc["key_results"]}
    assert set(rows) == {"checkout-nps", "checkout-p95", "checkout-success", "self-serve-customers",
                         "self-serve-revenue", "weekly-signups", "activated-accounts"}
    for r in rows.values():
        assert {"id", "value", "baseline", "target", "progress", "expected", "status", "link", "error"} <= set(r)
        assert r["error"] is None and r["status"] in ("on_track", "at_risk", "off_track", "done")
    assert rows["checkout-nps"]["value"] == 38
    assert (tmp_path / "okr-sync.db").exists()          # the default store, in the current directory
    assert "Traceback" not in run.stderr

    status = okr_sync("status", "--json", cwd=tmp_path)
    assert status.returncode == 0, status.stderr
    states = {s["kr_id"]: s for s in json.loads(status.stdout)}
    assert states["checkout-nps"]["last"]["value"] == 38

    history = okr_sync("history", "checkout-nps", cwd=tmp_path)
    assert history.returncode == 0 and "automatic" in history.stdout

    again = okr_sync("run", str(EXAMPLE), cwd=tmp_path)
    assert again.returncode == 0, again.stderr[-2000:]
    assert "0 check-ins written, 7 unchanged" in again.stdout
    assert "Traceback" not in again.stdout + again.stderr


def test_dry_run_table_and_nothing_written(tmp_path):
    done = okr_sync("run", str(EXAMPLE), "--dry-run", cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "dry run (nothing written)" in done.stdout and "checkout-nps" in done.stdout
    assert not (tmp_path / "okr-sync.db").exists()


def test_schema_is_json_schema(tmp_path):
    done = okr_sync("schema", cwd=tmp_path)
    schema = json.loads(done.stdout)
    assert schema["title"] == "okr-sync config"
    assert "objectives" in schema["properties"] and "spreadsheet" in done.stdout
