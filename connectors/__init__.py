"""Connectors: one module per external system, each knowing only that system's API.

A *source* connector module defines:

    TYPE = "spreadsheet"                       # the `type:` of a source in the config
    class SourceConfig(pydantic.BaseModel)     # the source's settings; `type: Literal[TYPE]`
    class Metric(pydantic.BaseModel)           # what a key result's `metric:` may say
    def measure(source, requests) -> dict[kr_id, Measurement | SourceError]
    def check_source(source) -> list[str]      # optional: problems found at validation, no network

Register it below. Store connectors (sql_store) speak okrsync.records types.
"""
from __future__ import annotations

import importlib
import importlib.util
from types import ModuleType

SOURCE_CONNECTORS: dict[str, str] = {
    "spreadsheet": "connectors.spreadsheet",
    "jira": "connectors.jira",
    "github": "connectors.github",
    "google_sheets": "connectors.google_sheets",
}


def source_types() -> list[str]:
    """The source types whose connector module is present."""
    return sorted(t for t, module in SOURCE_CONNECTORS.items() if importlib.util.find_spec(module) is not None)


def connector_for(source_type: str) -> ModuleType:
    """The connector module for a source type; KeyError if there is none."""
    if source_type not in source_types():
        raise KeyError(source_type)
    return importlib.import_module(SOURCE_CONNECTORS[source_type])
