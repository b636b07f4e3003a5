"""Sourced prices and system facts per GPU, and Epoch AI's cost-model parameters.

Two kinds of numbers live here.

* Per-GPU facts (``PRICES``): an on-demand cloud price per GPU-hour, a single-GPU
  purchase price, and the 8-GPU server ("node") the GPU usually ships in, with its
  price and maximum power. Every figure carries a source (title or URL) and the
  month it held, because GPU prices move by 2x within a product's life: a price
  without a date is not a fact. A figure nobody could source is ``None``, never a
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

Sources are strings tagged with the figure they support (``cloud: ...``,
``purchase: ...``, ``node price: ...``, ``node power: ...``, or ``node: ...`` for
the node's make-up) and end with the date as ``(MM/YYYY)``; ``Pricing`` refuses
an entry with a figure that no tagged, dated source supports.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

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
# The table.

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
_EPOCH_PRICES = ("Epoch AI hardware price data, training-cost-trends 'data/Hardware prices.csv' "
                 "(archived price pages)")
_NEXTPLATFORM_LIST = ("Next Platform, 'How Much Of A Premium Will Nvidia Charge For Hopper "
                      "GPUs?' (single-unit list prices by year), "
                      "https://www.nextplatform.com/2022/05/09/how-much-of-a-premium-will-"
                      "nvidia-charge-for-hopper-gpus/")
_MICROWAY_V100 = ("Microway, 'NVIDIA Tesla V100 Price Analysis', "
                  "https://www.microway.com/hpc-tech-tips/nvidia-tesla-v100-price-analysis/")
_AWS_P4 = "https://aws.amazon.com/ec2/instance-types/p4/"
_AWS_P3 = "https://aws.amazon.com/ec2/instance-types/p3/"
_DGX_A100_DS = ("NVIDIA DGX A100 datasheet (6.5 kW max), https://www.nvidia.com/content/dam/"
                "en-zz/Solutions/Data-Center/nvidia-dgx-a100-datasheet.pdf")
_DGX_H100_DS = ("NVIDIA DGX H100 datasheet (~10.2 kW max), "
                "https://resources.nvidia.com/en-us-dgx-systems/ai-enterprise-dgx")
_ARTICLE = ("the project's source article, as quoted in the gpubench reference "
            "'Reference facts for gpubench', section 1")


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
    "DGX-1 is the 8-GPU SXM2 system. The 10 kW DGX-2 that Epoch's V100 power ratio "
    "also uses holds 16 V100 32GB SXM3 (a 350-450 W part not in the hardware table) "
    "and sold for $399,000 (03/2018)."
)

PRICES: dict[str, Pricing] = {p.gpu_key: p for p in (
    # --- Ampere ------------------------------------------------------------
    Pricing(
        "a100-sxm-80gb",
        cloud_usd_per_gpu_hour=40.96 / 8,
        gpu_purchase_usd=15_000.0,
        node=Node("NVIDIA DGX A100 640GB", 8, 175_000.0, 6.5),
        sources=(
            _src("cloud", "AWS EC2 p4de.24xlarge on-demand, US East: $40.96/h for 8 A100 80GB "
                 "= $5.12 per GPU-hour (the article's GPT-3 and MT-NLG figure); archived "
                 "page in " + _EPOCH_PRICES, "08/2022", _AWS_P4),
            _src("purchase", "A100 SXM4 single-unit list $15,000 (listed for the 40 GB part; "
                 "no separate 80 GB list): " + _NEXTPLATFORM_LIST, "07/2020"),
            _src("node price", "256 DGX A100 at about $175,000 each for MT-NLG on premises: "
                 + _ARTICLE + "; consistent with an 8x A100 80GB server at $167,000 in "
                 + _EPOCH_PRICES, "01/2022"),
            _A100_NODE_POWER,
        ),
        notes=("The article's 'about $2.2M a year' for 256 DGX A100 at full load implies "
               "about $0.15/kWh at PUE 1.0 (1,664 kW x 8,766 h x $0.15 = $2.19M); at Epoch's "
               "US industrial $0.0806/kWh it would be $1.18M. Later p4de listings are lower "
               "after AWS's 06/2025 GPU price cuts (about $27.45/h per 8, 11/2026). Purchase "
               "prices for A100 80GB in Epoch's data run from about $17k to $37k per GPU "
               "including server share; $15k is the bare-GPU list."),
    ),
    Pricing(
        "a100-sxm-40gb",
        cloud_usd_per_gpu_hour=32.77 / 8,
        gpu_purchase_usd=15_000.0,
        node=Node("NVIDIA DGX A100 320GB", 8, 199_000.0, 6.5),
        sources=(
            _src("cloud", "AWS EC2 p4d.24xlarge on-demand, US East: $32.77/h for 8 A100 40GB "
                 "= $4.096 per GPU-hour; archived page in " + _EPOCH_PRICES, "06/2021",
                 _AWS_P4),
            _src("purchase", "A100 SXM4 40 GB single-unit list $15,000: " + _NEXTPLATFORM_LIST,
                 "07/2020"),
            _src("node price", "NVIDIA press release 'NVIDIA Ships World's Most Advanced AI "
                 "System - NVIDIA DGX A100': starts at $199,000", "05/2020",
                 "https://nvidianews.nvidia.com/news/nvidia-ships-worlds-most-advanced-ai-"
                 "system-nvidia-dgx-a100-to-fight-covid-19-third-generation-dgx-packs-"
                 "record-5-petaflops-of-ai-performance"),
            _A100_NODE_POWER,
        ),
        notes="Next Platform's list for the same part fell to $12,500 by 07/2022.",
    ),
    Pricing(
        "a100-pcie-40gb",
        cloud_usd_per_gpu_hour=None,
        gpu_purchase_usd=15_000.0,
        node=None,
        sources=(_src("purchase", "A100 PCIe single-unit list $15,000: " + _NEXTPLATFORM_LIST,
                      "07/2020"),),
        notes="No dedicated on-demand listing found for the 40 GB PCIe card.",
    ),
    Pricing(
        "a100-pcie-80gb",
        cloud_usd_per_gpu_hour=3.67,
        gpu_purchase_usd=None,
        node=None,
        sources=(_src("cloud", "Azure NC24ads A100 v4 (1x A100 PCIe 80GB) on-demand, East US: "
                      "$3.67/h; archived Azure Linux VM pricing page in " + _EPOCH_PRICES,
                      "07/2022",
                      "https://azure.microsoft.com/en-us/pricing/details/virtual-machines/"
                      "linux/"),),
        notes="No sourced single-unit purchase price for the 80 GB PCIe card.",
    ),
    # --- Hopper ------------------------------------------------------------
    Pricing(
        "h100-sxm",
        cloud_usd_per_gpu_hour=98.32 / 8,
        gpu_purchase_usd=30_000.0,
        node=Node("NVIDIA DGX H100", 8, 329_580.0, 10.2),
        sources=(
            _src("cloud", "AWS EC2 p5.48xlarge on-demand at launch: $98.32/h for 8 H100 SXM "
                 "= $12.29 per GPU-hour: Next Platform, 'H100 GPU Instance Pricing On AWS: "
                 "Grin And Bear It'", "07/2023",
                 "https://www.nextplatform.com/2023/07/27/h100-gpu-instance-pricing-on-aws-"
                 "grin-and-bear-it/"),
            _src("purchase", "Raymond James estimate of $25,000-$30,000 per H100, reported in "
                 "Tom's Hardware, 'Nvidia Makes Nearly 1,000% Profit on H100 GPUs: Report'; "
                 "Citi put H100 at $30,000 or more when pricing MI300X", "08/2023"),
            _src("node price", "Delta Computer list for DGX H100 640GB, EUR 306,403.66 = "
                 "$329,580 as converted in " + _EPOCH_PRICES, "12/2023",
                 "https://www.deltacomputer.com/nvidia-dgx-h100-640gb.html"),
            _src("node power", "DGX H100, 8 GPUs: " + _DGX_H100_DS, "03/2023"),
        ),
        notes=("AWS cut P5 on-demand prices (up to 45%) in 06/2025; p5.48xlarge is listed at "
               "$55.04/h ($6.88 per GPU-hour) in 11/2026. The launch price is kept because it "
               "is the one the article-era comparisons use. Neoclouds: Lambda $3.49 per "
               "GPU-hour (01/2024). Purchase: uncertain by about +-30% (estimates span "
               "$25k-$40k; SemiAnalysis put DGX H100 at about $270,000, $33,750 per GPU with "
               "server, 05/2023)."),
    ),
    Pricing(
        "h100-pcie",
        cloud_usd_per_gpu_hour=2.49,
        gpu_purchase_usd=None,
        node=None,
        sources=(_src("cloud", "Lambda GPU Cloud, 1x H100 PCIe on-demand $2.49/h; in "
                      + _EPOCH_PRICES, "01/2024", "https://lambdalabs.com/service/gpu-cloud"),),
        notes=("A neocloud price: the hyperscalers rent H100 as SXM (or NVL) nodes, not PCIe "
               "cards. No sourced purchase price; PCIe servers vary (4-10 cards), so no node."),
    ),
    Pricing(
        "h200-sxm",
        cloud_usd_per_gpu_hour=63.296 / 8,
        gpu_purchase_usd=None,
        node=Node("NVIDIA DGX H200", 8, None, 10.2),
        sources=(
            _src("cloud", "AWS EC2 p5en.48xlarge (8x H200) on-demand, us-east-1: $63.296/h "
                 "= $7.912 per GPU-hour, as listed in dstack pull request #4110 'Add AWS "
                 "p5en.48xlarge'", "08/2026", "https://github.com/dstackai/dstack/pull/4110"),
            _src("node power", "NVIDIA DGX H200 datasheet: ~10.2 kW max, 8 GPUs", "11/2023",
                 "https://www.nvidia.com/en-us/data-center/dgx-h200/"),
        ),
        notes=("No sourced single-GPU purchase price: pass one. CoreWeave lists HGX H200 at "
               "$50.44/h per 8 ($6.31 per GPU-hour, 10/2026); AWS Capacity Blocks for p5e "
               "were about $5.41 per GPU-hour (late 2024)."),
    ),
    Pricing(
        "h800-sxm",
        cloud_usd_per_gpu_hour=2.0,
        gpu_purchase_usd=None,
        node=Node("HGX H800 8-GPU node", 8, None, None),
        sources=(
            _src("cloud", "DeepSeek-AI, 'DeepSeek-V3 Technical Report', arXiv 2412.19437: "
                 "'assuming the rental price of the H800 GPU is $2 per GPU hour'", "12/2024",
                 "https://arxiv.org/abs/2412.19437"),
            _src("node", "same report: each node holds 8 H800 GPUs linked by NVLink and "
                 "NVSwitch", "12/2024", "https://arxiv.org/abs/2412.19437"),
        ),
        notes=("$2 is DeepSeek's assumed rental price, not a public on-demand list. The H800 "
               "was sold in China only; no sourced purchase price or node power (H100's "
               "chip-to-server ratio estimates it)."),
    ),
    # --- Volta -------------------------------------------------------------
    Pricing(
        "v100-sxm2-32gb",
        cloud_usd_per_gpu_hour=2.28,
        gpu_purchase_usd=11_458.0,
        node=_V100_DGX1,
        sources=(
            _src("cloud", "$2.28 per V100 GPU-hour, the figure " + _ARTICLE + " uses for "
                 "M6-10T (Alibaba; 512 V100 for 10 days: Lin et al., 'M6-10T: A Sharing-"
                 "Delinking Paradigm for Efficient Multi-Trillion Parameter Pretraining', "
                 "arXiv 2110.03888); the article does not name the cloud", "10/2021",
                 "https://arxiv.org/abs/2110.03888"),
            _src("purchase", "V100 SXM2 32GB single-unit list $11,458: " + _MICROWAY_V100,
                 "05/2018"),
            *_V100_DGX1_SOURCES,
        ),
        notes=("The $2.28 is below US hyperscaler V100 on-demand prices of the time (AWS "
               "p3.16xlarge $3.06, Azure ND40rs v2 $2.75 per GPU-hour). " + _V100_NOTES),
    ),
    Pricing(
        "v100-sxm2-16gb",
        cloud_usd_per_gpu_hour=24.48 / 8,
        gpu_purchase_usd=10_664.0,
        node=_V100_DGX1,
        sources=(
            _src("cloud", "AWS EC2 p3.16xlarge on-demand, US East: $24.48/h for 8 V100 16GB "
                 "= $3.06 per GPU-hour; archived page in " + _EPOCH_PRICES, "06/2018", _AWS_P3),
            _src("purchase", "V100 SXM2 16GB single-unit list $10,664: " + _MICROWAY_V100,
                 "05/2018"),
            *_V100_DGX1_SOURCES,
        ),
        notes=_V100_NOTES,
    ),
    # --- Blackwell ---------------------------------------------------------
    Pricing(
        "b200",
        cloud_usd_per_gpu_hour=6.69,
        gpu_purchase_usd=35_000.0,
        node=Node("NVIDIA DGX B200", 8, None, 14.3),
        sources=(
            _src("cloud", "Lambda, 8x NVIDIA B200 SXM6 on-demand $6.69 per GPU-hour "
                 "(lambda.ai instances page)", "09/2026", "https://lambda.ai/instances"),
            _src("purchase", "CNBC interview with Jensen Huang: Blackwell will cost between "
                 "$30,000 and $40,000 ('Nvidia's Blackwell AI chip will cost more than "
                 "$30,000, CEO says'); $35,000 is the midpoint", "03/2024",
                 "https://www.cnbc.com/2024/03/19/nvidias-blackwell-ai-chip-will-cost-more-"
                 "than-30000-ceo-says.html"),
            _src("node power", "NVIDIA DGX B200 datasheet: ~14.3 kW max, 8 GPUs", "03/2024",
                 "https://www.nvidia.com/en-us/data-center/dgx-b200/"),
        ),
        notes=("A neocloud price (no hyperscaler on-demand B200 figure was sourced). The "
               "purchase price is a CEO's range, not a list price. No sourced DGX B200 price."),
    ),
    # --- Ada ---------------------------------------------------------------
    Pricing(
        "l40s",
        cloud_usd_per_gpu_hour=30.131 / 8,
        gpu_purchase_usd=None,
        node=None,
        sources=(_src("cloud", "AWS EC2 g6e.48xlarge (8x L40S) on-demand, us-east-1: "
                      "$30.131/h = $3.77 per GPU-hour (instances.vantage.sh listing)",
                      "11/2024", "https://instances.vantage.sh/aws/ec2/g6e.48xlarge"),),
        notes=("Less certain than the AWS P-instance figures: read from a third-party "
               "listing of AWS prices. No sourced purchase price; L40S servers hold 4-10 "
               "cards, so no node."),
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
        notes=("An analyst estimate, not a list price (AMD publishes none); uncertain by "
               "about +-30%. No sourced on-demand price or server power (Epoch's fallback "
               "chip-to-server ratio, 1.8, estimates the latter)."),
    ),
)}


def pricing_for(gpu_key: str) -> Pricing | None:
    """The price entry for a GPU key or alias, or None if the GPU has none.

    Raises UnknownNameError for a name the hardware table does not know.
    """
    return PRICES.get(get_gpu(gpu_key).key)


__all__ = [
    "AMORTIZATION_FRACTION_PER_HOUR", "AVG_POWER_FRACTION", "CHIP_TO_SERVER_POWER_A100",
    "CHIP_TO_SERVER_POWER_DEFAULT", "CHIP_TO_SERVER_POWER_H100", "CHIP_TO_SERVER_POWER_V100",
    "DEFAULT_GPUS_PER_NODE", "DEPRECIATION_OOMS_PER_YEAR",
    "ELECTRICITY_USD_PER_KWH_US_INDUSTRIAL_2023", "HOURS_PER_YEAR",
    "INTERCONNECT_COST_FRACTION", "Node", "PRICES", "PUE_HYPERSCALER", "PUE_OTHER", "Pricing",
    "SERVER_OVERHEAD_A100", "SERVER_OVERHEAD_DEFAULT", "SERVER_OVERHEAD_V100",
    "chip_to_server_power_ratio", "pricing_for", "server_overhead",
]
