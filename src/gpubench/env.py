"""The environment fingerprint stored with every run.

A number without the stack that produced it cannot be compared or trusted later:
the same GPU differs by driver, CUDA, cuBLAS (through torch), clocks and power
limits. This collects what can be read cheaply and never fails: a field that
cannot be read is None.
"""

from __future__ import annotations

import os
import platform
import re
import socket
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import torch

from gpubench import __version__
from gpubench.device import DeviceInfo, _cpu_name
from gpubench.telemetry import nvml_unavailable_reason

# Variables that change what a benchmark measures or how it is launched.
ENV_PREFIXES = ("CUDA_", "NCCL_", "TORCH_", "PYTORCH_", "TRITON_", "OMP_", "MKL_", "NVIDIA_",
                "CUBLAS_", "CUBLASLT_", "SLURM_JOB_", "GPUBENCH_")
ENV_EXACT = ("LOCAL_RANK", "RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")
SECRET_WORDS = ("TOKEN", "SECRET", "PASSWORD", "KEY")


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def git_sha(path: Path | None = None) -> str | None:
    """Commit of the gpubench checkout, with '+dirty' when it has local changes."""
    path = path or Path(__file__).resolve().parent
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=path, capture_output=True,
                             text=True, timeout=5)
        if sha.returncode != 0:
            return None
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=path,
                               capture_output=True, text=True, timeout=5)
        return sha.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return None


def _nvml_facts(index: int | None) -> dict:
    """Driver version, UUID, power limit and clocks as NVML reports them."""
    facts: dict = {"available": False, "unavailable_reason": None}
    try:
        from gpubench.telemetry import open_source

        source = open_source(index) if index is not None else None
        reason = nvml_unavailable_reason()
        if source is None:
            facts["unavailable_reason"] = reason or "no NVML device for this GPU"
            return facts
        import pynvml

        handle = source.handle
        facts["available"] = True

        def read(fn, *args):
            try:
                value = getattr(pynvml, fn)(*args)
                return value.decode() if isinstance(value, bytes) else value
            except Exception:
                return None

        facts["driver_version"] = read("nvmlSystemGetDriverVersion")
        facts["uuid"] = read("nvmlDeviceGetUUID", handle)
        limit = read("nvmlDeviceGetEnforcedPowerLimit", handle)
        facts["power_limit_w"] = limit / 1000 if limit else None
        facts["max_sm_clock_mhz"] = read("nvmlDeviceGetMaxClockInfo", handle, pynvml.NVML_CLOCK_SM)
        facts["max_mem_clock_mhz"] = read("nvmlDeviceGetMaxClockInfo", handle, pynvml.NVML_CLOCK_MEM)
        facts["persistence_mode"] = read("nvmlDeviceGetPersistenceMode", handle)
        facts["pcie_link_gen"] = read("nvmlDeviceGetCurrPcieLinkGeneration", handle)
    except Exception as e:  # noqa: BLE001 - a fingerprint never fails a run
        facts["unavailable_reason"] = f"{type(e).__name__}: {e}"
    return facts


def _proc_driver_version() -> str | None:
    """The kernel module's version, for when NVML cannot be loaded but a driver is there."""
    try:
        text = Path("/proc/driver/nvidia/version").read_text()
    except OSError:
        return None
    import re

    found = re.search(r"Kernel Module(?: for \S+)?\s+([0-9][0-9.]+)", text)
    return found.group(1) if found else None


def relevant_env_vars() -> dict[str, str]:
    out = {}
    for name, value in sorted(os.environ.items()):
        if name.startswith(ENV_PREFIXES) or name in ENV_EXACT:
            out[name] = "<redacted>" if any(w in name for w in SECRET_WORDS) else value
    return out


# ---- collectives: what shapes the numbers of a multi-GPU run ----

def nccl_version() -> str | None:
    try:
        v = torch.cuda.nccl.version() if torch.cuda.is_available() else None
    except Exception:  # noqa: BLE001 - a build without NCCL
        return None
    if isinstance(v, tuple):
        return ".".join(map(str, v))
    return str(v) if v else None


def gpu_topology(timeout_s: float = 15.0) -> str | None:
    """``nvidia-smi topo -m``: which GPU pairs talk over NVLink (NV#), PCIe (PIX/PHB) or the CPU."""
    import shutil

    exe = shutil.which("nvidia-smi")
    if exe is None:
        return None
    try:
        r = subprocess.run([exe, "topo", "-m"], check=False, capture_output=True, text=True,
                           timeout=timeout_s)
    except (OSError, subprocess.SubprocessError):
        return None
    return (r.stdout.strip() or None) if r.returncode == 0 else None


