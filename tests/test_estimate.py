"""The estimator against published figures, and its command line."""

import csv
import json
from pathlib import Path

import pytest

from estimate_helpers import run_error, run_json
from gpubench.cli import main
from gpubench.estimate.flops import (hardware_flops_per_token, model_flops_per_token,
                                     narayanan_flops_per_iteration)
from gpubench.estimate.models import ModelConfig, get_model

from gpubench.estimate.backtest import DATA as PUBLISHED_RUNS


# ---- parameters and FLOPs -------------------------------------------------------

@pytest.mark.parametrize("name, published_b, active_b", [
    ("gpt3-175b", 175.0, None), ("mt-nlg-530b", 530.0, None), ("megatron-1t", 1008.0, None),
    ("opt-175b", 175.0, None), ("bloom-176b", 176.2, None), ("llama2-7b", 6.74, None),
    ("llama2-13b", 13.0, None), ("llama2-70b", 68.98, None), ("llama3.1-8b", 8.03, None),
    ("llama3.1-70b", 70.6, None), ("llama3.1-405b", 405.0, None), ("mixtral-8x7b", 46.7, 12.9),
    ("deepseek-v3", 671.0, 37.0),
])
def test_zoo_parameter_counts(name, published_b, active_b):
    m = get_model(name)
    assert m.params() / 1e9 == pytest.approx(published_b, rel=0.015)
    if active_b:
        assert m.params(active=True) / 1e9 == pytest.approx(active_b, rel=0.03)


def test_narayanan_eq2_parameter_count():
    """P = 12·l·h²·(1 + 13/12h + (V+s)/12lh) (their Eq. 2, with learned positions)."""
    for row in _table1():
        l, h, V, s = int(row["layers"]), int(row["hidden"]), int(row["vocab"]), int(row["seq"])
        eq2 = 12 * l * h * h * (1 + 13 / (12 * h) + (V + s) / (12 * l * h))
        m = ModelConfig(name="x", layers=l, hidden=h, heads=int(row["heads"]), seq_len=s, vocab=V,
                        tied_embeddings=True)
        # gpubench counts no biases and no position table: both are well under 1%.
        assert m.params() == pytest.approx(eq2, rel=0.01)
        assert eq2 / 1e9 == pytest.approx(float(row["params_billion"]), rel=0.04)   # the table rounds


def test_hardware_flops_with_full_recompute_is_narayanan_eq3():
    m = get_model("gpt3-175b")
    per_iter = hardware_flops_per_token(m, "full") * 1536 * m.seq_len
    assert per_iter == pytest.approx(narayanan_flops_per_iteration(1536, 2048, 96, 12288, 51200), rel=1e-9)


def test_model_flops_is_palm():
    m = get_model("llama2-70b")
    n = m.params(embeddings=False) - m.hidden * (2 * m.layers + 1)
    palm = 6 * n + 12 * m.layers * m.hidden * m.seq_len
    assert model_flops_per_token(m) == pytest.approx(palm, rel=1e-9)
    assert hardware_flops_per_token(m, "none") == model_flops_per_token(m)
    assert hardware_flops_per_token(m, "selective") > model_flops_per_token(m)
    assert hardware_flops_per_token(m, "full") / model_flops_per_token(m) == pytest.approx(4 / 3, rel=0.02)


def test_moe_flops_use_active_parameters():
    m = get_model("mixtral-8x7b")
    dense_equivalent = m.with_(experts=0, top_k=0, name="d")
    # 2 of 8 experts: far less than the total would say, more than a single expert.
    assert 6 * m.params(active=True) * 0.9 < model_flops_per_token(m) < 6 * m.params() * 0.5
    assert model_flops_per_token(dense_equivalent) < model_flops_per_token(m)


# ---- the source articles' figures -------------------------------------------------

