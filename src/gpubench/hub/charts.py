"""Charts as inline SVG, drawn on the server: no JavaScript, no build step, and a
page that is one HTTP response. Every piece of text goes through ``escape``;
numbers are formatted here, never taken as markup.

The server cannot measure text, so every label's width is estimated from the
advance widths of DejaVu Sans (the widest of the common sans-serif faces, and the
first one the charts ask for), with a margin; the space a chart keeps for its
labels comes from those estimates, and labels too long for that are wrapped,
never cut.

- ``hbar_chart``: horizontal bars from zero, one per item (a leaderboard, a run's
  benchmark without a natural x axis).
- ``line_chart``: one line per series against a log2 size axis (collectives: busbw
  against message size, as nccl-tests draws it) or against ordered categories
  (matmul: TFLOP/s against shape).
- ``ratio_chart``: each case's ratio to run 1 with its interval on a log axis, and
  the geometric mean of each run below the cases.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from markupsafe import Markup, escape

FONT_PX = 12
LINE_PX = 14                # a wrapped label's line height
ROW_H = 22
PAD = 8
LABEL_MAX_W = 320           # wider labels wrap onto more lines
BAR_W = 420
PLOT_W = 560
PLOT_H = 240
SWATCH_W = 22
# Tableau 10: distinguishable, and still readable when printed in grey.
PALETTE = ("#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#ff9da7",
           "#9c755f", "#bab0ac")
DASHES = ("", "6 3", "2 3", "8 3 2 3")

# DejaVu Sans advance widths of ASCII 32..126, in thousandths of an em.
_ASCII_W = (318, 401, 460, 838, 636, 950, 780, 275, 390, 390, 500, 838, 318, 361, 318, 337, 636, 636, 636,
            636, 636, 636, 636, 636, 636, 636, 337, 337, 838, 838, 838, 531, 1000, 684, 686, 698, 770, 632,
            575, 775, 752, 295, 295, 656, 557, 863, 748, 787, 603, 787, 695, 635, 611, 732, 684, 989, 685,
            611, 685, 390, 337, 390, 838, 500, 500, 613, 635, 550, 635, 615, 352, 635, 634, 278, 278, 579,
            278, 974, 634, 612, 635, 635, 411, 521, 392, 634, 592, 818, 592, 592, 525, 636, 337, 636, 838)
_OTHER_W = {"×": 838, "÷": 838, "µ": 636, "·": 318, "–": 500, "−": 838, "≥": 838, "≤": 838}
# Room for a face a little wider than DejaVu Sans (Verdana) and for rounding.
_SAFETY = 1.08


@dataclass
class Bar:
    label: str
    value: float
    low: float | None = None        # whisker from low to high (the spread over uploads)
    high: float | None = None
    href: str | None = None
    note: str = ""                  # shown after the value, e.g. "3 uploads"


@dataclass
class RefMark:
    """A published figure drawn on a bar chart as a reference, never as a bar: a dashed
    line at its value and a diamond, on a row of its own under the uploads."""
    label: str
    value: float
    tip: str = ""                   # the tooltip: what was measured, the source
    href: str | None = None         # the source


@dataclass
class Point:
    x: float                        # bytes on a log2 axis; the category's index on a category axis
    y: float
    tip: str = ""                   # the tooltip: the case as its benchmark labels it


@dataclass
class Series:
    name: str
    points: list[Point] = field(default_factory=list)


@dataclass
class RatioCell:
    ratio: float
    lo: float | None = None         # the ratio's 90% interval, when the samples give one
    hi: float | None = None
    significant: bool | None = None     # False: the interval contains 1
    noisy: bool = False             # a side's spread is high: left out of the geometric mean


@dataclass
class RatioRow:
    label: str
    # per compared run (run 2, 3, …): its cell, or why there is none ("missing", "failed")
    cells: list[RatioCell | str | None]


@dataclass
class GeoMean:
    value: float
    lo: float | None
    hi: float | None
    n: int
    noisy_left_out: int = 0


def fmt(value: float | None, digits: int = 3) -> str:
    if value is None or not isinstance(value, (int, float)) or not math.isfinite(value):
        return "—"
    if value == 0:
        return "0"
    if abs(value) >= 10 ** digits:
        return f"{value:,.0f}"
    return f"{value:.{digits}g}"


def size_label(n: float) -> str:
    """Bytes as people write message sizes: 512 B, 4 KiB, 1.5 MiB, 2 GiB."""
    from gpubench.units import format_bytes

    return format_bytes(n)


def text_width(text: str, px: float = FONT_PX, bold: bool = False) -> float:
    """The estimated rendered width of ``text`` in pixels (an overestimate)."""
    total = 0
    for ch in text:
        o = ord(ch)
        total += _ASCII_W[o - 32] if 32 <= o < 127 else _OTHER_W.get(ch, 1000)
    return total / 1000 * px * _SAFETY * (1.12 if bold else 1.0)


def wrap(text: str, max_w: float, px: float = FONT_PX) -> list[str]:
    """``text`` in lines no wider than ``max_w``: at spaces where it can, inside a word
    where a word alone is too wide."""
    lines: list[str] = []
    line = ""
    for word in text.split(" "):
        candidate = f"{line} {word}" if line else word
        if text_width(candidate, px) <= max_w:
            line = candidate
            continue
        if line:
            lines.append(line)
        line = ""
        for ch in word:
            if line and text_width(line + ch, px) > max_w:
                lines.append(line)
                line = ""
            line += ch
    lines.append(line)
    return lines


def nice_ticks(top: float, n: int = 5) -> list[float]:
    """0 and round steps (1, 2, 2.5 or 5 × 10^k) up to the first at or above ``top``."""
    if not (top > 0 and math.isfinite(top)):
        return [0.0, 1.0]
    raw = top / n
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    count = max(1, math.ceil(top / step - 1e-9))
    return [round(i * step, 12) for i in range(count + 1)]


def _log_ticks(lo: float, hi: float) -> list[float]:
    """Ratios worth labelling between lo and hi on a log axis: the densest of a few
    sets of round numbers per decade that gives at most 8, or even linear steps when
    the range is too narrow for any to give 3."""
    for mantissas in ((1, 1.2, 1.5, 2, 2.5, 3, 4, 5, 6, 8), (1, 1.5, 2, 3, 5, 7), (1, 2, 5), (1,)):
        out = [m * 10.0 ** k for k in range(math.floor(math.log10(lo)) - 1, math.ceil(math.log10(hi)) + 1)
               for m in mantissas]
        out = [round(t, 12) for t in out if lo <= t <= hi]
        if len(out) <= 8:
            break
    if len(out) >= 3:
        return out
    span = hi - lo
    mag = 10 ** math.floor(math.log10(span / 4))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if span / (m * mag) <= 6)
    first = math.ceil(lo / step - 1e-9)
    return [round(i * step, 12) for i in range(first, math.floor(hi / step + 1e-9) + 1)]


def _ratio_text(v: float) -> str:
    return f"{v:.3g}×"


class _Svg:
    """An SVG document being written: parts of markup, all text escaped on the way in."""

    def __init__(self, title: str):
        self.title = title
        self.parts: list[str] = []

    def text(self, x: float, y: float, content: str, cls: str, anchor: str = "start",
             tip: str | None = None, extra: str = "") -> str:
        a = f' text-anchor="{anchor}"' if anchor != "start" else ""
        t = f"<title>{escape(tip)}</title>" if tip else ""
        return f'<text x="{x:.1f}" y="{y:.1f}"{a} class="{cls}"{extra}>{t}{escape(content)}</text>'

    def lines(self, x: float, y: float, lines: list[str], cls: str, anchor: str = "start",
              tip: str | None = None) -> str:
        """Text on one or more lines; the first line's baseline at ``y``."""
        if len(lines) == 1:
            return self.text(x, y, lines[0], cls, anchor, tip)
        a = f' text-anchor="{anchor}"' if anchor != "start" else ""
        t = f"<title>{escape(tip)}</title>" if tip else ""
        spans = "".join(f'<tspan x="{x:.1f}" y="{y + i * LINE_PX:.1f}">{escape(s)}</tspan>'
                        for i, s in enumerate(lines))
        return f'<text x="{x:.1f}" y="{y:.1f}"{a} class="{cls}">{t}{spans}</text>'

    def render(self, width: float, height: float) -> Markup:
        w, h = math.ceil(width), math.ceil(height)
        head = (f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" width="{w}" height="{h}" '
                f'viewBox="0 0 {w} {h}" role="img" aria-label="{escape(self.title or "chart")}">')
        return Markup(head + "".join(self.parts) + "</svg>")


