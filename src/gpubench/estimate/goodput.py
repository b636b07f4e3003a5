"""Goodput: what a whole training run loses to failures, restarts, checkpoints and evaluation.

The ideal time of a run is its tokens over the step model's throughput. A real run also
stops: a cluster of N GPUs fails Λ = λ·N times an hour; each failure costs a restart R (detect,
reschedule, reload) and the work since the last checkpoint (on average half the interval τ);
each checkpoint stalls training for δ (the training state over the storage's write rate).
With Young's optimal interval τ = √(2δ/Λ) (Young 1974), the expected wall time is

    W_expected = W_ideal · (1 + δ/τ) / (1 − Λ·(R + τ/2)) / (1 − e)

where e is the share of time spent evaluating. The defaults are sourced where a source exists:

* λ: Llama 3 (Dubey et al. 2024, §3.3.4): 419 unexpected interruptions in 54 days of
  pre-training on 16,384 H100 GPUs: 419 / (54·24·16384) ≈ 1.97e-5 per GPU-hour;
* storage: the same section's Tectonic file system, 2 TB/s sustained for 16,384 GPUs
  (about 0.12 GB/s of write bandwidth per GPU);
* the checkpoint: 16-bit weights and fp32 Adam state and master weights (14 bytes a parameter);
* R = 10 minutes and e = 0 are assumptions (stated; change them with the flags).

For Llama 3 405B's run this gives about 92% goodput; the paper reports "higher than 90%
effective training time".
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from gpubench.errors import GpubenchError

LLAMA3_FAILURES_PER_GPU_HOUR = 419 / (54 * 24 * 16384)
LLAMA3_WRITE_GBPS_PER_GPU = 2000 / 16384
CHECKPOINT_BYTES_PER_PARAM = 14
SOURCE = ("failure rate and storage bandwidth: Llama 3 (Dubey et al. 2024, §3.3.4: 419 unexpected "
          "interruptions in 54 days on 16,384 H100; Tectonic 2 TB/s sustained); restart 10 min and no "
          "evaluation time: assumptions")


@dataclass(frozen=True)
class Reliability:
    failures_per_gpu_hour: float = LLAMA3_FAILURES_PER_GPU_HOUR
    restart_s: float = 600.0
    write_gbps_per_gpu: float = LLAMA3_WRITE_GBPS_PER_GPU
    eval_share: float = 0.0
    enabled: bool = True

    def __post_init__(self):
        for flag, v in (("--failures-per-gpu-hour", self.failures_per_gpu_hour), ("--restart-minutes", self.restart_s),
                        ("--checkpoint-gbps", self.write_gbps_per_gpu)):
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v >= 0):
                raise GpubenchError(f"{flag} {v} must be a finite number ≥ 0")
        if self.write_gbps_per_gpu == 0:
            raise GpubenchError("--checkpoint-gbps must be positive")
        if not 0 <= self.eval_share < 1:
            raise GpubenchError(f"--eval-share {self.eval_share} must be a fraction in [0, 1)")


def whole_run(ideal_s: float, gpus: int, params: float, rel: Reliability = Reliability()) -> dict:
    """Expected wall time of a run whose uninterrupted time is ``ideal_s``, and what it loses."""
    if not rel.enabled:
        return {"goodput": 1.0, "expected_s": ideal_s, "ideal_s": ideal_s, "failures": 0.0,
                "checkpoint_s": 0.0, "checkpoint_interval_s": None, "restart_loss_s": 0.0,
                "rework_loss_s": 0.0, "checkpoint_loss_s": 0.0, "eval_s": 0.0, "source": "disabled"}
    rate = rel.failures_per_gpu_hour * gpus / 3600.0                # failures per second, cluster
    delta = params * CHECKPOINT_BYTES_PER_PARAM / (rel.write_gbps_per_gpu * 1e9 * gpus)
    tau = math.sqrt(2 * delta / rate) if rate > 0 else math.inf
    lost_per_failure = rel.restart_s + (tau / 2 if math.isfinite(tau) else 0.0)
    denominator = 1 - rate * lost_per_failure
    if denominator <= 0.05:
        raise GpubenchError(f"at {rel.failures_per_gpu_hour:g} failures per GPU-hour, {gpus:,} GPUs fail every "
                            f"{1 / rate / 60:.1f} min, faster than a restart and a checkpoint interval: "
                            f"the run would make no progress")
    ckpt_factor = 1 + (delta / tau if math.isfinite(tau) else 0.0)
    train_s = ideal_s * ckpt_factor / denominator
    expected = train_s / (1 - rel.eval_share)
    failures = rate * train_s
    return {
        "goodput": ideal_s / expected, "ideal_s": ideal_s, "expected_s": expected,
        "failures": failures, "checkpoint_s": delta,
        "checkpoint_interval_s": tau if math.isfinite(tau) else None,
        "restart_loss_s": failures * rel.restart_s,
        "rework_loss_s": failures * (tau / 2 if math.isfinite(tau) else 0.0),
        "checkpoint_loss_s": ideal_s * (ckpt_factor - 1),
        "eval_s": expected - train_s, "source": SOURCE,
    }
