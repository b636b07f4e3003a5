"""Transformer configurations: the model zoo and explicit shapes.

A ``ModelConfig`` is enough to count parameters and FLOPs and to lay out every
GEMM of a layer, which is all the performance model needs. Dense GPT-style
(GELU MLP, two matrices) and Llama-style (SwiGLU, three matrices, grouped-query
attention) blocks are supported; a head width of its own (``head_dim``: Qwen3,
GPT-OSS, where heads × head_dim is not the hidden size); sliding-window attention
on some or all layers (Mistral, GPT-OSS); mixture-of-experts MLPs (FLOPs from the
active experts) with shared experts and leading dense layers (DeepSeek-V2/V3);
and DeepSeek's multi-head latent attention (MLA).

Zoo entries come from each model's paper or released configuration (cited per
entry). The vocabulary of the Megatron-era GPT models is padded to 51200 as in
Narayanan et al. 2021.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import lru_cache

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
    head_size: int | None = None         # per-head width when heads × it is not hidden (--head-dim)
    ffn_hidden: int | None = None        # None = 4·hidden (GELU) or Llama's rounding of 8/3·hidden
    mlp: str = "gelu"                    # "gelu": 2 matrices; "swiglu": 3 matrices
    experts: int = 0                     # routed experts per MoE layer (0 = dense)
    top_k: int = 0
    shared_experts: int = 0
    expert_ffn_hidden: int | None = None
    dense_layers: int = 0                # leading layers with a dense MLP in an MoE model
    moe_every: int = 1                   # after them, every k-th layer is MoE (Llama 4 Maverick: 2)
    shared_ffn_hidden: int | None = None # width of the shared experts together (None: count × expert width)
    window: int = 0                      # sliding-window attention span in tokens (0: full attention)
    window_layers: int | None = None     # how many layers use the window (None: all, when window > 0)
    mla: MLA | None = None
    tied_embeddings: bool = False
    source: str = ""

    def __post_init__(self):
        for name in ("layers", "hidden", "heads", "seq_len", "vocab"):
            if getattr(self, name) <= 0:
                raise GpubenchError(f"--{name.replace('_', '-')} must be positive (got {getattr(self, name)})")
        if self.head_size is not None:
            # Flash-attention kernels take head widths in multiples of 8 up to 256.
            if self.head_size <= 0 or self.head_size % 8 or self.head_size > 256:
                raise GpubenchError(f"--head-dim {self.head_size} must be a multiple of 8 between 8 and 256")
            if self.mla is not None:
                raise GpubenchError("--head-dim does not apply to multi-head latent attention (MLA) models")
            q = self.heads * self.head_size
            if not self.hidden / 4 <= q <= 4 * self.hidden:
                raise GpubenchError(f"--head-dim {self.head_size} × --heads {self.heads} = {q} is not within "
                                    f"4× of --hidden {self.hidden}: the attention widths do not fit the layer")
        elif self.mla is None and self.hidden % self.heads:
            raise GpubenchError(f"--heads {self.heads} does not divide --hidden {self.hidden} "
                                f"(give --head-dim for a head width of its own)")
        if self.kv_heads is not None and (self.kv_heads <= 0 or self.heads % self.kv_heads):
            raise GpubenchError(f"--kv-heads {self.kv_heads} must divide --heads {self.heads}")
        if self.mlp not in ("gelu", "swiglu"):
            raise GpubenchError(f"mlp {self.mlp!r}: use gelu or swiglu")
        if self.experts and not 0 < self.top_k <= self.experts:
            raise GpubenchError(f"--top-k {self.top_k} must be between 1 and --experts {self.experts}")
        if self.dense_layers < 0 or self.dense_layers > self.layers:
            raise GpubenchError(f"--dense-layers {self.dense_layers} must be between 0 and the "
                                f"{self.layers} layers")
        if self.moe_every < 1:
            raise GpubenchError(f"moe_every {self.moe_every} must be at least 1")
        if self.dense_layers and not self.experts:
            raise GpubenchError("--dense-layers needs a mixture-of-experts model (--experts)")
        if self.shared_experts < 0 or (self.shared_experts and not self.experts):
            raise GpubenchError("--shared-experts needs a mixture-of-experts model (--experts)")
        if self.window < 0:
            raise GpubenchError(f"--window {self.window} must be positive (or 0 for full attention)")
        if self.window_layers is not None and not 0 <= self.window_layers <= self.layers:
            raise GpubenchError(f"--window-layers {self.window_layers} must be between 0 and the "
                                f"{self.layers} layers")
        if self.window_layers and not self.window:
            raise GpubenchError("--window-layers needs --window (the span of the sliding window)")

    # ---- derived shapes ----
    @property
    def head_dim(self) -> int:
        return self.head_size or self.hidden // self.heads

    @property
    def q_width(self) -> int:
        return self.heads * self.head_dim

    @property
    def windowed_layers(self) -> int:
        if not self.window or self.window >= self.seq_len:
            return 0
        return self.layers if self.window_layers is None else self.window_layers

    def mean_keys(self, windowed: bool, seq_len: int | None = None) -> float:
        """Keys a query attends on average under the causal mask (a window caps them)."""
        s = seq_len or self.seq_len
        if not windowed or self.window >= s:
            return (s + 1) / 2
        w = self.window
        return w - w * (w - 1) / (2 * s)

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
        return (self.layers - self.dense_layers) // max(1, self.moe_every) if self.is_moe else 0

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

    @lru_cache(maxsize=4096)
    def attention_gemms(self) -> tuple[tuple[str, int, int, str], ...]:
        """(name, n, k, parallel) per token for the attention projections; parallel is
        "col" (split n over tensor parallelism) or "row" (split k)."""
        h = self.hidden
        if self.mla:
            m = self.mla
            return (
                ("q_a", m.q_lora_rank, h, "none"),
                ("q_b", self.heads * (m.qk_nope_dim + m.qk_rope_dim), m.q_lora_rank, "col"),
                ("kv_a", m.kv_lora_rank + m.qk_rope_dim, h, "none"),
                ("kv_b", self.heads * (m.qk_nope_dim + m.v_head_dim), m.kv_lora_rank, "col"),
                ("out", h, self.heads * m.v_head_dim, "row"),
            )
        q = self.q_width
        kv = 2 * self.n_kv_heads * self.head_dim
        return (("qkv", q + kv, h, "col"), ("out", h, q, "row"))

    @lru_cache(maxsize=4096)
    def mlp_gemms(self, ffn: int) -> tuple[tuple[str, int, int, str], ...]:
        up = 2 * ffn if self.mlp == "swiglu" else ffn
        return (("mlp_up", up, self.hidden, "col"), ("mlp_down", self.hidden, ffn, "row"))

    # ---- parameter counts ----
    @lru_cache(maxsize=4096)
    def attention_params(self) -> int:
        return sum(n * k for _, n, k, _ in self.attention_gemms())

    @lru_cache(maxsize=4096)
    def mlp_params(self, ffn: int) -> int:
        return sum(n * k for _, n, k, _ in self.mlp_gemms(ffn))

    @lru_cache(maxsize=4096)
    def layer_params(self, moe: bool, active: bool) -> int:
        norms = 2 * self.hidden
        if not moe:
            return self.attention_params() + self.mlp_params(self.ffn) + norms
        experts = self.top_k if active else self.experts
        router = self.hidden * self.experts
        return (self.attention_params() + experts * self.mlp_params(self.expert_ffn)
                + self.mlp_params(self.shared_ffn) + router + norms)

    @property
    def shared_ffn(self) -> int:
        """Width of the shared experts' MLP taken as one (0 without shared experts)."""
        if not self.shared_experts:
            return 0
        return self.shared_ffn_hidden or self.shared_experts * self.expert_ffn

    @lru_cache(maxsize=4096)
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
    _llama("mistral-7b", 32, 4096, 32, 8, 14336, 32000, 8192,
           "Jiang et al. 2023 (Mistral 7B); HF mistralai/Mistral-7B-v0.1 config.json (sliding window 4096)",
           window=4096),
    _llama("qwen3-8b", 36, 4096, 32, 8, 12288, 151936, 4096,
           "Qwen3 technical report (arXiv 2505.09388); HF Qwen/Qwen3-8B config.json", head_size=128),
    _llama("qwen3-32b", 64, 5120, 64, 8, 25600, 151936, 4096,
           "Qwen3 technical report; HF Qwen/Qwen3-32B config.json (64 heads × 128 = 8192 ≠ hidden 5120)",
           head_size=128),
    _llama("qwen3-30b-a3b", 48, 2048, 32, 4, 6144, 151936, 4096,
           "HF Qwen/Qwen3-30B-A3B config.json (every layer MoE: 128 experts, top-8, width 768)",
           head_size=128, experts=128, top_k=8, expert_ffn_hidden=768),
    _llama("qwen3-235b-a22b", 94, 4096, 64, 4, 12288, 151936, 4096,
           "HF Qwen/Qwen3-235B-A22B config.json (every layer MoE: 128 experts, top-8, width 1536)",
           head_size=128, experts=128, top_k=8, expert_ffn_hidden=1536),
    _llama("qwen2-57b-a14b", 28, 3584, 28, 4, 18944, 151936, 4096,
           "HF Qwen/Qwen2-57B-A14B config.json (64 experts, top-8, width 2560; shared expert 20480)",
           experts=64, top_k=8, expert_ffn_hidden=2560, shared_experts=1, shared_ffn_hidden=20480),
    _llama("gpt-oss-20b", 24, 2880, 64, 8, 2880, 201088, 4096,
           "OpenAI gpt-oss model card (arXiv 2508.10925), Table 1; HF openai/gpt-oss-20b config.json "
           "(alternating sliding 128 / full attention)",
           head_size=64, experts=32, top_k=4, expert_ffn_hidden=2880, window=128, window_layers=12),
    _llama("gpt-oss-120b", 36, 2880, 64, 8, 2880, 201088, 4096,
           "OpenAI gpt-oss model card (arXiv 2508.10925), Table 1; HF openai/gpt-oss-120b original/config.json",
           head_size=64, experts=128, top_k=4, expert_ffn_hidden=2880, window=128, window_layers=18),
    _llama("mixtral-8x22b", 56, 6144, 48, 8, 16384, 32768, 4096,
           "HF mistralai/Mixtral-8x22B-v0.1 config.json", experts=8, top_k=2),
    _llama("dbrx", 40, 6144, 48, 8, 10752, 100352, 4096,
           "HF databricks/dbrx-base config.json (16 experts, top-4)", experts=16, top_k=4),
    _llama("grok-1", 64, 6144, 48, 8, 32768, 131072, 8192,
           "xai-org/grok-1 release (8 experts, top-2, width 32768)", experts=8, top_k=2),
    _llama("llama4-maverick", 48, 5120, 40, 8, 16384, 202048, 8192,
           "Llama 4 model card; released weights' metadata (128 experts, top-1, width 8192, one shared "
           "expert, MoE every other layer)",
           experts=128, top_k=1, expert_ffn_hidden=8192, shared_experts=1, moe_every=2),
    ModelConfig(name="deepseek-v2", layers=60, hidden=5120, heads=128, seq_len=4096, vocab=102400,
                ffn_hidden=12288, mlp="swiglu", experts=160, top_k=6, shared_experts=2,
                expert_ffn_hidden=1536, dense_layers=1,
                mla=MLA(q_lora_rank=1536, kv_lora_rank=512, qk_nope_dim=128, qk_rope_dim=64, v_head_dim=128),
                source="DeepSeek-AI 2024 (DeepSeek-V2, arXiv 2405.04434), Sec. 3.1.2; released config"),
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
           "mixtral": "mixtral-8x7b", "deepseekv3": "deepseek-v3", "opt": "opt-175b", "bloom": "bloom-176b",
           "deepseekv2": "deepseek-v2", "gpt-oss": "gpt-oss-120b", "qwen3-235b": "qwen3-235b-a22b",
           "qwen3-30b": "qwen3-30b-a3b", "mistral": "mistral-7b"}


def get_model(name: str) -> ModelConfig:
    key = name.strip().lower()
    key = ALIASES.get(key, key)
    if key in ZOO:
        return ZOO[key]
    import difflib

    names = sorted(set(ZOO) | set(ALIASES))
    close = [k for k in names if key and (k.startswith(key) or key in k)][:3]
    close += [k for k in difflib.get_close_matches(key, names, n=3, cutoff=0.5) if k not in close]
    raise UnknownNameError("model", name, list(ZOO), close=close[:3], listed_by="gpubench list models")
