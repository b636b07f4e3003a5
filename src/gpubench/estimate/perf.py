"""The performance model: one training step, term by term.

For a layout (tensor, context, pipeline, data and expert parallelism; micro-batch;
recomputation; sequence parallelism; ZeRO stage; the software stack) on a cluster, the model
builds the time of one micro-batch on the slowest pipeline stage from its parts, each in a
function of its own:

* ``layer`` — every GEMM of a layer, forward and backward (input and weight gradients each with
  its own shape; ``kernels.gemm_time``); the attention core (fused kernel of the stack's family,
  or the unfused batched GEMMs plus softmax of older stacks; causal and sliding-window key
  ranges; split over tensor and context parallelism); the element-wise work at achieved memory
  bandwidth (fused or eager, ``stacks.elementwise_elems``); MoE routing, expert GEMMs at the
  stated routing imbalance and the shared experts;
* ``tp_comm`` — tensor-parallel all-reduces (or all-gather/reduce-scatter with sequence
  parallelism), what the stack overlaps with GEMMs taken off;
* ``cp_comm`` — ring attention's K/V exchange between context-parallel ranks, hidden behind the
  attention blocks it runs beside;
* ``ep_comm`` — MoE token dispatch and combine all-to-all;
* ``recompute`` — full (the forward again), or selective in the stack's sense;
* ``head`` — LM head and cross-entropy on the last stage; ``pp_comm`` — stage-to-stage sends;

then the step: (m + (p−1)/v) micro-batch slots for the pipeline (the bubble is the (p−1)/v),
the data-parallel traffic by ZeRO stage with what it overlaps (``data_parallel``), the
optimizer, and the host's kernel launches where they outrun the GPU (``launch_bound``). Every
term is reported in the breakdown, and ``overlaps`` says what hides behind what.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from gpubench.errors import GpubenchError
from gpubench.estimate.cluster import Cluster
from gpubench.estimate.comm import Group, Links, collective_time, placement
from gpubench.estimate.flops import RECOMPUTE, hardware_flops_per_token, model_flops_per_token
from gpubench.estimate.kernels import ATTENTION_FAMILIES, attention_efficiency, gemm_time
from gpubench.estimate.models import ModelConfig
from gpubench.estimate.profile import Profile
from gpubench.estimate.rates import MeasuredRates
from gpubench.estimate.stacks import COMM_SMS, Stack, elementwise_elems, get_stack

PRECISIONS = ("bf16", "fp16", "fp8", "tf32", "fp32")
ACT_BYTES = {"bf16": 2, "fp16": 2, "fp8": 2, "tf32": 4, "fp32": 4}   # activations stay 16-bit under fp8
DEFAULT_BATCH_TOKENS = 4 * 2**20   # without --global-batch: about 4M tokens a step (GPT-3, Llama 2/3)
DEFAULT_MOE_IMBALANCE = 1.1        # busiest expert rank ÷ mean, balanced routing (a stated assumption)
KERNEL_GAP_FLOOR_S = 1e-6
MOE_DISPATCHERS = ("alltoall", "deepep")


@dataclass(frozen=True)
class Layout:
    tp: int = 1
    pp: int = 1
    dp: int = 1
    vpp: int = 1
    ep: int = 1
    micro_batch: int = 1
    global_batch: int = 1
    recompute: str = "none"
    sequence_parallel: bool = False
    zero: int = 0
    precision: str = "bf16"
    cp: int = 1
    framework: str = "auto"
    moe_imbalance: float = DEFAULT_MOE_IMBALANCE
    compile: bool = False
    attention: str = "auto"          # kernel family; auto: the stack's on this architecture
    tp_comm_overlap: bool | None = None   # overlap TP collectives with GEMMs (None: the stack's default)
    moe_dispatcher: str = "alltoall"      # "alltoall" (NCCL) or "deepep" (one copy a node, then NVLink)

    @property
    def gpus(self) -> int:
        return self.tp * self.cp * self.pp * self.dp

    def as_dict(self) -> dict:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


def megatron_rules(model: ModelConfig, tp: int, cp: int, pp: int, vpp: int, micro_batches: int) -> list[str]:
    """What Megatron-LM would refuse about a layout (estimate warns; plan never proposes them)."""
    problems = []
    if vpp > 1 and model.layers % (pp * vpp):
        problems.append(f"--pp {pp} × --vpp {vpp} = {pp * vpp} does not divide the {model.layers} layers")
    elif model.layers % pp:
        problems.append(f"--pp {pp} does not divide the {model.layers} layers")
    if vpp > 1 and pp <= 2:
        problems.append("the interleaved schedule (--vpp) needs --pp > 2")
    if vpp > 1 and micro_batches % pp:
        problems.append(f"the interleaved schedule needs the {micro_batches} micro-batches to be a "
                        f"multiple of --pp {pp}")
    if model.mla is None and tp > 1 and model.n_kv_heads % tp and tp % model.n_kv_heads:
        problems.append(f"--tp {tp} and the {model.n_kv_heads} KV heads do not divide each other")
    return problems


def default_global_batch(model: ModelConfig, micro_batch: int, dp: int) -> int:
    """About DEFAULT_BATCH_TOKENS a step, a whole number of micro-batches per replica."""
    per_step = micro_batch * dp
    target = max(1, round(DEFAULT_BATCH_TOKENS / model.seq_len / per_step))
    return target * per_step


# Where each fused attention kernel exists: FlashAttention-3 is written for Hopper's TMA and
# WGMMA; FlashAttention-2 and cuDNN's fused attention need sm80 or newer (FA2 also has a ROCm
# port for MI300). An estimate must not time a kernel the GPU cannot run.
KERNEL_ARCHS = {"flash3": frozenset({"hopper"}),
                "flash2": frozenset({"ampere", "ada", "hopper", "blackwell", "cdna3"}),
                "cudnn": frozenset({"ampere", "ada", "hopper", "blackwell"})}


def no_rate_message(gpu, precision: str) -> str:
    """A GPU without a datasheet rate for the precision: say so, and what it does have."""
    hint = " (try --precision fp16)" if precision == "bf16" and gpu.peak("fp16") else ""
    return f"--precision {precision}: {gpu.key} has no dense {precision} rate in the hardware table{hint}"


def check_run_options(*, framework="auto", zero=0, moe_imbalance=None, moe_dispatcher="alltoall",
                      attention="auto", **_) -> None:
    """The settings the planner does not search, checked once for estimate and plan alike."""
    if moe_imbalance is not None and not 1.0 <= moe_imbalance <= 8.0:
        raise GpubenchError(f"--moe-imbalance {moe_imbalance} must be between 1 (perfect balance) and 8")
    get_stack(framework or "auto", zero=zero)       # validates the name
    if moe_dispatcher not in MOE_DISPATCHERS:
        raise GpubenchError(f"--moe-dispatcher {moe_dispatcher!r}: use {' or '.join(MOE_DISPATCHERS)}")
    if (attention or "auto") not in ("auto", "flash") + ATTENTION_FAMILIES:
        raise GpubenchError(f"--attention {attention!r}: use auto, flash, {', '.join(ATTENTION_FAMILIES)}")


def make_layout(model: ModelConfig, gpus: int, *, tp=1, pp=1, dp=None, vpp=1, ep=1, cp=1, micro_batch=1,
                global_batch=None, recompute="none", sequence_parallel=False, zero=0,
                precision="bf16", framework="auto", moe_imbalance=None, compile=False,
                attention="auto", tp_comm_overlap=None, moe_dispatcher="alltoall") -> Layout:
    """Validate a layout against the model and the GPU count; errors name the flag."""
    for flag, v in (("--tp", tp), ("--pp", pp), ("--vpp", vpp), ("--ep", ep), ("--cp", cp),
                    ("--micro-batch", micro_batch)):
        if not isinstance(v, int) or v < 1:
            raise GpubenchError(f"{flag} {v} must be a positive whole number")
    if cp > 1:   # before the GPU count: these are facts about the model
        if model.seq_len % (2 * cp):
            raise GpubenchError(f"--cp {cp}: the sequence of {model.seq_len} tokens does not split into "
                                f"2 × {cp} equal chunks (load-balanced causal context parallelism)")
        if model.heads % cp:
            raise GpubenchError(f"--cp {cp} does not divide the model's {model.heads} heads")
    if gpus % (tp * cp * pp):
        raise GpubenchError(f"--tp {tp} × --cp {cp} × --pp {pp} = {tp * cp * pp} does not divide --gpus {gpus}"
                            if cp > 1 else f"--tp {tp} × --pp {pp} = {tp * pp} does not divide --gpus {gpus}")
    dp_derived = gpus // (tp * cp * pp)
    if dp is None:
        dp = dp_derived
    elif dp != dp_derived:
        what = f"--tp {tp} × --cp {cp} × --pp {pp} × --dp {dp}" if cp > 1 else f"--tp {tp} × --pp {pp} × --dp {dp}"
        raise GpubenchError(f"{what} = {tp * cp * pp * dp} is not --gpus {gpus}")
    if model.heads % tp:
        raise GpubenchError(f"--tp {tp} does not divide the model's {model.heads} heads")
    # Pipeline engines may give the embedding and the loss a stage slot of their own
    # (DeepSpeed's layer partitioning, Megatron's account-for-embedding/loss): layers + 2.
    if pp > model.layers + 2:
        raise GpubenchError(f"--pp {pp} is more than the model's {model.layers} layers")
    if vpp > 1 and (pp == 1 or pp * vpp > model.layers + 2):
        raise GpubenchError(f"--vpp {vpp} needs --pp > 1 and at least one of the {model.layers} "
                            f"layers per virtual stage (pp·vpp ≤ layers)")
    if ep > 1 and not model.is_moe:
        raise GpubenchError("--ep needs a mixture-of-experts model")
    if model.is_moe and (model.experts % ep or (tp * cp * dp) % ep):
        raise GpubenchError(f"--ep {ep} must divide the {model.experts} experts and tp × cp × dp "
                            f"{tp * cp * dp} (the ranks that share a pipeline stage)")
    if global_batch is None:
        global_batch = default_global_batch(model, micro_batch, dp)
    if global_batch <= 0 or global_batch % (micro_batch * dp):
        raise GpubenchError(f"--global-batch {global_batch} is not a multiple of --micro-batch "
                            f"{micro_batch} × dp {dp} = {micro_batch * dp}")
    if recompute not in RECOMPUTE:
        raise GpubenchError(f"--recompute {recompute!r}: use none, selective or full")
    if zero not in (0, 1, 2, 3):
        raise GpubenchError(f"--zero {zero}: use 0, 1, 2 or 3")
    if precision not in PRECISIONS:
        raise GpubenchError(f"--precision {precision!r}: use one of {', '.join(PRECISIONS)}")
    if moe_imbalance is None:
        moe_imbalance = DEFAULT_MOE_IMBALANCE
    attention = attention or "auto"
    check_run_options(framework=framework, zero=zero, moe_imbalance=moe_imbalance,
                      moe_dispatcher=moe_dispatcher, attention=attention)
    return Layout(tp, pp, dp, vpp, ep, micro_batch, global_batch, recompute,
                  bool(sequence_parallel and tp > 1), zero, precision, cp, framework or "auto",
                  float(moe_imbalance), bool(compile), attention, tp_comm_overlap, moe_dispatcher)


# ---------------------------------------------------------------- the model

@dataclass
class StepModel:
    model: ModelConfig
    cluster: Cluster
    layout: Layout
    profile: Profile
    cache: dict | None = None           # shared across layouts by the planner
    compute_efficiency: float | None = None   # overrides the stack's (used by the back-test's fit)
    # This device's own measurements (the self-check): kernels, copies, host operations and
    # collectives take their measured times instead of fractions of datasheet figures.
    rates: MeasuredRates | None = None

    def __post_init__(self):
        gpu, L = self.cluster.gpu, self.layout
        peak = gpu.peak(L.precision)
        if peak is None and self.rates is not None:
            peak = float("nan")         # a device without a datasheet: no MFU, rates do the rest
        elif peak is None:
            raise GpubenchError(no_rate_message(gpu, L.precision))
        self._params = None
        self.stack: Stack = get_stack(L.framework, zero=L.zero, compile=L.compile,
                                      tp_comm_overlap=L.tp_comm_overlap)
        # Compute-bound kernels run against the peak × a power cap's clock factor × the stack's
        # in-training efficiency (stacks.py: what kernels achieve inside a step, fitted on the
        # back-test, against what they achieve alone).
        self.eta = self.compute_efficiency or self.stack.efficiency(gpu.arch)
        clock = self.cluster.clock_factor * self.eta
        self.peak = peak * 1e12
        self.rate_peak = self.peak * clock
        self.bf16_peak = (gpu.peak("bf16") or gpu.peak("fp16") or peak) * 1e12 * clock
        self.mem_bw = gpu.mem_bandwidth_gbps * 1e9 * self.profile.mem_bw_efficiency
        self.ceiling = self.profile.ceiling(L.precision)
        self.act_bytes = ACT_BYTES[L.precision]
        self.elem_bytes = 1.0 if L.precision == "fp8" else self.act_bytes
        link = self.cluster.link
        self.sms = link.multiprocessors
        self.comm_tax = min(1.0, COMM_SMS / self.sms)   # compute slowdown per second of hidden comm
        self.gpn = link.gpus_per_node
        self.links = Links(link.intra_node_gbps * 1e9 * self.profile.intra_node_efficiency,
                           link.inter_node_gbps * 1e9 * self.profile.inter_node_efficiency)
        self.attention_family = self._attention_family()
        # Megatron-LM's rank order: tensor, context, (expert within) data, then pipeline.
        self.tp_group = Group(L.tp, placement(L.tp, 1, self.gpn), self.links)
        self.cp_group = Group(L.cp, placement(L.cp, L.tp, self.gpn), self.links)
        # Expert parallelism within the data-parallel ranks of a stage when it fits there, else
        # folded over the tensor/context ranks too (Megatron-Core's MoE parallel folding), when the
        # experts are not themselves split by tensor parallelism.
        self.folded = L.ep > L.dp * L.cp
        self.etp = 1 if self.folded else L.tp
        self.ep_group = Group(L.ep, placement(L.ep, 1 if self.folded else L.tp * L.cp, self.gpn), self.links)
        dpc = L.dp * L.cp          # context-parallel ranks hold the same weights: they reduce together
        self.dp_group = Group(dpc, placement(dpc, L.tp, self.gpn), self.links,
                              nics_used=self.stack.flat_collective_nics if L.zero >= 2 else None)
        self.pp_group = Group(2, placement(2, L.tp * L.cp * L.dp, self.gpn), self.links)

    def _attention_family(self) -> str:
        """The kernel family: as asked, else the stack's on this architecture."""
        asked = self.layout.attention
        family = self.stack.attention.get(self.cluster.gpu.arch, "flash2")
        if asked == "auto":
            return family
        chosen = (family if family != "unfused" else "flash2") if asked == "flash" else asked
        arch = self.cluster.gpu.arch
        if chosen in KERNEL_ARCHS and arch not in KERNEL_ARCHS[chosen]:
            raise GpubenchError(f"--attention {asked}: {chosen} runs on {', '.join(sorted(KERNEL_ARCHS[chosen]))} "
                                f"GPUs and {self.cluster.gpu.key} is {arch} (--attention auto picks what runs there)")
        return chosen

    # -- helpers
    def gemm(self, m, n, k, batch=1, peak=None, ceiling=None, elem_bytes=None, precision=None,
             layout="nt") -> float:
        if self.rates is not None:
            # The attention products (``peak`` given) and an FP8 run's LM head run in 16 bits;
            # FP8 GEMMs are all nt (the step transposes its FP8 copies to fit _scaled_mm).
            wide = self.layout.precision in ("fp32", "tf32")
            p = precision or (self.layout.precision if peak is None or wide else "bf16")
            return self.rates.gemm_s(p, max(1.0, m), n, k, batch,
                                     "nt" if p.startswith("fp8") else layout) / self.eta
        return gemm_time(int(max(1, round(m))), int(n), int(k), int(batch), peak or self.rate_peak,
                         ceiling or self.ceiling, self.mem_bw, elem_bytes or self.elem_bytes, self.sms,
                         self.profile.gemm_anchor(self.layout.precision, m, n, k, self.sms, peak or self.rate_peak))

    def mem_s(self, nbytes: float, working_set: float) -> float:
        """Seconds to move ``nbytes`` of memory-bound traffic over tensors of ``working_set`` bytes
        (which cache level serves them, where the rates measured that)."""
        if self.rates is not None:
            return nbytes / self.rates.bandwidth(working_set)
        return nbytes / self.mem_bw

    def collective(self, op: str, nbytes: float, group: Group) -> float:
        if self.rates is not None and group.n > 1:
            return self.rates.collective_s(op, nbytes, group.n)
        return collective_time(op, nbytes, group)

    @property
    def tokens_per_micro_batch(self) -> float:
        """Tokens of one micro-batch on one GPU (context parallelism splits the sequence)."""
        return self.layout.micro_batch * self.model.seq_len / self.layout.cp

    # -- one layer, one micro-batch, one GPU
    def layer_times(self, moe: bool) -> dict[str, float]:
        L = self.layout
        if self.cache is None:
            return self._layer_times(moe)
        # Everything a layer's time depends on (not dp or pp, which the planner varies most).
        key = (moe, L.tp, L.cp, L.micro_batch, L.sequence_parallel, L.recompute, L.ep, self.folded,
               L.precision, L.framework, L.zero == 3, L.moe_imbalance, L.compile, L.attention,
               L.tp_comm_overlap, L.moe_dispatcher, self.eta)
        if key not in self.cache:
            self.cache[key] = self._layer_times(moe)
        return self.cache[key]

    def _linear(self, rows, n, k) -> tuple[float, float, float]:
        """Forward Y = X·Wᵀ; backward dX = dY·W (inner n) and dW = dYᵀ·X (inner = rows)."""
        return (self.gemm(rows, n, k), self.gemm(rows, k, n, layout="nn"),
                self.gemm(n, k, rows, layout="tn"))

    def gemms(self, moe: bool) -> dict[str, float]:
        """GEMM seconds of one layer: forward, input-gradient and weight-gradient passes."""
        m, L = self.model, self.layout
        tp, t = L.tp, self.tokens_per_micro_batch
        fwd = dgrad = wgrad = 0.0
        kernels = 0

        def add(rows, n, k, count=1.0):
            nonlocal fwd, dgrad, wgrad, kernels
            f, d, w = self._linear(rows, n, k)
            fwd += count * f
            dgrad += count * d
            wgrad += count * w
            kernels += count

        def split(n, k, par):
            return (n // tp, k) if par == "col" else (n, k // tp) if par == "row" else (n, k)

        for _, n, k, par in m.attention_gemms():
            add(t, *split(n, k, par))
        expert = 0.0
        if moe:
            # Every token visits top_k experts; an expert rank holds experts/ep of them and sees
            # the routed tokens of its ep group, the busiest rank `moe_imbalance` × the mean.
            # Folded over the tensor ranks, each rank routes its own 1/tp of the tokens to whole
            # experts; otherwise every tensor rank sees all tokens and holds 1/tp of each expert.
            experts_local = m.experts / L.ep
            rows = t * m.top_k * L.ep / m.experts * L.moe_imbalance / (L.tp if self.folded else 1)
            before = fwd + dgrad + wgrad
            for _, n, k, par in m.mlp_gemms(m.expert_ffn):
                add(rows, *(split(n, k, par) if self.etp > 1 else (n, k)), count=experts_local)
            expert = fwd + dgrad + wgrad - before
            if m.shared_ffn:
                for _, n, k, par in m.mlp_gemms(m.shared_ffn):
                    add(t, *split(n, k, par))
            add(t, m.experts, m.hidden)       # router
        else:
            for _, n, k, par in m.mlp_gemms(m.ffn):
                add(t, *split(n, k, par))
        return {"fwd": fwd, "dgrad": dgrad, "wgrad": wgrad, "kernels": kernels, "expert": expert}

    def attention(self) -> dict[str, float]:
        """Attention core of one layer: forward and backward seconds (causal, windowed, split)."""
        m, L = self.model, self.layout
        heads = m.heads / L.tp
        qk, v = m.attn_qk_dim, m.attn_v_dim
        b, s = L.micro_batch, m.seq_len
        windowed = m.windowed_layers / m.layers
        keys = (1 - windowed) * m.mean_keys(False) + windowed * m.mean_keys(True)
        if self.attention_family == "unfused":
            # Megatron's unfused path: Q·Kᵀ and P·V as batched GEMMs over the full s×s (causal
            # masking does not skip work), scale-mask-softmax (read, write) and dropout (read,
            # write, mask) over the s² scores, in the forward; twice that in the backward.
            rows = s / L.cp
            c16 = self.profile.ceiling("bf16")
            fwd = (self.gemm(rows, s, qk, b * heads, peak=self.bf16_peak, ceiling=c16, elem_bytes=2)
                   + self.gemm(rows, v, s, b * heads, peak=self.bf16_peak, ceiling=c16, elem_bytes=2))
            scores = b * heads * rows * s
            softmax = self.mem_s(scores * (2 * self.act_bytes + 2 * self.act_bytes + 1), scores * self.act_bytes)
            return {"fwd": fwd + softmax, "bwd": 2 * fwd + 2 * softmax, "core_fwd": fwd + softmax,
                    "kernels": 4, "score_bytes": b * heads * rows * s}
        flops = 2.0 * b * heads * (s / L.cp) * keys * (qk + v)
        measured = None
        if self.profile.measured("attention_fwd_efficiency"):
            measured = (self.profile.attention_fwd_efficiency, self.profile.attention_bwd_efficiency)
        if self.rates is not None:
            args = (b, heads, s / L.cp, m.attn_qk_dim, "bf16" if L.precision == "fp8" else L.precision, keys)
            fwd = self.rates.attention_s("fwd", flops, *args) / self.eta
            bwd = self.rates.attention_s("bwd", 2.5 * flops, *args) / self.eta
            return {"fwd": fwd, "bwd": bwd, "core_fwd": fwd, "kernels": 2 + (1 if L.cp > 1 else 0),
                    "score_bytes": 0.0}
        eff_f, eff_b = attention_efficiency(self.attention_family, self.cluster.gpu.arch, keys,
                                            m.attn_qk_dim, measured)
        fwd = flops / (self.bf16_peak * eff_f)
        bwd = 2.5 * flops / (self.bf16_peak * eff_b)
        return {"fwd": fwd, "bwd": bwd, "core_fwd": fwd, "kernels": 2 + (1 if L.cp > 1 else 0),
                "score_bytes": 0.0}

    def elementwise(self, moe: bool) -> float:
        """Forward seconds of one layer's element-wise kernels (the backward is twice this)."""
        m, L = self.model, self.layout
        t = self.tokens_per_micro_batch
        width = m.hidden / L.tp if L.sequence_parallel else m.hidden
        f = (m.expert_ffn * m.top_k * L.moe_imbalance + m.shared_ffn if moe else m.ffn) / L.tp
        swiglu = m.mlp == "swiglu"
        rope = (m.q_width + m.n_kv_heads * m.head_dim) / L.tp if swiglu else 0.0
        q = m.heads * m.attn_qk_dim / L.tp
        kv = (m.n_kv_heads if m.mla is None else m.heads) * m.attn_qk_dim / L.tp
        elems = elementwise_elems(self.stack, width, f, rope, rmsnorm=swiglu, swiglu=swiglu, q=q, kv=kv)
        if moe:
            # Permute tokens to their experts and back, and the router's softmax/top-k.
            elems += 2 * 2 * m.top_k * m.hidden / L.tp + 3 * m.experts
        if L.precision == "fp8":
            elems += self.fp8_cast_elems(q, kv, f) / 3     # the caller triples elementwise time
        return self.mem_s(t * elems * self.act_bytes, t * m.hidden * self.act_bytes)

    def fp8_cast_elems(self, q: float, kv: float, f: float) -> float:
        """16-bit element units moved per token by one layer's fp8 casts, forward and backward.

        A dynamic per-tensor cast reads its input for the amax, reads it again and writes 8 bits
        (2.5 units); the weight gradient needs the transposed cast too (1.5). Transformer Engine
        fuses the casts of the QKV and MLP inputs into the norms and of the down projection's
        input into the activation, leaving the attention output's and the output gradients';
        dynamic scaling in eager PyTorch (torchao) casts every GEMM input and output gradient."""
        m = self.model
        h = m.hidden
        up = (2 if m.mlp == "swiglu" else 1) * f
        grads = (q + 2 * kv) + h + up + h          # output gradients of qkv, out, up, down
        if self.stack.fused_elementwise and not self.stack.name.endswith("+compile"):
            return 2.5 * q + 1.5 * grads
        inputs = 2 * h + q + f                     # inputs of qkv, out, up, down
        return 2.5 * inputs + 2.5 * grads + 1.5 * inputs

    def tp_comm(self, gemm_fwd: float) -> tuple[float, float]:
        """Forward tensor-parallel communication of one layer: (exposed, hidden) seconds."""
        m, L = self.model, self.layout
        if L.tp == 1:
            return 0.0, 0.0
        payload = self.tokens_per_micro_batch * m.hidden * self.act_bytes
        if L.sequence_parallel:
            t = 2 * (self.collective("all_gather", payload, self.tp_group)
                     + self.collective("reduce_scatter", payload, self.tp_group))
        else:
            t = 2 * self.collective("all_reduce", payload, self.tp_group)
        hidden = min(self.stack.tp_overlap * t, gemm_fwd)
        return t - hidden, hidden

    def cp_comm(self, attn: dict) -> tuple[float, float]:
        """Ring attention of one layer, forward + backward: (exposed, hidden) seconds.

        Each rank passes its K/V chunk around the ring, cp − 1 steps in the forward; the
        backward passes K/V again and their gradients back. Each step hides behind the
        attention block computed on the chunk already there.
        """
        m, L = self.model, self.layout
        if L.cp == 1:
            return 0.0, 0.0
        kv = 2 * L.micro_batch * (m.seq_len / L.cp) * max(1, m.n_kv_heads / L.tp) * m.attn_qk_dim * self.act_bytes
        step = collective_time("p2p", kv, self.cp_group)
        comm = (L.cp - 1) * step * (1 + 2)
        hideable = attn["fwd"] + attn["bwd"]
        exposed = max(0.0, comm - hideable) + step      # the first exchange waits
        return exposed, comm - exposed

    def ep_comm(self) -> float:
        """Dispatch and combine all-to-all of one MoE layer, forward and backward.

        Each of a rank's tokens goes to its top-k experts. Through NCCL's all-to-all every copy
        for a rank in another node leaves through this rank's NIC. A node-aware dispatcher
        (DeepSeek's DeepEP) sends a token once to each node that hosts any of its experts and
        fans it out over NVLink there: the network carries h × (expected remote nodes) a token."""
        m, L = self.model, self.layout
        if L.ep == 1:
            return 0.0
        wire = 1 if L.precision == "fp8" else self.act_bytes
        payload = self.tokens_per_micro_batch * m.top_k * m.hidden * wire / L.tp * L.moe_imbalance
        g = self.ep_group
        if L.moe_dispatcher == "deepep" and g.nodes > 1:
            per_node = m.experts / g.nodes
            # P(a node hosts none of a token's k experts) = C(E − E/N, k) / C(E, k)
            p_none = math.comb(int(m.experts - per_node), m.top_k) / math.comb(m.experts, m.top_k)
            remote_copies = (g.nodes - 1) * (1 - p_none)
            net = payload / m.top_k * remote_copies / self.links.inter_bw
            local = payload * (g.per_node - 1) / g.n / self.links.intra_bw
            one = max(net, local) + collective_time("p2p", 1, g)
            return 4 * one
        return 4 * collective_time("all_to_all", payload, g)

    def recompute_time(self, g: dict, attn: dict, elem_fwd: float, tp_fwd: float) -> float:
        L = self.layout
        if L.recompute == "none":
            return 0.0
        if L.recompute == "full":
            return g["fwd"] + attn["fwd"] + elem_fwd + tp_fwd
        if self.stack.selective == "op_sac":
            # torchtitan's op-level policy keeps attention and every other matmul's output.
            return 0.5 * g["fwd"] + elem_fwd
        if self.stack.selective == "attention_block":
            # gpubench's "attention" checkpointing: the attention sub-block again (norm, QKV and
            # output projections, rotary, attention), about half the element-wise work.
            m, t = self.model, self.tokens_per_micro_batch
            proj = sum(self.gemm(t, n // self.layout.tp if par == "col" else n,
                                 k // self.layout.tp if par == "row" else k)
                       for _, n, k, par in m.attention_gemms())
            return proj + attn["fwd"] + 0.5 * elem_fwd
        if self.attention_family == "unfused":
            return attn["core_fwd"]           # Korthikanti et al.: the s² core attention
        # With a fused attention kernel there is no s² tensor to save: Megatron-Core's selective
        # recomputation re-runs the cheap element-wise modules (norms, activation) instead.
        return elem_fwd

    def _layer_times(self, moe: bool) -> dict[str, float]:
        g = self.gemms(moe)
        attn = self.attention()
        elem = self.elementwise(moe)
        tp_exposed, tp_hidden = self.tp_comm(g["fwd"])
        cp_exposed, cp_hidden = self.cp_comm(attn)
        a2a = self.ep_comm() if moe else 0.0
        rec = self.recompute_time(g, attn, elem, tp_exposed)
        kernels = g["kernels"] + attn["kernels"] + (8 if self.stack.fused_elementwise else 24) \
            + (8 if moe else 0)
        gap = max(KERNEL_GAP_FLOOR_S, self.profile.kernel_gap_s)
        if self.rates is not None:
            # A CPU runs each op itself: its cost is all in ``host_ops``. A GPU's own step keeps
            # only the floor between kernels the host has queued (the profile's gap is a
            # frontier-stack assumption; the self-check holds this one to the measured step).
            gap = KERNEL_GAP_FLOOR_S if self.rates.host_overlap else 0.0
        gaps = 3 * kernels * gap
        # Hidden communication still takes multiprocessors from the compute it hides behind.
        tax_fwd = self.comm_tax * tp_hidden
        tax_bwd = self.comm_tax * (tp_hidden + cp_hidden)
        fwd = g["fwd"] + attn["fwd"] + elem + tp_exposed + a2a / 2 + tax_fwd
        bwd = g["dgrad"] + g["wgrad"] + attn["bwd"] + 2 * elem + tp_exposed + a2a / 2 + tax_bwd
        return {"fwd": fwd, "bwd": bwd, "recompute": rec, "gaps": gaps,
                "gemm": g["fwd"] + g["dgrad"] + g["wgrad"], "expert_gemm": g["expert"],
                "attention": attn["fwd"] + attn["bwd"], "elementwise": 3 * elem,
                "tp_comm": 2 * tp_exposed, "tp_hidden": 2 * tp_hidden, "cp_comm": cp_exposed,
                "cp_hidden": cp_hidden, "ep_comm": a2a, "kernels": 3 * kernels,
                "interference": tax_fwd + tax_bwd,
                "compute": g["fwd"] + g["dgrad"] + g["wgrad"] + attn["fwd"] + attn["bwd"] + 3 * elem + rec}

    def head_time(self) -> float:
        """LM head forward and backward (3 GEMMs) plus the cross-entropy, on the last stage."""
        L = self.layout
        if self.cache is None:
            return self._head_time()
        key = ("head", L.tp, L.cp, L.micro_batch, L.precision, L.framework, L.compile, self.eta)
        if key not in self.cache:
            self.cache[key] = self._head_time()
        return self.cache[key]

    def _head_time(self) -> float:
        m, L = self.model, self.layout
        t = self.tokens_per_micro_batch
        n = m.vocab // L.tp
        # gpubench's FP8 runs keep the LM head in bf16 (Megatron-style stacks are modelled as fp8).
        hp = "bf16" if self.rates is not None and L.precision == "fp8" else None
        gemms = (self.gemm(t, n, m.hidden, precision=hp) + self.gemm(t, m.hidden, n, precision=hp, layout="nn")
                 + self.gemm(n, m.hidden, t, precision=hp, layout="tn"))
        # Logits in fp32 through softmax and its gradient: a fused vocab-parallel cross-entropy
        # reads and writes them about 3 times; an eager one (upcast, log-softmax, NLL and back) ~7.
        passes = 3 if self.stack.fused_elementwise else 7
        logits = t * (m.vocab / L.tp) * 4
        softmax = self.mem_s(passes * logits, logits)
        return gemms + softmax

    def stage_layers(self, first: bool = False) -> tuple[int, int]:
        """(dense, MoE) layers on the slowest pipeline stage (or on the first, which gets the
        fewer layers when they do not divide evenly)."""
        m, L = self.model, self.layout
        stage = max(1, m.layers // L.pp) if first and L.pp > 1 else math.ceil(m.layers / L.pp)
        n_moe = min(stage, m.moe_layers)
        return stage - n_moe, n_moe

    def data_parallel(self, per_mb_bwd: float, per_mb_fwd: float, per_mb_compute: float,
                      micro_batches: int, layers: int) -> dict[str, float]:
        """Gradient reduction, parameter gathers and their overlap, per step (seconds).

        ZeRO-0: all-reduce of the gradients after the last backward, bucketed into it.
        ZeRO-1 (Megatron's distributed optimizer): reduce-scatter of the gradients (bucketed
        into the last backward) and all-gather of the updated parameters (hidden behind the
        next forward where the stack overlaps it). ZeRO-2: the reduce-scatter every
        micro-batch. ZeRO-3/FSDP: every micro-batch gathers each layer's parameters for the
        forward and again for the backward (and for a recomputed forward where the stack does)
        and reduce-scatters its gradients; a layer's traffic hides behind the neighbouring
        layer's compute (prefetch), so what shows is the excess of traffic over compute. Under
        pipelining, FSDP keeps a stage's gathered parameters for the whole step (torchtitan,
        Llama 3): one gather and one reduce-scatter a step, as ZeRO-2 without the per-micro-batch
        reduction.
        Overlapped communication competes with compute for the GPU: the profile's
        ``dp_overlap`` is the share of compute time it can hide behind.
        """
        L, st = self.layout, self.stack
        g = self.dp_group
        out = {"exposed": 0.0, "hidden": 0.0, "traffic": 0.0}
        if g.n <= 1:
            return out
        params = self.params_per_gpu()
        grad_b = st.grad_reduce_bytes
        param_b = 1 if L.precision == "fp8" and L.zero == 3 else self.act_bytes
        overlap = self.profile.dp_overlap
        if L.zero == 3 and L.pp == 1:
            gathers = 2 + (1 if (L.recompute == "full" and st.zero3_regather_on_recompute) else 0)
            per_mb = (gathers * self.collective("all_gather", params * param_b, g)
                      + self.collective("reduce_scatter", params * grad_b, g))
            # The first layer's gather starts each micro-batch with nothing to hide behind.
            first = per_mb / max(1, layers) / max(1, gathers + 1)
            hideable = overlap * per_mb_compute
            exposed_mb = max(0.0, per_mb - hideable) + first
            out.update(traffic=micro_batches * per_mb, exposed=micro_batches * exposed_mb,
                       hidden=micro_batches * (per_mb - exposed_mb))
            return out
        if L.zero == 2:
            rs = self.collective("reduce_scatter", params * grad_b, g)
            ag = self.collective("all_gather", params * self.act_bytes, g)
            rs_exposed = max(0.0, rs - overlap * per_mb_bwd)
            ag_exposed = max(0.0, ag - (overlap * per_mb_fwd if st.overlap_param_gather else 0.0))
            out.update(traffic=micro_batches * rs + ag, exposed=micro_batches * rs_exposed + ag_exposed)
            out["hidden"] = out["traffic"] - out["exposed"]
            return out
        if L.zero in (1, 3):
            red = self.collective("reduce_scatter", params * grad_b, g)
            ag = self.collective("all_gather", params * self.act_bytes, g)
        else:
            red = self.collective("all_reduce", params * grad_b, g)
            ag = 0.0
        # Buckets go out as the last micro-batch's backward produces them; the last bucket
        # (about one layer's gradients) always waits.
        last_bucket = red / max(1, layers)
        red_exposed = max(last_bucket, red - overlap * per_mb_bwd)
        ag_exposed = max(0.0, ag - (overlap * per_mb_fwd if st.overlap_param_gather else 0.0))
        out.update(traffic=red + ag, exposed=red_exposed + ag_exposed)
        out["hidden"] = out["traffic"] - out["exposed"]
        return out

    def estimate(self) -> dict:
        m, L, c = self.model, self.layout, self.cluster
        micro_batches = L.global_batch // (L.micro_batch * L.dp)
        n_dense, n_moe = self.stage_layers()
        parts = {"dense": self.layer_times(False)}
        if m.is_moe:
            parts["moe"] = self.layer_times(True)
        per_layer = {}
        for key in parts["dense"]:
            per_layer[key] = n_dense * parts["dense"][key] + (n_moe * parts["moe"][key] if m.is_moe else 0)
        head = self.head_time()
        # Activations cross each stage boundary forward and back; scatter/gather sends 1/tp of them.
        p2p_bytes = self.tokens_per_micro_batch * m.hidden * self.act_bytes / L.tp
        pp_comm = 2 * L.vpp * collective_time("p2p", p2p_bytes, self.pp_group) if L.pp > 1 else 0.0
        busy = per_layer["fwd"] + per_layer["bwd"] + per_layer["recompute"] + per_layer["cp_comm"]
        mb_time = busy + per_layer["gaps"] + pp_comm
        # Every stage holds the same layers; the last also the head, so it sets the pace.
        slot = mb_time + head
        # Host launch bound: a stage cannot run faster than the host issues its operations. Where
        # the host does the arithmetic too (a CPU), it issues them and then runs them.
        host = self.host_ops(n_dense + n_moe, per_layer["kernels"])
        launches = host["micro_batch"] * host["op_s"]
        if self.rates is not None and not self.rates.host_overlap:
            launch_extra = launches
        else:
            launch_extra = max(0.0, launches - slot)
        slot += launch_extra
        bubble = (L.pp - 1) / L.vpp * slot
        pipeline = micro_batches * slot + bubble

        dp = self.data_parallel(per_layer["bwd"] + per_layer["recompute"], per_layer["fwd"],
                                per_layer["compute"], micro_batches, n_dense + n_moe)
        opt_params = self.params_per_gpu() / (self.dp_group.n if L.zero >= 1 else 1)
        optimizer = self.optimizer_time(opt_params, host)

        dp_tax = self.comm_tax * dp["hidden"]
        step = pipeline + dp["exposed"] + dp_tax + optimizer
        tokens = L.global_batch * m.seq_len
        tokens_per_s = tokens / step
        mflops = model_flops_per_token(m)
        hflops = hardware_flops_per_token(m, L.recompute)
        model_tflops = mflops * tokens_per_s / c.gpus / 1e12
        hw_tflops = hflops * tokens_per_s / c.gpus / 1e12
        slots = micro_batches
        breakdown = {
            "gemm_s": slots * per_layer["gemm"],
            "attention_s": slots * per_layer["attention"],
            "elementwise_s": slots * per_layer["elementwise"],
            "kernel_gaps_s": slots * (per_layer["gaps"] + launch_extra),
            "lm_head_s": slots * head,
            "recompute_s": slots * per_layer["recompute"],
            "tp_comm_s": slots * per_layer["tp_comm"],
            "cp_comm_s": slots * per_layer["cp_comm"],
            "ep_comm_s": slots * per_layer["ep_comm"],
            "pp_comm_s": slots * pp_comm,
            "pipeline_bubble_s": bubble,
            "dp_comm_exposed_s": dp["exposed"],
            "overlap_interference_s": slots * per_layer["interference"] + dp_tax,
            "optimizer_s": optimizer,
        }
        overlaps = {
            "tp_comm_hidden_behind_gemm_s": slots * per_layer["tp_hidden"],
            "cp_comm_hidden_behind_attention_s": slots * per_layer["cp_hidden"],
            "dp_comm_hidden_behind_compute_s": dp["hidden"],
            "dp_traffic_s": dp["traffic"],
        }
        return {
            "step_time_s": step,
            "tokens_per_step": tokens,
            "tokens_per_s": tokens_per_s,
            "model_tflops_per_gpu": model_tflops,
            "hardware_tflops_per_gpu": hw_tflops,
            "mfu": model_tflops * 1e12 / self.peak if math.isfinite(self.peak) else None,
            "hfu": hw_tflops * 1e12 / self.peak if math.isfinite(self.peak) else None,
            "peak_tflops": self.peak / 1e12 if math.isfinite(self.peak) else None,
            "micro_batches": micro_batches,
            "breakdown": breakdown,
            "overlaps": overlaps,
            "stack": self.stack.name,
            "attention_kernel": self.attention_family,
        }

    def optimizer_time(self, params: float, host: dict) -> float:
        """AdamW over ``params`` (sharded by ZeRO ≥ 1 over the data-parallel group): memory passes
        over the float32 state plus the host operations it issues.

        A fused AdamW (apex, Transformer Engine, torch's ``fused=True``) reads the master weight,
        the gradient and both moments and writes three of them back in one pass: about 30 bytes a
        parameter, 34 with the gradient-norm pass. PyTorch's foreach AdamW, which gpubench's own
        step runs on a CPU and under FSDP2, makes a pass per operation (lerp, mul, addcmul, sqrt,
        div, add, addcdiv and the weight decay's mul): 12 float32 reads and 8 writes, 80 bytes.
        The state it streams is four float32 arrays the size of the parameters."""
        bytes_per_param = 80.0 if self._foreach_optimizer() else 34.0
        return self.mem_s(params * bytes_per_param, params * 16) + host["step"] * host["op_s"]

    def _foreach_optimizer(self) -> bool:
        if self.stack.family != "eager":
            return False
        on_gpu = self.rates.host_overlap if self.rates is not None else True
        return not on_gpu or self.layout.zero == 3

    def host_ops(self, layers: int, kernels: float) -> dict:
        """Host operations a micro-batch and the optimizer step issue, and what one costs.

        Stacks whose code is counted (``Stack.host_ops``) give their counts per layer, micro-batch
        and parameter tensor; the others issue each kernel of a layer's forward, backward and
        recomputation (``kernels``: 3 × each layer's, summed). One operation costs the rates' measured
        op-overhead (autograd) where measured, else the stack's stated ``cpu_op_s``."""
        L, st = self.layout, self.stack
        op_s = st.cpu_op_s
        if self.rates is not None and self.rates.op_s:
            op_s = self.rates.op_s
        elif self.rates is not None:
            self.rates.note(f"op overhead not measured (op-overhead): {st.cpu_op_s * 1e6:g} µs an "
                            f"operation assumed ({st.name} stack)")
        if st.host_ops is None:
            return {"micro_batch": kernels, "step": 0.0, "op_s": op_s}
        counts = st.host_ops.get(L.precision) or st.host_ops["fp32"]
        fwd, bwd = counts["layer"][L.recompute]
        mb = layers * (fwd + bwd) + counts["micro_batch"]
        # The fused CUDA AdamW is one kernel for every tensor; foreach (CPU, FSDP) loops over them.
        tensors = self.model.layers * 6 + 3 if self._foreach_optimizer() else 0
        return {"micro_batch": mb, "step": counts["step"] + counts["per_param"] * tensors, "op_s": op_s}

    def params_per_gpu(self) -> float:
        """Parameters one GPU holds before ZeRO sharding (the busiest pipeline stage)."""
        if self._params is None:
            self._params = self._params_per_gpu()
        return self._params

    def _params_per_gpu(self) -> float:
        m, L = self.model, self.layout
        per_layer_dense = m.layer_params(False, active=False) / L.tp
        if m.is_moe:
            moe = m.layer_params(True, active=False)
            experts = m.experts * m.mlp_params(m.expert_ffn)
            per_layer_moe = (moe - experts) / L.tp + experts / (L.ep * self.etp)
        else:
            per_layer_moe = 0.0
        n_dense, n_moe = self.stage_layers()
        head = m.hidden * m.vocab / L.tp
        return n_dense * per_layer_dense + n_moe * per_layer_moe + head
