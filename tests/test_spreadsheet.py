"""connectors.spreadsheet: CSV/XLSX cells and column aggregates, one streaming pass per sheet."""
from __future__ import annotations

import builtins
import csv
import tracemalloc
import zipfile
from datetime import date, datetime
from pathlib import Path

import openpyxl
import pytest
from openpyxl.worksheet._read_only import ReadOnlyWorksheet
from pydantic import ValidationError

from connectors import spreadsheet
from connectors._tabular import SheetLabel, SheetPass
from connectors.spreadsheet import Metric, SourceConfig, check_source, measure, sheet_names
from okrsync.errors import SourceError
from okrsync.measure import Measurement, MetricRequest, Period

PERIOD = Period(date(2026, 10, 1), date(2026, 12, 31), "2026-Q4")
BIG_ROWS = 100_000
MB = 1024 * 1024

# Bugs!B (Amount): 10, 5, blank, 7.5, "1,200" (text), 2
BUGS = [
    ("Team", "Amount", "Status", "Priority"),
    ("Payments", 10, "open", 1),
    ("Search", 5, "open", 2),
    ("Payments", None, "closed", 1),
    ("payments", 7.5, "open", 3),
    ("Search", "1,200", "closed", 2),
    ("Payments", 2, "closed", 1),
]


def req(kr_id: str = "kr", **metric) -> MetricRequest:
    return MetricRequest(kr_id=kr_id, metric=Metric(**metric), period=PERIOD, as_of=date(2026, 11, 15))


def source(path: Path, **settings) -> SourceConfig:
    return SourceConfig.model_validate({"type": "spreadsheet", "path": str(path), **settings})


def measure_one(src: SourceConfig, **metric) -> Measurement | SourceError:
    return measure(src, [req("kr", **metric)])["kr"]


def value_of(result: Measurement | SourceError) -> float:
    assert isinstance(result, Measurement), f"expected a Measurement, got: {result}"
    return result.value


def error_of(result: Measurement | SourceError) -> str:
    assert isinstance(result, SourceError), f"expected a SourceError, got: {result}"
    return str(result)


@pytest.fixture
def xlsx(tmp_path: Path) -> SourceConfig:
    """Sheets: Survey (cells, one percent-formatted), Bugs (a table), Messy (a text cell in a number column)."""
    workbook = openpyxl.Workbook()
    survey = workbook.active
    survey.title = "Survey"
    survey["A1"], survey["B1"] = "Question", "Score"
    survey["B7"] = 0.45
    survey["B7"].number_format = "0%"
    survey["B8"] = 30
    survey["B9"] = "45%"
    survey["B10"] = "n/a"
    survey["B11"] = 0.125
    survey["B11"].number_format = "0.0%"
    survey["B12"] = 7
    survey["B12"].number_format = '0" pts (%)"'      # a literal %, not a percentage
    bugs = workbook.create_sheet("Bugs")
    for row in BUGS:
        bugs.append(row)
    messy = workbook.create_sheet("Messy")
    for row in [("Team", "Amount"), ("Payments", 3), ("Payments", "n/a"), ("Search", 4)]:
        messy.append(row)
    path = tmp_path / "data.xlsx"
    workbook.save(path)
    return source(path)


@pytest.fixture
def bugs_csv(tmp_path: Path) -> SourceConfig:
    path = tmp_path / "bugs.csv"
    with path.open("w", newline="", encoding="utf-8") as stream:
        csv.writer(stream).writerows([["" if v is None else v for v in row] for row in BUGS])
    return source(path)

# ---------------------------------------------------------------------------- SourceConfig


def test_source_path_is_relative_to_the_config_folder(tmp_path):
    config = SourceConfig.model_validate({"type": "spreadsheet", "path": "data/x.csv"}, context={"base_dir": tmp_path})
    assert config.path == tmp_path / "data" / "x.csv"


