"""Connectors: one module per external system, each knowing only that system's API.

A *source* connector module defines:

    TYPE = "spreadsheet"                       # the `type:` of a source in the config
    class SourceConfig(pydantic.BaseModel)     # the source's settings; `type: Literal[TYPE]`
    class Metric(pydantic.BaseModel)           # what a key result's `metric:` may say
    def measure(source, requests) -> dict[kr_id, Measurement | SourceError]

Register it below. Store connectors (sql_store) speak okrsync.records types.
"""
from __future__ import annotations

import importlib
from types import ModuleType

SOURCE_CONNECTORS: dict[str, str] = {
    "spreadsheet": "connectors.spreadsheet",
}


def source_types() -> list[str]:
    return sorted(SOURCE_CONNECTORS)


def connector_for(source_type: str) -> ModuleType:
    """The connector module for a source type; KeyError if there is none."""
    return importlib.import_module(SOURCE_CONNECTORS[source_type])
