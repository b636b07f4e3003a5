"""Small pieces the benchmark definitions share."""

from __future__ import annotations

import secrets
from typing import Any, Mapping

import torch

from gpubench.device import DeviceInfo


def fresh_generator(device: DeviceInfo) -> tuple[torch.Generator, int]:
    """A generator with a new random seed, so every check sees data it has never seen."""
    seed = secrets.randbits(63)
    gen = torch.Generator(device=device.torch_device)
    gen.manual_seed(seed)
    return gen, seed


def rel_err(out: torch.Tensor, ref: torch.Tensor) -> float:
    out, ref = out.double(), ref.double()
    denom = ref.norm().item()
    if denom == 0.0:
        return float("inf")     # a zero reference means the inputs were degenerate
    return (out - ref).norm().item() / denom


def rate_metrics(work_flops: float | None, work_bytes: float | None, seconds: float,
                 peak_tflops: float | None, peak_gbps: float | None,
                 telemetry: Mapping[str, Any] | None) -> dict[str, Any]:
    """TFLOP/s, GB/s, % of peak and energy per unit of work for one iteration."""
    m: dict[str, Any] = {}
    power = (telemetry or {}).get("power_w_mean")
    if work_flops:
        tflops = work_flops / seconds / 1e12
        m["tflops"] = tflops
        m["peak_tflops"] = peak_tflops
        m["pct_of_peak"] = 100.0 * tflops / peak_tflops if peak_tflops else None
        # W / (TFLOP/s) = J per TFLOP: the energy cost of the work itself.
        m["energy_per_tflop_j"] = power / tflops if power else None
    if work_bytes:
        gbps = work_bytes / seconds / 1e9
        m["gbps"] = gbps
        if not work_flops:
            m["peak_gbps"] = peak_gbps
            m["pct_of_peak"] = 100.0 * gbps / peak_gbps if peak_gbps else None
    if work_flops and work_bytes:
        m["flop_per_byte"] = work_flops / work_bytes
    m["power_w"] = power
    return m
