"""`okr-sync import`: a starter config from the objectives and key results already in an OKR tool."""
from __future__ import annotations

import re
from datetime import date
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from okrsync.config import ID_PATTERN
from okrsync.contract import first_problem
from okrsync.errors import ConfigError, ConfigIssue, OkrSyncError
from okrsync.publish import ImportedObjective
from okrsync.redact import scrub
from okrsync.registry import ConnectorUnusable, Registry


def parse_settings(pairs: list[str]) -> dict[str, Any]:
    """KEY=VALUE pairs as a target's settings; a VALUE is read as YAML (numbers, {secret: NAME}, lists)."""
    settings: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key.strip():
            raise ConfigError([ConfigIssue("--setting", None, None, f"{pair!r} is not KEY=VALUE, e.g. -s 'token=${{NOTION_TOKEN}}'")])
        try:
            value = yaml.safe_load(raw) if raw.strip().startswith(("{", "[")) else raw
        except yaml.YAMLError:
            value = raw
        settings[key.strip()] = value
    return settings


def import_config(targets: Registry, target_type: str, pairs: list[str], name: str | None, base_dir: Path) -> tuple[str, int]:
    """The starter YAML and the number of key results in it."""
    if target_type not in targets:
        raise ConfigError([ConfigIssue("import", None, None, f"unknown OKR tool {target_type!r}: use one of: "
                                       f"{', '.join(targets.types()) or '(none installed)'}")])
    try:
        connector = targets.get(target_type)
    except ConnectorUnusable as exc:
        raise OkrSyncError(str(exc)) from None
    if not hasattr(connector, "import_okrs"):
        raise ConfigError([ConfigIssue("import", None, None, f"the {target_type} target cannot import OKRs "
                                       "(it has no objectives of its own to read)")])
    settings = {"type": target_type, **parse_settings(pairs)}
    try:
        config = connector.TargetConfig.model_validate(settings, context={"base_dir": base_dir})
    except ValidationError as exc:
        raise ConfigError([ConfigIssue("--setting", None, None, f"{first_problem(exc)}")]) from None
    problems = connector.check(config)
    if problems:
        raise ConfigError([ConfigIssue("--setting", None, None, scrub(p)) for p in problems])
    client = connector.connect(config)
    try:
        objectives = list(connector.import_okrs(client, config))
    finally:
        client.close()
    target_name = name or f"okr-{target_type.replace('_', '-')}"
    return render(objectives, target_name, settings), sum(len(o.key_results) for o in objectives)


def _id(text: str, used: set[str]) -> str:
    base = re.sub(r"[^A-Za-z0-9_.-]+", "-", text.strip()).strip("-._").lower()[:60] or "kr"
    if not re.match(ID_PATTERN, base):
        base = f"kr-{base}"
    candidate, n = base, 2
    while candidate in used:
        candidate, n = f"{base}-{n}", n + 1
    used.add(candidate)
    return candidate


def render(objectives: list[ImportedObjective], target_name: str, settings: dict[str, Any]) -> str:
    today = date.today()
    used: set[str] = set()
    doc: dict[str, Any] = {
        "period": f"{today.year}-Q{(today.month - 1) // 3 + 1}",
        "sources": {},
        "publish": {target_name: settings},
        "objectives": [],
    }
    for o in objectives:
        krs = []
        for kr in o.key_results:
            entry: dict[str, Any] = {"id": _id(kr.id, used), "title": kr.title, "source": "TODO", "metric": {}}
            if kr.baseline is not None:
                entry["baseline"] = kr.baseline
            entry["target"] = kr.target if kr.target is not None else 0
            if kr.unit:
                entry["unit"] = kr.unit
            if kr.external_id is not None:
                entry["publish"] = {target_name: kr.external_id}
            krs.append(entry)
        if not krs:
            continue
        obj: dict[str, Any] = {"id": _id(o.id, used), "title": o.title}
        if o.owner:
            obj["owner"] = o.owner
        obj["key_results"] = krs
        doc["objectives"].append(obj)
    header = (f"# okr-sync starter config, imported from {target_name} on {today}.\n"
              "# Add a source under `sources:`, then give each key result its `source:` and `metric:`;\n"
              "# `okr-sync validate` lists what is still missing. Check each `target:` (0 where the tool had none).\n")
    return header + yaml.safe_dump(doc, sort_keys=False, allow_unicode=True, width=120)


__all__ = ["import_config", "parse_settings", "render"]
