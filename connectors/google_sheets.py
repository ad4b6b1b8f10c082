"""Source connector for Google Sheets: key results from a cell or a column of a Google spreadsheet.

A source names the spreadsheet by its URL or id and connects one of two ways:

- `service_account:` a JSON key (a file, `${ENV}` or `{secret: NAME}`); the sheet is shared with
  the account's email. Per spreadsheet and run: one token request, one metadata call (tab titles
  and gids) and one `values:batchGet` holding a range per tab used (the whole tab when a column is
  aggregated, else the box around the cells asked).
- no credentials: the sheet is shared as "anyone with the link" and each tab used is read once
  through its CSV export (`/export?format=csv&gid=...`). Tabs are chosen by gid: the one in the
  pasted URL, or by title through the source's `tabs: {Title: gid}`.

Metrics are those of local spreadsheets (connectors/_tabular.py): `cell`, or `column` /
`column_letter` with `aggregate` and `where`, on the tab named by `sheet`. Cells are read as the
sheet displays them (45% counts as 45), with the same number parsing (okrsync/numbers.py).
"""
from __future__ import annotations

import csv
import io
import logging
import re
import sys
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Any, Callable, Literal, Sequence

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic.json_schema import SkipJsonSchema
from requests import Session

from connectors._gsheets_client import (API_BASE, EXPORT_BASE, CallCounter, SheetsApi, Tab, TabNotExported,
                                        export_csv, public_session, sheet_label)
from connectors._gsheets_key import SpreadsheetRef, http_base, key_info, key_reference, parse_spreadsheet
from connectors._tabular import (Answer, SheetLabel, SheetPass, TabularMetric, column_index, column_letter,
                                 match_sheet, quote_sheet)
from okrsync.contract import ShareLink, run_batch
from okrsync.errors import SourceError
from okrsync.measure import Measurement, MetricRequest
from okrsync.numbers import parse_number
from okrsync.refs import ConfigPath, SecretRef

logger = logging.getLogger(__name__)

TYPE = "google_sheets"
LINK_BASE = "https://docs.google.com/spreadsheets/d"

_RANGE_START = re.compile(r"\$?([A-Za-z]{1,3})\$?(\d+)")
_MAX_LISTED = 15
_SWAP_SEPARATORS = str.maketrans({".": ",", ",": "."})

# Locales in which Google Sheets shows decimals with a comma (1.234,5). Conservative: it only decides whether a
# service-account source must say `decimal:`; `decimal: point` overrides a wrong guess.
_COMMA_LANGUAGES = frozenset("bg ca cs da de el et fi fr hr hu id it lt lv nb nl nn no pl pt ro ru sk sl sr sv tr "
                             "uk vi".split())
_POINT_LOCALES = frozenset({"de_CH", "de_LI", "it_CH"})
_COMMA_SPANISH = frozenset({"es_ES", "es_AR", "es_BO", "es_CL", "es_CO", "es_EC", "es_PY", "es_UY", "es_VE"})

# ---------------------------------------------------------------------------- config


class SourceConfig(BaseModel):
    """A Google spreadsheet, read with a service account or, without one, through its public CSV export."""

    model_config = ConfigDict(extra="forbid")

    type: Literal[TYPE]
    spreadsheet: SpreadsheetRef = Field(description="The spreadsheet's URL (from the address bar) or its id; a #gid= in the "
                                         "URL picks the tab used when a key result names no `sheet:`")
    service_account: ConfigPath | SecretRef | None = Field(
        None, description="A service-account JSON key: a file (relative to the config file), \"${ENV}\" or "
                          "{secret: NAME} holding the JSON. Share the sheet with the account's email. Without it, "
                          "the sheet must be shared as \"anyone with the link\"")
    tabs: dict[str, int] | None = Field(
        None, description="Public sheets only: tab title -> gid (the number after #gid= when the tab is open), "
                          "so key results can name `sheet:`")
    header_row: int = Field(1, ge=1, description="The row holding the column names (1 = first row)")
    decimal: Literal["point", "comma"] | None = Field(
        None, description="How the sheet shows decimals: point (1,234.5, the default) or comma (1.234,5, e.g. "
                          "in a de_DE or fr_FR spreadsheet)")
    link: ShareLink | None = None
    api_base: SkipJsonSchema[str] = Field(API_BASE, description="Sheets API endpoint (tests only)")
    export_base: SkipJsonSchema[str] = Field(EXPORT_BASE, description="CSV export endpoint (tests only)")

    @field_validator("service_account", mode="before")
    @classmethod
    def _key_reference(cls, value: Any) -> Any:
        return key_reference(value)

    @field_validator("api_base", "export_base")
    @classmethod
    def _endpoint(cls, value: str) -> str:
        return http_base(value)

    @model_validator(mode="after")
    def _tabs_only_public(self) -> SourceConfig:
        if self.tabs is not None and self.service_account is not None:
            raise ValueError("`tabs:` is for public sheets only: with a service account, key results name tabs by "
                             "`sheet:` and their gids are looked up; remove `tabs:`")
        return self

    @property
    def spreadsheet_id(self) -> str:
        return parse_spreadsheet(self.spreadsheet)[0]

    @property
    def url_gid(self) -> int | None:
        """The tab the pasted URL points at, if it names one."""
        return parse_spreadsheet(self.spreadsheet)[1]


