"""``gpubench estimate``, ``gpubench plan`` and ``gpubench calibrate``.

The model, cluster, layout and price flags are shared by ``estimate`` and ``plan``
(plan searches the layout flags it is not given).
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import click

from gpubench.errors import GpubenchError

SUFFIX = {"k": 1e3, "m": 1e6, "b": 1e9, "g": 1e9, "t": 1e12, "p": 1e15}
LIMITS = {"--gpus": 10_000_000, "--tokens": 1e17, "--steps": 1e9, "--price": 10_000.0,
          "--gpu-price": 10_000_000.0, "--node-price": 100_000_000.0, "--electricity-price": 10.0,
          "--global-batch": 1e8, "--micro-batch": 1e5, "--seq-len": 1e8, "--layers": 1e5,
          "--hidden": 1e7, "--heads": 1e5, "--vocab": 1e8}


# Both commands' names for a precision. estimate's fp8 is a training step's FP8 recipe
# (e4m3 forward, e5m2 gradients, as Transformer Engine and torchao run it); the dense
# peak is the same for both formats, so run's names map onto it.
PRECISION_SPELLINGS = {"bf16": "bf16", "fp16": "fp16", "fp8": "fp8", "fp8_e4m3": "fp8", "fp8_e5m2": "fp8",
                       "tf32": "tf32", "fp32": "fp32"}


# What each kind of amount looks like, for the error that refuses a malformed one.
EXAMPLES = {"--tokens": "300e9 or 300B", "--price": "2.5 (USD per GPU-hour)",
            "--gpu-price": "30000 or 30k", "--node-price": "300000 or 300k",
            "--electricity-price": "0.08 (USD per kWh)", "--mfu": "0.45", "--hfu": "0.5"}
# Thousands separators only where they are one: "1,024" and "2,048,000", not "2,50".
_GROUPED = re.compile(r"^[+-]?\d{1,3}(,\d{3})+(\.\d*)?$")


def parse_amount(flag: str, text) -> float:
    """300e9, 300B, 2T, 1.5M, 4096, 1,024 → float; errors name the flag.

    A comma is a thousands separator only between groups of three digits: "2,50" or
    "1,5T" (a decimal comma) would otherwise read as 250 and 15T, a 10–100× error with
    exit 0, so they are refused."""
    if text is None:
        return None
    s = str(text).strip().lower().replace("_", "")
    mult = 1.0
    if s and s[-1] in SUFFIX:
        mult, s = SUFFIX[s[-1]], s[:-1]
    if "," in s:
        if not _GROUPED.match(s):
            raise GpubenchError(f"{flag} {text!r}: a comma here is not a thousands separator; "
                                f"write decimals with a dot (e.g. {EXAMPLES.get(flag, '2.5')})")
        s = s.replace(",", "")
    try:
        value = float(s) * mult
    except ValueError:
        raise GpubenchError(f"{flag} {text!r} is not a number (e.g. {EXAMPLES.get(flag, '4096')})") from None
    if not math.isfinite(value) or value <= 0:
        raise GpubenchError(f"{flag} {text!r} must be a positive number")
    if flag in LIMITS and value > LIMITS[flag]:
        raise GpubenchError(f"{flag} {text!r} is absurdly large (more than {LIMITS[flag]:g})")
    return value


def parse_int(flag: str, text) -> int | None:
    if text is None:
        return None
    v = parse_amount(flag, text)
    if v != int(v):
        raise GpubenchError(f"{flag} {text!r} must be a whole number")
    return int(v)


INT = "INTEGER"
NUM = "NUMBER"


def model_options(f):
    opts = [
        click.option("--model", "model_name", metavar="NAME", help="zoo model (gpubench list models names them)"),
        click.option("--list-models", is_flag=True, help="print the model zoo and exit (as gpubench list models)"),
        click.option("--layers", metavar=INT), click.option("--hidden", metavar=INT),
        click.option("--heads", metavar=INT), click.option("--kv-heads", metavar=INT),
        click.option("--head-dim", metavar=INT, help="per-head width when heads × it is not --hidden"),
        click.option("--ffn-hidden", metavar=INT), click.option("--vocab", metavar=INT),
        click.option("--seq-len", metavar=INT), click.option("--mlp", type=click.Choice(["gelu", "swiglu"])),
        click.option("--experts", metavar=INT, help="routed experts per MoE layer"),
        click.option("--top-k", metavar=INT), click.option("--expert-ffn-hidden", metavar=INT),
        click.option("--shared-experts", metavar=INT, help="experts every token also goes through"),
        click.option("--dense-layers", metavar=INT, help="leading layers with a dense MLP (MoE models)"),
        click.option("--window", metavar=INT, help="sliding-window attention span in tokens"),
        click.option("--window-layers", metavar=INT, help="how many layers use the window (default all)"),
        click.option("--gpu", "gpu_name", metavar="NAME", help="GPU model: a key or short name (h100, a100, b200; gpubench list gpus)"),
        click.option("--list-gpus", is_flag=True, help="print the GPUs and exit (as gpubench list gpus)"),
        click.option("--gpus", metavar=INT, help="number of GPUs"),
        click.option("--gpus-per-node", metavar=INT), click.option("--intra-node-gbps", metavar=NUM),
        click.option("--inter-node-gbps", metavar=NUM, help="network bandwidth per GPU, GB/s"),
        click.option("--power-limit-w", metavar=NUM, help="GPU power cap below its TDP, watts"),
        click.option("--global-batch", metavar=INT,
                     help="sequences per optimizer step (default: about 4M tokens)"),
        click.option("--tokens", metavar=NUM, help="training tokens (300e9, 300B, 2T)"),
        click.option("--steps", metavar=INT, help="optimizer steps (instead of --tokens)"),
        click.option("--precision", type=click.Choice(list(PRECISION_SPELLINGS), case_sensitive=False),
                     default="bf16", show_default=True,
                     help="math the GEMMs run in; fp8 and fp8_e4m3 (gpubench run's name) are the same"),
        click.option("--framework", type=click.Choice(["auto", "megatron", "nemo", "deepspeed", "fsdp"]),
                     default="auto", show_default=True,
                     help="software stack (auto: fsdp for --zero 3, else megatron)"),
        click.option("--compile", is_flag=True, help="torch.compile (fuses an eager stack's element-wise ops)"),
        click.option("--attention", type=click.Choice(["auto", "flash", "unfused", "flash2", "flash3", "cudnn"]),
                     default="auto", show_default=True, help="attention kernel (auto: the stack's)"),
        click.option("--tp-comm-overlap/--no-tp-comm-overlap", default=None,
                     help="overlap tensor-parallel collectives with GEMMs (default: the stack's)"),
        click.option("--moe-imbalance", metavar=NUM,
                     help="busiest expert rank's tokens ÷ the mean (default 1.1)"),
        click.option("--moe-dispatcher", type=click.Choice(["alltoall", "deepep"]), default="alltoall",
                     show_default=True),
        click.option("--price", metavar=NUM, help="USD per GPU-hour (default: the price table's cloud figure)"),
        click.option("--gpu-price", metavar=NUM, help="USD per GPU at purchase (capex view)"),
        click.option("--node-price", metavar=NUM, help="USD per node (acquisition view)"),
        click.option("--electricity-price", metavar=NUM, default="0.0806", show_default=True, help="USD per kWh"),
        click.option("--pue", metavar=NUM, default="1.1", show_default=True),
        click.option("--failures-per-gpu-hour", metavar=NUM,
                     help="interruptions per GPU-hour (default: Llama 3's 1.97e-5)"),
        click.option("--restart-minutes", metavar=NUM, help="minutes lost to each restart (default 10)"),
        click.option("--checkpoint-gbps", metavar=NUM,
                     help="checkpoint write bandwidth per GPU, GB/s (default: Llama 3's 0.12)"),
        click.option("--eval-share", metavar=NUM, help="share of wall time spent evaluating (default 0)"),
        click.option("--no-goodput", is_flag=True, help="whole-run figures for a run that never stops"),
        click.option("--calibration", type=click.Path(path_type=Path), help="profile from gpubench calibrate"),
        click.option("--json", "as_json", is_flag=True, help="print JSON"),
    ]
    for opt in reversed(opts):
        f = opt(f)
    return f


def layout_options(f):
    """Layout flags: estimate fills what is not given with defaults; plan searches it."""
    opts = [
        click.option("--tp", metavar=INT, help="tensor parallel (estimate default 1)"),
        click.option("--cp", metavar=INT, help="context parallel (default 1)"),
        click.option("--pp", metavar=INT, help="pipeline parallel (default 1)"),
        click.option("--vpp", metavar=INT, help="interleaved chunks per pipeline stage (default 1)"),
        click.option("--dp", metavar=INT, help="data-parallel size (default: gpus / (tp·cp·pp))"),
        click.option("--ep", metavar=INT, help="expert parallel (default 1)"),
        click.option("--micro-batch", metavar=INT, help="sequences per micro-batch (default 1)"),
        click.option("--recompute", type=click.Choice(["none", "selective", "full"]),
                     help="activation recomputation (default none)"),
        click.option("--sequence-parallel/--no-sequence-parallel", default=None,
                     help="split norms and dropout over the tensor-parallel ranks"),
        click.option("--zero", type=click.Choice(["0", "1", "2", "3"]),
                     help="ZeRO stage (1: Megatron's distributed optimizer; 3: FSDP)"),
    ]
    for opt in reversed(opts):
        f = opt(f)
    return f


def list_requests(o: dict) -> bool:
    """--list-models / --list-gpus: print and report that nothing else should run."""
    from gpubench import catalog

    if o.get("list_models"):
        click.echo(catalog.render_models(catalog.model_rows()))
        return True
    if o.get("list_gpus"):
        click.echo(catalog.render_gpus(catalog.gpu_rows()))
        return True
    return False


def precision_of(o: dict) -> str:
    """The estimator's precision for either spelling (estimate's fp8, run's fp8_e4m3)."""
    return PRECISION_SPELLINGS[o["precision"].lower()]


