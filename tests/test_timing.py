import statistics
import time

import numpy as np
import pytest
import torch

from gpubench.timing import Stats, Timer, TimerConfig, percentile


@pytest.mark.parametrize("n", [1, 2, 5, 10, 101])
def test_stats_match_numpy(n):
    rng = np.random.default_rng(n)
    xs = list(rng.lognormal(mean=-7, sigma=0.3, size=n))
    s = Stats.from_samples(xs)
    assert s.n == n
    assert s.median_s == pytest.approx(np.median(xs))
    assert s.p10_s == pytest.approx(np.percentile(xs, 10))
    assert s.p90_s == pytest.approx(np.percentile(xs, 90))
    assert s.mean_s == pytest.approx(np.mean(xs))
    assert s.min_s == min(xs) and s.max_s == max(xs)
    std = np.std(xs, ddof=1) if n > 1 else 0.0
    assert s.std_s == pytest.approx(std)
    assert s.cov == pytest.approx(std / np.mean(xs))


def test_stats_order_independent_and_robust_median():
    xs = [1.0, 1.0, 1.0, 1.0, 100.0]
    assert Stats.from_samples(xs).median_s == 1.0
    assert Stats.from_samples(list(reversed(xs))) == Stats.from_samples(xs)


def test_percentile_edges():
    assert percentile([3.0], 10) == 3.0
    assert percentile([1.0, 2.0], 50) == 1.5
    with pytest.raises(ValueError):
        percentile([], 50)
    with pytest.raises(ValueError):
        Stats.from_samples([])


def test_host_timer_measures_sleep(cpu):
    timer = Timer(cpu, TimerConfig(warmup_s=0.0, min_warmup_iters=1, measure_s=0.05, min_iters=5,
                                   max_iters=10))
    m = timer.measure(lambda: time.sleep(0.004))
    assert m.method == "host_clock"
    assert 5 <= m.stats.n <= 10
    assert m.stats.min_s >= 0.004
    assert m.stats.median_s < 0.05
    assert m.telemetry is None          # no NVML on a CPU: null, not zeros


def test_warmup_is_time_based_and_iterations_follow_budget(cpu):
    calls = []
    cfg = TimerConfig(warmup_s=0.03, min_warmup_iters=2, measure_s=0.02, min_iters=3, max_iters=1000)
    m = Timer(cpu, cfg).measure(lambda: (calls.append(1), time.sleep(0.002)))
    assert m.warmup_s >= 0.03 and m.warmup_iters >= 2
    # ~0.02 s budget of ~2 ms iterations: about ten, never fewer than min_iters.
    assert 3 <= m.stats.n <= 15
    assert len(calls) == m.warmup_iters + m.stats.n


def test_l2_flush_runs_before_every_iteration_and_outside_the_timing(cpu):
    cfg = TimerConfig(warmup_s=0.0, min_warmup_iters=1, measure_s=0.0, min_iters=4, max_iters=4)
    timer = Timer(cpu, cfg)
    flushes = []
    real = timer.flusher()
    timer._flusher = lambda: (flushes.append(1), real())
    m = timer.measure(lambda: None, flush_l2=True)
    assert m.l2_flush
    assert len(flushes) == m.warmup_iters + m.stats.n
    # Writing a buffer of twice the cache takes far longer than an empty call:
    # if the flush were inside the timed region the median would show it.
    t0 = time.perf_counter()
    real()
    flush_s = time.perf_counter() - t0
    assert m.stats.median_s < flush_s


def test_flush_buffer_exceeds_cache(cpu):
    timer = Timer(cpu)
    assert timer.flusher().buf.numel() >= 2 * cpu.cache_bytes


def test_flush_buffer_is_freed_with_its_case(cpu):
    """The flush buffer must not outlive the measurement: a later case's peak memory (a training
    step's) would count it (120 MB on an H200)."""
    import weakref

    cfg = TimerConfig(warmup_s=0.0, min_warmup_iters=1, measure_s=0.0, min_iters=2, max_iters=2)
    timer = Timer(cpu, cfg)
    buf = weakref.ref(timer.flusher().buf)
    timer.measure(lambda: None, flush_l2=True)
    assert buf() is None
    timer.measure(lambda: None, flush_l2=True)      # and comes back for the next case that flushes


