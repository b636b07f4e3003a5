"""The self-check: predict this machine's own training steps from its own microbenchmarks.

The estimator's promise is that what a device measures in minutes (GEMMs by shape, copy
bandwidth, attention, the cost of one framework operation, collectives) carries to what a
training step costs. Here that promise is tested where the answer is known: every
``transformer-step`` record in the result files is predicted by the same performance model
(``perf.StepModel``) the frontier estimates use, with the same model shape, precision,
micro-batch, gradient accumulation, recomputation, compile and data parallelism, running on
the device's measured rates (``rates.MeasuredRates``) instead of fractions of datasheet
figures, and the prediction is put beside the measured step time.

The stack is ``eager`` (gpubench's own step: eager PyTorch, SDPA, AdamW), whose compute
efficiency η is 1: kernels are assumed to run inside the step as fast as they ran alone. The
``in-step rate`` column says what η would have matched the measurement (the share of their
isolated speed the GEMMs and attention reached in the step, the rest of the prediction held);
on GPUs it is the quantity the back-test fits per stack for frontier runs.

What a case cannot be predicted from (a GEMM shape more than 2× from every measured one, a
collective never measured at that world size) is said per case, never extrapolated. The
summary's median absolute error is what a calibration profile carries (``Profile.self_check``)
and widens the ranges of estimates made with it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from statistics import median
from typing import Any, Sequence

from gpubench.errors import GpubenchError
from gpubench.estimate.calibrate import _load, measured_rates, resolve_device
from gpubench.estimate.cluster import FACTS, Cluster, Interconnect
from gpubench.estimate.perf import StepModel, make_layout
from gpubench.estimate.profile import Profile, default_profile
from gpubench.estimate.rates import MeasuredRates, OutOfRange
from gpubench.results import Record, Run

RECOMPUTE = {"none": "none", "every": "full", "attention": "selective"}
PRECISION = {"fp32": "fp32", "tf32": "tf32", "bf16": "bf16", "fp16": "fp16", "fp8_e4m3": "fp8"}
# The breakdown's terms, in the order a reader wants them (perf.StepModel's names).
TERMS = (("gemm_s", "GEMMs"), ("attention_s", "attention"), ("elementwise_s", "element-wise"),
         ("lm_head_s", "LM head"), ("recompute_s", "recompute"), ("kernel_gaps_s", "host ops"),
         ("optimizer_s", "optimizer"), ("dp_comm_exposed_s", "DP comm"))


@dataclass(frozen=True)
class LocalDevice:
    """The device the files were measured on, as the performance model's cluster sees it: its
    datasheet peaks where it has any (for MFU), otherwise none; no power cap."""
    key: str
    name: str
    arch: str
    peak_tflops: dict
    mem_bandwidth_gbps: float
    tdp_w: float = float("inf")

    def peak(self, precision: str) -> float | None:
        p = "fp8" if precision.startswith("fp8") else precision
        return self.peak_tflops.get(p)


@dataclass
class Case:
    file: Path
    index: int
    record: Record
    measured_s: float
    cov: float | None
    predicted_s: float | None = None
    breakdown: dict | None = None
    compute_s: float | None = None
    why: str | None = None

    @property
    def error(self) -> float | None:
        return None if self.predicted_s is None else self.predicted_s / self.measured_s - 1.0

    @property
    def in_step_rate(self) -> float | None:
        """η that would make the prediction exact: compute ÷ (measured − everything else)."""
        if self.predicted_s is None or not self.compute_s:
            return None
        rest = self.predicted_s - self.compute_s
        room = self.measured_s - rest
        return self.compute_s / room if room > 0 else None


def _machine(runs: list[tuple[Path, Run]]) -> None:
    """One machine: the same host and device in every file (a self-check of two machines
    would check neither)."""
    first = None
    for path, run in runs:
        host = ((run.env or {}).get("host") or {}).get("hostname") or "unknown host"
        dev = (run.env or {}).get("device") or {}
        ident = (host, dev.get("type"), dev.get("name"), dev.get("index"))
        if first is None:
            first = (path, ident)
        elif ident != first[1]:
            a, b = first[1], ident
            raise GpubenchError(f"result files come from different machines: {first[0]} is {a[2]} on "
                                f"{a[0]}, {path} is {b[2]} on {b[0]}; the self-check predicts one "
                                f"machine's steps from its own measurements")


def _cluster(spec, device: dict, rates: MeasuredRates, gpus: int) -> Cluster:
    if spec is not None:
        base = FACTS.get(spec.key)
        link = base or Interconnect(1, 1.0, 1.0, max(1, gpus), "unknown: measured collectives only")
        return Cluster(spec, gpus, Interconnect(link.multiprocessors, link.intra_node_gbps,
                                                link.inter_node_gbps, max(link.gpus_per_node, gpus),
                                                link.source))
    bw = max((b for _, b in rates.membw), default=1e9) / 1e9
    dev = LocalDevice(key=f"{device.get('type')}:{device.get('name')}", name=str(device.get("name")),
                      arch=str(device.get("type") or "unknown"), peak_tflops={}, mem_bandwidth_gbps=bw)
    return Cluster(dev, gpus, Interconnect(1, bw, bw, max(1, gpus), "measured on this machine"))


def step_layout(record: Record):
    """The estimator's model and layout of a transformer-step record."""
    from gpubench.benches.transformer import model_config

    p = record.params
    gpt = model_config(p)
    model = gpt.to_model_config()
    world = int((record.work or {}).get("world_size") or p.get("world_size") or 1)
    parallel = p.get("parallel", "none")
    dp = world if parallel in ("ddp", "fsdp") else 1
    mb, accum = int(p.get("micro_batch", 1)), int(p.get("grad_accum", 1))
    layout = make_layout(model, dp, micro_batch=mb, global_batch=mb * accum * dp,
                         recompute=RECOMPUTE[p.get("checkpointing", "none")],
                         zero=3 if parallel == "fsdp" else 0, precision=PRECISION[p["dtype"]],
                         framework="eager", compile=bool(p.get("compile")))
    return model, layout


