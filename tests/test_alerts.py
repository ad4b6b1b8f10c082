"""Alerts: the decisions (pure, frozen clock), the webhook connector (responses), and end to end
through the real flow under Prefect's harness, posting to a local receiver on 127.0.0.1 whose
URL lives in a Prefect Secret block stored by `okr-sync secret set`."""
from __future__ import annotations

import json
import shutil
from datetime import datetime, timedelta, timezone
from pathlib import Path
from urllib.parse import quote

import pytest
import requests
import responses
from pydantic import SecretStr

from conftest import EXAMPLE
from connectors import webhook
from connectors.sql_store import open_store
from connectors.webhook import WebhookError, post_json
from flows.sync import sync_okrs  # at import: Prefect sets up logging now, not later over caplog's handler
from okrsync.alerts import (
    ALERT_KINDS,
    Alert,
    Observation,
    Watch,
    decide,
    format_duration,
    parse_duration,
    slack_payload,
)
from fake_jira import FakeIssue, FakeJira
from fast_flows import no_heartbeats  # noqa: F401 - a fixture
from webhook_receiver import WebhookReceiver

T0 = datetime(2026, 11, 20, 12, tzinfo=timezone.utc)
HOUR = timedelta(hours=1)
CANARY = "CANARY-7f3a9c-webhook-path"


def obs(**kw) -> Observation:
    base = dict(kr_id="nps", title="Raise NPS", source="survey", target=45.0, value=38.0, status="on_track",
                progress=0.53, stale_after=timedelta(days=2))
    return Observation(**{**base, **kw})


def run(watch: Watch | None, observation: Observation, moment: datetime, kinds=ALERT_KINDS) -> tuple[Watch, list[str]]:
    new, alerts = decide(watch, observation, moment, frozenset(kinds))
    return new, [a.kind for a in alerts]

# ---------------------------------------------------------------------------- decisions


def test_first_observation_sets_the_baseline_and_sends_nothing():
    watch, kinds = run(None, obs(status="off_track"), T0)
    assert kinds == [] and watch.status == "off_track" and watch.last_success_at == T0 and watch.first_seen_at == T0


def test_status_change_alerts_once_per_change():
    w, _ = run(None, obs(), T0)
    w, kinds = run(w, obs(), T0 + HOUR)
    assert kinds == []
    w, alerts = decide(w, obs(value=33.0, status="off_track", progress=0.2), T0 + 2 * HOUR)
    assert [(a.kind, a.status) for a in alerts] == [("status_change", "off_track")]
    assert alerts[0].message == "*nps* (Raise NPS): on_track → off_track; now 33 (target 45, 20% of the way)"
    w, kinds = run(w, obs(value=33.0, status="off_track"), T0 + 3 * HOUR)
    assert kinds == []
    w, kinds = run(w, obs(value=45.0, status="done"), T0 + 4 * HOUR)
    assert kinds == ["target_reached"]
    _, kinds = run(w, obs(value=44.0, status="at_risk"), T0 + 5 * HOUR)
    assert kinds == ["status_change"]          # falling back from done is a change too


def test_source_failing_twice_in_a_row_alerts_once_per_streak_then_recovery():
    w, _ = run(None, obs(), T0)
    w, kinds = run(w, obs(error="HTTP 503 from Jira", value=None, status=None), T0 + HOUR)
    assert kinds == [] and w.failure_streak == 1 and w.status == "on_track"      # one failure: not yet
    w, alerts = decide(w, obs(error="HTTP 503 from Jira", value=None, status=None), T0 + 2 * HOUR)
    assert [a.message for a in alerts] == ["*nps* (Raise NPS): source `survey` failed 2 runs in a row: HTTP 503 from Jira"]
    w, kinds = run(w, obs(error="HTTP 503 from Jira", value=None, status=None), T0 + 3 * HOUR)
    assert kinds == [] and w.failure_streak == 3
    w, kinds = run(w, obs(), T0 + 4 * HOUR)
    assert kinds == ["recovered"] and w.failure_streak == 0 and not w.failing_alerted
    w, kinds = run(w, obs(error="timeout", value=None, status=None), T0 + 5 * HOUR)
    w, kinds = run(w, obs(error="timeout", value=None, status=None), T0 + 6 * HOUR)
    assert kinds == ["source_failing"]          # a new streak alerts again


