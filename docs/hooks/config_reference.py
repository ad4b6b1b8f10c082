"""MkDocs hook: the config reference page, generated at every build from `okr-sync schema`.

The page (`reference/config.md`) is never written to the repository, so it cannot drift from the
pydantic models: each build renders the JSON Schema that `okr-sync schema` prints
(okrsync.config.json_schema) into one section per object: the file's top level, objectives, key
results, each source `type:` with its settings and its `metric:`, then the smaller objects
(thresholds, schedule, notify, secret references); publish targets, when installed, after the
sources. Every key of every object is a row.

    python docs/hooks/config_reference.py > /tmp/config.md    # the page, without MkDocs
"""
from __future__ import annotations

import json
import re
from typing import Any

PAGE = "reference/config.md"
_TOP = "#top"

HEADER = """\
# Config reference

Every key a config file may hold, generated from `okr-sync schema` when these docs are built, so it
is always the schema of this version. What the keys mean together: [Config](../config.md), the
sources' pages and [Schedules, alerts and staleness](../schedules-alerts.md). For completion in an
editor, point it at the schema: `okr-sync schema > okr-sync.schema.json`.

A key marked **required** must be given; the others may be left out (the default applies). No
other keys are allowed: a misspelt key is an error naming the closest one.
"""


def on_files(files: Any, config: Any) -> Any:
    """Add the generated page to the site (MkDocs >= 1.6 `File.generated`)."""
    from mkdocs.structure.files import File

    from okrsync.config import json_schema

    files.append(File.generated(config, PAGE, content=render(json_schema())))
    return files


# ------------------------------------------------------------------------------------ rendering


def render(schema: dict[str, Any]) -> str:
    """The markdown page for a config JSON Schema (as `okr-sync schema` prints it)."""
    defs: dict[str, Any] = schema.get("$defs", {})
    names = _section_names(defs)
    out = [HEADER]
    out += _section("The file", "top", schema, names,
                    "The top level of a config file. Several files may be given at once; ids are "
                    "unique across all of them.")
    ordered = _ordered(defs, names)
    for def_name in ordered:
        title, anchor = names[def_name]
        out += _section(title, anchor, defs[def_name], names, defs[def_name].get("description"))
    return "\n".join(out).rstrip() + "\n"


def _section_names(defs: dict[str, Any]) -> dict[str, tuple[str, str]]:
    """Each definition's section title and anchor: sources by their `type:`, the rest by role."""
    named: dict[str, tuple[str, str]] = {}
    source_types = {}
    for name, d in defs.items():
        type_const = d.get("properties", {}).get("type", {}).get("const")
        if name.endswith("SourceConfig") and type_const:
            source_types[name.removesuffix("SourceConfig")] = type_const
            named[name] = (f"Source `type: {type_const}`", f"source-{_slug(type_const)}")
        elif name.endswith("TargetConfig") and type_const:
            named[name] = (f"Publish target `type: {type_const}`", f"target-{_slug(type_const)}")
    for name in defs:
        if name in named:
            continue
        prefix = name.removesuffix("Metric")
        if name.endswith("Metric") and prefix in source_types:
            named[name] = (f"Metric of a `{source_types[prefix]}` source",
                           f"metric-{_slug(source_types[prefix])}")
        else:
            title = {"Objective": "`objectives:` (each objective)", "KeyResult": "`key_results:` (each key result)",
                     "ThresholdsConfig": "`thresholds:`", "ScheduleConfig": "`schedule:`",
                     "NotifyConfig": "`notify:`", "SecretRef": "Secret references"}.get(name, f"`{name}`")
            named[name] = (title, _slug(name))
    return named


def _ordered(defs: dict[str, Any], names: dict[str, tuple[str, str]]) -> list[str]:
    """Objectives and key results first, then each source with its metric, then the rest."""
    first = [n for n in ("Objective", "KeyResult") if n in defs]
    sources: list[str] = []
    for name in sorted(defs, key=lambda n: names[n][1]):
        if name.endswith("SourceConfig") and names[name][1].startswith("source-"):
            sources.append(name)
            metric = name.removesuffix("SourceConfig") + "Metric"
            if metric in defs:
                sources.append(metric)
    targets = sorted((n for n in defs if names[n][1].startswith("target-")), key=lambda n: names[n][1])
    rest = [n for n in defs if n not in first and n not in sources and n not in targets]
    return first + sources + targets + rest


