"""Memory per GPU held to published figures: ZeRO's bytes per parameter, Megatron's
distributed optimizer, Korthikanti et al.'s activation formulas, and layouts that must (not) fit.

The published figures are copied here with their sources (``../shared`` is not shipped)."""

import pytest

from gpubench.estimate.cluster import make_cluster
from gpubench.estimate.memory import activation_bytes_per_token, memory_estimate, state_bytes
from gpubench.estimate.models import ModelConfig, get_model
from gpubench.estimate.perf import StepModel, make_layout
from gpubench.estimate.profile import default_profile

# GPT-3-style block with dropout (Korthikanti et al. 2022's model): h, heads, sequence.
GPT = ModelConfig(name="gpt", layers=4, hidden=4096, heads=32, seq_len=2048, vocab=51200, tied_embeddings=True)


def step_model(model, gpu, gpus, **layout):
    cluster = make_cluster(gpu, gpus)
    lay = make_layout(model, gpus, **layout)
    return StepModel(model, cluster, lay, default_profile(cluster.gpu.key, cluster.gpu.arch))


# ---- model states -------------------------------------------------------------------

@pytest.mark.parametrize("zero, per_param", [
    # Rajbhandari et al. 2020 (ZeRO), Fig. 1: fp16 Adam, K = 12, N_d = 64:
    # baseline (2 + 2 + K)Ψ; P_os 2Ψ + 2Ψ + KΨ/N_d; P_os+g 2Ψ + (2 + K)Ψ/N_d; P_os+g+p (2 + 2 + K)Ψ/N_d
    (0, 16.0), (1, 4 + 12 / 64), (2, 2 + 14 / 64), (3, 16 / 64),
])
def test_zero_bytes_per_parameter_are_the_papers(zero, per_param):
    sm = step_model(GPT, "a100-80gb", 64, zero=zero, precision="fp16", framework="deepspeed")
    states = state_bytes(sm)
    assert sum(states.values()) / sm.params_per_gpu() == pytest.approx(per_param, rel=1e-9)


def test_zero_paper_figure_7_5b_on_64_gpus():
    """ZeRO Fig. 1: Ψ = 7.5B on 64 GPUs: 120 GB, 31.4 GB, 16.6 GB, 1.9 GB per device."""
    psi = 7.5e9
    for zero, gb in ((0, 120), (1, 31.4), (2, 16.6), (3, 1.9)):
        sm = step_model(GPT, "a100-80gb", 64, zero=zero, precision="fp16", framework="deepspeed")
        per_param = sum(state_bytes(sm).values()) / sm.params_per_gpu()
        assert per_param * psi / 1e9 == pytest.approx(gb, abs=0.06)


@pytest.mark.parametrize("zero, per_param", [(0, 18.0), (1, 6 + 12 / 32)])
def test_megatron_distributed_optimizer_bytes(zero, per_param):
    """Megatron-LM docs (distributed optimizer): bf16 parameters with fp32 gradients take
    18 bytes a parameter, 6 + 12/d with the distributed optimizer."""
    sm = step_model(GPT, "h100", 32, zero=zero, framework="megatron")
    assert sum(state_bytes(sm).values()) / sm.params_per_gpu() == pytest.approx(per_param, rel=1e-9)


def test_fsdp_full_shard_keeps_fp32_master_and_moments_sharded():
    sm = step_model(GPT, "h100", 8, zero=3, framework="fsdp")
    st = state_bytes(sm)
    P = sm.params_per_gpu()
    assert st["optimizer"] == pytest.approx(8 * P / 8)
    assert st["gradients"] == pytest.approx(4 * P / 8)
    assert st["weights"] > 4 * P / 8          # plus gathered layers in flight


# ---- activations (Korthikanti et al. 2022, §4) -------------------------------------------

def _per_token(sm):
    return activation_bytes_per_token(sm, False)


def test_activations_34_sbh_plus_5_as2b():
    """No parallelism, no recomputation, attention unfused: s·b·h·(34 + 5·a·s/h) per layer."""
    sm = step_model(GPT, "a100-80gb", 1, attention="unfused")
    h, a, s = GPT.hidden, GPT.heads, GPT.seq_len
    assert _per_token(sm) == pytest.approx(34 * h + 5 * a * s, rel=1e-9)


def test_tensor_parallel_without_and_with_sequence_parallel():
    h, a, s, t = GPT.hidden, GPT.heads, GPT.seq_len, 8
    tp = step_model(GPT, "a100-80gb", 8, tp=8, attention="unfused")
    assert _per_token(tp) == pytest.approx(h * (10 + 24 / t) + 5 * a * s / t, rel=1e-9)
    sp = step_model(GPT, "a100-80gb", 8, tp=8, sequence_parallel=True, attention="unfused")
    assert _per_token(sp) == pytest.approx(h * 34 / t + 5 * a * s / t, rel=1e-9)
    sel = step_model(GPT, "a100-80gb", 8, tp=8, sequence_parallel=True, recompute="selective", attention="unfused")
    assert _per_token(sel) == pytest.approx(h * 34 / t, rel=1e-9)       # the s² terms are gone


