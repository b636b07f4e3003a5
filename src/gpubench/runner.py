"""Runs a suite: every case through the one timer, every outcome into the result file.

A case that cannot run here is ``skipped`` with the reason; one that raises, runs
out of memory or fails its correctness check is ``failed`` with the error, and the
suite goes on. Each record reaches the file the moment it exists.
"""

from __future__ import annotations

import contextlib
import gc
import os
import re
import time
import traceback
from dataclasses import asdict
from typing import Any, Mapping, Protocol

import torch

from gpubench.device import DeviceInfo
from gpubench.errors import CheckFailed, GpubenchError, SkipCase
from gpubench.registry import SEARCHES, Case, Search, Workload, get_benchmark
from gpubench.results import Record, ResultWriter, clean_floats, utc_now
from gpubench.telemetry import TelemetrySource, open_source
from gpubench.timing import Timer, TimerConfig


class Progress(Protocol):
    def start(self, total: int) -> None: ...
    def begin(self, label: str) -> None: ...
    def done(self, record: Record, label: str) -> None: ...
    def note(self, text: str) -> None: ...
    def stop(self) -> None: ...


class SilentProgress:
    def start(self, total): pass
    def begin(self, label): pass
    def done(self, record, label): pass
    def note(self, text): pass
    def stop(self): pass


def free_memory_bytes(device: DeviceInfo) -> int:
    if device.is_cuda:
        return torch.cuda.mem_get_info(device.index)[0]
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES")
    except (ValueError, OSError):
        return device.total_memory_bytes


class OutOfMemory(GpubenchError):
    """Refused before allocating: the case's own estimate exceeds the free memory."""

    def __init__(self, message: str, need: int, free: int):
        super().__init__(message)
        self.need, self.free = need, free


def memory_problem(bench, params: Mapping[str, Any], device: DeviceInfo) -> str | None:
    try:
        check_memory(bench, params, device)
    except OutOfMemory as e:
        return str(e)
    return None


def check_memory(bench, params: Mapping[str, Any], device: DeviceInfo) -> None:
    need = bench.memory_bytes(params)
    if need is None:
        return
    free = free_memory_bytes(device)
    if need > free:
        raise OutOfMemory(f"needs {need / 2**30:.2f} GiB of memory, {device.label} has "
                          f"{free / 2**30:.2f} GiB free ({device.total_memory_bytes / 2**30:.1f} GiB total)",
                          need, free)


_REQUESTED = re.compile(r"tried to allocate ([\d.]+) ?(bytes|[kmgt]i?b)", re.IGNORECASE)
_UNITS = {"b": 1, "k": 2**10, "m": 2**20, "g": 2**30, "t": 2**40}


def memory_facts(exc: BaseException, bench, params, device: DeviceInfo) -> dict[str, Any]:
    """What a failed record says about memory: the allocation that failed (CUDA's message
    names it), the peak reached, and the case's own estimate of what it needs."""
    facts: dict[str, Any] = {}
    if isinstance(exc, OutOfMemory):
        facts.update(memory_needed_bytes=exc.need, memory_free_bytes=exc.free)
        return facts
    match = _REQUESTED.search(str(exc))
    if match:
        facts["memory_requested_bytes"] = int(float(match.group(1)) * _UNITS[match.group(2)[0].lower()])
    if device.is_cuda:
        facts["peak_memory_bytes"] = int(torch.cuda.max_memory_allocated(device.index))
    if bench is not None and params is not None:
        with contextlib.suppress(Exception):
            need = bench.memory_bytes(params)
            if need is not None:
                facts["memory_needed_bytes"] = int(need)
    facts["memory_total_bytes"] = device.total_memory_bytes
    return facts


def _is_oom(exc: BaseException) -> bool:
    if isinstance(exc, getattr(torch, "OutOfMemoryError", ())):
        return True
    text = str(exc).lower()
    return isinstance(exc, (RuntimeError, MemoryError)) and (
        "out of memory" in text or "can't allocate memory" in text or isinstance(exc, MemoryError))


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"[:500]


