"""The hardware table: dense peaks that match the reference, and name matching
that never hands an unknown device a borrowed peak."""

import math
import re
from pathlib import Path

import pytest

from gpubench.errors import UnknownNameError
from gpubench.hardware import GPUS, PEAK_KEYS, GPUSpec, get_gpu, match_gpu

# The reference's dense-peak table (section 4), copied into the project with its sources: the
# check runs in every clone (it skipped wherever ../shared was absent).
REFERENCE = Path(__file__).resolve().parent / "data" / "dense_peaks.md"

GB = 1e9

# (name as torch/NVML prints it, expected key, total_memory torch would report)
DEVICE_NAMES = [
    ("NVIDIA H100 80GB HBM3", "h100-sxm", 85_031_714_816),
    ("NVIDIA H100 PCIe", "h100-pcie", 85_520_809_984),
    ("NVIDIA H100 NVL", "h100-nvl", 100_485_038_080),
    ("NVIDIA H200", "h200-sxm", 150_110_011_392),
    ("NVIDIA H200 NVL", "h200-nvl", 150_110_011_392),
    ("NVIDIA H800", "h800-sxm", 85_031_714_816),
    ("NVIDIA A100-SXM4-80GB", "a100-sxm-80gb", 85_198_045_184),
    ("NVIDIA A100-SXM4-40GB", "a100-sxm-40gb", 42_505_273_344),
    ("NVIDIA A100-PCIE-40GB", "a100-pcie-40gb", 42_505_273_344),
    ("NVIDIA A100 80GB PCIe", "a100-pcie-80gb", 85_198_045_184),
    ("Tesla V100-SXM2-16GB", "v100-sxm2-16gb", 16_945_512_448),
    ("Tesla V100-SXM2-32GB", "v100-sxm2-32gb", 34_089_730_048),
    ("Tesla V100-PCIE-32GB", "v100-pcie-32gb", 34_089_730_048),
    ("Tesla V100-PCIE-16GB", "v100-pcie-16gb", 16_945_512_448),
    ("NVIDIA L40S", "l40s", 47_697_362_944),
    ("NVIDIA GeForce RTX 4090", "rtx-4090", 25_386_352_640),
    ("NVIDIA B200", "b200", 191_514_411_008),
    ("AMD Instinct MI300X", "mi300x", 205_822_885_888),
]

UNKNOWN_NAMES = [
    "NVIDIA GeForce RTX 4080",
    "NVIDIA L40",
    "NVIDIA L4",
    "NVIDIA A10",
    "NVIDIA A800-SXM4-80GB",
    "NVIDIA H800 PCIe",
    "Intel(R) Xeon(R) Platinum 8480+",
    "cpu",
    "",
    "   ",
    "NVIDIA H100",  # SXM, PCIe or NVL: no memory to tell
    "Tesla V100",  # SXM2 or PCIe: compute differs
    # Substrings and suffixes that name other products.
    "NVIDIA H1000",
    "NVIDIA H20",
    "NVIDIA GH200 480GB",
    "NVIDIA GB200",
    "NVIDIA B100",
    "NVIDIA GeForce RTX 4090 D",
    "NVIDIA GeForce RTX 4090 Ti",
    "NVIDIA GeForce RTX 4090 Laptop GPU",
    "Tesla V100S-PCIE-32GB",
    "Tesla V100-SXM3-32GB",
    "AMD Instinct MI300A",
    "AMD Instinct MI325X",
    "AMD Radeon Graphics",
    # A MIG slice has a fraction of the SMs: the whole chip's peak is wrong for it.
    "NVIDIA A100-SXM4-40GB MIG 1g.5gb",
    "NVIDIA H100 80GB HBM3 MIG 7g.80gb",
]


# --- matching ------------------------------------------------------------------

@pytest.mark.parametrize("name,key,mem", DEVICE_NAMES)
def test_device_name_maps_to_key(name, key, mem):
    assert match_gpu(name).key == key
    assert match_gpu(name, mem).key == key