def test_gpt3_34_days_and_4_28m(capsys):
    """300B tokens, 1024 A100, 140 TFLOP/s per GPU with full recomputation: about 34 days,
    and $4.28M at $40.96 per hour per 8 GPUs (AWS p4de). gpubench's FLOPs include attention
    and the LM head (Eq. 3), 3% more than the article's 8·T·P. The article's arithmetic is a
    run that never stops: gpubench's ``ideal`` figures; the headline adds expected losses."""
    e = run_json(capsys, "estimate", "--model", "gpt3-175b", "--gpu", "a100-80gb", "--gpus", "1024",
                 "--tp", "8", "--pp", "8", "--global-batch", "1536", "--recompute", "full",
                 "--precision", "fp16", "--tokens", "300B", "--hfu", str(140 / 312), "--price", str(40.96 / 8))
    assert e["hardware_tflops_per_gpu"] == pytest.approx(140, rel=1e-6)
    assert e["ideal"]["train_days"] == pytest.approx(34, rel=0.05)
    assert e["ideal"]["cost_usd_cloud"] == pytest.approx(4.28e6, rel=0.05)
    # Failures, restarts and checkpoints cost a run of 1024 GPUs for a month a few percent.
    assert 1.0 < e["train_days"] / e["ideal"]["train_days"] < 1.15
    assert e["cost_usd"]["cloud"] / e["ideal"]["cost_usd_cloud"] == pytest.approx(
        e["train_days"] / e["ideal"]["train_days"], rel=1e-9)
    # The article's own arithmetic, 8·T·P/(n·X), from the same output.
    assert 8 * 300e9 * 175e9 / (1024 * 140e12) / 86400 == pytest.approx(33.9, abs=0.1)


def test_estimate_json_fields(capsys):
    e = run_json(capsys, "estimate", "--model", "llama2-7b", "--gpu", "h100", "--gpus", "64",
                 "--global-batch", "512", "--tokens", "2T", "--zero", "1")
    for key in ("step_time_s", "tokens_per_s", "model_tflops_per_gpu", "hardware_tflops_per_gpu", "mfu",
                "hfu", "train_days", "gpu_hours", "energy_kwh", "cost_usd", "usd_per_million_tokens",
                "breakdown", "memory"):
        assert key in e
    assert set(e["cost_usd"]) == {"cloud", "capex_energy", "acquisition"}
    assert all(v > 0 for v in e["cost_usd"].values())
    assert 0 < e["mfu"] <= e["hfu"] < 1
    assert e["gpu_hours"] == pytest.approx(e["train_days"] * 24 * 64)
    assert e["tokens_per_s"] == pytest.approx(e["tokens_per_step"] / e["step_time_s"])
    assert sum(e["breakdown"].values()) == pytest.approx(e["step_time_s"], rel=1e-6)
    assert e["memory"]["fits"] is True
    for term in ("gemm_s", "attention_s", "tp_comm_s", "cp_comm_s", "pp_comm_s", "dp_comm_exposed_s",
                 "pipeline_bubble_s", "recompute_s", "optimizer_s", "overlap_interference_s"):
        assert term in e["breakdown"]
    u = e["uncertainty"]
    assert u["level"] == 0.8 and u["basis"]
    for key in ("step_time_s", "gpu_hours", "cost_usd_cloud"):
        lo, hi = u[key]
        point = {"step_time_s": e["step_time_s"], "gpu_hours": e["gpu_hours"],
                 "cost_usd_cloud": e["cost_usd"]["cloud"]}[key]
        assert 0 < lo < hi and lo < point * 1.5 and hi > point / 1.5


# ---- Narayanan et al. 2021, Table 1 ------------------------------------------------

def _table1():
    """Narayanan et al. 2021 Table 1, as copied into the project's back-test table."""
    with open(PUBLISHED_RUNS) as f:
        rows = [r for r in csv.DictReader(f) if r["id"].startswith("narayanan-t1-")]
    assert len(rows) == 10
    for r in rows:
        r["params_billion"] = r["id"].split("-")[2].rstrip("b")
        r["seq"] = r["seq_len"]
        r["hw_tflops_per_gpu"] = r["value"]
    return rows


