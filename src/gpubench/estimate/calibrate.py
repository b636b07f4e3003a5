"""Fold result files into a calibration profile: measured fractions of datasheet figures.

``build_profile(paths)`` reads gpubench result files from one GPU model and turns
what they measured into a :class:`~gpubench.estimate.profile.Profile`. Each field is
either *measured* (the notes name the file, the record and the value) or taken from
the architecture's *published* default profile (``default_profile``), and the notes
say which. Only records with status ``ok`` count; benchmarks it does not know are
ignored (and counted in the notes).

What each field is made of
--------------------------

* ``gemm_ceiling[p]``: the best TFLOP/s of ``matmul`` and ``mamf`` records of
  precision ``p`` (``fp8_e4m3``/``fp8_e5m2`` → ``fp8``) divided by the dense
  datasheet peak of the hardware table. Only large shapes count (m·n·k ≥ 2³⁰,
  1024³): small GEMMs say how fast small GEMMs are, not where the ceiling is. A
  ``mamf`` summary gives its shape as ``best_m/n/k``. The quick-timed probes of a
  mamf search (``matmul`` with ``search=mamf``) are used only when nothing else
  measured that precision: the search re-measures its winner with full timing
  precisely because probes are short and the best of many short timings is
  biased upward. A rate above the dense peak (any shape) cannot be measured: the
  file is wrong, and it is an error.
* ``mem_bw_efficiency``: the best ``membw`` GB/s divided by the datasheet
  bandwidth, from buffers of at least 256 MiB (far beyond any L2). With only
  smaller buffers, the best of those is used and the notes say so; a small
  buffer above the datasheet bandwidth is served from cache and is skipped.
* Attention (benchmarks whose name contains ``attention``, bf16/fp16 only):
  ``attention = "flash"``; ``attention_fwd_efficiency`` is the best forward rate
  as a fraction of that precision's peak. The backward efficiency is taken from
  ``bwd`` records directly, or derived from a ``fwd+bwd`` record and a ``fwd``
  record of the same case (same params apart from the direction). With forward
  FLOPs F and backward FLOPs 2.5·F (the FlashAttention convention, which the
  performance model uses too), a fwd+bwd rate R_fb and a forward rate R_f:

      time_fb = 3.5·F / R_fb,   time_f = F / R_f,   time_b = time_fb − time_f
      R_b = 2.5·F / time_b = 2.5 / (3.5/R_fb − 1/R_f)

  The same formula holds for fractions of one peak. Per case the best R_fb and
  best R_f are combined; the best case wins. A pair whose derived backward is
  not positive or above the peak contradicts itself and is an error.
* ``intra_node_efficiency``: ``all_reduce`` records with 2 ≤ world_size ≤ GPUs
  per node: the best bus bandwidth at the largest message size measured,
  divided by the per-direction intra-node link rate (``cluster.FACTS``). NVLink
  SHARP (NVLS) reduces inside the switch and can exceed the link rate a little,
  so values up to 1.5 are kept (and flagged above 1); beyond that it is an error.
* ``transformer-step`` records (MFU, tokens/s) are no profile field; their best
  MFU is reported in the notes as a check on the estimate.
* Everything else (``inter_node_efficiency``, the overlaps, ``kernel_gap_s``,
  precisions not measured) comes from ``default_profile(gpu, arch)``.

Notes format: one line each, starting with a tag:
``gpu:``, ``file:``, ``measured <field> = <value>: <how> [<file> #<index> <case id>]``,
``default <field> = <value> (<default profile name>)``, ``skipped: …``, ``ignored: …``,
``check: …``, ``published: …`` (a measured GEMM ceiling against the maximum achievable matmul
published for the same GPU, ``gpubench.baselines``).
"""

from __future__ import annotations

import math
import re
from collections import defaultdict
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Sequence

from gpubench.errors import GpubenchError
from gpubench.estimate.cluster import FACTS
from gpubench.estimate.profile import Profile, default_profile
from gpubench.estimate.rates import MeasuredRates, precision_key
from gpubench.hardware import GPUSpec, get_gpu
from gpubench.results import Record, Run, load_run