@pytest.mark.parametrize("name,key,mem", DEVICE_NAMES)
def test_matching_is_case_and_separator_insensitive(name, key, mem):
    assert match_gpu(name.upper()).key == key
    assert match_gpu(name.lower()).key == key
    assert match_gpu("  " + name.replace(" ", "_") + " ").key == key


@pytest.mark.parametrize("name", UNKNOWN_NAMES)
def test_unknown_device_gets_no_spec(name):
    assert match_gpu(name) is None
    assert match_gpu(name, 80 * GB) is None


def test_every_entry_is_reachable_from_a_device_name():
    assert {key for _, key, _ in DEVICE_NAMES} == set(GPUS)


def test_memory_settles_a_plain_a100():
    assert match_gpu("NVIDIA A100") is None
    assert match_gpu("NVIDIA A100", 42_505_273_344).key == "a100-sxm-40gb"
    assert match_gpu("NVIDIA A100", 85_198_045_184).key == "a100-sxm-80gb"


def test_memory_settles_h100_nvl_but_not_80gb_h100():
    assert match_gpu("NVIDIA H100", 100_485_038_080).key == "h100-nvl"
    # SXM and PCIe are both 80 GB and differ in peak by 30%: no guess.
    assert match_gpu("NVIDIA H100", 85_031_714_816) is None


def test_memory_settles_v100_size_but_not_form_factor():
    assert match_gpu("Tesla V100-SXM2", 16_945_512_448).key == "v100-sxm2-16gb"
    assert match_gpu("Tesla V100-PCIE", 34_089_730_048).key == "v100-pcie-32gb"
    assert match_gpu("Tesla V100-SXM2") is None


def test_memory_that_contradicts_the_name_gets_no_spec():
    assert match_gpu("NVIDIA A100-SXM4-80GB", 42_505_273_344) is None
    assert match_gpu("NVIDIA H100 80GB HBM3", 100_485_038_080) is None
    # A partition or slice reports a fraction of the memory.
    assert match_gpu("AMD Instinct MI300X", 24 * GB) is None
    assert match_gpu("NVIDIA H100 80GB HBM3", 10 * GB) is None


def test_unknown_memory_is_not_a_contradiction():
    assert match_gpu("NVIDIA H100 80GB HBM3", None).key == "h100-sxm"
    assert match_gpu("NVIDIA H100 80GB HBM3", 0).key == "h100-sxm"


def test_non_string_name_gets_no_spec():
    assert match_gpu(None) is None


# --- the figures -----------------------------------------------------------------

# The brief's reference values (dense, from vendor datasheets), TFLOP/s and GB/s.
EXPECTED = {
    "v100-sxm2-16gb": ({"fp32": 15.7, "fp16": 125}, 900),
    "v100-sxm2-32gb": ({"fp32": 15.7, "fp16": 125}, 900),
    "v100-pcie-32gb": ({"fp32": 14, "fp16": 112}, 900),
    "a100-sxm-40gb": ({"fp32": 19.5, "tf32": 156, "bf16": 312, "fp16": 312}, 1555),
    "a100-sxm-80gb": ({"fp32": 19.5, "tf32": 156, "bf16": 312, "fp16": 312}, 2039),
    "a100-pcie-80gb": ({"fp32": 19.5, "tf32": 156, "bf16": 312, "fp16": 312}, 1935),
    "h100-sxm": ({"fp32": 67, "tf32": 494.5, "bf16": 989, "fp16": 989, "fp8": 1979}, 3350),
    "h100-pcie": ({"fp32": 51, "tf32": 378, "bf16": 756, "fp16": 756, "fp8": 1513}, 2000),
    "h200-sxm": ({"fp32": 67, "tf32": 494.5, "bf16": 989, "fp16": 989, "fp8": 1979}, 4800),
    "h800-sxm": ({"fp32": 67, "tf32": 494.5, "bf16": 989, "fp16": 989, "fp8": 1979}, 3350),
    "rtx-4090": ({"fp32": 82.6, "tf32": 82.6, "bf16": 165.2, "fp16": 165.2, "fp8": 330.3}, 1008),
    "l40s": ({"fp32": 91.6, "tf32": 183, "bf16": 362.05, "fp16": 362.05, "fp8": 733}, 864),
    "mi300x": ({"fp32": 163.4, "tf32": 653.7, "bf16": 1307.4, "fp16": 1307.4, "fp8": 2614.9},
               5300),
    "b200": ({"fp32": 75, "tf32": 1100, "bf16": 2250, "fp16": 2250, "fp8": 4500}, 8000),
}