def test_flush_and_graph_replay_are_refused_together(cpu):
    with pytest.raises(ValueError, match="cannot be combined"):
        Timer(cpu).measure(lambda: None, flush_l2=True, cuda_graph=True)


def test_high_cov_flagged(cpu, monkeypatch):
    """The flag follows the samples' coefficient of variation. A scripted host clock makes the
    samples exact, so the test checks the flag, not the machine's scheduling (real sleeps made it
    fail on a busy CI host)."""
    import gpubench.timing as timing

    clock = [0.0]
    monkeypatch.setattr(timing.time, "perf_counter", lambda: clock[0])

    def lasting(durations):
        it = iter(durations * 50)

        def fn():
            clock[0] += next(it)
        return fn

    cfg = TimerConfig(warmup_s=0.0, min_warmup_iters=1, measure_s=0.0, min_iters=10, max_iters=10)
    m = Timer(cpu, cfg).measure(lasting([0.001, 0.02]))
    assert m.stats.cov > 0.5 and m.high_cov
    steady = Timer(cpu, cfg).measure(lasting([0.005]))
    assert steady.stats.cov == 0 and not steady.high_cov
    # Either side of the threshold (cov_warn = 5%): ±6% is flagged, ±4% is not.
    assert Timer(cpu, cfg).measure(lasting([0.94, 1.06])).high_cov
    assert not Timer(cpu, cfg).measure(lasting([0.96, 1.04])).high_cov


def test_timing_dict_has_units_and_samples(cpu):
    m = Timer(cpu, TimerConfig(warmup_s=0, min_warmup_iters=1, measure_s=0, min_iters=3, max_iters=3)) \
        .measure(lambda: None)
    d = m.timing_dict()
    for key in ("median_s", "p10_s", "p90_s", "cov", "n", "warmup_iters", "l2_flush", "method"):
        assert key in d
    assert len(d["samples_s"]) == d["n"] == 3
    assert statistics.median(d["samples_s"]) == pytest.approx(d["median_s"])


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device: CUDA-event and graph paths")
def test_cuda_event_and_graph_paths():
    from gpubench.device import resolve_device

    dev = resolve_device("cuda")
    x = torch.randn(4096, 4096, device="cuda")
    timer = Timer(dev)
    ev = timer.measure(lambda: x @ x, flush_l2=True)
    assert ev.method == "cuda_event" and ev.stats.median_s > 0
    y = torch.randn(1024, device="cuda")
    gr = timer.measure(lambda: y.mul_(1.0), cuda_graph=True)
    assert gr.method == "cuda_graph" and gr.stats.median_s < ev.stats.median_s


def test_l2_flush_overwrites_every_byte_of_its_buffer(cpu):
    """Guards: the L2 flush replaced by a no-op (or one writing only part of its buffer). What
    evicts the cache is writing all of a buffer larger than it: whatever the buffer held before,
    every byte must be rewritten, so two flushes from two different fillings leave the same bytes."""
    flusher = Timer(cpu).flusher()
    buf = flusher.buf
    assert buf.numel() >= 2 * cpu.cache_bytes and buf.numel() >= 8 * 1024**2
    after = []
    for before in (0x11, 0x5A):
        buf.fill_(before)
        flusher()
        cpu.synchronize()
        after.append(buf.clone())
    # A byte the flush skipped still holds its filling, which differed between the two passes.
    assert torch.equal(after[0], after[1]), "some bytes of the flush buffer were never written"


class ScriptedClock:
    """time.perf_counter under the test's control: each call of a scripted fn advances it by
    that call's duration (powers of two, so every sum is exact)."""

    def __init__(self, monkeypatch):
        import gpubench.timing as timing

        self.now = 0.0
        monkeypatch.setattr(timing.time, "perf_counter", lambda: self.now)

    def fn(self, durations):
        it = iter(list(durations) * 1000)

        def run():
            self.now += next(it)
        return run


