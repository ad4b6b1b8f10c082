"""connectors.google_sheets: cells and column aggregates of a Google spreadsheet, as a service account or public.

Unit tests stub Google with `responses` (token endpoint, Sheets API v4, CSV export; payloads from
tests/fake_gsheets.py, shaped after Google's docs). The credentials are real: a service-account key
made from an RSA key generated here, whose signed assertion the stubbed token endpoint verifies.
The end-to-end test runs the real sync flow against the same fake on a real HTTP server on 127.0.0.1.
"""
from __future__ import annotations

import json
import re
import sqlite3
import types
from datetime import date
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import pytest
import responses
from pydantic import ValidationError

from connectors import _gsheets_client, google_sheets
from connectors.google_sheets import Metric, SourceConfig, check, measure, parse_spreadsheet
from fake_gsheets import (CANARY_TOKEN, CLIENT_EMAIL, READONLY, FakeGoogle, FakeSpreadsheet, FakeTab, api_error,
                          respond, service_account_info, signing_key)
from okrsync.errors import RetriableSourceError, SourceError
from okrsync.measure import Measurement, MetricRequest, Period

PERIOD = Period(date(2026, 10, 1), date(2026, 12, 31), "2026-Q4")
SA_ID = "1SaSheetAbCdEfGhIjKlMnOpQrStUvWxYz0123456789"
PUBLIC_ID = "1PubSheetAbCdEfGhIjKlMnOpQrStUvWxYz012345678"
API = "https://sheets.googleapis.com/v4/spreadsheets"
TOKEN_URI = "https://oauth2.googleapis.com/token"
BUGS_GID, PLAN_GID = 1234567, 555


def url(sheet_id: str, gid: int | None = None) -> str:
    return f"https://docs.google.com/spreadsheets/d/{sheet_id}/edit" + (f"#gid={gid}" if gid is not None else "")


def okr_metrics(sheet_id: str) -> FakeSpreadsheet:
    """Three tabs of displayed values: Survey (cells), Bugs (a table), 'Q4 plan' (a title needing quotes)."""
    survey = [["Question", "Score"], [], ["Asked", "Q4"], [], [], [], ["NPS", "45%"], ["Responses", "1,234"],
              ["Comment", "n/a"]]
    bugs = [["Team", "Amount", "Status"], ["Payments", "10", "open"], ["Search", "5", "open"],
            ["Payments", "", "closed"], ["payments", "7.5", "open"], ["Search", "$1,200", "closed"],
            ["Payments", "2", "closed"]]
    plan = [["Week", "Signups"], ["1", "10"], ["2", "15"]]
    return FakeSpreadsheet(sheet_id, "OKR metrics", [FakeTab(0, "Survey", survey), FakeTab(BUGS_GID, "Bugs", bugs),
                                                     FakeTab(PLAN_GID, "Q4 plan", plan)])


# kr id -> (metric, expected value): the same on both ways of connecting
CASES = {
    "nps": ({"sheet": "Survey", "cell": "B7"}, 45.0),
    "responses": ({"sheet": "Survey", "cell": "B8"}, 1234.0),
    "payments-sum": ({"sheet": "Bugs", "column": "Amount", "aggregate": "sum", "where": {"Team": "Payments"}}, 19.5),
    "bug-count": ({"sheet": "Bugs", "column": "Amount", "aggregate": "count"}, 5.0),
    "bug-max": ({"sheet": "Bugs", "column_letter": "B", "aggregate": "max"}, 1200.0),
    "plan-last": ({"sheet": "Q4 plan", "column": "Signups", "aggregate": "last"}, 15.0),
}


def req(kr_id: str, **metric) -> MetricRequest:
    return MetricRequest(kr_id=kr_id, metric=Metric(**metric), period=PERIOD, as_of=date(2026, 11, 15))


def case_requests() -> list[MetricRequest]:
    return [req(kr_id, **metric) for kr_id, (metric, _) in CASES.items()]


def value_of(result: Measurement | SourceError) -> float:
    assert isinstance(result, Measurement), f"expected a Measurement, got: {result}"
    return result.value


def error_of(result: Measurement | SourceError) -> str:
    assert isinstance(result, SourceError), f"expected a SourceError, got: {result}"
    return str(result)


