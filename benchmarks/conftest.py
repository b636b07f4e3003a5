"""gpubench's pytest-benchmark front end.

The cases come from a gpubench suite and every case goes through the very
benchmark definition the ``gpubench`` CLI uses (``gpubench.benches``): the same
parameters, the same inputs, the same float64 correctness check before anything
is timed, and the same derived metrics. Only the timer differs: here it is
pytest-benchmark's (host clock, with a device synchronize inside the timed call).

    pytest benchmarks/ --benchmark-json out.json
    GPUBENCH_DEVICE=cuda:1 pytest benchmarks/ --gpubench-suite membw

A test module says which benchmark it runs with ``GPUBENCH_BENCHMARK = "name"``
and takes the ``gpubench_case`` argument; ``pytest_generate_tests`` below gives it
one test per ``Case`` of that benchmark in the chosen suite (``Search`` entries,
whose cases depend on earlier answers, are left to the CLI).
"""

from __future__ import annotations

import functools
import gc
import json
import os
import re

import pytest

from gpubench.device import DeviceInfo, resolve_device
from gpubench.errors import CheckFailed, GpubenchError, SkipCase
from gpubench.registry import Case, get_benchmark, get_suite
from gpubench.results import clean_floats

DEVICE_ENV = "GPUBENCH_DEVICE"
DEFAULT_SUITE = "mixed-precision"

# (rounds, warmup rounds): a GPU kernel is short and its clocks need a moment;
# on a CPU the numbers only prove the path, so keep it to a few seconds in all.
ROUNDS = {"cuda": (50, 5), "cpu": (5, 1)}


def pytest_addoption(parser):
    group = parser.getgroup("gpubench", "gpubench benchmarks")
    group.addoption("--gpubench-suite", default=DEFAULT_SUITE, metavar="NAME",
                    help=f"gpubench suite whose cases become tests (default: {DEFAULT_SUITE}); "
                         f"the device comes from ${DEVICE_ENV} (default: cuda if available, else cpu)")
    group.addoption("--gpubench-rounds", type=int, default=None, metavar="N",
                    help="timed rounds per case (default: 50 on a GPU, 5 on a CPU)")
    group.addoption("--gpubench-warmup-rounds", type=int, default=None, metavar="N",
                    help="untimed rounds before them (default: 5 on a GPU, 1 on a CPU)")


def pytest_configure(config):
    # A bad device or suite name is a usage error, said once before collection.
    device_for(config)
    suite_name(config)


@functools.lru_cache(maxsize=None)
def _resolve(spec: str) -> DeviceInfo:
    return resolve_device(spec)


def device_for(config=None) -> DeviceInfo:
    """The device of this session, resolved once from $GPUBENCH_DEVICE."""
    spec = os.environ.get(DEVICE_ENV, "auto") or "auto"
    try:
        return _resolve(spec)
    except GpubenchError as e:
        raise pytest.UsageError(f"${DEVICE_ENV}={spec!r}: {e}") from None


@pytest.fixture(scope="session")
def gpubench_device(pytestconfig) -> DeviceInfo:
    return device_for(pytestconfig)


@functools.lru_cache(maxsize=None)
def _fingerprint_json(spec: str) -> str:
    # Round-trip through JSON so that pytest-benchmark can always write it.
    from gpubench.env import fingerprint

    return json.dumps(clean_floats(fingerprint(_resolve(spec))), default=str)


def session_fingerprint(config) -> dict:
    device_for(config)          # a bad $GPUBENCH_DEVICE is a usage error first
    return json.loads(_fingerprint_json(os.environ.get(DEVICE_ENV, "auto") or "auto"))


@pytest.hookimpl(optionalhook=True)
def pytest_benchmark_update_machine_info(config, machine_info):
    machine_info["gpubench"] = session_fingerprint(config)


@pytest.hookimpl(optionalhook=True)
def pytest_benchmark_update_json(config, benchmarks, output_json):
    # The same top-level ``env`` as gpubench's own result files: what the figures ran on.
    output_json["env"] = session_fingerprint(config)


# ---- parametrization ----

def case_label(case: Case) -> str:
    """``matmul-bf16-4096x4096x4096``: the benchmark's own label, made fit for a test id."""
    try:
        bench = get_benchmark(case.benchmark)
        text = bench.label(bench.normalize(case.params))
    except Exception:  # noqa: BLE001 - a bad case still gets a test, which then fails clearly
        return case.id
    text = re.sub(r"\s*\(([^)]*)\)", r" \1", text)             # "(llama2-7b qkv tp8)" -> words
    text = re.sub(r"(\d)\s+(MiB|GiB|KiB)", r"\1\2", text)      # "64 MiB" -> "64MiB"
    slug = re.sub(r"[^A-Za-z0-9_.]+", "-", text).strip("-")
    return f"{case.benchmark}-{slug}"


def suite_name(config) -> str:
    name = config.getoption("--gpubench-suite", DEFAULT_SUITE)
    try:
        get_suite(name)
    except GpubenchError as e:
        raise pytest.UsageError(f"--gpubench-suite: {e}") from None
    return name