def test_warm_up_and_iteration_count_follow_the_scripted_clock(cpu, monkeypatch):
    """Guards: the warm-up's stopping rule (at least min_warmup_iters and warmup_s, not one
    more), the seconds it reports, and the iteration count (measure_s over the warm-up's time
    per iteration, clamped to [min_iters, max_iters]) — exact on a scripted clock."""
    clock = ScriptedClock(monkeypatch)
    cfg = TimerConfig(warmup_s=0.75, min_warmup_iters=2, measure_s=2.5, min_iters=1, max_iters=100)
    m = Timer(cpu, cfg).measure(clock.fn([0.25]))
    assert (m.warmup_iters, m.warmup_s) == (3, 0.75)
    assert m.stats.n == 10 and m.samples_s == [0.25] * 10
    m = Timer(cpu, TimerConfig(warmup_s=0.0, min_warmup_iters=3, measure_s=0.0, min_iters=4, max_iters=100)) \
        .measure(clock.fn([0.25]))
    assert (m.warmup_iters, m.warmup_s, m.stats.n) == (3, 0.75, 4)
    m = Timer(cpu, TimerConfig(warmup_s=0.0, min_warmup_iters=1, measure_s=100.0, min_iters=1, max_iters=7)) \
        .measure(clock.fn([0.25]))
    assert m.stats.n == 7
    assert m.timing_dict()["warmup_s"] == 0.25 and not m.high_cov


def test_samples_divide_a_replayed_call_by_its_iterations(cpu, monkeypatch):
    """Guards: a CUDA-graph replay of N iterations reported as one iteration's time."""
    clock = ScriptedClock(monkeypatch)
    timer = Timer(cpu)
    assert timer.samples(clock.fn([1.0, 2.0]), None, 4, reps_per_call=4) == [0.25, 0.5, 0.25, 0.5]
    assert timer.samples(clock.fn([1.0]), None, 2) == [1.0, 1.0]


def test_cuda_paths_label_and_scale_their_samples(cpu, monkeypatch):
    """Guards: measure()'s CUDA plumbing, checked on a CPU with the device calls stood in for:
    CUDA events label the record cuda_event, a graph replay cuda_graph with its graph_reps in the
    timing block and each sample divided by them; a graph never runs a flush."""
    from dataclasses import replace

    from gpubench.device import DeviceInfo

    clock = ScriptedClock(monkeypatch)
    fake = replace(cpu, type="cuda", index=0)
    monkeypatch.setattr(DeviceInfo, "synchronize", lambda self: None)
    monkeypatch.setattr(Timer, "_time_events", lambda self, fn, flush, iters: self._time_host(fn, flush, iters))
    replayed = []

    def graphed(self, fn, reps):
        replayed.append(reps)

        def replay():
            for _ in range(reps):
                fn()
        return replay
    monkeypatch.setattr(Timer, "_graphed", graphed)
    cfg = TimerConfig(warmup_s=0.0, min_warmup_iters=1, measure_s=0.0, min_iters=3, max_iters=3, graph_reps=4)
    ev = Timer(fake, cfg).measure(clock.fn([0.5]))
    assert ev.method == "cuda_event" and not ev.cuda_graph and ev.samples_s == [0.5] * 3
    assert "graph_reps" not in ev.timing_dict() and ev.timing_dict()["cuda_graph"] is False
    gr = Timer(fake, cfg).measure(clock.fn([0.5]), cuda_graph=True)
    assert replayed == [4]
    assert gr.method == "cuda_graph" and gr.cuda_graph and not gr.l2_flush
    assert gr.samples_s == [0.5] * 3                  # 2 s a replay of 4 iterations
    d = gr.timing_dict()
    assert d["graph_reps"] == 4 and d["cuda_graph"] is True and d["method"] == "cuda_graph"


def test_flush_buffer_size_and_type(cpu):
    """Guards: the flush buffer's size rule: twice the last-level cache in bytes, never under
    8 MiB, on the timed device."""
    from dataclasses import replace

    for cache, want in ((1 << 20, 8 * 1024**2), (6 << 20, 12 << 20), (50 << 20, 100 << 20)):
        buf = Timer(replace(cpu, cache_bytes=cache)).flusher().buf
        assert buf.numel() * buf.element_size() == want and buf.element_size() == 1
        assert buf.device == cpu.torch_device