def test_stale_after_a_gap_without_success_alerts_once():
    w, _ = run(None, obs(), T0)
    w, alerts = decide(w, obs(error="file not found", value=None, status=None), T0 + timedelta(days=3))
    assert [a.kind for a in alerts] == ["stale"]             # the first failure, but three days late
    assert alerts[0].message == ("*nps* (Raise NPS): no successful update for 3d (stale after 2d); last value 38 "
                                 "at 2026-11-20 12:00 UTC; latest error: file not found")
    w, kinds = run(w, obs(error="file not found", value=None, status=None), T0 + timedelta(days=3, hours=1))
    assert kinds == ["source_failing"]                      # not stale again
    _, kinds = run(w, obs(error="file not found", value=None, status=None, stale_after=None), T0 + timedelta(days=9))
    assert kinds == []


def test_never_measured_key_result_goes_stale_from_when_it_was_first_seen():
    w, kinds = run(None, obs(error="no such sheet", value=None, status=None, stale_after=timedelta(hours=36)), T0)
    assert kinds == [] and w.last_success_at is None
    _, alerts = decide(w, obs(error="no such sheet", value=None, status=None, stale_after=timedelta(hours=36)),
                       T0 + timedelta(hours=37))
    assert sorted(a.kind for a in alerts) == ["source_failing", "stale"]
    assert "never measured" in [a for a in alerts if a.kind == "stale"][0].message


def test_only_the_kinds_asked_for_are_sent_but_state_still_moves():
    w, _ = run(None, obs(), T0, kinds=["stale"])
    w, kinds = run(w, obs(value=33.0, status="off_track"), T0 + HOUR, kinds=["stale"])
    assert kinds == [] and w.status == "off_track"
    w, kinds = run(w, obs(error="x", value=None, status=None), T0 + 2 * HOUR, kinds=["stale", "recovered"])
    w, kinds = run(w, obs(error="x", value=None, status=None), T0 + 3 * HOUR, kinds=["stale", "recovered"])
    _, kinds = run(w, obs(), T0 + 4 * HOUR, kinds=["stale", "recovered"])
    assert kinds == []       # no recovery message for a failure nobody was told about


def test_a_back_dated_run_changes_nothing():
    w, _ = run(None, obs(), T0)
    again, kinds = run(w, obs(value=10.0, status="off_track"), T0 - timedelta(days=5))
    assert again == w and kinds == []


def test_payload_is_slack_text_with_failures_first():
    payload = slack_payload([Alert("a", "target_reached", "A reached", "done"),
                             Alert("b", "status_change", "B slipped", "at_risk"),
                             Alert("c", "source_failing", "C failing")], "okr-sync · team.yaml · 3 alerts")
    assert payload == {"text": "*okr-sync · team.yaml · 3 alerts*\n:x: C failing\n"
                               ":large_yellow_circle: B slipped\n:tada: A reached"}


@pytest.mark.parametrize("text, expected", [("90m", timedelta(minutes=90)), ("36h", timedelta(hours=36)),
                                            ("2d", timedelta(days=2)), ("1w", timedelta(weeks=1)),
                                            ("1d 12h", timedelta(hours=36)), ("2 days", timedelta(days=2))])
def test_durations(text, expected):
    assert parse_duration(text) == expected


@pytest.mark.parametrize("text", ["2", "2x", "0h", "1mo", ""])
def test_bad_durations_say_how_to_write_one(text):
    with pytest.raises(ValueError, match="write e.g. 90m, 36h, 2d or 1w|longer than zero"):
        parse_duration(text)


def test_format_duration():
    assert [format_duration(d) for d in (timedelta(days=3, hours=4, minutes=5), timedelta(minutes=45))] == ["3d 4h", "45min"]