LARGE_GEMM = 1 << 30                # m·n·k of 1024³
LARGE_BUFFER = 256 << 20            # bytes: far beyond any L2 cache
BWD_FLOP_RATIO = 2.5                # backward attention FLOPs ÷ forward
INTRA_ABSURD = 1.5                  # all-reduce busbw ÷ link rate above this is not a measurement
DEFAULT_GPUS_PER_NODE = 8

_DTYPE_ALIASES = {"bfloat16": "bf16", "float16": "fp16", "half": "fp16", "float32": "fp32",
                  "float": "fp32", "fp8": "fp8_e4m3", "float8_e4m3fn": "fp8_e4m3",
                  "float8_e5m2": "fp8_e5m2"}
_SIZE_KEYS = ("size_bytes", "message_bytes", "msg_bytes", "nbytes", "bytes", "size")
_UNFUSED = {"math", "sdpa-math", "unfused", "eager", "naive", "reference"}
_COLLECTIVES = ("all_reduce", "all_gather", "reduce_scatter", "broadcast", "all_to_all", "sendrecv")


@dataclass
class _Source:
    """One ok record and where it came from."""
    path: Path
    index: int
    record: Record

    def where(self) -> str:
        return f"[{self.path} #{self.index} {self.record.case_id}]"


def _num(x: Any) -> float | None:
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        return None
    x = float(x)
    return x if math.isfinite(x) else None


def _int(x: Any) -> int | None:
    try:
        return int(x) if x is not None and not isinstance(x, bool) else None
    except (TypeError, ValueError):
        return None


def _dtype(params: dict) -> str | None:
    d = params.get("dtype")
    if not isinstance(d, str):
        return None
    d = d.strip().lower()
    return _DTYPE_ALIASES.get(d, d)


def _ceiling_key(dtype: str) -> str:
    return "fp8" if dtype.startswith("fp8") else dtype


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{k}: {_fmt(x)}" for k, x in v.items()) + "}"
    return str(v)


def _peak(spec: GPUSpec, dtype: str) -> float | None:
    try:
        return spec.peak(dtype)
    except GpubenchError:
        return None


def _rate_fraction(src: _Source, spec: GPUSpec, dtype: str) -> float | None:
    """Measured TFLOP/s ÷ the hardware table's dense peak; pct_of_peak if no TFLOP/s."""
    m = src.record.metrics or {}
    peak = _peak(spec, dtype)
    tflops = _num(m.get("tflops"))
    if tflops is not None and peak:
        return tflops / peak
    pct = _num(m.get("pct_of_peak"))
    return pct / 100.0 if pct is not None else None


def _absurd(what: str, src: _Source, value: str) -> GpubenchError:
    return GpubenchError(f"{src.path}: record {src.index} ({src.record.case_id}) has an absurd "
                         f"{what}: {value}; the file is wrong, not the GPU fast")


# ---- loading and checking the files ----

def _device_id(run: Run) -> tuple[dict, str]:
    dev = (run.env or {}).get("device") or {}
    return dev, f"{dev.get('type') or 'device'} {dev.get('name') or 'unknown'}"


def _load(paths: Sequence[str | Path]) -> tuple[list[tuple[Path, Run]], GPUSpec | None, dict]:
    """The runs, the hardware table's entry for their GPU (None: no datasheet figures), the device.

    Files of one GPU model may come from several machines (fractions of one datasheet
    agree); a device without a datasheet entry is only ever compared with itself."""
    if not paths:
        raise GpubenchError("calibrate: no result files given")
    return resolve_device([(Path(p), load_run(p)) for p in paths])


def resolve_device(runs: list[tuple[Path, Run]]) -> tuple[list[tuple[Path, Run]], GPUSpec | None, dict]:
    """The hardware table's entry and the device of runs already loaded (see ``_load``)."""
    first: tuple[Path, str | None, str] | None = None
    spec = None
    device = {}
    for path, run in runs:
        dev, ident = _device_id(run)
        key = dev.get("spec_key") if dev.get("type") != "cpu" else None
        this = None
        if key:
            try:
                this = get_gpu(key)
            except GpubenchError:
                raise GpubenchError(f"{path}: spec_key {key!r} ({dev.get('name')}) is not in the "
                                    f"hardware table") from None
        mark = this.key if this else ident
        if first is None:
            first, spec, device = (path, mark, ident), this, dev
        elif mark != first[1]:
            raise GpubenchError(
                f"result files come from different devices: {first[0]} is {first[1]}, {path} is "
                f"{mark}; calibrate one device model at a time")
    return runs, spec, device


