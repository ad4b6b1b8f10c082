"""connectors._http: the policy, the status map, the waits servers ask for, the deadline, the log line.

Time is the FakeClock of tests/conftest.py (11:06:40 UTC on 2026-11-18, moved on by each wait)."""
from __future__ import annotations

import logging
from dataclasses import FrozenInstanceError
from datetime import datetime, timezone

import pytest
import requests
import responses

from connectors import _http

URL = "https://api.example.com/v1/things"


def fetch(url: str = URL) -> requests.Response:
    """One try: a GET that raises StatusError for an error status, as a client's attempt does."""
    response = requests.get(url, timeout=5)
    if not response.ok:
        raise _http.StatusError(response)
    return response


def run(policy: _http.RetryPolicy = _http.DEFAULT, **kw):
    return _http.call(fetch, service="Example", path="/v1/things", policy=policy, **kw)

# ---------------------------------------------------------------------------- policy


def test_backoff_doubles_from_first_wait_with_jitter_under_the_cap():
    policy = _http.RetryPolicy(tries=10, first_wait=1.0, cap=30.0, jitter=1.0)
    for tries in range(1, 6):
        assert 2 ** (tries - 1) <= policy.backoff(tries) <= 2 ** (tries - 1) + 1.0
    assert all(policy.backoff(n) <= 30.0 for n in range(1, 40))
    assert _http.RetryPolicy(jitter=0.0).backoff(3) == 4.0


def test_policy_is_frozen_and_overrides_make_a_copy():
    with pytest.raises(FrozenInstanceError):
        _http.DEFAULT.tries = 9                       # type: ignore[misc]
    longer = _http.DEFAULT.but(tries=6)
    assert longer.tries == 6 and _http.DEFAULT.tries == 4 and longer.cap == _http.DEFAULT.cap

# ---------------------------------------------------------------------------- the status map


@pytest.mark.parametrize("status, retried", [(429, True), (500, True), (502, True), (503, True), (504, True),
                                             (400, False), (401, False), (403, False), (404, False), (405, False),
                                             (410, False), (501, False), (505, False), (200, False)])
def test_status_map(status, retried):
    assert _http.retriable_status(status) is retried
    assert (_http.status_fault(status, {}) is not None) is retried


@pytest.mark.parametrize("exc, retried", [
    (requests.exceptions.ReadTimeout("read timed out"), True),
    (requests.exceptions.ConnectionError("('Connection aborted.', RemoteDisconnected())"), True),
    (requests.exceptions.ConnectionError("[Errno 104] Connection reset by peer"), True),
    (requests.exceptions.ChunkedEncodingError("Connection broken: IncompleteRead"), True),
    (_http.CutShort(), True),
    (requests.exceptions.ConnectionError("[Errno 111] Connection refused"), False),
    (requests.exceptions.ConnectionError("Name or service not known"), False),
    (requests.exceptions.SSLError("certificate verify failed"), False),
    (requests.exceptions.InvalidURL("bad"), False),
    (ValueError("not a network fault"), False),
])
def test_network_faults(exc, retried):
    assert (_http.transport_fault(exc) is not None) is retried


@responses.activate
def test_a_status_that_is_not_retried_fails_at_once(clock):
    responses.get(URL, status=404)
    with pytest.raises(_http.StatusError) as error:
        run()
    assert error.value.status == 404 and len(responses.calls) == 1 and clock.waits == []

# ---------------------------------------------------------------------------- waits the server asks for


@pytest.mark.parametrize("headers, seconds", [
    ({"Retry-After": "7"}, 7.0),
    ({"retry-after": "0"}, 0.0),
    ({"Retry-After": "Wed, 18 Nov 2026 11:07:10 GMT"}, 30.0),              # an HTTP date: 30 s after now
    ({"Retry-After": "Wed, 18 Nov 2026 11:00:00 GMT"}, 0.0),               # already past
    ({"X-RateLimit-Reset": "2026-11-18T11:08Z"}, 80.0),                    # Jira: ISO 8601
    ({"X-RateLimit-Reset": "2026-11-18T11:07:00+00:00"}, 20.0),
    ({"x-ratelimit-reset": "1795000042", "x-ratelimit-remaining": "0"}, 43.0),   # GitHub: epoch, the second after
    ({"x-ratelimit-reset": "1795000042", "x-ratelimit-remaining": "4999"}, None),  # not used up: no wait asked
    ({"Retry-After": "soon"}, None),
    ({}, None),
])
def test_asked_wait(headers, seconds):
    assert _http.asked_wait(headers) == seconds


@responses.activate
def test_retry_after_is_waited_then_the_backoff_takes_over(clock):
    responses.get(URL, status=429, headers={"Retry-After": "Wed, 18 Nov 2026 11:06:52 GMT"})
    responses.get(URL, status=503)
    responses.get(URL, body="ok")
    assert run().text == "ok"
    assert clock.waits[0] == 12.0 and 2.0 <= clock.waits[1] <= 3.0 and len(clock.waits) == 2


@responses.activate
def test_a_wait_longer_than_max_retry_after_ends_the_retries_and_says_when(clock):
    responses.get(URL, status=429, headers={"Retry-After": "600"})
    with pytest.raises(_http.GaveUp) as ended:
        run()
    assert ended.value.reason == "asked" and ended.value.asked_too_long and ended.value.tries == 1
    assert ended.value.run_again() == "run again after 11:16:40 UTC"
    assert isinstance(ended.value.error, _http.StatusError) and clock.waits == []


