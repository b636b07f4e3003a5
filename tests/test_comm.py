"""Collectives without processes: factors, sizes, the data check (against a simulated
world), the slowest-rank reduction, outcome agreement, torchrun's variables, the
launcher's pieces, the environment and calibration. The runs with real gloo ranks are
in test_comm_dist.py."""

import click
import pytest
import torch

from gpubench.benches import comm
from gpubench.distributed import (
    DistContext,
    PeerLost,
    RankInfo,
    RendezvousError,
    combine,
    measure,
    rank_device,
    rank_info,
)
from gpubench.errors import CheckFailed, GpubenchError
from gpubench.registry import Case, get_benchmark, get_suite
from gpubench.timing import TimerConfig

# ---- busbw factors (nccl-tests' PERFORMANCE.md) ----


@pytest.mark.parametrize("op, n, factor", [
    ("all_reduce", 2, 1.0), ("all_reduce", 8, 1.75), ("all_reduce", 3, 4 / 3),
    ("all_gather", 8, 0.875), ("reduce_scatter", 8, 0.875), ("all_to_all", 4, 0.75),
    ("all_gather", 2, 0.5), ("broadcast", 8, 1.0), ("sendrecv", 8, 1.0),
])
def test_busbw_factor(op, n, factor):
    assert comm.busbw_factor(op, n) == pytest.approx(factor)


def test_metrics_algbw_busbw_latency(cpu):
    bench = get_benchmark("all_reduce")
    params = {"size_bytes": 1 << 30, "dtype": "fp32", "inplace": True, "world_size": 8}
    m = bench.metrics(params, None, 0.005, cpu, None, {})
    assert m["algbw_gbps"] == pytest.approx((1 << 30) / 0.005 / 1e9)
    assert m["busbw_gbps"] == pytest.approx(m["algbw_gbps"] * 1.75)
    assert m["latency_us"] == pytest.approx(5000.0)


# ---- sizes ----

def test_size_sweep_like_nccl_tests():
    assert comm.size_sweep(8, 128, 2) == [8, 16, 32, 64, 128]
    assert comm.size_sweep(8, 1 << 30, 8)[-1] == 1 << 30
    assert comm.parse_sweep("8:1G:8") == comm.size_sweep(8, 1 << 30, 8)
    assert comm.parse_sweep("1K:4K") == [1024, 2048, 4096]
    assert comm.parse_sweep("64MiB") == [64 << 20]
    assert comm.parse_bytes("2g") == 2 << 30


@pytest.mark.parametrize("text", ["1G:8", "8:1G:1", "8:1G:x", "a:b", "1:2:3:4", "-5"])
def test_bad_sweeps(text):
    with pytest.raises(GpubenchError):
        comm.parse_sweep(text)


def test_cases_cover_ops_dtypes_modes():
    cs = comm.cases([1024, 4096])
    ops = {c.benchmark for c in cs}
    assert ops == set(comm.COLLECTIVES)
    assert {(c.params["inplace"]) for c in cs if c.benchmark == "all_gather"} == {True, False}
    assert all(c.params["inplace"] for c in cs if c.benchmark in ("all_reduce", "broadcast"))
    assert len(cs) == 2 * 2 * sum(len(c.modes) for c in comm.COLLECTIVES.values())
    resized = comm.resize(cs, [8, 16, 32])
    assert len(resized) == len(cs) // 2 * 3
    assert len(comm.alone(cs)) == len(comm.COLLECTIVES)
    with pytest.raises(GpubenchError, match="--sizes"):
        comm.resize([Case("membw", {"size_bytes": 1})], [8])


def test_comm_suite():
    suite = get_suite("comm")
    big = [c for c in suite.gpu if c.benchmark == "all_reduce" and c.params["size_bytes"] == 1 << 30]
    assert {c.params["dtype"] for c in big} == {"fp32", "bf16"}
    assert {c.benchmark for c in suite.cpu} == set(comm.COLLECTIVES)
    assert max(c.params["size_bytes"] for c in suite.cpu) <= 1 << 20


