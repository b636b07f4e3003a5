"""``op-overhead``: what one framework operation costs when its work is negligible.

A small model's training step is not bound by FLOPs or bytes but by the operations the
framework issues: each one pays Python, the dispatcher, autograd's bookkeeping and (on a
GPU) a kernel launch before any arithmetic. The performance model charges every
operation of a step this cost (``gpubench.estimate.rates``), so it is measured here, the
way a step pays it:

* ``mode=autograd``: a chain of ``ops`` multiplications of an 8-element tensor that
  requires gradients, then the backward through the chain (each multiplication's
  backward is one multiplication too). One iteration issues ``2·ops`` operations;
  ``per_op_s`` is the time over that count (``per_op_us`` in µs).
* ``mode=eager``: the same chain without autograd: the bare dispatch (and launch) cost,
  the part of a measured GEMM's time that is not arithmetic.

The check runs the chain once and compares the value and the gradient with float64.
"""

from __future__ import annotations

from typing import Any, Mapping

import torch

from gpubench.benches.common import fresh_generator, rel_err
from gpubench.device import DeviceInfo
from gpubench.errors import CheckFailed, GpubenchError
from gpubench.registry import Benchmark, Workload, register_benchmark

NAME = "op-overhead"
MODES = ("autograd", "eager")
ELEMENTS = 8


def _chain(x: torch.Tensor, factors: list[torch.Tensor]) -> torch.Tensor:
    y = x
    for f in factors:
        y = y * f
    return y


@register_benchmark
class OpOverhead(Benchmark):
    name = NAME
    description = "cost of one framework operation with negligible work (dispatch, autograd, launch)"

    def normalize(self, params: Mapping[str, Any]) -> dict[str, Any]:
        p = dict(params)
        unknown = set(p) - {"ops", "mode"}
        if unknown:
            raise GpubenchError(f"{NAME}: unknown parameter(s) {', '.join(sorted(unknown))}")
        try:
            p["ops"] = int(p.get("ops", 200))
        except (TypeError, ValueError):
            raise GpubenchError(f"{NAME} ops={p.get('ops')!r} is not a whole number") from None
        if not 10 <= p["ops"] <= 100_000:
            raise GpubenchError(f"{NAME} ops={p['ops']}: use 10 to 100000")
        p["mode"] = str(p.get("mode", "autograd")).strip().lower()
        if p["mode"] not in MODES:
            raise GpubenchError(f"{NAME} mode={p['mode']!r}: use one of {', '.join(MODES)}")
        return p

    def label(self, params: Mapping[str, Any]) -> str:
        return f"{params['ops']} ops {params['mode']}"

    def prepare(self, params: Mapping[str, Any], device: DeviceInfo) -> Workload:
        gen, seed = fresh_generator(device)
        dev = device.torch_device
        # Factors near 1 keep a long chain's product finite and away from zero.
        factors = [1.0 + 0.01 * torch.randn(ELEMENTS, generator=gen, device=dev) for _ in range(params["ops"])]
        x = torch.randn(ELEMENTS, generator=gen, device=dev)
        autograd = params["mode"] == "autograd"
        ops = params["ops"] * (2 if autograd else 1)

        if autograd:
            leaf = x.clone().requires_grad_(True)

            def fn():
                leaf.grad = None
                _chain(leaf, factors).backward(torch.ones_like(leaf))
        else:
            def fn():
                with torch.no_grad():
                    return _chain(x, factors)

        def check():
            ref_x = x.double().requires_grad_(True)
            ref = _chain(ref_x, [f.double() for f in factors])
            ref.backward(torch.ones_like(ref))
            if autograd:
                fn()
                err = rel_err(leaf.grad, ref_x.grad)
                what = "gradient"
            else:
                err = rel_err(fn(), ref.detach())
                what = "product"
            if not err <= 1e-4:
                raise CheckFailed(f"op chain {what} vs float64: rel err {err:.2e} > 1e-04")
            return {"reference": "float64 chain", "rel_err": err, "tolerance": 1e-4}

        return Workload(fn=fn, check=check, flush_l2=False,
                        info={"seed": seed, "ops_per_iteration": ops, "elements": ELEMENTS})

    def metrics(self, params, work: Workload, seconds: float, device: DeviceInfo,
                telemetry, aux_s) -> dict[str, Any]:
        per_op = seconds / work.info["ops_per_iteration"]
        return {"per_op_s": per_op, "per_op_us": per_op * 1e6}


__all__ = ["OpOverhead", "NAME", "MODES"]
