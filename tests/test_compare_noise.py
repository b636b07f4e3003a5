"""Ratios that carry their uncertainty: gpubench compare's intervals, significance,
noisy cases and the geometric mean that leaves them out.

The runs are built in code from samples whose medians are known by construction
(noise_helpers): "the same distribution" is the same quantiles, "2× slower" is the
quantiles of a distribution with twice the median, so what each interval must
contain or exclude follows from how the samples were made, not from a measurement.
"""

import json

import numpy as np
import pytest

from gpubench import uncertainty
from gpubench.compare import compare_runs
from gpubench.results import Record

from noise_helpers import membw, overhead, run, samples

SIZES = (1 << 20, 4 << 20, 16 << 20, 64 << 20)


def same_distribution():
    """Two runs of four cases drawn from identical distributions (5% spread): two
    cases hold the very same quantiles in another order, two interleaved quantiles
    (different values, same distribution)."""
    a, b = [], []
    for i, size in enumerate(SIZES):
        median = 1e-3 * (i + 1)
        if i % 2:
            a.append(membw(size, samples(median, 0.05, phase=0.25, seed=i)))
            b.append(membw(size, samples(median, 0.05, phase=0.75, seed=i + 10)))
        else:
            a.append(membw(size, samples(median, 0.05, seed=i)))
            b.append(membw(size, samples(median, 0.05, seed=i + 10)))
    return run(a, "a"), run(b, "b")


def twice_as_slow(noisy_extra=False):
    """Run 2 takes twice run 1's time on every case, with 1% spread; optionally a fifth
    case, flagged high-CoV in run 2, that ran 10× faster there."""
    a = [membw(size, samples(1e-3 * (i + 1), 0.01, seed=i)) for i, size in enumerate(SIZES)]
    b = [membw(size, samples(2e-3 * (i + 1), 0.01, seed=i + 10)) for i, size in enumerate(SIZES)]
    if noisy_extra:
        a.append(membw(256 << 20, samples(1e-2, 0.01, seed=7)))
        b.append(membw(256 << 20, samples(1e-3, 0.5, seed=8), high_cov=True))
    return run(a, "a"), run(b, "b")


def test_same_distribution_is_not_significant():
    """Guards: two runs of identical sample distributions read as a difference (today:
    bare ratios, no interval, a geometric mean with nothing to say it is noise)."""
    cmp = compare_runs(list(same_distribution()))
    for row in cmp.rows:
        lo, hi = row.ratio_ci[1]
        assert row.ratio_ci[0] is None and row.significant[0] is None
        assert lo < 1 < hi and lo < row.ratios[1] < hi
        assert row.significant[1] is False and row.noisy == [False, False]
    g = cmp.geomeans()[1]
    assert cmp.geomeans()[0] is None
    assert g.n == 4 and g.noisy_left_out == 0 and g.lo < 1 < g.hi and g.significant is False
    text = cmp.table()
    assert text.count(" ~)") == 4 and uncertainty.NOT_SIGNIFICANT_NOTE in text
    line = next(l for l in text.splitlines() if "geometric mean" in l)
    assert "(90% CI " in line and ", not significant) over 4 case(s)" in line


def test_twice_as_slow_is_significant_and_contains_the_true_ratio():
    """Guards: a real 2× difference gets an interval that excludes 1 and holds the true
    ratio, in the right direction for a rate (GB/s: ½) and for a time (µs per op: 2)."""
    a, b = twice_as_slow()
    a.records.append(overhead(8, samples(1e-4, 0.01, seed=3)))
    b.records.append(overhead(8, samples(2e-4, 0.01, seed=4)))
    cmp = compare_runs([a, b])
    for row in cmp.rows:
        true = 2.0 if row.benchmark == "op-overhead" else 0.5
        lo, hi = row.ratio_ci[1]
        assert row.ratios[1] == pytest.approx(true)
        assert lo < true < hi and not lo <= 1 <= hi and row.significant[1] is True
    g = compare_runs(list(twice_as_slow())).geomeans()[1]
    assert g.value == pytest.approx(0.5) and g.lo < 0.5 < g.hi < 1 and g.significant is True
    text = compare_runs(list(twice_as_slow())).table()
    assert " ~" not in text and "not significant" not in text
    assert "(0.50× [0.4" in text


