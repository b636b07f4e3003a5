"""transformer-step on a CUDA device. On a CPU these skip with the reason; the same
code (model, step, check, records, FP8 linears through _scaled_mm, Triton attention
in the interpreter, compile) is exercised on the CPU in test_transformer_bench.py,
test_gpt_model.py and test_float8_linear.py."""

import pytest
import torch

from gpubench.registry import Case

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]


@pytest.fixture(scope="module")
def gpu():
    from gpubench.device import resolve_device

    return resolve_device("cuda")


def step(gpu, **params):
    from gpubench.runner import Runner
    from gpubench.timing import TimerConfig

    quick = TimerConfig.for_device(gpu, quick=True)
    case = Case("transformer-step", {"model": "125m", "micro_batch": 4, "seq": 1024, **params})
    return Runner(gpu, quick).run_case(case)


@pytest.mark.parametrize("dtype", ["fp32", "tf32", "bf16", "fp16", "fp8_e4m3"])
def test_step_checks_times_and_reports_on_gpu(gpu, dtype):
    if gpu.unsupported_reason(dtype):
        pytest.skip(gpu.unsupported_reason(dtype))
    rec = step(gpu, dtype=dtype)
    assert rec.status == "ok", rec.error
    assert rec.timing["method"] == "cuda_event"
    assert rec.check["grad_rel_err"] <= rec.check["tolerance"]
    m = rec.metrics
    assert m["peak_memory_source"] == "torch.cuda.max_memory_allocated"
    assert 0 < m["peak_memory_bytes"] < gpu.total_memory_bytes
    if gpu.spec is not None:
        assert 0 < m["mfu"] < 1 and m["hfu"] == pytest.approx(m["mfu"])


def test_bf16_is_faster_than_fp32_on_gpu(gpu):
    if gpu.unsupported_reason("bf16"):
        pytest.skip(gpu.unsupported_reason("bf16"))
    fp32, bf16 = step(gpu, dtype="fp32"), step(gpu, dtype="bf16")
    assert bf16.metrics["tokens_per_s"] > 1.5 * fp32.metrics["tokens_per_s"]


def test_checkpointing_lowers_peak_memory_on_gpu(gpu):
    none, every = step(gpu, dtype="bf16"), step(gpu, dtype="bf16", checkpointing="every")
    assert every.metrics["peak_memory_bytes"] < none.metrics["peak_memory_bytes"]
    assert every.metrics["hfu"] is None or every.metrics["hfu"] > every.metrics["mfu"]


def test_triton_attention_in_the_step_on_gpu(gpu):
    rec = step(gpu, dtype="bf16", attention="triton")
    assert rec.status == "ok", rec.error
    assert rec.check["grad_rel_err"] <= rec.check["tolerance"]


def test_compiled_step_on_gpu(gpu):
    rec = step(gpu, dtype="bf16", compile=True)
    assert rec.status == "ok", rec.error
    assert rec.check["compiled_vs_eager_loss_rel_err"] < 5e-2
