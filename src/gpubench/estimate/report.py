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
    parts = [f"tp{lay['tp']}"] + ([f"cp{lay['cp']}"] if lay.get("cp", 1) > 1 else []) + [f"pp{lay['pp']}",
                                                                                         f"dp{lay['dp']}"]
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


def _range(lo, hi, fmt) -> str:
    return f"{fmt(lo)}–{fmt(hi)}"


def _cloud_price(e: dict, price_given: bool | None) -> tuple[str, str | None]:
    """The $/GPU-hour the cloud cost used, with its provenance, and its source line.

    ``price_given``: whether the user passed --price (None: inferred, a price that
    is not the table's default counting as given).
    """
    from gpubench.estimate.cost import cloud_price_basis

    gpu = e["cluster"]["gpu"]
    cloud = e["cost_details"].get("cloud")
    if not cloud:
        return f"none: the price table has no current price for {gpu} (pass --price)", None
    b = cloud_price_basis(gpu, cloud["usd_per_gpu_hour"], given=price_given)
    used = f"${b['usd_per_gpu_hour']:,.2f}/GPU-hour"
    region = f", {b['region']}" if b.get("region") else ""
    if b["basis"] == "--price":
        if "provider" not in b:
            return f"{used}, given with --price (the price table has none for {gpu})", None
        return (f"{used}, given with --price (replaces the price table's "
                f"${b['table_usd_per_gpu_hour']:,.2f}, {b['provider']} {b['offer']} {b['kind']}"
                f"{region}, as of {b['as_of']})"), None
    return (f"{used}: {b['provider']} {b['offer']} {b['kind']}{region}, {b['offer_price']}, as of "
            f"{b['as_of']} (the price table's default: on-demand, same period for every GPU, "
            f"AWS first; --price replaces it)"), f"cloud price source ({b['as_of']}): {b['source']}"


def _count(x: float) -> str:
    """15M, 300B, 15T: a token count in the unit it reaches (a small run is not "0.0B")."""
    for unit, size in (("T", 1e12), ("B", 1e9), ("M", 1e6), ("k", 1e3)):
        if x >= size:
            return f"{x / size:,.1f}{unit}"
    return f"{x:,.0f}"


def _duration_days(days: float) -> str:
    if days >= 1:
        return f"{days:,.1f} days"
    return f"{days * 24:,.1f} hours" if days * 24 >= 1 else f"{days * 1440:,.1f} minutes"


def _energy(kwh: float) -> str:
    return f"{kwh / 1e3:,.0f} MWh" if kwh >= 1e4 else f"{kwh:,.1f} kWh"