# ---------------------------------------------------------------------------- the webhook connector

HOOK = "https://hooks.slack.com/services/T000/B000/" + CANARY
WHERE = "environment variable OKR_SYNC_WEBHOOK"


@pytest.fixture
def waits(clock) -> list[float]:
    """The retry waits asked for, recorded instead of slept (tests/conftest.py)."""
    return clock.waits


def backed_off(waits: list[float]) -> bool:
    """The waits are the default policy's backoff: doubling from first_wait, plus at most the jitter."""
    first, jitter = webhook.POLICY.first_wait, webhook.POLICY.jitter
    return all(first * 2 ** n <= w <= first * 2 ** n + jitter for n, w in enumerate(waits))


@responses.activate
def test_posts_json_text_once(waits):
    responses.post(HOOK, body="ok", status=200)
    assert post_json(SecretStr(HOOK), {"text": "hi"}, where=WHERE) == 1
    assert json.loads(responses.calls[0].request.body) == {"text": "hi"}
    assert responses.calls[0].request.headers["Content-Type"].startswith("application/json")
    assert waits == []


@responses.activate
def test_rate_limit_waits_as_long_as_retry_after_says(waits):
    responses.post(HOOK, body="rate_limited", status=429, headers={"Retry-After": "7"})
    responses.post(HOOK, body="ok", status=200)
    assert post_json(SecretStr(HOOK), {"text": "hi"}, where=WHERE) == 2
    assert waits == [7.0]


@responses.activate
def test_server_errors_back_off_and_give_up_bounded(waits):
    for _ in range(webhook.POLICY.tries):
        responses.post(HOOK, body="rollup_error", status=500)
    with pytest.raises(WebhookError) as error:
        post_json(SecretStr(HOOK), {"text": "hi"}, where=WHERE)
    assert error.value.calls == webhook.POLICY.tries == len(responses.calls)
    assert len(waits) == 3 and backed_off(waits)
    assert str(error.value) == (f"the alert webhook in {WHERE} failed 4 times (HTTP 500 rollup_error); "
                                "the alerts stay queued for the next run")


@pytest.mark.parametrize("status, body, fix", [
    (404, "channel_not_found", "the webhook or its channel no longer exists"),
    (410, "channel_is_archived", "the webhook or its channel no longer exists"),
    (403, "action_prohibited", "the webhook may not post here"),
    (400, "invalid_payload", "the chat service refused the message body"),
])
@responses.activate
def test_refusals_are_not_retried_and_say_what_to_fix(waits, status, body, fix):
    responses.post(HOOK, body=body, status=status)
    with pytest.raises(WebhookError) as error:
        post_json(SecretStr(HOOK), {"text": "hi"}, where=WHERE)
    message = str(error.value)
    assert message.startswith(f"the alert webhook in {WHERE} answered HTTP {status} {body}: {fix}")
    assert message.endswith(WHERE) and CANARY not in message and "hooks.slack.com" not in message
    assert len(responses.calls) == 1 and waits == []


@responses.activate
def test_connection_failures_are_retried_read_timeouts_are_not(waits):
    responses.post(HOOK, body=requests.exceptions.ConnectionError(f"cannot reach {HOOK}"))
    responses.post(HOOK, body="ok", status=200)
    assert post_json(SecretStr(HOOK), {"text": "hi"}, where=WHERE) == 2 and len(waits) == 1 and backed_off(waits)
    responses.post(HOOK, body=requests.exceptions.ReadTimeout(f"read timeout {HOOK}"))
    with pytest.raises(WebhookError, match="did not answer") as error:
        post_json(SecretStr(HOOK), {"text": "hi"}, where=WHERE)
    assert CANARY not in str(error.value) and error.value.__cause__ is None and len(waits) == 1


