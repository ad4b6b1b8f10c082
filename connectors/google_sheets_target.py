"""Publish target `google_sheets`: each key result's latest check-in written back to its row of a Google Sheet.

    publish:
      okr-sheet: {type: google_sheets, spreadsheet: "https://docs.google.com/spreadsheets/d/<id>/edit",
                  sheet: OKRs, service_account: "${GOOGLE_SA_JSON}"}
      # match: KR id                # the column holding each row's okr-sync key-result id
      # properties: {value: Current, progress: Progress, status: Status, updated: Last sync, link: Source}

The tab has a header row; a row per key result, found by its id in the `match` column (or by the id the key
result gives, `publish: {okr-sheet: <id>}`). okr-sync writes the value (a number), the progress (a fraction,
so a percent format shows 45 %), the status (On track, At risk, Off track, Done), when it was measured
(text, `2026-11-15 12:00 UTC`) and the link to what is behind the number, into the columns with those
headers. The value column must exist; of the other four, a default name that is absent is skipped and a
name the config gives must exist; `null` skips one.

Per run, whatever the number of key results: one token request, ONE `values:batchGet` of the tab (the
values unformatted, so numbers read as numbers in every locale and format) and at most ONE
`values:batchUpdate` holding every cell that changes (none when nothing does): 3 calls.

Manual values: a sheet keeps no per-cell edit time, so a value that differs from what okr-sync last wrote
there is a person's, kept unless the key result says `on_manual: overwrite` (okrsync.policy.in_tool with
no time). Exactly once: writing a row is setting cells, so writing the same check-in again changes
nothing; a value already there is not written again.

The service account needs the read-write `spreadsheets` scope (asked here; the source keeps read-only)
and Editor access to the spreadsheet.
"""
from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from datetime import timezone
from pathlib import Path
from typing import Any, Literal, Sequence

from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic.json_schema import SkipJsonSchema

from connectors._gsheets_client import API_BASE, READ_WRITE_SCOPES, CallCounter, SheetsApi, sheet_label
from connectors._gsheets_key import SpreadsheetRef, http_base, key_info, key_reference, parse_spreadsheet
from connectors._kr_target import STATUS_LABELS, Group, judge, newest_per_key, settle
from connectors._tabular import column_letter, quote_sheet
from okrsync import policy
from okrsync.errors import OkrSyncError, SourceError
from okrsync.numbers import parse_number
from okrsync.publish import (Delivery, DeliveryResult, ImportedKeyResult, ImportedObjective, PublishError, delivered,
                             failed, kept_manual)
from okrsync.refs import ConfigPath, SecretRef

TYPE = "google_sheets"
NEEDS_EXTERNAL_ID = False
PROPERTIES = ("value", "progress", "status", "updated", "link")
DEFAULT_NAMES = {"value": "Current", "progress": "Progress", "status": "Status", "updated": "Last sync",
                 "link": "Source"}
# Import: the columns read when present (compared ignoring case).
TITLE_COLUMNS = ("Title", "Key result", "Key results", "KR", "Name")
OBJECTIVE_COLUMNS = ("Objective",)
RENDER = "UNFORMATTED_VALUE"
_IMPORTABLE_ID = re.compile(r"[a-z0-9][a-z0-9_.-]{0,59}")

# ---------------------------------------------------------------------------- config


class SheetProperties(BaseModel):
    """The header of the column each part of a check-in goes to; null: not written."""

    model_config = ConfigDict(extra="forbid")

    value: str = Field(DEFAULT_NAMES["value"], description="the key result's current value (a number)")
    progress: str | None = Field(DEFAULT_NAMES["progress"], description="progress as a fraction (0.45; format the "
                                                                        "column as percent)")
    status: str | None = Field(DEFAULT_NAMES["status"], description="On track, At risk, Off track or Done")
    updated: str | None = Field(DEFAULT_NAMES["updated"], description="when the value was measured (UTC)")
    link: str | None = Field(DEFAULT_NAMES["link"], description="the tickets or cells behind the number")

    @field_validator("value", "progress", "status", "updated", "link")
    @classmethod
    def _header(cls, value: str | None) -> str | None:
        if value is not None and not value.strip():
            raise ValueError("is empty: write the column's header, or null to leave that column alone")
        return value.strip() if value is not None else None


