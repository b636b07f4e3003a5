"""mamf-finder's output (stas00/ml-engineering, compute/accelerator/benchmarks/mamf-finder.py)
as a gpubench ``mamf`` record: the maximum achievable matmul of one precision.

The output is a header (``Benchmark started on …``, ``** Command line:``, ``** Dtype:
torch.bfloat16``, ``** Platform/Device info:`` with the uname line and
``_CudaDeviceProperties(name='…', …, total_memory=81082MB, …)``, ``** Critical
software versions:`` torch= and cuda= or hip=, and since January 2025 ``benchmark
version: 2``) and a summary:

- benchmark version 2: ``Tried N shapes => the best outcomes were:`` then ``mean:``,
  ``median:`` and ``max:`` lines, ``X TFLOPS @ MxNxK (MxNxK)`` each, each the best of its
  statistic over the shapes tried (mean and median of 100 timed iterations, max from
  the fastest one);
- version 1 (2024): ``The best outcome was X TFLOPS @ MxNxK (MxNxK) (tried N shapes)``,
  the fastest single iteration of the best shape.

gpubench's ``mamf`` summary reports the median (its ``tflops``): an imported file gives
the best median as ``tflops``, the best mean as ``tflops_mean`` (the statistic of the
published mamf-finder table) and the best single iteration as ``tflops_max``; a version 1
file has only ``tflops_max``. The shape is gpubench's m×n×k (C = m×n, reduction k), which
version 2 prints as it is and version 1 printed with the reduction in the middle.
"""

from __future__ import annotations

import re

from gpubench.importers import Format, Source, device_env, new_run, provenance
from gpubench.results import Record

TOOL = "mamf-finder"
DTYPES = {"bfloat16": "bf16", "float16": "fp16", "half": "fp16", "float32": "fp32", "float": "fp32",
          "float8_e4m3fn": "fp8_e4m3", "float8_e5m2": "fp8_e5m2"}

_STARTED = re.compile(r"^Benchmark started on (\d{4}-\d{2}-\d{2}) (\d{2}:\d{2}:\d{2})", re.M)
_DTYPE = re.compile(r"^\*\* Dtype:\s*(?:torch\.)?(\S+)", re.M)
_PROPS = re.compile(r"_(?:Cuda|XPU|HPU)?DeviceProperties\((.*)\)")
_STAT = re.compile(r"^(mean|median|max):\s+([\d.]+)\s*TFLOPS @ (\d+)x(\d+)x(\d+)", re.M)
_V1 = re.compile(r"The best outcome was ([\d.]+)\s*TFLOPS @ (\d+)x(\d+)x(\d+) \(MxNxK\) \(tried (\d+) shapes\)")
_TRIED = re.compile(r"Tried\s+(\d+)\s+shapes => the best outcomes were")
_VERSION = re.compile(r"benchmark version:\s*(\d+)")
_ELAPSED = re.compile(r"^Elapsed time:\s*(?:(\d+) days?, )?(\d+):(\d+):(\d+)", re.M)
_SOFTWARE = re.compile(r"^-?\s*(torch|cuda|hip|hpu|xpu|mps)=([^,\s]+)", re.M)


def _props(text: str) -> dict:
    m = _PROPS.search(text)
    if not m:
        return {}
    out = {}
    for key, value in re.findall(r"(\w+)=('[^']*'|[^,]+)", m.group(1)):
        out[key] = value.strip().strip("'")
    return out


def _section(text: str, title: str) -> list[str]:
    """The non-empty lines under a ``** Title:`` heading, up to the next heading or rule."""
    lines, inside = [], False
    for line in text.splitlines():
        if line.startswith("** "):
            inside = line.startswith(f"** {title}")
            continue
        if inside:
            if line.startswith("---") or (not line.strip() and lines):
                break
            if line.strip():
                lines.append(line.strip().removeprefix("- "))
    return lines


