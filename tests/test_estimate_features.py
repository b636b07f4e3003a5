"""What current models and runs need: head widths of their own, sliding windows, shared experts
and leading dense layers, context parallelism, MoE routing; their flags and their bad input."""


import pytest

from estimate_helpers import run_error, run_json
from gpubench.cli import main
from gpubench.estimate.cluster import make_cluster
from gpubench.estimate.flops import attention_core_flops_per_token, model_flops_per_token
from gpubench.estimate.memory import memory_estimate
from gpubench.estimate.models import ZOO, get_model
from gpubench.estimate.perf import StepModel, make_layout
from gpubench.estimate.profile import default_profile


def sm(model, gpu="h100", gpus=8, **layout):
    c = make_cluster(gpu, gpus)
    return StepModel(model, c, make_layout(model, gpus, **layout), default_profile(c.gpu.key, c.gpu.arch))


# ---- the zoo against published parameter counts -------------------------------------------

@pytest.mark.parametrize("name, total_b, active_b, with_embedding", [
    ("deepseek-v2", 236, 21, True),          # DeepSeek-V2 paper §3.1.2
    ("qwen3-30b-a3b", 30.5, 3.3, True),      # Qwen3-30B-A3B model card
    ("qwen3-235b-a22b", 235, 22, True),      # Qwen3-235B-A22B model card
    ("gpt-oss-120b", 116.83, 5.13, False),   # gpt-oss model card Table 1: active counts the
    ("gpt-oss-20b", 20.91, 3.61, False),     # unembedding, not the embedding lookup
    ("mixtral-8x22b", 141, 39, True),        # Mistral's announcement
    ("dbrx", 132, 36, True),                 # Databricks' DBRX announcement
    ("qwen2-57b-a14b", 57, 14, True),        # Qwen2 model card (57B total, 14B active)
])
def test_new_zoo_entries_count_their_published_parameters(name, total_b, active_b, with_embedding):
    m = get_model(name)
    assert m.params() / 1e9 == pytest.approx(total_b, rel=0.025)
    assert m.params(active=True, embeddings=with_embedding) / 1e9 == pytest.approx(active_b, rel=0.04)


def test_every_zoo_entry_names_its_source():
    assert all(m.source for m in ZOO.values())


def test_head_dim_of_its_own():
    q3 = get_model("qwen3-32b")
    assert q3.head_dim == 128 and q3.q_width == 8192 != q3.hidden
    assert q3.attention_gemms()[0][1] == 8192 + 2 * 8 * 128       # Q plus grouped K and V
    # The attention FLOPs follow the head width, not hidden/heads.
    narrow = q3.with_(head_size=64)
    assert attention_core_flops_per_token(narrow) == pytest.approx(attention_core_flops_per_token(q3) / 2)


def test_sliding_window_keys_and_flops():
    m = get_model("gpt-oss-120b")
    s, w = m.seq_len, m.window
    brute = sum(min(i, w) for i in range(1, s + 1)) / s
    assert m.mean_keys(True) == pytest.approx(brute, rel=1e-9)
    assert m.mean_keys(False) == pytest.approx((s + 1) / 2)
    full = m.with_(window=0, window_layers=None)
    assert m.windowed_layers == 18
    assert attention_core_flops_per_token(m) < 0.6 * attention_core_flops_per_token(full)
    # The step is faster where the windowed half of the layers attends 128 keys instead of 2048.
    a = sm(m, gpus=64, ep=8, global_batch=64).estimate()["breakdown"]["attention_s"]
    b = sm(full, gpus=64, ep=8, global_batch=64).estimate()["breakdown"]["attention_s"]
    assert a < 0.65 * b


def test_dense_layers_and_shared_experts():
    v3 = get_model("deepseek-v3")
    assert v3.dense_layers == 3 and v3.moe_layers == 58
    no_shared = v3.with_(shared_experts=0)
    assert v3.params(active=True) - no_shared.params(active=True) == pytest.approx(
        58 * v3.mlp_params(v3.expert_ffn))
    assert model_flops_per_token(v3) > model_flops_per_token(no_shared)


