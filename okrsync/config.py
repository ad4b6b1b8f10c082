"""Config models and loading: admin-owned YAML -> a validated Plan.

`load_plan(paths)` reads one or more config files (one per team, say) and returns a Plan, or
raises ConfigError carrying *every* mistake found, each as `file:line: who: what and how to
fix it`. Validation is staged so one mistake never hides another: the top level, each
objective, each key result, each source (by its connector's SourceConfig) and each metric
(by its source's connector Metric) are checked on their own, then the cross-checks (unique
ids, known sources, baseline != target, templates).
"""
from __future__ import annotations

import calendar
import difflib
import hashlib
import json
import os
import re
import stat
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, timedelta
from functools import cached_property, lru_cache
from pathlib import Path
from urllib.parse import urlsplit
from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, create_model, field_validator, model_validator

from okrsync.alerts import NotifyConfig, parse_duration
from okrsync.errors import ConfigError, ConfigIssue
from okrsync.measure import Period
from okrsync.progress import Thresholds
from okrsync.records import KeyResultRecord, ObjectiveRecord
from okrsync.redact import register
from okrsync.refs import no_boolean
from okrsync.contract import source_identity
from okrsync.registry import ConnectorUnusable, Registry, default_registry, default_targets
from okrsync.report import PlannedReport, ReportConfig
from okrsync.schedule import ScheduleConfig
from okrsync.yamlsource import YamlSyntaxError, line_of, load_with_lines

DEFAULT_STORE = "sqlite:///okr-sync.db"
DEFAULT_DEADLINE = 120.0     # seconds a run may spend on one source (`deadline:` on the source)
STORE_ENV = "OKR_SYNC_STORE"
ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"
MAX_ID = 100                 # characters of an id or a source name: they key the store and name Prefect tasks
STORE_DIALECTS = ("sqlite", "postgresql")

# ---------------------------------------------------------------------------- periods

_QUARTER = re.compile(r"^(\d{4})-?Q([1-4])$", re.I)
_HALF = re.compile(r"^(\d{4})-?H([12])$", re.I)
_MONTH = re.compile(r"^(\d{4})-(\d{2})$")
_YEAR = re.compile(r"^(\d{4})$")


def _month_end(year: int, month: int) -> date:
    return date(year, month, calendar.monthrange(year, month)[1])


def parse_period(spec: Any) -> Period:
    """`2026-Q4`, `2026-H1`, `2026-11`, `2026`, or {start: DATE, end: DATE}; ValueError if neither,
    or if it lies outside the years 1900..9998 (date arithmetic on the period must not overflow)."""
    period = _parse_period(spec)
    if period.start.year < 1900 or period.end.year > 9998:
        raise ValueError(f"period {period} is out of range: OKR periods lie between the years 1900 and 9998, "
                         "e.g. 2026-Q4")
    return period


def _parse_period(spec: Any) -> Period:
    if isinstance(spec, bool):
        raise ValueError(f"period is {str(spec).lower()} (YAML reads unquoted yes/no/on/off so): write e.g. 2026-Q4, "
                         "or {start: 2026-10-01, end: 2026-12-31}")
    if isinstance(spec, int):
        spec = str(spec)
    if isinstance(spec, str):
        text = spec.strip()
        if m := _QUARTER.match(text):
            year, q = int(m[1]), int(m[2])
            return Period(date(year, 3 * q - 2, 1), _month_end(year, 3 * q), f"{year}-Q{q}")
        if m := _HALF.match(text):
            year, h = int(m[1]), int(m[2])
            return Period(date(year, 6 * h - 5, 1), _month_end(year, 6 * h), f"{year}-H{h}")
        if m := _MONTH.match(text):
            year, month = int(m[1]), int(m[2])
            if 1 <= month <= 12:
                return Period(date(year, month, 1), _month_end(year, month), text)
        if m := _YEAR.match(text):
            return Period(date(int(m[1]), 1, 1), date(int(m[1]), 12, 31), text)
        raise ValueError(f"period {spec!r} is not understood: write e.g. 2026-Q4, 2026-H1, 2026-11, "
                         "2026, or {start: 2026-10-01, end: 2026-12-31}")
    if isinstance(spec, dict) and set(spec) == {"start", "end"}:
        try:
            start, end = (v if isinstance(v, date) else date.fromisoformat(str(v)) for v in (spec["start"], spec["end"]))
        except ValueError:
            raise ValueError("period start and end must be dates like 2026-10-01") from None
        if end < start:
            raise ValueError(f"period ends ({end}) before it starts ({start}): swap start and end")
        return Period(start, end, f"{start}..{end}")
    raise ValueError("period must be e.g. 2026-Q4, or {start: 2026-10-01, end: 2026-12-31}")


def _period_text(spec: Any) -> Any:
    parse_period(spec)
    return spec


PeriodSpec = Annotated[Union[str, int, dict[str, Any]], BeforeValidator(_period_text), Field(
    description="2026-Q4, 2026-H1, 2026-11, 2026, or {start: YYYY-MM-DD, end: YYYY-MM-DD}")]

# ---------------------------------------------------------------------------- templates

_TEMPLATE = re.compile(r"\{\s*(period[^{}]*|as[_-]?of[^{}]*)\s*\}", re.I)
_UNCLOSED = re.compile(r"\{\s*(?:period|as[_-]?of)[^{}]*(?=\{|$)", re.I)
TEMPLATES = ("period.start", "period.end", "as_of")
_USE = ", ".join("{" + t + "}" for t in TEMPLATES)


def template_problems(text: str) -> list[str]:
    unknown = [f"unknown placeholder `{{{_clip(m.group(1), 30)}}}`: use {_USE}"
               for m in _TEMPLATE.finditer(text) if m.group(1) not in TEMPLATES]
    return unknown + [f"unclosed placeholder `{_clip(m.group(0).rstrip(), 30)}`: close it with `}}` ({_USE})"
                      for m in _UNCLOSED.finditer(text)]


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit - 1] + "…"