def build_model(o: dict):
    from gpubench.estimate.models import ModelConfig, get_model

    names = ("layers", "hidden", "heads", "kv_heads", "head_dim", "ffn_hidden", "vocab", "seq_len", "experts",
             "top_k", "expert_ffn_hidden", "shared_experts", "dense_layers", "window", "window_layers")
    ints = {k: parse_int("--" + k.replace("_", "-"), o.get(k)) for k in names}
    if o.get("model_name"):
        base = get_model(o["model_name"])
        changes = {("head_size" if k == "head_dim" else k): v for k, v in ints.items() if v is not None}
        if o.get("mlp"):
            changes["mlp"] = o["mlp"]
        return base.with_(**changes) if changes else base
    missing = [f"--{k.replace('_', '-')}" for k in ("layers", "hidden", "heads", "seq_len") if ints[k] is None]
    if missing:
        raise GpubenchError(f"give --model NAME or the shape: missing {', '.join(missing)}")
    experts = ints["experts"] or 0
    mlp = o.get("mlp") or "gelu"
    return ModelConfig(
        name=f"custom-{ints['layers']}x{ints['hidden']}", layers=ints["layers"], hidden=ints["hidden"],
        heads=ints["heads"], seq_len=ints["seq_len"], vocab=ints["vocab"] or 51200, kv_heads=ints["kv_heads"],
        head_size=ints["head_dim"], ffn_hidden=ints["ffn_hidden"], mlp=mlp, experts=experts,
        top_k=ints["top_k"] or (2 if experts else 0), expert_ffn_hidden=ints["expert_ffn_hidden"],
        shared_experts=ints["shared_experts"] or 0, dense_layers=ints["dense_layers"] or 0,
        window=ints["window"] or 0, window_layers=ints["window_layers"], tied_embeddings=mlp == "gelu")


