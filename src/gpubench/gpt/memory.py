"""Memory of a training step: an estimate before allocating, and measurements after.

The estimate exists to refuse a case that cannot fit before it allocates anything
(the refusal names the bytes it would need); whatever it misses, the real
out-of-memory error still catches. It counts, per rank:

* model states: float32 weights, float32 gradients and AdamW's two float32 moments,
  16 bytes a parameter, sharded over ranks by FSDP (plus the two blocks' unsharded
  weights it holds while gathering);
* activations per token and layer, from the tensors autograd saves in this model
  (16-bit under autocast, float32 residual stream), with checkpointing keeping only
  a block's (or attention sub-block's) input and rebuilding one block at a time;
* the logits: 16-bit, their float32 log-softmax and its gradient.

The measurements: peak device memory (``torch.cuda.max_memory_allocated``; on a CPU
the process's resident high-water mark, reset through ``/proc/self/clear_refs``), and
``saved_activation_bytes``, the distinct storage autograd holds for the backward
after one forward, counted with saved-tensor hooks: the same on any device, so the
effect of checkpointing and FP8 is measurable on a CPU too.
"""

from __future__ import annotations

import contextlib
import re
from typing import Iterable

import torch

from gpubench.gpt import model as gpt_model
from gpubench.gpt.config import GPTConfig

CUDA_RESERVE_BYTES = 1 << 30        # context, cuBLAS workspaces, allocator slack


def _activation_bytes_per_token_layer(m: GPTConfig, act: int, checkpointing: str) -> tuple[float, float]:
    """(kept for the backward, rebuilt while one block is recomputed), bytes per token per layer."""
    h, kvd, resid = m.hidden, m.n_kv_heads * m.head_dim, 4
    attention = resid * h + act * (3 * h + m.qkv_features + kvd)
    up = 2 * m.ffn if m.mlp == "swiglu" else m.ffn
    mlp = resid * h + act * (h + up + 2 * m.ffn)
    if checkpointing == "every":
        return resid * h, attention + mlp
    if checkpointing == "attention":
        return resid * h + mlp, attention
    return attention + mlp, 0.0


def estimate_step_bytes(m: GPTConfig, precision: str, checkpointing: str, micro_batch: int,
                        parallel: str = "none", world_size: int = 1, cuda: bool = True) -> dict[str, float]:
    """The memory one rank needs for a training step, by part, in bytes."""
    n = m.params()
    shard = world_size if parallel == "fsdp" else 1
    states = 16.0 * n / shard
    if parallel == "fsdp":
        states += 2 * 4.0 * (m.block_matmul_params() + 2 * m.hidden)
    act = 4 if precision in ("fp32", "tf32") else 2
    tokens = micro_batch * m.seq_len
    kept, working = _activation_bytes_per_token_layer(m, act, checkpointing)
    activations = tokens * (m.layers * kept + working)
    logits = tokens * m.vocab * (act + 4 + 4)
    parts = {"states": states, "activations": activations, "logits": logits,
             "reserve": float(CUDA_RESERVE_BYTES if cuda else 0)}
    parts["total"] = sum(parts.values())
    return parts


# ---- measured ----

def reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        return
    try:
        # "5" resets the resident-set high-water mark (Linux 4.0+).
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass


def resident_bytes() -> int | None:
    """The process's resident set now (the CPU baseline ``peak_bytes`` subtracts)."""
    value = _proc_status_kib("VmRSS")
    return value * 1024 if value is not None else None


def peak_bytes(device: torch.device, baseline: int | None = None) -> tuple[int | None, str]:
    """Peak memory since ``reset_peak`` and what it counts. On a CPU: the resident
    high-water mark less ``baseline`` (the resident set before the case built anything),
    so the figure is what the case added, as the CUDA allocator's count is."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        return int(torch.cuda.max_memory_allocated(device)), "torch.cuda.max_memory_allocated"
    value = _proc_status_kib("VmHWM")
    if value is None:
        return None, "unavailable (no /proc/self/status)"
    return (value * 1024 - (baseline or 0),
            "process resident high-water mark (VmHWM) less the resident set before the case")


def host_available_bytes() -> int | None:
    """Memory the host can give without swapping (MemAvailable), or None where it does not say."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    match = re.search(r"(\d+)", line)
                    return int(match.group(1)) * 1024 if match else None
    except OSError:
        return None
    return None


def _proc_status_kib(field: str) -> int | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    match = re.search(r"(\d+)", line)
                    return int(match.group(1)) if match else None
    except OSError:
        return None
    return None


@contextlib.contextmanager
def count_saved(exclude: Iterable[torch.Tensor]):
    """Collects {storage address: bytes} of every tensor autograd saves in the block,
    and of every input a checkpointed region keeps instead, parameters excluded."""
    skip = {t.untyped_storage().data_ptr() for t in exclude}
    seen: dict[int, int] = {}

    def note(t: torch.Tensor) -> None:
        storage = t.untyped_storage()
        ptr = storage.data_ptr()
        if ptr and ptr not in skip:
            seen[ptr] = storage.nbytes()

    def pack(t):
        if isinstance(t, torch.Tensor):
            note(t)
        return t

    def kept(args):
        for a in args:
            if isinstance(a, torch.Tensor) and a.requires_grad:
                note(a)

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t), gpt_model.track_checkpoint_inputs(kept):
        yield seen
