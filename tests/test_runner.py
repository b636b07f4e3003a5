import pytest
import torch

from gpubench.errors import CheckFailed, SkipCase
from gpubench.registry import BENCHMARKS, Benchmark, Case, Workload, get_benchmark
from gpubench.results import ResultWriter, Run, load_run
from gpubench.runner import Runner
from gpubench.timing import TimerConfig

FAST = TimerConfig(warmup_s=0.0, min_warmup_iters=1, measure_s=0.0, min_iters=3, max_iters=3)


class Scripted(Benchmark):
    """A benchmark whose behaviour the params choose: ok, skip, raise, oom, wrong, huge."""

    name = "scripted"
    description = "test double"

    def memory_bytes(self, params):
        return 1 << 60 if params.get("mode") == "huge" else 1024

    def prepare(self, params, device):
        mode = params["mode"]
        if mode == "skip":
            raise SkipCase("not on this device")
        if mode == "raise":
            raise RuntimeError("kernel launch failed\nsecond line")
        if mode == "oom":
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 80.00 GiB")
        x = torch.randn(64, 64)

        def check():
            if mode == "wrong":
                raise CheckFailed("rel err 3.0e-01 > tolerance 1e-02 against float64")
            return {"reference": "float64", "rel_err": 0.0, "tolerance": 1e-6}

        return Workload(fn=lambda: x @ x, flops=2 * 64 ** 3, check=check)

    def metrics(self, params, work, seconds, device, telemetry, aux_s):
        return {"tflops": work.flops / seconds / 1e12}


@pytest.fixture
def scripted():
    BENCHMARKS["scripted"] = Scripted()
    yield
    del BENCHMARKS["scripted"]


def test_suite_survives_every_kind_of_failure(tmp_path, cpu, scripted):
    path = tmp_path / "r.json"
    writer = ResultWriter(path, Run(suite="t", env={}))
    modes = ["ok", "skip", "raise", "oom", "wrong", "huge", "ok"]
    records = Runner(cpu, FAST, writer).run([Case("scripted", {"mode": m}) for m in modes])
    assert [r.status for r in records] == ["ok", "skipped", "failed", "failed", "failed", "failed", "ok"]
    by = dict(zip(modes[1:6], records[1:6]))
    assert by["skip"].reason == "not on this device"
    assert by["raise"].error == "RuntimeError: kernel launch failed"
    assert by["oom"].error.startswith("out of memory:")
    assert by["wrong"].error.startswith("correctness check failed")
    assert "needs" in by["huge"].error and "GiB" in by["huge"].error
    assert records[-1].metrics["tflops"] > 0
    on_disk = load_run(path)
    assert len(on_disk.records) == len(modes) and on_disk.status == "running"


def test_a_crash_keeps_finished_records(tmp_path, cpu, scripted, monkeypatch):
    path = tmp_path / "r.json"
    writer = ResultWriter(path, Run(suite="t", env={}))
    runner = Runner(cpu, FAST, writer)
    real = runner.run_case
    count = {"n": 0}

    def dies_on_third(case, timer_config=None):
        count["n"] += 1
        if count["n"] == 3:
            raise KeyboardInterrupt
        return real(case, timer_config)

    monkeypatch.setattr(runner, "run_case", dies_on_third)
    with pytest.raises(KeyboardInterrupt):
        runner.run([Case("scripted", {"mode": "ok"})] * 5)
    assert len(load_run(path).records) == 2


def test_unknown_benchmark_in_a_suite_is_a_failed_record(cpu):
    rec = Runner(cpu, FAST).run_case(Case("no-such-bench", {}))
    assert rec.status == "failed" and "unknown benchmark" in rec.error


def test_real_matmul_record_content(cpu):
    rec = Runner(cpu, FAST).run_case(Case("matmul", {"dtype": "bf16", "m": 64, "n": 48, "k": 32}))
    assert rec.status == "ok", rec.error
    assert rec.params == {"dtype": "bf16", "m": 64, "n": 48, "k": 32}
    assert rec.timing["method"] == "host_clock" and rec.timing["l2_flush"] is True
    assert rec.timing["n"] == 3 and rec.timing["median_s"] > 0
    assert rec.work["flops"] == 2 * 64 * 48 * 32
    assert rec.metrics["tflops"] == pytest.approx(rec.work["flops"] / rec.timing["median_s"] / 1e12)
    assert rec.check["rel_err"] < rec.check["tolerance"]
    assert rec.telemetry is None


def test_fp8_record_has_scaling_timed_separately(cpu):
    rec = Runner(cpu, FAST).run_case(Case("matmul", {"dtype": "fp8_e4m3", "m": 64, "n": 64, "k": 64,
                                                     "scaling": "tensor"}))
    assert rec.status == "ok", rec.error
    assert rec.metrics["scaling_s"] > 0
    assert rec.metrics["tflops_incl_scaling"] < rec.metrics["tflops"]
    assert rec.timing["aux"]["scaling"]["median_s"] == rec.metrics["scaling_s"]


def test_mamf_search_on_cpu(cpu):
    from gpubench.registry import Search

    runner = Runner(cpu, FAST)
    records = runner.run([Search("mamf", {"dtype": "fp32", "lo": 64, "hi": 256, "budget_s": 4.0,
                                          "step_min": 64})])
    summary = records[-1]
    assert summary.benchmark == "mamf" and summary.status == "ok", summary.error
    probes = [r for r in records if r.params.get("search") == "mamf"]
    assert summary.metrics["probes"] == len(probes) >= 3
    best_probe = max(probes, key=lambda r: r.metrics.get("tflops") or 0)
    assert (summary.metrics["best_m"], summary.metrics["best_n"], summary.metrics["best_k"]) == \
        (best_probe.params["m"], best_probe.params["n"], best_probe.params["k"])
    assert any(r.params.get("search") == "mamf-best" for r in records)


def test_get_benchmark_lists_known_names():
    with pytest.raises(Exception, match="known: .*matmul"):
        get_benchmark("matmull")
