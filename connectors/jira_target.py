"""Publish target `jira`: each key result's value set in a number field of its Key Result issue.

    publish:
      okr-jira: {type: jira, url: https://jira.acme.com, token: {secret: jira-pat},
                 field: "KR value", comment: on_change}
    objectives:
      - id: checkout
        key_results:
          - id: checkout-nps
            publish: {okr-jira: OKR-12}          # every key result names its issue (NEEDS_EXTERNAL_ID)

Cloud and Data Center, with the Jira source's settings and client: Cloud signs in with `email:` + API
token (basic auth), Data Center with a personal access token (bearer). `field:` is the number field,
by the name Jira shows (KR value) or its id (customfield_10042).

Per run: serverInfo (Cloud or Data Center?), the field list (the field's id and type), ONE search of the
mapped issues (`key in (...)`, fields = the field and `updated`, and `comment` with `comment: on_change`;
Cloud's enhanced search pages 100 issues, Data Center's search 1000), then per issue whose value changes
one `PUT /rest/api/{3|2}/issue/{key}` and, with `comment: on_change`, one comment. Jira has no bulk edit
that sets a different value on each issue (Cloud's bulk edit sets one value for all its issues, runs
asynchronously and needs the global Bulk change permission), so edits go issue by issue, up to
PARALLEL_WRITES at a time.

Manual values: the issue's `updated` time is when it last changed. A value that is not what okr-sync last
wrote there, on an issue changed after okr-sync's last write (our own edit moves `updated` too, and it
happens before that write is recorded), is a person's: kept unless `on_manual: overwrite`.

Exactly once: setting a field is idempotent (a value already there is not written again). A comment
carries the check-in's idempotency key as its last line; before commenting, okr-sync looks for that key
among the issue's comments (from the same search; when the search's page of comments was cut short, from
the issue's newest comments), so a run that died after commenting never comments twice.
"""
from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, Sequence

from pydantic import Field, field_validator

from connectors import jira as jira_source
from connectors._answers import BadNumber, number
from connectors._jira_edit import ISSUE_KEY, IssueRefused, JiraEditor
from connectors._jira_plan import FieldCatalogue, JiraField
from connectors._kr_target import STATUS_LABELS, Group, judge, newest_per_key, settle
from okrsync import deadline, policy
from okrsync.errors import OkrSyncError, SourceError
from okrsync.publish import (Delivery, DeliveryResult, ImportedKeyResult, ImportedObjective, PublishError, delivered,
                             failed, kept_manual)

logger = logging.getLogger(__name__)

TYPE = "jira"
NEEDS_EXTERNAL_ID = True
PARALLEL_WRITES = 4                 # issues written at once (each waits about one round trip)
EPIC_LINK = "Epic Link"             # Data Center's field naming an issue's epic
_JIRA_TIME = "%Y-%m-%dT%H:%M:%S.%f%z"

# ---------------------------------------------------------------------------- config


