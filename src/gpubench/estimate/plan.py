"""Search parallel layouts for a model on a cluster and rank them.

The space is what frameworks would run (Megatron-LM's rules, ``perf.megatron_rules``, applied
here as the loops go so that refused layouts are never built; a test holds the two together):

* tensor parallelism within a node (a divisor of the heads, compatible with the KV heads);
* context parallelism over powers of two that split the sequence into 2·cp equal chunks and
  divide the heads;
* every pipeline depth that divides the layers, and interleaving (pp > 2) whose chunks also
  divide them, with a number of micro-batches that is a multiple of pp;
* micro-batch sizes that divide the per-replica batch; the three recomputation modes;
  sequence parallelism with tensor parallelism; ZeRO stages (1 at most with pipelining, as
  Megatron's distributed optimizer); expert parallelism dividing the experts and the ranks
  of a stage, for MoE.

Layout flags given to ``plan`` are constraints: ``plan --tp 8`` searches the rest. Without
``--global-batch`` each layout gets the same default as ``estimate`` (about 4M tokens a step).
Layouts whose model states alone cannot fit are dropped before they are costed; the rest get
one evaluation of the step model each (the per-layer times are shared between layouts that
differ only in pipeline shape or data parallelism) and the full memory estimate. Ranking is by
the time (or cost) to train the requested tokens; the best layout of each family (PTD-P, FSDP/
ZeRO-2/3, plain data parallelism; with or without context parallelism) is kept too, so the
trade-off between families is visible.
"""

from __future__ import annotations

import time
from typing import Iterator

from gpubench.errors import GpubenchError
from gpubench.estimate.cluster import Cluster
from gpubench.estimate.estimator import Economics, estimate
from gpubench.estimate.goodput import Reliability
from gpubench.estimate.memory import memory_estimate, memory_floor_ok
from gpubench.estimate.models import ModelConfig
from gpubench.estimate.perf import DEFAULT_MOE_IMBALANCE, Layout, StepModel, default_global_batch
from gpubench.estimate.prices import cloud_price
from gpubench.estimate.profile import Profile

MAX_MICRO_BATCH = 64
DEFAULT_MICRO_BATCHES = (1, 2, 4, 8, 16, 32)   # searched when the global batch is free
VPPS = (1, 2, 3, 4, 5, 6, 7, 8)
CPS = (1, 2, 4, 8, 16)