@pytest.mark.parametrize("key", sorted(EXPECTED))
def test_known_figures(key):
    peaks, bw = EXPECTED[key]
    spec = GPUS[key]
    # Exactly these keys: an extra one would be a borrowed path.
    assert dict(spec.peak_tflops) == pytest.approx(peaks)
    assert set(spec.peak_tflops) == set(peaks)
    assert spec.mem_bandwidth_gbps == bw


def test_same_compute_where_only_memory_differs():
    assert GPUS["h200-sxm"].peak_tflops == GPUS["h100-sxm"].peak_tflops
    assert GPUS["h800-sxm"].peak_tflops == GPUS["h100-sxm"].peak_tflops
    assert GPUS["h200-nvl"].peak_tflops == GPUS["h100-nvl"].peak_tflops
    a100 = [s for k, s in GPUS.items() if k.startswith("a100")]
    assert len({tuple(sorted(s.peak_tflops.items())) for s in a100}) == 1


@pytest.mark.parametrize("key", sorted(GPUS))
def test_peaks_are_dense_and_ordered(key):
    spec = GPUS[key]
    p = spec.peak_tflops
    assert set(p) <= set(PEAK_KEYS)
    assert all(v > 0 for v in p.values())
    assert "fp32" in p
    tensor16 = p.get("bf16", p.get("fp16"))
    assert tensor16 is not None
    # Every chip here has a 16-bit matrix path well above its fp32 rate.
    assert tensor16 >= 2 * p["fp32"]
    if "tf32" in p:
        assert p["fp32"] <= p["tf32"] < tensor16
    if "bf16" in p and "fp16" in p:
        assert p["bf16"] == p["fp16"]
    if "fp8" in p:
        # fp8 runs at twice the 16-bit rate on Hopper, Ada, Blackwell and CDNA3.
        # A sparse figure on one side would make this 1x or 4x. The tolerance is
        # for datasheet rounding (L40S prints 362.05 and 733: 2.025x).
        assert math.isclose(p["fp8"], 2 * p["bf16"], rel_tol=0.03)


@pytest.mark.parametrize("key", sorted(GPUS))
def test_fp8_exactly_where_the_architecture_has_it(key):
    spec = GPUS[key]
    has_fp8 = spec.arch in ("hopper", "ada", "blackwell", "cdna3")
    assert ("fp8" in spec.peak_tflops) == has_fp8
    assert ("tf32" in spec.peak_tflops) == (spec.arch != "volta")
    assert ("bf16" in spec.peak_tflops) == (spec.arch != "volta")


@pytest.mark.parametrize("key", sorted(GPUS))
def test_every_spec_is_sourced_and_sane(key):
    spec = GPUS[key]
    assert spec.key == key
    assert spec.sources
    assert any("https://" in s for s in spec.sources)
    assert spec.vendor in ("nvidia", "amd")
    assert spec.arch in ("volta", "ampere", "ada", "hopper", "blackwell", "cdna3")
    assert spec.mem_bandwidth_gbps > 100
    assert 8 <= spec.memory_gb <= 300
    assert 100 <= spec.tdp_w <= 1500
    assert spec.name


@pytest.mark.parametrize("key", sorted(GPUS))
def test_halved_figures_say_so(key):
    spec = GPUS[key]
    # Every datasheet since Ampere prints sparse rates; the note must say how
    # the dense figure was chosen.
    if spec.arch != "volta":
        assert "spars" in spec.notes.lower()


def test_spec_is_immutable():
    spec = GPUS["h100-sxm"]
    with pytest.raises(TypeError):
        spec.peak_tflops["bf16"] = 1979.0
    with pytest.raises(AttributeError):
        spec.tdp_w = 1.0
    hash(spec)


