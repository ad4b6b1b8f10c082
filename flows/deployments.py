"""Prefect deployments from config files: one deployment per config, run on its `schedule:`.

    plans = plan_deployments(["config/payments.yaml", "config/growth.yaml"])   # ConfigError if bad
    serve(plans)                       # blocks: one long-lived process runs every schedule

A deployment is named after its config file with `-served` (`sync-okrs/payments-served`) and
syncs that file; run it on demand from the Prefect UI or `prefect deployment run
sync-okrs/payments-served`. Its schedules come from the config (okrsync.schedule): the file's
`schedule:` runs every key result; a key result with a different cadence adds a schedule of its
own to the same deployment, with the parameter `only: [its ids]`, and the file's schedule then
runs the others (`only` as well). The config is read again at every run, so edits to metrics
and targets need no restart; edits to `schedule:` take effect when `serve` is restarted.

`serve` and `prefect deploy` (prefect.yaml, a work pool) are alternatives that can share one
Prefect server: prefect.yaml's deployments are named after the config alone (`sync-okrs/example`),
serve's carry the `-served` suffix and the tag `okr-sync-serve`, and serve only ever touches a
deployment that has that tag and no work pool. It refuses to start when one of its names is
taken by another deployment (DeploymentConflict, one line each), stops when one of its
deployments is taken over while it runs (a later `prefect deploy` of the same name), and on the
way out pauses only the deployments that are still its own.
"""
from __future__ import annotations

import asyncio
import logging
import re
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

from okrsync.config import Plan, load_plan
from okrsync.digest import cadence_of
from okrsync.errors import ConfigError, ConfigIssue, OkrSyncError
from okrsync.schedule import Cadence, cadences, next_fire, unscheduled

logger = logging.getLogger(__name__)

FLOW_NAME = "sync-okrs"
TAGS = ["okr-sync"]                 # every okr-sync deployment (prefect.yaml's too)
SERVE_TAG = "okr-sync-serve"        # only the deployments `okr-sync serve` registered
SERVED_SUFFIX = "-served"           # serve's names: `payments-served`; prefect.yaml's: `payments`
_NAME_UNSAFE = re.compile(r"[/%&<>\\\s]+")


@dataclass(frozen=True)
class DeploymentPlan:
    """What `serve` registers for one config file."""

    name: str                       # the deployment name, from the file name
    config_path: str                # absolute, so runs find it from any working directory
    cadences: tuple[Cadence, ...]
    unscheduled: tuple[str, ...]    # key results run only on demand
    key_results: int
    digest: Cadence | None = None   # `notify: digest:`: the okr-digest deployment's cron and timezone

    @property
    def full_name(self) -> str:
        return f"{FLOW_NAME}/{self.name}"

    @property
    def digest_name(self) -> str:
        from flows.digest import FLOW_NAME as DIGEST_FLOW

        return f"{DIGEST_FLOW}/{self.name}"

    def schedule_parameters(self, cadence: Cadence) -> dict[str, Any]:
        return {} if cadence.whole_file else {"only": list(cadence.kr_ids)}

    def next_runs(self, after: datetime | None = None) -> list[tuple[Cadence, datetime]]:
        moment = after or datetime.now(timezone.utc)
        return [(c, next_fire(c, moment)) for c in self.cadences]


class DeploymentConflict(OkrSyncError):
    """A deployment serve would register or still serves belongs to someone else (a work pool, or
    another program); str() is one line per deployment, saying what to do."""


def deployment_name(config_path: str | Path) -> str:
    """serve's deployment name for a config file: its stem (without '/', '%', '&', '<', '>') and
    `-served`, so it never takes the name prefect.yaml gives the same file."""
    return (_NAME_UNSAFE.sub("-", Path(config_path).stem).strip("-") or "config") + SERVED_SUFFIX


def not_served(deployment: Any) -> str | None:
    """Why an existing Prefect deployment is not serve's to touch, or None when serve registered it
    (it has the tag `okr-sync-serve` and no work pool)."""
    if deployment.work_pool_name:
        return f"belongs to work pool `{deployment.work_pool_name}` (registered by `prefect deploy`)"
    if SERVE_TAG not in (deployment.tags or []):
        return f"lacks the tag `{SERVE_TAG}` that okr-sync serve gives its deployments (something else registered it)"
    return None


def conflict_line(full_name: str, why: str, running: bool = False) -> str:
    """The one line that says a deployment is not serve's and what to do about it (`running`: it
    was serve's when serve started, and serve has stopped rather than run it)."""
    did = "okr-sync serve stopped rather than run it" if running else "okr-sync serve will not take it over"
    return (f"deployment {full_name} {'now ' if running else ''}{why}: {did}; rename the config file, "
            f"or delete that deployment first (`prefect deployment delete {full_name}`)")


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
        digest = cadence_of(plan, str(path))
        plans.append(DeploymentPlan(name=deployment_name(path), config_path=str(path.resolve()),
                                    cadences=tuple(cadences(file_schedule, krs)),
                                    unscheduled=tuple(unscheduled(file_schedule, krs)),
                                    key_results=len(krs),
                                    digest=Cadence(digest[0], digest[1], (), whole_file=True) if digest else None))
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
        plan.name, parameters=parameters, schedules=schedules, tags=[*TAGS, SERVE_TAG],
        description=f"Sync the key results of {plan.config_path} into the OKR store.",
        entrypoint_type=EntrypointType.MODULE_PATH)


