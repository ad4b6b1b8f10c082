"""The documentation: the MkDocs site builds with --strict (no broken link, anchor or orphan page), its
generated pages hold every key of the config schema and every column of the store, the store page's
queries run on SQLite and PostgreSQL, and the README stays a front page whose links resolve."""
from __future__ import annotations

import importlib.util
import os
import re
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

from conftest import EXAMPLE, REPO

README_MAX_LINES = 250


def hook(name: str) -> ModuleType:
    """A docs/hooks module, loaded from its file as MkDocs does."""
    spec = importlib.util.spec_from_file_location(f"docs_hook_{name}", REPO / "docs" / "hooks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_site_builds_strictly_with_the_generated_pages(tmp_path):
    pytest.importorskip("mkdocs", reason="the docs tools are not installed: pip install -e '.[docs]' (the test extra has them)")
    pytest.importorskip("material", reason="mkdocs-material is not installed: pip install -e '.[docs]'")
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    site = tmp_path / "site"
    done = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--config-file", str(REPO / "mkdocs.yml"),
                           "--site-dir", str(site)], cwd=REPO, env=env, capture_output=True, text=True, timeout=180)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-4000:]
    assert "WARNING" not in output, output[-4000:]

    from connectors.sql_store import metadata

    store_page = (site / "store" / "index.html").read_text(encoding="utf-8")
    for table in metadata.tables.values():
        assert f"<code>{table.name}</code>" in store_page
        for column in table.columns:
            assert f"<code>{column.name}</code>" in store_page, f"{table.name}.{column.name}"
    reference = (site / "reference" / "config" / "index.html").read_text(encoding="utf-8")
    assert 'id="source-jira"' in reference and "<code>jql_done</code>" in reference
    assert (site / "publish" / "index.html").exists() and (site / "operate" / "index.html").exists()


def test_the_config_reference_has_a_row_for_every_key_of_every_object():
    from okrsync.config import json_schema

    schema = json_schema()
    page = hook("config_reference").render(schema)
    sections = dict(re.findall(r"^## .*? \{#([a-z0-9-]+)\}\n(.*?)(?=^## |\Z)", page, re.M | re.S))
    objects = {"top": schema, **schema["$defs"]}
    names = hook("config_reference")._section_names(schema["$defs"])
    for def_name, definition in objects.items():
        anchor = "top" if def_name == "top" else names[def_name][1]
        assert anchor in sections, f"no section for {def_name}"
        for key in definition.get("properties", {}):
            assert f"| `{key}` |" in sections[anchor], f"{def_name}.{key} missing from its section"
    assert len(sections) == len(objects)                          # one section each, none merged
    assert "| `target` | number | **required** |" in sections["keyresult"]
    assert "| `timeout` | number (> 0, ≤ 600) |  | `30` |" in sections["source-jira"]
    assert "`keep` \\| `overwrite`" in sections["keyresult"]       # a pipe inside a cell is escaped


def test_the_store_page_describes_every_table_and_column_of_the_code():
    from connectors.sql_store import metadata

    page, problems = hook("store_schema").render(metadata)
    assert problems == [], "bring docs/hooks/store_schema.py in step with the store: " + "; ".join(problems)
    assert "| `kind` | `TEXT` | `TEXT` | no |  |  | `automatic` (a sync), `manual` (`okr-sync checkin`) or" in page
    assert "unique (target, checkin_id)" in page
    assert "| `objective_id` | `TEXT` | `TEXT` | no | → `okr_objectives.id` |" in page
    assert "| `updated_at` | `DATETIME` | `TIMESTAMP WITH TIME ZONE` |" in page


def test_the_store_page_reports_a_column_it_does_not_describe():
    from sqlalchemy import Column, Integer, MetaData, Table

    extra = MetaData()
    Table("okr_runs", extra, Column("run_id", Integer, primary_key=True), Column("flow_run_nonce", Integer))
    _, problems = hook("store_schema").render(extra)
    assert "column okr_runs.flow_run_nonce has no description: add it to COLUMNS" in problems
    assert "TABLES describes okr_checkins, which the store no longer has" in problems


def sql_blocks() -> list[str]:
    text = (REPO / "docs" / "store.md").read_text(encoding="utf-8")
    return re.findall(r"^```sql\n(.*?)^```", text, re.M | re.S)