def suite_cases(config, benchmark: str) -> list[Case]:
    from gpubench.suites import STEP_KERNELS

    # A suite's step kernels are the self-check's inputs, not benchmarks of their own.
    items = get_suite(suite_name(config)).items(device_for(config))
    return [c for c in items if isinstance(c, Case) and c.benchmark == benchmark and c.id not in STEP_KERNELS]


def pytest_generate_tests(metafunc):
    if "gpubench_case" not in metafunc.fixturenames:
        return
    benchmark = getattr(metafunc.module, "GPUBENCH_BENCHMARK", None)
    if benchmark is None:
        raise pytest.UsageError(f"{metafunc.module.__name__} takes gpubench_case but sets no "
                                f"GPUBENCH_BENCHMARK")
    cases = suite_cases(metafunc.config, benchmark)
    ids, seen = [], {}
    for case in cases:
        label = case_label(case)
        seen[label] = seen.get(label, 0) + 1
        ids.append(label if seen[label] == 1 else f"{label}-{seen[label]}")
    metafunc.parametrize("gpubench_case", cases, ids=ids)


# ---- running one case ----

@pytest.fixture(scope="session")
def gpubench_flusher(gpubench_device):
    """One L2 (last-level cache) flush buffer per device, made on first use."""
    from gpubench.timing import _L2Flusher

    holder: dict = {}

    def get():
        if "flusher" not in holder:
            holder["flusher"] = _L2Flusher(gpubench_device)
        return holder["flusher"]

    yield get
    holder.clear()


@pytest.fixture
def gpubench_run(benchmark, gpubench_device, gpubench_flusher, pytestconfig):
    """``gpubench_run(case)``: check, then time one case with pytest-benchmark.

    normalize -> unsupported precision or memory that is not there: skip ->
    prepare (SkipCase: skip) -> inside the workload's context (TF32 or IEEE FP32
    mode): the correctness check (CheckFailed fails the test, nothing is timed)
    -> ``benchmark.pedantic`` with the L2 flush and a synchronize in ``setup`` and
    the synchronize inside the timed ``target`` -> the benchmark's own metrics
    into ``benchmark.extra_info``.
    """
    device = gpubench_device
    default_rounds, default_warmup = ROUNDS["cuda" if device.is_cuda else "cpu"]
    rounds = pytestconfig.getoption("--gpubench-rounds", None) or default_rounds
    warmup = pytestconfig.getoption("--gpubench-warmup-rounds", None)
    warmup = default_warmup if warmup is None else warmup

    def run(case: Case) -> dict:
        from gpubench.runner import memory_problem

        bench = get_benchmark(case.benchmark)
        params = bench.normalize(case.params)
        dtype = params.get("dtype")
        reason = device.unsupported_reason(dtype) if dtype else None
        if reason:
            pytest.skip(reason)
        problem = memory_problem(bench, params, device)
        if problem:
            pytest.skip(f"out of memory: {problem}")
        try:
            work = bench.prepare(params, device)
        except SkipCase as e:
            pytest.skip(str(e))

        fn, sync = work.fn, device.synchronize
        flush = gpubench_flusher() if work.flush_l2 else None

        def setup():
            if flush is not None:
                flush()
            sync()

        def target():
            fn()
            sync()      # inside the timed call: an asynchronous launch is not a finished kernel

        with work.context():
            try:
                check = work.check() if work.check else None
            except CheckFailed as e:
                pytest.fail(f"correctness check failed: {e}", pytrace=False)
            benchmark.pedantic(target, setup=setup, rounds=rounds, warmup_rounds=warmup, iterations=1)
            aux_s = _time_aux(work, device) if work.aux and benchmark.stats else {}

        info = {
            "benchmark": case.benchmark,
            "case_id": case.id,
            "params": params,
            "device": device.label,
            "device_name": device.name,
            "flops": work.flops,
            "bytes": work.bytes_moved,
            "check": check,
            "l2_flush": flush is not None,
            "timer": "pytest-benchmark host clock, device synchronize inside the timed call",
            "info": work.info,
        }
        if benchmark.stats:     # None or empty under --benchmark-disable: checked, not timed
            median = benchmark.stats.stats.median
            metrics = bench.metrics(params, work, median, device, None, aux_s)
            info["median_s"] = median
            info["metrics"] = metrics
            for key in ("tflops", "gbps", "pct_of_peak", "scaling_s", "tflops_incl_scaling",
                        "tokens_per_s", "mfu"):
                if metrics.get(key) is not None:
                    info[key] = metrics[key]
        benchmark.extra_info.update(json.loads(json.dumps(clean_floats(info), default=str)))
        return benchmark.extra_info

    yield run
    gc.collect()
    if device.is_cuda:
        import torch

        torch.cuda.empty_cache()


def _time_aux(work, device: DeviceInfo) -> dict[str, float]:
    """Median of each side measurement (e.g. FP8 scaling) with gpubench's own timer:
    pytest-benchmark's fixture times one thing per test."""
    from gpubench.timing import Timer, TimerConfig

    timer = Timer(device, TimerConfig.for_device(device, quick=True))
    return {name: timer.measure(fn).stats.median_s for name, fn in work.aux.items()}