def build_cluster(o: dict):
    from gpubench.estimate.cluster import make_cluster

    from gpubench.hardware import alias_note

    if not o.get("gpu_name"):
        raise GpubenchError("--gpu is required (e.g. --gpu h100; gpubench list gpus names them)")
    # Said with the answer, not before it: a command that then fails prints one line.
    o["gpu_note"] = alias_note(o["gpu_name"])
    gpus = parse_int("--gpus", o.get("gpus"))
    if gpus is None:
        raise GpubenchError("--gpus is required")
    return make_cluster(o["gpu_name"], gpus,
                        intra_node_gbps=parse_amount("--intra-node-gbps", o.get("intra_node_gbps")),
                        inter_node_gbps=parse_amount("--inter-node-gbps", o.get("inter_node_gbps")),
                        gpus_per_node=parse_int("--gpus-per-node", o.get("gpus_per_node")),
                        power_limit_w=parse_amount("--power-limit-w", o.get("power_limit_w")))


def resolve_profile(o: dict, cluster):
    from gpubench.estimate.estimator import choose_profile
    from gpubench.estimate.profile import Profile

    prof = Profile.load(o["calibration"]) if o.get("calibration") else None
    return choose_profile(cluster, prof)


def build_economics(o: dict):
    from gpubench.estimate.estimator import Economics

    pue = parse_amount("--pue", o.get("pue"))
    if not 1.0 <= pue <= 3.0:
        raise GpubenchError(f"--pue {pue} must be between 1.0 and 3.0")
    return Economics(usd_per_gpu_hour=parse_amount("--price", o.get("price")),
                     gpu_price_usd=parse_amount("--gpu-price", o.get("gpu_price")),
                     node_price_usd=parse_amount("--node-price", o.get("node_price")),
                     electricity_usd_per_kwh=parse_amount("--electricity-price", o.get("electricity_price")),
                     pue=pue)