class Google:
    """Google as `responses` stubs: faults first (`fail`), then the fake answers everything else."""

    def __init__(self, rsps: responses.RequestsMock):
        self.rsps = rsps
        self.fake = FakeGoogle({SA_ID: okr_metrics(SA_ID), PUBLIC_ID: okr_metrics(PUBLIC_ID)},
                               shared={SA_ID}, public={PUBLIC_ID})
        self.opened = False

    def fail(self, method: str, address: str, status: int, body: dict | None = None, *, times: int = 1,
             headers: dict | None = None, content_type: str = "application/json") -> None:
        assert not self.opened, "faults must be stubbed before the first request"
        for _ in range(times):
            if body is None:
                self.rsps.add(method, address, status=status, headers=headers, body=b"", content_type=content_type)
            else:
                self.rsps.add(method, address, status=status, headers=headers, json=body)

    def open(self) -> None:
        if not self.opened:
            for method, host in [("POST", r"oauth2\.googleapis\.com"), ("GET", r"sheets\.googleapis\.com"),
                                 ("GET", r"docs\.google\.com"), ("GET", r"accounts\.google\.com")]:
                self.rsps.add_callback(method, re.compile(rf"https://{host}/.*"), callback=respond(self.fake))
            self.opened = True

    def measure(self, source: SourceConfig, requests: list[MetricRequest]) -> dict[str, Measurement | SourceError]:
        self.open()
        return measure(source, requests)

    def calls(self, part: str = "") -> list[str]:
        return [call.request.url for call in self.rsps.calls if part in call.request.url]


@pytest.fixture
def google():
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        yield Google(rsps)


@pytest.fixture
def waits(clock) -> list[float]:
    """The retry waits asked for, recorded instead of slept (tests/conftest.py)."""
    return clock.waits


def backed_off(waits: list[float], *, after: int = 1) -> bool:
    """The waits are the client's backoff steps from try `after` on: doubling, plus at most the jitter."""
    policy = _gsheets_client.POLICY
    steps = [policy.first_wait * 2 ** (n - 1) for n in range(after, after + len(waits))]
    return all(step <= w <= min(policy.cap, step + policy.jitter) for step, w in zip(steps, waits))


@pytest.fixture
def key_file(tmp_path: Path) -> Path:
    path = tmp_path / "okr-sync-sa.json"
    path.write_text(json.dumps(service_account_info(TOKEN_URI)), encoding="utf-8")
    return path


def sa_source(key: Path | str, spreadsheet: str = url(SA_ID, 0), **settings) -> SourceConfig:
    return SourceConfig.model_validate({"type": "google_sheets", "spreadsheet": spreadsheet,
                                        "service_account": str(key), **settings})


def public_source(spreadsheet: str = url(PUBLIC_ID, 0), **settings) -> SourceConfig:
    return SourceConfig.model_validate({"type": "google_sheets", "spreadsheet": spreadsheet, **settings})


PUBLIC_TABS = {"Survey": 0, "Bugs": BUGS_GID, "Q4 plan": PLAN_GID}

# ---------------------------------------------------------------------------- service account


def test_service_account_reads_every_tab_in_one_batch_get(google, key_file, waits):
    results = google.measure(sa_source(key_file), case_requests())

    assert {k: value_of(v) for k, v in results.items()} == {k: expected for k, (_, expected) in CASES.items()}
    # token + metadata + one values:batchGet for three tabs, and the calls add up to exactly that
    assert [urlparse(u).path for u in google.calls()] == [
        "/token", f"/v4/spreadsheets/{SA_ID}", f"/v4/spreadsheets/{SA_ID}/values:batchGet"]
    assert sum(m.calls for m in results.values()) == 3 and results["nps"].calls == 3
    query = parse_qs(urlparse(google.calls("batchGet")[0]).query)
    assert query["ranges"] == ["'Survey'!B7:B8", "'Bugs'", "'Q4 plan'"]   # a box for cells, whole tabs for columns
    assert query["valueRenderOption"] == ["FORMATTED_VALUE"]
    assert parse_qs(urlparse(google.calls(f"{SA_ID}?")[0]).query)["fields"] == [_gsheets_client.METADATA_FIELDS]
    assert google.fake.scopes == [READONLY]                           # the read-only scope, in a verified assertion
    assert all(c.request.headers["Authorization"] == f"Bearer {CANARY_TOKEN}"
               for c in google.rsps.calls if "sheets.googleapis.com" in c.request.url)
    assert results["nps"].link == f"{url(SA_ID)}#gid=0&range=B7"
    assert results["payments-sum"].link == f"{url(SA_ID)}#gid={BUGS_GID}"
    assert results["nps"].query == "'Survey'!B7"
    assert results["payments-sum"].query == "sum(Amount) in 'Bugs' where Team=Payments"
    assert waits == []


