"""Sourced prices and system facts per GPU, and Epoch AI's cost-model parameters.

Four kinds of numbers live here.

* Cloud prices (``CLOUD_PRICES``, ``cloud_price``, ``cloud_prices``): what renting
  one GPU for an hour costs now, offer by offer (AWS, Azure, Google Cloud, Lambda,
  CoreWeave; on-demand, and committed where a cloud publishes it), each with its
  provider, instance type or product, region, kind of offer, the month it was read
  (``as_of``) and where exactly it was read (``source``). Every GPU's default
  $/GPU-hour is picked from this table by one rule (``DEFAULT_RULE``: on-demand,
  the same period for every GPU, AWS first where AWS rents the GPU), so that
  comparing two GPUs compares GPUs, not years.
* Historical prices (``HISTORICAL_PRICES``, ``article_price``): the dated figures
  the project's source article and papers computed with (AWS p4de in 2022 for
  GPT-3 and MT-NLG, $2.28 for M6-10T, DeepSeek's assumed $2 for H800s, AWS p5's
  2023 launch price). The reproductions use them by name; they are never a default.
* Per-GPU facts (``PRICES``): the default cloud price above, a single-GPU purchase
  price, and the 8-GPU server ("node") the GPU usually ships in, with its price and
  maximum power. Every figure carries a source (title or URL) and the month it
  held, because GPU prices move by 2x within a product's life: a price without a
  date is not a fact. A figure nobody could source is ``None``, never a
  neighbour's number; callers then ask the user for it.
* Epoch AI's amortized-cost parameters (module constants), from Cottier et al.
  2024, "The rising costs of training frontier AI models", arXiv 2405.21015, and
  its code, github.com/epoch-research/training-cost-trends (``hardware.py``,
  ``energy.py``, ``parameters.py``). Their method: a chip's purchase price, marked
  up for the rest of the server and for the cluster network, depreciates at the
  rate ML hardware price-performance improves (0.14 orders of magnitude a year),
  and a training run is charged that depreciation for the hours it holds the
  chips; energy is chip TDP scaled up to server power, times average draw, PUE,
  hours and an electricity price.

Sources of ``PRICES`` are strings tagged with the figure they support (``cloud:
...``, ``purchase: ...``, ``node price: ...``, ``node power: ...``, or ``node: ...``
for the node's make-up) and end with the date as ``(MM/YYYY)``; ``Pricing`` refuses
an entry with a figure that no tagged, dated source supports. An entry's ``cloud:``
source is written from its default ``CloudPrice``, so the two cannot disagree.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from gpubench.errors import GpubenchError
from gpubench.hardware import GPUS, get_gpu

# ---------------------------------------------------------------------------
# Epoch AI parameters (Cottier et al. 2024; training-cost-trends code).

# 365.25 days: Epoch's parameters.py counts the leap day.
HOURS_PER_YEAR = 8766.0

# ML GPU price-performance improves by 0.14 orders of magnitude a year (Epoch,
# "Trends in machine learning hardware"); Epoch depreciates hardware at that
# rate, so an hour of a chip costs price × 0.14·ln(10) / hours-per-year.
DEPRECIATION_OOMS_PER_YEAR = 0.14
AMORTIZATION_FRACTION_PER_HOUR = DEPRECIATION_OOMS_PER_YEAR * math.log(10) / HOURS_PER_YEAR

# Cluster interconnect is 19% of the whole cluster's cost, so servers are 81%:
# cluster cost = server cost / 0.81.
INTERCONNECT_COST_FRACTION = 0.19

# Server price / single-GPU price, from Epoch's price data where both a server
# and a single GPU of the same model are listed (hardware.py).
SERVER_OVERHEAD_A100 = 1.66
SERVER_OVERHEAD_V100 = 1.69
SERVER_OVERHEAD_DEFAULT = 1.64

# Server maximum power per GPU / GPU TDP (energy.py), computed from NVIDIA's DGX
# datasheets the way Epoch does, so that 8 × TDP × ratio gives back the DGX
# figure exactly: DGX H100 10.2 kW / 8 / 0.7 kW = 1.82; DGX A100 6.5 kW / 8 /
# 0.4 kW = 2.03; V100 the mean of DGX-2 (10 kW / 16) and DGX Station (1.5 kW / 4)
# over 0.3 kW = 1.67. Epoch's fallback for other chips is 1.8.
CHIP_TO_SERVER_POWER_H100 = (10.2 / 8) / 0.7
CHIP_TO_SERVER_POWER_A100 = (6.5 / 8) / 0.4
CHIP_TO_SERVER_POWER_V100 = ((10 / 16) / 0.3 + (1.5 / 4) / 0.3) / 2
CHIP_TO_SERVER_POWER_DEFAULT = 1.8

# Average server draw during training as a fraction of its maximum (Epoch's
# server_TDP_fraction for GPUs; Barroso et al.'s 75% for new data centres).
AVG_POWER_FRACTION = 0.75

# Power usage effectiveness: Google, Microsoft and Meta report about 1.1; Epoch
# uses 1.25 for everyone else.
PUE_HYPERSCALER = 1.1
PUE_OTHER = 1.25

# US average industrial electricity price, 2023 (EIA, via Epoch's energy.py).
ELECTRICITY_USD_PER_KWH_US_INDUSTRIAL_2023 = 0.0806

# The usual HGX/DGX board: what a node holds when nothing else is known.
DEFAULT_GPUS_PER_NODE = 8


def _arch(gpu_key: str) -> str:
    return get_gpu(gpu_key).arch


def server_overhead(gpu_key: str) -> float:
    """Server price over single-GPU price (Epoch): A100 1.66, V100 1.69, others 1.64."""
    arch = _arch(gpu_key)
    # Ampere here is only A100 and Volta only V100: Epoch keys these on the model name.
    return {"ampere": SERVER_OVERHEAD_A100, "volta": SERVER_OVERHEAD_V100}.get(
        arch, SERVER_OVERHEAD_DEFAULT)


def chip_to_server_power_ratio(gpu_key: str) -> float:
    """Server maximum power per GPU over the GPU's TDP.

    Epoch gives H100, A100 and V100. Hopper (H200, H800) and Blackwell (B200)
    take H100's ratio: same DGX/HGX design, and DGX B200's 14.3 kW / 8 / 1 kW
    = 1.79 is close to it. Other chips get Epoch's fallback, 1.8.
    """
    arch = _arch(gpu_key)
    return {
        "hopper": CHIP_TO_SERVER_POWER_H100,
        "blackwell": CHIP_TO_SERVER_POWER_H100,
        "ampere": CHIP_TO_SERVER_POWER_A100,
        "volta": CHIP_TO_SERVER_POWER_V100,
    }.get(arch, CHIP_TO_SERVER_POWER_DEFAULT)


# ---------------------------------------------------------------------------
# Cloud prices: one table, every offer dated, one rule for the default.

CLOUD_KINDS = ("on-demand", "committed-1y", "committed-3y", "spot", "assumed")
_AS_OF = re.compile(r"^(19|20)\d\d-(0[1-9]|1[0-2])$")
_URL = re.compile(r"https?://\S+")
_TITLE = re.compile(r"'[^']{8,}'")

# The default $/GPU-hour of a GPU is the on-demand list price of the first of these
# providers that rents it, among the offers of the table's current period.
DEFAULT_PROVIDERS = ("AWS", "Microsoft Azure", "Google Cloud", "Lambda", "CoreWeave")
# An offer read more than this many months before the table's newest one is not a
# default: the defaults of two GPUs must come from the same period.
PERIOD_MONTHS = 12
DEFAULT_RULE = (
    "on-demand list price, all read in the same period (within 12 months of the "
    "table's newest price); AWS (US East, N. Virginia) where AWS rents the GPU, "
    "else Microsoft Azure (East US), else Google Cloud (us-central1), else the "
    "neoclouds Lambda, then CoreWeave; a GPU none of them rents has no default "
    "(pass --price)")


def _month_index(as_of: str) -> int:
    year, month = as_of.split("-")
    return int(year) * 12 + int(month) - 1


@dataclass(frozen=True)
class CloudPrice:
    """One dated offer: renting one GPU of it for an hour.

    ``usd_per_gpu_hour`` is the offer's price divided by the GPUs it holds
    (``gpus``); ``usd_per_offer_hour`` is the price as listed (an 8-GPU instance's
    hourly price, say). ``as_of`` is the month the price was read ('YYYY-MM');
    ``source`` names the price list (title and URL) and where exactly the number
    was read.
    """

    usd_per_gpu_hour: float
    provider: str
    offer: str
    kind: str
    as_of: str
    source: str
    region: str = ""
    gpus: int = 1
    usd_per_offer_hour: float | None = None

    def __post_init__(self):
        what = f"{self.provider} {self.offer}"
        if (isinstance(self.usd_per_gpu_hour, bool) or not isinstance(self.usd_per_gpu_hour, (int, float))
                or not math.isfinite(self.usd_per_gpu_hour) or not self.usd_per_gpu_hour > 0):
            raise ValueError(f"{what}: usd_per_gpu_hour must be a positive number")
        if not self.provider.strip() or not self.offer.strip():
            raise ValueError("a cloud price needs a provider and an offer")
        if self.kind not in CLOUD_KINDS:
            raise ValueError(f"{what}: kind {self.kind!r} is not one of {CLOUD_KINDS}")
        if not _AS_OF.match(self.as_of):
            raise ValueError(f"{what}: as_of {self.as_of!r} must be 'YYYY-MM'")
        if not (_URL.search(self.source) or _TITLE.search(self.source)):
            raise ValueError(f"{what}: the source must give a URL or a quoted document title")
        if not isinstance(self.gpus, int) or self.gpus < 1:
            raise ValueError(f"{what}: gpus must be a whole number of at least 1")
        if self.usd_per_offer_hour is not None and not math.isclose(
                self.usd_per_offer_hour / self.gpus, self.usd_per_gpu_hour, rel_tol=1e-9):
            raise ValueError(f"{what}: the offer's price over its GPUs is not the per-GPU price")

    @property
    def date(self) -> str:
        """as_of as 'MM/YYYY'."""
        year, month = self.as_of.split("-")
        return f"{month}/{year}"

    def describe(self) -> str:
        """'AWS p5.48xlarge on-demand, us-east-1'."""
        return f"{self.provider} {self.offer} {self.kind}" + (f", {self.region}" if self.region else "")

    def offer_price(self) -> str:
        """The price as the provider lists it: '$55.04/h for 8 GPUs' or '$3.29/h'."""
        per_offer = self.usd_per_offer_hour or self.usd_per_gpu_hour * self.gpus
        return f"${per_offer:,.6g}/h" + (f" for {self.gpus} GPUs" if self.gpus > 1 else "")

    def label(self) -> str:
        """One line: '$6.88/GPU-hour, AWS p5.48xlarge on-demand, us-east-1, as of 2026-10'."""
        return f"${self.usd_per_gpu_hour:,.2f}/GPU-hour, {self.describe()}, as of {self.as_of}"

    def source_tag(self) -> str:
        """The ``cloud: ... (MM/YYYY)`` source string a ``Pricing`` entry carries."""
        return (f"cloud: {self.describe()}: {self.offer_price()} = ${self.usd_per_gpu_hour:,.6g} "
                f"per GPU-hour; {self.source} ({self.date})")


def _offer(gpu_key: str, provider: str, offer: str, usd_per_hour: float, gpus: int, region: str,
           as_of: str, source: str, kind: str = "on-demand") -> tuple[str, CloudPrice]:
    return gpu_key, CloudPrice(usd_per_hour / gpus, provider, offer, kind, as_of, source, region, gpus,
                               usd_per_hour)


_GPU_INDEX = ("the ewyluda/gpu-price-index repository's data/observations/2026/2026-10-10.csv "
              "(a daily copy of the providers' public price lists, collected 2026-10-10), "
              "https://github.com/ewyluda/gpu-price-index")
_AWS_LIST = ("AWS 'Amazon EC2 On-Demand Pricing', Linux, US East (N. Virginia), "
             "https://aws.amazon.com/ec2/pricing/on-demand/")
_AZURE_LIST = ("Microsoft 'Linux Virtual Machines Pricing', pay as you go "
               "(https://azure.microsoft.com/en-us/pricing/details/virtual-machines/linux/), "
               "retailPrice of the Azure Retail Prices API, https://prices.azure.com/api/retail/prices")
_GCP_LIST = ("Google Cloud 'Accelerator-optimized machine type family' pricing, on-demand "
             "'Price (USD)' column, Iowa (us-central1), "
             "https://cloud.google.com/products/compute/pricing/accelerator-optimized")
_COREWEAVE_LIST = "CoreWeave 'Pricing' page, instance price, https://www.coreweave.com/pricing"
_LAMBDA_LIST = "Lambda 'Pricing' page, on-demand instances, price per GPU-hour, https://lambda.ai/pricing"
_GCP_CUD_LIST = ("Google Cloud 'Committed use discounts' (resource-based, 1 or 3 years), "
                 "https://cloud.google.com/compute/docs/instances/committed-use-discounts-overview")
_CYCLENERD = ("pricing.yml of the Cyclenerd/google-cloud-pricing-cost-calculator repository "
              "(generated 2026-08-20 from Google's Cloud Billing Catalog, commit dac31281), "
              "https://github.com/Cyclenerd/google-cloud-pricing-cost-calculator")


def _read(price_list: str, row: str, where: str = _GPU_INDEX, also: str = "") -> str:
    return f"{price_list}; read in the row '{row}' of {where}" + (f"; {also}" if also else "")


def _gcp_cud(instance: str, field: str, month_usd: float) -> str:
    return (f"{_GCP_CUD_LIST}; read in {_CYCLENERD}: compute.instance.{instance}.cost.us-central1."
            f"{field} = ${month_usd:,.2f} a month of 730 hours")


_AWS_P5_HISTORY = ("the same $55.04 in amorton45/aws-gpu-price-tracker gpu_prices.csv (AWS Price List "
                   "API, us-east-1) every day from 2025-06-05, when AWS cut it from $98.32, to "
                   "2026-08-22, https://github.com/amorton45/aws-gpu-price-tracker")
_DSTACK_P5EN = ("the same $63.296 (us-east-1, us-east-2, us-west-2) in the dstack pull request #4110 "
                "'Add AWS p5en.48xlarge' of 08/2026, https://github.com/dstackai/dstack/pull/4110")

_CLOUD_ROWS = (
    # --- A100 SXM4 40GB --------------------------------------------------------
    _offer("a100-sxm-40gb", "AWS", "p4d.24xlarge", 21.9576, 8, "us-east-1", "2026-10",
           _read(_AWS_LIST, "p4d.24xlarge,us-east-1,8,21.9576")),
    _offer("a100-sxm-40gb", "Microsoft Azure", "Standard_ND96asr_v4", 27.197, 8, "eastus", "2026-10",
           _read(_AZURE_LIST, "Standard_ND96asr_v4,eastus,8,27.197")),
    _offer("a100-sxm-40gb", "Google Cloud", "a2-highgpu-8g", 29.3871, 8, "us-central1", "2026-10",
           _read(_GCP_LIST, "a2-highgpu-8g,us-central1,8,29.3871")),
    _offer("a100-sxm-40gb", "Google Cloud", "a2-highgpu-1g", 1689.3711392 / 730, 1, "us-central1",
           "2026-08", _gcp_cud("a2-highgpu-1g", "month_1y", 1689.3711392), "committed-1y"),
    _offer("a100-sxm-40gb", "Google Cloud", "a2-highgpu-1g", 938.56707798 / 730, 1, "us-central1",
           "2026-08", _gcp_cud("a2-highgpu-1g", "month_3y", 938.56707798), "committed-3y"),
    _offer("a100-sxm-40gb", "Lambda", "8x A100 SXM 40GB", 15.92, 8, "", "2026-10",
           _read(_LAMBDA_LIST, "gpu_8x_a100_sxm_40gb,global,8,15.92")),
    # --- A100 SXM4 80GB --------------------------------------------------------
    _offer("a100-sxm-80gb", "AWS", "p4de.24xlarge", 27.4471, 8, "us-east-1", "2026-10",
           _read(_AWS_LIST, "p4de.24xlarge,us-east-1,8,27.4471")),
    _offer("a100-sxm-80gb", "Microsoft Azure", "Standard_ND96amsr_A100_v4", 32.77, 8, "eastus",
           "2026-10", _read(_AZURE_LIST, "Standard_ND96amsr_A100_v4,eastus,8,32.77")),
    _offer("a100-sxm-80gb", "Google Cloud", "a2-ultragpu-8g", 40.5504, 8, "us-central1", "2026-10",
           _read(_GCP_LIST, "a2-ultragpu-8g,us-central1,8,40.5504")),
    _offer("a100-sxm-80gb", "Lambda", "8x A100 SXM 80GB", 22.32, 8, "", "2026-10",
           _read(_LAMBDA_LIST, "gpu_8x_a100_sxm_80gb,global,8,22.32")),
    _offer("a100-sxm-80gb", "CoreWeave", "nvidia-a100 (8x A100 80GB)", 21.60, 8, "", "2026-10",
           _read(_COREWEAVE_LIST, "nvidia-a100,global,8,21.6")),
    # --- A100 PCIe -------------------------------------------------------------
    _offer("a100-pcie-40gb", "Lambda", "1x A100 PCIe 40GB", 1.99, 1, "", "2026-10",
           _read(_LAMBDA_LIST, "gpu_1x_a100_pcie_40gb,global,1,1.99")),
    _offer("a100-pcie-80gb", "Microsoft Azure", "Standard_NC24ads_A100_v4", 3.673, 1, "eastus",
           "2026-10", _read(_AZURE_LIST, "Standard_NC24ads_A100_v4,eastus,1,3.673")),
    # --- H100 SXM5 -------------------------------------------------------------
    _offer("h100-sxm", "AWS", "p5.48xlarge", 55.04, 8, "us-east-1", "2026-10",
           _read(_AWS_LIST, "p5.48xlarge,us-east-1,8,55.04", also=_AWS_P5_HISTORY)),
    _offer("h100-sxm", "Microsoft Azure", "Standard_ND96isr_H100_v5", 98.32, 8, "eastus", "2026-10",
           _read(_AZURE_LIST, "Standard_ND96isr_H100_v5,eastus,8,98.32")),
    _offer("h100-sxm", "Google Cloud", "a3-highgpu-8g", 88.49, 8, "us-central1", "2026-10",
           _read(_GCP_LIST, "a3-highgpu-8g,us-central1,8,88.49",
                 also="the same $88.49/h in " + _CYCLENERD + " (08/2026)")),
    _offer("h100-sxm", "Google Cloud", "a3-highgpu-8g", 44810.08066464 / 730, 8, "us-central1",
           "2026-08", _gcp_cud("a3-highgpu-8g", "month_1y", 44810.08066464), "committed-1y"),
    _offer("h100-sxm", "Google Cloud", "a3-highgpu-8g", 28370.99821392 / 730, 8, "us-central1",
           "2026-08", _gcp_cud("a3-highgpu-8g", "month_3y", 28370.99821392), "committed-3y"),
    _offer("h100-sxm", "Lambda", "8x H100 SXM 80GB", 31.92, 8, "", "2026-10",
           _read(_LAMBDA_LIST, "gpu_8x_h100_sxm_80gb,global,8,31.92")),
    _offer("h100-sxm", "CoreWeave", "hgx-h100 (8x H100)", 49.24, 8, "", "2026-10",
           _read(_COREWEAVE_LIST, "hgx-h100,global,8,49.24")),
    # --- H100 PCIe and NVL -----------------------------------------------------
    _offer("h100-pcie", "Lambda", "1x H100 PCIe 80GB", 3.29, 1, "", "2026-10",
           _read(_LAMBDA_LIST, "gpu_1x_h100_pcie_80gb,global,1,3.29")),
    _offer("h100-nvl", "Microsoft Azure", "Standard_NC40ads_H100_v5", 6.98, 1, "eastus", "2026-10",
           _read(_AZURE_LIST, "Standard_NC40ads_H100_v5,eastus,1,6.98")),
    # --- H200 SXM --------------------------------------------------------------
    _offer("h200-sxm", "AWS", "p5en.48xlarge", 63.296, 8, "us-east-1", "2026-10",
           _read(_AWS_LIST, "p5en.48xlarge,us-east-1,8,63.296", also=_DSTACK_P5EN)),
    _offer("h200-sxm", "Microsoft Azure", "Standard_ND96isr_H200_v5", 84.80, 8, "eastus2", "2026-10",
           _read(_AZURE_LIST, "Standard_ND96isr_H200_v5,eastus2,8,84.8")),
    _offer("h200-sxm", "Google Cloud", "a3-ultragpu-8g", 84.8069, 8, "us-central1", "2026-10",
           _read(_GCP_LIST, "a3-ultragpu-8g,us-central1,8,84.8069")),
    _offer("h200-sxm", "CoreWeave", "hgx-h200 (8x H200)", 50.44, 8, "", "2026-10",
           _read(_COREWEAVE_LIST, "hgx-h200,global,8,50.44")),
    # --- B200 ------------------------------------------------------------------
    _offer("b200", "AWS", "p6-b200.48xlarge", 113.9328, 8, "us-east-1", "2026-10",
           _read(_AWS_LIST, "p6-b200.48xlarge,us-east-1,8,113.9328")),
    _offer("b200", "Lambda", "8x B200 SXM6 180GB", 53.52, 8, "", "2026-10",
           _read(_LAMBDA_LIST, "gpu_8x_b200_sxm6_180gb,global,8,53.52")),
    _offer("b200", "CoreWeave", "nvidia-b200 (8x B200)", 68.80, 8, "", "2026-10",
           _read(_COREWEAVE_LIST, "nvidia-b200,global,8,68.8")),
    # --- L40S ------------------------------------------------------------------
    _offer("l40s", "AWS", "g6e.48xlarge", 30.1312, 8, "us-east-1", "2026-10",
           _read(_AWS_LIST, "g6e.48xlarge,us-east-1,8,30.1312")),
    _offer("l40s", "CoreWeave", "nvidia-l40s (8x L40S)", 18.00, 8, "", "2026-10",
           _read(_COREWEAVE_LIST, "nvidia-l40s,global,8,18.0")),
    # --- MI300X ----------------------------------------------------------------
    _offer("mi300x", "Microsoft Azure", "Standard_ND96isr_MI300X_v5", 48.00, 8, "eastus2", "2026-10",
           _read(_AZURE_LIST, "Standard_ND96isr_MI300X_v5,eastus2,8,48.0")),
)


def _table() -> dict[str, tuple[CloudPrice, ...]]:
    out: dict[str, list[CloudPrice]] = {}
    for key, price in _CLOUD_ROWS:
        if key not in GPUS:
            raise ValueError(f"{key}: not a key of the hardware table")
        out.setdefault(key, []).append(price)
    return {k: tuple(v) for k, v in out.items()}


# GPU key -> every offer known for it, as read. V100 (AWS dropped P3), H200 NVL,
# H800 (sold in China only), RTX 4090 and the V100 PCIe cards have no sourced
# current offer: they have no default, and estimates ask for --price.
CLOUD_PRICES: dict[str, tuple[CloudPrice, ...]] = _table()

# The newest month in the table: the current period ends here.
CLOUD_PRICES_AS_OF = max(p.as_of for offers in CLOUD_PRICES.values() for p in offers)


def _in_period(price: CloudPrice) -> bool:
    return _month_index(CLOUD_PRICES_AS_OF) - _month_index(price.as_of) <= PERIOD_MONTHS


def _default_of(offers) -> CloudPrice | None:
    for provider in DEFAULT_PROVIDERS:
        for p in offers:
            if p.provider == provider and p.kind == "on-demand" and _in_period(p):
                return p
    return None


def cloud_prices(gpu_key: str) -> list[CloudPrice]:
    """Every offer known for a GPU key or alias: providers in ``DEFAULT_PROVIDERS``
    order, on-demand before committed. Empty if none was sourced.

    Raises UnknownNameError for a name the hardware table does not know.
    """
    offers = CLOUD_PRICES.get(get_gpu(gpu_key).key, ())
    rank = {p: i for i, p in enumerate(DEFAULT_PROVIDERS)}
    return sorted(offers, key=lambda p: (rank.get(p.provider, len(rank)), CLOUD_KINDS.index(p.kind)))


def cloud_price(gpu_key: str) -> CloudPrice | None:
    """The default $/GPU-hour offer for a GPU key or alias (``DEFAULT_RULE``), or None
    when no provider in the rule rents it on demand in the current period.

    Raises UnknownNameError for a name the hardware table does not know.
    """
    return _default_of(CLOUD_PRICES.get(get_gpu(gpu_key).key, ()))


# ---------------------------------------------------------------------------
# Historical prices: what the source articles and papers paid or assumed.

@dataclass(frozen=True)
class HistoricalPrice:
    """A dated price a published cost figure was computed with; never a default."""

    case: str
    gpu_key: str
    price: CloudPrice
    used_for: str

    @property
    def usd_per_gpu_hour(self) -> float:
        return self.price.usd_per_gpu_hour

    @property
    def as_of(self) -> str:
        return self.price.as_of


_ARTICLE = ("the project's source article, as quoted in the gpubench reference 'Reference facts "
            "for gpubench', section 1")
_EPOCH_PRICES = ("Epoch AI hardware price data, training-cost-trends 'data/Hardware prices.csv' "
                 "(archived price pages)")
_AWS_P4 = "https://aws.amazon.com/ec2/instance-types/p4/"
_AWS_P3 = "https://aws.amazon.com/ec2/instance-types/p3/"
_P4DE_2022 = CloudPrice(
    40.96 / 8, "AWS", "p4de.24xlarge", "on-demand", "2022-08",
    "AWS EC2 p4de.24xlarge on-demand, US East, $40.96/h for 8 A100 80GB, the price "
    + _ARTICLE + " uses for GPT-3 and MT-NLG; AWS's page as archived in " + _EPOCH_PRICES
    + ", " + _AWS_P4, "us-east-1", 8, 40.96)

HISTORICAL_PRICES: dict[str, HistoricalPrice] = {h.case: h for h in (
    HistoricalPrice(
        "gpt3-175b", "a100-sxm-80gb", _P4DE_2022,
        _ARTICLE + ": GPT-3 175B rented on 128 p4de.24xlarge for 816 h, about $4.28M"),
    HistoricalPrice(
        "mt-nlg-530b", "a100-sxm-80gb", _P4DE_2022,
        _ARTICLE + ": MT-NLG 530B on 2048 A100 for 8 weeks at the same p4de price, just over $14M"),
    HistoricalPrice(
        "m6-10t", "v100-sxm2-32gb",
        CloudPrice(2.28, "unnamed cloud", "V100 GPU-hour", "assumed", "2021-10",
                   "$2.28 per V100 GPU-hour, the figure " + _ARTICLE + " uses for M6-10T (Alibaba; "
                   "512 V100 for 10 days: Lin et al., 'M6-10T: A Sharing-Delinking Paradigm for "
                   "Efficient Multi-Trillion Parameter Pretraining', arXiv 2110.03888); the article "
                   "does not name the cloud, https://arxiv.org/abs/2110.03888"),
        _ARTICLE + ": M6-10T, 512 V100 for 10 days ('over $300,000'; the arithmetic gives $280,166)"),
    HistoricalPrice(
        "deepseek-v3", "h800-sxm",
        CloudPrice(2.0, "DeepSeek-AI", "H800 GPU-hour (assumed rental)", "assumed", "2024-12",
                   "DeepSeek-AI, 'DeepSeek-V3 Technical Report', arXiv 2412.19437: 'assuming the "
                   "rental price of the H800 GPU is $2 per GPU hour', https://arxiv.org/abs/2412.19437"),
        "DeepSeek-V3's reported training cost: 2.788M H800 GPU-hours at $2, $5.576M"),
    HistoricalPrice(
        "aws-p5-launch", "h100-sxm",
        CloudPrice(98.32 / 8, "AWS", "p5.48xlarge", "on-demand", "2023-07",
                   "AWS EC2 p5.48xlarge on-demand at launch, $98.32/h for 8 H100 SXM: Next Platform, "
                   "'H100 GPU Instance Pricing On AWS: Grin And Bear It', https://www.nextplatform.com"
                   "/2023/07/27/h100-gpu-instance-pricing-on-aws-grin-and-bear-it/",
                   "us-east-1", 8, 98.32),
        "AWS's H100 list price from the P5 launch until its 06/2025 cut (gpubench's H100 default "
        "until 12/2026)"),
    HistoricalPrice(
        "aws-p3-2018", "v100-sxm2-16gb",
        CloudPrice(24.48 / 8, "AWS", "p3.16xlarge", "on-demand", "2018-06",
                   "AWS EC2 p3.16xlarge on-demand, US East, $24.48/h for 8 V100 16GB; AWS's page as "
                   "archived in " + _EPOCH_PRICES + ", " + _AWS_P3, "us-east-1", 8, 24.48),
        "AWS's V100 list price of 2018 (gpubench's V100 16GB default until 12/2026); no current "
        "V100 on-demand price was sourced"),
)}


def article_price(case: str) -> HistoricalPrice:
    """The dated price a reproduced published figure used ('gpt3-175b', 'mt-nlg-530b',
    'm6-10t', 'deepseek-v3', ...): the reproductions' prices, kept apart from the defaults."""
    try:
        return HISTORICAL_PRICES[case]
    except KeyError:
        raise GpubenchError(f"no historical price for {case!r}: one of "
                            f"{', '.join(sorted(HISTORICAL_PRICES))}") from None