def test_normalize_single_process(cpu):
    p = get_benchmark("all_gather").normalize({"size_bytes": 1000, "dtype": "bf16"})
    assert p["world_size"] == 1 and p["size_bytes"] == 1000 and p["inplace"] is False
    with pytest.raises(GpubenchError, match="no out-of-place form"):
        get_benchmark("all_reduce").normalize({"inplace": False})
    with pytest.raises(GpubenchError, match="dtype"):
        get_benchmark("broadcast").normalize({"dtype": "fp8_e4m3"})
    from gpubench.errors import SkipCase

    with pytest.raises(SkipCase, match="at least 2 ranks"):
        get_benchmark("all_reduce").prepare(p, cpu)


def test_normalize_rounds_to_whole_chunks(monkeypatch):
    monkeypatch.setattr(comm, "_world", lambda: (0, 3))
    p = get_benchmark("reduce_scatter").normalize({"size_bytes": 1000, "dtype": "fp32"})
    assert p["size_bytes"] == 996 and p["world_size"] == 3          # 83 fp32 per rank
    assert get_benchmark("all_to_all").normalize({"size_bytes": 8})["size_bytes"] == 12
    assert get_benchmark("all_reduce").normalize({"size_bytes": 1001})["size_bytes"] == 1000


# ---- the data check, against a simulated world ----

class World:
    """n ranks in one process: each rank's calls are recorded, then carried out together.
    ``fault`` edits the results afterwards; ``drop`` leaves a rank out of the all-reduce."""

    def __init__(self, n, fault=None, drop=None):
        self.n, self.calls, self.fault, self.drop = n, {}, fault, drop

    def rank(self, r):
        return FakeComm(self, r)

    def complete(self):
        n, calls = self.n, self.calls
        op = next(iter(calls.values()))[0]
        args = {r: c[1] for r, c in calls.items()}
        if op == "all_reduce":
            total = sum(a[0].float() for r, a in args.items() if r != self.drop)
            for r, (buf,) in args.items():
                buf.copy_(total)
        elif op == "all_gather":
            full = torch.cat([args[j][1].clone() for j in range(n)])
            for r, (out, _) in args.items():
                out.copy_(full)
        elif op == "reduce_scatter":
            total = sum(args[j][1].float() for j in range(n))
            chunk = total.numel() // n
            for r, (out, _) in args.items():
                out.copy_(total[r * chunk:(r + 1) * chunk])
        elif op == "broadcast":
            src = args[0][0].clone()
            for r, (buf, _) in args.items():
                buf.copy_(src)
        elif op == "all_to_all":
            ins = {j: args[j][1].clone() for j in range(n)}
            chunk = ins[0].numel() // n
            for r, (out, _) in args.items():
                out.copy_(torch.cat([ins[j][r * chunk:(r + 1) * chunk] for j in range(n)]))
        elif op == "sendrecv":
            sends = {r: a[0] for r, a in args.items()}
            for r, (_, recv, prev) in args.items():
                recv.copy_(sends[prev])
        if self.fault:
            self.fault(args)
        self.calls = {}


class FakeComm:
    def __init__(self, world, rank):
        self.world, self.r = world, rank
        self.pending = []

    def _call(self, op, *args):
        self.world.calls[self.r] = (op, args)

    def all_reduce(self, buf):
        self._call("all_reduce", buf)

    def all_gather_single(self, out, inp):
        self._call("all_gather", out, inp)

    def reduce_scatter_single(self, out, inp):
        self._call("reduce_scatter", out, inp)

    def broadcast(self, buf, src):
        self._call("broadcast", buf, src)

    def all_to_all_single(self, out, inp):
        self._call("all_to_all", out, inp)

    # point to point: record the pair, the world moves the data
    isend, irecv = "isend", "irecv"

    class P2POp:
        def __init__(self, kind, tensor, peer):
            self.kind, self.tensor, self.peer = kind, tensor, peer

    def batch_isend_irecv(self, ops):
        send = next(o for o in ops if o.kind == "isend")
        recv = next(o for o in ops if o.kind == "irecv")
        self._call("sendrecv", send.tensor, recv.tensor, recv.peer)
        return []


