"""Collectives on GPUs: NCCL with ≥2 CUDA devices, and the one-GPU skip. On a CPU machine
they skip with the reason; the same code runs with gloo in test_comm_dist.py."""

import subprocess
import sys

import pytest
import torch

from gpubench.benches.comm import COLLECTIVES, busbw_factor
from gpubench.results import load_run

pytestmark = pytest.mark.gpu
GPUS = torch.cuda.device_count() if torch.cuda.is_available() else 0


def gpubench(args, env, timeout=600):
    return subprocess.run([sys.executable, "-m", "gpubench", *args], check=False, env=env,
                          capture_output=True, text=True, timeout=timeout)


@pytest.mark.skipif(GPUS != 1, reason=f"needs exactly one CUDA device ({GPUS} visible; with more, "
                                       f"the suite takes one rank per GPU)")
def test_one_gpu_says_collectives_need_two_ranks(tmp_path, sub_env):
    """Six skipped records and exit 0 read as a finished suite; one GPU cannot run NCCL
    collectives, so the command says so and writes nothing."""
    env = {k: v for k, v in sub_env.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    p = gpubench(["run", "--suite", "comm", "--device", "cuda", "--out", str(tmp_path / "r.json")], env)
    lines = [line for line in p.stderr.splitlines() if line.strip()]
    assert p.returncode == 2 and len(lines) == 1, p.stderr[-3000:]
    assert "NCCL needs ≥2 GPUs" in lines[0] and not (tmp_path / "r.json").exists()


@pytest.mark.skipif(GPUS < 2, reason=f"needs at least 2 CUDA devices for NCCL ranks ({GPUS} visible)")
def test_nccl_two_ranks(tmp_path, sub_env):
    out = tmp_path / "comm.json"
    env = {**sub_env, "GPUBENCH_NCCL_DEBUG": "1"}
    p = gpubench(["run", "--suite", "comm", "--nproc", "2", "--device", "cuda", "--sizes", "1M:64M:64",
                  "--quick", "--out", str(out)], env)
    assert p.returncode == 0, p.stderr[-3000:]
    run = load_run(out)
    assert run.status == "complete" and run.env["distributed"]["backend"] == "nccl"
    for r in run.records:
        assert r.status == "ok", (r.case_id, r.error)
        assert r.timing["method"] == "cuda_event" and r.work["backend"] == "nccl"
        assert r.metrics["busbw_gbps"] == pytest.approx(r.metrics["algbw_gbps"] * busbw_factor(r.benchmark, 2))
    ar = [r for r in run.records if r.benchmark == "all_reduce" and r.params["size_bytes"] == 64 << 20]
    assert ar and all(r.metrics["busbw_gbps"] > 1.0 for r in ar)     # far above any host path
