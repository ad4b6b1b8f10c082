"""The weekly digest: what it says (from a store with history), its Slack payload, and sending it once
per period to a local webhook receiver (tests/webhook_receiver.py), also when two runs overlap."""
from __future__ import annotations

import threading
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from conftest import EXAMPLE
from connectors.sql_store import open_store
from connectors.webhook import post_json
from okrsync import digest
from okrsync.config import load_plan
from report_history import PERIOD, write_history
from webhook_receiver import WebhookReceiver

DATA = Path(EXAMPLE).parent / "data"
HOOK_PATH = "/services/T0/B0/digest-secret-path"


def _config(write_config, store: str, extra: str = "") -> Path:
    return write_config(f"""
period: 2026-Q4
store: {store}
notify: {{webhook: "${{OKR_DIGEST_HOOK}}", digest: "0 9 * * MON"}}
report: {{out: site, url: "https://okrs.example.com/team/"}}
{extra}
sources:
  survey:  {{type: spreadsheet, path: {DATA / 'survey.csv'}}}
  signups: {{type: spreadsheet, path: {DATA / 'signups.csv'}}}
objectives:
  - id: checkout
    title: Make checkout <fast> & reliable
    key_results:
      - {{id: checkout-nps, title: Raise checkout NPS from 30 to 45, source: survey, metric: {{cell: C7}}, baseline: 30, target: 45}}
      - {{id: weekly-signups, title: Reach 60 self-serve customers a week, source: signups,
          metric: {{column: customers, aggregate: last, where: {{channel: self-serve}}}}, baseline: 30, target: 60}}
""")


@pytest.fixture
def hook(monkeypatch):
    with WebhookReceiver(path=HOOK_PATH) as receiver:
        monkeypatch.setenv("OKR_DIGEST_HOOK", receiver.url)
        yield receiver


# ---------------------------------------------------------------------------- what it says


@pytest.fixture(scope="module")
def history(tmp_path_factory):
    path = tmp_path_factory.mktemp("digest") / "history.db"
    with open_store(f"sqlite:///{path}") as store:
        ids = write_history(store, key_results=12, days=40)
    return f"sqlite:///{path}", ids


def test_the_digest_says_what_moved_with_tickets_and_what_is_at_risk(history):
    url, ids = history
    start = datetime(2026, 10, 1, 7, 0, tzinfo=timezone.utc)
    with open_store(url) as store:
        d = digest.build(store, ids, since=start + timedelta(days=32), now=start + timedelta(days=40), title="OKR digest · t.yaml")
        before = {k: next(c for c in reversed(store.history(k)) if c.observed_at <= start + timedelta(days=32)) for k in ids}
    moved = {m.kr.id: m for m in d.moved}
    assert set(moved) == {k for k in ids if before[k].value != d.key_results[ids.index(k)].value}
    assert moved["kr-000"].tickets is not None and moved["kr-000"].tickets.moved
    body = digest.text(d)
    assert f"kr-000 (Key result 1: reach 40 from 0): {before['kr-000'].value:g} → " in body
    assert "PAY-" in body.split("Moved since")[1]
    at_risk = [k.id for k in d.at_risk]
    assert at_risk and all(k.status in ("at_risk", "off_track") for k in d.at_risk)
    assert [k.id for k in d.manual] == ["kr-005"] and "entered by hand" in body
    payload = digest.slack_payload(d)
    assert payload["text"] == body
    assert payload["blocks"][0] == {"type": "header", "text": {"type": "plain_text", "text": "OKR digest · t.yaml", "emoji": True}}
    sections = [b["text"]["text"] for b in payload["blocks"] if b["type"] == "section"]
    assert sections[0].startswith("*Moved since Mon Nov 2*\n• *kr-000* Key result 1: reach 40 from 0: ")
    assert "<https://jira.example.com/browse/PAY-" in "".join(sections)       # tickets linked, Slack style
    assert all(len(s) <= 3000 for s in sections) and len(payload["blocks"]) <= 50


def test_a_long_digest_stays_within_slacks_limits(tmp_path):
    with open_store(f"sqlite:///{tmp_path / 'big.db'}") as store:
        ids = write_history(store, key_results=150, days=8)
        d = digest.build(store, ids, since=datetime(2026, 10, 2, tzinfo=timezone.utc),
                         now=datetime(2026, 10, 9, tzinfo=timezone.utc), title="OKR digest · big.yaml")
    payload = digest.slack_payload(d)
    sections = [b["text"]["text"] for b in payload["blocks"] if b["type"] == "section"]
    assert len(payload["blocks"]) <= 50 and all(len(s) <= 3000 for s in sections)
    assert any("more" in s.splitlines()[-1] for s in sections)               # what did not fit is counted
    assert len(d.moved) > 100 and len(payload["text"].splitlines()) > 100   # the fallback keeps it all