def render_templates(value: Any, period: Period, as_of: date) -> Any:
    """Substitute {period.start}, {period.end} and {as_of} in every string of `value`."""
    if isinstance(value, str):
        return (value.replace("{period.start}", period.start.isoformat())
                .replace("{period.end}", period.end.isoformat())
                .replace("{as_of}", as_of.isoformat()))
    if isinstance(value, dict):
        return {k: render_templates(v, period, as_of) for k, v in value.items()}
    if isinstance(value, list):
        return [render_templates(v, period, as_of) for v in value]
    return value


def render_metric(metric: Any, period: Period, as_of: date) -> Any:
    """A typed metric with {period.start}, {period.end} and {as_of} filled in, not validated again:
    only string values change (a copy is made only when one holds a placeholder)."""
    if isinstance(metric, BaseModel):
        changed = {}
        for name in type(metric).model_fields:
            value = getattr(metric, name)
            rendered = render_metric(value, period, as_of)
            if rendered is not value:
                changed[name] = rendered
        return metric.model_copy(update=changed) if changed else metric
    if isinstance(metric, str):
        return render_templates(metric, period, as_of) if "{" in metric else metric
    if isinstance(metric, (dict, list)):
        rendered = render_templates(metric, period, as_of)
        return metric if rendered == metric else rendered
    return metric


def _strings(value: Any):
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for v in value.values():
            yield from _strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from _strings(v)

# ---------------------------------------------------------------------------- models


Number = Annotated[float, BeforeValidator(no_boolean), Field(allow_inf_nan=False)]


def _duration_text(value: Any) -> Any:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        raise ValueError(f"duration {value} has no unit: write e.g. {value}d, {value}h or {value}m (90m, 36h, 2d, 1w)")
    if isinstance(value, str):
        try:
            parse_duration(value)
        except OverflowError:
            raise ValueError(f"duration {_clip(value, 30)!r} is too long: write at most a few weeks, e.g. 2d or 1w") from None
    return value


StaleAfter = Annotated[str, BeforeValidator(_duration_text), Field(
    description="alert when not measured successfully for longer than this: 90m, 36h, 2d, 1w")]


class ThresholdsConfig(BaseModel):
    """How far progress may trail expected progress before a key result is at risk / off track."""

    model_config = ConfigDict(extra="forbid")
    at_risk: float = Field(0.10, ge=0, le=1, description="trailing by more than this share -> at_risk")
    off_track: float = Field(0.25, ge=0, le=1, description="trailing by more than this share -> off_track")

    @model_validator(mode="after")
    def _ordered(self) -> "ThresholdsConfig":
        if self.at_risk > self.off_track:
            raise ValueError("thresholds.at_risk must not exceed thresholds.off_track (e.g. at_risk: 0.1, off_track: 0.25)")
        return self


class SourceRunSettings(BaseModel):
    """What every source may say besides its connector's own settings."""

    model_config = ConfigDict(extra="forbid")
    deadline: Annotated[float, BeforeValidator(no_boolean)] = Field(DEFAULT_DEADLINE, gt=0, le=3600, allow_inf_nan=False, description=(
        "seconds one run may spend measuring this source, retries included; then its key results fail "
        "and the others are still written (default 120)"))


def _publish_mapping(value: Any) -> Any:
    if value is True:
        raise ValueError("`publish: true` is the default: leave it out, write `publish: false` to opt out, or map "
                         "target names to this key result's ids in them, e.g. {okr-jira: OKR-12}")
    if isinstance(value, dict):
        out = {}
        for name, ext in value.items():
            if isinstance(ext, bool) or not isinstance(ext, (str, int)) or not str(ext).strip():
                raise ValueError(f"`{name}`: the key result's id in that target must be text or a number, e.g. OKR-12")
            out[str(name)] = str(ext).strip()
        return out
    return value


PublishMapping = Annotated[Union[Literal[False], dict[str, str]], BeforeValidator(_publish_mapping)]


class KeyResultConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: str = Field(pattern=ID_PATTERN, max_length=MAX_ID, description="unique across all config files, e.g. checkout-nps")
    title: str = Field(min_length=1)
    source: str = Field(description="name of a source under `sources:`")
    metric: dict[str, Any] = Field(description="what to measure; its keys depend on the source type")
    baseline: Number = 0.0
    target: Number
    unit: str | None = None
    period: PeriodSpec | None = Field(None, description="overrides the config's period for this key result")
    thresholds: ThresholdsConfig | None = None
    on_manual: Literal["keep", "overwrite"] = Field(
        "keep", description="keep: a manual check-in newer than the last automatic one is not overwritten")
    schedule: ScheduleConfig | None = Field(None, description="this key result's own cadence (default: the file's)")
    stale_after: StaleAfter | None = None
    publish: PublishMapping | None = Field(None, description=(
        "the key result's id in publish targets that need one, e.g. {okr-jira: OKR-12, tability: 4815162342}; "
        "false: publish it nowhere (by default it goes to every target of its file)"))


class ObjectiveConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: str = Field(pattern=ID_PATTERN, max_length=MAX_ID)
    title: str = Field(min_length=1)
    owner: str | None = None
    key_results: list[Any] = Field(min_length=1)       # each checked on its own, as a KeyResultConfig


class FileConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    period: PeriodSpec | None = Field(None, description="default period of every key result")
    store: str | None = Field(None, description="SQLAlchemy URL of the OKR store; ${VAR} is expanded")
    thresholds: ThresholdsConfig = Field(default_factory=ThresholdsConfig)
    sources: dict[str, Any] = Field(default_factory=dict)     # each checked on its own, by its connector
    objectives: list[Any] = Field(min_length=1)               # each checked on its own, as an ObjectiveConfig
    schedule: ScheduleConfig | None = Field(None, description="when `okr-sync serve` syncs this file")
    notify: NotifyConfig | None = Field(None, description="post alerts to a Slack-compatible webhook")
    stale_after: StaleAfter | None = None
    publish: dict[str, Any] = Field(default_factory=dict)     # OKR tools that receive check-ins, each checked by its connector
    report: ReportConfig | None = Field(None, description="rewrite this file's HTML report after every run")

    @field_validator("sources", "publish")
    @classmethod
    def _source_names(cls, value: dict[str, Any]) -> dict[str, Any]:
        for name in value:
            if not re.match(ID_PATTERN, str(name)):
                raise ValueError(f"name {_clip(str(name), 40)!r} must be letters, digits, '-', '_' or '.'")
            if len(str(name)) > MAX_ID:
                raise ValueError(f"name {_clip(str(name), 40)!r} is {len(str(name))} characters long: "
                                 f"keep it to at most {MAX_ID}")
        return value

# ---------------------------------------------------------------------------- the plan


@dataclass(frozen=True)
class PlannedSource:
    """One source of the run. Sources that several files define alike (same type, settings,
    secret references and deadline: okrsync.contract.source_identity) are one PlannedSource,
    asked once per run for all of them; `defined_in` lists every (file, name) defining it."""

    key: str                 # unique in the plan: the label of its first definition (see PlannedKeyResult)
    name: str                # its name in the first file defining it
    type: str
    config: Any              # the connector's validated SourceConfig
    config_file: str         # the first file defining it
    deadline: float = DEFAULT_DEADLINE   # seconds one run may spend measuring this source
    defined_in: tuple[tuple[str, str], ...] = ()   # (config file, name) of each definition


@dataclass(frozen=True)
class PlannedTarget:
    name: str                # unique in the plan: the same name in two files must mean the same settings
    type: str
    config: Any              # the target connector's validated TargetConfig
    config_file: str
    needs_external_id: bool
    deadline: float = DEFAULT_DEADLINE   # seconds one run may spend delivering to this target


@dataclass(frozen=True)
class PlannedKeyResult:
    id: str
    title: str
    objective_id: str
    source_key: str
    source_type: str
    metric: Any              # the connector's Metric model, validated at load (templates not yet rendered)
    baseline: float
    target: float
    unit: str | None
    period: Period
    thresholds: Thresholds
    on_manual: str
    config_file: str
    line: int | None
    schedule: ScheduleConfig | None = None   # the key result's own `schedule:` (None: the file's)
    stale_after: timedelta | None = None     # its own, else its file's
    publish: tuple[tuple[str, str | None], ...] = ()   # (target name, its id in that target or None)
    source_name: str = ""    # the source's name in this key result's file
    source_label: str = ""   # how output and the store name it: source_name, or "file.yaml:name" when files
                             # define different sources under that name

    @cached_property
    def definition(self) -> str:
        """A hash of the definition the store compares between config files (and `serve` too):
        objective, title, source type and name, baseline, target, unit, period, on_manual, metric;
        not the source's settings nor thresholds. Computed once per plan."""
        compared = {"objective_id": self.objective_id, "title": self.title, "baseline": self.baseline,
                    "target": self.target, "unit": self.unit, "period_start": self.period.start,
                    "period_end": self.period.end, "on_manual": self.on_manual,
                    "source": [self.source_type, self.source_name], "metric": self.metric.model_dump(mode="json")}
        return hashlib.sha256(json.dumps(compared, sort_keys=True, default=str).encode()).hexdigest()

    @cached_property
    def owner_file(self) -> str:
        """The config file, absolute: the owner the store keeps."""
        return _absolute(self.config_file)

    def record(self) -> KeyResultRecord:
        return KeyResultRecord(id=self.id, objective_id=self.objective_id, title=self.title,
                               source=self.source_label, baseline=self.baseline, target=self.target,
                               unit=self.unit, period_start=self.period.start, period_end=self.period.end,
                               on_manual=self.on_manual)


@lru_cache(maxsize=1024)
def _absolute(path: str) -> str:
    return str(Path(path).resolve())


@dataclass(frozen=True)
class Plan:
    files: list[str]
    store_url: str
    objectives: list[ObjectiveRecord]
    key_results: list[PlannedKeyResult]
    sources: dict[str, PlannedSource]
    schedules: dict[str, ScheduleConfig | None] = field(default_factory=dict)   # by config file
    notify: dict[str, NotifyConfig] = field(default_factory=dict)               # by config file
    targets: dict[str, PlannedTarget] = field(default_factory=dict)             # publish targets, by name
    reports: dict[str, PlannedReport] = field(default_factory=dict)             # `report:`, by config file

    def source_of(self, kr: PlannedKeyResult) -> PlannedSource:
        return self.sources[kr.source_key]


# ---------------------------------------------------------------------------- error wording

_HINTS = {
    "id": "a short unique id such as checkout-nps",
    "title": "a sentence a person reads",
    "target": "the number to reach",
    "source": "the name of one of the config's `sources:`",
    "metric": "what to measure, e.g. {cell: B7}",
    "objectives": "a list of objectives, each with key_results",
    "key_results": "a list of key results",
    "type": "a source type: spreadsheet, jira, github, google_sheets, or one a plug-in adds",
    "path": "the file's path, relative to this config file",
}


def _allowed_keys(model: type[BaseModel] | None, loc: tuple) -> list[str]:
    if model is None:
        return []
    for part in loc[:-1]:
        field = model.model_fields.get(part) if isinstance(part, str) else None
        if field is None:
            continue
        ann = field.annotation
        for candidate in getattr(ann, "__args__", ()) + (ann,):
            if isinstance(candidate, type) and issubclass(candidate, BaseModel):
                model = candidate
                break
    return list(model.model_fields)


