"""Every registered source connector meets okrsync.contract: a conformance suite in the spirit of
Prefect's BlockStandardTestSuite, run over each entry point of `okr_sync.sources`.

Each connector gives the suite one example (EXAMPLES below): a minimal valid source against a
local fake (tests/fake_*.py) or a tmp file, one valid metric with its value, and one invalid
metric. A connector registered without an example fails `test_every_connector_has_an_example`.
"""
from __future__ import annotations

import socket
import types
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date
from importlib import metadata
from pathlib import Path
from typing import Any, Callable, Iterator, Literal, get_args, get_origin

import pytest

from fake_github import FakeGitHub
from fake_gsheets import FakeGoogle, FakeSpreadsheet, FakeTab
from fake_jira import FakeIssue, FakeJira
from okrsync.contract import REQUIRED, contract_problems, run_batch
from okrsync.errors import SourceError
from okrsync.measure import Measurement, MetricRequest, Period
from okrsync.registry import ENTRY_POINT_GROUP, default_registry

PERIOD = Period(date(2026, 10, 1), date(2026, 12, 31), "2026-Q4")
TOKEN = "contract-CANARY-token-3e9d"
EMAIL = "okr-bot@example.com"
SHEET_ID = "1ContractSheetAbCdEfGhIjKlMnOpQrStUv0123"


@dataclass
class Example:
    source: dict[str, Any]              # the source as written in the config
    metric: dict[str, Any]              # a valid metric ...
    value: float                        # ... and what it measures
    invalid: dict[str, Any]             # a metric the connector's Metric refuses


@contextmanager
def spreadsheet(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Example]:
    path = tmp_path / "bugs.csv"
    path.write_text("Team,Amount\nPayments,3\nSearch,4\n", encoding="utf-8")
    yield Example({"type": "spreadsheet", "path": str(path)}, {"column": "Amount", "aggregate": "sum"}, 7,
                  {"cell": "B2", "aggregate": "sum"})


@contextmanager
def jira(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Example]:
    monkeypatch.setenv("OKR_CONTRACT_TOKEN", TOKEN)
    with FakeJira([FakeIssue(1), FakeIssue(2), FakeIssue(3, project="OPS")], email=EMAIL, token=TOKEN) as fake:
        yield Example({"type": "jira", "url": fake.url, "email": EMAIL, "token": "${OKR_CONTRACT_TOKEN}"},
                      {"jql": "project = PAY"}, 2, {"jql": "project = PAY", "aggregate": "sum"})


@contextmanager
def github(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Example]:
    monkeypatch.setenv("OKR_CONTRACT_TOKEN", TOKEN)
    query = "repo:acme/checkout is:pr is:merged label:perf"
    with FakeGitHub(TOKEN, totals={query: 12}) as fake:
        yield Example({"type": "github", "token": "${OKR_CONTRACT_TOKEN}", "base_url": fake.base_url},
                      {"search": query}, 12, {"search": "repo:acme/checkout label:perf"})


@contextmanager
def google_sheets(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Example]:
    sheet = FakeSpreadsheet(SHEET_ID, "KPIs", [FakeTab(0, "Survey", [["Question", "Score"], ["NPS", "45%"]])])
    with FakeGoogle({SHEET_ID: sheet}, public={SHEET_ID}).serve() as fake:
        yield Example({"type": "google_sheets", "spreadsheet": SHEET_ID, "export_base": fake.export_base},
                      {"cell": "B2"}, 45, {"cell": "B2", "column": "Score"})


EXAMPLES: dict[str, Callable[[Path, pytest.MonkeyPatch], Any]] = {
    "spreadsheet": spreadsheet, "jira": jira, "github": github, "google_sheets": google_sheets}
TYPES = default_registry().types()


@pytest.fixture(params=TYPES)
def source_type(request) -> str:
    return request.param


@pytest.fixture
def connector(source_type: str) -> Any:
    return default_registry().get(source_type)


@pytest.fixture
def example(source_type, tmp_path, monkeypatch) -> Iterator[Example]:
    with EXAMPLES[source_type](tmp_path, monkeypatch) as found:
        yield found


