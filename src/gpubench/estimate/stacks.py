"""Training software stacks: what the framework does with a layout (``--framework``).

The same layout runs differently under Megatron-LM, NeMo, DeepSpeed and PyTorch FSDP: which
attention kernel, how many memory passes the element-wise work takes (fused kernels or eager
PyTorch ops), whether tensor-parallel communication hides behind GEMMs, how the data-parallel
traffic of ZeRO/FSDP is issued and overlapped, what "selective" recomputation recomputes.
Each stack states those traits, with where they come from; the performance model
(``perf.py``) applies them and nothing else differs between stacks.

Element-wise memory passes are counted per token of one layer's forward pass, in elements of
the hidden width h and of the MLP width f (the backward moves about twice the forward's bytes):

* fused (Megatron-LM/Transformer Engine, apex): each norm reads and writes once (2h), the
  residual/bias-dropout-add reads two and writes one (3h, twice), bias-GeLU or SwiGLU reads the
  MLP input and writes its output (2f GeLU, 3f SwiGLU), rotary embedding reads and writes Q and K;
* eager PyTorch: RMSNorm as upcast, square, mean, rsqrt, scale, downcast and weight (≈ 9 passes
  of h at mixed widths; ``torch.nn.functional.layer_norm`` is one fused kernel), SwiGLU as SiLU
  then a product (5f), rotary through complex fp32 views (≈ 5 passes of Q and K), residual adds;
* ``--compile`` (torch.compile) fuses the eager chains back to about the fused count.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from gpubench.errors import GpubenchError


# Compute-bound kernels (GEMMs, attention) inside a training step reach a fraction η of what
# they reach alone (the profile's ceilings: mamf-finder's maximum achievable matmul, the
# attention kernels' published rates): sustained clocks under a whole step's power draw,
# library heuristics at the step's shapes, allocator and framework work between kernels. No
# datasheet gives η; it is fitted per stack family and GPU generation on the dense
# throughput rows of the back-test (``backtest.fit_efficiency``; ``gpubench backtest --fit``
# prints the fit, and a test holds these values to it). (η, rows it rests on):
EFFICIENCY: dict[str, dict[str, tuple[float, int]]] = {
    "deepspeed": {"ampere": (0.8063, 26)},
    "fsdp": {"ampere": (0.7853, 24), "hopper": (0.701, 41)},
    "megatron": {"ampere": (0.8911, 22), "hopper": (0.9668, 9)},
    "nemo": {"ampere": (0.6605, 12), "hopper": (0.8036, 37)},
}

TP_OVERLAP = 0.8    # share of TP collectives hidden when overlap is on (TE userbuffers, async TP)
# Communication kernels that run beside compute take multiprocessors from it: NCCL runs one
# thread block per channel, and uses 16 channels for large collectives on NVLink systems (its
# default NCCL_MIN_NCHANNELS/MAX for such topologies; Transformer Engine's userbuffers overlap
# also defaults to 16 SMs). Hidden communication slows compute by that share while it runs.
COMM_SMS = 16


@dataclass(frozen=True)
class Stack:
    name: str
    describes: str
    attention: dict                   # arch -> default attention kernel family
    fused_elementwise: bool           # fused norm/activation/residual kernels (else eager PyTorch ops)
    tp_overlap: float                 # share of tensor-parallel collectives hidden behind GEMMs
    grad_reduce_bytes: int            # bytes a gradient element takes on the wire
    zero3_regather_on_recompute: bool # ZeRO-3 gathers parameters again for a recomputed forward
    flat_collective_nics: int | None  # NICs per node a flat ZeRO/FSDP collective drives (None: all)
    selective: str                    # what --recompute selective recomputes (see perf.recompute_time)
    cpu_op_s: float                   # host time to launch one kernel (dispatch, hooks)
    overlap_param_gather: bool        # ZeRO-1/2 parameter all-gather hidden behind the next forward
    sources: tuple[str, ...]
    family: str = ""                  # which fitted compute efficiency it shares (EFFICIENCY)
    # Host operations (dispatched ATen ops, views included) one layer issues, counted on the
    # stack's own code, when they are known: {"fwd": …, "bwd": …, "recompute": {mode: …},
    # "step": ops once a step, "per_param": optimizer ops per parameter tensor}, per precision
    # family ("fp32", "amp", "fp8"). None: 3 × the layer's kernels, as for fused stacks.
    host_ops: dict | None = None

    def efficiency(self, arch: str) -> float:
        """Compute-bound kernels' rate inside a training step ÷ their isolated rate (fitted)."""
        if self.family == "eager":
            return 1.0      # not fitted: the self-check measures it on the machine at hand
        for family in (self.family, "megatron", "nemo"):   # DeepSpeed runs Megatron's kernels
            if arch in EFFICIENCY.get(family, {}):
                return EFFICIENCY[family][arch][0]
        known = [v[0] for t in EFFICIENCY.values() for a, v in t.items() if a == arch]
        if known:
            return sum(known) / len(known)
        every = [v[0] for t in EFFICIENCY.values() for v in t.values()]
        return sum(every) / len(every) if every else 1.0