# ---------------------------------------------------------------------------
# Per-GPU facts: the default cloud price, purchase price and node.

FIGURE_TAGS = ("cloud", "purchase", "node price", "node power", "node")
_DATE = re.compile(r"\((0[1-9]|1[0-2])/(19|20)\d\d\)")


@dataclass(frozen=True)
class Node:
    """The server a GPU ships in (DGX/HGX-class)."""

    name: str
    gpus_per_node: int = DEFAULT_GPUS_PER_NODE
    node_price_usd: float | None = None
    node_max_power_kw: float | None = None


@dataclass(frozen=True)
class Pricing:
    """A GPU's figures. ``cloud_usd_per_gpu_hour`` is its default cloud price
    (``cloud_price(gpu_key)``, with the offer's details); None if none was sourced."""

    gpu_key: str
    cloud_usd_per_gpu_hour: float | None
    gpu_purchase_usd: float | None
    node: Node | None
    sources: tuple[str, ...]
    notes: str = ""

    def __post_init__(self):
        if self.gpu_key not in GPUS:
            raise ValueError(f"{self.gpu_key}: not a key of the hardware table")
        if not self.sources:
            raise ValueError(f"{self.gpu_key}: every entry needs a source")
        for s in self.sources:
            tag = s.split(":", 1)[0]
            if tag not in FIGURE_TAGS or not _DATE.search(s):
                raise ValueError(f"{self.gpu_key}: source {s[:40]!r}... needs a known "
                                 f"tag {FIGURE_TAGS} and a (MM/YYYY) date")
        node = self.node
        figures = {
            "cloud": self.cloud_usd_per_gpu_hour,
            "purchase": self.gpu_purchase_usd,
            "node price": node.node_price_usd if node else None,
            "node power": node.node_max_power_kw if node else None,
        }
        for tag, value in figures.items():
            if value is None:
                continue
            if not value > 0:
                raise ValueError(f"{self.gpu_key}: {tag} must be positive; leave it None")
            if not any(s.startswith(tag + ":") for s in self.sources):
                raise ValueError(f"{self.gpu_key}: the {tag} figure has no source")
        if node is not None and node.gpus_per_node < 1:
            raise ValueError(f"{self.gpu_key}: gpus_per_node must be at least 1")


