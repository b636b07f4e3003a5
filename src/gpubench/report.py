"""Tables for people: what ``gpubench run`` prints at the end and ``gpubench show`` prints.

One table per benchmark family, a line of context above (device, its dense
peaks, software), skipped and failed cases listed with their reasons below, and
a footnote on anything whose spread makes the median shaky.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Iterable

from tabulate import tabulate

from gpubench.results import Record, Run


def _table(rows: list[list], headers: list[str]) -> str:
    """tabulate, without the columns that have nothing in any row (power on a CPU, say)."""
    keep = [i for i in range(len(headers)) if any(str(r[i]) not in ("—", "") for r in rows)]
    return tabulate([[r[i] for i in keep] for r in rows], headers=[headers[i] for i in keep],
                    disable_numparse=True)


def _fmt(value, digits: int = 1, suffix: str = "") -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        if abs(value) >= 100:
            return f"{value:,.0f}{suffix}"
        return f"{value:.{digits}f}{suffix}"
    return f"{value}{suffix}"


def _sig(value) -> str:
    """Three significant figures, for rates that span 0.01 to 2000."""
    if value is None:
        return "—"
    if value >= 100:
        return f"{value:,.0f}"
    return f"{value:.3g}"


def header(run: Run) -> list[str]:
    env = run.env or {}
    dev = env.get("device") or {}
    sw = env.get("software") or {}
    host = env.get("host") or {}
    lines = [f"gpubench {run.suite} · device: {dev.get('type', '?')} · {dev.get('name', '?')}"
             + (f" ({dev.get('label')})" if dev.get("type") == "cuda" else "")
             + f" · run {run.status} · {run.started_at}"]
    peaks = dev.get("peak_tflops")
    if peaks:
        text = " · ".join(f"{k} {v:g}" for k, v in peaks.items())
        bw = dev.get("peak_mem_bandwidth_gbps")
        lines.append(f"dense datasheet peaks ({dev.get('spec_key')}), TFLOP/s: {text}"
                     + (f" · memory {bw:g} GB/s" if bw else ""))
    elif dev.get("type") == "cpu":
        lines.append("a CPU has no datasheet peak in gpubench: no % of peak. CPU figures prove the "
                     "code path; they are not GPU measurements.")
    else:
        lines.append("this GPU is not in the hardware table: no % of peak, no MFU")
    driver = (env.get("gpu") or {}).get("driver_version")
    lines.append(f"torch {sw.get('torch')} · CUDA {sw.get('torch_cuda') or '—'}"
                 + (f" · driver {driver}" if driver else "")
                 + f" · triton {sw.get('triton') or '—'} · host {host.get('hostname')}")
    return lines


def _spread(rec: Record) -> str:
    t = rec.timing or {}
    flops = (rec.work or {}).get("flops")
    if not flops or not t.get("p90_s") or not t.get("p10_s"):
        return "—"
    return f"{_sig(flops / t['p90_s'] / 1e12)}–{_sig(flops / t['p10_s'] / 1e12)}"


def _cov(rec: Record) -> str:
    t = rec.timing or {}
    if t.get("cov") is None:
        return "—"
    return f"{100 * t['cov']:.1f}%" + (" !" if t.get("high_cov") else "")


def _shape(p: dict) -> str:
    return f"{p['m']}×{p['n']}×{p['k']}"


def _dtype(p: dict) -> str:
    return p["dtype"] + (f" ({p['scaling']})" if p.get("scaling") else "")


def matmul_table(records: list[Record]) -> str:
    ok = [r for r in records if r.status == "ok"]
    fp32 = {(r.params["m"], r.params["n"], r.params["k"]): r.metrics["tflops"]
            for r in ok if r.params["dtype"] == "fp32"}
    rows = []
    for r in ok:
        p, m = r.params, r.metrics
        base = fp32.get((p["m"], p["n"], p["k"]))
        tel = r.telemetry or {}
        rows.append([
            _dtype(p), _shape(p), p.get("gemm", ""), _sig(m.get("tflops")), _spread(r), _cov(r),
            _fmt(m.get("pct_of_peak"), 1), _fmt(m["tflops"] / base, 2, "×") if base else "—",
            _fmt(m.get("power_w"), 0), _fmt(m.get("energy_per_tflop_j"), 2),
            _fmt(tel.get("sm_clock_mhz_median"), 0),
            f"{(r.check or {}).get('rel_err', float('nan')):.1e}",
        ])
    return _table(rows, ["dtype", "m×n×k", "GEMM", "TFLOP/s", "p10–p90", "CoV",
                                   "% peak", "vs FP32", "W", "J/TFLOP", "SM MHz", "rel err"])


def best_table(records: list[Record]) -> str:
    best: dict[str, Record] = {}
    for r in records:
        if r.status == "ok" and r.benchmark == "matmul":
            key = _dtype(r.params)
            if key not in best or r.metrics["tflops"] > best[key].metrics["tflops"]:
                best[key] = r
    if not best:
        return ""
    fp32 = best.get("fp32")
    bf16 = best.get("bf16")
    rows = []
    for key, r in best.items():
        t = r.metrics["tflops"]
        rows.append([key, _sig(t), _shape(r.params), _fmt(r.metrics.get("pct_of_peak"), 1),
                     _fmt(t / fp32.metrics["tflops"], 2, "×") if fp32 else "—",
                     _fmt(t / bf16.metrics["tflops"], 2, "×") if bf16 else "—"])
    return _table(rows, ["best of", "TFLOP/s", "at m×n×k", "% peak", "vs FP32", "vs BF16"])


def membw_table(records: list[Record]) -> str:
    rows = []
    for r in records:
        if r.status != "ok":
            continue
        t = r.timing or {}
        b = (r.work or {}).get("bytes") or 0
        spread = (f"{b / t['p90_s'] / 1e9:,.0f}–{b / t['p10_s'] / 1e9:,.0f}"
                  if t.get("p10_s") and t.get("p90_s") else "—")
        rows.append([r.params["op"], f"{r.params['size_bytes'] / 2**20:,.0f} MiB",
                     _fmt(r.metrics.get("gbps"), 1), spread, _cov(r),
                     _fmt(r.metrics.get("pct_of_peak"), 1), _fmt(r.metrics.get("power_w"), 0)])
    return _table(rows, ["op", "buffer", "GB/s", "p10–p90", "CoV", "% peak", "W"])


def mamf_table(records: list[Record]) -> str:
    rows = []
    for r in records:
        if r.status != "ok":
            continue
        m = r.metrics
        rows.append([_dtype(r.params), _sig(m.get("tflops")), f"{m['best_m']}×{m['best_n']}×{m['best_k']}",
                     _fmt(m.get("pct_of_peak"), 1), _cov(r), m.get("probes"),
                     _fmt(m.get("search_s"), 0, " s"), m.get("stopped")])
    return _table(rows, ["dtype", "max TFLOP/s", "at m×n×k", "% peak", "CoV", "probes",
                                   "searched", "stopped"])


def _attn_shape(p: dict) -> str:
    return f"{p['batch']}×{p['heads']}×{p['seq']}×{p['head_dim']}"


def _attn_case(p: dict) -> str:
    if not {"impl", "direction", "dtype", "batch", "heads", "seq", "head_dim"} <= p.keys():
        # Params that failed validation: say them as given.
        return "attention " + ",".join(f"{k}={v}" for k, v in p.items())
    return f"{p['impl']} {p['direction']} {p['dtype']} {_attn_shape(p)}" + (" causal" if p.get("causal") else "")


def attention_table(records: list[Record]) -> str:
    rows = []
    for r in records:
        if r.status != "ok":
            continue
        p, m = r.params, r.metrics
        rows.append([p["impl"], p["direction"], "yes" if p["causal"] else "no", p["dtype"],
                     _attn_shape(p), _sig(m.get("tflops")), _spread(r), _cov(r),
                     _fmt(m.get("pct_of_peak"), 1), _fmt(m.get("power_w"), 0),
                     f"{(r.check or {}).get('rel_err', float('nan')):.1e}"])
    return _table(rows, ["impl", "dir", "causal", "dtype", "B×H×N×D", "TFLOP/s", "p10–p90", "CoV",
                         "% peak", "W", "rel err"])


def attention_compare_table(records: list[Record]) -> str:
    # Imported here: it imports torch, which only a run with attention records needs.
    from gpubench.benches.attention import compare

    rows = []
    for c in compare(records):
        s = c["sdpa_tflops"]
        rows.append([c["direction"], "yes" if c["causal"] else "no", c["dtype"], _attn_shape(c),
                     _sig(c["triton_tflops"]), _sig(s.get("sdpa-flash")), _sig(s.get("sdpa-cudnn")),
                     _sig(s.get("sdpa-efficient")), _sig(s.get("sdpa-math")),
                     (c["best_sdpa"] or "—").removeprefix("sdpa-"),
                     _fmt(c["triton_vs_best"], 2, "×"), _fmt(c["triton_vs_cudnn"], 2, "×")])
    if not rows:
        return ""
    return _table(rows, ["dir", "causal", "dtype", "B×H×N×D", "Triton", "flash", "cuDNN",
                         "efficient", "math", "best SDPA", "Triton/best", "Triton/cuDNN"])


def problems(records: Iterable[Record]) -> list[str]:
    """Skipped and failed cases, grouped by their reason."""
    groups: dict[tuple[str, str], list[str]] = defaultdict(list)
    for r in records:
        if r.status == "ok":
            continue
        why = r.reason if r.status == "skipped" else r.error
        p = r.params
        what = (f"{_dtype(p)} {_shape(p)}" if r.benchmark == "matmul" and "m" in p
                else _attn_case(p) if r.benchmark == "attention"
                else f"{r.benchmark} " + ",".join(f"{k}={v}" for k, v in p.items()))
        groups[(r.status, why or "")].append(what)
    lines = []
    for (status, why), whats in groups.items():
        shown = ", ".join(whats[:4]) + (f" and {len(whats) - 4} more" if len(whats) > 4 else "")
        lines.append(f"{status} ({len(whats)}): {shown} — {why}")
    return lines


COLLECTIVES = ("all_reduce", "all_gather", "reduce_scatter", "broadcast", "all_to_all", "sendrecv")


def _bytes(n: int) -> str:
    for unit, size in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= size:
            return f"{n / size:g} {unit}"
    return f"{n} B"


def comm_table(records: list[Record]) -> str:
    """nccl-tests' columns: one row per collective, size, dtype and form."""
    rows = []
    for r in records:
        if r.status != "ok":
            continue
        p, m = r.params, r.metrics
        rows.append([r.benchmark, _bytes(int(p.get("size_bytes", 0))), p.get("dtype"),
                     "in" if p.get("inplace") else "out", p.get("world_size"),
                     _fmt(m.get("latency_us"), 1), _sig(m.get("algbw_gbps")), _sig(m.get("busbw_gbps")),
                     _fmt(m.get("straggler_ratio"), 3), _cov(r)])
    return _table(rows, ["op", "size", "dtype", "place", "ranks", "time µs", "algbw GB/s",
                         "busbw GB/s", "straggler", "CoV"])