class Metric(TabularMetric):
    """One cell (`cell: B7`), or a column (`column:`/`column_letter:`) reduced by `aggregate:`, on tab `sheet:`."""

# ---------------------------------------------------------------------------- helpers


def _listing(titles: list[str]) -> str:
    shown = ", ".join(quote_sheet(t) for t in titles[:_MAX_LISTED])
    return shown + (f" and {len(titles) - _MAX_LISTED} more" if len(titles) > _MAX_LISTED else "")


def _link(spreadsheet_id: str, gid: int | None, cell: str | None) -> str:
    """Opens the sheet at the tab, and the cell when there is one."""
    base = f"{LINK_BASE}/{spreadsheet_id}/edit"
    if gid is None:
        return base
    return f"{base}#gid={gid}" + (f"&range={cell}" if cell else "")


def writes_decimal_comma(locale: str) -> bool:
    """True for a spreadsheet locale (e.g. de_DE) whose numbers show a decimal comma."""
    language = locale.split("_")[0].lower()
    return locale in _COMMA_SPANISH or (language in _COMMA_LANGUAGES and locale not in _POINT_LOCALES)


def _from_decimal_comma(value: Any) -> Any:
    """A number shown with a decimal comma (1.234,5; 12,5 %) written with a point (1,234.5); other values unchanged."""
    if isinstance(value, str) and any(c.isdigit() for c in value) and not any(c.isalpha() for c in value):
        swapped = value.translate(_SWAP_SEPARATORS)
        try:
            if parse_number(swapped, where="") is not None:
                return swapped
        except SourceError:
            pass
    return value


def _scan(source: SourceConfig, label: SheetLabel, metrics: dict[str, Metric], kr_ids: list[str],
          as_of: dict[str, date]) -> SheetPass:
    """A pass over one tab answering `kr_ids` (each as of its date), reading numbers the way the source says
    the sheet shows them."""
    scan = SheetPass(label, header_row=source.header_row,
                     value_of=_from_decimal_comma if source.decimal == "comma" else (lambda cell: cell))
    for kr_id in kr_ids:
        scan.add(kr_id, metrics[kr_id], as_of.get(kr_id))
    return scan


def _feed_rows(scan: SheetPass, rows: Any, first_row: int = 1, first_col: int = 1) -> None:
    """Feed rows that start at (first_row, first_col) of the tab."""
    pad = [None] * (first_col - 1)
    for offset, cells in enumerate(rows):
        scan.feed(first_row + offset, pad + list(cells) if pad else cells)
        if scan.satisfied:
            break

# ---------------------------------------------------------------------------- service account


def _pick_tab(sheet: str | None, tabs: list[Tab], url_gid: int | None, name: str) -> Tab | SourceError:
    titles = [tab.title for tab in tabs]
    if not tabs:
        return SourceError(f"{name} has no tabs")
    if sheet is None:
        if url_gid is None:
            tab = tabs[0]
        else:
            tab = next((t for t in tabs if t.gid == url_gid), None)
            if tab is None:
                return SourceError(f"{name}: the URL in `spreadsheet:` points at tab gid={url_gid}, which the "
                                   f"spreadsheet does not have: set `sheet:`; the tabs are {_listing(titles)}")
    else:
        title = match_sheet(sheet, titles)
        if title is None:
            return SourceError(f"{name}: no tab {quote_sheet(sheet)}: check `sheet:`; the tabs are {_listing(titles)}")
        tab = tabs[titles.index(title)]
    if not tab.grid:
        return SourceError(f"{name}: tab {quote_sheet(tab.title)} is a chart, not cells: check `sheet:`")
    return tab