def test_slack_control_characters_are_escaped(tmp_path):
    from okrsync.records import CheckinRecord, KeyResultRecord, ObjectiveRecord

    moment = datetime(2026, 11, 20, tzinfo=timezone.utc)
    with open_store(f"sqlite:///{tmp_path / 'x.db'}") as store:
        store.write_sync(run_id="r", started_at=moment, objectives=[ObjectiveRecord("o", "O")],
                         key_results=[KeyResultRecord("k", "o", "NPS <b>&</b> <!channel>", "s", 0, 10,
                                                      period_start=PERIOD.start, period_end=PERIOD.end)],
                         checkins=[CheckinRecord("k", 5, 0.5, 0.6, "on_track", moment, link="https://x.example/a|b>c")],
                         config_files=["x.yaml"], failed=0)
        d = digest.build(store, ["k"], since=moment - timedelta(days=7), now=moment, title="t")
    section = [b["text"]["text"] for b in digest.slack_payload(d)["blocks"] if b["type"] == "section"][0]
    assert "NPS &lt;b&gt;&amp;&lt;/b&gt; &lt;!channel&gt;" in section and "<!channel>" not in section
    assert "<https://x.example/a%7Cb%3Ec|data>" in section


# ---------------------------------------------------------------------------- sending


def test_okr_sync_digest_posts_once_per_period(cli, write_config, tmp_path, hook):
    config = _config(write_config, f"sqlite:///{tmp_path / 'okr.db'}")
    assert cli("run", str(config), "--no-prefect").exit_code == 0
    shown = cli("digest", str(config), "--dry-run")
    assert shown.exit_code == 0 and hook.posts == []
    assert "OKR digest · okrs.yaml" in shown.output and "checkout-nps (Raise checkout NPS from 30 to 45): new, 38" in shown.output
    assert "Report: https://okrs.example.com/team/" in shown.output
    first = cli("digest", str(config))
    assert first.exit_code == 0 and "Sent the digest of okrs.yaml" in first.output
    assert len(hook.posts) == 1
    posted = hook.posts[0]
    assert set(posted) == {"text", "blocks"} and posted["text"] == shown.output.rstrip("\n")
    assert posted["blocks"][-1]["elements"][0]["url"] == "https://okrs.example.com/team/"
    again = cli("digest", str(config))
    assert again.exit_code == 0 and "Not sent: already sent" in again.output
    assert len(hook.posts) == 1
    assert HOOK_PATH not in first.output + again.output


