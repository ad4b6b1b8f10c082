"""Database failures as one line a person can act on: the driver's first line, no SQL, no password,
and a hint on what to check."""
from __future__ import annotations

from sqlalchemy import exc as sa_exc

def one_line(exc: BaseException, password: str | None) -> str:
    """The first line of an error's message, without the driver's SQL dump or a password."""
    orig = getattr(exc, "orig", None) or exc
    lines = [ln.strip() for ln in str(orig).splitlines() if ln.strip()]
    line = lines[0] if lines else type(orig).__name__
    if password:
        line = line.replace(password, "***")
    return line


_HINTS: list[tuple[tuple[str, ...], str]] = [
    (("readonly", "read-only", "read only"),
     "the store is read-only: check the file's permissions and the URL (mode=ro)"),
    (("database is locked", "lock timeout"),
     ("another process held the store past the busy timeout: wait for the other sync to "
      "finish, or raise ?timeout= in the URL")),
    (("unable to open database file",),
     "check that the store file's directory exists and is writable"),
    (("disk is full", "no space left", "disk full"), "free some disk space"),
    (("no such table", 'relation "okr_'),
     "the store has no okr-sync tables yet: run a sync first (or check the URL)"),
    (("does not exist",), "check the URL's database name and user"),
    (("connection refused", "could not connect", "connection to server", "timeout expired"),
     "check that the database server is running and the URL's host, port and user"),
    (("constraint", "violates", "foreign key"),
     ("a record broke a rule of the store (unknown key result or objective, bad kind or "
      "on_manual, duplicate run id)")),
]


def explain(exc: sa_exc.SQLAlchemyError, password: str | None) -> tuple[str, str | None]:
    """A one-line reason and a hint on what to check."""
    reason = one_line(exc, password)
    lowered = reason.lower()
    for needles, hint in _HINTS:
        if any(n in lowered for n in needles):
            return reason, hint
    return reason, None


__all__ = ["one_line", "explain"]