def test_context_parallel_splits_tokens_and_exchanges_kv():
    m = get_model("llama3.1-8b").with_(seq_len=131072)
    one = sm(m, gpus=8, global_batch=8, zero=3)
    cp8 = sm(m, gpus=8, cp=8, global_batch=1, zero=3)
    assert cp8.tokens_per_micro_batch == one.tokens_per_micro_batch / 8
    e = cp8.estimate()
    assert e["overlaps"]["cp_comm_hidden_behind_attention_s"] > 0
    # Activation memory falls with the tokens each GPU holds.
    assert memory_estimate(cp8)["activations_gb"] < 0.2 * memory_estimate(one)["activations_gb"]
    # The same work, split eight ways: throughput near that of eight replicas, never above it.
    assert 0.7 < e["tokens_per_s"] / one.estimate()["tokens_per_s"] <= 1.0


def test_moe_imbalance_and_node_aware_dispatch():
    m = get_model("qwen3-235b-a22b")
    base = dict(gpus=256, tp=2, pp=8, ep=32, sequence_parallel=True, global_batch=512)
    even = sm(m, moe_imbalance=1.0, **base).estimate()["step_time_s"]
    skew = sm(m, moe_imbalance=1.5, **base).estimate()["step_time_s"]
    assert skew > 1.1 * even
    a2a = sm(m, **base).estimate()["breakdown"]["ep_comm_s"]
    deepep = sm(m, moe_dispatcher="deepep", **base).estimate()["breakdown"]["ep_comm_s"]
    assert deepep < 0.8 * a2a


# ---- flags -------------------------------------------------------------------------------

def test_new_flags_reach_the_estimate(capsys):
    e = run_json(capsys, "estimate", "--model", "llama3.1-8b", "--gpu", "h100", "--gpus", "16", "--cp", "2",
                 "--tp", "2", "--sequence-parallel", "--framework", "nemo", "--head-dim", "64", "--tokens", "1B",
                 "--power-limit-w", "500")
    assert e["layout"]["cp"] == 2 and e["framework"] == "nemo"
    assert e["breakdown"]["cp_comm_s"] >= 0 and e["overlaps"]["tp_comm_hidden_behind_gemm_s"] > 0
    capped = e["step_time_s"]
    e = run_json(capsys, "estimate", "--model", "llama3.1-8b", "--gpu", "h100", "--gpus", "16", "--cp", "2",
                 "--tp", "2", "--sequence-parallel", "--framework", "nemo", "--head-dim", "64", "--tokens", "1B")
    assert capped > 1.05 * e["step_time_s"]          # a 500 W cap slows compute-bound kernels


def test_list_models_and_gpus(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["estimate", "--list-models"])
    out, _ = capsys.readouterr()
    assert exc.value.code == 0 and "qwen3-235b-a22b" in out and "deepseek-v3" in out
    with pytest.raises(SystemExit):
        main(["estimate", "--list-gpus"])
    out, _ = capsys.readouterr()
    assert "h100-sxm" in out and "a100-sxm-80gb" in out


@pytest.mark.parametrize("args, needles", [
    (["--model", "llama3.1-8b", "--cp", "3"], ["--cp 3", "sequence", "8192"]),
    (["--model", "llama3.1-8b", "--cp", "64"], ["--cp 64", "32 heads"]),
    (["--model", "llama3.1-8b", "--head-dim", "100"], ["--head-dim 100", "multiple of 8"]),
    (["--model", "llama3.1-8b", "--head-dim", "8"], ["--head-dim 8", "--heads 32", "--hidden 4096"]),
    (["--model", "deepseek-v3", "--dense-layers", "100"], ["--dense-layers 100", "61 layers"]),
    (["--model", "llama3.1-8b", "--dense-layers", "2"], ["--dense-layers", "mixture-of-experts"]),
    (["--model", "llama3.1-8b", "--window-layers", "4"], ["--window-layers", "--window"]),
    (["--model", "mixtral-8x7b", "--moe-imbalance", "0.5"], ["--moe-imbalance"]),
    (["--model", "llama3.1-8b", "--power-limit-w", "50"], ["--power-limit-w 50"]),
    (["--model", "llama3.1-8b", "--eval-share", "1.5"], ["--eval-share"]),
    (["--model", "llama3.1-8b", "--failures-per-gpu-hour", "-1"], ["--failures-per-gpu-hour"]),
])
def test_new_flags_fail_in_one_line(capsys, args, needles):
    line = run_error(capsys, "estimate", "--gpu", "h100", "--gpus", "64", "--tokens", "1B", *args)
    for n in needles:
        assert n in line, line


def test_plan_constraint_nothing_satisfies(capsys):
    line = run_error(capsys, "plan", "--model", "llama3.1-8b", "--gpu", "h100", "--gpus", "64", "--tokens", "1B",
                     "--tp", "3")
    assert "--tp 3" in line and "no layout" in line
