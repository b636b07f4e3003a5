"""The one timer every benchmark goes through.

GPU work is timed with a pair of CUDA events around each iteration, after a
time-based warm-up (clocks ramp, caches of handles and kernels fill), with an
optional L2 flush before each iteration so that a kernel cannot read its inputs
from the previous iteration's cache, and an optional CUDA-graph replay for kernels
so small that launch overhead would dominate. A CPU device goes through the same
loop with the host clock. The result is a distribution, not a number: median,
p10/p90 and the coefficient of variation, with a flag when the spread is too
large to trust the median.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field, replace
from typing import Callable

import torch

from gpubench.device import DeviceInfo
from gpubench.telemetry import Sampler, TelemetrySource


@dataclass(frozen=True)
class TimerConfig:
    warmup_s: float = 0.2           # host time spent warming up before measuring
    min_warmup_iters: int = 2
    measure_s: float = 0.5          # target time of the timed iterations
    min_iters: int = 10
    max_iters: int = 1000
    cov_warn: float = 0.05          # CoV above this marks the median as shaky
    graph_reps: int = 10            # calls captured per CUDA graph replay
    quick: bool = False             # --quick: a workload's own settings are shortened too

    @classmethod
    def for_device(cls, device: DeviceInfo, quick: bool = False) -> "TimerConfig":
        if device.is_cuda:
            return cls(warmup_s=0.05, measure_s=0.1, min_iters=5, quick=True) if quick else cls()
        # CPU numbers are a smoke test of the path, not a measurement anyone
        # should buy hardware on: keep them cheap.
        return cls(warmup_s=0.05, min_warmup_iters=1, measure_s=0.25, min_iters=5, max_iters=200, quick=quick)

    def for_work(self, overrides) -> "TimerConfig":
        """This config with a workload's own settings (a training step needs more warm-up
        than a kernel); under --quick they are halved, never below three iterations."""
        if not overrides:
            return self
        cfg = replace(self, **overrides)
        if self.quick:
            cfg = replace(cfg, warmup_s=cfg.warmup_s / 2, measure_s=cfg.measure_s / 2,
                          min_iters=max(3, cfg.min_iters // 2))
        return cfg


def percentile(sorted_values: list[float], q: float) -> float:
    """Linear interpolation between closest ranks (numpy's default), q in [0, 100]."""
    if not sorted_values:
        raise ValueError("percentile of no values")
    pos = (len(sorted_values) - 1) * q / 100.0
    lo = math.floor(pos)
    hi = min(lo + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (pos - lo)


@dataclass(frozen=True)
class Stats:
    """Summary of per-iteration times, all in seconds (CoV is a ratio)."""

    n: int
    median_s: float
    mean_s: float
    min_s: float
    max_s: float
    p10_s: float
    p90_s: float
    std_s: float
    cov: float

    @classmethod
    def from_samples(cls, samples_s: list[float]) -> "Stats":
        if not samples_s:
            raise ValueError("no timing samples")
        xs = sorted(samples_s)
        n = len(xs)
        mean = sum(xs) / n
        # Sample standard deviation: the iterations are a sample of the kernel's behaviour.
        std = math.sqrt(sum((x - mean) ** 2 for x in xs) / (n - 1)) if n > 1 else 0.0
        return cls(
            n=n,
            median_s=percentile(xs, 50),
            mean_s=mean,
            min_s=xs[0],
            max_s=xs[-1],
            p10_s=percentile(xs, 10),
            p90_s=percentile(xs, 90),
            std_s=std,
            cov=std / mean if mean > 0 else float("nan"),
        )


@dataclass
class Measurement:
    stats: Stats
    samples_s: list[float]
    method: str                     # "cuda_event", "cuda_graph" or "host_clock"
    warmup_iters: int
    warmup_s: float
    l2_flush: bool
    cuda_graph: bool
    high_cov: bool
    telemetry: dict | None = None
    extra: dict = field(default_factory=dict)

    def timing_dict(self) -> dict:
        """The record's ``timing`` block (telemetry is stored beside it)."""
        out = {"method": self.method, "warmup_iters": self.warmup_iters,
               "warmup_s": self.warmup_s, "l2_flush": self.l2_flush,
               "cuda_graph": self.cuda_graph, **asdict(self.stats),
               "high_cov": self.high_cov, "samples_s": self.samples_s}
        out.update(self.extra)
        return out


class _L2Flusher:
    """Overwrites a buffer twice the size of the last-level cache.

    Writing (not reading) is what evicts: the dirty lines of this buffer push
    everything else out, which is what triton.testing.do_bench does too.
    """

    def __init__(self, device: DeviceInfo):
        n = max(2 * device.cache_bytes, 8 * 1024**2)
        self.buf = torch.empty(n, dtype=torch.int8, device=device.torch_device)

    def __call__(self) -> None:
        self.buf.zero_()


class Timer:
    def __init__(self, device: DeviceInfo, config: TimerConfig | None = None,
                 telemetry: TelemetrySource | None = None):
        self.device = device
        self.config = config or TimerConfig.for_device(device)
        self.telemetry = telemetry
        self._flusher: _L2Flusher | None = None

    def flusher(self) -> _L2Flusher:
        if self._flusher is None:
            self._flusher = _L2Flusher(self.device)
        return self._flusher

    def measure(self, fn: Callable[[], object], *, flush_l2: bool = False,
                cuda_graph: bool = False, config: TimerConfig | None = None) -> Measurement:
        cfg = config or self.config
        if flush_l2 and cuda_graph:
            # A graph replays graph_reps iterations back to back: a flush could only run once per
            # replay, so all but the first iteration would read a warm cache under a "flushed" label.
            raise ValueError("an L2 flush and a CUDA-graph replay cannot be combined: choose one")
        flush = self.flusher() if flush_l2 else None
        method = "host_clock"
        if self.device.is_cuda:
            method = "cuda_event"
            if cuda_graph:
                fn = self._graphed(fn, cfg.graph_reps)
                method = "cuda_graph"
        warm_iters, warm_s, per_iter_s = self._warm_up(fn, flush, cfg)
        iters = int(min(cfg.max_iters, max(cfg.min_iters, cfg.measure_s / max(per_iter_s, 1e-9))))
        with Sampler(self.telemetry) as sampler:
            samples = self.samples(fn, flush, iters, cfg.graph_reps if method == "cuda_graph" else 1)
        stats = Stats.from_samples(samples)
        flushed = flush is not None
        if flushed:
            # The flush buffer (twice the L2: 120 MB on an H200) is freed with the case, so the next
            # case's peak memory (a training step's) does not count it.
            del flush
            self._flusher = None
        return Measurement(
            stats=stats, samples_s=samples, method=method, warmup_iters=warm_iters,
            warmup_s=warm_s, l2_flush=flushed, cuda_graph=method == "cuda_graph",
            high_cov=bool(stats.cov > cfg.cov_warn), telemetry=sampler.summary(),
            extra={"graph_reps": cfg.graph_reps} if method == "cuda_graph" else {},
        )

    def _warm_up(self, fn, flush, cfg: TimerConfig) -> tuple[int, float, float]:
        """Run until warmup_s has passed; return iterations, seconds, seconds per iteration."""
        iters, busy = 0, 0.0
        start = time.perf_counter()
        while True:
            busy += self.run_once(fn, flush)
            iters += 1
            if iters >= cfg.min_warmup_iters and time.perf_counter() - start >= cfg.warmup_s:
                break
        return iters, time.perf_counter() - start, busy / iters

    def run_once(self, fn, flush) -> float:
        """One iteration between synchronisations, as warm-up runs them: its host seconds."""
        if flush is not None:
            flush()
            self.device.synchronize()
        t0 = time.perf_counter()
        fn()
        self.device.synchronize()
        return time.perf_counter() - t0

    def samples(self, fn, flush, iters: int, reps_per_call: int = 1) -> list[float]:
        """Seconds per iteration of ``iters`` timed calls: CUDA events on a GPU, the host
        clock on a CPU; a call that replays ``reps_per_call`` iterations is divided."""
        if self.device.is_cuda:
            times = self._time_events(fn, flush, iters)
        else:
            times = self._time_host(fn, flush, iters)
        return [t / reps_per_call for t in times] if reps_per_call != 1 else times

    def _time_events(self, fn, flush, iters: int) -> list[float]:
        starts = [torch.cuda.Event(enable_timing=True) for _ in range(iters)]
        ends = [torch.cuda.Event(enable_timing=True) for _ in range(iters)]
        for i in range(iters):
            if flush is not None:
                flush()
            starts[i].record()
            fn()
            ends[i].record()
        torch.cuda.synchronize(self.device.index)
        return [s.elapsed_time(e) / 1e3 for s, e in zip(starts, ends)]

    def _time_host(self, fn, flush, iters: int) -> list[float]:
        return [self.run_once(fn, flush) for _ in range(iters)]

    def _graphed(self, fn, reps: int) -> Callable[[], None]:
        # Capture needs a side stream and a few eager calls first (allocator warm-up).
        stream = torch.cuda.Stream(self.device.index)
        stream.wait_stream(torch.cuda.current_stream(self.device.index))
        with torch.cuda.stream(stream):
            for _ in range(3):
                fn()
        torch.cuda.current_stream(self.device.index).wait_stream(stream)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            for _ in range(reps):
                fn()
        return graph.replay
