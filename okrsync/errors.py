"""The one error hierarchy of okr-sync.

    OkrSyncError                 base; its message is safe to show a user (never a secret)
    ├── ConfigError              the admin's YAML is wrong; carries every ConfigIssue found
    ├── SourceError              one key result (or a whole source batch) could not be measured
    │   └── RetriableSourceError a passing fault (429, 5xx, timeout): worth trying again
    └── StoreError               the OKR store could not be read or written

Connectors map their API's failures onto SourceError / RetriableSourceError in one place,
so the flow and the CLI never see HTTP details.
"""
from __future__ import annotations

from dataclasses import dataclass


class OkrSyncError(Exception):
    """Base class; str(error) is a one-line message fit for a user."""


@dataclass(frozen=True)
class ConfigIssue:
    """One mistake in a config file: where it is, which key result, what to do."""

    file: str
    line: int | None
    kr_id: str | None
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        who = f" {self.kr_id}:" if self.kr_id else ""
        return f"{where}:{who} {self.message}"


class ConfigError(OkrSyncError):
    """The config is invalid. `issues` holds every mistake found, not just the first."""

    def __init__(self, issues: list[ConfigIssue]):
        self.issues = list(issues)
        super().__init__("\n".join(str(i) for i in self.issues))


class SourceError(OkrSyncError):
    """A metric could not be measured; the message says why and what to fix.

    `calls` is the API calls spent on the way, for a connector to report when no key result
    of its batch succeeded (the run's call count then still adds up).
    """

    calls: int = 0


class RetriableSourceError(SourceError):
    """A transient failure (rate limit, 5xx, timeout). `retry_after` is seconds, if known."""

    def __init__(self, message: str, retry_after: float | None = None):
        super().__init__(message)
        self.retry_after = retry_after


class StoreError(OkrSyncError):
    """The OKR store could not be read or written; nothing of the run was committed."""
