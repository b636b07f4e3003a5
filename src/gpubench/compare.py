"""Compare runs: the same cases on different machines (or days), side by side.

Pure logic, no I/O beyond the outputs asked for: ``gpubench compare`` and the hub
server both build a :class:`Comparison` with :func:`compare_runs`.

A *case* is matched across runs by ``Record.case_id`` (benchmark plus sorted
params), so only the same benchmark with the same parameters is compared. Each
benchmark has one *main metric* (``MAIN_METRICS``): the figure a row compares, in
its unit, with the run's % of the dense datasheet peak beside it where the record
knows one. Every ratio is a run's value ÷ the first run's value.

Rules, in the order they apply:

- rows appear in the order their case is first seen (first run's records first);
- a case a run did not measure is ``missing`` for that run: never dropped;
- a case a run holds twice (a search re-measuring its best shape, a repeated
  probe) counts once: the last ``ok`` record, else the last record;
- a value is ``None`` unless the record is ``ok`` and its metric a finite number;
  a ratio is ``None`` when either value is ``None`` (or the first one is 0);
- the steps a search took (records with a ``search`` param: mamf's probe matmuls,
  transformer-fits' probe steps) are left out unless ``probes=True``, as
  ``gpubench show`` does; their summaries (``mamf``, ``transformer-fits``) are
  compared, and ``Comparison.hidden_probes`` counts what was left out.

Noise (see gpubench.uncertainty): a ratio carries a 90% interval from both
records' timing samples (``Row.ratio_ci``; None where a side has no samples or
the metric is not a timed rate or time, such as transformer-fits' parameter
count). A ratio whose interval contains 1 is not significant
(``Row.significant``), a case whose CoV is high on either side is noisy
(``Row.noisy``), and ``Comparison.geomeans`` leaves the noisy cases out of the
geometric mean and says how many it left out.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from typing import Any, Sequence

from gpubench import uncertainty
from gpubench.errors import GpubenchError
from gpubench.results import Record, Run
from gpubench.uncertainty import NOISY, NOT_SIGNIFICANT_NOTE, Geomean

# Benchmark → (metric key, unit, higher is better). The collectives are listed by
# name (gpubench.benches.comm.COLLECTIVES; a test keeps the two lists equal) so that
# importing this module does not import torch.
COLLECTIVE_NAMES = ("all_reduce", "all_gather", "reduce_scatter", "broadcast", "all_to_all", "sendrecv")

MAIN_METRICS: dict[str, tuple[str, str, bool]] = {
    "matmul": ("tflops", "TFLOP/s", True),
    "mamf": ("tflops", "TFLOP/s", True),
    "attention": ("tflops", "TFLOP/s", True),
    "membw": ("gbps", "GB/s", True),
    **{name: ("busbw_gbps", "GB/s", True) for name in COLLECTIVE_NAMES},
    "transformer-step": ("tokens_per_s", "tokens/s", True),
    "transformer-fits": ("largest_params", "params", True),
    "op-overhead": ("per_op_us", "µs", False),
    # A test timed by pytest-benchmark that is no gpubench case (gpubench.importers.pytest_benchmark).
    "pytest-benchmark": ("median_s", "s", False),
}

# Where a benchmark's % of peak comes from: (metric key, factor to percent).
_PCT_OF_PEAK: dict[str, tuple[str, float] | None] = {
    "matmul": ("pct_of_peak", 1.0),
    "mamf": ("pct_of_peak", 1.0),
    "attention": ("pct_of_peak", 1.0),
    "membw": ("pct_of_peak", 1.0),
    "transformer-step": ("mfu", 100.0),
    "transformer-fits": None,            # a parameter count has no peak
    "op-overhead": None,                 # nor does the cost of an operation
    "pytest-benchmark": None,
    **{name: None for name in COLLECTIVE_NAMES},
}

# Units of metrics gpubench does not know, read from the name's suffix.
_SUFFIX_UNITS = (("tflops", "TFLOP/s"), ("gbps", "GB/s"), ("_per_s", "/s"), ("_us", "µs"),
                 ("_bytes", "bytes"), ("_mhz", "MHz"), ("_s", "s"), ("_w", "W"), ("_j", "J"))

# Benchmarks whose main metric is not the timer's: a count has no sampling interval.
_UNTIMED = frozenset({"transformer-fits"})
# An unknown benchmark's metric, by unit: a rate goes as 1/time, a time as time.
_UNIT_POWER = {"TFLOP/s": -1, "GB/s": -1, "/s": -1, "µs": 1, "s": 1}

# A row's status per run: the record's status, or "missing" where the run has no such case.
STATUSES = ("ok", "skipped", "failed", "missing")


def _number(value: Any) -> float | None:
    """A finite float, or None (bools, text, NaN and infinities are not figures)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def _fallback_metric(record: Record) -> str | None:
    """An unknown benchmark's metric: the first numeric one in key order (sorted, so
    that the choice does not depend on the order a writer put the keys in)."""
    for key in sorted(record.metrics or {}):
        if _number(record.metrics[key]) is not None:
            return key
    return None


