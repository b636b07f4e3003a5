"""The pytest-benchmark front end (benchmarks/) runs the suite's own cases on a CPU,
writes gpubench's environment into the JSON, checks before it times, and fails a
case whose output is wrong instead of timing it."""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytest.importorskip("pytest_benchmark")

ROOT = Path(__file__).resolve().parents[1]


def _run_benchmarks(args, tmp_path, extra_env=None):
    env = dict(os.environ)
    env.pop("CUDA_VISIBLE_DEVICES", None)
    env["GPUBENCH_DEVICE"] = "cpu"
    env.update(extra_env or {})
    out = tmp_path / "bench.json"
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", *args, "-q", "-p", "no:cacheprovider",
         "--benchmark-json", str(out)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    return proc, (json.loads(out.read_text()) if out.exists() else None)


def test_benchmarks_frontend_on_cpu(tmp_path):
    proc, data = _run_benchmarks(["benchmarks/"], tmp_path)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    assert data is not None

    env = data["machine_info"]["gpubench"]
    assert env["device"]["type"] == "cpu"
    assert env["software"]["torch"]

    matmul = [b for b in data["benchmarks"] if b["extra_info"].get("benchmark") == "matmul"]
    dtypes = {b["extra_info"]["params"]["dtype"] for b in matmul}
    assert {"fp32", "bf16"} <= dtypes
    # TF32 means nothing on a CPU: skipped, so never timed.
    assert "tf32" not in dtypes
    assert not any("tf32" in b["name"] for b in data["benchmarks"])
    assert "TF32" in proc.stdout          # the skip reason in the -ra summary
    for b in matmul:
        info = b["extra_info"]
        assert info["device"] == "cpu"
        assert info["flops"] > 0
        assert info["tflops"] > 0
        assert info["check"]["rel_err"] < info["check"]["tolerance"]
        assert b["name"].startswith("test_matmul[matmul-")
        assert b["stats"]["rounds"] >= 1

    membw = [b for b in data["benchmarks"] if b["extra_info"].get("benchmark") == "membw"]
    assert membw and all(b["extra_info"]["gbps"] > 0 for b in membw)


def test_benchmarks_frontend_fails_a_wrong_result(tmp_path):
    # A plugin that makes torch.matmul's output 1% wrong (the float64 reference uses
    # the @ operator, so it stays right): the check must fail the test, untimed.
    (tmp_path / "gpubench_wrong_matmul.py").write_text(textwrap.dedent("""
        import torch

        _matmul = torch.matmul

        def _wrong(*args, **kwargs):
            out = _matmul(*args, **kwargs)
            out.mul_(1.01)
            return out

        torch.matmul = _wrong
    """))
    pythonpath = os.pathsep.join(p for p in (str(tmp_path), os.environ.get("PYTHONPATH")) if p)
    node = "benchmarks/test_matmul.py::test_matmul[matmul-fp32-256x256x256]"
    proc, data = _run_benchmarks([node, "-p", "gpubench_wrong_matmul"], tmp_path,
                                 {"PYTHONPATH": pythonpath})
    assert proc.returncode == 1, proc.stdout[-4000:] + proc.stderr[-4000:]
    assert "correctness check failed" in proc.stdout
    assert "1 failed" in proc.stdout
    assert data is None or data["benchmarks"] == []     # nothing was timed