def parse(src: Source):
    text = src.text.replace("\r", "\n")
    m = _DTYPE.search(text)
    if not m:
        raise src.fail("mamf-finder output without its '** Dtype:' line: cut before the header ended")
    torch_dtype = m.group(1)
    dtype = DTYPES.get(torch_dtype, torch_dtype)
    params = {"dtype": dtype}
    if dtype.startswith("fp8"):
        params["scaling"] = "tensor"    # mamf-finder scales both operands by one scalar each
    version_m = _VERSION.search(text)
    version = int(version_m.group(1)) if version_m else 1
    stats = {s: (float(v), (int(a), int(b), int(c))) for s, v, a, b, c in _STAT.findall(text)}
    v1 = _V1.search(text)
    tried = _TRIED.search(text)
    if not stats and not v1:
        raise src.fail("truncated mamf-finder output: no result ('Tried N shapes => the best outcomes were' and "
                       "its mean/median/max lines, or 'The best outcome was'): the search did not finish, or the "
                       "file was cut")
    if tried and not {"mean", "median", "max"} <= set(stats):
        raise src.fail("truncated mamf-finder output: the summary lacks its "
                       + ", ".join(sorted({"mean", "median", "max"} - set(stats))) + " line")
    metrics: dict = {}
    work: dict = {"mamf_finder_version": version}
    if stats:
        best = stats.get("median") or stats.get("mean") or stats["max"]
        probes = int(tried.group(1)) if tried else None
        if "median" in stats:
            metrics["tflops"] = stats["median"][0]
        if "mean" in stats:
            metrics["tflops_mean"] = stats["mean"][0]
        if "max" in stats:
            metrics["tflops_max"] = stats["max"][0]
        for stat, (_, shape) in stats.items():
            work[f"best_shape_{stat}"] = "x".join(map(str, shape))
        m_, n_, k_ = best[1]
    else:
        m_, red, n_ = (int(v1.group(i)) for i in (2, 3, 4))
        # Version 1 multiplied A(M×N)·B(N×K): the reduction is the middle dimension.
        k_ = red
        probes = int(v1.group(5))
        metrics["tflops_max"] = float(v1.group(1))
        work["best_shape_max"] = f"{m_}x{n_}x{k_}"
        work["statistic"] = "version 1 printed the fastest single iteration of its best shape"
    metrics.update({"best_m": m_, "best_n": n_, "best_k": k_})
    if probes is not None:
        metrics["probes"] = probes
    el = _ELAPSED.search(text)
    if el:
        days = int(el.group(1) or 0)
        metrics["search_s"] = float(days * 86400 + int(el.group(2)) * 3600 + int(el.group(3)) * 60 + int(el.group(4)))
    props = _props(text)
    name = props.get("name")
    mem = None
    if props.get("total_memory", "").endswith("MB"):
        mem = int(props["total_memory"][:-2]) * 2**20         # torch prints MiB as "MB"
    cap = [int(props["major"]), int(props["minor"])] if props.get("major", "").isdigit() and \
        props.get("minor", "").isdigit() else None
    software = dict(_SOFTWARE.findall("\n".join(_section(text, "Critical software versions"))))
    # torch reaches ROCm GPUs through torch.cuda too: gpubench's env says so with is_rocm.
    rocm = software.get("hip") not in (None, "None")
    dev = device_env(name, memory_bytes=mem, capability=cap)
    dev["is_rocm"] = rocm
    spec_peak = (dev.get("peak_tflops") or {}).get("fp8" if dtype.startswith("fp8") else dtype)
    if spec_peak and "tflops" in metrics:
        metrics["pct_of_peak"] = 100.0 * metrics["tflops"] / spec_peak
    platform = _section(text, "Platform/Device info")
    uname = next((line for line in platform if "DeviceProperties" not in line), None)
    host = uname.split()[1] if uname and len(uname.split()) > 1 else None
    command = _section(text, "Command line")
    env = {"device": dev,
           "gpu": {"count": 1, "names": [name] if name else []},
           "host": {"hostname": host, "os": uname},
           "software": {"torch": software.get("torch"), "torch_cuda": software.get("cuda") if
                        software.get("cuda") != "None" else None,
                        "torch_hip": software.get("hip") if software.get("hip") != "None" else None},
           "env_vars": {k: v for k, v in (line.split("=", 1) for line in
                                         _section(text, "Critical environment variables") if "=" in line)}}
    started = _STARTED.search(text)
    prov = provenance(src, TOOL, f"benchmark version {version}", "mamf-finder output",
                      command=command[0] if command else None,
                      times="'Benchmark started on' as the file states it: the machine's local time")
    run = new_run(TOOL, env, prov, started_at=f"{started.group(1)}T{started.group(2)}" if started else None)
    timing = {"method": ("mamf-finder: CUDA events per iteration after 50 warm-up iterations, 100 timed, an L2 "
                         "flush before each" if version >= 2 else "mamf-finder version 1: fastest iteration"),
              **({"median_s": 2.0 * m_ * n_ * k_ / (metrics["tflops"] * 1e12)} if "tflops" in metrics else {})}
    run.records = [Record(benchmark="mamf", params=params, status="ok", device="cuda", timing=timing, work=work,
                          metrics=metrics)]
    return run


def sniff(src: Source) -> bool:
    if src.doc is not None:
        return False
    head = src.text[:20_000]
    return bool(_DTYPE.search(head) and ("Benchmark started on" in head or "** Platform/Device info" in head)) \
        or bool(_V1.search(src.text) or _TRIED.search(src.text))


FORMAT = Format(TOOL, "a mamf-finder.py output", sniff, parse)
