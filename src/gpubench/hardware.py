"""Datasheet figures per GPU model, and matching a device name to them.

What this table is for: "% of peak" and MFU divide a measured rate by the
chip's peak, so the peak must be the one the measurement can reach.

* Dense only. Datasheets since Ampere print Tensor Core rates "with sparsity"
  (2:4 structured sparsity), twice the dense rate; a dense matmul can never
  reach them, and MFU as defined by PaLM (Chowdhery et al. 2022, App. B) uses
  the dense peak. Where a datasheet prints only the sparse figure it is halved
  here, and ``notes`` says so.
* A key that a chip has no hardware path for is absent, not zero and not
  borrowed from a neighbour (V100 has no TF32, BF16 or FP8).
* Sourced: every entry names the documents its figures come from.
* Unknown means no peak. ``match_gpu`` returns ``None`` for any name it does not
  identify with confidence (a CPU, an unlisted GPU, an ambiguous name, a MIG
  slice), so callers report no MFU instead of a number computed against a
  guessed peak.

Units: ``peak_tflops`` in 1e12 FLOP/s, ``mem_bandwidth_gbps`` in 1e9 bytes/s,
``memory_gb`` as marketed (1e9 bytes), ``tdp_w`` in watts (the top of a
configurable range).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Callable, Mapping

from gpubench.errors import UnknownNameError

PEAK_KEYS = ("fp32", "tf32", "bf16", "fp16", "fp8")

# Both fp8 formats run at the same Tensor Core rate on every chip listed here,
# so they share one column; dtypes.py names them by format.
_PEAK_ALIASES = {"fp8_e4m3": "fp8", "fp8_e5m2": "fp8"}

VENDORS = ("nvidia", "amd")


@dataclass(frozen=True)
class GPUSpec:
    key: str
    name: str
    vendor: str
    arch: str
    # hash=False: a mapping is not hashable, and key identifies a spec anyway.
    peak_tflops: Mapping[str, float] = field(hash=False)
    mem_bandwidth_gbps: float
    memory_gb: float
    tdp_w: float
    sources: tuple[str, ...]
    notes: str = ""

    def __post_init__(self):
        unknown = set(self.peak_tflops) - set(PEAK_KEYS)
        if unknown:
            raise ValueError(f"{self.key}: unknown peak keys {sorted(unknown)}")
        if any(not v > 0 for v in self.peak_tflops.values()):
            raise ValueError(f"{self.key}: a peak must be positive; leave an absent path out")
        if self.vendor not in VENDORS:
            raise ValueError(f"{self.key}: vendor {self.vendor!r} not in {VENDORS}")
        if not self.sources:
            raise ValueError(f"{self.key}: every figure needs a source")
        # Frozen all the way down: a caller must not be able to edit a peak.
        object.__setattr__(self, "peak_tflops", MappingProxyType(dict(self.peak_tflops)))

    def peak(self, key: str) -> float | None:
        """Dense peak in TFLOP/s for a precision, or None if the chip has no such path."""
        k = key.lower()
        k = _PEAK_ALIASES.get(k, k)
        if k not in PEAK_KEYS:
            raise UnknownNameError("precision", key, PEAK_KEYS + tuple(_PEAK_ALIASES))
        return self.peak_tflops.get(k)

    def peak_flops(self, key: str) -> float | None:
        """Dense peak in FLOP/s (what an MFU denominator wants), or None."""
        tflops = self.peak(key)
        return None if tflops is None else tflops * 1e12


# ---------------------------------------------------------------------------
# Sources. Titles first, so a dead link still names the document to look for.

_V100_DS = ("NVIDIA Tesla V100 GPU Accelerator datasheet: "
            "https://images.nvidia.com/content/technologies/volta/pdf/"
            "tesla-volta-v100-datasheet-letter-fnl-web.pdf")
_A100_DS = ("NVIDIA A100 Tensor Core GPU datasheet: "
            "https://www.nvidia.com/content/dam/en-zz/Solutions/Data-Center/a100/pdf/"
            "nvidia-a100-datasheet-us-nvidia-1758950-r4-web.pdf")
_H100_DS = ("NVIDIA H100 Tensor Core GPU datasheet: "
            "https://resources.nvidia.com/en-us-tensor-core/nvidia-tensor-core-gpu-datasheet")
_H100_PAGE = "NVIDIA H100 product page: https://www.nvidia.com/en-us/data-center/h100/"
_HOPPER_WP = ("NVIDIA H100 Tensor Core GPU Architecture whitepaper (dense 989.4 / 1978.9 TFLOP/s "
              "at SXM5 boost): https://resources.nvidia.com/en-us-tensor-core/gtc22-whitepaper-hopper")
_H200_PAGE = "NVIDIA H200 product page and datasheet: https://www.nvidia.com/en-us/data-center/h200/"
_H800_DS = ("NVIDIA H800 Tensor Core GPU datasheet (2023, China-market part; "
            "no stable public URL known)")
_HGX_PAGE = ("NVIDIA HGX platform page, HGX B200 per-GPU specifications: "
             "https://www.nvidia.com/en-us/data-center/hgx/")
_DGX_B200 = "NVIDIA DGX B200 datasheet: https://www.nvidia.com/en-us/data-center/dgx-b200/"
_L40S_DS = ("NVIDIA L40S datasheet / product page: "
            "https://www.nvidia.com/en-us/data-center/l40s/")
_ADA_WP = ("NVIDIA Ada GPU Architecture whitepaper, Appendix A (GeForce RTX 4090): "
           "https://images.nvidia.com/aem-dam/Solutions/geforce/ada/nvidia-ada-gpu-architecture.pdf")
_RTX4090_PAGE = ("NVIDIA GeForce RTX 4090 product page: "
                 "https://www.nvidia.com/en-us/geforce/graphics-cards/40-series/rtx-4090/")
_MI300X_PAGE = ("AMD Instinct MI300X accelerator specifications: "
                "https://www.amd.com/en/products/accelerators/instinct/mi300/mi300x.html")
_CDNA3_WP = ("AMD CDNA 3 architecture whitepaper: https://www.amd.com/content/dam/amd/en/documents/"
             "instinct-tech-docs/white-papers/amd-cdna-3-white-paper.pdf")

_HALVED = ("The datasheet prints Tensor Core rates with sparsity; the dense figures "
           "here are those halved.")

# Hopper SXM5 compute is shared by H100 SXM, H200 SXM and H800 SXM (same GH100
# configuration and clocks; they differ in memory, NVLink and FP64).
_HOPPER_SXM = {"fp32": 67.0, "tf32": 494.5, "bf16": 989.0, "fp16": 989.0, "fp8": 1979.0}
# Hopper NVL boards (H100 NVL, H200 NVL): 132 SMs at lower clocks than SXM5.
_HOPPER_NVL = {"fp32": 60.0, "tf32": 417.5, "bf16": 835.5, "fp16": 835.5, "fp8": 1670.5}
_A100 = {"fp32": 19.5, "tf32": 156.0, "bf16": 312.0, "fp16": 312.0}

_VOLTA_NOTE = ("fp16 is the Tensor Core rate (fp16 inputs, fp32 accumulate). Volta has no "
               "TF32, BF16 or FP8 path, so those keys are absent. The 16 GB and 32 GB "
               "versions differ only in memory.")
_A100_NOTE = (_HALVED + " Datasheet: TF32 156 | 312*, BF16/FP16 312 | 624*. No FP8 path "
              "(Ampere). All A100 variants have the same compute; bandwidth and power differ.")
_H100_SXM_NOTE = (_HALVED + " Datasheet: TF32 989*, BF16/FP16 1,979*, FP8 3,958*; dense "
                  "BF16/FP16 989 and FP8 1979 follow the architecture whitepaper's 989.4 / "
                  "1978.9 (half of 1,979 would be 989.5).")
_HOPPER_NVL_NOTE = (_HALVED + " Datasheet (per GPU): FP32 60, TF32 835*, BF16/FP16 1,671*, "
                    "FP8 3,341*.")


def _spec(key, name, vendor, arch, peaks, bw, mem, tdp, sources, notes=""):
    return GPUSpec(key=key, name=name, vendor=vendor, arch=arch, peak_tflops=dict(peaks),
                   mem_bandwidth_gbps=bw, memory_gb=mem, tdp_w=tdp,
                   sources=tuple(sources), notes=notes)


_SPECS = (
    # --- Volta -------------------------------------------------------------
    _spec("v100-sxm2-16gb", "NVIDIA Tesla V100 SXM2 16GB", "nvidia", "volta",
          {"fp32": 15.7, "fp16": 125.0}, 900, 16, 300, [_V100_DS], _VOLTA_NOTE),
    _spec("v100-sxm2-32gb", "NVIDIA Tesla V100 SXM2 32GB", "nvidia", "volta",
          {"fp32": 15.7, "fp16": 125.0}, 900, 32, 300, [_V100_DS], _VOLTA_NOTE),
    _spec("v100-pcie-16gb", "NVIDIA Tesla V100 PCIe 16GB", "nvidia", "volta",
          {"fp32": 14.0, "fp16": 112.0}, 900, 16, 250, [_V100_DS], _VOLTA_NOTE),
    _spec("v100-pcie-32gb", "NVIDIA Tesla V100 PCIe 32GB", "nvidia", "volta",
          {"fp32": 14.0, "fp16": 112.0}, 900, 32, 250, [_V100_DS], _VOLTA_NOTE),
    # --- Ampere ------------------------------------------------------------
    _spec("a100-sxm-40gb", "NVIDIA A100 SXM4 40GB", "nvidia", "ampere",
          _A100, 1555, 40, 400, [_A100_DS], _A100_NOTE),
    _spec("a100-sxm-80gb", "NVIDIA A100 SXM4 80GB", "nvidia", "ampere",
          _A100, 2039, 80, 400, [_A100_DS], _A100_NOTE),
    _spec("a100-pcie-40gb", "NVIDIA A100 PCIe 40GB", "nvidia", "ampere",
          _A100, 1555, 40, 250, [_A100_DS], _A100_NOTE),
    _spec("a100-pcie-80gb", "NVIDIA A100 PCIe 80GB", "nvidia", "ampere",
          _A100, 1935, 80, 300, [_A100_DS], _A100_NOTE),
    # --- Hopper ------------------------------------------------------------
    _spec("h100-sxm", "NVIDIA H100 SXM5 80GB", "nvidia", "hopper",
          _HOPPER_SXM, 3350, 80, 700, [_H100_DS, _HOPPER_WP, _H100_PAGE], _H100_SXM_NOTE),
    _spec("h100-pcie", "NVIDIA H100 PCIe 80GB", "nvidia", "hopper",
          {"fp32": 51.0, "tf32": 378.0, "bf16": 756.0, "fp16": 756.0, "fp8": 1513.0},
          2000, 80, 350, [_H100_DS, _H100_PAGE],
          _HALVED + " Datasheet: TF32 756*, BF16/FP16 1,513*, FP8 3,026*; half of 1,513 is "
          "756.5, written 756 as in the reference table. TDP 300-350 W configurable."),
    _spec("h100-nvl", "NVIDIA H100 NVL 94GB", "nvidia", "hopper",
          _HOPPER_NVL, 3900, 94, 400, [_H100_DS, _H100_PAGE],
          _HOPPER_NVL_NOTE + " Per GPU of the two-card NVLink pair; TDP 350-400 W configurable."),
    _spec("h200-sxm", "NVIDIA H200 SXM 141GB", "nvidia", "hopper",
          _HOPPER_SXM, 4800, 141, 700, [_H200_PAGE, _H100_DS],
          "Same GH100 compute as H100 SXM: the datasheet's with-sparsity TF32 989*, "
          "BF16/FP16 1,979*, FP8 3,958* halved as for that entry. HBM3e 141 GB at 4.8 TB/s."),
    _spec("h200-nvl", "NVIDIA H200 NVL 141GB", "nvidia", "hopper",
          _HOPPER_NVL, 4800, 141, 600, [_H200_PAGE], _HOPPER_NVL_NOTE + " TDP up to 600 W."),
    _spec("h800-sxm", "NVIDIA H800 SXM5 80GB", "nvidia", "hopper",
          _HOPPER_SXM, 3350, 80, 700, [_H800_DS, _H100_DS],
          "Export variant of H100 SXM: same FP32/TF32/BF16/FP16/FP8 rates and HBM3, "
          "NVLink cut to 400 GB/s and FP64 to about 1 TFLOP/s (neither used here). "
          + _HALVED),
    # --- Blackwell ---------------------------------------------------------
    _spec("b200", "NVIDIA B200 (HGX B200, per GPU)", "nvidia", "blackwell",
          {"fp32": 75.0, "tf32": 1100.0, "bf16": 2250.0, "fp16": 2250.0, "fp8": 4500.0},
          8000, 180, 1000, [_HGX_PAGE, _DGX_B200],
          _HALVED + " HGX B200 per GPU: TF32 2.2 PF*, FP16/BF16 4.5 PF*, FP8 9 PF*. "
          "FP32 is uncertain: the HGX page lists 75 TFLOP/s, NVIDIA's earlier Blackwell "
          "brief 80. Bandwidth: 8 TB/s (DGX B200: 64 TB/s over 8 GPUs); a later HGX page "
          "lists 7.7 TB/s. Configurable up to 1,000 W."),
    # --- Ada ---------------------------------------------------------------
    _spec("l40s", "NVIDIA L40S 48GB", "nvidia", "ada",
          {"fp32": 91.6, "tf32": 183.0, "bf16": 362.05, "fp16": 362.05, "fp8": 733.0},
          864, 48, 350, [_L40S_DS],
          "Datasheet prints dense | sparse: TF32 183 | 366*, BF16/FP16 362.05 | 733*, "
          "FP8 733 | 1,466*; the dense ones are used. (Half of 733 would be 366.5: the "
          "datasheet's own dense BF16 is slightly lower, and is what is kept.) GDDR6."),
    _spec("rtx-4090", "NVIDIA GeForce RTX 4090", "nvidia", "ada",
          {"fp32": 82.6, "tf32": 82.6, "bf16": 165.2, "fp16": 165.2, "fp8": 330.3},
          1008, 24, 450, [_ADA_WP, _RTX4090_PAGE],
          "GeForce parts run fp16/bf16/fp8 Tensor Core math with FP32 accumulation at "
          "half the FP16-accumulate rate. The figures are the FP32-accumulate ones "
          "(what PyTorch's matmuls and scaled_mm use): FP16/BF16 165.2 (330.3 with "
          "FP16 accumulate), FP8 330.3 (660.6). Whitepaper prints dense/sparse pairs; "
          "dense used. GDDR6X."),
    # --- AMD CDNA 3 --------------------------------------------------------
    _spec("mi300x", "AMD Instinct MI300X", "amd", "cdna3",
          {"fp32": 163.4, "tf32": 653.7, "bf16": 1307.4, "fp16": 1307.4, "fp8": 2614.9},
          5300, 192, 750, [_MI300X_PAGE, _CDNA3_WP],
          "AMD lists dense figures, with sparsity separately (TF32 1,307.4, FP16/BF16 "
          "2,614.9, FP8 5,229.8 with sparsity); the dense ones are used. FP32 is the "
          "matrix rate (equal to the vector rate). HBM3."),
)

GPUS: dict[str, GPUSpec] = {s.key: s for s in _SPECS}

# Short names a person types (CLI, cost estimates). They pick the common form of
# a model; match_gpu does not use them, because a device name that leaves the
# form open must get no peak.
_ALIASES = {
    "v100": "v100-sxm2-32gb",
    "v100-sxm2": "v100-sxm2-32gb",
    "v100-16gb": "v100-sxm2-16gb",
    "v100-32gb": "v100-sxm2-32gb",
    "v100-pcie": "v100-pcie-32gb",
    "a100-40gb": "a100-sxm-40gb",
    "a100-80gb": "a100-sxm-80gb",
    "a100-sxm4-40gb": "a100-sxm-40gb",
    "a100-sxm4-80gb": "a100-sxm-80gb",
    "a100": "a100-sxm-80gb",
    "a100-sxm": "a100-sxm-80gb",
    "a100-sxm4": "a100-sxm-80gb",
    "a100-pcie": "a100-pcie-80gb",
    "h100": "h100-sxm",
    "h100-sxm5": "h100-sxm",
    "h100-80gb": "h100-sxm",
    "h200": "h200-sxm",
    "h200-sxm5": "h200-sxm",
    "h800": "h800-sxm",
    "h800-sxm5": "h800-sxm",
    "b200-hgx": "b200",
    "rtx4090": "rtx-4090",
    "4090": "rtx-4090",
    "geforce-rtx-4090": "rtx-4090",
    "mi300": "mi300x",
}


def _typed(key: str) -> str:
    return re.sub(r"[\s_]+", "-", str(key).strip().lower())


def get_gpu(key: str) -> GPUSpec:
    """The spec for a key, an alias, or a device name that match_gpu identifies.

    Case-insensitive; spaces and underscores count as dashes. Raises
    UnknownNameError (with close matches) otherwise.
    """
    k = _typed(key)
    k = _ALIASES.get(k, k)
    if k in GPUS:
        return GPUS[k]
    spec = match_gpu(str(key))
    if spec is not None:
        return spec
    raise UnknownNameError("GPU", str(key), set(GPUS) | set(_ALIASES), close=suggest_gpus(str(key)),
                           listed_by="gpubench list gpus")


def aliases_of(gpu_key: str) -> list[str]:
    """The short names that resolve to this key."""
    return sorted(a for a, k in _ALIASES.items() if k == gpu_key)


def alias_note(name: str) -> str | None:
    """What a short name was taken to mean ("a100 means a100-sxm-80gb (…)"), or None when
    the name is a key itself. A short name picks one form of a model (SXM, the larger
    memory); the person who typed it should see which, since the forms differ in peaks."""
    k = _typed(name)
    if k in GPUS or k not in _ALIASES:
        return None
    spec = GPUS[_ALIASES[k]]
    family = spec.key.split("-")[0]
    others = sorted(key for key in GPUS if key != spec.key and key.split("-")[0] == family)
    rest = f"; others of that model: {', '.join(others)}" if others else ""
    return f"--gpu {name} means {spec.key} ({spec.name}){rest}"


# Words people put before a model name that no key carries.
_VENDOR_WORDS = re.compile(r"\b(?:nvidia|amd|tesla|geforce|instinct|gpu)\b[-\s]*")


def suggest_gpus(name: str, n: int = 3) -> list[str]:
    """Keys a mistyped GPU name probably meant: the name without vendor words, looked up as
    a key or alias; else the keys and aliases that contain it or that difflib finds close."""
    import difflib

    bare = _typed(_VENDOR_WORDS.sub(" ", str(name).lower())).strip("-")
    names = sorted(set(GPUS) | set(_ALIASES))
    if bare in GPUS or bare in _ALIASES:
        return [bare]
    # Completions first ("h10" → h100), then what difflib finds close, then the names the
    # typed one starts with ("a100-sxm4-80" → a100-sxm4): the most specific guesses lead.
    out = [k for k in names if bare and k.startswith(bare)]
    out += [k for k in difflib.get_close_matches(bare or _typed(name), names, n=n, cutoff=0.5) if k not in out]
    out += sorted((k for k in names if bare.startswith(k) and k not in out), key=len, reverse=True)
    return out[:n]


# ---------------------------------------------------------------------------
# Device-name matching.
#
# Names are normalized (lower case, "-"/"_" as spaces) and must match a rule
# *entirely*: a suffix nobody listed ("4090 D", "Laptop GPU", "MIG 1g.10gb",
# "H1000", "GH200") means a different product or a slice of one, and gets None
# rather than the nearest entry. Rules still run most specific first.

_GB = 1e9
# A100 40 GB reports ~42.5e9 bytes, 80 GB ~85e9: split between them.
_A100_SPLIT = 60 * _GB
# H100 80 GB (SXM or PCIe) reports ~85e9 bytes, H100 NVL (94 GB) ~100e9.
_H100_NVL_FLOOR = 90 * _GB
# V100 16 GB reports ~16.9e9 bytes, 32 GB ~34e9.
_V100_SPLIT = 24 * _GB
# What a driver reports against the marketed size: GiB-vs-GB makes it ~6% more,
# ECC on GDDR and driver reservations take some away (L40S: ~0.99x). Outside
# this band the device is not the listed product (a MIG slice, a partition,
# another memory variant).
_MEM_RATIO_MIN, _MEM_RATIO_MAX = 0.85, 1.15

_NV = r"(?:nvidia )?(?:tesla )?"


def _by_memory(split: float, small: str | None, large: str | None):
    def resolve(mem: float | None) -> str | None:
        if mem is None:
            return None
        return small if mem < split else large
    return resolve


_Resolver = Callable[[float | None], str | None]

_RULES: tuple[tuple[re.Pattern, str | _Resolver], ...] = tuple(
    (re.compile(pattern), target) for pattern, target in (
        # Hopper: NVL and PCIe before SXM, H200 NVL before H200.
        (rf"{_NV}h100 nvl(?: 94gb)?", "h100-nvl"),
        (rf"{_NV}h100 (?:80gb )?pcie(?: 80gb)?", "h100-pcie"),
        # "NVIDIA H100 80GB HBM3" is what the SXM5 part reports.
        (rf"{_NV}h100 (?:sxm5? )?80gb(?: hbm3)?|{_NV}h100 sxm5?", "h100-sxm"),
        # Plain "H100": only the NVL's 94 GB tells it apart; SXM and PCIe are
        # both 80 GB and differ by 30% in compute, so 80 GB stays unknown.
        (rf"{_NV}h100", _by_memory(_H100_NVL_FLOOR, None, "h100-nvl")),
        (rf"{_NV}h200 nvl(?: 141gb)?", "h200-nvl"),
        (rf"{_NV}h200(?: sxm5?)?(?: 141gb)?(?: hbm3e)?", "h200-sxm"),
        # H800 PCIe is a different (PCIe-clocked) part with no entry here.
        (rf"{_NV}h800 (?:sxm5? )?80gb(?: hbm3)?|{_NV}h800(?: sxm5?)?", "h800-sxm"),
        # Ampere.
        (rf"{_NV}a100 (?:sxm4? )?40gb", "a100-sxm-40gb"),
        (rf"{_NV}a100 (?:sxm4? )?80gb", "a100-sxm-80gb"),
        (rf"{_NV}a100 (?:pcie 40gb|40gb pcie)", "a100-pcie-40gb"),
        (rf"{_NV}a100 (?:pcie 80gb|80gb pcie)", "a100-pcie-80gb"),
        # Plain "A100": every A100 has the same compute, so memory picking the
        # SXM entry of that size gets the peaks right; an 80 GB PCIe card would
        # get SXM's bandwidth (2039 vs 1935 GB/s).
        (rf"{_NV}a100(?: sxm4?)?", _by_memory(_A100_SPLIT, "a100-sxm-40gb", "a100-sxm-80gb")),
        # Volta. V100S and V100 SXM3 are faster parts with no entry here.
        (rf"{_NV}v100 sxm2 16gb", "v100-sxm2-16gb"),
        (rf"{_NV}v100 sxm2 32gb", "v100-sxm2-32gb"),
        (rf"{_NV}v100 pcie 16gb", "v100-pcie-16gb"),
        (rf"{_NV}v100 pcie 32gb", "v100-pcie-32gb"),
        (rf"{_NV}v100 sxm2", _by_memory(_V100_SPLIT, "v100-sxm2-16gb", "v100-sxm2-32gb")),
        (rf"{_NV}v100 pcie", _by_memory(_V100_SPLIT, "v100-pcie-16gb", "v100-pcie-32gb")),
        # Blackwell (GB200 is another board with other clocks and power).
        (rf"{_NV}b200(?: 180gb)?(?: hbm3e)?", "b200"),
        # Ada. "L40" alone is a slower part; 4090 D / Laptop are other chips.
        (rf"{_NV}l40s", "l40s"),
        (r"(?:nvidia )?(?:geforce )?rtx 4090", "rtx-4090"),
        # AMD. "VF" is the SR-IOV function that cloud VMs see for a whole GPU.
        (r"(?:amd )?(?:instinct )?mi300x(?: vf)?", "mi300x"),
    )
)


def _normalize(name: str) -> str:
    s = name.lower()
    s = re.sub(r"\((?:r|tm)\)|[®™]", " ", s)
    s = re.sub(r"[-_\s]+", " ", s)
    return s.strip()


def _memory_fits(spec: GPUSpec, memory_bytes: float | None) -> bool:
    if memory_bytes is None:
        return True
    ratio = memory_bytes / (spec.memory_gb * _GB)
    return _MEM_RATIO_MIN <= ratio <= _MEM_RATIO_MAX


def match_gpu(name: str, memory_bytes: int | None = None) -> GPUSpec | None:
    """The spec for a device name as torch or NVML prints it, or None.

    ``memory_bytes`` (torch's ``total_memory``) settles names that leave the
    memory variant open and rejects a name whose memory contradicts it. None
    means "not confidently identified": the caller must then report no peak.
    """
    if not isinstance(name, str) or not name.strip():
        return None
    mem = float(memory_bytes) if memory_bytes and memory_bytes > 0 else None
    s = _normalize(name)
    for pattern, target in _RULES:
        if pattern.fullmatch(s):
            key = target(mem) if callable(target) else target
            if key is None:
                return None
            spec = GPUS[key]
            return spec if _memory_fits(spec, mem) else None
    return None


__all__ = ["PEAK_KEYS", "GPUSpec", "GPUS", "alias_note", "aliases_of", "get_gpu", "match_gpu",
           "suggest_gpus"]