def simulate(op, n, inplace, dtype, numel, fault=None):
    world = World(n, fault)
    ranks = [comm.buffers(op, numel, inplace, dtype, "cpu", r, n, world.rank(r)) for r in range(n)]
    for b in ranks:
        b.fill()
        b.run()
    world.complete()
    return ranks


ALL_FORMS = [(op, inplace) for op, c in comm.COLLECTIVES.items() for inplace in c.modes]


@pytest.mark.parametrize("op, inplace", ALL_FORMS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("n", [2, 3])
def test_check_accepts_the_right_result(op, inplace, dtype, n):
    for b in simulate(op, n, inplace, dtype, numel=60 * n):
        b.expect()


@pytest.mark.parametrize("op, inplace", ALL_FORMS)
def test_check_catches_a_wrong_element(op, inplace):
    n = 3
    outputs = {"all_reduce": 0, "all_gather": 0, "reduce_scatter": 0, "broadcast": 0,
               "all_to_all": 0, "sendrecv": 1}

    def fault(args):
        args[n - 1][outputs[op]].view(-1)[5] += 1

    ranks = simulate(op, n, inplace, torch.bfloat16, numel=30 * n, fault=fault)
    for b in ranks[:-1]:
        b.expect()
    with pytest.raises(CheckFailed, match="1 of .* element"):
        ranks[-1].expect()


def test_check_catches_a_missing_rank_and_unwritten_output():
    world = World(3, drop=2)         # an all-reduce that forgot rank 2's contribution
    bufs = [comm.buffers("all_reduce", 90, True, torch.float32, "cpu", r, 3, world.rank(r)) for r in range(3)]
    for b in bufs:
        b.fill()
        b.run()
    world.complete()
    with pytest.raises(CheckFailed, match="all_reduce: 60 of 90"):
        bufs[0].expect()
    nobody = World(3)                # a gather that never happened: outputs keep their NaN poison
    outs = [comm.buffers("all_gather", 90, False, torch.float32, "cpu", r, 3, nobody.rank(r)) for r in range(3)]
    for b in outs:
        b.fill()
        b.run()
    with pytest.raises(CheckFailed, match="90 of 90"):
        outs[0].expect()


# ---- the slowest rank, with agreed counts ----

class FakeCtx:
    """Two ranks in one process: the other rank is always 3× slower on odd iterations."""

    def __init__(self, device):
        self.device, self.world_size, self.rank = device, 2, 0
        self.maxed = []

    def max_float(self, x):
        self.maxed.append(x)
        return max(x, 0.001)         # the other rank's warm-up estimate: 1 ms

    def barrier(self):
        pass

    def gather_samples(self, samples):
        other = [s * (3 if i % 2 else 0.5) for i, s in enumerate(samples)]
        return [samples, other]


def test_measure_takes_the_slowest_rank_per_iteration(cpu):
    ctx = FakeCtx(cpu)
    cfg = TimerConfig(warmup_s=0.01, min_warmup_iters=1, measure_s=0.02, min_iters=5, max_iters=50)
    m = measure(lambda: None, ctx, cfg)
    # Counts come from the agreed (max) estimate, 1 ms: 0.02 s / 1 ms = 20 iterations.
    assert m.extra["agreed_iters"] == 20 and m.stats.n == 20
    assert m.warmup_iters == 10          # 0.01 s / 1 ms, the first one included
    assert ctx.maxed and len(m.extra["rank_median_s"]) == 2
    assert m.extra["reduction"] == "slowest rank per iteration"
    assert m.extra["straggler_ratio"] >= 1.0


def test_measure_slowest_values(cpu):
    class Ctx(FakeCtx):
        def gather_samples(self, samples):
            n = len(samples)
            return [[1.0] * n, [float(i % 3) for i in range(n)]]

    m = measure(lambda: None, Ctx(cpu),
                TimerConfig(warmup_s=0.0, min_warmup_iters=1, measure_s=0.006, min_iters=6, max_iters=6))
    assert m.samples_s == [1.0, 1.0, 2.0, 1.0, 1.0, 2.0]
    assert m.extra["rank_median_s"] == [1.0, 1.0]
    assert m.stats.median_s == 1.0 and m.stats.max_s == 2.0


# ---- agreeing on outcomes ----

def test_combine_outcomes():
    assert combine([("ok", None), ("ok", None)]) == ("ok", None)
    assert combine([("skipped", "alone"), ("skipped", "alone")]) == ("skipped", "alone")
    status, msg = combine([("ok", None), ("failed", "out of memory"), ("skipped", "x")])
    assert status == "failed" and msg == "rank 1: out of memory"
    status, msg = combine([("failed", "a"), ("failed", "b"), ("failed", "a")])
    assert msg == "ranks 0,2: a; rank 1: b"


def test_peer_lost_wraps_collective_errors(cpu):
    ctx = DistContext(RankInfo(0, 2, 0, 2, 1, None), cpu, "gloo", 5.0)

    def boom():
        raise RuntimeError("Connection closed by peer [127.0.0.1]:1234")

    with pytest.raises(PeerLost, match="another rank has probably died"):
        ctx._collective("sharing outcomes", boom)


# ---- torchrun's variables ----

def test_rank_info_from_env():
    assert rank_info({}) is None
    info = rank_info({"RANK": "3", "WORLD_SIZE": "16", "LOCAL_RANK": "3", "LOCAL_WORLD_SIZE": "8",
                      "MASTER_ADDR": "node1", "MASTER_PORT": "29500"})
    assert (info.rank, info.world_size, info.local_rank, info.nodes, info.master) == (3, 16, 3, 2, "node1:29500")
    assert not info.is_root
    assert rank_info({"RANK": "0", "WORLD_SIZE": "4", "GROUP_WORLD_SIZE": "2", "LOCAL_WORLD_SIZE": "2"}).nodes == 2


@pytest.mark.parametrize("env, needle", [
    ({"RANK": "2", "WORLD_SIZE": "2"}, "RANK=2"),
    ({"RANK": "0", "WORLD_SIZE": "two"}, "WORLD_SIZE='two'"),
    ({"RANK": "0"}, "WORLD_SIZE is not set"),
    ({"RANK": "0", "WORLD_SIZE": "2", "LOCAL_RANK": "2", "LOCAL_WORLD_SIZE": "2"}, "LOCAL_RANK=2"),
])
def test_rank_info_bad(env, needle):
    with pytest.raises(RendezvousError, match=needle):
        rank_info(env)


def test_rank_device():
    one = RankInfo(1, 2, 1, 2, 1, None)
    assert rank_device("cpu", one) == "cpu"
    assert rank_device("cuda:0", None) == "cuda:0"
    with pytest.raises(RendezvousError, match="--device cuda:1"):
        rank_device("cuda:1", one)
    if torch.cuda.device_count() < 2:
        with pytest.raises(RendezvousError, match="one rank per GPU"):
            rank_device("cuda", RankInfo(1, 8, 1, 8, 1, None))


# ---- the launcher's pieces ----

SUMMARY = """torch.distributed.elastic.multiprocessing.errors.ChildFailedError:
=======================================================
gpubench FAILED
-------------------------------------------------------
Failures:
[1]:
  time      : 2026-11-23_04:33:50
  host      : localhost
  rank      : 0 (local_rank: 0)
  exitcode  : -15 (pid: 18060)  (SIGTERM)
  error_file: <N/A>
  traceback : Signal 15 (SIGTERM) received by PID 18060
-------------------------------------------------------
Root Cause (first observed failure):
[0]:
  time      : 2026-11-23_04:33:50
  host      : node7
  rank      : 9 (local_rank: 1)
  exitcode  : -9 (pid: 18061)  (SIGKILL)
  error_file: <N/A>
  traceback : Signal 9 (SIGKILL) received by PID 18061
=======================================================
"""


def test_parse_failures_and_blame():
    from gpubench.launch import culprits, parse_failures

    fs = parse_failures(SUMMARY)
    assert [(f.rank, f.exitcode) for f in fs] == [(0, -15), (9, -9)]
    (blamed,) = culprits(fs)
    assert blamed.describe() == "rank 9 (local rank 1) on node7 was killed by SIGKILL"
    # A rank that gave up because its peer vanished is not the cause either.
    text = SUMMARY.replace("exitcode  : -15", "exitcode  : 3").replace("exitcode  : -9", "exitcode  : 2")
    assert [f.rank for f in culprits(parse_failures(text))] == [9]


def test_launcher_hides_only_its_own_traceback():
    from gpubench.launch import _without_launcher_traceback

    lines = ["[1/2] ok\n", "Traceback (most recent call last):\n", '  File "run.py", line 1\n',
             "torch.distributed.elastic.multiprocessing.errors.ChildFailedError: \n", "=====\n",
             "Traceback (most recent call last):\n", '  File "x.py"\n', "ValueError: rank bug\n"]
    out = list(_without_launcher_traceback(lines))
    assert out == ["[1/2] ok\n", lines[3], "=====\n", *lines[5:]]


def test_child_args_rebuild_the_command(tmp_path):
    from gpubench.cli import cli, run
    from gpubench.launch import child_args, torchrun_command

    parent = click.Context(cli, info_name="gpubench")
    ctx = run.make_context("run", ["--suite", "comm", "--nproc", "2", "--device", "cpu", "--quick",
                                   "--size", "8", "--size", "16"], parent=parent)
    args = child_args(ctx, override={"out": tmp_path / "r.json"})
    assert args[0] == "run" and "--nproc" not in args
    assert args[1:] == ["--suite", "comm", "--size", "8", "--size", "16", "--device", "cpu",
                        "--out", str(tmp_path / "r.json"), "--quick"]
    cmd = torchrun_command(2, args)
    assert cmd[1:3] == ["-m", "torch.distributed.run"] and "--max-restarts" in cmd
    assert cmd[cmd.index("--nproc-per-node") + 1] == "2" and cmd[-len(args) - 2:-len(args)] == ["-m", "gpubench"]


def test_mark_crashed(tmp_path):
    from gpubench.launch import mark_crashed
    from gpubench.results import ResultWriter, Run, load_run

    path = tmp_path / "r.json"
    ResultWriter(path, Run(suite="comm", env={}))
    assert mark_crashed(path, "rank 1 was killed by SIGKILL") == "crashed"
    run = load_run(path)
    assert run.status == "crashed" and run.config["launch_failure"].startswith("rank 1")
    w = ResultWriter(tmp_path / "done.json", Run(suite="comm", env={}))
    w.close("complete")
    assert mark_crashed(tmp_path / "done.json", "x") == "complete"
    assert mark_crashed(tmp_path / "missing.json", "x") is None


# ---- environment ----

def test_nccl_tuning_lines():
    from gpubench.distributed import _nccl_choice
    from gpubench.env import parse_nccl_tuning

    text = ("h:1:2 [0] NCCL INFO AllReduce: 1073741824 Bytes -> Algo NVLS proto Simple channel{Lo..Hi}={0..15}\n"
            "h:1:2 [0] NCCL INFO AllReduce: 1073741824 Bytes -> Algo NVLS proto Simple channel{Lo..Hi}={0..15}\n"
            "h:1:2 [0] NCCL INFO AllGather: 134217728 Bytes -> Algo RING proto SIMPLE channel{Lo..Hi}={0..31}\n"
            "h:1:2 [0] NCCL INFO Channel 00/32 : 0 1 2 3 4 5 6 7\n")
    lines = parse_nccl_tuning(text)
    assert lines[0] == ("AllReduce", 1 << 30, "NVLS", "SIMPLE") and len(lines) == 3
    ar = {"size_bytes": 1 << 30, "world_size": 8, "dtype": "bf16", "inplace": True}
    assert _nccl_choice(get_benchmark("all_reduce"), ar, lines) == {"nccl_algo": "NVLS", "nccl_proto": "SIMPLE"}
    assert _nccl_choice(get_benchmark("all_gather"), {**ar, "inplace": False}, lines)["nccl_algo"] == "RING"
    assert _nccl_choice(get_benchmark("sendrecv"), ar, lines) == {}


def test_request_nccl_debug_is_opt_in():
    from gpubench.env import request_nccl_debug

    env = {}
    assert request_nccl_debug(env) is None and env == {}
    env = {"GPUBENCH_NCCL_DEBUG": "1", "NCCL_DEBUG_FILE": "/tmp/n.%h.%p"}
    path = request_nccl_debug(env)
    assert env["NCCL_DEBUG"] == "INFO" and "TUNING" in env["NCCL_DEBUG_SUBSYS"]
    assert "%" not in path and path.startswith("/tmp/n.")


def test_distributed_facts(monkeypatch, cpu):
    from gpubench.env import distributed_facts, fingerprint

    monkeypatch.setenv("WORLD_SIZE", "16")
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "8")
    monkeypatch.delenv("GROUP_WORLD_SIZE", raising=False)
    monkeypatch.delenv("SLURM_JOB_NUM_NODES", raising=False)
    monkeypatch.delenv("SLURM_NNODES", raising=False)
    f = distributed_facts(cpu)
    assert (f["world_size"], f["nodes"], f["ranks_per_node"], f["backend"]) == (16, 2, 8, "gloo")
    assert "nccl_version" in f and "topology" in f
    assert "distributed" in fingerprint(cpu)


