"""``gpubench estimate``, ``gpubench plan`` and ``gpubench calibrate``.

The model, cluster, layout and price flags are shared by ``estimate`` and ``plan``
(plan searches the layout flags it is not given).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import click

from gpubench.errors import GpubenchError

SUFFIX = {"k": 1e3, "m": 1e6, "b": 1e9, "g": 1e9, "t": 1e12, "p": 1e15}
LIMITS = {"--gpus": 10_000_000, "--tokens": 1e17, "--steps": 1e9, "--price": 10_000.0,
          "--gpu-price": 10_000_000.0, "--node-price": 100_000_000.0, "--electricity-price": 10.0,
          "--global-batch": 1e8, "--micro-batch": 1e5, "--seq-len": 1e8, "--layers": 1e5,
          "--hidden": 1e7, "--heads": 1e5, "--vocab": 1e8}


def parse_amount(flag: str, text) -> float:
    """300e9, 300B, 2T, 1.5M, 4096 → float; errors name the flag."""
    if text is None:
        return None
    s = str(text).strip().lower().replace("_", "").replace(",", "")
    mult = 1.0
    if s and s[-1] in SUFFIX:
        mult, s = SUFFIX[s[-1]], s[:-1]
    try:
        value = float(s) * mult
    except ValueError:
        raise GpubenchError(f"{flag} {text!r} is not a number (e.g. 300e9 or 300B)") from None
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


def model_options(f):
    opts = [
        click.option("--model", "model_name", help="zoo model (gpubench estimate --list-models)"),
        click.option("--layers"), click.option("--hidden"), click.option("--heads"),
        click.option("--kv-heads"), click.option("--ffn-hidden"), click.option("--vocab"),
        click.option("--seq-len"), click.option("--mlp", type=click.Choice(["gelu", "swiglu"])),
        click.option("--experts"), click.option("--top-k"), click.option("--expert-ffn-hidden"),
        click.option("--gpu", "gpu_name", help="GPU model (h100-sxm, a100-80gb, …)"),
        click.option("--gpus", help="number of GPUs"),
        click.option("--gpus-per-node"), click.option("--intra-node-gbps"), click.option("--inter-node-gbps"),
        click.option("--global-batch", help="sequences per optimizer step"),
        click.option("--tokens", help="training tokens (300e9, 300B, 2T)"),
        click.option("--steps", help="optimizer steps (instead of --tokens)"),
        click.option("--precision", type=click.Choice(["bf16", "fp16", "fp8", "tf32", "fp32"]), default="bf16",
                     show_default=True),
        click.option("--price", help="USD per GPU-hour (default: the price table's cloud figure)"),
        click.option("--gpu-price", help="USD per GPU at purchase (capex view)"),
        click.option("--node-price", help="USD per node (acquisition view)"),
        click.option("--electricity-price", default="0.0806", show_default=True, help="USD per kWh"),
        click.option("--pue", default="1.1", show_default=True),
        click.option("--calibration", type=click.Path(path_type=Path), help="profile from gpubench calibrate"),
        click.option("--attention", type=click.Choice(["flash", "unfused"]),
                     help="attention implementation (default: the profile's)"),
        click.option("--json", "as_json", is_flag=True, help="print JSON"),
    ]
    for opt in reversed(opts):
        f = opt(f)
    return f


def build_model(o: dict):
    from gpubench.estimate.models import ModelConfig, get_model

    explicit = {k: o.get(k) for k in ("layers", "hidden", "heads", "kv_heads", "ffn_hidden", "vocab",
                                       "seq_len", "mlp", "experts", "top_k", "expert_ffn_hidden")}
    ints = {k: parse_int("--" + k.replace("_", "-"), v) for k, v in explicit.items() if k != "mlp"}
    if o.get("model_name"):
        base = get_model(o["model_name"])
        changes = {k: v for k, v in ints.items() if v is not None}
        if explicit["mlp"]:
            changes["mlp"] = explicit["mlp"]
        return base.with_(**changes) if changes else base
    missing = [f"--{k.replace('_', '-')}" for k in ("layers", "hidden", "heads", "seq_len") if ints[k] is None]
    if missing:
        raise GpubenchError(f"give --model NAME or the shape: missing {', '.join(missing)}")
    experts = ints["experts"] or 0
    return ModelConfig(
        name=f"custom-{ints['layers']}x{ints['hidden']}", layers=ints["layers"], hidden=ints["hidden"],
        heads=ints["heads"], seq_len=ints["seq_len"], vocab=ints["vocab"] or 51200, kv_heads=ints["kv_heads"],
        ffn_hidden=ints["ffn_hidden"], mlp=explicit["mlp"] or "gelu", experts=experts,
        top_k=ints["top_k"] or (2 if experts else 0), expert_ffn_hidden=ints["expert_ffn_hidden"],
        tied_embeddings=(explicit["mlp"] or "gelu") == "gelu")


def build_cluster(o: dict):
    from gpubench.estimate.cluster import make_cluster

    if not o.get("gpu_name"):
        raise GpubenchError("--gpu is required (e.g. --gpu h100-sxm)")
    gpus = parse_int("--gpus", o.get("gpus"))
    if gpus is None:
        raise GpubenchError("--gpus is required")
    return make_cluster(o["gpu_name"], gpus,
                        intra_node_gbps=parse_amount("--intra-node-gbps", o.get("intra_node_gbps")),
                        inter_node_gbps=parse_amount("--inter-node-gbps", o.get("inter_node_gbps")),
                        gpus_per_node=parse_int("--gpus-per-node", o.get("gpus_per_node")))


def resolve_profile(o: dict, cluster):
    from dataclasses import replace

    from gpubench.estimate.estimator import choose_profile
    from gpubench.estimate.profile import Profile

    prof = Profile.load(o["calibration"]) if o.get("calibration") else None
    prof = choose_profile(cluster, prof)
    if o.get("attention"):
        prof = replace(prof, attention=o["attention"])
    return prof


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


def work_amount(o: dict) -> dict:
    tokens, steps = o.get("tokens"), o.get("steps")
    if tokens is None and steps is None:
        raise GpubenchError("give --tokens (e.g. 300B) or --steps")
    if tokens is not None and steps is not None:
        raise GpubenchError("give --tokens or --steps, not both")
    return {"tokens": parse_amount("--tokens", tokens), "steps": parse_int("--steps", steps)}


@click.command()
@model_options
@click.option("--tp", default="1", show_default=True)
@click.option("--pp", default="1", show_default=True)
@click.option("--vpp", default="1", show_default=True)
@click.option("--dp", help="data-parallel size (default: gpus / (tp·pp))")
@click.option("--ep", default="1", show_default=True)
@click.option("--micro-batch", default="1", show_default=True)
@click.option("--recompute", type=click.Choice(["none", "selective", "full"]), default="none", show_default=True)
@click.option("--sequence-parallel", is_flag=True)
@click.option("--zero", type=click.Choice(["0", "1", "2", "3"]), default="0", show_default=True)
@click.option("--mfu", help="use this model FLOPs utilization instead of the performance model")
@click.option("--hfu", help="use this hardware FLOPs utilization instead of the performance model")
def estimate(**o):
    """Predict step time, MFU, days, GPU-hours, energy and cost of a training run."""
    from gpubench.estimate.estimator import estimate as run_estimate
    from gpubench.estimate.perf import make_layout

    model = build_model(o)
    cluster = build_cluster(o)
    layout = make_layout(
        model, cluster.gpus, tp=parse_int("--tp", o["tp"]), pp=parse_int("--pp", o["pp"]),
        dp=parse_int("--dp", o.get("dp")), vpp=parse_int("--vpp", o["vpp"]), ep=parse_int("--ep", o["ep"]),
        micro_batch=parse_int("--micro-batch", o["micro_batch"]),
        global_batch=parse_int("--global-batch", o.get("global_batch")), recompute=o["recompute"],
        sequence_parallel=o["sequence_parallel"], zero=int(o["zero"]), precision=o["precision"])
    mfu = parse_amount("--mfu", o.get("mfu")) if o.get("mfu") else None
    hfu = parse_amount("--hfu", o.get("hfu")) if o.get("hfu") else None
    result = run_estimate(model, cluster, layout, profile=resolve_profile(o, cluster), mfu=mfu, hfu=hfu,
                          economics=build_economics(o), **work_amount(o))
    if o["as_json"]:
        click.echo(json.dumps(result, indent=2, default=float))
    else:
        from gpubench.estimate.report import render_estimate

        click.echo(render_estimate(result))


@click.command()
@model_options
@click.option("--rank", type=click.Choice(["time", "cost"]), default="time", show_default=True)
@click.option("--top", default=10, show_default=True, help="how many layouts to show")
@click.option("--max-layouts", default=200_000, show_default=True, help="stop the search after this many")
def plan(**o):
    """Search parallel layouts, drop those that do not fit, rank by time or cost."""
    from gpubench.estimate.plan import search

    model = build_model(o)
    cluster = build_cluster(o)
    work = work_amount(o)
    global_batch = parse_int("--global-batch", o.get("global_batch"))
    if global_batch is None:
        raise GpubenchError("plan needs --global-batch (sequences per step)")
    if o["top"] <= 0:
        raise GpubenchError(f"--top {o['top']} must be positive")
    ranked, stats = search(model, cluster, global_batch=global_batch, precision=o["precision"],
                           profile=resolve_profile(o, cluster), economics=build_economics(o),
                           rank=o["rank"], top=o["top"], max_layouts=o["max_layouts"], **work)
    if o["as_json"]:
        click.echo(json.dumps(ranked, indent=2, default=float))
    else:
        from gpubench.estimate.report import render_plan

        click.echo(render_plan(ranked, stats))


@click.command()
@click.argument("results", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("-o", "--out", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="profile file to write")
@click.option("--force", is_flag=True, help="overwrite --out")
def calibrate(results, out, force):
    """Build a calibration profile from result files (matmul, bandwidth, ...)."""
    from gpubench.estimate.calibrate import build_profile as build

    if out.exists() and not force:
        raise GpubenchError(f"--out {out} already exists; pass --force to overwrite")
    profile, notes = build(results)
    profile.save(out)
    for line in notes:
        click.echo(line, err=True)
    click.echo(f"wrote {out} (measured on {profile.gpu_key})")


@click.command()
@click.option("--family", help="only rows of this family (e.g. fsdp/h100, moe, whole-run)")
@click.option("--rows/--no-rows", "show_rows", default=True, show_default=True, help="print every row")
@click.option("--json", "as_json", is_flag=True, help="print JSON")
def backtest(family, show_rows, as_json):
    """Predict every published run in the back-test table and report the error per family."""
    from gpubench.estimate.backtest import backtest as run_backtest
    from gpubench.estimate.backtest import load_runs, summary

    runs = load_runs()
    if family:
        known = sorted({r.family for r in runs})
        if family not in known:
            raise GpubenchError(f"--family {family!r}: use one of {', '.join(known)}")
        runs = [r for r in runs if r.family == family]
    preds, skipped = run_backtest(runs)
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
