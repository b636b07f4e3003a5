"""The precisions gpubench measures, and the facts that go with each.

One table so that the matmul benchmark, the peak lookup and the CLI's ``--dtype``
agree on names. ``peak_key`` names the column of the hardware table a precision
is measured against; ``min_capability`` is the CUDA compute capability that has
tensor-core support for it.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch

from gpubench.errors import UnknownNameError


@dataclass(frozen=True)
class Precision:
    name: str
    torch_dtype: torch.dtype
    peak_key: str
    min_capability: tuple[int, int] | None
    bytes_per_element: int
    # ‖out − ref‖/‖ref‖ allowed for a matmul against a float64 reference computed
    # from the same (already rounded) operands, so only accumulation and output
    # rounding count: fp32 ≈ 1e-6, tf32 ≈ 3e-4, fp16 ≈ 3e-4, bf16 and fp8 (bf16
    # output) ≈ 2e-3. The tolerances leave a few times that for long K.
    matmul_tolerance: float
    doc: str


PRECISIONS: dict[str, Precision] = {
    p.name: p
    for p in (
        Precision("fp32", torch.float32, "fp32", None, 4, 1e-4,
                  "IEEE float32 on the CUDA cores (TF32 disabled)"),
        Precision("tf32", torch.float32, "tf32", (8, 0), 4, 5e-3,
                  "float32 storage, TF32 tensor-core math (10-bit mantissa)"),
        Precision("bf16", torch.bfloat16, "bf16", (8, 0), 2, 1e-2,
                  "bfloat16 operands and output, float32 accumulation"),
        Precision("fp16", torch.float16, "fp16", (7, 0), 2, 5e-3,
                  "float16 operands and output, float32 accumulation"),
        Precision("fp8_e4m3", torch.float8_e4m3fn, "fp8", (8, 9), 1,
                  1e-2, "float8 e4m3 operands with float32 scales, bf16 output"),
    )
}


# Other spellings of a precision: ``gpubench estimate --precision fp8`` names the FP8
# format the same way, so a command line copied between the two must mean one thing.
ALIASES: dict[str, str] = {"fp8": "fp8_e4m3"}


def get_precision(name: str) -> Precision:
    key = name.strip().lower()
    try:
        return PRECISIONS[ALIASES.get(key, key)]
    except KeyError:
        raise UnknownNameError("dtype", name, [*PRECISIONS, *ALIASES]) from None


@contextlib.contextmanager
def float32_matmul_precision(mode: str):
    # "highest" = IEEE fp32, "high" = TF32 allowed: a process-wide switch, so restore it.
    previous = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision(mode)
    try:
        yield
    finally:
        torch.set_float32_matmul_precision(previous)


def float32_matmul_mode(precision: str) -> str:
    """The float32 matmul mode a precision runs under: TF32 allowed only for tf32."""
    return "high" if precision == "tf32" else "highest"
