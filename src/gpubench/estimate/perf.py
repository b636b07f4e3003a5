"""The performance model: one training step, term by term.

For a layout (tensor, pipeline, data and expert parallelism; micro-batch;
recomputation; sequence parallelism; ZeRO stage) on a cluster, the model builds
the time of one micro-batch on the slowest pipeline stage from its parts:

* every GEMM of a layer, forward and backward (the backward's two GEMMs, for the
  input and the weight gradient, each with its own shape), timed as FLOPs over (peak × the profile's GEMM ceiling), degraded by
  wave quantisation over the GPU's multiprocessors and by short inner dimensions,
  and never faster than its bytes over memory bandwidth;
* the attention core: flash attention at the profile's efficiency (causal blocks
  skipped), or the unfused batched GEMMs plus softmax traffic of older stacks;
* memory-bound elementwise work (norms, activations, dropout, residuals);
* tensor-parallel all-reduces (or all-gather/reduce-scatter with sequence
  parallelism), minus what the profile says is overlapped;
* expert-parallel all-to-all for MoE layers;
* recomputation: the forward again (full) or the attention core (selective);
* the LM head on the last stage, pipeline send/receive between stages;

then the step: (m + (p−1)/v) micro-batch slots for the pipeline (the bubble is
the (p−1)/v), plus the exposed data-parallel gradient reduction and the optimizer
step. Every term is reported in the breakdown, so an estimate can be argued with.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

from gpubench.errors import GpubenchError
from gpubench.estimate.cluster import Cluster
from gpubench.estimate.flops import RECOMPUTE, hardware_flops_per_token, model_flops_per_token
from gpubench.estimate.models import ModelConfig
from gpubench.estimate.profile import Profile

PRECISIONS = ("bf16", "fp16", "fp8", "tf32", "fp32")
ACT_BYTES = {"bf16": 2, "fp16": 2, "fp8": 2, "tf32": 4, "fp32": 4}   # activations stay 16-bit under fp8
# Candidate output tiles (rows, cols, relative efficiency of the tile itself): big tiles are
# the most efficient, small ones cut quantisation waste; the library picks the best fit.
TILES = ((256, 128, 1.0), (128, 256, 1.0), (128, 128, 0.92), (128, 64, 0.8), (64, 64, 0.62))
K_HALF = 64          # inner dimension at which a GEMM loses half its rate to prologue/epilogue


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

    def as_dict(self) -> dict:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


def make_layout(model: ModelConfig, gpus: int, *, tp=1, pp=1, dp=None, vpp=1, ep=1, micro_batch=1,
                global_batch=None, recompute="none", sequence_parallel=False, zero=0,
                precision="bf16") -> Layout:
    """Validate a layout against the model and the GPU count; errors name the flag."""
    for flag, v in (("--tp", tp), ("--pp", pp), ("--vpp", vpp), ("--ep", ep), ("--micro-batch", micro_batch)):
        if not isinstance(v, int) or v < 1:
            raise GpubenchError(f"{flag} {v} must be a positive whole number")
    if gpus % (tp * pp):
        raise GpubenchError(f"--tp {tp} × --pp {pp} = {tp * pp} does not divide --gpus {gpus}")
    dp_derived = gpus // (tp * pp)
    if dp is None:
        dp = dp_derived
    elif dp != dp_derived:
        raise GpubenchError(f"--tp {tp} × --pp {pp} × --dp {dp} = {tp * pp * dp} is not --gpus {gpus}")
    if model.heads % tp:
        raise GpubenchError(f"--tp {tp} does not divide the model's {model.heads} heads")
    if pp > model.layers:
        raise GpubenchError(f"--pp {pp} is more than the model's {model.layers} layers")
    if vpp > 1 and (pp == 1 or pp * vpp > model.layers):
        raise GpubenchError(f"--vpp {vpp} needs --pp > 1 and at least one of the {model.layers} "
                            f"layers per virtual stage (pp·vpp ≤ layers)")
    if ep > 1 and not model.is_moe:
        raise GpubenchError("--ep needs a mixture-of-experts model")
    if model.is_moe and (model.experts % ep or dp % ep):
        raise GpubenchError(f"--ep {ep} must divide the {model.experts} experts and dp {dp}")
    if global_batch is None:
        global_batch = micro_batch * dp
    if global_batch <= 0 or global_batch % (micro_batch * dp):
        raise GpubenchError(f"--global-batch {global_batch} is not a multiple of --micro-batch "
                            f"{micro_batch} × dp {dp} = {micro_batch * dp}")
    if recompute not in RECOMPUTE:
        raise GpubenchError(f"--recompute {recompute!r}: use none, selective or full")
    if zero not in (0, 1, 2, 3):
        raise GpubenchError(f"--zero {zero}: use 0, 1, 2 or 3")
    if precision not in PRECISIONS:
        raise GpubenchError(f"--precision {precision!r}: use one of {', '.join(PRECISIONS)}")
    return Layout(tp, pp, dp, vpp, ep, micro_batch, global_batch, recompute,
                  bool(sequence_parallel and tp > 1), zero, precision)


# ---------------------------------------------------------------- kernels

def wave_efficiency(m: int, n: int, batch: int, sms: int) -> float:
    """Best share of the GPU a GEMM's output tiles keep busy (quantisation of tiles and waves)."""
    best = 0.0
    for tm, tn, tile_eff in TILES:
        tiles = math.ceil(m / tm) * math.ceil(n / tn) * batch
        waves = math.ceil(tiles / sms)
        useful = (m * n * batch) / (tiles * tm * tn)
        best = max(best, tile_eff * useful * tiles / (waves * sms))
    return best


