"""Redaction by construction: every secret okr-sync reads is registered here, and every text that
leaves okr-sync passes `scrub`.

    register(token)                      # SecretRef.reveal does this for every secret it reads
    register_derived(f"Basic {b64}")     # a form built from secrets (an Authorization header)
    scrub("... Bearer s3cr3t ...")       # -> "... Bearer *** ..."
    scrub_data(run_summary)              # every string in dicts, lists and tuples
    server_text(body_message, 300)       # a server's message for an error: scrubbed, one line, capped

A server (or a proxy) may echo the request's Authorization header in an error body; a URL may
carry a password. Registering at the moment a secret is read, rather than remembering to hide it
at each place it could show up, means a new output channel cannot forget it: log records are
scrubbed as they are created (a logging record factory, installed with the first secret), and the
engine scrubs the run summary that feeds the CLI, JSON, artifacts, the store's alert rows and
webhook payloads.

Forms registered for a value: as is, URL-encoded, JSON-escaped, base64 (some servers echo a Basic
header decoded or re-encoded). Values shorter than MIN_LENGTH are not registered (scrubbing "1"
would mangle every number); a real token is far longer.
"""
from __future__ import annotations

import base64
import json
import logging
import threading
from typing import Any
from urllib.parse import quote

MIN_LENGTH = 6
MASK = "***"
_SECRET_WORDS = ("key", "secret", "token", "password")

_lock = threading.Lock()
_secrets: set[str] = set()
_ordered: tuple[str, ...] = ()          # longest first, so a secret inside a longer one goes with it
_factory_installed = False


def _forms(value: str) -> set[str]:
    forms = {value, quote(value, safe=""), json.dumps(value)[1:-1]}
    try:
        forms.add(base64.b64encode(value.encode("utf-8")).decode("ascii"))
    except UnicodeEncodeError:  # pragma: no cover - str.encode("utf-8") handles any str
        pass
    return {f for f in forms if len(f) >= MIN_LENGTH}


def register(value: str | None) -> None:
    """Remember a secret value (and its encoded forms) so no output shows it."""
    if not value or len(value) < MIN_LENGTH:
        return
    found = _forms(value)
    if value.lstrip().startswith("{"):          # a JSON secret (a service-account key): its secret fields too
        try:
            document = json.loads(value)
        except ValueError:
            document = None
        if isinstance(document, dict):
            for name, item in document.items():
                if isinstance(item, str) and len(item) >= 12 and _secret_field(str(name)):
                    found |= _forms(item)
    _add(found)


def _secret_field(name: str) -> bool:
    """Whether a JSON secret's field holds a secret (private_key, private_key_id, client_secret, refresh_token),
    not a public setting every message may name (type, client_email, token_uri, universe_domain: googleapis.com)."""
    name = name.lower()
    return any(word in name for word in _SECRET_WORDS) and not name.endswith(("_uri", "_url"))


def register_derived(value: str | None) -> None:
    """Remember a value built from secrets, e.g. the Basic credentials of an Authorization header."""
    register(value)


def _add(found: set[str]) -> None:
    global _ordered
    with _lock:
        if found <= _secrets:
            return
        _secrets.update(found)
        _ordered = tuple(sorted(_secrets, key=len, reverse=True))
    _install_record_factory()


def scrub(text: str) -> str:
    """`text` with every registered secret replaced by ***."""
    if not _ordered or not isinstance(text, str):
        return text
    for secret in _ordered:
        if secret in text:
            text = text.replace(secret, MASK)
    return text


def server_text(text: Any, limit: int = 300) -> str:
    """A server's own words fit to quote in an error: secrets scrubbed first (so a cut cannot leave a
    piece of one behind), squeezed onto one line, at most `limit` characters."""
    flat = " ".join(scrub(str(text)).split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def scrub_data(value: Any) -> Any:
    """A copy of `value` with every string scrubbed (dicts, lists and tuples walked)."""
    if not _ordered:
        return value
    if isinstance(value, str):
        return scrub(value)
    if isinstance(value, dict):
        return {k: scrub_data(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(scrub_data(v) for v in value)
    return value


def _install_record_factory() -> None:
    """Scrub every log record as it is made, whichever logger or library makes it."""
    global _factory_installed
    with _lock:
        if _factory_installed:
            return
        _factory_installed = True
        make = logging.getLogRecordFactory()

    def scrubbed_record(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = make(*args, **kwargs)
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a malformed record is logging's business, not ours
            return record
        clean = scrub(message)
        if clean != message:
            record.msg, record.args = clean, ()
        if record.exc_info and record.exc_info[0] is not None:   # a traceback may quote a server's answer
            text = logging.Formatter().formatException(record.exc_info)
            record.exc_text = scrub(text)
        return record

    logging.setLogRecordFactory(scrubbed_record)


def forget_all() -> None:
    """Tests only: start from an empty register."""
    global _ordered
    with _lock:
        _secrets.clear()
        _ordered = ()


__all__ = ["register", "register_derived", "scrub", "scrub_data", "server_text", "MASK", "forget_all"]
