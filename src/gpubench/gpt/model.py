"""The decoder: pre-norm blocks of grouped-query attention and an MLP.

One module for every size: ``GPT(config)``. The parts that a benchmark varies are
switches on the module, not subclasses:

* ``config.attention``: PyTorch SDPA (whichever backend it picks) or gpubench's
  Triton flash attention, both causal;
* ``set_checkpointing(mode)``: "none"; "every" recomputes each block in the
  backward pass, so a layer keeps only its input (Chen et al. 2016); "attention"
  recomputes each attention sub-block (norm, QKV, rotary, attention, output
  projection) and keeps the MLP's activations, the cheaper half to redo;
* FP8 linears are swapped in from outside (``gpubench.gpt.float8``), keeping the
  parameter names, so a float64 copy of the same weights can check the step.

Weights start as GPT-2 does: N(0, 0.02), with the projections that write into the
residual stream scaled by 1/sqrt(2·layers) so its variance does not grow with depth.
"""

from __future__ import annotations

import contextlib
import math
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from gpubench.errors import GpubenchError
from gpubench.gpt.config import GPTConfig

CHECKPOINTING = ("none", "every", "attention")

# Set while gpubench.gpt.memory counts what a forward keeps for the backward: a
# checkpointed region keeps its inputs outside autograd's saved tensors.
_checkpoint_input_tracker: Callable[[tuple], None] | None = None


@contextlib.contextmanager
def track_checkpoint_inputs(tracker: Callable[[tuple], None]):
    global _checkpoint_input_tracker
    previous, _checkpoint_input_tracker = _checkpoint_input_tracker, tracker
    try:
        yield
    finally:
        _checkpoint_input_tracker = previous


def _checkpointed(fn, *args):
    if _checkpoint_input_tracker is not None:
        _checkpoint_input_tracker(args)
    return checkpoint(fn, *args, use_reentrant=False)


def rope_tables(seq_len: int, head_dim: int, base: float = 10000.0) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin of position × frequency, (seq_len, head_dim/2), computed in float64."""
    inv_freq = base ** (-torch.arange(0, head_dim, 2, dtype=torch.float64) / head_dim)
    angles = torch.outer(torch.arange(seq_len, dtype=torch.float64), inv_freq)
    return angles.cos().float(), angles.sin().float()


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate (batch, heads, seq, head_dim) pairs (i, i + head_dim/2), GPT-NeoX/Llama style."""
    t = x.shape[-2]
    cos, sin = cos[:t].to(x.dtype), sin[:t].to(x.dtype)    # in x's dtype: no silent upcast
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((x1 * cos - x2 * sin, x1 * sin + x2 * cos), dim=-1)


def causal_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, impl: str) -> torch.Tensor:
    if k.shape[1] != q.shape[1]:
        # Grouped-query attention: each K/V head serves heads/kv_heads query heads.
        rep = q.shape[1] // k.shape[1]
        k, v = k.repeat_interleave(rep, dim=1), v.repeat_interleave(rep, dim=1)
    if impl == "triton":
        from gpubench.kernels.attention import flash_attention

        return flash_attention(q, k, v, causal=True)
    return F.scaled_dot_product_attention(q, k, v, is_causal=True)


class Attention(nn.Module):
    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.heads, self.kv_heads, self.head_dim = cfg.heads, cfg.n_kv_heads, cfg.head_dim
        self.impl = cfg.attention
        self.qkv = nn.Linear(cfg.hidden, cfg.qkv_features, bias=False)
        self.proj = nn.Linear(cfg.heads * cfg.head_dim, cfg.hidden, bias=False)

    def forward(self, x: torch.Tensor, cos: torch.Tensor | None, sin: torch.Tensor | None) -> torch.Tensor:
        b, t, _ = x.shape
        d = self.head_dim
        q, k, v = self.qkv(x).split([self.heads * d, self.kv_heads * d, self.kv_heads * d], dim=-1)
        q = q.view(b, t, self.heads, d).transpose(1, 2)
        k = k.view(b, t, self.kv_heads, d).transpose(1, 2)
        v = v.view(b, t, self.kv_heads, d).transpose(1, 2)
        if cos is not None:
            q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        y = causal_attention(q, k, v, self.impl)
        return self.proj(y.transpose(1, 2).reshape(b, t, self.heads * d))


