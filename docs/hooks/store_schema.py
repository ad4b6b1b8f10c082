"""MkDocs hook: the store's tables and columns, generated at every build from the store's SQLAlchemy
metadata (`connectors.sql_store.metadata`), so the page lists exactly the tables the code creates.

`docs/store.md` holds the prose; the line `<!-- store-tables -->` in it is replaced by one section
per table: its purpose, then every column with its SQLite and PostgreSQL types, whether it may be
empty, its key, default and meaning, then its indexes and checks. Meanings are written below
(TABLES, COLUMNS). A column or table without one, or a meaning left for a column that no longer
exists, is a build warning, so `mkdocs build --strict` fails until this file is brought in step:

    python docs/hooks/store_schema.py        # the generated tables and any problem, without MkDocs
"""
from __future__ import annotations

import logging
from typing import Any

MARKER = "<!-- store-tables -->"
log = logging.getLogger("mkdocs.hooks.store_schema")

TABLES = {
    "okr_meta": "Facts about the store itself, as key/value rows: `schema_version` (the core tables' "
                "version) and, once alerts are used, `watch_schema_version`.",
    "okr_objectives": "One row per objective, as the last run that wrote it saw it in its config.",
    "okr_key_results": "One row per key result: its definition as last synced, and which config file "
                       "owns it (see [One key result, one file](config.md#one-key-result-one-file)).",
    "okr_checkins": "Every check-in, automatic or manual: one row per value observed. This is the "
                    "history `okr-sync history` shows; a re-run that sees the same value adds no row.",
    "okr_runs": "One row per sync that wrote to the store (dry runs write none), with its counts.",
    "okr_watch": "Alert state, one row per key result of a config with `notify:`: what it looked like "
                 "at the last run. Created the first time such a config runs.",
    "okr_alerts": "Every alert decided, and whether and when it was delivered. Created with `okr_watch`.",
    "okr_digests": ("Each config file's weekly digest per period (`notify: digest:`), claimed by the run that "
                    "sends it, so a period's digest is posted once. Created with `okr_watch`."),
    "okr_outbox": "Check-ins on their way to the OKR tools of the config's `publish:` targets: one row per "
                  "check-in and target, queued in the transaction that writes the check-in, delivered after "
                  "it, and retried by later runs until the target takes it or keeps a newer manual value.",
}

