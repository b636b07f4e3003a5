"""Runs with more than one rank: torchrun's environment, the process group, and the
timing and bookkeeping every rank must do in step.

torchrun (or srun + torchrun) starts one process per GPU and sets RANK, WORLD_SIZE,
LOCAL_RANK, LOCAL_WORLD_SIZE, MASTER_ADDR and MASTER_PORT; ``init`` joins the
group (NCCL on CUDA with the rank's GPU bound, gloo on the CPU), with a bounded
timeout so an unreachable rendezvous or a missing rank is a one-line error, not a
hang.

Collectives deadlock if ranks disagree on what to run, so everything that decides
control flow is agreed on explicitly:

* ``measure`` fixes the warm-up and iteration counts from the slowest rank's
  warm-up estimate (an all-reduce MAX), never from each rank's own clock; the
  per-iteration times are all-gathered and an iteration's time is the slowest
  rank's. Per-rank statistics are kept to show stragglers.
* ``DistRunner`` runs each case in three phases (set-up, check, timing) and after
  each one every rank shares its outcome, so a case that fails or is skipped on one
  rank is failed or skipped on all of them before anyone enters a collective alone.
  When the sharing itself fails, a rank has gone: ``PeerLost`` ends the run.
"""

from __future__ import annotations

import contextlib
import datetime
import os
import signal
import sys
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

import torch

from gpubench.device import DeviceInfo
from gpubench.errors import CheckFailed, GpubenchError, SkipCase
from gpubench.registry import Search
from gpubench.results import Record, clean_floats, utc_now
from gpubench.runner import Runner, _is_oom, _one_line, _release, set_up
from gpubench.telemetry import Sampler
from gpubench.timing import Measurement, Stats, Timer, TimerConfig

DEFAULT_TIMEOUT_S = 180.0       # rendezvous and any one collective; GPUBENCH_DIST_TIMEOUT overrides
PEER_LOST_EXIT = 3              # a rank's exit code when another rank vanished (not its own fault)


class RendezvousError(GpubenchError):
    """The group could not be formed: wrong world size, unreachable master, bad variables."""


class PeerLost(RuntimeError):
    """A collective that every rank must join failed: another rank died or hung."""


@dataclass(frozen=True)
class RankInfo:
    rank: int
    world_size: int
    local_rank: int
    local_world_size: int
    nodes: int
    master: str | None

    @property
    def is_root(self) -> bool:
        return self.rank == 0


def _int_var(env: Mapping[str, str], name: str, default: int | None = None) -> int:
    text = env.get(name)
    if text is None:
        if default is None:
            raise RendezvousError(f"{name} is not set (torchrun sets it)")
        return default
    try:
        return int(text)
    except ValueError:
        raise RendezvousError(f"{name}={text!r} is not a whole number") from None