def to_digest_deployment(plan: DeploymentPlan, store: str | None = None) -> Any:
    """The `okr-digest` RunnerDeployment of one config with `notify: digest:` (None without one), named
    and tagged like serve's sync deployment (`okr-digest/payments-served`)."""
    if plan.digest is None:
        return None
    from prefect.schedules import Cron
    from prefect.types.entrypoint import EntrypointType

    from flows.digest import send_okr_digest

    parameters: dict[str, Any] = {"config_path": plan.config_path}
    if store:
        parameters["store"] = store
    return send_okr_digest.to_deployment(
        plan.name, parameters=parameters, schedules=[Cron(plan.digest.cron, timezone=plan.digest.timezone)],
        tags=[*TAGS, SERVE_TAG], description=f"Post the weekly digest of {plan.config_path} to its webhook.",
        entrypoint_type=EntrypointType.MODULE_PATH)


def serve(plans: list[DeploymentPlan], store: str | None = None, limit: int | None = None,
          on_registered: Callable[[], None] | None = None) -> None:
    """Register every deployment (and the digest's, for a config with `notify: digest:`) and run their
    schedules until interrupted (a Prefect Runner, as `prefect.serve` does, but touching only
    deployments serve registered itself).

    Raises DeploymentConflict before registering anything when one of the names is taken by a
    deployment that is not serve's, and after stopping when one of its deployments was taken over
    while it ran (checked every `PREFECT_RUNNER_POLL_FREQUENCY` seconds, as often as it looks for
    runs). `on_registered` is called once every deployment is registered. Schedules are paused
    when the process stops (so runs do not pile up as Late), only those of deployments still its
    own, and resumed when it starts again.
    """
    from prefect.exceptions import TerminationSignal
    from prefect.runner import Runner
    from prefect.settings import get_current_settings

    digests = [d for d in (to_digest_deployment(p, store) for p in plans) if d is not None]
    deployments = [to_deployment(p, store) for p in plans] + digests
    runner = Runner(pause_on_shutdown=False, limit=limit)
    try:
        refused = [conflict_line(name, why) for name, why in _taken(d.full_name for d in deployments)]
        if not refused:
            served = {runner.add_deployment(d): d.full_name for d in deployments}
    except Exception as exc:  # noqa: BLE001 - the API is unreachable or refused: one line, not a traceback
        detail = str(exc).splitlines()[0] if str(exc) else "no detail"
        raise OkrSyncError(f"could not register the deployments with the Prefect API ({exc.__class__.__name__}: "
                           f"{detail}): check that the Prefect server is up and PREFECT_API_URL points at it") from None
    if refused:
        raise DeploymentConflict("\n".join(refused))
    if on_registered is not None:
        on_registered()
    every = float(get_current_settings().runner.poll_frequency)
    taken: list[str] = []
    try:
        asyncio.run(_run(runner, served, every, taken))
    except (KeyboardInterrupt, TerminationSignal):
        pass
    finally:
        _pause_own(served)
    if taken:
        raise DeploymentConflict("\n".join(taken))


def _taken(full_names: Any) -> list[tuple[str, str]]:
    """(name, why) of each of these deployment names that exists and is not serve's."""
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound

    found = []
    with get_client(sync_client=True) as client:
        for name in full_names:
            try:
                why = not_served(client.read_deployment_by_name(name))
            except ObjectNotFound:
                continue
            if why:
                found.append((name, why))
    return found


async def _run(runner: Any, served: dict[Any, str], every: float, taken: list[str]) -> None:
    """The runner, and beside it a watch that stops it when one of its deployments stops being its
    own (so a run meant for a work pool is never picked up here), noting why in `taken`."""
    import anyio
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId

    async def watch() -> None:
        async with get_client() as client:
            while True:
                await anyio.sleep(every)
                try:
                    current = await client.read_deployments(
                        deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=list(served))))
                except Exception as exc:  # noqa: BLE001 - the server is away for a moment: look again next time
                    logger.debug("could not check the served deployments: %s", exc)
                    continue
                lost = [(served[d.id], why) for d in current if (why := not_served(d))]
                if lost:
                    taken.extend(conflict_line(name, why, running=True) for name, why in lost)
                    if runner.started:
                        await runner.astop()
                    return

    async with anyio.create_task_group() as group:
        group.start_soon(watch)
        await runner.start()
        group.cancel_scope.cancel()


def _pause_own(served: dict[Any, str]) -> None:
    """Pause the schedules of the deployments that are still serve's (never a work pool's)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId

    try:
        with get_client(sync_client=True) as client:
            for d in client.read_deployments(deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=list(served)))):
                if not_served(d) is None:
                    client.pause_deployment(d.id)
    except Exception as exc:  # noqa: BLE001 - the server is gone: nothing to pause, say so and stop
        logger.warning("could not pause the served deployments' schedules (%s): they may run as Late until "
                       "serve starts again", exc.__class__.__name__)