def _unit_of(key: str) -> str:
    for suffix, unit in _SUFFIX_UNITS:
        if key.endswith(suffix):
            return unit
    return ""


def _pct_of_peak(record: Record) -> float | None:
    if record.status != "ok":
        return None
    source = _PCT_OF_PEAK.get(record.benchmark, ("pct_of_peak", 1.0))
    if source is None:
        return None
    value = _number((record.metrics or {}).get(source[0]))
    return None if value is None else value * source[1]


def _time_power(benchmark: str, key: str) -> int | None:
    """How the metric follows the timer's median: −1 a rate (work ÷ time), +1 a time,
    None not at all (then the timing samples do not bound it)."""
    if benchmark in _UNTIMED:
        return None
    if benchmark in MAIN_METRICS:
        return -1 if MAIN_METRICS[benchmark][2] else 1     # the higher-is-better ones are rates
    return _UNIT_POWER.get(_unit_of(key))


def _metric_for(record: Record) -> tuple[str, str, bool]:
    known = MAIN_METRICS.get(record.benchmark)
    if known:
        return known
    key = _fallback_metric(record) if record.status == "ok" else None
    return (key or "", _unit_of(key or ""), True)


def main_metric(record: Record) -> tuple[str, float | None, str, float | None]:
    """(metric name, value, unit, % of peak) of one record; value and % None unless ok."""
    key, unit, _ = _metric_for(record)
    value = _number((record.metrics or {}).get(key)) if record.status == "ok" and key else None
    return key, value, unit, _pct_of_peak(record)


def label(benchmark: str, params: dict, case: str) -> str:
    """The benchmark's own label of a case, or the case_id when it has none (a search
    summary, a benchmark this gpubench does not know, params it no longer accepts)."""
    try:
        from gpubench.registry import get_benchmark

        bench = get_benchmark(benchmark)
        # normalize() must accept the params; the recorded values win over what it fills
        # in, since some depend on the process labelling (a collective's world size).
        text = bench.label({**bench.normalize(dict(params)), **params})
    except Exception:           # any failure means "no better label": the id is exact
        return case
    return text + (f" [search={params['search']}]" if params.get("search") else "")


def is_probe(record: Record) -> bool:
    """A step of a search (mamf's probe matmuls, transformer-fits' probe steps)."""
    return bool((record.params or {}).get("search"))


@dataclass
class RunInfo:
    name: str
    gpu: str
    host: str
    started_at: str | None
    suite: str
    run_id: str
    imported: str | None = None     # the tool that measured it ("nccl-tests 2.18.3"), for an imported file

    def to_json(self) -> dict:
        out = {"name": self.name, "gpu": self.gpu, "host": self.host, "started_at": self.started_at,
               "suite": self.suite, "run_id": self.run_id}
        if self.imported:           # only imported files carry the key
            out["imported"] = self.imported
        return out


@dataclass
class Row:
    case_id: str
    benchmark: str
    label: str
    metric: str
    unit: str
    values: list[float | None]
    ratios: list[float | None]
    pct_of_peak: list[float | None]
    statuses: list[str]
    higher_is_better: bool = True
    # Per run, index 0 None: the ratio's 90% interval, and whether it excludes 1.
    ratio_ci: list[tuple[float, float] | None] = field(default_factory=list)
    significant: list[bool | None] = field(default_factory=list)
    # Per run: this run's record or run 1's has a high CoV (index 0: run 1's alone).
    noisy: list[bool] = field(default_factory=list)
    # Per run: the published figures (gpubench.baselines.Match) its record is compared with.
    published: list[list] = field(default_factory=list)

    def to_json(self) -> dict:
        out = {"case_id": self.case_id, "benchmark": self.benchmark, "label": self.label,
               "metric": self.metric, "unit": self.unit, "values": list(self.values),
               "ratios": list(self.ratios), "pct_of_peak": list(self.pct_of_peak),
               "statuses": list(self.statuses),
               "ratio_ci": [None if ci is None else [ci[0], ci[1]] for ci in self.ratio_ci],
               "significant": list(self.significant), "noisy": list(self.noisy)}
        if any(self.published):     # only where a published figure exists, per run
            out["published"] = [[m.to_json() for m in found] for found in self.published]
        return out