def test_source_does_not_require_the_file_to_exist(tmp_path):
    assert source(tmp_path / "later.xlsx").header_row == 1


@pytest.mark.parametrize("name", ["old.xls", "sheet.ods", "noext"])
def test_source_rejects_unsupported_file_types(tmp_path, name):
    with pytest.raises(ValidationError, match=r"supported are \.csv, \.xlsx and \.xlsm"):
        source(tmp_path / name)


def test_source_accepts_xlsm_in_any_case(tmp_path):
    assert source(tmp_path / "MACROS.XLSM").path.name == "MACROS.XLSM"


def test_source_rejects_header_row_zero(tmp_path):
    with pytest.raises(ValidationError, match="greater than or equal to 1"):
        source(tmp_path / "x.csv", header_row=0)


def test_source_rejects_csv_options_on_excel(tmp_path):
    with pytest.raises(ValidationError, match="`delimiter:` applies only to CSV files"):
        source(tmp_path / "x.xlsx", delimiter=";")


@pytest.mark.parametrize("written", ["\t", "\\t", "tab"])
def test_source_delimiter_tab_spellings(tmp_path, written):
    assert source(tmp_path / "x.csv", delimiter=written).delimiter == "\t"


def test_source_rejects_unknown_encoding(tmp_path):
    with pytest.raises(ValidationError, match="unknown encoding 'utf-9'"):
        source(tmp_path / "x.csv", encoding="utf-9")


def test_source_forbids_unknown_keys(tmp_path):
    with pytest.raises(ValidationError, match="Extra inputs are not permitted"):
        source(tmp_path / "x.csv", sheet="Bugs")

# ---------------------------------------------------------------------------- Metric


def test_metric_cell_is_normalised_to_upper_case():
    assert Metric(cell=" b7 ").cell == "B7"
    assert Metric(cell="$AB$12").cell == "AB12"


@pytest.mark.parametrize("cell", ["7B", "B0", "B", "ABCD1", "B 7"])
def test_metric_rejects_cells_not_in_a1_notation(cell):
    with pytest.raises(ValidationError, match="A1 notation, like B7"):
        Metric(cell=cell)


def test_metric_rejects_sheet_inside_the_cell():
    with pytest.raises(ValidationError, match="`sheet: Survey` and `cell: B7`"):
        Metric(cell="Survey!B7")


def test_metric_needs_a_cell_or_a_column():
    with pytest.raises(ValidationError, match="give either `cell: B7` or `column: <header>` with `aggregate:"):
        Metric(sheet="Survey")


def test_metric_rejects_cell_and_column_together():
    with pytest.raises(ValidationError, match="`cell:` and `column:` are both given"):
        Metric(cell="B7", column="Amount", aggregate="sum")


def test_metric_column_needs_an_aggregate():
    with pytest.raises(ValidationError, match="needs `aggregate: sum|avg|min|max|count|last`"):
        Metric(column="Amount")


@pytest.mark.parametrize("extra", [{"aggregate": "sum"}, {"where": {"Team": "Payments"}}])
def test_metric_cell_takes_no_aggregate_or_where(extra):
    with pytest.raises(ValidationError, match="only go with `column:`"):
        Metric(cell="B7", **extra)


def test_metric_rejects_unknown_aggregate():
    with pytest.raises(ValidationError, match="aggregate"):
        Metric(column="Amount", aggregate="median")


def test_metric_column_letter_is_normalised():
    assert Metric(column_letter="ab", aggregate="sum").column_letter == "AB"


def test_metric_rejects_a_header_as_column_letter():
    with pytest.raises(ValidationError, match="use `column:`"):
        Metric(column_letter="Amount", aggregate="sum")

# ---------------------------------------------------------------------------- check_source


def test_check_source_reports_a_missing_file(tmp_path):
    problems = check_source(source(tmp_path / "gone.xlsx"))
    assert problems == [f"file not found: {tmp_path / 'gone.xlsx'}: check `path:` "
                        "(relative paths are relative to the config file)"]


