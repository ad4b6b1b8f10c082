"""Cell, column and aggregate metrics over rows of cells, in one streaming pass.

Shared by the tabular sources (local CSV/XLSX files and Google Sheets). A source reads
rows however it likes and feeds them to a `SheetPass`, which answers every metric of the
batch that uses that sheet at once, in constant memory:

    scan = SheetPass(SheetLabel("data/bugs.xlsx", "Bugs"), header_row=1, value_of=...)
    scan.add("kr-1", metric, as_of)          # a TabularMetric (cell, or column + aggregate); as_of
                                             # matters to a metric with `date_column:` only
    for number, row in enumerate(rows, 1):   # rows: any iterable of cell sequences
        scan.feed(number, row)
        if scan.satisfied:                   # only cell metrics, all of them seen
            break
    scan.finish()  ->  {"kr-1": Answer | SourceError}

`value_of(cell)` turns a cell object into its value as a person sees it (None, text, number,
bool or date); the default takes the cell as its own value (rows of strings or values).

A column metric with `date_column:` counts only the rows dated on or before its as-of date (a row
without a date does not count), so it can be measured as of a past date; `aggregate: last` then
takes the value of the latest-dated such row (the last one in the sheet among rows of that date),
and `sum` of no rows dated yet is 0 (nothing had happened by then; other aggregates have no value).
Dates are cells holding a date, or text written YYYY-MM-DD (a time after it is ignored).
"""
from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from datetime import date, datetime, time
from typing import Any, Callable, Literal, Sequence, get_args

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from okrsync.errors import SourceError
from okrsync.numbers import is_blank, parse_number

Aggregate = Literal["sum", "avg", "min", "max", "count", "last"]
AGGREGATES: tuple[str, ...] = get_args(Aggregate)
WhereValue = str | bool | int | float | date

CELL_FIX = "put a number in the cell"
DATE_FIX = "write dates as YYYY-MM-DD (or format the column as dates)"
COLUMN_FIX = "put a number in the cell, or filter the row out with `where:`"
ONE_OF = "give either `cell: B7` or `column: <header>` with `aggregate: sum|avg|min|max|count|last`"

_A1 = re.compile(r"\$?([A-Za-z]{1,3})\$?([1-9][0-9]{0,6})")
_LETTERS = re.compile(r"[A-Za-z]{1,3}")
_DATE_TEXT = re.compile(r"(\d{4})[-/](\d{1,2})[-/](\d{1,2})(?:[ T].*)?")
_MAX_LISTED = 15
_MAX_NAME = 40              # characters of a header shown in a message: a name, never a file's content

# ---------------------------------------------------------------------------- metric model


