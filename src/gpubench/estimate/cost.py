"""Three ways to put a dollar figure on GPU-hours.

1. ``cloud_cost``: rent them. Price per GPU-hour × GPU-hours, the way the
   article prices GPT-3 and MT-NLG on AWS p4de (and Epoch AI's "cloud" method,
   which prefers 3-year committed prices; pass whichever price you mean). The
   default price is the price table's current on-demand offer for the GPU
   (``prices.cloud_price``; ``cloud_price_basis`` says which offer, or that the
   user's ``--price`` replaced it); the article's own 2022 p4de price is
   ``prices.article_price("gpt3-175b")``, used only to reproduce its figures.
2. ``capex_energy_cost``: own them, and charge the run only for the part of the
   hardware's value it uses up. This is Epoch AI's amortized hardware + energy
   method (Cottier et al. 2024, "The rising costs of training frontier AI
   models", arXiv 2405.21015; code: github.com/epoch-research/training-cost-trends):
   cluster cost = GPU price × server overhead / (1 − interconnect share), charged
   at 0.14·ln(10)/8766 of its value per hour; energy = TDP × chip-to-server power
   ratio × average draw × PUE × hours × electricity price.
3. ``acquisition_cost``: buy the cluster outright and run it flat out all year,
   the article's on-premises comparison for MT-NLG (256 DGX A100: the up-front
   bill and a year of power at full load).

All functions are pure and return a flat dict of numbers and strings, with the
unit in every key name, ready for JSON. Bad input raises ``GpubenchError`` with
a message that names the CLI flag for the offending value (see ``FLAGS``).
"""

from __future__ import annotations

import math
from numbers import Real

from gpubench.errors import GpubenchError
from gpubench.estimate import prices as P
from gpubench.hardware import get_gpu

# The flag each parameter is known by on the command line, so an error read on
# a terminal points at what to change.
FLAGS = {
    "gpu_hours": "--gpu-hours",
    "usd_per_gpu_hour": "--usd-per-gpu-hour",
    "gpus": "--gpus",
    "hours": "--hours",
    "gpu_price_usd": "--gpu-price",
    "node_price_usd": "--node-price",
    "gpus_per_node": "--gpus-per-node",
    "node_power_kw": "--node-power-kw",
    "electricity_usd_per_kwh": "--electricity-price",
    "pue": "--pue",
    "utilization_power": "--utilization-power",
    "hours_per_year": "--hours-per-year",
    "cost_usd": "--cost-usd",
    "tokens": "--tokens",
}


# ---------------------------------------------------------------------------
# Input checks.

def _number(name: str, value, *, positive: bool = False) -> float:
    flag = FLAGS.get(name, name)
    # bool is an int subclass: True GPUs is a bug in the caller, not one GPU.
    if isinstance(value, bool) or not isinstance(value, Real) or not math.isfinite(value):
        raise GpubenchError(f"{flag} must be a finite number (got {value!r})")
    if positive and not value > 0:
        raise GpubenchError(f"{flag} must be greater than 0 (got {value!r})")
    if value < 0:
        raise GpubenchError(f"{flag} must not be negative (got {value!r})")
    return float(value)


def _count(name: str, value) -> int:
    number = _number(name, value, positive=True)
    if not number.is_integer():
        raise GpubenchError(f"{FLAGS.get(name, name)} must be a whole number (got {value!r})")
    return int(number)


def _pue(value) -> float:
    pue = _number("pue", value, positive=True)
    # Below 1 would mean the facility powers the servers with less than they draw.
    if pue < 1.0:
        raise GpubenchError(f"--pue must be at least 1.0 (got {value!r})")
    return pue


def _fraction(name: str, value) -> float:
    frac = _number(name, value, positive=True)
    if frac > 1.0:
        raise GpubenchError(f"{FLAGS.get(name, name)} must be at most 1.0 (got {value!r})")
    return frac


# ---------------------------------------------------------------------------
# Shared pieces.

def server_power_kw_per_gpu(gpu_key: str) -> float:
    """Maximum server power attributable to one GPU: TDP × chip-to-server ratio."""
    return get_gpu(gpu_key).tdp_w / 1000.0 * P.chip_to_server_power_ratio(gpu_key)


def energy_kwh(gpus, hours, gpu_key: str, *, pue=P.PUE_HYPERSCALER,
               utilization_power=P.AVG_POWER_FRACTION, server_kw_per_gpu=None) -> float:
    """Facility energy for ``gpus`` GPUs over ``hours``, in kWh.

    gpus × server power per GPU × average draw fraction × PUE × hours. Server
    power per GPU defaults to TDP × chip-to-server ratio (Epoch); pass
    ``server_kw_per_gpu`` to use a known server figure instead.
    """
    n = _count("gpus", gpus)
    h = _number("hours", hours)
    kw = (server_power_kw_per_gpu(gpu_key) if server_kw_per_gpu is None
          else _number("server_kw_per_gpu", server_kw_per_gpu, positive=True))
    return n * kw * _fraction("utilization_power", utilization_power) * _pue(pue) * h


