"""Tables for people: what ``gpubench run`` prints at the end and ``gpubench show`` prints.

One table per benchmark family, a line of context above (device, its dense
peaks, software), skipped and failed cases listed with their reasons below, and
a footnote on anything whose spread makes the median shaky.

A ratio of two cases (a speed-up over fp32 or bf16, checkpointing's time added)
carries its 90% interval from both cases' timing samples, ``~`` when that
interval contains 1 (no measured difference) and ``!`` when either case's CoV is
high (gpubench.uncertainty); a case without samples shows the bare ratio.
"""

from __future__ import annotations

import re
from collections import defaultdict
from typing import Iterable

from tabulate import tabulate

from gpubench import uncertainty
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


def _rel(num: Record, den: Record | None, key: str, digits: int = 2) -> str:
    """num's rate ``key`` ÷ den's, with its 90% interval and marks; "—" without a baseline."""
    if den is None:
        return "—"
    value, base = (num.metrics or {}).get(key), (den.metrics or {}).get(key)
    if value is None or not base:
        return "—"
    ratio = value / base
    ci = uncertainty.ratio_interval(ratio, num, den, power=-1)       # a rate: work ÷ time
    noisy = num is not den and (uncertainty.is_noisy(num) or uncertainty.is_noisy(den))
    return _fmt(ratio, digits, "×") + uncertainty.fmt_interval(ci, digits) + uncertainty.marks(ci, noisy)


def header(run: Run) -> list[str]:
    env = run.env or {}
    dev = env.get("device") or {}
    sw = env.get("software") or {}
    host = env.get("host") or {}
    lines = [f"gpubench {run.suite} · device: {dev.get('type', '?')} · {dev.get('name', '?')}"
             + (f" ({dev.get('label')})" if dev.get("type") == "cuda" else "")
             + f" · run {run.status} · {run.started_at or 'start time not stated'}"]
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
    if run.imported:
        lines += imported_lines(run)
        return lines
    driver = (env.get("gpu") or {}).get("driver_version")
    lines.append(f"torch {sw.get('torch')} · CUDA {sw.get('torch_cuda') or '—'}"
                 + (f" · driver {driver}" if driver else "")
                 + f" · triton {sw.get('triton') or '—'} · host {host.get('hostname')}")
    return lines


def imported_lines(run: Run) -> list[str]:
    """What an imported file says of itself: the tool, the original file, the software it states."""
    p = run.provenance or {}
    tool = p.get("tool", "?") + (f" {p['tool_version']}" if p.get("tool_version") else "")
    sha = str(p.get("source_sha256") or "")
    sw = ", ".join(f"{k} {v}" for k, v in ((run.env or {}).get("software") or {}).items() if v)
    host = ((run.env or {}).get("host") or {}).get("hostname")
    return [f"imported from {tool} ({p.get('format', '?')}): file {p.get('source_file')} sha256 {sha[:16]}…, "
            f"by {p.get('imported_by', 'gpubench import')} at {p.get('imported_at', '?')}",
            "the figures are the tool's own, as it measured and printed them; gpubench did not time them"
            + (f" · software stated: {sw}" if sw else "") + (f" · host {host}" if host else "")]


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
    fp32 = {(r.params["m"], r.params["n"], r.params["k"]): r for r in ok if r.params["dtype"] == "fp32"}
    rows = []
    for r in ok:
        p, m = r.params, r.metrics
        base = fp32.get((p["m"], p["n"], p["k"]))
        tel = r.telemetry or {}
        rows.append([
            _dtype(p), _shape(p), p.get("gemm", ""), _sig(m.get("tflops")), _spread(r), _cov(r),
            _fmt(m.get("pct_of_peak"), 1), _rel(r, base, "tflops"),
            _fmt(m.get("power_w"), 0), _fmt(m.get("energy_per_tflop_j"), 2),
            _fmt(tel.get("sm_clock_mhz_median"), 0),
            f"{(r.check or {}).get('rel_err', float('nan')):.1e}",
        ])
    return _table(rows, ["dtype", "m×n×k", "GEMM", "TFLOP/s", "p10–p90", "CoV",
                                   "% peak", "vs FP32", "W", "J/TFLOP", "SM MHz", "rel err"])