# ---- calibration: a comm run's all_reduce feeds the intra-node link figure ----

def test_comm_records_calibrate_intra_node(tmp_path):
    from gpubench.estimate.calibrate import build_profile
    from gpubench.estimate.cluster import FACTS
    from gpubench.hardware import get_gpu
    from gpubench.results import Record, ResultWriter, Run

    spec = get_gpu("h100-sxm")
    bench = get_benchmark("all_reduce")
    records = []
    for size, t in [(1 << 20, 30e-6), (1 << 30, (1 << 30) * 1.75 / 370e9)]:     # 370 GB/s busbw at 1 GiB
        params = {"size_bytes": size, "dtype": "bf16", "inplace": True, "world_size": 8}
        records.append(Record(benchmark="all_reduce", params=params, status="ok", device="cuda:0",
                              metrics=bench.metrics(params, None, t, None, None, {})))
    env = {"device": {"type": "cuda", "name": "NVIDIA H100 80GB HBM3", "spec_key": spec.key}}
    w = ResultWriter(tmp_path / "comm.json", Run(suite="comm", env=env, records=[]))
    for r in records:
        w.add(r)
    w.close("complete")
    profile, notes = build_profile([tmp_path / "comm.json"])
    assert profile.intra_node_efficiency == pytest.approx(370.0 / FACTS[spec.key].intra_node_gbps)
    assert any("intra_node_efficiency" in n and "1024 MiB" in n for n in notes)