@responses.activate
def test_a_refused_connection_fails_at_once(waits):
    responses.post(HOOK, body=requests.exceptions.ConnectionError(f"[Errno 111] Connection refused: {HOOK}"))
    with pytest.raises(WebhookError) as error:
        post_json(SecretStr(HOOK), {"text": "hi"}, where=WHERE)
    assert str(error.value) == f"the alert webhook in {WHERE} could not be called (connection refused): check the URL"
    assert error.value.calls == len(responses.calls) == 1 and waits == []


@responses.activate
def test_a_retry_after_too_long_keeps_the_alerts_queued_and_says_when(waits):
    responses.post(HOOK, body="rate_limited", status=429, headers={"Retry-After": "3600"})
    with pytest.raises(WebhookError) as error:
        post_json(SecretStr(HOOK), {"text": "hi"}, where=WHERE)
    assert str(error.value) == (f"the alert webhook in {WHERE} asked to wait 3600 s (HTTP 429 rate_limited); the "
                                "alerts stay queued: run again after 12:06:40 UTC")   # the fake clock's 11:06:40 + 1 h
    assert waits == [] and error.value.calls == 1


def test_not_a_url_names_where_it_came_from():
    with pytest.raises(WebhookError) as error:
        post_json(SecretStr("hooks.slack.com/" + CANARY), {"text": "hi"}, where=WHERE)
    assert str(error.value) == (f"the alert webhook in {WHERE} is not an http(s) URL: put the webhook's full "
                                "https://... address there")

# ---------------------------------------------------------------------------- end to end

@pytest.fixture
def run_at(monkeypatch):
    """`run_at(moment)`: the engine's clock (okrsync.engine.now) says `moment`, so a run as of it is a run
    happening then (a present-reading metric is measured, not refused as looking back); returns it."""
    from okrsync import engine

    def at(moment: datetime) -> datetime:
        monkeypatch.setattr(engine, "now", lambda: moment)
        return moment
    return at


TEAM = """\
period: 2026-Q4
notify:
  webhook: {{secret: {block}}}
  on: [status_change, target_reached, source_failing, stale, recovered]
stale_after: 2d
sources:
  survey: {{type: spreadsheet, path: data/survey.csv}}
objectives:
  - id: checkout
    title: Make checkout fast and reliable
    key_results:
      - id: checkout-nps
        title: Raise checkout NPS from 30 to 45
        source: survey
        metric: {{cell: C7}}
        baseline: 30
        target: 45
"""


def secret_set(name: str, value: str):
    """`okr-sync secret set NAME` as a user runs it, the value piped to stdin (the CLI in-process)."""
    from typer.testing import CliRunner

    from okrsync.cli import app

    return CliRunner().invoke(app, ["secret", "set", name], input=value + "\n")


@pytest.fixture
def team(tmp_path: Path):
    """A config with `notify:` whose webhook is a Prefect Secret block, and its store."""
    def make(block: str) -> tuple[Path, str]:
        shutil.copytree(EXAMPLE.parent / "data", tmp_path / "data")
        config = tmp_path / "team.yaml"
        config.write_text(TEAM.format(block=block), encoding="utf-8")
        return config, f"sqlite:///{tmp_path / 'okr.db'}"
    return make


def set_nps(config: Path, value: int | str) -> None:
    """Rewrite the survey export with this NPS score ("n/a" makes the key result fail)."""
    (config.parent / "data" / "survey.csv").write_text(f"question,responses,score\nOverall satisfaction,412,4.1\nWould recommend,398,3.9\n"
                          f"Checkout speed,405,3.6\nPayment options,377,4.4\nSupport,120,4.0\nNPS,398,{value}\n")