def test_the_store_page_queries_run_on_sqlite(cli, tmp_path):
    assert cli("run", str(EXAMPLE)).exit_code == 0
    assert cli("checkin", "checkout-nps", "41", "--note", "survey re-run").exit_code == 0
    blocks = sql_blocks()
    assert len(blocks) == 3
    with sqlite3.connect(tmp_path / "okr.db") as db:
        latest, history, runs = (db.execute(sql).fetchall() for sql in blocks)
    assert len(latest) == 7 and {row[1] for row in latest} >= {"checkout-nps", "weekly-signups"}
    assert [row[1] for row in history] == [38, 41] and history[1][3:] == ("manual", "survey re-run")
    assert len(runs) == 1 and runs[0][3:] == (7, 0, 0, 0)


def test_the_store_page_queries_run_on_postgresql(cli, pg_url):
    import psycopg

    assert cli("run", str(EXAMPLE), "--store", pg_url).exit_code == 0
    with psycopg.connect(pg_url.replace("postgresql+psycopg://", "postgresql://")) as db:
        latest, history, runs = (db.execute(sql).fetchall() for sql in sql_blocks())
    assert len(latest) == 7 and [row[1] for row in history] == [38] and len(runs) == 1


def test_example_scheduled_is_the_example_plus_a_schedule():
    def body(path: Path) -> list[str]:
        return [line for line in path.read_text(encoding="utf-8").splitlines() if not line.startswith("#")]

    scheduled = body(EXAMPLE.parent / "example-scheduled.yaml")
    assert [line for line in scheduled if not line.startswith("schedule:")] == body(EXAMPLE)
    assert 'schedule: {cron: "*/15 * * * *", timezone: Europe/Berlin}   # every 15 minutes' in scheduled


def test_the_readme_is_a_front_page_whose_links_resolve():
    text = (REPO / "README.md").read_text(encoding="utf-8")
    lines = text.count("\n")
    assert lines <= README_MAX_LINES, (f"README.md has {lines} lines: keep it a front page (at most "
                                       f"{README_MAX_LINES}) and put the detail in a page under docs/")
    links = re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text)
    local = [link for link in links if not re.match(r"[a-z]+:", link)]
    assert len(local) >= 10
    missing = [link for link in local if not (REPO / link).exists()]
    assert missing == [], f"README.md links to files that do not exist: {missing}"
    # the test command CI runs (.ci/run greps for it) is there exactly once
    assert len(re.findall(r"^\s*pip install .*&& *pytest", text, re.M)) == 1


def test_the_readmes_config_validates(cli, tmp_path):
    text = (REPO / "README.md").read_text(encoding="utf-8")
    config = next(block for block in re.findall(r"^```yaml\n(.*?)^```", text, re.M | re.S) if "objectives:" in block)
    shutil.copytree(EXAMPLE.parent / "data", tmp_path / "data")
    (tmp_path / "team.yaml").write_text(config, encoding="utf-8")
    done = cli("validate", str(tmp_path / "team.yaml"))
    assert done.exit_code == 0 and "OK: 1 objectives, 1 key results, 1 sources" in done.output, done.output


def test_an_installed_publish_target_gets_a_section_of_its_own():
    from typing import Literal

    from pydantic import BaseModel, Field

    from okrsync.config import json_schema

    class TargetConfig(BaseModel):
        type: Literal["notion"]
        database: str = Field(description="the Notion database holding the key results")

    class Targets:                      # a registry with one target type, as okrsync.registry gives them
        def types(self) -> list[str]:
            return ["notion"]

        def get(self, name: str):
            return type("Connector", (), {"TargetConfig": TargetConfig})

    page = hook("config_reference").render(json_schema(targets=Targets()))
    assert "| `publish` | map of name → [Publish target type: notion](#target-notion) |" in page
    section = page[page.index("## Publish target `type: notion` {#target-notion}"):]
    assert "| `database` | text | **required** |  | the Notion database holding the key results |" in section


def test_the_commands_page_shows_every_command():
    from okrsync.cli import app

    names = [c.name or c.callback.__name__ for c in app.registered_commands]
    names += [g.name for g in app.registered_groups]
    page = (REPO / "docs" / "commands.md").read_text(encoding="utf-8")
    assert len(names) >= 10
    assert [n for n in names if f"okr-sync {n} " not in page] == [], "docs/commands.md: add these commands"
