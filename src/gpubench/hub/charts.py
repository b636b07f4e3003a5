"""Charts as inline SVG, drawn on the server: no JavaScript, no build step, and a
page that is one HTTP response. Every piece of text goes through ``escape``;
numbers are formatted here, never taken as markup.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from markupsafe import Markup, escape

ROW_H = 22
LABEL_W = 260
BAR_W = 420
VALUE_W = 170
PAD = 8
LABEL_CHARS = 38


@dataclass
class Bar:
    label: str
    value: float
    low: float | None = None        # whisker from low to high (the spread over uploads)
    high: float | None = None
    href: str | None = None
    note: str = ""                  # shown after the value, e.g. "3 uploads"


def fmt(value: float | None, digits: int = 3) -> str:
    if value is None or not isinstance(value, (int, float)) or not math.isfinite(value):
        return "—"
    if value == 0:
        return "0"
    if abs(value) >= 10 ** digits:
        return f"{value:,.0f}"
    return f"{value:.{digits}g}"


def _short(text: str) -> str:
    return text if len(text) <= LABEL_CHARS else text[: LABEL_CHARS - 1] + "…"


def hbar_chart(bars: list[Bar], unit: str = "", title: str = "") -> Markup:
    """Horizontal bars from zero, one per item, with optional min–max whiskers."""
    bars = [b for b in bars if isinstance(b.value, (int, float)) and math.isfinite(b.value)]
    if not bars:
        return Markup("")
    top = max(max(b.value, b.high if b.high is not None else b.value) for b in bars)
    top = top if top > 0 else 1.0
    width = LABEL_W + BAR_W + VALUE_W + 2 * PAD
    head = 20 if title else 0
    height = head + len(bars) * ROW_H + 2 * PAD + 14

    def x(v: float) -> float:
        return LABEL_W + PAD + max(0.0, min(v, top)) / top * BAR_W

    parts = [(f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" width="{width}" height="{height}" '
              f'viewBox="0 0 {width} {height}" role="img" aria-label="{escape(title or "bar chart")}">')]
    if title:
        parts.append(f'<text x="{PAD}" y="14" class="chart-title">{escape(title)}</text>')
    for i, b in enumerate(bars):
        y = head + PAD + i * ROW_H
        label = escape(_short(b.label))
        text = f'<text x="{LABEL_W}" y="{y + 15}" text-anchor="end" class="chart-label">' \
               f'<title>{escape(b.label)}</title>{label}</text>'
        if b.href:
            text = f'<a href="{escape(b.href)}">{text}</a>'
        parts.append(text)
        x0, x1 = LABEL_W + PAD, x(b.value)
        parts.append(f'<rect x="{x0:.1f}" y="{y + 3}" width="{max(x1 - x0, 0.5):.1f}" height="{ROW_H - 6}" '
                     f'class="chart-bar"><title>{escape(b.label)}: {escape(fmt(b.value))} '
                     f'{escape(unit)}</title></rect>')
        if b.low is not None and b.high is not None:
            lo, hi, mid = x(b.low), x(b.high), y + ROW_H / 2
            parts.append(f'<line x1="{lo:.1f}" y1="{mid}" x2="{hi:.1f}" y2="{mid}" class="chart-whisker"/>')
            for xe in (lo, hi):
                parts.append(f'<line x1="{xe:.1f}" y1="{mid - 5}" x2="{xe:.1f}" y2="{mid + 5}" '
                             f'class="chart-whisker"/>')
        value_text = f"{fmt(b.value)} {unit}".strip() + (f" · {b.note}" if b.note else "")
        parts.append(f'<text x="{LABEL_W + PAD + BAR_W + 6}" y="{y + 15}" class="chart-value">'
                     f'{escape(value_text)}</text>')
    axis_y = head + PAD + len(bars) * ROW_H
    parts.append(f'<line x1="{LABEL_W + PAD}" y1="{head + PAD}" x2="{LABEL_W + PAD}" y2="{axis_y}" '
                 f'class="chart-axis"/>')
    parts.append(f'<text x="{LABEL_W + PAD}" y="{axis_y + 12}" class="chart-tick">0</text>')
    parts.append(f'<text x="{LABEL_W + PAD + BAR_W}" y="{axis_y + 12}" text-anchor="end" '
                 f'class="chart-tick">{escape(fmt(top))} {escape(unit)}</text>')
    parts.append("</svg>")
    return Markup("".join(parts))