@dataclass
class Comparison:
    runs: list[RunInfo]
    rows: list[Row]
    hidden_probes: int = 0          # search steps left out (see compare_runs' probes)

    # ---- data ----

    def to_json(self) -> dict:
        """``{"runs": [...], "rows": [...], "geomean": [...]}``; every number finite or
        null (strict JSON). ``geomean`` has one entry per run: null for run 1 and for a
        run with no case both measured, else ``{"value", "lo", "hi", "n", "noisy_left_out"}``."""
        return {"runs": [r.to_json() for r in self.runs], "rows": [r.to_json() for r in self.rows],
                "geomean": [None if g is None else g.to_json() for g in self.geomeans()]}

    def _columns(self) -> list[str]:
        return [r.name for r in self.runs]

    def to_dataframe(self):
        """One row per case; per run: the value, the ratio to the first run, % of peak, status."""
        import pandas as pd

        records = []
        published = any(any(row.published) for row in self.rows)
        for row in self.rows:
            rec: dict[str, Any] = {"case_id": row.case_id, "benchmark": row.benchmark, "label": row.label,
                                   "metric": row.metric, "unit": row.unit}
            for j, (name, value, ratio, ci, sig, noisy, pct, status) in enumerate(zip(
                    self._columns(), row.values, row.ratios, row.ratio_ci, row.significant, row.noisy,
                    row.pct_of_peak, row.statuses)):
                rec[name] = value
                rec[f"{name} ratio"] = ratio
                rec[f"{name} ratio lo"] = None if ci is None else ci[0]
                rec[f"{name} ratio hi"] = None if ci is None else ci[1]
                rec[f"{name} significant"] = sig
                rec[f"{name} noisy"] = noisy
                rec[f"{name} % of peak"] = pct
                rec[f"{name} status"] = status
                if published:
                    found = row.published[j] if j < len(row.published) else []
                    rec[f"{name} vs published"] = "; ".join(m.text() for m in found) or None
            records.append(rec)
        columns = ["case_id", "benchmark", "label", "metric", "unit"]
        for name in self._columns():
            columns += [name, f"{name} ratio", f"{name} ratio lo", f"{name} ratio hi", f"{name} significant",
                        f"{name} noisy", f"{name} % of peak", f"{name} status"]
            columns += [f"{name} vs published"] if published else []
        return pd.DataFrame(records, columns=columns)

    def geomeans(self) -> list[Geomean | None]:
        """Per run (index 0 None): the geometric mean of its ratios to the first run over
        the cases both measured, leaving out the noisy ones, with a 90% interval (see
        gpubench.uncertainty.geomean: cases resampled, each with its own noise); None
        where no case is left to average."""
        out: list[Geomean | None] = [None]
        for j in range(1, len(self.runs)):
            ratios, intervals, noisy = [], [], 0
            for row in self.rows:
                ratio = row.ratios[j]
                if ratio is None or ratio <= 0:
                    continue
                if row.noisy[j]:
                    noisy += 1
                    continue
                ratios.append(ratio)
                intervals.append(row.ratio_ci[j])
            out.append(uncertainty.geomean(ratios, intervals, noisy))
        return out

    def _noisy_pairs(self, j: int) -> int:
        return sum(1 for row in self.rows if (row.ratios[j] or 0) > 0 and row.noisy[j])

    def geomean_ratios(self) -> list[tuple[float | None, int]]:
        """Per run: the geometric mean of its ratios to the first run over every case both
        measured (noisy ones included, no interval), and how many cases that is. See
        :meth:`geomeans` for the one the table prints."""
        out = []
        for j in range(len(self.runs)):
            logs = [math.log(r.ratios[j]) for r in self.rows if r.ratios[j] is not None and r.ratios[j] > 0]
            out.append((math.exp(sum(logs) / len(logs)) if logs else None, len(logs)))
        return out

    # ---- for people ----

    def table(self) -> str:
        from tabulate import tabulate

        lines = [f"gpubench compare · {len(self.runs)} runs · ratios are each run ÷ run 1"]
        for i, r in enumerate(self.runs, 1):
            lines.append(f"run {i}: {r.name}\n       GPU {r.gpu} · host {r.host} · started {r.started_at or '?'}"
                         f" · suite {r.suite} · run_id {r.run_id}"
                         + (f"\n       imported from {r.imported}: the tool's figures, not gpubench's timing"
                            if r.imported else ""))
        from gpubench.baselines import Footnotes

        notes = Footnotes()
        published = any(any(row.published) for row in self.rows)
        body = []
        for row in self.rows:
            cells = [row.benchmark, row.label,
                     f"{row.metric} ({row.unit})" if row.unit else row.metric]
            for j in range(len(self.runs)):
                cells.append(self._cell(row, j))
            if published:
                found = [(j, f) for j, f in enumerate(row.published) if f]
                cells.append("; ".join(f"run {j + 1}: {notes.cell(f)}" for j, f in found) or "—")
            body.append(cells)
        headers = ["benchmark", "case", "metric"] + [f"run {i}" for i in range(1, len(self.runs) + 1)]
        headers += ["vs published"] if published else []
        parts = ["\n".join(lines)]
        parts.append(tabulate(body, headers=headers, disable_numparse=True) if body
                     else "no cases to compare")
        counts = {s: 0 for s in ("all", "some")}
        for row in self.rows:
            counts["all" if all(s == "ok" for s in row.statuses) else "some"] += 1
        summary = [f"{len(self.rows)} case(s): {counts['all']} measured in every run, "
                   f"{counts['some']} missing, skipped or failed in at least one run"]
        for j, g in enumerate(self.geomeans()[1:], 1):
            summary.append(self._geomean_line(j, g))
        if any(s is False for row in self.rows for s in row.significant):
            summary.append(f"ratios: [90% interval from the timing samples]; {NOT_SIGNIFICANT_NOTE}")
        elif any(ci is not None for row in self.rows for ci in row.ratio_ci):
            summary.append("ratios: [90% interval from the timing samples]")
        if any(n for row in self.rows for n in row.noisy):
            summary.append(f"{NOISY} CoV above the timer's threshold (this run's or run 1's record): "
                           f"noisy, left out of the geometric mean")
        if self.hidden_probes:
            summary.append(f"{self.hidden_probes} search probe record(s) not compared "
                           f"(their summaries are; --probes compares them too)")
        summary += notes.lines()
        parts.append("\n".join(summary))
        return "\n\n".join(parts)

    def _geomean_line(self, j: int, g: Geomean | None) -> str:
        noisy = self._noisy_pairs(j)
        left = f"; {noisy} noisy case(s) left out" if noisy else ""
        head = f"run {j + 1} ÷ run 1: geometric mean"
        if g is None:
            return f"{head}: no case to average{left}"
        if g.lo is None:
            how = "no interval: no case has timing samples"
        else:
            how = ("90% CI " + uncertainty.fmt_interval((g.lo, g.hi)).strip(" []")
                   + ("" if g.significant else ", not significant"))
        return f"{head} {g.value:.2f}× ({how}) over {g.n} case(s){left}"

    @staticmethod
    def _cell(row: Row, j: int) -> str:
        value, status = row.values[j], row.statuses[j]
        if value is None:
            return status if status != "ok" else "—"
        text = _fmt(value, row.unit)
        if j > 0:
            ratio = row.ratios[j]
            text += (f" ({uncertainty.fmt_ratio(ratio, row.ratio_ci[j], row.noisy[j])})" if ratio is not None
                     else " (—)")
        elif row.noisy[0]:
            text += f" {NOISY}"
        pct = row.pct_of_peak[j]
        if pct is not None:
            text += f" {pct:.1f}% of peak"
        return text

    def plot(self, path) -> None:
        """Grouped horizontal bars: each run's ratio to the first run, per case, with its
        90% interval as an error bar; a noisy or not-significant ratio is drawn pale and
        hatched. A PNG (or whatever format the suffix of ``path`` names) written with
        matplotlib, atomically (see gpubench.outfiles)."""
        fmt = plot_format(path)
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure

        from gpubench.outfiles import write_atomic

        others = list(range(1, len(self.runs)))
        rows = self.rows
        n = max(len(rows), 1)
        bar_h = 0.8 / max(len(others), 1)
        height = min(2.0 + n * max(0.28, 0.22 * len(others)), 160.0)
        fig = Figure(figsize=(10, height))
        FigureCanvasAgg(fig)
        ax = fig.add_subplot(1, 1, 1)
        colors = ["C0", "C1", "C2", "C3", "C4", "C5", "C6", "C7", "C8", "C9"]
        top = 0.0
        pale_any = False
        for k, j in enumerate(others):
            bars = {False: ([], []), True: ([], [])}        # pale? -> (ys, widths)
            err_y, err_x, err_lo, err_hi, missing = [], [], [], [], []
            for i, row in enumerate(rows):
                y = i + (k - (len(others) - 1) / 2) * bar_h
                ratio = row.ratios[j]
                if ratio is None:
                    why = (row.statuses[j] if row.statuses[j] != "ok"
                           else "no run 1 value" if row.values[0] is None else "n/a")
                    missing.append((y, why))
                    continue
                pale = row.noisy[j] or row.significant[j] is False
                bars[pale][0].append(y)
                bars[pale][1].append(ratio)
                top = max(top, ratio)
                ci = row.ratio_ci[j]
                if ci is not None:
                    err_y.append(y)
                    err_x.append(ratio)
                    err_lo.append(max(ratio - ci[0], 0.0))
                    err_hi.append(max(ci[1] - ratio, 0.0))
                    top = max(top, ci[1])
            color = colors[k % len(colors)]
            ax.barh(bars[False][0], bars[False][1], height=bar_h, color=color,
                    label=f"run {j + 1}: {self.runs[j].name}")
            if bars[True][0]:
                pale_any = True
                ax.barh(bars[True][0], bars[True][1], height=bar_h, color=color, alpha=0.35,
                        hatch="///", edgecolor=color)
            if err_y:
                ax.errorbar(err_x, err_y, xerr=[err_lo, err_hi], fmt="none", ecolor="black",
                            elinewidth=0.8, capsize=2)
            for y, why in missing:
                ax.text(0.02, y, why, va="center", fontsize=7, color="0.4",
                        transform=ax.get_yaxis_transform())
        ax.axvline(1.0, color="black", linewidth=0.8, linestyle="--")
        ax.set_yticks(range(len(rows)))
        ax.set_yticklabels([_short(f"{r.benchmark} {r.label}" if r.label != r.case_id else r.case_id)
                            for r in rows], fontsize=8)
        ax.set_ylim(len(rows) - 0.5, -0.5)          # first case at the top
        ax.set_xlim(0, max(top * 1.1, 1.2))
        metrics = ", ".join(sorted({r.metric for r in rows if r.metric}))
        note = ("\npale, hatched: noisy (high CoV) or 90% interval contains 1, not a measured difference"
                if pale_any else "")
        ax.set_xlabel(f"ratio to run 1 ({_short(self.runs[0].name, 60)}); > 1 = higher; "
                      f"error bars: 90% interval\nmetric compared: {_short(metrics, 90)}{note}")
        ax.set_title("gpubench compare")
        if others and rows:
            ax.legend(loc="lower right", fontsize=8)
        if not rows:
            ax.text(0.5, 0.5, "no cases to compare", ha="center", transform=ax.transAxes)
        fig.tight_layout()
        write_atomic(path, lambda f: fig.savefig(f, format=fmt, dpi=100))


