"""The GPU session script, run as its CPU dry run: every stage, the time boxes, the packing.

A lent GPU machine gives one call of at most 10 minutes and brings back at most 8 files from
$OUT; the session must fit both whatever happens to a stage. The dry run is the same script on
the CPU with tiny sizes; its last stage (the transformer suite, 8 s box) always outlives its
box, so the interrupted path is exercised on every run.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from gpubench.results import Record

ROOT = Path(__file__).resolve().parents[1]
MAX_FILES = 8           # what a lent machine brings back from $OUT


def _session_module():
    spec = importlib.util.spec_from_file_location("gpu_session", ROOT / "scripts" / "gpu_session.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod        # its dataclasses look their module up there
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def dry_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("session")
    env = {k: v for k, v in os.environ.items() if k != "CUDA_VISIBLE_DEVICES"}
    env.update(OUT=str(out), PY=sys.executable)
    proc = subprocess.run(["bash", str(ROOT / "scripts" / "gpu_session.sh"), "--dry-run", "--budget", "400"],
                          capture_output=True, text=True, env=env, timeout=600, cwd=ROOT)
    return out, proc


def test_dry_run_brings_back_few_files_and_names_every_stage(dry_run):
    out, proc = dry_run
    assert proc.returncode == 0, proc.stderr[-2000:]
    files = sorted(p.name for p in out.iterdir())
    assert files == ["session.log", "session.tar.gz", "summary.json"] and len(files) <= MAX_FILES
    summary = json.loads((out / "summary.json").read_text())
    names = [s.name for s in _session_module().stages()]
    assert [s["name"] for s in summary["stages"]] == names
    status = {s["name"]: s["status"] for s in summary["stages"]}
    assert status["transformer"] == "timeout"           # its box is shorter than the suite
    assert all(status[n] == "ok" for n in names if n != "transformer"), status
    assert summary["dry_run"] is True and summary["seconds"] < 600


def test_dry_run_keeps_every_stages_records_with_their_environment(dry_run, tmp_path):
    out, _ = dry_run
    with tarfile.open(out / "session.tar.gz") as tar:
        tar.extractall(tmp_path, filter="data")
    summary = json.loads((out / "summary.json").read_text())
    for stage in summary["stages"]:
        for f in stage["files"]:
            assert (tmp_path / f.split(":", 1)[1]).exists(), f
    for name in ("smoke", "mixed-precision", "attention-long", "step-1.3b", "mamf", "transformer"):
        doc = json.loads((tmp_path / "session" / f"{name}.json").read_text())
        assert doc["env"]["device"]["type"] == "cpu" and doc["records"], name
        assert doc["status"] == ("interrupted" if name == "transformer" else "complete"), (name, doc["status"])
    smoke = json.loads((tmp_path / "session" / "smoke.json").read_text())
    ok = {r["benchmark"] for r in smoke["records"] if r["status"] == "ok"}
    assert {"matmul", "attention", "transformer-step", "membw", "op-overhead"} <= ok
    # The self-check ran on the stages that carry a step and its kernels.
    assert "self-check on" in (tmp_path / "session" / "step-1.3b.txt").read_text()


def test_dry_run_headlines_carry_targets_but_judge_none(dry_run):
    out, _ = dry_run
    heads = json.loads((out / "summary.json").read_text())["headlines"]
    assert {"bf16_best_tflops", "fp8_over_bf16", "selfcheck_median_abs_error"} <= set(heads)
    assert heads["bf16_best_tflops"]["target"] == ">= 760" and all(h["met"] is None for h in heads.values())


def _rec(benchmark, params, metrics, cov=0.01):
    return Record(benchmark, params, "ok", "cuda:0", timing={"median_s": 1.0, "cov": cov}, metrics=metrics)


def test_headlines_and_targets_on_a_gpu_run(tmp_path):
    """The figures the issue's targets name, read from result files as a GPU session writes them."""
    from gpubench.results import ResultWriter, Run

    s = _session_module()
    big = {"m": 8192, "n": 8192, "k": 8192}
    recs = [_rec("matmul", {**big, "dtype": "bf16"}, {"tflops": 780.0}, cov=0.01),
            _rec("matmul", {**big, "dtype": "fp8_e4m3", "scaling": "tensor"}, {"tflops": 1200.0}, cov=0.03),
            _rec("matmul", {"m": 64, "n": 64, "k": 64, "dtype": "bf16", "search": "mamf"}, {"tflops": 9e9})]
    att = {"dtype": "bf16", "head_dim": 128, "batch": 2, "heads": 16, "causal": True}
    for seq, tri, fl in ((4096, 500.0, 450.0), (8192, 520.0, 500.0), (16384, 400.0, 500.0)):
        recs += [_rec("attention", {**att, "seq": seq, "direction": "fwd", "impl": "triton"}, {"tflops": tri}),
                 _rec("attention", {**att, "seq": seq, "direction": "fwd", "impl": "sdpa-flash"}, {"tflops": fl})]
    recs.append(_rec("transformer-step", {"model": "1.3b", "dtype": "bf16", "checkpointing": "none",
                                          "compile": False}, {"mfu": 0.45}))
    w = ResultWriter(tmp_path / "mixed-precision.json", Run(suite="x", env={"device": {"type": "cuda"}}))
    for r in recs:
        w.add(r)
    w.close()
    figs = s.judge(s.headlines(tmp_path), dry=False)
    assert figs["bf16_best_tflops"]["value"] == 780.0 and figs["bf16_best_tflops"]["met"] is True
    assert figs["fp8_over_bf16"]["value"] == pytest.approx(1200 / 780) and figs["fp8_over_bf16"]["met"] is False
    assert figs["large_shape_cov"]["value"] == 0.03 and figs["large_shape_cov"]["met"] is False
    assert figs["triton_over_flash_fwd"]["value"] == pytest.approx(1.04) and figs["triton_over_flash_fwd"]["met"]
    assert figs["triton_over_flash_fwd"]["min"] == pytest.approx(0.8)
    assert figs["mfu_1p3b_bf16"]["value"] == 0.45 and figs["mfu_1p3b_bf16"]["met"] is None
