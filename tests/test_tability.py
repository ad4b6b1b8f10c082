"""The `tability` publish target against a Tability double over real HTTP (tests/fake_tability.py): check-ins
on outcomes exactly once, a person's newer check-in kept, faults and rate limits, bad settings, --check,
and `okr-sync import tability`."""
from __future__ import annotations

import json
import sqlite3
from datetime import date, datetime, timezone

import pytest
import yaml

from connectors import _tability_client as api
from connectors import tability
from connectors.sql_store import open_store
from fake_tability import FakeTability
from okrsync import delivery, publish, starter
from okrsync.config import load_plan
from okrsync.engine import RunOptions, Services, sync
from okrsync.errors import ConfigError
from okrsync.registry import Registry, default_registry, default_targets

TARGETS = Registry({"tability": tability}, kind="publish target", problems=publish.contract_problems)
WRONG = "wrong-tability-token-987654321"


@pytest.fixture
def fake(clock, monkeypatch):
    with FakeTability() as site:
        clock.follow(site.now, site.advance)            # retry waits move the double's clock, nothing sleeps
        monkeypatch.setenv("TABILITY_TOKEN", site.token)
        yield site


def outcomes(site: FakeTability, n: int) -> list:
    plan = site.add_plan("Company OKRs 2026 Q4")
    return [site.add_outcome(plan, f"Outcome {i}", 0, 100) for i in range(n)]


def write(tmp_path, site: FakeTability, values: dict[str, float], ids: dict[str, str], extra: str = "",
          settings: str | None = None, deadline: float | None = None) -> str:
    (tmp_path / "m.csv").write_text("name,value\n" + "".join(f"{k},{v}\n" for k, v in values.items()), encoding="utf-8")
    settings = settings or f'type: tability, token: "${{TABILITY_TOKEN}}", workspace: acme, base_url: "{site.base_url}"'
    if deadline is not None:
        settings += f", deadline: {deadline}"
    lines = ["period: 2026-Q4", "sources:", "  m: {type: spreadsheet, path: m.csv}", "publish:",
             f"  tability: {{{settings}}}", "objectives:", "  - id: obj", "    title: Checkout", "    key_results:"]
    for i, k in enumerate(values):
        mapping = f", publish: {{tability: {ids[k]}}}" if k in ids else ""
        lines.append(f"      - {{id: {k}, title: KR {k}, source: m, metric: {{cell: B{i + 2}}}, baseline: 0, "
                     f"target: 100{mapping}{extra}}}")
    path = tmp_path / "okrs.yaml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return str(path)


def run(path: str, tmp_path, **options):
    plan = load_plan([path], store=f"sqlite:///{tmp_path / 'okr.db'}", targets=TARGETS)
    services = Services(registry=default_registry(), open_store=open_store, targets=TARGETS)
    return sync(plan, RunOptions(**options), services)


def published(result) -> dict:
    return result["publish"]["tability"]


def test_each_value_becomes_one_checkin_on_its_outcome_and_a_rerun_sends_nothing(fake, tmp_path):
    a, b = outcomes(fake, 2)
    path = write(tmp_path, fake, {"nps": 40, "uptime": 97}, {"nps": a.id, "uptime": b.nano_slug})
    first = run(path, tmp_path)
    assert (published(first)["delivered"], published(first)["failed"], published(first)["calls"]) == (2, 0, 4)
    status = {r["id"]: r["status"] for r in first["key_results"]}
    observed = datetime.fromisoformat(first["key_results"][0]["observed_at"]).date()
    (nps,) = fake.checkins_of(a)
    assert (nps["score"], nps["checkin_date"]) == (40.0, f"{observed.isoformat()}T00:00:00.000Z")
    assert nps["confidence"] == api.CONFIDENCE[status["nps"]]
    assert "40: 40% of the way from 0 to 100" in nps["body"] and "Behind the number: file://" in nps["body"]
    assert tability.key_of(api.parse_checkin(nps)).startswith("okr-sync-")
    assert [c["score"] for c in fake.checkins_of(b)] == [97.0]            # found by its Nano ID

    again = run(path, tmp_path)
    assert (published(again)["delivered"], published(again)["calls"]) == (0, 0)
    write(tmp_path, fake, {"nps": 42, "uptime": 97}, {"nps": a.id, "uptime": b.nano_slug})
    changed = run(path, tmp_path)
    assert (published(changed)["delivered"], published(changed)["calls"]) == (1, 2)
    assert sorted(c["score"] for c in fake.checkins_of(a)) == [40.0, 42.0] and len(fake.checkins_of(b)) == 1


