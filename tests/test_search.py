import itertools
import math

import pytest

from gpubench.search import cube_ladder, search_max_matmul


def landscape(opt=(7168, 9216, 6144)):
    """A synthetic rate: smooth hill around ``opt`` plus a penalty off 256-alignment,
    roughly what real GEMM rates look like (wave quantisation, tile alignment)."""
    def rate(m, n, k):
        hill = math.exp(-sum(((x - o) / 6000) ** 2 for x, o in zip((m, n, k), opt)))
        aligned = all(x % 256 == 0 for x in (m, n, k))
        return 800 * hill * (1.0 if aligned else 0.9)
    return rate


class FakeClock:
    def __init__(self):
        self.t = 0.0

    def __call__(self):
        return self.t


def test_cube_ladder():
    sizes = cube_ladder(1024, 16384, 256)
    assert sizes[0] == 1024 and sizes[-1] == 16384
    assert all(s % 256 == 0 for s in sizes)
    assert all(b > a for a, b in zip(sizes, sizes[1:]))
    assert len(sizes) == 9      # √2 steps: 1024, 1536(≈1448→1536), 2048, …


def test_finds_the_optimum_with_far_fewer_probes_than_a_grid():
    rate = landscape()
    clock = FakeClock()
    calls = []

    def measure(m, n, k):
        calls.append((m, n, k))
        clock.t += 0.1
        return rate(m, n, k)

    res = search_max_matmul(measure, lo=1024, hi=16384, budget_s=1e9, clock=clock)
    assert res.stopped == "converged"
    assert (res.best.m, res.best.n, res.best.k) == (7168, 9216, 6144)
    grid = len(list(itertools.product(range(1024, 16385, 256), repeat=3)))
    assert len(calls) < grid / 1000
    assert len(set(calls)) == len(calls)        # every shape is measured once


def test_respects_the_budget():
    rate = landscape()
    clock = FakeClock()

    def measure(m, n, k):
        clock.t += 1.0
        return rate(m, n, k)

    res = search_max_matmul(measure, lo=1024, hi=16384, budget_s=12, clock=clock)
    assert res.stopped == "budget"
    assert len(res.probes) <= 13
    assert res.best.tflops == max(p.tflops for p in res.probes)


def test_failed_probes_are_survived():
    """Shapes that do not fit return None: the search keeps the best that ran."""
    rate = landscape(opt=(16384, 16384, 16384))

    def measure(m, n, k):
        return None if m * n + n * k + m * k > 3 * 8192 ** 2 else rate(m, n, k)

    res = search_max_matmul(measure, lo=1024, hi=16384, budget_s=1e9, clock=FakeClock())
    assert res.best is not None
    assert res.best.m * res.best.n + res.best.n * res.best.k + res.best.m * res.best.k <= 3 * 8192 ** 2
    assert any(p.tflops is None for p in res.probes)


def test_nothing_runs():
    res = search_max_matmul(lambda m, n, k: None, lo=256, hi=1024, budget_s=10, clock=FakeClock())
    assert res.best is None


@pytest.mark.parametrize("noise", [0.0, 0.002])
def test_noise_below_min_gain_does_not_walk_forever(noise):
    import random

    rng = random.Random(0)
    rate = landscape()
    res = search_max_matmul(lambda m, n, k: rate(m, n, k) * (1 + noise * rng.uniform(-1, 1)),
                            lo=1024, hi=16384, budget_s=1e9, clock=FakeClock())
    assert res.stopped == "converged"
    assert res.best.tflops >= 0.98 * 800
