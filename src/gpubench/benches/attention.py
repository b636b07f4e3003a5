"""Scaled dot-product attention: gpubench's Triton kernel against PyTorch SDPA's backends.

One benchmark, ``attention``, with the implementation as a parameter: ``triton``
(``gpubench.kernels.attention.flash_attention``) or ``sdpa-flash``, ``sdpa-cudnn``,
``sdpa-efficient``, ``sdpa-math`` (``F.scaled_dot_product_attention`` forced onto
one backend with ``torch.nn.attention.sdpa_kernel``). Tensors are (batch, heads,
seq, head_dim), softmax scale 1/√head_dim, no dropout, no GQA.

FLOPs follow the FlashAttention papers (and ``estimate``'s performance model):
the forward is two N×N×D products per (batch, head), 4·B·H·N²·D, half of it when
causal (the masked half is not work); the backward is 2.5× the forward (five
products instead of two), so a ``fwd+bwd`` iteration is 3.5× the forward.

A backend that cannot run a case (flash needs CUDA and fp16/bf16, cuDNN a recent
GPU and torch, …) is found by trying it once on the real inputs: SDPA raises a
RuntimeError for a forced backend that cannot serve the call and says why in
warnings; that becomes ``skipped`` with the reason. On a CPU the Triton kernel
is always skipped: only Triton's interpreter runs there, and its speed means
nothing.

Before timing, one call on fresh random data is checked against float64: the
whole output and gradients must be finite, and for a few (batch, head) slices
(attention is independent per slice) out, and for ``fwd+bwd`` dq, dk, dv given a
random dO, are compared by ‖x − ref‖/‖ref‖ with a float64 autograd reference.
The reference goes through the query rows in chunks, so it never holds an N×N
matrix whole, even at 16k.

The ratio to the best SDPA backend needs several records: ``compare`` builds it
from a run's records (``report`` prints it).
"""

from __future__ import annotations

import contextlib
import math
import warnings
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

from gpubench.benches.common import fresh_generator, rate_metrics, rel_err
from gpubench.device import DeviceInfo
from gpubench.dtypes import get_precision
from gpubench.errors import CheckFailed, GpubenchError, SkipCase
from gpubench.registry import Benchmark, Workload, register_benchmark
from gpubench.results import Record

IMPLS = ("triton", "sdpa-flash", "sdpa-cudnn", "sdpa-efficient", "sdpa-math")
SDPA_BACKENDS = {"sdpa-flash": "FLASH_ATTENTION", "sdpa-cudnn": "CUDNN_ATTENTION",
                 "sdpa-efficient": "EFFICIENT_ATTENTION", "sdpa-math": "MATH"}
DIRECTIONS = ("fwd", "fwd+bwd")
DTYPES = ("bf16", "fp16", "fp32")
PARAMS = ("impl", "direction", "dtype", "batch", "heads", "seq", "head_dim", "causal")

# Defaults (for `gpubench run --benchmark attention`): a 2048-wide model, 16k tokens per batch.
TOKENS = 16384              # batch × seq
WIDTH = 2048                # heads × head_dim

BWD_FLOP_RATIO = 2.5        # backward FLOPs ÷ forward FLOPs (FlashAttention's convention)

# ‖x − ref‖/‖ref‖ allowed, for out and each gradient alike. The output rounding
# dominates (bf16 ≈ 2.4e-3, fp16 ≈ 3e-4 for a flash-style kernel that rounds P and
# dS to the input precision), as in a matmul, so these are the matmul's tolerances.
# fp32 is computed in IEEE fp32 by every implementation here (no TF32): ≈ 1e-6.
TOLERANCE = {"bf16": 1e-2, "fp16": 5e-3, "fp32": 1e-4}

CHECK_SLICES = 4            # (batch, head) slices compared with float64, at most
CHECK_SCORES = 1 << 28      # ... and at most this many N² scores in all: one slice at 16k
REF_CHUNK = 1 << 24         # float64 scores the reference holds at once (128 MiB)

