import pytest
import torch

from gpubench.benches.matmul import _check, quantize_fp8
from gpubench.errors import CheckFailed, GpubenchError, SkipCase
from gpubench.registry import get_benchmark


@pytest.fixture
def mm():
    return get_benchmark("matmul")


@pytest.mark.parametrize("dtype, extra", [("fp32", {}), ("bf16", {}), ("fp16", {}),
                                          ("fp8_e4m3", {"scaling": "tensor"}),
                                          ("fp8_e4m3", {"scaling": "row"})])
def test_check_passes_on_fresh_random_data(mm, cpu, dtype, extra):
    params = mm.normalize({"dtype": dtype, "m": 96, "n": 80, "k": 112, **extra})
    work = mm.prepare(params, cpu)
    with work.context():
        block = work.check()
    assert block["reference"] == "float64"
    assert 0 < block["rel_err"] <= block["tolerance"]
    assert work.flops == 2 * 96 * 80 * 112
    out = work.fn()
    assert out.shape == (96, 80) and torch.isfinite(out).all() and out.abs().sum() > 0


def test_fresh_data_each_prepare(mm, cpu):
    params = mm.normalize({"dtype": "fp32", "m": 32, "n": 32, "k": 32})
    a, b = mm.prepare(params, cpu), mm.prepare(params, cpu)
    assert a.info["seed"] != b.info["seed"]
    assert not torch.equal(a.fn(), b.fn())


def _operands(n=64, dtype=torch.float32):
    a = torch.randn(n, n).to(dtype)
    w = torch.randn(n, n).to(dtype)
    c = torch.empty(n, n, dtype=dtype)
    return a, w, c


def test_check_passes_a_correct_kernel():
    a, w, c = _operands()
    block = _check(lambda: torch.matmul(a, w.t(), out=c), c, a, w, None, None, 1e-4,
                   torch.Generator().manual_seed(0))
    assert block["rel_err"] < 1e-6


def test_check_catches_a_wrong_kernel():
    a, w, c = _operands(dtype=torch.bfloat16)

    def off_by_one_column():
        torch.matmul(a, w.t(), out=c)
        c[:, 3] = c[:, 4]           # a classic indexing bug in one column of 64

    with pytest.raises(CheckFailed, match="rel err"):
        _check(off_by_one_column, c, a, w, None, None, 1e-2, torch.Generator().manual_seed(0))


def test_check_catches_unwritten_output():
    a, w, c = _operands()
    half = lambda: torch.matmul(a[:32], w.t(), out=c[:32])  # noqa: E731  (rows 32.. never written)
    with pytest.raises(CheckFailed, match="not written"):
        _check(half, c, a, w, None, None, 1e-4, torch.Generator().manual_seed(0))


def test_tf32_is_skipped_on_cpu(mm, cpu):
    with pytest.raises(SkipCase, match="TF32"):
        mm.prepare(mm.normalize({"dtype": "tf32", "m": 8, "n": 8, "k": 8}), cpu)


def test_fp8_reports_scaling_cost_and_quantization_error(mm, cpu):
    params = mm.normalize({"dtype": "fp8_e4m3", "m": 64, "n": 64, "k": 64, "scaling": "row"})
    work = mm.prepare(params, cpu)
    assert "scaling" in work.aux
    # e4m3 keeps 3 mantissa bits: quantization moves values by a few percent, not more.
    assert 0.005 < work.info["quantization_rel_err"] < 0.1
    m = mm.metrics(params, work, 1e-3, cpu, None, {"scaling": 5e-4})
    assert m["tflops"] == pytest.approx(work.flops / 1e-3 / 1e12)
    assert m["tflops_incl_scaling"] == pytest.approx(work.flops / 1.5e-3 / 1e12)
    assert m["pct_of_peak"] is None         # a CPU never gets a peak


def test_quantize_fp8_rowwise_scales():
    x = torch.randn(8, 16) * torch.arange(1, 9).unsqueeze(1)
    q, s = quantize_fp8(x, rowwise=True)
    assert s.shape == (8, 1)
    assert torch.allclose(q.float().abs().amax(dim=1), torch.full((8,), 448.0))
    q1, s1 = quantize_fp8(x, rowwise=False)
    assert s1.numel() == 1 and q1.float().abs().max() == 448.0


@pytest.mark.parametrize("params, message", [
    ({"dtype": "bf16", "m": 0, "n": 1, "k": 1}, "must be positive"),
    ({"dtype": "bf16", "m": "x", "n": 1, "k": 1}, "not a whole number"),
    ({"dtype": "bf17", "m": 1, "n": 1, "k": 1}, "unknown dtype 'bf17'.*bf16"),
    ({"dtype": "fp8_e4m3", "m": 1, "n": 1, "k": 1, "scaling": "block"}, "scaling='block'"),
    ({"dtype": "bf16", "n": 1, "k": 1}, "needs m"),
])
def test_bad_params(mm, params, message):
    with pytest.raises(GpubenchError, match=message):
        mm.normalize(params)


