"""The track record: the performance model against published training runs.

``data/published_runs.csv`` holds published measurements (per-GPU throughput, step times,
TFLOP/s or MFU under a stated FLOP convention, whole-run GPU-hours), each row with its
configuration as published, the fields that had to be assumed (``assumed``), its source and
date. ``backtest()`` predicts every row from its configuration alone, with the default
(published) calibration profile of its GPU and the row's framework, and compares.

Beside the model it scores the simplest baseline: one model-FLOPs utilization (MFU) constant,
fitted on the same rows (the geometric mean of their published MFU), applied to every row. The
model earns its terms only where it beats that.

Families group rows by what the model has to get right: the software stack and the GPU
generation for dense throughput rows (``megatron/a100``, ``fsdp/h100``, …), mixture-of-experts
rows (``moe``), and whole-run GPU-hours (``whole-run``).

The back-test's residuals are also what ``estimate`` turns into its uncertainty range
(``uncertainty.py``).
"""

from __future__ import annotations

import csv
import math
import re
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from statistics import fmean

from gpubench.errors import GpubenchError
from gpubench.estimate.cluster import make_cluster
from gpubench.estimate.flops import hardware_flops_per_token, model_flops_per_token
from gpubench.estimate.models import ModelConfig
from gpubench.estimate.perf import StepModel, make_layout
from gpubench.estimate.profile import default_profile

DATA = Path(__file__).resolve().parent / "data" / "published_runs.csv"
METRICS = ("tokens_per_s_per_gpu", "step_time_s", "model_tflops_per_gpu", "hw_tflops_per_gpu", "mfu",
           "gpu_hours")
TIME_METRICS = ("step_time_s", "gpu_hours")      # bigger is slower
ARCH_NAMES = {"ampere": "a100", "hopper": "h100", "volta": "v100", "blackwell": "b200"}


@dataclass
class PublishedRun:
    row: dict
    id: str
    family: str
    metric: str
    value: float
    excluded: str | None = None         # why the row cannot be predicted, if it cannot
    planned: bool = False               # layout not published: the planner's best stands in
    model: ModelConfig | None = None
    layout_kw: dict = field(default_factory=dict)


def _int(v, default=None):
    v = (v or "").strip()
    return int(float(v)) if v else default


def _model(r: dict) -> ModelConfig:
    experts = _int(r["experts"], 0)
    mlp = (r["mlp"] or "gelu").strip()
    freq = _int(r.get("moe_layer_freq"), 1) or 1
    return ModelConfig(
        name=r["model"] or r["id"], layers=_int(r["layers"]), hidden=_int(r["hidden"]), heads=_int(r["heads"]),
        seq_len=_int(r["seq_len"]), vocab=_int(r["vocab"]), kv_heads=_int(r["kv_heads"]),
        head_size=_int(r["head_dim"]) if r["head_dim"] and _int(r["head_dim"]) * _int(r["heads"]) != _int(r["hidden"])
        else None,
        ffn_hidden=_int(r["ffn_hidden"]), mlp=mlp, experts=experts, top_k=_int(r["top_k"], 0) if experts else 0,
        shared_experts=_int(r["shared_experts"], 0) if experts else 0,
        expert_ffn_hidden=_int(r["expert_ffn_hidden"]) if experts else None,
        dense_layers=_int(r["dense_layers"], 0) if experts else 0, moe_every=freq if experts else 1,
        tied_embeddings=mlp == "gelu")


def family_of(framework: str, arch: str, moe: bool, metric: str) -> str:
    if metric == "gpu_hours":
        return "whole-run"
    if moe:
        return "moe"
    group = {"nemo": "megatron", "megatron": "megatron", "deepspeed": "deepspeed", "fsdp": "fsdp"}.get(
        framework, "other")
    return f"{group}/{ARCH_NAMES.get(arch, arch)}"