STEP_PASSES = ("fwd", "dgrad", "wgrad")


def is_step_gemm(r: Record) -> bool:
    """A GEMM the suites time because a training step of theirs runs it (``suites.step_kernels``)."""
    return r.benchmark == "matmul" and str(r.params.get("gemm", "")).rsplit(" ", 1)[-1] in STEP_PASSES


def step_gemm_table(records: list[Record]) -> str:
    """The step GEMMs folded per model and precision: how long they take together and how fast
    each layout runs (a library can be several times slower at the backward's layouts)."""
    groups: dict[tuple, list[Record]] = defaultdict(list)
    for r in records:
        if r.status == "ok":
            groups[(r.params["gemm"].split(" ", 1)[0], _dtype(r.params))].append(r)
    rows = []
    for (model, dtype), recs in groups.items():
        def med(layout):
            rates = sorted(r.metrics["tflops"] for r in recs if r.params.get("layout", "nt") == layout)
            return _sig(rates[len(rates) // 2]) if rates else "—"
        covs = [(r.timing or {}).get("cov") or 0.0 for r in recs]
        total = sum((r.timing or {}).get("median_s") or 0.0 for r in recs)
        rows.append([model, dtype, len(recs), _fmt(total * 1e3, 2), med("nt"), med("nn"), med("tn"),
                     _fmt(100 * max(covs), 1, "%")])
    return _table(rows, ["step of", "dtype", "GEMMs", "sum ms", "TFLOP/s nt (fwd)", "nn (dgrad)",
                         "tn (wgrad)", "worst CoV"])


def overhead_table(records: list[Record]) -> str:
    rows = [[r.params.get("mode"), r.params.get("ops"), _sig((r.metrics or {}).get("per_op_us")), _cov(r)]
            for r in records if r.status == "ok"]
    return _table(rows, ["mode", "ops", "µs per op", "CoV"])


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
                     _rel(r, fp32, "tflops"), _rel(r, bf16, "tflops")])
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
        rows.append([r.params["op"], _bytes(r.params["size_bytes"]),
                     _fmt(r.metrics.get("gbps"), 1), spread, _cov(r),
                     _fmt(r.metrics.get("pct_of_peak"), 1), _fmt(r.metrics.get("power_w"), 0)])
    return _table(rows, ["op", "buffer", "GB/s", "p10–p90", "CoV", "% peak", "W"])


def mamf_table(records: list[Record], published: dict | None = None) -> str:
    rows = []
    for r in records:
        if r.status != "ok":
            continue
        m = r.metrics
        # mean and fastest iteration: what an imported mamf-finder file reports besides the median
        rows.append([_dtype(r.params), _sig(m.get("tflops")), _sig(m.get("tflops_mean")), _sig(m.get("tflops_max")),
                     f"{m['best_m']}×{m['best_n']}×{m['best_k']}",
                     _fmt(m.get("pct_of_peak"), 1), _cov(r), m.get("probes"),
                     _fmt(m.get("search_s"), 0, " s"), m.get("stopped"), (published or {}).get(id(r), "—")])
    return _table(rows, ["dtype", "max TFLOP/s", "mean-time TFLOP/s", "fastest-iteration TFLOP/s", "at m×n×k",
                         "% peak", "CoV", "probes", "searched", "stopped", "vs published"])


def _attn_shape(p: dict) -> str:
    return f"{p['batch']}×{p['heads']}×{p['seq']}×{p['head_dim']}"


def _attn_case(p: dict) -> str:
    if not {"impl", "direction", "dtype", "batch", "heads", "seq", "head_dim"} <= p.keys():
        # Params that failed validation: say them as given.
        return "attention " + ",".join(f"{k}={v}" for k, v in p.items())
    return f"{p['impl']} {p['direction']} {p['dtype']} {_attn_shape(p)}" + (" causal" if p.get("causal") else "")