# Tests set this to run the Triton case through the interpreter on a CPU: the whole path
# (probe, check, timing, record) then runs everywhere, though its times mean nothing.
INTERPRETER_ON_CPU = False
TRITON_ON_CPU = ("the Triton kernel runs on a CPU only in Triton's interpreter "
                 "(TRITON_INTERPRET=1), whose speed means nothing: not timed")


def attention_flops(batch: int, heads: int, seq: int, head_dim: int, causal: bool,
                    direction: str) -> float:
    fwd = 4.0 * batch * heads * seq * seq * head_dim * (0.5 if causal else 1.0)
    return fwd * (1.0 + BWD_FLOP_RATIO) if direction == "fwd+bwd" else fwd


def attention_bytes(batch: int, heads: int, seq: int, head_dim: int, direction: str,
                    element_bytes: int) -> float:
    """The least traffic an iteration can have: the forward reads q, k, v and writes o;
    the backward reads q, k, v, o, dO and writes dq, dk, dv (the per-row softmax
    statistics, B·H·N floats, are left out)."""
    tensors = 12 if direction == "fwd+bwd" else 4
    return float(tensors * batch * heads * seq * head_dim * element_bytes)


def _whole(name: str, value: Any) -> int:
    # int(str(x)) takes 64 and "64" but not 64.5, "64.0" or True.
    try:
        n = int(str(value).strip())
    except ValueError:
        raise GpubenchError(f"attention {name}={value!r} is not a whole number") from None
    if n <= 0:
        raise GpubenchError(f"attention {name}={n} must be positive")
    return n