# ---- the CLI in one process ----

def invoke(capsys, *args):
    from gpubench.cli import main

    with pytest.raises(SystemExit) as exc:
        main(list(args))
    out, err = capsys.readouterr()
    return exc.value.code, out, err


RANK_VARS = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE")


@pytest.mark.parametrize("args, needle", [
    (["--suite", "comm"], "suite comm measures collectives between ranks: give --nproc N (N ≥ 2"),
    (["--benchmark", "all_reduce", "--size", "4K"], "all_reduce measures a collective between ranks"),
    (["--suite", "comm", "--nproc", "1"], "--nproc 1: suite comm measures collectives"),
])
def test_collectives_alone_on_a_cpu_are_refused(capsys, tmp_path, monkeypatch, args, needle):
    """Collectives without ranks used to write six skipped records and exit 0: a run that
    measured nothing. On a CPU the number of gloo ranks is the user's to give."""
    for var in RANK_VARS:
        monkeypatch.delenv(var, raising=False)
    code, out, err = invoke(capsys, "run", "--device", "cpu", "--out", str(tmp_path / "r.json"), *args)
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1 and lines[0].startswith("gpubench: error: "), err
    assert needle in lines[0], lines[0]
    assert not (tmp_path / "r.json").exists() and out == ""


def _gpu_node(monkeypatch, gpus):
    """torch and gpubench see ``gpus`` CUDA devices (an H100 each); nothing touches a GPU."""
    from gpubench import device, runner
    from gpubench.device import DeviceInfo

    for var in RANK_VARS:
        monkeypatch.delenv(var, raising=False)
    h100 = DeviceInfo(type="cuda", index=0, name="NVIDIA H100 80GB HBM3", total_memory_bytes=80 << 30,
                      cache_bytes=50 << 20)
    monkeypatch.setattr(device, "resolve_device", lambda spec=None: h100)
    monkeypatch.setattr(runner, "free_memory_bytes", lambda dev: 80 << 30)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: gpus)


