"""Turn a spreadsheet cell value into a number, the way a person reads the cell.

`parse_number(raw, where=...)` accepts what spreadsheets hold or display: int/float, and text
such as `45%` (45.0, the number as shown), `1,234.5`, `1 234` (also with no-break or narrow
no-break spaces), `€12`, `$1,200`, `12 €`, `-12`, `−12` (unicode minus), `(12)` (accounting
negative). Blank cells give None; anything else raises SourceError naming the cell.

Shared by every tabular source (CSV/XLSX files, Google Sheets), so it knows no file format.
"""
from __future__ import annotations

import math
import re
from datetime import date, datetime, time
from decimal import Decimal
from typing import Any

from okrsync.errors import SourceError

DEFAULT_FIX = "put a number in the cell, or filter the row out with `where:`"

_CURRENCIES = "$€£¥₹"
_NORMALIZE = str.maketrans({"\u00a0": " ", "\u202f": " ", "\u2009": " ", "\u2007": " ", "\u2212": "-"})
_NUMBER = re.compile(
    r"""
    (?P<sign1>[-+])?\x20*
    (?P<cur1>[""" + _CURRENCIES + r"""])?\x20*
    (?P<sign2>[-+])?\x20*
    (?P<body>
        [0-9]{1,3}(?P<sep>[,\x20])[0-9]{3}(?:(?P=sep)[0-9]{3})*(?:\.[0-9]+)?   # 1,234.5  1 234
      | [0-9]+(?:\.[0-9]*)?(?:[eE][-+]?[0-9]+)?                             # 1234.5  1e6
      | \.[0-9]+(?:[eE][-+]?[0-9]+)?                                        # .5
    )
    \x20*(?P<cur2>[""" + _CURRENCIES + r"""])?
    \x20*(?P<pct>%)?
    """,
    re.VERBOSE,
)
_DECIMAL_COMMA = re.compile(r"[-+]?[0-9]{1,3}(?:\.[0-9]{3})*,[0-9]+|[-+]?[0-9]+,[0-9]{1,2}")
_SUFFIXED = re.compile(r"[-+]?[" + _CURRENCIES + r"]?[0-9.,]+\x20*[kKmMbB]")
_MAX_SHOWN = 40


def is_blank(raw: Any) -> bool:
    """True for an empty cell: None, or text that is empty or only whitespace."""
    return raw is None or (isinstance(raw, str) and not raw.strip())


def parse_number(raw: Any, *, where: str, fix: str = DEFAULT_FIX) -> float | None:
    """The number in a cell value, None if the cell is blank.

    Raises SourceError (`<where>: "<text>" is not a number; <fix>`) for anything else.
    """
    if raw is None:
        return None
    if isinstance(raw, bool):
        raise SourceError(f"{where}: {str(raw).upper()} is a true/false value, not a number; {fix}")
    if isinstance(raw, (int, float, Decimal)):
        value = float(raw)
        if not math.isfinite(value):
            raise SourceError(f"{where}: {raw} is not a finite number; {fix}")
        return value
    if isinstance(raw, (date, datetime, time)):
        raise SourceError(f"{where}: {raw.isoformat()} is a date or time, not a number; {fix}")
    text = str(raw).strip()
    if not text:
        return None
    value = _parse_text(text)
    if value is None:
        raise SourceError(f"{where}: {_quote(text)} is not a number{_hint(text)}; {fix}")
    return value


def _parse_text(text: str) -> float | None:
    """The number written in `text` (already stripped), or None if it is not one."""
    text = text.translate(_NORMALIZE)
    negative = False
    if text.startswith("(") and text.endswith(")"):
        negative, text = True, text[1:-1].strip()
    match = _NUMBER.fullmatch(text)
    if match is None:
        return None
    signs = [s for s in (match["sign1"], match["sign2"]) if s]
    if len(signs) > 1 or (negative and signs):
        return None
    if match["cur1"] and match["cur2"] or (match["cur1"] or match["cur2"]) and match["pct"]:
        return None
    body = match["body"].replace(match["sep"], "") if match["sep"] else match["body"]
    value = float(body)
    if negative or signs == ["-"]:
        value = -value
    return value if math.isfinite(value) else None


def _quote(text: str) -> str:
    shown = " ".join(text.split())
    if len(shown) > _MAX_SHOWN:
        shown = shown[: _MAX_SHOWN - 1] + "…"
    return f'"{shown}"'


def _hint(text: str) -> str:
    """A parenthesised guess at what the writer meant, or ''."""
    text = text.translate(_NORMALIZE).replace(" ", "")
    if _DECIMAL_COMMA.fullmatch(text):
        return " (write decimals with a point, e.g. 1234.5)"
    if _SUFFIXED.fullmatch(text):
        return " (suffixes like k or M are not read: write the full number)"
    return ""
