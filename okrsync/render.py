"""Rich output for the CLI: the run table, the status board, history, and the progress bar."""
from __future__ import annotations

import math
from contextlib import contextmanager
from dataclasses import asdict
from datetime import datetime, timezone
from typing import Any, Callable, Iterator, Mapping

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from okrsync.records import KeyResultState, StoredCheckin
from okrsync.results import ATTENTION, attention_first, row_kind

STATUS_STYLE = {"on_track": "green", "at_risk": "yellow", "off_track": "red", "done": "bold green"}
FORECAST_STYLE = {"will_reach": "green", "at_risk": "yellow", "will_miss": "red"}
INVALID = "invalid value in the store"   # a check-in row the store could not trust (StoredCheckin.invalid)
SUMMARY_ROWS = 50        # a table over more key results than this is summarised (`--all`: every row)
# which rows a summary shows first: failures, off track, at risk (okrsync.results), then no or bad check-ins
_ATTENTION = {**ATTENTION, "no check-in": len(ATTENTION), INVALID: len(ATTENTION)}
_COUNT_ORDER = ("failed", "off_track", "at_risk", "on_track", "done")


@contextmanager
def progress_bar(console: Console, total: int, enabled: bool = True,
                 label: str = "syncing key results") -> Iterator[Callable[[int], None]]:
    """A progress bar over key results; yields `advance(n)`. Silent when disabled or not a terminal."""
    if not enabled:
        yield lambda n: None
        return
    with Progress(TextColumn(label), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=console, transient=True) as bar:
        job = bar.add_task("sync", total=total)
        yield lambda n: bar.advance(job, n)


def _num(value: float | None) -> str:
    if value is None:
        return "-"
    if not math.isfinite(value):
        return INVALID
    return f"{value:,.2f}".rstrip("0").rstrip(".") if value != int(value) else f"{int(value):,}"


def _pct(value: float | None) -> str:
    return "-" if value is None or not math.isfinite(value) else f"{100 * value:.0f}%"


def bar(progress: float | None, width: int = 10) -> str:
    """A text bar; over-achievement fills it and shows the real % beside it."""
    if progress is None or not math.isfinite(progress):
        return " " * width
    filled = max(0, min(width, round(progress * width)))
    return "█" * filled + "░" * (width - filled)


def _status(status: str | None, error: str | None = None) -> str:
    if error:
        return "[red]error[/red]"
    if not status:
        return "-"
    return f"[{STATUS_STYLE.get(status, 'white')}]{escape(status)}[/]"


def forecast_cell(found: dict[str, Any] | None) -> str:
    """`52 (48–55) will_reach`: the projected end-of-period value, its range and status; `-` without one."""
    if not found:
        return "-"
    span = f" ({_num(found['low'])}–{_num(found['high'])})" if found["low"] != found["high"] else ""
    style = FORECAST_STYLE.get(found["status"], "white")
    return f"{_num(found['value'])}{span} [{style}]{escape(found['status'])}[/]"


def _text(value: str | None) -> str:
    """Text read from the store, shown as is: never taken for rich markup."""
    return escape(value) if value else ""


def _invalid(c: StoredCheckin) -> str:
    return f"[red]{INVALID}[/red] [dim]({escape(c.invalid or '')})[/dim]"


def _counts(kinds: list[str]) -> str:
    """'5,000 key results: 12 failed, 40 off_track, ...' (the kinds present, worst first)."""
    tally: dict[str, int] = {}
    for kind in kinds:
        tally[kind] = tally.get(kind, 0) + 1
    ordered = [k for k in _COUNT_ORDER if k in tally] + sorted(k for k in tally if k not in _COUNT_ORDER)
    return f"{len(kinds):,} key results: " + ", ".join(f"{tally[k]:,} {k}" for k in ordered)