class MLP(nn.Module):
    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.kind = cfg.mlp
        # SwiGLU's gate and up projections are one GEMM of twice the width.
        up = 2 * cfg.ffn if cfg.mlp == "swiglu" else cfg.ffn
        self.up = nn.Linear(cfg.hidden, up, bias=False)
        self.down = nn.Linear(cfg.ffn, cfg.hidden, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.up(x)
        if self.kind == "swiglu":
            gate, up = h.chunk(2, dim=-1)
            h = F.silu(gate) * up
        else:
            h = F.gelu(h, approximate="tanh")
        return self.down(h)


class Block(nn.Module):
    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.norm1 = nn.RMSNorm(cfg.hidden, eps=1e-5)
        self.attn = Attention(cfg)
        self.norm2 = nn.RMSNorm(cfg.hidden, eps=1e-5)
        self.mlp = MLP(cfg)
        self.checkpointing = "none"

    def _attention(self, x, cos, sin):
        return self.attn(self.norm1(x), cos, sin)

    def _forward(self, x, cos, sin):
        if self.checkpointing == "attention":
            a = _checkpointed(self._attention, x, cos, sin)
        else:
            a = self._attention(x, cos, sin)
        x = x + a
        return x + self.mlp(self.norm2(x))

    def forward(self, x: torch.Tensor, cos: torch.Tensor | None = None,
                sin: torch.Tensor | None = None) -> torch.Tensor:
        if self.checkpointing == "every":
            return _checkpointed(self._forward, x, cos, sin)
        return self._forward(x, cos, sin)


class GPT(nn.Module):
    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.config = cfg
        self.tok = nn.Embedding(cfg.vocab, cfg.hidden)
        self.pos = nn.Embedding(cfg.seq_len, cfg.hidden) if cfg.pos == "learned" else None
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.layers))
        self.norm = nn.RMSNorm(cfg.hidden, eps=1e-5)
        self.lm_head = nn.Linear(cfg.hidden, cfg.vocab, bias=False)
        if cfg.pos == "rope":
            cos, sin = rope_tables(cfg.seq_len, cfg.head_dim)
            # Not persistent: derived from the config, so a state_dict holds weights only.
            self.register_buffer("rope_cos", cos, persistent=False)
            self.register_buffer("rope_sin", sin, persistent=False)
        else:
            self.rope_cos = self.rope_sin = None
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self, generator: torch.Generator | None = None) -> None:
        std = 0.02
        resid_std = std / math.sqrt(2 * self.config.layers)
        for name, p in self.named_parameters():
            if "norm" in name:
                p.fill_(1.0)
            elif name.endswith("attn.proj.weight") or name.endswith("mlp.down.weight"):
                p.normal_(0.0, resid_std, generator=generator)
            else:
                p.normal_(0.0, std, generator=generator)

    def set_checkpointing(self, mode: str) -> None:
        if mode not in CHECKPOINTING:
            raise GpubenchError(f"checkpointing={mode!r}: use one of {', '.join(CHECKPOINTING)}")
        for block in self.blocks:
            block.checkpointing = mode

    def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None) -> torch.Tensor:
        """Mean next-token cross-entropy when ``targets`` are given, else the logits."""
        t = idx.shape[1]
        if t > self.config.seq_len:
            raise GpubenchError(f"sequence of {t} tokens is longer than seq_len={self.config.seq_len}")
        x = self.tok(idx)
        if self.pos is not None:
            x = x + self.pos(torch.arange(t, device=idx.device))
        for block in self.blocks:
            x = block(x, self.rope_cos, self.rope_sin)
        logits = self.lm_head(self.norm(x))
        if targets is None:
            return logits
        return F.cross_entropy(logits.flatten(0, 1), targets.flatten())
