"""Post a message to a Slack-compatible incoming webhook (Slack, Mattermost, Rocket.Chat, ...).

One POST of a JSON body; a 2xx answer is success. Slack answers failures with a status and a
short reason in the body: 400 invalid_payload, 403 action_prohibited, 404 channel_not_found
or no_service, 410 channel_is_archived, 429 with Retry-After, 500 rollup_error.

Retries are connectors/_http.py's, with its default policy (429, 500, 502, 503, 504, dropped
connections; honouring Retry-After); requests' own retries stay off. A read timeout is not
retried: the message may have arrived, and a chat message posted twice is worse than an alert
retried on the next run.

The webhook URL is a secret (whoever holds it can post to the channel): it never appears in
an error or a log line. Errors say where the URL came from instead, and urllib3's debug line
with the request path is redacted.
"""
from __future__ import annotations

import json
import logging
import re
from typing import Any
from urllib.parse import urlsplit

import requests
from pydantic import SecretStr

from connectors import _http
from okrsync.errors import OkrSyncError
from okrsync.redact import register

TIMEOUT = (5.0, 15.0)         # seconds to connect, to read the answer
POLICY = _http.DEFAULT
_REASON = re.compile(r"[a-z_]{2,40}")

logger = logging.getLogger(__name__)


class WebhookError(OkrSyncError):
    """The webhook did not take the message; the message names where its URL comes from.

    `calls` is the number of HTTP calls made before giving up."""

    def __init__(self, message: str, calls: int = 0):
        super().__init__(message)
        self.calls = calls


# ---------------------------------------------------------------------------- secrecy


def _hide(url: str) -> None:
    """The URL is a secret, and so are its path (urllib3 logs it) and path with query."""
    parts = urlsplit(url)
    for secret in (url, parts.path + (f"?{parts.query}" if parts.query else ""), parts.path):
        register(secret)

# ---------------------------------------------------------------------------- posting


def _reason(response: requests.Response) -> str:
    """Slack's short error string (e.g. channel_not_found), if the body is one."""
    body = response.text.strip()[:41]
    return f" {body}" if _REASON.fullmatch(body) else ""


def post_json(url: SecretStr, payload: dict[str, Any], *, where: str, deadline: float | None = None) -> int:
    """POST `payload` to the webhook; return the HTTP calls made. `where` names the URL's origin
    for messages (e.g. "environment variable OKR_SYNC_WEBHOOK"). Raises WebhookError.
    `deadline` is a clock.monotonic() time no retry wait may pass (connectors._http)."""
    target = url.get_secret_value()
    parts = urlsplit(target)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise WebhookError(f"the alert webhook in {where} is not an http(s) URL: put the webhook's full "
                           "https://... address there")
    _hide(target)
    body = json.dumps(payload).encode("utf-8")
    calls = 0
    session = _http.bound(requests.Session())          # requests' own retries off; sockets end by the deadline

    def attempt() -> None:
        nonlocal calls
        calls += 1
        try:
            response = session.post(target, data=body, timeout=TIMEOUT,
                                    headers={"Content-Type": "application/json; charset=utf-8"})
        except requests.exceptions.ReadTimeout:
            raise WebhookError(f"the alert webhook in {where} did not answer within {TIMEOUT[1]:g}s; "
                               "not retried, as the message may have arrived") from None
        if 200 <= response.status_code < 300:
            return
        if _http.retriable_status(response.status_code):
            raise _http.StatusError(response)
        raise WebhookError(_refused(response.status_code, _reason(response), where))

    try:                                             # the URL is the secret: the log names where it comes from
        _http.call(attempt, service="webhook", path=f"the URL in {where}", policy=POLICY, deadline=deadline)
    except _http.GaveUp as ended:
        what = _fault(ended.error)
        if ended.asked_too_long:
            raise WebhookError(f"the alert webhook in {where} asked to wait {ended.fault.asked:g} s ({what}); the "
                               f"alerts stay queued: {ended.run_again()}", calls) from None
        raise WebhookError(f"the alert webhook in {where} failed {calls} times ({what}); "
                           "the alerts stay queued for the next run", calls) from None
    except requests.exceptions.RequestException as exc:      # not worth retrying: refused, no such host, TLS
        why = (_http.connection_reason(exc) if isinstance(exc, requests.exceptions.ConnectionError)
               else exc.__class__.__name__)
        raise WebhookError(f"the alert webhook in {where} could not be called ({why}): check the URL", calls) from None
    except WebhookError as exc:
        exc.calls = calls
        raise
    finally:
        session.close()
    logger.debug("posted %d bytes to the alert webhook in %s (%d call(s))", len(body), where, calls)
    return calls


def _fault(exc: BaseException) -> str:
    """What went wrong with a post, in a few words safe to show (no URL)."""
    if isinstance(exc, _http.StatusError):
        return f"HTTP {exc.status}{_reason(exc.response)}"
    if isinstance(exc, requests.exceptions.ConnectionError):
        return f"could not connect ({exc.__class__.__name__})"
    return exc.__class__.__name__


def _refused(status: int, reason: str, where: str) -> str:
    if status in (404, 410):
        fix = "the webhook or its channel no longer exists: create a new webhook and update"
    elif status in (401, 403):
        fix = "the webhook may not post here (disabled or restricted): check it, then update"
    elif status == 400:
        fix = "the chat service refused the message body; check that the URL is an incoming webhook in"
    else:
        fix = "check the webhook URL in"
    return f"the alert webhook in {where} answered HTTP {status}{reason}: {fix} {where}"
