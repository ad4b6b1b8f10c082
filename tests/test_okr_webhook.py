"""The `webhook` publish target against a real local receiver (tests/webhook_receiver.py): signed JSON documents
verified exactly as docs/publish/webhook.md tells receivers to (its Python snippet, run as written, and its
Node snippet when node is installed), the JSON Schema the docs publish, batching, retries, faults, secrecy."""
from __future__ import annotations

import json
import re
import shutil
import sqlite3
import subprocess
import time

import jsonschema
import pytest

from conftest import REPO
from connectors import okr_webhook
from connectors.sql_store import open_store
from okrsync import delivery, publish
from okrsync.config import load_plan
from okrsync.engine import RunOptions, Services, sync
from okrsync.registry import Registry, default_registry
from webhook_receiver import WebhookReceiver

DOCS = REPO / "docs" / "publish" / "webhook.md"
TARGETS = Registry({"webhook": okr_webhook}, kind="publish target", problems=publish.contract_problems)
SECRET = "whsec-0123456789abcdef0123456789abcdef"
CANARY = "hook-path-canary-5f1e9a"


@pytest.fixture
def hook(monkeypatch):
    with WebhookReceiver(path=f"/hooks/catch/123/{CANARY}/") as receiver:
        monkeypatch.setenv("OKR_HOOK_URL", receiver.url)
        monkeypatch.setenv("OKR_HOOK_SECRET", SECRET)
        yield receiver


def write(tmp_path, values: dict[str, float], extra: str = "") -> str:
    (tmp_path / "m.csv").write_text("name,value\n" + "".join(f"{k},{v}\n" for k, v in values.items()), encoding="utf-8")
    lines = ["period: 2026-Q4", "sources:", "  m: {type: spreadsheet, path: m.csv}", "publish:",
             f'  okr-hook: {{type: webhook, url: "${{OKR_HOOK_URL}}", secret: "${{OKR_HOOK_SECRET}}"{extra}}}',
             "objectives:", "  - id: checkout", "    title: Make checkout fast", "    key_results:"]
    for i, k in enumerate(values):
        lines.append(f"      - {{id: {k}, title: KR {k}, source: m, metric: {{cell: B{i + 2}}}, baseline: 0, target: 100, "
                     "unit: '%'}")
    path = tmp_path / "okrs.yaml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return str(path)


def run(path: str, tmp_path, **options):
    plan = load_plan([path], store=f"sqlite:///{tmp_path / 'okr.db'}", targets=TARGETS)
    return sync(plan, RunOptions(**options), Services(registry=default_registry(), open_store=open_store, targets=TARGETS))


def sent(result) -> dict:
    return result["publish"]["okr-hook"]


def docs_block(heading: str, fence: str) -> str:
    """The first ```fence block after `heading` in docs/publish/webhook.md."""
    text = DOCS.read_text(encoding="utf-8")
    start = text.index(heading)
    match = re.compile(rf"```{fence}\n(.*?)\n```", re.S).search(text, start)
    assert match, f"no ```{fence} block after {heading!r} in {DOCS}"
    return match.group(1)


def verify_as_the_docs_say(body: bytes, signature: str) -> dict:
    namespace: dict = {}
    exec(compile(docs_block("### Python", "python"), str(DOCS), "exec"), namespace)      # the snippet, as written
    return namespace["verify"](SECRET, body, signature)


def test_one_signed_document_per_run_verified_as_the_docs_snippet_does(hook, tmp_path):
    result = run(write(tmp_path, {"nps": 40, "uptime": 97}), tmp_path)
    assert (sent(result)["delivered"], sent(result)["calls"]) == (2, 1)
    ((headers, body),) = hook.received
    doc = verify_as_the_docs_say(body, headers[okr_webhook.SIGNATURE_HEADER])
    jsonschema.validate(doc, okr_webhook.PAYLOAD_SCHEMA, format_checker=jsonschema.FormatChecker())
    assert headers[okr_webhook.IDEMPOTENCY_HEADER] == doc["id"] and headers["Content-Type"].startswith("application/json")
    assert (doc["type"], doc["target"], doc["part"], doc["parts"]) == ("okr-sync.checkins", "okr-hook", 1, 1)
    nps = next(c for c in doc["checkins"] if c["kr_id"] == "nps")
    row = next(r for r in result["key_results"] if r["id"] == "nps")
    assert (nps["value"], nps["baseline"], nps["target"], nps["unit"]) == (40, 0, 100, "%")
    assert (nps["progress"], nps["status"], nps["kind"]) == (row["progress"], row["status"], "automatic")
    assert nps["objective"] == {"id": "checkout", "title": "Make checkout fast"} and nps["link"].startswith("file://")
    assert nps["period"] == {"start": "2026-10-01", "end": "2026-12-31"}
    with pytest.raises(ValueError, match="signature does not match"):
        verify_as_the_docs_say(body.replace(b'"value":40', b'"value":45'), headers[okr_webhook.SIGNATURE_HEADER])

    again = run(write(tmp_path, {"nps": 40, "uptime": 97}), tmp_path)
    assert (sent(again)["delivered"], sent(again)["calls"]) == (0, 0) and len(hook.received) == 1