def test_alerts_once_per_change_and_after_a_gap_without_leaking_the_webhook(no_heartbeats, team, run_at, caplog, capsys):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    caplog.set_level("DEBUG")
    with WebhookReceiver(path=f"/services/T0/B0/{CANARY}") as hook:
        stored = secret_set("okr-alerts-hook", hook.url)
        assert stored.exit_code == 0, stored.output
        assert "Stored Prefect Secret block 'okr-alerts-hook'" in stored.output and CANARY not in stored.output
        config, store = team("okr-alerts-hook")

        def sync(moment: datetime) -> dict:
            return sync_okrs(config_paths=[str(config)], store=store, as_of=run_at(moment))

        results = [sync(T0)]
        assert hook.posts == []                                    # the first run sets a baseline
        set_nps(config, 33)                                        # on_track -> off_track
        results.append(sync(T0 + 2 * HOUR))
        results.append(sync(T0 + 3 * HOUR))                        # still off_track: nothing new
        change = ("*checkout-nps* (Raise checkout NPS from 30 to 45): on_track → off_track; now 33 "
                  "(target 45, 20% of the way)")
        flow_run = results[1]["flow_run"]["url"]           # the run that saw the change, in the Prefect UI
        assert flow_run.endswith(f"/runs/flow-run/{results[1]['flow_run']['id']}")
        assert [p["text"] for p in hook.posts] == [f"*okr-sync · team.yaml · 1 alert*\n:red_circle: {change} · "
                                                   f"<{flow_run}|flow run>"]     # a file:// link is left out
        assert results[1]["alerts"] == {"alerts": [{"kr_id": "checkout-nps", "kind": "status_change", "delivered": True,
                                                    "message": change, "links": [{"label": "flow run", "url": flow_run}]}],
                                        "errors": [], "calls": 1}
        assert results[2]["alerts"] == {"alerts": [], "errors": [], "calls": 0}
        set_nps(config, 45)
        results.append(sync(T0 + 4 * HOUR))
        assert ":tada: *checkout-nps* (Raise checkout NPS from 30 to 45): target reached: 45 (target 45)" in hook.posts[-1]["text"]

        set_nps(config, "n/a")                                     # the source breaks ...
        results.append(sync(T0 + timedelta(days=3, hours=4)))      # ... and nobody noticed for three days
        results.append(sync(T0 + timedelta(days=3, hours=5)))
        set_nps(config, 45)                                        # fixed, still at target
        results.append(sync(T0 + timedelta(days=3, hours=6)))
        texts = [p["text"] for p in hook.posts]
        assert len(texts) == 5, texts
        assert texts[2].startswith("*okr-sync · team.yaml · 1 alert*\n:hourglass: *checkout-nps* (Raise checkout NPS "
                                   "from 30 to 45): no successful update for 3d (stale after 2d); last value 45 at "
                                   "2026-11-20 16:00 UTC; latest error:")
        assert ":x: *checkout-nps* (Raise checkout NPS from 30 to 45): source `survey` failed 2 runs in a row:" in texts[3]
        assert ":white_check_mark:" in texts[4] and "works again after 2 failed runs; now 45" in texts[4]
        assert texts[4].count("\n") == 1                           # the recovery only: status is still done

    with open_store(store) as s:
        log = s.alerts("checkout-nps")
        assert [(a.kind, a.sent_at is not None) for a in log] == [
            ("status_change", True), ("target_reached", True), ("stale", True), ("source_failing", True),
            ("recovered", True)]
        assert [c.value for c in s.history("checkout-nps")] == [38, 33, 45]
    with get_client(sync_client=True) as client:
        artifacts = client.read_artifacts(artifact_filter=ArtifactFilter(
            key=ArtifactFilterKey(any_=["okr-sync-run-team", "okr-sync-summary-team"])))
    assert {a.key for a in artifacts} == {"okr-sync-run-team", "okr-sync-summary-team"}
    # the secret never leaks: not in logs (urllib3 logs the request path at DEBUG), output,
    # run summaries, artifacts or the store
    assert any(r.name == "urllib3.connectionpool" and "POST" in r.getMessage() for r in caplog.records)
    captured = capsys.readouterr()
    assert CANARY not in caplog.text + captured.out + captured.err
    assert CANARY not in json.dumps(results, default=str)
    assert CANARY not in json.dumps([a.data for a in artifacts], default=str)
    assert CANARY.encode() not in Path(store.removeprefix("sqlite:///")).read_bytes()