def test_a_newer_checkin_a_person_made_is_kept_unless_the_key_result_says_overwrite(fake, tmp_path):
    (a,) = outcomes(fake, 1)
    path = write(tmp_path, fake, {"nps": 40}, {"nps": a.id})
    run(path, tmp_path)
    fake.advance(3600)
    fake.add_checkin(a, 41, datetime.now(timezone.utc).date(), body="Survey re-run by hand")
    write(tmp_path, fake, {"nps": 43}, {"nps": a.id})
    kept = run(path, tmp_path)
    assert published(kept)["kept_manual"] == 1 and published(kept)["calls"] == 1       # read, nothing written
    assert kept["key_results"][0]["published"] == {"tability": "kept the manual value 41 in tability"}
    assert sorted(c["score"] for c in fake.checkins_of(a)) == [40.0, 41.0]

    write(tmp_path, fake, {"nps": 44}, {"nps": a.id}, extra=", on_manual: overwrite")
    over = run(path, tmp_path)
    assert published(over)["delivered"] == 1
    assert sorted(c["score"] for c in fake.checkins_of(a)) == [40.0, 41.0, 44.0]


def test_a_checkin_tability_took_is_never_sent_twice(fake, tmp_path):
    a, b = outcomes(fake, 2)
    fake.take_then_fail = 1                     # Tability stores the first POST, then answers 502
    path = write(tmp_path, fake, {"nps": 40, "uptime": 97}, {"nps": a.id, "uptime": b.id})
    first = run(path, tmp_path)
    assert published(first)["delivered"] == 2
    assert len(fake.checkins_of(a)) == 1 and len(fake.checkins_of(b)) == 1
    assert published(first)["calls"] == 5       # a: read, POST (502), read again: it is there; b: read, POST

    # a run that died after Tability took its check-ins: the claim expired, the rows are pending again
    with sqlite3.connect(tmp_path / "okr.db") as db:
        db.execute("UPDATE okr_outbox SET state = 'pending', delivered_at = NULL")
    retried = run(path, tmp_path)
    assert published(retried)["delivered"] == 2 and published(retried)["calls"] == 2       # two reads, no POST
    assert len(fake.checkins_of(a)) == 1 and len(fake.checkins_of(b)) == 1


def test_tability_down_leaves_the_checkins_pending_and_the_next_run_delivers_them(fake, tmp_path):
    a, b = outcomes(fake, 2)
    fake.down = True
    path = write(tmp_path, fake, {"nps": 40, "uptime": 97}, {"nps": a.id, "uptime": b.id})
    down = run(path, tmp_path)
    assert down["counts"]["written"] == 2 and published(down)["failed"] == 2
    assert published(down)["calls"] == 4        # the first read, tried 4 times; the batch stops there
    assert all("Tability failed 4 times to read the check-ins of outcome" in m and "(HTTP 503)" in m
               and "stay pending" in m for m in published(down)["messages"])
    with open_store(f"sqlite:///{tmp_path / 'okr.db'}") as store:
        (state,) = store.delivery_states()
        assert (state["pending"], state["failing"]) == (2, 2)
    write(tmp_path, fake, {"nps": 41, "uptime": 97}, {"nps": a.id, "uptime": b.id})
    assert published(run(path, tmp_path))["failed"] == 3            # still down: nps has two check-ins waiting
    fake.down = False
    back = run(path, tmp_path)
    assert published(back)["delivered"] == 3 and published(back)["calls"] == 5      # 2 reads, 3 writes
    assert [c["score"] for c in sorted(fake.checkins_of(a), key=lambda c: c["created_at"])] == [40.0, 41.0]
    assert len(fake.checkins_of(b)) == 1