def render_estimate(e: dict, *, price_given: bool | None = None) -> str:
    m, c, lay, prof = e["model"], e["cluster"], e["layout"], e["profile"]
    unc = e.get("uncertainty")
    level = f"{int(100 * unc['level'])}%" if unc else ""
    lines = [
        f"{m['name']}: {m['params'] / 1e9:,.1f}B parameters"
        + (f" ({m['active_params'] / 1e9:,.1f}B active)" if m["active_params"] != m["params"] else "")
        + f", {_count(e['tokens'])} tokens",
        f"{c['gpus']:,} × {c['gpu']} ({c['nodes']:,} node{'s' if c['nodes'] != 1 else ''}), {lay['precision']}, {_layout(lay)}, "
        f"global batch {lay['global_batch']:,} × {e['tokens_per_step'] // lay['global_batch']:,} tokens",
        f"throughput from the {e['throughput_source']}; stack {e['framework']} (attention {prof['attention']}); "
        f"profile {prof['name']} (measured on {prof['measured_on']})",
        "",
    ]
    good = e["goodput"]
    ideal = e["ideal"]
    price_line, price_source = _cloud_price(e, price_given)
    step = f"{e['step_time_s']:,.2f} s ({e['micro_batches']} micro-batches per replica)"
    if unc:
        step += f"; {level} range {_range(*unc['step_time_s'], lambda x: f'{x:,.2f}')} s"
    rows = [
        ["step time", step],
        ["tokens/s", f"{e['tokens_per_s']:,.0f} ({e['tokens_per_s'] / c['gpus']:,.0f} per GPU)"],
        ["model TFLOP/s per GPU", f"{e['model_tflops_per_gpu']:,.1f} (MFU {100 * e['mfu']:.1f}%)"],
        ["hardware TFLOP/s per GPU", f"{e['hardware_tflops_per_gpu']:,.1f} (HFU {100 * e['hfu']:.1f}%)"],
        ["training time", f"{_duration_days(e['train_days'])} ({_duration_days(ideal['train_days'])} "
                          f"uninterrupted; goodput {100 * good['goodput']:.1f}%)"],
        ["GPU-hours", f"{e['gpu_hours']:,.0f}" + (f" ({level} range "
                                                   f"{_range(*unc['gpu_hours'], lambda x: f'{x:,.0f}')})"
                                                   if unc else "")],
        ["energy", _energy(e["energy_kwh"])],
        ["cost, cloud rental", _usd(e["cost_usd"]["cloud"]) + (
            f" at ${e['cost_details']['cloud']['usd_per_gpu_hour']:,.2f}/GPU-hour"
            if e["cost_details"].get("cloud") else "") + (
            f" ({level} range {_range(*unc['cost_usd_cloud'], _usd)})" if unc and unc["cost_usd_cloud"] else "")],
        ["cloud price", price_line],
        ["cost, amortized capex + energy", _usd(e["cost_usd"]["capex_energy"])],
        ["cost, buying the cluster up front", _usd(e["cost_usd"]["acquisition"])],
        ["cost per million tokens", _usd(e["usd_per_million_tokens"])],
    ]
    acq = e["cost_details"].get("acquisition")
    if acq:
        rows.append(["cluster power at full load", f"{acq['power_kw']:,.0f} kW, "
                     f"{_usd(acq['yearly_energy_usd'])} a year at ${acq['electricity_usd_per_kwh']}/kWh"])
    lines.append(tabulate(rows, tablefmt="plain"))
    if price_source:
        lines.append(price_source)
    step_s = e["model_step_time_s"]
    bd = [[k.removesuffix("_s").replace("_", " "), f"{v:,.3f} s", f"{100 * v / step_s:.1f}%"]
          for k, v in e["breakdown"].items() if v > 0]
    title = "where a step goes (per GPU on the slowest pipeline stage)"
    if e["throughput_source"] != "performance model":
        title = (f"where a step goes in the performance model ({step_s:,.2f} s a step; "
                 f"{e['throughput_source']} sets {e['step_time_s']:,.2f} s)")
    lines += ["", title,
              tabulate(bd, headers=["term", "time", "share"], disable_numparse=True)]
    hidden = [f"{k.removesuffix('_s').replace('_', ' ')} {v:,.3f} s" for k, v in e.get("overlaps", {}).items()
              if v > 0 and "hidden" in k]
    if hidden:
        lines.append("overlapped (not in the step time): " + "; ".join(hidden))
    if good.get("failures"):
        lines.append(f"whole run: {good['failures']:,.1f} expected interruptions (restarts "
                     f"{good['restart_loss_s'] / 3600:,.1f} h, lost work {good['rework_loss_s'] / 3600:,.1f} h), "
                     f"checkpoints {good['checkpoint_s']:,.0f} s every "
                     f"{(good['checkpoint_interval_s'] or 0) / 60:,.0f} "
                     f"min ({good['checkpoint_loss_s'] / 3600:,.1f} h)")
    mem = e["memory"]
    lines += ["", f"memory per GPU: {mem['total_gb']:.1f} of {mem['capacity_gb']:.0f} GB "
              f"({'fits' if mem['fits'] else 'DOES NOT FIT'}): weights {mem['weights_gb']:.1f}, "
              f"gradients {mem['gradients_gb']:.1f}, optimizer {mem['optimizer_gb']:.1f}, "
              f"activations {mem['activations_gb']:.1f}, logits {mem['logits_gb']:.1f}, "
              f"allocator {mem['allocator_overhead_gb']:.1f}, reserved {mem['reserved_gb']:.1f}"]
    if unc:
        lines.append(f"range: {unc['basis']}")
    for w in e["warnings"]:
        lines.append(f"warning: {w}")
    return "\n".join(lines)


