"""What ``gpubench list`` prints: the names every other command accepts, with what they mean.

One function per list, each returning plain rows (for the table and for ``--json``), so
that a test can hold the list to the registries it claims to show: a name printed here
is a name ``estimate``, ``plan`` or ``run`` takes.
"""

from __future__ import annotations

LISTS = ("suites", "benchmarks", "precisions", "models", "gpus")


def gpu_rows() -> list[dict]:
    """Every GPU of the hardware table: how to type it, memory, dense peaks, the price used."""
    from gpubench.estimate.cluster import FACTS
    from gpubench.hardware import GPUS, aliases_of

    rows = []
    for key, spec in GPUS.items():
        price = _price(key)
        rows.append({
            "key": key, "name": spec.name, "aliases": aliases_of(key),
            "memory_gb": spec.memory_gb, "mem_bandwidth_gbps": spec.mem_bandwidth_gbps,
            "dense_peak_tflops": dict(spec.peak_tflops),
            "estimate": key in FACTS,       # interconnect facts: estimate and plan take it
            "price": price,
        })
    return rows


def _price(key: str) -> dict | None:
    """The $/GPU-hour ``estimate`` charges by default, with where and when it was listed."""
    from gpubench.estimate import prices

    p = prices.cloud_price(key)
    if p is None:
        return None
    return {"usd_per_gpu_hour": p.usd_per_gpu_hour, "provider": p.provider, "offer": p.offer,
            "kind": p.kind, "as_of": p.as_of, "source": p.source}


def model_rows() -> list[dict]:
    """The model zoo: parameter counts, shape, and where each configuration comes from."""
    from gpubench.estimate.models import ALIASES, ZOO

    rows = []
    for name, m in ZOO.items():
        rows.append({
            "name": name, "aliases": sorted(a for a, k in ALIASES.items() if k == name),
            "params_b": m.params() / 1e9, "active_params_b": m.params(active=True) / 1e9 if m.is_moe else None,
            "layers": m.layers, "hidden": m.hidden, "heads": m.heads, "kv_heads": m.kv_heads or m.heads,
            "seq_len": m.seq_len, "experts": m.experts, "source": m.source,
        })
    return rows


def render_gpus(rows: list[dict]) -> str:
    from tabulate import tabulate

    def peak(r, k):
        v = r["dense_peak_tflops"].get(k)
        return f"{v:,.0f}" if v else "—"

    body = []
    for r in rows:
        p = r["price"]
        body.append([r["key"], ", ".join(r["aliases"]) or "", f"{r['memory_gb']:g}",
                     f"{r['mem_bandwidth_gbps']:,.0f}", peak(r, "fp32"), peak(r, "tf32"), peak(r, "bf16"),
                     peak(r, "fp8"), f"${p['usd_per_gpu_hour']:.2f}" if p else "—",
                     f"{p['provider'] or ''} {p['as_of']}".strip() if p else "no price: pass --price"]
                    + ([] if all(x["estimate"] for x in rows) else ["yes" if r["estimate"] else "no (run only)"]))
    headers = ["--gpu", "also typed as", "GB", "HBM GB/s", "fp32", "tf32", "bf16", "fp8", "$/GPU-h", "price from"]
    if not all(x["estimate"] for x in rows):
        headers.append("estimate")
    table = tabulate(body, headers=headers, disable_numparse=True)
    notes = ["dense datasheet peaks in TFLOP/s (no sparsity); a short name picks the form shown "
             "(SXM, the larger memory)", "prices: the on-demand $/GPU-hour estimate charges unless "
             "--price is given; sources:"]
    notes += [f"  {r['key']}: {r['price']['source']}" for r in rows if r["price"]]
    return table + "\n\n" + "\n".join(notes)


def render_models(rows: list[dict]) -> str:
    from tabulate import tabulate

    body = [[r["name"], ", ".join(r["aliases"]),
             f"{r['params_b']:,.1f}B" + (f" ({r['active_params_b']:,.1f}B active)" if r["active_params_b"] else ""),
             r["layers"], r["hidden"], f"{r['heads']}/{r['kv_heads']}", r["seq_len"], r["source"]]
            for r in rows]
    return tabulate(body, headers=["--model", "also", "parameters", "layers", "hidden", "heads/kv", "seq",
                                   "source"], disable_numparse=True)
