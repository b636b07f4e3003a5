"""Real ranks: `gpubench run --nproc N --device cpu` under torchrun with gloo, a rank that
dies mid-run, and a group that cannot form. Each test costs seconds (process start-up,
torch import per rank), so there are few of them."""

import subprocess
import sys
import time

import pytest

from gpubench.benches.comm import COLLECTIVES, busbw_factor
from gpubench.results import load_run



@pytest.fixture
def env(gloo_env):
    return gloo_env


def gpubench(args, env, timeout=120):
    t0 = time.monotonic()
    p = subprocess.run([sys.executable, "-m", "gpubench", *args], check=False, env=env, capture_output=True,
                       text=True, timeout=timeout)
    return p, time.monotonic() - t0


def test_two_gloo_ranks_every_collective(tmp_path, env):
    out = tmp_path / "comm.json"
    p, _ = gpubench(["run", "--suite", "comm", "--nproc", "2", "--device", "cpu", "--sizes", "4K",
                     "--out", str(out)], env)
    assert p.returncode == 0, p.stderr[-3000:]
    run = load_run(out)
    assert run.status == "complete" and run.config["world_size"] == 2
    assert run.env["distributed"]["world_size"] == 2 and run.env["distributed"]["backend"] == "gloo"
    forms = sum(len(c.modes) for c in COLLECTIVES.values()) * 2       # × fp32, bf16
    assert len(run.records) == forms
    for r in run.records:
        assert r.status == "ok", (r.case_id, r.error)
        assert r.params["world_size"] == 2 and r.params["size_bytes"] == 4096
        m = r.metrics
        assert m["busbw_gbps"] == pytest.approx(m["algbw_gbps"] * busbw_factor(r.benchmark, 2))
        assert m["algbw_gbps"] == pytest.approx(4096 / r.timing["median_s"] / 1e9)
        assert len(m["rank_median_s"]) == 2 and m["straggler_ratio"] >= 1.0
        assert r.timing["reduction"] == "slowest rank per iteration"
        assert r.timing["n"] == r.timing["agreed_iters"] == len(r.timing["samples_s"])
        assert r.check["reference"].startswith("exact") and r.work["backend"] == "gloo"
    # Only rank 0 reports: one table, one "wrote" line.
    assert p.stdout.count("run complete") == 1 and p.stderr.count("wrote ") == 1


def test_a_rank_that_dies_is_named_and_nothing_hangs(tmp_path, env):
    out = tmp_path / "comm.json"
    env = {**env, "GPUBENCH_FAULT_RANK": "1", "GPUBENCH_FAULT_AFTER": "2"}   # SIGKILL before case 3
    p, took = gpubench(["run", "--benchmark", "all_reduce", "--size", "1024", "--size", "2048",
                        "--size", "4096", "--size", "8192", "--nproc", "2", "--device", "cpu",
                        "--dist-timeout", "20", "--out", str(out)], env, timeout=90)
    assert p.returncode == 1, p.stderr[-3000:]
    assert took < 60
    last = p.stderr.strip().splitlines()[-1]
    assert last.startswith("gpubench: error: rank 1") and "SIGKILL" in last, last
    run = load_run(out)
    assert run.status == "crashed"
    assert len(run.records) == 2 and all(r.status == "ok" for r in run.records)


@pytest.mark.parametrize("rank, needle", [
    ("0", "1/2 clients joined"),          # a world size of 2 with one rank started
    ("1", "timed out"),                   # a master nobody listens on
])
def test_group_that_cannot_form_is_one_line(tmp_path, env, rank, needle):
    import socket

    with socket.socket() as s:            # a port that was free a moment ago
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**env, "RANK": rank, "WORLD_SIZE": "2", "LOCAL_RANK": "0", "LOCAL_WORLD_SIZE": "1",
           "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)}
    p, took = gpubench(["run", "--suite", "comm", "--device", "cpu", "--dist-timeout", "2",
                        "--out", str(tmp_path / "r.json")], env, timeout=60)
    lines = [line for line in p.stderr.splitlines() if line.strip()]
    assert p.returncode == 2 and len(lines) == 1, p.stderr[-3000:]
    assert lines[0].startswith(f"gpubench: error: rank {rank} of 2 could not join") and needle in lines[0]
    assert took < 30
    assert not (tmp_path / "r.json").exists()


@pytest.mark.slow
def test_three_ranks(tmp_path, env):
    """A world size that is no power of two: uneven factors, chunks of S/3."""
    out = tmp_path / "comm3.json"
    p, _ = gpubench(["run", "--suite", "comm", "--nproc", "3", "--device", "cpu", "--dtype", "bf16",
                     "--sizes", "3K", "--quick", "--out", str(out)], env, timeout=180)
    assert p.returncode == 0, p.stderr[-3000:]
    run = load_run(out)
    assert run.status == "complete" and {r.status for r in run.records} == {"ok"}
    ar = next(r for r in run.records if r.benchmark == "all_reduce")
    assert ar.metrics["busbw_gbps"] == pytest.approx(ar.metrics["algbw_gbps"] * 4 / 3)
    assert all(r.params["size_bytes"] == 3072 for r in run.records)
    assert len(ar.metrics["rank_median_s"]) == 3
