"""Goodput: what a whole run loses to failures, restarts and checkpoints, against Llama 3's record."""

import json

import pytest

from gpubench.cli import main
from gpubench.errors import GpubenchError
from gpubench.estimate.goodput import LLAMA3_FAILURES_PER_GPU_HOUR, Reliability, whole_run

DAY = 86400.0


def test_llama3_405b_run_loses_about_what_it_reported():
    """Dubey et al. 2024 §3.3.4: 419 unexpected interruptions in 54 days on 16,384 H100s, and
    more than 90% effective training time."""
    # The uninterrupted time that, with the expected losses, takes 54 days.
    lo, hi = 40 * DAY, 54 * DAY
    for _ in range(50):
        mid = (lo + hi) / 2
        if whole_run(mid, 16384, 405e9)["expected_s"] < 54 * DAY:
            lo = mid
        else:
            hi = mid
    g = whole_run(lo, 16384, 405e9)
    assert g["failures"] == pytest.approx(419, rel=0.02)
    assert 0.88 < g["goodput"] < 0.96
    assert g["restart_loss_s"] > g["checkpoint_loss_s"] > 0


def test_no_failures_and_no_evaluation_is_the_ideal_run():
    g = whole_run(10 * DAY, 4096, 70e9, Reliability(failures_per_gpu_hour=0.0))
    assert g["goodput"] == 1.0 and g["failures"] == 0
    assert whole_run(10 * DAY, 4096, 70e9, Reliability(enabled=False))["expected_s"] == 10 * DAY


def test_losses_grow_with_the_cluster_and_evaluation_is_a_share():
    small = whole_run(10 * DAY, 1024, 70e9)["goodput"]
    large = whole_run(10 * DAY, 16384, 70e9)["goodput"]
    assert large < small < 1
    base = whole_run(10 * DAY, 1024, 70e9)
    evals = whole_run(10 * DAY, 1024, 70e9, Reliability(eval_share=0.05))
    assert evals["expected_s"] * 0.95 == pytest.approx(base["expected_s"], rel=1e-9)


def test_default_rate_is_llama3s():
    assert LLAMA3_FAILURES_PER_GPU_HOUR == pytest.approx(419 / (54 * 24 * 16384))


def test_a_cluster_that_fails_faster_than_it_restarts_makes_no_progress():
    with pytest.raises(GpubenchError, match="no progress"):
        whole_run(DAY, 100_000, 1e12, Reliability(failures_per_gpu_hour=1e-3))


def test_estimate_reports_ideal_and_expected(capsys):
    with pytest.raises(SystemExit):
        main(["estimate", "--model", "llama3.1-70b", "--gpu", "h100", "--gpus", "4096", "--tp", "8", "--pp", "4",
              "--sequence-parallel", "--zero", "1", "--tokens", "15T", "--json"])
    e = json.loads(capsys.readouterr().out)
    g = e["goodput"]
    assert e["gpu_hours"] == pytest.approx(e["ideal"]["gpu_hours"] / g["goodput"], rel=1e-9)
    assert 0.8 < g["goodput"] < 1 and g["failures"] > 1 and "Llama 3" in g["source"]
    with pytest.raises(SystemExit):
        main(["estimate", "--model", "llama3.1-70b", "--gpu", "h100", "--gpus", "4096", "--tp", "8", "--pp", "4",
              "--sequence-parallel", "--zero", "1", "--tokens", "15T", "--no-goodput", "--json"])
    ideal = json.loads(capsys.readouterr().out)
    assert ideal["gpu_hours"] == pytest.approx(e["ideal"]["gpu_hours"], rel=1e-9)
    with pytest.raises(SystemExit):
        main(["estimate", "--model", "llama3.1-70b", "--gpu", "h100", "--gpus", "4096", "--tp", "8", "--pp", "4",
              "--sequence-parallel", "--zero", "1", "--tokens", "15T"])
    text = capsys.readouterr().out
    assert "uninterrupted" in text and "goodput" in text and "expected interruptions" in text