def _range_for(tab: Tab, metrics: list[Metric]) -> str:
    """The whole tab when a column is aggregated; else the smallest box holding every cell asked."""
    if any(metric.cell is None for metric in metrics):
        return quote_sheet(tab.title)
    spots = [_RANGE_START.fullmatch(metric.cell or "") for metric in metrics]
    rows = [int(spot[2]) for spot in spots if spot]
    cols = [column_index(spot[1]) for spot in spots if spot]
    first, last = f"{column_letter(min(cols))}{min(rows)}", f"{column_letter(max(cols))}{max(rows)}"
    return f"{quote_sheet(tab.title)}!{first}" + (f":{last}" if last != first else "")


def _range_start(a1_range: str) -> tuple[int, int]:
    """(row, column) of the top-left cell of a range like 'Bugs'!B7:C9; (1, 1) for a whole tab."""
    cells = a1_range.rsplit("!", 1)[1] if "!" in a1_range else ""
    match = _RANGE_START.match(cells)
    return (int(match[2]), column_index(match[1])) if match else (1, 1)


def _read_with(api: SheetsApi, source: SourceConfig, metrics: dict[str, Metric], as_of: dict[str, date]
               ) -> tuple[dict[str, Answer | SourceError], dict[str, int | None]]:
    api.authorize()
    sheet = api.spreadsheet()
    tabs = sheet.tabs
    name = f'Google Sheet "{sheet.title}"' if sheet.title else sheet_label(source.spreadsheet_id)
    if source.decimal is None and writes_decimal_comma(sheet.locale):
        raise SourceError(f"{name} is in locale {sheet.locale}, which shows decimals with a comma: add "
                          "`decimal: comma` to the source (or `decimal: point` if its numbers are written 1,234.5)")
    answers: dict[str, Answer | SourceError] = {}
    groups: dict[int, list[str]] = {}
    by_gid = {tab.gid: tab for tab in tabs}
    for kr_id, metric in metrics.items():
        tab = _pick_tab(metric.sheet, tabs, source.url_gid, name)
        if isinstance(tab, SourceError):
            answers[kr_id] = tab
        else:
            groups.setdefault(tab.gid, []).append(kr_id)
    gids: dict[str, int | None] = {kr_id: gid for gid, kr_ids in groups.items() for kr_id in kr_ids}
    if not groups:
        return answers, gids
    ranges = [_range_for(by_gid[gid], [metrics[k] for k in kr_ids]) for gid, kr_ids in groups.items()]
    found = api.values(ranges)
    for (gid, kr_ids), asked, value_range in zip(groups.items(), ranges, found):
        scan = _scan(source, SheetLabel(name, by_gid[gid].title), metrics, kr_ids, as_of)
        first_row, first_col = _range_start(str(value_range.get("range") or asked))
        _feed_rows(scan, value_range.get("values", []), first_row, first_col)
        answers.update(scan.finish())
    return answers, gids

# ---------------------------------------------------------------------------- public CSV export


def _untabbed(name: str, sheet: str, tabs: dict[str, int]) -> str:
    """Why a public sheet's tab named by `sheet:` cannot be read: the source's `tabs:` lacks it."""
    known = f"; the tabs listed are {_listing(list(tabs))}" if tabs else ""
    return (f"{name}: no tab {quote_sheet(sheet)} in the source's `tabs:`{known}. A public sheet is read tab by tab "
            "through its CSV export, which needs the tab's gid: open the tab, copy the number after #gid= in the "
            f"address bar and add `tabs: {{{sheet}: <gid>}}` to the source (or use a `service_account:`, which finds "
            "tabs by name)")


def _public(session: Session, source: SourceConfig, metrics: dict[str, Metric], as_of: dict[str, date]
            ) -> tuple[dict[str, Answer | SourceError], dict[str, int | None]]:
    """Answer every metric with one CSV export per tab used."""
    name = sheet_label(source.spreadsheet_id)
    tabs = source.tabs or {}
    title_of = {gid: title for title, gid in reversed(list(tabs.items()))}
    answers: dict[str, Answer | SourceError] = {}
    groups: dict[int | None, list[str]] = {}
    for kr_id, metric in metrics.items():
        if metric.sheet is None:
            groups.setdefault(source.url_gid, []).append(kr_id)
            continue
        title = match_sheet(metric.sheet, list(tabs))
        if title is None:
            answers[kr_id] = SourceError(_untabbed(name, metric.sheet, tabs))
            continue
        groups.setdefault(tabs[title], []).append(kr_id)
    gids: dict[str, int | None] = {kr_id: gid for gid, kr_ids in groups.items() for kr_id in kr_ids}

    def fetch(gid: int | None) -> str:
        return export_csv(session, source.spreadsheet_id, gid, export_base=source.export_base)
    answers.update(_export_tabs(fetch, source, metrics, groups, name, title_of, as_of))
    return answers, gids


