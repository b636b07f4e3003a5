"""One training step of a GPT on synthetic tokens: model, optimizer, data and
precision for one rank, ready to call.

A step is ``grad_accum`` micro-batches of forward and backward, then one AdamW
update, exactly what a training loop repeats. Precisions:

* fp32: IEEE float32 matmuls (TF32 off); tf32: float32 storage, TF32 tensor cores;
* bf16: float32 master weights, autocast to bfloat16 (no loss scaling needed);
* fp16: autocast to float16 with dynamic loss scaling (``torch.amp.GradScaler``),
  because float16 gradients underflow without it;
* fp8_e4m3: bf16 autocast with the blocks' linears in FP8 (``gpubench.gpt.float8``:
  torchao's when installed, else gpubench's over ``torch._scaled_mm``); the LM head,
  embeddings, norms and attention stay in bf16.

Parallelism: "none" (one model per process; under torchrun each rank trains its own
replica with no communication, the per-GPU baseline that scaling is measured
against), "ddp" (DistributedDataParallel, gradients all-reduced in buckets during the
backward) or "fsdp" (FSDP2 ``fully_shard`` per block and at the root: parameters,
gradients and optimizer state sharded, weights all-gathered per block).

The token batches are drawn once, before timing, so random-number generation is not
part of the step; a synthetic batch costs the model exactly what a real one does.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any

import torch

from gpubench.dtypes import float32_matmul_mode, float32_matmul_precision
from gpubench.errors import GpubenchError
from gpubench.gpt.config import GPTConfig
from gpubench.gpt.model import CHECKPOINTING, GPT

PRECISIONS = ("fp32", "tf32", "bf16", "fp16", "fp8_e4m3")
PARALLEL = ("none", "ddp", "fsdp")
AUTOCAST = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp8_e4m3": torch.bfloat16}
BATCH_POOL = 2          # distinct batches cycled through, so no step sees its predecessor's exact data


@dataclass(frozen=True)
class StepConfig:
    model: GPTConfig
    precision: str = "bf16"
    checkpointing: str = "none"
    compile: bool = False
    micro_batch: int = 1
    grad_accum: int = 1
    parallel: str = "none"
    lr: float = 3e-4

    def __post_init__(self):
        if self.precision not in PRECISIONS:
            raise GpubenchError(f"precision {self.precision!r}: use one of {', '.join(PRECISIONS)}")
        if self.checkpointing not in CHECKPOINTING:
            raise GpubenchError(f"checkpointing={self.checkpointing!r}: use one of {', '.join(CHECKPOINTING)}")
        if self.parallel not in PARALLEL:
            raise GpubenchError(f"parallel={self.parallel!r}: use one of {', '.join(PARALLEL)}")
        for name in ("micro_batch", "grad_accum"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise GpubenchError(f"{name}={value!r} must be a whole number ≥ 1")

    @property
    def tokens_per_micro_batch(self) -> int:
        return self.micro_batch * self.model.seq_len

    @property
    def tokens_per_step(self) -> int:
        """Tokens one rank processes per optimizer step."""
        return self.tokens_per_micro_batch * self.grad_accum


def _dist():
    import torch.distributed as dist

    return dist if dist.is_available() and dist.is_initialized() else None


class TrainStep:
    """Everything one rank needs to run training steps of ``cfg`` on ``device``.

    ``seed`` must be the same on every rank: replicas start from the same weights
    (DDP would broadcast them anyway; FSDP2 shards whatever each rank built). Data
    differs per rank, as in data-parallel training.
    """

    def __init__(self, cfg: StepConfig, device: torch.device, seed: int):
        self.cfg, self.device = cfg, device
        dist = _dist()
        self.rank = dist.get_rank() if dist else 0
        self.world_size = dist.get_world_size() if dist else 1
        if cfg.parallel != "none" and dist is None:
            raise GpubenchError(f"parallel={cfg.parallel} needs a process group (--nproc N or torchrun)")
        with torch.device(device):
            raw = GPT(cfg.model)
        raw.reset_parameters(generator=_device_generator(device, seed))
        raw.set_checkpointing(cfg.checkpointing)
        self.float8: dict[str, Any] | None = None
        if cfg.precision == "fp8_e4m3":
            from gpubench.gpt.float8 import convert_to_float8

            self.float8 = convert_to_float8(raw)
        self.raw = raw
        if cfg.compile:
            # Per block, as torchtitan does: one graph serves every layer (same shapes),
            # and FSDP2's per-block hooks stay outside the compiled code.
            for block in raw.blocks:
                block.compile(dynamic=False)
        self.model: torch.nn.Module = self._wrap(raw)
        self.opt = torch.optim.AdamW(self.model.parameters(), lr=cfg.lr, betas=(0.9, 0.95),
                                     weight_decay=0.1, **_optimizer_impl(device, cfg.parallel))
        self.scaler = torch.amp.GradScaler(device.type) if cfg.precision == "fp16" else None
        data_gen = _device_generator(device, seed + 1 + self.rank)
        shape = (cfg.micro_batch, cfg.model.seq_len + 1)
        self.batches = [torch.randint(0, cfg.model.vocab, shape, generator=data_gen, device=device)
                        for _ in range(BATCH_POOL)]
        self._next = 0
        self.last_loss: torch.Tensor | None = None

    def _wrap(self, raw: GPT) -> torch.nn.Module:
        if self.cfg.parallel == "ddp":
            from torch.nn.parallel import DistributedDataParallel as DDP

            ids = [self.device.index] if self.device.type == "cuda" else None
            # Gradients live in the all-reduce buckets: no second copy of them.
            return DDP(raw, device_ids=ids, gradient_as_bucket_view=True)
        if self.cfg.parallel == "fsdp":
            from torch.distributed.fsdp import fully_shard

            for block in raw.blocks:
                fully_shard(block)
            fully_shard(raw)
        return raw

    def autocast(self):
        dtype = AUTOCAST.get(self.cfg.precision)
        if dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=dtype)

    def context(self):
        # A process-wide switch: set for the step and the check, restored afterwards.
        return float32_matmul_precision(float32_matmul_mode(self.cfg.precision))

    def next_batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        tokens = self.batches[self._next % len(self.batches)]
        self._next += 1
        return tokens[:, :-1], tokens[:, 1:]

    def _sync(self, last: bool):
        """Gradient synchronisation only on the last micro-batch of an accumulation."""
        if self.cfg.parallel == "ddp" and not last:
            return self.model.no_sync()
        if self.cfg.parallel == "fsdp":
            self.model.set_requires_gradient_sync(last)
        return contextlib.nullcontext()

    def forward_backward(self, x: torch.Tensor, y: torch.Tensor, last: bool = True,
                         scale: float = 1.0) -> torch.Tensor:
        with self._sync(last):
            with self.autocast():
                loss = self.model(x, y)
            scaled = loss * scale
            (self.scaler.scale(scaled) if self.scaler else scaled).backward()
        return loss.detach()

    def __call__(self) -> torch.Tensor:
        """One optimizer step; returns the last micro-batch's loss (no host sync)."""
        accum = self.cfg.grad_accum
        loss = None
        for i in range(accum):
            x, y = self.next_batch()
            loss = self.forward_backward(x, y, last=i == accum - 1, scale=1.0 / accum)
        if self.scaler:
            self.scaler.step(self.opt)
            self.scaler.update()
        else:
            self.opt.step()
        self.opt.zero_grad(set_to_none=True)
        self.last_loss = loss
        return loss

    # ---- for the correctness check ----
    def full_state(self) -> dict[str, torch.Tensor]:
        """Every parameter in full (FSDP shards gathered: a collective, all ranks call it)."""
        out = {}
        for name, p in self.raw.named_parameters():
            t = p.detach()
            out[name] = t.full_tensor() if hasattr(t, "full_tensor") else t
        return out

    def full_grads(self) -> dict[str, torch.Tensor]:
        out = {}
        for name, p in self.raw.named_parameters():
            g = p.grad
            if g is None:
                continue
            out[name] = g.full_tensor() if hasattr(g, "full_tensor") else g
        return out

    def reference_model(self, device: torch.device) -> GPT:
        """The same weights in float64, plain linears and SDPA, no checkpointing: the definition."""
        cfg = self.cfg.model.with_(attention="sdpa")
        with torch.device("meta"):
            ref = GPT(cfg)
        ref = ref.to_empty(device=device).double()
        cos, sin = _rope_for(cfg, device)
        if cos is not None:
            ref.rope_cos, ref.rope_sin = cos, sin
        state = {k: v.detach().to(device=device, dtype=torch.float64) for k, v in self.full_state().items()}
        ref.load_state_dict(state, strict=True)
        return ref

    def zero_grad(self) -> None:
        self.opt.zero_grad(set_to_none=True)


def _rope_for(cfg: GPTConfig, device: torch.device):
    if cfg.pos != "rope":
        return None, None
    from gpubench.gpt.model import rope_tables

    cos, sin = rope_tables(cfg.seq_len, cfg.head_dim)
    return cos.to(device, torch.float64), sin.to(device, torch.float64)


def _device_generator(device: torch.device, seed: int) -> torch.Generator:
    gen = torch.Generator(device=device)
    gen.manual_seed(seed)
    return gen


def _optimizer_impl(device: torch.device, parallel: str) -> dict[str, bool]:
    # The fused CUDA AdamW is one kernel per parameter group; FSDP2's DTensor
    # parameters take the multi-tensor (foreach) path, as in torchtitan.
    if device.type == "cuda" and parallel != "fsdp":
        return {"fused": True}
    return {"foreach": True}