def test_noisy_case_left_out_of_the_geomean_and_counted():
    """Guards: a high-CoV case pulling the geometric mean (today it counts like any
    other: the 10× case below would drag 0.50× to 0.79×)."""
    cmp = compare_runs(list(twice_as_slow(noisy_extra=True)))
    noisy = cmp.rows[-1]
    assert noisy.noisy == [False, True] and noisy.ratios[1] == pytest.approx(10.0)
    assert all(row.noisy == [False, False] for row in cmp.rows[:-1])
    g = cmp.geomeans()[1]
    assert g.value == pytest.approx(0.5) and g.n == 4 and g.noisy_left_out == 1
    line = next(l for l in cmp.table().splitlines() if "geometric mean" in l)
    assert line.startswith("run 2 ÷ run 1: geometric mean 0.50× (90% CI ")
    assert line.endswith(" over 4 case(s); 1 noisy case(s) left out")
    assert "(10.00× [" in cmp.table() and "] !)" in cmp.table()
    # run 1's own noise makes the case noisy for every run compared with it
    a, b = twice_as_slow(noisy_extra=True)
    a.records[0].timing["high_cov"] = True
    rows = compare_runs([a, b]).rows
    assert rows[0].noisy == [True, True] and compare_runs([a, b]).geomeans()[1].noisy_left_out == 2


def test_records_without_samples_get_no_interval():
    """Guards: a ratio of records without samples (an imported file, a summary) shown
    with an interval or as significant; too few samples count as none."""
    a = run([membw(s, None, median=1e-3) for s in SIZES[:2]] + [membw(SIZES[2], [1e-3] * 4)])
    b = run([membw(s, None, median=2e-3) for s in SIZES[:2]] + [membw(SIZES[2], [2e-3] * 4)])
    cmp = compare_runs([a, b])
    for row in cmp.rows:
        assert row.ratios[1] == pytest.approx(0.5)
        assert row.ratio_ci == [None, None] and row.significant == [None, None]
    g = cmp.geomeans()[1]
    assert g.value == pytest.approx(0.5) and g.lo is None and g.hi is None and g.significant is None
    text = cmp.table()
    assert "(0.50×)" in text and " ~" not in text
    assert "geometric mean 0.50× (no interval: no case has timing samples) over 3 case(s)" in text
    fits = [run([Record("transformer-fits", {"dtype": "bf16"}, "ok", "cpu", metrics={"largest_params": p},
                        timing={"samples_s": samples(1.0, 0.01)})]) for p in (1e9, 2e9)]
    assert compare_runs(fits).rows[0].ratio_ci == [None, None]     # a count: not the timer's figure


def test_json_csv_carry_the_intervals():
    """Guards: the hub page and the CSV losing the intervals (exact key names: the hub's
    compare page reads them)."""
    cmp = compare_runs(list(twice_as_slow(noisy_extra=True)), names=["A", "B"])
    doc = json.loads(json.dumps(cmp.to_json(), allow_nan=False))
    row = doc["rows"][0]
    assert row["ratio_ci"][0] is None and row["ratio_ci"][1] == list(cmp.rows[0].ratio_ci[1])
    assert row["significant"] == [None, True] and row["noisy"] == [False, False]
    assert doc["rows"][-1]["noisy"] == [False, True]
    assert doc["geomean"][0] is None
    g = doc["geomean"][1]
    assert set(g) == {"value", "lo", "hi", "n", "noisy_left_out"}
    assert g["n"] == 4 and g["noisy_left_out"] == 1 and g["lo"] < g["value"] < g["hi"]
    df = cmp.to_dataframe()
    for col in ("B ratio lo", "B ratio hi", "B significant", "B noisy", "A ratio lo"):
        assert col in df.columns
    first = df.iloc[0]
    assert (first["B ratio lo"], first["B ratio hi"]) == pytest.approx(cmp.rows[0].ratio_ci[1])
    assert bool(first["B significant"]) is True and bool(df.iloc[-1]["B noisy"]) is True


