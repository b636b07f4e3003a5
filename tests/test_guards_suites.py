"""The mixed-precision suite's LLM-shaped GEMMs are the layers they are named after.

Guards: a layer's n and k swapped (the product count n·k stays the same, so nothing else
notices), a tensor-parallel split on the wrong dimension, or a model's widths off the published
configuration. The published shapes are in tests/data/llama2_layers.csv with their sources; the
estimator's own layer definitions (estimate/models.py) are the second reference."""

import csv
from pathlib import Path

import pytest

from gpubench.estimate.models import get_model
from gpubench.registry import get_suite
from gpubench.suites import MODELS, TOKENS, llm_gemms

DATA = Path(__file__).resolve().parent / "data"

# suite label -> the estimator's GEMM name (estimate/models.py: attention_gemms, mlp_gemms)
NAMES = {"qkv": "qkv", "attn-out": "out", "mlp-up": "mlp_up", "mlp-down": "mlp_down"}


def _published():
    with open(DATA / "llama2_layers.csv", newline="") as f:
        return {r["model"]: r for r in csv.DictReader(f)}


def test_suite_models_are_the_published_configurations():
    """The suite's table of Llama 2 widths (hidden, FFN, heads, KV heads) is the published one."""
    published = _published()
    assert set(MODELS) == set(published)
    for name, (hidden, ffn, heads, kv_heads) in MODELS.items():
        row = published[name]
        assert (hidden, ffn, heads, kv_heads) == (int(row["hidden"]), int(row["ffn_hidden"]), int(row["heads"]),
                                                  int(row["kv_heads"])), name


@pytest.mark.parametrize("model", sorted(MODELS))
@pytest.mark.parametrize("tp", [1, 8])
def test_llm_gemms_are_the_layers_forward_products(model, tp):
    """nn.Linear's layout (m tokens, n output features, k input features) of each product, with
    Megatron-LM's split: column-parallel (QKV, MLP up with its gate) divide n by tp, row-parallel
    (attention output, MLP down) divide k. Checked against the published widths and against the
    estimator's layer definitions."""
    row = _published()[model]
    h, f, a, kv = (int(row[k]) for k in ("hidden", "ffn_hidden", "heads", "kv_heads"))
    d = h // a
    want = {
        "qkv": (TOKENS, (h + 2 * kv * d) // tp, h),     # Q (a heads) and K, V (kv heads each)
        "attn-out": (TOKENS, h, h // tp),
        "mlp-up": (TOKENS, 2 * f // tp, h),             # SwiGLU: gate and up, fused
        "mlp-down": (TOKENS, h, f // tp),
    }
    got = {g["gemm"].split()[1]: (g["m"], g["n"], g["k"]) for g in llm_gemms(model, tp)}
    assert got == want
    assert all(g["gemm"] == f"{model} {g['gemm'].split()[1]} tp{tp}" for g in llm_gemms(model, tp))
    est = get_model(model)
    defs = {name: (n, k, split) for name, n, k, split in est.attention_gemms() + est.mlp_gemms(est.ffn)}
    for label, (m, n, k) in got.items():
        n_full, k_full, split = defs[NAMES[label]]
        assert (n, k) == ((n_full // tp, k_full) if split == "col" else (n_full, k_full // tp)), label
    # tp1: the four products hold every weight of a layer (no biases in Llama).
    if tp == 1:
        assert sum(n * k for _, n, k in got.values()) == est.attention_params() + est.mlp_params(est.ffn)


def test_the_gpu_suite_runs_those_shapes():
    """The shapes reach the suite: every model at tp1 and tp8, each product as built above."""
    cases = [c for c in get_suite("mixed-precision").gpu
             if getattr(c, "benchmark", None) == "matmul" and c.params.get("gemm")
             and c.params["gemm"].split()[0] in MODELS]
    expected = {(g["gemm"], g["m"], g["n"], g["k"]) for model in MODELS for tp in (1, 8)
                for g in llm_gemms(model, tp)}
    assert {(c.params["gemm"], c.params["m"], c.params["n"], c.params["k"]) for c in cases} == expected
    cpu = [c for c in get_suite("mixed-precision").cpu
           if getattr(c, "benchmark", None) == "matmul" and str(c.params.get("gemm", "")).startswith("llama2-7b")]
    assert cpu and all((c.params["n"], c.params["k"]) in {(g["n"], g["k"]) for g in llm_gemms("llama2-7b", 8, 256)}
                       for c in cpu)