def _purchase_price(gpu_key: str, given, *, hint: str = "--gpu-price") -> float:
    if given is not None:
        return _number("gpu_price_usd", given, positive=True)
    pricing = P.pricing_for(gpu_key)
    if pricing is None or pricing.gpu_purchase_usd is None:
        raise GpubenchError(f"no purchase price for {get_gpu(gpu_key).key}: pass {hint}")
    return pricing.gpu_purchase_usd


def _cluster_capex_per_gpu(gpu_key: str, gpu_price: float) -> float:
    """What one GPU's share of the cluster costs: servers, then the network on top."""
    return gpu_price * P.server_overhead(gpu_key) / (1.0 - P.INTERCONNECT_COST_FRACTION)


# ---------------------------------------------------------------------------
# The three views.

def cloud_cost(gpu_hours, usd_per_gpu_hour) -> dict:
    """Rental: price per GPU-hour × GPU-hours."""
    gh = _number("gpu_hours", gpu_hours)
    price = _number("usd_per_gpu_hour", usd_per_gpu_hour)
    return {"usd": gh * price, "usd_per_gpu_hour": price, "gpu_hours": gh}


def cloud_price_basis(gpu_key: str, usd_per_gpu_hour=None, *, given: bool | None = None) -> dict:
    """Where a $/GPU-hour comes from: the price table's default offer, or the user.

    ``usd_per_gpu_hour`` is the price used (None: the table's default). ``given``
    says whether the user supplied it (``--price``); when it is None, a price that
    is not the table's default counts as given. Returns the price used, its basis
    ("price table" or "--price"), and the table's default offer (provider, offer,
    kind, region, as_of, source and the rule that picked it) when there is one.
    """
    key = get_gpu(gpu_key).key
    default = P.cloud_price(key)
    if usd_per_gpu_hour is None:
        used = default.usd_per_gpu_hour if default else None
        given = False
    else:
        used = _number("usd_per_gpu_hour", usd_per_gpu_hour, positive=True)
        if given is None:
            given = default is None or not math.isclose(used, default.usd_per_gpu_hour, rel_tol=1e-9)
    out = {"gpu": key, "usd_per_gpu_hour": used,
           "basis": "--price" if given else ("price table" if used is not None else "none")}
    if default is not None:
        out |= {"table_usd_per_gpu_hour": default.usd_per_gpu_hour, "provider": default.provider,
                "offer": default.offer, "kind": default.kind, "region": default.region,
                "gpus_per_offer": default.gpus, "offer_price": default.offer_price(),
                "as_of": default.as_of, "source": default.source, "rule": P.DEFAULT_RULE}
    return out


def capex_energy_cost(gpu_key: str, gpus, hours, *, gpu_price_usd=None,
                      electricity_usd_per_kwh=P.ELECTRICITY_USD_PER_KWH_US_INDUSTRIAL_2023,
                      pue=P.PUE_HYPERSCALER, utilization_power=P.AVG_POWER_FRACTION) -> dict:
    """Epoch AI's amortized hardware + energy cost of holding ``gpus`` GPUs for ``hours``.

    The default PUE is the hyperscaler one (1.1); Epoch uses 1.25 for others.
    """
    key = get_gpu(gpu_key).key
    n = _count("gpus", gpus)
    h = _number("hours", hours)
    elec = _number("electricity_usd_per_kwh", electricity_usd_per_kwh)
    price = _purchase_price(key, gpu_price_usd)
    pue_ = _pue(pue)
    util = _fraction("utilization_power", utilization_power)

    capex_per_gpu = _cluster_capex_per_gpu(key, price)
    amortized = capex_per_gpu * P.AMORTIZATION_FRACTION_PER_HOUR
    hardware = n * h * amortized
    kwh = energy_kwh(n, h, key, pue=pue_, utilization_power=util)
    energy = kwh * elec
    total = hardware + energy
    return {
        "method": "epoch-amortized-capex-energy",
        "gpu": key,
        "gpus": n,
        "hours": h,
        "gpu_hours": n * h,
        "gpu_price_usd": price,
        "server_overhead_ratio": P.server_overhead(key),
        "interconnect_cost_fraction": P.INTERCONNECT_COST_FRACTION,
        "cluster_capex_usd": n * capex_per_gpu,
        "depreciation_ooms_per_year": P.DEPRECIATION_OOMS_PER_YEAR,
        "hours_per_year": P.HOURS_PER_YEAR,
        "amortized_usd_per_gpu_hour": amortized,
        "hardware_usd": hardware,
        "tdp_kw": get_gpu(key).tdp_w / 1000.0,
        "chip_to_server_power_ratio": P.chip_to_server_power_ratio(key),
        "utilization_power_fraction": util,
        "pue": pue_,
        "energy_kwh": kwh,
        "electricity_usd_per_kwh": elec,
        "energy_usd": energy,
        "total_usd": total,
        "energy_fraction_of_total": energy / total if total > 0 else 0.0,
    }