def test_a_target_deadline_hands_back_what_was_delivered_and_the_rest_follows_next_run(fake, tmp_path):
    krs = outcomes(fake, 30)
    fake.delay = 0.1                            # 60 calls would take 6 s; the target may spend 2
    values = {f"k{i}": i for i in range(30)}
    path = write(tmp_path, fake, values, {f"k{i}": o.id for i, o in enumerate(krs)}, deadline=2)
    slow = run(path, tmp_path)
    done, waiting = published(slow)["delivered"], published(slow)["failed"]
    assert done > 0 and waiting > 0 and done + waiting == 30
    assert all("deadline" in m and "pending" in m for m in published(slow)["messages"])
    fake.delay = 0.0
    rest = run(path, tmp_path)
    assert published(rest)["delivered"] == waiting
    assert sorted(len(fake.checkins_of(o)) for o in krs) == [1] * 30                  # each once, none twice


def test_the_rate_limit_is_honoured_by_waiting_as_long_as_retry_after_says(fake, tmp_path, clock):
    fake.rate_limit = (3, 10.0)                 # 3 requests per 10 s
    krs = outcomes(fake, 3)
    path = write(tmp_path, fake, {f"k{i}": 10 * i for i in range(3)}, {f"k{i}": o.id for i, o in enumerate(krs)})
    result = run(path, tmp_path)
    assert published(result)["delivered"] == 3
    assert fake.limited >= 1 and fake.max_in_window <= 3
    assert clock.waits and all(w == int(w) and 1 <= w <= 10 for w in clock.waits)      # Retry-After, to the second
    assert published(result)["calls"] == 6 + fake.limited


def test_an_unknown_outcome_fails_only_its_key_result(fake, tmp_path):
    (a,) = outcomes(fake, 1)
    path = write(tmp_path, fake, {"nps": 40, "ghost": 5}, {"nps": a.id, "ghost": "nope1234"})
    result = run(path, tmp_path)
    assert published(result)["delivered"] == 1 and published(result)["failed"] == 1
    (line,) = published(result)["messages"]
    assert line.startswith("ghost: Tability has no outcome nope1234 in workspace `acme` (HTTP 404): check the key "
                           "result's `publish:` id")


def test_a_refused_token_fails_the_batch_in_one_line_and_is_never_shown(fake, tmp_path, monkeypatch):
    outcomes_ = outcomes(fake, 2)
    fake.echo_auth = True                       # the server repeats the Authorization header it got
    monkeypatch.setenv("TABILITY_TOKEN", WRONG)
    path = write(tmp_path, fake, {"nps": 40, "uptime": 97}, {"nps": outcomes_[0].id, "uptime": outcomes_[1].id})
    result = run(path, tmp_path)
    assert published(result)["failed"] == 2 and published(result)["calls"] == 1
    message = published(result)["messages"][0]
    assert message.startswith("nps: Tability refused the token in environment variable TABILITY_TOKEN (HTTP 401")
    assert "https://tability.app/account" in message
    text = json.dumps(result, default=str)
    assert WRONG not in text and "***" in message
    assert WRONG.encode() not in (tmp_path / "okr.db").read_bytes()

    monkeypatch.setenv("TABILITY_TOKEN", fake.token)
    fake.api_access = False
    denied = run(path, tmp_path)
    assert "Tability denied access to workspace `acme` (HTTP 403" in published(denied)["messages"][0]
    assert "\"API access\" setting" in published(denied)["messages"][0]