COLUMNS = {
    ("okr_meta", "key"): "the fact's name, e.g. `schema_version`",
    ("okr_meta", "value"): "its value, as text (`2`)",

    ("okr_objectives", "id"): "the objective's `id:` in the config",
    ("okr_objectives", "title"): "its `title:`",
    ("okr_objectives", "owner"): "its `owner:` (a team or person), if given",
    ("okr_objectives", "config_file"): "the config file (absolute path) it was last read from",
    ("okr_objectives", "updated_at"): "when a run last wrote this row (UTC)",

    ("okr_key_results", "id"): "the key result's `id:`, unique across all config files",
    ("okr_key_results", "objective_id"): "the objective it belongs to",
    ("okr_key_results", "title"): "its `title:`",
    ("okr_key_results", "source"): "the name of its source under `sources:`, e.g. `survey`",
    ("okr_key_results", "baseline"): "`baseline:` (0 when not given)",
    ("okr_key_results", "target"): "`target:`; lower than the baseline means lower is better",
    ("okr_key_results", "unit"): "`unit:`, e.g. `%` or `ms`",
    ("okr_key_results", "period_start"): "first day of its period",
    ("okr_key_results", "period_end"): "last day of its period",
    ("okr_key_results", "on_manual"): "`keep` or `overwrite`: what an automatic value does to a newer manual check-in",
    ("okr_key_results", "updated_at"): "when a run last wrote this row (UTC)",
    ("okr_key_results", "config_file"): "the owner: the config file (absolute path) that last wrote it "
                                        "(empty in rows kept from schema version 1)",
    ("okr_key_results", "config_line"): "the line of its `- id:` in that file",
    ("okr_key_results", "definition"): "a hash of its definition, to tell whether another file defines it differently",
    ("okr_key_results", "at_risk"): "`thresholds.at_risk` as configured (empty: the default, 0.10)",
    ("okr_key_results", "off_track"): "`thresholds.off_track` as configured (empty: the default, 0.25)",

    ("okr_checkins", "id"): "row number, increasing in the order rows were written",
    ("okr_checkins", "kr_id"): "the key result",
    ("okr_checkins", "value"): "the value measured (or entered)",
    ("okr_checkins", "progress"): "(value − baseline) / (target − baseline) as a fraction: 0.5 is 50 %, "
                                  "1.2 is 120 %; empty when it cannot be computed",
    ("okr_checkins", "expected"): "share of the period elapsed at `observed_at`, as a fraction",
    ("okr_checkins", "status"): "`on_track`, `at_risk`, `off_track` or `done`",
    ("okr_checkins", "observed_at"): "the moment the value is true for (UTC; the `--as-of` date for a back-dated run)",
    ("okr_checkins", "source"): "the source's name in the config; `manual` for a manual check-in",
    ("okr_checkins", "query"): "what was asked of the source (the JQL, search or cell), placeholders filled in",
    ("okr_checkins", "link"): "a URL a person can open to see what is behind the number",
    ("okr_checkins", "run_id"): "the run that wrote it (`okr_runs.run_id`); empty for a manual check-in",
    ("okr_checkins", "kind"): "`automatic` (a sync), `manual` (`okr-sync checkin`) or `backfill` (measured as of "
                              "a past date, to fill in the history)",
    ("okr_checkins", "note"): "the `--note` of a manual check-in, or a source's remark on the value",
    ("okr_checkins", "created_at"): "when the row was written (UTC)",
    ("okr_checkins", "evidence"): "the tickets behind the number, as a JSON list (e.g. `[{\"key\": \"PAY-12\", "
                                  "\"title\": ...}]`), when the source keeps them",

    ("okr_runs", "run_id"): "okr-sync's id of the run",
    ("okr_runs", "started_at"): "when the run started (UTC)",
    ("okr_runs", "finished_at"): "when its write finished (UTC)",
    ("okr_runs", "config_files"): "the config files it read, as a JSON list of paths",
    ("okr_runs", "written"): "key results that got a new check-in",
    ("okr_runs", "unchanged"): "key results whose value had not changed",
    ("okr_runs", "kept_manual"): "key results where a newer manual check-in was kept",
    ("okr_runs", "failed"): "key results that could not be measured",
    ("okr_runs", "flow_run_id"): "the Prefect flow run that made it; empty for a run without Prefect",
    ("okr_runs", "flow_run_url"): "that flow run's page in the Prefect UI, when known",

    ("okr_watch", "kr_id"): "the key result",
    ("okr_watch", "status"): "its status at the last successful measurement",
    ("okr_watch", "value"): "its value then",
    ("okr_watch", "last_success_at"): "the last time it was measured successfully (UTC)",
    ("okr_watch", "failure_streak"): "runs in a row that could not measure it (0 after a success)",
    ("okr_watch", "last_error"): "the error of the last failed run",
    ("okr_watch", "failing_alerted"): "a `source_failing` alert went out for the current streak",
    ("okr_watch", "stale_alerted"): "a `stale` alert went out since the last success",
    ("okr_watch", "first_seen_at"): "the first run that saw it (UTC)",
    ("okr_watch", "seen_at"): "the moment of the last run applied; an older (back-dated) run never moves it back",
    ("okr_watch", "forecast"): "the last end-of-period forecast status (`will_reach`, `at_risk`, `will_miss`), for "
                               "`forecast` alerts; empty while the key result has no forecast (watch version 3)",

    ("okr_alerts", "id"): "row number",
    ("okr_alerts", "kr_id"): "the key result",
    ("okr_alerts", "kind"): "`status_change`, `target_reached`, `source_failing`, `stale` or `recovered`",
    ("okr_alerts", "message"): "the alert's text, as posted",
    ("okr_alerts", "status"): "the key result's status when the alert was decided",
    ("okr_alerts", "run_id"): "the run that decided it",
    ("okr_alerts", "created_at"): "when it was decided (UTC)",
    ("okr_alerts", "claimed_by"): "the run delivering it right now (empty when none is)",
    ("okr_alerts", "claimed_at"): "when that run claimed it; a claim older than 15 minutes is released",
    ("okr_alerts", "sent_at"): "when the webhook accepted it; empty while it is still queued",
    ("okr_alerts", "attempts"): "failed deliveries so far; after 5 the alert is left undelivered",
    ("okr_digests", "id"): "row number",
    ("okr_digests", "config"): "the config file (absolute path)",
    ("okr_digests", "period"): "the tick of the `digest:` cron the digest belongs to (UTC)",
    ("okr_digests", "created_at"): "when a run first tried to send it (UTC)",
    ("okr_digests", "claimed_by"): "the run sending it right now (empty when none is)",
    ("okr_digests", "claimed_at"): "when that run claimed it; a claim older than 15 minutes is released",
    ("okr_digests", "sent_at"): "when the webhook accepted it; empty until then",
    ("okr_digests", "attempts"): "failed posts so far; after 5 the period's digest is given up",

    ("okr_outbox", "id"): "row number",
    ("okr_outbox", "target"): "the publish target's name in the config",
    ("okr_outbox", "kr_id"): "the key result",
    ("okr_outbox", "checkin_id"): "the check-in to deliver",
    ("okr_outbox", "external_id"): "the key result's id in the tool, for targets that need one",
    ("okr_outbox", "idempotency_key"): "derived from target, key result, moment and value, so a tool can "
                                       "recognise a delivery it already took",
    ("okr_outbox", "state"): "`pending`, `delivered`, or `kept_manual` (the tool showed a newer manual value, "
                             "which was kept)",
    ("okr_outbox", "attempts"): "failed deliveries so far",
    ("okr_outbox", "last_error"): "the error of the last failed delivery",
    ("okr_outbox", "sent_value"): "the value written to the tool",
    ("okr_outbox", "tool_value"): "the manual value found in the tool and kept",
    ("okr_outbox", "created_at"): "when it was queued (UTC)",
    ("okr_outbox", "updated_at"): "when the row last changed (UTC)",
    ("okr_outbox", "delivered_at"): "when the target took it, or kept its manual value (UTC)",
    ("okr_outbox", "claimed_by"): "the run delivering it right now (empty when none is)",
    ("okr_outbox", "claimed_at"): "when that run claimed it; a claim older than 15 minutes is released",
}


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    if MARKER not in markdown:
        return markdown
    from connectors.sql_store import metadata

    text, problems = render(metadata)
    for problem in problems:
        log.warning("docs/hooks/store_schema.py: %s", problem)
    return markdown.replace(MARKER, text)