def test_service_account_default_tab_is_the_urls_gid_else_the_first(google, key_file):
    by_gid = google.measure(sa_source(key_file, url(SA_ID, BUGS_GID)), [req("n", column="Amount", aggregate="count")])
    assert value_of(by_gid["n"]) == 5 and by_gid["n"].link == f"{url(SA_ID)}#gid={BUGS_GID}"
    first = measure(sa_source(key_file, SA_ID), [req("nps", cell="B7")])            # a bare id: the first tab
    assert value_of(first["nps"]) == 45 and first["nps"].link == f"{url(SA_ID)}#gid=0&range=B7"


def test_unknown_tab_and_column_and_a_text_cell_fail_alone(google, key_file):
    results = google.measure(sa_source(key_file), [
        req("tab", sheet="Bugz", column="Amount", aggregate="sum"),
        req("column", sheet="bugs", column="Amont", aggregate="sum"),        # tab title matched ignoring case
        req("text", sheet="Survey", cell="B9"),
        req("ok", sheet="Survey", cell="B7"),
        MetricRequest(kr_id="invalid", metric={"cell": "B7", "aggregate": "sum"}, period=PERIOD, as_of=date(2026, 11, 15)),
    ])
    assert error_of(results["invalid"]).startswith("invalid metric: `aggregate:` and `where:` only go with `column:`")
    assert error_of(results["tab"]) == ("Google Sheet \"OKR metrics\": no tab 'Bugz': check `sheet:`; "
                                        "the tabs are 'Survey', 'Bugs', 'Q4 plan'")
    assert 'no column "Amont" in header row 1 on sheet \'Bugs\'; did you mean "Amount"?' in error_of(results["column"])
    assert error_of(results["text"]).startswith("Google Sheet \"OKR metrics\" 'Survey'!B9: \"n/a\" is not a number")
    assert value_of(results["ok"]) == 45
    assert len(google.calls("batchGet")) == 1


def test_not_shared_names_the_service_account(google, key_file):
    google.fail("GET", f"{API}/{SA_ID}", 403, api_error(403, "The caller does not have permission", "PERMISSION_DENIED"))
    results = google.measure(sa_source(key_file), [req("a", cell="B7"), req("b", cell="B8")])
    message = error_of(results["a"])
    assert message == (f"Google Sheet 1SaSheetAb… is not shared with the service account {CLIENT_EMAIL}: open it in Google "
                       f"Sheets, click Share and add {CLIENT_EMAIL} as a Viewer")
    assert error_of(results["b"]) == message and "\n" not in message


def test_calls_of_a_sheet_out_of_reach_are_still_counted(google, key_file):
    """When no key result is measured, the calls spent (token, metadata) ride on the first error."""
    google.fail("GET", f"{API}/{SA_ID}", 403, api_error(403, "The caller does not have permission", "PERMISSION_DENIED"))
    results = google.measure(sa_source(key_file), [req("a", cell="B7"), req("b", cell="B8")])
    assert [results["a"].calls, results["b"].calls] == [len(google.calls()), 0] and len(google.calls()) == 2
    assert str(results["a"]) == str(results["b"])


def test_not_found_and_api_disabled(google, key_file):
    google.fail("GET", f"{API}/{SA_ID}", 404, api_error(404, "Requested entity was not found.", "NOT_FOUND"))
    google.fail("GET", f"{API}/{SA_ID}", 403, api_error(
        403, "Google Sheets API has not been used in project 123 before or it is disabled. Enable it by visiting "
             "https://console.developers.google.com/apis/api/sheets.googleapis.com/overview?project=123 then retry.",
        "PERMISSION_DENIED"))
    missing = google.measure(sa_source(key_file), [req("a", cell="B7")])
    assert error_of(missing["a"]) == (f"spreadsheet {SA_ID} not found: check `spreadsheet:` (copy the URL from the "
                                      "browser's address bar)")
    disabled = measure(sa_source(key_file), [req("a", cell="B7")])
    assert error_of(disabled["a"]).startswith("the Google Sheets API is not enabled in the Google Cloud project of "
                                              f"{CLIENT_EMAIL}: enable it at https://console.developers.google.com/"
                                              "apis/api/sheets.googleapis.com/overview?project=123")