def _title(svg: _Svg, title: str, width: float) -> tuple[float, float]:
    """Draws the chart title wrapped to ``width``; (height it takes, its widest line)."""
    if not title:
        return 0.0, 0.0
    lines = wrap(title, width, FONT_PX * 1.12)
    svg.parts.append(svg.lines(PAD, 14, lines, "chart-title"))
    return 6 + LINE_PX * len(lines), max(text_width(s, bold=True) for s in lines)


def hbar_chart(bars: list[Bar], unit: str = "", title: str = "", axis_label: str = "",
               refs: list[RefMark] = ()) -> Markup:
    """Horizontal bars from zero, one per item, with optional min–max whiskers. Labels
    get the width of the longest (up to LABEL_MAX_W, then they wrap). ``refs``, published
    figures, follow on rows of their own: a dashed line and a diamond each, labelled
    "published", so that no one takes them for uploads."""
    bars = [b for b in bars if isinstance(b.value, (int, float)) and math.isfinite(b.value)]
    refs = [r for r in refs if isinstance(r.value, (int, float)) and math.isfinite(r.value) and r.value > 0]
    if not bars and not refs:
        return Markup("")
    top = max([max(b.value, b.high if b.high is not None and math.isfinite(b.high) else b.value) for b in bars]
              + [r.value for r in refs])
    ticks = nice_ticks(top)
    top = ticks[-1]
    wrapped = [wrap(b.label, LABEL_MAX_W) for b in bars]
    ref_wrapped = [wrap(f"published: {r.label}", LABEL_MAX_W) for r in refs]
    label_w = max(text_width(s) for ls in wrapped + ref_wrapped for s in ls)
    value_texts = [f"{fmt(b.value)} {unit}".strip() + (f" · {b.note}" if b.note else "") for b in bars]
    ref_texts = [f"{fmt(r.value)} {unit}".strip() + " · published" for r in refs]
    value_w = max(text_width(t) for t in value_texts + ref_texts) + 6
    x0 = PAD + label_w + PAD
    tick_texts = [f"{fmt(t)}" for t in ticks]
    # The last tick's label is centred on the end of the axis: room for its right half.
    width = max(x0 + BAR_W + 6 + value_w, x0 + BAR_W + text_width(tick_texts[-1]) / 2) + PAD
    svg = _Svg(title or "bar chart")
    head, title_w = _title(svg, title, width - 2 * PAD)
    width = max(width, title_w + 2 * PAD)

    def x(v: float) -> float:
        return x0 + max(0.0, min(v, top)) / top * BAR_W if top > 0 else x0

    y = head + PAD
    for b, lines, value_text in zip(bars, wrapped, value_texts):
        row_h = max(ROW_H, LINE_PX * len(lines) + 8)
        text = svg.lines(x0 - PAD, y + 15, lines, "chart-label", "end", tip=b.label)
        if b.href:
            text = f'<a href="{escape(b.href)}">{text}</a>'
        svg.parts.append(text)
        svg.parts.append(f'<rect x="{x0:.1f}" y="{y + 3:.1f}" width="{max(x(b.value) - x0, 0.5):.1f}" '
                         f'height="{ROW_H - 6}" class="chart-bar"><title>{escape(b.label)}: '
                         f'{escape(fmt(b.value))} {escape(unit)}</title></rect>')
        if b.low is not None and b.high is not None:
            lo, hi, mid = x(b.low), x(b.high), y + ROW_H / 2
            svg.parts.append(f'<line x1="{lo:.1f}" y1="{mid}" x2="{hi:.1f}" y2="{mid}" class="chart-whisker"/>')
            for xe in (lo, hi):
                svg.parts.append(f'<line x1="{xe:.1f}" y1="{mid - 5}" x2="{xe:.1f}" y2="{mid + 5}" '
                                 f'class="chart-whisker"/>')
        svg.parts.append(svg.text(x0 + BAR_W + 6, y + 15, value_text, "chart-value"))
        y += row_h
    if refs:
        if bars:
            svg.parts.append(f'<line x1="{PAD}" y1="{y + 2:.1f}" x2="{x0 + BAR_W:.1f}" y2="{y + 2:.1f}" '
                             f'class="chart-grid"/>')
            y += 4
        for r, lines, value_text in zip(refs, ref_wrapped, ref_texts):
            row_h = max(ROW_H, LINE_PX * len(lines) + 8)
            tip = f"published (not an upload): {r.label}: {fmt(r.value)} {unit}".strip() + (f" — {r.tip}" if r.tip else "")
            text = svg.lines(x0 - PAD, y + 15, lines, "chart-label chart-published-label", "end", tip=tip)
            if r.href:
                text = f'<a href="{escape(r.href)}">{text}</a>'
            svg.parts.append(text)
            X, mid = x(r.value), y + row_h / 2
            svg.parts.append(f'<g class="chart-published" data-value="{r.value!r}"><title>{escape(tip)}</title>'
                             f'<line x1="{x0:.1f}" y1="{mid:.1f}" x2="{X:.1f}" y2="{mid:.1f}" class="chart-ref"/>'
                             f'<polygon points="{X - 6:.1f},{mid:.1f} {X:.1f},{mid - 6:.1f} {X + 6:.1f},{mid:.1f} '
                             f'{X:.1f},{mid + 6:.1f}" class="chart-published-mark"/></g>')
            svg.parts.append(svg.text(x0 + BAR_W + 6, y + 15, value_text, "chart-value"))
            y += row_h
    axis_y = y
    svg.parts.append(f'<line x1="{x0:.1f}" y1="{head + PAD}" x2="{x0:.1f}" y2="{axis_y}" class="chart-axis"/>')
    svg.parts.append(f'<line x1="{x0:.1f}" y1="{axis_y}" x2="{x0 + BAR_W:.1f}" y2="{axis_y}" '
                     f'class="chart-axis"/>')
    _axis_ticks(svg, ticks, tick_texts, x, axis_y)
    axis_title = axis_label or unit
    if axis_title:
        svg.parts.append(svg.text(x0 + BAR_W / 2, axis_y + 32, axis_title, "chart-axis-title", "middle"))
    return svg.render(width, axis_y + 32 + 6 + PAD)


