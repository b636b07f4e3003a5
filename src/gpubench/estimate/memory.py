"""Memory per GPU: model states, activations in flight, logits, working buffers.

**Model states** (bytes per parameter, by stack and ZeRO stage; d = the data-parallel group):

* Megatron-LM/NeMo (Megatron-LM docs, distributed optimizer): 16-bit weights (2) and fp32
  gradient buffers (4) on every rank, fp32 master weights and Adam moments (12) sharded by the
  distributed optimizer: 18 bytes, or 6 + 12/d with ``--zero 1``;
* DeepSpeed (Rajbhandari et al. 2020, ZeRO): 2 + 2 + 12, partitioned by stage: optimizer state
  (1), + gradients (2), + weights (3): 16, 4 + 12/d, 2 + 14/d, 16/d;
* PyTorch FSDP/DDP with mixed precision: fp32 parameters (4), fp32 gradients (4), Adam moments
  (8), sharded by stage; FSDP also holds the 16-bit gathered parameters of the layers in
  flight (the current and the prefetched one), and with pipelining keeps a stage's gathered
  parameters for the whole step;
* FP8: Megatron-Core's FP8 recipes keep the parameters themselves in 8 bits (``fp8_param_gather``,
  NVIDIA's performance recipes' setting; the fp32 master copy is the optimizer's), 1 byte instead
  of 2; elsewhere (torchao, Transformer Engine without fp8 parameters) the 16-bit weight stays
  and an 8-bit copy is cached across a step's micro-batches (+1).

**Activations** per layer per micro-batch, per token, counted tensor by tensor from what the
backward pass needs (for GPT-3 blocks this is Korthikanti et al. 2022's 34·s·b·h bytes, and
s·b·h·(10 + 24/t) under tensor parallelism without sequence parallelism): norm inputs and
outputs, Q/K/V, the attention output, the MLP's input, hidden and activated widths, dropout
masks for models that use dropout (GPT-style), and the 5·a·s² softmax/dropout scores of unfused
attention. Tensor parallelism splits the widths it splits (sequence parallelism the rest);
context parallelism splits the tokens. Recomputation keeps: full — each layer's input only,
plus one layer rebuilt at a time; selective — no s² scores (unfused attention), no norm outputs
and activated MLP width (Megatron-Core with a fused attention kernel; with multi-head latent
attention also the latents instead of the per-head Q, K, V), or about half the tensors
(torchtitan's op-level policy saves every other matmul). FP8 stores the GEMM inputs it casts in
8 bits.

**In flight**: the first pipeline stage holds p micro-batches of its L/p layers (L layers'
worth), × (1 + (p−1)/(p·v)) with v interleaved chunks (Korthikanti et al. 2022, §4.2.3); never
more micro-batches than a step has. The last stage adds the logits (16-bit, plus fp32 for the
cross-entropy and its gradient).

**Overheads**: a stated allocator factor (PyTorch's caching allocator fragments; 3% of what is
allocated) and a reserve for the CUDA context, NCCL buffers and library workspaces (2 GiB).
"""

from __future__ import annotations

from gpubench.estimate.perf import StepModel

# Outside PyTorch's allocator: the CUDA context (~0.5 GiB), NCCL's buffers (~1 GiB with a few
# communicators), cuBLAS/Transformer Engine workspaces (~0.5 GiB).
RESERVED_BYTES = 2 * 2**30
ALLOCATOR_OVERHEAD = 0.03          # caching-allocator fragmentation on top of what is allocated (a stated factor)


def state_bytes(sm: StepModel) -> dict[str, float]:
    """Weights, gradients and optimizer state per GPU, in bytes."""
    L, stack = sm.layout, sm.stack.name.split("+")[0]
    P = sm.params_per_gpu()
    d = sm.dp_group.n
    z = L.zero
    fp8_extra = 1.0 if L.precision == "fp8" else 0.0
    w16 = sm.act_bytes
    if stack in ("megatron", "nemo", "deepspeed"):
        if stack == "deepspeed":
            weights, grads = P * (w16 + fp8_extra), P * 2
        else:
            weights, grads = P * (1.0 if L.precision == "fp8" else w16), P * 4
        opt = P * 12
        if z >= 1:
            opt /= d
        if z >= 2:
            grads /= d
        if z >= 3:
            weights /= d
        return {"weights": weights, "gradients": grads, "optimizer": opt}
    # PyTorch DDP / FSDP: the fp32 parameter is the master copy.
    master, grads, opt = P * 4, P * 4, P * 8
    if z >= 1:
        opt /= d
        master /= d
    if z >= 2:
        grads /= d
    gathered = 0.0
    if z >= 2:
        n_dense, n_moe = sm.stage_layers()
        layers = max(1, n_dense + n_moe)
        # The 16-bit gathered parameters: two layers in flight, or the whole stage under
        # pipelining (not resharded between micro-batches) or ZeRO-2 (kept after the forward).
        whole = L.pp > 1 or z == 2
        gathered = P * w16 * (1.0 if whole else min(1.0, 2.0 / layers))
        gathered += P * w16 * min(1.0, 1.0 / layers)         # a layer's unsharded gradients before reduce-scatter
    return {"weights": master + gathered + P * fp8_extra, "gradients": grads, "optimizer": opt}


