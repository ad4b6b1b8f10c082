"""The Prefect artifacts of a sync run, two per config file: a table of key results and a
markdown summary, keyed by the file, so the UI's "latest" of one config is that config's.

- `okr-sync-run-<config>` (table): one row per key result: value, change since the previous
  check-in, progress, expected, status, the end-of-period forecast (value, range, status), link, error.
- `okr-sync-summary-<config>` (markdown): the counts, counts by status, the key results at risk
  or off track, the link to the file's report (`report:`), then failures first, then alerts, then
  every key result.

`<config>` is the file's name without `.yaml`, in lowercase letters, digits and dashes (Prefect's
rule for keys): `config/payments.yaml` gives `okr-sync-run-payments`. Two files of one run with
the same name share their artifacts. Both take the run summary dict that `sync_okrs` returns, so
what the UI shows is what the CLI prints.

A run of more than ARTIFACT_ROWS key results (in one file) is shown as the CLI summarises it: the
ARTIFACT_ROWS needing attention first (failed, off track, at risk), the counts saying how many
there are in all; every check-in is in the store.
"""
from __future__ import annotations

import re
from collections import defaultdict
from pathlib import Path
from typing import Any, Mapping

from prefect.artifacts import create_markdown_artifact, create_table_artifact

from okrsync.results import attention_first, row_kind

TABLE_KEY = "okr-sync-run"          # + "-<config>"
SUMMARY_KEY = "okr-sync-summary"    # + "-<config>"
_NOT_KEY = re.compile(r"[^a-z0-9]+")
ARTIFACT_ROWS = 1000      # rows of a table artifact; more would pass the size Prefect's event bus carries


def config_key(config_file: str) -> str:
    """The artifact-key part of a config file: `Team Payments.yaml` -> `team-payments`."""
    return _NOT_KEY.sub("-", Path(config_file).stem.lower()).strip("-") or "config"


def per_config(result: dict[str, Any], config_of: Mapping[str, str]) -> dict[str, dict[str, Any]]:
    """The run summary split by config file (`config_of`: key result id -> its file), keyed by
    config_key: each part has that file's key results, their counts and their alerts."""
    rows: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in result["key_results"]:
        rows[config_key(config_of.get(row["id"], "config"))].append(row)
    alerts = result.get("alerts")
    parts = {}
    for key, mine in rows.items():
        ids = {r["id"] for r in mine}
        failed = sum(1 for r in mine if r["error"])
        counts = {"key_results": len(mine), "synced": len(mine) - failed, "failed": failed,
                  **{k: sum(1 for r in mine if r.get("outcome") == k) for k in ("written", "unchanged", "kept_manual")}}
        part = {**result, "key_results": mine, "counts": counts, "config": key}
        if alerts:
            part["alerts"] = {**alerts, "alerts": [a for a in alerts["alerts"] if a["kr_id"] in ids]}
        parts[key] = part
    return parts


def _pct(value: float | None) -> float | None:
    return None if value is None else round(100 * value, 1)


def _num(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:,.2f}".rstrip("0").rstrip(".") if value != int(value) else f"{int(value):,}"


def _signed(value: float | None, first: bool) -> str:
    """The change since the previous check-in: +3, −1.5, ±0; `new` for a first check-in."""
    if value is None:
        return "new" if first else "-"
    return "±0" if value == 0 else ("+" if value > 0 else "−") + _num(abs(value))


def _cell(text: Any) -> str:
    """Text safe inside a markdown table cell."""
    return str(text).replace("|", "\\|").replace("\n", " ") if text is not None else ""


def _link(url: str | None) -> str:
    return f"[open]({url})" if url and url.startswith(("http://", "https://", "file://")) else _cell(url)


def _forecast(found: dict[str, Any] | None) -> str:
    """`380 (376–391) will_miss`, or `-` without a forecast."""
    if not found:
        return "-"
    span = f" ({_num(found['low'])}–{_num(found['high'])})" if found["low"] != found["high"] else ""
    return f"{_num(found['value'])}{span} {found['status']}"


def table_rows(result: dict[str, Any]) -> list[dict[str, Any]]:
    """The rows of the `okr-sync-run` table artifact."""
    return [{"key result": r["id"], "value": r["value"], "change": r.get("change"),
             "previous": r.get("previous"), "baseline": r["baseline"], "target": r["target"],
             "progress %": _pct(r["progress"]), "expected %": _pct(r["expected"]),
             "status": r["status"] or "error", "forecast": (r.get("forecast") or {}).get("value"),
             "forecast range": _forecast(r.get("forecast")) if r.get("forecast") else None,
             "forecast status": (r.get("forecast") or {}).get("status"), "link": r["link"], "error": r["error"]}
            for r in _shown(result["key_results"])]