def test_spec_rejects_bad_keys():
    with pytest.raises(ValueError):
        GPUSpec("x", "X", "nvidia", "hopper", {"int8": 1.0}, 1, 1, 1, ("s",))
    with pytest.raises(ValueError):
        GPUSpec("x", "X", "nvidia", "hopper", {"fp32": 0.0}, 1, 1, 1, ("s",))
    with pytest.raises(ValueError):
        GPUSpec("x", "X", "nvidia", "hopper", {"fp32": 1.0}, 1, 1, 1, ())


# --- peak() ----------------------------------------------------------------------

@pytest.mark.parametrize("key", sorted(GPUS))
def test_fp8_format_names_share_the_fp8_peak(key):
    spec = GPUS[key]
    assert spec.peak("fp8_e4m3") == spec.peak("fp8")
    assert spec.peak("fp8_e5m2") == spec.peak("fp8")
    assert spec.peak("FP8_E4M3") == spec.peak("fp8")


def test_absent_path_has_no_peak():
    v100 = get_gpu("v100")
    assert v100.peak("bf16") is None
    assert v100.peak("tf32") is None
    assert v100.peak("fp8_e4m3") is None
    assert v100.peak("fp16") == 125
    assert get_gpu("a100-80gb").peak("fp8") is None


def test_peak_flops_is_tflops_times_1e12():
    assert get_gpu("h100").peak_flops("bf16") == 989e12
    assert get_gpu("v100").peak_flops("bf16") is None


def test_peak_rejects_a_name_that_is_no_precision():
    with pytest.raises(UnknownNameError):
        GPUS["h100-sxm"].peak("int8")


def test_peak_keys_cover_the_precision_table():
    dtypes = pytest.importorskip("gpubench.dtypes")
    for p in dtypes.PRECISIONS.values():
        assert p.peak_key in PEAK_KEYS
        GPUS["h100-sxm"].peak(p.name)  # every precision name is accepted


# --- get_gpu ---------------------------------------------------------------------

@pytest.mark.parametrize("alias,key", [
    ("h100", "h100-sxm"),
    ("H100", "h100-sxm"),
    ("h100-sxm", "h100-sxm"),
    ("H100-PCIE", "h100-pcie"),
    ("h100_nvl", "h100-nvl"),
    ("h200", "h200-sxm"),
    ("h200-nvl", "h200-nvl"),
    ("h800", "h800-sxm"),
    ("a100-80gb", "a100-sxm-80gb"),
    ("a100-40gb", "a100-sxm-40gb"),
    ("A100 PCIe 80GB", "a100-pcie-80gb"),
    ("v100", "v100-sxm2-32gb"),
    ("b200", "b200"),
    ("L40S", "l40s"),
    ("rtx4090", "rtx-4090"),
    ("MI300X", "mi300x"),
    # A device name is accepted too.
    ("NVIDIA A100-SXM4-40GB", "a100-sxm-40gb"),
    ("NVIDIA H100 80GB HBM3", "h100-sxm"),
])
def test_get_gpu_aliases(alias, key):
    assert get_gpu(alias).key == key


@pytest.mark.parametrize("key", sorted(GPUS))
def test_get_gpu_every_key(key):
    assert get_gpu(key) is GPUS[key]
    assert get_gpu(key.upper()) is GPUS[key]


@pytest.mark.parametrize("typo,suggestion", [("h10", "h100"), ("a100-80", "a100-80gb")])
def test_get_gpu_unknown_suggests(typo, suggestion):
    with pytest.raises(UnknownNameError) as err:
        get_gpu(typo)
    assert err.value.kind == "GPU"
    assert "did you mean" in str(err.value)
    assert suggestion in str(err.value).split("did you mean", 1)[1]


# "a100" is a short name a person types (it picks a100-sxm-80gb and says so); a device
# that reports just "NVIDIA A100" is still unknown to match_gpu without its memory.
@pytest.mark.parametrize("name", ["NVIDIA H100", "cpu", "rtx-4080", ""])
def test_get_gpu_unknown_raises(name):
    with pytest.raises(UnknownNameError):
        get_gpu(name)