def _overlap(write_config, store: str, hook: WebhookReceiver) -> None:
    plan = load_plan([_config(write_config, store)])
    config = plan.files[0]
    moment = datetime(2026, 11, 23, 9, 0, 30, tzinfo=timezone.utc)
    barrier = threading.Barrier(2)
    outcomes = []

    def one() -> None:
        barrier.wait(timeout=10)
        outcomes.append(digest.send_digest(plan, config, open_store, post_json, now=moment))

    threads = [threading.Thread(target=one) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert sorted(o["sent"] for o in outcomes) == [False, True]
    assert len(hook.posts) == 1
    later = digest.send_digest(plan, config, open_store, post_json, now=moment + timedelta(days=6))
    assert later["sent"] is False and len(hook.posts) == 1                  # still the same period
    nxt = digest.send_digest(plan, config, open_store, post_json, now=moment + timedelta(days=7))
    assert nxt["sent"] is True and nxt["since"] == datetime(2026, 11, 23, 9, 0, tzinfo=timezone.utc)
    assert len(hook.posts) == 2


@pytest.mark.parametrize("where", ["sqlite", "postgresql"])
def test_two_overlapping_runs_send_one_digest_on(where, write_config, tmp_path, hook, request):
    store = request.getfixturevalue("pg_url") if where == "postgresql" else f"sqlite:///{tmp_path / 'okr.db'}"
    _overlap(write_config, store, hook)


def test_a_webhook_failure_leaves_the_period_open_for_the_next_run(cli, write_config, tmp_path, hook):
    config = _config(write_config, f"sqlite:///{tmp_path / 'okr.db'}")
    assert cli("run", str(config), "--no-prefect").exit_code == 0
    hook.answers = [(404, "no_service", {})]
    failed = cli("digest", str(config))
    assert failed.exit_code == 1 and "answered HTTP 404 no_service" in failed.output
    assert HOOK_PATH not in failed.output and hook.posts == []
    retried = cli("digest", str(config))
    assert retried.exit_code == 0 and len(hook.posts) == 1


def test_a_config_without_a_digest_says_how_to_add_one(cli, write_config, tmp_path):
    config = write_config(f"""
period: 2026-Q4
sources: {{survey: {{type: spreadsheet, path: {DATA / 'survey.csv'}}}}}
objectives:
  - id: o
    title: O
    key_results: [{{id: k, title: K, source: survey, metric: {{cell: C7}}, target: 45}}]
""")
    done = cli("digest", str(config))
    assert done.exit_code == 2
    assert "no weekly digest is configured: add `notify: {webhook: ..., digest: \"0 9 * * MON\"}`" in done.output


def test_a_bad_digest_cron_is_a_config_error(cli, write_config):
    config = write_config("""
period: 2026-Q4
notify: {webhook: "${X}", digest: "every monday"}
sources: {survey: {type: spreadsheet, path: data.csv}}
objectives:
  - id: o
    title: O
    key_results: [{id: k, title: K, source: survey, metric: {cell: C7}, target: 45}]
""")
    done = cli("validate", str(config))
    assert done.exit_code == 2
    assert "okrs.yaml:3: cron 'every monday' is not a valid schedule" in done.output


def test_the_last_tick_follows_the_timezone():
    tick = digest.last_tick("0 9 * * MON", "Europe/Berlin", datetime(2026, 11, 25, 12, tzinfo=timezone.utc))
    assert tick == datetime(2026, 11, 23, 8, 0, tzinfo=timezone.utc)               # 09:00 CET
    assert digest.last_tick("0 9 * * MON", "UTC", datetime(2026, 11, 23, 9, 0, tzinfo=timezone.utc)) == \
        datetime(2026, 11, 23, 9, 0, tzinfo=timezone.utc)


# ---------------------------------------------------------------------------- under Prefect


def test_serve_deploys_the_digest_on_its_cron(write_config, tmp_path, monkeypatch):
    from flows.deployments import plan_deployments, to_digest_deployment

    monkeypatch.setenv("OKR_DIGEST_HOOK", "https://hooks.example.com/x")
    config = _config(write_config, f"sqlite:///{tmp_path / 'okr.db'}", 'schedule: {cron: "0 7 * * 1-5", timezone: Europe/Berlin}')
    (plan,) = plan_deployments([config])
    assert (plan.digest.cron, plan.digest.timezone, plan.digest_name) == ("0 9 * * MON", "Europe/Berlin", "okr-digest/okrs-served")
    deployment = to_digest_deployment(plan)
    assert deployment.parameters == {"config_path": str(config.resolve())}
    assert "okr-sync-serve" in deployment.tags        # serve owns it like its sync deployment
    (schedule,) = deployment.schedules
    assert (schedule.schedule.cron, schedule.schedule.timezone) == ("0 9 * * MON", "Europe/Berlin")


def test_the_digest_flow_sends_once_per_period(prefect_harness, cli, write_config, tmp_path, hook):
    from flows.digest import send_okr_digest

    config = _config(write_config, f"sqlite:///{tmp_path / 'okr.db'}")
    assert cli("run", str(config), "--no-prefect").exit_code == 0
    first = send_okr_digest(config_path=str(config))
    second = send_okr_digest(config_path=str(config))
    assert (first["sent"], second["sent"]) == (True, False) and "already sent" in second["reason"]
    assert len(hook.posts) == 1 and hook.posts[0]["text"].startswith("OKR digest · okrs.yaml")


def test_a_store_with_the_first_alert_tables_gains_the_digest_table(tmp_path):
    """A store whose alert tables are at watch version 1 (before the digest) is upgraded in place."""
    import sqlite3

    url = f"sqlite:///{tmp_path / 'old.db'}"
    with open_store(url) as store:
        store.ensure_watch_schema()
    raw = sqlite3.connect(tmp_path / "old.db")
    raw.execute("DROP TABLE okr_digests")
    raw.execute("ALTER TABLE okr_watch DROP COLUMN forecast")          # watch version 3's column
    raw.execute("UPDATE okr_meta SET value = '1' WHERE key = 'watch_schema_version'")
    raw.commit()
    raw.close()
    tick = datetime(2026, 11, 23, 9, tzinfo=timezone.utc)
    with open_store(url) as store:
        assert store.claim_digest("/cfg.yaml", tick, "run-a") is True
        assert store.claim_digest("/cfg.yaml", tick, "run-b") is False
        store.finish_digest("/cfg.yaml", tick, "run-a", delivered=True)
        assert [(d["period"], d["sent_at"] is not None) for d in store.digests("/cfg.yaml")] == [(tick, True)]
    raw = sqlite3.connect(tmp_path / "old.db")
    assert raw.execute("SELECT value FROM okr_meta WHERE key = 'watch_schema_version'").fetchone() == ("3",)
    assert "forecast" in {row[1] for row in raw.execute("PRAGMA table_info(okr_watch)")}
    raw.close()
