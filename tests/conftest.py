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
