"""The source-connector contract, and the one batch runner every connector is driven through.

A source connector (a module or any object) provides:

    TYPE: str                                   the `type:` of a source in the config, e.g. "jira"
    SourceConfig: type[pydantic.BaseModel]      the source's settings (`type: Literal[TYPE]`)
    Metric: type[pydantic.BaseModel]            what a key result's `metric:` may say
    check(source, metrics) -> list[str | (i, str)]
                                                problems visible without the network: of the source
                                                (a missing file, a Cloud site without email), or of
                                                metrics[i] as (i, message) (an unknown sheet)
    connect(source) -> client                   a client for one run: secrets read now; it has
                                                `calls` (requests sent so far) and `close()`
    answer(client, source, requests) -> {kr_id: Measurement | SourceError}
                                                one batch: every key result of the source in this
                                                run; identical queries asked once

Optionally, `source_identity(source) -> hashable` says which settings make two sources the same
source (see `source_identity` below for the default); sources alike are asked once per run,
however many config files define them. Also optional (without it, every metric reads the present):

    reads_past(metric) -> bool                  whether `metric` (as written, placeholders not yet
                                                filled in) can be measured as of a past date: its
                                                query uses `{as_of}`, a spreadsheet names a
                                                `date_column:`. A past `--as-of` or a backfill
                                                refuses the key results whose metric cannot.

`run_batch` does the rest once, for every connector: a metric that is not yet the connector's
Metric is validated (third-party callers may pass dicts), the client is opened and closed, a
connector that raises fails only its own batch, every request gets exactly one answer in
request order, and the calls the client spent add up (a remainder the connector did not charge
goes to the first measured key result, or to the first failed one when none was measured).

Connectors register under the entry-point group `okr_sync.sources` (okrsync.registry).
"""
from __future__ import annotations

import hashlib
import logging
import traceback
from dataclasses import replace
from pathlib import Path, PurePath
from typing import Annotated, Any, Mapping, Protocol, Sequence, runtime_checkable
from urllib.parse import urlsplit

from pydantic import AfterValidator, BaseModel, Field, SecretBytes, SecretStr, ValidationError

from okrsync.errors import OkrSyncError, SourceError
from okrsync.measure import Measurement, MetricRequest

logger = logging.getLogger(__name__)

Outcome = Measurement | SourceError


@runtime_checkable
class SourceClient(Protocol):
    """What `connect` returns: anything that counts its requests and can be closed."""

    calls: int

    def close(self) -> None: ...


class SourceConnector(Protocol):
    """A source connector; a module with these names satisfies it."""

    TYPE: str
    SourceConfig: type[BaseModel]
    Metric: type[BaseModel]

    def check(self, source: Any, metrics: Sequence[Any]) -> list[str | tuple[int, str]]: ...

    def connect(self, source: Any) -> SourceClient: ...

    def answer(self, client: Any, source: Any, requests: Sequence[MetricRequest]) -> Mapping[str, Outcome]: ...


REQUIRED = ("TYPE", "SourceConfig", "Metric", "check", "connect", "answer")
OPTIONAL = ("reads_past",)
READS_THE_PRESENT = "this metric reads the present; add {as_of} to its query or a date_column"


def contract_problems(connector: Any) -> list[str]:
    """What a connector lacks to meet the contract ([] when it conforms)."""
    problems = [f"has no `{name}`" for name in REQUIRED if not hasattr(connector, name)]
    if problems:
        return problems
    if not isinstance(connector.TYPE, str) or not connector.TYPE:
        problems.append("`TYPE` must be a non-empty string")
    for name in ("SourceConfig", "Metric"):
        model = getattr(connector, name)
        if not (isinstance(model, type) and issubclass(model, BaseModel)):
            problems.append(f"`{name}` must be a pydantic model class")
    for name in ("check", "connect", "answer"):
        if not callable(getattr(connector, name)):
            problems.append(f"`{name}` must be callable")
    for name in OPTIONAL:
        if hasattr(connector, name) and not callable(getattr(connector, name)):
            problems.append(f"`{name}` must be callable when given")
    return problems


def _share_link(value: str) -> str:
    """An http(s) URL anyone the report or alert reaches can open; no credentials in it."""
    text = value.strip()
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"link {text[:60]!r} must be an http(s) URL people can open, e.g. the spreadsheet's "
                         "SharePoint, Drive or wiki address (a file path on the runner opens for nobody else)")
    if "@" in parts.netloc:
        raise ValueError("link must not hold a user name or password: give the address people open in a browser")
    return text


ShareLink = Annotated[str, AfterValidator(_share_link), Field(description=(
    "where people open this source's data (https://...); check-ins, the report and alerts link there "
    "instead of the file on the runner"))]


def reads_past(connector: Any, metric: Any) -> bool:
    """Whether the connector can measure `metric` (as written) as of a past date; False for a
    connector without `reads_past`, or whose `reads_past` fails (it cannot say how)."""
    check = getattr(connector, "reads_past", None)
    if check is None:
        return False
    try:
        return bool(check(typed_metric(connector, metric)))
    except Exception:  # noqa: BLE001 - a third-party connector's bug: treat the metric as reading the present
        logger.debug("the %s connector's reads_past failed:\n%s", connector.TYPE, traceback.format_exc())
        return False


class LocalClient:
    """The client of a source read without a connection (a file): `calls` counts its reads."""

    def __init__(self) -> None:
        self.calls = 0

    def close(self) -> None:
        return None


