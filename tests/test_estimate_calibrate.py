"""build_profile: result files → a measured calibration profile.

Result files are written with the real writer into tmp_path, with an environment
shaped like the one a CUDA run records; nothing here is put in results/.
"""

from __future__ import annotations

import glob
import json
from pathlib import Path

import pytest

from gpubench.errors import GpubenchError, ResultFileError
from gpubench.estimate.calibrate import build_profile
from gpubench.estimate.profile import DEFAULTS, Profile
from gpubench.hardware import GPUS
from gpubench.results import Record, ResultWriter, Run

ROOT = Path(__file__).resolve().parents[1]
H100 = GPUS["h100-sxm"]
A100 = GPUS["a100-sxm-80gb"]


def env_for(spec, name):
    return {
        "device": {"type": "cuda", "index": 0, "label": "cuda:0", "name": name,
                   "total_memory_bytes": int(spec.memory_gb * 1.06e9), "capability": [9, 0],
                   "multiprocessors": 132, "is_rocm": False, "spec_key": spec.key,
                   "peak_tflops": dict(spec.peak_tflops),
                   "peak_mem_bandwidth_gbps": spec.mem_bandwidth_gbps, "unsupported": {}},
        "gpu": {"driver_version": "560.35.03", "count": 1, "names": [name]},
        "software": {"gpubench": "0.1.0", "torch": "2.5.1"},
        "host": {"hostname": "test-node"},
    }


H100_ENV = env_for(H100, "NVIDIA H100 80GB HBM3")
A100_ENV = env_for(A100, "NVIDIA A100-SXM4-80GB")


def write(path, records, env=H100_ENV, suite="mixed-precision", status="complete"):
    w = ResultWriter(path, Run(suite=suite, env=env))
    for r in records:
        w.add(r)
    w.close(status)
    return path


def mm(dtype, m, n, k, tflops, spec=H100, status="ok", **params):
    peak = spec.peak(dtype)
    metrics = {"tflops": tflops, "peak_tflops": peak, "pct_of_peak": 100 * tflops / peak} if status == "ok" else {}
    return Record(benchmark="matmul", params={"m": m, "n": n, "k": k, "dtype": dtype, **params},
                  status=status, device="cuda:0", metrics=metrics,
                  error=None if status == "ok" else "boom")


def mamf(dtype, tflops, shape=(8192, 8192, 8192), spec=H100):
    peak = spec.peak(dtype)
    m, n, k = shape
    return Record(benchmark="mamf", params={"dtype": dtype}, status="ok", device="cuda:0",
                  metrics={"tflops": tflops, "peak_tflops": peak, "pct_of_peak": 100 * tflops / peak,
                           "best_m": m, "best_n": n, "best_k": k, "probes": 40})


def membw(size, gbps, spec=H100):
    return Record(benchmark="membw", params={"size_bytes": size, "op": "copy"}, status="ok",
                  device="cuda:0", metrics={"gbps": gbps, "peak_gbps": spec.mem_bandwidth_gbps,
                                            "pct_of_peak": 100 * gbps / spec.mem_bandwidth_gbps})


def attn(direction, frac, spec=H100, causal=True, seq=4096, dtype="bf16"):
    peak = spec.peak(dtype)
    return Record(benchmark="flash_attention",
                  params={"causal": causal, "direction": direction, "dtype": dtype, "seq_len": seq,
                          "heads": 32, "head_dim": 128, "batch": 4},
                  status="ok", device="cuda:0",
                  metrics={"tflops": frac * peak, "pct_of_peak": 100 * frac})


def all_reduce(world_size, size, busbw):
    return Record(benchmark="all_reduce", params={"world_size": world_size, "size_bytes": size,
                                                  "dtype": "bf16"},
                  status="ok", device="cuda:0",
                  metrics={"busbw_gbps": busbw, "algbw_gbps": busbw * world_size / (2 * (world_size - 1))})


GiB, MiB = 1 << 30, 1 << 20


