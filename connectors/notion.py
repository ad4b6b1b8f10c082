"""Publish target for Notion: each key result's row in a Notion database shows okr-sync's latest value,
and an optional check-ins database gets one row per check-in.

Setup in Notion: an internal integration (its token in `token:`), connected to both databases (••• >
Connections). The key-results database has one row per key result, found by the `match` property
("KR id", Text or Title) holding the okr-sync id; okr-sync sets `Current` (Number), `Progress` (Number,
a fraction: format it as Percent), `Status` (Select or Status with the options On track, At risk, Off
track, Done), `Last sync` (Date: when the value was measured) and `Source` (URL: the tickets or cells
behind the number). Names are the defaults of `properties:`; `{link: null}` leaves one out.

Calls per run (API version 2025-09-03; connectors/_notion_client.py), none when nothing is pending:
    2            the key-results database and its data source (the property schema)
    ⌈rows/100⌉   one query of its rows with a `match` value, paginated: not one per key result
    2 + ⌈n/100⌉  with `checkins:`, the same for the check-ins database, its rows around the dates written
    1 per key result whose row changes (PATCH /v1/pages/{id}); 1 per check-in not yet there (POST /v1/pages)
All at most 3 a second (Notion's average limit), each 429 waited out as its Retry-After asks.

A manual value wins: before writing, the row's value is compared with the value okr-sync is about to
write (equal: nothing to keep) and then given to okrsync.policy with the row's `last_edited_time`.
Exactly once: setting a row's values twice leaves the same row; a check-in row is created only when no
row of the check-ins database has its key result, time (to the minute) and value,
as read in the same run.
"""
from __future__ import annotations

import logging
from collections import defaultdict
from datetime import timedelta
from typing import Any, Literal, Sequence

from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic.json_schema import SkipJsonSchema

from connectors import _notion_props as props
from connectors._notion_client import API_BASE, RATE, DataSource, NotionApi, NotionError, parse_id
from okrsync import policy
from okrsync.publish import (Delivery, DeliveryResult, ImportedKeyResult, ImportedObjective, PublishError, delivered,
                             failed, kept_manual)
from okrsync.refs import SecretRef

logger = logging.getLogger(__name__)

TYPE = "notion"
NEEDS_EXTERNAL_ID = False
SHARE_FIX = "open the database in Notion, ••• > Connections, and add the integration"
MAX_OR = 20                    # key results named in one check-ins query; more: the dates alone narrow it

# ---------------------------------------------------------------------------- config

class KeyResultProperties(BaseModel):
    """The key-results database's properties okr-sync writes (null: not written)."""

    model_config = ConfigDict(extra="forbid")
    value: str = Field("Current", min_length=1, description="Number: the latest value")
    progress: str | None = Field("Progress", min_length=1, description="Number: progress as a fraction (format it as Percent)")
    status: str | None = Field("Status", min_length=1, description="Select or Status: On track, At risk, Off track, Done")
    updated: str | None = Field("Last sync", min_length=1, description="Date: when the value was measured")
    link: str | None = Field("Source", min_length=1, description="URL: the tickets or cells behind the number")


class CheckinProperties(BaseModel):
    """The check-ins database's properties okr-sync fills in each new row (null: not written)."""

    model_config = ConfigDict(extra="forbid")
    kr: str = Field("KR id", min_length=1, description="Text or Title: the key result's okr-sync id")
    value: str = Field("Value", min_length=1, description="Number: the value checked in")
    date: str = Field("Date", min_length=1, description="Date: when it was measured")
    progress: str | None = Field("Progress", min_length=1, description="Number: progress as a fraction")
    status: str | None = Field("Status", min_length=1, description="Select or Status")
    link: str | None = Field("Source", min_length=1, description="URL: the tickets or cells behind the number")


