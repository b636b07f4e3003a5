"""Dense matrix product C = A · Wᵀ in FP32, TF32, BF16, FP16 and FP8 (e4m3).

The layout is nn.Linear's: A is (m, k) activations, W is (n, k) weights, C is
(m, n). FLOPs per product are 2·m·n·k. A training step runs the other two layouts
too, and libraries can be slower at them (a CPU's fp16 path by several times):
``layout=nn`` is the input gradient's dY(m, k)·W(k, n), both row-major, and
``layout=tn`` the weight gradient's dYᵀ·X, A stored as its (k, m) transpose. The
default, ``nt``, is the forward's and is left out of the parameters (case ids stay
as they were). FP8 goes through ``torch._scaled_mm`` with
float32 scales, either one per tensor or one per row of A and per row of W
("row-wise"), bf16 output. The time to compute those scales and cast both
operands from bf16 is measured separately (``scaling_s``) because a training step
pays it too, and ``tflops_incl_scaling`` says what is left after paying it.

Before timing, a random sample of rows and columns of C is compared with a
float64 product of the very operands the kernel saw (for FP8, the dequantized
ones), so only the kernel's accumulation and output rounding count. The output
buffer is poisoned with NaN first, so an element the kernel never wrote fails.
"""

from __future__ import annotations

from typing import Any, Mapping

import torch

from gpubench.benches.common import fresh_generator, rate_metrics, rel_err
from gpubench.device import DeviceInfo
from gpubench.dtypes import float32_matmul_mode, float32_matmul_precision, get_precision
from gpubench.errors import CheckFailed, GpubenchError, SkipCase
from gpubench.registry import Benchmark, Workload, register_benchmark

FP8_MAX = 448.0             # largest finite float8_e4m3fn
SCALINGS = ("tensor", "row")
CHECK_SAMPLE = 128          # rows and columns of C compared with float64
LAYOUTS = ("nt", "nn", "tn")    # forward, input gradient, weight gradient of a linear layer


