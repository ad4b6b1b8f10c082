"""Settings shared by the Google Sheets source and the Google Sheets publish target: which spreadsheet
(a pasted URL or a bare id), which endpoint, and the service-account key (a file, "${ENV}" or
{secret: NAME}), read at connect time and named in messages by where it came from, never by its content.
"""
from __future__ import annotations

import ast
import json
import os
import re
from pathlib import Path
from typing import Annotated, Any

from pydantic import AfterValidator

from okrsync.errors import SourceError
from okrsync.refs import SecretRef

KEY_FIELDS = ("client_email", "private_key", "token_uri")

_SHEET_URL = re.compile(r"/spreadsheets/(?:u/\d+/)?d/(?P<id>[A-Za-z0-9_-]{10,})")
_BARE_ID = re.compile(r"[A-Za-z0-9_-]{20,}")
_GID = re.compile(r"[#?&]gid=(\d+)")
_ENV_REF = re.compile(r"^\$\{[A-Za-z_][A-Za-z0-9_]*\}$")

# ---------------------------------------------------------------------------- settings


def parse_spreadsheet(text: str) -> tuple[str, int | None]:
    """(spreadsheet id, gid or None) from a pasted URL or a bare id; ValueError says what to paste instead."""
    text = text.strip()
    if _BARE_ID.fullmatch(text):
        return text, None
    if "/spreadsheets/d/e/" in text:
        raise ValueError("this is a \"Publish to the web\" link, which the API cannot read: paste the URL from the "
                         "address bar while the sheet is open (https://docs.google.com/spreadsheets/d/<id>/edit)")
    match = _SHEET_URL.search(text)
    if match is None:
        raise ValueError(f"{text!r} is not a Google Sheets URL or id: paste the URL from the address bar while the "
                         "sheet is open, like https://docs.google.com/spreadsheets/d/<id>/edit#gid=0")
    gid = _GID.search(text)
    return match["id"], int(gid[1]) if gid else None


def _spreadsheet_ref(text: str) -> str:
    parse_spreadsheet(text)             # ValueError: what to paste instead
    return text.strip()


# `spreadsheet:` as the source and the publish target take it: a pasted URL or a bare id, checked, stripped
SpreadsheetRef = Annotated[str, AfterValidator(_spreadsheet_ref)]


def http_base(value: str) -> str:
    """An http(s) endpoint without its trailing slash (`api_base:`); ValueError otherwise."""
    if not re.match(r"^https?://[^/\s]+", value):
        raise ValueError(f"{value!r} is not an http(s) URL")
    return value.rstrip("/")


def key_reference(value: Any) -> Any:
    """`service_account:` as written: a pasted key is refused; "${ENV}" and {secret: NAME} become SecretRefs;
    anything else is left for the path type."""
    if isinstance(value, dict) and "private_key" in value or isinstance(value, str) and "PRIVATE KEY" in value:
        raise ValueError("do not paste the key into the config: save the JSON key as a file and give its path, "
                         "or put it in an environment variable and write \"${VARIABLE}\", or {secret: NAME}")
    if isinstance(value, str) and _ENV_REF.match(value.strip()) or isinstance(value, dict):
        return SecretRef.model_validate(value)
    return value

# ---------------------------------------------------------------------------- the key, read at connect time


def _parse_key(text: str, label: str) -> dict[str, Any]:
    """The key's JSON as a dict; SourceError (naming `label`, never the content) if it is not a service-account key."""
    try:
        info = json.loads(text)
    except ValueError:
        try:          # a Prefect Secret block holding JSON reaches us as the Python repr of a dict
            info = ast.literal_eval(text)
        except (ValueError, SyntaxError, MemoryError, RecursionError):
            raise SourceError(f"{label} is not valid JSON: download the service account's JSON key again") from None
    if not isinstance(info, dict):
        raise SourceError(f"{label} is not a JSON object: download the service account's JSON key again")
    missing = [name for name in KEY_FIELDS if not info.get(name)]
    if info.get("type") != "service_account" or missing:
        what = f"it has no {', '.join(missing)}" if missing else f"its type is {str(info.get('type'))[:40]!r}"
        raise SourceError(f"{label} is not a service-account key ({what}): create one in the Google Cloud console "
                          "(IAM & Admin > Service accounts > Keys > Add key > JSON)")
    return info


def _read_key_file(path: Path, label: str) -> dict[str, Any]:
    if not path.exists():
        raise SourceError(f"{label} not found: check `service_account:` (relative paths are relative to the "
                          "config file)")
    if not path.is_file():
        raise SourceError(f"{label} is a folder, not a file: check `service_account:`")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise SourceError(f"cannot read {label}: {getattr(exc, 'strerror', None) or type(exc).__name__}") from None
    return _parse_key(text, label)


def key_info(key: Path | SecretRef) -> tuple[dict[str, Any], str]:
    """The service-account key's JSON and a label for messages (where it came from, never its content)."""
    if isinstance(key, Path):
        label = f"service account key file {key}"
        return _read_key_file(key, label), label
    text = key.reveal().get_secret_value().strip()
    if text.startswith("{"):
        label = f"the service account key in {key.describe()}"
        return _parse_key(text, label), label
    path = Path(os.path.expanduser(text))          # the variable holds a key file's path
    label = f"service account key file {path} (from {key.describe()})"
    return _read_key_file(path, label), label


__all__ = ["KEY_FIELDS", "http_base", "key_info", "key_reference", "parse_spreadsheet"]