def test_quota_429_is_retried_with_backoff_then_reported_clearly(google, key_file, waits):
    quota = api_error(429, "Quota exceeded for quota metric 'Read requests' and limit 'Read requests per minute per "
                           "user' of service 'sheets.googleapis.com' for consumer 'project_number:123'.",
                      "RESOURCE_EXHAUSTED")
    google.fail("GET", f"{API}/{SA_ID}/values:batchGet", 429, quota, times=_gsheets_client.POLICY.tries)
    results = google.measure(sa_source(key_file), [req("a", cell="B7")])
    message = error_of(results["a"])
    assert isinstance(results["a"], RetriableSourceError)
    assert message.startswith("Google Sheet 1SaSheetAb…, reading the values: Google's read quota is used up "
                              "(HTTP 429: Quota exceeded for quota metric 'Read requests'")
    assert message.endswith(f"gave up after {_gsheets_client.POLICY.tries} attempts: run again later")
    assert len(waits) == 5 and backed_off(waits)                         # 2, 4, 8, 16, 32 s plus jitter
    assert len(google.calls("batchGet")) == _gsheets_client.POLICY.tries  # no retries stacked under ours


def test_retry_after_is_honoured_and_every_attempt_is_counted(google, key_file, waits):
    batch = f"{API}/{SA_ID}/values:batchGet"
    google.fail("GET", batch, 429, api_error(429, "Quota exceeded", "RESOURCE_EXHAUSTED"), headers={"Retry-After": "7"})
    google.fail("GET", batch, 503, api_error(503, "The service is currently unavailable.", "UNAVAILABLE"))
    results = google.measure(sa_source(key_file), [req("a", cell="B7"), req("b", cell="B8")])
    assert value_of(results["a"]) == 45 and value_of(results["b"]) == 1234
    assert waits[0] == 7 and backed_off(waits[1:], after=2)  # Google's Retry-After, then the backoff's 2nd step
    assert sum(m.calls for m in results.values()) == len(google.calls()) == 5     # token, metadata, 3 batchGets


def test_a_retry_after_too_long_is_not_waited_for(google, key_file, waits):
    google.fail("GET", f"{API}/{SA_ID}", 429, api_error(429, "Quota exceeded", "RESOURCE_EXHAUSTED"),
                headers={"Retry-After": "3600"})
    message = error_of(google.measure(sa_source(key_file), [req("a", cell="B7")])["a"])
    assert waits == [] and message.endswith("Google asked to wait 3600 s, longer than okr-sync waits: "
                                            "run again after 12:06:40 UTC")        # the fake clock's 11:06:40 + 1 h


def test_refused_key_and_token_endpoint_down(google, key_file, waits, monkeypatch):
    google.fail("POST", TOKEN_URI, 400, {"error": "invalid_grant", "error_description": "Invalid JWT Signature."})
    refused = google.measure(sa_source(key_file), [req("a", cell="B7")])
    assert error_of(refused["a"]) == (f"Google refused the key of service account {CLIENT_EMAIL} (invalid_grant: "
                                      "Invalid JWT Signature.): the key may have been deleted or the account "
                                      "disabled; create a new JSON key in the Google Cloud console")

    import google.auth._exponential_backoff as backoff
    token_waits: list[float] = []
    monkeypatch.setattr(backoff, "time", types.SimpleNamespace(sleep=token_waits.append))
    before = len(google.calls("/token"))
    with responses.RequestsMock() as down:
        down.add("POST", TOKEN_URI, status=503, json={"error": "unavailable"})
        result = measure(sa_source(key_file), [req("a", cell="B7")])["a"]
        token_calls = len(down.calls)
    assert isinstance(result, RetriableSourceError) and "token endpoint failed" in str(result)
    assert token_calls == 3 and len(token_waits) == 2      # google-auth's own 3 attempts, not wrapped again
    assert waits == [] and len(google.calls("/token")) == before


def test_key_problems_are_clear_and_found_without_network(google, tmp_path, key_file):
    oauth_client = tmp_path / "client.json"
    oauth_client.write_text(json.dumps({"installed": {"client_id": "x", "client_secret": "y"}}))
    not_json = tmp_path / "key.json"
    not_json.write_text("-----BEGIN PRIVATE KEY-----\nMIIE\n")
    cases = {tmp_path / "missing.json": "not found: check `service_account:`",
             oauth_client: "is not a service-account key (it has no client_email, private_key, token_uri)",
             not_json: "is not valid JSON"}
    for path, expected in cases.items():
        source = sa_source(path)
        assert [p for p in check(source, []) if expected in p], check(source, [])
        assert expected in error_of(google.measure(source, [req("a", cell="B7")])["a"])
    assert check(sa_source(key_file), [Metric(sheet="Anything", cell="B7")]) == []    # tabs are found by name
    assert google.calls() == []
    assert "MIIE" not in " ".join(check(sa_source(not_json), []))