def _shown(value: Any) -> str:
    """A value as the admin wrote it, short: a date as 2026-10-01, true/false in lower case."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, date):
        return value.isoformat()
    return _clip(repr(value), 60)


_KINDS = {"string_type": "text", "bool_type": "true or false", "bool_parsing": "true or false",
          "int_type": "a number", "int_parsing": "a number", "float_type": "a number", "float_parsing": "a number",
          "date_type": "a date", "date_parsing": "a date", "date_from_datetime_parsing": "a date",
          "dict_type": "a mapping", "model_type": "a mapping", "list_type": "a list"}


def explain(error: dict[str, Any], model: type[BaseModel] | None = None) -> str:
    """Turn one pydantic error into `what is wrong and how to fix it`."""
    loc = tuple(p for p in error.get("loc", ()) if not (isinstance(p, str) and p.startswith("function-")))
    name = next((p for p in reversed(loc) if isinstance(p, str)), "value")
    kind = error.get("type", "")
    given = error.get("input")
    if kind == "missing":
        return f"`{name}` is missing: add `{name}:` ({_HINTS.get(name, 'see okr-sync schema')})"
    if kind == "extra_forbidden":
        allowed = _allowed_keys(model, loc)
        close = difflib.get_close_matches(str(name), allowed, n=1)
        fix = f"did you mean `{close[0]}`?" if close else (f"allowed keys: {', '.join(allowed)}" if allowed else "remove it")
        return f"unknown key `{_clip(str(name), 40)}`: {fix}"
    if kind == "literal_error":
        expected = error.get('ctx', {}).get('expected', 'one of the allowed values')
        if isinstance(given, bool):
            return f"`{name}` is {_shown(given)} (YAML reads unquoted yes/no/on/off so): it must be {expected}"
        return f"`{name}` is {_shown(given)}: it must be {expected}"
    if kind in ("float_parsing", "float_type", "int_parsing", "int_type", "finite_number"):
        return f"`{name}` must be a number, not {_shown(given)}: write e.g. `{name}: 45` (no quotes, no units)"
    if kind == "int_from_float":
        return f"`{name}` must be a whole number, not {_shown(given)}"
    if kind == "string_pattern_mismatch":
        return f"`{name}` {_shown(given)} may hold only letters, digits, '-', '_' and '.', starting with a letter or digit"
    if kind == "string_type":
        if isinstance(given, bool):
            return (f"`{name}` is {_shown(given)}, not text: YAML reads unquoted yes, no, on, off, true and false "
                    f"as true/false; put the text in quotes")
        if given is None:
            return f"`{name}` is empty: write it ({_HINTS.get(name, 'see okr-sync schema')})"
        fix = "quote it" if isinstance(given, (int, float, date)) else "write it on one line, as text"
        return f"`{name}` must be text, not {_shown(given)}: {fix}"
    if kind == "string_too_short":
        return f"`{name}` is empty: write it, or leave the key out if it is optional"
    if kind == "string_too_long":
        return (f"`{name}` is {len(given) if isinstance(given, str) else 'too many'} characters long: keep it to at most "
                f"{error.get('ctx', {}).get('max_length')}")
    if kind in ("dict_type", "model_type", "model_attributes_type"):
        return f"`{name}` must be a mapping of keys to values (indented `key: value` lines), not {_shown(given)}"
    if kind == "list_type":
        return f"`{name}` must be a list (lines starting with `- `), not {_shown(given)}"
    if kind == "too_short":
        return f"`{name}` is empty: give at least one item"
    if kind in ("greater_than_equal", "less_than_equal", "greater_than", "less_than"):
        return f"`{name}` is {_shown(given)}: {error['msg'].lower()}"
    if kind in _KINDS:
        return f"`{name}` must be {_KINDS[kind]}, not {_shown(given)}"
    message = str(error.get("msg", "invalid value"))
    message = message.removeprefix("Value error, ").removeprefix("Assertion failed, ")
    if not any(isinstance(p, str) for p in loc) or name in message:  # a model-level check names its own keys
        return message
    return f"`{name}`: {message}"


_UNION_TAG = re.compile(r"^(str|int|float|bool|date|datetime|none|[a-z-]+\[.*\]|[A-Z][A-Za-z0-9_]*)$")


def _written_loc(data: Any, loc: tuple) -> tuple[tuple, bool]:
    """`loc` as a path into the data as written, and whether pydantic put union-member tags in it
    (`('period', 'str')` for `period: [..]`): those name no key the admin wrote."""
    path: list = []
    node, tagged = data, False
    for part in loc:
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
            node = node[part]
        elif isinstance(part, str) and _UNION_TAG.match(part):
            tagged = True
            continue
        else:
            node = None                   # a key the admin has not written (missing, or named by a check)
        path.append(part)
    return tuple(path), tagged


def _union_message(loc: tuple, errors: list[dict[str, Any]], model: type[BaseModel] | None) -> str:
    """One message for a value no member of a union accepted: the first member's own words if it has
    some, else the forms that would do."""
    for err in errors:
        if err.get("type") in ("value_error", "assertion_error") or err.get("type") not in _KINDS:
            return explain({**err, "loc": loc}, model)
    name = next((p for p in reversed(loc) if isinstance(p, str)), "value")
    forms = list(dict.fromkeys(_KINDS[err["type"]] for err in errors))
    listed = ", ".join(forms[:-1]) + f" or {forms[-1]}" if len(forms) > 1 else forms[0]
    return f"`{name}` must be {listed}, not {_shown(errors[0].get('input'))}"

# ---------------------------------------------------------------------------- loading


class _FileChecker:
    """Validates one config file, collecting issues rather than stopping at the first."""

    def __init__(self, path: Path):
        self.path = path
        self.display = str(path)
        self.issues: list[ConfigIssue] = []
        self.lines: dict[tuple, int] = {}

    def add(self, where: tuple, who: str | None, message: str) -> None:
        self.issues.append(ConfigIssue(self.display, line_of(self.lines, where), who, message))

    def validate(self, model: type[BaseModel], data: Any, where: tuple, who: str | None,
                 context: dict | None = None) -> Any:
        try:
            return model.model_validate(data, context=context)
        except ValidationError as exc:
            unions: dict[tuple, list[dict[str, Any]]] = {}
            for err in exc.errors(include_url=False):
                loc, tagged = _written_loc(data, tuple(err.get("loc", ())))
                if tagged:
                    unions.setdefault(loc, []).append(err)
                else:
                    self.add(where + loc, who, explain({**err, "loc": loc}, model))
            for loc, errors in unions.items():
                self.add(where + loc, who, _union_message(loc, errors, model))
            return None


def _check_source_and_metric(check: _FileChecker, top: FileConfig, out: dict[str, Any], source_name: str,
                             metric: dict[str, Any], kwhere: tuple, klabel: str, base_dir: Path,
                             registry: Registry) -> Any:
    """The key result's source exists, and its metric is one that source's connector accepts:
    the connector's Metric model (templates not yet rendered), or None."""
    for text in _strings(metric):
        for problem in template_problems(text):
            check.add(kwhere + ("metric",), klabel, problem)
    if source_name not in top.sources:
        names = list(top.sources)
        close = difflib.get_close_matches(source_name, names, n=1)
        hint = f"did you mean `{close[0]}`?" if close else (f"defined sources: {', '.join(names)}" if names else "add it under `sources:`")
        check.add(kwhere + ("source",), klabel, f"unknown source `{source_name}`: {hint}")
    elif source_name in out["sources"]:
        stype = out["sources"][source_name][0]
        return check.validate(registry.get(stype).Metric, metric, kwhere + ("metric",), klabel, {"base_dir": base_dir})
    return None