def plot_format(path) -> str:
    """The image format ``path``'s suffix names (png without one); an error, before
    anything is drawn, for one matplotlib cannot write or when matplotlib is missing."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
    except ImportError:
        raise GpubenchError("plotting needs matplotlib: pip install matplotlib "
                            "(or pip install 'gpubench[plot]')") from None
    suffix = os.path.splitext(str(path))[1].lstrip(".").lower()
    fmt = suffix or "png"
    known = FigureCanvasAgg.get_supported_filetypes()
    if fmt not in known:
        raise GpubenchError(f"--plot {path}: matplotlib cannot write .{fmt} files "
                            f"(it writes {', '.join('.' + k for k in sorted(known))})")
    return fmt


def _short(text: str, width: int = 70) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def _fmt(value: float, unit: str) -> str:
    """Three significant figures; whole counts (parameters) with thousands separators."""
    if unit == "params":
        for suffix, size in (("B", 1e9), ("M", 1e6), ("K", 1e3)):
            if value >= size:
                return f"{value / size:.3g}{suffix}"
        return f"{value:.0f}"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    return f"{value:.3g}"


def _run_info(run: Run) -> RunInfo:
    env = run.env or {}
    dev = env.get("device") or {}
    host = env.get("host") or {}
    prov = run.provenance or {}
    imported = (str(prov.get("tool", "another tool")) + (f" {prov['tool_version']}" if prov.get("tool_version")
                                                        else "")) if run.imported else None
    return RunInfo(name="", gpu=str(dev.get("name") or dev.get("label") or "?"),
                   host=str(host.get("hostname") or "?"), started_at=run.started_at,
                   suite=run.suite, run_id=run.run_id, imported=imported)


def _default_names(infos: list[RunInfo]) -> list[str]:
    """"GPU · host · date"; the time, then the run id's start, added where names collide."""
    def date(info, full):
        s = info.started_at or "?"
        return s[:19].replace("T", " ") if full else s[:10]

    names = [f"{i.gpu} · {i.host} · {date(i, False)}" for i in infos]
    if len(set(names)) < len(names):
        names = [f"{i.gpu} · {i.host} · {date(i, True)}" for i in infos]
    if len(set(names)) < len(names):
        names = [f"{n} · {i.run_id[:8]}" for n, i in zip(names, infos)]
    if len(set(names)) < len(names):
        names = [f"{n} #{k}" for k, n in enumerate(names, 1)]
    # Said in the name, which the CSV's columns and the plot's legend carry too.
    return [n + (" · imported" if i.imported else "") for n, i in zip(names, infos)]