# ---- the figures ----

def _gemm(records: list[_Source], spec: GPUSpec, notes: list[str],
          shapes: list | None = None) -> dict[str, tuple[float, str]]:
    """Ceilings per precision; every fully timed shape (any size) is appended to ``shapes``
    as (precision, m, n, k, fraction of peak), the profile's per-shape anchors."""
    shapes = [] if shapes is None else shapes
    full: dict[str, list[tuple[float, _Source, str]]] = defaultdict(list)
    probes: dict[str, list[tuple[float, _Source, str]]] = defaultdict(list)
    small = 0
    for src in records:
        r = src.record
        dtype = _dtype(r.params)
        if dtype is None:
            notes.append(f"ignored: {r.benchmark} record without a dtype {src.where()}")
            continue
        if _peak(spec, dtype) is None:
            notes.append(f"ignored: {spec.key} has no dense {dtype} peak in the hardware table "
                         f"{src.where()}")
            continue
        frac = _rate_fraction(src, spec, dtype)
        if frac is None or frac <= 0:
            notes.append(f"ignored: no TFLOP/s in {src.where()}")
            continue
        if frac > 1.0:
            tflops = _num((r.metrics or {}).get("tflops"))
            raise _absurd(f"{dtype} rate", src, f"{_fmt(tflops)} TFLOP/s is {frac:.3g}× the dense "
                          f"{dtype} peak of {spec.peak(dtype):g} TFLOP/s ({spec.key})")
        if r.benchmark == "mamf":
            shape = tuple(_int((r.metrics or {}).get(f"best_{d}")) for d in "mnk")
        else:
            shape = tuple(_int(r.params.get(d)) for d in "mnk")
        is_probe = r.benchmark == "matmul" and str(r.params.get("search", "")) == "mamf"
        if None not in shape and not is_probe:
            shapes.append((_ceiling_key(dtype), *shape, frac))
        if None in shape:
            if r.benchmark != "mamf":
                notes.append(f"ignored: matmul record without m, n, k {src.where()}")
                continue
            desc = "mamf search (shape not recorded)"
        else:
            m, n, k = shape
            if m * n * k < LARGE_GEMM:
                small += 1
                continue
            desc = f"{r.benchmark} {m}×{n}×{k}"
        key = _ceiling_key(dtype)
        (probes if is_probe else full)[key].append((frac, src, desc))
    if small:
        notes.append(f"ignored: {small} matmul record(s) smaller than 1024³ (m·n·k < 2^30): "
                     f"small shapes do not define the ceiling")
    out = {}
    for key in sorted(set(full) | set(probes)):
        cands, how = full.get(key), ""
        if not cands:
            cands, how = probes[key], ", quick-timed mamf probes only"
        frac, src, desc = max(cands, key=lambda c: c[0])
        tflops = frac * spec.peak(key)
        out[key] = (frac, f"{tflops:.1f} of {spec.peak(key):g} TFLOP/s dense peak, best of "
                          f"{len(cands)} large-shape record(s){how}; {desc} {src.where()}")
    return out