def test_undelivered_alert_stays_queued_and_goes_out_with_a_later_run(no_heartbeats, team, waits, run_at):
    from prefect.blocks.system import Secret

    config, store = team("okr-queued-hook")                     # the Secret block does not exist yet
    sync_okrs(config_paths=[str(config)], store=store, as_of=run_at(T0))
    set_nps(config, 33)
    no_block = sync_okrs(config_paths=[str(config)], store=store, as_of=run_at(T0 + HOUR))
    assert no_block["counts"]["failed"] == 0 and no_block["counts"]["written"] == 1    # the sync itself succeeded
    assert no_block["alerts"]["alerts"][0]["delivered"] is False
    assert no_block["alerts"]["errors"] == [
        "Prefect Secret block 'okr-queued-hook' could not be read: create it with "
        "`okr-sync secret set okr-queued-hook` or in the Prefect UI"]

    with WebhookReceiver(path="/services/T1/B1/queued") as hook:
        Secret(value=hook.url).save("okr-queued-hook", overwrite=True)
        hook.answers = [(503, "service_unavailable", {"Retry-After": "1"})] * webhook.POLICY.tries
        failed = sync_okrs(config_paths=[str(config)], store=store, as_of=run_at(T0 + 2 * HOUR))
        assert hook.posts == [] and failed["alerts"]["alerts"][0]["delivered"] is False
        assert failed["alerts"]["errors"] == [
            "the alert webhook in Prefect Secret block 'okr-queued-hook' failed 4 times (HTTP 503 service_unavailable); "
            "the alerts stay queued for the next run"]
        assert failed["alerts"]["calls"] == webhook.POLICY.tries and waits == [1.0, 1.0, 1.0]

        later = sync_okrs(config_paths=[str(config)], store=store, as_of=run_at(T0 + 3 * HOUR))
        assert [a["kind"] for a in later["alerts"]["alerts"]] == ["status_change"]
        assert len(hook.posts) == 1 and "on_track → off_track" in hook.posts[0]["text"]
        # it links the flow run that saw the change, not the one that finally delivered it
        assert hook.posts[0]["text"].endswith(f" · <{no_block['flow_run']['url']}|flow run>")
        assert later["flow_run"]["url"] != no_block["flow_run"]["url"]
        sync_okrs(config_paths=[str(config)], store=store, as_of=run_at(T0 + 4 * HOUR))
        assert len(hook.posts) == 1                                          # delivered once, not again
    with open_store(store) as s:
        (alert,) = s.alerts()
        assert alert.attempts == 2 and alert.sent_at is not None