def test_full_recompute_keeps_layer_inputs():
    """Full recomputation stores 2·s·b·h a layer (its input), plus one layer rebuilt at a time."""
    sm = step_model(GPT, "a100-80gb", 1, recompute="full", attention="unfused", micro_batch=2)
    mem = memory_estimate(sm)
    tokens = 2 * GPT.seq_len
    stored = 2 * GPT.hidden * tokens * GPT.layers
    one_layer = _per_token(sm) * tokens
    assert mem["activations_gb"] * 1e9 == pytest.approx(stored + one_layer, rel=1e-9)


def test_selective_recompute_saves_memory_with_flash_attention():
    m = get_model("llama3.1-70b")
    none = step_model(m, "h100", 64, tp=8, pp=8, sequence_parallel=True, global_batch=64)
    sel = step_model(m, "h100", 64, tp=8, pp=8, sequence_parallel=True, global_batch=64, recompute="selective")
    assert sel.attention_family != "unfused"
    assert memory_estimate(sel)["activations_gb"] < 0.85 * memory_estimate(none)["activations_gb"]


def test_interleaving_holds_more_micro_batches_on_the_first_stage():
    """Korthikanti §4.2.3: × (1 + (p−1)/(p·v)) with v interleaved chunks."""
    m = get_model("gpt3-175b")
    base = dict(tp=8, pp=8, sequence_parallel=True, global_batch=64)
    plain = memory_estimate(step_model(m, "a100-80gb", 64, **base))
    inter = memory_estimate(step_model(m, "a100-80gb", 64, vpp=4, **base))
    assert plain["micro_batches_in_flight"] == 8
    assert inter["micro_batches_in_flight"] == pytest.approx(8 * (1 + 7 / 32))


# ---- what fits --------------------------------------------------------------------------

def test_a_layout_that_cannot_fit():
    """175B on one DGX A100 with tensor parallelism alone: 175e9 × 18 bytes / 8 ≈ 393 GB a GPU."""
    sm = step_model(get_model("gpt3-175b"), "a100-80gb", 8, tp=8, global_batch=8)
    mem = memory_estimate(sm)
    assert not mem["fits"] and mem["total_gb"] > 350


def test_published_layouts_that_ran_fit():
    # Llama 3 405B, 8k context, 16,384 H100: tp8 cp1 pp16 dp128 (Dubey et al. 2024, Table 4),
    # gradients and optimizer state sharded over data parallelism (§3.3.2), weights kept whole.
    llama = step_model(get_model("llama3.1-405b"), "h100", 16384, tp=8, pp=16, sequence_parallel=True,
                       zero=2, global_batch=2048, framework="megatron")
    assert memory_estimate(llama)["fits"]
    # With unsharded fp32 gradient buffers (Megatron's distributed optimizer) it would not.
    dist_opt = step_model(get_model("llama3.1-405b"), "h100", 16384, tp=8, pp=16, sequence_parallel=True,
                          zero=1, global_batch=2048, framework="megatron")
    assert not memory_estimate(dist_opt)["fits"]
    # GPT-3 175B as Narayanan et al. 2021 ran it: tp8 pp8, full recomputation, 1024 A100 80GB.
    gpt3 = step_model(get_model("gpt3-175b"), "a100-80gb", 1024, tp=8, pp=8, recompute="full",
                      global_batch=1536, precision="fp16")
    assert memory_estimate(gpt3)["fits"]


def test_uneven_stages_give_the_first_stage_fewer_layers():
    sm = step_model(get_model("llama3.1-405b"), "h100", 16384, tp=8, pp=16, sequence_parallel=True,
                    global_batch=2048)
    assert sm.stage_layers() == (8, 0)             # the slowest stage sets the pace
    assert sm.stage_layers(first=True) == (7, 0)   # 126 = 7 + 14 × 8 + 7, as Llama 3 split it


# ---- the training step's own estimate (gpubench.gpt.memory) ---------------------------------------

