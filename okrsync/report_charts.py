"""A key result's burn-up chart as inline SVG (pygal), and its text alternative.

Series, in this order (colours in PALETTE.series): the check-ins (automatic and backfilled ones as a
line), manual check-ins (marked as separate dots), the expected line from baseline at the period start
to target at its end, the target, and the forecast to the period end with its range (a wedge from the
latest value to the low and high ends). No JavaScript: pygal's tooltips are switched off, so the SVG is
complete as written and prints as shown.
"""
from __future__ import annotations

import re
from functools import lru_cache
from datetime import date, datetime, time, timedelta, timezone

import pygal
from pygal.style import Style

from okrsync.report_data import KeyResultView, Point, period_label
from okrsync.report_style import PALETTE, fmt, fmt_unit

DOTS_UP_TO = 31            # a series with more check-ins than this is drawn as a line without dots
_SVG_OPEN = re.compile(r"^<svg ")
_SCRIPT = re.compile(r"<script\b[^>]*>.*?</script>", re.S)   # pygal writes its config as a script even with js=[]


@lru_cache(maxsize=16)
def _style(colours: tuple[str, ...]) -> Style:
    """pygal colours series by their order, so each chart's style lists the colours of the series it has."""
    return Style(background="#ffffff", plot_background="#ffffff", foreground=PALETTE.text,
                 foreground_strong=PALETTE.text, foreground_subtle=PALETTE.muted, opacity="1", opacity_hover="1",
                 transition="none", colors=colours,
                 font_family="system-ui, -apple-system, 'Segoe UI', Roboto, Arial, sans-serif",
                 label_font_size=13, major_label_font_size=13, legend_font_size=13, value_font_size=12,
                 tooltip_font_size=12, title_font_size=15, guide_stroke_color=PALETTE.grid,
                 major_guide_stroke_color=PALETTE.grid, stroke_width=2)


def _moment(day: date) -> datetime:
    return datetime.combine(day, time.min, tzinfo=timezone.utc)


def _month_ticks(start: date, end: date) -> list[datetime]:
    """The first of each month in the period (and its start): the x axis labels."""
    ticks, day = [_moment(start)], date(start.year, start.month, 1)
    while True:
        day = date(day.year + (day.month == 12), day.month % 12 + 1, 1)
        if day > end:
            return ticks
        ticks.append(_moment(day))


def _series(kr: KeyResultView) -> list[tuple[int, list, dict]]:
    """(index in LEGEND, points, pygal options) of each series the chart has: a series with nothing to
    draw is left out (pygal pads every series to the longest one, so each costs as much as the check-ins)."""
    start, end = _span(kr)
    period_end = _moment(end + timedelta(days=1))
    measured = [p for p in kr.points if p.kind != "manual"]
    manual = [p for p in kr.points if p.kind == "manual"]
    series = []
    if measured:
        series.append((0, [(p.at, p.value) for p in measured], {"show_dots": len(measured) <= DOTS_UP_TO}))
    if manual:
        series.append((1, [(p.at, p.value) for p in manual], {"stroke": False, "dots_size": 6}))
    series.append((2, [(_moment(start), kr.baseline), (period_end, kr.target)],
                   {"show_dots": False, "stroke_style": {"width": 2, "dasharray": "6, 4"}}))
    series.append((3, [(_moment(start), kr.target), (period_end, kr.target)],
                   {"show_dots": False, "stroke_style": {"width": 1.5}}))
    last = kr.points[-1] if kr.points else None
    if kr.forecast is not None and last is not None:
        f = kr.forecast
        series.append((4, [(last.at, last.value), (period_end, f.value)],
                       {"show_dots": False, "stroke_style": {"width": 2, "dasharray": "2, 3"}}))
        series.append((5, [(last.at, last.value), (period_end, f.high), (period_end, f.low), (last.at, last.value)],
                       {"show_dots": False, "stroke_style": {"width": 1}}))
    return series


def _span(kr: KeyResultView) -> tuple[date, date]:
    start = kr.period_start or (kr.points[0].at.date() if kr.points else date.today())
    end = kr.period_end or (kr.points[-1].at.date() if kr.points else start + timedelta(days=1))
    return start, end