def test_check_source_is_happy_with_a_good_file(xlsx, bugs_csv):
    assert check_source(xlsx) == []
    assert check_source(bugs_csv) == []


def test_check_source_reports_unknown_sheets_with_the_sheet_names(xlsx):
    (problem,) = check_source(xlsx, ["Bugs", "Bugz", None])
    assert "no sheet 'Bugz'" in problem and "'Survey', 'Bugs', 'Messy'" in problem


def test_check_source_reports_an_unreadable_workbook(tmp_path):
    path = tmp_path / "broken.xlsx"
    path.write_bytes(b"this is not a zip file")
    (problem,) = check_source(source(path))
    assert "is not a readable Excel workbook" in problem


def test_sheet_names_lists_the_worksheets(xlsx):
    assert sheet_names(xlsx) == ["Survey", "Bugs", "Messy"]

# ---------------------------------------------------------------------------- cells


def test_cell_on_a_named_sheet(xlsx):
    assert value_of(measure_one(xlsx, sheet="Bugs", cell="B3")) == 5


def test_cell_defaults_to_the_first_sheet(xlsx):
    assert value_of(measure_one(xlsx, cell="B8")) == 30


def test_sheet_name_is_matched_ignoring_case(xlsx):
    assert value_of(measure_one(xlsx, sheet="bugs", cell="B3")) == 5


def test_percent_formatted_cell_reads_as_displayed(xlsx):
    assert value_of(measure_one(xlsx, cell="B7")) == 45


def test_percent_format_with_decimals(xlsx):
    assert value_of(measure_one(xlsx, cell="B11")) == 12.5


def test_quoted_percent_sign_in_format_is_not_a_percentage(xlsx):
    assert value_of(measure_one(xlsx, cell="B12")) == 7


def test_percent_text_cell(xlsx):
    assert value_of(measure_one(xlsx, cell="B9")) == 45


def test_text_cell_names_the_cell(xlsx):
    message = error_of(measure_one(xlsx, cell="B10"))
    assert message.endswith("""'Survey'!B10: "n/a" is not a number; put a number in the cell""")


def test_blank_cell_is_an_error(xlsx):
    assert "cell C7 on sheet 'Survey' is empty" in error_of(measure_one(xlsx, cell="C7"))


def test_cell_beyond_the_data_is_an_error(xlsx):
    assert "cell Z900 on sheet 'Survey' is empty" in error_of(measure_one(xlsx, cell="Z900"))


def test_cell_measurement_query_and_link(xlsx):
    result = measure_one(xlsx, cell="B7")
    assert result.query == "'Survey'!B7"
    assert result.link == xlsx.path.absolute().as_uri() + "#'Survey'!B7"


def test_link_fragment_escapes_spaces_in_sheet_names(tmp_path):
    workbook = openpyxl.Workbook()
    workbook.active.title = "Q4 survey"
    workbook.active["A1"] = 3
    workbook.save(tmp_path / "s.xlsx")
    result = measure_one(source(tmp_path / "s.xlsx"), cell="A1")
    assert result.link.endswith("#'Q4%20survey'!A1")


def test_measurement_is_observed_now_in_utc(xlsx):
    result = measure_one(xlsx, cell="B8")
    assert result.observed_at.utcoffset().total_seconds() == 0

# ---------------------------------------------------------------------------- column aggregates


@pytest.mark.parametrize("aggregate, expected", [("sum", 1224.5), ("avg", 244.9), ("min", 2), ("max", 1200),
                                                 ("count", 5), ("last", 2)])
def test_every_aggregate_over_a_column(xlsx, aggregate, expected):
    assert value_of(measure_one(xlsx, sheet="Bugs", column="Amount", aggregate=aggregate)) == pytest.approx(expected)