def _shown(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every row, or over ARTIFACT_ROWS of them the ARTIFACT_ROWS needing attention first."""
    return rows if len(rows) <= ARTIFACT_ROWS else attention_first(rows, row_kind)[:ARTIFACT_ROWS]


def summary_markdown(result: dict[str, Any]) -> str:
    """The `okr-sync-summary` markdown: counts, failures first, alerts, then every key result."""
    c = result["counts"]
    kind = "dry run" if result["dry_run"] else "run"
    of = f" of {result['config']}" if result.get("config") else ""
    lines = [f"## okr-sync {kind} {result['run_id']}{of} · as of {result['as_of'][:16].replace('T', ' ')} UTC", ""]
    counts = [f"**{c['key_results']} key results**", f"{c['synced']} synced"]
    counts.append(f"**{c['failed']} failed**" if c["failed"] else "0 failed")
    if not result["dry_run"]:
        counts += [f"{c['written']} check-ins written", f"{c['unchanged']} unchanged", f"{c['kept_manual']} manual kept"]
    counts += [f"{result['source_calls']} source calls in the run", f"{result['seconds']:.2f} s"]
    lines += [" · ".join(counts), ""]
    lines += standing_markdown(result)

    shown = _shown(result["key_results"])
    failed = [r for r in shown if r["error"]]
    if failed:
        lines += [f"### Failed ({c['failed']})", "", "| key result | source | error |", "|---|---|---|"]
        lines += [f"| {_cell(r['id'])} | {_cell(r['source'])} | {_cell(r['error'])} |" for r in failed]
        lines.append("")

    alerts = (result.get("alerts") or {}).get("alerts") or []
    if alerts:
        lines += [f"### Alerts ({len(alerts)})", ""]
        lines += [f"- {a['message']}" + "".join(f" · [{link['label']}]({link['url']})" for link in a.get("links") or [])
                  + ("" if a["delivered"] else " *(not delivered yet)*") for a in alerts]
        lines.append("")
    if (result.get("alerts") or {}).get("errors"):
        lines += ["Alert delivery problems: " + "; ".join(_cell(e) for e in result["alerts"]["errors"]), ""]

    ok = [r for r in shown if not r["error"]]
    if len(shown) < len(result["key_results"]):
        lines += [f"{len(result['key_results']) - len(shown):,} more key results not shown here: the "
                  f"{len(shown):,} needing attention first (failed, off track, at risk); all are in the store "
                  "(`okr-sync status --all`).", ""]
    if ok:
        lines += ["### Key results", "", "| key result | value | change | progress | expected | status | forecast | link |",
                  "|---|---|---|---|---|---|---|---|"]
        for r in ok:
            unit = f" {r['unit']}" if r.get("unit") else ""
            progress = "-" if r["progress"] is None else f"{100 * r['progress']:.0f}%"
            expected = "-" if r["expected"] is None else f"{100 * r['expected']:.0f}%"
            lines.append(f"| {_cell(r['id'])} | {_num(r['value'])}{_cell(unit)} | {_signed(r.get('change'), not result['dry_run'])} | "
                         f"{progress} | {expected} | {r['status'] or '-'} | {_cell(_forecast(r.get('forecast')))} | "
                         f"{_link(r['link'])} |")
    return "\n".join(lines).rstrip() + "\n"


def standing_markdown(result: dict[str, Any]) -> list[str]:
    """Counts by status, the key results at risk or off track, and the report's link (`report:`)."""
    measured = [r for r in result["key_results"] if not r["error"] and r["status"]]
    lines = []
    if measured:
        order = ("off_track", "at_risk", "on_track", "done")
        counts = {s: sum(1 for r in measured if r["status"] == s) for s in order}
        lines += ["Status: " + " · ".join(f"{n} {s.replace('_', ' ')}" for s, n in counts.items()), ""]
    risky = sorted((r for r in measured if r["status"] in ("off_track", "at_risk")),
                   key=lambda r: (r["status"] != "off_track", r["id"]))
    if risky:
        lines += [f"### At risk or off track ({len(risky)})", "", "| key result | status | progress | expected | link |",
                  "|---|---|---|---|---|"]
        for r in risky[:ARTIFACT_ROWS]:
            progress = "-" if r["progress"] is None else f"{100 * r['progress']:.0f}%"
            expected = "-" if r["expected"] is None else f"{100 * r['expected']:.0f}%"
            lines.append(f"| {_cell(r['id'])} | {r['status'].replace('_', ' ')} | {progress} | {expected} | {_link(r['link'])} |")
        if len(risky) > ARTIFACT_ROWS:
            lines.append(f"\n{len(risky) - ARTIFACT_ROWS:,} more at risk or off track: `okr-sync status` shows them all")
        lines.append("")
    report = result.get("report") or {}
    mine = result.get("config")          # per_config: only this file's report
    for file, done in report.get("reports", {}).items():
        if mine is not None and config_key(file) != mine:
            continue
        lines += [f"Report: [{_cell(done['url'])}]({done['url']})" if done.get("url")
                  else f"Report written to `{_cell(done['index'])}` (set `report: url:` to link it here)", ""]
    lines += [f"Report not written: {_cell(e)}" for e in report.get("errors", [])]
    return lines


def publish(result: dict[str, Any], config_of: Mapping[str, str]) -> None:
    """Create both artifacts of each config file of one run (inside a flow run); `config_of` maps
    each key result id to its config file."""
    for key, part in per_config(result, config_of).items():
        c = part["counts"]
        description = (f"okr-sync {'dry run' if result['dry_run'] else 'run'} {result['run_id']} of {key}: "
                       f"{c['synced']} synced, {c['failed']} failed, {c['written']} check-ins written")
        if c["key_results"] > ARTIFACT_ROWS:
            description += f"; the {ARTIFACT_ROWS:,} of {c['key_results']:,} key results needing attention first"
        create_table_artifact(key=f"{TABLE_KEY}-{key}", table=table_rows(part), description=description)
        create_markdown_artifact(key=f"{SUMMARY_KEY}-{key}", markdown=summary_markdown(part), description=description)