def burnup_svg(kr: KeyResultView) -> str:
    """The chart as an <svg> element (no XML declaration), labelled for screen readers by the
    figure's caption (aria-labelledby / aria-describedby the caption's ids, see report_html)."""
    start, end = _span(kr)
    series = _series(kr)
    chart = pygal.DateTimeLine(
        width=560, height=260, style=_style(tuple(PALETTE.series[i] for i, _, _ in series)), js=[],
        disable_xml_declaration=True, explicit_size=False, show_legend=False,   # the legend is HTML (legend())
        show_x_guides=False, show_y_guides=True, dots_size=3, stroke=True,
        show_minor_y_labels=False, y_labels_major_count=6,
        x_value_formatter=lambda d: f"{d:%b} {d.day}",
        value_formatter=lambda v: fmt(v), truncate_legend=-1, margin=8, spacing=8, tooltip_border_radius=0,
        print_values=False, x_labels=_month_ticks(start, end), x_label_rotation=0, include_x_axis=False,
        allow_interruptions=True, classes=["pygal-chart", "burnup"])
    for i, points, options in series:
        chart.add(LEGEND[i][0], points, **options)
    svg = _SCRIPT.sub("", chart.render(is_unicode=True))
    return _SVG_OPEN.sub(f'<svg role="img" aria-labelledby="chart-title-{kr.id}" '
                         f'aria-describedby="chart-desc-{kr.id}" focusable="false" ', svg, count=1)


LEGEND = (("check-ins", "solid"), ("manual check-in", "dot"), ("expected", "dashed"), ("target", "solid"),
          ("forecast", "dotted"), ("forecast range", "thin"))


def legend(kr: KeyResultView) -> list[tuple[str, str, str]]:
    """The chart's legend as (label, colour, line style), for the series the chart has."""
    return [(LEGEND[i][0], PALETTE.series[i], LEGEND[i][1]) for i, _, _ in _series(kr)]


def _day(moment: datetime | date) -> str:
    day = moment.date() if isinstance(moment, datetime) else moment
    return f"{day:%b} {day.day}, {day.year}"


def text_alternative(kr: KeyResultView) -> str:
    """The chart in one paragraph: what a sighted reader takes from it."""
    period = period_label(kr.period_start, kr.period_end)
    parts = []
    if not kr.points:
        parts.append(f"No check-ins in {period} yet.")
    else:
        first, last = kr.points[0], kr.points[-1]
        manual = sum(1 for p in kr.points if p.kind == "manual")
        backfill = sum(1 for p in kr.points if p.kind == "backfill")
        kinds = ", ".join(x for x in (f"{manual} manual" if manual else "", f"{backfill} backfilled" if backfill else "") if x)
        parts.append(f"{len(kr.points)} check-in{'s' if len(kr.points) != 1 else ''} in {period}"
                     + (f" ({kinds})" if kinds else "")
                     + f", from {fmt_unit(first.value, kr.unit)} on {_day(first.at)} to "
                     f"{fmt_unit(last.value, kr.unit)} on {_day(last.at)}.")
    if kr.period_start and kr.period_end:
        parts.append(f"Expected: a straight line from {fmt_unit(kr.baseline, kr.unit)} on {_day(kr.period_start)} "
                     f"to the target {fmt_unit(kr.target, kr.unit)} on {_day(kr.period_end)}.")
        if kr.expected is not None and kr.progress is not None:
            parts.append(f"At the last check-in it was {100 * kr.progress:.0f}% of the way, against "
                         f"{100 * kr.expected:.0f}% expected.")
    if kr.forecast is not None:
        f = kr.forecast
        parts.append(f"Forecast for {_day(f.at)}: {fmt_unit(f.value, kr.unit)} (range {fmt(f.low)} to "
                     f"{fmt_unit(f.high, kr.unit)}), {f.status.replace('_', ' ')}.")
    return " ".join(parts)


def table_rows(points: tuple[Point, ...]) -> list[tuple[str, str, str, str]]:
    """The chart's data as rows (date, value, kind, status), for the table behind the chart."""
    return [(f"{p.at:%Y-%m-%d %H:%M}", fmt(p.value), p.kind, (p.status or "-").replace("_", " ")) for p in points]


__all__ = ["burnup_svg", "text_alternative", "table_rows", "legend", "LEGEND", "DOTS_UP_TO"]