def _release(device: DeviceInfo) -> None:
    gc.collect()
    if device.is_cuda:
        torch.cuda.empty_cache()


def set_up(case: Case, device: DeviceInfo, base: dict):
    """(benchmark, normalized params, workload) for a case; ``base["params"]`` gets the
    normalized params as soon as they exist. A case that cannot fit raises GpubenchError."""
    bench = get_benchmark(case.benchmark)
    params = bench.normalize(case.params)
    base["params"] = params
    try:
        check_memory(bench, params, device)
    except OutOfMemory as e:
        raise OutOfMemory(f"out of memory: {e}", e.need, e.free) from None
    return bench, params, bench.prepare(params, device)


class Runner:
    def __init__(self, device: DeviceInfo, timer_config: TimerConfig | None = None,
                 writer: ResultWriter | None = None, progress: Progress | None = None,
                 telemetry: TelemetrySource | None | str = "auto"):
        self.device = device
        if telemetry == "auto":
            telemetry = open_source(device.index) if device.is_cuda else None
        self.timer = Timer(device, timer_config, telemetry)
        self.writer = writer
        self.progress = progress or SilentProgress()
        self.records: list[Record] = []

    def emit(self, record: Record) -> None:
        self.records.append(record)
        if self.writer is not None:
            self.writer.add(record)

    def run(self, items: list[Case | Search]) -> list[Record]:
        self.progress.start(len(items))
        try:
            for item in items:
                if isinstance(item, Search):
                    SEARCHES[item.strategy](self, item)
                else:
                    label = self.describe(item)
                    self.progress.begin(label)
                    record = self.run_case(item)
                    self.emit(record)
                    self.progress.done(record, label)
        finally:
            self.progress.stop()
        return self.records

    def describe(self, case: Case) -> str:
        try:
            bench = get_benchmark(case.benchmark)
            return f"{case.benchmark} {bench.label(bench.normalize(case.params))}"
        except Exception:
            return case.id

    def run_case(self, case: Case, timer_config: TimerConfig | None = None) -> Record:
        started, t0 = utc_now(), time.perf_counter()
        base = {"benchmark": case.benchmark, "params": dict(case.params),
                "device": self.device.label, "started_at": started}
        work: Workload | None = None
        try:
            bench, params, work = set_up(case, self.device, base)
            with work.context():
                check = work.check() if work.check else None
                cfg = timer_config or self.timer.config.for_work(work.timer)
                m = self.timer.measure(work.fn, flush_l2=work.flush_l2,
                                       cuda_graph=work.cuda_graph, config=cfg)
                aux = {name: self.timer.measure(fn, config=_aux_config(self.timer.config))
                       for name, fn in work.aux.items()}
            aux_s = {name: am.stats.median_s for name, am in aux.items()}
            metrics = bench.metrics(params, work, m.stats.median_s, self.device, m.telemetry, aux_s)
            timing = m.timing_dict()
            if aux:
                timing["aux"] = {name: asdict(am.stats) for name, am in aux.items()}
            return Record(
                status="ok", timing=clean_floats(timing), check=clean_floats(check),
                work={"flops": work.flops, "bytes": work.bytes_moved, **work.info},
                metrics=clean_floats(metrics), telemetry=clean_floats(m.telemetry),
                duration_s=time.perf_counter() - t0, **base)
        except SkipCase as e:
            return Record(status="skipped", reason=str(e), duration_s=time.perf_counter() - t0, **base)
        except CheckFailed as e:
            return Record(status="failed", error=f"correctness check failed: {e}",
                          duration_s=time.perf_counter() - t0, **base)
        except OutOfMemory as e:
            return Record(status="failed", error=str(e), duration_s=time.perf_counter() - t0,
                          metrics=memory_facts(e, None, None, self.device), **base)
        except GpubenchError as e:
            return Record(status="failed", error=str(e), duration_s=time.perf_counter() - t0, **base)
        except Exception as e:  # noqa: BLE001 - a broken case must not end the suite
            oom = _is_oom(e)
            error = f"out of memory: {_one_line(e)}" if oom else _one_line(e)
            if os.environ.get("GPUBENCH_DEBUG"):
                traceback.print_exc()
            facts = None
            if oom:
                bench_ = get_benchmark(case.benchmark)
                facts = memory_facts(e, bench_, base["params"] if "params" in base else None, self.device)
            return Record(status="failed", error=error, duration_s=time.perf_counter() - t0,
                          metrics=facts or {}, **base)
        finally:
            del work
            _release(self.device)