def _framework_flag(framework: str) -> str:
    # Other stacks (Meta's, DeepSeek's HAI-LLM, nanotron) are fused, Megatron-like stacks.
    return framework if framework in ("megatron", "nemo", "deepspeed", "fsdp") else "megatron"


def load_runs(path: Path = DATA) -> list[PublishedRun]:
    from gpubench.hardware import get_gpu

    runs = []
    with open(path, newline="") as f:
        for r in csv.DictReader(f):
            metric = r["metric"].strip()
            if metric not in METRICS:
                raise GpubenchError(f"{path}: row {r['id']}: unknown metric {metric!r}")
            run = PublishedRun(row=r, id=r["id"], family="", metric=metric, value=float(r["value"]))
            try:
                arch = get_gpu(r["gpu"]).arch
            except GpubenchError:
                arch = "?"
            run.family = family_of(r["framework"], arch, bool(_int(r["experts"], 0)), metric)
            # A whole run whose layout was not published is costed with the planner's best layout.
            planned = metric in ("gpu_hours", "tokens_per_s_per_gpu") and not r["tp"].strip() and \
                "layout=gpubench plan" in r["assumed"]
            needed = ("layers", "hidden", "heads", "seq_len", "vocab", "gpu", "gpus") + \
                (() if planned else ("tp", "pp", "global_batch"))
            missing = [k for k in needed if not r[k].strip()]
            if metric == "gpu_hours" and not r["tokens"].strip():
                missing.append("tokens")
            if missing:
                run.excluded = "not published: " + ", ".join(missing)
                runs.append(run)
                continue
            try:
                run.model = _model(r)
                run.planned = planned
                run.layout_kw = dict(
                    tp=_int(r["tp"], 1), pp=_int(r["pp"], 1), cp=_int(r["cp"], 1), vpp=_int(r["vpp"], 1),
                    ep=_int(r["ep"], 1) or 1, micro_batch=_int(r["micro_batch"], 1),
                    global_batch=_int(r["global_batch"]) if r["global_batch"].strip() else None,
                    recompute=r["recompute"] or "none",
                    sequence_parallel=r["sequence_parallel"] in ("1", "true", "True"),
                    zero=_int(r["zero"], 0), precision=r["precision"] or "bf16",
                    framework=_framework_flag(r["framework"]), compile=r.get("compile") == "1",
                    tp_comm_overlap=True if r.get("tp_comm_overlap") == "1" else None,
                    moe_imbalance=float(r["moe_imbalance"]) if r.get("moe_imbalance") else None,
                    moe_dispatcher=r.get("moe_dispatcher") or "alltoall")
            except GpubenchError as e:
                run.excluded = f"configuration not expressible: {e}"
            runs.append(run)
    return runs


def flops_per_token(model: ModelConfig, convention: str, recompute: str) -> float:
    c = convention.lower()
    if "eq.3" in c or "eq. 3" in c or "incl. recompute" in c or "hardware" in c:
        return hardware_flops_per_token(model, recompute)
    palm = model_flops_per_token(model)
    if "causal" in c or "s/h/2" in c or "0.5*s/h" in c:
        from gpubench.estimate.flops import attention_core_flops_per_token
        return palm - 1.5 * attention_core_flops_per_token(model)
    if re.search(r"\b6n\b", c):
        return 6.0 * model.params(active=True, embeddings=False)
    return palm


def _peak_of(convention: str, default: float) -> float:
    m = re.search(r"(\d{3,4}(?:\.\d+)?)\s*(?:tflop|$)", convention.lower())
    return float(m.group(1)) if m else default