def _nonneg(flag: str, text) -> float | None:
    """A number that may be zero (rates and shares)."""
    if text is None:
        return None
    try:
        v = float(str(text).strip())
    except ValueError:
        raise GpubenchError(f"{flag} {text!r} is not a number") from None
    if not math.isfinite(v) or v < 0:
        raise GpubenchError(f"{flag} {text!r} must be a number ≥ 0")
    return v


def build_reliability(o: dict):
    from gpubench.estimate.goodput import Reliability

    kw = {}
    rate = _nonneg("--failures-per-gpu-hour", o.get("failures_per_gpu_hour"))
    if rate is not None:
        kw["failures_per_gpu_hour"] = rate
    restart = _nonneg("--restart-minutes", o.get("restart_minutes"))
    if restart is not None:
        kw["restart_s"] = restart * 60
    ckpt = parse_amount("--checkpoint-gbps", o.get("checkpoint_gbps"))
    if ckpt is not None:
        kw["write_gbps_per_gpu"] = ckpt
    share = _nonneg("--eval-share", o.get("eval_share"))
    if share is not None:
        kw["eval_share"] = share
    return Reliability(enabled=not o.get("no_goodput"), **kw)


def run_options(o: dict) -> dict:
    """Layout settings that are not searched: stack, kernels, MoE routing."""
    imbalance = parse_amount("--moe-imbalance", o.get("moe_imbalance")) if o.get("moe_imbalance") else None
    return {"framework": o.get("framework") or "auto", "compile": bool(o.get("compile")),
            "attention": o.get("attention") or "auto", "tp_comm_overlap": o.get("tp_comm_overlap"),
            "moe_imbalance": imbalance, "moe_dispatcher": o.get("moe_dispatcher") or "alltoall"}