def _section(title: str, anchor: str, d: dict[str, Any], names: dict[str, tuple[str, str]],
             description: str | None) -> list[str]:
    out = [f"## {title} {{#{anchor}}}", ""]
    if description:
        out += [_cell(description), ""]
    props = d.get("properties")
    if props:
        required = set(d.get("required", []))
        out += ["| key | type | | default | what it is |", "|---|---|---|---|---|"]
        for key, prop in props.items():
            out.append("| `{}` | {} | {} | {} | {} |".format(
                key, _type(prop, names), "**required**" if key in required else "",
                _default(prop, key in required), _cell(_description(prop))))
        out.append("")
    elif "anyOf" in d or "oneOf" in d:
        out += ["One of:", ""]
        for alt in d.get("anyOf") or d.get("oneOf"):
            text = _type(alt, names)
            if alt.get("properties"):
                keys = ", ".join(f"`{k}`" + (" (required)" if k in alt.get("required", []) else "")
                                 for k in alt["properties"])
                text = f"an object with {keys}"
            what = alt.get("description") or "; ".join(
                p.get("description", "") for p in alt.get("properties", {}).values())
            out.append(f"- {text}" + (f": {_cell(what)}" if what else ""))
        out.append("")
    return out


def _type(prop: dict[str, Any], names: dict[str, tuple[str, str]]) -> str:
    """A short, linked description of a property's type."""
    if "$ref" in prop:
        target = prop["$ref"].rsplit("/", 1)[-1]
        title, anchor = names.get(target, (target, _slug(target)))
        return f"[{_strip_code(title)}](#{anchor})"
    alternatives = prop.get("anyOf") or prop.get("oneOf")
    if alternatives:
        if "discriminator" in prop:
            return "one of: " + ", ".join(_type(a, names) for a in alternatives)
        shown = [_type(a, names) for a in alternatives if a.get("type") != "null"]
        return " or ".join(dict.fromkeys(shown))
    if "const" in prop:
        return f"`{json.dumps(prop['const'])}`"
    if "enum" in prop:
        return " \\| ".join(f"`{v}`" for v in prop["enum"])
    kind = prop.get("type")
    if kind == "array":
        return f"list of {_type(prop.get('items', {}), names)}" + _bounds(prop)
    if kind == "object":
        extra = prop.get("additionalProperties")
        if isinstance(extra, dict) and extra:
            return f"map of name → {_type(extra, names)}"
        return "mapping"
    text = {"string": "text", "number": "number", "integer": "integer", "boolean": "true \\| false"}.get(kind, "any")
    if prop.get("pattern"):
        text += f" matching `{prop['pattern']}`"
    return text + _bounds(prop)


def _bounds(prop: dict[str, Any]) -> str:
    parts = []
    for key, sign in (("exclusiveMinimum", ">"), ("minimum", "≥"), ("exclusiveMaximum", "<"), ("maximum", "≤")):
        if key in prop:
            parts.append(f"{sign} {prop[key]:g}")
    for key, word in (("minItems", "at least {} item(s)"), ("minLength", "at least {} character(s)"),
                      ("maxLength", "at most {} characters")):
        if key in prop:
            parts.append(word.format(prop[key]))
    return f" ({', '.join(parts)})" if parts else ""


def _default(prop: dict[str, Any], required: bool) -> str:
    if required or "default" not in prop or prop["default"] is None:
        return ""
    value = prop["default"]
    return f"`{value:g}`" if isinstance(value, float) else f"`{json.dumps(value) if not isinstance(value, str) else value}`"


def _description(prop: dict[str, Any]) -> str:
    """The property's description, then its alternatives' (e.g. the accepted forms of a period)."""
    texts = [prop.get("description")] + [alt.get("description") for alt in prop.get("anyOf") or prop.get("oneOf") or []]
    return ": ".join(dict.fromkeys(t for t in texts if t))


def _cell(text: str) -> str:
    """Text safe inside a markdown table cell (braces escaped: `{...}` at the end would be read as attributes)."""
    for char in "\\|{}":
        text = text.replace(char, "\\" + char)
    return text.replace("<", "&lt;").replace("\n", " ")


def _strip_code(title: str) -> str:
    return title.replace("`", "")


def _slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


if __name__ == "__main__":
    from okrsync.config import json_schema

    print(render(json_schema()), end="")