def compare_runs(runs: Sequence[Run], names: Sequence[str] | None = None, *,
                 probes: bool = False) -> Comparison:
    """Match the runs' cases by case_id; see the module docstring for the rules."""
    runs = list(runs)
    if not runs:
        raise GpubenchError("nothing to compare: no runs given")
    infos = [_run_info(r) for r in runs]
    if names is not None:
        names = [str(n) for n in names]
        if len(names) != len(runs):
            raise GpubenchError(f"{len(names)} name(s) for {len(runs)} run(s)")
        if len(set(names)) != len(names):
            raise GpubenchError(f"run names must differ: {names}")
    else:
        names = _default_names(infos)
    for info, name in zip(infos, names):
        info.name = name

    from gpubench import baselines

    gpus = [baselines.gpu_key(run.env) for run in runs]
    order: list[str] = []
    first: dict[str, Record] = {}
    chosen: list[dict[str, Record]] = []
    hidden = 0
    for run in runs:
        mine: dict[str, Record] = {}
        for rec in run.records:
            if is_probe(rec) and not probes:
                hidden += 1
                continue
            cid = rec.case_id
            if cid not in first:
                first[cid] = rec
                order.append(cid)
            old = mine.get(cid)
            if old is None or rec.status == "ok" or old.status != "ok":
                mine[cid] = rec     # the last ok one wins; the last one if none is ok
        chosen.append(mine)

    rows = []
    for cid in order:
        recs = [m.get(cid) for m in chosen]
        bench = first[cid].benchmark
        if bench in MAIN_METRICS:
            key, unit, higher = MAIN_METRICS[bench]
        else:   # the first run with an ok record and a numeric metric decides, for every run
            key = next((k for k in (_fallback_metric(r) for r in recs if r is not None and r.status == "ok")
                        if k), "")
            unit, higher = _unit_of(key), True
        values, pcts, statuses = [], [], []
        for rec in recs:
            if rec is None:
                values.append(None)
                pcts.append(None)
                statuses.append("missing")
                continue
            statuses.append(rec.status)
            ok = rec.status == "ok" and key
            values.append(_number((rec.metrics or {}).get(key)) if ok else None)
            pcts.append(_pct_of_peak(rec))
        base = values[0]
        ratios = [v / base if v is not None and base else None for v in values]
        power = _time_power(bench, key)
        cis = [None] + [uncertainty.ratio_interval(ratio, rec, recs[0], power) if power else None
                        for ratio, rec in zip(ratios[1:], recs[1:])]
        # Only an ok record's spread means anything: a failed one has no figure to doubt.
        noisy_ok = [rec is not None and rec.status == "ok" and uncertainty.is_noisy(rec) for rec in recs]
        noisy = [noisy_ok[0]] + [n or noisy_ok[0] for n in noisy_ok[1:]]
        rows.append(Row(case_id=cid, benchmark=bench, label=label(bench, first[cid].params, cid),
                        metric=key, unit=unit, values=values, ratios=ratios, pct_of_peak=pcts,
                        statuses=statuses, higher_is_better=higher, ratio_ci=cis,
                        significant=[None] + [uncertainty.significant(ci) for ci in cis[1:]],
                        noisy=noisy,
                        published=[baselines.matches(rec, gpu) if rec is not None else []
                                   for rec, gpu in zip(recs, gpus)]))
    return Comparison(runs=infos, rows=rows, hidden_probes=hidden)
