"""Memory per GPU: weights, gradients, optimizer state and activations.

Mixed-precision Adam keeps 16-bit weights (2 bytes), fp32 gradients (4), an fp32
master copy and two fp32 moments (12): 18 bytes per parameter, the model states
ZeRO partitions (stage 1: optimizer state, 2: + gradients, 3: + weights).
Activations per layer follow Korthikanti et al. 2022 ("Reducing Activation
Recomputation in Large Transformer Models"): s·b·h·(34 + 5·a·s/h) bytes with
tensor parallelism dividing what it splits; selective recomputation or flash
attention drops the 5·a·s/h score term; full recomputation keeps only each
layer's input. The first pipeline stage holds the most: p micro-batches in flight
of L/p layers each, that is L layers' worth (× (1 + (p−1)/(p·v)) interleaved).
"""

from __future__ import annotations

import math

from gpubench.estimate.perf import StepModel

RESERVED_BYTES = 3 * 2**30      # CUDA context, NCCL buffers, allocator fragmentation


def memory_estimate(sm: StepModel) -> dict:
    m, L, c = sm.model, sm.layout, sm.cluster
    params = sm.params_per_gpu()
    weight_bytes = 1 if L.precision == "fp8" else sm.act_bytes
    # fp8 training keeps a 16-bit copy for the backward GEMMs besides the fp8 one.
    weights = params * (weight_bytes + (2 if L.precision == "fp8" else 0))
    grads = params * 4
    optimizer = params * 12
    if L.zero >= 1:
        optimizer /= L.dp
    if L.zero >= 2:
        grads /= L.dp
    if L.zero >= 3:
        weights /= L.dp

    s, b, h, t = m.seq_len, L.micro_batch, m.hidden, L.tp
    a = m.heads
    ffn_ratio = (m.expert_ffn * m.top_k if m.is_moe else m.ffn) / h
    mlp_units = (3 + 6 * ffn_ratio) if m.mlp == "swiglu" else (3 + 4 * ffn_ratio)
    per_token_units = 11 + mlp_units + 4                  # attention, MLP, norms (34 for GPT)
    split = per_token_units / t if L.sequence_parallel else (10 + (per_token_units - 10) / t)
    scores = 0.0 if (L.recompute != "none" or sm.profile.attention == "flash") else 5 * a * s / (h * t)
    per_layer = s * b * h * (split + scores)
    if L.recompute == "full":
        per_layer_stored = 2 * s * b * h / (t if L.sequence_parallel else 1)
        # One layer is rebuilt at a time during the backward pass.
        working = per_layer
    else:
        per_layer_stored, working = per_layer, 0.0
    in_flight_layers = m.layers * (1 + (L.pp - 1) / (L.pp * L.vpp)) if L.pp > 1 else m.layers
    in_flight_layers = min(in_flight_layers, math.ceil(m.layers / L.pp) * L.global_batch // (L.micro_batch * L.dp))
    activations = per_layer_stored * in_flight_layers + working
    logits = s * b * (m.vocab / t) * 4 * 2                # fp32 logits and their gradient, last stage
    total = weights + grads + optimizer + activations + logits + RESERVED_BYTES
    capacity = c.gpu.memory_gb * 1e9
    return {
        "weights_gb": weights / 1e9, "gradients_gb": grads / 1e9, "optimizer_gb": optimizer / 1e9,
        "activations_gb": activations / 1e9, "logits_gb": logits / 1e9,
        "reserved_gb": RESERVED_BYTES / 1e9, "total_gb": total / 1e9,
        "capacity_gb": capacity / 1e9, "fits": total <= capacity,
    }
