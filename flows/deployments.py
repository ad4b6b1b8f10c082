"""Prefect deployments from config files: one deployment per config, run on its `schedule:`.

    plans = plan_deployments(["config/payments.yaml", "config/growth.yaml"])   # ConfigError if bad
    serve(plans)                       # blocks: one long-lived process runs every schedule

A deployment is named after its config file (`sync-okrs/payments`) and syncs that file; run it
on demand from the Prefect UI or `prefect deployment run sync-okrs/payments`. Its schedules
come from the config (okrsync.schedule): the file's `schedule:` runs every key result; a key
result with a different cadence adds a schedule of its own to the same deployment, with the
parameter `only: [its ids]`, and the file's schedule then runs the others (`only` as well).
The config is read again at every run, so edits to metrics and targets need no restart;
edits to `schedule:` take effect when `serve` is restarted.
"""
from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from okrsync.config import Plan, load_plan
from okrsync.errors import ConfigError, ConfigIssue
from okrsync.schedule import Cadence, cadences, next_fire, unscheduled

FLOW_NAME = "sync-okrs"
TAGS = ["okr-sync"]
_NAME_UNSAFE = re.compile(r"[/%&<>\\\s]+")


@dataclass(frozen=True)
class DeploymentPlan:
    """What `serve` registers for one config file."""

    name: str                       # the deployment name, from the file name
    config_path: str                # absolute, so runs find it from any working directory
    cadences: tuple[Cadence, ...]
    unscheduled: tuple[str, ...]    # key results run only on demand
    key_results: int

    @property
    def full_name(self) -> str:
        return f"{FLOW_NAME}/{self.name}"

    def schedule_parameters(self, cadence: Cadence) -> dict[str, Any]:
        return {} if cadence.whole_file else {"only": list(cadence.kr_ids)}

    def next_runs(self, after: datetime | None = None) -> list[tuple[Cadence, datetime]]:
        moment = after or datetime.now(timezone.utc)
        return [(c, next_fire(c, moment)) for c in self.cadences]


def deployment_name(config_path: str | Path) -> str:
    """The deployment name for a config file: its stem, without '/', '%', '&', '<', '>'."""
    return _NAME_UNSAFE.sub("-", Path(config_path).stem).strip("-") or "config"


def plan_deployments(config_paths: list[str | Path], store: str | None = None) -> list[DeploymentPlan]:
    """Validate every config on its own and plan one deployment each.

    Raises ConfigError with every problem: a config's own mistakes, two files that would give
    the same deployment name, a key result defined differently by two files that write to the
    same store (the same key result in two files, identically, is fine: the store keeps one
    check-in per observed value).
    """
    issues: list[ConfigIssue] = []
    loaded: list[tuple[Path, Plan]] = []
    for raw in config_paths:
        path = Path(raw)
        try:
            loaded.append((path, load_plan([path], store)))
        except ConfigError as exc:
            issues.extend(exc.issues)

    by_name: dict[str, list[str]] = defaultdict(list)
    for path, _ in loaded:
        by_name[deployment_name(path)].append(str(path))
    for name, files in by_name.items():
        if len(files) > 1:
            issues.append(ConfigIssue(", ".join(files), None, None,
                                      f"these files would all be deployment `{name}`: give them different file names"))
    seen: dict[tuple[str, str], tuple[str, Any]] = {}
    for path, plan in loaded:
        for kr in plan.key_results:
            definition = (kr.record(), kr.metric)
            other, other_definition = seen.setdefault((plan.store_url, kr.id), (str(path), definition))
            if other != str(path) and other_definition != definition:
                issues.append(ConfigIssue(str(path), kr.line, kr.id,
                                          f"key result `{kr.id}` is also in {other}, defined differently, and both "
                                          "write to the same store: make the two identical, or rename one"))
    if issues:
        raise ConfigError(issues)

    plans = []
    for path, plan in loaded:
        file_schedule = plan.schedules.get(str(path))
        krs = [(kr.id, kr.schedule) for kr in plan.key_results]
        plans.append(DeploymentPlan(name=deployment_name(path), config_path=str(path.resolve()),
                                    cadences=tuple(cadences(file_schedule, krs)),
                                    unscheduled=tuple(unscheduled(file_schedule, krs)),
                                    key_results=len(krs)))
    return plans


def to_deployment(plan: DeploymentPlan, store: str | None = None) -> Any:
    """The Prefect RunnerDeployment of one planned config (not yet registered)."""
    from prefect.schedules import Cron
    from prefect.types.entrypoint import EntrypointType

    from flows.sync import sync_okrs

    parameters: dict[str, Any] = {"config_paths": [plan.config_path]}
    if store:
        parameters["store"] = store
    # No slugs: Prefect then replaces a deployment's schedules wholesale at every registration, so
    # a cadence removed from the config disappears (schedules with slugs are only ever upserted).
    schedules = [Cron(c.cron, timezone=c.timezone, parameters=plan.schedule_parameters(c)) for c in plan.cadences]
    return sync_okrs.to_deployment(
        plan.name, parameters=parameters, schedules=schedules, tags=TAGS,
        description=f"Sync the key results of {plan.config_path} into the OKR store.",
        entrypoint_type=EntrypointType.MODULE_PATH)


def serve(plans: list[DeploymentPlan], store: str | None = None, limit: int | None = None) -> None:
    """Register every deployment and run their schedules until interrupted (Prefect `serve`).

    Schedules are paused when the process stops (so runs do not pile up as Late) and resumed
    when it starts again.
    """
    from prefect import serve as prefect_serve

    prefect_serve(*[to_deployment(p, store) for p in plans], limit=limit, print_starting_message=False)
