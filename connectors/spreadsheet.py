"""Source connector for local spreadsheet files: CSV, and Excel workbooks (.xlsx/.xlsm).

A key result reads one cell (`cell: B7`, optionally `sheet: Survey`) or reduces a column
(`column: Amount` or `column_letter: C`, `aggregate: sum|avg|min|max|count|last`, optional
`where: {Team: Payments}`, and `date_column: week` to count only the rows dated on or before the
as-of date, which lets the key result be measured as of a past date and backfilled). `measure` reads each (file, sheet) once per batch, row by row in
constant memory, answering every key result that uses it in that one pass.

Excel cells are read as the sheet shows them: a number formatted as a percentage (0.45 shown
as 45%) counts as 45. Formulas give the value Excel last saved (data_only).
"""
from __future__ import annotations

import codecs
import csv
import os
import re
import stat
import sys
import zipfile
from collections import Counter
from contextlib import closing
from datetime import date, datetime, timezone
from decimal import Decimal
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, Iterable, Literal, Sequence
from urllib.parse import quote

from openpyxl import load_workbook
from openpyxl.utils.exceptions import InvalidFileException
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator, model_validator

from connectors._tabular import Answer, SheetLabel, SheetPass, TabularMetric, quote_sheet
from okrsync.contract import LocalClient, ShareLink, run_batch
from okrsync.errors import SourceError
from okrsync.measure import Measurement, MetricRequest
from okrsync.refs import InsidePath, no_boolean

TYPE = "spreadsheet"
CSV_SUFFIXES = (".csv",)
EXCEL_SUFFIXES = (".xlsx", ".xlsm")
DELIMITERS = (",", ";", "\t")

_SNIFF_CHARS = 64 * 1024
_SNIFF_LINES = 50
_MAX_LISTED = 15
_FORMULA_HINT = " (a formula's value is stored only when Excel or LibreOffice saves the file)"
_IGNORED_IN_FORMAT = re.compile(r'"[^"]*"|\\.|\[[^\]]*\]')   # quoted text, escapes, [Red]-like tags

# ---------------------------------------------------------------------------- config


class SourceConfig(BaseModel):
    """A CSV or Excel file on disk; `path` is relative to the config file, and stays inside its folder unless
    written as an absolute path."""

    model_config = ConfigDict(extra="forbid")

    type: Literal[TYPE]
    path: InsidePath = Field(description="The .csv, .xlsx or .xlsm file, relative to the config file (inside its "
                                         "folder), or an absolute path")
    header_row: Annotated[int, BeforeValidator(no_boolean)] = Field(1, ge=1, description="The row holding the column names (1 = first row)")
    delimiter: str | None = Field(None, description="CSV only: the field separator; default: guess from , ; or tab")
    encoding: str = Field("utf-8-sig", description="CSV only: the text encoding, e.g. cp1252")
    link: ShareLink | None = None

    @field_validator("path")
    @classmethod
    def _supported(cls, path: Path) -> Path:
        if path.suffix.lower() not in CSV_SUFFIXES + EXCEL_SUFFIXES:
            found = f"'{path.suffix}'" if path.suffix else "no extension"
            raise ValueError(f"unsupported file type ({found}): supported are .csv, .xlsx and .xlsm "
                             "(save .xls or .ods files as .xlsx)")
        return path

    @field_validator("delimiter")
    @classmethod
    def _one_char(cls, value: str | None) -> str | None:
        if value is None:
            return None
        value = {"\\t": "\t", "tab": "\t"}.get(value.lower(), value)
        if len(value) != 1:
            raise ValueError(f"delimiter must be one character, e.g. \";\" or \"\\t\" (got {value!r})")
        return value

    @field_validator("encoding")
    @classmethod
    def _known_encoding(cls, value: str) -> str:
        try:
            codecs.lookup(value)
        except LookupError:
            raise ValueError(f"unknown encoding {value!r}: use e.g. utf-8, utf-8-sig, cp1252 or latin-1") from None
        return value

    @model_validator(mode="after")
    def _csv_options(self) -> SourceConfig:
        if self.path.suffix.lower() in EXCEL_SUFFIXES:
            given = [f"`{name}:`" for name in ("delimiter", "encoding") if name in self.model_fields_set]
            if given:
                raise ValueError(f"{' and '.join(given)} {'apply' if len(given) > 1 else 'applies'} only to CSV files: remove {'them' if len(given) > 1 else 'it'} for {self.path.name}")
        return self