def _export_tabs(fetch: Callable[[int | None], str], source: SourceConfig, metrics: dict[str, Metric],
                 groups: dict[int | None, list[str]], name: str, title_of: dict[int, str],
                 as_of: dict[str, date]) -> dict[str, Answer | SourceError]:
    """Read each tab's CSV export once; a spreadsheet-wide failure stops asking for the other tabs."""
    answers: dict[str, Answer | SourceError] = {}
    failed: SourceError | None = None
    for gid, kr_ids in groups.items():
        if failed is None:
            try:
                text = fetch(gid)
            except TabNotExported as error:
                answers.update({kr_id: error for kr_id in kr_ids})
                continue
            except SourceError as error:          # the whole spreadsheet is out of reach: ask no more
                failed = error
        if failed is not None:
            answers.update({kr_id: failed for kr_id in kr_ids})
            continue
        scan = _scan(source, SheetLabel(name, title_of.get(gid) if gid is not None else None), metrics, kr_ids, as_of)
        _feed_rows(scan, csv.reader(io.StringIO(text, newline="")))
        answers.update(scan.finish())
    return answers

# ---------------------------------------------------------------------------- public


class SheetsClient:
    """One run's connection to a spreadsheet: the Sheets API as a service account, or a plain session for the
    public CSV export. `calls` counts the HTTP requests answered (the token request included)."""

    def __init__(self, counter: CallCounter, *, api: SheetsApi | None = None, session: Session | None = None):
        self.counter, self.api, self.session = counter, api, session

    @property
    def calls(self) -> int:
        return self.counter.count

    def close(self) -> None:
        for connection in (self.api, self.session):
            if connection is not None:
                connection.close()


def check(source: SourceConfig, metrics: Sequence[Metric]) -> list[str]:
    """Problems found without the network: a key file that is missing or is not a service-account key, and
    (public sheets) a `sheet:` the source's `tabs:` does not list."""
    if isinstance(source.service_account, Path):
        try:
            key_info(source.service_account)
        except SourceError as error:
            return [str(error)]
    if source.service_account is not None:
        return []
    tabs, name = source.tabs or {}, sheet_label(source.spreadsheet_id)
    wanted = dict.fromkeys(m.sheet for m in metrics if m.sheet is not None)
    return [_untabbed(name, sheet, tabs) for sheet in wanted if match_sheet(sheet, list(tabs)) is None]


def reads_past(metric: Metric) -> bool:
    """A column with `date_column:` can be measured as of a past date (only rows dated by then count)."""
    return metric.date_column is not None


def connect(source: SourceConfig) -> SheetsClient:
    """The service-account key read now (SourceError naming where it comes from), or a session for the export."""
    counter = CallCounter()
    if source.service_account is None:
        return SheetsClient(counter, session=public_session(counter))
    info, key_label = key_info(source.service_account)
    return SheetsClient(counter, api=SheetsApi(info, source.spreadsheet_id, api_base=source.api_base, counter=counter,
                                               key_label=key_label))


def answer(client: SheetsClient, source: SourceConfig, requests: Sequence[MetricRequest]
           ) -> dict[str, Measurement | SourceError]:
    """One read per spreadsheet (service account) or per tab (public); SourceError if the sheet is out of reach."""
    metrics: dict[str, Metric] = {request.kr_id: request.metric for request in requests}
    as_of = {request.kr_id: request.as_of for request in requests}
    if client.api is not None:
        answers, gids = _read_with(client.api, source, metrics, as_of)
    else:
        assert client.session is not None
        answers, gids = _public(client.session, source, metrics, as_of)
    logger.debug("google_sheets %s: %d key results, %d HTTP calls", sheet_label(source.spreadsheet_id),
                 len(requests), client.calls)
    observed_at = datetime.now(timezone.utc)
    return {kr_id: Measurement(value=got.value,
                               link=source.link or _link(source.spreadsheet_id, gids.get(kr_id), metrics[kr_id].cell),
                               query=got.query, observed_at=observed_at, note=got.note)
            if isinstance(got, Answer) else got for kr_id, got in answers.items()}


def measure(source: SourceConfig, requests: list[MetricRequest]) -> dict[str, Measurement | SourceError]:
    """Measure a batch through the shared runner (okrsync.contract.run_batch); its calls go to the first
    measured key result, or to the first failed one when the sheet could not be read at all."""
    return run_batch(sys.modules[__name__], source, requests)
