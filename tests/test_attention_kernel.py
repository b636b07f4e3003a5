"""The Triton flash-attention kernels against float64, on fresh random data.

On the CPU they run in Triton's interpreter (conftest sets TRITON_INTERPRET=1),
one program at a time, so the shapes are tiny but chosen to cross every code
path: several whole tiles (the unmasked loops), a ragged last tile (sequence
lengths that are not multiples of the block), the causal diagonal, and query and
key lengths that differ. The interpreter's tile is 16, so lengths of 17 to 50
cover two to four tiles. bf16 is tested on a GPU only: the interpreter's
``tl.dot`` does not support it.
"""

from __future__ import annotations

import math
import random
from pathlib import Path

import pytest
import torch
import triton
from gpubench.kernels import attention as fa

ON_GPU = torch.cuda.is_available()
DEVICE = "cuda" if ON_GPU else "cpu"

# ‖out − ref‖/‖ref‖ bounds. fp32 runs IEEE products here, so it lands near 1e-7; fp16
# rounds inputs to P and the output to 11 bits (≈3e-4 seen). A bound 10-30× above what
# is seen still fails on any real bug, which costs errors of order 1e-2 to 1.
TOL = {torch.float32: {"fwd": 1e-5, "bwd": 1e-5},
       torch.float16: {"fwd": 3e-3, "bwd": 5e-3},
       torch.bfloat16: {"fwd": 2e-2, "bwd": 3e-2}}


def rel(out: torch.Tensor, ref: torch.Tensor) -> float:
    return ((out.double() - ref.double()).norm() / ref.double().norm()).item()


def run_both(q, k, v, causal, sm_scale=None):
    """Kernel and float64 reference, forward and the three gradients for one random dO."""
    q, k, v = (t.detach().requires_grad_() for t in (q, k, v))
    out = fa.flash_attention(q, k, v, causal=causal, sm_scale=sm_scale)
    d_out = torch.randn_like(out)
    out.backward(d_out)
    q64, k64, v64 = (t.detach().double().requires_grad_() for t in (q, k, v))
    ref = fa.attention_reference(q64, k64, v64, causal=causal, sm_scale=sm_scale)
    ref.backward(d_out.double())
    return {"out": (out, ref), "dq": (q.grad, q64.grad), "dk": (k.grad, k64.grad),
            "dv": (v.grad, v64.grad)}


def assert_close(results, dtype, context):
    for name, (got, ref) in results.items():
        assert bool(torch.isfinite(got).all()), f"{name} has NaN/Inf ({context})"
        err = rel(got, ref)
        bound = TOL[dtype]["fwd" if name == "out" else "bwd"]
        assert err <= bound, f"{name}: rel err {err:.2e} > {bound:.0e} ({context})"


def randn(*shape, dtype):
    return torch.randn(*shape, dtype=dtype, device=DEVICE)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16], ids=["fp32", "fp16"])
@pytest.mark.parametrize("head_dim", [64, 128])
@pytest.mark.parametrize("causal", [False, True], ids=["full", "causal"])
def test_forward_and_gradients_match_float64(dtype, head_dim, causal):
    # A fresh shape every run: odd lengths, so the ragged tile is always exercised.
    rng = random.Random()
    seq = rng.choice([17, 23, 31, 37, 45, 50])
    batch, heads = rng.choice([1, 2]), rng.choice([1, 2])
    q, k, v = (randn(batch, heads, seq, head_dim, dtype=dtype) for _ in range(3))
    assert_close(run_both(q, k, v, causal), dtype,
                 f"batch={batch} heads={heads} seq={seq} head_dim={head_dim} causal={causal}")


@pytest.mark.parametrize("n_q, n_k", [(50, 23), (20, 45)])
@pytest.mark.parametrize("causal", [False, True], ids=["full", "causal"])
def test_query_and_key_lengths_may_differ(n_q, n_k, causal):
    q = randn(1, 2, n_q, 64, dtype=torch.float32)
    k, v = randn(1, 2, n_k, 64, dtype=torch.float32), randn(1, 2, n_k, 64, dtype=torch.float32)
    assert_close(run_both(q, k, v, causal), torch.float32, f"n_q={n_q} n_k={n_k} causal={causal}")


