"""The OKR report: a static site (DIR/index.html and one page per objective) drawn from the store.

    okr-sync report config/example.yaml --out site/        # or, in a config file:
    report: {out: site, url: https://okrs.example.com/payments/}   # regenerated after every run

`write_report(store, out_dir, ...)` reads the store through its public reads (okrsync.report_data),
draws each key result's burn-up chart (okrsync.report_charts, pygal) and writes the pages
(okrsync.report_html, Jinja2). The pages hold every asset inline (CSS, SVG charts; no script, no font,
no image fetched), so they open from a file or any static host with no network at view time.

pygal and Jinja2 are the optional extra `report` (`pip install 'okr-sync[report]'`); without them
:class:`ReportUnavailable` says so in one line. Nothing here imports Prefect or a connector: the
store object comes from the caller (the CLI, the engine's services).
"""
from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Callable, Iterable
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator

from okrsync.errors import OkrSyncError

INSTALL_HINT = "pip install 'okr-sync[report]'"
EXTRA_MODULES = ("pygal", "jinja2")


class ReportUnavailable(OkrSyncError):
    """The report's optional dependencies are not installed."""


class ReportConfig(BaseModel):
    """`report:` in a config file: where each run rewrites this file's report, and where people open it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    out: str = Field(min_length=1, description="the folder the report is written to, relative to this file")
    url: str | None = Field(None, description="where the folder is served (https://...), for links in the "
                                              "Prefect artifact and the digest")

    @field_validator("url")
    @classmethod
    def _http(cls, value: str | None) -> str | None:
        if value is None:
            return None
        parts = urlsplit(value.strip())
        if parts.scheme not in ("http", "https") or not parts.netloc or "@" in parts.netloc:
            raise ValueError(f"url {value[:60]!r} must be the http(s) address the report folder is served at, "
                             "e.g. https://okrs.example.com/payments/ (no user name or password in it)")
        return value.strip()


@dataclass(frozen=True)
class PlannedReport:
    """A config file's report, with its folder resolved against the file."""

    config_file: str
    out: Path
    url: str | None


def missing_extra() -> list[str]:
    """The report's dependencies that are not installed ([] when it can be drawn)."""
    return [name for name in EXTRA_MODULES if importlib.util.find_spec(name) is None]


def require_extra() -> None:
    """ReportUnavailable, in one line, unless pygal and Jinja2 are installed."""
    missing = missing_extra()
    if missing:
        raise ReportUnavailable(f"the report needs {' and '.join(missing)}, which {'is' if len(missing) == 1 else 'are'} "
                                f"not installed: {INSTALL_HINT}")


def write_report(store: Any, out_dir: Path, *, kr_ids: Iterable[str] | None = None, now: datetime | None = None,
                 title: str | None = None, errors: dict[str, str] | None = None,
                 public_url: str | None = None) -> dict[str, Any]:
    """Write the report of the store's key results (only ``kr_ids`` if given) to ``out_dir``.

    ``errors`` maps key results to the error of the run that just failed to measure them (the store keeps
    errors only for configs with alerts). Returns {"index": path, "pages": n, "key_results": n, "seconds": s}.
    Raises ReportUnavailable without the extra, StoreError if the store cannot be read, OSError if the
    folder cannot be written (the caller words it).
    """
    require_extra()
    import time

    from okrsync import report_data, report_html

    started = time.perf_counter()
    data = report_data.gather(store, kr_ids=kr_ids, now=now, errors=errors, title=title, public_url=public_url)
    written = report_html.write_site(data, Path(out_dir))
    return {"index": str(written[0]), "pages": len(written), "key_results": len(data.key_results),
            "seconds": round(time.perf_counter() - started, 3)}


def regenerate(reports: dict[str, PlannedReport], open_store: Callable[[str], Any], store_url: str,
               kr_ids_of: dict[str, list[str]], errors: dict[str, str]) -> dict[str, Any]:
    """After a run: rewrite the report of each config file that has `report:`. A report that cannot be
    written never fails the run: {"reports": {file: {"index", "url", ...}}, "errors": [...]}."""
    outcome: dict[str, Any] = {"reports": {}, "errors": []}
    if not reports:
        return outcome
    try:
        require_extra()
    except ReportUnavailable as exc:
        outcome["errors"].append(str(exc))
        return outcome
    try:
        store = open_store(store_url)
    except OkrSyncError as exc:
        outcome["errors"].append(f"report not written: {exc}")
        return outcome
    try:
        for config_file, planned in reports.items():
            try:
                done = write_report(store, planned.out, kr_ids=kr_ids_of.get(config_file, []),
                                    title=f"OKR report · {Path(config_file).name}", errors=errors,
                                    public_url=planned.url)
            except OkrSyncError as exc:
                outcome["errors"].append(f"report of {Path(config_file).name} not written: {exc}")
                continue
            except OSError as exc:
                outcome["errors"].append(f"report of {Path(config_file).name} not written: cannot write "
                                         f"{planned.out} ({exc.strerror or exc.__class__.__name__}): check `report: out:`")
                continue
            outcome["reports"][config_file] = {**done, "url": planned.url}
    finally:
        store.close()
    return outcome


__all__ = ["ReportConfig", "PlannedReport", "ReportUnavailable", "INSTALL_HINT", "missing_extra", "require_extra",
           "write_report", "regenerate"]
