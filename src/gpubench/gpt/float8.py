"""FP8 training linears: the three GEMMs of an ``nn.Linear`` in float8 via ``torch._scaled_mm``.

The recipe is torchao's default "tensorwise" one (``torchao.float8``, as used by
torchtitan):

* dynamic scaling, one scale per tensor, recomputed every call from the tensor's own
  amax: ``scale = amax(|t|) / FP8_MAX`` so the largest element lands on the largest
  finite FP8 value. No amax history, no delayed scaling: nothing to calibrate.
* e4m3 (3 mantissa bits, max 448) for weights and activations, whose range is
  modest and whose precision matters; e5m2 (2 mantissa bits, max 57344) for the
  output gradients, whose range is wide and whose individual precision matters less.
* fast (reduced-precision) accumulation in the forward GEMM only; the two backward
  GEMMs accumulate in full fp32 because gradients sum many small contributions.
* the weight stays an fp32 master parameter; only per-call FP8 copies exist, and the
  autograd graph keeps those FP8 copies (1 byte/element) instead of the inputs.

The LM head is skipped by default: its output is the logits, whose small differences
decide the softmax and the loss, and whose vocabulary-wide GEMM is a small share of a
deep model's FLOPs. torchtitan likewise leaves the output layer out of FP8.

Where ``torchao`` is installed and works, ``convert_to_float8`` uses it (its kernels
fuse the casts); otherwise the small implementation here, which does the same math.
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F
from torch import nn

E4M3 = torch.float8_e4m3fn      # weights and activations
E5M2 = torch.float8_e5m2        # gradients (wider range)
ALIGN = 16                      # _scaled_mm needs every GEMM dimension a multiple of 16
_SCALED_MM_OUT = (torch.float32, torch.bfloat16, torch.float16)


def _quantize(t: torch.Tensor, fp8: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """Tensor-wise dynamic scaling. The scale stays a device tensor: no .item(), no host sync."""
    fmax = torch.finfo(fp8).max
    scale = t.abs().amax().float().clamp(min=1e-12) / fmax
    q = (t.float() / scale).clamp(-fmax, fmax).to(fp8)
    return q, scale


def _col_major(t: torch.Tensor) -> torch.Tensor:
    # Same shape, column-major strides: what _scaled_mm requires of its second operand.
    return t.t().contiguous().t()


class _Float8MM(torch.autograd.Function):
    """y = x @ wᵀ (+ b) with x (M, K), w (N, K); all three GEMMs in FP8."""

    @staticmethod
    def forward(ctx, x, weight, bias, out_dtype):
        with torch.autocast(x.device.type, enabled=False):
            x8, sx = _quantize(x, E4M3)
            w8, sw = _quantize(weight, E4M3)
            # w8 is (N, K) row-major, so w8.t() is (K, N) column-major, as _scaled_mm wants.
            y = torch._scaled_mm(x8, w8.t(), scale_a=sx, scale_b=sw,
                                 out_dtype=out_dtype, use_fast_accum=True)
            if bias is not None:
                y = y + bias.to(out_dtype)
        # Keep the FP8 copies, not x and w: part of FP8's activation-memory saving.
        ctx.save_for_backward(x8, sx, w8, sw)
        ctx.x_dtype, ctx.w_dtype = x.dtype, weight.dtype
        ctx.has_bias = bias is not None
        return y

    @staticmethod
    def backward(ctx, grad_y):
        x8, sx, w8, sw = ctx.saved_tensors
        dx = dw = db = None
        with torch.autocast(grad_y.device.type, enabled=False):
            # e5m2 as operand A with e4m3 as operand B works in _scaled_mm on the CPU
            # (torch 2.13, checked) and in cuBLASLt on sm89/sm90; only e5m2 x e5m2 is
            # refused by cuBLAS, and that pairing is never formed here.
            g8, sg = _quantize(grad_y, E5M2)
            if ctx.needs_input_grad[0]:
                # dX = g @ W: (M, N) @ (N, K).
                dx = torch._scaled_mm(g8, _col_major(w8), scale_a=sg, scale_b=sw,
                                      out_dtype=ctx.x_dtype, use_fast_accum=False)
            if ctx.needs_input_grad[1]:
                # dW = gᵀ @ X: (N, M) @ (M, K), in fp32 for the fp32 master weight.
                dw = torch._scaled_mm(g8.t().contiguous(), _col_major(x8), scale_a=sg, scale_b=sx,
                                      out_dtype=torch.float32, use_fast_accum=False).to(ctx.w_dtype)
            if ctx.has_bias and ctx.needs_input_grad[2]:
                db = grad_y.float().sum(0)
        return dx, dw, db, None


class Float8Linear(nn.Linear):
    """Drop-in nn.Linear whose three GEMMs (forward, input-grad, weight-grad) run in FP8 via
    torch._scaled_mm with dynamic tensor-wise scaling. Same parameters ('weight', optional
    'bias') so state_dicts interchange with nn.Linear.

    Calls that cannot use FP8 (rows, in_features or out_features not a multiple of 16, no
    FP8 _scaled_mm on the device, an output dtype _scaled_mm cannot write) run F.linear in the output dtype instead and
    are counted in ``fallback_calls``, so a benchmark can report them rather than crash.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fallback_calls = 0

    @classmethod
    def from_linear(cls, lin: nn.Linear) -> Float8Linear:
        # Build on the meta device so no throwaway weight is allocated, then adopt lin's
        # Parameter objects: optimizers and tied references keep pointing at them.
        with torch.device("meta"):
            new = cls(lin.in_features, lin.out_features, bias=lin.bias is not None)
        new.weight = lin.weight
        new.bias = lin.bias
        new.train(lin.training)
        return new

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dev = x.device.type
        out_dtype = torch.get_autocast_dtype(dev) if torch.is_autocast_enabled(dev) else x.dtype
        x2 = x.reshape(-1, self.in_features)
        if (x2.shape[0] % ALIGN or not eligible(self) or out_dtype not in _SCALED_MM_OUT
                or float8_unsupported_reason(x.device) is not None):
            # Under torch.compile a Python counter would be a guarded constant and force a
            # recompile on every change; the count is for eager benchmarks.
            if not torch.compiler.is_compiling():
                self.fallback_calls += 1
            with torch.autocast(dev, enabled=False):
                bias = None if self.bias is None else self.bias.to(out_dtype)
                return F.linear(x.to(out_dtype), self.weight.to(out_dtype), bias)
        y = _Float8MM.apply(x2, self.weight, self.bias, out_dtype)
        return y.reshape(*x.shape[:-1], self.out_features)


