"""okrsync.numbers: spreadsheet cell values -> floats, and clear messages for the rest."""
from __future__ import annotations

import ast
import inspect
from datetime import date, datetime
from decimal import Decimal

import pytest

from okrsync import numbers
from okrsync.errors import SourceError
from okrsync.numbers import is_blank, parse_number

WHERE = "'Survey'!C12"


def parse(raw):
    return parse_number(raw, where=WHERE)


def rejection(raw) -> str:
    with pytest.raises(SourceError) as caught:
        parse(raw)
    return str(caught.value)


@pytest.mark.parametrize("raw, expected", [(7, 7.0), (-3, -3.0), (2.5, 2.5), (Decimal("1.25"), 1.25)])
def test_numbers_pass_through_as_floats(raw, expected):
    assert parse(raw) == expected
    assert isinstance(parse(raw), float)


@pytest.mark.parametrize("raw", [True, False])
def test_booleans_are_not_numbers(raw):
    assert f"{WHERE}: {str(raw).upper()} is a true/false value, not a number" in rejection(raw)


@pytest.mark.parametrize("raw, expected", [("45%", 45.0), ("12.5%", 12.5), ("45 %", 45.0), ("-3%", -3.0)])
def test_percent_text_is_the_number_as_displayed(raw, expected):
    assert parse(raw) == expected


@pytest.mark.parametrize("raw, expected", [("1,234.5", 1234.5), ("1,234", 1234.0), ("12,345,678", 12345678.0),
                                           ("1234.5", 1234.5), (".5", 0.5), ("1e3", 1000.0)])
def test_comma_thousands_separators(raw, expected):
    assert parse(raw) == expected


@pytest.mark.parametrize("space", [" ", "\u00a0", "\u202f", "\u2009"], ids=["space", "nbsp", "narrow-nbsp", "thin"])
def test_space_thousands_separators(space):
    assert parse(f"1{space}234") == 1234.0
    assert parse(f"12{space}345{space}678.5") == 12345678.5


@pytest.mark.parametrize("raw, expected", [("€12", 12.0), ("$1,200", 1200.0), ("12 €", 12.0), ("£3.5", 3.5),
                                           ("¥1000", 1000.0), ("$ 7", 7.0), ("12\u00a0€", 12.0)])
def test_currency_symbols_before_or_after(raw, expected):
    assert parse(raw) == expected


@pytest.mark.parametrize("raw", ["-12", "\u221212", "(12)", "-$12", "$-12", "(€12)", "( 12 )"])
def test_negative_forms(raw):
    assert parse(raw) == -12.0


def test_plus_sign_is_accepted():
    assert parse("+12") == 12.0


def test_surrounding_whitespace_is_ignored():
    assert parse("  \t42 \n") == 42.0


@pytest.mark.parametrize("raw", [None, "", "   ", "\u00a0", "\t\n"])
def test_blank_is_none(raw):
    assert parse(raw) is None


@pytest.mark.parametrize("raw, blank", [(None, True), ("", True), (" \u202f", True), ("0", False), (0, False),
                                        ("n/a", False), (False, False)])
def test_is_blank(raw, blank):
    assert is_blank(raw) is blank


@pytest.mark.parametrize("raw", ["n/a", "12abc", "1.2.3", "£3.5k", "12M", "--1", "(-12)", "$12%", "€12$", "1 2",
                                 "12,34,5", "-", "%", "$", "1,5", "TBD"])
def test_rejects_text_that_is_not_a_number(raw):
    assert "is not a number" in rejection(raw)


def test_rejection_names_where_and_quotes_the_text():
    message = rejection("n/a")
    assert message.startswith(f'{WHERE}: "n/a" is not a number')


def test_rejection_says_how_to_fix():
    assert "put a number in the cell, or filter the row out with `where:`" in rejection("n/a")


def test_rejection_uses_a_custom_fix():
    with pytest.raises(SourceError, match="fill in B7$"):
        parse_number("soon", where="B7", fix="fill in B7")


def test_rejection_is_one_line_and_short_for_long_text():
    message = rejection("line one\nline two " + "x" * 200)
    assert "\n" not in message
    assert len(message) < 200


def test_decimal_comma_gets_a_hint():
    assert "write decimals with a point" in rejection("1,5")


def test_k_suffix_gets_a_hint():
    assert "suffixes like k or M" in rejection("3.5k")


@pytest.mark.parametrize("raw", [float("nan"), float("inf")])
def test_non_finite_floats_are_rejected(raw):
    assert "not a finite number" in rejection(raw)


@pytest.mark.parametrize("raw", [date(2026, 10, 1), datetime(2026, 10, 1, 9, 30)])
def test_dates_are_not_numbers(raw):
    assert "2026-10-01" in rejection(raw) and "not a number" in rejection(raw)


def test_module_knows_no_file_format():
    tree = ast.parse(inspect.getsource(numbers))
    imported = {alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import)
                for alias in node.names}
    imported |= {node.module.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module}
    assert not imported & {"openpyxl", "csv", "gspread"}
