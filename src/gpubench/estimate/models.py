"""Transformer configurations: the model zoo and explicit shapes.

A ``ModelConfig`` is enough to count parameters and FLOPs and to lay out every
GEMM of a layer, which is all the performance model needs. Dense GPT-style
(GELU MLP, two matrices) and Llama-style (SwiGLU, three matrices, grouped-query
attention) blocks are supported, mixture-of-experts MLPs (FLOPs from the active
experts), and DeepSeek's multi-head latent attention (MLA).

Zoo entries come from each model's paper or released configuration (cited per
entry). The vocabulary of the Megatron-era GPT models is padded to 51200 as in
Narayanan et al. 2021.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from gpubench.errors import GpubenchError, UnknownNameError


@dataclass(frozen=True)
class MLA:
    """Multi-head latent attention (DeepSeek-V2/V3): low-rank Q and KV projections."""

    q_lora_rank: int
    kv_lora_rank: int
    qk_nope_dim: int
    qk_rope_dim: int
    v_head_dim: int


@dataclass(frozen=True)
class ModelConfig:
    name: str
    layers: int
    hidden: int
    heads: int
    seq_len: int
    vocab: int
    kv_heads: int | None = None          # None = heads (multi-head attention)
    ffn_hidden: int | None = None        # None = 4·hidden (GELU) or Llama's rounding of 8/3·hidden
    mlp: str = "gelu"                    # "gelu": 2 matrices; "swiglu": 3 matrices
    experts: int = 0                     # routed experts per MoE layer (0 = dense)
    top_k: int = 0
    shared_experts: int = 0
    expert_ffn_hidden: int | None = None
    dense_layers: int = 0                # leading layers with a dense MLP in an MoE model
    mla: MLA | None = None
    tied_embeddings: bool = False
    source: str = ""

    def __post_init__(self):
        for name in ("layers", "hidden", "heads", "seq_len", "vocab"):
            if getattr(self, name) <= 0:
                raise GpubenchError(f"--{name.replace('_', '-')} must be positive (got {getattr(self, name)})")
        if self.mla is None and self.hidden % self.heads:
            raise GpubenchError(f"--heads {self.heads} does not divide --hidden {self.hidden}")
        if self.kv_heads is not None and (self.kv_heads <= 0 or self.heads % self.kv_heads):
            raise GpubenchError(f"--kv-heads {self.kv_heads} must divide --heads {self.heads}")
        if self.mlp not in ("gelu", "swiglu"):
            raise GpubenchError(f"mlp {self.mlp!r}: use gelu or swiglu")
        if self.experts and not 0 < self.top_k <= self.experts:
            raise GpubenchError(f"--top-k {self.top_k} must be between 1 and --experts {self.experts}")

    # ---- derived shapes ----
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
        return 256 * ((int(8 * self.hidden / 3) + 255) // 256)

    @property
    def is_moe(self) -> bool:
        return self.experts > 0

    @property
    def moe_layers(self) -> int:
        return self.layers - self.dense_layers if self.is_moe else 0

    @property
    def expert_ffn(self) -> int:
        return self.expert_ffn_hidden or self.ffn

    @property
    def attn_qk_dim(self) -> int:
        """Per-head dimension of the Q·Kᵀ product."""
        return self.mla.qk_nope_dim + self.mla.qk_rope_dim if self.mla else self.head_dim

    @property
    def attn_v_dim(self) -> int:
        return self.mla.v_head_dim if self.mla else self.head_dim

    def attention_gemms(self) -> list[tuple[str, int, int, str]]:
        """(name, n, k, parallel) per token for the attention projections; parallel is
        "col" (split n over tensor parallelism) or "row" (split k)."""
        h = self.hidden
        if self.mla:
            m = self.mla
            return [
                ("q_a", m.q_lora_rank, h, "none"),
                ("q_b", self.heads * (m.qk_nope_dim + m.qk_rope_dim), m.q_lora_rank, "col"),
                ("kv_a", m.kv_lora_rank + m.qk_rope_dim, h, "none"),
                ("kv_b", self.heads * (m.qk_nope_dim + m.v_head_dim), m.kv_lora_rank, "col"),
                ("out", h, self.heads * m.v_head_dim, "row"),
            ]
        q = self.heads * self.head_dim
        kv = 2 * self.n_kv_heads * self.head_dim
        return [("qkv", q + kv, h, "col"), ("out", h, q, "row")]

    def mlp_gemms(self, ffn: int) -> list[tuple[str, int, int, str]]:
        up = 2 * ffn if self.mlp == "swiglu" else ffn
        return [("mlp_up", up, self.hidden, "col"), ("mlp_down", self.hidden, ffn, "row")]

    # ---- parameter counts ----
    def attention_params(self) -> int:
        return sum(n * k for _, n, k, _ in self.attention_gemms())

    def mlp_params(self, ffn: int) -> int:
        return sum(n * k for _, n, k, _ in self.mlp_gemms(ffn))

    def layer_params(self, moe: bool, active: bool) -> int:
        norms = 2 * self.hidden
        if not moe:
            return self.attention_params() + self.mlp_params(self.ffn) + norms
        experts = (self.top_k if active else self.experts) + self.shared_experts
        router = self.hidden * self.experts
        return self.attention_params() + experts * self.mlp_params(self.expert_ffn) + router + norms

    def params(self, active: bool = False, embeddings: bool = True) -> int:
        """Total (or active, for MoE) parameters. The output projection counts as a
        layer weight (every token multiplies it); the input embedding table is a lookup."""
        dense = self.layers - self.moe_layers
        body = dense * self.layer_params(False, active) + self.moe_layers * self.layer_params(True, active)
        head = self.hidden * self.vocab
        emb = 0 if self.tied_embeddings or not embeddings else self.vocab * self.hidden
        return body + head + self.hidden + emb

    def with_(self, **changes) -> "ModelConfig":
        return replace(self, **changes)


# ---- the zoo ----

def _gpt(name, layers, hidden, heads, source, vocab=51200, seq=2048, **kw):
    # GPT-2/3, Megatron, OPT and BLOOM share the input embedding with the output layer.
    return ModelConfig(name=name, layers=layers, hidden=hidden, heads=heads, seq_len=seq,
                       vocab=vocab, mlp="gelu", tied_embeddings=True, source=source, **kw)


def _llama(name, layers, hidden, heads, kv, ffn, vocab, seq, source, **kw):
    return ModelConfig(name=name, layers=layers, hidden=hidden, heads=heads, kv_heads=kv,
                       ffn_hidden=ffn, vocab=vocab, seq_len=seq, mlp="swiglu", source=source, **kw)


ZOO: dict[str, ModelConfig] = {m.name: m for m in [
    _gpt("gpt3-175b", 96, 12288, 96, "Brown et al. 2020, Table 2.1; vocab padded to 51200 as in Megatron-LM"),
    _gpt("mt-nlg-530b", 105, 20480, 128, "Smith et al. 2022 (MT-NLG), Table 1"),
    _gpt("megatron-1t", 128, 25600, 160, "Narayanan et al. 2021, Table 1 (1008B row)"),
    _gpt("opt-175b", 96, 12288, 96, "Zhang et al. 2022 (OPT), Table 1", vocab=50272),
    _gpt("bloom-176b", 70, 14336, 112, "BigScience 2022 (BLOOM), Table 3", vocab=250880),
    _llama("llama2-7b", 32, 4096, 32, 32, 11008, 32000, 4096, "Touvron et al. 2023 (Llama 2), released config"),
    _llama("llama2-13b", 40, 5120, 40, 40, 13824, 32000, 4096, "Llama 2 released config"),
    _llama("llama2-70b", 80, 8192, 64, 8, 28672, 32000, 4096, "Llama 2 released config"),
    _llama("llama3.1-8b", 32, 4096, 32, 8, 14336, 128256, 8192, "Llama 3 Herd of Models 2024, Table 3"),
    _llama("llama3.1-70b", 80, 8192, 64, 8, 28672, 128256, 8192, "Llama 3 Herd of Models 2024, Table 3"),
    _llama("llama3.1-405b", 126, 16384, 128, 8, 53248, 128256, 8192, "Llama 3 Herd of Models 2024, Table 3"),
    _llama("mixtral-8x7b", 32, 4096, 32, 8, 14336, 32000, 4096, "Jiang et al. 2024 (Mixtral), Table 1",
           experts=8, top_k=2),
    ModelConfig(name="deepseek-v3", layers=61, hidden=7168, heads=128, seq_len=4096, vocab=129280,
                ffn_hidden=18432, mlp="swiglu", experts=256, top_k=8, shared_experts=1,
                expert_ffn_hidden=2048, dense_layers=3,
                mla=MLA(q_lora_rank=1536, kv_lora_rank=512, qk_nope_dim=128, qk_rope_dim=64, v_head_dim=128),
                source="DeepSeek-AI 2024 (DeepSeek-V3), Section 4.2 and released config"),
]}

ALIASES = {"gpt3": "gpt3-175b", "gpt-3": "gpt3-175b", "mt-nlg": "mt-nlg-530b", "mtnlg-530b": "mt-nlg-530b",
           "llama-2-7b": "llama2-7b", "llama-2-13b": "llama2-13b", "llama-2-70b": "llama2-70b",
           "llama3-8b": "llama3.1-8b", "llama3-70b": "llama3.1-70b", "llama3-405b": "llama3.1-405b",
           "llama-3.1-8b": "llama3.1-8b", "llama-3.1-70b": "llama3.1-70b", "llama-3.1-405b": "llama3.1-405b",
           "mixtral": "mixtral-8x7b", "deepseekv3": "deepseek-v3", "opt": "opt-175b", "bloom": "bloom-176b"}


def get_model(name: str) -> ModelConfig:
    key = name.strip().lower()
    key = ALIASES.get(key, key)
    if key in ZOO:
        return ZOO[key]
    raise UnknownNameError("model", name, list(ZOO))