def test_memory_estimate_grows_with_shape(mm):
    small = mm.memory_bytes(mm.normalize({"dtype": "fp32", "m": 1024, "n": 1024, "k": 1024}))
    assert small == 3 * 1024 * 1024 * 4
    fp8 = mm.memory_bytes(mm.normalize({"dtype": "fp8_e4m3", "m": 1024, "n": 1024, "k": 1024}))
    assert fp8 > 1024 * 1024 * 3


def test_membw_copy(cpu):
    bw = get_benchmark("membw")
    params = bw.normalize({"size_bytes": 1 << 20})
    work = bw.prepare(params, cpu)
    assert work.check()["rel_err"] == 0.0
    assert work.bytes_moved == 2 * (1 << 20)
    m = bw.metrics(params, work, 1e-4, cpu, None, {})
    assert m["gbps"] == pytest.approx(2 * (1 << 20) / 1e-4 / 1e9)
    with pytest.raises(GpubenchError, match="too small"):
        bw.normalize({"size_bytes": 10})


def test_membw_buffers_a_cache_can_hold_are_no_share_of_dram_bandwidth():
    """An H200's 60 MB L2 serves a 64 MiB copy in part: that rate is not a share of its HBM's."""
    from dataclasses import replace

    from gpubench.device import DeviceInfo
    from gpubench.hardware import get_gpu
    from gpubench.registry import Workload

    h200 = DeviceInfo(type="cuda", index=0, name="NVIDIA H200", total_memory_bytes=141 * 10**9,
                      cache_bytes=60 * 2**20, capability=(9, 0), multiprocessors=132, spec=get_gpu("h200-sxm"))
    bw = get_benchmark("membw")
    for size, cached in ((16 << 20, True), (64 << 20, True), (120 << 20, True), (256 << 20, False),
                         (1 << 30, False)):
        params = bw.normalize({"size_bytes": size})
        m = bw.metrics(params, Workload(fn=lambda: None, bytes_moved=2.0 * size), 1e-3, h200, None, {})
        assert m["served_from"] == ("cache" if cached else "memory"), size
        assert (m["pct_of_peak"] is None) == cached, size
    cpu_like = replace(h200, cache_bytes=0)          # a device that reports no cache: nothing flagged
    m = bw.metrics(bw.normalize({"size_bytes": 16 << 20}), Workload(fn=lambda: None, bytes_moved=2.0 * (16 << 20)),
                   1e-3, cpu_like, None, {})
    assert m["served_from"] == "memory"


# ---- the precision rules: tolerances and the float32 matmul mode ----------------------------------

# The error scale of each precision's result, and how far from the float64 reference its check must
# accept and must reject, in units of that scale (eps: the format's spacing at 1, torch.finfo().eps).
# A correct kernel's error is its output rounding (≤ eps/2 an element) plus accumulation over long K;
# "a few times that" is the budget, and an error one ulp-scale step beyond it must fail.
#   fp32: accumulation over K = 16384 is ~64 eps; anything at TF32's scale (2^-13 and up) is a kernel
#         that ran on TF32 tensor cores when IEEE fp32 was asked, and must fail.
#   tf32, fp16: the 10-bit mantissa's eps 2^-10: half of it passes, 8 eps fails.
#   bf16, fp8 (bf16 output): eps 2^-7: half of it passes, 2 eps fails.
TOLERANCE_BUDGET = {
    # precision: (output dtype, accept rel. error, reject rel. error)
    "fp32": (torch.float32, 64 * 2**-23, 2**-13),
    "tf32": (torch.float32, 0.5 * 2**-10, 8 * 2**-10),
    "fp16": (torch.float16, 0.5 * 2**-10, 8 * 2**-10),
    "bf16": (torch.bfloat16, 0.5 * 2**-7, 2 * 2**-7),
    "fp8_e4m3": (torch.bfloat16, 0.5 * 2**-7, 2 * 2**-7),
}


def _kernel_off_by(a, w, c, rel, seed=0):
    """A 'kernel' whose every output element is the exact product moved by ±rel (random signs),
    then rounded to the output dtype: its error against float64 is rel (plus output rounding)."""
    ref = a.double() @ w.double().t()
    g = torch.Generator().manual_seed(seed)
    signs = torch.randint(0, 2, ref.shape, generator=g).double() * 2 - 1

    def fn():
        c.copy_((ref * (1 + rel * signs)).to(c.dtype))
    return fn


