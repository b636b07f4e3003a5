"""The attention benchmark on a CPU: parameters, FLOP convention, the float64 check
(and that it catches wrong attention), backend skips, compare(), the report, and the
CPU suite end to end through the CLI."""

import os
import re
import warnings

import pytest
import torch
import torch.nn.functional as F

from gpubench.benches import attention as attn
from gpubench.benches.attention import attention_flops, compare, reference
from gpubench.cli import main
from gpubench.errors import GpubenchError, SkipCase
from gpubench.registry import Case, get_benchmark, get_suite
from gpubench.report import render
from gpubench.results import Record, Run, load_run
from gpubench.runner import Runner, memory_problem
from gpubench.timing import TimerConfig

FAST = TimerConfig(warmup_s=0.0, min_warmup_iters=1, measure_s=0.0, min_iters=3, max_iters=3)
SMALL = {"impl": "sdpa-math", "dtype": "fp32", "batch": 2, "heads": 2, "seq": 48, "head_dim": 16}


@pytest.fixture
def bench():
    return get_benchmark("attention")


def run_case(cpu, **params):
    return Runner(cpu, FAST, telemetry=None).run_case(Case("attention", {**SMALL, **params}))


# ---- parameters ----

def test_normalize_fills_defaults(bench):
    p = bench.normalize({"seq": 1024, "head_dim": 64})
    assert p == {"impl": "triton", "direction": "fwd", "dtype": "bf16", "batch": 16, "heads": 32,
                 "seq": 1024, "head_dim": 64, "causal": False}
    p = bench.normalize({"impl": "sdpa-cudnn", "direction": "fwd+bwd", "dtype": "fp16", "batch": "3",
                         "heads": 5, "seq": 100, "head_dim": 32, "causal": "true"})
    assert (p["batch"], p["heads"], p["causal"], p["dtype"]) == (3, 5, True, "fp16")


@pytest.mark.parametrize("params, message", [
    ({"impl": "sdpa-fast"}, r"impl='sdpa-fast': use one of triton, sdpa-flash"),
    ({"direction": "bwd"}, r"direction='bwd': use one of fwd, fwd\+bwd"),
    ({"dtype": "tf32"}, r"dtype='tf32': use one of bf16, fp16, fp32"),
    ({"dtype": "bf17"}, r"unknown dtype 'bf17'"),
    ({"seq": 0}, r"seq=0 must be positive"),
    ({"head_dim": "x"}, r"head_dim='x' is not a whole number"),
    ({"batch": 2.5}, r"batch=2.5 is not a whole number"),
    ({"heads": True}, r"heads=True is not a whole number"),
    ({"causal": "maybe"}, r"causal='maybe' is not true or false"),
    ({"seqlen": 512}, r"no parameter 'seqlen'"),
])
def test_bad_params_are_named_in_one_line(bench, params, message):
    with pytest.raises(GpubenchError, match=message) as exc:
        bench.normalize(params)
    assert "\n" not in str(exc.value)


# ---- FLOPs, bytes, memory ----

def test_flop_convention():
    fwd = attention_flops(2, 3, 128, 64, False, "fwd")
    assert fwd == 4 * 2 * 3 * 128**2 * 64
    assert attention_flops(2, 3, 128, 64, True, "fwd") == fwd / 2
    assert attention_flops(2, 3, 128, 64, False, "fwd+bwd") == 3.5 * fwd
    assert attention_flops(2, 3, 128, 64, True, "fwd+bwd") == 3.5 * fwd / 2


def test_workload_carries_flops_and_bytes(bench, cpu):
    p = bench.normalize({**SMALL, "direction": "fwd+bwd", "causal": True})
    work = bench.prepare(p, cpu)
    assert work.flops == 3.5 * 4 * 2 * 2 * 48**2 * 16 / 2
    # q, k, v, o forward; q, k, v, o, dO read and dq, dk, dv written backward; fp32.
    assert work.bytes_moved == 12 * 2 * 2 * 48 * 16 * 4
    m = bench.metrics(p, work, 1e-3, cpu, None, {})
    assert m["tflops"] == pytest.approx(work.flops / 1e-3 / 1e12)
    assert m["pct_of_peak"] is None and "gbps" not in m