def test_count_includes_text_cells(xlsx):
    assert value_of(measure_one(xlsx, sheet="Bugs", column="Status", aggregate="count")) == 6


def test_where_text_filter_ignores_case(xlsx):
    result = measure_one(xlsx, sheet="Bugs", column="Amount", aggregate="sum", where={"Team": "PAYMENTS"})
    assert value_of(result) == 19.5


def test_where_numeric_filter_matches_numbers(xlsx):
    result = measure_one(xlsx, sheet="Bugs", column="Amount", aggregate="sum", where={"Priority": "1.0"})
    assert value_of(result) == 12


def test_where_filter_with_several_columns(xlsx):
    result = measure_one(xlsx, sheet="Bugs", column="Amount", aggregate="sum", where={"Team": "Payments", "Status": "open"})
    assert value_of(result) == 17.5


def test_where_filter_excludes_a_text_row(xlsx):
    result = measure_one(xlsx, sheet="Messy", column="Amount", aggregate="sum", where={"Team": "Search"})
    assert value_of(result) == 4


def test_count_of_nothing_is_zero(xlsx):
    result = measure_one(xlsx, sheet="Bugs", column="Amount", aggregate="count", where={"Team": "Nobody"})
    assert value_of(result) == 0


@pytest.mark.parametrize("aggregate", ["sum", "avg", "min", "max", "last"])
def test_aggregate_of_no_rows_is_an_error_naming_the_filter(xlsx, aggregate):
    result = measure_one(xlsx, sheet="Bugs", column="Amount", aggregate=aggregate, where={"Team": "Nobody"})
    assert "no rows matched `where: Team=Nobody`" in error_of(result)


def test_aggregate_of_an_empty_column_is_an_error(tmp_path):
    path = tmp_path / "empty.csv"
    path.write_text("Team,Amount\nPayments,\nSearch,\n")
    assert '"Amount" has no numbers below header row 1' in error_of(measure_one(source(path), column="Amount", aggregate="avg"))


def test_text_in_a_number_column_names_sheet_and_cell(xlsx):
    message = error_of(measure_one(xlsx, sheet="Messy", column="Amount", aggregate="sum"))
    assert message == (f"""{spreadsheet._display_path(xlsx.path)} 'Messy'!B3: "n/a" is not a number; """
                       "put a number in the cell, or filter the row out with `where:`")


def test_number_stored_as_text_is_read(xlsx):
    assert value_of(measure_one(xlsx, sheet="Bugs", column="Amount", aggregate="max", where={"Team": "Search"})) == 1200


def test_column_by_letter(xlsx):
    assert value_of(measure_one(xlsx, sheet="Bugs", column_letter="D", aggregate="sum")) == 10


def test_column_header_is_matched_ignoring_case(xlsx):
    assert value_of(measure_one(xlsx, sheet="Bugs", column="amount", aggregate="count")) == 5


def test_column_measurement_query_and_link(xlsx):
    result = measure_one(xlsx, sheet="Bugs", column="Amount", aggregate="sum", where={"Team": "Payments"})
    assert result.query == "sum(Amount) in 'Bugs' where Team=Payments"
    assert result.link.endswith("data.xlsx#'Bugs'!B:B")


def test_unknown_column_lists_headers_and_close_matches(xlsx):
    message = error_of(measure_one(xlsx, sheet="Bugs", column="Amont", aggregate="sum"))
    assert 'no column "Amont" in header row 1' in message
    assert 'did you mean "Amount"?' in message
    assert '"Team", "Amount", "Status", "Priority"' in message


def test_unknown_where_column_is_an_error(xlsx):
    message = error_of(measure_one(xlsx, sheet="Bugs", column="Amount", aggregate="sum", where={"Owner": "me"}))
    assert 'no `where:` column "Owner"' in message