def test_each_alert_links_the_tickets_behind_the_number_and_the_flow_run_that_saw_it(no_heartbeats, tmp_path,
                                                                                  monkeypatch, run_at):
    """A Jira key result (tests/fake_jira.py on 127.0.0.1) that slips, then fails twice: each alert in
    the webhook post links the issue navigator on the key result's latest JQL and the flow run."""
    open_p1 = "project = PAY AND type = Bug AND priority = P1 AND statusCategory != Done"
    open_all = "project = PAY AND type = Bug AND statusCategory != Done"
    issues = [FakeIssue(n, type="Bug", priority="P1") for n in range(1, 11)] + \
             [FakeIssue(n, type="Bug", priority="P2") for n in range(11, 17)]
    monkeypatch.setenv("JIRA_API_TOKEN", "jira-token-for-links")
    config, store = tmp_path / "bugs.yaml", f"sqlite:///{tmp_path / 'okr.db'}"

    with FakeJira(issues, email="okr-bot@example.com", token="jira-token-for-links") as jira, \
            WebhookReceiver(path="/services/T3/B3/links") as hook:
        monkeypatch.setenv("OKR_LINKS_HOOK", hook.url)

        def sync(jql: str, moment: datetime) -> dict:
            config.write_text(f"""period: 2026-Q4
notify: {{webhook: "${{OKR_LINKS_HOOK}}", on: [status_change, source_failing]}}
sources:
  jira: {{type: jira, url: {jira.url}, email: okr-bot@example.com, token: "${{JIRA_API_TOKEN}}"}}
objectives:
  - id: quality
    title: Quality
    key_results:
      - {{id: open-bugs, title: No open bugs, source: jira, baseline: 20, target: 0, metric: {{jql: '{jql}'}}}}
""", encoding="utf-8")
            return sync_okrs(config_paths=[str(config)], store=store, as_of=run_at(moment))

        sync(open_p1, T0)                                   # 10 open: 50% of the way, on track
        slipped = sync(open_all, T0 + HOUR)                 # 16 open: 20% of the way, off track
        sync("projct = PAY", T0 + 2 * HOUR)                 # a typo: Jira refuses the query ...
        failing = sync("projct = PAY", T0 + 3 * HOUR)       # ... twice in a row
    tickets = f"{jira.url}/issues/?jql={quote(open_all, safe='')}"
    assert [p["text"].splitlines()[1] for p in hook.posts] == [
        ":red_circle: *open-bugs* (No open bugs): on_track → off_track; now 16 (target 0, 20% of the way)"
        f" · <{tickets}|tickets> · <{slipped['flow_run']['url']}|flow run>",
        ":x: *open-bugs* (No open bugs): source `jira` failed 2 runs in a row: Jira rejected the JQL 'projct = PAY': "
        "Jira says \"Field 'projct' does not exist or you do not have permission to view it.\": fix the query (try it "
        f"in Jira's issue search first) · <{tickets}|tickets> · <{failing['flow_run']['url']}|flow run>"]
    assert failing["alerts"]["alerts"][0]["links"] == [{"label": "tickets", "url": tickets},
                                                       {"label": "flow run", "url": failing["flow_run"]["url"]}]
    assert slipped["flow_run"]["url"] != failing["flow_run"]["url"]


def test_slack_links_escape_what_slack_reads_as_markup():
    github = "https://github.com/search?q=repo%3Aacme%2Fshop+label%3Aperf&type=pullrequests"
    alert = Alert("perf-prs", "status_change", "*perf-prs* (Merge perf PRs): at_risk → on_track", "on_track",
                  links=(("tickets", github), ("flow run", "https://prefect.example/runs/flow-run/1|2<3>")))
    assert slack_payload([alert], "okr-sync")["text"].splitlines()[1] == (
        ":large_green_circle: *perf-prs* (Merge perf PRs): at_risk → on_track"
        " · <https://github.com/search?q=repo%3Aacme%2Fshop+label%3Aperf&amp;type=pullrequests|tickets>"
        " · <https://prefect.example/runs/flow-run/1%7C2&lt;3&gt;|flow run>")
    assert slack_payload([Alert("x", "stale", "*x*: stale")], "h")["text"] == "*h*\n:hourglass: *x*: stale"


# ---------------------------------------------------------------------------- the store's alert queue


@pytest.fixture
def kr_store(tmp_path: Path):
    from okrsync.records import KeyResultRecord, ObjectiveRecord

    url = f"sqlite:///{tmp_path / 'okr.db'}"
    store = open_store(url)
    store.write_sync(run_id="seed", started_at=T0, objectives=[ObjectiveRecord("o", "O")],
                     key_results=[KeyResultRecord("nps", "o", "Raise NPS", "survey", 30, 45)],
                     checkins=[], config_files=[], failed=0)
    yield store, url
    store.close()


def queue_one(previous: dict) -> tuple[list[Watch], list[Alert]]:
    return [Watch("nps", status="off_track", seen_at=T0)], [Alert("nps", "status_change", "nps slipped", "off_track")]


def nothing_new(previous: dict) -> tuple[list[Watch], list[Alert]]:
    return [previous["nps"]], []


def test_alert_tables_appear_only_when_alerts_are_used(kr_store):
    from sqlalchemy import create_engine, inspect

    store, url = kr_store

    def tables() -> set[str]:
        engine = create_engine(url)
        try:
            return set(inspect(engine).get_table_names())
        finally:
            engine.dispose()

    assert "okr_watch" not in tables() and "okr_alerts" not in tables()
    store.update_watch(run_id="r1", kr_ids=["nps"], decide=queue_one)
    assert {"okr_watch", "okr_alerts"} <= tables()
    assert store.watches() == {"nps": Watch("nps", status="off_track", seen_at=T0)}