def config_of(connector: Any, example: Example) -> Any:
    return connector.SourceConfig.model_validate(example.source)


def request(kr_id: str, metric: Any) -> MetricRequest:
    return MetricRequest(kr_id, metric, PERIOD, date(2026, 11, 20))


def replaced(connector: Any, **overrides: Any) -> types.SimpleNamespace:
    """The connector with some of its contract functions swapped."""
    return types.SimpleNamespace(**{**{name: getattr(connector, name) for name in REQUIRED}, **overrides})


def test_every_registered_connector_has_an_example():
    assert set(TYPES) >= {"spreadsheet", "jira", "github", "google_sheets"}
    assert set(TYPES) <= set(EXAMPLES), "add an example for each new connector to EXAMPLES"


def test_connector_meets_the_contract(source_type):
    (entry,) = [ep for ep in metadata.entry_points(group=ENTRY_POINT_GROUP) if ep.name == source_type]
    assert contract_problems(entry.load()) == []


def test_entry_point_name_type_and_source_config_type_agree(connector, source_type):
    annotation = connector.SourceConfig.model_fields["type"].annotation
    assert connector.TYPE == source_type
    assert get_origin(annotation) is Literal and get_args(annotation) == (source_type,)


def test_check_needs_no_network(connector, example, monkeypatch):
    attempts: list[Any] = []

    def refuse(sock: socket.socket, address: Any) -> None:
        attempts.append(address)
        raise OSError("network blocked by the test")

    source, metrics = config_of(connector, example), [connector.Metric.model_validate(example.metric)]
    with monkeypatch.context() as blocked:
        blocked.setattr(socket.socket, "connect", refuse)
        problems = connector.check(source, metrics)
    assert problems == [] and attempts == []


def test_one_answer_per_request_in_order_and_an_invalid_metric_fails_alone(connector, example):
    results = run_batch(connector, config_of(connector, example),
                        [request("bad", example.invalid), request("good", example.metric)])
    assert list(results) == ["bad", "good"]
    assert isinstance(results["bad"], SourceError) and str(results["bad"]).startswith("invalid metric: ")
    assert isinstance(results["good"], Measurement) and results["good"].value == pytest.approx(example.value)


def test_a_connect_error_fails_every_key_result_with_its_message(connector, example):
    def refuse(source: Any) -> Any:
        raise SourceError("the token is not set: export OKR_CONTRACT_TOKEN")

    results = run_batch(replaced(connector, connect=refuse), config_of(connector, example),
                        [request("a", example.metric), request("b", example.metric)])
    assert [str(r) for r in results.values()] == ["the token is not set: export OKR_CONTRACT_TOKEN"] * 2
    assert all(isinstance(r, SourceError) for r in results.values())


def test_a_connector_bug_fails_only_its_batch_and_the_client_is_closed(connector, example):
    closed: list[str] = []

    def connect(source: Any) -> Any:
        client = connector.connect(source)
        close = client.close
        client.close = lambda: (closed.append("closed"), close())[1]
        return client

    def crash(client: Any, source: Any, requests: Any) -> Any:
        raise RuntimeError("a bug")

    source = config_of(connector, example)
    broken = run_batch(replaced(connector, connect=connect, answer=crash), source, [request("a", example.metric)])
    message = str(broken["a"])
    assert isinstance(broken["a"], SourceError) and "failed unexpectedly (RuntimeError)" in message and closed == ["closed"]
    again = run_batch(connector, source, [request("a", example.metric)])["a"]
    assert isinstance(again, Measurement) and again.value == pytest.approx(example.value)


def test_measured_calls_add_up_to_the_clients_calls(connector, example):
    clients: list[Any] = []

    def connect(source: Any) -> Any:
        clients.append(connector.connect(source))
        return clients[-1]

    results = run_batch(replaced(connector, connect=connect), config_of(connector, example),
                        [request("a", example.metric), request("b", example.invalid), request("c", example.metric)])
    (client,) = clients
    assert isinstance(results["a"], Measurement) and isinstance(results["c"], Measurement)
    assert client.calls >= 1 and sum(r.calls for r in results.values()) == client.calls