def test_header_row_setting(tmp_path):
    path = tmp_path / "report.csv"
    path.write_text("Quarterly report,\n,\nTeam,Amount\nPayments,4\nSearch,6\n")
    assert value_of(measure_one(source(path, header_row=3), column="Amount", aggregate="sum")) == 10


def test_header_row_beyond_the_file(tmp_path):
    path = tmp_path / "short.csv"
    path.write_text("Team,Amount\n")
    result = measure_one(source(path, header_row=5), column="Amount", aggregate="sum")
    assert "no header row 5" in error_of(result)

def test_where_matches_an_excel_date_written_as_text(tmp_path):
    workbook = openpyxl.Workbook()
    for row in [("Week", "Signups"), (datetime(2026, 10, 5), 4), (datetime(2026, 10, 12), 6)]:
        workbook.active.append(row)
    workbook.save(tmp_path / "weeks.xlsx")
    result = measure_one(source(tmp_path / "weeks.xlsx"), column="Signups", aggregate="sum", where={"Week": "2026-10-12"})
    assert value_of(result) == 6


def test_sheet_pass_works_on_rows_of_strings():
    """The core a Google Sheets connector reuses: plain rows of displayed strings."""
    scan = SheetPass(SheetLabel("Budget sheet", "Q4"))
    scan.add("spent", Metric(column="Spent", aggregate="sum", where={"Team": "Payments"}))
    scan.add("share", Metric(cell="C3"))
    for number, row in enumerate([["Team", "Spent", "Share"], ["Payments", "$1,200", ""], ["Search", "€300", "45%"]], 1):
        scan.feed(number, row)
    results = scan.finish()
    assert (results["spent"].value, results["share"].value) == (1200, 45)
    assert results["share"].ref == "'Q4'!C3"


def test_cell_only_pass_is_satisfied_after_the_last_wanted_row():
    scan = SheetPass(SheetLabel("f.csv"))
    scan.add("kr", Metric(cell="A2"))
    scan.feed(1, ["x"])
    assert not scan.satisfied
    scan.feed(2, ["5"])
    assert scan.satisfied and scan.finish()["kr"].value == 5


# ---------------------------------------------------------------------------- file problems


def test_unknown_sheet_lists_the_sheets(xlsx):
    message = error_of(measure_one(xlsx, sheet="Bugz", cell="A1"))
    assert "no sheet 'Bugz'" in message and "'Survey', 'Bugs', 'Messy'" in message


def test_missing_file_fails_every_key_result(tmp_path):
    results = measure(source(tmp_path / "gone.csv"), [req("a", cell="A1"), req("b", cell="A2")])
    assert all("file not found" in error_of(r) for r in results.values())


def test_corrupt_workbook_is_a_one_line_error_for_every_key_result(tmp_path):
    path = tmp_path / "broken.xlsx"
    path.write_bytes(b"PK\x03\x04 truncated")
    results = measure(source(path), [req("a", cell="A1"), req("b", column="X", aggregate="sum")])
    for result in results.values():
        message = error_of(result)
        assert "is not a readable Excel workbook" in message and "\n" not in message

# ---------------------------------------------------------------------------- CSV


def test_csv_cell_and_column(bugs_csv):
    results = measure(bugs_csv, [req("cell", cell="B2"), req("sum", column="Amount", aggregate="sum")])
    assert (value_of(results["cell"]), value_of(results["sum"])) == (10, 1224.5)


def test_csv_with_semicolons_is_sniffed(tmp_path):
    path = tmp_path / "eu.csv"
    path.write_text("Team;Amount;Note\nPayments;3;a, b\nSearch;4;c\n")
    assert value_of(measure_one(source(path), column="Amount", aggregate="sum")) == 7


def test_csv_with_tabs_is_sniffed(tmp_path):
    path = tmp_path / "tabs.csv"
    path.write_text("Team\tAmount\nPayments\t1,200\nSearch\t4\n")
    assert value_of(measure_one(source(path), column="Amount", aggregate="sum")) == 1204