@pytest.fixture
def h100_file(tmp_path):
    return write(tmp_path / "h100.json", [
        mm("bf16", 4096, 4096, 4096, 780.0),
        mm("bf16", 8192, 8192, 8192, 800.0, search="mamf-best"),
        mm("bf16", 1024, 1024, 1024, 700.0),               # exactly 2^30: counts
        mm("bf16", 512, 512, 512, 900.0),                  # faster, but tiny: ignored
        mm("bf16", 8192, 8192, 8192, 850.0, search="mamf"),  # quick-timed probe: not the ceiling
        mamf("bf16", 820.0),
        mm("bf16", 8192, 8192, 8192, 5000.0, status="failed"),  # not ok: ignored, no error
        mm("fp8_e4m3", 8192, 8192, 8192, 1380.0, scaling="tensor"),
        mm("fp8_e4m3", 8192, 8192, 8192, 1400.0, scaling="row"),
        mm("fp8_e4m3", 256, 256, 256, 1900.0, scaling="tensor"),
        membw(1 * GiB, 3000.0),
        membw(256 * MiB, 2950.0),
        membw(64 * MiB, 3300.0),                           # small: not preferred
        membw(8 * MiB, 5000.0),                            # served from L2: skipped, no error
        Record(benchmark="some_future_thing", params={"x": 1}, status="ok", device="cuda:0",
               metrics={"tflops": 1e6}),
    ])


def test_ceilings_membw_defaults_and_provenance(h100_file):
    prof, notes = build_profile([h100_file])
    assert prof.name == "measured-h100-sxm" and prof.gpu_key == "h100-sxm"
    assert prof.carried_from is None
    # best large-shape record: the mamf summary at 820 (tiny 900 and probe 850 ignored)
    assert prof.gemm_ceiling["bf16"] == pytest.approx(820.0 / 989.0)
    assert prof.gemm_ceiling["fp8"] == pytest.approx(1400.0 / 1979.0)
    assert "fp8_e4m3" not in prof.gemm_ceiling
    assert prof.ceiling("fp8_e4m3") == pytest.approx(1400.0 / 1979.0)
    # not measured: the published H100 profile's figures
    hopper = DEFAULTS["hopper"]
    for key in ("fp16", "tf32", "fp32"):
        assert prof.gemm_ceiling[key] == hopper.gemm_ceiling[key]
    assert prof.mem_bw_efficiency == pytest.approx(3000.0 / 3350.0)
    assert prof.attention_fwd_efficiency == hopper.attention_fwd_efficiency
    assert prof.intra_node_efficiency == hopper.intra_node_efficiency
    assert prof.kernel_gap_s == hopper.kernel_gap_s

    text = "\n".join(notes)
    assert all("\n" not in n for n in notes)
    assert any(n.startswith("measured gemm_ceiling.bf16") and "mamf 8192×8192×8192" in n
               and str(h100_file) in n for n in notes)
    assert any(n.startswith("measured gemm_ceiling.fp8") and "fp8_e4m3" in n for n in notes)
    assert any(n.startswith("measured mem_bw_efficiency") and "1024 MiB" in n for n in notes)
    assert any(n.startswith("default gemm_ceiling.tf32") and "published-h100" in n for n in notes)
    for field in ("attention_fwd_efficiency", "attention_bwd_efficiency", "intra_node_efficiency",
                  "inter_node_efficiency", "tp_overlap", "dp_overlap", "kernel_gap_s"):
        assert any(n.startswith(f"default {field} = ") and "published-h100" in n for n in notes), field
    assert "smaller than 1024³" in text
    assert "served from cache" in text
    assert "some_future_thing" in text

    files = [p for p in prof.provenance if p["kind"] == "measured"]
    assert [p["file"] for p in files] == [str(h100_file)]
    run = json.loads(h100_file.read_text())
    assert files[0]["run_id"] == run["run_id"] and files[0]["started_at"] == run["started_at"]
    assert files[0]["gpu"] == "NVIDIA H100 80GB HBM3" and files[0]["spec_key"] == "h100-sxm"
    assert files[0]["suite"] == "mixed-precision"
    (pub,) = [p for p in prof.provenance if p["kind"] == "published"]
    assert pub["source"] == "published-h100"
    assert "gemm_ceiling.tf32" in pub["fields"] and "tp_overlap" in pub["fields"]
    assert "gemm_ceiling.bf16" not in pub["fields"] and "mem_bw_efficiency" not in pub["fields"]


