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