class TargetConfig(jira_source.SourceConfig):
    """A Jira Cloud or Data Center site (the source's settings) and the number field to set."""

    field: str = Field("KR value", description="The number field on Key Result issues that gets the value: its name "
                                               "as Jira shows it, or its id (customfield_10042)")
    comment: Literal["off", "on_change"] = Field(
        "off", description="on_change: one comment on the issue for each new value, with progress, status and the "
                           "link to the tickets behind it")
    jql: str | None = Field(None, description="`okr-sync import jira` only: the Key Result issues to import, e.g. "
                                              "project = OKR AND issuetype = \"Key Result\"")

    @field_validator("comment", mode="before")
    @classmethod
    def _off(cls, value: Any) -> Any:
        return "off" if value is False else value          # YAML reads a bare `off` as false

    @field_validator("field")
    @classmethod
    def _named(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("is empty: name the number field, e.g. `field: KR value`")
        return value.strip()


def check(target: TargetConfig) -> list[str]:
    """Problems visible without Jira: a Cloud site without `email:`."""
    return jira_source.check(target, [])


def connect(target: TargetConfig) -> JiraEditor:
    """The Jira source's client with the target's writes; the token read now."""
    return jira_source.connect(target, client=JiraEditor)   # type: ignore[return-value]

# ---------------------------------------------------------------------------- reading the issues


@dataclass
class Shown:
    """What an issue shows now: the field's value, when the issue last changed, okr-sync's comments seen."""

    value: float | None
    text: str | None                     # the field holds something that is no number
    updated: datetime | None
    comments: list[str]
    comments_complete: bool


def _parse_time(text: Any) -> datetime | None:
    try:
        return datetime.strptime(str(text), _JIRA_TIME)
    except ValueError:
        return None


def _comment_texts(comments: Any) -> list[str]:
    out = []
    for c in comments if isinstance(comments, list) else []:
        body = c.get("body") if isinstance(c, dict) else None
        out.append(body if isinstance(body, str) else repr(body))   # ADF (v3) shown as its repr: the key is in it
    return out


def _shown(issue: dict[str, Any], field: JiraField) -> Shown:
    fields = issue.get("fields") if isinstance(issue.get("fields"), dict) else {}
    raw = fields.get(field.id)
    try:
        value, text = number(raw), None
    except BadNumber as bad:
        value, text = None, str(bad)
    if value is None and raw not in (None, ""):
        text = text or f"{str(raw)[:40]!r}"
    page = fields.get("comment") if isinstance(fields.get("comment"), dict) else {}
    comments = _comment_texts(page.get("comments"))
    total = page.get("total")
    return Shown(value, text, _parse_time(fields.get("updated")), comments,
                 not isinstance(total, int) or total <= len(comments))


def _field(client: JiraEditor, target: TargetConfig) -> JiraField:
    """The target's number field, from one field-list call; PublishError if there is none or it holds no numbers."""
    try:
        return FieldCatalogue(client.fields()).resolve(target.field)
    except SourceError as error:
        raise PublishError(f"{error} (`field:` of the publish target)") from None

# ---------------------------------------------------------------------------- comments


def _percent(x: float | None) -> str:
    return "–" if x is None else f"{x:.0%}"


def _comment_lines(d: Delivery, field: JiraField) -> list[tuple[str, str | None]]:
    """(text, link) per line of the comment; the last line holds the idempotency key."""
    unit = f" {d.unit}" if d.unit else ""
    lines: list[tuple[str, str | None]] = [
        (f"okr-sync: {field.name} is now {d.value:g}{unit} (from {d.baseline:g} to {d.target_value:g}).", None),
        (f"Progress {_percent(d.progress)}, expected {_percent(d.expected)} by now; status: "
         f"{STATUS_LABELS.get(d.status or '', d.status or 'unknown')}.", None)]
    if d.link:
        lines.append(("Behind the number: ", d.link))
    lines.append((f"okr-sync delivery {d.idempotency_key}", None))
    return lines


def comment_body(d: Delivery, field: JiraField, cloud: bool) -> Any:
    """Atlassian Document Format for Cloud (REST v3), plain text for Data Center (REST v2)."""
    lines = _comment_lines(d, field)
    if not cloud:
        return "\n".join(text + (link or "") for text, link in lines)
    content = []
    for text, link in lines:
        nodes: list[dict[str, Any]] = [{"type": "text", "text": text}]
        if link:
            nodes.append({"type": "text", "text": link, "marks": [{"type": "link", "attrs": {"href": link}}]})
        content.append({"type": "paragraph", "content": nodes})
    return {"type": "doc", "version": 1, "content": content}


def _commented(client: JiraEditor, key: str, shown: Shown, idempotency_key: str) -> bool | IssueRefused:
    """Whether the issue already has this check-in's comment (asks for its newest comments only when the
    search's page of them was cut short)."""
    if any(idempotency_key in text for text in shown.comments):
        return True
    if shown.comments_complete:
        return False
    newest = client.comments(key)
    if isinstance(newest, IssueRefused):
        return newest
    return any(idempotency_key in text for text in _comment_texts(newest))

# ---------------------------------------------------------------------------- deliver


def _refused(key: str, field: JiraField, refusal: IssueRefused, client: JiraEditor, doing: str) -> str:
    said = f": Jira says {refusal.said}" if refusal.said else ""
    if refusal.status == 404:
        return (f"Jira has no issue {key}, or the account behind {client.token_source} cannot see it (HTTP 404): "
                "check the key result's `publish:` id, and that the account can browse that project")
    if refusal.status == 400 and doing == "edit":
        return (f'Jira refused to set "{field.name}" ({field.id}) on {key} (HTTP 400){said}: add the field to the '
                "edit screen of the issue's type, and check the account may edit the issue")
    if refusal.status == 403:
        return (f"Jira refused the {doing} of {key} (HTTP 403){said}: the account behind {client.token_source} needs "
                f"the {'Edit issues' if doing == 'edit' else 'Add comments'} permission in that project")
    return f"Jira refused the {doing} of {key} (HTTP {refusal.status}){said}: it is tried again on the next run"


def _write_one(client: JiraEditor, target: TargetConfig, field: JiraField, group: Group, shown: Shown) -> DeliveryResult:
    """Decide (okrsync.policy), set the field if it changes, comment once if asked."""
    d = group.newest
    if shown.text is not None and d.on_manual != "overwrite":
        return failed(f'{group.key}\'s "{field.name}" holds {shown.text}, not a number: clear it or let okr-sync '
                      "overwrite it (`on_manual: overwrite`)")
    decision, tool_value = judge(d, shown.value, shown.updated)
    if decision == "kept_manual":
        assert tool_value is not None
        return kept_manual(d, tool_value)
    if decision == "written":
        refusal = client.edit(group.key, field.id, d.value)
        if refusal is not None:
            return failed(_refused(group.key, field, refusal, client, "edit"))
    news = d.last_sent_value is None or not policy.same_value(d.value, d.last_sent_value)
    if target.comment == "on_change" and news:
        seen = _commented(client, group.key, shown, d.idempotency_key)
        if isinstance(seen, IssueRefused):
            return failed(f"value set; {_refused(group.key, field, seen, client, 'reading of the comments')}")
        if not seen:
            refusal = client.add_comment(group.key, comment_body(d, field, bool(client.cloud)))
            if refusal is not None:
                return failed(f"value set, comment not added: {_refused(group.key, field, refusal, client, 'comment')}")
    return delivered(d)


def deliver(client: JiraEditor, target: TargetConfig, deliveries: Sequence[Delivery]) -> dict[int, DeliveryResult]:
    """serverInfo, the field list, one search of the issues, then the edits and comments that are due."""
    results: dict[int, DeliveryResult] = {}
    groups = []
    for group in newest_per_key(deliveries, lambda d: (d.external_id or "").strip()):
        if not ISSUE_KEY.fullmatch(group.key):
            results.update(settle(group, failed(f"{group.key!r} is not a Jira issue key (like OKR-12): fix the key "
                                                "result's `publish:` id")))
        elif len(group.kr_ids) > 1:
            results.update(settle(group, failed(f"{group.key} is the issue of several key results "
                                                f"({', '.join(group.kr_ids)}): give each key result its own issue")))
        else:
            groups.append(group)
    if not groups:
        return results
    client.detect()
    field = _field(client, target)
    wanted = [field.id, "updated"] + (["comment"] if target.comment == "on_change" else [])
    try:
        issues, missing = client.issues([g.key for g in groups], wanted)
    except SourceError as error:
        raise PublishError(str(error)) from None
    todo = []
    for group in groups:
        issue = issues.get(group.key)
        if issue is None:
            why = missing.get(group.key, "not found by the search")
            results.update(settle(group, failed(f"Jira has no issue {group.key} ({why.rstrip('.')}), or the account "
                                                f"behind {client.token_source} cannot see it: check the key result's "
                                                "`publish:` id")))
        else:
            todo.append((group, _shown(issue, field)))
    results.update(_write_all(client, target, field, todo))
    return results


def _write_all(client: JiraEditor, target: TargetConfig, field: JiraField,
               todo: list[tuple[Group, Shown]]) -> dict[int, DeliveryResult]:
    """Each issue's writes, up to PARALLEL_WRITES at a time; a failure the whole site shares (401, limits that
    outlast the retries) fails the issues not yet written with it."""
    ends = deadline.current()

    def one(item: tuple[Group, Shown]) -> dict[int, DeliveryResult]:
        group, shown = item
        try:
            with deadline.until(ends):
                return settle(group, _write_one(client, target, field, group, shown))
        except OkrSyncError as error:
            return settle(group, failed(str(error)))

    results: dict[int, DeliveryResult] = {}
    if not todo:
        return results
    with ThreadPoolExecutor(max_workers=min(PARALLEL_WRITES, len(todo)), thread_name_prefix="jira-write") as pool:
        for done in pool.map(one, todo):
            results.update(done)
    return results

# ---------------------------------------------------------------------------- probe and import


def probe(client: JiraEditor, target: TargetConfig, key_results: Sequence[tuple[str, str | None]]) -> list[str]:
    """Access, the field (exists, holds numbers), and each mapped issue: it exists and its edit screen has the
    field (one search with expand=editmeta)."""
    client.detect()
    try:
        field = _field(client, target)
    except PublishError as error:
        return [str(error)]
    problems = []
    keys = {}
    for kr_id, key in key_results:
        if key is None:
            continue
        if not ISSUE_KEY.fullmatch(key.strip()):
            problems.append(f"{kr_id}: {key!r} is not a Jira issue key (like OKR-12): fix its `publish:` id")
        else:
            keys[kr_id] = key.strip()
    if not keys:
        return problems
    issues, missing = client.issues(list(keys.values()), [field.id], expand="editmeta")
    for kr_id, key in keys.items():
        issue = issues.get(key)
        if issue is None:
            problems.append(f"{kr_id}: Jira has no issue {key} ({missing.get(key, 'not found').rstrip('.')}), or the "
                            "account cannot see it: fix its `publish:` id")
            continue
        editable = (issue.get("editmeta") or {}).get("fields") or {}
        if field.id not in editable:
            problems.append(f'{kr_id}: "{field.name}" is not on the edit screen of {key} (or the account may not edit '
                            "it): add the field to the screen of the issue's type, and give the account Edit issues")
    return problems


def import_okrs(client: JiraEditor, target: TargetConfig) -> list[ImportedObjective]:
    """The Key Result issues of `jql:`: key -> publish id, summary -> title; parent (or Data Center's Epic Link)
    -> objective, else one objective for them all."""
    if not target.jql:
        raise PublishError("give the Key Result issues to import: -s 'jql=project = OKR AND issuetype = \"Key Result\"'")
    client.detect()
    epic_field = None
    if not client.cloud:
        epic_field = next((f["id"] for f in client.fields() if f.get("name") == EPIC_LINK), None)
    fields = ["summary", "parent"] + ([epic_field] if epic_field else [])
    issues = [i for page in client.pages(target.jql, fields) for i in page]
    parents: dict[str, str | None] = {}
    owner: dict[str, str | None] = {}
    for issue in issues:
        f = issue.get("fields") or {}
        parent = f.get("parent") if isinstance(f.get("parent"), dict) else None
        key = (parent or {}).get("key") or (f.get(epic_field) if epic_field else None)
        owner[issue["key"]] = key if isinstance(key, str) else None
        if parent and isinstance(parent.get("key"), str):
            parents[parent["key"]] = (parent.get("fields") or {}).get("summary")
        elif isinstance(key, str):
            parents.setdefault(key, None)
    unnamed = [k for k, title in parents.items() if not title]
    if unnamed:
        found, _ = client.issues(unnamed, ["summary"])
        for key in unnamed:
            parents[key] = ((found.get(key) or {}).get("fields") or {}).get("summary")
    objectives: dict[str | None, list[ImportedKeyResult]] = {}
    for issue in issues:
        summary = (issue.get("fields") or {}).get("summary") or issue["key"]
        objectives.setdefault(owner[issue["key"]], []).append(
            ImportedKeyResult(id=issue["key"], title=str(summary), external_id=issue["key"]))
    return [ImportedObjective(id=parent or "jira-key-results",
                              title=(parents.get(parent) or parent) if parent else "Key results from Jira",
                              key_results=krs) for parent, krs in objectives.items()]


__all__ = ["TYPE", "NEEDS_EXTERNAL_ID", "TargetConfig", "check", "connect", "deliver", "probe", "import_okrs",
           "comment_body"]