def _load_targets(check: _FileChecker, publish: dict[str, Any], targets: Registry, base_dir: Path) -> dict[str, Any]:
    """The file's publish targets, each validated by its connector: name -> (type, config, deadline, needs id)."""
    found: dict[str, Any] = {}
    for name, raw in publish.items():
        where, who = ("publish", name), f"publish.{name}"
        if not isinstance(raw, dict):
            check.add(where, who, "a publish target must be a mapping with `type:` and its settings")
            continue
        ttype = raw.get("type")
        if not isinstance(ttype, str) or ttype not in targets:
            close = difflib.get_close_matches(str(ttype), targets.types(), n=1)
            hint = f"did you mean `{close[0]}`?" if close else f"use one of: {', '.join(targets.types()) or '(none installed)'}"
            check.add(where + (("type",) if ttype is not None else ()), who,
                      f"unknown publish target type {ttype!r}: {hint}" if ttype is not None else f"`type` is missing: add `type:` ({hint})")
            continue
        try:
            connector = targets.get(ttype)
        except ConnectorUnusable as exc:
            check.add(where + ("type",), who, str(exc))
            continue
        settings = dict(raw)
        run = check.validate(SourceRunSettings, {"deadline": settings.pop("deadline")} if "deadline" in settings else {},
                             where, who)
        config = check.validate(connector.TargetConfig, settings, where, who, {"base_dir": base_dir})
        if config is None or run is None:
            continue
        for problem in connector.check(config):
            check.add(where, who, problem)
        found[name] = (ttype, config, run.deadline, bool(connector.NEEDS_EXTERNAL_ID))
    return found


def _kr_targets(check: _FileChecker, kr: "KeyResultConfig", kwhere: tuple, klabel: str,
                targets: dict[str, Any]) -> tuple[tuple[str, str | None], ...]:
    """The key result's publish targets: every target of its file unless `publish: false`, with the ids it gives."""
    if kr.publish is False:
        return ()
    mapping = kr.publish or {}
    for name in mapping:
        if name not in targets:
            close = difflib.get_close_matches(name, list(targets), n=1)
            hint = f"did you mean `{close[0]}`?" if close else (f"defined targets: {', '.join(targets)}" if targets else "add it under `publish:` at the top of the file")
            check.add(kwhere + ("publish", name), klabel, f"unknown publish target `{name}`: {hint}")
    return tuple((name, mapping.get(name)) for name in targets)