@pytest.mark.parametrize("causal", [False, True], ids=["full", "causal"])
def test_causal_convention_is_sdpas(causal):
    # Upper-left aligned (query i sees keys j <= i), like SDPA's is_causal, also when
    # the lengths differ: the benchmark compares the two, so they must agree.
    q = randn(1, 2, 40, 32, dtype=torch.float32)
    k, v = randn(1, 2, 24, 32, dtype=torch.float32), randn(1, 2, 24, 32, dtype=torch.float32)
    ours = fa.flash_attention(q, k, v, causal=causal)
    sdpa = torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=causal)
    assert rel(ours, sdpa) < 1e-5


def test_sm_scale_is_honoured():
    q, k, v = (randn(1, 1, 33, 32, dtype=torch.float32) for _ in range(3))
    results = run_both(q, k, v, causal=True, sm_scale=0.37)
    assert_close(results, torch.float32, "sm_scale=0.37")
    # The default scale gives a different answer: the argument is not ignored.
    default = fa.flash_attention(q, k, v, causal=True)
    assert rel(default, results["out"][1]) > 1e-3


def test_every_output_element_is_written(monkeypatch):
    # Poison every buffer the kernels fill: an element no program wrote stays NaN.
    def poisoned(shape, dtype, device):
        return torch.full(shape, float("nan"), dtype=dtype, device=device)

    monkeypatch.setattr(fa, "_empty", poisoned)
    q, k, v = (randn(2, 2, 37, 64, dtype=torch.float16) for _ in range(3))
    for causal in (False, True):
        assert_close(run_both(q, k, v, causal), torch.float16, f"poisoned, causal={causal}")


def test_strided_inputs_give_the_same_answer():
    # (batch, seq, heads, head_dim) storage viewed as (batch, heads, seq, head_dim): the
    # layout a fused QKV projection produces. Strides are passed, not assumed.
    base = randn(3, 2, 29, 2, 64, dtype=torch.float32)      # (qkv, batch, seq, heads, dim)
    q, k, v = (base[i].transpose(1, 2) for i in range(3))
    assert not q.is_contiguous()
    strided = fa.flash_attention(q, k, v, causal=True)
    dense = fa.flash_attention(q.contiguous(), k.contiguous(), v.contiguous(), causal=True)
    assert torch.equal(strided, dense)
    assert rel(strided, fa.attention_reference(q, k, v, causal=True)) < 1e-5


def test_a_wrong_kernel_would_fail_these_bounds(monkeypatch):
    # The bounds are tight enough to catch a small bug: a softmax computed in base e
    # instead of base 2 (log2 e dropped) changes the output far beyond them.
    monkeypatch.setattr(fa, "LOG2E", 1.0)
    q, k, v = (randn(1, 2, 33, 64, dtype=torch.float32) for _ in range(3))
    out = fa.flash_attention(q, k, v)
    assert rel(out, fa.attention_reference(q, k, v)) > TOL[torch.float32]["fwd"] * 100


def test_reference_matches_the_textbook_formula():
    q, k, v = (torch.randn(1, 1, 5, 4, dtype=torch.float64) for _ in range(3))
    s = q[0, 0] @ k[0, 0].T / math.sqrt(4)
    s = s + torch.full((5, 5), float("-inf"), dtype=torch.float64).triu(1)
    expected = torch.softmax(s, -1) @ v[0, 0]
    assert torch.allclose(fa.attention_reference(q, k, v, causal=True)[0, 0], expected)


def _meta(shape, dtype=torch.float16):
    return torch.empty(shape, dtype=dtype, device="meta")


