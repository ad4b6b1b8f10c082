"""Connectors: one module per external system, each knowing only that system's API.

Source connectors (spreadsheet, jira, github, google_sheets) meet the contract of
okrsync.contract (`TYPE`, `SourceConfig`, `Metric`, `check`, `connect`, `answer`), are driven
through its `run_batch`, and are found by type through the entry-point group
`okr_sync.sources` (okrsync.registry), exactly like a third-party source (docs/own-source.md).
Store connectors (sql_store) speak okrsync.records types.
"""
from __future__ import annotations

from typing import Any

from okrsync.registry import default_registry


def source_types() -> list[str]:
    """The registered source types (a thin delegate to okrsync.registry)."""
    return default_registry().types()


def connector_for(source_type: str) -> Any:
    """The connector for a source type; KeyError if none is registered (okrsync.registry.Registry.get)."""
    return default_registry().get(source_type)