@lru_cache(maxsize=65536)
def gemm_time(m: int, n: int, k: int, batch: int, peak_flops: float, ceiling: float,
              mem_bytes_per_s: float, elem_bytes: float, sms: int) -> float:
    if m <= 0 or n <= 0 or k <= 0:
        return 0.0
    flops = 2.0 * m * n * k * batch
    compute = flops / (peak_flops * ceiling * wave_efficiency(m, n, batch, sms) * (k / (k + K_HALF)))
    memory = (m * k + k * n + m * n) * batch * elem_bytes / mem_bytes_per_s
    return max(compute, memory)


def ring_factor(op: str, n: int) -> float:
    """Bytes each rank sends per byte of payload (nccl-tests' bus-bandwidth factors)."""
    if n <= 1:
        return 0.0
    return 2.0 * (n - 1) / n if op == "all_reduce" else (n - 1) / n


# ---------------------------------------------------------------- the model

@dataclass
class StepModel:
    model: ModelConfig
    cluster: Cluster
    layout: Layout
    profile: Profile
    cache: dict | None = None           # shared across layouts by the planner

    def __post_init__(self):
        gpu = self.cluster.gpu
        self.peak_key = self.layout.precision          # precision names are the table's peak keys
        peak = gpu.peak(self.peak_key)
        if peak is None:
            hint = " (try --precision fp16)" if self.peak_key == "bf16" and gpu.peak("fp16") else ""
            raise GpubenchError(f"--precision {self.layout.precision}: {gpu.key} has no dense "
                                f"{self.peak_key} rate in the hardware table{hint}")
        self.peak = peak * 1e12
        self.bf16_peak = (gpu.peak("bf16") or gpu.peak("fp16") or peak) * 1e12
        self.mem_bw = gpu.mem_bandwidth_gbps * 1e9 * self.profile.mem_bw_efficiency
        self.ceiling = self.profile.ceiling(self.layout.precision)
        self.act_bytes = ACT_BYTES[self.layout.precision]
        self.elem_bytes = 1.0 if self.layout.precision == "fp8" else self.act_bytes
        self.sms = self.cluster.link.multiprocessors
        link = self.cluster.link
        self.intra_bw = link.intra_node_gbps * 1e9 * self.profile.intra_node_efficiency
        self.inter_bw = link.inter_node_gbps * 1e9 * self.profile.inter_node_efficiency

    # -- helpers
    def gemm(self, m, n, k, batch=1, precision_ceiling=None, peak=None) -> float:
        return gemm_time(int(m), int(n), int(k), int(batch), peak or self.peak,
                         precision_ceiling or self.ceiling, self.mem_bw, self.elem_bytes, self.sms)

    def tp_bw(self) -> float:
        return self.intra_bw if self.layout.tp <= self.cluster.link.gpus_per_node else self.inter_bw

    def collective(self, op: str, payload_bytes: float, n: int, bw: float) -> float:
        return ring_factor(op, n) * payload_bytes / bw if n > 1 else 0.0

    # -- one layer, one micro-batch, one GPU
    def layer_times(self, moe: bool) -> dict[str, float]:
        L = self.layout
        if self.cache is None:
            return self._layer_times(moe)
        key = (moe, L.tp, L.micro_batch, L.sequence_parallel, L.recompute, L.ep, L.precision)
        if key not in self.cache:
            self.cache[key] = self._layer_times(moe)
        return self.cache[key]

    def _layer_times(self, moe: bool) -> dict[str, float]:
        m, L = self.model, self.layout
        tp, b, s = L.tp, L.micro_batch, m.seq_len
        t = b * s
        gemm_fwd = gemm_bwd = 0.0
        kernels = 0

        def linear(rows, n, k, count=1):
            # Forward Y = X·Wᵀ; backward dX = dY·W (inner n) and dW = dYᵀ·X (inner = rows):
            # three GEMMs of different shapes, so different wave and tile efficiency.
            nonlocal gemm_fwd, gemm_bwd
            gemm_fwd += count * self.gemm(rows, n, k)
            gemm_bwd += count * (self.gemm(rows, k, n) + self.gemm(n, k, rows))

        for _, n, k, par in m.attention_gemms():
            n2, k2 = (n // tp, k) if par == "col" else (n, k // tp) if par == "row" else (n, k)
            linear(t, n2, k2)
            kernels += 1
        a2a = 0.0
        if moe:
            experts_local = m.experts / L.ep
            tokens_per_expert = t * m.top_k * L.ep / m.experts / tp
            for _, n, k, par in m.mlp_gemms(m.expert_ffn):
                linear(max(1, round(tokens_per_expert)), n, k, count=experts_local)
            if m.shared_experts:
                for _, n, k, par in m.mlp_gemms(m.expert_ffn * m.shared_experts):
                    n2, k2 = (n // tp, k) if par == "col" else (n, k // tp)
                    linear(t, n2, k2)
            linear(t, m.experts, m.hidden)       # router
            kernels += 3 + 2 * int(experts_local)
            if L.ep > 1:
                # dispatch and combine: every routed token's hidden state crosses the EP group
                bw = self.intra_bw if L.ep * tp <= self.cluster.link.gpus_per_node else self.inter_bw
                payload = t * m.top_k * m.hidden * (1 if L.precision == "fp8" else 2) / tp
                a2a = 2 * self.collective("all_to_all", payload, L.ep, bw)
        else:
            for _, n, k, par in m.mlp_gemms(m.ffn):
                n2, k2 = (n // tp, k) if par == "col" else (n, k // tp)
                linear(t, n2, k2)
                kernels += 1

        heads = m.heads // tp
        qk, v = m.attn_qk_dim, m.attn_v_dim
        attn_flops_full = 2.0 * b * heads * s * s * (qk + v)
        if self.profile.attention == "flash":
            # Causal masking lets a fused kernel skip the upper triangle: half the work.
            attn_fwd = 0.5 * attn_flops_full / (self.bf16_peak * self.profile.attention_fwd_efficiency)
            attn_bwd = 2.5 * 0.5 * attn_flops_full / (self.bf16_peak * self.profile.attention_bwd_efficiency)
            softmax_fwd = 0.0
            kernels += 1
        else:
            attn_fwd = (self.gemm(s, s, qk, b * heads, peak=self.bf16_peak)
                        + self.gemm(s, v, s, b * heads, peak=self.bf16_peak))
            attn_bwd = 2 * attn_fwd
            # Fused scale-mask-softmax (read, write) and dropout (read, write, mask) over s² scores.
            softmax_fwd = b * heads * s * s * (2 * self.act_bytes + 2 * self.act_bytes + 1) / self.mem_bw
            attn_fwd += softmax_fwd
            attn_bwd += 2 * softmax_fwd
            kernels += 4

        # Norms, residuals and dropout run on full-width activations unless sequence-parallel.
        h, f = m.hidden, (m.expert_ffn * m.top_k if moe else m.ffn)
        width = h / tp if L.sequence_parallel else h
        act_width = (3 if m.mlp == "swiglu" else 2) * f / tp
        elem_fwd = t * (22 * width + 2 * act_width) * self.act_bytes / 2 / self.mem_bw
        kernels += 8

        payload = t * h * self.act_bytes
        tp_comm_fwd = 2 * self.collective("all_reduce", payload, tp, self.tp_bw()) * (1 - self.profile.tp_overlap)
        gap = self.profile.kernel_gap_s
        fwd = gemm_fwd + attn_fwd + elem_fwd + tp_comm_fwd + a2a + kernels * gap
        bwd = gemm_bwd + attn_bwd + 2 * elem_fwd + tp_comm_fwd + a2a + 2 * kernels * gap
        recompute = {"none": 0.0, "selective": attn_fwd, "full": fwd}[L.recompute]
        return {"fwd": fwd, "bwd": bwd, "recompute": recompute, "gemm": gemm_fwd + gemm_bwd,
                "attention": attn_fwd + attn_bwd, "elementwise": 3 * elem_fwd,
                "tp_comm": 2 * tp_comm_fwd + (tp_comm_fwd if L.recompute == "full" else 0.0),
                "ep_comm": 2 * a2a, "gaps": 3 * kernels * gap}

    def head_time(self) -> float:
        """LM head forward and backward (3 GEMMs) plus the cross-entropy, on the last stage."""
        m, L = self.model, self.layout
        t = L.micro_batch * m.seq_len
        n = m.vocab // L.tp
        gemms = self.gemm(t, n, m.hidden) + self.gemm(t, m.hidden, n) + self.gemm(n, m.hidden, t)
        softmax = 3 * t * (m.vocab / L.tp) * 4 / self.mem_bw
        return gemms + softmax

    def estimate(self) -> dict:
        m, L, c = self.model, self.layout, self.cluster
        micro_batches = L.global_batch // (L.micro_batch * L.dp)
        stage_layers = math.ceil(m.layers / L.pp)
        parts = {"dense": self.layer_times(False)}
        if m.is_moe:
            parts["moe"] = self.layer_times(True)
        # The slowest stage sets the pace: the one holding the most MoE layers (or dense ones).
        n_moe = min(stage_layers, m.moe_layers)
        n_dense = stage_layers - n_moe
        per_layer = {}
        for key in parts["dense"]:
            per_layer[key] = n_dense * parts["dense"][key] + (n_moe * parts["moe"][key] if m.is_moe else 0)
        head = self.head_time()
        # Activations cross each stage boundary forward and back; scatter/gather sends 1/tp of them.
        t = L.micro_batch * m.seq_len
        p2p_bytes = t * m.hidden * self.act_bytes / L.tp
        pp_comm = (2 * L.vpp * p2p_bytes / self.inter_bw) if L.pp > 1 else 0.0
        mb_time = per_layer["fwd"] + per_layer["bwd"] + per_layer["recompute"] + pp_comm
        # Interleaving splits each stage into vpp chunks; the head sits on the last chunk.
        mb_time_last = mb_time + head
        slot = max(mb_time, mb_time_last) if L.pp > 1 else mb_time_last
        bubble = (L.pp - 1) / L.vpp * slot
        pipeline = micro_batches * slot + bubble

        # Data parallel: the gradient reduction after the last micro-batch's backward.
        params_stage = self.params_per_gpu()
        grad_bytes = 4 if L.precision in ("bf16", "fp8") else 2
        ranks_per_node = max(1, min(L.dp, c.link.gpus_per_node // L.tp))
        dp_bw = self.intra_bw if L.dp <= ranks_per_node else min(self.intra_bw, self.inter_bw * ranks_per_node)
        dp_comm = self.collective("all_reduce", params_stage * grad_bytes, L.dp, dp_bw)
        if L.zero == 3:
            # Parameters gathered for forward and backward of every micro-batch (overlapped with compute).
            gather = 2 * micro_batches * self.collective("all_gather", params_stage * self.act_bytes, L.dp, dp_bw)
            dp_comm += max(0.0, gather - 0.9 * pipeline)
        hideable = self.profile.dp_overlap * (per_layer["bwd"] if L.pp == 1 else 0.0)
        dp_exposed = max(0.0, dp_comm - hideable)

        # Adam: read/write fp32 master weights, moments and gradients (about 30 bytes a parameter).
        opt_params = params_stage / (L.dp if L.zero >= 1 else 1)
        optimizer = opt_params * 30 / self.mem_bw

        step = pipeline + dp_exposed + optimizer
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
            "kernel_gaps_s": slots * per_layer["gaps"],
            "lm_head_s": slots * head,
            "recompute_s": slots * per_layer["recompute"],
            "tp_comm_s": slots * per_layer["tp_comm"],
            "ep_comm_s": slots * per_layer["ep_comm"],
            "pp_comm_s": slots * pp_comm,
            "pipeline_bubble_s": bubble,
            "dp_comm_exposed_s": dp_exposed,
            "optimizer_s": optimizer,
        }
        return {
            "step_time_s": step,
            "tokens_per_step": tokens,
            "tokens_per_s": tokens_per_s,
            "model_tflops_per_gpu": model_tflops,
            "hardware_tflops_per_gpu": hw_tflops,
            "mfu": model_tflops * 1e12 / self.peak,
            "hfu": hw_tflops * 1e12 / self.peak,
            "peak_tflops": self.peak / 1e12,
            "micro_batches": micro_batches,
            "breakdown": breakdown,
        }

    def params_per_gpu(self) -> float:
        m, L = self.model, self.layout
        per_layer_dense = m.layer_params(False, active=False) / L.tp
        if m.is_moe:
            moe = m.layer_params(True, active=False)
            experts = m.experts * m.mlp_params(m.expert_ffn)
            per_layer_moe = (moe - experts) / L.tp + experts / (L.ep * L.tp)
        else:
            per_layer_moe = 0.0
        stage_layers = math.ceil(m.layers / L.pp)
        n_moe = min(stage_layers, m.moe_layers)
        head = m.hidden * m.vocab / L.tp
        return (stage_layers - n_moe) * per_layer_dense + n_moe * per_layer_moe + head