def attention_table(records: list[Record], published: dict | None = None) -> str:
    rows = []
    for r in records:
        if r.status != "ok":
            continue
        p, m = r.params, r.metrics
        rows.append([p["impl"], p["direction"], "yes" if p["causal"] else "no", p["dtype"],
                     _attn_shape(p), _sig(m.get("tflops")), _spread(r), _cov(r),
                     _fmt(m.get("pct_of_peak"), 1), _fmt(m.get("power_w"), 0),
                     f"{(r.check or {}).get('rel_err', float('nan')):.1e}", (published or {}).get(id(r), "—")])
    return _table(rows, ["impl", "dir", "causal", "dtype", "B×H×N×D", "TFLOP/s", "p10–p90", "CoV",
                         "% peak", "W", "rel err", "vs published"])


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


def _label(r: Record) -> str:
    """The benchmark's own words for a case (``tiny tf32 mb2``), else its parameters."""
    from gpubench.compare import label

    return label(r.benchmark, r.params, ",".join(f"{k}={v}" for k, v in r.params.items()))


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
                else f"{r.benchmark} {_label(r)}")
        groups[(r.status, why or "")].append(what)
    lines = []
    for (status, why), whats in groups.items():
        shown = ", ".join(whats[:4]) + (f" and {len(whats) - 4} more" if len(whats) > 4 else "")
        lines.append(f"{status} ({len(whats)}): {shown} — {why}")
    return lines


COLLECTIVES = ("all_reduce", "all_gather", "reduce_scatter", "broadcast", "all_to_all", "sendrecv")


def _bytes(n: int) -> str:
    from gpubench.units import format_bytes

    return format_bytes(n)


def comm_table(records: list[Record], published: dict | None = None) -> str:
    """nccl-tests' columns: one row per collective, size, dtype and form."""
    rows = []
    for r in records:
        if r.status != "ok":
            continue
        p, m = r.params, r.metrics
        rows.append([r.benchmark, _bytes(int(p.get("size_bytes", 0))), p.get("dtype"),
                     "in" if p.get("inplace") else "out", p.get("world_size"),
                     _fmt(m.get("latency_us"), 1), _sig(m.get("algbw_gbps")), _sig(m.get("busbw_gbps")),
                     _fmt(m.get("straggler_ratio"), 3), _cov(r), (published or {}).get(id(r), "—")])
    return _table(rows, ["op", "size", "dtype", "place", "ranks", "time µs", "algbw GB/s",
                         "busbw GB/s", "straggler", "CoV", "vs published"])


# ---- transformer-step: a training step; cross-record ratios from equal cases ----

STEP = "transformer-step"
FITS = "transformer-fits"
# A case's shape overrides: the named size with any of these is a different model.
_SHAPE_KEYS = ("layers", "hidden", "heads", "kv_heads", "ffn_hidden", "seq", "vocab", "mlp", "pos")


