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


STEP_KERNELS: set[str] = set()     # ids of the cases step_kernels made (self-check inputs)


def step_kernels(model: str, micro_batch: int, dtypes, attention_dtypes=(), gpu: bool = False) -> list[Case]:
    """What one training step of a suite's GPT runs, timed alone: every GEMM of a layer and of
    the LM head in its forward (tokens × out × in, nt), input-gradient (tokens × in × out, nn)
    and weight-gradient (out × in × tokens, tn) shapes and layouts, and the causal attention core forward and
    forward+backward. The self-check (``gpubench selfcheck``) predicts the step from these."""
    from gpubench.gpt.config import get_size

    cfg = get_size(model)
    t = micro_batch * cfg.seq_len
    linears = {"qkv": (cfg.qkv_features, cfg.hidden), "out": (cfg.hidden, cfg.heads * cfg.head_dim),
               "mlp-up": ((2 if cfg.mlp == "swiglu" else 1) * cfg.ffn, cfg.hidden),
               "mlp-down": (cfg.hidden, cfg.ffn), "lm-head": (cfg.vocab, cfg.hidden)}
    shapes: dict[tuple, str] = {}
    for name, (n, k) in linears.items():
        for what, shape in (("fwd", (t, n, k, "nt")), ("dgrad", (t, k, n, "nn")), ("wgrad", (n, k, t, "tn"))):
            shapes.setdefault(shape, f"{model} {name} {what}")
    out = []
    for dtype in dtypes:
        fp8 = dtype.startswith("fp8")
        for (m, n, k, layout), label in shapes.items():
            if fp8 and label.split()[1] == "lm-head":
                continue        # FP8 steps keep the LM head in bf16
            params = {"m": m, "n": n, "k": k, "gemm": label, "dtype": dtype}
            if fp8:
                params["scaling"] = "tensor"    # every FP8 GEMM of the step is nt (_scaled_mm's)
            elif layout != "nt":
                params["layout"] = layout
            out.append(Case("matmul", params))
        if fp8 and "bf16" not in dtypes:
            out += [Case("matmul", {"m": m, "n": n, "k": k, "gemm": label, "dtype": "bf16",
                                    **({"layout": layout} if layout != "nt" else {})})
                    for (m, n, k, layout), label in shapes.items() if label.split()[1] == "lm-head"]
    for dtype in attention_dtypes:
        # SDPA's flash backend where it takes the dtype (16-bit on GPUs, any on CPUs), else
        # the memory-efficient one, as SDPA itself would pick for a causal float32 call.
        impl = "sdpa-efficient" if gpu and dtype in ("fp32", "tf32") else "sdpa-flash"
        out += sweep("attention", {"dtype": dtype, "impl": impl, "causal": True, "batch": micro_batch,
                                   "heads": cfg.heads, "seq": cfg.seq_len, "head_dim": cfg.head_dim},
                     direction=["fwd", "fwd+bwd"])
    STEP_KERNELS.update(c.id for c in out)
    return out


# (On a CPU the element-wise work of the small steps runs on tensors of tens to hundreds of KiB,
# where a copy is far from its large-buffer rate: the membw sizes go down to 64 KiB there.)
# The cost of one framework operation with no work (dispatch, autograd, launch): what small
# steps are made of, measured in a training step's way and bare.
OP_OVERHEAD = sweep("op-overhead", {"ops": 200}, mode=["autograd", "eager"])


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
        # What the self-check needs to predict those steps from this run alone.
        + step_kernels("350m", 8, STEP_PRECISIONS, attention_dtypes=["bf16", "fp32"], gpu=True)
        + sweep("membw", size_bytes=[1 << 26]) + OP_OVERHEAD
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
        + step_kernels("tiny", 2, ["fp32", "bf16", "fp16", "fp8_e4m3"], attention_dtypes=["fp32", "bf16"])
        + sweep("membw", size_bytes=[1 << 16, 1 << 18, 1 << 20, 1 << 23]) + OP_OVERHEAD
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
# CPU, gloo ranks with small messages prove the path. Without --nproc, `gpubench run` starts
# one rank per visible GPU (a CPU needs --nproc N); a single rank under torchrun records them skipped.
from gpubench.benches.comm import cases as comm_cases, size_sweep  # noqa: E402

