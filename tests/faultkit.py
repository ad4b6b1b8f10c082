"""Shared pieces of the fault suite (tests/test_faults*.py): the dataset, the 50-key-result
workload and its expected values, a local site with the connectors' waits redirected to the
server's clock, a sync through the real flow, and the checks every fault must pass."""
from __future__ import annotations

import base64
import json
import math
import re
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import pytest

from connectors import _http
from connectors.sql_store import open_store
from loadserver import LoadServer, generate
from loadserver.workload import github_coverage, workload

CANARY = "canary-F4ult-T0ken-9c1e-never-shown"
EMAIL = "okr-bot@example.com"
SECRETS = (CANARY, base64.b64encode(f"{EMAIL}:{CANARY}".encode()).decode())
DATA = generate(issues=3_000, github_items=1_500, seed=7)
WORK = workload(47, seed=11, dc_share=0.2)
WORK.key_results += github_coverage(48)
EXPECTED: dict[str, float | None] = WORK.expected(DATA)
IDS = [kr.id for kr in WORK.key_results]
_CLASS_NAME = re.compile(r"\b[A-Z][A-Za-z]+(?:Error|Exception)\b|Traceback")


@contextmanager
def local_site(monkeypatch: pytest.MonkeyPatch, **options: Any) -> Iterator[LoadServer]:
    """The load server over DATA, with every retry wait of both connectors recorded in `server.waits`
    and moving the server's clock instead of sleeping (so its rate limits see the time pass)."""
    monkeypatch.setenv("JIRA_API_TOKEN", CANARY)
    monkeypatch.setenv("JIRA_EMAIL", EMAIL)
    monkeypatch.setenv("GITHUB_TOKEN", CANARY)
    with LoadServer(DATA, token=CANARY, email=EMAIL, **options) as server:
        _http.clock.follow(server.now, server.advance)     # the FakeClock tests/conftest.py installed
        yield server


def config_text(server: LoadServer, extra: str = "", **options: Any) -> str:
    return WORK.config(jira_url=server.jira_cloud_url, github_api=server.github_api, jira_dc_url=server.jira_dc_url,
                       **options) + extra


def write_config(tmp_path: Path, server: LoadServer, extra: str = "", **options: Any) -> Path:
    path = tmp_path / "okrs.yaml"
    path.write_text(config_text(server, extra, **options), encoding="utf-8")
    return path


def sync(config: Path, store_url: str, **kw: Any) -> dict[str, Any]:
    from flows.sync import sync_okrs

    return sync_okrs(config_paths=[str(config)], store=store_url, **kw)


def store_url(tmp_path: Path, query: str = "") -> str:
    return f"sqlite:///{tmp_path / 'okr.db'}{query}"

# ---------------------------------------------------------------------------- checks


def is_clear(message: str) -> bool:
    """One line, no Python class names or tracebacks, and it says what to do (after a colon)."""
    return bool(message) and "\n" not in message and not _CLASS_NAME.search(message) and ": " in message \
        and len(message) < 700


def check_run(result: dict[str, Any], *, may_fail: set[str] | None = None, must_fail: dict[str, str] | None = None,
              extra: set[str] = frozenset()) -> dict[str, str]:
    """Every key result is either its expected value or a clear error; returns {kr_id: error}.

    `may_fail`: the key results allowed to fail (None: any); `must_fail`: kr_id -> text its error holds."""
    rows = {r["id"]: r for r in result["key_results"]}
    assert set(rows) == set(IDS) | set(extra)
    failed: dict[str, str] = {}
    for kr_id, row in rows.items():
        if row["error"]:
            failed[kr_id] = row["error"]
            assert is_clear(row["error"]), f"{kr_id}: unclear error {row['error']!r}"
            assert row["outcome"] not in ("written", "unchanged"), kr_id
            continue
        assert kr_id in EXPECTED, kr_id
        assert row["value"] == pytest.approx(EXPECTED[kr_id]), kr_id
        assert row["outcome"] in ("written", "unchanged"), kr_id
    for kr_id, text in (must_fail or {}).items():
        assert kr_id in failed and text in failed[kr_id], (kr_id, failed.get(kr_id))
    if may_fail is not None:
        assert set(failed) <= may_fail | set(must_fail or {}), {k: failed[k] for k in sorted(set(failed) - may_fail)}
    return failed


def check_store(url: str, *, present: set[str] | None = None) -> dict[str, list[float]]:
    """Every stored check-in holds its key result's expected value, once (no duplicates), and
    `present` (default: none required) are all there; returns {kr_id: values}."""
    store = open_store(url)
    try:
        values = {s.kr_id: [c.value for c in store.history(s.kr_id)] for s in store.key_results()}
    finally:
        store.close()
    for kr_id, seen in values.items():
        assert len(seen) <= 1, f"{kr_id} written {len(seen)} times: {seen}"
        if seen:
            assert seen[0] == pytest.approx(EXPECTED[kr_id]), kr_id
    for kr_id in present or set():
        assert values.get(kr_id), f"{kr_id} missing from the store"
    return values


def recover(config: Path, url: str, first: dict[str, Any], server: LoadServer) -> None:
    """With the faults gone, a re-run writes exactly what the faulty run could not, and nothing twice."""
    server.faults.clear()
    failed_before = {r["id"] for r in first["key_results"] if r["error"]}
    again = sync(config, url)
    check_run(again, may_fail=set())
    rows = {r["id"]: r for r in again["key_results"]}
    assert {k for k, r in rows.items() if r["outcome"] == "written"} == failed_before
    check_store(url, present=set(IDS))


def check_secrets(*texts: Any, tmp_path: Path | None = None, caplog: Any = None, capfd: Any = None) -> None:
    """The canary token (and its basic-auth form) appears in no log line, output, result or store file."""
    shown = [json.dumps(t, default=str) if not isinstance(t, str) else t for t in texts]
    if caplog is not None:
        shown += [f"{r.getMessage()} {r.args!r} {r.exc_text or ''}" for r in caplog.records]
    if capfd is not None:
        shown += list(capfd.readouterr())
    if tmp_path is not None:
        shown += [p.read_bytes().decode("latin-1") for p in tmp_path.rglob("*") if p.is_file()]
    blob = "\n".join(shown)
    for secret in SECRETS:
        assert secret not in blob


def artifacts_text() -> str:
    """Every Prefect artifact of the session's runs, as text."""
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        return "\n".join(json.dumps(a.data, default=str) + str(a.description or "") for a in client.read_artifacts())


def backoff_ok(wait: float, attempt: int) -> bool:
    """A backoff wait of the default policy after try `attempt`: first_wait doubled, plus jitter."""
    low = _http.DEFAULT.first_wait * 2 ** (attempt - 1)
    return low <= wait <= low + _http.DEFAULT.jitter + 1e-9 and math.isfinite(wait)