@pytest.mark.parametrize("settings, expected", [
    ('type: tability, token: "${TABILITY_TOKEN}", workspace: "https://tability.app/acme/plans"',
     "is not a Tability workspace slug or id: write the part of your Tability address after tability.app/ "
     "(from that address: `workspace: acme`)"),
    ("type: tability, token: tab-secret-plain, workspace: acme", "plain-text secrets are not allowed"),
    ('type: tability, token: "${TABILITY_TOKEN}"', "workspace"),
    ('type: tability, token: "${TABILITY_TOKEN}", workspace: acme, base_url: "ftp://x"', "is not an http(s) address"),
])
def test_bad_settings_are_one_line_naming_the_file_and_the_fix(fake, tmp_path, settings, expected):
    (a,) = outcomes(fake, 1)
    path = write(tmp_path, fake, {"nps": 40}, {"nps": a.id}, settings=settings)
    with pytest.raises(ConfigError) as error:
        run(path, tmp_path)
    issue = error.value.issues[0]                # (the key results naming the target then say it is unknown)
    assert issue.file.endswith("okrs.yaml") and issue.line == 5 and issue.kr_id == "publish.tability"
    assert expected in issue.message and "\n" not in issue.message
    assert "tab-secret-plain" not in str(error.value)


def test_check_reports_the_token_and_every_outcome_missing_one_line_each(fake, tmp_path, monkeypatch):
    a, _ = outcomes(fake, 2)
    path = write(tmp_path, fake, {"nps": 40, "ghost": 5, "unmapped": 1}, {"nps": a.id, "ghost": "nope1234"})
    plan = load_plan([path], store=f"sqlite:///{tmp_path / 'okr.db'}", targets=TARGETS)
    report = delivery.check_targets(plan, TARGETS)["tability"]
    assert report["problems"] == [
        "ghost: Tability has no outcome nope1234 in workspace `acme` (HTTP 404): check the key result's `publish:` id "
        "(the outcome's UUID or Nano ID, from its address in Tability) and the target's `workspace:`",
        "unmapped: has no Tability outcome id: add `publish: {<target name>: <outcome id>}` to it, or `publish: false`"]
    assert report["calls"] == 4                 # whoami, plans, two outcomes' check-ins

    monkeypatch.setenv("TABILITY_TOKEN", WRONG)
    (line,) = delivery.check_targets(plan, TARGETS)["tability"]["problems"]
    assert line.startswith("Tability refused the token in environment variable TABILITY_TOKEN (HTTP 401")


def test_import_writes_a_starter_config_of_the_plans_and_their_outcomes(fake, tmp_path):
    plan = fake.add_plan("Company OKRs 2026 Q4")
    fake.add_outcome(plan, "Raise NPS from 30 to 45", 30, 45)
    fake.add_outcome(plan, "Cut p95 latency to 300 ms", 800, 300)
    fake.add_outcome(fake.add_plan("Old plan", archived=True), "Stale", 0, 1)
    fake.per_page = 1                           # pages are followed
    settings = ["token=${TABILITY_TOKEN}", "workspace=acme", f"base_url={fake.base_url}"]
    text, count = starter.import_config(TARGETS, "tability", settings, None, tmp_path)
    doc = yaml.safe_load(text)
    assert count == 2 and doc["publish"]["okr-tability"]["workspace"] == "acme"
    (objective,) = doc["objectives"]
    assert objective["title"] == "Company OKRs 2026 Q4"
    nps, latency = objective["key_results"]
    assert (nps["title"], nps["baseline"], nps["target"]) == ("Raise NPS from 30 to 45", 30.0, 45.0)
    assert (latency["baseline"], latency["target"]) == (800.0, 300.0)
    assert nps["publish"] == {"okr-tability": fake.outcomes[0].nano_slug} and nps["metric"] == {}
    assert fake.token not in text

    one = starter.import_config(TARGETS, "tability", settings + ["plan=Old plan"], None, tmp_path)[0]
    assert [kr["title"] for o in yaml.safe_load(one)["objectives"] for kr in o["key_results"]] == ["Stale"]