def activation_bytes_per_token(sm: StepModel, moe: bool) -> float:
    """Bytes one layer keeps for the backward, per token of a micro-batch, on one GPU."""
    m, L = sm.model, sm.layout
    t = L.tp
    a = 2.0                                   # 16-bit activations
    low = 1.0 if L.precision == "fp8" else a  # GEMM inputs stored after an fp8 cast
    sp = t if L.sequence_parallel else 1
    h = m.hidden
    gelu_model = m.mlp == "gelu"
    q = m.heads * m.attn_qk_dim
    kv = (m.n_kv_heads if m.mla is None else m.heads) * (m.attn_qk_dim + m.attn_v_dim)
    o = m.heads * m.attn_v_dim
    if moe:
        f_eff = (m.expert_ffn * m.top_k * L.moe_imbalance + m.shared_ffn)
        routed_inputs = low * m.top_k * h / t   # tokens permuted to their experts (the up-projection's input)
    else:
        f_eff, routed_inputs = m.ffn, 0.0
    up = 2 * f_eff if m.mlp == "swiglu" else f_eff
    norm_in = 2 * a * h / sp
    norm_out = 2 * low * h / sp
    qkv = a * (q + kv) / t
    attn_out = low * o / t
    mlp_hidden = a * up / t
    mlp_act = low * f_eff / t
    masks = 2 * h / sp if gelu_model else 0.0      # hidden dropout masks (1 byte each)
    scores = 0.0
    if sm.attention_family == "unfused":
        scores = 5.0 * (m.heads / t) * m.seq_len   # softmax out, dropout mask and out over s²
    per_token = norm_in + norm_out + qkv + attn_out + mlp_hidden + mlp_act + masks + scores + routed_inputs
    if L.recompute == "selective":
        if sm.stack.selective == "op_sac":
            per_token = 0.5 * per_token
        elif sm.attention_family == "unfused":
            per_token -= scores
        else:
            per_token -= norm_out + mlp_act
            if m.mla is not None:
                # Megatron-Core's "mla_up_proj" module (DeepSeek-V3 does the same): keep the
                # compressed latents, rebuild the per-head Q, K, V from them in the backward.
                latents = a * (m.mla.q_lora_rank + m.mla.kv_lora_rank + m.mla.qk_rope_dim) / t
                per_token -= qkv - latents
    return per_token


def memory_estimate(sm: StepModel) -> dict:
    m, L, c = sm.model, sm.layout, sm.cluster
    states = state_bytes(sm)
    tokens = sm.tokens_per_micro_batch
    # When the stages cannot be even, frameworks give the first stage (which also holds the
    # embedding and the most micro-batches) the fewer layers.
    n_dense, n_moe = sm.stage_layers(first=True)
    per_mb_full = tokens * (n_dense * activation_bytes_per_token(sm, False)
                            + (n_moe * activation_bytes_per_token(sm, True) if n_moe else 0.0))
    stage_layers = max(1, n_dense + n_moe)
    if L.recompute == "full":
        layer_input = 2.0 * m.hidden / (L.tp if L.sequence_parallel else 1)
        per_mb = tokens * layer_input * stage_layers
        working = per_mb_full / stage_layers          # one layer rebuilt at a time
    else:
        per_mb, working = per_mb_full, 0.0
    micro_batches = L.global_batch // (L.micro_batch * L.dp)
    in_flight = min(L.pp, micro_batches) if L.pp > 1 else 1
    if L.pp > 1 and L.vpp > 1:
        in_flight = min(micro_batches, L.pp * (1 + (L.pp - 1) / (L.pp * L.vpp)))
    stored = per_mb * in_flight
    logit_bytes = 6 if sm.stack.fused_elementwise else 10
    logits = tokens * (m.vocab / L.tp) * logit_bytes
    # The loss's logits live at the turn from forward to backward, a rebuilt layer later: the
    # peak takes the larger of the two on top of what is stored. Pipelined, the first stage
    # holds the most micro-batches, the last stage the logits with one micro-batch.
    if L.pp > 1:
        first, last = stored + working, per_mb + max(working, logits)
        activations_counted = max(first, per_mb + working)
        logits_counted = max(0.0, last - activations_counted)
    else:
        activations_counted = stored + working
        logits_counted = max(0.0, logits - working)
    allocated = sum(states.values()) + activations_counted + logits_counted
    overhead = ALLOCATOR_OVERHEAD * allocated
    total = allocated + overhead + RESERVED_BYTES
    capacity = c.gpu.memory_gb * 1e9
    return {
        "weights_gb": states["weights"] / 1e9, "gradients_gb": states["gradients"] / 1e9,
        "optimizer_gb": states["optimizer"] / 1e9, "activations_gb": activations_counted / 1e9,
        "logits_gb": logits_counted / 1e9, "allocator_overhead_gb": overhead / 1e9,
        "reserved_gb": RESERVED_BYTES / 1e9, "total_gb": total / 1e9,
        "capacity_gb": capacity / 1e9, "fits": total <= capacity,
        "micro_batches_in_flight": in_flight,
    }


def memory_floor_ok(sm: StepModel) -> bool:
    """Cheap necessary condition for the planner: the model states alone fit."""
    return sum(state_bytes(sm).values()) <= sm.cluster.gpu.memory_gb * 1e9


__all__ = ["memory_estimate", "state_bytes", "activation_bytes_per_token", "RESERVED_BYTES",
           "ALLOCATOR_OVERHEAD", "memory_floor_ok"]
