"""The suites, as data. Adding a suite is a ``register_suite`` call here.

LLM-shaped GEMMs are the forward products of one transformer layer for a
micro-batch of ``TOKENS`` tokens, in nn.Linear's layout (m = tokens, n = output
features, k = input features). With tensor parallelism over ``tp`` GPUs the
column-parallel products (QKV, MLP up with its gate) split n and the row-parallel
ones (attention output, MLP down) split k, as in Megatron-LM.
"""

from __future__ import annotations

from gpubench import fits  # noqa: F401  (registers the "fits" search)
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

# The training step beside the kernels: the same precisions on a whole model, so the
# matmul speed-ups can be read against what a step gains (attention, norms, the
# optimizer and the LM head's softmax do not speed up with the GEMMs).
STEP = "transformer-step"
STEP_PRECISIONS = ["fp32", "tf32", "bf16", "fp16", "fp8_e4m3"]

register_suite(Suite(
    name="mixed-precision",
    description="matmul in every precision on square and LLM-shaped GEMMs, copy bandwidth, "
                "and a GPT training step in each precision",
    gpu=tuple(
        sweep("membw", size_bytes=[1 << 30])
        + sweep("matmul", shape=squares(4096, 8192, 16384), dtype=DENSE)
        + sweep("matmul", shape=squares(4096, 8192, 16384), fp8=FP8)
        + sweep("matmul", shape=[g for model in MODELS for tp in (1, 8) for g in llm_gemms(model, tp)],
                precision=[{"dtype": "fp32"}, {"dtype": "bf16"}, FP8[1]])
        + sweep(STEP, {"model": "350m", "micro_batch": 8}, dtype=STEP_PRECISIONS)
    ),
    # A CPU has no tensor cores and no datasheet peak here: these shapes only prove the
    # path (setup, check, timer, schema, report) end to end, in seconds.
    cpu=tuple(
        sweep("membw", size_bytes=[64 << 20])
        + sweep("matmul", shape=squares(256, 512), dtype=DENSE)
        + sweep("matmul", shape=squares(256, 512), fp8=FP8)
        + sweep("matmul", shape=[g for g in llm_gemms("llama2-7b", 8, tokens=256)][:2],
                precision=[{"dtype": "fp32"}, {"dtype": "bf16"}])
        + sweep(STEP, {"model": "tiny", "micro_batch": 2}, dtype=STEP_PRECISIONS)
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

# Attention at a fixed number of tokens per batch (batch = ATTN_TOKENS // seq) and a fixed
# model width (heads = ATTN_WIDTH // head_dim), as in the FlashAttention papers' sweeps: the
# projections around it would cost the same at every seq, so only the N² part grows.
ATTN_TOKENS, ATTN_WIDTH = 16384, 2048
ATTN_IMPLS = ["triton", "sdpa-flash", "sdpa-cudnn", "sdpa-efficient", "sdpa-math"]


def attention_shapes(seqs, head_dims, tokens: int = ATTN_TOKENS, width: int = ATTN_WIDTH) -> list[dict]:
    return [{"batch": max(1, tokens // s), "heads": width // d, "seq": s, "head_dim": d}
            for d in head_dims for s in seqs]


register_suite(Suite(
    name="attention",
    description="attention fwd and fwd+bwd, seq 512 to 16k: the Triton kernel against each SDPA backend",
    # impl is the last axis, so the implementations of one case run (and print) together.
    # The math backend materialises B·H·N² fp32 scores: at 16k that is 16-32 GiB per
    # tensor, four of them with the backward, for a baseline everyone knows is slow;
    # above 8k it would only stretch the suite's time (and at head_dim 64 not fit in 80 GB).
    gpu=tuple(c for c in sweep("attention", {"dtype": "bf16"}, direction=["fwd", "fwd+bwd"],
                               causal=[False, True],
                               shape=attention_shapes([512, 1024, 2048, 4096, 8192, 16384], [64, 128]),
                               impl=ATTN_IMPLS)
              if not (c.params["impl"] == "sdpa-math" and c.params["seq"] > 8192)),
    # Tiny fp32 shapes prove the path (probe, check, timer, schema, report) in seconds;
    # seq 100 is no multiple of any block size. The Triton kernel is recorded as skipped.
    cpu=tuple(sweep("attention", {"dtype": "fp32"}, direction=["fwd", "fwd+bwd"], causal=[False, True],
                    shape=[{"batch": 2, "heads": 2, "seq": 64, "head_dim": 32},
                           {"batch": 1, "heads": 2, "seq": 100, "head_dim": 16}],
                    impl=["sdpa-math", "triton"])),
))

# Collectives, nccl-tests style: every op × dtype × its in-place forms over a size sweep
# (GPU: 8 B to 1 GiB in ×8 steps, nccl-tests' -b 8 -e 1G -f 8; --sizes changes it). On a
# CPU, gloo ranks with small messages prove the path. One process records them skipped.
from gpubench.benches.comm import cases as comm_cases, size_sweep  # noqa: E402

register_suite(Suite(
    name="comm",
    description="collectives (all_reduce, all_gather, reduce_scatter, broadcast, all_to_all, sendrecv): "
                "algbw and busbw as nccl-tests counts them; ≥2 ranks (--nproc N or torchrun)",
    gpu=tuple(comm_cases(size_sweep(8, 1 << 30, 8), dtypes=("fp32", "bf16"))),
    cpu=tuple(comm_cases([1 << 12, 1 << 20], dtypes=("fp32", "bf16"))),
))

# The training step: sizes × precision × checkpointing × compile. The GPU list is the
# default subset, sized for about five minutes on an H100 with compile (an estimate: not
# yet timed on one); the 1.3B rows are the MFU and FP8 targets. With --nproc N the suite
# trains one model alone per rank (the per-GPU baseline), with DDP and with FSDP2, and the
# report gives the scaling.
BIG = {"model": "1.3b", "micro_batch": 8}
register_suite(Suite(
    name="transformer",
    description="GPT training step: tokens/s, MFU/HFU, peak memory, J and $ per token across sizes, "
                "precisions, activation checkpointing and torch.compile; DDP/FSDP2 with --nproc",
    gpu=tuple(
        sweep(STEP, BIG, dtype=["fp32", "tf32", "bf16", "fp16", "fp8_e4m3"])
        + sweep(STEP, {**BIG, "dtype": "bf16"}, checkpointing=["every", "attention"])
        + sweep(STEP, {**BIG, "dtype": "bf16", "attention": "triton"})
        + sweep(STEP, {**BIG, "compile": True}, dtype=["bf16", "fp8_e4m3"])
        + sweep(STEP, {"micro_batch": 8, "dtype": "bf16"}, model=["125m", "350m", "760m"])
        + sweep(STEP, {"micro_batch": 4, "dtype": "bf16", "checkpointing": "every"}, model=["2.7b"])
        + sweep(STEP, {"micro_batch": 2, "dtype": "bf16"}, model=["llama2-7b-slice", "llama2-70b-slice"])
    ),
    cpu=tuple(
        sweep(STEP, {"model": "tiny", "micro_batch": 2}, dtype=["fp32", "bf16", "fp16", "fp8_e4m3"])
        + sweep(STEP, {"model": "mini", "micro_batch": 2, "dtype": "fp32"},
                checkpointing=["none", "every", "attention"])
        + sweep(STEP, {"model": "tiny", "micro_batch": 1, "dtype": "fp32", "grad_accum": 2})
    ),
    multi_gpu=tuple(sweep(STEP, {**BIG, "dtype": "bf16"}, parallel=["none", "ddp", "fsdp"])),
    multi_cpu=tuple(sweep(STEP, {"model": "tiny", "micro_batch": 2, "dtype": "fp32"},
                          parallel=["none", "ddp", "fsdp"])),
))

# The largest model of the size ladder that trains in this device's memory, per mode:
# the ladder is climbed from the size the memory estimate picks, with real steps.
register_suite(Suite(
    name="transformer-fits",
    description="largest GPT size (125m … 13b) whose training step fits, per precision and "
                "checkpointing mode, with the memory headroom left",
    gpu=tuple(Search("fits", {"dtype": d, "checkpointing": c, "micro_batch": 4})
              for d, c in [("bf16", "none"), ("bf16", "every"), ("fp8_e4m3", "every"), ("fp32", "none")]),
    cpu=tuple(Search("fits", {"dtype": "fp32", "checkpointing": c, "micro_batch": 2, "limit_bytes": 96 << 20})
              for c in ("none", "every")),
))

__all__ = ["Case", "Search"]