@dataclass
class Prediction:
    run: PublishedRun
    predicted: float                  # in the row's metric
    tokens_per_s_per_gpu: float
    baseline: float | None = None     # the one-constant baseline, in the row's metric
    fits: bool | None = None
    mfu_published: float | None = None

    @property
    def error(self) -> float:
        return self.predicted / self.run.value - 1

    @property
    def baseline_error(self) -> float | None:
        return None if self.baseline is None else self.baseline / self.run.value - 1

    @property
    def time_ratio(self) -> float:
        """Predicted ÷ published time (step or whole run): >1 means the model is pessimistic."""
        r = self.predicted / self.run.value
        return r if self.run.metric in TIME_METRICS else 1 / r


def predict(run: PublishedRun, profile=None, efficiency: float | None = None) -> Prediction:
    from gpubench.estimate.estimator import whole_run_hours
    from gpubench.estimate.memory import memory_estimate

    r = run.row
    cluster = make_cluster(r["gpu"], _int(r["gpus"]),
                           inter_node_gbps=float(r["inter_node_gbps"]) if r.get("inter_node_gbps") else None,
                           power_limit_w=float(r["power_limit_w"]) if r.get("power_limit_w") else None)
    prof = profile or default_profile(cluster.gpu.key, cluster.gpu.arch)
    layout = planned_layout(run, cluster, prof) if run.planned else make_layout(run.model, cluster.gpus,
                                                                                **run.layout_kw)
    sm = StepModel(run.model, cluster, layout, prof, compute_efficiency=efficiency)
    est = sm.estimate()
    tps_gpu = est["tokens_per_s"] / cluster.gpus
    conv = r["flops_convention"] or ""
    m = run.metric
    if m == "tokens_per_s_per_gpu":
        pred = tps_gpu
    elif m == "step_time_s":
        pred = est["step_time_s"]
    elif m in ("model_tflops_per_gpu", "hw_tflops_per_gpu"):
        fpt = flops_per_token(run.model, conv if m == "model_tflops_per_gpu" else (conv or "incl. recompute"),
                              layout.recompute)
        pred = tps_gpu * fpt / 1e12
    elif m == "mfu":
        peak = _peak_of(conv, cluster.gpu.peak("bf16") or cluster.gpu.peak(layout.precision))
        pred = tps_gpu * flops_per_token(run.model, conv, layout.recompute) / (peak * 1e12)
    else:  # gpu_hours
        pred = whole_run_hours(float(r["tokens"]), est["tokens_per_s"], cluster.gpus,
                               run.model.params())["gpu_hours"]
    fits = memory_estimate(sm)["fits"]
    return Prediction(run, pred, tps_gpu, fits=fits)


_PLANNED: dict = {}


def planned_layout(run: PublishedRun, cluster, prof):
    """The planner's best layout for a run whose layout was not published (cached per process)."""
    from gpubench.estimate.perf import Layout
    from gpubench.estimate.plan import search

    kw = run.layout_kw
    key = (run.model, cluster, prof.name, kw["global_batch"], kw["precision"], kw["framework"])
    if key not in _PLANNED:
        ranked, _ = search(run.model, cluster, global_batch=kw["global_batch"], precision=kw["precision"],
                           profile=prof, tokens=1e12, top=1, options={"framework": kw["framework"]},
                           with_uncertainty=False)
        _PLANNED[key] = Layout(**{k: ranked[0]["layout"][k] for k in Layout.__dataclass_fields__})
    return _PLANNED[key]


def _published_mfu(p: Prediction) -> float:
    """The row's published figure as model-FLOPs utilization of the dense bf16/fp16 peak."""
    run, r = p.run, p.run.row
    from gpubench.hardware import get_gpu
    gpu = get_gpu(r["gpu"])
    peak = (gpu.peak("bf16") or gpu.peak("fp16")) * 1e12
    mflops = model_flops_per_token(run.model)
    # The published throughput per GPU, recovered through the prediction's own conversion.
    tps = p.tokens_per_s_per_gpu * (run.value / p.predicted if run.metric not in TIME_METRICS
                                    else p.predicted / run.value)
    return tps * mflops / peak