def test_collectives_on_a_gpu_node_default_to_every_gpu(capsys, tmp_path, monkeypatch):
    """nccl-tests' users expect every visible GPU: without --nproc a collective run on a GPU
    node starts torchrun with one rank per GPU, as if --nproc <device_count> had been given."""
    from gpubench import launch

    _gpu_node(monkeypatch, 4)
    started = []
    monkeypatch.setattr(launch, "launch", lambda n, args, out: started.append((n, args, out)) or 0)
    out = tmp_path / "r.json"
    code, _, err = invoke(capsys, "run", "--suite", "comm", "--sizes", "1M:4M", "--out", str(out))
    assert code == 0, err
    (n, args, to), = started
    assert n == 4 and to == out
    assert args == ["run", "--suite", "comm", "--out", str(out), "--sizes", "1M:4M"]
    assert "--nproc 4, one rank per visible GPU" in err
    code, _, err = invoke(capsys, "run", "--benchmark", "all_reduce", "--size", "1G", "--out", str(out))
    assert code == 0 and started[1][0] == 4, err
    assert started[1][1][:5] == ["run", "--benchmark", "all_reduce", "--size", str(1 << 30)]


@pytest.mark.parametrize("gpus, device, needle", [
    (1, "auto", "1 CUDA device is visible: NCCL needs ≥2 GPUs"),
    (4, "cuda:1", "--device cuda:1 names one GPU"),
])
def test_collectives_on_one_gpu_are_refused(capsys, tmp_path, monkeypatch, gpus, device, needle):
    """With one GPU (or one named) there is no second rank to default to: say so, write nothing."""
    _gpu_node(monkeypatch, gpus)
    code, _, err = invoke(capsys, "run", "--suite", "comm", "--device", device, "--out", str(tmp_path / "r.json"))
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1 and needle in lines[0], err
    assert not (tmp_path / "r.json").exists()