@pytest.mark.parametrize("args, kwargs, message", [
    ((torch.zeros(2, 16, 64),) * 3, {}, "q must have rank 4"),
    ((torch.zeros(1, 2, 16, 64), torch.zeros(1, 2, 16, 64, dtype=torch.float16),
      torch.zeros(1, 2, 16, 64)), {}, "k has dtype torch.float16 but q has torch.float32"),
    ((torch.zeros(1, 2, 16, 64, dtype=torch.float64),) * 3, {}, "q has dtype torch.float64"),
    ((torch.zeros(1, 2, 16, 80),) * 3, {}, "head_dim=80 is not supported"),
    ((torch.zeros(1, 2, 16, 64), torch.zeros(1, 3, 16, 64), torch.zeros(1, 3, 16, 64)), {},
     "k has batch×heads (1, 3) but q has (1, 2)"),
    ((torch.zeros(1, 2, 16, 64), torch.zeros(1, 2, 16, 64), torch.zeros(1, 2, 17, 64)), {},
     "v has shape (1, 2, 17, 64) but k has (1, 2, 16, 64)"),
    ((torch.zeros(1, 2, 16, 64), torch.zeros(1, 2, 16, 32), torch.zeros(1, 2, 16, 32)), {},
     "k has head_dim 32 but q has 64"),
    ((torch.zeros(1, 2, 0, 64),) * 3, {}, "no empty dimension"),
    ((torch.zeros(1, 2, 16, 64),) * 3, {"sm_scale": -1.0}, "sm_scale must be a positive finite"),
    ((torch.zeros(1, 2, 16, 64),) * 3, {"causal": "yes"}, "causal must be True or False"),
    (([[1.0]], torch.zeros(1, 2, 16, 64), torch.zeros(1, 2, 16, 64)), {}, "q must be a torch.Tensor"),
])
def test_bad_input_is_a_value_error_naming_the_argument(args, kwargs, message):
    with pytest.raises(ValueError) as err:
        fa.flash_attention(*args, **kwargs)
    assert message in str(err.value)


def test_mismatched_devices_are_refused_before_launch():
    q = torch.zeros(1, 2, 16, 64, dtype=torch.float16, device=DEVICE)
    with pytest.raises(ValueError, match="k is on meta but q is on"):
        fa.flash_attention(q, _meta((1, 2, 16, 64)), q)


@pytest.mark.skipif(ON_GPU, reason="on a GPU the kernels run for real")
def test_cpu_tensors_need_the_interpreter(monkeypatch):
    monkeypatch.setattr(fa, "INTERPRET", False)
    q = torch.zeros(1, 2, 16, 64, dtype=torch.float16)
    with pytest.raises(ValueError, match="runs on CUDA devices"):
        fa.flash_attention(q, q, q)


# ------------------------------------------------------------------------------- FP8

# P is rounded to e4m3 (3 mantissa bits) before the PV product: about 2e-2 with the
# hardware's round-to-nearest. Triton's interpreter converts small values to e4m3 less
# exactly (measured: 2% of uniform [0,1) values land one step low), hence its bound.
FP8_TOL = 4e-2 if ON_GPU else 1e-1


def _fp8_case(seq, head_dim, causal):
    q, k, v = (randn(1, 2, seq, head_dim, dtype=torch.float32) for _ in range(3))
    quantized = [fa.quantize_fp8(t) for t in (q, k, v)]
    # The reference sees exactly what the kernel saw: the dequantized e4m3 inputs.
    dequant = [t8.double() * s for t8, s in quantized]
    ref = fa.attention_reference(*dequant, causal=causal)
    (q8, sq), (k8, sk), (v8, sv) = quantized
    return q8, k8, v8, (sq, sk, sv), ref


@pytest.mark.parametrize("causal", [False, True], ids=["full", "causal"])
def test_fp8_forward_matches_float64_of_the_dequantized_inputs(causal):
    q8, k8, v8, scales, ref = _fp8_case(random.choice([29, 45]), 64, causal)
    out = fa.flash_attention_fp8(q8, k8, v8, *scales, causal=causal)
    assert out.dtype == torch.bfloat16 and bool(torch.isfinite(out).all())
    assert rel(out, ref) <= FP8_TOL


def test_fp8_scales_are_applied():
    q8, k8, v8, (sq, sk, sv), ref = _fp8_case(33, 64, False)
    assert rel(fa.flash_attention_fp8(q8, k8, v8, sq, sk, sv * 2), ref) > 0.5
    # q's scale sharpens the softmax: a wrong one changes the weights, not just the size.
    assert rel(fa.flash_attention_fp8(q8, k8, v8, sq * 8, sk, sv), ref) > 10 * FP8_TOL


@pytest.mark.parametrize("kwargs, message", [
    ({"q_scale": -1.0}, "q_scale must be a positive finite number"),
    ({"v_scale": float("nan")}, "v_scale must be a positive finite number"),
    ({"out_dtype": torch.int32}, "out_dtype torch.int32 is not supported"),
])
def test_fp8_bad_input(kwargs, message):
    q8 = torch.zeros(1, 2, 16, 64).to(fa.FP8_DTYPE)
    args = {"q_scale": 1.0, "k_scale": 1.0, "v_scale": 1.0, **kwargs}
    with pytest.raises(ValueError, match=message):
        fa.flash_attention_fp8(q8, q8, q8, **args)
    with pytest.raises(ValueError, match="q has dtype torch.bfloat16: use float8_e4m3fn"):
        fa.flash_attention_fp8(*(torch.zeros(1, 2, 16, 64, dtype=torch.bfloat16),) * 3, 1.0, 1.0, 1.0)