def backtest(runs: list[PublishedRun] | None = None, profile=None) -> tuple[list[Prediction], list[PublishedRun]]:
    """Predict every row; fit the one-constant baseline on the predicted rows."""
    runs = load_runs() if runs is None else runs
    preds, skipped = [], []
    for run in runs:
        if run.excluded:
            skipped.append(run)
            continue
        try:
            preds.append(predict(run, profile))
        except GpubenchError as e:
            run.excluded = f"could not be predicted: {e}"
            skipped.append(run)
    for p in preds:
        p.mfu_published = _published_mfu(p)
    if preds:
        c = math.exp(fmean(math.log(p.mfu_published) for p in preds))
        for p in preds:
            # The baseline's throughput is c/MFU_published × the published one.
            ratio = c / p.mfu_published
            p.baseline = p.run.value * (1 / ratio if p.run.metric in TIME_METRICS else ratio)
        backtest.baseline_mfu = c
    return preds, skipped


def summary(preds: list[Prediction]) -> dict[str, dict]:
    """Per family (and 'all'): rows, mean absolute error, bias, baseline MAE, published layouts that fit."""
    fams: dict[str, list[Prediction]] = {}
    for p in preds:
        fams.setdefault(p.run.family, []).append(p)
    fams["all"] = list(preds)
    out = {}
    for name, ps in sorted(fams.items(), key=lambda kv: (kv[0] == "all", kv[0])):
        errs = [p.error for p in ps]
        base = [p.baseline_error for p in ps if p.baseline_error is not None]
        logs = [math.log(p.time_ratio) for p in ps]
        out[name] = {"rows": len(ps), "mae": fmean(abs(e) for e in errs), "bias": fmean(errs),
                     "worst": max(errs, key=abs), "baseline_mae": fmean(abs(e) for e in base) if base else None,
                     "fit": sum(1 for p in ps if p.fits) / len(ps),
                     "log_time_ratio_mean": fmean(logs),
                     "log_time_ratio_sd": (math.sqrt(sum((x - fmean(logs)) ** 2 for x in logs) / (len(logs) - 1))
                                           if len(logs) > 1 else None)}
    return out


RESIDUALS = DATA.parent / "backtest_residuals.json"
# The files whose content decides a prediction: the stored residuals are those of this model.
MODEL_FILES = ("backtest.py", "comm.py", "estimator.py", "flops.py", "goodput.py", "kernels.py", "memory.py",
               "models.py", "perf.py", "plan.py", "profile.py", "stacks.py", "cluster.py",
               "data/published_runs.csv")


def model_fingerprint() -> str:
    import hashlib

    h = hashlib.sha256()
    here = DATA.parent.parent
    for name in MODEL_FILES:
        h.update(name.encode())
        h.update((here / name).read_bytes())
    return h.hexdigest()


def cross_validated_residuals() -> dict[str, list[float]]:
    """log(predicted ÷ published time) per family, each row predicted with η fitted without its source."""
    out: dict[str, list[float]] = {}
    for p in cross_validate():
        out.setdefault(p.run.family, []).append(math.log(p.time_ratio))
    return out


def in_sample_residuals() -> dict[str, list[float]]:
    preds, _ = backtest()
    out: dict[str, list[float]] = {}
    for p in preds:
        out.setdefault(p.run.family, []).append(math.log(p.time_ratio))
    return out


@lru_cache(maxsize=1)
def residuals_and_kind() -> tuple[dict[str, list[float]], str]:
    """The residuals ranges are built from: the stored leave-one-source-out ones when they were
    computed by this very model (``scripts/refresh_backtest_residuals.py`` writes them), else
    the in-sample ones, computed now (narrower: η was fitted on those rows)."""
    import json

    try:
        stored = json.loads(RESIDUALS.read_text())
        if stored.get("model_fingerprint") == model_fingerprint():
            return stored["families"], "leave-one-source-out"
    except (OSError, ValueError, KeyError):
        pass
    return in_sample_residuals(), "in-sample"


