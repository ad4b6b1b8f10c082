"""Reading numbers out of an API's JSON answer, the same way for every connector.

    count(body.get("total"))      # a whole number 0..MAX_COUNT, else BadNumber saying what it is
    number(fields.get("x"))       # a finite float, None for no number, BadNumber for NaN/Infinity/10^400

A server (or a proxy, or a bug) can answer a negative count, a count as text, 10^400, or NaN
and Infinity (Python's json reads them); none of them may become a key result's value. The
caller turns BadNumber into its own one-line, per-key-result error.
"""
from __future__ import annotations

import math
from typing import Any

MAX_COUNT = 10**12               # far above any real count of issues or pull requests
_SHOWN = 40                      # characters of a bad value quoted in a message


class BadNumber(ValueError):
    """An answer's number that cannot be used; str() says what it is, e.g. "a negative count (-3)"."""


def shown(value: Any) -> str:
    """A bad value as messages quote it: short, one line."""
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 10**_SHOWN:
        return f"a {len(str(abs(value)))}-digit number"
    text = " ".join(repr(value).split())
    return text if len(text) <= _SHOWN else text[: _SHOWN - 1] + "…"


def count(value: Any) -> int:
    """`value` as a count of items; BadNumber unless it is a whole number from 0 to MAX_COUNT."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise BadNumber(f"a count that is not a whole number ({shown(value)})")
    if value < 0:
        raise BadNumber(f"a negative count ({shown(value)})")
    if value > MAX_COUNT:
        raise BadNumber(f"a count too large to be real ({shown(value)})")
    return value


def number(value: Any) -> float | None:
    """`value` as a finite float; None if it is no number at all; BadNumber if it is NaN, infinite or too large."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        result = float(value)
    except OverflowError:
        raise BadNumber(f"a number too large to be real ({shown(value)})") from None
    if not math.isfinite(result):
        raise BadNumber(f"a number that is not finite ({shown(value)})")
    return result


__all__ = ["MAX_COUNT", "BadNumber", "count", "number", "shown"]