class TabularMetric(BaseModel):
    """What a key result may ask of a sheet: one cell, or an aggregate over a column."""

    model_config = ConfigDict(extra="forbid")

    sheet: str | None = Field(None, min_length=1, description="Tab name; default: the first sheet")
    cell: str | None = Field(None, description="One cell in A1 notation, e.g. B7")
    column: str | None = Field(None, description="A column by its header, as written in the header row")
    column_letter: str | None = Field(None, description="A column by its letter, e.g. C")
    aggregate: Aggregate | None = Field(None, description="How to reduce the column: sum|avg|min|max|count|last")
    where: dict[str, WhereValue] | None = Field(
        None, description="Row filter: header -> value every counted row must hold (text case-insensitive)")
    date_column: str | None = Field(
        None, description="A column of dates (by its header): only rows dated on or before the as-of date count, "
                          "so the key result can be measured as of a past date and backfilled")

    @field_validator("sheet", "cell", "column", "column_letter", "date_column", mode="before")
    @classmethod
    def _number_as_text(cls, value: Any) -> Any:
        """YAML reads `sheet: 2026` or `column: 7` as a number; they name a tab or a header all the same."""
        return str(value) if isinstance(value, int) and not isinstance(value, bool) else value

    @field_validator("cell")
    @classmethod
    def _check_cell(cls, value: str | None) -> str | None:
        if value is None:
            return None
        text = value.strip()
        if "!" in text:
            raise ValueError(f"write the sheet apart from the cell: `sheet: Survey` and `cell: B7` (got {value!r})")
        match = _A1.fullmatch(text)
        if match is None:
            raise ValueError(f"cell must be in A1 notation, like B7 (got {value!r})")
        return f"{match[1].upper()}{match[2]}"

    @field_validator("column_letter")
    @classmethod
    def _check_letter(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if not _LETTERS.fullmatch(value.strip()):
            raise ValueError(f"column_letter must be a column letter like C or AB (got {value!r}); "
                             "to name a column by its header, use `column:`")
        return value.strip().upper()

    @field_validator("column")
    @classmethod
    def _check_column(cls, value: str | None) -> str | None:
        if value is not None and not value.strip():
            raise ValueError("column must name a header, e.g. `column: Amount`")
        return value

    @field_validator("date_column")
    @classmethod
    def _check_date_column(cls, value: str | None) -> str | None:
        if value is not None and not value.strip():
            raise ValueError("date_column must name the header of a column of dates, e.g. `date_column: week`")
        return value

    @model_validator(mode="after")
    def _one_kind(self) -> TabularMetric:
        given = [f"`{name}:`" for name in ("cell", "column", "column_letter") if getattr(self, name) is not None]
        if not given:
            raise ValueError(ONE_OF)
        if len(given) > 1:
            raise ValueError(f"{' and '.join(given)} are both given: {ONE_OF}")
        if self.cell is not None and (self.aggregate is not None or self.where is not None):
            raise ValueError("`aggregate:` and `where:` only go with `column:`; a `cell:` is read as it is: "
                             "remove them, or " + ONE_OF)
        if self.cell is not None and self.date_column is not None:
            raise ValueError("`date_column:` only goes with `column:` (it picks the rows dated on or before the as-of "
                             "date); a `cell:` holds one value with no date: remove it, or aggregate a column")
        if self.cell is None and self.aggregate is None:
            raise ValueError("a column needs `aggregate: sum|avg|min|max|count|last`")
        return self



# ---------------------------------------------------------------------------- helpers


def column_index(letters: str) -> int:
    """1-based index of a column letter: A -> 1, Z -> 26, AA -> 27."""
    index = 0
    for char in letters.upper():
        index = index * 26 + ord(char) - 64
    return index


def column_letter(index: int) -> str:
    """Column letter of a 1-based index: 1 -> A, 27 -> AA."""
    letters = ""
    while index:
        index, rem = divmod(index - 1, 26)
        letters = chr(65 + rem) + letters
    return letters


def quote_sheet(name: str) -> str:
    """A sheet name as written in a cell reference: 'My sheet' (quotes doubled)."""
    return "'" + name.replace("'", "''") + "'"


def match_sheet(name: str, titles: Sequence[str]) -> str | None:
    """The title among `titles` that `name` refers to: exact, else the one equal ignoring case; None if none."""
    if name in titles:
        return name
    folded = [title for title in titles if title.casefold() == name.strip().casefold()]
    return folded[0] if len(folded) == 1 else None


def display_text(value: Any) -> str:
    """A cell value as the text a person sees (dates as YYYY-MM-DD, booleans as TRUE/FALSE)."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, datetime):
        return value.date().isoformat() if value.time() == time() else value.isoformat(sep=" ")
    if isinstance(value, (date, time)):
        return value.isoformat()
    return str(value)


def _short(name: str) -> str:
    return name if len(name) <= _MAX_NAME else name[:_MAX_NAME - 1] + "…"


def _listing(names: Sequence[str]) -> str:
    shown = ", ".join(f'"{_short(n)}"' for n in names[:_MAX_LISTED])
    return shown + (f" and {len(names) - _MAX_LISTED} more" if len(names) > _MAX_LISTED else "")


def _cell_at(cells: Sequence[Any], index: int) -> Any:
    return cells[index - 1] if index <= len(cells) else None


def _as_number(value: Any) -> float | None:
    try:
        return parse_number(value, where="")
    except SourceError:
        return None


def row_date(value: Any, where: str) -> date | None:
    """The date a cell holds (a date, or text written YYYY-MM-DD), None if blank; SourceError otherwise."""
    if is_blank(value):
        return None
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    if isinstance(value, str):
        match = _DATE_TEXT.fullmatch(value.strip())
        if match:
            try:
                return date(int(match[1]), int(match[2]), int(match[3]))
            except ValueError:
                pass
    shown = display_text(value)
    shown = shown if len(shown) <= _MAX_NAME else shown[:_MAX_NAME - 1] + "…"
    raise SourceError(f"{where}: {shown!r} is not a date: {DATE_FIX}")


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}" + ("" if count == 1 else "s")


def _fold(name: str) -> str:
    return " ".join(name.split()).casefold()


class _Headers:
    """The names in the header row; looked up as written, else ignoring case and spacing."""

    def __init__(self, names: list[tuple[int, str]]):
        self.names = [name for _, name in names]
        self._exact: dict[str, int] = {}
        self._folded: dict[str, int] = {}
        for index, name in names:
            self._exact.setdefault(name, index)
            self._folded.setdefault(_fold(name), index)

    def index(self, name: str) -> int:
        """1-based column of header `name`, 0 if there is none."""
        return self._exact.get(name.strip()) or self._folded.get(_fold(name)) or 0

    def close_to(self, name: str) -> list[str]:
        folded = {_fold(n): n for n in reversed(self.names)}
        return [folded[c] for c in difflib.get_close_matches(_fold(name), list(folded), n=3, cutoff=0.6)]


@dataclass(frozen=True)
class SheetLabel:
    """Names a sheet in messages: the file as shown to people, and the tab (None for CSV)."""

    file: str
    sheet: str | None = None
    empty_hint: str = ""             # appended to "cell is empty" messages, e.g. about formulas

    def ref(self, a1: str) -> str:
        """A reference inside the file: 'Bugs'!C12, or C12 when there are no sheets."""
        return f"{quote_sheet(self.sheet)}!{a1}" if self.sheet is not None else a1

    def at(self, a1: str) -> str:
        """A reference for messages: data/bugs.xlsx 'Bugs'!C12."""
        return f"{self.file} {self.ref(a1)}"

    def on_sheet(self) -> str:
        return f" on sheet {quote_sheet(self.sheet)}" if self.sheet is not None else ""


@dataclass(frozen=True)
class Answer:
    """A measured value, with the query as asked and the A1 reference behind it."""

    value: float
    query: str
    ref: str                         # e.g. 'Survey'!B7 or 'Bugs'!C:C, for a link fragment
    note: str | None = None

# ---------------------------------------------------------------------------- queries


class _Filter:
    """One `where:` condition: a header and the value its cell must hold."""

    def __init__(self, header: str, wanted: WhereValue):
        self.header = header
        self.text = display_text(wanted).strip()
        self.folded = self.text.casefold()
        self.number = None if isinstance(wanted, bool) else _as_number(wanted)
        self.index = 0

    def matches(self, value: Any) -> bool:
        text = display_text(value).strip()
        if text.casefold() == self.folded:
            return True
        return self.number is not None and not isinstance(value, bool) and _as_number(value) == self.number


class _CellQuery:
    """A single cell, read as a number."""

    def __init__(self, metric: TabularMetric, label: SheetLabel):
        self.a1 = metric.cell or ""
        match = _A1.fullmatch(self.a1)
        assert match is not None, "Metric validation guarantees A1 notation"
        self.row, self.col = int(match[2]), column_index(match[1])
        self.label = label
        self.result: Answer | SourceError | None = None

    def take(self, cells: Sequence[Any], value_of: Callable[[Any], Any]) -> None:
        raw = value_of(_cell_at(cells, self.col))
        try:
            value = parse_number(raw, where=self.label.at(self.a1), fix=CELL_FIX)
        except SourceError as error:
            self.result = error
            return
        if value is not None:
            self.result = Answer(value, self.label.ref(self.a1), self.label.ref(self.a1))

    def finish(self) -> Answer | SourceError:
        if self.result is not None:
            return self.result
        return SourceError(f"{self.label.file}: cell {self.a1}{self.label.on_sheet()} is empty{self.label.empty_hint}; "
                           "check `cell:` and `sheet:`")


class _ColumnQuery:
    """An aggregate over one column, among the rows that pass the `where:` filter."""

    def __init__(self, metric: TabularMetric, label: SheetLabel, header_row: int, as_of: date | None = None):
        self.metric = metric
        self.label = label
        self.header_row = header_row
        self.aggregate: str = metric.aggregate or "sum"
        self.filters = [_Filter(h, v) for h, v in (metric.where or {}).items()]
        self.col = column_index(metric.column_letter) if metric.column_letter else 0
        self.until = as_of if metric.date_column is not None else None    # rows dated after it do not count
        self.date_col = 0
        self.headers_seen = False
        self.error: SourceError | None = None
        self.matched = self.count = 0
        self.total = 0.0
        self.low = self.high = self.last = None
        self.last_date: date | None = None

    @property
    def active(self) -> bool:
        return self.error is None

    def resolve(self, headers: _Headers) -> None:
        """Find the column and the filter columns in the header row."""
        self.headers_seen = True
        if not headers.names and (self.metric.column or self.filters):
            self.error = SourceError(f"{self.label.file}: header row {self.header_row}{self.label.on_sheet()} is empty; "
                                     "set `header_row:` on the source to the row that holds the column names")
            return
        if self.metric.column:
            self.col = self._find(self.metric.column, headers, "column")
        if self.metric.date_column:
            self.date_col = self._find(self.metric.date_column, headers, "`date_column:`")
        for condition in self.filters:
            condition.index = self._find(condition.header, headers, "`where:` column")

    def _find(self, name: str, headers: _Headers, what: str) -> int:
        if self.error is not None:
            return 0
        index = headers.index(name)
        if index:
            return index
        hint = f" did you mean {_listing(headers.close_to(name))}?" if headers.close_to(name) else ""
        self.error = SourceError(f"{self.label.file}: no {what} \"{name}\" in header row {self.header_row}"
                                 f"{self.label.on_sheet()};{hint} the columns are {_listing(headers.names)}")
        return 0

    def add_row(self, row: int, cells: Sequence[Any], value_of: Callable[[Any], Any]) -> None:
        for condition in self.filters:
            if not condition.matches(value_of(_cell_at(cells, condition.index))):
                return
        when = None
        if self.date_col:
            try:
                when = row_date(value_of(_cell_at(cells, self.date_col)),
                                self.label.at(f"{column_letter(self.date_col)}{row}"))
            except SourceError as error:
                self.error = error
                return
            if when is None or (self.until is not None and when > self.until):
                return
        self.matched += 1
        raw = value_of(_cell_at(cells, self.col))
        if is_blank(raw):
            return
        if self.aggregate == "count":
            self.count += 1
            return
        if isinstance(raw, (int, float)) and not isinstance(raw, bool):
            value = float(raw)
        else:
            try:
                value = parse_number(raw, where=self.label.at(f"{column_letter(self.col)}{row}"), fix=COLUMN_FIX)
            except SourceError as error:
                self.error = error
                return
            if value is None:
                return
        self.count += 1
        self.total += value
        self.low = value if self.low is None or value < self.low else self.low
        self.high = value if self.high is None or value > self.high else self.high
        if when is None or self.last_date is None or when >= self.last_date:
            self.last, self.last_date = value, when

    def finish(self) -> Answer | SourceError:
        if self.error is not None:
            return self.error
        if not self.headers_seen:
            return SourceError(f"{self.label.file}: no header row {self.header_row}{self.label.on_sheet()}: the sheet "
                               "has fewer rows; check `header_row:` on the source")
        query, ref = self._describe()
        dated = "" if self.until is None else f" dated on or before {self.until}"
        if self.aggregate == "count":
            return Answer(float(self.count), query, ref,
                          f"{_plural(self.count, 'non-empty cell')} in {_plural(self.matched, 'row')}{dated}")
        if self.count == 0 and self.aggregate == "sum" and self.until is not None and self.matched == 0:
            return Answer(0.0, query, ref, f"no rows{dated} yet: the sum is 0")   # nothing happened by then
        if self.count == 0:
            return SourceError(self._nothing_message())
        value = {"sum": self.total, "avg": self.total / self.count, "min": self.low,
                 "max": self.high, "last": self.last}[self.aggregate]
        return Answer(float(value), query, ref, f"{self.aggregate} of {_plural(self.count, 'value')}{dated}")

    def _describe(self) -> tuple[str, str]:
        letter = column_letter(self.col)
        name = self.metric.column or letter
        query = f"{self.aggregate}({name})"
        if self.label.sheet is not None:
            query += f" in {quote_sheet(self.label.sheet)}"
        if self.filters:
            query += " where " + " and ".join(f"{c.header}={c.text}" for c in self.filters)
        if self.metric.date_column:
            query += f" dated by {self.metric.date_column}"
        return query, self.label.ref(f"{letter}:{letter}")

    def _nothing_message(self) -> str:
        name = f'"{self.metric.column}"' if self.metric.column else f"column {self.metric.column_letter}"
        asked = f"{self.aggregate}({self.metric.column or self.metric.column_letter})"
        place = f"{self.label.file}{self.label.on_sheet()}"
        if self.until is not None and self.matched == 0:
            return (f"{place}: no rows dated on or before {self.until} in `date_column: {self.metric.date_column}`"
                    f"{' that match `where:`' if self.filters else ''}, so {asked} has no values")
        if self.filters:
            wanted = ", ".join(f"{c.header}={c.text}" for c in self.filters)
            if self.matched == 0:
                return f"{place}: no rows matched `where: {wanted}`, so {asked} has no values; check the filter values"
            return (f"{place}: {name} is empty in all {_plural(self.matched, 'row')} matching `where: {wanted}`, "
                    f"so {asked} has no values")
        if self.matched == 0:
            return f"{place}: no rows matched: there are no data rows below header row {self.header_row}"
        return f"{place}: {name} has no numbers below header row {self.header_row}, so {asked} has no values"

# ---------------------------------------------------------------------------- the pass


class SheetPass:
    """Answers every metric on one sheet in a single pass over its rows."""

    def __init__(self, label: SheetLabel, *, header_row: int = 1,
                 value_of: Callable[[Any], Any] = lambda cell: cell):
        self.label = label
        self.header_row = header_row
        self.value_of = value_of
        self._queries: dict[str, _CellQuery | _ColumnQuery] = {}
        self._keys: dict[str, list[str]] = {}
        self._cells: dict[int, list[_CellQuery]] = {}
        self._columns: list[_ColumnQuery] = []
        self._last_cell_row = 0
        self._row = 0

    @property
    def keys(self) -> list[str]:
        """The keys added, in order."""
        return [key for keys in self._keys.values() for key in keys]

    def add(self, key: str, metric: TabularMetric, as_of: date | None = None) -> None:
        """Ask `metric` under `key`, as of `as_of` (a metric with `date_column:` counts only the rows
        dated on or before it); identical metrics as of the same date share one answer."""
        identity = metric.model_dump_json(exclude={"sheet"})
        if metric.date_column is not None:
            identity += f"@{as_of}"
        if identity not in self._queries:
            if metric.cell is not None:
                cell = _CellQuery(metric, self.label)
                self._cells.setdefault(cell.row, []).append(cell)
                self._last_cell_row = max(self._last_cell_row, cell.row)
                self._queries[identity] = cell
            else:
                column = _ColumnQuery(metric, self.label, self.header_row, as_of)
                self._columns.append(column)
                self._queries[identity] = column
        self._keys.setdefault(identity, []).append(key)

    @property
    def satisfied(self) -> bool:
        """True when no further row can change any answer (so the reader may stop)."""
        return self._row >= self._last_cell_row and not any(c.active for c in self._columns)

    def feed(self, row: int, cells: Sequence[Any]) -> None:
        """Take the cells of 1-based row `row`; rows must come in order."""
        self._row = row
        for cell in self._cells.get(row, ()):
            cell.take(cells, self.value_of)
        if not self._columns or row < self.header_row:
            return
        if row == self.header_row:
            headers = _Headers([(index, name) for index, cell in enumerate(cells, 1)
                                if (name := display_text(self.value_of(cell)).strip())])
            for column in self._columns:
                column.resolve(headers)
            return
        for column in self._columns:
            if column.active:
                column.add_row(row, cells, self.value_of)

    def finish(self) -> dict[str, Answer | SourceError]:
        """The answer to every key added."""
        results: dict[str, Answer | SourceError] = {}
        for identity, query in self._queries.items():
            outcome = query.finish()
            for key in self._keys[identity]:
                results[key] = outcome
        return results