def test_training_step_model_states_are_what_adamw_allocates():
    """Guards: the training step's model-state bytes per parameter changed (halved, it passed
    every fast test): the estimate's states must equal what a real step holds after one AdamW
    update of gpubench's own GPT: float32 weights, gradients and both moments, 16 bytes a
    parameter; FSDP shards them over the ranks and adds two blocks' gathered weights."""
    import torch

    from gpubench.gpt.config import get_size
    from gpubench.gpt.memory import estimate_step_bytes
    from gpubench.gpt.model import GPT

    cfg = get_size("tiny")
    torch.manual_seed(0)
    model = GPT(cfg)
    params = list(model.parameters())
    n = sum(p.numel() for p in params)
    assert n == cfg.params()
    opt = torch.optim.AdamW(params, lr=1e-3)
    x = torch.randint(0, cfg.vocab, (1, cfg.seq_len))
    model(x, x).backward()
    opt.step()
    held = sum(p.numel() * p.element_size() for p in params)
    held += sum(p.grad.numel() * p.grad.element_size() for p in params)
    # AdamW's per-parameter state (its moments: the shape of the parameter; not the step counter)
    held += sum(t.numel() * t.element_size() for p in params for t in opt.state[p].values()
                if torch.is_tensor(t) and t.shape == p.shape)
    assert held == 16 * n
    est = estimate_step_bytes(cfg, "bf16", "none", 1, cuda=False)
    assert est["states"] == held
    fsdp = estimate_step_bytes(cfg, "bf16", "none", 1, parallel="fsdp", world_size=4, cuda=False)
    assert fsdp["states"] == 16 * n / 4 + 2 * 4 * (cfg.block_matmul_params() + 2 * cfg.hidden)
    assert est["total"] == sum(v for k, v in est.items() if k != "total") and est["reserve"] == 0


# ---- logits, pipelines, recomputation under tensor parallelism, GQA, MoE, FP8 ----------------------

def test_logits_are_tokens_times_vocab_share_times_bytes():
    """Guards: the last stage's logits: tokens × vocab/tp × (16-bit logits + fp32 for the loss and
    its gradient: 6 bytes with a fused cross-entropy, 10 with an eager one)."""
    for framework, per in (("megatron", 6), ("fsdp", 10)):
        sm = step_model(GPT, "h100", 1, framework=framework, micro_batch=2)
        mem = memory_estimate(sm)
        logits = 2 * GPT.seq_len * GPT.vocab * per
        assert mem["logits_gb"] * 1e9 == pytest.approx(logits, rel=1e-12), framework
        tp = memory_estimate(step_model(GPT, "h100", 8, tp=8, framework=framework, micro_batch=2))
        assert tp["logits_gb"] * 1e9 == pytest.approx(logits / 8, rel=1e-12)


def test_micro_batches_in_flight_on_the_first_stage():
    """Guards: what the first pipeline stage holds: min(p, micro-batches) of them (1F1B), × (1 +
    (p−1)/(p·v)) interleaved, one without pipelining; the first stage's layers, not the slowest's."""
    m = get_model("llama2-7b")
    for pp, gb, want in ((2, 1, 1), (2, 8, 2), (4, 2, 2), (4, 64, 4), (1, 64, 1)):
        sm = step_model(m, "h100", 8 * pp, tp=8, pp=pp, global_batch=gb)
        assert memory_estimate(sm)["micro_batches_in_flight"] == want, (pp, gb)
    inter = step_model(m, "h100", 32, tp=8, pp=4, vpp=2, global_batch=64)
    assert memory_estimate(inter)["micro_batches_in_flight"] == pytest.approx(4 * (1 + 3 / 8))
    # 126 layers on 16 stages: the first stage holds 7, and its activations are counted, × 16 in flight.
    sm = step_model(get_model("llama3.1-405b"), "h100", 128, tp=8, pp=16, sequence_parallel=True,
                    global_batch=64, recompute="full")
    mem = memory_estimate(sm)
    tokens = sm.tokens_per_micro_batch
    stored = tokens * 2 * sm.model.hidden / 8 * 7 * 16
    working = tokens * activation_bytes_per_token(sm, False)
    assert mem["activations_gb"] * 1e9 == pytest.approx(stored + working, rel=1e-12)


def test_full_recompute_under_sequence_parallelism_keeps_a_tp_share_of_each_input():
    """Guards: full recomputation's stored layer inputs, 2·s·b·h/t a layer with sequence
    parallelism (2·s·b·h without), plus one layer rebuilt."""
    for sp in (True, False):
        sm = step_model(GPT, "a100-80gb", 8, tp=8, sequence_parallel=sp, recompute="full", attention="unfused")
        mem = memory_estimate(sm)
        tokens = GPT.seq_len
        stored = 2 * GPT.hidden / (8 if sp else 1) * tokens * GPT.layers
        assert mem["activations_gb"] * 1e9 == pytest.approx(stored + _per_token(sm) * tokens, rel=1e-12)


