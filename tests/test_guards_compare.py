"""compare's geometric mean pinned to its definition on ratios far from 1.

Guards: the geometric mean replaced by another average (arithmetic, median, harmonic) or
computed over the wrong ratios. Tests that use ratios near 1, or all alike, cannot tell these
apart; here the ratios span 1/8 to 256, where every other average differs by a factor."""

import math

import pytest

from gpubench.compare import compare_runs

from noise_helpers import membw, run, samples

RATIOS = [1 / 8, 2.0, 4.0, 256.0]                # geometric mean (1/8·2·4·256)^(1/4) = 4
SIZES = [1 << 20, 4 << 20, 16 << 20, 64 << 20]


def _runs(with_samples: bool):
    a, b = [], []
    for size, r in zip(SIZES, RATIOS):
        t = 1e-3 * size / SIZES[0]
        # GB/s is bytes over the median time: run 2 at time t/r is r times run 1's rate.
        if with_samples:
            a.append(membw(size, samples(t, 0.01, seed=size % 97)))
            b.append(membw(size, samples(t / r, 0.01, seed=size % 89)))
        else:
            a.append(membw(size, None, median=t))
            b.append(membw(size, None, median=t / r))
    return run(a, "a"), run(b, "b")


@pytest.mark.parametrize("with_samples", [False, True])
def test_geomean_is_the_geometric_mean_exactly(with_samples):
    """The value is exp(mean(log ratio)) to rounding: 4 here, where the arithmetic mean is
    65.5, the median 3 (2.83 taken on the logs) and the harmonic mean 0.46."""
    cmp = compare_runs(list(_runs(with_samples)))
    assert [row.ratios[1] for row in cmp.rows] == pytest.approx(RATIOS, rel=1e-12)
    g = cmp.geomeans()[1]
    assert g.value == pytest.approx(4.0, rel=1e-12)
    assert g.n == 4 and g.noisy_left_out == 0
    if with_samples:
        assert g.lo < g.value < g.hi                  # cases resampled: a wide interval, around the value
    else:
        assert g.lo is None and g.hi is None
    value, n = cmp.geomean_ratios()[1]
    assert value == pytest.approx(4.0, rel=1e-12) and n == 4
    assert cmp.geomean_ratios()[0] == (pytest.approx(1.0), 4)
    line = next(l for l in cmp.table().splitlines() if "geometric mean" in l)
    assert line.startswith("run 2 ÷ run 1: geometric mean 4.00×")
    assert cmp.to_json()["geomean"][1]["value"] == pytest.approx(4.0, rel=1e-12)


def test_geomean_of_the_inverse_is_the_inverse():
    """Swapping the runs inverts every ratio, so the geometric mean (and only it among the
    usual averages) inverts too: 1/4."""
    a, b = _runs(False)
    g = compare_runs([b, a]).geomeans()[1]
    assert g.value == pytest.approx(1 / 4, rel=1e-12)