def test_key_from_an_environment_variable_as_json_or_as_a_path(google, key_file, monkeypatch):
    monkeypatch.setenv("OKR_GSHEETS_KEY", key_file.read_text())
    in_env = sa_source("${OKR_GSHEETS_KEY}")
    assert isinstance(in_env.service_account, google_sheets.SecretRef)
    assert value_of(google.measure(in_env, [req("a", cell="B7")])["a"]) == 45
    monkeypatch.setenv("OKR_GSHEETS_KEY", str(key_file))
    assert value_of(measure(sa_source("${OKR_GSHEETS_KEY}"), [req("a", cell="B7")])["a"]) == 45
    monkeypatch.delenv("OKR_GSHEETS_KEY")
    assert error_of(measure(sa_source("${OKR_GSHEETS_KEY}"), [req("a", cell="B7")])["a"]) == (
        "environment variable OKR_GSHEETS_KEY is not set: export it before running")


def test_secrets_never_reach_logs_errors_or_results(google, key_file, monkeypatch, caplog, capsys, waits):
    private_pem, _ = signing_key()
    key_lines = [line for line in private_pem.splitlines() if "PRIVATE KEY" not in line]
    monkeypatch.setenv("OKR_GSHEETS_KEY", key_file.read_text())
    google.fail("GET", f"{API}/{SA_ID}/values:batchGet", 503, api_error(503, "unavailable", "UNAVAILABLE"))
    google.fail("GET", f"{API}/{PUBLIC_ID}", 403, api_error(403, "The caller does not have permission", "PERMISSION_DENIED"))
    caplog.set_level("DEBUG")
    outcomes = [google.measure(sa_source("${OKR_GSHEETS_KEY}"), case_requests() + [req("bad", sheet="Nope", cell="A1")]),
                measure(sa_source("${OKR_GSHEETS_KEY}", url(PUBLIC_ID)), [req("a", cell="B7")])]
    assert value_of(outcomes[0]["nps"]) == 45 and "not shared" in error_of(outcomes[1]["a"])
    seen = caplog.text + "".join(capsys.readouterr()) + repr(outcomes) + "".join(str(v) for o in outcomes for v in o.values())
    assert "Google Sheets: HTTP 503 for /v4/spreadsheets/1SaSheetAb…/values:batchGet; retrying in" in caplog.text
    assert CANARY_TOKEN not in seen
    assert not [line for line in key_lines if line in seen]

def test_a_decimal_comma_locale_must_be_said_and_is_then_read_right(google, key_file):
    german = FakeSpreadsheet(SA_ID, "Kennzahlen", [FakeTab(0, "Umsatz", [
        ["Team", "Betrag"], ["Zahlungen", "1.234,5"], ["Suche", "1,234"], ["Zahlungen", "12,5 %"], ["Zahlungen", "2.000 €"]])],
        locale="de_DE")
    google.fake.spreadsheets[SA_ID] = german
    asked = [req("sum", column="Betrag", aggregate="sum", where={"Team": "Zahlungen"}), req("b3", cell="B3")]
    unsaid = google.measure(sa_source(key_file), asked)
    assert error_of(unsaid["sum"]) == ("Google Sheet \"Kennzahlen\" is in locale de_DE, which shows decimals with a "
                                       "comma: add `decimal: comma` to the source (or `decimal: point` if its numbers "
                                       "are written 1,234.5)")
    assert len(google.calls("batchGet")) == 0                   # refused before reading a value that could be misread
    said = measure(sa_source(key_file, decimal="comma"), asked)
    assert value_of(said["sum"]) == pytest.approx(1234.5 + 12.5 + 2000) and value_of(said["b3"]) == pytest.approx(1.234)
    assert value_of(measure(sa_source(key_file, decimal="point"), [req("b3", cell="B3")])["b3"]) == 1234
    google.fake.spreadsheets[PUBLIC_ID] = FakeSpreadsheet(PUBLIC_ID, "", german.tabs)     # public: said, never guessed
    assert value_of(measure(public_source(PUBLIC_ID, decimal="comma"), asked[:1])["sum"]) == pytest.approx(1234.5 + 12.5 + 2000)
    assert google_sheets.writes_decimal_comma("fr_FR") and not google_sheets.writes_decimal_comma("de_CH")
    assert not google_sheets.writes_decimal_comma("en_US") and not google_sheets.writes_decimal_comma("es_MX")