def _flag(name: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes"):
        return True
    if text in ("0", "false", "no"):
        return False
    raise GpubenchError(f"attention {name}={value!r} is not true or false")


def _choice(name: str, value: Any, allowed: tuple[str, ...]) -> str:
    if value not in allowed:
        raise GpubenchError(f"attention {name}={value!r}: use one of {', '.join(allowed)}")
    return value


@register_benchmark
class Attention(Benchmark):
    name = "attention"
    description = ("scaled dot-product attention, fwd and fwd+bwd: the Triton kernel against "
                   "each SDPA backend, TFLOP/s and % of dense peak")

    def normalize(self, params: Mapping[str, Any]) -> dict[str, Any]:
        unknown = sorted(set(params) - set(PARAMS))
        if unknown:
            raise GpubenchError(f"attention has no parameter {unknown[0]!r} (known: {', '.join(PARAMS)})")
        p = dict(params)
        dtype = get_precision(str(p.get("dtype", "bf16"))).name
        head_dim = _whole("head_dim", p.get("head_dim", 128))
        seq = _whole("seq", p.get("seq", 4096))
        return {
            "impl": _choice("impl", p.get("impl", "triton"), IMPLS),
            "direction": _choice("direction", p.get("direction", "fwd"), DIRECTIONS),
            "dtype": _choice("dtype", dtype, DTYPES),
            "batch": _whole("batch", p.get("batch", max(1, TOKENS // seq))),
            "heads": _whole("heads", p.get("heads", max(1, WIDTH // head_dim))),
            "seq": seq,
            "head_dim": head_dim,
            "causal": _flag("causal", p.get("causal", False)),
        }

    def memory_bytes(self, params: Mapping[str, Any]) -> int:
        b, h, n, d = params["batch"], params["heads"], params["seq"], params["head_dim"]
        elem = get_precision(params["dtype"]).bytes_per_element
        bwd = params["direction"] == "fwd+bwd"
        t = b * h * n * d
        need = (8 if bwd else 4) * t * elem          # q, k, v, o (+ dO, dq, dk, dv)
        need += b * h * n * 4                         # softmax statistics
        if bwd:
            need += t * 4                             # fused backwards accumulate dq in fp32
        if params["impl"] == "sdpa-math":
            # The math path materialises fp32 scores and probabilities (half inputs are
            # upcast), and its backward two more N² tensors: this is what runs out first.
            need += (4 if bwd else 3) * b * h * n * n * 4 + 3 * t * 4
        # The float64 reference of the check: one chunk of scores and its gradients.
        need += 4 * REF_CHUNK * 8
        return int(need)

    def label(self, params: Mapping[str, Any]) -> str:
        p = params
        return (f"{p['impl']} {p['direction']} {p['dtype']} b{p['batch']} h{p['heads']} "
                f"n{p['seq']} d{p['head_dim']}" + (" causal" if p["causal"] else ""))

    def prepare(self, params: Mapping[str, Any], device: DeviceInfo) -> Workload:
        reason = device.unsupported_reason(params["dtype"])
        if reason:
            raise SkipCase(reason)
        impl, causal = params["impl"], params["causal"]
        b, h, n, d = params["batch"], params["heads"], params["seq"], params["head_dim"]
        attend, context = _implementation(impl, device)
        prec = get_precision(params["dtype"])
        grads = params["direction"] == "fwd+bwd"
        gen, seed = fresh_generator(device)
        dev = device.torch_device
        q, k, v = (torch.randn(b, h, n, d, generator=gen, device=dev, dtype=prec.torch_dtype)
                   .requires_grad_(grads) for _ in range(3))
        dout = torch.randn(b, h, n, d, generator=gen, device=dev, dtype=prec.torch_dtype) if grads else None
        scale = 1.0 / math.sqrt(d)

        if grads:
            def fn():
                q.grad = k.grad = v.grad = None      # a fresh backward, not an accumulation
                out = attend(q, k, v, causal, scale)
                out.backward(dout)
                return out
        else:
            def fn():
                return attend(q, k, v, causal, scale)

        _probe(fn, impl, device, context)
        q.grad = k.grad = v.grad = None

        def check():
            return _check(fn, q, k, v, dout, causal, scale, TOLERANCE[prec.name], gen)

        return Workload(
            fn=fn, flops=attention_flops(b, h, n, d, causal, params["direction"]),
            bytes_moved=attention_bytes(b, h, n, d, params["direction"], prec.bytes_per_element),
            check=check, flush_l2=True, context=context,
            info={"seed": seed, "layout": "(batch, heads, seq, head_dim)", "sm_scale": scale,
                  "flops_convention": "fwd 4·B·H·N²·D (×0.5 causal); fwd+bwd 3.5× fwd"},
        )

    def metrics(self, params, work: Workload, seconds: float, device: DeviceInfo,
                telemetry, aux_s) -> dict[str, Any]:
        m = rate_metrics(work.flops, work.bytes_moved, seconds,
                         device.peak_tflops(params["dtype"]), None, telemetry)
        m.pop("gbps", None)     # bytes/s of a compute-bound kernel would only mislead
        return m


def _implementation(impl: str, device: DeviceInfo) -> tuple[Callable, Callable[[], Any]]:
    """(attend(q, k, v, causal, scale), context factory), or SkipCase."""
    if impl == "triton":
        if not device.is_cuda and not INTERPRETER_ON_CPU:
            raise SkipCase(TRITON_ON_CPU)
        try:
            # Imported here: the kernel package needs Triton, which a CPU-only install may lack.
            from gpubench.kernels.attention import flash_attention
        except ImportError as e:
            raise SkipCase(f"the Triton attention kernel cannot be imported ({e})") from None

        def triton_attend(q, k, v, causal, scale):
            return flash_attention(q, k, v, causal=causal, sm_scale=scale)

        return triton_attend, contextlib.nullcontext

    backend = getattr(SDPBackend, SDPA_BACKENDS[impl], None)
    if backend is None:
        raise SkipCase(f"torch {torch.__version__} has no SDPBackend.{SDPA_BACKENDS[impl]}")

    def sdpa_attend(q, k, v, causal, scale):
        # Looked up at each call, so a test can replace it with a wrong implementation.
        return F.scaled_dot_product_attention(q, k, v, is_causal=causal, scale=scale)

    return sdpa_attend, lambda: sdpa_kernel(backend)


def _probe(fn: Callable[[], Any], impl: str, device: DeviceInfo, context: Callable[[], Any]) -> None:
    """Run once; a backend that cannot take the case becomes SkipCase with SDPA's reasons."""
    oom = getattr(torch, "OutOfMemoryError", torch.cuda.OutOfMemoryError)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            with context():
                fn()
        except ValueError as e:
            if impl != "triton":
                raise
            raise SkipCase(f"the Triton kernel does not take this case: {_first_line(e)}") from None
        except RuntimeError as e:
            # Out of memory is the runner's to report; a CUDA fault is a bug, not a
            # backend declining the case.
            if impl == "triton" or isinstance(e, oom) or "CUDA error" in str(e) \
                    or isinstance(e, getattr(torch, "AcceleratorError", ())):
                raise
            # SDPA gives its reasons in warnings ("Flash attention requires …").
            said = dict.fromkeys(" ".join(str(w.message).split()) for w in caught)
            why = " ".join(said) or _first_line(e)
            raise SkipCase(f"{impl} cannot run this case on {device.label}: {why[:400]}") from None


def _first_line(e: BaseException) -> str:
    lines = str(e).strip().splitlines()
    return lines[0] if lines else type(e).__name__


def _poison_allocator(like: torch.Tensor, blocks: int = 8) -> bool:
    """Leave NaN in the blocks the next outputs will get, where that can be arranged.

    SDPA and the Triton kernel allocate their outputs (there is no out=), so NaN cannot
    be written there first. On CUDA the caching allocator hands a freed block to the
    next request of its size: fill and free a few blocks of the outputs' size, and an
    element a kernel never writes reads as NaN. A CPU gets fresh pages from the OS,
    so there it is not possible.
    """
    if like.device.type != "cuda":
        return False
    filled = [torch.full_like(like, float("nan"), requires_grad=False) for _ in range(blocks)]
    del filled
    return True


def reference(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, causal: bool, scale: float,
              dout: torch.Tensor | None = None) -> list[torch.Tensor]:
    """float64 attention of (..., N, D) tensors: [out], or [out, dq, dk, dv] given dO.

    Written out (matmul, mask, softmax, matmul) rather than through SDPA, so that it
    shares nothing with what it checks; gradients come from float64 autograd. Query
    rows go in chunks (dk and dv accumulate over them), so the N² scores never exist
    whole; the causal mask of a chunk starts at its first row.
    """
    grads = dout is not None
    k64 = k.detach().double().requires_grad_(grads)
    v64 = v.detach().double().requires_grad_(grads)
    n_q, n_k = q.shape[-2], k.shape[-2]
    lead = max(1, q[..., 0, 0].numel())
    rows = max(1, REF_CHUNK // (lead * n_k))
    cols = torch.arange(n_k, device=q.device)
    outs, dqs = [], []
    for r0 in range(0, n_q, rows):
        r1 = min(r0 + rows, n_q)
        qc = q[..., r0:r1, :].detach().double().requires_grad_(grads)
        s = (qc @ k64.transpose(-1, -2)) * scale
        if causal:
            above = torch.arange(r0, r1, device=q.device).unsqueeze(1) < cols.unsqueeze(0)
            s = s.masked_fill(above, float("-inf"))
        o = torch.softmax(s, dim=-1) @ v64
        if grads:
            o.backward(dout[..., r0:r1, :].double())
            dqs.append(qc.grad)
        outs.append(o.detach())
    if not grads:
        return [torch.cat(outs, dim=-2)]
    return [torch.cat(outs, dim=-2), torch.cat(dqs, dim=-2), k64.grad, v64.grad]


def _check(fn: Callable[[], torch.Tensor], q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
           dout: torch.Tensor | None, causal: bool, scale: float, tol: float,
           gen: torch.Generator) -> dict[str, Any]:
    """One call, then the whole output (and gradients) finite, and sampled slices right."""
    b, h, n, _ = q.shape
    q.grad = k.grad = v.grad = None
    poisoned = _poison_allocator(q)
    out = fn()
    got = {"out": out}
    if dout is not None:
        got.update(dq=q.grad, dk=k.grad, dv=v.grad)
    for name, t in got.items():
        if t is None:
            raise CheckFailed(f"{name} was not computed")
        if tuple(t.shape) != tuple(q.shape):
            raise CheckFailed(f"{name} has shape {tuple(t.shape)}, expected {tuple(q.shape)}")
        if not bool(torch.isfinite(t).all()):
            raise CheckFailed(f"{name} has NaN/Inf: some elements were not written or overflowed")
    count = max(1, min(b * h, CHECK_SLICES, CHECK_SCORES // (n * n)))
    picked = torch.randperm(b * h, generator=gen, device=q.device)[:count].tolist()
    slices = [(i // h, i % h) for i in picked]

    def take(t: torch.Tensor) -> torch.Tensor:
        return torch.stack([t[i, j] for i, j in slices]).detach()

    refs = reference(take(q), take(k), take(v), causal, scale,
                     take(dout) if dout is not None else None)
    errs = {name: rel_err(take(t), ref) for (name, t), ref in zip(got.items(), refs)}
    worst = max(errs, key=lambda name: errs[name])
    block = {"reference": "float64 (gradients by autograd), on sampled (batch, head) slices",
             "slices": [list(s) for s in slices], "rel_err": errs[worst],
             **{f"{name}_rel_err": e for name, e in errs.items()},
             "tolerance": tol, "nan_poisoned": poisoned}
    if not errs[worst] <= tol:
        raise CheckFailed(f"{worst} rel err {errs[worst]:.2e} > tolerance {tol:.0e} against float64")
    return block


# ---- across records: the Triton kernel against the best SDPA backend ----

GROUP_BY = ("dtype", "batch", "heads", "seq", "head_dim", "causal", "direction")


def compare(records: Iterable[Record]) -> list[dict[str, Any]]:
    """One row per case (params apart from impl) with at least one ok attention record.

    Each row has the case's params, ``triton_tflops``, ``sdpa_tflops`` ({impl: TFLOP/s}
    for the SDPA backends measured), ``best_sdpa`` (the fastest of those) and its
    ``best_sdpa_tflops``, and the ratios ``triton_vs_best`` and ``triton_vs_cudnn``
    (None where either side is missing). Several records of one impl (several runs):
    the fastest counts.
    """
    groups: dict[tuple, dict[str, float]] = {}
    for r in records:
        if r.benchmark != "attention" or r.status != "ok":
            continue
        tflops = (r.metrics or {}).get("tflops")
        if not isinstance(tflops, (int, float)) or tflops <= 0:
            continue
        key = tuple(r.params.get(k) for k in GROUP_BY)
        by_impl = groups.setdefault(key, {})
        impl = r.params.get("impl")
        by_impl[impl] = max(tflops, by_impl.get(impl, 0.0))
    rows = []
    for key, by_impl in groups.items():
        sdpa = {impl: t for impl, t in by_impl.items() if str(impl).startswith("sdpa-")}
        best = max(sdpa, key=lambda i: sdpa[i]) if sdpa else None
        triton = by_impl.get("triton")
        cudnn = sdpa.get("sdpa-cudnn")
        rows.append({
            **dict(zip(GROUP_BY, key)),
            "triton_tflops": triton,
            "sdpa_tflops": sdpa,
            "best_sdpa": best,
            "best_sdpa_tflops": sdpa[best] if best else None,
            "triton_vs_best": triton / sdpa[best] if triton and best else None,
            "triton_vs_cudnn": triton / cudnn if triton and cudnn else None,
        })
    return rows