class TargetConfig(BaseModel):
    """A Notion database with a row per key result (and optionally one that gets a row per check-in)."""

    model_config = ConfigDict(extra="forbid")

    type: Literal[TYPE]
    token: SecretRef = Field(description="An internal integration token (\"${NOTION_TOKEN}\" or {secret: NAME}); "
                                         "connect the integration to the databases (••• > Connections)")
    key_results: str = Field(description="The URL or id of the database with a row per key result")
    checkins: str | None = Field(None, description="The URL or id of a database that gets a row per check-in")
    match: str = Field("KR id", min_length=1, description="The property (Text or Title) holding the key result's id")
    properties: KeyResultProperties = Field(default_factory=KeyResultProperties)
    checkin_properties: CheckinProperties = Field(default_factory=CheckinProperties)
    base_url: str = Field(API_BASE, description="The Notion API's address, for a proxy or a test double")
    rate_limit: SkipJsonSchema[float] = Field(RATE, gt=0, le=100, description="Requests a second (tests and proxies)")

    @field_validator("key_results", "checkins")
    @classmethod
    def _database(cls, value: str | None) -> str | None:
        return None if value is None else parse_id(value)

    @field_validator("base_url")
    @classmethod
    def _http_base(cls, value: str) -> str:
        if not value.startswith(("https://", "http://")) or len(value.split("://", 1)[1].strip("/")) == 0:
            raise ValueError(f"{value!r} is not an http(s) URL, e.g. https://api.notion.com")
        return value.rstrip("/")

    def kr_roles(self) -> dict[str, str]:
        return {"match": self.match, **{k: v for k, v in self.properties.model_dump().items() if v}}

    def checkin_roles(self) -> dict[str, str]:
        return {k: v for k, v in self.checkin_properties.model_dump().items() if v}


def check(target: TargetConfig) -> list[str]:
    """Problems visible without Notion: the same database twice, one property named for two things."""
    lines = []
    if target.checkins is not None and target.checkins == target.key_results:
        lines.append("`checkins:` names the key-results database: give the check-ins a database of their own")
    for setting, roles in (("properties", target.kr_roles()), ("checkin_properties", target.checkin_roles())):
        seen: dict[str, str] = {}
        for role, name in roles.items():
            if name in seen:
                first = "`match`" if seen[name] == "match" else seen[name]
                lines.append(f'`{setting}`: {first} and {role} both name the property "{name}": each needs one of its own')
            seen.setdefault(name, role)
    return lines

# ---------------------------------------------------------------------------- connecting


def connect(target: TargetConfig) -> NotionApi:
    token = target.token.reveal().get_secret_value()
    return NotionApi(token, token_source=target.token.describe(), base_url=target.base_url, rate=target.rate_limit)


def _plain(rich: Any) -> str:
    return "".join(str(t.get("plain_text") or "") for t in rich if isinstance(t, dict)).strip() if isinstance(rich, list) else ""


def resolve(client: NotionApi, database_id: str, setting: str) -> DataSource:
    """The data source of the database named by `setting` (or the data source itself, if its id was given)."""
    try:
        database = client.database(database_id)
    except NotionError as exc:
        if exc.status != 404:
            raise
        try:                              # a data source's own id ("Copy data source ID") works too
            source = client.data_source(database_id)
        except NotionError as again:
            if again.status != 404:
                raise
            raise NotionError(f"Notion database {database_id} (`{setting}:`) was not found, or is not shared with the "
                              f"integration: {SHARE_FIX}", fatal=True, status=404) from None
        return _data_source(source, _plain(source.get("title")) or database_id)
    title = _plain(database.get("title")) or database_id
    sources = [s for s in database.get("data_sources") or [] if isinstance(s, dict) and s.get("id")]
    if not sources:
        raise NotionError(f'Notion database "{title}" (`{setting}:`) has no data source okr-sync can read: check it '
                          f"in Notion, or {SHARE_FIX}", fatal=True)
    if len(sources) > 1:
        listed = ", ".join(f'"{s.get("name") or "?"}" {s["id"]}' for s in sources[:5])
        raise NotionError(f'Notion database "{title}" (`{setting}:`) has {len(sources)} data sources ({listed}): put the '
                          f"id of the one to use in `{setting}:` (••• > Manage data sources > Copy data source ID)",
                          fatal=True)
    return _data_source(client.data_source(str(sources[0]["id"])), title)


def _data_source(source: dict[str, Any], title: str) -> DataSource:
    schema = source.get("properties")
    if not isinstance(schema, dict):
        raise NotionError(f'Notion did not show the properties of "{title}": give the integration the Read content '
                          "capability (https://www.notion.so/profile/integrations)", fatal=True)
    return DataSource(str(source.get("id")), title, schema)


def _rows(client: NotionApi, source: DataSource, match: str) -> dict[str, list[dict[str, Any]]]:
    """The key-results rows by their `match` value: one query, paginated."""
    kind = source.properties[match]["type"]
    rows: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for page in client.query(source.id, {"property": match, kind: {"is_not_empty": True}}):
        kr_id = props.text_of((page.get("properties") or {}).get(match))
        if kr_id:
            rows[kr_id].append(page)
    return rows