def test_profile_round_trips(h100_file, tmp_path):
    prof, _ = build_profile([h100_file])
    out = tmp_path / "profile.json"
    prof.save(out)
    loaded = Profile.load(out)
    assert loaded == prof
    assert loaded.ceiling("bf16") == pytest.approx(820.0 / 989.0)


def test_several_files_best_wins_and_all_listed(h100_file, tmp_path):
    second = write(tmp_path / "h100-b.json", [mm("bf16", 16384, 8192, 8192, 830.0)],
                   suite="matmul-sweep", status="interrupted")
    prof, notes = build_profile([h100_file, second])
    assert prof.gemm_ceiling["bf16"] == pytest.approx(830.0 / 989.0)
    assert [p["file"] for p in prof.provenance if p["kind"] == "measured"] == [str(h100_file), str(second)]
    assert any(str(second) in n and "status interrupted" in n for n in notes)


def test_mixing_gpus_is_an_error(h100_file, tmp_path):
    a100 = write(tmp_path / "a100.json", [mm("bf16", 8192, 8192, 8192, 270.0, spec=A100)], env=A100_ENV)
    with pytest.raises(GpubenchError) as e:
        build_profile([h100_file, a100])
    assert "h100-sxm" in str(e.value) and "a100-sxm-80gb" in str(e.value)


def test_a_cpu_run_calibrates_to_its_measured_rates_real_file():
    files = sorted(glob.glob(str(ROOT / "results" / "cpu-*.json")))
    if not files:
        pytest.skip("no committed CPU result file")
    prof, notes = build_profile([files[0]])
    assert prof.rates_only and prof.gpu_key == "" and any("rates only" in n for n in notes)
    run = json.loads(Path(files[0]).read_text())
    want = {(r["params"]["m"], r["params"]["n"], r["params"]["k"]): r["timing"]["median_s"]
            for r in run["records"] if r["benchmark"] == "matmul" and r["status"] == "ok"
            and r["params"]["dtype"] == "fp32"}
    got = {(m, n, k): t for m, n, k, t, _ in prof.rates["gemm"]["fp32"]}
    assert got == want and want      # every fp32 shape, its own median time, nothing invented


def test_gpu_without_spec_key_holds_rates_only(tmp_path):
    env = json.loads(json.dumps(H100_ENV))
    env["device"].update(name="NVIDIA Mystery GPU", spec_key=None, peak_tflops=None)
    f = write(tmp_path / "odd.json", [mm("bf16", 8192, 8192, 8192, 500.0)], env=env)
    prof, _ = build_profile([f])
    assert prof.rates_only and prof.measured_rates().has_gemm("bf16")
    with pytest.raises(GpubenchError, match="NVIDIA Mystery GPU.*no datasheet peak"):
        prof.carried_to("h100-sxm")


def test_not_a_result_file(tmp_path):
    bad = tmp_path / "notes.json"
    bad.write_text('{"hello": 1}')
    with pytest.raises(ResultFileError):
        build_profile([bad])
    with pytest.raises(GpubenchError):
        build_profile([])


def test_rate_above_peak_is_an_error(tmp_path):
    f = write(tmp_path / "bad.json", [mm("bf16", 4096, 4096, 4096, 700.0),
                                      mm("bf16", 8192, 8192, 8192, 1200.0)])
    with pytest.raises(GpubenchError) as e:
        build_profile([f])
    msg = str(e.value)
    assert str(f) in msg and "record 1" in msg and "absurd" in msg and "matmul[" in msg


def test_nothing_measurable_is_an_error(tmp_path):
    f = write(tmp_path / "empty.json", [mm("bf16", 8192, 8192, 8192, 0, status="failed"),
                                        mm("bf16", 256, 256, 256, 100.0)])
    with pytest.raises(GpubenchError, match="cannot calibrate h100-sxm"):
        build_profile([f])


