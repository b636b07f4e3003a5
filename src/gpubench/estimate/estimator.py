"""One estimate: a model on a cluster with a layout, for a number of tokens, to days and dollars.

``--mfu``/``--hfu`` replace the performance model with a given utilization (what-if
questions, or reproducing a published projection); everything downstream (days,
GPU-hours, energy, the three cost views) is the same arithmetic either way.

Whole-run figures are expected ones: the ideal time (tokens over throughput) plus what a
run loses to failures, restarts and checkpoints (``goodput.py``); ``ideal`` keeps the
uninterrupted figures. ``uncertainty`` is the back-test's range around the estimate.
"""

from __future__ import annotations

from dataclasses import dataclass

from gpubench.errors import GpubenchError
from gpubench.estimate import cost as C
from gpubench.estimate.cluster import Cluster
from gpubench.estimate.flops import hardware_flops_per_token, model_flops_per_token
from gpubench.estimate.goodput import Reliability, whole_run
from gpubench.estimate.memory import memory_estimate
from gpubench.estimate.models import ModelConfig
from gpubench.estimate.perf import Layout, StepModel, megatron_rules
from gpubench.estimate.prices import pricing_for
from gpubench.estimate.profile import Profile, default_profile
from gpubench.estimate.uncertainty import uncertainty


@dataclass(frozen=True)
class Economics:
    usd_per_gpu_hour: float | None = None      # None: the price table's cloud figure
    gpu_price_usd: float | None = None
    node_price_usd: float | None = None
    electricity_usd_per_kwh: float = 0.0806
    pue: float = 1.1


def choose_profile(cluster: Cluster, profile: Profile | None) -> Profile:
    gpu = cluster.gpu
    if profile is None:
        return default_profile(gpu.key, gpu.arch)
    return profile.carried_to(gpu.key)


def whole_run_hours(tokens: float, tokens_per_s: float, gpus: int, params: float,
                    reliability: Reliability = Reliability()) -> dict:
    """Ideal and expected hours and GPU-hours of a run of ``tokens`` at ``tokens_per_s``."""
    g = whole_run(tokens / tokens_per_s, gpus, params, reliability)
    return {**g, "hours": g["expected_s"] / 3600, "gpu_hours": g["expected_s"] / 3600 * gpus,
            "ideal_hours": g["ideal_s"] / 3600, "ideal_gpu_hours": g["ideal_s"] / 3600 * gpus}


