"""Collectives through torch.distributed, counted the way nccl-tests counts them.

One definition per collective: all_reduce, all_gather (into one tensor),
reduce_scatter (from one tensor), broadcast, all_to_all (single tensor) and
sendrecv (every rank sends to the next and receives from the previous, nccl-tests'
``sendrecv_perf``; with two ranks that is the pair exchanging in both directions).

``size_bytes`` is nccl-tests' S: the whole buffer of an all-reduce or broadcast,
the *gathered* (output) buffer of all_gather, the *input* of reduce_scatter and
each rank's whole send buffer of all_to_all, so that the figures read like
nccl-tests' columns:

    algbw = S / t                       (t: the slowest rank's time of an iteration)
    busbw = algbw · factor(n)           2(n−1)/n all_reduce; (n−1)/n all_gather,
                                        reduce_scatter, all_to_all; 1 broadcast, sendrecv

busbw is the rate each link must sustain in the best (ring) algorithm, so it is
comparable across world sizes and with the hardware's link rate; algbw is what a
caller sees. NVLink SHARP (NVLS) reduces inside the switch, so an all-reduce's
busbw can exceed the ring line rate; the NCCL algorithm is in the record's ``work``
when NCCL's debug output says so (see gpubench.env).

Before timing, each case runs once on inputs whose expected result is known
exactly (small integers, exact in bf16 too, different on every rank) and every
element of the result is compared; outputs are poisoned with NaN first, so an
element nobody wrote fails. The benchmark never times itself: the distributed
runner (gpubench.distributed) agrees on iteration counts and takes the slowest
rank per iteration. At world size 1 every case is ``skipped``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from gpubench.device import DeviceInfo
from gpubench.errors import CheckFailed, GpubenchError, SkipCase
from gpubench.registry import Benchmark, Case, Workload, register_benchmark

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
# bf16 holds every integer up to 2^8 exactly: the reduced check data stays within that.
EXACT_RANKS = 256
MOVE_PERIOD = 127           # values of the data-movement pattern: -63..63, exact in bf16
NEED_TWO = ("collectives need at least 2 ranks: launch with `gpubench run --suite comm "
            "--nproc N` (or torchrun); this process is alone (world size 1)")


@dataclass(frozen=True)
class Collective:
    name: str
    busbw_factor: Callable[[int], float]
    modes: tuple[bool, ...]             # in-place choices torch.distributed can express
    split: bool                         # S must divide into n equal chunks
    what: str


COLLECTIVES: dict[str, Collective] = {c.name: c for c in (
    # torch's all_reduce and broadcast work in place only: no out-of-place variant to time.
    Collective("all_reduce", lambda n: 2 * (n - 1) / n, (True,), False,
               "sum over ranks of S bytes, result on every rank"),
    Collective("all_gather", lambda n: (n - 1) / n, (False, True), True,
               "every rank's S/n bytes gathered into S bytes on every rank"),
    Collective("reduce_scatter", lambda n: (n - 1) / n, (False, True), True,
               "sum over ranks of S bytes, rank r keeps chunk r (S/n bytes)"),
    Collective("broadcast", lambda n: 1.0, (True,), False, "S bytes from rank 0 to every rank"),
    Collective("all_to_all", lambda n: (n - 1) / n, (False,), True,
               "chunk j of each rank's S bytes goes to rank j"),
    Collective("sendrecv", lambda n: 1.0, (False,), False,
               "S bytes to the next rank while receiving S bytes from the previous (a ring)"),
)}


NCCL_FUNCS = {"all_reduce": "AllReduce", "all_gather": "AllGather",
              "reduce_scatter": "ReduceScatter", "broadcast": "Broadcast"}


def busbw_factor(op: str, n: int) -> float:
    return COLLECTIVES[op].busbw_factor(n)


# ---- message sizes: nccl-tests' -b MIN -e MAX -f FACTOR ----

_SUFFIX = {None: 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}


def parse_bytes(text: str) -> int:
    """``8``, ``8B``, ``64K``, ``1M``, ``1G``, ``1GiB``: every size gpubench takes (--size,
    --sizes, -p size_bytes=). K, M, G are 1024-based, as nccl-tests' -b/-e read them, and
    KB/KiB mean the same: a size copied from an nccl-tests command line means one thing."""
    m = re.fullmatch(r"\s*(\d+)\s*(?:([KMGT])(?:i?B)?|B)?\s*", str(text), re.IGNORECASE)
    if not m:
        raise GpubenchError(f"{text!r} is not a size in bytes (e.g. 8, 64K, 1M, 1G: K/M/G are ×1024)")
    return int(m.group(1)) * _SUFFIX[m.group(2) and m.group(2).upper()]


def size_sweep(min_bytes: int, max_bytes: int, factor: int = 2) -> list[int]:
    """min, min·f, min·f², … up to max inclusive (nccl-tests' -b -e -f)."""
    if min_bytes < 1 or max_bytes < min_bytes:
        raise GpubenchError(f"message sizes {min_bytes}..{max_bytes}: need 1 ≤ min ≤ max")
    if factor < 2:
        raise GpubenchError(f"size factor {factor} must be a whole number ≥ 2")
    sizes, s = [], min_bytes
    while s <= max_bytes:
        sizes.append(s)
        s *= factor
    return sizes


def parse_sweep(text: str) -> list[int]:
    """``MIN:MAX[:FACTOR]``, e.g. ``8:1G:2``; a single size is a sweep of one."""
    parts = text.split(":")
    if len(parts) == 1:
        return [parse_bytes(parts[0])]
    if len(parts) not in (2, 3):
        raise GpubenchError(f"--sizes {text!r} is not MIN:MAX[:FACTOR] (e.g. 8:1G:2)")
    factor = 2
    if len(parts) == 3:
        if not parts[2].strip().isdigit():
            raise GpubenchError(f"--sizes {text!r}: the factor must be a whole number ≥ 2")
        factor = int(parts[2])
    return size_sweep(parse_bytes(parts[0]), parse_bytes(parts[1]), factor)


def cases(sizes: Iterable[int], dtypes: Sequence[str] = ("fp32", "bf16"),
          ops: Sequence[str] | None = None) -> list[Case]:
    """Every collective × dtype × its in-place modes × size, sizes innermost (like nccl-tests)."""
    out = []
    for op in ops or COLLECTIVES:
        for dtype in dtypes:
            for inplace in COLLECTIVES[op].modes:
                out += [Case(op, {"size_bytes": s, "dtype": dtype, "inplace": inplace}) for s in sizes]
    return out


def alone(items: list) -> list:
    """One case per collective: what a single process records (all skipped) instead of the sweep."""
    out, seen = [], set()
    for item in items:
        if isinstance(item, Case) and item.benchmark in COLLECTIVES:
            if item.benchmark in seen:
                continue
            seen.add(item.benchmark)
        out.append(item)
    return out


def resize(items: list, sizes: Sequence[int]) -> list:
    """The same cases with ``sizes`` as their message sizes (``--sizes`` on a suite)."""
    if not any(isinstance(i, Case) and i.benchmark in COLLECTIVES for i in items):
        raise GpubenchError("--sizes sets collective message sizes: use it with --suite comm or a "
                            "collective --benchmark")
    out, seen = [], set()
    for item in items:
        if not isinstance(item, Case) or item.benchmark not in COLLECTIVES:
            out.append(item)
            continue
        key = (item.benchmark, tuple(sorted((k, v) for k, v in item.params.items() if k != "size_bytes")))
        if key in seen:
            continue
        seen.add(key)
        out += [Case(item.benchmark, {**item.params, "size_bytes": s}) for s in sizes]
    return out


# ---- the check data: exact, rank-dependent, cheap to recompute ----

def _index_dtype(end: int) -> torch.dtype:
    # int32 halves the check's temporaries; indices past 2^31 need int64.
    return torch.int32 if end + MOVE_PERIOD < 2**31 else torch.int64


def reduce_pattern(rank: int, start: int, numel: int, dtype: torch.dtype, device) -> torch.Tensor:
    """Values in {−1, 0, 1} that differ by rank and index; partial sums stay exact."""
    idx = torch.arange(start, start + numel, device=device, dtype=_index_dtype(start + numel))
    vals = (idx + rank) % 3 - 1
    if rank >= EXACT_RANKS:         # beyond 256 ranks bf16 sums would round: those add zeros
        vals.zero_()
    return vals.to(dtype)


def move_pattern(key: int, numel: int, dtype: torch.dtype, device) -> torch.Tensor:
    """Values in −63..63 that name their source (``key``) for data that is only moved."""
    idx = torch.arange(numel, device=device, dtype=_index_dtype(numel))
    return ((idx + 31 * key % MOVE_PERIOD) % MOVE_PERIOD - MOVE_PERIOD // 2).to(dtype)


def reduced_sum(n: int, start: int, numel: int, dtype: torch.dtype, device) -> torch.Tensor:
    acc = torch.zeros(numel, device=device, dtype=torch.float32)
    for r in range(n):
        acc += reduce_pattern(r, start, numel, torch.float32, device)
    return acc.to(dtype)


def verify(what: str, out: torch.Tensor, expected: torch.Tensor) -> None:
    """Every element equal, or CheckFailed naming the first wrong one."""
    if torch.equal(out, expected):
        return
    wrong = (out != expected) | torch.isnan(out)
    count = int(wrong.sum())
    i = int(wrong.nonzero()[0, 0]) if count else 0
    raise CheckFailed(f"{what}: {count} of {out.numel()} element(s) wrong, first at {i}: "
                      f"got {out[i].item()}, expected {expected[i].item()}")


@dataclass
class Buffers:
    """What an op reads and writes on one rank, and how to refill its inputs."""
    fill: Callable[[], None]            # inputs ← check data, outputs ← NaN
    run: Callable[[], None]             # one collective
    expect: Callable[[], None]          # raises CheckFailed


def _dist():
    import torch.distributed as dist

    if not dist.is_available() or not dist.is_initialized():
        return None
    return dist


def _world() -> tuple[int, int]:
    dist = _dist()
    return (dist.get_rank(), dist.get_world_size()) if dist else (0, 1)


def buffers(op: str, numel: int, inplace: bool, dtype: torch.dtype, device, rank: int, n: int,
            comm: Any) -> Buffers:
    """Allocate one rank's buffers for ``op`` over ``numel`` elements of S.

    ``comm`` is torch.distributed (or a stand-in with the same functions, for tests).
    """
    chunk = numel // n if COLLECTIVES[op].split else numel
    nan = float("nan")
    if op == "all_reduce":
        buf = torch.empty(numel, dtype=dtype, device=device)

        def fill():
            buf.copy_(reduce_pattern(rank, 0, numel, dtype, device))

        return Buffers(fill, lambda: comm.all_reduce(buf),
                       lambda: verify("all_reduce", buf, reduced_sum(n, 0, numel, dtype, device)))
    if op == "all_gather":
        out = torch.empty(numel, dtype=dtype, device=device)
        inp = out[rank * chunk:(rank + 1) * chunk] if inplace else torch.empty(chunk, dtype=dtype, device=device)
        gather = getattr(comm, "all_gather_single", None) or comm.all_gather_into_tensor

        def fill():
            out.fill_(nan)
            inp.copy_(move_pattern(rank, chunk, dtype, device))

        def expect():
            want = torch.cat([move_pattern(j, chunk, dtype, device) for j in range(n)])
            verify("all_gather", out, want)

        return Buffers(fill, lambda: gather(out, inp), expect)
    if op == "reduce_scatter":
        inp = torch.empty(numel, dtype=dtype, device=device)
        out = inp[rank * chunk:(rank + 1) * chunk] if inplace else torch.empty(chunk, dtype=dtype, device=device)
        scatter = getattr(comm, "reduce_scatter_single", None) or comm.reduce_scatter_tensor

        def fill():
            if not inplace:
                out.fill_(nan)
            inp.copy_(reduce_pattern(rank, 0, numel, dtype, device))

        return Buffers(fill, lambda: scatter(out, inp), lambda: verify(
            "reduce_scatter", out, reduced_sum(n, rank * chunk, chunk, dtype, device)))
    if op == "broadcast":
        buf = torch.empty(numel, dtype=dtype, device=device)

        def fill():     # every rank starts different, so a broadcast that did nothing fails
            buf.copy_(move_pattern(rank, numel, dtype, device))

        return Buffers(fill, lambda: comm.broadcast(buf, 0),
                       lambda: verify("broadcast", buf, move_pattern(0, numel, dtype, device)))
    if op == "all_to_all":
        inp = torch.empty(numel, dtype=dtype, device=device)
        out = torch.empty(numel, dtype=dtype, device=device)

        def fill():     # chunk j of rank r carries key r·n + j: sender and receiver both show
            out.fill_(nan)
            inp.copy_(torch.cat([move_pattern(rank * n + j, chunk, dtype, device) for j in range(n)]))

        def expect():
            want = torch.cat([move_pattern(j * n + rank, chunk, dtype, device) for j in range(n)])
            verify("all_to_all", out, want)

        return Buffers(fill, lambda: comm.all_to_all_single(out, inp), expect)
    if op == "sendrecv":
        send = torch.empty(numel, dtype=dtype, device=device)
        recv = torch.empty(numel, dtype=dtype, device=device)
        nxt, prev = (rank + 1) % n, (rank - 1) % n

        def fill():
            recv.fill_(nan)
            send.copy_(move_pattern(rank, numel, dtype, device))

        def run():
            ops = [comm.P2POp(comm.isend, send, nxt), comm.P2POp(comm.irecv, recv, prev)]
            for work in comm.batch_isend_irecv(ops):
                work.wait()

        return Buffers(fill, run, lambda: verify("sendrecv", recv, move_pattern(prev, numel, dtype, device)))
    raise GpubenchError(f"unknown collective {op!r}")


class CollectiveBenchmark(Benchmark):
    op: str

    def normalize(self, params: Mapping[str, Any]) -> dict[str, Any]:
        c = COLLECTIVES[self.op]
        p = dict(params)
        dtype = str(p.get("dtype", "fp32")).lower()
        if dtype not in DTYPES:
            raise GpubenchError(f"{self.op} dtype={dtype!r}: use one of {', '.join(DTYPES)}")
        p["dtype"] = dtype
        try:
            size = int(p.get("size_bytes", 1 << 20))
        except (TypeError, ValueError):
            raise GpubenchError(f"{self.op} size_bytes={p.get('size_bytes')!r} is not a whole number") from None
        if size < 1:
            raise GpubenchError(f"{self.op} size_bytes={size} must be positive")
        inplace = p.get("inplace", c.modes[0])
        if isinstance(inplace, str):
            inplace = inplace.lower() in ("1", "true", "yes")
        if bool(inplace) not in c.modes:
            raise GpubenchError(f"{self.op} has no {'in-place' if inplace else 'out-of-place'} form "
                                f"in torch.distributed")
        p["inplace"] = bool(inplace)
        n = _world()[1]
        p["world_size"] = n
        # Whole elements, split evenly over ranks where the op splits S (nccl-tests rounds
        # the count down the same way); never below one element per rank.
        unit = DTYPES[dtype].itemsize * (n if c.split else 1)
        p["size_bytes"] = max(unit, size // unit * unit)
        return p

    def memory_bytes(self, params: Mapping[str, Any]) -> int:
        # Two buffers of S plus the check's temporaries (an index, a float32 sum, a pattern).
        return 2 * params["size_bytes"] + 16 * (params["size_bytes"] // DTYPES[params["dtype"]].itemsize)

    def label(self, params: Mapping[str, Any]) -> str:
        size = params["size_bytes"]
        text = f"{size / 2**20:g} MiB" if size >= 1 << 20 else (f"{size / 2**10:g} KiB" if size >= 1024 else f"{size} B")
        mode = "in-place" if params["inplace"] else "out-of-place"
        return f"{params['dtype']} {text} {mode} ×{params['world_size']}"

    def prepare(self, params: Mapping[str, Any], device: DeviceInfo) -> Workload:
        dist = _dist()
        rank, n = _world()
        if n < 2:
            raise SkipCase(NEED_TWO)
        dtype = DTYPES[params["dtype"]]
        numel = params["size_bytes"] // dtype.itemsize
        b = buffers(self.op, numel, params["inplace"], dtype, device.torch_device, rank, n, dist)
        b.fill()            # allocate and touch everything before the ranks agree to go on

        def check() -> dict | None:
            if not params.get("check", True):
                return None
            b.fill()
            b.run()
            device.synchronize()
            b.expect()
            return {"reference": "exact (integer data; every element compared)", "rel_err": 0.0,
                    "tolerance": 0.0}

        return Workload(fn=b.run, bytes_moved=float(params["size_bytes"]), check=check,
                        info={"collective": COLLECTIVES[self.op].what,
                              "busbw_factor": busbw_factor(self.op, n),
                              "backend": dist.get_backend() if dist else None})

    def nccl_call(self, params: Mapping[str, Any]) -> tuple[str, int] | None:
        """The (function, bytes) NCCL's tuning log names this case's calls by."""
        func = NCCL_FUNCS.get(self.op)
        if func is None:
            return None     # all_to_all and sendrecv are grouped sends and receives in NCCL
        per_rank = COLLECTIVES[self.op].split      # NCCL counts the per-rank chunk there
        return func, params["size_bytes"] // (params["world_size"] if per_rank else 1)

    def metrics(self, params, work: Workload, seconds: float, device: DeviceInfo,
                telemetry, aux_s) -> dict[str, Any]:
        algbw = params["size_bytes"] / seconds / 1e9
        return {"algbw_gbps": algbw, "busbw_gbps": algbw * busbw_factor(self.op, params["world_size"]),
                "latency_us": seconds * 1e6, "power_w": (telemetry or {}).get("power_w_mean")}


def _register(op: str) -> None:
    cls = type(f"Comm_{op}", (CollectiveBenchmark,), {
        "name": op, "op": op,
        "description": f"{COLLECTIVES[op].what}: algbw, busbw (nccl-tests), latency; needs ≥2 ranks"})
    register_benchmark(cls)


for _op in COLLECTIVES:
    _register(_op)

