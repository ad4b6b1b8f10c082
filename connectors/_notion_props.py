"""Notion property values as the Notion target reads and writes them (API version 2025-09-03 shapes).

A data source's schema maps each property name to {"id", "name", "type", <type>: {...}}; a page's
`properties` map each name to a value {"id", "type", <type>: value}. Reading is lenient about a value
(an empty cell, an unexpected shape: no value); the schema check is strict, before anything is written.

    problems(schema, wanted, where, setting)   a line per missing property or wrong type, with the fix
    number_of / text_of / choice_of / date_of / url_of(value)     a page's value, or None
    number / choice / date / url / text(...)                       the value to send for a property
"""
from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

from connectors import _answers

# what each role of the config may be, and how Notion's property menu names those types
TYPES: dict[str, tuple[str, ...]] = {
    "match": ("rich_text", "title"), "kr": ("rich_text", "title"), "value": ("number",), "progress": ("number",),
    "status": ("select", "status"), "updated": ("date",), "date": ("date",), "link": ("url",),
}
SHOWN = {"number": "Number", "select": "Select", "status": "Status", "date": "Date", "url": "URL", "title": "Title",
         "rich_text": "Text"}
STATUS_OPTIONS = {"on_track": "On track", "at_risk": "At risk", "off_track": "Off track", "done": "Done"}
MAX_TEXT = 2000                # characters of one rich-text item or a URL (Notion's size limits)


def _needs(types: tuple[str, ...]) -> str:
    return " or ".join(SHOWN[t] for t in types)


def problems(schema: dict[str, Any], wanted: dict[str, str], where: str, setting: str) -> list[str]:
    """What keeps `wanted` (role -> property name) from being read and written in a data source whose
    schema is `schema`: one line for every missing property, one per property of the wrong type."""
    lines = []
    missing = [(role, name) for role, name in wanted.items() if name not in schema]
    if missing:
        names = ", ".join(f'"{name}" ({_needs(TYPES[role])})' for role, name in missing)
        optional = [role for role, _ in missing if role not in ("match", "kr", "value", "date")]
        leave = (f", or leave {'it' if len(optional) == 1 else 'them'} out with `{setting}: "
                 f"{{{', '.join(f'{r}: null' for r in optional)}}}`" if optional else "")
        close = _close(missing, schema)
        lines.append(f"{where} has no propert{'y' if len(missing) == 1 else 'ies'} {names}: add "
                     f"{'it' if len(missing) == 1 else 'them'} in Notion{leave}{close}")
    for role, name in wanted.items():
        prop = schema.get(name)
        if prop is None:
            continue
        kind = prop.get("type") if isinstance(prop, dict) else None
        if kind not in TYPES[role]:
            lines.append(f'{where}: property "{name}" is of type {SHOWN.get(str(kind), kind)}, okr-sync needs '
                         f"{_needs(TYPES[role])}: change its type in Notion, or name another property in `{setting}`")
    return lines


def _close(missing: list[tuple[str, str]], schema: dict[str, Any]) -> str:
    """A hint when a missing name differs from an existing one only in case or spacing."""
    squeezed = {"".join(n.split()).lower(): n for n in schema}
    near = [(name, squeezed["".join(name.split()).lower()]) for _, name in missing
            if "".join(name.split()).lower() in squeezed]
    return "".join(f' (did you mean "{have}"?)' for _, have in near[:3])


def options(prop: dict[str, Any]) -> list[str]:
    """The option names of a select or status property's schema."""
    body = prop.get(prop.get("type") or "", {}) if isinstance(prop, dict) else {}
    found = body.get("options") if isinstance(body, dict) else None
    return [str(o["name"]) for o in found or [] if isinstance(o, dict) and o.get("name")]


def option_for(prop: dict[str, Any], status: str) -> str | None:
    """The option of a select or status property that shows okr-sync's `status` (case-insensitive)."""
    label = STATUS_OPTIONS.get(status, status).lower()
    return next((o for o in options(prop) if o.strip().lower() == label), None)


def missing_options(prop: dict[str, Any]) -> list[str]:
    return [label for status, label in STATUS_OPTIONS.items() if option_for(prop, status) is None]

# ---------------------------------------------------------------------------- reading a page's values


def _body(value: Any, kinds: tuple[str, ...]) -> Any:
    if not isinstance(value, dict) or value.get("type") not in kinds:
        return None
    return value.get(value["type"])


def number_of(value: Any) -> float | None:
    try:
        return _answers.number(_body(value, ("number",)))
    except _answers.BadNumber:
        return None


def text_of(value: Any) -> str | None:
    """The plain text of a title or rich-text value (or a select's option), stripped; None if empty."""
    body = _body(value, ("title", "rich_text", "select"))
    if isinstance(body, dict):
        text = body.get("name")
    elif isinstance(body, list):
        text = "".join(str(item.get("plain_text") or (item.get("text") or {}).get("content") or "")
                       for item in body if isinstance(item, dict))
    else:
        text = None
    return text.strip() or None if isinstance(text, str) else None


def choice_of(value: Any) -> str | None:
    body = _body(value, ("select", "status"))
    return str(body["name"]) if isinstance(body, dict) and body.get("name") else None


def parse_time(text: Any) -> datetime | None:
    """An ISO 8601 date or date-time as Notion writes them, as an aware datetime (a bare date: midnight UTC)."""
    if not isinstance(text, str) or not text:
        return None
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def date_of(value: Any) -> datetime | None:
    body = _body(value, ("date",))
    return parse_time(body.get("start")) if isinstance(body, dict) else None


def url_of(value: Any) -> str | None:
    body = _body(value, ("url",))
    return body if isinstance(body, str) and body else None


def minute(moment: datetime) -> datetime:
    """A moment to the minute, in UTC: how a check-in's time is compared with the one Notion shows."""
    aware = moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)
    return aware.astimezone(timezone.utc).replace(second=0, microsecond=0)


def edited_by_then(page: dict[str, Any]) -> datetime | None:
    """The latest moment a row's last edit can have been: Notion rounds `last_edited_time` down to the
    minute, so an edit shown as 12:00 happened before 12:01."""
    shown = parse_time(page.get("last_edited_time"))
    return None if shown is None else shown + timedelta(minutes=1)

# ---------------------------------------------------------------------------- values to send


def number(value: float | None) -> dict[str, Any]:
    return {"number": value}


def choice(kind: str, name: str) -> dict[str, Any]:
    return {kind: {"name": name}}


def date(moment: datetime) -> dict[str, Any]:
    aware = moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)
    return {"date": {"start": aware.astimezone(timezone.utc).isoformat(timespec="seconds")}}


def url(link: str) -> dict[str, Any]:
    return {"url": link}


def text(kind: str, content: str) -> dict[str, Any]:
    return {kind: [{"type": "text", "text": {"content": content[:MAX_TEXT]}}]}


def title_property(schema: dict[str, Any]) -> str | None:
    """The name of a data source's title property (every data source has exactly one)."""
    return next((name for name, prop in schema.items() if isinstance(prop, dict) and prop.get("type") == "title"), None)


__all__ = ["MAX_TEXT", "STATUS_OPTIONS", "TYPES", "choice", "choice_of", "date", "date_of", "edited_by_then",
           "minute", "missing_options", "number", "number_of", "option_for", "options", "parse_time", "problems",
           "text", "text_of", "title_property", "url", "url_of"]
