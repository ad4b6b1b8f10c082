"""Plain data passed between the engine and the source connectors.

A source connector (okrsync.contract) answers a batch of MetricRequests, one per key result of
the source, with one entry per request (keyed by `kr_id`): a Measurement or the SourceError
explaining why that key result could not be measured. One bad key result never stops the
others. Identical queries within the batch should be asked once.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from typing import Any


@dataclass(frozen=True)
class Period:
    """An inclusive range of dates, e.g. 2026-10-01 .. 2026-12-31 for 2026-Q4."""

    start: date
    end: date
    label: str = ""

    def __str__(self) -> str:
        return self.label or f"{self.start}..{self.end}"


@dataclass(frozen=True)
class MetricRequest:
    """What one key result asks of its source.

    `metric` is the key result's validated metric model (the connector's own Metric class),
    with `{period.start}`, `{period.end}` and `{as_of}` already substituted in its strings.
    """

    kr_id: str
    metric: Any
    period: Period
    as_of: date


@dataclass(frozen=True)
class Measurement:
    """One observed value of a key result's metric, with where it came from."""

    value: float
    link: str | None = None          # a URL/path a person can open to see what is behind the number
    query: str | None = None         # the query or cell reference, as asked
    observed_at: datetime = field(default_factory=lambda: datetime.now(timezone.utc))
    calls: int = 0                   # API calls / file reads this measurement cost (shared ones counted once)
    note: str | None = None          # e.g. "statistic over the first 1,000 results only"
    evidence: tuple[dict[str, str], ...] | None = None
    # the tickets behind a count, from the same answer where the API allows it: up to the metric's
    # `evidence: N`, each {"key": "PAY-12", "title": "..."} (GitHub: {"key": "acme/app#12", ...});
    # None when the metric keeps none (not a count, or `evidence: false`)