def _load_file(path: Path, seen_ids: dict[str, str], registry: Registry,
               targets: Registry | None = None) -> tuple[_FileChecker, dict[str, Any]]:
    check = _FileChecker(path)
    out: dict[str, Any] = {"period": None, "store": None, "thresholds": Thresholds(), "sources": {},
                           "objectives": [], "krs": [], "schedule": None, "notify": None, "targets": {},
                           "report": None}
    try:
        regular = stat.S_ISREG(path.stat().st_mode)
        text = path.read_text(encoding="utf-8") if regular else ""
    except FileNotFoundError:
        check.add((), None, "config file not found: check the path")
        return check, out
    except (OSError, UnicodeDecodeError) as exc:
        check.add((), None, f"config file cannot be read ({exc.__class__.__name__}): check its permissions and that it is UTF-8 text")
        return check, out
    if not regular:
        check.add((), None, "the config is not a regular file (a folder, pipe or device): give the path of a .yaml file")
        return check, out
    try:
        data, check.lines = load_with_lines(text)
    except YamlSyntaxError as exc:
        check.issues.append(ConfigIssue(check.display, exc.line, None, exc.message))
        return check, out
    if not isinstance(data, dict):
        check.add((), None, "the config must be a mapping with `objectives:` (and usually `period:` and `sources:`); see config/example.yaml")
        return check, out
    _notify_on_key(data, check.lines)

    top = check.validate(FileConfig, data, (), None)
    if top is None:  # still look inside the parts that are there, to report everything at once
        top = FileConfig.model_construct(
            period=data.get("period") if _period_or_none(data.get("period")) else None, store=data.get("store") if isinstance(data.get("store"), str) else None,
            thresholds=ThresholdsConfig(), sources=data.get("sources") if isinstance(data.get("sources"), dict) else {},
            objectives=data.get("objectives") if isinstance(data.get("objectives"), list) else [],
            publish=data.get("publish") if isinstance(data.get("publish"), dict) else {})
    if top.period is not None:
        try:
            out["period"] = parse_period(top.period)
        except ValueError as exc:
            check.add(("period",), None, str(exc))
    out["store"] = top.store
    out["thresholds"] = Thresholds(top.thresholds.at_risk, top.thresholds.off_track)
    out["schedule"] = getattr(top, "schedule", None)
    out["notify"] = getattr(top, "notify", None)
    out["report"] = getattr(top, "report", None)
    file_stale = getattr(top, "stale_after", None)

    base_dir = path.parent
    publish = getattr(top, "publish", None) or {}
    if publish:
        out["targets"] = _load_targets(check, publish, targets or default_targets(), base_dir)
    metrics_of: dict[str, list[tuple[Any, tuple, str]]] = defaultdict(list)   # by source: (metric, where, who)
    for name, raw in top.sources.items():
        where = ("sources", name)
        if not isinstance(raw, dict):
            check.add(where, f"sources.{name}", "a source must be a mapping with `type:` and its settings")
            continue
        stype = raw.get("type")
        if not isinstance(stype, str) and stype is not None:
            check.add(where + ("type",), f"sources.{name}", f"`type` must be a source type written as text, not "
                      f"{_shown(stype)}: use one of: {', '.join(registry.types())}")
            continue
        if stype not in registry:
            close = difflib.get_close_matches(str(stype), registry.types(), n=1)
            hint = f"did you mean `{close[0]}`?" if close else f"use one of: {', '.join(registry.types())}"
            check.add(where + (("type",) if stype is not None else ()), f"sources.{name}",
                      f"unknown source type {stype!r}: {hint}" if stype is not None else f"`type` is missing: add `type:` ({hint})")
            continue
        try:
            connector = registry.get(stype)
        except ConnectorUnusable as exc:
            check.add(where + ("type",), f"sources.{name}", str(exc))
            continue
        settings = dict(raw)
        deadline = check.validate(SourceRunSettings, {"deadline": settings.pop("deadline")} if "deadline" in settings
                                  else {}, where, f"sources.{name}")
        config = check.validate(connector.SourceConfig, settings, where, f"sources.{name}", {"base_dir": base_dir})
        if config is None or deadline is None:
            continue
        out["sources"][name] = (stype, config, deadline.deadline)

    for oi, raw_obj in enumerate(top.objectives):
        owhere = ("objectives", oi)
        oid = raw_obj.get("id") if isinstance(raw_obj, dict) else None
        olabel = _clip(oid, 40) if isinstance(oid, str) else f"objective #{oi + 1}"
        if not isinstance(raw_obj, dict):
            check.add(owhere, olabel, f"an objective must be a mapping with `id:`, `title:` and `key_results:`, not "
                                      f"{_shown(raw_obj)}: check the indentation (see config/example.yaml)")
            continue
        obj = check.validate(ObjectiveConfig, raw_obj, owhere, olabel)
        if obj is not None:
            if obj.id in seen_ids:
                check.add(owhere + ("id",), olabel, f"objective id `{obj.id}` is used twice (also in {seen_ids[obj.id]}): ids must be unique")
            seen_ids[obj.id] = f"{check.display}:{line_of(check.lines, owhere + ('id',))}"
            out["objectives"].append(ObjectiveRecord(obj.id, obj.title, obj.owner, str(path)))
        raw_krs = raw_obj.get("key_results") if isinstance(raw_obj, dict) else None
        for ki, raw_kr in enumerate(raw_krs if isinstance(raw_krs, list) else []):
            kwhere = owhere + ("key_results", ki)
            kid = raw_kr.get("id") if isinstance(raw_kr, dict) else None
            klabel = _clip(kid, 40) if isinstance(kid, str) else f"{olabel} key result #{ki + 1}"
            if not isinstance(raw_kr, dict):
                check.add(kwhere, klabel, f"a key result must be a mapping with `id:`, `title:`, `source:`, `metric:` "
                                          f"and `target:`, not {_shown(raw_kr)}: check the indentation")
                continue
            kr = check.validate(KeyResultConfig, raw_kr, kwhere, klabel)
            if kr is None:  # still check what can be checked, so every mistake shows at once
                if isinstance(raw_kr, dict) and isinstance(raw_kr.get("source"), str) and isinstance(raw_kr.get("metric"), dict):
                    metric = _check_source_and_metric(check, top, out, raw_kr["source"], raw_kr["metric"], kwhere,
                                                      klabel, base_dir, registry)
                    if metric is not None:
                        metrics_of[raw_kr["source"]].append((metric, kwhere + ("metric",), klabel))
                continue
            if kr.id in seen_ids:
                check.add(kwhere + ("id",), klabel, f"id `{kr.id}` is used twice (also at {seen_ids[kr.id]}): ids must be unique across all config files")
            seen_ids[kr.id] = f"{check.display}:{line_of(check.lines, kwhere + ('id',))}"
            period = out["period"]
            if kr.period is not None:
                try:
                    period = parse_period(kr.period)
                except ValueError as exc:
                    check.add(kwhere + ("period",), klabel, str(exc))
                    period = None
            elif period is None and "period" not in data:
                check.add(kwhere, klabel, "no period: add `period: 2026-Q4` at the top of the file or on this key result")
            if kr.target == kr.baseline:
                check.add(kwhere + ("target",), klabel, f"target equals baseline ({kr.target:g}), so progress cannot be measured: "
                                                          "set `baseline:` to where you started (it defaults to 0)")
            metric = _check_source_and_metric(check, top, out, kr.source, kr.metric, kwhere, klabel, base_dir, registry)
            if metric is not None:
                metrics_of[kr.source].append((metric, kwhere + ("metric",), klabel))
            if obj is not None and period is not None and metric is not None:
                th = out["thresholds"] if kr.thresholds is None else Thresholds(kr.thresholds.at_risk, kr.thresholds.off_track)
                out["krs"].append(dict(
                    id=kr.id, title=kr.title, objective_id=obj.id, source_name=kr.source, metric=metric,
                    baseline=kr.baseline, target=kr.target, unit=kr.unit, period=period, thresholds=th,
                    on_manual=kr.on_manual, config_file=str(path), line=line_of(check.lines, kwhere),
                    schedule=kr.schedule, stale_after=_duration(kr.stale_after or file_stale),
                    publish=_kr_targets(check, kr, kwhere, klabel, out["targets"])))
    for name, (stype, config, _) in out["sources"].items():  # offline checks that need the source's metrics
        used = metrics_of.get(name, [])
        for problem in registry.get(stype).check(config, [metric for metric, _, _ in used]):
            if isinstance(problem, tuple):       # (index of the metric, message): that key result's problem
                _, where, who = used[problem[0]]
                check.add(where, who, problem[1])
            else:
                check.add(("sources", name), f"sources.{name}", problem)
    return check, out