def render(metadata: Any) -> tuple[str, list[str]]:
    """The markdown of every table in `metadata`, and what the descriptions above miss or keep in excess."""
    from sqlalchemy.dialects import postgresql, sqlite

    problems: list[str] = []
    out: list[str] = []
    tables = list(metadata.tables.values())
    for table in tables:
        out += [f"### `{table.name}`", ""]
        if table.name in TABLES:
            out += [TABLES[table.name], ""]
        else:
            problems.append(f"table {table.name} has no description: add it to TABLES")
        out += ["| column | SQLite | PostgreSQL | empty? | key | default | what it holds |",
                "|---|---|---|---|---|---|---|"]
        for column in table.columns:
            meaning = COLUMNS.get((table.name, column.name))
            if meaning is None:
                problems.append(f"column {table.name}.{column.name} has no description: add it to COLUMNS")
            out.append("| `{}` | {} | {} | {} | {} | {} | {} |".format(
                column.name, _sql_type(column, sqlite.dialect()), _sql_type(column, postgresql.dialect()),
                "yes" if column.nullable and not column.primary_key else "no", _key(column),
                _server_default(column), meaning or ""))
        extras = [f"index `{ix.name}` on ({', '.join(c.name for c in ix.columns)})"
                  for ix in sorted(table.indexes, key=lambda i: i.name or "")]
        for constraint in table.constraints:
            kind = constraint.__class__.__name__
            if kind == "CheckConstraint":
                extras.append(f"check `{constraint.sqltext}`")
            elif kind == "UniqueConstraint":
                extras.append(f"unique ({', '.join(c.name for c in constraint.columns)})")
        if extras:
            out += ["", "Also: " + "; ".join(extras) + "."]
        out.append("")
    known_tables = {t.name for t in tables}
    known_columns = {(t.name, c.name) for t in tables for c in t.columns}
    problems += [f"TABLES describes {name}, which the store no longer has" for name in sorted(set(TABLES) - known_tables)]
    problems += [f"COLUMNS describes {t}.{c}, which the store no longer has" for t, c in sorted(set(COLUMNS) - known_columns)]
    return "\n".join(out).rstrip() + "\n", problems


def _sql_type(column: Any, dialect: Any) -> str:
    return f"`{column.type.compile(dialect=dialect)}`"


def _key(column: Any) -> str:
    parts = ["primary key"] if column.primary_key else []
    parts += [f"→ `{fk.target_fullname}`" for fk in column.foreign_keys]
    return ", ".join(parts)


def _server_default(column: Any) -> str:
    default = column.server_default
    return f"`{default.arg}`" if default is not None else ""


if __name__ == "__main__":
    from connectors.sql_store import metadata as _metadata

    page, found = render(_metadata)
    print(page)
    for line in found:
        print("problem:", line)