def render(run: Run, show_probes: bool = False) -> str:
    parts = ["\n".join(header(run))]
    by_bench: dict[str, list[Record]] = defaultdict(list)
    for r in run.records:
        if r.benchmark == "matmul" and str(r.params.get("search", "")).startswith("mamf") and not show_probes:
            continue
        by_bench[r.benchmark].append(r)
    if by_bench.get("membw"):
        parts.append("memory bandwidth (copy; bytes read + written)\n" + membw_table(by_bench["membw"]))
    if any(r.status == "ok" for r in by_bench.get("matmul", [])):
        parts.append("matmul (C = A·Wᵀ; TFLOP/s from the median time; p10–p90 from the time spread)\n"
                     + matmul_table(by_bench["matmul"]))
        parts.append(best_table(by_bench["matmul"]))
    if by_bench.get("mamf"):
        parts.append("maximum achievable matmul (search; the best shape re-measured)\n"
                     + mamf_table(by_bench["mamf"]))
    if any(r.status == "ok" for r in by_bench.get("attention", [])):
        parts.append("attention (TFLOP/s: fwd 4·B·H·N²·D, half when causal; fwd+bwd 3.5× fwd)\n"
                     + attention_table(by_bench["attention"]))
        parts.append("attention: Triton vs SDPA (TFLOP/s; best SDPA = the fastest backend measured)\n"
                     + attention_compare_table(by_bench["attention"]))
    comm = [r for name in COLLECTIVES for r in by_bench.get(name, [])]
    if any(r.status == "ok" for r in comm):
        parts.append("collectives (time = slowest rank; busbw = algbw × nccl-tests' factor: "
                     "2(n−1)/n all_reduce, (n−1)/n gather/scatter/all_to_all, 1 broadcast/sendrecv)\n"
                     + comm_table(comm))
    known = {"membw", "matmul", "mamf", "attention", *COLLECTIVES}
    for name, recs in by_bench.items():
        if name not in known:
            rows = [[r.case_id, r.status, ", ".join(f"{k}={_fmt(v, 3)}" for k, v in r.metrics.items()
                                                     if isinstance(v, (int, float)))] for r in recs]
            parts.append(f"{name}\n" + tabulate(rows, headers=["case", "status", "metrics"]))
    probs = problems(run.records)
    if probs:
        parts.append("\n".join(probs))
    if any((r.timing or {}).get("high_cov") for r in run.records if r.status == "ok"):
        parts.append("! CoV above the timer's threshold: the spread is large, trust the median less "
                     "(another process on the device, thermal or power throttling, or a tiny shape).")
    counts = defaultdict(int)
    for r in run.records:
        counts[r.status] += 1
    parts.append(f"{len(run.records)} records: " + ", ".join(f"{n} {s}" for s, n in counts.items()))
    return "\n\n".join(p for p in parts if p)