def eligible(lin: nn.Linear) -> bool:
    """Whether _scaled_mm can take this layer's K and N (the token count M is checked per call)."""
    return lin.in_features % ALIGN == 0 and lin.out_features % ALIGN == 0


_UNSUPPORTED: dict[tuple[str, int | None], str | None] = {}


def float8_unsupported_reason(device: torch.device | str) -> str | None:
    """None if FP8 _scaled_mm works on ``device``, else a one-line reason. Cached per device."""
    device = torch.device(device)
    key = (device.type, device.index)
    if key not in _UNSUPPORTED:
        _UNSUPPORTED[key] = _probe(device)
    return _UNSUPPORTED[key]


def _probe(device: torch.device) -> str | None:
    if device.type == "cuda":
        if torch.version.hip:
            return "FP8 on ROCm uses the e4m3fnuz format, which these linears do not use"
        cap = torch.cuda.get_device_capability(device)
        if cap < (8, 9):
            return f"FP8 _scaled_mm needs compute capability 8.9+; this GPU is sm{cap[0]}{cap[1]}"
        return None
    if device.type != "cpu":
        return f"FP8 linears are not supported on {device.type}"
    # CPU support depends on the torch build: try the two operand pairings used here.
    try:
        a = torch.ones(ALIGN, ALIGN)
        one = torch.tensor(1.0)
        torch._scaled_mm(a.to(E4M3), a.to(E4M3).t(), scale_a=one, scale_b=one, out_dtype=torch.bfloat16)
        torch._scaled_mm(a.to(E5M2), a.to(E4M3).t(), scale_a=one, scale_b=one, out_dtype=torch.float32)
        return None
    except Exception as e:  # noqa: BLE001 - any failure means "no FP8 here"
        return f"torch {torch.__version__} has no float8 _scaled_mm on the CPU ({type(e).__name__})"


@functools.lru_cache(maxsize=1)
def float8_backend() -> str:
    """'torchao' if torchao.float8 imports and converts a tiny Linear that runs forward and
    backward here (on the GPU if there is one), else 'gpubench'."""
    try:
        from torchao.float8 import convert_to_float8_training

        device = "cuda" if torch.cuda.is_available() else "cpu"
        m = nn.Sequential(nn.Linear(32, 32)).to(device)
        convert_to_float8_training(m)
        m(torch.randn(32, 32, device=device)).sum().backward()
        return "torchao"
    except Exception:  # noqa: BLE001 - missing, too old, or unsupported here: all mean "ours"
        return "gpubench"


def _skip_match(name: str, skip) -> bool:
    # A whole dotted component must match: "lm_head" skips "lm_head" and "model.lm_head",
    # not "my_lm_head".
    return any(name == s or name.endswith("." + s) for s in skip)


def convert_to_float8(model: nn.Module, skip=("lm_head",), backend: str | None = None) -> dict:
    """Swap every eligible nn.Linear of ``model`` (in place) for an FP8 one.

    Returns {"backend", "converted": [qualified names], "skipped": ["name (reason)", ...]}.
    """
    backend = backend or float8_backend()
    if backend not in ("torchao", "gpubench"):
        raise ValueError(f"unknown FP8 backend {backend!r}: use 'torchao' or 'gpubench'")
    converted, skipped = [], []
    for name, mod in model.named_modules():
        if not isinstance(mod, nn.Linear):
            continue
        if not name:
            skipped.append("<root> (the model itself is a Linear: nothing to replace it in)")
        elif isinstance(mod, Float8Linear):
            skipped.append(f"{name} (already Float8Linear)")
        elif type(mod) is not nn.Linear:
            # A subclass may override forward; replacing it would silently drop that.
            skipped.append(f"{name} ({type(mod).__name__} is a subclass of nn.Linear)")
        elif _skip_match(name, skip):
            skipped.append(f"{name} (skip list)")
        elif mod.in_features % ALIGN:
            skipped.append(f"{name} (in {mod.in_features} not a multiple of {ALIGN})")
        elif mod.out_features % ALIGN:
            skipped.append(f"{name} (out {mod.out_features} not a multiple of {ALIGN})")
        else:
            converted.append(name)

    if backend == "torchao":
        from torchao.float8 import convert_to_float8_training

        chosen = set(converted)
        convert_to_float8_training(model, module_filter_fn=lambda mod, fqn: fqn in chosen)
    else:
        for name in converted:
            parent_name, _, attr = name.rpartition(".")
            parent = model.get_submodule(parent_name) if parent_name else model
            setattr(parent, attr, Float8Linear.from_linear(getattr(parent, attr)))
    return {"backend": backend, "converted": converted, "skipped": skipped}