def test_grouped_query_attention_stores_only_its_kv_heads():
    """Guards: K and V counted per query head under GQA: 8 KV heads of 64 store an eighth of MHA's
    K and V (16-bit, split over tensor parallelism)."""
    m = get_model("llama2-70b")
    mha = m.with_(kv_heads=None, name="mha")
    d = m.hidden // m.heads
    a, b = (step_model(x, "h100", 8, tp=8, global_batch=8) for x in (m, mha))
    assert _per_token(b) - _per_token(a) == pytest.approx(2 * (m.heads - 8) * 2 * d / 8, rel=1e-12)


def test_moe_layers_store_the_routed_width():
    """Guards: an MoE layer's activations: the MLP widths are top-k experts' at the stated
    imbalance plus the shared experts' (SwiGLU: the up-projection twice, 16-bit; the activated
    width once), and the tokens permuted to their experts (top-k copies of the input)."""
    for name in ("mixtral-8x7b", "deepseek-v3"):
        m = get_model(name)
        sm = step_model(m, "h100", 64, tp=8, ep=8, global_batch=64)
        f_eff = m.expert_ffn * m.top_k * sm.layout.moe_imbalance + m.shared_ffn
        routed = 2 * m.top_k * m.hidden / 8
        diff = activation_bytes_per_token(sm, True) - activation_bytes_per_token(sm, False)
        assert diff == pytest.approx((2 * 2 + 2) * (f_eff - m.ffn) / 8 + routed, rel=1e-9), name


def test_fp8_stores_the_gemm_inputs_it_casts_in_one_byte():
    """Guards: FP8's activation saving: the norm outputs, the attention output and the activated
    MLP width (the GEMM inputs it casts) at 1 byte instead of 2; the rest stays 16-bit."""
    bf, f8 = (step_model(GPT, "h100", 1, precision=p) for p in ("bf16", "fp8"))
    h, t = GPT.hidden, 1
    assert _per_token(bf) - _per_token(f8) == pytest.approx(2 * h + h / t + GPT.ffn / t, rel=1e-12)


def test_selective_recompute_by_stack():
    """Guards: what selective recomputation keeps, stack by stack: torchtitan's op-level policy
    (fsdp) about half of every tensor; Megatron-Core with a fused attention kernel drops the norm
    outputs and the activated MLP width (16-bit: 2·2h/sp + 2f/t a token)."""
    m = get_model("llama3.1-8b")
    base = dict(tp=8, sequence_parallel=True, global_batch=8)
    none, sel = (step_model(m, "h100", 8, framework="fsdp", recompute=r, **base) for r in ("none", "selective"))
    assert _per_token(sel) == pytest.approx(0.5 * _per_token(none), rel=1e-12)
    none, sel = (step_model(m, "h100", 8, framework="megatron", recompute=r, **base) for r in ("none", "selective"))
    assert sel.attention_family != "unfused"
    assert _per_token(none) - _per_token(sel) == pytest.approx(2 * 2 * m.hidden / 8 + 2 * m.ffn / 8, rel=1e-12)


def test_moe_model_counts_its_dense_and_moe_layers():
    """Guards: an MoE model's activations taking its dense layers' figure for every layer (or its
    MoE layers' for the dense ones): DeepSeek-V3's first 3 layers are dense, the other 58 MoE."""
    m = get_model("deepseek-v3")
    sm = step_model(m, "h100", 64, tp=8, ep=8, global_batch=64)
    n_dense, n_moe = sm.stage_layers(first=True)
    assert (n_dense, n_moe) == (3, 58)
    tokens = sm.tokens_per_micro_batch
    want = tokens * (3 * activation_bytes_per_token(sm, False) + 58 * activation_bytes_per_token(sm, True))
    assert memory_estimate(sm)["activations_gb"] * 1e9 == pytest.approx(want, rel=1e-12)


def test_two_stage_pipeline_peaks_at_the_larger_stage():
    """Guards: a 2-stage pipeline's peak: the first stage holds two micro-batches, the last one
    and the logits; the logits count only beyond what the first stage already needs."""
    big_vocab = GPT.with_(vocab=256000, name="big-vocab")
    sm = step_model(big_vocab, "h100", 2, pp=2, global_batch=8, framework="megatron")
    mem = memory_estimate(sm)
    tokens = sm.tokens_per_micro_batch
    per_mb = tokens * 2 * activation_bytes_per_token(sm, False)      # 2 of the 4 layers a stage
    logits = tokens * big_vocab.vocab * 6
    assert mem["micro_batches_in_flight"] == 2
    assert mem["activations_gb"] * 1e9 == pytest.approx(2 * per_mb, rel=1e-12)
    assert mem["logits_gb"] * 1e9 == pytest.approx(logits - per_mb, rel=1e-12)
