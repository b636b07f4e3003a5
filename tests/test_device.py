from types import SimpleNamespace

import pytest
import torch

from gpubench.device import resolve_device
from gpubench.errors import GpubenchError
from gpubench.hardware import match_gpu
from gpubench.registry import get_benchmark


def fake_cuda(monkeypatch, name, memory_gib, cc, count=1):
    props = SimpleNamespace(name=name, total_memory=int(memory_gib * 2**30), major=cc[0], minor=cc[1],
                            multi_processor_count=132, L2_cache_size=50 * 2**20)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: count)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda i: props)
    monkeypatch.setattr(torch.cuda, "set_device", lambda i: None)


def test_cpu_device(cpu):
    assert cpu.type == "cpu" and cpu.label == "cpu" and cpu.spec is None
    assert cpu.total_memory_bytes > 0 and cpu.cache_bytes > 0
    assert cpu.peak_tflops("bf16") is None
    assert cpu.unsupported_reason("fp32") is None
    assert "TF32" in cpu.unsupported_reason("tf32")
    assert cpu.as_dict()["unsupported"].keys() == {"tf32"}


def test_known_gpu_gets_its_dense_peak(monkeypatch):
    fake_cuda(monkeypatch, "NVIDIA H100 80GB HBM3", 79.1, (9, 0))
    dev = resolve_device("cuda:0")
    assert dev.spec.key == "h100-sxm" and dev.slug == "h100-sxm"
    assert dev.peak_tflops("bf16") == 989 and dev.peak_tflops("fp8_e4m3") == 1979
    assert dev.peak_tflops("tf32") == 494.5 and dev.peak_tflops("fp32") == 67
    assert all(dev.unsupported_reason(d) is None for d in ("fp32", "tf32", "bf16", "fp16", "fp8_e4m3"))
    # % of peak is measured TFLOP/s over the dense figure.
    mm = get_benchmark("matmul")
    params = mm.normalize({"dtype": "bf16", "m": 8192, "n": 8192, "k": 8192})
    work = SimpleNamespace(flops=2 * 8192 ** 3, bytes_moved=None, info={})
    m = mm.metrics(params, work, 2 * 8192 ** 3 / 791.2e12, dev, {"power_w_mean": 650.0}, {})
    assert m["tflops"] == pytest.approx(791.2)
    assert m["pct_of_peak"] == pytest.approx(80.0)
    assert m["energy_per_tflop_j"] == pytest.approx(650 / 791.2)


def test_unknown_gpu_gets_no_peak_and_a_warning(monkeypatch):
    fake_cuda(monkeypatch, "NVIDIA Quantum X1000", 100, (10, 0))
    with pytest.warns(UserWarning, match="not in gpubench's hardware table"):
        dev = resolve_device("cuda")
    assert dev.spec is None and dev.peak_tflops("bf16") is None
    assert dev.slug == "nvidia-quantum-x1000"
    mm = get_benchmark("matmul")
    params = mm.normalize({"dtype": "bf16", "m": 8, "n": 8, "k": 8})
    m = mm.metrics(params, SimpleNamespace(flops=1e12, bytes_moved=None, info={}), 1.0, dev, None, {})
    assert m["tflops"] == 1.0 and m["pct_of_peak"] is None


@pytest.mark.parametrize("name, mem, cc, dtype, needle", [
    ("NVIDIA A100-SXM4-80GB", 79.2, (8, 0), "fp8_e4m3", "8.9"),
    ("Tesla V100-SXM2-32GB", 31.7, (7, 0), "bf16", "8.0"),
    ("Tesla V100-SXM2-32GB", 31.7, (7, 0), "tf32", "8.0"),
])
def test_capability_gates(monkeypatch, name, mem, cc, dtype, needle):
    fake_cuda(monkeypatch, name, mem, cc)
    dev = resolve_device("cuda")
    reason = dev.unsupported_reason(dtype)
    assert reason and needle in reason


def test_fp16_runs_on_volta(monkeypatch):
    fake_cuda(monkeypatch, "Tesla V100-SXM2-32GB", 31.7, (7, 0))
    dev = resolve_device("cuda")
    assert dev.unsupported_reason("fp16") is None and dev.peak_tflops("fp16") == 125


def test_bad_device_strings(monkeypatch):
    fake_cuda(monkeypatch, "NVIDIA H100 80GB HBM3", 79.1, (9, 0), count=2)
    with pytest.raises(GpubenchError, match="only 2 CUDA device"):
        resolve_device("cuda:5")
    with pytest.raises(GpubenchError, match="whole number"):
        resolve_device("cuda:x")
    with pytest.raises(GpubenchError, match="not a device"):
        resolve_device("gpu0")


def test_no_cuda(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(GpubenchError, match="no CUDA device"):
        resolve_device("cuda")
    assert resolve_device("auto").type == "cpu"


def test_kernels_subpackage_installed():
    import gpubench.kernels

    assert gpubench.kernels.__name__ == "gpubench.kernels"
    assert match_gpu("cpu") is None


def test_cuda_n_becomes_the_current_device(monkeypatch):
    """--device cuda:1 must make GPU 1 current: CUDA events, the default stream and Triton's launches
    follow the current device, not the tensors' device."""
    fake_cuda(monkeypatch, "NVIDIA H100 80GB HBM3", 79.1, (9, 0), count=2)
    chosen = []
    monkeypatch.setattr(torch.cuda, "set_device", chosen.append)
    assert resolve_device("cuda:1").index == 1 and chosen == [1]
    resolve_device("cuda")
    assert chosen == [1, 0]