def _count(n) -> str:
    """A parameter count, 3 significant figures: 1.44B, 355M, 164K."""
    if n is None:
        return "?"
    for unit, size in (("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if n >= size:
            return f"{n / size:.3g}{unit}"
    return str(n)


def _gib(n) -> str:
    return _sig(n / 2**30) if n is not None else "—"


def _pct(fraction, digits: int = 1) -> str:
    return "—" if fraction is None else f"{100 * fraction:.{digits}f}"


def _world(r: Record) -> int:
    return int((r.work or {}).get("world_size") or 1)


def _model(r: Record) -> str:
    p, model = r.params, (r.work or {}).get("model") or {}
    name = p.get("model", "?") + ("*" if any(k in p for k in _SHAPE_KEYS) else "")
    return f"{name} ({_count(model['params'])})" if model.get("params") else name


def _step_dtype(p: dict) -> str:
    return "fp8" if p.get("dtype") == "fp8_e4m3" else str(p.get("dtype"))


def _step_case(r: Record, without: str) -> str:
    """What the records of one comparison group share, in words (the varied param left out)."""
    p = r.params
    parts = [_model(r)]
    if without != "dtype":
        parts.append(_step_dtype(p))
    parts.append(f"mb{p.get('micro_batch')}" + (f"×{p['grad_accum']}" if p.get("grad_accum", 1) > 1 else ""))
    if without != "checkpointing" and p.get("checkpointing", "none") != "none":
        parts.append(f"ckpt={p['checkpointing']}")
    if p.get("compile"):
        parts.append("compile")
    if without != "parallel" and p.get("parallel", "none") != "none":
        parts.append(p["parallel"])
    if p.get("attention", "sdpa") != "sdpa":
        parts.append(f"{p['attention']} attn")
    shape = [f"{k}={p[k]}" for k in _SHAPE_KEYS if k in p]
    return " ".join(parts + shape)


def _steps(records: list[Record]) -> list[Record]:
    """The measured steps a table reports: ok, and not a search's quick probe."""
    return [r for r in records if r.benchmark == STEP and r.status == "ok" and not r.params.get("search")]


def _groups(records: list[Record], vary: str) -> list[list[Record]]:
    """Records equal in every param but ``vary`` (and run on one device and world size),
    in first-seen order; groups of one compare nothing and are dropped."""
    groups: dict[tuple, list[Record]] = {}
    for r in _steps(records):
        key = (r.device, _world(r), tuple(sorted((k, repr(v)) for k, v in r.params.items() if k != vary)))
        groups.setdefault(key, []).append(r)
    return [g for g in groups.values() if len(g) > 1]


def transformer_table(records: list[Record], published: dict | None = None) -> str:
    rows = []
    steps = [r for r in records if r.benchmark == STEP and r.status == "ok"]
    multi = any(_world(r) > 1 for r in steps)
    for r in steps:
        p, m = r.params, r.metrics
        world = _world(r)
        parallel = p.get("parallel", "none")
        energy = m.get("energy_per_token_j")
        saved = m.get("saved_activation_bytes")
        rows.append([
            _model(r), _step_dtype(p), f"{p.get('micro_batch')}×{p.get('grad_accum', 1)}",
            p.get("checkpointing", "none"), "yes" if p.get("compile") else "—",
            (parallel + (f" ×{world}" if world > 1 else "")) if parallel != "none" or world > 1 else "—",
            p.get("attention") if p.get("attention", "sdpa") != "sdpa" else "—",
            "fits probe" if p.get("search") else "—",
            _sig(m["step_s"] * 1e3) if m.get("step_s") else "—", _sig(m.get("tokens_per_s")),
            _sig(m.get("tokens_per_s_per_gpu")) if multi else "—",
            _pct(m.get("mfu")), _pct(m.get("hfu")), _gib(m.get("peak_memory_bytes")),
            _sig(saved / 2**20) if saved is not None else "—",
            _sig(energy * 1e3) if energy is not None else "—", _sig(m.get("usd_per_million_tokens")),
            (published or {}).get(id(r), "—"),
        ])
    return _table(rows, ["model (params)", "dtype", "mb×accum", "ckpt", "compile", "parallel", "attention",
                         "search", "step ms", "tokens/s", "tokens/s/GPU", "MFU %", "HFU %", "peak GiB",
                         "saved act. MiB", "mJ/token", "$/M tokens", "vs published"])


def transformer_speedup_table(records: list[Record]) -> str:
    rows = []
    for group in _groups(records, "dtype"):
        by_dtype = {r.params["dtype"]: r for r in group}
        for r in group:
            rows.append([_step_case(r, "dtype"), _step_dtype(r.params), _sig(r.metrics.get("tokens_per_s")),
                         _rel(r, by_dtype.get("fp32"), "tokens_per_s"),
                         _rel(r, by_dtype.get("bf16"), "tokens_per_s")])
    if not rows:
        return ""
    return _table(rows, ["case", "dtype", "tokens/s", "× fp32", "× bf16"])


def _on_cuda(r: Record) -> bool:
    # A CUDA peak is the allocator's exact count; a CPU's is the process RSS, too noisy
    # for a few-MiB difference, so CPU records compare the counted saved activations.
    source = str((r.metrics or {}).get("peak_memory_source") or "")
    return "cuda" in source or str(r.device).startswith("cuda")


def _saved_pct(value, base) -> str:
    return _fmt(100 * (1 - value / base), 1) if value is not None and base else "—"


def _added_pct(r: Record, base: Record | None) -> str:
    """How much longer r's step takes than base's, in %, with the 90% interval of that
    and ``~`` when the interval contains 0 (no measured difference)."""
    value, ref = r.metrics.get("step_s"), (base.metrics if base else {}).get("step_s")
    if value is None or not ref:
        return "—"
    ratio = value / ref
    ci = uncertainty.ratio_interval(ratio, r, base, power=1)         # a time
    noisy = r is not base and (uncertainty.is_noisy(r) or uncertainty.is_noisy(base))
    return (_fmt(100 * (ratio - 1), 1) + uncertainty.fmt_interval(ci, 1, scale=100.0, shift=-100.0)
            + uncertainty.marks(ci, noisy))


def checkpointing_table(records: list[Record]) -> str:
    rows = []
    for group in _groups(records, "checkpointing"):
        none = next((r for r in group if r.params.get("checkpointing") == "none"), None)
        base = none.metrics if none else {}
        for r in group:
            m, cuda = r.metrics, _on_cuda(r)
            peak, act = m.get("peak_memory_bytes"), m.get("saved_activation_bytes")
            rows.append([
                _step_case(r, "checkpointing"), r.params.get("checkpointing"),
                _sig(m["step_s"] * 1e3) if m.get("step_s") else "—",
                _added_pct(r, none),
                _gib(peak) if cuda else "—",
                _saved_pct(peak, base.get("peak_memory_bytes")) if cuda else "—",
                _sig(act / 2**20) if act is not None else "—",
                _saved_pct(act, base.get("saved_activation_bytes")) if not cuda else "—",
            ])
    if not rows:
        return ""
    return _table(rows, ["case", "ckpt", "step ms", "time added %", "peak GiB (CUDA)",
                         "memory saved % (CUDA peak)", "saved act. MiB",
                         "memory saved % (saved activations, CPU)"])


def scaling_table(records: list[Record]) -> str:
    rows = []
    multi = [r for r in records if _world(r) > 1]
    for group in _groups(multi, "parallel"):
        none = next((r for r in group if r.params.get("parallel") == "none"), None)
        # parallel=none on N ranks: N independent replicas, so its per-GPU rate is
        # what a rank does with no communication at all: the per-GPU baseline.
        base = none.metrics.get("tokens_per_s_per_gpu") if none else None
        for r in group:
            per_gpu = r.metrics.get("tokens_per_s_per_gpu")
            rows.append([_step_case(r, "parallel"), r.params.get("parallel"), _world(r),
                         _sig(r.metrics.get("tokens_per_s")), _sig(per_gpu),
                         _pct(per_gpu / base) if per_gpu is not None and base else "—"])
    if not rows:
        return ""
    return _table(rows, ["case", "parallel", "ranks", "tokens/s (all)", "tokens/s/GPU",
                         "scaling efficiency %"])


def fits_table(records: list[Record]) -> str:
    rows = []
    for r in records:
        if r.benchmark != FITS or r.status != "ok":
            continue
        p, m = r.params, r.metrics
        need = m.get("next_needed_bytes_est")
        nxt = (f"{m['next_model']} (~{_gib(need)} GiB est.)" if m.get("next_model")
               else "top of ladder" if m.get("top_of_ladder") else "—")
        rows.append([f"{_step_dtype(p)} ckpt={p.get('checkpointing')} mb{p.get('micro_batch')}",
                     f"{m.get('largest_model')} ({_count(m.get('largest_params'))})",
                     _gib(m.get("peak_memory_bytes")), _gib(m.get("memory_headroom_bytes")),
                     _gib(m.get("limit_bytes") or p.get("limit_bytes")), nxt,
                     _sig(m.get("tokens_per_s")), _pct(m.get("mfu"))])
    if not rows:
        return ""
    return _table(rows, ["mode", "largest that fits", "peak GiB", "headroom GiB", "limit GiB",
                         "next size (need)", "tokens/s", "MFU %"])


# What the ratio cells of _rel/_added_pct print: an interval, and the not-significant mark.
_INTERVAL = re.compile(r" \[[-+\d.,]+–[-+\d.,]+\]")
_NOT_SIG = re.compile(rf" {re.escape(uncertainty.NOT_SIGNIFICANT)}(?= |$)", re.M)


def _published(run: Run) -> tuple[dict[int, str], list[str]]:
    """id(record) -> its "vs published" cell, and the footnotes citing their sources."""
    from gpubench import baselines

    notes = baselines.Footnotes()
    cells = {rid: notes.cell(found) for rid, found in baselines.for_run(run).items()}
    return cells, notes.lines()


def show_json(path, run: Run) -> dict:
    """``gpubench show --json``: per record its case, main figure and the published figures
    it is compared with (``vs published``); the run's provenance where it was imported."""
    from gpubench import baselines
    from gpubench.compare import main_metric
    from gpubench.results import clean_floats

    found = baselines.for_run(run)
    records = []
    for r in run.records:
        metric, value, unit, pct = main_metric(r)
        records.append({"case_id": r.case_id, "benchmark": r.benchmark, "status": r.status, "metric": metric or None,
                        "value": value, "unit": unit or None, "pct_of_peak": pct,
                        "published": [m.to_json() for m in found.get(id(r), [])]})
    return clean_floats({"file": str(path), "suite": run.suite, "status": run.status, "run_id": run.run_id,
                         "gpu": baselines.gpu_key(run.env), "provenance": run.provenance, "records": records})


def render(run: Run, show_probes: bool = False) -> str:
    parts = ["\n".join(header(run))]
    published, published_notes = _published(run)
    ratio_tables: list[str] = []        # the tables with ratio cells, for their footnote
    by_bench: dict[str, list[Record]] = defaultdict(list)
    for r in run.records:
        if r.benchmark == "matmul" and str(r.params.get("search", "")).startswith("mamf") and not show_probes:
            continue
        if r.benchmark == STEP and r.params.get("search") == "fits" and not show_probes:
            continue
        by_bench[r.benchmark].append(r)
    if by_bench.get("membw"):
        parts.append("memory bandwidth (copy; bytes read + written)\n" + membw_table(by_bench["membw"]))
    step_gemms = [r for r in by_bench.get("matmul", []) if is_step_gemm(r)]
    by_bench["matmul"] = [r for r in by_bench.get("matmul", []) if not is_step_gemm(r)]
    if any(r.status == "ok" for r in by_bench["matmul"]):
        ratio_tables += [matmul_table(by_bench["matmul"]), best_table(by_bench["matmul"])]
        parts.append("matmul (C = A·Wᵀ; TFLOP/s from the median time; p10–p90 from the time spread)\n"
                     + ratio_tables[-2])
        parts.append(ratio_tables[-1])
    if any(r.status == "ok" for r in step_gemms):
        parts.append("the training steps' GEMMs, timed alone (median TFLOP/s per layout; each row's "
                     "cases are in the file; gpubench selfcheck predicts the steps from them)\n"
                     + step_gemm_table(step_gemms))
    if by_bench.get("mamf"):
        parts.append("maximum achievable matmul (search; the best shape re-measured)\n"
                     + mamf_table(by_bench["mamf"], published))
    if any(r.status == "ok" for r in by_bench.get("attention", [])):
        parts.append("attention (TFLOP/s: fwd 4·B·H·N²·D, half when causal; fwd+bwd 3.5× fwd)\n"
                     + attention_table(by_bench["attention"], published))
        parts.append("attention: Triton vs SDPA (TFLOP/s; best SDPA = the fastest backend measured)\n"
                     + attention_compare_table(by_bench["attention"]))
    comm = [r for name in COLLECTIVES for r in by_bench.get(name, [])]
    if any(r.status == "ok" for r in comm):
        parts.append(("collectives (time, algbw and busbw as the imported tool printed them; busbw = algbw × "
                      "nccl-tests' factor: " if run.imported else
                      "collectives (time = slowest rank; busbw = algbw × nccl-tests' factor: ")
                     + "2(n−1)/n all_reduce, (n−1)/n gather/scatter/all_to_all, 1 broadcast/sendrecv)\n"
                     + comm_table(comm, published))
    steps = by_bench.get(STEP, [])
    if any(r.status == "ok" for r in steps):
        parts.append("transformer training step (fwd+bwd+AdamW; tokens/s over all ranks; MFU = model FLOP/s ÷ "
                     "dense peak, HFU adds checkpointing's recomputation; peak = CUDA allocator or CPU RSS)\n"
                     + transformer_table(steps, published))
        speedups, ckpt = transformer_speedup_table(steps), checkpointing_table(steps)
        ratio_tables += [speedups, ckpt]
        for title, table in (("transformer: speed-up by precision (tokens/s ÷ the same case in fp32, bf16)",
                              speedups),
                             ("transformer: activation checkpointing vs none (same case otherwise)", ckpt),
                             (("transformer: DDP/FSDP scaling (efficiency = tokens/s per GPU ÷ parallel=none's, "
                               "each rank an independent replica)"), scaling_table(steps))):
            if table:
                parts.append(f"{title}\n{table}")
    if any(r.status == "ok" for r in by_bench.get("op-overhead", [])):
        parts.append("cost of one framework operation (a chain of 8-element multiplications; autograd: "
                     "each with its backward, as a training step pays it)\n"
                     + overhead_table(by_bench["op-overhead"]))
    if any(r.status == "ok" for r in by_bench.get(FITS, [])):
        parts.append("transformer: largest model that trains (size ladder climbed with real steps)\n"
                     + fits_table(by_bench[FITS]))
    known = {"membw", "matmul", "mamf", "attention", "op-overhead", *COLLECTIVES, STEP, FITS}
    for name, recs in by_bench.items():
        if name not in known:
            rows = [[r.case_id, r.status, ", ".join(f"{k}={_fmt(v, 3)}" for k, v in r.metrics.items()
                                                     if isinstance(v, (int, float)))] for r in recs]
            parts.append(f"{name}\n" + tabulate(rows, headers=["case", "status", "metrics"]))
    probs = problems(run.records)
    if probs:
        parts.append("\n".join(probs))
    if published_notes:
        parts.append("\n".join(published_notes))
    if any(_INTERVAL.search(t) for t in ratio_tables):
        parts.append("ratios: [90% interval from both cases' timing samples]"
                     + (f"; {uncertainty.NOT_SIGNIFICANT_NOTE}" if any(_NOT_SIG.search(t) for t in ratio_tables)
                        else ""))
    if any((r.timing or {}).get("high_cov") for r in run.records if r.status == "ok"):
        parts.append("! CoV above the timer's threshold: the spread is large, trust the median less "
                     "(another process on the device, thermal or power throttling, or a tiny shape); "
                     "a ratio marked ! has such a case on either side.")
    counts = defaultdict(int)
    for r in run.records:
        counts[r.status] += 1
    parts.append(f"{len(run.records)} records: " + ", ".join(f"{n} {s}" for s, n in counts.items()))
    return "\n\n".join(p for p in parts if p)