# ---------------------------------------------------------------------------- public sheets


def test_public_sheet_reads_each_tab_once_through_its_csv_export(google, waits):
    results = google.measure(public_source(tabs=PUBLIC_TABS), case_requests())

    assert {k: value_of(v) for k, v in results.items()} == {k: expected for k, (_, expected) in CASES.items()}
    exports = [parse_qs(urlparse(u).query) for u in google.calls("/export")]
    assert exports == [{"format": ["csv"], "gid": ["0"]}, {"format": ["csv"], "gid": [str(BUGS_GID)]},
                       {"format": ["csv"], "gid": [str(PLAN_GID)]}]
    assert len(google.calls()) == 3 and sum(m.calls for m in results.values()) == 3
    assert results["nps"].link == f"{url(PUBLIC_ID)}#gid=0&range=B7"
    assert results["plan-last"].link == f"{url(PUBLIC_ID)}#gid={PLAN_GID}"
    assert results["payments-sum"].query == "sum(Amount) in 'Bugs' where Team=Payments"


def test_public_default_tab_is_the_urls_gid_else_the_first(google):
    by_gid = google.measure(public_source(url(PUBLIC_ID, BUGS_GID)), [req("n", column="Amount", aggregate="count")])
    assert value_of(by_gid["n"]) == 5
    first = measure(public_source(PUBLIC_ID), [req("nps", cell="B7")])
    assert value_of(first["nps"]) == 45 and first["nps"].link == url(PUBLIC_ID)
    assert [parse_qs(urlparse(u).query) for u in google.calls("/export")] == [
        {"format": ["csv"], "gid": [str(BUGS_GID)]}, {"format": ["csv"]}]


def test_not_public_sign_in_page_says_how_to_share(google):
    google.fake.public.clear()                  # Google redirects to its sign-in page instead of sending CSV
    results = google.measure(public_source(tabs=PUBLIC_TABS), [req("a", sheet="Survey", cell="B7"),
                                                                req("b", sheet="Bugs", column="Amount", aggregate="sum")])
    expected = ("Google Sheet 1PubSheetA… is not public: Google answered with a sign-in page instead of CSV. Share it as "
                "\"Anyone with the link: Viewer\" (Share > General access), or give the source a `service_account:` "
                "and share the sheet with that account")
    assert error_of(results["a"]) == expected and error_of(results["b"]) == expected
    assert len(google.calls("/export")) == 1          # the second tab is not asked for once the first says so


def test_not_public_as_a_200_html_page_and_not_found(google):
    google.fail("GET", f"https://docs.google.com/spreadsheets/d/{PUBLIC_ID}/export", 200, content_type="text/html")
    html = google.measure(public_source(), [req("a", cell="B7")])
    assert error_of(html["a"]).startswith("Google Sheet 1PubSheetA… is not public")
    missing = measure(public_source("1NoSuchSheetAbCdEfGhIjKlMnOpQrStUvWxYz0123"), [req("a", cell="B7")])
    assert error_of(missing["a"]).startswith("spreadsheet 1NoSuchSheetAbCdEfGhIjKlMnOpQrStUvWxYz0123 not found")


def test_public_unknown_tab_explains_tabs_and_bad_gid_fails_alone(google):
    results = google.measure(public_source(tabs={"Survey": 0, "Old": 42}), [
        req("named", sheet="Bugs", column="Amount", aggregate="sum"),
        req("gone", sheet="old", cell="A1"),
        req("ok", sheet="Survey", cell="B7"),
    ])
    assert error_of(results["named"]).startswith(
        "Google Sheet 1PubSheetA…: no tab 'Bugs' in the source's `tabs:`; the tabs listed are 'Survey', 'Old'. "
        "A public sheet is read tab by tab through its CSV export, which needs the tab's gid")
    assert "add `tabs: {Bugs: <gid>}` to the source" in error_of(results["named"])
    assert error_of(results["gone"]).startswith("Google Sheet 1PubSheetA…: Google could not export tab gid=42 (HTTP 400)")
    assert value_of(results["ok"]) == 45