def _src(tag: str, text: str, date: str, url: str | None = None) -> str:
    where = f" {url}" if url else ""
    return f"{tag}: {text}.{where} ({date})"


# Source documents, titles first so a dead link still names what to look for.
_NEXTPLATFORM_LIST = ("Next Platform, 'How Much Of A Premium Will Nvidia Charge For Hopper "
                      "GPUs?' (single-unit list prices by year), "
                      "https://www.nextplatform.com/2022/05/09/how-much-of-a-premium-will-"
                      "nvidia-charge-for-hopper-gpus/")
_MICROWAY_V100 = ("Microway, 'NVIDIA Tesla V100 Price Analysis', "
                  "https://www.microway.com/hpc-tech-tips/nvidia-tesla-v100-price-analysis/")
_DGX_A100_DS = ("NVIDIA DGX A100 datasheet (6.5 kW max), https://www.nvidia.com/content/dam/"
                "en-zz/Solutions/Data-Center/nvidia-dgx-a100-datasheet.pdf")
_DGX_H100_DS = ("NVIDIA DGX H100 datasheet (~10.2 kW max), "
                "https://resources.nvidia.com/en-us-dgx-systems/ai-enterprise-dgx")


_A100_NODE_POWER = _src("node power", f"DGX A100, 8 GPUs, 6.5 kW max: {_DGX_A100_DS}", "05/2020")
_V100_DGX1 = Node("NVIDIA DGX-1 (8x V100 SXM2)", 8, 149_000.0, 3.5)
_V100_DGX1_SOURCES = (
    _src("node price", "DGX-1 with 8x V100 at $149,000 at release (wccftech, 'NVIDIA Volta "
         "Tesla V100 ... DGX-1 ... HGX-1'; also in " + _EPOCH_PRICES + ")", "07/2017",
         "https://wccftech.com/nvidia-volta-tesla-v100-dgx-1-hgx-1-supercomputers/"),
    _src("node power", "NVIDIA 'DGX-1 with Tesla V100' datasheet: 3,500 W max system power",
         "05/2017"),
)
_V100_NOTES = (
    "No current V100 on-demand price was sourced (dstack dropped AWS P3 in 05/2026), so there "
    "is no default: pass --price. Historical: AWS p3.16xlarge $3.06 per GPU-hour (06/2018) and "
    "the article's $2.28 for M6-10T (10/2021) are in HISTORICAL_PRICES. DGX-1 is the 8-GPU SXM2 "
    "system. The 10 kW DGX-2 that Epoch's V100 power ratio also uses holds 16 V100 32GB SXM3 (a "
    "350-450 W part not in the hardware table) and sold for $399,000 (03/2018)."
)