def rank_info(env: Mapping[str, str] | None = None) -> RankInfo | None:
    """What torchrun told this process, or None when it was not started by a launcher."""
    env = os.environ if env is None else env
    if "WORLD_SIZE" not in env and "RANK" not in env:
        return None
    world = _int_var(env, "WORLD_SIZE")
    rank = _int_var(env, "RANK")
    local_rank = _int_var(env, "LOCAL_RANK", rank)
    local_world = _int_var(env, "LOCAL_WORLD_SIZE", world)
    if world < 1 or not 0 <= rank < world:
        raise RendezvousError(f"RANK={rank} with WORLD_SIZE={world}: the rank must be in 0..{world - 1}")
    if not 0 <= local_rank < local_world or local_world > world:
        raise RendezvousError(f"LOCAL_RANK={local_rank}, LOCAL_WORLD_SIZE={local_world}, "
                              f"WORLD_SIZE={world} do not fit together")
    # torchrun's GROUP_WORLD_SIZE counts its agents, one per node.
    nodes = _int_var(env, "GROUP_WORLD_SIZE", max(1, world // local_world))
    master = f"{env['MASTER_ADDR']}:{env.get('MASTER_PORT', '?')}" if env.get("MASTER_ADDR") else None
    return RankInfo(rank, world, local_rank, local_world, nodes, master)


def rank_device(spec: str | None, info: RankInfo | None) -> str | None:
    """Each rank of a multi-GPU node drives the GPU of its local rank."""
    text = (spec or "auto").strip().lower()
    if info is None:
        return spec
    if text == "auto":
        text = "cuda" if torch.cuda.is_available() else "cpu"
    if text == "cuda":
        count = torch.cuda.device_count()
        if info.local_world_size > count:
            raise RendezvousError(f"{info.local_world_size} ranks on this node but {count} CUDA "
                                  f"device(s) visible: one rank per GPU (use --device cpu for gloo)")
        return f"cuda:{info.local_rank}"
    if text.startswith("cuda:") and info.local_world_size > 1:
        raise RendezvousError(f"--device {text} names one GPU, but {info.local_world_size} ranks share "
                              f"this node: pass --device cuda and each rank takes cuda:LOCAL_RANK")
    return text


def timeout_s(value: float | None = None) -> float:
    if value is None:
        value = float(os.environ.get("GPUBENCH_DIST_TIMEOUT", DEFAULT_TIMEOUT_S))
    if not value > 0:
        raise GpubenchError(f"--dist-timeout {value} must be a positive number of seconds")
    return float(value)


class DistContext:
    """One rank's view of the group, with the few collectives gpubench itself needs."""

    def __init__(self, info: RankInfo, device: DeviceInfo, backend: str, timeout: float):
        self.info, self.device, self.backend, self.timeout_s = info, device, backend, timeout
        # NCCL only moves CUDA tensors: gpubench's own bookkeeping goes where the data goes.
        self.tensor_device = device.torch_device if device.is_cuda else torch.device("cpu")
        self.nccl_log: str | None = None        # NCCL's debug file for this process, if asked for
        self._nccl_offset = 0

    def nccl_choices(self) -> list[tuple[str, int, str, str]]:
        """NCCL's (function, bytes, algorithm, protocol) lines logged since the last call."""
        from gpubench.env import parse_nccl_tuning

        if not self.nccl_log:
            return []
        try:
            with open(self.nccl_log, "rb") as f:
                f.seek(self._nccl_offset)
                text = f.read()
                self._nccl_offset = f.tell()
        except OSError:
            return []
        return parse_nccl_tuning(text.decode(errors="replace"))

    @property
    def rank(self) -> int:
        return self.info.rank

    @property
    def world_size(self) -> int:
        return self.info.world_size

    @property
    def is_root(self) -> bool:
        return self.info.rank == 0

    def _collective(self, what: str, fn: Callable[[], Any]) -> Any:
        try:
            return fn()
        except Exception as e:  # any failure here means the group is broken
            raise PeerLost(f"rank {self.rank}: {what} across {self.world_size} ranks failed "
                           f"({type(e).__name__}: {str(e).strip().splitlines()[0][:200] if str(e).strip() else ''}); "
                           f"another rank has probably died") from e

    def share(self, obj: Any) -> list[Any]:
        """Every rank's ``obj``, in rank order, on every rank."""
        import torch.distributed as dist

        out: list[Any] = [None] * self.world_size
        self._collective("sharing outcomes", lambda: dist.all_gather_object(out, obj))
        return out

    def max_float(self, x: float) -> float:
        import torch.distributed as dist

        t = torch.tensor([x], dtype=torch.float64, device=self.tensor_device)
        self._collective("agreeing on a timing", lambda: dist.all_reduce(t, op=dist.ReduceOp.MAX))
        return float(t.item())

    def barrier(self) -> None:
        # An all-reduce rather than dist.barrier(): NCCL's barrier guesses a device.
        self.max_float(0.0)

    def gather_samples(self, samples: list[float]) -> list[list[float]]:
        """Every rank's per-iteration times (same length on all ranks), rank-major."""
        import torch.distributed as dist

        t = torch.tensor(samples, dtype=torch.float64, device=self.tensor_device)
        parts = [torch.empty_like(t) for _ in range(self.world_size)]
        self._collective("gathering times", lambda: dist.all_gather(parts, t))
        return [p.cpu().tolist() for p in parts]


@contextlib.contextmanager
def _quiet_stderr():
    """Hold back what C++ writes to stderr (c10d's retry logs, with stack frames) while
    joining: on failure the one-line error says it; on success it is passed on."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as buf:
        os.dup2(buf.fileno(), 2)
        ok = False
        try:
            yield
            ok = True
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            if ok:
                buf.seek(0)
                sys.stderr.write(buf.read().decode(errors="replace"))
                sys.stderr.flush()


def init(info: RankInfo, device: DeviceInfo, timeout: float | None = None) -> DistContext:
    """Join the process group torchrun described, or fail in bounded time with one line."""
    import torch.distributed as dist

    timeout = timeout_s(timeout)
    if not dist.is_available():
        raise RendezvousError(f"torch {torch.__version__} was built without torch.distributed")
    backend = "nccl" if device.is_cuda else "gloo"
    kwargs: dict[str, Any] = {"backend": backend, "timeout": datetime.timedelta(seconds=timeout)}
    nccl_log = None
    if device.is_cuda:
        from gpubench.env import request_nccl_debug

        nccl_log = request_nccl_debug()                 # before NCCL starts: it reads env once
        torch.cuda.set_device(device.index)
        kwargs["device_id"] = device.torch_device       # binds the communicator to this GPU
    if not dist.is_initialized():
        try:
            with _quiet_stderr():
                dist.init_process_group(**kwargs)
        except Exception as e:  # noqa: BLE001 - store/NCCL errors come in many types
            first = (str(e).strip().splitlines() or [type(e).__name__])[0][:300]
            raise RendezvousError(
                f"rank {info.rank} of {info.world_size} could not join the group at "
                f"{info.master or 'the rendezvous'} within {timeout:g} s ({type(e).__name__}: {first}); "
                f"check that all {info.world_size} ranks were started (--nnodes, --nproc-per-node) "
                f"and that the master address is reachable") from None
    ctx = DistContext(info, device, backend, timeout)
    ctx.nccl_log = nccl_log
    # Nobody starts until everybody has joined (NCCL forms its communicator here too).
    ctx.barrier()
    return ctx


def shutdown() -> None:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        with contextlib.suppress(Exception):    # leaving anyway
            dist.destroy_process_group()


def leave(code: int) -> None:
    """End a rank whose work is done and written, skipping the interpreter's teardown.

    The process group's C++ threads (gloo, the c10d store) can abort a process while
    statics are destroyed ("terminate called without an active exception", seen in CI
    after a complete run); torchrun would then report a failed rank for a run that
    finished. Nothing is left to clean up here, so exit at once.
    """
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


# ---- timing in step ----

def _warm(timer: Timer, fn, flush, iters: int) -> float:
    """Run ``iters`` synchronised iterations; return seconds per iteration."""
    return sum(timer.run_once(fn, flush) for _ in range(iters)) / max(iters, 1)


def measure(fn: Callable[[], object], ctx: DistContext, cfg: TimerConfig, *,
            flush_l2: bool = False, cuda_graph: bool = False, timer: Timer | None = None,
            telemetry=None) -> Measurement:
    """The single-process timer's loop, with counts every rank agrees on.

    CUDA events per iteration on a GPU (the collectives run back to back, as in
    nccl-tests), the host clock on a CPU. The iteration's time is the slowest rank's.
    """
    device = ctx.device
    timer = timer or Timer(device, cfg, telemetry)
    flush = timer.flusher() if flush_l2 else None
    method = "cuda_event" if device.is_cuda else "host_clock"
    if cuda_graph and device.is_cuda:
        fn, method = timer._graphed(fn, cfg.graph_reps), "cuda_graph"
    t0 = time.perf_counter()
    first = max(cfg.min_warmup_iters, 1)
    per_iter = ctx.max_float(_warm(timer, fn, flush, first))
    # From here on every rank computes the same integers from the same number.
    more = max(0, min(cfg.max_iters, int(cfg.warmup_s / max(per_iter, 1e-9))) - first)
    _warm(timer, fn, flush, more)
    iters = int(min(cfg.max_iters, max(cfg.min_iters, cfg.measure_s / max(per_iter, 1e-9))))
    warm_s = time.perf_counter() - t0
    ctx.barrier()       # start together: an early rank would otherwise time its wait
    with Sampler(telemetry) as sampler:
        mine = timer.samples(fn, flush, iters, cfg.graph_reps if method == "cuda_graph" else 1)
    table = ctx.gather_samples(mine)
    slowest = [max(col) for col in zip(*table)]
    stats = Stats.from_samples(slowest)
    per_rank = [Stats.from_samples(row) for row in table]
    medians = [s.median_s for s in per_rank]
    extra = {
        "reduction": "slowest rank per iteration",
        "world_size": ctx.world_size,
        "agreed_iters": iters,
        "rank_median_s": medians,
        "rank_p10_s": [s.p10_s for s in per_rank],
        "rank_p90_s": [s.p90_s for s in per_rank],
        "rank_cov": [s.cov for s in per_rank],
        "straggler_ratio": max(medians) / min(medians) if min(medians) > 0 else None,
    }
    if method == "cuda_graph":
        extra["graph_reps"] = cfg.graph_reps
    return Measurement(stats=stats, samples_s=slowest, method=method, warmup_iters=first + more,
                       warmup_s=warm_s, l2_flush=flush is not None, cuda_graph=method == "cuda_graph",
                       high_cov=bool(stats.cov > cfg.cov_warn), telemetry=sampler.summary(), extra=extra)


# ---- running cases in step ----

def combine(outcomes: list[tuple[str, str | None]]) -> tuple[str, str | None]:
    """Every rank's (status, message) → the case's: any failure fails it, any skip skips it."""
    for status in ("failed", "skipped"):
        hits = [(r, msg) for r, (s, msg) in enumerate(outcomes) if s == status]
        if not hits:
            continue
        msgs = {msg for _, msg in hits}
        if len(hits) == len(outcomes) and len(msgs) == 1:
            return status, hits[0][1]
        by_msg: dict[str | None, list[int]] = {}
        for r, msg in hits:
            by_msg.setdefault(msg, []).append(r)
        parts = [f"rank{'s' if len(rs) > 1 else ''} {','.join(map(str, rs))}: {msg}" for msg, rs in by_msg.items()]
        return status, "; ".join(parts)
    return "ok", None


def _outcome(e: BaseException) -> tuple[str, str]:
    if isinstance(e, SkipCase):
        return "skipped", str(e)
    if isinstance(e, CheckFailed):
        return "failed", f"correctness check failed: {e}"
    if isinstance(e, GpubenchError):
        return "failed", str(e)
    if os.environ.get("GPUBENCH_DEBUG"):
        import traceback

        traceback.print_exc()
    return "failed", (f"out of memory: {_one_line(e)}" if _is_oom(e) else _one_line(e))


class DistRunner(Runner):
    """The runner for one rank of many: same records, decided together.

    Only rank 0 has a writer; every rank builds the same records from the shared
    outcomes and gathered times.
    """

    def __init__(self, ctx: DistContext, device: DeviceInfo, timer_config: TimerConfig | None = None,
                 writer=None, progress=None, telemetry="auto"):
        super().__init__(device, timer_config, writer, progress, telemetry)
        self.ctx = ctx

    def run(self, items):
        refuse_searches(items, self.ctx.world_size)
        fault_rank = os.environ.get("GPUBENCH_FAULT_RANK")    # test hook: a rank that dies
        fault_after = int(os.environ.get("GPUBENCH_FAULT_AFTER", "1"))
        self.progress.start(len(items))
        try:
            for i, item in enumerate(items):
                if fault_rank is not None and int(fault_rank) == self.ctx.rank and i == fault_after:
                    os.kill(os.getpid(), signal.SIGKILL)
                label = self.describe(item)
                self.progress.begin(label)
                record = self.run_case(item)
                self.emit(record)
                self.progress.done(record, label)
            # Rank 0 may call the run complete only when every rank got here.
            self.ctx.share("done")
        finally:
            self.progress.stop()
        return self.records

    def _agree(self, status: str, msg: str | None) -> tuple[str, str | None]:
        return combine(self.ctx.share((status, msg)))

    def run_case(self, case, timer_config: TimerConfig | None = None):
        started, t0 = utc_now(), time.perf_counter()
        base = {"benchmark": case.benchmark, "params": dict(case.params),
                "device": self.device.label, "started_at": started}

        def ended(status: str, msg: str | None):
            key = "reason" if status == "skipped" else "error"
            return Record(status=status, duration_s=time.perf_counter() - t0, **{key: msg}, **base)

        work, status, msg = None, "ok", None
        try:
            # 1. Set-up, local to each rank: allocation and fills, no collective yet.
            try:
                bench, params, work = set_up(case, self.device, base)
            except Exception as e:  # noqa: BLE001 - shared with the other ranks below
                status, msg = _outcome(e)
            status, msg = self._agree(status, msg)
            if status != "ok":
                return ended(status, msg)
            cfg = timer_config or self.timer.config.for_work(work.timer)
            with work.context():
                # 2. The correctness check (runs the collective once on known data).
                check = None
                try:
                    check = work.check() if work.check else None
                except Exception as e:  # noqa: BLE001
                    status, msg = _outcome(e)
                status, msg = self._agree(status, msg)
                if status != "ok":
                    return ended(status, msg)
                # 3. Timing, counts agreed inside measure().
                try:
                    m = measure(work.fn, self.ctx, cfg, flush_l2=work.flush_l2,
                                cuda_graph=work.cuda_graph, timer=self.timer,
                                telemetry=self.timer.telemetry)
                    aux = {name: measure(fn, self.ctx, cfg, timer=self.timer)
                           for name, fn in work.aux.items()}
                except PeerLost:
                    raise
                except Exception as e:  # noqa: BLE001
                    status, msg = _outcome(e)
                status, msg = self._agree(status, msg)
                if status != "ok":
                    return ended(status, msg)
            telemetry = self._telemetry(m.telemetry)      # the last collective of the case
            try:
                aux_s = {name: am.stats.median_s for name, am in aux.items()}
                seconds = m.stats.median_s
                if work.info.get("ranks_independent"):
                    # Ranks that never communicate are not in step: the max of their i-th
                    # iterations adds noise, not work. The slowest rank's own median is the rate.
                    seconds = max(m.extra["rank_median_s"])
                metrics = bench.metrics(params, work, seconds, self.device, m.telemetry, aux_s)
            except Exception as e:  # noqa: BLE001 - local from here on: no rank waits on it
                return ended(*_outcome(e))
            metrics["straggler_ratio"] = m.extra["straggler_ratio"]
            metrics["rank_median_s"] = m.extra["rank_median_s"]
            info = dict(work.info)
            info.update(_nccl_choice(bench, params, self.ctx.nccl_choices()))
            timing = m.timing_dict()
            if aux:
                timing["aux"] = {name: asdict(am.stats) for name, am in aux.items()}
            return Record(status="ok", timing=clean_floats(timing), check=clean_floats(check),
                          work={"flops": work.flops, "bytes": work.bytes_moved, **info},
                          metrics=clean_floats(metrics), telemetry=clean_floats(telemetry),
                          duration_s=time.perf_counter() - t0, **base)
        finally:
            del work
            _release(self.device)

    def _telemetry(self, mine: dict | None) -> dict | None:
        """Rank 0's telemetry, with every rank's summary beside it."""
        everyone = self.ctx.share(mine)
        if all(t is None for t in everyone):
            return None
        out = dict(mine or {})
        out["ranks"] = everyone
        return out



def _nccl_choice(bench, params, lines) -> dict:
    """The algorithm and protocol NCCL logged most often for this case's calls."""
    key = getattr(bench, "nccl_call", lambda p: None)(params)
    if not key or not lines:
        return {}
    counts: dict[tuple[str, str], int] = {}
    for func, nbytes, algo, proto in lines:
        if (func, nbytes) == key:
            counts[(algo, proto)] = counts.get((algo, proto), 0) + 1
    if not counts:
        return {}
    (algo, proto), _ = max(counts.items(), key=lambda kv: kv[1])
    return {"nccl_algo": algo, "nccl_proto": proto}


def refuse_searches(items, world_size: int) -> None:
    if world_size > 1 and any(isinstance(i, Search) for i in items):
        raise GpubenchError("searches (the mamf suite) decide as they go, from each rank's own "
                            "clock; they run in one process, not under --nproc/torchrun")