def _summarised(console: Console, rows: list[Any], kind: Any, show_all: bool) -> list[Any]:
    """The rows to show: all of them up to SUMMARY_ROWS (or with `show_all`); else a line of counts
    by status is printed and the SUMMARY_ROWS most in need of attention are returned (failures, off
    track, at risk first; the others in their order)."""
    if show_all or len(rows) <= SUMMARY_ROWS:
        return rows
    console.print(_counts([kind(r) for r in rows]), highlight=False)
    return attention_first(rows, kind, _ATTENTION)[:SUMMARY_ROWS]


def _not_shown(console: Console, shown: int, total: int, command: str) -> None:
    if shown < total:
        console.print(f"{total - shown:,} more key results not shown: `{command} --all` shows every row, "
                      "`--json` gives them all", highlight=False)


def run_table(console: Console, result: dict[str, Any], show_all: bool = False) -> None:
    """The run's key results; over SUMMARY_ROWS of them, counts by status and the rows that need
    attention first (`show_all`: every row)."""
    title = (f"okr-sync {'dry run (nothing written)' if result['dry_run'] else 'run'} "
             f"{result['run_id']} as of {result['as_of'][:16]}")
    rows = _summarised(console, result["key_results"], row_kind, show_all)
    if len(rows) < len(result["key_results"]):
        title += f": the {len(rows)} needing attention first"
    table = Table(title=title, title_justify="left")
    table.add_column("key result", no_wrap=True)
    for col in ("value", "baseline → target", "progress", "expected", "status", "forecast", "source / error"):
        table.add_column(col, overflow="fold")
    for r in rows:
        detail = f"[red]{escape(r['error'])}[/red]" if r["error"] else _text(r["link"] or r["query"])
        table.add_row(r["id"], _num(r["value"]), f"{_num(r['baseline'])} → {_num(r['target'])}",
                      f"{bar(r['progress'])} {_pct(r['progress'])}", _pct(r["expected"]),
                      _status(r["status"], r["error"]), forecast_cell(r.get("forecast")), detail)
    console.print(table)
    _not_shown(console, len(rows), len(result["key_results"]), "okr-sync run")
    c = result["counts"]
    line = f"{c['synced']} of {c['key_results']} key results synced"
    if not result["dry_run"]:
        line += f"; {c['written']} check-ins written, {c['unchanged']} unchanged, {c['kept_manual']} manual kept"
        line += f" in {result['store']}"
    if c["failed"]:
        line += f"; [red]{c['failed']} failed[/red]"
    console.print(line + f" ({result['seconds']:.1f}s)", highlight=False)
    flow_run = result.get("flow_run")
    if flow_run:
        console.print(f"Prefect flow run: {_text(flow_run['url'] or flow_run['id'])}", highlight=False, soft_wrap=True)


def assessed(c: StoredCheckin) -> str:
    """': 73% progress, 54% expected, on_track' for a check-in with a status (plain text), else ''."""
    if not c.status:
        return ""
    return f": {_pct(c.progress)} progress, {_pct(c.expected)} expected, {c.status}"


def _ago(moment: datetime | None) -> str:
    if moment is None:
        return "never"
    seconds = (datetime.now(timezone.utc) - moment).total_seconds()
    for size, unit in ((86400, "d"), (3600, "h"), (60, "min")):
        if seconds >= size:
            return f"{int(seconds // size)}{unit} ago"
    return "just now"


def _state_kind(s: KeyResultState) -> str:
    if s.last is None:
        return "no check-in"
    return INVALID if s.last.invalid else s.last.status or "-"


