import os
import sys
from pathlib import Path

import pytest
import torch

# Without a GPU, Triton kernels run in Triton's interpreter, on the CPU. The flag is
# read when a kernel is defined, so it must be set before gpubench.kernels is imported.
if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def cpu():
    from gpubench.device import resolve_device

    return resolve_device("cpu")


@pytest.fixture
def gpubench_cmd():
    """The CLI as a subprocess argv prefix: the real entry point, real exit codes."""
    return [sys.executable, "-m", "gpubench"]


@pytest.fixture
def sub_env():
    env = dict(os.environ)
    env.pop("CUDA_VISIBLE_DEVICES", None)
    return env


# What a launcher sets: a test's own torchrun must not inherit an outer one's.
LAUNCH_VARS = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT",
               "GROUP_WORLD_SIZE", "TORCHELASTIC_RUN_ID", "GPUBENCH_FAULT_RANK", "GPUBENCH_FAULT_AFTER")


@pytest.fixture
def gloo_env(sub_env):
    """Environment for `gpubench run --nproc N --device cpu`: gloo ranks on the CPU."""
    e = {k: v for k, v in sub_env.items() if k not in LAUNCH_VARS}
    e["CUDA_VISIBLE_DEVICES"] = ""       # gloo on the CPU even where a GPU exists
    return e