def test_narayanan_table1_within_10_percent(capsys):
    """Per-GPU TFLOP/s from the configuration alone (A100 80GB, full recomputation, fp16)."""
    errors = []
    for r in _table1():
        e = run_json(capsys, "estimate", "--layers", r["layers"], "--hidden", r["hidden"], "--heads", r["heads"],
                     "--seq-len", r["seq"], "--vocab", r["vocab"], "--gpu", "a100-80gb", "--gpus", r["gpus"],
                     "--tp", r["tp"], "--pp", r["pp"], "--global-batch", r["global_batch"],
                     "--recompute", "full", "--precision", "fp16", "--steps", "1")
        want = float(r["hw_tflops_per_gpu"])
        errors.append((r["params_billion"], e["hardware_tflops_per_gpu"] / want - 1))
    worst = max(errors, key=lambda x: abs(x[1]))
    assert abs(worst[1]) <= 0.10, errors


def test_bigger_gemms_and_pipelines_trade_off_as_published(capsys):
    """Sanity of the machine model: with the pipeline held off, a wider model runs closer
    to peak (bigger GEMMs, smaller attention share); a bubble costs what (p-1)/m says."""
    def tflops(hidden, heads, pp, gb):
        return run_json(capsys, "estimate", "--layers", "32", "--hidden", str(hidden), "--heads", str(heads),
                        "--seq-len", "2048", "--gpu", "a100-80gb", "--gpus", str(8 * pp), "--tp", "8",
                        "--pp", str(pp), "--global-batch", str(gb), "--steps", "1")["hardware_tflops_per_gpu"]
    assert tflops(8192, 64, 1, 64) > tflops(4096, 32, 1, 64) > tflops(2048, 16, 1, 64)
    for vpp in (1, 2):
        e = run_json(capsys, "estimate", "--layers", "32", "--hidden", "8192", "--heads", "64", "--seq-len",
                     "2048", "--gpu", "a100-80gb", "--gpus", "64", "--tp", "8", "--pp", "8", "--vpp", str(vpp),
                     "--global-batch", "64", "--steps", "1")
        bd = e["breakdown"]
        busy = e["step_time_s"] - bd["pipeline_bubble_s"] - bd["dp_comm_exposed_s"] - bd["optimizer_s"]
        # 64 micro-batches over 8 stages: the bubble is (p-1)/(v·m) of the busy time.
        assert bd["pipeline_bubble_s"] / busy == pytest.approx(7 / (vpp * 64), rel=1e-6)


# ---- plan --------------------------------------------------------------------------

def test_plan_ranks_fitting_layouts(capsys):
    ranked = run_json(capsys, "plan", "--model", "gpt3-175b", "--gpu", "a100-80gb", "--gpus", "1024",
                      "--global-batch", "1536", "--tokens", "300B", "--top", "5")["ranked"]
    assert len(ranked) == 5
    times = [e["step_time_s"] for e in ranked]
    assert times == sorted(times)
    for e in ranked:
        assert e["memory"]["fits"]
        lay = e["layout"]
        assert lay["tp"] * lay["cp"] * lay["pp"] * lay["dp"] == 1024
        assert 1536 % (lay["micro_batch"] * lay["dp"]) == 0
        # What Megatron-LM accepts: stages (and interleaved chunks) divide the 96 layers.
        assert 96 % (lay["pp"] * lay["vpp"]) == 0 and lay["tp"] <= 8
        assert "cost_usd" in e and "train_days" in e
    # The winner beats the layout of the published run it is compared with.
    published = run_json(capsys, "estimate", "--model", "gpt3-175b", "--gpu", "a100-80gb", "--gpus", "1024",
                         "--tp", "8", "--pp", "8", "--global-batch", "1536", "--recompute", "full",
                         "--tokens", "300B")
    assert ranked[0]["step_time_s"] <= published["step_time_s"]


def test_plan_by_cost_and_estimate_agree(capsys):
    ranked = run_json(capsys, "plan", "--model", "llama2-7b", "--gpu", "h100", "--gpus", "64",
                      "--global-batch", "512", "--tokens", "100B", "--rank", "cost", "--top", "3")["ranked"]
    costs = [e["cost_usd"]["cloud"] for e in ranked]
    assert costs == sorted(costs)
    lay = ranked[0]["layout"]
    again = run_json(capsys, "estimate", "--model", "llama2-7b", "--gpu", "h100", "--gpus", "64",
                     "--global-batch", "512", "--tokens", "100B", "--tp", str(lay["tp"]), "--pp", str(lay["pp"]),
                     "--cp", str(lay["cp"]), "--vpp", str(lay["vpp"]), "--micro-batch", str(lay["micro_batch"]),
                     "--recompute", lay["recompute"], "--zero", str(lay["zero"]),
                     *(["--sequence-parallel"] if lay["sequence_parallel"] else []))
    assert again["step_time_s"] == pytest.approx(ranked[0]["step_time_s"], rel=1e-9)