def status_table(console: Console, states: list[KeyResultState],
                 forecasts: Mapping[str, dict[str, Any] | None]
                 | Callable[[list[KeyResultState]], Mapping[str, dict[str, Any] | None]] | None = None,
                 show_all: bool = False) -> None:
    """Every key result with its last check-in and its forecast; over SUMMARY_ROWS of them, counts by
    status and the ones that need attention first (`show_all`: every row). `forecasts` by key result
    id, or a function giving those of the rows shown (so a large board forecasts only what it shows)."""
    rows = _summarised(console, states, _state_kind, show_all)
    if callable(forecasts):
        forecasts = forecasts(rows)
    title = "OKR status" + (f": the {len(rows)} needing attention first" if len(rows) < len(states) else "")
    table = Table(title=title, title_justify="left")
    for col in ("objective", "key result", "last value", "baseline → target", "progress", "status", "forecast", "updated"):
        table.add_column(col, overflow="fold")
    previous = None
    for s in rows:
        last = s.last
        objective = "" if s.objective_id == previous else f"{_text(s.objective_title)} ({_text(s.objective_id)})"
        previous = s.objective_id
        value = _invalid(last) if last and last.invalid else _num(last.value if last else None)
        table.add_row(objective, f"{_text(s.title)}\n[dim]{_text(s.kr_id)}[/dim]", value,
                      f"{_num(s.baseline)} → {_num(s.target)}",
                      f"{bar(last.progress if last else None)} {_pct(last.progress if last else None)}",
                      _status(last.status if last else None) + (" [dim](manual)[/dim]" if last and last.kind == "manual" else ""),
                      forecast_cell((forecasts or {}).get(s.kr_id)), _ago(last.observed_at if last else None))
    console.print(table)
    _not_shown(console, len(rows), len(states), "okr-sync status")


def flow_run_json(run: dict[str, Any]) -> dict[str, Any] | None:
    """A stored run's Prefect flow run as `{id, url}` (url None when unknown), None for an in-process run."""
    return {"id": run["flow_run_id"], "url": run.get("flow_run_url")} if run.get("flow_run_id") else None


def _run_cell(run_id: str | None, flow_run: dict[str, Any] | None) -> str:
    """The run, and below it the Prefect flow run that made it: its page when known, else its id."""
    if not run_id:
        return "-"
    return _text(run_id) + (f"\n{_text(flow_run['url'] or flow_run['id'])}" if flow_run else "")


def history_table(console: Console, kr_id: str, rows: list[StoredCheckin],
                  flow_runs: dict[str, dict[str, Any] | None] | None = None,
                  changes: list[dict[str, Any] | None] | None = None) -> None:
    """Every check-in; with `changes` (okrsync.changes), the tickets that entered and left a count."""
    from okrsync.changes import describe

    table = Table(title=f"check-ins of {_text(kr_id)}", title_justify="left")
    columns = ["observed", "value", "progress", "expected", "status", "kind", "run / flow run", "link / note"]
    if changes is not None:
        columns.insert(5, "tickets since the previous check-in")
    for col in columns:
        table.add_column(col, overflow="fold")
    for i, c in enumerate(rows):
        cells = [c.observed_at.strftime("%Y-%m-%d %H:%M") if c.observed_at else "-",
                 _invalid(c) if c.invalid else _num(c.value), _pct(c.progress), _pct(c.expected), _status(c.status),
                 _text(c.kind), _run_cell(c.run_id, (flow_runs or {}).get(c.run_id or "")), _text(c.note or c.link)]
        if changes is not None:
            cells.insert(5, _text(describe(changes[i])) or ("[dim]first list[/dim]" if c.evidence is not None else ""))
        table.add_row(*cells)
    console.print(table)
    if not rows:
        console.print("no check-ins yet")


def checkin_json(c: StoredCheckin) -> dict[str, Any]:
    data = asdict(c)
    for key in ("observed_at", "created_at"):
        data[key] = data[key].isoformat() if data.get(key) else None
    return data


def state_json(s: KeyResultState) -> dict[str, Any]:
    data = asdict(s)
    data["last"] = checkin_json(s.last) if s.last else None
    return data


PREVIEW_ROWS = 10   # key results listed per target in a dry run's preview (all of them are in --json)