def quantize_fp8(x: torch.Tensor, rowwise: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Dynamic scaling: the largest |x| (per tensor or per row) maps to FP8_MAX."""
    amax = x.abs().amax(dim=1, keepdim=True) if rowwise else x.abs().amax()
    scale = amax.float().clamp(min=1e-12) / FP8_MAX
    q = (x.float() / scale).clamp(-FP8_MAX, FP8_MAX).to(torch.float8_e4m3fn)
    return q, scale


@register_benchmark
class Matmul(Benchmark):
    name = "matmul"
    user_params = frozenset({"dtype", "m", "n", "k", "scaling", "fast_accum", "layout"})
    description = "C = A·Wᵀ in fp32/tf32/bf16/fp16/fp8_e4m3: TFLOP/s and % of dense peak"

    def normalize(self, params: Mapping[str, Any]) -> dict[str, Any]:
        p = dict(params)
        p["dtype"] = get_precision(str(p.get("dtype", "bf16"))).name
        for dim in ("m", "n", "k"):
            if dim not in p:
                raise GpubenchError(f"matmul needs {dim}")
            try:
                p[dim] = int(p[dim])
            except (TypeError, ValueError):
                raise GpubenchError(f"matmul {dim}={p[dim]!r} is not a whole number") from None
            if p[dim] <= 0:
                raise GpubenchError(f"matmul {dim}={p[dim]} must be positive")
        if p["dtype"].startswith("fp8"):
            p.setdefault("scaling", "tensor")
            if p["scaling"] not in SCALINGS:
                raise GpubenchError(f"matmul scaling={p['scaling']!r}: use one of {', '.join(SCALINGS)}")
            p.setdefault("fast_accum", True)
        layout = str(p.pop("layout", "nt")).strip().lower()
        if layout not in LAYOUTS:
            raise GpubenchError(f"matmul layout={layout!r}: use one of {', '.join(LAYOUTS)}")
        if layout != "nt":
            if p["dtype"].startswith("fp8"):
                raise GpubenchError("matmul layout: FP8 _scaled_mm takes only A row-major and B "
                                    "column-major (nt); an FP8 step transposes its copies to fit")
            p["layout"] = layout
        return p

    def memory_bytes(self, params: Mapping[str, Any]) -> int:
        m, n, k = params["m"], params["n"], params["k"]
        prec = get_precision(params["dtype"])
        if prec.name.startswith("fp8"):
            # bf16 originals (kept for the scaling measurement), fp8 copies, bf16 output,
            # and the float32 temporary the quantizer makes of the larger operand.
            return (m * k + n * k) * 3 + m * n * 2 + max(m, n) * k * 4
        return (m * k + n * k + m * n) * prec.bytes_per_element

    def label(self, params: Mapping[str, Any]) -> str:
        shape = f"{params['m']}x{params['n']}x{params['k']}"
        extra = f" {params['scaling']}-scaled" if "scaling" in params else ""
        gemm = f" ({params['gemm']})" if params.get("gemm") else ""
        layout = f" {params['layout']}" if params.get("layout") else ""
        return f"{params['dtype']}{extra} {shape}{layout}{gemm}"

    def prepare(self, params: Mapping[str, Any], device: DeviceInfo) -> Workload:
        dtype = params["dtype"]
        reason = device.unsupported_reason(dtype)
        if reason:
            raise SkipCase(reason)
        if dtype.startswith("fp8"):
            return self._prepare_fp8(params, device)
        return self._prepare_dense(params, device)

    def _prepare_dense(self, params, device: DeviceInfo) -> Workload:
        m, n, k = params["m"], params["n"], params["k"]
        prec = get_precision(params["dtype"])
        gen, seed = fresh_generator(device)
        dev = device.torch_device
        layout = params.get("layout", "nt")
        # Stored as the layout says; a and w are always the logical A (m, k) and W (n, k).
        if layout == "tn":
            a = torch.randn(k, m, generator=gen, device=dev, dtype=prec.torch_dtype).t()
        else:
            a = torch.randn(m, k, generator=gen, device=dev, dtype=prec.torch_dtype)
        if layout == "nn":
            w = torch.randn(k, n, generator=gen, device=dev, dtype=prec.torch_dtype).t()
        else:
            w = torch.randn(n, k, generator=gen, device=dev, dtype=prec.torch_dtype)
        c = torch.empty(m, n, device=dev, dtype=prec.torch_dtype)
        wt = w.t()

        def fn():
            return torch.matmul(a, wt, out=c)

        mode = float32_matmul_mode(prec.name)

        def check():
            with float32_matmul_precision(mode):
                return _check(fn, c, a, w, None, None, prec.matmul_tolerance, gen)

        return Workload(
            fn=fn, flops=2.0 * m * n * k,
            bytes_moved=float((m * k + n * k + m * n) * prec.bytes_per_element),
            check=check, flush_l2=True,
            context=lambda: float32_matmul_precision(mode),
            info={"seed": seed, "layout": {"nt": "A(m,k) @ W(n,k)^T", "nn": "A(m,k) @ B(k,n)",
                                           "tn": "A(k,m)^T @ B(k,n)"}[layout]},
        )

    def _prepare_fp8(self, params, device: DeviceInfo) -> Workload:
        m, n, k = params["m"], params["n"], params["k"]
        rowwise = params["scaling"] == "row"
        if rowwise and device.is_cuda and device.capability < (9, 0):
            raise SkipCase("row-wise scaled FP8 matmul needs sm90+ in PyTorch")
        gen, seed = fresh_generator(device)
        dev = device.torch_device
        a_hp = torch.randn(m, k, generator=gen, device=dev, dtype=torch.bfloat16)
        w_hp = torch.randn(n, k, generator=gen, device=dev, dtype=torch.bfloat16)
        a8, sa = quantize_fp8(a_hp, rowwise)
        w8, sw = quantize_fp8(w_hp, rowwise)
        # _scaled_mm wants B column-major, and row-wise scales shaped (m,1) and (1,n).
        w8t, swt = w8.t(), (sw.t() if rowwise else sw)
        c = torch.empty(m, n, device=dev, dtype=torch.bfloat16)
        fast = bool(params.get("fast_accum", True))

        def fn():
            return torch._scaled_mm(a8, w8t, scale_a=sa, scale_b=swt, out_dtype=torch.bfloat16,
                                    use_fast_accum=fast, out=c)

        def scaling():
            quantize_fp8(a_hp, rowwise)
            quantize_fp8(w_hp, rowwise)

        def check():
            return _check(fn, c, a8, w8, sa, sw, get_precision("fp8_e4m3").matmul_tolerance, gen)

        # How far FP8 storage moved the operands: a property of the format, not the kernel.
        quant_err = max(rel_err(a8[:CHECK_SAMPLE].double() * sa[:CHECK_SAMPLE].double()
                                if rowwise else a8[:CHECK_SAMPLE].double() * sa.double(),
                                a_hp[:CHECK_SAMPLE]),
                        rel_err(w8[:CHECK_SAMPLE].double() * sw[:CHECK_SAMPLE].double()
                                if rowwise else w8[:CHECK_SAMPLE].double() * sw.double(),
                                w_hp[:CHECK_SAMPLE]))
        return Workload(
            fn=fn, flops=2.0 * m * n * k,
            bytes_moved=float(m * k + n * k + m * n * 2 + (m + n) * 4),
            check=check, flush_l2=True, aux={"scaling": scaling},
            info={"seed": seed, "layout": "A(m,k) @ W(n,k)^T", "quantization_rel_err": quant_err},
        )

    def metrics(self, params, work: Workload, seconds: float, device: DeviceInfo,
                telemetry, aux_s) -> dict[str, Any]:
        m = rate_metrics(work.flops, work.bytes_moved, seconds,
                         device.peak_tflops(params["dtype"]), None, telemetry)
        m.pop("gbps", None)     # bytes/s of a compute-bound kernel would only mislead
        if "scaling" in aux_s:
            m["scaling_s"] = aux_s["scaling"]
            m["tflops_incl_scaling"] = work.flops / (seconds + aux_s["scaling"]) / 1e12
        if "quantization_rel_err" in work.info:
            m["quantization_rel_err"] = work.info["quantization_rel_err"]
        return m


def _take_rows(t: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    # Gather float8 rows as bytes: byte indexing exists on every backend and torch
    # version, float8 index kernels do not.
    if t.element_size() == 1 and t.dtype.is_floating_point:
        return t.view(torch.uint8)[idx].view(t.dtype)
    return t[idx]


def _check(fn, c: torch.Tensor, a: torch.Tensor, w: torch.Tensor,
           sa: torch.Tensor | None, sw: torch.Tensor | None, tol: float,
           gen: torch.Generator) -> dict[str, Any]:
    """Run once into a NaN-poisoned C and compare a random sample with float64."""
    m, n = c.shape
    c.fill_(float("nan"))
    fn()
    if not bool(torch.isfinite(c).all()):
        raise CheckFailed("output has NaN/Inf: some elements were not written or overflowed")
    rows = torch.randperm(m, generator=gen, device=c.device)[:CHECK_SAMPLE]
    cols = torch.randperm(n, generator=gen, device=c.device)[:CHECK_SAMPLE]
    a_s, w_s = _take_rows(a, rows).double(), _take_rows(w, cols).double()
    if sa is not None:
        a_s = a_s * (sa[rows].double() if sa.dim() and sa.numel() > 1 else sa.double())
        w_s = w_s * (sw[cols].double() if sw.dim() and sw.numel() > 1 else sw.double())
    ref = a_s @ w_s.t()
    err = rel_err(c[rows][:, cols], ref)
    block = {"reference": "float64", "rel_err": err, "tolerance": tol,
             "sample": [int(rows.numel()), int(cols.numel())]}
    if not err <= tol:
        raise CheckFailed(f"rel err {err:.2e} > tolerance {tol:.0e} against float64")
    return block