# Notes for GPUs whose only sourced figure is a cloud price.
_CLOUD_ONLY_NOTES = {
    "a100-pcie-80gb": "No sourced single-unit purchase price for the 80 GB PCIe card.",
    "h100-pcie": ("A neocloud price: the hyperscalers rent H100 as SXM (or NVL) nodes, not PCIe "
                  "cards. No sourced purchase price; PCIe servers vary (4-10 cards), so no node."),
    "h100-nvl": "No sourced purchase price; NVL cards pair over a bridge, so no 8-GPU node.",
    "l40s": "No sourced purchase price; L40S servers hold 4-10 cards, so no node.",
}

# Entries are written without their cloud price: _with_cloud adds the default
# offer's price and source, so the two can never disagree.
_ENTRIES = (
    # --- Ampere ------------------------------------------------------------
    Pricing(
        "a100-sxm-80gb",
        cloud_usd_per_gpu_hour=None,
        gpu_purchase_usd=15_000.0,
        node=Node("NVIDIA DGX A100 640GB", 8, 175_000.0, 6.5),
        sources=(
            _src("purchase", "A100 SXM4 single-unit list $15,000 (listed for the 40 GB part; "
                 "no separate 80 GB list): " + _NEXTPLATFORM_LIST, "07/2020"),
            _src("node price", "256 DGX A100 at about $175,000 each for MT-NLG on premises: "
                 + _ARTICLE + "; consistent with an 8x A100 80GB server at $167,000 in "
                 + _EPOCH_PRICES, "01/2022"),
            _A100_NODE_POWER,
        ),
        notes=("The article's 'about $2.2M a year' for 256 DGX A100 at full load implies "
               "about $0.15/kWh at PUE 1.0 (1,664 kW x 8,766 h x $0.15 = $2.19M); at Epoch's "
               "US industrial $0.0806/kWh it would be $1.18M. The article's p4de price, $40.96/h "
               "per 8 (08/2022), is HISTORICAL_PRICES['gpt3-175b']; AWS lists p4de at $27.4471/h "
               "after its 06/2025 GPU price cuts. Purchase prices for A100 80GB in Epoch's data "
               "run from about $17k to $37k per GPU including server share; $15k is the "
               "bare-GPU list."),
    ),
    Pricing(
        "a100-sxm-40gb",
        cloud_usd_per_gpu_hour=None,
        gpu_purchase_usd=15_000.0,
        node=Node("NVIDIA DGX A100 320GB", 8, 199_000.0, 6.5),
        sources=(
            _src("purchase", "A100 SXM4 40 GB single-unit list $15,000: " + _NEXTPLATFORM_LIST,
                 "07/2020"),
            _src("node price", "NVIDIA press release 'NVIDIA Ships World's Most Advanced AI "
                 "System - NVIDIA DGX A100': starts at $199,000", "05/2020",
                 "https://nvidianews.nvidia.com/news/nvidia-ships-worlds-most-advanced-ai-"
                 "system-nvidia-dgx-a100-to-fight-covid-19-third-generation-dgx-packs-"
                 "record-5-petaflops-of-ai-performance"),
            _A100_NODE_POWER,
        ),
        notes=("Next Platform's list for the same part fell to $12,500 by 07/2022. AWS listed "
               "p4d.24xlarge at $32.77/h per 8 in 06/2021."),
    ),
    Pricing(
        "a100-pcie-40gb",
        cloud_usd_per_gpu_hour=None,
        gpu_purchase_usd=15_000.0,
        node=None,
        sources=(_src("purchase", "A100 PCIe single-unit list $15,000: " + _NEXTPLATFORM_LIST,
                      "07/2020"),),
        notes="The hyperscalers rent A100 40GB as SXM nodes; the default is a neocloud's card.",
    ),
    # --- Hopper ------------------------------------------------------------
    Pricing(
        "h100-sxm",
        cloud_usd_per_gpu_hour=None,
        gpu_purchase_usd=30_000.0,
        node=Node("NVIDIA DGX H100", 8, 329_580.0, 10.2),
        sources=(
            _src("purchase", "Raymond James estimate of $25,000-$30,000 per H100, reported in "
                 "Tom's Hardware, 'Nvidia Makes Nearly 1,000% Profit on H100 GPUs: Report'; "
                 "Citi put H100 at $30,000 or more when pricing MI300X", "08/2023"),
            _src("node price", "Delta Computer list for DGX H100 640GB, EUR 306,403.66 = "
                 "$329,580 as converted in " + _EPOCH_PRICES, "12/2023",
                 "https://www.deltacomputer.com/nvidia-dgx-h100-640gb.html"),
            _src("node power", "DGX H100, 8 GPUs: " + _DGX_H100_DS, "03/2023"),
        ),
        notes=("AWS cut P5 on-demand prices (up to 45%) on 2025-06-05: p5.48xlarge went from "
               "$98.32/h (launch, 07/2023; HISTORICAL_PRICES['aws-p5-launch']) to $55.04/h. "
               "Purchase: uncertain by about +-30% (estimates span $25k-$40k; SemiAnalysis put "
               "DGX H100 at about $270,000, $33,750 per GPU with server, 05/2023)."),
    ),
    Pricing(
        "h200-sxm",
        cloud_usd_per_gpu_hour=None,
        gpu_purchase_usd=None,
        node=Node("NVIDIA DGX H200", 8, None, 10.2),
        sources=(
            _src("node power", "NVIDIA DGX H200 datasheet: ~10.2 kW max, 8 GPUs", "11/2023",
                 "https://www.nvidia.com/en-us/data-center/dgx-h200/"),
        ),
        notes=("No sourced single-GPU purchase price: pass one. AWS Capacity Blocks for p5e "
               "were about $5.41 per GPU-hour (late 2024)."),
    ),
    Pricing(
        "h800-sxm",
        cloud_usd_per_gpu_hour=None,
        gpu_purchase_usd=None,
        node=Node("HGX H800 8-GPU node", 8, None, None),
        sources=(
            _src("node", "DeepSeek-AI, 'DeepSeek-V3 Technical Report', arXiv 2412.19437: each "
                 "node holds 8 H800 GPUs linked by NVLink and NVSwitch", "12/2024",
                 "https://arxiv.org/abs/2412.19437"),
        ),
        notes=("The H800 was sold in China only and no public on-demand list was sourced, so "
               "there is no default: pass --price. DeepSeek's assumed $2 per GPU-hour (12/2024) "
               "is HISTORICAL_PRICES['deepseek-v3']. No sourced purchase price or node power "
               "(H100's chip-to-server ratio estimates it)."),
    ),
    # --- Volta -------------------------------------------------------------
    Pricing(
        "v100-sxm2-32gb",
        cloud_usd_per_gpu_hour=None,
        gpu_purchase_usd=11_458.0,
        node=_V100_DGX1,
        sources=(
            _src("purchase", "V100 SXM2 32GB single-unit list $11,458: " + _MICROWAY_V100,
                 "05/2018"),
            *_V100_DGX1_SOURCES,
        ),
        notes=_V100_NOTES,
    ),
    Pricing(
        "v100-sxm2-16gb",
        cloud_usd_per_gpu_hour=None,
        gpu_purchase_usd=10_664.0,
        node=_V100_DGX1,
        sources=(
            _src("purchase", "V100 SXM2 16GB single-unit list $10,664: " + _MICROWAY_V100,
                 "05/2018"),
            *_V100_DGX1_SOURCES,
        ),
        notes=_V100_NOTES,
    ),
    # --- Blackwell ---------------------------------------------------------
    Pricing(
        "b200",
        cloud_usd_per_gpu_hour=None,
        gpu_purchase_usd=35_000.0,
        node=Node("NVIDIA DGX B200", 8, None, 14.3),
        sources=(
            _src("purchase", "CNBC interview with Jensen Huang: Blackwell will cost between "
                 "$30,000 and $40,000 ('Nvidia's Blackwell AI chip will cost more than "
                 "$30,000, CEO says'); $35,000 is the midpoint", "03/2024",
                 "https://www.cnbc.com/2024/03/19/nvidias-blackwell-ai-chip-will-cost-more-"
                 "than-30000-ceo-says.html"),
            _src("node power", "NVIDIA DGX B200 datasheet: ~14.3 kW max, 8 GPUs", "03/2024",
                 "https://www.nvidia.com/en-us/data-center/dgx-b200/"),
        ),
        notes=("AWS's p6-b200 list is about twice the neoclouds' (Lambda $6.69, CoreWeave $8.60 "
               "per GPU-hour, 10/2026): cloud_prices('b200') lists them. The purchase price is a "
               "CEO's range, not a list price. No sourced DGX B200 price."),
    ),
    # --- AMD ---------------------------------------------------------------
    Pricing(
        "mi300x",
        cloud_usd_per_gpu_hour=None,
        gpu_purchase_usd=15_000.0,
        node=Node("AMD Instinct MI300X Platform (8 GPUs)", 8, None, None),
        sources=(
            _src("purchase", "Citi (Christopher Danely) estimate of MI300X average selling "
                 "price $10,000-$15,000, the low end for Microsoft, as reported in the press "
                 "(e.g. Svet hardware, 'AI akceleratory Nvidia H100 pry stoji 2krat mozna az "
                 "6krat vice nez AMD MI300')", "02/2024",
                 "https://www.svethardware.cz/ai-akceleratory-nvidia-h100-pry-stoji-2krat-"
                 "mozna-az-6krat-vice-nez-amd-mi300/60384"),
            _src("node", "AMD 'Instinct MI300X Platform' (launched at AMD's 'Advancing AI' "
                 "event): 8 MI300X on one baseboard", "12/2023"),
        ),
        notes=("Purchase: an analyst estimate, not a list price (AMD publishes none); uncertain "
               "by about +-30%. No sourced server power (Epoch's fallback chip-to-server ratio, "
               "1.8, estimates it)."),
    ),
)