def publish_lines(console: Console, published: dict[str, Any] | None, dry_run: bool) -> None:
    """After a run with `publish:` targets: per target what was delivered (or, in a dry run, what would
    be written), then one line per key result kept, failed or skipped there."""
    if not published:
        return
    for name, t in published.items():
        if dry_run:
            would = t.get("would_write", [])
            shown = "; ".join(f"{w['kr']} {_num(w['value'])}"
                              + (f" ({_pct(w['progress'])}, {w['status']})" if w.get("progress") is not None else "")
                              for w in would[:PREVIEW_ROWS])
            more = f"; and {len(would) - PREVIEW_ROWS} more" if len(would) > PREVIEW_ROWS else ""
            console.print(f"{name} ({t['type']}) would be sent {len(would)} value(s)" + (f": {shown}{more}" if would else ""),
                          markup=False, highlight=False, soft_wrap=True)
        else:
            parts = [f"{t['delivered']} delivered"]
            if t["kept_manual"]:
                parts.append(f"{t['kept_manual']} kept manual")
            if t["failed"]:
                parts.append(f"{t['failed']} failed (retried on the next run)")
            console.print(f"{name} ({t['type']}): {', '.join(parts)}, {t['calls']} call(s)",
                          markup=False, highlight=False, soft_wrap=True)
        for line in t.get("messages", []) + t.get("skipped", []):
            console.print(f"  {line}", markup=False, highlight=False, soft_wrap=True)


def delivery_lines(console: Console, states: list[dict[str, Any]]) -> None:
    """`status`: per publish target, what is pending (and failing, with the latest error) and delivered."""
    for s in states:
        line = f"publish {s['target']}: {s['pending']} pending"
        if s["failing"]:
            line += f" ({s['failing']} failed at least once)"
        line += f", {s['delivered']} delivered"
        if s["kept_manual"]:
            line += f", {s['kept_manual']} kept a manual value"
        console.print(line, markup=False, highlight=False, soft_wrap=True)
        if s.get("last_error"):
            console.print(f"  last error: {s['last_error']}", markup=False, highlight=False, soft_wrap=True)


def backfill_table(console: Console, result: dict[str, Any]) -> None:
    """`okr-sync backfill`: per key result, the dates measured and what became of them, then the skipped
    ones with the reason, then one line of totals."""
    every = {1: "daily", 7: "weekly"}.get(result["every_days"], f"every {result['every_days']} days")
    what = "dry run (nothing written)" if result["dry_run"] else "backfill"
    table = Table(title=f"okr-sync {what} {result['run_id']}: {result['from']}..{result['to']}, {every}",
                  title_justify="left")
    table.add_column("key result", no_wrap=True)
    for col in ("dates", "first → last value", "written", "already there", "failed", "error / skipped because"):
        table.add_column(col, overflow="fold")
    done = [r for r in result["key_results"] if r["skipped"] is None]
    for r in done + [r for r in result["key_results"] if r["skipped"] is not None]:
        values = r["values"]
        span = f"{_num(values[0]['value'])} → {_num(values[-1]['value'])}" if values else "-"
        if r["skipped"] is not None:
            detail = f"[dim]{escape(r['skipped'])}[/dim]"
        elif r["errors"]:
            first = r["errors"][0]
            detail = f"[red]{escape(first['date'])}: {escape(first['error'])}[/red]"
        else:
            detail = ""
        written = "-" if result["dry_run"] or r["skipped"] is not None else str(r["written"])
        table.add_row(r["id"], str(r["dates"]) if r["skipped"] is None else "-", span, written,
                      str(r["already"]) if r["skipped"] is None else "-",
                      (f"[red]{r['failed']}[/red]" if r["failed"] else "0") if r["skipped"] is None else "-", detail)
    console.print(table)
    c = result["counts"]
    line = (f"{c['backfilled']} of {c['key_results']} key results over {result['dates']} dates: "
            f"{c['measured']} measured")
    if not result["dry_run"]:
        line += f", {c['written']} check-ins written, {c['already']} already there"
    if c["failed"]:
        line += f"; [red]{c['failed']} failed[/red]"
    if c["skipped"]:
        line += f"; {c['skipped']} skipped"
    console.print(line + f"; {result['source_calls']} source calls ({result['seconds']:.1f}s)", highlight=False)