def test_membw_only_small_buffers_says_so(tmp_path):
    f = write(tmp_path / "small.json", [membw(64 * MiB, 2800.0), membw(32 * MiB, 2700.0)])
    prof, notes = build_profile([f])
    assert prof.mem_bw_efficiency == pytest.approx(2800.0 / 3350.0)
    (note,) = [n for n in notes if n.startswith("measured mem_bw_efficiency")]
    assert "NO buffer of 256 MiB" in note and "64 MiB" in note
    # only membw measured: every GEMM ceiling is the published one
    assert prof.gemm_ceiling == DEFAULTS["hopper"].gemm_ceiling


def test_attention_backward_derived(tmp_path):
    # A100: the published profile is unfused attention; measuring flash attention replaces it.
    # Causal case: forward at 0.625 of peak, forward+backward at 0.5. Per unit forward FLOPs F:
    # t_f = 1/0.625 = 1.6, t_fb = 3.5/0.5 = 7, t_b = 5.4, backward rate = 2.5/5.4 = 25/54.
    f = write(tmp_path / "attn.json", [
        attn("fwd", 0.625, spec=A100),
        attn("fwd", 0.60, spec=A100),                       # a slower repeat of the same case
        attn("fwd+bwd", 0.5, spec=A100),
        attn("fwd", 0.70, spec=A100, causal=False),         # faster forward, no fwd+bwd partner
        Record(benchmark="flash_attention", params={"direction": "fwd", "dtype": "fp8_e4m3"},
               status="ok", device="cuda:0", metrics={"tflops": 1.0}),  # fp8: ignored
    ], env=A100_ENV, suite="attention")
    prof, notes = build_profile([f])
    assert DEFAULTS["ampere"].attention == "unfused"
    assert prof.attention == "flash"
    assert prof.attention_fwd_efficiency == pytest.approx(0.70)
    assert prof.attention_bwd_efficiency == pytest.approx(25 / 54)
    (note,) = [n for n in notes if n.startswith("measured attention_bwd_efficiency")]
    assert "derived 2.5/(3.5/0.5 − 1/0.625)" in note
    assert any("fp8_e4m3 attention" in n for n in notes)
    assert prof.gemm_ceiling == DEFAULTS["ampere"].gemm_ceiling
    assert any(p.get("source") == "published-a100" for p in prof.provenance)


def test_attention_direct_backward_and_absurd_pair(tmp_path):
    f = write(tmp_path / "bwd.json", [attn("fwd", 0.6), attn("bwd", 0.48)])
    prof, _ = build_profile([f])
    assert prof.attention_bwd_efficiency == pytest.approx(0.48)
    # fwd+bwd at 0.9 with forward at 0.3 means the backward ran at 4.5× the peak
    g = write(tmp_path / "absurd.json", [attn("fwd", 0.3), attn("fwd+bwd", 0.9)])
    with pytest.raises(GpubenchError, match="absurd"):
        build_profile([g])


def test_all_reduce_intra_node(tmp_path):
    f = write(tmp_path / "nccl.json", [
        all_reduce(8, 1 * MiB, 100.0),
        all_reduce(8, 64 * MiB, 380.0),     # not the largest message: ignored
        all_reduce(8, 1 * GiB, 360.0),
        all_reduce(8, 1 * GiB, 370.0),
        all_reduce(16, 1 * GiB, 400.0),     # across nodes: not intra-node
        Record(benchmark="all_gather", params={"world_size": 8}, status="ok", device="cuda:0",
               metrics={"busbw_gbps": 999.0}),
    ], suite="collectives")
    prof, notes = build_profile([f])
    assert prof.intra_node_efficiency == pytest.approx(370.0 / 450.0)
    assert prof.inter_node_efficiency == DEFAULTS["hopper"].inter_node_efficiency
    (note,) = [n for n in notes if n.startswith("measured intra_node_efficiency")]
    assert "1024 MiB" in note and "8 GPUs" in note
    assert any("across nodes" in n for n in notes)


def test_transformer_step_is_reported_not_folded(h100_file, tmp_path):
    f = write(tmp_path / "step.json", [
        Record(benchmark="transformer-step", params={"model": "llama-1b"}, status="ok",
               device="cuda:0", metrics={"mfu": 0.41, "tokens_per_s": 12345.0})])
    prof, notes = build_profile([h100_file, f])
    assert any(n.startswith("check: transformer-step best MFU 0.41") for n in notes)