def test_okr_sync_import_tability_on_the_command_line(fake, cli):
    if "tability" not in default_targets():
        pytest.skip("the installed okr-sync does not register the tability target (pip install -e . registers it)")
    plan = fake.add_plan("Q4")
    fake.add_outcome(plan, "Raise NPS", 30, 45)
    result = cli("import", "tability", "-s", "token=${TABILITY_TOKEN}", "-s", "workspace=acme",
                 "-s", f"base_url={fake.base_url}")
    assert result.exit_code == 0, result.output
    assert "Raise NPS" in result.output and fake.token not in result.output


# ---------------------------------------------------------------------------- request and answer shapes

DOCUMENTED_LINK = ('<https://api.tability.app/workspaces/:workspaceID/search/outcomes?page=1>; rel="first", '
                   '<https://api.tability.app/workspaces/:workspaceID/search/outcomes?page=12>; rel="last", '
                   '<https://api.tability.app/workspaces/:workspaceID/search/outcomes?page=6>; rel="next", '
                   '<https://api.tability.app/workspaces/:workspaceID/search/outcomes?page=4>; rel="prev"')


def test_the_next_page_is_read_from_the_link_header_as_tability_documents_it():
    assert api.next_page(DOCUMENTED_LINK) == 6
    assert api.next_page(DOCUMENTED_LINK.replace('rel="next"', 'rel="other"')) is None
    assert api.next_page(None) is None


def test_a_checkin_is_sent_with_the_api_token_scheme_and_the_checkin_object(fake, tmp_path):
    (a,) = outcomes(fake, 1)
    seen: list[dict] = []
    original = fake._create

    def spy(handler, outcome, raw):
        seen.append({"auth": handler.headers.get("Authorization"), "body": json.loads(raw)})
        return original(handler, outcome, raw)

    fake._create = spy
    result = run(write(tmp_path, fake, {"nps": 40}, {"nps": a.id}), tmp_path)
    (request,) = seen
    assert request["auth"] == f"API {fake.token}"
    assert set(request["body"]) == {"checkin"}
    assert set(request["body"]["checkin"]) == {"score", "checkin_date", "confidence", "body"}
    assert request["body"]["checkin"]["checkin_date"] == result["key_results"][0]["observed_at"][:10]


def test_checkins_are_read_strictly(fake):
    parsed = api.parse_checkin({"id": "x", "checkin_date": "2023-11-16T00:00:00.000Z", "score": float("nan"),
                                "body": None, "created_at": "2023-11-23T11:27:38.219Z"})
    assert parsed is not None and parsed.score is None and parsed.day == date(2023, 11, 16) and parsed.body == ""
    assert api.parse_checkin(["not", "a", "checkin"]) is None and api.parse_checkin({"score": 1}) is None


def test_run_publish_and_status_on_the_command_line_never_show_the_token(fake, cli, tmp_path, monkeypatch):
    if "tability" not in default_targets():
        pytest.skip("the installed okr-sync does not register the tability target (pip install -e . registers it)")
    a, b = outcomes(fake, 2)
    path = write(tmp_path, fake, {"nps": 40, "uptime": 97}, {"nps": a.id, "uptime": b.id})
    fake.echo_auth = True
    monkeypatch.setenv("TABILITY_TOKEN", WRONG)
    refused = cli("run", path)
    assert "tability (tability): 0 delivered, 2 failed (retried on the next run), 1 call(s)" in refused.output
    assert "Tability refused the token in environment variable TABILITY_TOKEN (HTTP 401" in refused.output
    status = cli("status")
    assert "publish tability: 2 pending" in status.output
    checked = cli("publish", path, "--check")
    assert checked.exit_code == 1 and "tability (tability): 1 problem(s)" in checked.output
    assert all(WRONG not in r.output for r in (refused, status, checked))

    monkeypatch.setenv("TABILITY_TOKEN", fake.token)
    sent = cli("publish", path)
    assert sent.exit_code == 0 and "tability (tability): 2 delivered, 4 call(s)" in sent.output
    assert [len(fake.checkins_of(o)) for o in (a, b)] == [1, 1]