def test_ctrl_c_under_nproc_says_what_was_kept(capsys, tmp_path, monkeypatch):
    """Ctrl-C under --nproc ends like Ctrl-C in one process: exit 130, the file says
    'interrupted', and one line says how many records it keeps (it used to say nothing)."""
    import subprocess

    from gpubench.results import Record, ResultWriter, Run, load_run

    for var in RANK_VARS:
        monkeypatch.delenv(var, raising=False)
    out = tmp_path / "r.json"

    class Torchrun:
        """Rank 0 has written two records when Ctrl-C reaches the launcher."""

        def __init__(self, cmd, **kwargs):
            writer = ResultWriter(out, Run(suite="comm", env={}))
            for size in (4096, 8192):
                writer.add(Record("all_reduce", {"size_bytes": size}, "ok", "cpu"))
            self.stderr = self.lines()

        def lines(self):
            yield "[1/2] all_reduce fp32 4 KiB in-place ×2: 0.1 GB/s busbw\n"
            raise KeyboardInterrupt

        def communicate(self, timeout=None):
            return None, "Traceback (most recent call last):\nKeyboardInterrupt\n"

        def wait(self, timeout=None):
            return 130

        def kill(self):
            pass

    monkeypatch.setattr(subprocess, "Popen", Torchrun)
    code, _, err = invoke(capsys, "run", "--suite", "comm", "--nproc", "2", "--device", "cpu",
                          "--out", str(out))
    assert code == 130, err
    assert err.strip().splitlines()[-1] == f"interrupted: 2 record(s) kept in {out}"
    assert "Traceback" not in err
    run = load_run(out)
    assert run.status == "interrupted" and len(run.records) == 2