def _aux_config(cfg: TimerConfig) -> TimerConfig:
    return TimerConfig(warmup_s=cfg.warmup_s / 2, min_warmup_iters=1, measure_s=cfg.measure_s / 2,
                       min_iters=min(cfg.min_iters, 5), max_iters=cfg.max_iters, cov_warn=cfg.cov_warn)


def run_mamf(runner: Runner, search: Search) -> None:
    """Max achievable matmul for one precision: probe records, then one summary record."""
    from gpubench.search import search_max_matmul

    p = dict(search.params)
    dtype = p["dtype"]
    extra = {k: p[k] for k in ("scaling",) if k in p}
    label = f"mamf {dtype}" + (f" {extra['scaling']}-scaled" if extra else "")
    runner.progress.begin(label)
    quick = TimerConfig.for_device(runner.device, quick=True)
    started, t0 = utc_now(), time.perf_counter()
    reason = runner.device.unsupported_reason(dtype)
    summary_params = {"dtype": dtype, **extra}
    if reason:
        record = Record(benchmark="mamf", params=summary_params, status="skipped", reason=reason,
                        device=runner.device.label, started_at=started, duration_s=0.0)
        runner.emit(record)
        runner.progress.done(record, label)
        return

    def measure(m: int, n: int, k: int) -> float | None:
        rec = runner.run_case(Case("matmul", {"dtype": dtype, "m": m, "n": n, "k": k,
                                              "search": "mamf", **extra}), quick)
        runner.emit(rec)
        runner.progress.note(f"{label}: {m}x{n}x{k} "
                             + (f"{rec.metrics['tflops']:.1f} TFLOP/s" if rec.status == "ok" else rec.status))
        return rec.metrics.get("tflops") if rec.status == "ok" else None

    result = search_max_matmul(measure, lo=int(p.get("lo", 1024)), hi=int(p.get("hi", 16384)),
                               budget_s=float(p.get("budget_s", 30.0)),
                               step_min=int(p.get("step_min", 256)), align=int(p.get("step_min", 256)))
    base = {"benchmark": "mamf", "params": summary_params, "device": runner.device.label,
            "started_at": started}
    if result.best is None:
        record = Record(status="failed", error="no probe ran successfully",
                        duration_s=time.perf_counter() - t0, **base)
    else:
        b = result.best
        # The search used short timings: measure the winner again properly.
        final = runner.run_case(Case("matmul", {"dtype": dtype, "m": b.m, "n": b.n, "k": b.k,
                                                "search": "mamf-best", **extra}))
        runner.emit(final)
        search_info = {"best_m": b.m, "best_n": b.n, "best_k": b.k, "probes": len(result.probes),
                       "search_s": result.elapsed_s, "stopped": result.stopped,
                       "budget_s": float(p.get("budget_s", 30.0))}
        if final.status == "ok":
            record = Record(status="ok", timing=final.timing, check=final.check, work=final.work,
                            metrics={**final.metrics, **search_info}, telemetry=final.telemetry,
                            duration_s=time.perf_counter() - t0, **base)
        else:
            record = Record(status="failed", error=f"re-measuring the best shape: {final.error}",
                            metrics=search_info, duration_s=time.perf_counter() - t0, **base)
    runner.emit(record)
    runner.progress.done(record, label)


SEARCHES["mamf"] = run_mamf