def _membw(records: list[_Source], spec: GPUSpec, notes: list[str]) -> tuple[float, str] | None:
    large, small = [], []
    for src in records:
        gbps = _num((src.record.metrics or {}).get("gbps"))
        if gbps is None or gbps <= 0:
            continue
        size = next((_int(src.record.params.get(k)) for k in _SIZE_KEYS
                     if _int(src.record.params.get(k)) is not None), None)
        frac = gbps / spec.mem_bandwidth_gbps
        if size is not None and size >= LARGE_BUFFER:
            if frac > 1.0:
                raise _absurd("memory bandwidth", src, f"{gbps:.1f} GB/s is {frac:.3g}× the "
                              f"datasheet {spec.mem_bandwidth_gbps:g} GB/s ({spec.key}) with a "
                              f"{size / 2**20:.0f} MiB buffer")
            large.append((frac, gbps, size, src))
        elif frac > 1.0:
            notes.append(f"skipped: {gbps:.1f} GB/s exceeds the datasheet bandwidth: a buffer "
                         f"that small is served from cache {src.where()}")
        else:
            small.append((frac, gbps, size, src))
    if not large and not small:
        return None
    if large:
        frac, gbps, size, src = max(large, key=lambda c: c[0])
        caveat = ""
    else:
        frac, gbps, size, src = max(small, key=lambda c: c[0])
        caveat = (f"; NO buffer of 256 MiB or more was measured, so this is the best of smaller "
                  f"ones ({'size unknown' if size is None else f'{size / 2**20:.0f} MiB'}), "
                  f"which caches can distort")
    return frac, (f"{gbps:.1f} of {spec.mem_bandwidth_gbps:g} GB/s datasheet"
                  f"{'' if size is None else f', {size / 2**20:.0f} MiB buffer'}{caveat} {src.where()}")


def _direction(src: _Source) -> str:
    d = src.record.params.get("direction")
    if isinstance(d, str) and d.strip():
        s = re.sub(r"[^a-z]", "", d.lower())
    else:
        s = re.sub(r"[^a-z]", "", src.record.benchmark.lower().replace("attention", ""))
    has_b = "bwd" in s or "backward" in s or s in ("bw", "b", "train", "both")
    has_f = "fwd" in s or "forward" in s or s in ("fw", "f") or s in ("train", "both")
    if has_b and has_f:
        return "fwd+bwd"
    if has_b:
        return "bwd"
    return "fwd"


def _attention(records: list[_Source], spec: GPUSpec, notes: list[str]) -> dict[str, tuple[Any, str]]:
    by_dir: dict[str, list[tuple[float, _Source]]] = defaultdict(list)
    for src in records:
        r = src.record
        impl = {str(r.params.get(k, "")).lower() for k in ("impl", "backend", "kernel")}
        if impl & _UNFUSED or "unfused" in r.benchmark.lower():
            notes.append(f"ignored: unfused attention record (the profile's attention field "
                         f"describes fused kernels) {src.where()}")
            continue
        dtype = _dtype(r.params) or "bf16"
        if dtype not in ("bf16", "fp16"):
            notes.append(f"ignored: {dtype} attention (only bf16/fp16 calibrate the profile) "
                         f"{src.where()}")
            continue
        frac = _rate_fraction(src, spec, dtype)
        if frac is None or frac <= 0:
            notes.append(f"ignored: attention record without a rate {src.where()}")
            continue
        if frac > 1.0:
            raise _absurd("attention rate", src, f"{frac:.3g}× the dense {dtype} peak ({spec.key})")
        by_dir[_direction(src)].append((frac, src))
    out: dict[str, tuple[Any, str]] = {}
    if not by_dir:
        return out
    n = sum(len(v) for v in by_dir.values())
    out["attention"] = ("flash", f"{n} fused attention record(s) measured")
    if by_dir["fwd"]:
        frac, src = max(by_dir["fwd"], key=lambda c: c[0])
        out["attention_fwd_efficiency"] = (frac, f"best of {len(by_dir['fwd'])} forward record(s) "
                                                 f"{src.where()}")
    bwd: list[tuple[float, str]] = []
    for frac, src in by_dir["bwd"]:
        bwd.append((frac, f"backward record {src.where()}"))

    def case(src: _Source) -> tuple:
        return tuple(sorted((k, repr(v)) for k, v in src.record.params.items() if k != "direction"))

    fwd_by_case: dict[tuple, tuple[float, _Source]] = {}
    for frac, src in by_dir["fwd"]:
        c = case(src)
        if c not in fwd_by_case or frac > fwd_by_case[c][0]:
            fwd_by_case[c] = (frac, src)
    fb_by_case: dict[tuple, tuple[float, _Source]] = {}
    for frac, src in by_dir["fwd+bwd"]:
        c = case(src)
        if c not in fb_by_case or frac > fb_by_case[c][0]:
            fb_by_case[c] = (frac, src)
    unpaired = 0
    for c, (r_fb, src_fb) in fb_by_case.items():
        if c not in fwd_by_case:
            unpaired += 1
            continue
        r_f, src_f = fwd_by_case[c]
        denom = (1 + BWD_FLOP_RATIO) / r_fb - 1 / r_f
        r_b = BWD_FLOP_RATIO / denom if denom > 0 else float("inf")
        if r_b > 1.0:
            raise _absurd("attention fwd+bwd rate", src_fb,
                          f"{r_fb:.3g} of peak with forward {r_f:.3g} {src_f.where()} implies a "
                          f"backward pass at {'infinite speed' if denom <= 0 else f'{r_b:.3g}× the peak'}")
        bwd.append((r_b, f"derived 2.5/(3.5/{r_fb:.4g} − 1/{r_f:.4g}) from fwd+bwd "
                         f"{src_fb.where()} and fwd {src_f.where()}"))
    if unpaired:
        notes.append(f"ignored: {unpaired} fwd+bwd attention case(s) with no forward record of "
                     f"the same case to derive the backward rate from")
    if bwd:
        frac, how = max(bwd, key=lambda c: c[0])
        out["attention_bwd_efficiency"] = (frac, f"best of {len(bwd)}: {how}")
    return out


