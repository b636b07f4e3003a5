"""Readable output of ``gpubench estimate`` and ``gpubench plan``."""

from __future__ import annotations

from tabulate import tabulate


def _usd(x) -> str:
    if x is None:
        return "—"
    if x >= 1e6:
        return f"${x / 1e6:,.2f}M"
    if x >= 1e3:
        return f"${x / 1e3:,.1f}k"
    return f"${x:,.2f}"


def _layout(lay: dict) -> str:
    parts = [f"tp{lay['tp']}", f"pp{lay['pp']}", f"dp{lay['dp']}"]
    if lay["vpp"] > 1:
        parts.append(f"vpp{lay['vpp']}")
    if lay["ep"] > 1:
        parts.append(f"ep{lay['ep']}")
    parts.append(f"mb{lay['micro_batch']}")
    if lay["recompute"] != "none":
        parts.append(f"recompute={lay['recompute']}")
    if lay["sequence_parallel"]:
        parts.append("sp")
    if lay["zero"]:
        parts.append(f"zero{lay['zero']}")
    return " ".join(parts)


def render_estimate(e: dict) -> str:
    m, c, lay, prof = e["model"], e["cluster"], e["layout"], e["profile"]
    lines = [
        f"{m['name']}: {m['params'] / 1e9:,.1f}B parameters"
        + (f" ({m['active_params'] / 1e9:,.1f}B active)" if m["active_params"] != m["params"] else "")
        + f", {e['tokens'] / 1e9:,.0f}B tokens",
        f"{c['gpus']:,} × {c['gpu']} ({c['nodes']:,} nodes), {lay['precision']}, {_layout(lay)}, "
        f"global batch {lay['global_batch']:,} × {e['tokens_per_step'] // lay['global_batch']:,} tokens",
        f"throughput from the {e['throughput_source']}; profile {prof['name']} (measured on "
        f"{prof['measured_on']}, attention {prof['attention']})",
        "",
    ]
    rows = [
        ["step time", f"{e['step_time_s']:,.2f} s ({e['micro_batches']} micro-batches per replica)"],
        ["tokens/s", f"{e['tokens_per_s']:,.0f} ({e['tokens_per_s'] / c['gpus']:,.0f} per GPU)"],
        ["model TFLOP/s per GPU", f"{e['model_tflops_per_gpu']:,.1f} (MFU {100 * e['mfu']:.1f}%)"],
        ["hardware TFLOP/s per GPU", f"{e['hardware_tflops_per_gpu']:,.1f} (HFU {100 * e['hfu']:.1f}%)"],
        ["training time", f"{e['train_days']:,.1f} days"],
        ["GPU-hours", f"{e['gpu_hours']:,.0f}"],
        ["energy", f"{e['energy_kwh'] / 1e3:,.0f} MWh"],
        ["cost, cloud rental", _usd(e["cost_usd"]["cloud"])],
        ["cost, amortized capex + energy", _usd(e["cost_usd"]["capex_energy"])],
        ["cost, buying the cluster up front", _usd(e["cost_usd"]["acquisition"])],
        ["cost per million tokens", _usd(e["usd_per_million_tokens"])],
    ]
    acq = e["cost_details"].get("acquisition")
    if acq:
        rows.append(["cluster power at full load", f"{acq['power_kw']:,.0f} kW, "
                     f"{_usd(acq['yearly_energy_usd'])} a year at ${acq['electricity_usd_per_kwh']}/kWh"])
    lines.append(tabulate(rows, tablefmt="plain"))
    step = e["model_step_time_s"]
    bd = [[k.removesuffix("_s").replace("_", " "), f"{v:,.3f} s", f"{100 * v / step:.1f}%"]
          for k, v in e["breakdown"].items() if v > 0]
    title = "where a step goes (per GPU on the slowest pipeline stage)"
    if e["throughput_source"] != "performance model":
        title = (f"where a step goes in the performance model ({step:,.2f} s a step; "
                 f"{e['throughput_source']} sets {e['step_time_s']:,.2f} s)")
    lines += ["", title,
              tabulate(bd, headers=["term", "time", "share"], disable_numparse=True)]
    mem = e["memory"]
    lines += ["", f"memory per GPU: {mem['total_gb']:.1f} of {mem['capacity_gb']:.0f} GB "
              f"({'fits' if mem['fits'] else 'DOES NOT FIT'}): weights {mem['weights_gb']:.1f}, "
              f"gradients {mem['gradients_gb']:.1f}, optimizer {mem['optimizer_gb']:.1f}, "
              f"activations {mem['activations_gb']:.1f}, logits {mem['logits_gb']:.1f}, "
              f"reserved {mem['reserved_gb']:.1f}"]
    for w in e["warnings"]:
        lines.append(f"warning: {w}")
    return "\n".join(lines)


def render_plan(results: list[dict], stats: dict) -> str:
    rows = []
    for i, e in enumerate(results, 1):
        rows.append([i, _layout(e["layout"]), f"{e['step_time_s']:,.2f}", f"{100 * e['mfu']:.1f}%",
                     f"{e['train_days']:,.1f}", _usd(e["cost_usd"]["cloud"]),
                     f"{e['memory']['total_gb']:.0f}"])
    head = (f"{stats['evaluated']:,} layouts evaluated in {stats['search_s']:.2f} s "
            f"({stats['layouts_per_s']:,.0f}/s), {stats['fit']:,} fit in memory")
    table = tabulate(rows, headers=["#", "layout", "step s", "MFU", "days", "cloud cost", "GB/GPU"],
                     disable_numparse=True)
    note = f"\n{stats['note']}" if stats.get("note") else ""
    return f"{head}\n\n{table}{note}"


def render_backtest(preds, skipped, summ: dict, baseline_mfu, show_rows: bool) -> str:
    lines = []
    if show_rows:
        rows = [[p.run.id, p.run.family, p.run.metric, f"{p.run.value:,.4g}", f"{p.predicted:,.4g}",
                 f"{100 * p.error:+.1f}%", f"{100 * p.baseline_error:+.1f}%", "yes" if p.fits else "NO"]
                for p in sorted(preds, key=lambda p: (p.run.family, p.run.id))]
        lines += [tabulate(rows, headers=["run", "family", "metric", "published", "predicted", "error",
                                          "baseline", "fits"], disable_numparse=True), ""]
    fam_rows = [[name, s["rows"], f"{100 * s['mae']:.1f}%", f"{100 * s['bias']:+.1f}%",
                 f"{100 * s['worst']:+.1f}%", f"{100 * s['baseline_mae']:.1f}%", f"{100 * s['fit']:.0f}%"]
                for name, s in summ.items()]
    lines.append(tabulate(fam_rows, headers=["family", "rows", "mean |error|", "bias", "worst",
                                             "baseline |error|", "layouts fit"], disable_numparse=True))
    if baseline_mfu:
        lines.append(f"baseline: one MFU constant fitted on these rows ({100 * baseline_mfu:.1f}% of the "
                     f"dense bf16 peak), applied to every row")
    if skipped:
        lines.append(f"{len(skipped)} row(s) not predicted (`--json` lists why): "
                     + ", ".join(r.id for r in skipped[:6]) + (" …" if len(skipped) > 6 else ""))
    return "\n".join(lines)