register_suite(Suite(
    name="comm",
    description="collectives (all_reduce, all_gather, reduce_scatter, broadcast, all_to_all, sendrecv): "
                "algbw and busbw as nccl-tests counts them; ≥2 ranks (every GPU, --nproc N or torchrun)",
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
        # What the self-check needs to predict the 1.3B steps from this run alone.
        + step_kernels("1.3b", 8, ["fp32", "tf32", "bf16", "fp16", "fp8_e4m3"],
                       attention_dtypes=["bf16", "fp32"], gpu=True)
        + sweep("membw", size_bytes=[1 << 26, 1 << 30]) + OP_OVERHEAD
    ),
    # fp16 and FP8 steps on a CPU are in mixed-precision; here the sizes, checkpointing and
    # accumulation, and the kernels the self-check predicts them from (the loop CI runs).
    # Each model's kernels run right before its steps: a shared machine's slow spells then fall
    # on a step and the kernels that predict it alike.
    cpu=tuple(
        sweep("membw", size_bytes=[1 << 16, 1 << 18, 1 << 20, 1 << 23, 1 << 26]) + OP_OVERHEAD
        + step_kernels("tiny", 2, ["fp32", "bf16"], attention_dtypes=["fp32", "bf16"])
        + sweep(STEP, {"model": "tiny", "micro_batch": 2}, dtype=["fp32", "bf16"])
        + sweep(STEP, {"model": "tiny", "micro_batch": 2, "dtype": "fp32", "grad_accum": 2})
        + step_kernels("mini", 2, ["fp32"], attention_dtypes=["fp32"])
        + sweep(STEP, {"model": "mini", "micro_batch": 2, "dtype": "fp32"},
                checkpointing=["none", "every", "attention"])
        + step_kernels("small", 2, ["fp32", "bf16"], attention_dtypes=["fp32", "bf16"])
        + sweep(STEP, {"model": "small", "micro_batch": 2}, dtype=["fp32", "bf16"])
    ),
    multi_gpu=tuple(sweep(STEP, {**BIG, "dtype": "bf16"}, parallel=["none", "ddp", "fsdp"])),
    multi_cpu=tuple(sweep(STEP, {"model": "tiny", "micro_batch": 2, "dtype": "fp32"},
                          parallel=["none", "ddp", "fsdp"])),
))

# ---- the short GPU session (scripts/gpu_session.sh): a few suites sized to minutes ----

# Does every path work on this device? One of each, in about a minute on a GPU: the timer,
# events, telemetry, a matmul per precision, the attention kernels against SDPA's flash
# backend (forward and backward, bf16), a training step, a copy and the operation cost.
register_suite(Suite(
    name="smoke",
    description="one case of each path (matmul per precision, attention fwd/bwd, a training step, "
                "a copy, op overhead): does everything run and pass its check on this device",
    gpu=tuple(
        sweep("matmul", {"m": 4096, "n": 4096, "k": 4096}, dtype=DENSE)
        + sweep("matmul", {"m": 4096, "n": 4096, "k": 4096}, fp8=FP8[:1])
        + sweep("attention", {"dtype": "bf16", "causal": True, "batch": 4, "heads": 16, "seq": 4096,
                              "head_dim": 128}, direction=["fwd", "fwd+bwd"], impl=["triton", "sdpa-flash"])
        + sweep(STEP, {"model": "125m", "micro_batch": 4, "dtype": "bf16"})
        + sweep("membw", size_bytes=[1 << 30]) + OP_OVERHEAD[:1]
    ),
    cpu=tuple(
        sweep("matmul", {"m": 128, "n": 128, "k": 128}, dtype=DENSE)
        + sweep("matmul", {"m": 128, "n": 128, "k": 128}, fp8=FP8[:1])
        + sweep("attention", {"dtype": "fp32", "causal": True, "batch": 1, "heads": 2, "seq": 64,
                              "head_dim": 32}, direction=["fwd", "fwd+bwd"], impl=["triton", "sdpa-flash"])
        + sweep(STEP, {"model": "tiny", "micro_batch": 2, "dtype": "fp32"})
        + sweep("membw", size_bytes=[1 << 22]) + OP_OVERHEAD[:1]
    ),
))

# The attention targets' cases: the sequence lengths where a flash kernel matters (4k-16k),
# head_dim 128, bf16, the Triton kernel against SDPA's flash and cuDNN backends.
register_suite(Suite(
    name="attention-long",
    description="attention fwd and fwd+bwd at seq 4k-16k, head_dim 128, bf16: the Triton kernel "
                "against SDPA's flash and cuDNN backends (the attention targets' cases)",
    gpu=tuple(sweep("attention", {"dtype": "bf16"}, direction=["fwd", "fwd+bwd"], causal=[False, True],
                    shape=attention_shapes([4096, 8192, 16384], [128]),
                    impl=["triton", "sdpa-flash", "sdpa-cudnn"])),
    cpu=tuple(sweep("attention", {"dtype": "fp32"}, direction=["fwd", "fwd+bwd"], causal=[True],
                    shape=[{"batch": 1, "heads": 2, "seq": 128, "head_dim": 32}],
                    impl=["triton", "sdpa-flash"])),
))

# The 1.3B bf16 step (the MFU target) with what the self-check predicts it from.
register_suite(Suite(
    name="step-1.3b",
    description="the 1.3B GPT bf16 training step (MFU) and the kernels it runs, for gpubench selfcheck "
                "(on a CPU: the mini model)",
    gpu=tuple(sweep(STEP, {**BIG, "dtype": "bf16"})
              + step_kernels("1.3b", 8, ["bf16"], attention_dtypes=["bf16"], gpu=True)
              + sweep("membw", size_bytes=[1 << 26, 1 << 30]) + OP_OVERHEAD),
    cpu=tuple(sweep(STEP, {"model": "mini", "micro_batch": 2, "dtype": "fp32"})
              + step_kernels("mini", 2, ["fp32"], attention_dtypes=["fp32"])
              + sweep("membw", size_bytes=[1 << 16, 1 << 18, 1 << 20, 1 << 23]) + OP_OVERHEAD),
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