def layout_flags(o: dict) -> dict:
    """The layout flags that were given, parsed (None for those that were not)."""
    out = {k: parse_int("--" + k.replace("_", "-"), o.get(k)) for k in ("tp", "cp", "pp", "vpp", "dp", "ep",
                                                                        "micro_batch")}
    out["recompute"] = o.get("recompute")
    out["sequence_parallel"] = o.get("sequence_parallel")
    out["zero"] = int(o["zero"]) if o.get("zero") is not None else None
    return out


def work_amount(o: dict) -> dict:
    tokens, steps = o.get("tokens"), o.get("steps")
    if tokens is None and steps is None:
        raise GpubenchError("give --tokens (e.g. 300B) or --steps")
    if tokens is not None and steps is not None:
        raise GpubenchError("give --tokens or --steps, not both")
    return {"tokens": parse_amount("--tokens", tokens), "steps": parse_int("--steps", steps)}


@click.command()
@model_options
@layout_options
@click.option("--mfu", metavar=NUM, help="use this model FLOPs utilization instead of the performance model")
@click.option("--hfu", metavar=NUM, help="use this hardware FLOPs utilization instead of the performance model")
@click.option("--ignore-memory", is_flag=True,
              help="estimate a layout given by flags even when it does not fit in GPU memory")
def estimate(**o):
    """Predict step time, MFU, days, GPU-hours, energy and cost of a training run.

    With no layout flags (--tp, --pp, --dp, --cp, --ep, --vpp, --micro-batch, --recompute,
    --sequence-parallel, --zero) the layout is the planner's fastest that fits in memory
    (as `gpubench plan` ranks them). With layout flags it is that layout, the rest at
    their defaults; one that does not fit is refused (--ignore-memory estimates it anyway)."""
    from gpubench.estimate.estimator import estimate as run_estimate

    if list_requests(o):
        return
    model = build_model(o)
    cluster = build_cluster(o)
    given = layout_flags(o)
    work = work_amount(o)
    profile = resolve_profile(o, cluster)
    economics, reliability = build_economics(o), build_reliability(o)
    global_batch = parse_int("--global-batch", o.get("global_batch"))
    if any(v is not None for v in given.values()):
        layout, chosen = _flag_layout(model, cluster, given, global_batch, o), None
    else:
        layout, chosen = _planned_layout(model, cluster, global_batch, o, profile, economics, reliability, work)
    mfu = parse_amount("--mfu", o.get("mfu")) if o.get("mfu") else None
    hfu = parse_amount("--hfu", o.get("hfu")) if o.get("hfu") else None
    result = run_estimate(model, cluster, layout, profile=profile, mfu=mfu, hfu=hfu,
                          economics=economics, reliability=reliability, **work)
    mem = result["memory"]
    if chosen is None and not mem["fits"] and not o.get("ignore_memory"):
        raise GpubenchError(
            f"{_layout_text(result['layout'])} needs {mem['total_gb']:,.1f} GB per GPU and {cluster.gpu.key} "
            f"has {mem['capacity_gb']:g} GB: `gpubench plan` with the same flags finds layouts that fit "
            f"(--ignore-memory estimates this one anyway)")
    result["layout_chosen_by"] = chosen or {"by": "flags"}
    result["gpu_note"] = o["gpu_note"]
    from gpubench.estimate.cost import cloud_price_basis

    price_given = o.get("price") is not None
    used = ((result.get("cost_details") or {}).get("cloud") or {}).get("usd_per_gpu_hour")
    result.setdefault("cost_details", {})["cloud_price"] = cloud_price_basis(cluster.gpu.key, used,
                                                                             given=price_given)
    if o["as_json"]:
        click.echo(json.dumps(result, indent=2, default=float))
    else:
        from gpubench.estimate.report import render_estimate

        if o["gpu_note"]:
            click.echo(o["gpu_note"])
        if chosen:
            click.echo(f"layout: {_layout_text(result['layout'])}, the planner's fastest of the "
                       f"{chosen['fit']:,} layouts that fit in {cluster.gpu.memory_gb:g} GB "
                       f"({chosen['evaluated']:,} tried; gpubench plan ranks them, layout flags fix one)\n")
        click.echo(render_estimate(result, price_given=price_given))