@responses.activate
def test_tries_are_bounded(clock):
    responses.get(URL, status=502)
    with pytest.raises(_http.GaveUp) as ended:
        run(_http.DEFAULT.but(tries=3))
    assert ended.value.reason == "tries" and ended.value.tries == 3 == len(responses.calls)
    assert len(clock.waits) == 2 and ended.value.run_again() == "try again later"


@responses.activate
def test_a_fault_may_carry_its_own_backoff(clock):
    responses.get(URL, status=503)
    slow = _http.RetryPolicy(first_wait=60.0, cap=300.0, jitter=0.0)
    with pytest.raises(_http.GaveUp):
        _http.call(fetch, service="Example", path="/v1/things",
                   classify=lambda exc: _http.Fault("a limit", policy=slow) if _http.fault_of(exc) else None)
    assert clock.waits == [60.0, 120.0, 240.0]

# ---------------------------------------------------------------------------- deadline


@responses.activate
def test_no_wait_runs_past_the_deadline(clock):
    responses.get(URL, status=503, headers={"Retry-After": "10"})
    with pytest.raises(_http.GaveUp) as ended:
        run(deadline=clock.monotonic() + 25)
    assert clock.waits == [10.0, 10.0]                  # a third wait would end 5 s past the deadline
    assert ended.value.reason == "deadline" and ended.value.tries == 3


@responses.activate
def test_without_a_deadline_the_current_works_deadline_ends_the_retries(clock):
    """The engine's per-source deadline (okrsync.deadline, set in within_deadline) reaches every call."""
    from okrsync import deadline

    responses.get(URL, status=503, headers={"Retry-After": "10"})
    with deadline.within(25), pytest.raises(_http.GaveUp) as ended:
        run()
    assert clock.waits == [10.0, 10.0] and ended.value.reason == "deadline"


def test_the_engine_runs_a_source_under_its_deadline_and_the_earlier_one_wins():
    from okrsync import deadline
    from okrsync.engine import within_deadline

    assert deadline.left() is None
    left = within_deadline(deadline.left, 60, "source x")
    assert left is not None and 0 < left <= 60
    with deadline.within(100):
        assert within_deadline(deadline.left, 5, "source y") <= 5        # the source's, inside the run's
        with deadline.within(500):
            assert deadline.left() <= 100                                # an inner deadline never extends it
    assert deadline.left() is None


def test_socket_timeouts_are_capped_to_the_time_left():
    from okrsync import deadline

    assert _http.capped((10.0, 60.0)) == (10.0, 60.0) and _http.capped(None) is None
    with deadline.within(2):
        connect, read = _http.capped((10.0, 60.0))
        assert 0 < connect <= 2 and 0 < read <= 2
        assert 0 < _http.capped(30.0) <= 2 and 0 < _http.capped(None) <= 2
        assert _http.capped((0.5, None))[0] == 0.5
    with deadline.until(0.0):                                            # long passed: still a timeout, not 0
        assert _http.capped(30.0) == _http.MIN_SOCKET_TIMEOUT


def test_a_bound_session_stops_waiting_for_a_silent_server_at_the_deadline():
    import threading

    from localhttp import LocalServer
    from okrsync import deadline

    release = threading.Event()
    server = LocalServer(lambda handler, method: release.wait(10)).start()   # accepts, never answers
    try:
        session = _http.bound(requests.Session())
        with deadline.within(0.3), pytest.raises(requests.Timeout):
            session.get(server.url, timeout=30)
    finally:
        release.set()
        server.stop()


@responses.activate
def test_the_wait_hook_runs_before_each_wait_and_may_stop_the_retries(clock):
    responses.get(URL, status=503)
    seen: list[float] = []

    def stop_on_second(seconds: float) -> None:
        seen.append(seconds)
        if len(seen) == 2:
            raise RuntimeError("another query found the source unusable")

    with pytest.raises(RuntimeError):
        run(before_wait=stop_on_second)
    assert len(seen) == 2 and len(clock.waits) == 1 and len(responses.calls) == 2

# ---------------------------------------------------------------------------- the log line


@responses.activate
def test_each_retry_logs_one_warning_without_the_query_string(clock, caplog):
    caplog.set_level(logging.DEBUG, logger="connectors.http")
    secret = "token=s3cr3t"
    responses.get(URL, status=503, headers={"Retry-After": "3"})
    responses.get(URL, body="ok")
    _http.call(lambda: fetch(f"{URL}?{secret}"), service="Example", path=f"https://api.example.com/v1/things?{secret}")
    lines = [r for r in caplog.records if r.name == "connectors.http"]
    assert [(r.levelno, r.getMessage()) for r in lines] == [
        (logging.WARNING, "Example: HTTP 503 for /v1/things; retrying in 3.0 s (try 2 of 4)")]
    assert "s3cr3t" not in caplog.text


def test_the_real_clock_tells_utc_time():
    real = _http.Clock()
    assert real.now().tzinfo is timezone.utc
    assert abs(real.now().timestamp() - datetime.now(timezone.utc).timestamp()) < 5
