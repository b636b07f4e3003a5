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