def first_problem(exc: ValidationError) -> str:
    """The first of a pydantic error's problems, on one line: "`where`: what"."""
    first = exc.errors(include_url=False)[0]
    message = " ".join(str(first.get("msg", "invalid")).removeprefix("Value error, ").split())
    where = ".".join(str(p) for p in first.get("loc", ()) if not str(p).startswith("function-"))
    return f"`{where}`: {message}" if where else message


def typed_metric(connector: Any, metric: Any) -> Any:
    """The metric as the connector's Metric model (a model passes through); ValidationError if invalid."""
    model = connector.Metric
    return metric if isinstance(metric, model) else model.model_validate(metric)


def source_identity(connector: Any, source: Any) -> Any:
    """What makes two sources of one connector the same source, so their key results are one batch
    (identical queries asked once, one connection) whichever config files define them.

    The connector's own `source_identity(source)` if it has one; else every setting of its
    SourceConfig: secret references compared as written (`${VAR}`, `{secret: NAME}`), never their
    values; a secret held in the model itself (SecretStr) by a digest of its value; paths once
    resolved, so `data/x.csv` from two files in one folder is one file."""
    own = getattr(connector, "source_identity", None)
    if callable(own):
        return own(source)
    if isinstance(source, BaseModel):
        return _comparable(source.model_dump(mode="python"))
    return _comparable(source)


def _comparable(value: Any) -> Any:
    if isinstance(value, dict):
        return tuple(sorted((str(k), _comparable(v)) for k, v in value.items()))
    if isinstance(value, (list, tuple)):
        return tuple(_comparable(v) for v in value)
    if isinstance(value, (set, frozenset)):
        return tuple(sorted(repr(_comparable(v)) for v in value))
    if isinstance(value, (SecretStr, SecretBytes)):
        raw = value.get_secret_value()
        return ("secret", hashlib.sha256(raw if isinstance(raw, bytes) else raw.encode()).hexdigest())
    if isinstance(value, PurePath):
        return ("path", str(Path(value).resolve()))
    if isinstance(value, BaseModel):
        return _comparable(value.model_dump(mode="python"))
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return (type(value).__name__, repr(value))


def run_batch(connector: Any, source: Any, requests: Sequence[MetricRequest]) -> dict[str, Outcome]:
    """Measure one source's batch through its connector: one answer per request, in request order."""
    order = [r.kr_id for r in requests]
    results: dict[str, Outcome] = {}
    valid: list[MetricRequest] = []
    for request in requests:
        try:
            metric = typed_metric(connector, request.metric)
        except ValidationError as exc:
            results[request.kr_id] = SourceError(f"invalid metric: {first_problem(exc)}")
            continue
        valid.append(request if metric is request.metric else replace(request, metric=metric))
    calls = 0
    if valid:
        client = None
        try:
            client = connector.connect(source)
            answered = dict(connector.answer(client, source, valid))
        except OkrSyncError as exc:
            error = exc if isinstance(exc, SourceError) else SourceError(str(exc))
            answered = {r.kr_id: error for r in valid}
        except Exception as exc:  # noqa: BLE001 - a connector bug fails its batch, never the run
            logger.debug("the %s connector raised:\n%s", connector.TYPE, traceback.format_exc())
            error = SourceError(f"the {connector.TYPE} connector failed unexpectedly ({exc.__class__.__name__}); "
                                "run with --verbose for details")
            answered = {r.kr_id: error for r in valid}
        finally:
            if client is not None:
                calls = int(getattr(client, "calls", 0) or 0)
                try:
                    client.close()
                except Exception:  # noqa: BLE001 - closing a connection must not lose the answers
                    logger.debug("closing the %s client failed", connector.TYPE, exc_info=True)
        for request in valid:
            got = answered.get(request.kr_id)
            results[request.kr_id] = got if isinstance(got, (Measurement, SourceError)) else SourceError(
                "the connector returned no result for this key result")
    ordered = {kr_id: results[kr_id] for kr_id in order}
    return charge_calls(ordered, calls)


def charge_calls(results: dict[str, Outcome], calls: int) -> dict[str, Outcome]:
    """Make the calls carried by `results` add up to `calls`: the uncharged remainder goes to the
    first measured key result, else to the first failed one (a copy: errors are often shared)."""
    charged = sum(getattr(r, "calls", 0) or 0 for r in results.values())
    remainder = calls - charged
    if remainder <= 0:
        return results
    first = next((k for k, r in results.items() if isinstance(r, Measurement)), None)
    if first is not None:
        results[first] = replace(results[first], calls=results[first].calls + remainder)
        return results
    first = next(iter(results), None)
    if first is not None:
        results[first] = with_calls(results[first], results[first].calls + remainder)
    return results


def with_calls(error: SourceError, calls: int) -> SourceError:
    """A copy of `error` carrying `calls` (the original may be shared by other key results)."""
    copy = _copy(error)
    copy.calls = calls
    return copy


def with_message(error: SourceError, message: str) -> SourceError:
    """A copy of `error` (same class, retry_after, calls) saying `message` instead."""
    copy = _copy(error)
    copy.args = (message,)
    return copy


def _copy(error: SourceError) -> SourceError:
    copy = error.__class__.__new__(error.__class__)
    copy.__dict__.update(error.__dict__)
    copy.args = error.args
    return copy


__all__ = ["SourceConnector", "SourceClient", "LocalClient", "ShareLink", "Outcome", "REQUIRED", "OPTIONAL",
           "READS_THE_PRESENT", "contract_problems", "reads_past", "first_problem", "typed_metric", "source_identity",
           "run_batch", "charge_calls", "with_calls", "with_message"]
