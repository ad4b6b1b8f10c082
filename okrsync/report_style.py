"""The report's colours and number formats, in one place so their contrast can be checked.

Every text colour meets WCAG 2.1 AA against its background (4.5:1), and every chart line and bar
colour meets the 3:1 asked of graphics (success criterion 1.4.11) against white; tests hold this.
"""
from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class Palette:
    text: str = "#1b1f24"
    muted: str = "#4f5661"
    link: str = "#0b57d0"
    page: str = "#f5f6f8"
    card: str = "#ffffff"
    grid: str = "#d5d9de"
    track: str = "#e3e6ea"
    # chart series: check-ins, manual check-ins, expected, target, forecast, forecast range
    series: tuple[str, ...] = ("#1f5fbf", "#b3410e", "#5d6470", "#1b7a3a", "#7a3fb0", "#8d5cc4")
    # status badges: (text, background); the text colour also fills the progress bar
    badges: tuple[tuple[str, str, str], ...] = (
        ("on_track", "#0f5a2a", "#ddf3e4"),
        ("at_risk", "#6b4300", "#fff0cc"),
        ("off_track", "#9b1c1c", "#fde2e2"),
        ("done", "#1d3f8a", "#e0e9fb"),
        ("no_data", "#3d434c", "#eceef1"),
        ("error", "#ffffff", "#a61b1b"),
    )

    def badge(self, status: str) -> tuple[str, str]:
        for name, fg, bg in self.badges:
            if name == status:
                return fg, bg
        return self.text, self.card


PALETTE = Palette()


def _channel(c: float) -> float:
    c /= 255
    return c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4


def luminance(hex_colour: str) -> float:
    """WCAG relative luminance of #rrggbb."""
    h = hex_colour.lstrip("#")
    r, g, b = (int(h[i:i + 2], 16) for i in (0, 2, 4))
    return 0.2126 * _channel(r) + 0.7152 * _channel(g) + 0.0722 * _channel(b)


def contrast(a: str, b: str) -> float:
    """WCAG contrast ratio of two colours (1 to 21)."""
    la, lb = sorted((luminance(a), luminance(b)), reverse=True)
    return (la + 0.05) / (lb + 0.05)


def fmt(value: float | None) -> str:
    """1,234 · 97.12 · 0.5 · '-' for none."""
    if value is None or not math.isfinite(value):
        return "-"
    if value == int(value) and abs(value) < 1e15:
        return f"{int(value):,}"
    return f"{value:,.2f}".rstrip("0").rstrip(".")


def fmt_unit(value: float | None, unit: str | None = None) -> str:
    text = fmt(value)
    if not unit or text == "-":
        return text
    return f"{text}{unit}" if unit == "%" else f"{text} {unit}"


def pct(share: float | None) -> str:
    return "-" if share is None or not math.isfinite(share) else f"{100 * share:.0f}%"


__all__ = ["PALETTE", "Palette", "contrast", "luminance", "fmt", "fmt_unit", "pct"]
