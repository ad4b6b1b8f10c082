"""A third-party source, as a user adds one: examples/okr-sync-source-example installed with pip
into a folder of its own, then `okr-sync validate` and `okr-sync run --dry-run --json` on a config
using its `type: json_file`, in a subprocess that finds it only through its entry point."""
from __future__ import annotations

import importlib
import json
import os
import shutil
import subprocess
import sys
from datetime import date
from importlib import metadata
from pathlib import Path

import pytest

from conftest import REPO
from okrsync.contract import contract_problems, run_batch
from okrsync.errors import SourceError
from okrsync.measure import Measurement, MetricRequest, Period
from okrsync.registry import ENTRY_POINT_GROUP

EXAMPLE_PACKAGE = REPO / "examples" / "okr-sync-source-example"
CONFIG = """\
period: 2026-Q4
sources:
  ci: {type: json_file, path: reports/coverage.json}
objectives:
  - id: quality
    title: Ship with confidence
    owner: platform
    key_results:
      - id: coverage
        title: Line coverage from 70% to 90%
        source: ci
        metric: {key: totals.percent_covered}
        baseline: 70
        target: 90
"""


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    """The example package installed by pip into a folder of its own (built from a copy, so the repo stays clean)."""
    work = tmp_path_factory.mktemp("own-source")
    source = shutil.copytree(EXAMPLE_PACKAGE, work / "src", ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    target = work / "site"
    done = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
                           "--target", str(target), str(source)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return target


@pytest.fixture
def module(site, monkeypatch):
    monkeypatch.syspath_prepend(str(site))
    yield importlib.import_module("okr_sync_json_file")
    sys.modules.pop("okr_sync_json_file", None)


def test_the_installed_package_registers_a_conforming_connector(site, module):
    (dist,) = metadata.distributions(path=[str(site)])
    (entry,) = dist.entry_points.select(group=ENTRY_POINT_GROUP)
    assert (entry.name, entry.value) == (module.TYPE, module.__name__) == ("json_file", "okr_sync_json_file")
    assert contract_problems(module) == []


def test_the_example_measures_and_fails_per_key_result(module, tmp_path):
    (tmp_path / "r.json").write_text('{"totals": {"lines": 81.5, "name": "x"}}', encoding="utf-8")
    source = module.SourceConfig.model_validate({"type": "json_file", "path": "r.json"}, context={"base_dir": tmp_path})
    period = Period(date(2026, 10, 1), date(2026, 12, 31))
    asked = {"ok": {"key": "totals.lines"}, "text": {"key": "totals.name"}, "gone": {"key": "totals.branches"},
             "bad": {"key": "totals..lines"}}
    results = run_batch(module, source, [MetricRequest(k, m, period, date(2026, 11, 1)) for k, m in asked.items()])
    assert isinstance(results["ok"], Measurement) and results["ok"].value == 81.5 and results["ok"].calls == 1
    assert results["ok"].link == (tmp_path / "r.json").resolve().as_uri()
    assert [str(results[k]) for k in ("text", "gone")] == [
        "`totals.name` is a str, not a number: point `key:` at a number",
        "no `branches` on the way to `totals.branches` in the file: check `key:`"]
    assert isinstance(results["bad"], SourceError) and str(results["bad"]).startswith("invalid metric: `key`:")
    missing = module.SourceConfig.model_validate({"type": "json_file", "path": str(tmp_path / "gone.json")})
    assert module.check(missing, []) == [f"file not found: {tmp_path / 'gone.json'}: check `path:`"]


def test_the_docs_show_the_example_package_as_it_is():
    docs = (REPO / "docs" / "own-source.md").read_text(encoding="utf-8")
    for name in ("pyproject.toml", "okr_sync_json_file.py"):
        assert (EXAMPLE_PACKAGE / name).read_text(encoding="utf-8").rstrip() in docs, f"docs/own-source.md: update {name}"


def test_the_cli_validates_and_runs_a_config_using_it(site, tmp_path):
    (tmp_path / "reports").mkdir()
    (tmp_path / "reports" / "coverage.json").write_text('{"totals": {"percent_covered": 81.5}}', encoding="utf-8")
    (tmp_path / "okrs.yaml").write_text(CONFIG, encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_") and k != "OKR_SYNC_STORE"}
    env.update(PYTHONPATH=os.pathsep.join([str(site), str(REPO)]), PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS="180")

    def okr_sync(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "okrsync.cli", *args], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=300)

    validated = okr_sync("validate", "okrs.yaml")
    assert validated.returncode == 0, validated.stderr
    assert "OK: 1 objectives, 1 key results, 1 sources" in validated.stdout
    ran = okr_sync("run", "okrs.yaml", "--dry-run", "--json", "--store", f"sqlite:///{tmp_path / 'okr.db'}")
    assert ran.returncode == 0, ran.stderr
    (kr,) = json.loads(ran.stdout)["key_results"]
    assert (kr["id"], kr["value"], kr["query"], kr["error"]) == ("coverage", 81.5, "totals.percent_covered", None)
    assert kr["link"] == (tmp_path / "reports" / "coverage.json").resolve().as_uri()
