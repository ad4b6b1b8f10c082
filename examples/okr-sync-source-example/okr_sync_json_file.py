"""An okr-sync source reading a number at a dotted key of a local JSON file (e.g. a CI report).

    sources:
      ci: {type: json_file, path: reports/coverage.json}      # relative to the config file
    ...
        metric: {key: totals.percent_covered}

One read of the file answers every key result of the source.
"""
from __future__ import annotations

import json
from typing import Any, Literal, Sequence

from pydantic import BaseModel, ConfigDict, Field

from okrsync.contract import LocalClient
from okrsync.errors import SourceError
from okrsync.measure import Measurement, MetricRequest
from okrsync.refs import ConfigPath

TYPE = "json_file"


class SourceConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: Literal[TYPE]
    path: ConfigPath = Field(description="The JSON file, relative to the config file")


class Metric(BaseModel):
    model_config = ConfigDict(extra="forbid")
    key: str = Field(pattern=r"^[^.\s]+(\.[^.\s]+)*$", description="Dotted key of the number, e.g. totals.lines")


def check(source: SourceConfig, metrics: Sequence[Metric]) -> list[str]:
    """Problems found without reading the file: it is not there."""
    return [] if source.path.is_file() else [f"file not found: {source.path}: check `path:`"]


def connect(source: SourceConfig) -> LocalClient:
    if problems := check(source, []):
        raise SourceError(problems[0])
    return LocalClient()


def answer(client: LocalClient, source: SourceConfig, requests: Sequence[MetricRequest]
           ) -> dict[str, Measurement | SourceError]:
    try:
        data = json.loads(source.path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise SourceError(f"cannot read {source.path} as JSON ({exc.__class__.__name__}): fix the file") from None
    client.calls += 1
    link = source.path.resolve().as_uri()
    return {r.kr_id: _number_at(data, r.metric.key, link) for r in requests}


def _number_at(data: Any, key: str, link: str) -> Measurement | SourceError:
    value = data
    for part in key.split("."):
        if not isinstance(value, dict) or part not in value:
            return SourceError(f"no `{part}` on the way to `{key}` in the file: check `key:`")
        value = value[part]
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return SourceError(f"`{key}` is a {type(value).__name__}, not a number: point `key:` at a number")
    return Measurement(value=float(value), link=link, query=key)