@pytest.mark.parametrize("args, env, needle", [
    (["--suite", "comm", "--nproc", "0"], {}, "--nproc 0"),
    (["--suite", "comm", "--sizes", "1G:8"], {}, "need 1 ≤ min ≤ max"),
    (["--suite", "membw", "--sizes", "8:64"], {}, "--sizes sets collective"),
    (["--suite", "mamf", "--nproc", "2"], {}, "searches"),
    (["--suite", "comm", "--nproc", "2"], {"RANK": "0", "WORLD_SIZE": "2"}, "leave it out"),
    (["--suite", "comm"], {"RANK": "2", "WORLD_SIZE": "2"}, "RANK=2"),
    (["--benchmark", "all_reduce", "--dtype", "tf32"], {}, "all_reduce dtype='tf32'"),
    (["--suite", "comm", "--dist-timeout", "0"], {"RANK": "0", "WORLD_SIZE": "1"}, "--dist-timeout"),
])
def test_bad_input_one_line(capsys, tmp_path, monkeypatch, args, env, needle):
    for var in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE"):
        monkeypatch.delenv(var, raising=False)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    code, _, err = invoke(capsys, "run", "--device", "cpu", "--out", str(tmp_path / "r.json"), *args)
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1, err
    assert lines[0].startswith("gpubench: error: ") and needle in lines[0], lines[0]
    assert not (tmp_path / "r.json").exists()


def test_result_units_cover_new_metrics():
    from gpubench.results import UNITS

    assert "_us" in UNITS and "straggler_ratio" in UNITS and "gbps" in UNITS


def test_report_prints_collectives_in_nccl_tests_columns():
    from gpubench.report import render
    from gpubench.results import Record, Run

    def rec(op, size, busbw, status="ok"):
        return Record(benchmark=op, status=status, device="cpu",
                      params={"size_bytes": size, "dtype": "bf16", "inplace": op == "all_reduce",
                              "world_size": 8},
                      metrics={"algbw_gbps": busbw / 1.75, "busbw_gbps": busbw, "latency_us": 12.5,
                               "straggler_ratio": 1.02} if status == "ok" else {},
                      timing={"cov": 0.01} if status == "ok" else None,
                      reason=None if status == "ok" else "needs 2 ranks")

    run = Run(suite="comm", env={}, records=[rec("all_reduce", 1 << 30, 371.5),
                                            rec("all_gather", 1 << 20, 99.25),
                                            rec("broadcast", 8, 0.0, status="skipped")])
    text = render(run)
    assert "busbw GB/s" in text and "algbw GB/s" in text
    row = next(line for line in text.splitlines() if line.startswith("all_reduce"))
    assert "1 GiB" in row and " 372 " in row and " in " in row
    assert any(line.startswith("all_gather") and "1 MiB" in line for line in text.splitlines())
    assert "skipped" in text and "needs 2 ranks" in text