def _row_of(rows: dict[str, list[dict[str, Any]]], kr_id: str) -> list[dict[str, Any]]:
    """A key result's rows: by its exact id, else by its id in another case (`okr-sync import` lowers ids)."""
    if kr_id in rows:
        return rows[kr_id]
    folded = [pages for key, pages in rows.items() if key.lower() == kr_id.lower()]
    return folded[0] if len(folded) == 1 else [p for pages in folded for p in pages]


def _where(source: DataSource) -> str:
    return f'the Notion database "{source.title}"'


def _schema(source: DataSource, roles: dict[str, str], setting: str) -> None:
    lines = props.problems(source.properties, roles, _where(source), setting)
    if lines:
        raise PublishError("; ".join(lines))

# ---------------------------------------------------------------------------- delivering


class _Run:
    """One batch: the databases resolved and read once, then each key result's check-ins."""

    def __init__(self, client: NotionApi, target: TargetConfig, deliveries: Sequence[Delivery]):
        self.client, self.target = client, target
        self.krs = resolve(client, target.key_results, "key_results")
        _schema(self.krs, target.kr_roles(), "properties")
        self.checkins: DataSource | None = None
        self.seen: dict[tuple[str, Any], list[float]] = defaultdict(list)   # (kr, minute) -> values there
        if target.checkins is not None:
            self.checkins = resolve(client, target.checkins, "checkins")
            _schema(self.checkins, target.checkin_roles(), "checkin_properties")
            self.seen = self._checkins_there(deliveries)
        self.rows = _rows(client, self.krs, target.match)

    def _checkins_there(self, deliveries: Sequence[Delivery]) -> dict[tuple[str, Any], list[float]]:
        """The check-in rows already around the times being delivered, by (key result, minute): one query."""
        assert self.checkins is not None
        roles = self.target.checkin_properties
        times = [d.observed_at for d in deliveries]
        low, high = min(times) - timedelta(days=1), max(times) + timedelta(days=1)    # a day's slack: time zones
        window: dict[str, Any] = {"and": [
            {"property": roles.date, "date": {"on_or_after": props.date(low)["date"]["start"]}},
            {"property": roles.date, "date": {"on_or_before": props.date(high)["date"]["start"]}}]}
        krs = sorted({d.kr_id for d in deliveries})
        if len(krs) <= MAX_OR:                       # a rerun's few key results: read only their rows
            kind = self.checkins.properties[roles.kr]["type"]
            window["and"].append({"or": [{"property": roles.kr, kind: {"equals": k}} for k in krs]})
        seen: dict[tuple[str, Any], list[float]] = defaultdict(list)
        for page in self.client.query(self.checkins.id, window):
            values = page.get("properties") or {}
            kr_id, when = props.text_of(values.get(roles.kr)), props.date_of(values.get(roles.date))
            value = props.number_of(values.get(roles.value))
            if kr_id and when and value is not None:
                seen[(kr_id, props.minute(when))].append(value)
        return seen

    def key_result(self, kr_id: str, batch: list[Delivery]) -> dict[int, DeliveryResult]:
        """Deliver one key result's check-ins (oldest first): a check-in row each, then its row the latest."""
        pages = _row_of(self.rows, kr_id)
        if not pages:
            return {d.id: failed(f'no row of {_where(self.krs)} has "{self.target.match}" {kr_id}: add one (or give '
                                 "the key result `publish: false`)") for d in batch}
        if len(pages) > 1:
            return {d.id: failed(f'{len(pages)} rows of {_where(self.krs)} have "{self.target.match}" {kr_id}: delete '
                                 "or change all but one") for d in batch}
        missing = self._missing_options(batch)
        if missing:
            return {d.id: failed(missing) for d in batch}
        results: dict[int, DeliveryResult] = {}
        for d in batch:
            try:
                self._checkin(d)
            except NotionError as exc:
                if exc.fatal:
                    raise
                results[d.id] = failed(str(exc))
        outcome = self._row(pages[0], batch)
        for d in batch:
            results.setdefault(d.id, outcome if d is batch[-1] else _as_latest(outcome, d))
        return results

    def _missing_options(self, batch: list[Delivery]) -> str | None:
        """A status okr-sync must show that the Status property has no option for (a select's new option
        would be created with the wrong colour, a status's cannot be): the line saying what to add."""
        for source, name in ((self.krs, self.target.properties.status),
                             (self.checkins, self.target.checkin_properties.status)):
            if source is None or name is None:
                continue
            prop = source.properties[name]
            wanted = [batch[-1]] if source is self.krs else batch
            for d in wanted:
                if d.status and props.option_for(prop, d.status) is None:
                    label = props.STATUS_OPTIONS.get(d.status, d.status)
                    return (f'the {props.SHOWN[prop["type"]]} property "{name}" of {_where(source)} has no option '
                            f'"{label}": add it in Notion (okr-sync uses {", ".join(props.STATUS_OPTIONS.values())})')
        return None

    def _checkin(self, d: Delivery) -> None:
        if self.checkins is None:
            return
        key = (d.kr_id, props.minute(d.observed_at))
        if any(policy.same_value(v, d.value) for v in self.seen.get(key, ())):
            return                        # delivered before (a run that died before recording it)
        roles, schema = self.target.checkin_properties, self.checkins.properties
        values: dict[str, Any] = {roles.kr: props.text(schema[roles.kr]["type"], d.kr_id),
                                  roles.value: props.number(d.value), roles.date: props.date(d.observed_at)}
        title = props.title_property(schema)
        if title and title != roles.kr:
            values[title] = props.text("title", f"{d.kr_id} {props.minute(d.observed_at):%Y-%m-%d %H:%M} UTC")
        values.update(self._extras(d, schema, roles.progress, roles.status, roles.link))
        self.client.create_page(self.checkins.id, values, f"add the check-in row of {d.kr_id} to {_where(self.checkins)}")
        self.seen[key].append(d.value)

    def _extras(self, d: Delivery, schema: dict[str, Any], progress: str | None, status: str | None,
                link: str | None) -> dict[str, Any]:
        values: dict[str, Any] = {}
        if progress and d.progress is not None:
            values[progress] = props.number(round(d.progress, 6))
        if status and d.status:
            values[status] = props.choice(schema[status]["type"], props.option_for(schema[status], d.status) or d.status)
        if link and d.link and len(d.link) <= props.MAX_TEXT:
            values[link] = props.url(d.link)
        return values

    def _row(self, page: dict[str, Any], batch: list[Delivery]) -> DeliveryResult:
        """The key result's row shows the latest check-in, unless it shows a newer manual value."""
        d = batch[-1]
        roles = self.target.properties
        shown = page.get("properties") or {}
        tool_value = props.number_of(shown.get(roles.value))
        if tool_value is not None and any(policy.same_value(tool_value, x.value) for x in batch):
            current: policy.Current | None = policy.Current(tool_value, manual=False)   # okr-sync's own value
        else:
            current = policy.in_tool(tool_value, props.edited_by_then(page), last_sent_value=d.last_sent_value,
                                     last_sent_at=d.last_sent_at, observed_at=d.observed_at)
        if policy.decide(d.value, current, d.on_manual) == "kept_manual":
            assert current is not None
            return kept_manual(d, current.value)
        wanted = {roles.value: props.number(d.value)}
        if roles.updated:
            wanted[roles.updated] = props.date(d.observed_at)
        wanted.update(self._extras(d, self.krs.properties, roles.progress, roles.status, roles.link))
        changes = {name: value for name, value in wanted.items() if _differs(shown.get(name), value)}
        if changes:
            try:
                self.client.update_page(str(page["id"]), changes, f"update the row of {d.kr_id} in {_where(self.krs)}")
            except NotionError as exc:
                if exc.fatal:
                    raise
                return failed(str(exc))
        return delivered(d)