def _notify_on_key(data: dict[str, Any], lines: dict[tuple, int]) -> None:
    """YAML 1.1 reads the bare key `on:` of `notify:` as the boolean true: make it `on` again,
    with its line, so a mistake in it is reported where it is."""
    notify = data.get("notify")
    if isinstance(notify, dict) and True in notify and "on" not in notify:
        data["notify"] = {("on" if k is True else k): v for k, v in notify.items()}
        for where in [w for w in lines if w[:2] == ("notify", True)]:
            lines[("notify", "on") + where[2:]] = lines[where]


def _period_or_none(spec: Any) -> bool:
    """Whether `spec` is a period (its mistakes are reported where the file is validated)."""
    try:
        parse_period(spec)
    except ValueError:
        return False
    return True


def _duration(text: str | None) -> timedelta | None:
    return parse_duration(text) if text else None


def _expand_env(url: str) -> str:
    def repl(m: re.Match) -> str:
        value = os.environ.get(m.group(1))
        if value is None:
            raise ValueError(f"environment variable {m.group(1)} is not set: export it or change `store:`")
        return value
    return re.sub(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}", repl, url)


def _check_store(url: str) -> str:
    """A SQLAlchemy URL of a database the store supports; ValueError naming only its scheme (a URL may hold a password)."""
    match = re.match(r"^([A-Za-z][A-Za-z0-9.-]*)(\+[A-Za-z0-9_]+)?://", url)
    if match is None or match[1].lower() not in STORE_DIALECTS:
        got = f"a {match[1]!r} URL" if match else "not a URL"
        raise ValueError(f"`store:` must be the SQLAlchemy URL of a {' or '.join(STORE_DIALECTS)} database, e.g. "
                         f"sqlite:///okr-sync.db or postgresql+psycopg://user@host/okrs (this is {got})")
    return url


def _resolve_store(url: str, base_dir: Path) -> str:
    """A relative SQLite path in a config file is relative to that file."""
    if url.startswith("sqlite:///") and not url.startswith("sqlite:////") and ":memory:" not in url:
        rel = url.removeprefix("sqlite:///")
        if rel and not rel.startswith("file:"):
            return "sqlite:///" + str((base_dir / rel).resolve())
    return url


def _register_password(url: str) -> None:
    """A password in the store URL is a secret like any other."""
    try:
        register(urlsplit(url).password)
    except ValueError:  # not a URL urllib can split; SQLAlchemy will say what is wrong with it
        pass


def _shared_sources(loaded: list[tuple[Path, _FileChecker, dict[str, Any]]],
                    registry: Registry) -> dict[tuple[str, str], tuple[PlannedSource, str]]:
    """Every (file, source name) -> (the run's source for it, the label output gives it).

    Definitions alike (okrsync.contract.source_identity, and the same deadline) in different files
    become one PlannedSource, so a query two teams ask goes out once. A label is the source's name,
    or `file.yaml:name` when files define different sources under one name."""
    definitions = [(str(path), name, stype, config, deadline)
                   for path, _, out in loaded for name, (stype, config, deadline) in out["sources"].items()]
    groups: dict[Any, list[int]] = {}
    files_in: dict[Any, set[str]] = defaultdict(set)
    for index, (file, _, stype, config, deadline) in enumerate(definitions):
        try:
            alike = (stype, deadline, source_identity(registry.get(stype), config))
        except Exception:  # noqa: BLE001 - a source that cannot say what it is stays on its own
            alike = ("unshared", index)
        # two sources alike in one file stay two, as a file has always had them: each joins the first
        # group of its kind that holds nothing of its file yet
        copy = 0
        while file in files_in[(alike, copy)]:
            copy += 1
        files_in[(alike, copy)].add(file)
        groups.setdefault((alike, copy), []).append(index)
    group_of = {index: identity for identity, members in groups.items() for index in members}
    identities_by_name: dict[str, set[Any]] = defaultdict(set)
    for index, (_, name, *_rest) in enumerate(definitions):
        identities_by_name[name].add(group_of[index])
    labels: dict[int, str] = {}
    taken: dict[str, int] = {}
    for index, (file, name, *_rest) in enumerate(definitions):
        label = name if len(identities_by_name[name]) == 1 else f"{Path(file).name}:{name}"
        if label in taken and group_of[taken[label]] != group_of[index]:
            label = f"{file}:{name}"     # two files of one name in different folders
        taken.setdefault(label, index)
        labels[index] = label
    shared: dict[tuple[str, str], tuple[PlannedSource, str]] = {}
    for members in groups.values():
        file, name, stype, config, deadline = definitions[members[0]]
        source = PlannedSource(labels[members[0]], name, stype, config, file, deadline,
                               tuple((definitions[i][0], definitions[i][1]) for i in members))
        for index in members:
            shared[(definitions[index][0], definitions[index][1])] = (source, labels[index])
    return shared