def _all_reduce(records: list[_Source], spec: GPUSpec, notes: list[str]) -> tuple[float, str] | None:
    facts = FACTS.get(spec.key)
    if facts is None:
        notes.append(f"ignored: {len(records)} all_reduce record(s): no interconnect facts for "
                     f"{spec.key}")
        return None
    per_node = facts.gpus_per_node or DEFAULT_GPUS_PER_NODE
    usable, across = [], 0
    for src in records:
        ws = _int(src.record.params.get("world_size"))
        busbw = _num((src.record.metrics or {}).get("busbw_gbps"))
        if ws is None or busbw is None or busbw <= 0:
            notes.append(f"ignored: all_reduce record without world_size or busbw_gbps {src.where()}")
            continue
        if ws > per_node:
            across += 1
            continue
        if ws < 2:
            continue
        size = next((_int(src.record.params.get(k)) for k in _SIZE_KEYS
                     if _int(src.record.params.get(k)) is not None), -1)
        usable.append((size, busbw, ws, src))
    if across:
        notes.append(f"ignored: {across} all_reduce record(s) across nodes (world_size > {per_node}): "
                     f"inter_node_efficiency is not derived from them")
    if not usable:
        return None
    largest = max(u[0] for u in usable)
    size, busbw, ws, src = max((u for u in usable if u[0] == largest), key=lambda u: u[1])
    frac = busbw / facts.intra_node_gbps
    if frac > INTRA_ABSURD:
        raise _absurd("all_reduce bus bandwidth", src, f"{busbw:.1f} GB/s is {frac:.3g}× the "
                      f"{facts.intra_node_gbps:g} GB/s per-direction link of {spec.key}")
    msg = "size unknown" if size < 0 else f"{size / 2**20:.0f} MiB message"
    extra = ("; above the link rate, as NVLink SHARP (in-switch reduction) can give"
             if frac > 1.0 else "")
    return frac, (f"{busbw:.1f} of {facts.intra_node_gbps:g} GB/s per-direction link, busbw at "
                  f"the largest message ({msg}), {ws} GPUs{extra} {src.where()}")


def _step_check(records: list[_Source], notes: list[str]) -> None:
    best = None
    for src in records:
        mfu = _num((src.record.metrics or {}).get("mfu"))
        if mfu is not None and (best is None or mfu > best[0]):
            best = (mfu, src)
    if best:
        mfu, src = best
        tps = _num((src.record.metrics or {}).get("tokens_per_s"))
        notes.append(f"check: transformer-step best MFU {mfu:.3g}"
                     f"{'' if tps is None else f', {tps:.4g} tokens/s'} {src.where()}: not a "
                     f"profile field; compare it with the estimate")