def test_plan_search_space_is_large_and_complete():
    from gpubench.estimate.cluster import make_cluster
    from gpubench.estimate.plan import layouts

    space = list(layouts(get_model("qwen3-30b-a3b"), make_cluster("h100", 1024), 4096, "bf16"))
    assert len(space) >= 100_000
    assert len(set(space)) == len(space)
    assert all(l.tp * l.cp * l.pp * l.dp == 1024 and 4096 % (l.micro_batch * l.dp) == 0 for l in space)


# ---- bad input -----------------------------------------------------------------------

@pytest.mark.parametrize("args, needles", [
    (["--tp", "8", "--pp", "4", "--dp", "5"], ["--tp 8", "--pp 4", "--dp 5", "is not --gpus 1024"]),
    (["--tp", "7"], ["--tp 7", "does not divide --gpus"]),
    (["--tp", "8", "--global-batch", "100"], ["--global-batch 100"]),
    (["--recompute", "half"], ["--recompute"]),
    (["--mfu", "1.2"], ["--mfu"]),
    (["--mfu", "0.4", "--hfu", "0.5"], ["not both"]),
    (["--price", "-3"], ["--price"]),
    (["--pue", "0.5"], ["--pue"]),
    (["--pp", "128"], ["--pp 128", "96 layers"]),
])
def test_estimate_bad_layouts(capsys, args, needles):
    base = ["estimate", "--model", "gpt3-175b", "--gpu", "a100-80gb", "--gpus", "1024", "--tokens", "300B"]
    line = run_error(capsys, *base, *args)
    for n in needles:
        assert n in line, line


def test_heads_not_divisible_by_tp(capsys):
    line = run_error(capsys, "estimate", "--layers", "24", "--hidden", "2304", "--heads", "24", "--seq-len",
                     "2048", "--gpu", "a100-80gb", "--gpus", "16", "--tp", "16", "--tokens", "1B")
    assert "--tp 16" in line and "24 heads" in line


def test_unknown_names_suggest(capsys):
    assert "did you mean" in run_error(capsys, "estimate", "--model", "llama2-71b", "--gpu", "h100",
                                       "--gpus", "8", "--tokens", "1B")
    line = run_error(capsys, "estimate", "--model", "gpt3", "--gpu", "a100-81gb", "--gpus", "8", "--tokens", "1B")
    assert "unknown GPU" in line and "a100-80gb" in line


def test_plan_and_estimate_share_the_default_batch(capsys):
    """No --global-batch: both take about 4M tokens a step, a whole number of micro-batches."""
    out = run_json(capsys, "plan", "--model", "gpt3", "--gpu", "h100", "--gpus", "64", "--tokens", "1B",
                   "--top", "3")
    for e in out["ranked"]:
        lay = e["layout"]
        tokens = lay["global_batch"] * 2048
        assert 2**21 < tokens < 2**23 and lay["global_batch"] % (lay["micro_batch"] * lay["dp"]) == 0
    e = run_json(capsys, "estimate", "--model", "gpt3", "--gpu", "h100", "--gpus", "64", "--tp", "8",
                 "--pp", "8", "--recompute", "full", "--tokens", "1B")
    assert e["layout"]["global_batch"] * 2048 == pytest.approx(4 * 2**20, rel=0.01)


# ---- calibrate → estimate -------------------------------------------------------------