class TargetConfig(BaseModel):
    """A tab of a Google spreadsheet with a row per key result, written as a service account."""

    model_config = ConfigDict(extra="forbid")

    type: Literal[TYPE]
    spreadsheet: SpreadsheetRef = Field(description="The spreadsheet's URL (from the address bar) or its id")
    sheet: str = Field(description="The tab holding the key results, e.g. OKRs")
    service_account: ConfigPath | SecretRef = Field(
        description="A service-account JSON key: a file (relative to the config file), \"${ENV}\" or {secret: NAME}. "
                    "Share the spreadsheet with the account's email as an Editor")
    match: str = Field("KR id", description="The column holding each row's okr-sync key-result id")
    properties: SheetProperties = Field(default_factory=SheetProperties,
                                        description="The column each part of a check-in goes to, by header")
    header_row: int = Field(1, ge=1, description="The row holding the column headers (1 = first row)")
    api_base: SkipJsonSchema[str] = Field(API_BASE, description="Sheets API endpoint (tests only)")

    @field_validator("sheet", "match")
    @classmethod
    def _named(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("is empty: write the tab's title (sheet) or the column's header (match)")
        return value.strip()

    @field_validator("service_account", mode="before")
    @classmethod
    def _key_reference(cls, value: Any) -> Any:
        return key_reference(value)

    @field_validator("api_base")
    @classmethod
    def _endpoint(cls, value: str) -> str:
        return http_base(value)

    @property
    def spreadsheet_id(self) -> str:
        return parse_spreadsheet(self.spreadsheet)[0]

    def columns(self) -> dict[str, tuple[str, bool]]:
        """property -> (header, must exist): the value column always; others when the config names them."""
        given = self.properties.model_fields_set
        out = {}
        for name in PROPERTIES:
            header = getattr(self.properties, name)
            if header is not None:
                out[name] = (header, name == "value" or name in given)
        return out

# ---------------------------------------------------------------------------- client


@dataclass
class Client:
    """One run's Sheets API connection (read-write scope); `calls` counts the HTTP requests, token included."""

    api: SheetsApi
    counter: CallCounter

    @property
    def calls(self) -> int:
        return self.counter.count

    def close(self) -> None:
        self.api.close()


def check(target: TargetConfig) -> list[str]:
    """A key file that is missing or not a service-account key; two properties sharing a column."""
    problems = []
    if isinstance(target.service_account, Path):
        try:
            key_info(target.service_account)
        except SourceError as error:
            problems.append(str(error))
    headers = [h.casefold() for h, _ in target.columns().values()] + [target.match.casefold()]
    twice = sorted({h for h, n in Counter(headers).items() if n > 1})
    if twice:
        problems.append(f"`match:` and `properties:` name the column {', '.join(repr(h) for h in twice)} more than "
                        "once: give each its own column")
    return problems


def connect(target: TargetConfig) -> Client:
    """The key read now (an error names where it comes from); a token is asked on the first request."""
    info, label = key_info(target.service_account)
    counter = CallCounter()
    api = SheetsApi(info, target.spreadsheet_id, api_base=target.api_base, counter=counter, key_label=label,
                    scopes=READ_WRITE_SCOPES)
    return Client(api, counter)

# ---------------------------------------------------------------------------- the tab


@dataclass
class Tab:
    """The tab as read: where each property's column is and the row of each key-result id."""

    where: str                            # 'OKRs' of Google Sheet 1AbC… (for messages)
    sheet: str
    header_row: int
    rows: list[list[Any]]
    columns: dict[str, int]               # property -> 0-based column
    match_col: int
    row_of: dict[str, int]                # KR id -> 1-based row number
    twice: dict[str, list[int]]           # KR ids found on more than one row

    def cell(self, row: int, col: int) -> Any:
        cells = self.rows[row - 1] if row - 1 < len(self.rows) else []
        return cells[col] if col < len(cells) else ""

    def a1(self, row: int, col: int) -> str:
        return f"{quote_sheet(self.sheet)}!{column_letter(col + 1)}{row}"


def _folded(text: Any) -> str:
    return str(text).strip().casefold()


def _read(client: Client, target: TargetConfig) -> tuple[list[list[Any]], str]:
    """Every row of the tab (one values:batchGet), and how messages name the tab."""
    where = f"tab {quote_sheet(target.sheet)} of {sheet_label(target.spreadsheet_id)}"
    try:
        (found,) = client.api.values([quote_sheet(target.sheet)], render=RENDER)
    except SourceError as error:
        if "Unable to parse range" in str(error):
            raise PublishError(f"{sheet_label(target.spreadsheet_id)} has no tab {quote_sheet(target.sheet)}: check "
                               "`sheet:` (the tab's title as shown at the bottom of the spreadsheet)") from None
        raise PublishError(str(error)) from None
    rows = found.get("values", [])
    if not isinstance(rows, list):
        raise PublishError(f"{where}: Google Sheets answered values that are not rows")
    return [r if isinstance(r, list) else [] for r in rows], where


def _tab(client: Client, target: TargetConfig, writing: bool = True) -> Tab:
    """The tab read and its header understood; PublishError if the match column is missing, or (`writing`) a
    column the config requires."""
    rows, where = _read(client, target)
    header = rows[target.header_row - 1] if len(rows) >= target.header_row else []
    by_name: dict[str, int] = {}
    for col, text in enumerate(header):
        by_name.setdefault(_folded(text), col)
    if _folded(target.match) not in by_name:
        raise PublishError(f"{where} has no column {target.match!r} in row {target.header_row}: add it, holding "
                           "each key result's okr-sync id, or name the column that does with `match:`")
    missing = [header_name for prop, (header_name, required) in target.columns().items()
               if writing and required and _folded(header_name) not in by_name]
    if missing:
        raise PublishError(f"{where} has no column {', '.join(repr(m) for m in missing)} in row {target.header_row}: "
                           "add it, or change `properties:` to the headers the tab has")
    columns = {prop: by_name[_folded(h)] for prop, (h, _) in target.columns().items() if _folded(h) in by_name}
    match_col = by_name[_folded(target.match)]
    row_of: dict[str, int] = {}
    twice: dict[str, list[int]] = {}
    for number in range(target.header_row + 1, len(rows) + 1):
        cells = rows[number - 1]
        kr = _id_text(cells[match_col]) if match_col < len(cells) else ""
        if not kr:
            continue
        if kr in row_of:
            twice.setdefault(kr, [row_of[kr]]).append(number)
        else:
            row_of[kr] = number
    return Tab(where, target.sheet, target.header_row, rows, columns, match_col, row_of, twice)


def _id_text(cell: Any) -> str:
    """A KR id cell as text: an id typed as a number reads 2024, not 2024.0."""
    if cell is None or isinstance(cell, bool):
        return "" if cell is None else str(cell)
    if isinstance(cell, float) and cell.is_integer():
        return str(int(cell))
    return str(cell).strip()


def _number(cell: Any) -> float | None | str:
    """A cell as a number: None when empty; the text itself when it holds text that is no number."""
    if cell is None or cell == "":
        return None
    if isinstance(cell, bool):
        return str(cell)
    if isinstance(cell, (int, float)):
        return float(cell)
    try:
        parsed = parse_number(str(cell), where="")
    except SourceError:
        return str(cell)
    return parsed if parsed is not None else None

# ---------------------------------------------------------------------------- deliver


def _wanted(d: Delivery) -> dict[str, Any]:
    """What each property's cell should hold for this check-in."""
    when = d.observed_at.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return {"value": d.value, "progress": d.progress, "status": STATUS_LABELS.get(d.status or "", d.status),
            "updated": when, "link": d.link}


def _differs(have: Any, want: Any) -> bool:
    if isinstance(want, float) and isinstance(have, (int, float)) and not isinstance(have, bool):
        return not policy.same_value(float(have), want)
    return str(have) != str(want)


def _row_cells(tab: Tab, row: int, d: Delivery) -> list[dict[str, Any]]:
    """The ValueRanges that bring the row up to this check-in (cells already right are left alone)."""
    data = []
    for prop, want in _wanted(d).items():
        col = tab.columns.get(prop)
        if col is None or want is None:
            continue
        if _differs(tab.cell(row, col), want):
            data.append({"range": tab.a1(row, col), "majorDimension": "ROWS", "values": [[want]]})
    return data


def _plan(tab: Tab, group: Group) -> DeliveryResult | list[dict[str, Any]]:
    """The cells to write for one key result's row, or its result when nothing is to be written."""
    d = group.newest
    if len(group.kr_ids) > 1:
        return failed(f"{group.key!r} is the row of several key results ({', '.join(group.kr_ids)}): give each key "
                      f"result its own row (`publish: {{{d.target}: <id>}}`)")
    if group.key in tab.twice:
        rows = ", ".join(str(r) for r in tab.twice[group.key])
        return failed(f"{tab.where} has {group.key!r} on rows {rows}: keep one row per key result")
    row = tab.row_of.get(group.key)
    if row is None:
        return failed(f"no row of {tab.where} has {group.key!r} in its {_header(tab)} column: add a row for this key "
                      f"result (or name its row's id with `publish: {{{d.target}: <id>}}`)")
    cell = tab.cell(row, tab.columns["value"])
    shown = _number(cell)
    if isinstance(shown, str):
        if d.on_manual != "overwrite":
            return failed(f"{tab.a1(row, tab.columns['value'])} holds the text {shown[:40]!r}, not a number: clear it "
                          "or type a number (or let okr-sync overwrite it with `on_manual: overwrite`)")
        shown = None
    decision, tool_value = judge(d, shown, None)
    if decision == "kept_manual":
        assert tool_value is not None
        return kept_manual(d, tool_value)
    return _row_cells(tab, row, d)


def _header(tab: Tab) -> str:
    header = tab.rows[tab.header_row - 1] if len(tab.rows) >= tab.header_row else []
    return repr(str(header[tab.match_col]).strip()) if tab.match_col < len(header) else "match"


def deliver(client: Client, target: TargetConfig, deliveries: Sequence[Delivery]) -> dict[int, DeliveryResult]:
    """One read of the tab, then one values:batchUpdate of every cell that changes (see the module docstring)."""
    tab = _tab(client, target)
    results: dict[int, DeliveryResult] = {}
    writing: list[Group] = []
    data: list[dict[str, Any]] = []
    for group in newest_per_key(deliveries, lambda d: d.external_id or d.kr_id):
        planned = _plan(tab, group)
        if isinstance(planned, DeliveryResult):
            results.update(settle(group, planned))
            continue
        writing.append(group)
        data += planned
    if data:
        try:
            client.api.update_values(data)
        except OkrSyncError as error:
            for group in writing:
                results.update(settle(group, failed(f"{error}; it is written on the next run")))
            return results
    for group in writing:
        results.update(settle(group, delivered(group.newest)))
    return results

# ---------------------------------------------------------------------------- probe and import


def probe(client: Client, target: TargetConfig, key_results: Sequence[tuple[str, str | None]]) -> list[str]:
    """Access (the key, the sheet shared as Editor, the tab and its columns) and a row for every key result.
    Write access is proved by writing the `match` header cell with the text it already holds (a no-op edit)."""
    try:
        tab = _tab(client, target)
    except OkrSyncError as error:
        return [str(error)]
    problems = []
    for kr_id, external in key_results:
        key = external or kr_id
        if key in tab.twice:
            problems.append(f"{kr_id}: {tab.where} has {key!r} on rows {', '.join(map(str, tab.twice[key]))}: keep one")
        elif key not in tab.row_of:
            problems.append(f"{kr_id}: no row of {tab.where} has {key!r} in its {_header(tab)} column: add one")
    header = tab.cell(tab.header_row, tab.match_col)
    try:
        client.api.update_values([{"range": tab.a1(tab.header_row, tab.match_col), "values": [[header]]}])
    except OkrSyncError as error:
        problems.insert(0, str(error))
    return problems


def _column(by_name: dict[str, int], names: Sequence[str]) -> int | None:
    return next((by_name[n.casefold()] for n in names if n.casefold() in by_name), None)


def import_okrs(client: Client, target: TargetConfig) -> list[ImportedObjective]:
    """The tab's rows as key results: the `match` column as id, a Title/Key result/Name column as title,
    Baseline, Target and Unit when present; grouped by an Objective column, else one objective."""
    tab = _tab(client, target, writing=False)
    header = tab.rows[tab.header_row - 1]
    by_name = {}
    for col, text in enumerate(header):
        by_name.setdefault(_folded(text), col)
    title_col = _column(by_name, TITLE_COLUMNS)
    objective_col = _column(by_name, OBJECTIVE_COLUMNS)
    numbers = {name: by_name.get(name.casefold()) for name in ("Baseline", "Target")}
    unit_col = by_name.get("unit")
    objectives: dict[str, list[ImportedKeyResult]] = {}
    for kr_id, row in sorted(tab.row_of.items(), key=lambda item: item[1]):
        cell = tab.cell
        title = str(cell(row, title_col)).strip() if title_col is not None else ""
        values = {}
        for name, col in numbers.items():
            got = _number(cell(row, col)) if col is not None else None
            values[name] = got if isinstance(got, float) else None
        unit = str(cell(row, unit_col)).strip() if unit_col is not None else ""
        objective = str(cell(row, objective_col)).strip() if objective_col is not None else ""
        objectives.setdefault(objective or target.sheet, []).append(ImportedKeyResult(
            id=kr_id, title=title or kr_id, external_id=None if _IMPORTABLE_ID.fullmatch(kr_id) else kr_id,
            baseline=values["Baseline"], target=values["Target"], unit=unit or None))
    return [ImportedObjective(id=name, title=name, key_results=krs) for name, krs in objectives.items()]


__all__ = ["TYPE", "NEEDS_EXTERNAL_ID", "TargetConfig", "SheetProperties", "Client", "check", "connect", "deliver",
           "probe", "import_okrs"]
