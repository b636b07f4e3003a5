"""FLOP accounting: model FLOPs (for MFU) and hardware FLOPs (for HFU).

Model FLOPs per token follow PaLM (Chowdhery et al. 2022, App. B):
6·N + 12·L·H·Q·T, N the parameters a token multiplies (active ones for MoE; the
LM head included, the embedding lookup not), L layers, H·Q the attention width,
T the sequence length. The attention term counts the full T×T product as PaLM
does, even for causal models (twice the work a causal kernel does). A layer with
a sliding window of W counts min(T, 2·k̄) keys a query instead of T, k̄ the keys it
attends on average under the causal window: twice the work done, as for full
layers. Recomputation is not model work.

Hardware FLOPs add what recomputation redoes: one more forward of every layer
for full recomputation (which makes a GPT layer's count exactly Narayanan et al.
2021's Eq. 3: 96·B·s·l·h²·(1 + s/6h + V/16lh)), or the attention core for
selective recomputation (Korthikanti et al. 2022).
"""

from __future__ import annotations

from functools import lru_cache

from gpubench.estimate.models import ModelConfig

RECOMPUTE = ("none", "selective", "full")


@lru_cache(maxsize=1024)
def attention_core_flops_per_token(m: ModelConfig) -> float:
    """Forward Q·Kᵀ and P·V for one token over the full sequence (PaLM's count), all layers."""
    w = m.windowed_layers
    keys = (m.layers - w) * m.seq_len + w * min(m.seq_len, 2 * m.mean_keys(True))
    return 2.0 * keys * m.heads * (m.attn_qk_dim + m.attn_v_dim)


@lru_cache(maxsize=1024)
def dense_flops_per_token(m: ModelConfig) -> float:
    """Forward matmul FLOPs of the weights (active experts only), all layers and LM head."""
    return 2.0 * (m.params(active=True, embeddings=False) - m.hidden * (2 * m.layers + 1)
                  - (m.hidden * m.experts * m.moe_layers))


@lru_cache(maxsize=1024)
def model_flops_per_token(m: ModelConfig) -> float:
    """PaLM's MFU numerator per token: 6·N + 12·L·H·Q·T (forward and backward)."""
    return 3.0 * (dense_flops_per_token(m) + attention_core_flops_per_token(m))


@lru_cache(maxsize=1024)
def hardware_flops_per_token(m: ModelConfig, recompute: str = "none") -> float:
    """What the GPUs execute per token, recomputation included."""
    if recompute not in RECOMPUTE:
        raise ValueError(recompute)
    fwd_layers = dense_flops_per_token(m) - 2.0 * m.hidden * m.vocab   # the head is never recomputed
    extra = {"none": 0.0, "selective": attention_core_flops_per_token(m),
             "full": fwd_layers + attention_core_flops_per_token(m)}[recompute]
    return model_flops_per_token(m) + extra


def narayanan_flops_per_iteration(batch: int, seq: int, layers: int, hidden: int, vocab: int) -> float:
    """Narayanan et al. 2021, Eq. 3 (GPT with full recomputation), for cross-checks."""
    return 96.0 * batch * seq * layers * hidden ** 2 * (1 + seq / (6 * hidden) + vocab / (16 * layers * hidden))