def _layout_text(layout: dict) -> str:
    from gpubench.estimate.report import _layout

    return _layout(layout)


def _flag_layout(model, cluster, given: dict, global_batch, o: dict):
    from gpubench.estimate.perf import make_layout

    return make_layout(
        model, cluster.gpus, tp=given["tp"] or 1, cp=given["cp"] or 1, pp=given["pp"] or 1, dp=given["dp"],
        vpp=given["vpp"] or 1, ep=given["ep"] or 1, micro_batch=given["micro_batch"] or 1,
        global_batch=global_batch, recompute=given["recompute"] or "none",
        sequence_parallel=bool(given["sequence_parallel"]), zero=given["zero"] or 0,
        precision=precision_of(o), **run_options(o))


def _planned_layout(model, cluster, global_batch, o: dict, profile, economics, reliability, work):
    """The layout `gpubench plan` ranks first by time, and how many it chose from."""
    from gpubench.estimate.perf import Layout
    from gpubench.estimate.plan import search

    ranked, stats = search(model, cluster, global_batch=global_batch, precision=precision_of(o), profile=profile,
                           economics=economics, reliability=reliability, rank="time", top=1,
                           constraints=layout_flags(o), options=run_options(o), with_uncertainty=False, **work)
    best = ranked[0]["layout"]
    layout = Layout(**{k: best[k] for k in Layout.__dataclass_fields__})
    return layout, {"by": "planner", "evaluated": stats["evaluated"], "fit": stats["fit"]}


@click.command()
@model_options
@layout_options
@click.option("--rank", type=click.Choice(["time", "cost"]), default="time", show_default=True)
@click.option("--top", default=10, show_default=True, type=int, help="how many layouts to show")
@click.option("--max-layouts", default=500_000, show_default=True, type=int, help="stop the search after this many")
def plan(**o):
    """Search parallel layouts (the layout flags given are constraints), rank by time or cost."""
    from gpubench.estimate.plan import search

    if list_requests(o):
        return
    model = build_model(o)
    cluster = build_cluster(o)
    work = work_amount(o)
    if o["top"] <= 0:
        raise GpubenchError(f"--top {o['top']} must be positive")
    ranked, stats = search(model, cluster, global_batch=parse_int("--global-batch", o.get("global_batch")),
                           precision=precision_of(o), profile=resolve_profile(o, cluster),
                           economics=build_economics(o), reliability=build_reliability(o),
                           rank=o["rank"], top=o["top"], max_layouts=o["max_layouts"],
                           constraints=layout_flags(o), options=run_options(o), **work)
    if o["as_json"]:
        click.echo(json.dumps({"ranked": ranked, "families": stats.get("families", {}),
                               "search": {k: v for k, v in stats.items() if k != "families"},
                               "gpu_note": o["gpu_note"]},
                              indent=2, default=float))
    else:
        from gpubench.estimate.report import render_plan

        if o["gpu_note"]:
            click.echo(o["gpu_note"])
        click.echo(render_plan(ranked, stats, price_given=o.get("price") is not None))