_MEGATRON_SRC = ("Narayanan et al. 2021 (Megatron-LM): fused kernels, 1F1B/interleaved schedules",
                 "Korthikanti et al. 2022: sequence parallelism, selective recomputation of core attention",
                 "Megatron-LM docs (distributed optimizer: 6 + 12/d bytes a parameter; "
                 "--overlap-grad-reduce, --overlap-param-gather)")

_MEGATRON = Stack(
    name="megatron", family="megatron",
    describes="Megatron-LM / Megatron-Core (Transformer Engine on Hopper): fused element-wise "
              "kernels, distributed optimizer with overlapped gradient reduce-scatter and "
              "parameter all-gather, no tensor-parallel communication overlap",
    attention={"ampere": "unfused", "volta": "unfused", "hopper": "cudnn", "blackwell": "cudnn",
               "ada": "cudnn", "cdna3": "flash2"},
    fused_elementwise=True, tp_overlap=0.0, grad_reduce_bytes=4,
    zero3_regather_on_recompute=False, flat_collective_nics=None, selective="core_attention",
    cpu_op_s=4e-6, overlap_param_gather=True, sources=_MEGATRON_SRC)

STACKS: dict[str, Stack] = {s.name: s for s in [
    _MEGATRON,
    replace(_MEGATRON, name="nemo", family="nemo", tp_overlap=TP_OVERLAP,
            describes="NVIDIA NeMo / Megatron-Bridge performance recipes on Megatron-Core: as megatron, "
                      "plus Transformer Engine's userbuffers overlap of tensor-parallel communication",
            sources=_MEGATRON_SRC + ("NeMo performance recipes: tp_comm_overlap on for tp > 1 "
                                     "(Transformer Engine userbuffers)",)),
    Stack(
        name="deepspeed", family="deepspeed",
        describes="DeepSpeed (Megatron-DeepSpeed: Megatron's fused kernels, DeepSpeed's pipeline "
                  "engine and ZeRO); ZeRO-3 as Narayanan et al. 2021 Table 2 measured it",
        attention={"ampere": "unfused", "volta": "unfused", "hopper": "flash2", "blackwell": "flash2",
                   "ada": "flash2", "cdna3": "flash2"},
        fused_elementwise=True, tp_overlap=0.0, grad_reduce_bytes=2,
        zero3_regather_on_recompute=True, flat_collective_nics=1, selective="core_attention",
        cpu_op_s=6e-6, overlap_param_gather=False,
        sources=("DeepSpeed ZeRO (Rajbhandari et al. 2020): fp16 gradients reduced, 2 + 2 + 12 bytes a "
                 "parameter partitioned by stage",
                 "Narayanan et al. 2021 Table 2: ZeRO-3 throughput falls with the per-GPU batch at a "
                 "constant per-GPU traffic time, i.e. each rank's bytes move at one NIC's rate",
                 "DeepSpeed activation checkpointing under ZeRO-3 fetches a layer's parameters for the "
                 "recomputed forward as well as for the backward")),
    Stack(
        name="fsdp", family="fsdp",
        describes="PyTorch FSDP/FSDP2 training loops (torchtitan, llm-foundry, OLMo-core, metaseq): "
                  "eager PyTorch element-wise ops, FlashAttention-2 through SDPA, per-layer "
                  "all-gather prefetch and reduce-scatter; selective = torchtitan's op-level policy "
                  "(save attention and every other matmul, recompute the rest)",
        attention={"ampere": "flash2", "volta": "unfused", "hopper": "flash2", "blackwell": "flash2",
                   "ada": "flash2", "cdna3": "flash2"},
        fused_elementwise=False, tp_overlap=0.0, grad_reduce_bytes=4,
        zero3_regather_on_recompute=False, flat_collective_nics=None, selective="op_sac",
        cpu_op_s=10e-6, overlap_param_gather=True,
        sources=("torchtitan (pytorch/torchtitan): FSDP2, op-level selective activation checkpointing "
                 "(every second mm recomputed), float32 gradient reduction by default",
                 "llm-foundry (mosaicml): FSDP FULL_SHARD with flash attention, activation "
                 "checkpointing per block",
                 "Zhao et al. 2023 (PyTorch FSDP): backward prefetch of the next unit's all-gather")),
]}