def residuals() -> dict[str, list[float]]:
    return residuals_and_kind()[0]


FIT_MIN_ROWS = 6


def fit_rows(runs: list[PublishedRun]) -> dict[tuple[str, str], list[PublishedRun]]:
    """Dense throughput rows of a named stack on A100/H100, grouped by (stack family, arch)."""
    from gpubench.estimate.stacks import get_stack
    from gpubench.hardware import get_gpu

    groups: dict[tuple[str, str], list[PublishedRun]] = {}
    for run in runs:
        r = run.row
        if run.excluded or run.metric == "gpu_hours" or run.model.is_moe:
            continue
        if r["framework"] not in ("megatron", "nemo", "deepspeed", "fsdp"):
            continue
        arch = get_gpu(r["gpu"]).arch
        if arch not in ("ampere", "hopper"):
            continue
        fam = get_stack(r["framework"]).family
        groups.setdefault((fam, arch), []).append(run)
    return groups


def fit_efficiency(runs: list[PublishedRun] | None = None) -> dict[str, dict[str, tuple[float, int, float]]]:
    """η per (stack family, arch): the value minimising the squared log time errors of its rows.

    Returns {family: {arch: (η, rows, rms log error at η)}} for groups with ≥ FIT_MIN_ROWS rows."""
    runs = load_runs() if runs is None else runs
    out: dict[str, dict[str, tuple[float, int, float]]] = {}
    for (fam, arch), rows in sorted(fit_rows(runs).items()):
        usable = []
        for run in rows:
            try:
                predict(run, efficiency=1.0)
                usable.append(run)
            except GpubenchError:
                pass
        if len(usable) < FIT_MIN_ROWS:
            continue

        def loss(eta: float) -> float:
            return sum(math.log(predict(run, efficiency=eta).time_ratio) ** 2 for run in usable)

        lo, hi = 0.3, 1.5
        g = (math.sqrt(5) - 1) / 2
        a, b = hi - g * (hi - lo), lo + g * (hi - lo)
        fa, fb = loss(a), loss(b)
        for _ in range(40):
            if fa < fb:
                hi, b, fb = b, a, fa
                a = hi - g * (hi - lo)
                fa = loss(a)
            else:
                lo, a, fa = a, b, fb
                b = lo + g * (hi - lo)
                fb = loss(b)
            if hi - lo < 1e-4:
                break
        eta = (lo + hi) / 2
        out.setdefault(fam, {})[arch] = (round(eta, 4), len(usable), math.sqrt(loss(eta) / len(usable)))
    return out


def source_key(run: PublishedRun) -> str:
    """The publication a row comes from (rows of one source share assumptions and software)."""
    return re.split(r"[,(;]", run.row["source"])[0].strip()


def cross_validate(runs: list[PublishedRun] | None = None) -> list[Prediction]:
    """Leave one source out: refit η without a source's rows, then predict them.

    The only constants fitted on the table are the stacks' compute efficiencies; this shows
    how the model does on a publication it has not seen."""
    from gpubench.estimate.stacks import get_stack
    from gpubench.hardware import get_gpu

    runs = load_runs() if runs is None else runs
    usable = [r for r in runs if not r.excluded]
    out = []
    for key in sorted({source_key(r) for r in usable}):
        held = [r for r in usable if source_key(r) == key]
        table = fit_efficiency([r for r in usable if source_key(r) != key])
        for run in held:
            stack = get_stack(run.layout_kw["framework"], zero=run.layout_kw["zero"])
            arch = get_gpu(run.row["gpu"]).arch
            eta = None
            for fam in (stack.family, "megatron", "nemo"):
                if arch in table.get(fam, {}):
                    eta = table[fam][arch][0]
                    break
            try:
                out.append(predict(run, efficiency=eta))
            except GpubenchError:
                pass
    return out
