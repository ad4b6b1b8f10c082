"""Charging a batch's API calls when none of its key results could be measured.

A run's call count is the sum of `calls` over what the connectors return (okrsync.measure):
Measurements carry theirs; when a whole batch failed, the calls it spent ride on one SourceError
(okrsync.errors.SourceError.calls), a copy of its own, since one error instance is often shared
by every key result it failed.
"""
from __future__ import annotations

from okrsync.errors import RetriableSourceError, SourceError
from okrsync.measure import Measurement


def charge_failed_batch(results: dict[str, Measurement | SourceError], order: list[str], calls: int) -> None:
    """If no key result in `results` was measured, give `calls` to the first failed one (in `order`)."""
    if calls <= 0 or any(isinstance(r, Measurement) for r in results.values()):
        return
    first = next((k for k in order if isinstance(results.get(k), SourceError)), None)
    if first is None:
        return
    error = results[first]
    charged = (RetriableSourceError(str(error), error.retry_after) if isinstance(error, RetriableSourceError)
               else SourceError(str(error)))
    charged.calls = calls
    results[first] = charged


__all__ = ["charge_failed_batch"]
