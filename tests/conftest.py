import os
import sys
from pathlib import Path

import pytest

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
