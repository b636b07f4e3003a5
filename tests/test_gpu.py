"""Checks that need a CUDA device. On a CPU they skip with the reason; the same code
paths are tested on the CPU elsewhere (the host-clock timer, the fake-NVML telemetry,
the CPU suite), so these are not the only check of their code."""

import pytest
import torch

from gpubench.registry import Case

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]


@pytest.fixture(scope="module")
def gpu():
    from gpubench.device import resolve_device

    return resolve_device("cuda")


@pytest.mark.parametrize("dtype, extra", [("fp32", {}), ("tf32", {}), ("bf16", {}), ("fp16", {}),
                                          ("fp8_e4m3", {"scaling": "tensor"}),
                                          ("fp8_e4m3", {"scaling": "row"})])
@pytest.mark.parametrize("shape", [(1024, 1024, 1024), (1000, 1536, 771)])
def test_matmul_check_and_time_on_gpu(gpu, dtype, extra, shape):
    from gpubench.runner import Runner
    from gpubench.timing import TimerConfig

    if gpu.unsupported_reason(dtype):
        pytest.skip(gpu.unsupported_reason(dtype))
    m, n, k = shape
    if dtype.startswith("fp8") and (m % 16 or n % 16 or k % 16):
        pytest.skip("_scaled_mm needs dimensions divisible by 16")
    quick = TimerConfig.for_device(gpu, quick=True)
    rec = Runner(gpu, quick).run_case(Case("matmul", {"dtype": dtype, "m": m, "n": n, "k": k, **extra}))
    assert rec.status == "ok", rec.error
    assert rec.timing["method"] == "cuda_event" and rec.timing["l2_flush"]
    assert rec.check["rel_err"] <= rec.check["tolerance"]
    assert rec.metrics["tflops"] > 0
    if gpu.spec is not None:
        assert 0 < rec.metrics["pct_of_peak"] < 100


def test_tf32_differs_from_fp32(gpu):
    """If the TF32 switch did nothing, tf32 and fp32 would agree to fp32 rounding. The modes are
    the project's own mapping (float32_matmul_mode, what the matmul benchmark runs under), so a
    `tf32` that never enables TF32 fails here too."""
    from gpubench.dtypes import float32_matmul_mode, float32_matmul_precision

    if gpu.unsupported_reason("tf32"):
        pytest.skip(gpu.unsupported_reason("tf32"))
    a = torch.randn(512, 512, device=gpu.torch_device)
    with float32_matmul_precision(float32_matmul_mode("fp32")):
        exact = a @ a
    with float32_matmul_precision(float32_matmul_mode("tf32")):
        fast = a @ a
    ref = (a.double() @ a.double())
    assert (exact.double() - ref).norm() / ref.norm() < 1e-5
    assert (fast.double() - ref).norm() / ref.norm() > 1e-5


def test_telemetry_recorded_when_nvml_works(gpu):
    from gpubench.runner import Runner
    from gpubench.telemetry import nvml_unavailable_reason, open_source

    if open_source(gpu.index) is None:
        pytest.skip(f"NVML not usable here: {nvml_unavailable_reason()}")
    rec = Runner(gpu).run_case(Case("matmul", {"dtype": "bf16", "m": 4096, "n": 4096, "k": 4096}))
    assert rec.status == "ok", rec.error
    tel = rec.telemetry
    assert tel is not None and tel["samples"] >= 2
    # A sandboxed or virtualised driver may report no power, energy or clocks at all: each field
    # is a positive number or None, never a zero or a guess, and energy per TFLOP follows power.
    for key in ("power_w_mean", "sm_clock_mhz_median"):
        assert tel[key] is None or tel[key] > 0, (key, tel[key])
    assert tel["energy_j"] is None or tel["energy_j"] >= 0
    if tel["power_w_mean"] is None:
        assert rec.metrics["energy_per_tflop_j"] is None
    else:
        assert rec.metrics["energy_per_tflop_j"] > 0


def test_env_on_gpu(gpu):
    from gpubench.env import fingerprint

    env = fingerprint(gpu)
    assert env["device"]["type"] == "cuda" and env["gpu"]["count"] >= 1
    assert env["software"]["torch_cuda"] or env["software"]["torch_hip"]


def test_cuda_graph_replay_is_faster_for_tiny_kernels(gpu):
    from gpubench.timing import Timer

    x = torch.randn(256, device=gpu.torch_device)
    timer = Timer(gpu)
    eager = timer.measure(lambda: x.add_(1.0))
    graphed = timer.measure(lambda: x.add_(1.0), cuda_graph=True)
    assert graphed.method == "cuda_graph"
    assert graphed.stats.median_s <= eager.stats.median_s