def test_public_unknown_tab_is_found_offline_with_the_same_message(google):
    source = public_source(tabs={"Survey": 0, "Old": 42})
    problems = check(source, [Metric(sheet="Bugs", column="Amount", aggregate="sum"), Metric(sheet="survey", cell="B7"),
                              Metric(sheet="Bugs", cell="A1"), Metric(cell="B7")])
    measured = google.measure(source, [req("named", sheet="Bugs", column="Amount", aggregate="sum")])
    assert problems == [error_of(measured["named"])]            # once per tab, `survey` matches `Survey`
    assert google.calls() == []                                 # nothing asked of Google for an unlisted tab


def test_public_export_rate_limit_is_retried(google, waits):
    export = f"https://docs.google.com/spreadsheets/d/{PUBLIC_ID}/export"
    google.fail("GET", export, 429, headers={"Retry-After": "3"}, content_type="text/html")
    google.fail("GET", export, 500, content_type="text/html")
    results = google.measure(public_source(), [req("a", cell="B7")])
    assert value_of(results["a"]) == 45 and waits[0] == 3 and backed_off(waits[1:], after=2) and results["a"].calls == 3

# ---------------------------------------------------------------------------- config


@pytest.mark.parametrize("pasted, expected", [
    (f"https://docs.google.com/spreadsheets/d/{SA_ID}/edit#gid=1234567", (SA_ID, 1234567)),
    (f"https://docs.google.com/spreadsheets/d/{SA_ID}/edit?usp=sharing", (SA_ID, None)),
    (f"https://docs.google.com/spreadsheets/u/0/d/{SA_ID}/edit?gid=55#gid=55", (SA_ID, 55)),
    (f"  {SA_ID} ", (SA_ID, None)),
])
def test_spreadsheet_from_a_pasted_url_or_id(pasted, expected):
    assert parse_spreadsheet(pasted) == expected


@pytest.mark.parametrize("settings, message", [
    ({"spreadsheet": "https://docs.google.com/spreadsheets/d/e/2PACX-1vabc/pubhtml"}, "\"Publish to the web\" link"),
    ({"spreadsheet": "https://example.com/sheet"}, "is not a Google Sheets URL or id"),
    ({"service_account": {"type": "service_account", "private_key": "x"}}, "do not paste the key into the config"),
    ({"service_account": "${GSHEETS_KEY}", "tabs": {"Survey": 0}}, "`tabs:` is for public sheets only"),
])
def test_config_mistakes_say_how_to_fix_them(settings, message):
    with pytest.raises(ValidationError) as caught:
        SourceConfig.model_validate({"type": "google_sheets", "spreadsheet": SA_ID, **settings})
    assert message in str(caught.value)


def test_config_loads_from_yaml_with_relative_key_path_and_hidden_endpoints(tmp_path, key_file, write_config):
    from okrsync.config import json_schema, load_plan
    from okrsync.errors import ConfigError

    config = write_config(f"""
period: 2026-Q4
sources:
  kpis: {{type: google_sheets, spreadsheet: "{url(SA_ID, 0)}", service_account: {key_file.name}}}
  broken: {{type: google_sheets, spreadsheet: "{SA_ID}", service_account: keys/nope.json}}
objectives:
  - id: o
    title: O
    key_results:
      - {{id: nps, title: NPS, source: kpis, metric: {{sheet: Survey, cell: B7}}, target: 50}}
      - {{id: x, title: X, source: kpis, metric: {{sheet: Bugs, cell: B7, aggregate: sum}}, target: 5}}
""")
    with pytest.raises(ConfigError) as caught:
        load_plan([config])
    issues = [str(i) for i in caught.value.issues]
    assert any("sources.broken" in i and "keys/nope.json not found" in i for i in issues), issues
    assert any(" x: " in i and "`aggregate:` and `where:` only go with `column:`" in i for i in issues), issues
    ok = config.read_text().replace("\n  broken:", "\n  #broken:").replace("cell: B7, aggregate: sum", "cell: B8")
    plan = load_plan([write_config(ok, "ok.yaml")])
    assert plan.sources["kpis"].config.service_account == key_file
    schema = json_schema()
    sheets = next(d for name, d in schema["$defs"].items() if name.endswith("google_sheets__SourceConfig"))
    assert set(sheets["properties"]) == {"type", "spreadsheet", "service_account", "tabs", "header_row", "decimal",
                                         "link", "deadline"}     # every source may say deadline:
    assert "api_base" not in json.dumps(schema) and "export_base" not in json.dumps(schema)   # test-only endpoints

# ---------------------------------------------------------------------------- end to end