def test_csv_explicit_delimiter_wins(tmp_path):
    path = tmp_path / "pipes.csv"
    path.write_text("Team|Amount\nPayments|3\n")
    assert value_of(measure_one(source(path, delimiter="|"), column="Amount", aggregate="sum")) == 3


def test_csv_byte_order_mark_is_not_part_of_the_header(tmp_path):
    path = tmp_path / "bom.csv"
    path.write_bytes("Team,Amount\nPayments,3\n".encode("utf-8-sig"))
    assert value_of(measure_one(source(path), column="Amount", aggregate="sum", where={"Team": "Payments"})) == 3


def test_csv_sheet_is_an_error(bugs_csv):
    assert "CSV files have no sheets; remove `sheet:`" in error_of(measure_one(bugs_csv, sheet="Bugs", cell="B2"))


def test_csv_decode_error_suggests_an_encoding(tmp_path):
    path = tmp_path / "latin.csv"
    path.write_bytes("Team,Amount\nCafé,3\n".encode("cp1252"))
    message = error_of(measure_one(source(path), column="Amount", aggregate="sum"))
    assert "is not utf-8-sig text" in message and "set `encoding:`" in message and "\n" not in message


def test_csv_encoding_setting(tmp_path):
    path = tmp_path / "latin.csv"
    path.write_bytes("Team,Amount\nCafé,3\n".encode("cp1252"))
    result = measure_one(source(path, encoding="cp1252"), column="Amount", aggregate="sum", where={"Team": "café"})
    assert value_of(result) == 3

# ---------------------------------------------------------------------------- batches


def test_one_bad_key_result_does_not_stop_the_others(xlsx):
    results = measure(xlsx, [
        req("bad-sheet", sheet="Nope", cell="A1"),
        req("bad-text", sheet="Messy", column="Amount", aggregate="sum"),
        req("bad-column", sheet="Bugs", column="Nope", aggregate="sum"),
        req("good-cell", cell="B7"),
        req("good-sum", sheet="Bugs", column="Amount", aggregate="sum"),
    ])
    assert [k for k, r in results.items() if isinstance(r, SourceError)] == ["bad-sheet", "bad-text", "bad-column"]
    assert (results["good-cell"].value, results["good-sum"].value) == (45, 1224.5)


def test_results_come_back_for_every_request_in_order(xlsx):
    requests = [req(k, cell="B8") for k in ("c", "a", "b")]
    assert list(measure(xlsx, requests)) == ["c", "a", "b"]


def test_two_key_results_on_one_csv_read_it_once(bugs_csv, monkeypatch):
    opened: list[str] = []

    def counting_open(file, *args, **kwargs):
        opened.append(str(file))
        return builtins.open(file, *args, **kwargs)

    monkeypatch.setattr(spreadsheet, "open", counting_open, raising=False)
    results = measure(bugs_csv, [req("a", cell="B2"), req("b", column="Amount", aggregate="sum"),
                                 req("c", column="Status", aggregate="count", where={"Team": "Search"})])
    assert opened == [str(bugs_csv.path)]
    assert [r.calls for r in results.values()] == [1, 0, 0]


def test_each_sheet_is_read_once_per_batch(xlsx, monkeypatch):
    passes: list[str] = []
    loads: list[str] = []
    real_iter_rows, real_load = ReadOnlyWorksheet.iter_rows, spreadsheet.load_workbook

    def counting_iter_rows(self, *args, **kwargs):
        passes.append(self.title)
        return real_iter_rows(self, *args, **kwargs)

    def counting_load(*args, **kwargs):
        loads.append(str(args[0]))
        return real_load(*args, **kwargs)

    monkeypatch.setattr(ReadOnlyWorksheet, "iter_rows", counting_iter_rows)
    monkeypatch.setattr(spreadsheet, "load_workbook", counting_load)
    results = measure(xlsx, [req("a", cell="B7"), req("b", sheet="Bugs", column="Amount", aggregate="sum"),
                             req("c", sheet="Survey", cell="B8"), req("d", sheet="Bugs", cell="B2")])
    assert len(loads) == 1
    assert sorted(passes) == ["Bugs", "Survey"]
    assert sum(r.calls for r in results.values()) == 2
    assert [r.calls for r in results.values()] == [1, 1, 0, 0]