def render_plan(results: list[dict], stats: dict, *, price_given: bool | None = None) -> str:
    def row(i, e):
        return [i, _layout(e["layout"]), e.get("family", ""), f"{e['step_time_s']:,.2f}", f"{100 * e['mfu']:.1f}%",
                f"{e['train_days']:,.1f}", _usd(e["cost_usd"]["cloud"]), f"{e['memory']['total_gb']:.0f}"]

    headers = ["#", "layout", "family", "step s", "MFU", "days", "cloud cost", "GB/GPU"]
    head = (f"{stats['evaluated']:,} layouts evaluated in {stats['search_s']:.2f} s "
            f"({stats['layouts_per_s']:,.0f}/s), {stats['fit']:,} fit in memory")
    table = tabulate([row(i, e) for i, e in enumerate(results, 1)], headers=headers, disable_numparse=True)
    out = f"{head}\n\n{table}"
    fams = stats.get("families") or {}
    if fams:    # the family is the row's name: no number, no second family column
        fam_rows = [[f] + row(f, e)[1:2] + row(f, e)[3:] for f, e in fams.items()]
        out += "\n\nbest of each family\n" + tabulate(fam_rows, headers=["family"] + headers[1:2] + headers[3:],
                                                      disable_numparse=True)
    if results and results[0].get("uncertainty"):
        u = results[0]["uncertainty"]
        lo, hi = u["step_time_s"]
        out += (f"\n{int(100 * u['level'])}% range of the first layout's step time: {lo:,.2f}–{hi:,.2f} s "
                f"({u['basis'].split(';')[0]})")
    if results:
        out += f"\ncloud cost at {_cloud_price(results[0], price_given)[0]}"
    if stats.get("note"):
        out += f"\n{stats['note']}"
    return out


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


def _ms(x) -> str:
    return "—" if x is None else f"{x * 1e3:.3g} ms"


def _label(record) -> str:
    from gpubench.registry import get_benchmark

    try:
        return get_benchmark(record.benchmark).label(record.params)
    except Exception:       # a record of an older schema: its case id says it all
        return record.case_id


def render_selfcheck(result: dict) -> str:
    """Predicted against measured step time per case, where the time goes, and the verdict."""
    from gpubench.estimate.selfcheck import TERMS

    dev = result["device"]
    rows, skipped = [], []
    for c in result["cases"]:
        if c.predicted_s is None:
            skipped.append(f"  {_label(c.record)}: {c.why}")
            continue
        b = c.breakdown
        total = sum(b[k] for k, _ in TERMS) or 1.0
        top = sorted(((b[k] / total, name) for k, name in TERMS if b[k] > 0), reverse=True)[:3]
        noisy = c.cov is not None and c.cov > 0.1
        rows.append([_label(c.record), _ms(c.measured_s) + (" ±" if noisy else ""), _ms(c.predicted_s),
                     f"{c.error:+.0%}", "—" if c.in_step_rate is None else f"{c.in_step_rate:.2f}",
                     ", ".join(f"{name} {share:.0%}" for share, name in top)])
    s = result["summary"]
    lines = [f"self-check on {dev.get('name')} ({dev.get('type')}): the performance model predicts this "
             f"machine's own training steps from its own microbenchmarks",
             tabulate(rows, headers=["step", "measured", "predicted", "error", "in-step rate",
                                     "predicted time goes to"], disable_numparse=True)]
    if any(r[1].endswith("±") for r in rows):
        lines.append("± the measured step's CoV is above 10%: the error is partly the measurement's")
    if skipped:
        lines.append(f"not predicted ({len(skipped)}):")
        lines.extend(skipped)
    lines.append("in-step rate: the share of their isolated speed GEMMs and attention must have reached "
                 "inside the step for the prediction to be exact (the rest held)")
    eta = s["median_in_step_rate"]
    lines.append(f"median |error| {s['median_abs_error']:.0%} over {s['cases']} step(s), worst "
                 f"{s['max_abs_error']:.0%}; kernels ran at {eta:.2f}× their isolated speed inside the "
                 f"steps (median in-step rate)" if eta else
                 f"median |error| {s['median_abs_error']:.0%} over {s['cases']} step(s), worst "
                 f"{s['max_abs_error']:.0%}")
    if s.get("median_step_cov") is not None:
        lines.append(f"the measured steps' own spread: median CoV {s['median_step_cov']:.0%} (an error "
                     f"within it is noise as much as model)")
    if s.get("kernel_median_cov") is not None:
        lines.append(f"the kernels it predicts from: median CoV {s['kernel_median_cov']:.0%}, "
                     f"{s['kernel_noisy']} of {s['kernel_cases']} noisy"
                     + (" (a busy machine: rerun when it is idle before reading the errors as the model's)"
                        if s["kernel_noisy"] * 2 > s["kernel_cases"] else ""))
    for a in result["rates"].assumptions:
        lines.append(f"assumed: {a}")
    return "\n".join(lines)