def distributed_facts(device: DeviceInfo) -> dict:
    """World size, nodes and GPUs per node as torchrun/Slurm set them, NCCL, the GPU topology."""
    env = os.environ

    def num(*names):
        for name in names:
            try:
                return int(env[name])
            except (KeyError, ValueError):
                continue
        return None

    world = num("WORLD_SIZE") or 1
    per_node = num("LOCAL_WORLD_SIZE")
    nodes = num("GROUP_WORLD_SIZE", "SLURM_JOB_NUM_NODES", "SLURM_NNODES")
    if nodes is None:
        nodes = max(1, world // per_node) if per_node else 1
    return {
        "world_size": world,
        "nodes": nodes,
        "ranks_per_node": per_node or world,
        "gpus_per_node": torch.cuda.device_count() if torch.cuda.is_available() else 0,
        "backend": ("nccl" if device.is_cuda else "gloo") if world > 1 else None,
        "nccl_version": nccl_version(),
        "topology": gpu_topology() if device.is_cuda else None,
        "nccl_debug_file": env.get("NCCL_DEBUG_FILE"),
    }


# NCCL ≥ 2.19 with NCCL_DEBUG=INFO NCCL_DEBUG_SUBSYS=TUNING prints on rank 0, per call:
#   NCCL INFO AllReduce: 1073741824 Bytes -> Algo RING proto SIMPLE channel{Lo..Hi}={0..31}
# (Bytes is count × type size: the per-rank chunk for AllGather and ReduceScatter.)
_NCCL_TUNING = re.compile(r"NCCL INFO (\w+): (\d+) Bytes -> Algo (\w+) proto (\w+)")


def parse_nccl_tuning(text: str) -> list[tuple[str, int, str, str]]:
    """(function, bytes, algorithm, protocol) for each tuning line of NCCL's debug output."""
    return [(m.group(1), int(m.group(2)), m.group(3).upper(), m.group(4).upper())
            for m in _NCCL_TUNING.finditer(text)]


def request_nccl_debug(environ=None) -> str | None:
    """With GPUBENCH_NCCL_DEBUG=1, have NCCL log its per-call choices to a file; returns
    this process's file. NCCL reads these when it starts, so call it before the group
    forms. Off by default: a log line per call costs host time at small sizes."""
    environ = os.environ if environ is None else environ
    if environ.get("GPUBENCH_NCCL_DEBUG", "").lower() not in ("1", "true", "yes"):
        return None
    import tempfile

    if "NCCL_DEBUG_FILE" not in environ:
        folder = Path(tempfile.gettempdir()) / f"gpubench-nccl-{os.getuid()}"
        folder.mkdir(exist_ok=True)
        environ["NCCL_DEBUG_FILE"] = str(folder / "nccl.%h.%p.log")
    environ.setdefault("NCCL_DEBUG", "INFO")
    environ.setdefault("NCCL_DEBUG_SUBSYS", "INIT,TUNING")
    # NCCL replaces %h with the host name up to its first dot and %p with the process id.
    return (environ["NCCL_DEBUG_FILE"].replace("%h", socket.gethostname().split(".")[0])
            .replace("%p", str(os.getpid())))


def fingerprint(device: DeviceInfo) -> dict:
    cuda = torch.cuda.is_available()
    cudnn = torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None
    nvml = (_nvml_facts(device.index) if device.is_cuda
            else {"available": False, "unavailable_reason": "CPU run"})
    env = {
        "device": device.as_dict(),
        "gpu": {
            "driver_version": nvml.get("driver_version") or _proc_driver_version(),
            "count": torch.cuda.device_count() if cuda else 0,
            "names": [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())] if cuda else [],
            "nvml": nvml,
        },
        "software": {
            "gpubench": __version__,
            "gpubench_git_sha": git_sha(),
            "python": platform.python_version(),
            "torch": torch.__version__,
            "torch_cuda": torch.version.cuda,
            "torch_hip": torch.version.hip,
            "cudnn": cudnn,
            "triton": _version("triton"),
            "nvidia_ml_py": _version("nvidia-ml-py"),
            "numpy": _version("numpy"),
        },
        "host": {
            "hostname": socket.gethostname(),
            "os": platform.platform(),
            "cpu": _cpu_name(),
            "cpu_count": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
        },
        "distributed": distributed_facts(device),
        "env_vars": relevant_env_vars(),
        "argv": sys.argv[1:],
    }
    return env