# ---- measured rates (absolute, this device only) ----

def _median(xs: list[float]) -> float:
    xs = sorted(xs)
    mid = len(xs) // 2
    return xs[mid] if len(xs) % 2 else 0.5 * (xs[mid - 1] + xs[mid])


def _seconds(r: Record) -> float | None:
    return _num((r.timing or {}).get("median_s"))


def measured_rates(runs: list[tuple[Path, Run]], device: dict) -> MeasuredRates:
    """Every ok record's time, by what it measured: GEMM shapes, copy sizes, op overhead,
    fused attention cases, collectives. Repeated cases keep the median of their medians."""
    gemm: dict[tuple, list[float]] = defaultdict(list)
    membw: dict[int, list[float]] = defaultdict(list)
    ops: dict[str, list[float]] = defaultdict(list)
    attention: dict[tuple, list[float]] = defaultdict(list)
    attn_meta: dict[tuple, dict] = {}
    coll: dict[tuple, list[float]] = defaultdict(list)
    for _, run in runs:
        for r in run.records:
            if r.status != "ok":
                continue
            m, t = r.metrics or {}, _seconds(r)
            name = r.benchmark
            if name in ("matmul", "mamf"):
                dtype = _dtype(r.params)
                if dtype is None or str(r.params.get("search", "")) == "mamf":
                    continue        # quick-timed search probes are biased fast
                if name == "mamf":
                    shape = tuple(_int(m.get(f"best_{d}")) for d in "mnk")
                    tflops = _num(m.get("tflops"))
                    t = 2.0 * math.prod(shape) / (tflops * 1e12) if None not in shape and tflops else None
                else:
                    shape = tuple(_int(r.params.get(d)) for d in "mnk")
                    tflops = _num(m.get("tflops"))
                    if not t and tflops and None not in shape:
                        t = 2.0 * math.prod(shape) / (tflops * 1e12)    # a file without timing stats
                if None in shape or not t:
                    continue
                gemm[(precision_key(dtype), *shape, str(r.params.get("layout", "nt")))].append(t)
            elif name == "membw":
                size, gbps = _int(r.params.get("size_bytes")), _num(m.get("gbps"))
                if size and gbps:
                    membw[size].append(gbps * 1e9)
            elif name == "op-overhead":
                per = _num(m.get("per_op_s"))
                if per:
                    ops[str(r.params.get("mode", "autograd"))].append(per)
            elif "attention" in name:
                impl = str(r.params.get("impl", ""))
                if impl in _UNFUSED or not t:
                    continue
                flops = _num((r.work or {}).get("flops"))
                tflops = _num(m.get("tflops"))
                flops = flops or (tflops * 1e12 * t if tflops else None)
                if not flops:
                    continue
                key = tuple(r.params.get(k) for k in ("direction", "causal", "batch", "heads", "seq",
                                                       "head_dim", "impl", "dtype"))
                attention[key].append(t)
                attn_meta[key] = {k: r.params.get(k) for k in ("direction", "causal", "batch", "heads", "seq",
                                                                "head_dim", "impl", "dtype")}
                attn_meta[key]["flops"] = flops
            elif name in _COLLECTIVES:
                size, world = _int(r.params.get("size_bytes")), _int(r.params.get("world_size"))
                if size and world and world > 1 and t:
                    coll[(name, world, size)].append(t)
    rates = MeasuredRates(device={k: device.get(k) for k in ("type", "name", "spec_key", "total_memory_bytes")},
                          host_overlap=device.get("type") == "cuda")
    for (prec, mm, nn, kk, layout), ts in sorted(gemm.items()):
        rates.gemm.setdefault(prec, []).append([mm, nn, kk, _median(ts), layout])
    rates.membw = [[size, _median(bw)] for size, bw in sorted(membw.items())]
    rates.op_s = _median(ops["autograd"]) if ops.get("autograd") else None
    rates.op_eager_s = _median(ops["eager"]) if ops.get("eager") else None
    # The step runs SDPA's fused kernels (or the Triton kernel): prefer those families.
    rates.attention = [{**attn_meta[k], "seconds": _median(ts)} for k, ts in attention.items()]
    for (op, world, size), ts in sorted(coll.items()):
        rates.collectives.setdefault(f"{op}/{world}", []).append([size, _median(ts)])
    return rates