def _as_latest(outcome: DeliveryResult, d: Delivery) -> DeliveryResult:
    """An older check-in of the same key result in one batch: its row shows the latest one's outcome."""
    if outcome.outcome == "kept_manual":
        return kept_manual(d, outcome.tool_value if outcome.tool_value is not None else d.value)
    return outcome


def _differs(value: Any, wanted: dict[str, Any]) -> bool:
    """Whether a page's value differs from the one about to be sent (so a write would change it)."""
    kind, body = next(iter(wanted.items()))
    if kind == "number":
        have = props.number_of(value)
        return have is None if body is None else (have is None or not policy.same_value(have, body))
    if kind in ("select", "status"):
        return props.choice_of(value) != body["name"]
    if kind == "date":
        have = props.date_of(value)
        return have is None or props.minute(have) != props.minute(props.parse_time(body["start"]))  # type: ignore[arg-type]
    if kind == "url":
        return props.url_of(value) != body
    return True


def deliver(client: NotionApi, target: TargetConfig, deliveries: Sequence[Delivery]) -> dict[int, DeliveryResult]:
    """Every pending check-in of this target, oldest first: see the module docstring."""
    if not deliveries:
        return {}
    run = _Run(client, target, deliveries)
    by_kr: dict[str, list[Delivery]] = defaultdict(list)
    for d in deliveries:
        by_kr[d.kr_id].append(d)
    results: dict[int, DeliveryResult] = {}
    stop: NotionError | None = None
    for kr_id, batch in by_kr.items():
        if stop is None:
            try:
                results.update(run.key_result(kr_id, batch))
                continue
            except NotionError as exc:
                if exc.fatal:
                    stop = exc
                else:
                    results.update({d.id: failed(str(exc)) for d in batch})
                    continue
        results.update({d.id: failed(str(stop)) for d in batch})
    return results

