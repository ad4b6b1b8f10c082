"""The report's pages: ReportData (okrsync.report_data) -> DIR/index.html and DIR/objectives/ID.html.

Jinja2 templates in okrsync/templates/report/, autoescaped; each page carries its CSS and its charts'
SVG inline and a Content-Security-Policy that forbids loading anything, so a page opened from a file
or any static host makes no network request. Files are written whole (a temporary file renamed over
the old one), so a web server never serves half a page; objective pages of objectives no longer in
the report are removed.
"""
from __future__ import annotations

import os
import tempfile
from datetime import date, datetime
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape
from markupsafe import Markup, escape

from okrsync import report_charts
from okrsync.report_data import STATUS_LABEL, KeyResultView, ReportData
from okrsync.report_style import PALETTE, fmt_unit, pct

TEMPLATES = Path(__file__).parent / "templates" / "report"
OBJECTIVES_DIR = "objectives"

_env: Environment | None = None


def _environment() -> Environment:
    global _env
    if _env is None:
        _env = Environment(loader=FileSystemLoader(str(TEMPLATES)), autoescape=select_autoescape(["j2", "html"]),
                           undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True)
        _env.globals.update(label=label, when=when, day=day, num=fmt_unit, value=value, progress_bar=progress_bar,
                            chart=chart, alt=report_charts.text_alternative, rows=lambda kr: report_charts.table_rows(kr.points),
                            ticket=ticket, link_label=link_label, file_path=file_path,
                            legend=report_charts.legend)
    return _env


def label(status: str) -> str:
    return STATUS_LABEL.get(status, status.replace("_", " "))


def when(moment: datetime) -> str:
    return f"{moment:%b} {moment.day}, {moment:%Y %H:%M} UTC"


def day(moment: date) -> str:
    return f"{moment:%b} {moment.day}, {moment.year}"


def value(kr: KeyResultView) -> str:
    if kr.value is None:
        return "no value yet"
    return fmt_unit(kr.value, kr.unit) + (f" · {pct(kr.progress)} of the way" if kr.progress is not None else "")


def progress_bar(kr: KeyResultView) -> Markup:
    """Progress against expected: a bar filled to progress (clamped to 0..100 %; the text gives the real
    share), a mark at the expected share, and the same in words for screen readers and print."""
    if kr.progress is None:
        return Markup('<div class="progress"><div class="bar s-no_data" role="img" aria-label="no progress measured yet">'
                      '</div><p class="bar-text" aria-hidden="true">no progress measured</p></div>')
    fill = max(0.0, min(1.0, kr.progress))
    words = f"{pct(kr.progress)} of the way" + (f", {pct(kr.expected)} expected by now" if kr.expected is not None else "")
    mark = "" if kr.expected is None else f'<span class="expected" style="left:{100 * kr.expected:.1f}%"></span>'
    return Markup(f'<div class="progress"><div class="bar s-{escape(kr.status)}" role="img" aria-label="{escape(words)}">'
                  f'<span class="fill" style="width:{100 * fill:.1f}%"></span>{mark}</div>'
                  f'<p class="bar-text" aria-hidden="true">{escape(words)}</p></div>')


def chart(kr: KeyResultView) -> Markup:
    return Markup(report_charts.burnup_svg(kr))   # pygal escapes the texts it writes


_HOSTS = (("atlassian", "the issues in Jira"), ("jira", "the issues in Jira"), ("github", "the items on GitHub"),
          ("docs.google.com", "the cells in Google Sheets"), ("sharepoint", "the spreadsheet"))


def link_label(kr: KeyResultView) -> str:
    link = kr.link or ""
    host = urlsplit(link).netloc.lower()
    path = urlsplit(link).path.lower()
    for needle, words in _HOSTS:
        if needle in host or (needle == "jira" and "/issues/" in path and "jql=" in link):
            return f"Open {words}"
    return "Open the data"


def file_path(link: str) -> str:
    parts = urlsplit(link)
    return unquote(parts.path) + (f" ({unquote(parts.fragment)})" if parts.fragment else "")


def ticket(item: dict[str, Any]) -> Markup:
    key, title, url = item.get("key"), item.get("title"), item.get("url")
    name = escape(str(key))
    shown = (Markup(f'<a href="{escape(url)}">{name}</a>') if isinstance(url, str) and url.startswith(("https://", "http://"))
             else Markup(f"<code>{name}</code>"))
    return shown + (Markup(" ") + escape(str(title)) if title else Markup(""))


def page_name(objective_id: str) -> str:
    return f"{OBJECTIVES_DIR}/{objective_id}.html"


def attention(data: ReportData) -> list[KeyResultView]:
    """Failing, off track, at risk, then forecast misses: the index's "Needs attention" list."""
    order = {"off_track": 0, "at_risk": 1}

    def rank(kr: KeyResultView) -> tuple[int, str]:
        if kr.error:
            return (0, kr.id)
        if kr.status in order:
            return (1 + order[kr.status], kr.id)
        return (3, kr.id)

    picked = [kr for kr in data.key_results
              if kr.error or kr.status in order or (kr.forecast is not None and kr.forecast.status == "will_miss")]
    return sorted(picked, key=rank)


def render_pages(data: ReportData) -> dict[str, str]:
    """Every page of the report: relative path -> HTML."""
    env = _environment()
    css = env.get_template("report.css.j2").render(p=PALETTE)
    common = dict(data=data, css=Markup(css), counts=data.counts, failing=data.failing)
    pages = {"index.html": env.get_template("index.html.j2").render(
        **common, attention=attention(data), page_of=page_name)}
    objective = env.get_template("objective.html.j2")
    for obj in data.objectives:
        pages[page_name(obj.id)] = objective.render(**{**common, "counts": obj.counts,
                                                        "failing": sum(1 for k in obj.key_results if k.error)},
                                                     obj=obj, page_of=page_name)
    return pages


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".okr-report-", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_site(data: ReportData, out_dir: Path) -> list[Path]:
    """Write the report's pages under ``out_dir``; returns their paths, index.html first."""
    pages = render_pages(data)
    written = []
    for relative, html in pages.items():
        target = out_dir / relative
        _write(target, html)
        written.append(target)
    folder = out_dir / OBJECTIVES_DIR
    if folder.is_dir():
        keep = {p.name for p in written if p.parent == folder}
        for old in folder.glob("*.html"):
            if old.name not in keep:
                old.unlink()
    return written


__all__ = ["render_pages", "write_site", "page_name", "attention", "TEMPLATES"]