def divisors(n: int) -> list[int]:
    small = [d for d in range(1, int(n ** 0.5) + 1) if n % d == 0]
    return sorted(set(small + [n // d for d in small]))


def family(layout: Layout) -> str:
    """Which kind of parallel layout this is (the plan shows the best of each)."""
    if layout.zero >= 2:
        base = "fsdp/zero-3" if layout.zero == 3 else "zero-2"
    elif layout.tp > 1 or layout.pp > 1:
        base = "ptd-p"
    else:
        base = "data-parallel"
    return base + ("+cp" if layout.cp > 1 else "")


def _given(constraints: dict | None, key: str):
    return None if not constraints else constraints.get(key)


def layouts(model: ModelConfig, cluster: Cluster, global_batch: int | None, precision: str,
            constraints: dict | None = None, options: dict | None = None) -> Iterator[Layout]:
    """Every layout frameworks would run, under the given constraints."""
    gpus, gpn = cluster.gpus, cluster.link.gpus_per_node
    options = options or {}
    opt = {k: options[k] for k in ("framework", "compile", "attention", "tp_comm_overlap", "moe_dispatcher")
           if k in options}
    imbalance = options.get("moe_imbalance") or DEFAULT_MOE_IMBALANCE

    def choices(key, default):
        v = _given(constraints, key)
        return (v,) if v is not None else default

    tp_given = _given(constraints, "tp")
    tps = (tp_given,) if tp_given else tuple(t for t in (1, 2, 4, 8) if t <= gpn)
    for tp in tps:
        if model.heads % tp or gpus % tp:
            continue
        if model.mla is None and tp > 1 and model.n_kv_heads % tp and tp % model.n_kv_heads:
            continue
        for cp in choices("cp", CPS):
            if gpus % (tp * cp) or model.seq_len % (2 * cp) or model.heads % cp:
                continue
            for pp in choices("pp", divisors(gpus // (tp * cp))):
                if (gpus // (tp * cp)) % pp or pp > model.layers or \
                        (model.layers % pp and _given(constraints, "pp") is None):
                    continue
                dp = gpus // (tp * cp * pp)
                if _given(constraints, "dp") not in (None, dp):
                    continue
                if global_batch is not None:
                    if global_batch % dp:
                        continue
                    mbs = [b for b in divisors(global_batch // dp) if b <= MAX_MICRO_BATCH]
                else:
                    mbs = DEFAULT_MICRO_BATCHES
                for mb in choices("micro_batch", mbs):
                    gb = global_batch if global_batch is not None else default_global_batch(model, mb, dp)
                    if gb % (mb * dp):
                        continue
                    m = gb // (mb * dp)
                    for vpp in choices("vpp", VPPS if pp > 2 else (1,)):
                        if vpp > 1 and (model.layers % (pp * vpp) or m % pp):
                            continue
                        if model.is_moe:
                            eps = [e for e in divisors(tp * cp * dp) if model.experts % e == 0]
                            eps = [e for e in choices("ep", eps) if model.experts % e == 0 and (tp * cp * dp) % e == 0]
                        else:
                            eps = [1] if _given(constraints, "ep") in (None, 1) else []
                        for recompute in choices("recompute", ("none", "selective", "full")):
                            sp_given = _given(constraints, "sequence_parallel")
                            sps = (bool(sp_given),) if sp_given is not None else ((False, True) if tp > 1 else (False,))
                            for sp in sps:
                                zeros = choices("zero", (0, 1, 2, 3) if pp == 1 else (0, 1))
                                for zero in zeros:
                                    if zero and dp * cp == 1:
                                        continue
                                    for ep in eps:
                                        yield Layout(tp, pp, dp, vpp, ep, mb, gb, recompute, sp and tp > 1, zero,
                                                     precision, cp, moe_imbalance=imbalance, **opt)


def _work_time(layout: Layout, step_s: float, model: ModelConfig, tokens: float | None) -> float:
    """Seconds to train the requested tokens (or one step when only steps were asked)."""
    if tokens is None:
        return step_s
    return tokens / (layout.global_batch * model.seq_len / step_s)


def search(model: ModelConfig, cluster: Cluster, *, global_batch: int | None, precision: str,
           profile: Profile, economics: Economics = Economics(), reliability: Reliability = Reliability(),
           rank: str = "time", top: int = 10, max_layouts: int = 500_000, tokens: float | None = None,
           steps: int | None = None, constraints: dict | None = None, options: dict | None = None,
           with_uncertainty: bool = True) -> tuple[list[dict], dict]:
    if rank not in ("time", "cost"):
        raise GpubenchError(f"--rank {rank!r}: use time or cost")
    from gpubench.estimate.perf import check_run_options, no_rate_message

    check_run_options(**(options or {}))
    if cluster.gpu.peak(precision) is None:

        raise GpubenchError(no_rate_message(cluster.gpu, precision))
    start = time.perf_counter()
    cache: dict = {}
    scored: list[tuple[float, Layout]] = []
    best_of: dict[str, tuple[float, Layout]] = {}
    evaluated = too_big = 0
    for layout in layouts(model, cluster, global_batch, precision, constraints, options):
        if evaluated >= max_layouts:
            break
        evaluated += 1
        sm = StepModel(model, cluster, layout, profile, cache)
        if not memory_floor_ok(sm) or not memory_estimate(sm)["fits"]:
            too_big += 1
            continue
        t = _work_time(layout, sm.estimate()["step_time_s"], model, tokens)
        scored.append((t, layout))
        fam = family(layout)
        if fam not in best_of or t < best_of[fam][0]:
            best_of[fam] = (t, layout)
    elapsed = time.perf_counter() - start
    if evaluated == 0:
        given = {k: v for k, v in (constraints or {}).items() if v is not None}
        what = ", ".join(f"--{k.replace('_', '-')} {v}" for k, v in given.items())
        raise GpubenchError(f"no layout of {cluster.gpus} GPUs satisfies "
                            f"{what + ' and ' if what else ''}the model's {model.heads} heads, "
                            f"{model.layers} layers and {model.seq_len}-token sequence"
                            + (f" with --global-batch {global_batch}" if global_batch else ""))
    stats = {"evaluated": evaluated, "fit": len(scored), "search_s": elapsed,
             "layouts_per_s": evaluated / elapsed if elapsed > 0 else float("inf")}
    if not scored:
        raise GpubenchError(f"none of the {evaluated} layouts fits in {cluster.gpu.memory_gb:g} GB per GPU")
    # Time orders cost too when every layout pays the same price per GPU-hour; rank by cost
    # is still decided on the full estimates of the best candidates.
    scored.sort(key=lambda x: x[0])
    shortlist = scored[: max(top * 5, top)] if rank == "cost" else scored[:top]

    def full(layout: Layout) -> dict:
        return estimate(model, cluster, layout, tokens=tokens, steps=steps, profile=profile, economics=economics,
                        reliability=reliability, with_uncertainty=with_uncertainty)

    results = [full(layout) for _, layout in shortlist]
    if rank == "cost":
        def cost_key(e):
            c = e["cost_usd"]["cloud"]
            return c if c is not None else (e["cost_usd"]["capex_energy"] or float("inf"))
        results.sort(key=cost_key)
        if cloud_price(cluster.gpu.key) is None and economics.usd_per_gpu_hour is None:
            stats["note"] = "no price for this GPU: cost ranking uses the capex view"
    for e in results:
        e["family"] = family(Layout(**{k: e["layout"][k] for k in Layout.__dataclass_fields__}))
    stats["families"] = {}
    for fam, (t, layout) in sorted(best_of.items(), key=lambda kv: kv[1][0]):
        if not with_uncertainty:
            break
        e = full(layout)
        e["family"] = fam
        stats["families"][fam] = e
    return results[:top], stats


__all__ = ["search", "layouts", "family", "divisors"]