def line_chart(series: list[Series], *, x_label: str, y_label: str, unit: str = "", title: str = "",
               x_scale: str = "log2", categories: list[str] | None = None) -> Markup:
    """One line per series. ``x_scale="log2"``: x is bytes, ticks at powers of two
    labelled in B/KiB/MiB/GiB. ``x_scale="category"``: x is an index into
    ``categories``, drawn in that order with slanted labels. y from zero, in ``unit``."""
    series = [Series(s.name, [p for p in s.points if math.isfinite(p.y) and math.isfinite(p.x)
                              and (x_scale != "log2" or p.x > 0)]) for s in series]
    series = [s for s in series if s.points]
    if not series:
        return Markup("")
    svg = _Svg(title or "line chart")
    ys = [p.y for s in series for p in s.points]
    y_ticks = nice_ticks(max(ys))
    y_top = y_ticks[-1]
    y_tick_texts = [fmt(t) for t in y_ticks]

    # The x axis: where each tick goes (0..PLOT_W) and what it says.
    if x_scale == "log2":
        xs = [math.log2(p.x) for s in series for p in s.points]
        lo, hi = math.floor(min(xs)), math.ceil(max(xs))
        if hi == lo:
            lo, hi = lo - 1, hi + 1
        label_w = max(text_width(size_label(2.0 ** k)) for k in range(lo, hi + 1)) + 10
        # Every power of two when they fit, else every 2nd, 5th or 10th: multiples of the
        # step, so that 1 KiB, 1 MiB and 1 GiB are among them whenever the axis spans them.
        step = next(s for s in (1, 2, 5, 10, 20) if ((hi - lo) / s + 1) * label_w <= PLOT_W or s == 20)

        def px(v: float) -> float:
            return (math.log2(v) - lo) / (hi - lo) * PLOT_W

        x_ticks = [(px(2.0 ** k), size_label(2.0 ** k)) for k in range(lo, hi + 1) if k % step == 0]
        slanted = False
    else:
        cats = list(categories or [])
        n = max(len(cats), 1)

        def px(v: float) -> float:
            return (v + 0.5) / n * PLOT_W

        x_ticks = [(px(i), c) for i, c in enumerate(cats)]
        slanted = True
    # Slanted labels (45°) reach down and to the left of their tick by width·√½.
    s2 = math.sqrt(0.5)
    tick_ext = [(text_width(t) * s2 + FONT_PX * s2 if slanted else text_width(t) / 2) for _, t in x_ticks]
    x_tick_h = (max(tick_ext, default=0.0) + 8) if slanted else FONT_PX + 6

    y_label_w = max(text_width(t) for t in y_tick_texts)
    left = PAD + LINE_PX + 6 + y_label_w + 6
    # A slanted first label must not run off the left edge, nor a centred last one off the right.
    left = max([left] + [ext - xt + PAD for (xt, _), ext in zip(x_ticks, tick_ext)])
    legend = [wrap(s.name, LABEL_MAX_W) for s in series]
    legend_w = SWATCH_W + 6 + max(text_width(line) for lines in legend for line in lines)
    right_room = max([0.0] + [xt + (0 if slanted else ext) - PLOT_W for (xt, _), ext in zip(x_ticks, tick_ext)])
    legend_x = left + PLOT_W + max(16.0, right_room + 8)
    width = legend_x + legend_w + PAD
    head, title_w = _title(svg, title, width - 2 * PAD)
    width = max(width, title_w + 2 * PAD)
    top = head + PAD + 4
    bottom = top + PLOT_H

    def py(v: float) -> float:
        return bottom - v / y_top * PLOT_H

    # Grid, axes and ticks.
    for t, label in zip(y_ticks, y_tick_texts):
        svg.parts.append(f'<line x1="{left:.1f}" y1="{py(t):.1f}" x2="{left + PLOT_W:.1f}" y2="{py(t):.1f}" '
                         f'class="chart-grid"/>')
        svg.parts.append(svg.text(left - 6, py(t) + 4, label, "chart-tick", "end"))
    svg.parts.append(f'<line x1="{left:.1f}" y1="{top:.1f}" x2="{left:.1f}" y2="{bottom:.1f}" class="chart-axis"/>')
    svg.parts.append(f'<line x1="{left:.1f}" y1="{bottom:.1f}" x2="{left + PLOT_W:.1f}" y2="{bottom:.1f}" '
                     f'class="chart-axis"/>')
    for xt, label in x_ticks:
        X = left + xt
        svg.parts.append(f'<line x1="{X:.1f}" y1="{bottom:.1f}" x2="{X:.1f}" y2="{bottom + 4:.1f}" '
                         f'class="chart-axis"/>')
        if slanted:
            svg.parts.append(svg.text(X + 4, bottom + 10, label, "chart-tick", "end",
                                      extra=f' transform="rotate(-45 {X + 4:.1f} {bottom + 10:.1f})"'))
        else:
            svg.parts.append(svg.text(X, bottom + 16, label, "chart-tick", "middle"))
    x_title_y = bottom + x_tick_h + 16
    svg.parts.append(svg.text(left + PLOT_W / 2, x_title_y, x_label, "chart-axis-title", "middle"))
    y_title = f"{y_label} ({unit})" if unit else y_label
    cy = (top + bottom) / 2
    svg.parts.append(svg.text(PAD + LINE_PX - 2, cy, y_title, "chart-axis-title", "middle",
                              extra=f' transform="rotate(-90 {PAD + LINE_PX - 2:.1f} {cy:.1f})"'))
    # The series and the legend.
    ly = top
    for i, s in enumerate(series):
        color = PALETTE[i % len(PALETTE)]
        dash = DASHES[(i // len(PALETTE)) % len(DASHES)]
        dash_attr = f' stroke-dasharray="{dash}"' if dash else ""
        pts = sorted(s.points, key=lambda p: p.x)
        coords = " ".join(f"{left + px(p.x):.1f},{py(p.y):.1f}" for p in pts)
        svg.parts.append(f'<g class="chart-series"><title>{escape(s.name)}</title>'
                         f'<polyline points="{coords}" fill="none" stroke="{color}" stroke-width="2"'
                         f'{dash_attr} class="chart-line"/>')
        for p in pts:
            tip = f"{s.name} · {p.tip}: {fmt(p.y)} {unit}".strip()
            svg.parts.append(f'<circle cx="{left + px(p.x):.1f}" cy="{py(p.y):.1f}" r="3" fill="{color}" '
                             f'class="chart-point"><title>{escape(tip)}</title></circle>')
        svg.parts.append("</g>")
        svg.parts.append(f'<line x1="{legend_x:.1f}" y1="{ly + 8:.1f}" x2="{legend_x + SWATCH_W:.1f}" '
                         f'y2="{ly + 8:.1f}" stroke="{color}" stroke-width="3"{dash_attr} class="chart-swatch"/>')
        svg.parts.append(svg.lines(legend_x + SWATCH_W + 6, ly + 12, legend[i], "chart-legend"))
        ly += max(18, LINE_PX * len(legend[i]) + 4)
    height = max(x_title_y + 6, ly) + PAD
    return svg.render(width, height)


def _axis_ticks(svg: _Svg, ticks: list[float], labels: list[str], x, y: float) -> None:
    """Tick marks and their labels under an axis at ``y``; a label that would overlap the
    one before it is left out (its mark stays)."""
    right = -math.inf
    for t, label in zip(ticks, labels):
        X = x(t)
        svg.parts.append(f'<line x1="{X:.1f}" y1="{y:.1f}" x2="{X:.1f}" y2="{y + 4:.1f}" class="chart-axis"/>')
        w = text_width(label)
        if X - w / 2 < right + 6:
            continue
        svg.parts.append(svg.text(X, y + 16, label, "chart-tick", "middle"))
        right = X + w / 2


def ratio_chart(rows: list[RatioRow], run_names: list[str], geomeans: list[GeoMean | str | None],
                title: str = "", x_label: str = "ratio to run 1 (×, log scale)") -> Markup:
    """A forest plot: per case, each compared run's ratio to run 1 as a dot with its
    interval (hollow when the interval contains 1, faded when the case is noisy), a line
    at 1×, and below the cases each run's geometric mean (a diamond) with its interval.
    ``run_names`` and ``geomeans`` are per compared run (run 2, 3, …); a geomean given as
    text says why there is none."""
    rows = [r for r in rows if any(isinstance(c, RatioCell) for c in r.cells)]
    k = len(run_names)
    if not rows or k == 0:
        return Markup("")
    values = [v for r in rows for c in r.cells if isinstance(c, RatioCell) for v in (c.ratio, c.lo, c.hi)]
    values += [v for g in geomeans if isinstance(g, GeoMean) for v in (g.value, g.lo, g.hi)]
    values = [v for v in values if v is not None and math.isfinite(v) and v > 0] + [1.0]
    lo, hi = min(values), max(values)
    pad = max(math.log(hi / lo) * 0.06, 0.02)
    lo, hi = lo * math.exp(-pad), hi * math.exp(pad)
    ticks = _log_ticks(lo, hi)
    svg = _Svg(title or "ratio chart")

    def cell_text(c: RatioCell | str | None) -> str:
        if not isinstance(c, RatioCell):
            return c or "—"
        interval = f" [{c.lo:.3g}–{c.hi:.3g}]" if c.lo is not None and c.hi is not None else ""
        return _ratio_text(c.ratio) + interval + (" noisy" if c.noisy else "")

    def geo_text(g: GeoMean | str | None) -> str:
        if not isinstance(g, GeoMean):
            return g or "—"
        interval = f" [{g.lo:.3g}–{g.hi:.3g}]" if g.lo is not None and g.hi is not None else ""
        left_out = f", {g.noisy_left_out} noisy left out" if g.noisy_left_out else ""
        return f"{_ratio_text(g.value)}{interval} over {g.n} case{'s' if g.n != 1 else ''}{left_out}"

    wrapped = [wrap(r.label, LABEL_MAX_W) for r in rows]
    geo_label = ["geometric mean"]
    label_w = max(text_width(s) for ls in wrapped + [geo_label] for s in ls)
    texts = [cell_text(c) for r in rows for c in r.cells] + [geo_text(g) for g in geomeans]
    value_w = max(text_width(t) for t in texts)
    x0 = PAD + label_w + PAD
    plot_w = BAR_W
    tick_texts = [_ratio_text(t) for t in ticks]
    width = x0 + plot_w + 12 + value_w + PAD
    width = max(width, x0 + plot_w + text_width(tick_texts[-1]) / 2 + PAD)
    head, title_w = _title(svg, title, width - 2 * PAD)
    width = max(width, title_w + 2 * PAD)
    # The legend, which colour is which run: a line each, from the plot's left edge.
    legend_y = head + PAD + 8
    for j, name in enumerate(run_names):
        lines = wrap(name, max(width - x0 - 16 - PAD, 120.0))
        width = max(width, x0 + 16 + max(text_width(line) for line in lines) + PAD)
        svg.parts.append(f'<circle cx="{x0 + 6:.1f}" cy="{legend_y:.1f}" r="4" fill="{PALETTE[j % len(PALETTE)]}" '
                         f'class="chart-swatch"/>')
        svg.parts.append(svg.lines(x0 + 16, legend_y + 4, lines, "chart-legend"))
        legend_y += max(18, LINE_PX * len(lines) + 4)
    top = legend_y - 4

    def x(v: float) -> float:
        return x0 + (math.log(v) - math.log(lo)) / (math.log(hi) - math.log(lo)) * plot_w

    sub = LINE_PX + 1           # vertical room for one run's dot and text within a case's row

    def draw(y: float, cells: list, label_lines: list[str], tip: str, diamond: bool) -> float:
        row_h = max(ROW_H, LINE_PX * len(label_lines) + 8, sub * k + 8)
        svg.parts.append(svg.lines(x0 - PAD, y + 15, label_lines, "chart-label", "end", tip=tip))
        for j, c in enumerate(cells):
            cy = y + 4 + sub * j + sub / 2 if k > 1 else y + row_h / 2
            color = PALETTE[j % len(PALETTE)]
            text = geo_text(c) if diamond else cell_text(c)
            svg.parts.append(svg.text(x0 + plot_w + 12, cy + 4, text, "chart-value"))
            if c is None or isinstance(c, str):
                continue
            v, a, b = (c.value, c.lo, c.hi) if diamond else (c.ratio, c.lo, c.hi)
            tip_text = f"{run_names[j]} · {tip}: {text}"
            # Noisy: still the run's colour (its row says which run), but faded.
            fade = ' opacity="0.4"' if not diamond and c.noisy else ""
            if a is not None and b is not None:
                svg.parts.append(f'<line x1="{x(a):.1f}" y1="{cy:.1f}" x2="{x(b):.1f}" y2="{cy:.1f}" '
                                 f'stroke="{color}" stroke-width="1.5"{fade} class="chart-interval"/>')
                for xe in (x(a), x(b)):
                    svg.parts.append(f'<line x1="{xe:.1f}" y1="{cy - 3:.1f}" x2="{xe:.1f}" y2="{cy + 3:.1f}" '
                                     f'stroke="{color}" stroke-width="1.5"{fade} class="chart-interval"/>')
            X = x(v)
            if diamond:
                svg.parts.append(f'<polygon points="{X - 6:.1f},{cy:.1f} {X:.1f},{cy - 5:.1f} {X + 6:.1f},{cy:.1f} '
                                 f'{X:.1f},{cy + 5:.1f}" fill="{color}" class="chart-geomean">'
                                 f'<title>{escape(tip_text)}</title></polygon>')
            else:
                hollow = c.significant is False
                cls = "chart-point" + (" chart-not-significant" if hollow else "") + (" chart-noisy" if c.noisy else "")
                svg.parts.append(f'<circle cx="{X:.1f}" cy="{cy:.1f}" r="4" fill="{"#fff" if hollow else color}" '
                                 f'stroke="{color}" stroke-width="1.5"{fade} class="{cls}">'
                                 f'<title>{escape(tip_text)}</title></circle>')
        return row_h

    y = top
    for r, lines in zip(rows, wrapped):
        y += draw(y, r.cells, lines, r.label, diamond=False)
    if any(isinstance(g, GeoMean) for g in geomeans):
        svg.parts.append(f'<line x1="{PAD}" y1="{y + 3:.1f}" x2="{width - PAD:.1f}" y2="{y + 3:.1f}" '
                         f'class="chart-grid"/>')
        y += 6
        y += draw(y, geomeans, geo_label, "geometric mean", diamond=True)
    axis_y = y + 2
    one = x(1.0)
    svg.parts.append(f'<line x1="{one:.1f}" y1="{top - 4:.1f}" x2="{one:.1f}" y2="{axis_y:.1f}" class="chart-ref"/>')
    svg.parts.append(f'<line x1="{x0:.1f}" y1="{axis_y:.1f}" x2="{x0 + plot_w:.1f}" y2="{axis_y:.1f}" '
                     f'class="chart-axis"/>')
    _axis_ticks(svg, ticks, tick_texts, x, axis_y)
    svg.parts.append(svg.text(x0 + plot_w / 2, axis_y + 32, x_label, "chart-axis-title", "middle"))
    return svg.render(width, axis_y + 32 + 6 + PAD)
