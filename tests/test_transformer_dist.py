"""transformer-step on real ranks: `gpubench run --nproc 2 --device cpu` under torchrun with
gloo, through the CLI in a subprocess. Each run costs seconds (torch import per rank, two
ranks on a small machine), so there are few of them and each asserts a lot."""

import subprocess
import sys

import pytest

from gpubench.results import load_run

TINY = ["-p", "model=tiny", "-p", "micro_batch=2"]
SEQ = 64                # the tiny model's sequence length


@pytest.fixture
def env(gloo_env):
    return gloo_env


def gpubench(args, env, timeout=120):
    return subprocess.run([sys.executable, "-m", "gpubench", "run", *args, "--device", "cpu"], check=False,
                          env=env, capture_output=True, text=True, timeout=timeout)


def assert_checked(r):
    """The record's float64 check block: loss and every gradient within the precision's tolerance."""
    c = r.check
    assert c and c["reference"].startswith("float64"), r.case_id
    assert 0 <= c["grad_rel_err"] <= c["tolerance"], (r.case_id, c)
    assert 0 <= c["loss_rel_err"] <= c["loss_tolerance"], (r.case_id, c)
    assert abs(c["loss"] - c["loss_ref"]) <= c["loss_tolerance"] * abs(c["loss_ref"])
    # DDP/FSDP: the ranks ran different probe batches, so the averaged gradient was checked.
    assert c["probe_batches"] == (1 if r.params["parallel"] == "none" else 2), (r.case_id, c)


def test_transformer_suite_on_two_ranks(tmp_path, env):
    out = tmp_path / "t.json"
    p = gpubench(["--suite", "transformer", "--nproc", "2", "--out", str(out)], env)
    assert p.returncode == 0, p.stderr[-3000:]
    run = load_run(out)
    assert run.status == "complete" and run.config["world_size"] == 2
    assert run.env["distributed"]["world_size"] == 2 and run.env["distributed"]["backend"] == "gloo"
    by_parallel = {r.params["parallel"]: r for r in run.records}
    assert len(run.records) == 3 and set(by_parallel) == {"none", "ddp", "fsdp"}
    for r in by_parallel.values():
        assert r.status == "ok", (r.case_id, r.error)
        assert r.params["model"] == "tiny" and r.params["dtype"] == "fp32"
        w, m = r.work, r.metrics
        assert w["world_size"] == 2
        assert w["tokens_per_step_per_rank"] == 2 * SEQ and w["tokens_per_step"] == 2 * 2 * SEQ
        assert m["tokens_per_s"] == pytest.approx(2 * m["tokens_per_s_per_gpu"])
        # per GPU: one rank's tokens over the step time (the slowest rank per iteration)
        # DDP/FSDP ranks run in step: an iteration is the slowest rank's. Ranks training alone
        # are not in step: their rate is the slowest rank's own median.
        step_s = max(m["rank_median_s"]) if r.params["parallel"] == "none" else r.timing["median_s"]
        assert m["step_s"] == pytest.approx(step_s)
        assert m["tokens_per_s_per_gpu"] == pytest.approx(2 * SEQ / step_s)
        assert r.timing["reduction"] == "slowest rank per iteration" and len(m["rank_median_s"]) == 2
        assert m["loss"] > 0
        assert_checked(r)
    # The per-GPU baseline (each rank its own replica, no communication) is a real speed:
    # a tiny step is milliseconds, and communication can only make DDP/FSDP slower per rank.
    none = by_parallel["none"].metrics["tokens_per_s_per_gpu"]
    assert 100 < none < 1e7
    assert by_parallel["fsdp"].metrics["tokens_per_s_per_gpu"] < none * 1.5
    assert p.stdout.count("run complete") == 1 and p.stderr.count("wrote ") == 1


@pytest.mark.parametrize("parallel, extra, dtypes", [
    ("ddp", ["-p", "grad_accum=2"], "bf16,fp16"),
    ("fsdp", ["-p", "grad_accum=2", "-p", "checkpointing=every"], "fp16,fp8_e4m3"),
])
def test_mixed_precision_accumulation_and_checkpointing(tmp_path, env, parallel, extra, dtypes):
    out = tmp_path / "p.json"
    p = gpubench(["--benchmark", "transformer-step", "-p", f"parallel={parallel}", *TINY, *extra,
                  "--dtype", dtypes, "--nproc", "2", "--out", str(out)], env)
    assert p.returncode == 0, p.stderr[-3000:]
    run = load_run(out)
    assert run.status == "complete"
    assert [r.params["dtype"] for r in run.records] == dtypes.split(",")
    for r in run.records:
        assert r.status == "ok", (r.case_id, r.error or r.reason)
        assert r.params["parallel"] == parallel and r.params["grad_accum"] == 2
        assert r.work["world_size"] == 2 and r.work["tokens_per_step_per_rank"] == 2 * 2 * SEQ
        assert r.metrics["tokens_per_s"] == pytest.approx(2 * r.metrics["tokens_per_s_per_gpu"])
        assert_checked(r)
        if r.params["dtype"] == "fp16":      # dynamic loss scaling ran (and agreed across ranks)
            assert r.metrics["loss_scale"] > 0
        if r.params["dtype"] == "fp8_e4m3":
            assert r.work["float8"]["converted"] > 0
        if "checkpointing=every" in extra:
            assert r.params["checkpointing"] == "every"
            assert r.work["hardware_flops_per_token"] > r.work["model_flops_per_token"]


def test_data_parallel_in_one_process_is_skipped(tmp_path, env):
    out = tmp_path / "one.json"
    p = gpubench(["--benchmark", "transformer-step", "-p", "parallel=ddp", *TINY, "--dtype", "fp32",
                  "--out", str(out)], env)
    assert p.returncode == 0, p.stderr[-3000:]
    run = load_run(out)
    assert run.status == "complete" and run.config["world_size"] == 1
    [r] = run.records
    assert r.status == "skipped" and r.params["parallel"] == "ddp"
    assert "ranks" in r.reason and "--nproc" in r.reason, r.reason