def test_a_claimed_alert_is_delivered_by_one_run_and_released_on_failure(kr_store, monkeypatch):
    from connectors import sql_store

    store, _ = kr_store
    (mine,) = store.update_watch(run_id="r1", kr_ids=["nps"], decide=queue_one)
    assert store.update_watch(run_id="r2", kr_ids=["nps"], decide=nothing_new) == []    # r1 holds it
    store.finish_alerts([mine.id], run_id="r1", delivered=False)                        # r1 could not post
    (retry,) = store.update_watch(run_id="r3", kr_ids=["nps"], decide=nothing_new)
    assert (retry.id, retry.attempts) == (mine.id, 1)
    monkeypatch.setattr(sql_store.alert_queue, "ALERT_CLAIM_TIMEOUT", timedelta(0))                 # r3 vanished ...
    (again,) = store.update_watch(run_id="r4", kr_ids=["nps"], decide=nothing_new)     # ... r4 takes over
    store.finish_alerts([again.id], run_id="r3", delivered=True)                        # too late: not r3's now
    assert store.alerts()[0].sent_at is None
    store.finish_alerts([again.id], run_id="r4", delivered=True)
    assert store.alerts()[0].sent_at is not None
    assert store.update_watch(run_id="r5", kr_ids=["nps"], decide=nothing_new) == []


def test_an_alert_no_run_can_deliver_is_given_up_after_a_few_tries(kr_store):
    from connectors.sql_store import ALERT_DELIVERY_ATTEMPTS

    store, _ = kr_store
    claimed = store.update_watch(run_id="r0", kr_ids=["nps"], decide=queue_one)
    for attempt in range(1, ALERT_DELIVERY_ATTEMPTS + 1):
        assert [a.attempts for a in claimed] == [attempt - 1]
        store.finish_alerts([a.id for a in claimed], run_id=f"r{attempt - 1}", delivered=False)
        claimed = store.update_watch(run_id=f"r{attempt}", kr_ids=["nps"], decide=nothing_new)
    assert claimed == [] and store.alerts()[0].attempts == ALERT_DELIVERY_ATTEMPTS

# ---------------------------------------------------------------------------- config


def test_stale_after_and_notify_in_the_config(tmp_path):
    from okrsync.config import load_plan
    from okrsync.errors import ConfigError

    shutil.copytree(EXAMPLE.parent / "data", tmp_path / "data")
    config = tmp_path / "team.yaml"
    text = TEAM.format(block="hook").replace("        target: 45\n", "        target: 45\n        stale_after: 36h\n")
    config.write_text(text + "      - id: nps-copy\n        title: Same NPS\n        source: survey\n"
                             "        metric: {cell: C7}\n        target: 50\n", encoding="utf-8")
    plan = load_plan([config])
    assert {kr.id: kr.stale_after for kr in plan.key_results} == {
        "checkout-nps": timedelta(hours=36), "nps-copy": timedelta(days=2)}       # its own, else the file's
    notify = plan.notify[str(config)]
    assert notify.webhook.describe() == "Prefect Secret block 'hook'"
    assert notify.on == [k for k in ALERT_KINDS if k != "forecast"]   # a bare `on:` is YAML's true: read as `on`

    config.write_text(text.replace("stale_after: 36h", "stale_after: soon").replace("recovered]", "recovery]"),
                      encoding="utf-8")
    with pytest.raises(ConfigError) as error:
        load_plan([config])
    assert [str(i) for i in error.value.issues] == [
        f"{config}:4: `on` is 'recovery': it must be 'status_change', 'target_reached', 'source_failing', "
        "'stale', 'recovered' or 'forecast'",
        f"{config}:18: checkout-nps: `stale_after`: duration 'soon' is not understood: write e.g. 90m, 36h, 2d or 1w"]