def test_plot_draws_error_bars_and_pales_noise(monkeypatch, tmp_path):
    """Guards: the plot showing a noisy or not-significant ratio like a measured one,
    and no error bars."""
    from matplotlib.axes import Axes

    a, b = twice_as_slow(noisy_extra=True)
    a.records.append(membw(512 << 20, samples(1e-2, 0.05, seed=1)))     # the same distribution
    b.records.append(membw(512 << 20, samples(1e-2, 0.05, seed=2)))
    cmp = compare_runs([a, b])
    assert [r.noisy[1] or not r.significant[1] for r in cmp.rows] == [False] * 4 + [True] * 2
    calls = {"barh": [], "errorbar": []}
    for name in calls:
        original = getattr(Axes, name)

        def spy(self, *args, _name=name, _original=original, **kwargs):
            calls[_name].append((args, kwargs))
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(Axes, name, spy)
    cmp.plot(tmp_path / "c.png")
    assert (tmp_path / "c.png").read_bytes()[:4] == b"\x89PNG"
    (x, _y), kw = calls["errorbar"][0]
    lo, hi = kw["xerr"]
    assert list(x) == pytest.approx([r.ratios[1] for r in cmp.rows])
    assert [r - d for r, d in zip(x, lo)] == pytest.approx([r.ratio_ci[1][0] for r in cmp.rows])
    assert [r + d for r, d in zip(x, hi)] == pytest.approx([r.ratio_ci[1][1] for r in cmp.rows])
    pale = [(args, kw) for args, kw in calls["barh"] if kw.get("hatch")]
    assert len(pale) == 1
    # the noisy 10× case and the not-significant one are the pale bars; the rest solid
    assert sorted(pale[0][0][1]) == pytest.approx(sorted([cmp.rows[-2].ratios[1], cmp.rows[-1].ratios[1]]))


def busy(median_quiet, median_busy, quiet=5, busy_=6, seed=0):
    """A busy machine's samples: a quiet stretch and a contended one, 1% spread each."""
    return samples(median_quiet, 0.01, quiet, seed=seed) + samples(median_busy, 0.01, busy_, seed=seed + 1)


def test_bimodal_interval_reaches_the_other_mode_in_the_right_direction():
    """Guards: a busy-machine median (6 of 11 samples contended, 21× slower) read as a
    21× difference. Resampling can put the median in the quiet mode, so the rate ratio's
    interval must reach down to about 1; it cannot reach up (the baseline cannot get
    slower than its slowest samples), which a rate/time mix-up would get wrong."""
    fast = membw(1, samples(1e-3, 0.01, 11, seed=3))
    slow = membw(1, busy(0.95e-3, 21.37e-3))
    ratio = fast.metrics["gbps"] / slow.metrics["gbps"]
    lo, hi = uncertainty.ratio_interval(ratio, fast, slow, power=-1)
    assert 15 < ratio < 22 and lo < 1 < hi < 1.1 * ratio
    # the same two as times (µs per op): the mirror image
    lo_t, hi_t = uncertainty.ratio_interval(1 / ratio, fast, slow, power=1)
    assert (lo_t, hi_t) == pytest.approx((1 / hi, 1 / lo))


@pytest.mark.parametrize("n", [11, 12, 200])
def test_fast_bootstrap_is_the_plain_bootstrap(n):
    """Guards the shortcut of gpubench.uncertainty (each resample's median drawn from
    the exact law of where it lands, odd and even n) against the plain bootstrap that
    resamples the values: the two distributions of resampled medians must agree."""
    x = np.sort(busy(1.0, 3.0, quiet=n // 2, busy_=n - n // 2, seed=n))
    draws = 20000
    fast = np.sort(uncertainty.bootstrap_medians(x, np.random.default_rng(1), draws))
    plain = np.sort(np.median(x[np.random.default_rng(2).integers(0, n, (draws, n))], axis=1))
    grid = np.concatenate([fast, plain])
    ks = np.max(np.abs(np.searchsorted(fast, grid, side="right") - np.searchsorted(plain, grid, side="right")))
    assert ks / draws < 0.02        # two samples of one law differ by ~0.01 at most (Kolmogorov–Smirnov, 95%)