def test_calls_go_to_the_first_successful_measurement_of_a_pass(xlsx):
    results = measure(xlsx, [req("bad", cell="B10"), req("good", cell="B8")])
    assert isinstance(results["bad"], SourceError) and results["good"].calls == 1


def test_identical_metrics_share_one_answer(xlsx):
    results = measure(xlsx, [req("a", sheet="Bugs", column="Amount", aggregate="sum"),
                             req("b", sheet="bugs", column="Amount", aggregate="sum")])
    assert results["a"].value == results["b"].value == 1224.5
    assert results["a"].calls + results["b"].calls == 1

# ---------------------------------------------------------------------------- streaming


@pytest.fixture(scope="module")
def big_csv(tmp_path_factory) -> SourceConfig:
    path = tmp_path_factory.mktemp("big") / "big.csv"
    with path.open("w", newline="") as stream:
        writer = csv.writer(stream)
        writer.writerow(["Team", "Amount", "Note"])
        writer.writerows(("Payments" if i % 2 else "Search", i % 100, f"row {i}") for i in range(BIG_ROWS))
    return source(path)


def add_dimension(path: Path, ref: str) -> None:
    """Write the <dimension> Excel always writes and openpyxl's write-only mode leaves out.

    Without it openpyxl's read-only loader pre-scans the whole sheet to size it, which doubles
    the test's run time (not its memory).
    """
    rewritten = path.with_suffix(".tmp")
    with zipfile.ZipFile(path) as old, zipfile.ZipFile(rewritten, "w", zipfile.ZIP_DEFLATED) as new:
        for item in old.infolist():
            data = old.read(item)
            if item.filename.startswith("xl/worksheets/sheet"):
                data = data.replace(b"<sheetViews>", f'<dimension ref="{ref}"/><sheetViews>'.encode(), 1)
            new.writestr(item, data)
    rewritten.replace(path)


@pytest.fixture(scope="module")
def big_xlsx(tmp_path_factory) -> SourceConfig:
    path = tmp_path_factory.mktemp("big") / "big.xlsx"
    workbook = openpyxl.Workbook(write_only=True)
    sheet = workbook.create_sheet("Data")
    sheet.append(["Amount"])
    for i in range(BIG_ROWS):
        sheet.append([i % 100])
    workbook.save(path)
    add_dimension(path, f"A1:A{BIG_ROWS + 1}")
    return source(path)


def peak_memory(src: SourceConfig, requests: list[MetricRequest]) -> tuple[dict, int]:
    tracemalloc.start()
    try:
        results = measure(src, requests)
        return results, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_big_csv_streams_in_flat_memory(big_csv):
    results, peak = peak_memory(big_csv, [req("sum", column="Amount", aggregate="sum", where={"Team": "Payments"}),
                                          req("count", column="Note", aggregate="count")])
    assert (results["sum"].value, results["count"].value) == (2_500_000, BIG_ROWS)
    assert peak < 5 * MB, f"peak {peak / MB:.1f} MB"          # all rows as lists would be ~25 MB


def test_big_xlsx_streams_in_bounded_memory(big_xlsx):
    results, peak = peak_memory(big_xlsx, [req("sum", column="Amount", aggregate="sum")])
    assert results["sum"].value == 99 * 100 * BIG_ROWS / 200
    # openpyxl's read-only parser keeps ~70 bytes per parsed row (cleared XML elements); our part is flat
    assert peak < 25 * MB, f"peak {peak / MB:.1f} MB"