def _node_facts(key: str, gpus_per_node, node_price_usd, node_power_kw):
    """Resolve node size, price and power: what was given, else the table, else None."""
    pricing = P.pricing_for(key)
    table = pricing.node if pricing else None
    per_node = (_count("gpus_per_node", gpus_per_node) if gpus_per_node is not None
                else table.gpus_per_node if table else P.DEFAULT_GPUS_PER_NODE)
    # A table node's price and power belong to its own GPU count only.
    same_node = table is not None and table.gpus_per_node == per_node
    price = (_number("node_price_usd", node_price_usd, positive=True)
             if node_price_usd is not None
             else table.node_price_usd if same_node else None)
    power = (_number("node_power_kw", node_power_kw, positive=True)
             if node_power_kw is not None
             else table.node_max_power_kw if same_node else None)
    name = table.name if same_node else f"{per_node}-GPU node"
    return per_node, price, power, name, node_power_kw is not None


def acquisition_cost(gpu_key: str, gpus, *, node_price_usd=None, gpus_per_node=None,
                     node_power_kw=None, gpu_price_usd=None,
                     electricity_usd_per_kwh=P.ELECTRICITY_USD_PER_KWH_US_INDUSTRIAL_2023,
                     pue=1.0, hours_per_year=P.HOURS_PER_YEAR) -> dict:
    """Buy whole nodes for ``gpus`` GPUs up front, and power them at full load all year.

    Up front: nodes × node price when a node price is known (given, or in the
    table and no GPU price was given); otherwise GPUs bought × GPU price ×
    server overhead / (1 − interconnect share), Epoch's cluster cost. Power:
    nodes × node maximum power, estimated as GPUs × TDP × chip-to-server ratio
    when no node figure is known. The year of energy assumes the cluster
    retrains constantly at full load; PUE defaults to 1.0 (IT power only), as in
    the article.
    """
    key = get_gpu(gpu_key).key
    n = _count("gpus", gpus)
    elec = _number("electricity_usd_per_kwh", electricity_usd_per_kwh)
    year_h = _number("hours_per_year", hours_per_year)
    pue_ = _pue(pue)
    per_node, node_price, node_power, node_name, power_given = _node_facts(
        key, gpus_per_node, node_price_usd, node_power_kw)
    nodes = math.ceil(n / per_node)
    out = {"gpu": key, "gpus": n, "gpus_per_node": per_node, "nodes": nodes,
           "node": node_name}

    # An explicit GPU price overrides the table's node price, not a given one.
    if node_price is not None and (gpu_price_usd is None or node_price_usd is not None):
        out |= {"node_price_usd": node_price, "upfront_usd": nodes * node_price,
                "upfront_basis": "nodes x node price (servers; no cluster network)"}
    else:
        price = _purchase_price(key, gpu_price_usd, hint="--gpu-price or --node-price")
        out |= {"gpu_price_usd": price,
                "server_overhead_ratio": P.server_overhead(key),
                "interconnect_cost_fraction": P.INTERCONNECT_COST_FRACTION,
                "upfront_usd": nodes * per_node * _cluster_capex_per_gpu(key, price),
                "upfront_basis": "GPUs x GPU price x server overhead / (1 - interconnect "
                                 "share) (Epoch cluster cost)"}

    if node_power is None:
        node_power = per_node * server_power_kw_per_gpu(key)
        power_basis = "GPUs x TDP x chip-to-server power ratio (estimated)"
    else:
        power_basis = "given node power" if power_given else "node maximum power (datasheet)"
    kwh_year = energy_kwh(nodes * per_node, year_h, key, pue=pue_, utilization_power=1.0,
                          server_kw_per_gpu=node_power / per_node)
    out |= {
        "node_power_kw": node_power,
        "power_kw": nodes * node_power,
        "power_basis": power_basis,
        "pue": pue_,
        "hours_per_year": year_h,
        "energy_kwh_per_year": kwh_year,
        "electricity_usd_per_kwh": elec,
        "yearly_energy_usd": kwh_year * elec,
    }
    return out


def usd_per_million_tokens(cost_usd, tokens) -> float:
    """Cost per million training tokens."""
    return _number("cost_usd", cost_usd) / _number("tokens", tokens, positive=True) * 1e6


__all__ = ["FLAGS", "acquisition_cost", "capex_energy_cost", "cloud_cost", "cloud_price_basis",
           "energy_kwh", "server_power_kw_per_gpu", "usd_per_million_tokens"]