# ---------------------------------------------------------------------------- checking and importing


def probe(client: NotionApi, target: TargetConfig, key_results: Sequence[tuple[str, str | None]]) -> list[str]:
    """`okr-sync publish --check`: access to both databases, their properties and status options, and a
    row for every mapped key result."""
    krs = resolve(client, target.key_results, "key_results")
    lines = props.problems(krs.properties, target.kr_roles(), _where(krs), "properties")
    lines += _option_lines(krs, target.properties.status)
    if target.checkins is not None:
        checkins = resolve(client, target.checkins, "checkins")
        lines += props.problems(checkins.properties, target.checkin_roles(), _where(checkins), "checkin_properties")
        lines += _option_lines(checkins, target.checkin_properties.status)
    if target.match not in krs.properties or krs.properties[target.match].get("type") not in props.TYPES["match"]:
        return lines
    rows = _rows(client, krs, target.match)
    for kr_id, _ in key_results:
        found = _row_of(rows, kr_id)
        if not found:
            lines.append(f'{kr_id}: no row of {_where(krs)} has "{target.match}" {kr_id}: add one')
        elif len(found) > 1:
            lines.append(f'{kr_id}: {len(found)} rows of {_where(krs)} have "{target.match}" {kr_id}: keep one')
    return lines


def _option_lines(source: DataSource, name: str | None) -> list[str]:
    prop = source.properties.get(name) if name else None
    if not isinstance(prop, dict) or prop.get("type") not in props.TYPES["status"]:
        return []
    missing = props.missing_options(prop)
    if not missing:
        return []
    return [f'the {props.SHOWN[prop["type"]]} property "{name}" of {_where(source)} has no option '
            f'{", ".join(repr(m) for m in missing)}: add {"it" if len(missing) == 1 else "them"} in Notion']


def import_okrs(client: NotionApi, target: TargetConfig) -> list[ImportedObjective]:
    """The key-results database's rows as a starter config: ids from the `match` property (else from the
    title), titles, and baseline and target from Number properties named Baseline and Target; grouped by
    an Objective property (Select or Text) if there is one, else one objective named after the database."""
    source = resolve(client, target.key_results, "key_results")
    schema = source.properties
    title_name = props.title_property(schema)

    def named(word: str, kinds: tuple[str, ...]) -> str | None:
        return next((n for n, p in schema.items() if n.strip().lower() == word and isinstance(p, dict)
                     and p.get("type") in kinds), None)
    baseline, target_name = named("baseline", ("number",)), named("target", ("number",))
    unit = named("unit", ("rich_text", "select"))
    objective = named("objective", ("select", "rich_text"))
    groups: dict[str, list[ImportedKeyResult]] = defaultdict(list)
    for page in client.query(source.id):
        values = page.get("properties") or {}
        title = props.text_of(values.get(title_name)) if title_name else None
        kr_id = props.text_of(values.get(target.match)) or title
        if not kr_id:
            continue
        groups[(props.text_of(values.get(objective)) if objective else None) or source.title].append(ImportedKeyResult(
            id=kr_id, title=title or kr_id,
            baseline=props.number_of(values.get(baseline)) if baseline else None,
            target=props.number_of(values.get(target_name)) if target_name else None,
            unit=props.text_of(values.get(unit)) if unit else None))
    return [ImportedObjective(id=name, title=name, key_results=krs) for name, krs in groups.items()]


__all__ = ["TYPE", "NEEDS_EXTERNAL_ID", "TargetConfig", "check", "connect", "deliver", "probe", "import_okrs"]