@pytest.mark.parametrize("name", sorted(TOLERANCE_BUDGET))
def test_tolerance_accepts_rounding_and_rejects_one_step_further(name):
    """Guards: the matmul tolerance table loosened (every bf16/fp16/fp8 tolerance ×1000 passed
    before) or tightened past what a correct kernel's rounding needs. Each precision's check must
    pass a result off by its stated budget and fail one off by the next ulp-scale step."""
    from gpubench.dtypes import PRECISIONS, get_precision

    dtype, accept, reject = TOLERANCE_BUDGET[name]
    assert set(TOLERANCE_BUDGET) == set(PRECISIONS)          # a new precision needs its budget here
    tol = get_precision(name).matmul_tolerance
    g = torch.Generator().manual_seed(1)
    a = torch.randn(128, 128, generator=g).to(dtype)
    w = torch.randn(128, 128, generator=g).to(dtype)
    c = torch.empty(128, 128, dtype=dtype)
    block = _check(_kernel_off_by(a, w, c, accept), c, a, w, None, None, tol, torch.Generator().manual_seed(0))
    assert block["rel_err"] == pytest.approx(accept, rel=0.5)
    with pytest.raises(CheckFailed, match="rel err"):
        _check(_kernel_off_by(a, w, c, reject), c, a, w, None, None, tol, torch.Generator().manual_seed(0))


def _round_to_tf32(x: torch.Tensor) -> torch.Tensor:
    """float32 → TF32 (10 explicit mantissa bits, round to nearest), kept in float32 storage."""
    bits = x.contiguous().view(torch.int32)
    return ((bits + 0x1000) & ~0x1FFF).view(torch.float32)


def test_fp32_check_rejects_a_product_computed_in_tf32():
    """Guards: an fp32 case that silently ran on TF32 tensor cores passing its check. The same
    product with both operands rounded to TF32 (what a TF32 kernel computes) must fail fp32's
    tolerance and pass tf32's."""
    from gpubench.dtypes import get_precision

    g = torch.Generator().manual_seed(2)
    a, w = torch.randn(128, 512, generator=g), torch.randn(128, 512, generator=g)
    c = torch.empty(128, 128)
    tf32_product = (_round_to_tf32(a).double() @ _round_to_tf32(w).double().t()).float()
    fn = lambda: c.copy_(tf32_product)  # noqa: E731
    with pytest.raises(CheckFailed):
        _check(fn, c, a, w, None, None, get_precision("fp32").matmul_tolerance, torch.Generator().manual_seed(0))
    block = _check(fn, c, a, w, None, None, get_precision("tf32").matmul_tolerance, torch.Generator().manual_seed(0))
    assert 1e-4 < block["rel_err"] < 2e-3           # TF32's own rounding, ~3e-4


def test_only_tf32_enables_tf32(mm, cpu, monkeypatch):
    """Guards: `tf32` never enabling TF32 (or fp32 enabling it): the float32 matmul mode each
    precision's workload runs and checks under, read inside the workload's own context."""
    import gpubench.benches.matmul as matmul_mod
    from gpubench.dtypes import PRECISIONS, float32_matmul_mode

    assert {p: float32_matmul_mode(p) for p in PRECISIONS} == {
        "fp32": "highest", "tf32": "high", "bf16": "highest", "fp16": "highest", "fp8_e4m3": "highest"}
    seen = {}
    monkeypatch.setattr(matmul_mod, "_check", lambda *a, **k: seen.setdefault(
        "check", torch.get_float32_matmul_precision()))
    outside = torch.get_float32_matmul_precision()
    for dtype, want in (("fp32", "highest"), ("tf32", "high")):
        seen.clear()
        # _prepare_dense directly: prepare() skips tf32 on a CPU, the mode is what is under test.
        work = mm._prepare_dense(mm.normalize({"dtype": dtype, "m": 8, "n": 8, "k": 8}), cpu)
        with work.context():
            assert torch.get_float32_matmul_precision() == want, dtype
        work.check()
        assert seen["check"] == want, dtype
        assert torch.get_float32_matmul_precision() == outside     # the switch is put back


def test_precision_names_and_aliases():
    """Guards: --dtype spellings: case and spaces, and `fp8` meaning fp8_e4m3 (estimate's name)."""
    from gpubench.dtypes import get_precision

    assert get_precision(" BF16 ").name == "bf16"
    assert get_precision("fp8").name == get_precision("FP8").name == "fp8_e4m3"
    with pytest.raises(GpubenchError, match=r"known: .*fp8, fp8_e4m3"):
        get_precision("fp9")