def test_math_backend_that_cannot_fit_is_refused_not_run(bench, cpu):
    huge = {"impl": "sdpa-math", "dtype": "fp32", "batch": 1, "heads": 1, "seq": 1 << 20, "head_dim": 16}
    math = bench.normalize(huge)
    fused = bench.normalize({**huge, "impl": "sdpa-flash"})
    # B·H·N² fp32 scores: terabytes for the math path, megabytes of q, k, v, o for a fused one.
    assert bench.memory_bytes(math) > 3 * (1 << 20) ** 2 * 4
    assert bench.memory_bytes(fused) < 1 << 30
    assert memory_problem(bench, math, cpu) and memory_problem(bench, fused, cpu) is None
    rec = Runner(cpu, FAST, telemetry=None).run_case(Case("attention", huge))
    assert rec.status == "failed" and rec.error.startswith("out of memory: needs")


# ---- the float64 check ----

def test_reference_matches_float64_sdpa_across_chunks(monkeypatch):
    # Chunks of 7 query rows (a 37-row sequence): the causal mask must start at each chunk's row.
    monkeypatch.setattr(attn, "REF_CHUNK", 7 * 37 * 2)
    q, k, v, dout = (torch.randn(2, 37, 8, dtype=torch.float64) for _ in range(4))
    for causal in (False, True):
        out, dq, dk, dv = reference(q, k, v, causal, 0.3, dout)
        qq, kk, vv = (t.clone().requires_grad_() for t in (q, k, v))
        want = F.scaled_dot_product_attention(qq, kk, vv, is_causal=causal, scale=0.3)
        want.backward(dout)
        for got, ref in ((out, want), (dq, qq.grad), (dk, kk.grad), (dv, vv.grad)):
            assert torch.allclose(got, ref, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("direction", ["fwd", "fwd+bwd"])
@pytest.mark.parametrize("causal", [False, True])
def test_check_passes_sdpa_math_on_fresh_data(bench, cpu, direction, causal):
    p = bench.normalize({**SMALL, "direction": direction, "causal": causal})
    work = bench.prepare(p, cpu)
    with work.context():
        block = work.check()
    assert block["reference"].startswith("float64")
    assert 0 < block["rel_err"] <= block["tolerance"] == attn.TOLERANCE["fp32"]
    assert len(block["slices"]) == 4            # all of 2 batches × 2 heads at this size
    tensors = ["out", "dq", "dk", "dv"] if direction == "fwd+bwd" else ["out"]
    assert [k[:-len("_rel_err")] for k in block if k.endswith("_rel_err")] == tensors
    assert block["rel_err"] == max(block[f"{t}_rel_err"] for t in tensors)


def test_bf16_check_passes_within_its_tolerance(bench, cpu):
    p = bench.normalize({**SMALL, "dtype": "bf16", "direction": "fwd+bwd", "causal": True, "seq": 100})
    work = bench.prepare(p, cpu)
    with work.context():
        block = work.check()
    # bf16 output rounding alone is ~2e-3: well inside, but far from fp32's 1e-7.
    assert 1e-4 < block["rel_err"] <= block["tolerance"] == 1e-2


def _wrap_sdpa(monkeypatch, wrong):
    real = F.scaled_dot_product_attention
    monkeypatch.setattr(torch.nn.functional, "scaled_dot_product_attention",
                        lambda q, k, v, is_causal=False, scale=None: wrong(real, q, k, v, is_causal, scale))


class _ShrinkGrad(torch.autograd.Function):
    """Identity forward, backward 3% short: right output, wrong gradients."""

    @staticmethod
    def forward(ctx, x):
        return x.view_as(x)

    @staticmethod
    def backward(ctx, g):
        return g * 0.97


@pytest.mark.parametrize("direction, wrong, message", [
    ("fwd", lambda real, q, k, v, c, s: real(q, k, v, is_causal=not c, scale=s), r"out rel err"),
    ("fwd", lambda real, q, k, v, c, s: real(q, k, v, is_causal=c, scale=s) * 1.01, r"out rel err"),
    ("fwd", lambda real, q, k, v, c, s: real(q, k, v, is_causal=c, scale=s * 1.1), r"out rel err"),
    ("fwd", lambda real, q, k, v, c, s: torch.cat([real(q, k, v, is_causal=c, scale=s)[..., :-1, :],
                                                   torch.full_like(q[..., -1:, :], float("nan"))], -2),
     r"out has NaN"),
    ("fwd+bwd", lambda real, q, k, v, c, s: _ShrinkGrad.apply(real(q, k, v, is_causal=c, scale=s)),
     r"d[qkv] rel err"),
])
def test_check_fails_a_wrong_attention(cpu, monkeypatch, direction, wrong, message):
    _wrap_sdpa(monkeypatch, wrong)
    rec = run_case(cpu, direction=direction, causal=True)
    assert rec.status == "failed", rec.check
    assert rec.error.startswith("correctness check failed")
    assert rec.timing is None                   # a wrong kernel is never timed
    assert re.search(message, rec.error), rec.error


def test_right_output_wrong_gradient_passes_forward_only(cpu, monkeypatch):
    _wrap_sdpa(monkeypatch, lambda real, q, k, v, c, s: _ShrinkGrad.apply(real(q, k, v, is_causal=c, scale=s)))
    assert run_case(cpu, direction="fwd").status == "ok"
    assert run_case(cpu, direction="fwd+bwd").status == "failed"


# ---- what cannot run here ----

def test_triton_is_skipped_on_cpu(cpu):
    rec = run_case(cpu, impl="triton", direction="fwd+bwd")
    assert rec.status == "skipped" and "interpreter" in rec.reason and rec.timing is None


@pytest.mark.parametrize("direction", ["fwd", "fwd+bwd"])
@pytest.mark.parametrize("causal", [False, True])
def test_triton_case_runs_end_to_end_in_the_interpreter(cpu, monkeypatch, direction, causal):
    # The GPU path of the benchmark (probe, float64 check, timing, record) with the real
    # kernel, run by Triton's interpreter: only the speed is meaningless here.
    if os.environ.get("TRITON_INTERPRET") != "1":
        pytest.skip("needs Triton's interpreter (set by conftest on machines without CUDA)")
    monkeypatch.setattr(attn, "INTERPRETER_ON_CPU", True)
    rec = run_case(cpu, impl="triton", direction=direction, causal=causal, seq=37, head_dim=32,
                   batch=1)
    assert rec.status == "ok", rec.error or rec.reason
    assert rec.check["rel_err"] <= rec.check["tolerance"]
    names = {"out"} | ({"dq", "dk", "dv"} if direction == "fwd+bwd" else set())
    assert {f"{n}_rel_err" for n in names} <= set(rec.check)
    assert rec.metrics["tflops"] > 0


def test_backend_missing_on_cpu_is_skipped_by_trying_it(bench, cpu):
    with pytest.raises(SkipCase, match="sdpa-efficient cannot run this case on cpu"):
        bench.prepare(bench.normalize({**SMALL, "impl": "sdpa-efficient"}), cpu)


def test_sdpa_refusal_reason_comes_from_its_warnings(bench, cpu, monkeypatch):
    def refuse(real, q, k, v, c, s):
        warnings.warn("Flash attention requires the head dimension to be a multiple of 8")
        raise RuntimeError("No available kernel. Aborting execution.")

    _wrap_sdpa(monkeypatch, refuse)
    with pytest.raises(SkipCase, match="sdpa-flash cannot run.*head dimension to be a multiple of 8"):
        bench.prepare(bench.normalize({**SMALL, "impl": "sdpa-flash"}), cpu)


def test_out_of_memory_while_probing_is_a_failure_not_a_skip(cpu, monkeypatch):
    def oom(real, q, k, v, c, s):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 16.00 GiB")

    _wrap_sdpa(monkeypatch, oom)
    rec = run_case(cpu, impl="sdpa-flash")
    assert rec.status == "failed" and rec.error.startswith("out of memory")


# ---- across records ----

def _rec(impl, tflops=None, status="ok", **params):
    p = {"impl": impl, "direction": "fwd", "dtype": "bf16", "batch": 4, "heads": 16, "seq": 4096,
         "head_dim": 128, "causal": False, **params}
    return Record(benchmark="attention", params=p, status=status, device="cuda:0",
                  metrics={"tflops": tflops} if tflops else {},
                  reason="no" if status == "skipped" else None,
                  error="bad" if status == "failed" else None)


def test_compare_groups_cases_and_takes_ratios():
    records = [
        _rec("triton", 300.0), _rec("sdpa-flash", 250.0), _rec("sdpa-cudnn", 320.0),
        _rec("sdpa-efficient", 150.0), _rec("sdpa-math", 40.0),
        _rec("triton", 200.0, causal=True), _rec("sdpa-flash", 160.0, causal=True),
        _rec("sdpa-cudnn", status="skipped", causal=True), _rec("sdpa-math", status="failed", causal=True),
        _rec("triton", 80.0, seq=512), _rec("triton", 90.0, seq=512),          # two runs: the faster
        Record(benchmark="matmul", params={"dtype": "bf16"}, status="ok", device="cuda:0",
               metrics={"tflops": 700.0}),
    ]
    rows = compare(records)
    assert len(rows) == 3
    full, causal, lone = rows
    assert (full["causal"], full["seq"], full["direction"]) == (False, 4096, "fwd")
    assert full["triton_tflops"] == 300.0
    assert full["sdpa_tflops"] == {"sdpa-flash": 250.0, "sdpa-cudnn": 320.0,
                                   "sdpa-efficient": 150.0, "sdpa-math": 40.0}
    assert full["best_sdpa"] == "sdpa-cudnn" and full["best_sdpa_tflops"] == 320.0
    assert full["triton_vs_best"] == pytest.approx(300 / 320)
    assert full["triton_vs_cudnn"] == pytest.approx(300 / 320)
    assert causal["causal"] is True and causal["best_sdpa"] == "sdpa-flash"
    assert causal["triton_vs_best"] == pytest.approx(200 / 160)
    assert causal["triton_vs_cudnn"] is None            # cuDNN skipped: no gap to state
    assert set(causal["sdpa_tflops"]) == {"sdpa-flash"}
    assert lone["triton_tflops"] == 90.0 and lone["best_sdpa"] is None and lone["triton_vs_best"] is None


def test_report_prints_the_comparison():
    records = [_rec("triton", 300.0), _rec("sdpa-flash", 250.0), _rec("sdpa-cudnn", 320.0),
               _rec("sdpa-efficient", status="skipped"),
               Record(benchmark="attention", params={"seq": 0}, status="failed", device="cuda:0",
                      error="attention seq=0 must be positive")]
    text = render(Run(suite="attention", env={}, records=records, status="complete"))
    assert "attention: Triton vs SDPA" in text
    table = text.split("attention: Triton vs SDPA", 1)[1]
    line = next(l for l in table.splitlines() if "4×16×4096×128" in l)
    assert "300" in line and "320" in line and "cudnn" in line and "0.94×" in line
    assert "skipped (1): sdpa-efficient fwd bf16 4×16×4096×128 — no" in text
    assert "failed (1): attention seq=0 — attention seq=0 must be positive" in text


# ---- the suite ----

def test_gpu_suite_shapes(cpu):
    from dataclasses import replace

    gpu = replace(cpu, type="cuda", index=0)
    cases = get_suite("attention").items(gpu)
    assert {c.params["seq"] for c in cases} == {512, 1024, 2048, 4096, 8192, 16384}
    for c in cases:
        p = c.params
        assert p["batch"] * p["seq"] == 16384 and p["heads"] * p["head_dim"] == 2048
        assert p["dtype"] == "bf16"
    math = {c.params["seq"] for c in cases if c.params["impl"] == "sdpa-math"}
    assert max(math) == 8192
    # 6 seq × 2 head_dim × 2 causal × 2 directions × 5 impls, less math at 16k.
    assert len(cases) == 240 - 8
    bench = get_benchmark("attention")
    # Nothing the suite asks for is refused on an 80 GB GPU by the estimate.
    assert max(bench.memory_bytes(bench.normalize(c.params)) for c in cases) < 75 * 2**30


def _invoke(capsys, *args):
    with pytest.raises(SystemExit) as exc:
        main(list(args))
    out, err = capsys.readouterr()
    return exc.value.code, out, err


def test_cpu_suite_end_to_end(capsys, tmp_path):
    out_file = tmp_path / "attn.json"
    code, out, err = _invoke(capsys, "run", "--suite", "attention", "--device", "cpu",
                             "--out", str(out_file))
    assert code == 0, err
    run = load_run(out_file)
    assert run.status == "complete" and run.suite == "attention"
    ok = [r for r in run.records if r.status == "ok"]
    skipped = [r for r in run.records if r.status == "skipped"]
    assert len(ok) == 8 and len(skipped) == 8 and len(run.records) == 16
    assert {r.params["impl"] for r in ok} == {"sdpa-math"}
    assert {(r.params["direction"], r.params["causal"], r.params["seq"]) for r in ok} == {
        (d, c, s) for d in ("fwd", "fwd+bwd") for c in (False, True) for s in (64, 100)}
    for r in ok:
        p = r.params
        assert r.metrics["tflops"] > 0 and r.metrics["pct_of_peak"] is None
        assert r.work["flops"] == attention_flops(p["batch"], p["heads"], p["seq"], p["head_dim"],
                                                  p["causal"], p["direction"])
        assert r.metrics["tflops"] == pytest.approx(r.work["flops"] / r.timing["median_s"] / 1e12)
        assert r.check["rel_err"] <= r.check["tolerance"]
        assert ("dv_rel_err" in r.check) == (p["direction"] == "fwd+bwd")
    assert all(r.params["impl"] == "triton" and "interpreter" in r.reason for r in skipped)
    assert "attention: Triton vs SDPA" in out and "skipped (8): triton" in out