# --- the shared reference table ----------------------------------------------------

# Rows of section 4 of the reference README and the entries each one covers.
REFERENCE_ROWS = {
    "V100 SXM2": ["v100-sxm2-16gb", "v100-sxm2-32gb"],
    "A100 SXM 40/80GB": ["a100-sxm-40gb", "a100-sxm-80gb"],
    "H100 SXM 80GB": ["h100-sxm"],
    "H100 PCIe": ["h100-pcie"],
    "H200 SXM": ["h200-sxm"],
    "H800 SXM": ["h800-sxm"],
}

_NUMBER = re.compile(r"\d+(?:\.\d+)?")


def _reference_table():
    assert REFERENCE.is_file(), f"the dense-peak reference table is missing: {REFERENCE}"
    text = REFERENCE.read_text(encoding="utf-8")
    section = re.search(r"^## 4\..*?$(.*?)(?=^## |\Z)", text, re.M | re.S)
    assert section, "section 4 (dense peaks) not found in the reference README"
    rows = [line for line in section.group(1).splitlines() if line.strip().startswith("|")]
    cells = [[c.strip() for c in line.strip().strip("|").split("|")] for line in rows]
    header, body = cells[0], [c for c in cells[1:] if not set("".join(c)) <= set("-: ")]
    assert header[0] == "GPU"
    return header, body


def _number(cell):
    found = _NUMBER.findall(re.sub(r"\(.*?\)", "", cell))
    return [float(x) for x in found]


def test_reference_table_matches_the_specs():
    header, body = _reference_table()
    columns = {name: i for i, name in enumerate(header)}
    for needed in ("FP32", "TF32", "BF16/FP16", "FP8", "HBM TB/s"):
        assert needed in columns, f"reference table lost column {needed!r}"
    seen = set()
    for row in body:
        gpu = row[0]
        assert gpu in REFERENCE_ROWS, f"reference row {gpu!r} has no mapping in this test"
        seen.add(gpu)
        keys = REFERENCE_ROWS[gpu]
        specs = [GPUS[k] for k in keys]
        values = dict(zip(header, row + [""] * (len(header) - len(row))))

        if "same compute as" in values["FP32"]:
            other = values["FP32"].split("same compute as", 1)[1].strip()
            # "H100 SXM" names the row "H100 SXM 80GB".
            rows = [r for r in REFERENCE_ROWS if r == other or r.startswith(other + " ")]
            assert len(rows) == 1, (gpu, other)
            for spec in specs:
                for o in REFERENCE_ROWS[rows[0]]:
                    assert spec.peak_tflops == GPUS[o].peak_tflops, (gpu, spec.key, o)
            continue

        for column, peak_keys in (("FP32", ["fp32"]), ("TF32", ["tf32"]),
                                  ("BF16/FP16", ["bf16", "fp16"]), ("FP8", ["fp8"])):
            cell = values[column]
            numbers = _number(cell)
            # "125 (fp16)": the figure is for that precision only.
            qualifier = re.search(r"\((bf16|fp16)\)", cell, re.I)
            if qualifier:
                peak_keys = [qualifier.group(1).lower()]
            for spec in specs:
                if not numbers:  # "—": the chip has no such path
                    assert all(spec.peak(k) is None for k in peak_keys), (gpu, column)
                    continue
                assert len(numbers) == 1, (gpu, column, cell)
                for k in peak_keys:
                    assert spec.peak(k) == numbers[0], (gpu, column, spec.key, k)
            if qualifier:
                other_key = ({"bf16", "fp16"} - set(peak_keys)).pop()
                for spec in specs:
                    assert spec.peak(other_key) is None, (gpu, spec.key, other_key)

        tbs = _number(values["HBM TB/s"])
        assert len(tbs) in (1, len(specs)), (gpu, values["HBM TB/s"])
        if len(tbs) == 1:
            tbs = tbs * len(specs)
        for spec, tb in zip(specs, tbs):
            assert spec.mem_bandwidth_gbps == pytest.approx(tb * 1000), (gpu, spec.key)

    assert seen, "no rows parsed from the reference table"