class Metric(TabularMetric):
    """One cell (`cell: B7`), or a column (`column:`/`column_letter:`) reduced by `aggregate:`."""

# ---------------------------------------------------------------------------- helpers


def _is_csv(path: Path) -> bool:
    return path.suffix.lower() in CSV_SUFFIXES


def _display_path(path: Path) -> str:
    """The path as people know it: relative to the working directory when inside it."""
    try:
        return str(Path(os.path.abspath(path)).relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def _link(path: Path, ref: str) -> str:
    """file:///abs/data/survey.xlsx#'Survey'!B7"""
    return Path(os.path.abspath(path)).as_uri() + "#" + quote(ref, safe="'!:$")


def _file_problem(path: Path) -> str | None:
    """Why `path` cannot be read as a spreadsheet, without opening it (a FIFO or a device would block)."""
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        return f"file not found: {path}: check `path:` (relative paths are relative to the config file)"
    except OSError as exc:      # a name too long, a symlink loop, no permission to look
        return f"cannot look at {path}: {exc.strerror or type(exc).__name__}: check `path:`"
    if stat.S_ISDIR(mode):
        return f"{path} is a folder, not a file: check `path:`"
    if not stat.S_ISREG(mode):
        return f"{path} is not a regular file (a pipe, socket or device): point `path:` at a .csv, .xlsx or .xlsm file"
    return None


def _one_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    text = lines[0] if lines else type(exc).__name__
    return text if len(text) <= 200 else text[:199] + "…"


def _read_error(file: str, exc: Exception, encoding: str) -> SourceError:
    """A one-line SourceError for a file that could not be read (no traceback)."""
    if isinstance(exc, UnicodeDecodeError):
        byte = exc.object[exc.start:exc.start + 1].hex()
        return SourceError(f"{file} is not {encoding} text (byte 0x{byte} at position {exc.start}): "
                           "set `encoding:` on the source, e.g. cp1252 or latin-1")
    if isinstance(exc, (zipfile.BadZipFile, InvalidFileException, KeyError)):
        return SourceError(f"{file} is not a readable Excel workbook ({_one_line(exc)}): save it again as .xlsx "
                           "from Excel or LibreOffice (password-protected files cannot be read)")
    if isinstance(exc, csv.Error):
        return SourceError(f"{file} is not valid CSV: {_one_line(exc)}")
    if isinstance(exc, OSError):
        return SourceError(f"cannot read {file}: {exc.strerror or _one_line(exc)}")
    return SourceError(f"cannot read {file}: {type(exc).__name__}: {_one_line(exc)}")


def _sniff_delimiter(sample: str) -> str:
    """The candidate delimiter that splits the first lines into the most consistent columns."""
    lines = sample.splitlines()
    if len(sample) >= _SNIFF_CHARS and len(lines) > 1:
        lines = lines[:-1]                        # the last line may be cut short
    lines = [line for line in lines[:_SNIFF_LINES] if line.strip()]
    best, best_score = DELIMITERS[0], (0, 0)
    for delimiter in DELIMITERS:
        widths = Counter(len(row) for row in csv.reader(lines, delimiter=delimiter))
        if not widths:
            continue
        width, rows = widths.most_common(1)[0]
        score = (rows, width) if width > 1 else (0, 0)
        if score > best_score:
            best, best_score = delimiter, score
    return best


def _sheet_title(name: str | None, titles: Sequence[str]) -> str | None:
    """The worksheet `name` refers to (exact, else ignoring case); the first sheet if None."""
    if name is None:
        return titles[0] if titles else None
    if name in titles:
        return name
    folded = [t for t in titles if t.casefold() == name.strip().casefold()]
    return folded[0] if len(folded) == 1 else None


def _no_sheet(file: str, name: str | None, titles: Sequence[str]) -> SourceError:
    if not titles:
        return SourceError(f"{file} has no worksheets")
    listed = ", ".join(quote_sheet(t) for t in titles[:_MAX_LISTED])
    return SourceError(f"{file}: no sheet {quote_sheet(name or '')}: check `sheet:`; the sheets are {listed}"
                       + (f" and {len(titles) - _MAX_LISTED} more" if len(titles) > _MAX_LISTED else ""))


@lru_cache(maxsize=512)
def _is_percent_format(number_format: str) -> bool:
    return "%" in _IGNORED_IN_FORMAT.sub("", number_format)


def _xlsx_value(cell: Any) -> Any:
    """A read-only openpyxl cell's value as displayed: percent-formatted numbers times 100."""
    if cell is None:
        return None
    value = cell.value
    if type(value) in (int, float) and _is_percent_format(cell.number_format or "General"):
        return float(Decimal(repr(value)).scaleb(2))
    return value


# ---------------------------------------------------------------------------- reading


def _feed(scan: SheetPass, rows: Iterable[Sequence[Any]]) -> None:
    for number, cells in enumerate(rows, 1):
        scan.feed(number, cells)
        if scan.satisfied:
            break


def _measure_csv(source: SourceConfig, metrics: dict[str, Metric], file: str,
                 as_of: dict[str, date]) -> tuple[dict[str, Answer | SourceError], list[list[str]]]:
    """Answer every metric in one pass over the CSV file."""
    answers: dict[str, Answer | SourceError] = {}
    scan = SheetPass(SheetLabel(file), header_row=source.header_row)
    for kr_id, metric in metrics.items():
        if metric.sheet is not None:
            answers[kr_id] = SourceError(f"{file}: CSV files have no sheets; remove `sheet:`")
        else:
            scan.add(kr_id, metric, as_of.get(kr_id))
    if not scan.keys:
        return answers, []
    try:
        with open(source.path, newline="", encoding=source.encoding) as stream:
            delimiter = source.delimiter or _sniff_delimiter(stream.read(_SNIFF_CHARS))
            stream.seek(0)
            _feed(scan, csv.reader(stream, delimiter=delimiter))
        answers.update(scan.finish())
    except Exception as exc:  # noqa: BLE001 - any read failure fails this file's key results only
        error = _read_error(file, exc, source.encoding)
        answers.update({kr_id: error for kr_id in scan.keys})
    return answers, [scan.keys]


def _measure_xlsx(source: SourceConfig, metrics: dict[str, Metric], file: str,
                  as_of: dict[str, date]) -> tuple[dict[str, Answer | SourceError], list[list[str]]]:
    """Answer every metric with one pass per worksheet used."""
    answers: dict[str, Answer | SourceError] = {}
    passes: list[list[str]] = []
    try:
        workbook = load_workbook(source.path, read_only=True, data_only=True)
    except Exception as exc:  # noqa: BLE001
        error = _read_error(file, exc, source.encoding)
        return {kr_id: error for kr_id in metrics}, []
    try:
        titles = [ws.title for ws in workbook.worksheets]
        groups: dict[str, list[str]] = {}
        for kr_id, metric in metrics.items():
            title = _sheet_title(metric.sheet, titles)
            if title is None:
                answers[kr_id] = _no_sheet(file, metric.sheet, titles)
            else:
                groups.setdefault(title, []).append(kr_id)
        for title, kr_ids in groups.items():
            scan = SheetPass(SheetLabel(file, title, _FORMULA_HINT), header_row=source.header_row,
                             value_of=_xlsx_value)
            for kr_id in kr_ids:
                scan.add(kr_id, metrics[kr_id], as_of.get(kr_id))
            try:
                worksheet = workbook[title]
                worksheet.reset_dimensions()      # trust the cells, not a possibly stale <dimension>
                with closing(worksheet.iter_rows()) as rows:
                    _feed(scan, rows)
                answers.update(scan.finish())
            except Exception as exc:  # noqa: BLE001
                error = _read_error(file, exc, source.encoding)
                answers.update({kr_id: error for kr_id in kr_ids})
            passes.append(kr_ids)
    finally:
        workbook.close()
    return answers, passes

# ---------------------------------------------------------------------------- public


def sheet_names(source: SourceConfig) -> list[str]:
    """The worksheet names of an Excel source ([] for CSV); SourceError if unreadable."""
    file = _display_path(source.path)
    if problem := _file_problem(source.path):
        raise SourceError(problem)
    if _is_csv(source.path):
        return []
    try:
        workbook = load_workbook(source.path, read_only=True, data_only=True)
    except Exception as exc:  # noqa: BLE001
        raise _read_error(file, exc, source.encoding) from None
    try:
        return [ws.title for ws in workbook.worksheets]
    finally:
        workbook.close()


def check_source(source: SourceConfig, sheets: Iterable[str | None] = ()) -> list[str]:
    """Problems with the file found without reading it all: missing, unreadable, unknown sheets."""
    file = _display_path(source.path)
    if problem := _file_problem(source.path):
        return [problem]
    wanted = [s for s in sheets if s is not None]
    if _is_csv(source.path):
        problems = [f"{file}: CSV files have no sheets; remove `sheet:`"] if wanted else []
        try:
            with open(source.path, newline="", encoding=source.encoding) as stream:
                stream.read(_SNIFF_CHARS)
        except Exception as exc:  # noqa: BLE001
            problems.append(str(_read_error(file, exc, source.encoding)))
        return problems
    try:
        titles = sheet_names(source)
    except SourceError as error:
        return [str(error)]
    if not titles:
        return [str(_no_sheet(file, None, titles))]
    return [str(_no_sheet(file, name, titles)) for name in dict.fromkeys(wanted) if _sheet_title(name, titles) is None]


def check(source: SourceConfig, metrics: Sequence[Metric]) -> list[str | tuple[int, str]]:
    """The contract's offline check: the file is there and readable (a problem of the source), and
    each metric's `sheet:` exists (a problem of that metric, by its index)."""
    if problems := check_source(source):
        return list(problems)
    file = _display_path(source.path)
    if _is_csv(source.path):
        return [(i, f"{file}: CSV files have no sheets; remove `sheet:`") for i, m in enumerate(metrics) if m.sheet]
    try:
        titles = sheet_names(source)
    except SourceError as error:
        return [str(error)]
    return [(i, str(_no_sheet(file, m.sheet, titles))) for i, m in enumerate(metrics)
            if m.sheet is not None and _sheet_title(m.sheet, titles) is None]


def reads_past(metric: Metric) -> bool:
    """A column with `date_column:` can be measured as of a past date (only rows dated by then count)."""
    return metric.date_column is not None


def connect(source: SourceConfig) -> LocalClient:
    """A missing or unreadable file fails the whole batch at once; `calls` counts passes over it."""
    if problem := _file_problem(source.path):
        raise SourceError(problem)
    return LocalClient()


def answer(client: LocalClient, source: SourceConfig, requests: Sequence[MetricRequest]
           ) -> dict[str, Measurement | SourceError]:
    """Answer every request: one pass per (file, sheet), errors confined to their key results."""
    metrics = {request.kr_id: request.metric for request in requests}
    reader = _measure_csv if _is_csv(source.path) else _measure_xlsx
    answers, passes = reader(source, metrics, _display_path(source.path), {r.kr_id: r.as_of for r in requests})
    order = [request.kr_id for request in requests]
    charged = {next((k for k in order if k in keys and isinstance(answers.get(k), Answer)), None)
               for keys in map(set, passes)} - {None}
    client.calls += len(charged)
    observed_at = datetime.now(timezone.utc)
    results: dict[str, Measurement | SourceError] = {}
    for kr_id, got in answers.items():
        if isinstance(got, Answer):
            results[kr_id] = Measurement(value=got.value, link=source.link or _link(source.path, got.ref), query=got.query,
                                         observed_at=observed_at, calls=1 if kr_id in charged else 0,
                                         note=got.note)
        else:
            results[kr_id] = got
    return results


def measure(source: SourceConfig, requests: list[MetricRequest]) -> dict[str, Measurement | SourceError]:
    """Measure a batch through the shared runner (okrsync.contract.run_batch)."""
    return run_batch(sys.modules[__name__], source, requests)