def _with_cloud(entry: Pricing) -> Pricing:
    """The entry with its default cloud price and that price's source."""
    default = cloud_price(entry.gpu_key)
    if default is None:
        return entry
    return Pricing(entry.gpu_key, default.usd_per_gpu_hour, entry.gpu_purchase_usd, entry.node,
                   (default.source_tag(), *entry.sources), entry.notes)


def _build_prices() -> dict[str, Pricing]:
    out = {entry.gpu_key: _with_cloud(entry) for entry in _ENTRIES}
    for key in CLOUD_PRICES:     # GPUs whose only sourced figure is a cloud price
        default = cloud_price(key)
        if key not in out and default is not None:
            out[key] = Pricing(key, default.usd_per_gpu_hour, None, None, (default.source_tag(),),
                               _CLOUD_ONLY_NOTES.get(key, ""))
    return out


PRICES: dict[str, Pricing] = _build_prices()


def pricing_for(gpu_key: str) -> Pricing | None:
    """The price entry for a GPU key or alias, or None if the GPU has none.

    Raises UnknownNameError for a name the hardware table does not know.
    """
    return PRICES.get(get_gpu(gpu_key).key)


__all__ = [
    "AMORTIZATION_FRACTION_PER_HOUR", "AVG_POWER_FRACTION", "CHIP_TO_SERVER_POWER_A100",
    "CHIP_TO_SERVER_POWER_DEFAULT", "CHIP_TO_SERVER_POWER_H100", "CHIP_TO_SERVER_POWER_V100",
    "CLOUD_KINDS", "CLOUD_PRICES", "CLOUD_PRICES_AS_OF", "CloudPrice", "DEFAULT_GPUS_PER_NODE",
    "DEFAULT_PROVIDERS", "DEFAULT_RULE", "DEPRECIATION_OOMS_PER_YEAR",
    "ELECTRICITY_USD_PER_KWH_US_INDUSTRIAL_2023", "HISTORICAL_PRICES", "HOURS_PER_YEAR",
    "HistoricalPrice", "INTERCONNECT_COST_FRACTION", "Node", "PERIOD_MONTHS", "PRICES",
    "PUE_HYPERSCALER", "PUE_OTHER", "Pricing", "SERVER_OVERHEAD_A100", "SERVER_OVERHEAD_DEFAULT",
    "SERVER_OVERHEAD_V100", "article_price", "chip_to_server_power_ratio", "cloud_price",
    "cloud_prices", "pricing_for", "server_overhead",
]
