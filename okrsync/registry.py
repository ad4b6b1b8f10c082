"""Which source connectors exist: looked up by type through the entry-point group `okr_sync.sources`.

okr-sync's own connectors register there in its pyproject.toml, exactly as a third-party
package would:

    [project.entry-points."okr_sync.sources"]
    jira = "connectors.jira"                    # a module (or object) meeting okrsync.contract

The core never imports `connectors`: the config loader and the engine ask a Registry, which
loads a connector the first time its type is used. Tests and embedders may pass their own.
"""
from __future__ import annotations

from functools import lru_cache
from importlib import metadata
from typing import Any, Callable, Mapping

from okrsync.contract import contract_problems

ENTRY_POINT_GROUP = "okr_sync.sources"


class ConnectorUnusable(Exception):
    """A registered connector could not be loaded or does not meet the contract."""


class Registry:
    """Source connectors by type. Values are connectors, or zero-argument loaders of one."""

    def __init__(self, connectors: Mapping[str, Any], kind: str = "source",
                 problems: Callable[[Any], list[str]] = contract_problems):
        self._entries = dict(connectors)
        self._loaded: dict[str, Any] = {}
        self.kind = kind                  # "source" or "publish target", for messages
        self._problems = problems

    def types(self) -> list[str]:
        return sorted(self._entries)

    def __contains__(self, source_type: object) -> bool:
        return source_type in self._entries

    def get(self, source_type: str) -> Any:
        """The connector for a type; KeyError if none is registered, ConnectorUnusable if broken."""
        if source_type in self._loaded:
            return self._loaded[source_type]
        entry = self._entries[source_type]
        try:
            connector = entry.load() if _is_entry_point(entry) else entry
        except Exception as exc:  # noqa: BLE001 - a broken plug-in is reported, never a traceback
            raise ConnectorUnusable(f"the connector for {self.kind} type `{source_type}` could not be loaded "
                                    f"({exc.__class__.__name__}: {exc}): reinstall the package that provides it") from None
        problems = self._problems(connector)
        if problems:
            raise ConnectorUnusable(f"the connector for {self.kind} type `{source_type}` {'; '.join(problems)}")
        self._loaded[source_type] = connector
        return connector


def _is_entry_point(entry: Any) -> bool:
    """An entry point to load, whichever importlib.metadata made it: once the `importlib_metadata`
    backport is imported (pygal does), the standard library's entry_points() hands out its class."""
    return isinstance(entry, metadata.EntryPoint) or (
        type(entry).__name__ == "EntryPoint" and all(hasattr(entry, a) for a in ("load", "group", "value")))


@lru_cache(maxsize=1)
def default_registry() -> Registry:
    """Every connector installed under the `okr_sync.sources` entry-point group."""
    found = {ep.name: ep for ep in metadata.entry_points(group=ENTRY_POINT_GROUP)}
    return Registry(found)


@lru_cache(maxsize=1)
def default_targets() -> Registry:
    """Every publish target installed under the `okr_sync.targets` entry-point group."""
    from okrsync import publish

    found = {ep.name: ep for ep in metadata.entry_points(group=publish.ENTRY_POINT_GROUP)}
    return Registry(found, kind="publish target", problems=publish.contract_problems)


__all__ = ["ENTRY_POINT_GROUP", "Registry", "ConnectorUnusable", "default_registry", "default_targets"]