# ------------------------------------------------------------------ GPU: bf16, real sizes

gpu = pytest.mark.skipif(not ON_GPU, reason="needs a CUDA device (bf16 and large shapes)")


@gpu
@pytest.mark.gpu
@pytest.mark.parametrize("causal", [False, True], ids=["full", "causal"])
def test_gpu_fp8_forward(causal):
    if torch.cuda.get_device_capability() < (8, 9):
        pytest.skip("FP8 tensor cores need sm_89+")
    q8, k8, v8, scales, ref = _fp8_case(2048, 128, causal)
    assert rel(fa.flash_attention_fp8(q8, k8, v8, *scales, causal=causal), ref) <= FP8_TOL


# Every autotune key (sequence, head width, causality, dtype) compiles each kernel's surviving
# configs: bf16 at every shape, fp16 (the same code with other operand types) at one, 12 keys
# rather than 16 (about 230 compiles before).
GPU_CASES = ([(torch.bfloat16, d, c, s) for d in (64, 128) for c in (False, True) for s in (1000, 4096)]
             + [(torch.float16, d, c, 1000) for d in (64, 128) for c in (False, True)])


@gpu
@pytest.mark.gpu
@pytest.mark.parametrize("dtype,head_dim,causal,seq", GPU_CASES)
def test_gpu_matches_float64(dtype, head_dim, causal, seq):
    q, k, v = (randn(2, 4, seq, head_dim, dtype=dtype) for _ in range(3))
    assert_close(run_both(q, k, v, causal), dtype, f"seq={seq} head_dim={head_dim} causal={causal}")


@pytest.mark.slow
def test_kernels_compile_for_hopper_without_a_gpu(tmp_path):
    # The interpreter runs Python, not the compiler: this compiles the three kernels
    # for real (sm_90a, Triton's own ptxas) and reads the SASS, so a construct the
    # compiler rejects, a spill or a fall-back from Hopper's warpgroup MMA fails here.
    import json
    import subprocess
    import sys

    env = {k: v for k, v in __import__("os").environ.items() if k != "TRITON_INTERPRET"}
    script = Path(__file__).resolve().parents[1] / "scripts" / "attention_compile_report.py"
    rows = []
    for dtype in ("bf16", "fp8"):
        out = tmp_path / f"{dtype}.json"
        proc = subprocess.run([sys.executable, str(script), "--arch", "90", "--dtype", dtype,
                               "--head-dim", "128", "--causal", "yes", "--tuned-only",
                               "--max-configs", "1", "--json", str(out)],
                              capture_output=True, text=True, env=env, timeout=300, check=False)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        rows += [dict(r, dtype=dtype) for r in json.loads(out.read_text())["rows"]]
    assert {(r["dtype"], r["kernel"]) for r in rows} == {("bf16", "fwd"), ("bf16", "dkdv"),
                                                        ("bf16", "dq"), ("fp8", "fwd")}
    for r in rows:
        assert "error" not in r, r
        assert r["hgmma"] > 0 and r["hmma"] == 0, r
        assert (r["qgmma"] > 0) == (r["dtype"] == "fp8"), r
        assert r["ldl_stl"] == 0, f"spills: {r}"
        assert r["fits"], r


def test_the_measured_spill_is_pruned_and_its_neighbours_kept():
    """dK/dV 32×64 with 4 warps spilled at d=128 (triton 3.6, sm_90a); 32×128 with 8 warps has the
    same register estimate and does not: only the measured one goes."""
    configs = [triton.Config({"BLOCK_M": m, "BLOCK_N": n}, num_warps=w, num_stages=3)
               for m, n, w in ((32, 64, 4), (32, 128, 8), (16, 64, 4))]
    kept = fa.DKDV_PRUNE["early_config_prune"](configs, {}, HEAD_DIM=128)
    assert [(c.kwargs["BLOCK_M"], c.kwargs["BLOCK_N"], c.num_warps) for c in kept] == [(32, 128, 8), (16, 64, 4)]
    kept64 = fa.DKDV_PRUNE["early_config_prune"](configs, {}, HEAD_DIM=64)
    assert len(kept64) == 3