# ---- the profile ----

def build_profile(paths: Sequence[str | Path]) -> tuple[Profile, list[str]]:
    """Fold result files into a Profile. Returns the profile and human-readable notes (one per line)
    saying which figures were measured (from which file/record, value) and which came from the
    architecture's published default profile."""
    runs, spec, device = _load(paths)
    rates = measured_rates(runs, device)
    if spec is None:
        return _rates_only(runs, device, rates)
    notes = [f"gpu: {device.get('name')} ({spec.key}, {spec.arch}); {len(runs)} result file(s)"]
    groups: dict[str, list[_Source]] = defaultdict(list)
    unknown: dict[str, int] = defaultdict(int)
    provenance: list[dict] = []
    used_per_file: list[int] = []
    for path, run in runs:
        ok = [_Source(path, i, r) for i, r in enumerate(run.records) if r.status == "ok"]
        notes.append(f"file: {path}: suite {run.suite}, run {run.run_id}, started {run.started_at}, "
                     f"status {run.status}, {len(ok)} of {len(run.records)} record(s) ok")
        used = 0
        for src in ok:
            name = src.record.benchmark
            flat = re.sub(r"[^a-z0-9]", "", name.lower())
            if name in ("matmul", "mamf"):
                groups["gemm"].append(src)
            elif name == "membw":
                groups["membw"].append(src)
            elif "attention" in flat:
                groups["attention"].append(src)
            elif "allreduce" in flat:
                groups["all_reduce"].append(src)
            elif flat.startswith("transformerstep") or flat == "transformer":
                groups["step"].append(src)
            elif name == "op-overhead" or name in _COLLECTIVES:
                pass                # measured rates only (``measured_rates``)
            else:
                unknown[name] += 1
                continue
            used += 1
        used_per_file.append(used)
        provenance.append({"file": str(path), "run_id": run.run_id, "gpu": device.get("name"),
                           "spec_key": spec.key, "started_at": run.started_at, "suite": run.suite,
                           "kind": "measured"})
    if unknown:
        notes.append("ignored: " + ", ".join(f"{n} {b} record(s)" for b, n in sorted(unknown.items()))
                     + " (not used for calibration)")

    measured: dict[str, tuple[Any, str]] = {}
    shapes: list = []
    gemm = _gemm(groups["gemm"], spec, notes, shapes)
    for key, (frac, how) in gemm.items():
        measured[f"gemm_ceiling.{key}"] = (frac, how)
    if groups["membw"]:
        mb = _membw(groups["membw"], spec, notes)
        if mb:
            measured["mem_bw_efficiency"] = mb
    measured.update(_attention(groups["attention"], spec, notes))
    if groups["all_reduce"]:
        ar = _all_reduce(groups["all_reduce"], spec, notes)
        if ar:
            measured["intra_node_efficiency"] = ar
    _step_check(groups["step"], notes)
    if not measured:
        raise GpubenchError(
            f"{', '.join(str(p) for p, _ in runs)}: no ok record calibrates anything (large "
            f"matmul/mamf, membw, attention or intra-node all_reduce): cannot calibrate {spec.key}")

    default = default_profile(spec.key, spec.arch)
    dname = default.name + (f", carried from {default.carried_from}" if default.carried_from else "")
    ceilings = dict(default.gemm_ceiling)
    ceilings.update({k: v for k, (v, _) in gemm.items()})
    values: dict[str, Any] = {"gemm_ceiling": ceilings}
    for name, (value, _) in measured.items():
        if not name.startswith("gemm_ceiling."):
            values[name] = value

    for name in sorted(measured, key=lambda n: (not n.startswith("gemm"), n)):
        value, how = measured[name]
        notes.append(f"measured {name} = {_fmt(value)}: {how}")
    from gpubench.baselines import ceiling_notes

    notes.extend(ceiling_notes(spec.key, {k: frac * spec.peak(k) for k, (frac, _) in gemm.items()}))
    from_default: list[str] = []
    for key in sorted(default.gemm_ceiling):
        if key not in gemm:
            from_default.append(f"gemm_ceiling.{key}")
            notes.append(f"default gemm_ceiling.{key} = {_fmt(default.gemm_ceiling[key])} ({dname})")
    skip = {"name", "gpu_key", "gemm_ceiling", "provenance", "carried_from", "gemm_shapes", "rates",
            "self_check"}
    for f in fields(Profile):
        if f.name in skip or f.name in values:
            continue
        value = getattr(default, f.name)
        values[f.name] = value
        from_default.append(f.name)
        notes.append(f"default {f.name} = {_fmt(value)} ({dname})")

    for entry, used in zip(provenance, used_per_file):
        entry["records_used"] = used
    provenance.append({"source": default.name, "kind": "published", "fields": from_default,
                       "references": [p.get("source") for p in default.provenance if p.get("source")],
                       **({"carried_from": default.carried_from} if default.carried_from else {})})
    best: dict[tuple, tuple] = {}
    for shape in shapes:                       # the best timing of each shape
        if shape[:4] not in best or shape[4] > best[shape[:4]][4]:
            best[shape[:4]] = shape
    if best:
        notes.append(f"measured gemm_shapes: {len(best)} shape(s) anchor the GEMM model near them")
    profile = Profile(name=f"measured-{spec.key}", gpu_key=spec.key, provenance=tuple(provenance),
                      carried_from=None, gemm_shapes=tuple(sorted(best.values())),
                      rates=rates.to_dict(), **values)
    notes.extend(_rates_notes(rates))
    return profile, notes


