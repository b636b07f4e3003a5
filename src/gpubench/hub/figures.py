"""What the pages chart, and how: the hub's data turned into ``charts`` calls.

- ``run_figures``: a chart per benchmark of a run (its main metric). Collectives are
  one line chart of busbw against message size, a line per op and dtype, as
  nccl-tests draws them; a benchmark swept over buffer sizes (membw) the same way;
  matmul TFLOP/s against shape; anything else bars per case.
- ``compare_figure``: each case's ratio to run 1 with its interval, and each run's
  geometric mean with its interval, case count and the noisy cases left out.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any

from markupsafe import Markup

from gpubench.hub import charts

MAX_POINTS = 200            # per chart: a page must stay a page
_METRIC_NAMES = {"busbw_gbps": "busbw", "algbw_gbps": "algbw", "gbps": "bandwidth", "tflops": "throughput",
                 "tokens_per_s": "throughput", "per_op_us": "time per op", "largest_params": "largest model"}


@dataclass
class Figure:
    title: str
    svg: Markup
    notes: list[str] = field(default_factory=list)


def _collectives() -> tuple[str, ...]:
    from gpubench.compare import COLLECTIVE_NAMES

    return COLLECTIVE_NAMES


def _params(rec: dict) -> dict:
    p = rec.get("params")
    if isinstance(p, str):
        try:
            p = json.loads(p)
        except ValueError:
            p = {}
    return p if isinstance(p, dict) else {}


def _number(v: Any) -> float | None:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return None
    return float(v) if math.isfinite(v) else None


def _param_text(key: str, value: Any) -> str:
    if key == "inplace":
        return "in-place" if value else "out-of-place"
    if key == "world_size":
        return f"{value} ranks"
    if isinstance(value, str):
        return value
    return f"{key}={value}"


def _series_names(keys: list[tuple], always: tuple[str, ...]) -> dict[tuple, str]:
    """A readable name per series key (sorted (param, value) pairs): the params that
    differ between the series, plus those in ``always``."""
    varying = set()
    for k in keys:
        for name, value in k:
            if any(dict(other).get(name) != value for other in keys):
                varying.add(name)
    out = {}
    for k in keys:
        d = dict(k)
        order = [n for n in always if n in d] + sorted(n for n in d if n in varying and n not in always)
        out[k] = " ".join(_param_text(n, d[n]) for n in order) or "all cases"
    return out


def _size_chart(recs: list[dict], *, collectives: bool, metric: str, unit: str) -> Figure | None:
    """Lines of the metric against size_bytes, one per combination of the other params."""
    groups: dict[tuple, list[charts.Point]] = {}
    for r in recs:
        p = dict(_params(r))
        size = _number(p.pop("size_bytes", None))
        if size is None or size <= 0:
            return None
        if collectives:
            p["op"] = r["benchmark"]
        key = tuple(sorted((k, v if isinstance(v, (str, int, float, bool)) else json.dumps(v))
                           for k, v in p.items()))
        groups.setdefault(key, []).append(charts.Point(size, r["value"], r["label"]))
    if len({pt.x for pts in groups.values() for pt in pts}) < 2:
        return None
    names = _series_names(list(groups), ("op", "dtype") if collectives else ("op",))
    series = [charts.Series(names[k], pts) for k, pts in groups.items()]
    name = _METRIC_NAMES.get(metric, metric)
    if collectives:
        title = f"Collectives: {name} against message size (a line per op and dtype)"
        x_label = "message size (bytes, log2 scale)"
    else:
        bench = recs[0]["benchmark"]
        title = f"{bench}: {name} against buffer size"
        x_label = "buffer size (bytes, log2 scale)"
    return Figure(title, charts.line_chart(series, x_label=x_label, y_label=name, unit=unit, title=title))


def _shape_chart(recs: list[dict], metric: str, unit: str) -> Figure | None:
    """Matmul: the metric against shape (m×n×k, ordered by work), a line per dtype."""
    shapes: dict[tuple, str] = {}
    rows = []
    for r in recs:
        p = dict(_params(r))
        mnk = tuple(_number(p.pop(k, None)) for k in ("m", "n", "k"))
        if any(v is None or v <= 0 for v in mnk):
            return None
        p.pop("gemm", None)         # names the shape (a model's layer), not a series
        shapes[mnk] = "×".join(f"{v:g}" for v in mnk)
        key = tuple(sorted((k, v if isinstance(v, (str, int, float, bool)) else json.dumps(v))
                           for k, v in p.items()))
        rows.append((key, mnk, r))
    if len(shapes) < 2:
        return None
    order = sorted(shapes, key=lambda s: (s[0] * s[1] * s[2], s))
    index = {s: i for i, s in enumerate(order)}
    groups: dict[tuple, list[charts.Point]] = {}
    for key, mnk, r in rows:
        groups.setdefault(key, []).append(charts.Point(index[mnk], r["value"], r["label"]))
    names = _series_names(list(groups), ("dtype",))
    series = [charts.Series(names[k], pts) for k, pts in groups.items()]
    bench = recs[0]["benchmark"]
    name = _METRIC_NAMES.get(metric, metric)
    title = f"{bench}: {name} against shape (a line per dtype)"
    return Figure(title, charts.line_chart(series, x_label="shape m×n×k (elements; ordered by FLOPs)",
                                           y_label=name, unit=unit, title=title, x_scale="category",
                                           categories=[shapes[s] for s in order]))


def run_figures(records: list[dict]) -> list[Figure]:
    """A chart per benchmark (all collectives in one) of its main metric over the run's
    ok records; search probes are left out, as on leaderboards."""
    collectives = set(_collectives())
    # Key None: every collective op on one chart (no benchmark name can be None).
    groups: dict[tuple, list[dict]] = {}
    for r in records:
        if (r["status"] != "ok" or r["is_probe"] or not r["metric"] or _number(r["value"]) is None):
            continue
        bench = None if r["benchmark"] in collectives else r["benchmark"]
        groups.setdefault((bench, r["metric"], r["unit"] or ""), []).append(r)
    out = []
    for (bench, metric, unit), recs in groups.items():
        notes = []
        if len(recs) > MAX_POINTS:
            notes.append(f"the first {MAX_POINTS} of {len(recs)} cases are charted; the table lists all")
            recs = recs[:MAX_POINTS]
        fig = None
        if bench is None or all("size_bytes" in _params(r) for r in recs):
            fig = _size_chart(recs, collectives=bench is None, metric=metric, unit=unit)
        elif bench == "matmul":
            fig = _shape_chart(recs, metric, unit)
        if fig is None:
            label = "collectives" if bench is None else bench
            title = f"{label}: {_METRIC_NAMES.get(metric, metric)} per case"
            multi = len({r["benchmark"] for r in recs}) > 1
            bars = [charts.Bar(label=f"{r['benchmark']} {r['label']}" if multi else r["label"], value=r["value"])
                    for r in recs]
            fig = Figure(title, charts.hbar_chart(bars, unit=unit, title=title,
                                                  axis_label=f"{metric} ({unit})" if unit else metric))
        fig.notes = notes
        out.append(fig)
    return out


# ---- compare ----

def _geomean_of(ratios: list[float]) -> charts.GeoMean | None:
    """What the compare JSON gives as ``geomean`` when it gives none: the plain geometric
    mean of the ratios (no interval, nothing left out)."""
    logs = [math.log(r) for r in ratios if r is not None and r > 0]
    return charts.GeoMean(math.exp(sum(logs) / len(logs)), None, None, len(logs)) if logs else None


def _pick(seq: Any, j: int) -> Any:
    return seq[j] if isinstance(seq, list) and j < len(seq) else None


def compare_figure(result: dict) -> tuple[Markup, list[dict]]:
    """(the ratio chart, one summary per compared run) of compare JSON. A summary:
    {"run", "name", "geomean": GeoMean | None, "noisy": [case labels left out]}."""
    from gpubench.compare import MAIN_METRICS

    runs = result.get("runs") or []
    rows = result.get("rows") or []
    given = result.get("geomean")
    summaries, chart_rows = [], []
    for row in rows:
        cells: list[charts.RatioCell | str | None] = []
        for j in range(1, len(runs)):
            ratio = _number(_pick(row.get("ratios"), j))
            if ratio is None or ratio <= 0:
                status = _pick(row.get("statuses"), j)
                first = _pick(row.get("statuses"), 0)
                cells.append(status if status not in (None, "ok") else
                             f"run 1 {first}" if first not in (None, "ok") else "no ratio")
                continue
            ci = _pick(row.get("ratio_ci"), j)
            lo, hi = (ci if isinstance(ci, list) and len(ci) == 2
                      and all(_number(v) is not None and v > 0 for v in ci) else (None, None))
            sig = _pick(row.get("significant"), j)
            cells.append(charts.RatioCell(ratio, lo, hi, sig if isinstance(sig, bool) else None,
                                          bool(_pick(row.get("noisy"), j))))
        known = MAIN_METRICS.get(row.get("benchmark"))
        lower = " (lower is better)" if known and known[0] == row.get("metric") and not known[2] else ""
        chart_rows.append(charts.RatioRow(f"{row.get('benchmark')} {row.get('label')}{lower}", cells))
    geos: list[charts.GeoMean | str | None] = []
    for j in range(1, len(runs)):
        # The cases left out of run j's mean: noisy ones that have a ratio (a missing case
        # is not averaged anyway).
        noisy = [f"{row.get('benchmark')} {row.get('label')}" for row in rows
                 if _pick(row.get("noisy"), j) and _number(_pick(row.get("ratios"), j)) is not None]
        if isinstance(given, list):
            g = _pick(given, j)
            if isinstance(g, dict) and _number(g.get("value")) is not None:
                geo = charts.GeoMean(g["value"], _number(g.get("lo")), _number(g.get("hi")),
                                     int(g.get("n") or 0), int(g.get("noisy_left_out") or 0))
                left_out = geo.noisy_left_out
            else:           # no mean: no case in common, or every one of them noisy
                geo, left_out = None, len(noisy)
        else:               # a compare without the noise analysis: the plain mean of every ratio
            geo = _geomean_of([_number(_pick(r.get("ratios"), j)) for r in rows])
            left_out, noisy = 0, []
        geos.append(geo if geo is not None else
                    f"none: all {left_out} cases in common are noisy" if left_out else "none: no case in common")
        summaries.append({"run": j + 1, "name": runs[j].get("name") or runs[j].get("gpu"), "geomean": geo,
                          "left_out": left_out, "noisy": noisy if left_out else []})
    names = [f"run {j + 1}: {runs[j].get('gpu') or '?'}" for j in range(1, len(runs))]
    svg = charts.ratio_chart(chart_rows, names, geos,
                             title="Each run ÷ run 1, per case (bars: 90% interval; hollow: the interval "
                                   "contains 1; faded: noisy, left out of the geometric mean)")
    return svg, summaries