# gpubench's own transformer-step (``gpubench.gpt``): one device, eager PyTorch. Host operations
# (every dispatched ATen op, views included) counted with a TorchDispatchMode on the tiny, mini and
# small models under torch 2.13 on a CPU: the counts are exactly linear in the layers and the
# parameter tensors, and tests/test_selfcheck.py recounts them on the code. Per precision family:
# a layer's forward and backward under each recomputation mode; per micro-batch, the embedding,
# head and loss; per step, the optimizer's fixed ops (foreach AdamW; loss scaling adds some)
# and its ops per parameter tensor.
_LAYER_OPS = {
    "fp32": {"none": (67, 111), "full": (64, 223), "selective": (65, 180)},
    "amp": {"none": (77, 119), "full": (74, 241), "selective": (75, 195)},
    "fp8": {"none": (131, 165), "full": (128, 326), "selective": (129, 261)},
}
EAGER_HOST_OPS = {
    "fp32": {"layer": _LAYER_OPS["fp32"], "micro_batch": 18 + 34, "step": 14, "per_param": 2},
    "bf16": {"layer": _LAYER_OPS["amp"], "micro_batch": 21 + 37, "step": 14, "per_param": 2},
    "fp16": {"layer": _LAYER_OPS["amp"], "micro_batch": 21 + 39, "step": 23, "per_param": 2},
    "fp8": {"layer": _LAYER_OPS["fp8"], "micro_batch": 21 + 37, "step": 14, "per_param": 2},
}
EAGER_HOST_OPS["tf32"] = EAGER_HOST_OPS["fp32"]

STACKS["eager"] = Stack(
    name="eager", family="eager",
    describes="gpubench's transformer-step on one device: eager PyTorch ops, SDPA attention, "
              "AdamW; compute efficiency 1 (the self-check measures the rest)",
    attention={"ampere": "flash2", "volta": "unfused", "hopper": "flash2", "blackwell": "flash2",
               "ada": "flash2", "cdna3": "flash2", "cpu": "flash2"},
    fused_elementwise=False, tp_overlap=0.0, grad_reduce_bytes=4,
    zero3_regather_on_recompute=False, flat_collective_nics=None, selective="attention_block",
    cpu_op_s=10e-6, overlap_param_gather=True, host_ops=EAGER_HOST_OPS,
    sources=("gpubench.gpt: GPT blocks in eager PyTorch, SDPA, RMSNorm as separate ops, rotary by "
             "chunk and cat; DDP buckets or FSDP2 per block; AdamW foreach (fused on CUDA)",))

ALIASES = {"megatron-lm": "megatron", "megatron-core": "megatron", "mcore": "megatron",
           "megatron-bridge": "nemo", "nemo-megatron": "nemo", "megatron-deepspeed": "deepspeed",
           "zero": "deepspeed", "torchtitan": "fsdp", "llm-foundry": "fsdp", "fsdp2": "fsdp",
           "pytorch": "fsdp", "olmo-core": "fsdp", "gpubench": "eager"}


def get_stack(name: str | None, *, zero: int = 0, compile: bool = False,
              tp_comm_overlap: bool | None = None) -> Stack:
    """The named stack; without a name, FSDP for ZeRO-3 layouts and Megatron-LM otherwise."""
    if name in (None, "", "auto"):
        key = "fsdp" if zero == 3 else "megatron"
    else:
        key = ALIASES.get(name.strip().lower(), name.strip().lower())
        if key not in STACKS:
            raise GpubenchError(f"--framework {name!r}: use one of {', '.join(sorted(STACKS))} "
                                f"(or auto)")
    stack = STACKS[key]
    if tp_comm_overlap is not None:
        stack = replace(stack, tp_overlap=TP_OVERLAP if tp_comm_overlap else 0.0)
    if compile and not stack.fused_elementwise:
        # torch.compile fuses the eager element-wise chains and trims launches.
        # Counted eager operations no longer describe the compiled graphs.
        stack = replace(stack, name=f"{stack.name}+compile", fused_elementwise=True,
                        cpu_op_s=stack.cpu_op_s / 2, host_ops=None)
    return stack


def elementwise_elems(stack: Stack, h: float, f: float, rope: float, rmsnorm: bool, swiglu: bool,
                      q: float = 0.0, kv: float = 0.0) -> float:
    """Elements moved per token by one layer's forward element-wise kernels.

    h: the width the norms and residuals run at (h/tp under sequence parallelism); f: this
    GPU's MLP width; rope: the width of Q plus K that rotary embedding touches (0 without it);
    q, kv: this GPU's query width and key (= value) width, for eager attention's layout copies.
    """
    if stack.fused_elementwise:
        norms = 2 * 2 * h                   # read, write
        residual = 2 * 3 * h                # two reads, a write
        act = (3 if swiglu else 2) * f
        rotary = 2 * rope
        glue = 0.0                          # fused attention takes the projections' layout
    else:
        # RMSNorm in eager PyTorch: upcast (r1 w2), square (r2 w2), mean (r2), scale (r2 w2),
        # downcast (r2 w1), weight (r1 w1), in 16-bit element units: 18 a norm.
        norms = 2 * (18 * h if rmsnorm else 2 * h)
        residual = 2 * 3 * h
        act = (5 if swiglu else 2) * f      # SiLU (r1 w1), product (r2 w1)
        rotary = 10 * rope                  # complex fp32 views: upcast, multiply, downcast
        # The attention output's transpose to contiguous rows, and grouped K/V repeated to
        # every query head (repeat_kv) before SDPA.
        glue = 2 * q + (2 * q + 2 * kv if 0 < kv < q else 0.0)
    return norms + residual + act + rotary + glue