def test_google_sheets_key_results_sync_end_to_end(prefect_harness, tmp_path, caplog):
    from connectors.sql_store import open_store
    from flows.sync import sync_okrs

    fake = FakeGoogle({SA_ID: okr_metrics(SA_ID), PUBLIC_ID: okr_metrics(PUBLIC_ID)}, shared={SA_ID},
                      public={PUBLIC_ID})
    store_url = f"sqlite:///{tmp_path / 'okr.db'}"
    caplog.set_level("DEBUG")
    with fake.serve():
        (tmp_path / "sa.json").write_text(json.dumps(service_account_info(fake.token_uri)), encoding="utf-8")
        config = tmp_path / "okrs.yaml"
        config.write_text(f"""
period: 2026-Q4
sources:
  kpis:
    type: google_sheets
    spreadsheet: {url(SA_ID, 0)}
    service_account: sa.json
    api_base: {fake.api_base}
  survey:
    type: google_sheets
    spreadsheet: {url(PUBLIC_ID, 0)}
    tabs: {{Bugs: {BUGS_GID}}}
    export_base: {fake.export_base}
objectives:
  - id: quality
    title: Ship with fewer bugs and happier users
    key_results:
      - {{id: nps, title: Raise NPS to 50, source: kpis, metric: {{sheet: Survey, cell: B7}}, baseline: 30, target: 50}}
      - id: payments-bugs
        title: Payments bug points down to 5
        source: kpis
        metric: {{sheet: Bugs, column: Amount, aggregate: sum, where: {{Team: Payments}}}}
        baseline: 40
        target: 5
      - {{id: signups, title: 20 signups a week, source: kpis, metric: {{sheet: Q4 plan, column: Signups, aggregate: last}}, target: 20}}
      - {{id: typo, title: Broken column, source: kpis, metric: {{sheet: Bugs, column: Amont, aggregate: sum}}, target: 1}}
      - {{id: public-nps, title: Public NPS, source: survey, metric: {{cell: B7}}, baseline: 30, target: 50}}
      - {{id: public-bugs, title: Bug count, source: survey, metric: {{sheet: Bugs, column: Amount, aggregate: count}}, baseline: 10, target: 2}}
""", encoding="utf-8")
        result = sync_okrs(config_paths=[str(config)], store=store_url)
        again = sync_okrs(config_paths=[str(config)], store=store_url)

    rows = {r["id"]: r for r in result["key_results"]}
    assert {k: r["value"] for k, r in rows.items()} == {"nps": 45, "payments-bugs": 19.5, "signups": 15, "typo": None,
                                                        "public-nps": 45, "public-bugs": 5}
    assert result["counts"]["failed"] == 1 and result["counts"]["written"] == 5
    assert 'no column "Amont" in header row 1 on sheet \'Bugs\'; did you mean "Amount"?' in rows["typo"]["error"]
    # the service account: token, metadata, one batchGet; the public sheet: one export per tab
    paths = [urlparse(u).path for _, u in fake.requests]
    assert sorted(paths[:5]) == sorted(["/token", f"/v4/spreadsheets/{SA_ID}", f"/v4/spreadsheets/{SA_ID}/values:batchGet",
                                        f"/spreadsheets/d/{PUBLIC_ID}/export", f"/spreadsheets/d/{PUBLIC_ID}/export"])
    assert result["source_calls"] == 5 and again["source_calls"] == 5 and len(fake.requests) == 10
    assert fake.scopes == [READONLY, READONLY]
    assert again["counts"]["written"] == 0 and again["counts"]["unchanged"] == 5

    store = open_store(store_url)
    try:
        states = {s.kr_id: s for s in store.key_results()}
        assert states["nps"].last.value == 45 and states["nps"].last.link == f"{url(SA_ID)}#gid=0&range=B7"
        assert states["payments-bugs"].last.link == f"{url(SA_ID)}#gid={BUGS_GID}"
        assert states["public-bugs"].last.link == f"{url(PUBLIC_ID)}#gid={BUGS_GID}"
        assert states["payments-bugs"].last.progress == pytest.approx((19.5 - 40) / (5 - 40))
    finally:
        store.close()

    private_pem, _ = signing_key()
    key_lines = [line for line in private_pem.splitlines() if "PRIVATE KEY" not in line]
    with sqlite3.connect(tmp_path / "okr.db") as db:
        dumped = "\n".join(db.iterdump())
    seen = caplog.text + json.dumps(result) + json.dumps(again) + dumped
    assert "nps" in dumped and CANARY_TOKEN not in seen and not [line for line in key_lines if line in seen]
