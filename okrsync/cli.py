"""okr-sync command line: validate, run, backfill, status, history, report, digest, checkin, publish, import,
schema, serve, secret set.

Exit codes: 0 all key results synced; 1 some failed (the rest were written); 2 bad config.
"""
from __future__ import annotations

import getpass
import json
import logging
import math
import os
import re
import sys
from contextlib import contextmanager
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Any, Iterator, List, Optional

# Before anything imports Prefect: no analytics, no INFO chatter on a normal run.
_LOG_LEVEL_CHOSEN = "PREFECT_LOGGING_LEVEL" in os.environ   # `serve` logs at INFO unless one was chosen
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
os.environ.setdefault("PREFECT_SERVER_LOGGING_LEVEL", "WARNING")
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "90")  # a busy machine starts it slowly

import typer  # noqa: E402
from rich.console import Console  # noqa: E402

from okrsync import render  # noqa: E402
from okrsync.config import DEFAULT_STORE, STORE_ENV, Plan, json_schema, load_plan  # noqa: E402
from okrsync.engine import RunOptions, check_owners, masked_url, max_workers, selected, sync  # noqa: E402
from okrsync.errors import ConfigError, OkrSyncError, StoreError  # noqa: E402
from okrsync.redact import scrub  # noqa: E402
from okrsync.runmode import prefect_api_url  # noqa: E402

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Keep OKR key results true to the work: sync metrics from spreadsheets, Jira and GitHub.")
# Piped output (CI logs, `| less`) gets a wide console so tables are not cropped to 80 columns.
out = Console(width=None if sys.stdout.isatty() else 200)
err = Console(stderr=True)

ConfigArgs = typer.Argument(..., help="config YAML file(s), e.g. config/example.yaml", show_default=False)
StoreOpt = typer.Option(None, "--store", help=f"SQLAlchemy URL of the OKR store (default: config `store:`, ${STORE_ENV}, {DEFAULT_STORE})")
JsonOpt = typer.Option(False, "--json", help="print one JSON document instead of tables")
AllOpt = typer.Option(False, "--all", help=f"show every key result; over {render.SUMMARY_ROWS}, the table shows counts "
                                           "by status and those needing attention first")


def _fail_config(error: ConfigError) -> None:
    for issue in error.issues:
        err.print(scrub(str(issue)), markup=False, highlight=False, soft_wrap=True)
    err.print(f"[red]{len(error.issues)} problem(s) found[/red]; fix them and run `okr-sync validate` again.")
    raise typer.Exit(2)