def _rates_notes(rates: MeasuredRates) -> list[str]:
    shapes = sum(len(v) for v in rates.gemm.values())
    out = [f"measured rates: {shapes} GEMM shape(s) ({', '.join(sorted(rates.gemm)) or 'none'}), "
           f"{len(rates.membw)} copy size(s), {len(rates.attention)} fused attention case(s), "
           f"{sum(len(v) for v in rates.collectives.values())} collective size(s), op overhead "
           + (f"{rates.op_s * 1e6:.3g} µs (autograd)" if rates.op_s else "not measured")
           + (f", {rates.op_eager_s * 1e6:.3g} µs (eager)" if rates.op_eager_s else "")]
    return out


def _rates_only(runs: list[tuple[Path, Run]], device: dict, rates: MeasuredRates) -> tuple[Profile, list[str]]:
    """A device without datasheet figures: its measured rates alone, for its own steps."""
    name = device.get("name") or "unknown device"
    what = "a CPU" if device.get("type") == "cpu" else f"{name}, not in the hardware table,"
    if not rates.gemm and not rates.membw:
        raise GpubenchError(f"{', '.join(str(p) for p, _ in runs)}: no ok matmul or membw record: "
                            f"nothing to calibrate {name} from")
    notes = [f"device: {name} ({device.get('type')}); {len(runs)} result file(s)",
             f"rates only: {what} has no datasheet peak, so the profile holds measured rates (no "
             f"fractions of peak, no MFU); it predicts this device's own steps (gpubench selfcheck) "
             f"and cannot be carried to a GPU"]
    notes += [f"file: {p}: suite {run.suite}, run {run.run_id}, started {run.started_at}" for p, run in runs]
    notes.extend(_rates_notes(rates))
    slug = re.sub(r"[^a-z0-9]+", "-", f"{device.get('type')}-{name}".lower()).strip("-")
    provenance = tuple({"file": str(p), "run_id": run.run_id, "device": name, "started_at": run.started_at,
                        "suite": run.suite, "kind": "measured"} for p, run in runs)
    profile = Profile(name=f"measured-{slug}", gpu_key="", gemm_ceiling={}, provenance=provenance,
                      rates=rates.to_dict())
    return profile, notes


__all__ = ["build_profile", "LARGE_GEMM", "LARGE_BUFFER", "BWD_FLOP_RATIO"]
