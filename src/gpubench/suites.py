"""The suites, as data. Adding a suite is a ``register_suite`` call here.

LLM-shaped GEMMs are the forward products of one transformer layer for a
micro-batch of ``TOKENS`` tokens, in nn.Linear's layout (m = tokens, n = output
features, k = input features). With tensor parallelism over ``tp`` GPUs the
column-parallel products (QKV, MLP up with its gate) split n and the row-parallel
ones (attention output, MLP down) split k, as in Megatron-LM.
"""

from __future__ import annotations

from gpubench.registry import Case, Search, Suite, register_suite, sweep

TOKENS = 8192

# hidden, ffn hidden, query heads, kv heads (head dim = hidden / heads)
MODELS = {
    "llama2-7b": (4096, 11008, 32, 32),
    "llama2-70b": (8192, 28672, 64, 8),
}


def llm_gemms(model: str, tp: int, tokens: int = TOKENS) -> list[dict]:
    hidden, ffn, heads, kv_heads = MODELS[model]
    head_dim = hidden // heads
    qkv = hidden + 2 * kv_heads * head_dim
    shapes = {
        "qkv": (tokens, qkv // tp, hidden),
        "attn-out": (tokens, hidden, hidden // tp),
        "mlp-up": (tokens, 2 * ffn // tp, hidden),       # gate and up projections fused
        "mlp-down": (tokens, hidden, ffn // tp),
    }
    return [{"m": m, "n": n, "k": k, "gemm": f"{model} {name} tp{tp}"}
            for name, (m, n, k) in shapes.items()]


def squares(*sizes: int) -> list[dict]:
    return [{"m": s, "n": s, "k": s} for s in sizes]


DENSE = ["fp32", "tf32", "bf16", "fp16"]
FP8 = [{"dtype": "fp8_e4m3", "scaling": "tensor"}, {"dtype": "fp8_e4m3", "scaling": "row"}]

register_suite(Suite(
    name="mixed-precision",
    description="matmul in every precision on square and LLM-shaped GEMMs, plus copy bandwidth",
    gpu=tuple(
        sweep("membw", size_bytes=[1 << 30])
        + sweep("matmul", shape=squares(4096, 8192, 16384), dtype=DENSE)
        + sweep("matmul", shape=squares(4096, 8192, 16384), fp8=FP8)
        + sweep("matmul", shape=[g for model in MODELS for tp in (1, 8) for g in llm_gemms(model, tp)],
                precision=[{"dtype": "fp32"}, {"dtype": "bf16"}, FP8[1]])
    ),
    # A CPU has no tensor cores and no datasheet peak here: these shapes only prove the
    # path (setup, check, timer, schema, report) end to end, in seconds.
    cpu=tuple(
        sweep("membw", size_bytes=[64 << 20])
        + sweep("matmul", shape=squares(256, 512), dtype=DENSE)
        + sweep("matmul", shape=squares(256, 512), fp8=FP8)
        + sweep("matmul", shape=[g for g in llm_gemms("llama2-7b", 8, tokens=256)][:2],
                precision=[{"dtype": "fp32"}, {"dtype": "bf16"}])
    ),
))

register_suite(Suite(
    name="mamf",
    description="maximum achievable matmul TFLOP/s per precision: coarse cube ladder, then pattern search",
    gpu=tuple(Search("mamf", {"dtype": d, "lo": 1024, "hi": 16384, "budget_s": 30.0, **extra})
              for d, extra in [("bf16", {}), ("fp16", {}), ("fp8_e4m3", {"scaling": "tensor"}),
                               ("tf32", {}), ("fp32", {})]),
    cpu=tuple(Search("mamf", {"dtype": d, "lo": 128, "hi": 768, "budget_s": 4.0, "step_min": 64})
              for d in ("fp32", "bf16")),
))

register_suite(Suite(
    name="membw",
    description="device memory bandwidth (copy) over buffer sizes",
    gpu=tuple(sweep("membw", size_bytes=[1 << 24, 1 << 26, 1 << 28, 1 << 30, 1 << 32])),
    cpu=tuple(sweep("membw", size_bytes=[1 << 22, 1 << 24, 1 << 26])),
))

__all__ = ["Case", "Search"]