def load_plan(paths: list[str | Path], store: str | None = None, registry: Registry | None = None,
              targets: Registry | None = None) -> Plan:
    """Validate config files into a Plan; raise ConfigError with every issue found.

    `registry` gives the source connectors (default: those installed as entry points)."""
    registry = registry or default_registry()
    issues: list[ConfigIssue] = []
    seen_ids: dict[str, str] = {}
    loaded = []
    for p in paths:
        check, out = _load_file(Path(p), seen_ids, registry, targets)
        issues.extend(check.issues)
        loaded.append((Path(p), check, out))

    shared = _shared_sources(loaded, registry)
    key_results: list[PlannedKeyResult] = []
    objectives: list[ObjectiveRecord] = []
    store_urls: dict[str, str] = {}
    schedules: dict[str, ScheduleConfig | None] = {}
    notify: dict[str, NotifyConfig] = {}
    planned_targets: dict[str, PlannedTarget] = {}
    reports: dict[str, PlannedReport] = {}
    for path, check, out in loaded:
        schedules[str(path)] = out["schedule"]
        if out["report"] is not None:
            reports[str(path)] = PlannedReport(str(path), (path.parent / out["report"].out).resolve(), out["report"].url)
        if out["notify"] is not None:
            notify[str(path)] = out["notify"]
        for name, (ttype, config, deadline, needs_id) in out["targets"].items():
            planned = PlannedTarget(name, ttype, config, str(path), needs_id, deadline)
            other = planned_targets.get(name)
            if other is not None and (other.type, other.config, other.deadline) != (ttype, config, deadline):
                issues.append(ConfigIssue(str(path), line_of(check.lines, ("publish", name)), f"publish.{name}",
                                          f"{other.config_file} defines a publish target `{name}` with other settings: "
                                          "give one of them another name, or make the two identical"))
            planned_targets.setdefault(name, planned)
        objectives.extend(out["objectives"])
        for kr in out["krs"]:
            name = kr.pop("source_name")
            found = shared.get((str(path), name))
            if found is None:
                continue
            src, label = found
            key_results.append(PlannedKeyResult(source_key=src.key, source_type=src.type, source_name=name,
                                                source_label=label, **kr))
        if out["store"]:
            try:
                store_urls[str(path)] = _resolve_store(_check_store(_expand_env(out["store"])), path.parent)
            except ValueError as exc:
                issues.append(ConfigIssue(str(path), line_of(check.lines, ("store",)), None, str(exc)))

    store_url = store or os.environ.get(STORE_ENV) or None
    if store_url is None:
        distinct = sorted(set(store_urls.values()))
        if len(distinct) > 1:
            issues.append(ConfigIssue(", ".join(store_urls), None, None,
                                      "these config files name different stores: run them separately or pass --store URL"))
        store_url = distinct[0] if distinct else DEFAULT_STORE
    if issues:
        raise ConfigError(issues)
    _register_password(store_url)
    return Plan(files=[str(p) for p in paths], store_url=store_url, objectives=objectives,
                key_results=key_results, sources={s.key: s for s, _ in shared.values()},
                schedules=schedules, notify=notify, targets=planned_targets, reports=reports)

# ---------------------------------------------------------------------------- JSON Schema


def json_schema(registry: Registry | None = None, targets: Registry | None = None) -> dict[str, Any]:
    """The JSON Schema of a config file, with every registered source type and metric, and every
    registered publish target type."""
    registry = registry or default_registry()
    targets = targets or default_targets()
    target_models = [create_model(c.TargetConfig.__name__, __base__=c.TargetConfig, __module__=c.TargetConfig.__module__,
                                  deadline=(float, SourceRunSettings.model_fields["deadline"]))
                     for c in (targets.get(t) for t in targets.types())]
    extra: dict[str, Any] = {}
    if target_models:
        target_union = Annotated[Union[tuple(target_models)], Field(discriminator="type")] if len(target_models) > 1 else target_models[0]
        extra["publish"] = (dict[str, target_union], Field(default_factory=dict, description="OKR tools that receive check-ins, besides the store"))
    connectors = [registry.get(t) for t in registry.types()]
    with_run_settings = [create_model(c.SourceConfig.__name__, __base__=c.SourceConfig, __module__=c.SourceConfig.__module__,
                                      deadline=(float, SourceRunSettings.model_fields["deadline"]))
                         for c in connectors]
    source_union = Annotated[Union[tuple(with_run_settings)], Field(discriminator="type")]
    metric_union = Union[tuple(c.Metric for c in connectors)]
    kr = create_model("KeyResult", __base__=KeyResultConfig, metric=(metric_union, ...))
    objective = create_model("Objective", __base__=ObjectiveConfig, key_results=(list[kr], Field(min_length=1)))
    config = create_model("OkrSyncConfig", __base__=FileConfig,
                          sources=(dict[str, source_union], Field(default_factory=dict)),
                          objectives=(list[objective], Field(min_length=1)), **extra)
    schema = config.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "okr-sync config"
    return schema
