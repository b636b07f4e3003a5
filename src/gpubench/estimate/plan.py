"""Search parallel layouts for a model on a cluster and rank them.

The space: tensor parallelism within a node (dividing the heads), every pipeline
depth that divides the remaining GPUs, interleaving, micro-batch sizes that
divide the per-replica batch, the three recomputation modes, sequence
parallelism, ZeRO stages (1 at most with pipelining, as Megatron's distributed
optimizer) and, for MoE, expert parallelism. Each layout costs one evaluation of
the step model (tens of microseconds: the per-layer times are shared between
layouts that only differ in pipeline shape); layouts that do not fit in memory
are dropped, the rest ranked by time or cost, and only the winners get the full
estimate with costs.
"""

from __future__ import annotations

import time
from typing import Iterator

from gpubench.errors import GpubenchError
from gpubench.estimate.cluster import Cluster
from gpubench.estimate.estimator import Economics, estimate
from gpubench.estimate.memory import memory_estimate
from gpubench.estimate.models import ModelConfig
from gpubench.estimate.perf import Layout, StepModel
from gpubench.estimate.prices import pricing_for
from gpubench.estimate.profile import Profile

MAX_MICRO_BATCH = 64
VPPS = (1, 2, 3, 4, 5, 6, 7, 8)


def divisors(n: int) -> list[int]:
    small = [d for d in range(1, int(n ** 0.5) + 1) if n % d == 0]
    return sorted(set(small + [n // d for d in small]))


def layouts(model: ModelConfig, cluster: Cluster, global_batch: int, precision: str) -> Iterator[Layout]:
    gpus = cluster.gpus
    for tp in (t for t in (1, 2, 4, 8, 16) if t <= cluster.link.gpus_per_node):
        if model.heads % tp or gpus % tp:
            continue
        for pp in divisors(gpus // tp):
            if pp > model.layers:
                continue
            dp = gpus // (tp * pp)
            if global_batch % dp:
                continue
            per_replica = global_batch // dp
            eps = [e for e in divisors(dp) if model.experts % e == 0] if model.is_moe else [1]
            for vpp in (v for v in VPPS if v == 1 or (pp > 1 and pp * v <= model.layers)):
                for mb in (b for b in divisors(per_replica) if b <= MAX_MICRO_BATCH):
                    for recompute in ("none", "selective", "full"):
                        for sp in ((False, True) if tp > 1 else (False,)):
                            for zero in ((0, 1, 2, 3) if pp == 1 else (0, 1)):
                                if zero and dp == 1:
                                    continue
                                for ep in eps:
                                    yield Layout(tp, pp, dp, vpp, ep, mb, global_batch, recompute, sp,
                                                 zero, precision)


def search(model: ModelConfig, cluster: Cluster, *, global_batch: int, precision: str,
           profile: Profile, economics: Economics = Economics(), rank: str = "time", top: int = 10,
           max_layouts: int = 200_000, tokens: float | None = None, steps: int | None = None,
           ) -> tuple[list[dict], dict]:
    if rank not in ("time", "cost"):
        raise GpubenchError(f"--rank {rank!r}: use time or cost")
    if cluster.gpu.peak(precision) is None:
        raise GpubenchError(f"--precision {precision}: {cluster.gpu.key} has no dense rate for it")
    start = time.perf_counter()
    cache: dict = {}
    scored: list[tuple[float, Layout]] = []
    evaluated = 0
    for layout in layouts(model, cluster, global_batch, precision):
        if evaluated >= max_layouts:
            break
        evaluated += 1
        sm = StepModel(model, cluster, layout, profile, cache)
        if not memory_estimate(sm)["fits"]:
            continue
        step = sm.estimate()["step_time_s"]
        scored.append((step, layout))
    elapsed = time.perf_counter() - start
    if evaluated == 0:
        raise GpubenchError(f"no layout of {cluster.gpus} GPUs divides --global-batch {global_batch} "
                            f"and the model's {model.heads} heads")
    stats = {"evaluated": evaluated, "fit": len(scored), "search_s": elapsed,
             "layouts_per_s": evaluated / elapsed if elapsed > 0 else float("inf")}
    if not scored:
        raise GpubenchError(f"none of the {evaluated} layouts fits in {cluster.gpu.memory_gb:g} GB per GPU")
    # Step time orders cost too when the price per GPU-hour is the same for every layout;
    # rank by cost is still computed on the full estimates of the best candidates.
    scored.sort(key=lambda x: x[0])
    shortlist = scored[: max(top * 5, top)] if rank == "cost" else scored[:top]
    results = []
    for _, layout in shortlist:
        est = estimate(model, cluster, layout, tokens=tokens, steps=steps, profile=profile, economics=economics)
        results.append(est)
    if rank == "cost":
        def cost_key(e):
            c = e["cost_usd"]["cloud"]
            return c if c is not None else (e["cost_usd"]["capex_energy"] or float("inf"))
        results.sort(key=cost_key)
        if pricing_for(cluster.gpu.key) is None and economics.usd_per_gpu_hour is None:
            stats["note"] = "no price for this GPU: cost ranking uses the capex view"
    return results[:top], stats
