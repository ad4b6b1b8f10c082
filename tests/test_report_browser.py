"""The report in a real headless Chromium (tests/headless.py; skipped, saying why, where none is installed).

Each page is opened from file:// and must load with no console error (a blocked inline script or style
would be one, under the page's Content-Security-Policy) and no request other than file://; every key
result has its row on the index, its card and its chart (an SVG with drawn series and a caption) on its
objective page; links go to the pages, anchors and data they name; a phone-wide viewport does not
scroll sideways; the page prints. Screenshots go to $OKR_SYNC_SCREENSHOTS when set, else tmp_path.
"""
from __future__ import annotations

import os
from datetime import datetime, timezone
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

from conftest import EXAMPLE
from connectors.sql_store import open_store
from headless import Browser
from okrsync.report import write_report
from report_history import write_history

NOW = datetime(2026, 11, 10, 12, 0, tzinfo=timezone.utc)

CARDS = """(() => [...document.querySelectorAll('article.card')].map(a => {
  const svg = a.querySelector('figure svg[role=img]');
  const title = svg && document.getElementById(svg.getAttribute('aria-labelledby'));
  const desc = svg && document.getElementById(svg.getAttribute('aria-describedby'));
  return {id: a.id, svg: !!svg, drawn: svg ? svg.querySelectorAll('.series path.line, .series .dot').length : 0,
          height: svg ? svg.getBoundingClientRect().height : 0,
          title: title ? title.textContent : null, desc: desc ? desc.textContent : null,
          link: (a.querySelector('a.data-link') || {}).href || null,
          tickets: [...a.querySelectorAll('.evidence a')].map(t => t.href)};
}))()"""
ROWS = "[...document.querySelectorAll('li.row')].map(r => ({kr: r.dataset.kr, href: r.querySelector('a').href}))"
LINKS = "[...document.querySelectorAll('a[href]')].map(a => a.href)"


@pytest.fixture(scope="module")
def browser():
    with Browser() as b:
        yield b


@pytest.fixture
def shots(tmp_path) -> Path:
    folder = Path(os.environ.get("OKR_SYNC_SCREENSHOTS") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _clean(page) -> None:
    assert page.errors == []
    assert [u for u in page.requests if not u.startswith("file://")] == []


def _target(url: str) -> tuple[Path, str]:
    parts = urlsplit(url)
    return Path(unquote(parts.path)), parts.fragment


def _png(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


def test_the_harness_sees_a_network_request_and_a_console_error(browser, tmp_path):
    """The checks below can fail: a page that asks the network, or logs an error, is caught."""
    bad = tmp_path / "bad.html"
    bad.write_text('<!doctype html><title>x</title><img src="http://127.0.0.1:9/x.png" alt="">'
                   "<script>console.error('boom')</script>")
    page = browser.open(bad.as_uri())
    assert "http://127.0.0.1:9/x.png" in page.requests
    assert any("boom" in e for e in page.errors)


def test_a_quarter_of_history_renders_every_card_and_chart_with_no_network(browser, tmp_path, shots):
    with open_store(f"sqlite:///{tmp_path / 'history.db'}") as store:
        ids = write_history(store, key_results=15, days=40)
        write_report(store, tmp_path / "site", now=NOW, title="OKR report · teams", public_url="https://okrs.example.com/")
        states = {s.kr_id: s for s in store.key_results()}
        last_links = {k: next(c.link for c in reversed(store.history(k)) if c.link) for k in ids}
    index = browser.open((tmp_path / "site" / "index.html").as_uri())
    _clean(index)
    rows = index.evaluate(ROWS)
    assert [r["kr"] for r in rows] == ids
    for row in rows:
        page_file, anchor = _target(row["href"])
        assert page_file == tmp_path / "site" / "objectives" / f"{states[row['kr']].objective_id}.html"
        assert anchor == f"kr-{row['kr']}" and page_file.is_file()
    assert "https://okrs.example.com/" in index.evaluate(LINKS)
    _png(index.screenshot(shots / "report-index.png", width=1280))

    seen = []
    for obj in sorted({s.objective_id for s in states.values()}):
        page = browser.open((tmp_path / "site" / "objectives" / f"{obj}.html").as_uri())
        _clean(page)
        cards = page.evaluate(CARDS)
        for card in cards:
            kr = card["id"].removeprefix("kr-")
            seen.append(kr)
            assert card["svg"] and card["drawn"] >= 3 and card["height"] > 100, card
            assert card["title"] == f"Burn-up of {kr}" and "check-ins in 2026-Q4" in card["desc"]
            assert card["link"] == last_links[kr]
            assert all(t.startswith("https://jira.example.com/browse/PAY-") for t in card["tickets"])
        back = [u for u in page.evaluate(LINKS) if u.endswith("index.html")]
        assert back and _target(back[0])[0] == tmp_path / "site" / "index.html"
        if obj == "obj-00":
            assert any(card["tickets"] for card in cards)          # evidence that moved, linked
            width, _ = _png(page.screenshot(shots / "report-objective.png", width=1280))
            assert width == 1280
            page.screenshot(shots / "report-phone.png", width=390, mobile=True)
            assert page.evaluate("document.documentElement.scrollWidth") <= 390
            pdf = page.print_pdf(tmp_path / "obj-00.pdf")
            assert pdf.read_bytes()[:5] == b"%PDF-" and pdf.stat().st_size > 10_000
    assert sorted(seen) == sorted(ids)


def test_the_example_report_in_the_browser(browser, cli, tmp_path, shots):
    assert cli("run", str(EXAMPLE), "--no-prefect").exit_code == 0
    assert cli("checkin", "checkout-nps", "41", "--note", "survey re-run").exit_code == 0
    done = cli("report", str(EXAMPLE), "--out", "site")
    assert done.exit_code == 0, done.output
    index = browser.open((tmp_path / "site" / "index.html").as_uri())
    _clean(index)
    assert [r["kr"] for r in index.evaluate(ROWS)] == ["checkout-nps", "checkout-p95", "checkout-success",
                                                       "activated-accounts", "self-serve-customers", "self-serve-revenue",
                                                       "weekly-signups"]
    for obj in ("checkout", "growth"):
        page = browser.open((tmp_path / "site" / "objectives" / f"{obj}.html").as_uri())
        _clean(page)
        cards = page.evaluate(CARDS)
        assert len(cards) == {"checkout": 3, "growth": 4}[obj] and all(c["svg"] and c["drawn"] >= 3 for c in cards)
        assert all(c["link"] is None for c in cards)          # file:// data: shown as a path, never linked
        if obj == "checkout":
            page.screenshot(shots / "report-example.png", width=1280)