def _h100_result(path, bf16_tflops):
    from gpubench.results import Record, ResultWriter, Run

    env = {"device": {"type": "cuda", "name": "NVIDIA H100 80GB HBM3", "spec_key": "h100-sxm", "label": "cuda:0",
                      "peak_tflops": {"bf16": 989}, "peak_mem_bandwidth_gbps": 3350}}
    run = Run(suite="mixed-precision", env=env)
    n = 8192
    run.records.append(Record(benchmark="matmul", params={"dtype": "bf16", "m": n, "n": n, "k": n}, status="ok",
                              device="cuda:0", metrics={"tflops": bf16_tflops},
                              timing={"median_s": 2 * n ** 3 / bf16_tflops / 1e12}))
    ResultWriter(path, run).close()


def test_calibrate_then_estimate(capsys, tmp_path):
    slow, fast = tmp_path / "slow.json", tmp_path / "fast.json"
    _h100_result(slow, 600.0)
    _h100_result(fast, 850.0)
    profiles = {}
    for name, f in (("slow", slow), ("fast", fast)):
        out = tmp_path / f"{name}-profile.json"
        with pytest.raises(SystemExit) as exc:
            main(["calibrate", str(f), "-o", str(out)])
        assert exc.value.code == 0
        profiles[name] = out
    capsys.readouterr()
    base = ["estimate", "--model", "llama3.1-8b", "--gpu", "h100", "--gpus", "64", "--global-batch", "256",
            "--tokens", "1T", "--zero", "3"]
    e_slow = run_json(capsys, *base, "--calibration", str(profiles["slow"]))
    e_fast = run_json(capsys, *base, "--calibration", str(profiles["fast"]))
    assert e_slow["profile"]["name"] == "measured-h100-sxm"
    assert e_fast["mfu"] > e_slow["mfu"] and e_fast["train_days"] < e_slow["train_days"]
    assert not [w for w in e_fast["warnings"] if "calibration" in w]
    # Carried to another GPU: allowed, scaled by peaks, and said out loud.
    e_a100 = run_json(capsys, *base[:3], "--gpu", "a100-80gb", *base[5:], "--calibration", str(profiles["fast"]))
    assert e_a100["profile"]["measured_on"] == "h100-sxm" and e_a100["profile"]["carried_to"] == "a100-sxm-80gb"
    assert any("applied to a100-sxm-80gb" in w for w in e_a100["warnings"])


def test_a_cpu_calibration_holds_rates_only_and_estimate_refuses_to_carry_it(capsys, tmp_path):
    """A CPU has no datasheet peak: calibrate keeps its measured rates (for the self-check), and an
    estimate for a GPU must refuse them rather than treat a CPU's rates as a GPU's fractions."""
    files = sorted((Path(__file__).resolve().parents[1] / "results").glob("cpu-*.json"))
    if not files:
        pytest.skip("no CPU result committed")
    prof = tmp_path / "p.json"
    with pytest.raises(SystemExit) as exc:
        main(["calibrate", str(files[0]), "-o", str(prof)])
    assert exc.value.code == 0
    capsys.readouterr()
    saved = json.loads(prof.read_text())
    assert saved["gemm_ceiling"] == {} and saved["rates"]["gemm"]["fp32"]
    line = run_error(capsys, "estimate", "--model", "gpt3", "--gpu", "h100", "--gpus", "8", "--tokens", "1B",
                     "--calibration", str(prof))
    assert "no datasheet peak" in line and "selfcheck" in line


def test_estimate_rejects_a_foreign_profile(capsys, tmp_path):
    bad = tmp_path / "p.json"
    bad.write_text('{"hello": 1}')
    line = run_error(capsys, "estimate", "--model", "gpt3", "--gpu", "h100", "--gpus", "8", "--tokens", "1B",
                     "--calibration", str(bad))
    assert "not a gpubench calibration profile" in line


def test_fp16_on_volta_uses_the_fp16_peak(capsys):
    e = run_json(capsys, "estimate", "--layers", "24", "--hidden", "1024", "--heads", "16", "--seq-len", "1024",
                 "--gpu", "v100", "--gpus", "64", "--tp", "8", "--global-batch", "64", "--precision", "fp16",
                 "--tokens", "1B")
    assert e["cluster"]["peak_tflops"] == 125
    assert "try --precision fp16" in run_error(capsys, "estimate", "--model", "gpt3", "--gpu", "v100",
                                                "--gpus", "512", "--tokens", "1B")
