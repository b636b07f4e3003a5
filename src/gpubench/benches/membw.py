"""Device memory bandwidth: a device-to-device copy, counting bytes read and written.

This is the other ceiling of the roofline next to the matmul rate: an iteration
reads ``size_bytes`` and writes ``size_bytes``, so GB/s = 2·size / time (nccl-tests
and STREAM count the same way). The buffer must be far larger than the L2 (or the
CPU's last-level cache) or it measures the cache, so no flush is needed.

Smaller buffers are measured too (the self-check wants copy rates at the working sets
of small steps), but a buffer no larger than ``CACHE_FACTOR`` × the cache is served
from it at least in part: its record says ``served_from: cache`` and carries no % of the
DRAM datasheet bandwidth (an H200's 64 MiB copy is not a share of its HBM rate).
"""

from __future__ import annotations

from typing import Any, Mapping

import torch

from gpubench.benches.common import fresh_generator, rate_metrics
from gpubench.device import DeviceInfo
from gpubench.errors import CheckFailed, GpubenchError
from gpubench.registry import Benchmark, Workload, register_benchmark

CACHE_FACTOR = 2        # a buffer up to twice the cache (source and copy: 4×) is partly cached


@register_benchmark
class MemoryBandwidth(Benchmark):
    name = "membw"
    user_params = frozenset({"size_bytes", "op"})
    description = "device-to-device copy: GB/s counting bytes read and written, % of datasheet bandwidth"

    def normalize(self, params: Mapping[str, Any]) -> dict[str, Any]:
        p = dict(params)
        p.setdefault("op", "copy")
        if p["op"] != "copy":
            raise GpubenchError(f"membw op={p['op']!r}: only 'copy' is measured")
        try:
            p["size_bytes"] = int(p.get("size_bytes", 1 << 30))
        except (TypeError, ValueError):
            raise GpubenchError(f"membw size_bytes={p.get('size_bytes')!r} is not a whole number") from None
        if p["size_bytes"] < 4096:
            raise GpubenchError(f"membw size_bytes={p['size_bytes']} is too small to mean anything")
        return p

    def memory_bytes(self, params: Mapping[str, Any]) -> int:
        return 2 * params["size_bytes"]

    def label(self, params: Mapping[str, Any]) -> str:
        from gpubench.units import format_bytes

        return f"{params['op']} {format_bytes(params['size_bytes'])}"

    def prepare(self, params: Mapping[str, Any], device: DeviceInfo) -> Workload:
        n = params["size_bytes"] // 4
        gen, seed = fresh_generator(device)
        src = torch.randn(n, generator=gen, device=device.torch_device)
        dst = torch.empty_like(src)

        def fn():
            dst.copy_(src)

        def check():
            dst.fill_(float("nan"))
            fn()
            if not torch.equal(dst, src):
                raise CheckFailed("copy does not equal its source")
            return {"reference": "exact", "rel_err": 0.0, "tolerance": 0.0}

        return Workload(fn=fn, bytes_moved=2.0 * n * 4, check=check, flush_l2=False,
                        info={"seed": seed})

    def metrics(self, params, work: Workload, seconds: float, device: DeviceInfo,
                telemetry, aux_s) -> dict[str, Any]:
        cached = bool(device.cache_bytes) and params["size_bytes"] <= CACHE_FACTOR * device.cache_bytes
        peak = device.spec.mem_bandwidth_gbps if device.spec and not cached else None
        m = rate_metrics(None, work.bytes_moved, seconds, None, peak, telemetry)
        m["served_from"] = "cache" if cached else "memory"
        return m