def _fail(error: OkrSyncError, code: int = 1) -> None:
    err.print(f"error: {scrub(str(error))}", markup=False, highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def _store_url(store: str | None) -> str:
    return store or os.environ.get(STORE_ENV) or DEFAULT_STORE


def _scope(configs: list[Path] | None, store: str | None) -> tuple[str, list[str] | None, Plan | None]:
    """The store a reading command opens and the key results it shows: with configs, theirs (in their
    store) and the loaded plan; without, every key result of the store the option or environment names."""
    if not configs:
        return _store_url(store), None, None
    try:
        plan = load_plan(configs, store)
    except ConfigError as e:
        _fail_config(e)
    return plan.store_url, [kr.id for kr in plan.key_results], plan


@contextmanager
def _opened_store(url: str) -> Iterator[Any]:
    """The OKR store, closed afterwards; a store error ends the command with its one-line message."""
    from connectors.sql_store import open_store

    try:
        with open_store(url) as s:
            yield s
    except OkrSyncError as e:
        _fail(e)


@app.command()
def validate(configs: List[Path] = ConfigArgs) -> None:
    """Check config files; print every mistake as file:line: key-result: what to fix (exit 2), or OK."""
    try:
        plan = load_plan(configs)
    except ConfigError as e:
        _fail_config(e)
    targets = f", {len(plan.targets)} publish targets" if plan.targets else ""
    out.print(f"OK: {len(plan.objectives)} objectives, {len(plan.key_results)} key results, "
              f"{len(plan.sources)} sources{targets} in {', '.join(str(c) for c in configs)}", highlight=False)
    from okrsync.delivery import missing_ids

    for lines in missing_ids(plan, plan.key_results).values():   # not mistakes: such key results are skipped
        for line in lines:
            out.print(f"note: {line}", markup=False, highlight=False, soft_wrap=True)


@app.command()
def run(configs: List[Path] = ConfigArgs,
        dry_run: bool = typer.Option(False, "--dry-run", help="measure and show, write nothing"),
        only: Optional[List[str]] = typer.Option(None, "--only", help="sync only this key result id (repeatable)"),
        store: Optional[str] = StoreOpt,
        as_of: Optional[str] = typer.Option(None, "--as-of", metavar="DATE[THH:MM]",
                                            help="measure as of this date (its end, UTC) or time (default now); "
                                                 "a past date needs metrics that can look back ({as_of}, date_column)"),
        as_json: bool = JsonOpt,
        deadline: Optional[float] = typer.Option(None, "--deadline", min=1, max=86400,
                                                 help="seconds the whole run may spend measuring (each source also has its `deadline:`, default 120)"),
        prefect: Optional[bool] = typer.Option(None, "--prefect/--no-prefect",
                                               help="run as a Prefect flow run (default: when a Prefect API is configured)"),
        take_over: bool = typer.Option(False, "--take-over",
                                       help="move key results another config file defines differently in the store to these files"),
        show_all: bool = AllOpt,
        verbose: bool = typer.Option(False, "--verbose", "-v", help="show okr-sync's (and Prefect's) own logs")) -> None:
    """Measure every key result and write check-ins to the store.

    With a Prefect API configured (PREFECT_API_URL or the active Prefect profile) the run is a Prefect
    flow run that shows in the UI; otherwise it runs in this process, without Prefect.
    """
    _log_to_stderr(logging.INFO if verbose else logging.WARNING)
    moment = _as_of(as_of)
    plan = _plan_for_run(configs, store, only)
    total = len(only) if only else len(plan.key_results)
    use_prefect = prefect if prefect is not None else prefect_api_url() is not None
    if use_prefect and not dry_run:   # the flow checks too; asking first keeps a refusal to one line, not a task failure
        from flows.services import local_services

        try:
            check_owners(local_services().open_store, plan, selected(plan, only), take_over)
        except ConfigError as e:
            _fail_config(e)
        except StoreError:
            pass                      # an unusable store: the run finds it before measuring and says so

    with render.progress_bar(err, total, enabled=not as_json) as advance:
        try:
            if use_prefect:
                result = _run_as_flow(plan, configs, store, dry_run, only, moment, deadline, take_over, advance, verbose)
            else:
                from flows.services import local_services

                result = sync(plan, RunOptions(dry_run=dry_run, only=only or None, as_of=moment, deadline=deadline,
                                               take_over=take_over), local_services(on_progress=advance))
        except ConfigError as e:
            _fail_config(e)
        except OkrSyncError as e:
            _fail(e)
    if result.get("store_error") and not as_json:   # the store is unusable: nothing was measured
        err.print(f"error: {result['store_error']}", markup=False, highlight=False, soft_wrap=True)
        raise typer.Exit(1)
    if as_json:
        print(json.dumps(result, indent=2, default=str))
    else:
        render.run_table(out, result, show_all=show_all)
        render.publish_lines(out, result.get("publish"), dry_run)
        _alerts_line(result.get("alerts"))
        _report_lines(result.get("report"))
    undelivered = sum(t.get("failed", 0) for t in (result.get("publish") or {}).values())
    raise typer.Exit(1 if result["counts"]["failed"] or undelivered else 0)


def _as_of(text: str | None) -> date | datetime | None:
    """`--as-of`: a date (measured as of its end, UTC) or a date and time (UTC unless it says); exit 2 otherwise."""
    if text is None:
        return None
    value = text.strip()
    try:
        return date.fromisoformat(value) if len(value) == 10 else datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        err.print(f"error: --as-of {text!r} is not a date: write e.g. 2026-11-15 (the end of that day, UTC) or "
                  "2026-11-15T12:00", markup=False, soft_wrap=True)
        raise typer.Exit(2) from None


def _plan_for_run(configs: List[Path], store: str | None, only: Optional[List[str]]) -> Any:
    """The configs' plan for `run` and `backfill`: exit 2 on a bad config, an unknown --only id or a bad
    $OKR_SYNC_MAX_WORKERS, each said in one line."""
    try:
        plan = load_plan(configs, store)
        if only:
            unknown = sorted(set(only) - {kr.id for kr in plan.key_results})
            if unknown:
                known = ", ".join(kr.id for kr in plan.key_results)
                err.print(f"error: --only {', '.join(unknown)}: no such key result in the config (known: {known})",
                          markup=False, soft_wrap=True)
                raise typer.Exit(2)
        max_workers()
    except ConfigError as e:
        _fail_config(e)
    return plan


def _run_as_flow(plan, configs, store, dry_run, only, as_of, deadline, take_over, advance, verbose) -> dict:
    """The same run as a Prefect flow run (one task per source), with the plan already loaded."""
    if verbose:
        os.environ["PREFECT_LOGGING_LEVEL"] = "INFO"
    from flows.sync import prepared, sync_okrs
    from flows.temporary_server import prefect_api

    try:
        # no Prefect API configured: Prefect's temporary server, in a process of its own (Prefect would load
        # its server code into this one to start it)
        with prefect_api(), prepared(plan, advance) as handed:
            # the flow uses the plan handed over; its parameters (shown in the UI) get the URL masked
            counts = sync_okrs(config_paths=[str(c) for c in configs], store=masked_url(store) if store else None,
                               dry_run=dry_run, only=only or None, as_of=as_of, deadline=deadline,
                               take_over=take_over)
            return handed.result if handed.result is not None else counts
    except (OkrSyncError, KeyboardInterrupt):
        raise
    except Exception as exc:  # noqa: BLE001 - Prefect could not run the flow: say so in one line
        where = prefect_api_url() or "a temporary local Prefect server"
        err.print(scrub(f"error: Prefect could not run the sync at {where} ({exc.__class__.__name__}: "
                        f"{str(exc).splitlines()[0] if str(exc) else 'no detail'}): check that the Prefect server is "
                        "up, or run without Prefect: okr-sync run --no-prefect"), markup=False, soft_wrap=True)
        raise typer.Exit(1) from None


def _log_to_stderr(level: int) -> None:
    """okr-sync's own log lines (retries, and with --verbose one line per source) on stderr, when
    nothing else shows them (under Prefect, its console handler on the root logger does)."""
    from rich.logging import RichHandler

    handler = RichHandler(console=err, show_path=False, show_time=False, markup=False, rich_tracebacks=False)
    for name in ("okrsync", "connectors"):
        logger = logging.getLogger(name)
        for old in [h for h in logger.handlers if isinstance(h, RichHandler)]:
            logger.removeHandler(old)
        logger.setLevel(level)
        if not logging.getLogger().handlers:
            logger.addHandler(handler)


@app.command()
def status(configs: Optional[List[Path]] = typer.Argument(None, help="limit to the key results of these configs"),
           store: Optional[str] = StoreOpt, as_json: bool = JsonOpt, show_all: bool = AllOpt) -> None:
    """Show every key result in the store: last value, progress, status, when last updated."""
    url, ids, plan = _scope(configs, store)
    from okrsync import engine
    from okrsync.forecast import as_json as forecast_json
    from okrsync.forecast import earliest_start, of_state

    moment = engine.now()
    with _opened_store(url) as s:
        states = s.key_results(ids)
        deliveries = s.delivery_states(list(plan.targets) if plan else None)

        def forecasts_for(shown: list) -> dict:
            """The forecasts of the key results shown: their check-ins read in one query, only theirs
            (a board of 5,000 shows 50 rows; --json and --all show every one)."""
            since = earliest_start(st.period_start for st in shown)
            points = s.checkin_points([st.kr_id for st in shown], since=since) if shown else {}
            return {st.kr_id: of_state(st, points.get(st.kr_id, []), moment) for st in shown}

        if as_json:
            forecasts = forecasts_for(states)
            print(json.dumps([{**render.state_json(st), "forecast": forecast_json(forecasts[st.kr_id][0]),
                               "forecast_reason": forecasts[st.kr_id][1]} for st in states], indent=2, default=str))
            return
        if not states:
            out.print(f"No key results in the store yet ({url}). Run `okr-sync run CONFIG` first.", highlight=False)
            return
        render.status_table(out, states, lambda shown: {k: forecast_json(f) for k, (f, _) in forecasts_for(shown).items()},
                            show_all=show_all)
    render.delivery_lines(out, deliveries)


@app.command()
def publish(configs: List[Path] = ConfigArgs, store: Optional[str] = StoreOpt,
            check: bool = typer.Option(False, "--check", help="check access to each target and that every mapped key "
                                                              "result exists there; deliver nothing"),
            as_json: bool = JsonOpt,
            verbose: bool = typer.Option(False, "--verbose", "-v", help="show okr-sync's own logs")) -> None:
    """Deliver the check-ins still pending for the configs' publish targets, without measuring.

    Each check-in a run writes is queued for every publish target of its key result and delivered after
    the write; what a target could not take (down, no access) stays pending and goes out with the next
    run or with this command. Exit 1 if a delivery or a check failed."""
    _log_to_stderr(logging.INFO if verbose else logging.WARNING)
    try:
        plan = load_plan(configs, store)
    except ConfigError as e:
        _fail_config(e)
    from okrsync import delivery
    from okrsync.registry import default_targets

    if not plan.targets:
        err.print(f"error: {', '.join(str(c) for c in configs)} defines no publish targets: add a `publish:` section "
                  "(see the README, \"Publish to your OKR tool\")", markup=False, soft_wrap=True)
        raise typer.Exit(2)
    if check:
        checked = delivery.check_targets(plan, default_targets())
        if as_json:
            print(json.dumps(checked, indent=2, default=str))
        else:
            for name, c in checked.items():
                verdict = "OK" if not c["problems"] else f"{len(c['problems'])} problem(s)"
                out.print(f"{name} ({c['type']}): {verdict}, {c['key_results']} key result(s) mapped, {c['calls']} call(s)",
                          markup=False, highlight=False, soft_wrap=True)
                for p in c["problems"]:
                    out.print(f"  {p}", markup=False, highlight=False, soft_wrap=True)
        raise typer.Exit(1 if any(c["problems"] for c in checked.values()) else 0)
    import uuid

    from flows.services import local_services
    from okrsync.engine import within_deadline

    services = local_services()
    try:
        published = delivery.publish_pending(plan, services.open_store, services.targets, "publish-" + uuid.uuid4().hex[:8],
                                             within=within_deadline)
    except OkrSyncError as e:
        _fail(e)
    skipped = delivery.missing_ids(plan, plan.key_results)
    for name, lines in skipped.items():
        published["targets"][name]["skipped"] = lines
    if as_json:
        print(json.dumps(published["targets"], indent=2, default=str))
    else:
        render.publish_lines(out, published["targets"], dry_run=False)
    raise typer.Exit(1 if any(t["failed"] for t in published["targets"].values()) else 0)


@app.command("import")
def import_okrs(target_type: str = typer.Argument(..., help="the OKR tool: notion, google_sheets, jira, tability"),
                setting: Optional[List[str]] = typer.Option(None, "--setting", "-s",
                                                            help="a target setting as KEY=VALUE, as under `publish:` "
                                                                 "(repeatable), e.g. -s 'token=${NOTION_TOKEN}'"),
                name: Optional[str] = typer.Option(None, "--name", help="the target's name in the config (default okr-TYPE)"),
                out_file: Optional[Path] = typer.Option(None, "--out", help="write the YAML here (default: print it)")) -> None:
    """Write a starter config of the objectives and key results already in an OKR tool.

    Ids, titles, baseline and target where the tool has them, and the `publish:` mapping; each key result
    gets an empty `metric:` and `source: TODO` that `okr-sync validate` then asks you to fill in."""
    from okrsync import starter
    from okrsync.registry import default_targets

    try:
        text, count = starter.import_config(default_targets(), target_type, setting or [], name, Path.cwd())
    except ConfigError as e:
        _fail_config(e)
    except OkrSyncError as e:
        _fail(e)
    if out_file is None:
        print(text, end="")
        return
    if out_file.exists():
        err.print(f"error: {out_file} exists: choose another --out, or move it away first", markup=False, soft_wrap=True)
        raise typer.Exit(2)
    out_file.write_text(text, encoding="utf-8")
    out.print(f"Wrote {count} key result(s) to {out_file}; fill in each `source:` and `metric:`, then run "
              f"`okr-sync validate {out_file}`.", markup=False, highlight=False, soft_wrap=True)


@app.command()
def backfill(configs: List[Path] = ConfigArgs,
             start: Optional[str] = typer.Option(None, "--from", metavar="DATE",
                                                 help="first date (default: the start of the key results' period)"),
             end: Optional[str] = typer.Option(None, "--to", metavar="DATE", help="last date (default: yesterday, UTC)"),
             every: str = typer.Option("1w", "--every", help="days between dates: 1d, 1w, or e.g. 2d, 2w"),
             dry_run: bool = typer.Option(False, "--dry-run", help="measure and show, write nothing"),
             only: Optional[List[str]] = typer.Option(None, "--only", help="backfill only this key result id (repeatable)"),
             store: Optional[str] = StoreOpt, as_json: bool = JsonOpt,
             verbose: bool = typer.Option(False, "--verbose", "-v", help="show okr-sync's own logs")) -> None:
    """Fill the history of every key result that can be measured in the past, at each date from the period
    start to yesterday, as check-ins of kind `backfill`.

    A metric can look back when its query uses {as_of} (Jira `resolved <= "{as_of} 23:59"`, GitHub
    `closed:<={as_of}`) or a spreadsheet metric names a `date_column:`; the others are listed as skipped.
    Running it again writes nothing new. Backfilled check-ins feed history and forecasts; they are not
    sent to publish targets."""
    from okrsync.backfill import BackfillError, BackfillOptions, planned
    from okrsync.backfill import backfill as run_backfill

    _log_to_stderr(logging.INFO if verbose else logging.WARNING)
    days = _days(every)
    first, last = _day_option("--from", start), _day_option("--to", end)
    plan = _plan_for_run(configs, store, only)
    from flows.services import local_services
    from okrsync import engine

    options = BackfillOptions(start=first, end=last, every=days, dry_run=dry_run, only=only or None)
    try:
        _, _, wanted, _ = planned(plan, options, local_services().registry, engine.now().date())
    except BackfillError as e:
        err.print(f"error: {e}", markup=False, soft_wrap=True)
        raise typer.Exit(2) from None
    pairs = sum(len(d) for d in wanted.values())
    with render.progress_bar(err, pairs, enabled=not as_json, label="backfilling key results × dates") as advance:
        try:
            result = run_backfill(plan, options, local_services(on_progress=advance))
        except BackfillError as e:
            err.print(f"error: {e}", markup=False, soft_wrap=True)
            raise typer.Exit(2) from None
        except ConfigError as e:
            _fail_config(e)
        except OkrSyncError as e:
            _fail(e)
    if result.get("store_error") and not as_json:
        err.print(f"error: {result['store_error']}", markup=False, highlight=False, soft_wrap=True)
        raise typer.Exit(1)
    if as_json:
        print(json.dumps(result, indent=2, default=str))
    else:
        render.backfill_table(out, result)
    raise typer.Exit(1 if result["counts"]["failed"] or result.get("store_error") else 0)


def _days(text: str) -> int:
    """--every: 1d, 1w, 2w ... as days; exit 2 otherwise."""
    from okrsync.alerts import parse_duration

    try:
        span = parse_duration(text)
    except ValueError:
        span = None
    if span is None or span.total_seconds() % 86400:
        err.print(f"error: --every {text!r} is not a whole number of days: write 1d, 1w, or e.g. 2w",
                  markup=False, soft_wrap=True)
        raise typer.Exit(2)
    return span.days


def _day_option(name: str, text: str | None) -> date | None:
    if text is None:
        return None
    try:
        return date.fromisoformat(text.strip())
    except ValueError:
        err.print(f"error: {name} {text!r} is not a date: write e.g. 2026-10-01", markup=False, soft_wrap=True)
        raise typer.Exit(2) from None


@app.command()
def history(kr_id: str = typer.Argument(..., help="key result id"),
            store: Optional[str] = StoreOpt, as_json: bool = JsonOpt,
            show_changes: bool = typer.Option(False, "--changes",
                                              help="show which tickets entered and left a count between check-ins")) -> None:
    """Show every check-in of one key result, oldest first, each with its run and the Prefect flow run
    that made it (when the run was one); --changes: the tickets that entered and left a count."""
    from okrsync.changes import changes

    with _opened_store(_store_url(store)) as s:
        rows = s.history(kr_id)
        flow_runs = {r["run_id"]: render.flow_run_json(r) for r in s.runs(run_ids=[c.run_id for c in rows])}
    moved = changes(rows) if show_changes else None
    if as_json:
        docs = [{**render.checkin_json(c), "flow_run": flow_runs.get(c.run_id)} for c in rows]
        for doc, change in zip(docs, moved or []):
            doc["changes"] = change
        print(json.dumps(docs, indent=2, default=str))
        return
    render.history_table(out, kr_id, rows, flow_runs, moved)


@app.command()
def report(configs: Optional[List[Path]] = typer.Argument(None, help="limit to the key results of these configs (default: every key result in the store)"),
           out_dir: Path = typer.Option(..., "--out", help="the folder to write the report to (index.html and one page per objective)"),
           store: Optional[str] = StoreOpt) -> None:
    """Write the OKR report: a static site with every key result's card, burn-up chart and evidence.

    It opens from the folder or any static web host with no network; needs `pip install 'okr-sync[report]'`."""
    from okrsync.report import ReportUnavailable, require_extra, write_report

    try:
        require_extra()
    except ReportUnavailable as e:
        _fail(e)
    url, ids, _ = _scope(configs, store)
    title = f"OKR report · {', '.join(Path(c).name for c in configs)}" if configs else "OKR report"
    with _opened_store(url) as s:
        try:
            done = write_report(s, out_dir, kr_ids=ids, title=title)
        except OSError as exc:
            err.print(f"error: cannot write the report to {out_dir} ({exc.strerror or exc.__class__.__name__}): "
                      "choose a folder you can write with --out", markup=False, highlight=False, soft_wrap=True)
            raise typer.Exit(1) from None
        except OkrSyncError as e:
            _fail(e)
    index = Path(done["index"]).resolve()
    if not done["key_results"]:
        out.print(f"No key results in the store yet ({url}): wrote an empty report. Run `okr-sync run CONFIG` first.",
                  markup=False, highlight=False, soft_wrap=True)
    out.print(f"Wrote the report of {done['key_results']} key result(s) on {done['pages']} page(s) in "
              f"{done['seconds']:.2f} s: {index.as_uri()}", markup=False, highlight=False, soft_wrap=True)


@app.command()
def digest(config: Path = typer.Argument(..., help="the config file whose digest to send, e.g. config/payments.yaml", show_default=False),
           dry_run: bool = typer.Option(False, "--dry-run", help="print the digest; send nothing, record nothing"),
           store: Optional[str] = StoreOpt, as_json: bool = typer.Option(False, "--json", help="print the webhook payload (Slack Block Kit)")) -> None:
    """Post the config's digest to its `notify:` webhook: what moved since the last digest, what is at risk,
    forecast misses, manual values, failing sources, links. Sent once per period of `notify: digest:`."""
    from okrsync.digest import send_digest

    try:
        plan = load_plan([config], store)
    except ConfigError as e:
        _fail_config(e)
    from flows.services import local_services

    services = local_services()
    try:
        done = send_digest(plan, str(config), services.open_store, services.post_webhook, dry_run=dry_run)
    except ConfigError as e:
        _fail_config(e)
    except OkrSyncError as e:
        _fail(e)
    if as_json and "payload" in done:
        print(json.dumps(done["payload"], indent=2, ensure_ascii=False))
    elif dry_run:
        print(done["text"])
    if not dry_run:
        line = ("Sent the digest of " + config.name if done["sent"] else f"Not sent: {done['reason']}")
        err.print(line, markup=False, highlight=False, soft_wrap=True)


@app.command()
def checkin(kr_id: str = typer.Argument(..., help="key result id"),
            value: float = typer.Argument(..., help="the value to record"),
            note: Optional[str] = typer.Option(None, "--note", help="why (shown in history)"),
            store: Optional[str] = StoreOpt) -> None:
    """Record a manual check-in (kept over automatic values unless the key result says on_manual: overwrite).

    Its progress, expected progress and status are computed like a sync's, from the key result's
    baseline, target, period and thresholds as the store keeps them."""
    if not math.isfinite(value):
        err.print(f"error: {value} is not a value a key result can have: give a finite number, e.g. "
                  f"okr-sync checkin {kr_id} 41", markup=False, soft_wrap=True)
        raise typer.Exit(2)
    from okrsync import engine

    now = engine.now()                  # the clock runs use, so a manual value and a run's compare in time
    with _opened_store(_store_url(store)) as s:
        state = next(iter(s.key_results([kr_id])), None)
        row = s.add_manual_checkin(kr_id, value, note=note, observed_at=now,
                                   **(_assess_manual(state, value, now) if state else {}))
    out.print(f"Recorded manual check-in of {row.value:g} for {kr_id}{render.assessed(row)}.", highlight=False)


def _assess_manual(state: Any, value: float, moment: datetime) -> dict[str, Any]:
    """A manual value's progress, expected progress and status (okrsync.progress.assess) from the key
    result as stored; thresholds the store lacks (rows written before it kept them) are the defaults.
    Without a stored period only progress; nothing if target equals baseline."""
    from okrsync.measure import Period
    from okrsync.progress import Thresholds, assess, progress

    try:
        if state.period_start is None or state.period_end is None:
            return {"progress": progress(value, state.baseline, state.target)}
        default = Thresholds()
        thresholds = Thresholds(default.at_risk if state.at_risk is None else state.at_risk,
                                default.off_track if state.off_track is None else state.off_track)
        a = assess(value, state.baseline, state.target, Period(state.period_start, state.period_end), moment, thresholds)
    except ValueError:
        return {}
    return {"progress": a.progress, "expected": a.expected, "status": a.status}


@app.command()
def serve(configs: List[Path] = ConfigArgs, store: Optional[str] = StoreOpt,
          limit: Optional[int] = typer.Option(None, "--limit", min=1, help="most flow runs at once (default: Prefect's runner limit)"),
          check: bool = typer.Option(False, "--check", help="show the deployments and their next runs, then exit")) -> None:
    """Run each config on its `schedule:` in one long-lived process: a Prefect deployment per config
    (and `okr-digest/CONFIG-served` for a config with `notify: digest:`).

    Runs can also be started on demand: `prefect deployment run sync-okrs/CONFIG-NAME-served` (in a shell
    with the same PREFECT_API_URL; without it prefect answers that the deployment is not found) or the Prefect UI.
    serve only touches deployments it registered (tag `okr-sync-serve`, no work pool): it refuses to start,
    exit 2, when another deployment has one of its names, and stops, exit 2, if one is taken over while it runs.
    """
    if not _LOG_LEVEL_CHOSEN and not check:  # before Prefect loads its settings: runs log at INFO to the UI
        os.environ["PREFECT_LOGGING_LEVEL"] = "INFO"
    from flows.deployments import plan_deployments

    try:
        plans = plan_deployments(configs, store)
    except ConfigError as e:
        _fail_config(e)
    _deployments_table(plans)
    if check:
        return
    from prefect.settings import get_current_settings

    from flows.deployments import DeploymentConflict, serve as serve_deployments

    api = get_current_settings().api.url
    if not api:
        err.print("[yellow]PREFECT_API_URL is not set: runs go to a temporary Prefect server that stops with this "
                  "process. To see them in the Prefect UI, run `prefect server start` and "
                  "`export PREFECT_API_URL=http://127.0.0.1:4200/api` first.[/yellow]", soft_wrap=True)

    def registered() -> None:
        if api:
            out.print(f"Serving {len(plans)} deployment(s) against {api}; stop with Ctrl-C (schedules pause until the "
                      "next start).", highlight=False, soft_wrap=True)
            out.print(_run_on_demand_hint(api, plans), markup=False, highlight=False, soft_wrap=True)
    try:
        serve_deployments(plans, store=store, limit=limit, on_registered=registered)
    except DeploymentConflict as e:
        for line in str(e).splitlines():
            err.print(f"error: {line}", markup=False, highlight=False, soft_wrap=True)
        raise typer.Exit(2)
    except OkrSyncError as e:
        _fail(e)


def _run_on_demand_hint(api: str, plans) -> str:
    """How to start a run from another shell: the prefect CLI there needs this server's URL, or it
    asks a temporary server of its own, which answers that the deployment is not found."""
    runs = "\n".join(f"  prefect deployment run {plan.full_name}" for plan in plans)
    return (f"Run one now from another shell (the prefect CLI needs the same PREFECT_API_URL, or it says "
            f"\"Deployment ... not found!\"):\n  export PREFECT_API_URL={api}\n{runs}")


def _alerts_line(alerts: dict | None) -> None:
    """After a run with `notify:`: which alerts went out, and why some did not."""
    if not alerts or not (alerts["alerts"] or alerts["errors"]):
        return
    sent = sum(a["delivered"] for a in alerts["alerts"])
    line = f"{sent} alert(s) sent"
    if len(alerts["alerts"]) > sent:
        line += f", {len(alerts['alerts']) - sent} queued for the next run"
    out.print(line + "".join(f"; {e}" for e in alerts["errors"]), markup=False, highlight=False, soft_wrap=True)


def _report_lines(report: dict | None) -> None:
    """After a run of a config with `report:`: where the report was written, or why not."""
    if not report:
        return
    for done in report["reports"].values():
        where = done["url"] or Path(done["index"]).as_uri()
        out.print(f"Report of {done['key_results']} key result(s) written: {where}", markup=False, highlight=False,
                  soft_wrap=True)
    for problem in report["errors"]:
        err.print(f"warning: {problem}", markup=False, highlight=False, soft_wrap=True)


def _deployments_table(plans) -> None:
    from rich.table import Table

    table = Table(title="okr-sync deployments", title_justify="left")
    for col in ("deployment", "config", "runs", "schedule", "next run (UTC)"):
        table.add_column(col, overflow="fold")
    for plan in plans:
        rows = [(("every key result" if c.whole_file else ", ".join(c.kr_ids)), c.describe(), f"{when:%Y-%m-%d %H:%M}")
                for c, when in plan.next_runs()]
        if plan.unscheduled:
            rows.append((", ".join(plan.unscheduled), "on demand only (no schedule:)", "-"))
        for i, (runs, schedule_text, when) in enumerate(rows):
            table.add_row(plan.full_name if i == 0 else "", plan.config_path if i == 0 else "", runs, schedule_text, when)
        if plan.digest is not None:
            from okrsync.schedule import next_fire

            table.add_row(plan.digest_name, plan.config_path if not rows else "", "the digest (notify: digest:)",
                          plan.digest.describe(), f"{next_fire(plan.digest, datetime.now(timezone.utc)):%Y-%m-%d %H:%M}")
    out.print(table)


secret_app = typer.Typer(no_args_is_help=True, help="Prefect Secret blocks, for `{secret: NAME}` in configs.")
app.add_typer(secret_app, name="secret")
_BLOCK_NAME = re.compile(r"^[a-z0-9][a-z0-9-]*$")


@secret_app.command("set")
def secret_set(name: str = typer.Argument(..., help="block name: lowercase letters, digits and dashes, e.g. jira-token")) -> None:
    """Store a Prefect Secret block, reading the value from stdin (never from the command line).

    Example: `printenv JIRA_API_TOKEN | okr-sync secret set jira-token`; then write `{secret: jira-token}`.
    """
    if not _BLOCK_NAME.match(name):
        suggestion = re.sub(r"[^a-z0-9-]+", "-", name.lower()).strip("-") or "my-secret"
        err.print(f"error: {name!r} is not a valid block name: use lowercase letters, digits and dashes, "
                  f"e.g. {suggestion}", markup=False, soft_wrap=True)
        raise typer.Exit(2)
    if sys.stdin.isatty():
        value = getpass.getpass(f"value of {name} (input hidden): ")
    else:
        value = sys.stdin.read()
    value = value.rstrip("\r\n")
    if not value.strip():
        err.print(f"error: no value given: pipe it in, e.g. `printenv MY_TOKEN | okr-sync secret set {name}`",
                  markup=False, soft_wrap=True)
        raise typer.Exit(2)
    from prefect.blocks.system import Secret
    from prefect.settings import get_current_settings

    where = get_current_settings().api.url or "the local Prefect database (no PREFECT_API_URL set)"
    try:
        Secret(value=value).save(name, overwrite=True)
    except Exception as exc:  # noqa: BLE001 - never echo the exception: it may quote the value
        err.print(f"error: could not store Prefect Secret block '{name}' in {where} ({exc.__class__.__name__}): "
                  "check that the Prefect server is running and PREFECT_API_URL points at it",
                  markup=False, soft_wrap=True)
        raise typer.Exit(1)
    out.print(f"Stored Prefect Secret block '{name}' ({len(value)} characters) in {where}. "
              f"Use it in a config as {{secret: {name}}}.", markup=False, highlight=False, soft_wrap=True)


@app.command()
def schema() -> None:
    """Print the JSON Schema of the config file (for editor completion)."""
    print(json.dumps(json_schema(), indent=2))


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        err.print("interrupted")
        sys.exit(130)


if __name__ == "__main__":
    main()