def test_the_node_snippet_verifies_the_same_document(hook, tmp_path):
    if shutil.which("node") is None:
        pytest.skip("node is not installed: the Node snippet cannot run here")
    run(write(tmp_path, {"nps": 40}), tmp_path)
    ((headers, body),) = hook.received
    (tmp_path / "verify.js").write_text(docs_block("### Node", "js") + """
const fs = require("fs");
const doc = verify(process.env.SECRET, fs.readFileSync(process.argv[2]), process.argv[3]);
console.log(doc.id);
""", encoding="utf-8")
    (tmp_path / "body.json").write_bytes(body)
    signature = headers[okr_webhook.SIGNATURE_HEADER]
    done = subprocess.run(["node", str(tmp_path / "verify.js"), str(tmp_path / "body.json"), signature],
                          env={"SECRET": SECRET, "PATH": "/usr/bin:/bin"}, capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == json.loads(body)["id"]
    bad = subprocess.run(["node", str(tmp_path / "verify.js"), str(tmp_path / "body.json"), "sha256=" + "0" * 64],
                         env={"SECRET": SECRET, "PATH": "/usr/bin:/bin"}, capture_output=True, text=True, timeout=30)
    assert bad.returncode != 0 and "signature does not match" in bad.stderr


def test_the_docs_publish_the_schema_the_code_uses_and_an_example_that_meets_it():
    assert json.loads(docs_block("## The document's JSON Schema", "json")) == okr_webhook.PAYLOAD_SCHEMA
    example = json.loads(docs_block("## An example document", "json"))
    jsonschema.validate(example, okr_webhook.PAYLOAD_SCHEMA, format_checker=jsonschema.FormatChecker())


def test_a_large_run_is_split_into_documents_of_at_most_max_checkins(hook, tmp_path):
    values = {f"kr{i}": i for i in range(5)}
    result = run(write(tmp_path, values, extra=", max_checkins: 2"), tmp_path)
    assert (sent(result)["delivered"], sent(result)["calls"]) == (5, 3)
    docs = [json.loads(body) for _, body in hook.received]
    assert [len(d["checkins"]) for d in docs] == [2, 2, 1] and [(d["part"], d["parts"]) for d in docs] == [(1, 3), (2, 3), (3, 3)]
    keys = [c["idempotency_key"] for d in docs for c in d["checkins"]]
    assert len(set(keys)) == 5 and len({d["id"] for d in docs}) == 3


def test_a_5xx_is_retried_with_the_same_bytes_and_a_down_receiver_gets_them_on_the_next_run(hook, tmp_path, clock):
    hook.answers = [(502, "bad gateway", {})]
    path = write(tmp_path, {"nps": 40})
    retried = run(path, tmp_path)
    assert (sent(retried)["delivered"], sent(retried)["calls"]) == (1, 2) and len(clock.waits) == 1

    write(tmp_path, {"nps": 41})
    hook.answers = [(503, "down", {})] * 4
    down = run(path, tmp_path)
    assert (sent(down)["failed"], sent(down)["calls"]) == (1, 4)
    (line,) = sent(down)["messages"]
    assert line == ("nps: the webhook in environment variable OKR_HOOK_URL failed 4 times (HTTP 503): the check-ins stay "
                    "pending for the next run")
    back = run(path, tmp_path)
    assert sent(back)["delivered"] == 1
    docs = [json.loads(body) for _, body in hook.received]
    assert [c["value"] for d in docs for c in d["checkins"]] == [40, 41]


def test_a_read_timeout_is_not_retried_in_the_run_and_the_next_run_resends_the_same_keys(hook, tmp_path):
    hook.stall = 1.0                             # the receiver takes the document, then answers too late
    path = write(tmp_path, {"nps": 40}, extra=", timeout: 0.3")
    late = run(path, tmp_path)
    assert (sent(late)["failed"], sent(late)["calls"]) == (1, 1)
    assert "did not answer within 0.3 s; not sent again in this run (it may have arrived)" in sent(late)["messages"][0]
    hook.stall = 0.0
    again = run(path, tmp_path)
    assert sent(again)["delivered"] == 1
    waited = time.monotonic() + 5
    while len(hook.received) < 2 and time.monotonic() < waited:      # the stalled answer finishes in the background
        time.sleep(0.05)
    first, second = (json.loads(body) for _, body in hook.received)
    assert first["id"] == second["id"]                               # the receiver dedupes on it ...
    assert first["checkins"][0]["idempotency_key"] == second["checkins"][0]["idempotency_key"]    # ... or on this


def test_the_url_and_the_secret_never_appear_in_messages_logs_or_the_store(hook, tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("OKR_HOOK_URL", hook.url.replace(CANARY, CANARY + "-gone"))      # 404 from the receiver
    with caplog.at_level("DEBUG"):
        result = run(write(tmp_path, {"nps": 40}), tmp_path)
    (line,) = sent(result)["messages"]
    assert "answered HTTP 404 (no_service): nothing receives at that address any more: update the URL in environment " \
           "variable OKR_HOOK_URL" in line
    everything = json.dumps(result, default=str) + caplog.text + (tmp_path / "okr.db").read_bytes().decode("latin-1")
    assert CANARY not in everything and SECRET not in everything and "127.0.0.1" not in line


@pytest.mark.parametrize("url, secret, expected", [
    ("ftp://example.com/hook", SECRET, "the webhook URL in environment variable OKR_HOOK_URL is not an http(s) URL"),
    ("https://example.com/hook", "short-secret", "the webhook secret in environment variable OKR_HOOK_SECRET is shorter "
                                                 "than 16 characters"),
])
def test_a_bad_url_or_a_weak_secret_is_one_line_and_the_checkins_wait(tmp_path, monkeypatch, url, secret, expected):
    monkeypatch.setenv("OKR_HOOK_URL", url)
    monkeypatch.setenv("OKR_HOOK_SECRET", secret)
    result = run(write(tmp_path, {"nps": 40}), tmp_path)
    (line,) = sent(result)["messages"]
    assert line.startswith(f"nps: {expected}") and sent(result)["calls"] == 0
    with sqlite3.connect(tmp_path / "okr.db") as db:
        assert db.execute("SELECT state FROM okr_outbox").fetchall() == [("pending",)]


def test_check_posts_one_signed_ping(hook, tmp_path):
    plan = load_plan([write(tmp_path, {"nps": 40})], store=f"sqlite:///{tmp_path / 'okr.db'}", targets=TARGETS)
    report = delivery.check_targets(plan, TARGETS)["okr-hook"]
    assert (report["problems"], report["calls"]) == ([], 1)
    ((headers, body),) = hook.received
    ping = verify_as_the_docs_say(body, headers[okr_webhook.SIGNATURE_HEADER])
    assert (ping["type"], ping["checkins"]) == ("okr-sync.ping", [])
    jsonschema.validate(ping, okr_webhook.PAYLOAD_SCHEMA)


def test_run_on_the_command_line_posts_once_and_never_shows_the_url(hook, cli, tmp_path):
    from okrsync.registry import default_targets

    if "webhook" not in default_targets():
        pytest.skip("the installed okr-sync does not register the webhook target (pip install -e . registers it)")
    path = write(tmp_path, {"nps": 40})
    first = cli("run", path)
    assert first.exit_code == 0 and "okr-hook (webhook): 1 delivered, 1 call(s)" in first.output
    hook.answers = [(410, "gone", {})]
    write(tmp_path, {"nps": 41})
    gone = cli("run", path)
    assert "answered HTTP 410 (gone): nothing receives at that address any more" in gone.output
    checked = cli("publish", path, "--check")
    assert checked.exit_code == 0 and "okr-hook (webhook): OK" in checked.output
    assert all(CANARY not in r.output and SECRET not in r.output for r in (first, gone, checked))