@click.command()
@click.argument("results", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("-o", "--out", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="profile file to write")
@click.option("--force", is_flag=True, help="overwrite --out")
def calibrate(results, out, force):
    """Build a calibration profile from result files (matmul, bandwidth, ...)."""
    from gpubench.estimate.calibrate import build_profile as build

    from gpubench.outfiles import check_output

    check_output(out, "--out", force=force, inputs=results)
    profile, notes = build(results)
    profile = _with_self_check(profile, results, notes)
    profile.save(out)
    for line in notes:
        click.echo(line, err=True)
    where = profile.gpu_key or ((profile.rates or {}).get("device") or {}).get("name")
    click.echo(f"wrote {out} (measured on {where})")


def _with_self_check(profile, results, notes: list[str]):
    """The profile with its machine's self-check verdict, where the files hold training steps."""
    from dataclasses import replace

    from gpubench.estimate.selfcheck import self_check

    try:
        result = self_check(results)
    except GpubenchError as e:
        notes.append(f"self-check: not run ({e})")
        return profile
    s = result["summary"]
    notes.append(f"self-check: median |error| {s['median_abs_error']:.0%} over {s['cases']} training "
                 f"step(s) of this machine (gpubench selfcheck shows them); estimates made with this "
                 f"profile widen their range by it")
    return replace(profile, self_check=s)


@click.command()
@click.argument("results", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="print JSON")
def selfcheck(results, as_json):
    """Predict this machine's own training steps from its own microbenchmarks, and say how far off.

    RESULTS are result files of one machine (e.g. from `gpubench run --suite mixed-precision`):
    every transformer-step record in them is predicted by the performance model from the
    matmul, membw, attention, op-overhead and collective records beside it."""
    from gpubench.estimate.selfcheck import self_check, to_json

    result = self_check(results)
    if as_json:
        click.echo(json.dumps(to_json(result), indent=2, default=float))
        return
    from gpubench.estimate.report import render_selfcheck

    click.echo(render_selfcheck(result))


@click.command()
@click.option("--family", metavar="FAMILY", help="only rows of this family (e.g. fsdp/h100, moe, whole-run)")
@click.option("--rows/--no-rows", "show_rows", default=True, show_default=True, help="print every row")
@click.option("--fit", is_flag=True, help="refit the stacks' compute efficiency on the table and print it")
@click.option("--cv", is_flag=True, help="leave one source out: refit without it, then predict it (slow)")
@click.option("--json", "as_json", is_flag=True, help="print JSON")
def backtest(family, show_rows, fit, cv, as_json):
    """Predict every published run in the back-test table and report the error per family."""
    from gpubench.estimate.backtest import backtest as run_backtest
    from gpubench.estimate.backtest import fit_efficiency, load_runs, summary

    if fit:
        from gpubench.estimate.stacks import EFFICIENCY

        fitted = fit_efficiency()
        if as_json:
            click.echo(json.dumps(fitted, indent=2))
            return
        def in_use(fam, arch):
            return EFFICIENCY.get(fam, {}).get(arch, (float("nan"),))[0]

        rows = [[fam, arch, f"{eta:.4f}", n, f"{rms:.3f}", f"{in_use(fam, arch):.4f}"]
                for fam, t in fitted.items() for arch, (eta, n, rms) in t.items()]
        from tabulate import tabulate

        click.echo(tabulate(rows, headers=["stack family", "arch", "fitted η", "rows", "rms log error", "in use"],
                            disable_numparse=True))
        return
    runs = load_runs()
    if family:
        known = sorted({r.family for r in runs})
        if family not in known:
            raise GpubenchError(f"--family {family!r}: use one of {', '.join(known)}")
        runs = [r for r in runs if r.family == family]
    preds, skipped = run_backtest(runs)
    if cv:
        from gpubench.estimate.backtest import cross_validate

        held = {p.run.id: p for p in cross_validate()}
        for p in preds:
            if p.run.id in held:
                p.predicted = held[p.run.id].predicted
    summ = summary(preds)
    if as_json:
        click.echo(json.dumps({
            "baseline_mfu": getattr(run_backtest, "baseline_mfu", None),
            "families": summ,
            "rows": [{"id": p.run.id, "family": p.run.family, "metric": p.run.metric,
                      "published": p.run.value, "predicted": p.predicted, "error": p.error,
                      "baseline": p.baseline, "baseline_error": p.baseline_error, "fits": p.fits,
                      "source": p.run.row["source"], "assumed": p.run.row["assumed"]} for p in preds],
            "not_predicted": [{"id": r.id, "why": r.excluded} for r in skipped],
        }, indent=2, default=float))
        return
    from gpubench.estimate.report import render_backtest

    click.echo(render_backtest(preds, skipped, summ, getattr(run_backtest, "baseline_mfu", None), show_rows))