def test_stats_of_zero_time_and_the_timing_block():
    """Guards: CoV of samples that all took no time (nan, not a crash), and the timing block's
    keys (the report and the hub read them by name)."""
    import math

    assert math.isnan(Stats.from_samples([0.0, 0.0]).cov)
    from gpubench.timing import Measurement

    s = Stats.from_samples([1.0, 2.0, 3.0])
    m = Measurement(stats=s, samples_s=[1.0, 2.0, 3.0], method="host_clock", warmup_iters=2, warmup_s=0.5,
                    l2_flush=True, cuda_graph=False, high_cov=True)
    assert m.timing_dict() == {"method": "host_clock", "warmup_iters": 2, "warmup_s": 0.5, "l2_flush": True,
                               "cuda_graph": False, "n": 3, "median_s": 2.0, "mean_s": 2.0, "min_s": 1.0,
                               "max_s": 3.0, "p10_s": 1.2, "p90_s": 2.8, "std_s": 1.0, "cov": 0.5,
                               "high_cov": True, "samples_s": [1.0, 2.0, 3.0]}


def test_configs_for_devices_and_workloads(cpu):
    """Guards: the timer settings a device and --quick get, and a workload's own settings
    (halved under --quick, never below three iterations)."""
    from dataclasses import replace

    gpu = replace(cpu, type="cuda", index=0)
    assert TimerConfig.for_device(gpu) == TimerConfig()
    q = TimerConfig.for_device(gpu, quick=True)
    assert q.quick and q.warmup_s < TimerConfig().warmup_s and q.measure_s < TimerConfig().measure_s
    c = TimerConfig.for_device(cpu)
    assert c.measure_s < TimerConfig().measure_s and c.max_iters < TimerConfig().max_iters and not c.quick
    assert TimerConfig.for_device(cpu, quick=True).quick
    base = TimerConfig(warmup_s=1.0, measure_s=2.0, min_iters=10)
    assert base.for_work({}) is base and base.for_work(None) is base
    w = base.for_work({"warmup_s": 4.0, "min_iters": 8})
    assert (w.warmup_s, w.measure_s, w.min_iters) == (4.0, 2.0, 8)
    qw = replace(base, quick=True).for_work({"warmup_s": 4.0, "min_iters": 8})
    assert (qw.warmup_s, qw.measure_s, qw.min_iters) == (2.0, 1.0, 4)
    assert replace(base, quick=True).for_work({"min_iters": 5}).min_iters == 3


def test_telemetry_source_is_sampled_around_the_timed_iterations(cpu):
    """Guards: the timer dropping the telemetry source it was given (a GPU run would record no
    power, clocks or throttling): the measurement's telemetry summarises the source's readings."""
    from gpubench.telemetry import Sample

    class Source:
        name = "fake"
        calls = 0

        def read(self):
            Source.calls += 1
            return Sample(time.perf_counter(), 300.0, None, 1500, 2600, 60, 0)

    cfg = TimerConfig(warmup_s=0.0, min_warmup_iters=1, measure_s=0.0, min_iters=3, max_iters=3)
    m = Timer(cpu, cfg, telemetry=Source()).measure(lambda: time.sleep(0.001))
    assert Source.calls >= 2 and m.telemetry is not None and m.telemetry["samples"] >= 2
    assert Timer(cpu, cfg).measure(lambda: None).telemetry is None


def test_the_cuda_event_path_flushes_before_every_iteration(cpu, monkeypatch):
    """Guards: the CUDA-event timing loop not given the flush (every timed kernel would read a warm
    L2 under an "l2_flush: true" label), checked with the event timer stood in for."""
    from dataclasses import replace

    from gpubench.device import DeviceInfo

    fake = replace(cpu, type="cuda", index=0)
    monkeypatch.setattr(DeviceInfo, "synchronize", lambda self: None)
    monkeypatch.setattr(Timer, "_time_events", lambda self, fn, flush, iters: self._time_host(fn, flush, iters))
    timer = Timer(fake, TimerConfig(warmup_s=0.0, min_warmup_iters=1, measure_s=0.0, min_iters=4, max_iters=4))
    flushes = []
    monkeypatch.setattr(Timer, "flusher", lambda self: (lambda: flushes.append(1)))
    m = timer.measure(lambda: None, flush_l2=True)
    assert m.method == "cuda_event" and m.l2_flush and len(flushes) == m.warmup_iters + m.stats.n
