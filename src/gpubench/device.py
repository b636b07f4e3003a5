"""Which device a run uses, and what it can do.

``resolve_device`` turns the ``--device`` flag into a ``DeviceInfo``: its name, memory,
cache size, the datasheet spec matched from the hardware table (or None), and which
precisions it can run. A CPU is a first-class device here: every suite runs on it
with small shapes so the whole path is exercised without a GPU, and it never gets a
peak (there is no datasheet table for CPUs), so it never gets a % of peak or MFU.
"""

from __future__ import annotations

import functools
import os
import platform
import warnings
from dataclasses import dataclass, field

import torch

from gpubench.dtypes import PRECISIONS, Precision, get_precision
from gpubench.errors import GpubenchError
from gpubench.hardware import GPUSpec, match_gpu


@dataclass
class DeviceInfo:
    type: str                           # "cuda" or "cpu"
    index: int | None                   # CUDA ordinal as torch sees it
    name: str
    total_memory_bytes: int
    cache_bytes: int                    # L2 on a GPU, last-level cache on a CPU: what a flush must overwrite
    capability: tuple[int, int] | None = None
    multiprocessors: int | None = None
    is_rocm: bool = False
    spec: GPUSpec | None = None
    _support: dict[str, str | None] = field(default_factory=dict, repr=False)

    @property
    def label(self) -> str:
        return f"cuda:{self.index}" if self.type == "cuda" else "cpu"

    @property
    def torch_device(self) -> torch.device:
        return torch.device(self.label)

    @property
    def is_cuda(self) -> bool:
        return self.type == "cuda"

    @property
    def slug(self) -> str:
        """Short name for file names: the spec key, else a slug of the name."""
        if self.spec is not None:
            return self.spec.key
        if self.type == "cpu":
            return "cpu"
        return "".join(c if c.isalnum() else "-" for c in self.name.lower()).strip("-")

    def peak_tflops(self, precision: str) -> float | None:
        if self.spec is None:
            return None
        return self.spec.peak(get_precision(precision).peak_key)

    def unsupported_reason(self, precision: str) -> str | None:
        """None when this device runs ``precision`` meaningfully, else why not."""
        p = get_precision(precision)
        if p.name not in self._support:
            self._support[p.name] = _unsupported_reason(self, p)
        return self._support[p.name]

    def synchronize(self) -> None:
        if self.is_cuda:
            torch.cuda.synchronize(self.index)

    def as_dict(self) -> dict:
        return {
            "type": self.type,
            "index": self.index,
            "label": self.label,
            "name": self.name,
            "total_memory_bytes": self.total_memory_bytes,
            "cache_bytes": self.cache_bytes,
            "capability": ".".join(map(str, self.capability)) if self.capability else None,
            "multiprocessors": self.multiprocessors,
            "is_rocm": self.is_rocm,
            "spec_key": self.spec.key if self.spec else None,
            "peak_tflops": dict(self.spec.peak_tflops) if self.spec else None,
            "peak_mem_bandwidth_gbps": self.spec.mem_bandwidth_gbps if self.spec else None,
            "unsupported": {name: self.unsupported_reason(name) for name in PRECISIONS
                            if self.unsupported_reason(name)},
        }


def _unsupported_reason(dev: DeviceInfo, p: Precision) -> str | None:
    if dev.type == "cpu":
        if p.name == "tf32":
            return "TF32 is a tensor-core mode of NVIDIA GPUs (sm80+); on a CPU it is plain FP32"
        if p.name.startswith("fp8") and not _cpu_scaled_mm_works():
            return f"torch {torch.__version__} has no float8 _scaled_mm on the CPU"
        return None
    if dev.is_rocm and p.name.startswith("fp8"):
        return "FP8 on ROCm uses the e4m3fnuz format, which gpubench does not measure yet"
    if p.min_capability and dev.capability and not dev.is_rocm and dev.capability < p.min_capability:
        need = ".".join(map(str, p.min_capability))
        have = ".".join(map(str, dev.capability))
        return f"{p.name} needs compute capability {need}+ (tensor cores for it); this GPU is sm{have}"
    return None


@functools.lru_cache(maxsize=1)
def _cpu_scaled_mm_works() -> bool:
    try:
        a = torch.ones(16, 16).to(torch.float8_e4m3fn)
        one = torch.tensor(1.0)
        torch._scaled_mm(a, a.t(), scale_a=one, scale_b=one, out_dtype=torch.bfloat16)
        return True
    except Exception:
        return False


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "cpu"


def _cpu_cache_bytes() -> int:
    # The largest cache level the kernel reports; 32 MiB when it says nothing.
    best = 0
    base = "/sys/devices/system/cpu/cpu0/cache"
    try:
        for entry in os.listdir(base):
            try:
                with open(f"{base}/{entry}/size") as f:
                    text = f.read().strip().upper()
            except OSError:
                continue
            mult = {"K": 1024, "M": 1024**2, "G": 1024**3}.get(text[-1:], 1)
            digits = text.rstrip("KMG")
            if digits.isdigit():
                best = max(best, int(digits) * mult)
    except OSError:
        pass
    return best or 32 * 1024**2


def _cpu_memory_bytes() -> int:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError):
        return 0


def default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def resolve_device(spec: str | None = None) -> DeviceInfo:
    """``None``/"auto", "cpu", "cuda" or "cuda:N" -> DeviceInfo, or a GpubenchError."""
    text = (spec or "auto").strip().lower()
    if text == "auto":
        text = default_device()
    if text == "cpu":
        return DeviceInfo(type="cpu", index=None, name=_cpu_name(),
                          total_memory_bytes=_cpu_memory_bytes(), cache_bytes=_cpu_cache_bytes())
    if text == "cuda" or text.startswith("cuda:"):
        return _resolve_cuda(text)
    raise GpubenchError(f"--device {spec!r} is not a device: use cpu, cuda or cuda:N")


def _resolve_cuda(text: str) -> DeviceInfo:
    if not torch.cuda.is_available():
        raise GpubenchError(f"--device {text}: no CUDA device is visible to torch "
                            f"{torch.__version__} (use --device cpu)")
    index_text = text.partition(":")[2] or str(torch.cuda.current_device())
    if not index_text.isdigit():
        raise GpubenchError(f"--device {text}: the index must be a whole number")
    index, count = int(index_text), torch.cuda.device_count()
    if index >= count:
        raise GpubenchError(f"--device {text}: only {count} CUDA device(s) are visible")
    # The current device, not only the tensors' device: CUDA events, the default stream, Triton
    # launches and cuBLAS handles follow it, so without this cuda:1's kernels would be timed
    # on cuda:0's stream.
    torch.cuda.set_device(index)
    props = torch.cuda.get_device_properties(index)
    spec = match_gpu(props.name, props.total_memory)
    if spec is None:
        warnings.warn(f"{props.name} is not in gpubench's hardware table: no datasheet peak, "
                      f"so no % of peak and no MFU will be reported", stacklevel=2)
    return DeviceInfo(
        type="cuda",
        index=index,
        name=props.name,
        total_memory_bytes=props.total_memory,
        # L2 size is an attribute since torch 2.1; 50 MiB covers every GPU in the table.
        cache_bytes=int(getattr(props, "L2_cache_size", 0) or 50 * 1024**2),
        capability=(props.major, props.minor),
        multiprocessors=props.multi_processor_count,
        is_rocm=torch.version.hip is not None,
        spec=spec,
    )
