"""GPT configurations: named sizes, validation, and the counts that follow from a shape.

Everything the benchmark reports per token comes from here, not from the module, so
that it can be checked against the module (parameters) and against the estimator's
independent FLOP accounting (``gpubench.estimate.flops``):

* parameters: embedding (and learned positions), per layer the attention projections
  (grouped-query: H query heads, KV key/value heads), the MLP (SwiGLU: three
  matrices; GELU: two), two RMSNorm weights, a final norm and an untied LM head;
  no biases, as in Llama and PaLM.
* model FLOPs per token (PaLM, Chowdhery et al. 2022, App. B): 6·N + 12·L·H·Q·T, N
  the weights a token multiplies (every projection and the LM head; the embedding
  lookup and norms are not multiplications), L layers, H·Q the attention width, T the
  sequence length. Causal attention still counts the full T×T, as PaLM does. MFU
  divides this by the peak.
* hardware FLOPs per token add what activation checkpointing recomputes: one more
  forward of every block ("every") or of every attention sub-block ("attention").
  HFU divides this by the peak.

Sizes follow the GPT-3 paper's ladder (Brown et al. 2020, Table 2.1: layers and
width; heads chosen so head_dim is 64-128) with the modern block (rotary positions,
SwiGLU with Llama's 8/3·h rounded up to 256, RMSNorm), plus slices of real shapes: a
few layers of Llama 2 7B and 70B at full width, where the per-layer GEMMs are the
ones a frontier run executes.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any

from gpubench.errors import GpubenchError, UnknownNameError

MLPS = ("swiglu", "gelu")
POSITIONS = ("rope", "learned")
ATTENTIONS = ("sdpa", "triton")
FP8_ALIGN = 16          # _scaled_mm wants every GEMM dimension a multiple of 16


@dataclass(frozen=True)
class GPTConfig:
    name: str
    layers: int
    hidden: int
    heads: int
    seq_len: int
    vocab: int
    kv_heads: int | None = None         # None: as many as query heads (multi-head attention)
    ffn_hidden: int | None = None       # None: Llama's 8/3·h rounded up to 256 (SwiGLU) or 4·h (GELU)
    mlp: str = "swiglu"
    pos: str = "rope"
    attention: str = "sdpa"             # "sdpa" (PyTorch) or "triton" (gpubench.kernels.attention)
    source: str = ""

    def __post_init__(self):
        for field_ in ("layers", "hidden", "heads", "seq_len", "vocab"):
            value = getattr(self, field_)
            if not isinstance(value, int) or value <= 0:
                raise GpubenchError(f"model {self.name}: {field_}={value!r} must be a positive whole number")
        if self.hidden % self.heads:
            raise GpubenchError(f"model {self.name}: heads={self.heads} does not divide hidden={self.hidden}")
        if self.kv_heads is not None and (self.kv_heads <= 0 or self.heads % self.kv_heads):
            raise GpubenchError(f"model {self.name}: kv_heads={self.kv_heads} must divide heads={self.heads}")
        if self.ffn_hidden is not None and self.ffn_hidden <= 0:
            raise GpubenchError(f"model {self.name}: ffn_hidden={self.ffn_hidden} must be positive")
        if self.mlp not in MLPS:
            raise GpubenchError(f"model {self.name}: mlp={self.mlp!r}: use one of {', '.join(MLPS)}")
        if self.pos not in POSITIONS:
            raise GpubenchError(f"model {self.name}: pos={self.pos!r}: use one of {', '.join(POSITIONS)}")
        if self.attention not in ATTENTIONS:
            raise GpubenchError(f"model {self.name}: attention={self.attention!r}: use one of "
                                f"{', '.join(ATTENTIONS)}")
        if self.pos == "rope" and self.head_dim % 2:
            raise GpubenchError(f"model {self.name}: rotary positions need an even head_dim "
                                f"(hidden/heads = {self.head_dim})")

    # ---- shapes ----
    @property
    def head_dim(self) -> int:
        return self.hidden // self.heads

    @property
    def n_kv_heads(self) -> int:
        return self.kv_heads or self.heads

    @property
    def ffn(self) -> int:
        if self.ffn_hidden:
            return self.ffn_hidden
        if self.mlp == "gelu":
            return 4 * self.hidden
        return 256 * ((8 * self.hidden // 3 + 255) // 256)

    @property
    def qkv_features(self) -> int:
        return (self.heads + 2 * self.n_kv_heads) * self.head_dim

    def with_(self, **changes: Any) -> "GPTConfig":
        return replace(self, **changes)

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.update(head_dim=self.head_dim, ffn=self.ffn, params=self.params(),
                 matmul_params=self.matmul_params())
        return d

    # ---- parameters ----
    def attention_matmul_params(self) -> int:
        """Per layer: the fused QKV projection and the output projection."""
        return self.hidden * self.qkv_features + self.heads * self.head_dim * self.hidden

    def mlp_matmul_params(self) -> int:
        return (3 if self.mlp == "swiglu" else 2) * self.hidden * self.ffn

    def block_matmul_params(self) -> int:
        return self.attention_matmul_params() + self.mlp_matmul_params()

    def matmul_params(self) -> int:
        """N of 6·N: every weight a token multiplies, the LM head included."""
        return self.layers * self.block_matmul_params() + self.vocab * self.hidden

    def params(self) -> int:
        """Every trainable parameter, as ``sum(p.numel() for p in model.parameters())``."""
        norms = self.layers * 2 * self.hidden + self.hidden
        embeddings = self.vocab * self.hidden + (self.seq_len * self.hidden if self.pos == "learned" else 0)
        return self.matmul_params() + norms + embeddings

    # ---- FLOPs ----
    def attention_flops_per_token(self) -> float:
        """Forward Q·Kᵀ and P·V over the full T×T (PaLM's convention), all layers."""
        return 4.0 * self.layers * self.heads * self.head_dim * self.seq_len

    def model_flops_per_token(self) -> float:
        """PaLM: 6·N + 12·L·H·Q·T, forward and backward."""
        return 6.0 * self.matmul_params() + 3.0 * self.attention_flops_per_token()

    def hardware_flops_per_token(self, checkpointing: str = "none") -> float:
        """What the device executes: model FLOPs plus recomputed forwards."""
        extra = {
            "none": 0.0,
            "every": 2.0 * self.layers * self.block_matmul_params() + self.attention_flops_per_token(),
            "attention": 2.0 * self.layers * self.attention_matmul_params() + self.attention_flops_per_token(),
        }
        if checkpointing not in extra:
            raise GpubenchError(f"checkpointing={checkpointing!r}: use one of {', '.join(extra)}")
        return self.model_flops_per_token() + extra[checkpointing]

    def to_model_config(self):
        """The estimator's view of the same shape, for cross-checking the counts."""
        from gpubench.estimate.models import ModelConfig

        return ModelConfig(name=self.name, layers=self.layers, hidden=self.hidden, heads=self.heads,
                           seq_len=self.seq_len, vocab=self.vocab, kv_heads=self.kv_heads,
                           ffn_hidden=self.ffn, mlp=self.mlp)


def _gpt3(name: str, layers: int, hidden: int, heads: int, row: str) -> GPTConfig:
    # GPT-2's 50,257-token vocabulary padded to 50,304 (a multiple of 128) so the LM
    # head is a well-shaped GEMM, as nanoGPT and Megatron do.
    return GPTConfig(name, layers, hidden, heads, seq_len=2048, vocab=50304,
                     source=f"Brown et al. 2020 (GPT-3), Table 2.1, {row}: layers and width; "
                            f"heads for head_dim {hidden // heads}; Llama-style block")


SIZES: dict[str, GPTConfig] = {c.name: c for c in [
    # CPU sizes: seconds per step on two cores, every code path still exercised.
    GPTConfig("tiny", 2, 64, 4, seq_len=64, vocab=256, source="gpubench: CPU smoke size"),
    GPTConfig("mini", 4, 128, 4, seq_len=128, vocab=512, source="gpubench: CPU size"),
    GPTConfig("small", 6, 256, 8, seq_len=128, vocab=1024, source="gpubench: CPU size"),
    _gpt3("125m", 12, 768, 12, "GPT-3 Small"),
    _gpt3("350m", 24, 1024, 16, "GPT-3 Medium"),
    _gpt3("760m", 24, 1536, 16, "GPT-3 Large"),
    _gpt3("1.3b", 24, 2048, 16, "GPT-3 XL"),
    _gpt3("2.7b", 32, 2560, 32, "GPT-3 2.7B"),
    _gpt3("6.7b", 32, 4096, 32, "GPT-3 6.7B"),
    _gpt3("13b", 40, 5120, 40, "GPT-3 13B"),
    GPTConfig("llama2-7b-slice", 2, 4096, 32, seq_len=4096, vocab=32000, ffn_hidden=11008,
              source="Touvron et al. 2023 (Llama 2 7B) released config, 2 of 32 layers"),
    GPTConfig("llama2-70b-slice", 1, 8192, 64, seq_len=4096, vocab=32000, kv_heads=8, ffn_hidden=28672,
              source="Touvron et al. 2023 (Llama 2 70B) released config, 1 of 80 layers, GQA 64/8"),
]}

# The ladder the "largest model that fits" probe climbs, smallest first.
LADDER_GPU = ("125m", "350m", "760m", "1.3b", "2.7b", "6.7b", "13b")
LADDER_CPU = ("tiny", "mini", "small")


def get_size(name: str) -> GPTConfig:
    key = str(name).strip().lower()
    if key in SIZES:
        return SIZES[key]
    raise UnknownNameError("model size", key, SIZES)