def _cases(runs: list[tuple[Path, Run]]) -> list[Case]:
    out = []
    for path, run in runs:
        for i, r in enumerate(run.records):
            if r.benchmark != "transformer-step" or r.status != "ok":
                continue
            step = (r.metrics or {}).get("step_s")
            if not isinstance(step, (int, float)) or not step > 0:
                continue
            out.append(Case(path, i, r, float(step), (r.timing or {}).get("cov")))
    return out


def self_check(paths: Sequence[str | Path]) -> dict[str, Any]:
    """Predict every ok transformer-step record of one machine's result files."""
    return check_runs(_load(paths)[0])


def check_runs(runs: list[tuple[Path, Run]]) -> dict[str, Any]:
    """``self_check`` of runs already loaded (the hub's run page checks an upload)."""
    runs, spec, device = resolve_device(runs)
    _machine(runs)
    cases = _cases(runs)
    if not cases:
        raise GpubenchError(f"{', '.join(str(p) for p, _ in runs)}: no ok transformer-step record "
                            f"to predict (run --suite mixed-precision or --suite transformer)")
    rates = measured_rates(runs, device)
    profile: Profile = (default_profile(spec.key, spec.arch) if spec is not None
                        else Profile(name="rates-only", gpu_key="", gemm_ceiling={}))
    for case in cases:
        try:
            model, layout = step_layout(case.record)
            world = int((case.record.work or {}).get("world_size") or 1)
            if device.get("type") == "cpu" and world > 1:
                rates.note(f"{world} ranks shared this CPU's cores in the multi-rank steps, while kernels "
                           f"timed by one process had them all: those steps' kernels run slower than "
                           f"predicted")
            cluster = _cluster(spec, device, rates, layout.gpus)
            est = StepModel(model, cluster, layout, profile, rates=rates).estimate()
        except (OutOfRange, GpubenchError) as e:
            case.why = str(e)
            continue
        b = est["breakdown"]
        case.predicted_s = est["step_time_s"]
        case.breakdown = b
        case.compute_s = b["gemm_s"] + b["attention_s"] + b["recompute_s"]
    done = [c for c in cases if c.predicted_s is not None]
    if not done:
        c = cases[0]
        raise GpubenchError(f"{c.file}: case {c.record.case_id} cannot be predicted: {c.why}")
    return {"device": device, "spec_key": spec.key if spec else None, "cases": cases,
            "rates": rates, "summary": {**summarize(done), **kernel_noise(runs)}}


def kernel_noise(runs: list[tuple[Path, Run]]) -> dict[str, Any]:
    """How steady the kernels the prediction is built from were. A busy machine makes them
    noisy too, and a prediction from noisy kernels is off for reasons no model term explains."""
    covs, noisy = [], 0
    for _, run in runs:
        for r in run.records:
            if r.benchmark == "transformer-step" or r.status != "ok":
                continue
            cov = (r.timing or {}).get("cov")
            if isinstance(cov, (int, float)) and math.isfinite(cov):
                covs.append(cov)
                noisy += bool((r.timing or {}).get("high_cov"))
    return {"kernel_cases": len(covs), "kernel_median_cov": median(covs) if covs else None,
            "kernel_noisy": noisy}


def summarize(done: list[Case]) -> dict[str, Any]:
    errors = [c.error for c in done]
    logs = [math.log(1 + e) for e in errors]
    rates = [c.in_step_rate for c in done if c.in_step_rate]
    return {"cases": len(done), "median_abs_error": median(abs(e) for e in errors),
            "max_abs_error": max(abs(e) for e in errors),
            "mean_log_error": sum(logs) / len(logs),
            "rms_log_error": math.sqrt(sum(x * x for x in logs) / len(logs)),
            "median_in_step_rate": median(rates) if rates else None,
            # How much the measured steps themselves wobble: an error within it says little.
            "median_step_cov": median(c.cov for c in done) if all(c.cov is not None for c in done) else None}


def to_json(result: dict) -> dict:
    out = {"device": result["device"], "spec_key": result["spec_key"], "summary": result["summary"],
           "assumptions": result["rates"].assumptions, "cases": []}
    for c in result["cases"]:
        out["cases"].append({
            "file": str(c.file), "index": c.index, "case_id": c.record.case_id,
            "measured_step_s": c.measured_s, "measured_cov": c.cov, "predicted_step_s": c.predicted_s,
            "error": c.error, "in_step_rate": c.in_step_rate, "breakdown": c.breakdown,
            "not_predicted": c.why})
    return out


__all__ = ["self_check", "check_runs", "summarize", "to_json", "step_layout", "LocalDevice", "Case"]