def estimate(model: ModelConfig, cluster: Cluster, layout: Layout, *, tokens: float | None = None,
             steps: int | None = None, profile: Profile | None = None, mfu: float | None = None,
             hfu: float | None = None, economics: Economics = Economics(),
             reliability: Reliability = Reliability(), with_uncertainty: bool = True) -> dict:
    if (tokens is None) == (steps is None):
        raise GpubenchError("give exactly one of --tokens or --steps")
    if tokens is not None and tokens <= 0:
        raise GpubenchError(f"--tokens {tokens} must be positive")
    if steps is not None and steps <= 0:
        raise GpubenchError(f"--steps {steps} must be positive")
    if mfu is not None and hfu is not None:
        raise GpubenchError("give --mfu or --hfu, not both")
    for flag, v in (("--mfu", mfu), ("--hfu", hfu)):
        if v is not None and not 0 < v <= 1:
            raise GpubenchError(f"{flag} {v} must be a fraction in (0, 1]")

    prof = choose_profile(cluster, profile)
    sm = StepModel(model, cluster, layout, prof)
    perf = sm.estimate()
    warnings = []
    if prof.carried_from:
        if any(p.get("kind") == "measured" for p in prof.provenance):
            warnings.append(f"calibration measured on {prof.carried_from} applied to {cluster.gpu.key} "
                            f"by peak ratios")
        else:
            warnings.append(f"no published profile for {cluster.gpu.key}: the {prof.carried_from} one "
                            f"applied by peak ratios")
    mflops = model_flops_per_token(model)
    hflops = hardware_flops_per_token(model, layout.recompute)
    peak = perf["peak_tflops"] * 1e12
    source = "performance model"
    model_step = perf["step_time_s"]
    if mfu is not None or hfu is not None:
        rate = mfu * peak * cluster.gpus / mflops if mfu is not None else hfu * peak * cluster.gpus / hflops
        source = f"--mfu {mfu}" if mfu is not None else f"--hfu {hfu}"
        perf["tokens_per_s"] = rate
        perf["step_time_s"] = perf["tokens_per_step"] / rate
        perf["model_tflops_per_gpu"] = mflops * rate / cluster.gpus / 1e12
        perf["hardware_tflops_per_gpu"] = hflops * rate / cluster.gpus / 1e12
        perf["mfu"] = perf["model_tflops_per_gpu"] * 1e12 / peak
        perf["hfu"] = perf["hardware_tflops_per_gpu"] * 1e12 / peak

    total_tokens = tokens if tokens is not None else steps * perf["tokens_per_step"]
    run = whole_run_hours(total_tokens, perf["tokens_per_s"], cluster.gpus, model.params(), reliability)
    train_s = run["expected_s"]
    hours = run["hours"]
    gpu_hours = run["gpu_hours"]
    energy_kwh = C.energy_kwh(cluster.gpus, hours, cluster.gpu.key, pue=economics.pue)

    pricing = pricing_for(cluster.gpu.key)
    price = economics.usd_per_gpu_hour
    if price is None and pricing is not None:
        price = pricing.cloud_usd_per_gpu_hour
    cost, details = {"cloud": None, "capex_energy": None, "acquisition": None}, {}
    if price is not None:
        details["cloud"] = C.cloud_cost(gpu_hours, price)
        cost["cloud"] = details["cloud"]["usd"]
    else:
        warnings.append(f"no cloud price for {cluster.gpu.key}: pass --price")
    try:
        details["capex_energy"] = C.capex_energy_cost(
            cluster.gpu.key, cluster.gpus, hours, gpu_price_usd=economics.gpu_price_usd,
            electricity_usd_per_kwh=economics.electricity_usd_per_kwh, pue=economics.pue)
        cost["capex_energy"] = details["capex_energy"]["total_usd"]
    except GpubenchError as e:
        warnings.append(str(e))
    try:
        details["acquisition"] = C.acquisition_cost(
            cluster.gpu.key, cluster.gpus, node_price_usd=economics.node_price_usd,
            gpu_price_usd=economics.gpu_price_usd,
            electricity_usd_per_kwh=economics.electricity_usd_per_kwh)
        cost["acquisition"] = details["acquisition"]["upfront_usd"]
    except GpubenchError as e:
        warnings.append(str(e))

    memory = memory_estimate(sm)
    if not memory["fits"]:
        warnings.append(f"needs {memory['total_gb']:.1f} GB per GPU, {cluster.gpu.key} has "
                        f"{memory['capacity_gb']:.0f} GB")
    micro_batches = layout.global_batch // (layout.micro_batch * layout.dp)
    for problem in megatron_rules(model, layout.tp, layout.cp, layout.pp, layout.vpp, micro_batches):
        warnings.append(f"Megatron-LM would refuse this layout: {problem} (estimated with uneven stages, "
                        f"the slowest holding the most layers)")
    headline = cost["cloud"] if cost["cloud"] is not None else cost["capex_energy"]
    ideal_cost = details["cloud"]["usd"] * run["ideal_hours"] / hours if details.get("cloud") else None
    unc = None
    if with_uncertainty and source == "performance model":
        from gpubench.estimate.backtest import family_of, residuals_and_kind
        fam = family_of(sm.stack.name.split("+")[0], cluster.gpu.arch, model.is_moe, "step")
        res, kind = residuals_and_kind()
        unc = uncertainty(perf["step_time_s"], gpu_hours, cost["cloud"], fam, res, kind,
                          self_check=prof.self_check)
    return {
        "model": {"name": model.name, "params": model.params(), "active_params": model.params(active=True),
                  "model_flops_per_token": mflops, "hardware_flops_per_token": hflops},
        "cluster": {"gpu": cluster.gpu.key, "gpus": cluster.gpus, "nodes": cluster.nodes,
                    "peak_tflops": perf["peak_tflops"], "intra_node_gbps": cluster.link.intra_node_gbps,
                    "inter_node_gbps": cluster.link.inter_node_gbps},
        "layout": layout.as_dict(),
        "profile": {"name": prof.name, "measured_on": prof.carried_from or prof.gpu_key,
                    "carried_to": cluster.gpu.key if prof.carried_from else None,
                    "attention": perf["attention_kernel"]},
        "framework": perf["stack"],
        "throughput_source": source,
        "step_time_s": perf["step_time_s"],
        "tokens_per_step": perf["tokens_per_step"],
        "micro_batches": perf["micro_batches"],
        "tokens_per_s": perf["tokens_per_s"],
        "tokens_per_s_per_gpu": perf["tokens_per_s"] / cluster.gpus,
        "model_tflops_per_gpu": perf["model_tflops_per_gpu"],
        "hardware_tflops_per_gpu": perf["hardware_tflops_per_gpu"],
        "mfu": perf["mfu"],
        "hfu": perf["hfu"],
        "tokens": total_tokens,
        "train_days": train_s / 86400,
        "gpu_hours": gpu_hours,
        "ideal": {"train_days": run["ideal_hours"] / 24, "gpu_hours": run["ideal_gpu_hours"],
                  "cost_usd_cloud": ideal_cost},
        "goodput": {k: run[k] for k in ("goodput", "failures", "checkpoint_s", "checkpoint_interval_s",
                                        "restart_loss_s", "rework_loss_s", "checkpoint_loss_s", "eval_s",
                                        "source")},
        "uncertainty": unc,
        "energy_kwh": energy_kwh,
        "cost_usd": cost,
        "cost_details": details,
        "usd_per_million_tokens": headline / total_tokens * 1e6 if headline is not None else None,
        "breakdown": perf["breakdown"],
        "overlaps": perf["overlaps"],
        "model_step_time_s": model_step,     # what the breakdown adds up to (differs under --mfu/--hfu)
        "memory": memory,
        "warnings": warnings,
    }
