"""How far a ratio of two measured cases can be trusted: 90% intervals from the samples.

A record's figure (TFLOP/s, GB/s, tokens/s, µs per op, a step's seconds) is its
work divided by, or proportional to, the median of its timing samples
(``record.timing["samples_s"]``). A ratio of two cases' figures is therefore a
ratio of two medians, to the power −1 for a rate (twice the time is half the
TFLOP/s) or +1 for a time: the callers say which (``power``).

The interval is a percentile bootstrap of the ratio of medians: ``RESAMPLES``
resamples of each side, a fixed seed (the same files always print the same
interval), the 5th and 95th percentiles of log(median(num*) / median(den*)),
moved onto the printed ratio (``ratio · exp(power · (q − observed))``) so that the
figure and its interval never disagree about which median convention was used.
A bootstrap rather than the delta method because a busy machine makes timings
bimodal (a quiet stretch and a contended one), where the median jumps between the
modes: a normal approximation then gives a tight symmetric interval around a
median that a re-run could put at the other mode; the bootstrap puts the other
mode inside the interval.

The bootstrap is computed without materialising the resamples (2000 × up to 1000
samples per side would be ~40 ms a case: seconds per ``gpubench compare`` and per
hub compare page). The median of a resample of n sorted values is one order
statistic (odd n) or the mean of two (even n), and *which* depends only on n and
binomial counts: the k-th smallest of n draws with replacement is at most the
j-th value iff at least k of the draws fall among the first j, a Binomial(n, j/n)
count. So each side draws its resample medians from that exact law (cached per
n); the result has the same distribution as resampling the values themselves
(a test checks it against the plain bootstrap).

What gets no interval (None, shown as a bare ratio, never as significant): a
record without samples (an imported file, a summary such as transformer-fits),
one with fewer than ``MIN_SAMPLES`` (five draws are the fewest that can bound a
median at 90% without assuming a distribution: a 1-in-16 chance that all fall on
one side), a metric that is not a time or a rate, and a ratio of a record to itself.

A ratio whose interval contains 1 is *not significant*: the two cases are not
measured to differ. A case whose CoV is above the timer's threshold
(``timing.high_cov``) is *noisy*: its median is shaky whatever the interval says,
since contention that lasts a stretch of samples makes them depend on each other,
which no resampling of single samples sees.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Any, Sequence

Z90 = 1.6448536269514722            # two-sided 90%
MIN_SAMPLES = 5
RESAMPLES = 2000
SEED = 20240613                     # fixed: the same files always print the same interval
LEVEL = (0.05, 0.95)                # the percentiles of a 90% interval

NOT_SIGNIFICANT = "~"
NOISY = "!"
NOT_SIGNIFICANT_NOTE = "~ 90% interval contains 1: not a measured difference"


def _positive(x: Any) -> float | None:
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        return None
    x = float(x)
    return x if math.isfinite(x) and x > 0 else None


def time_samples(record) -> list[float] | None:
    """The record's timing samples (seconds), or None when it has too few valid ones."""
    samples = (getattr(record, "timing", None) or {}).get("samples_s")
    if not isinstance(samples, list) or len(samples) < MIN_SAMPLES:
        return None
    values = [_positive(x) for x in samples]
    return None if any(v is None for v in values) else values


def is_noisy(record) -> bool:
    """The timer flagged the record's spread (CoV above its threshold)."""
    return bool((getattr(record, "timing", None) or {}).get("high_cov"))


@functools.lru_cache(maxsize=256)
def _median_law(n: int):
    """Where the median of a resample of n sorted values lands, as arrays over j = 1..n.

    ``cdf[j-1]`` = P(the k-th smallest resampled value is at most the j-th value), with
    k = the median's rank (the lower middle one for an even n); for an even n also
    ``split[j-1]`` = P(the (k+1)-th smallest lies above the j-th | the k-th is the j-th),
    None for an odd n.
    """
    import numpy as np

    k = (n + 1) // 2
    log_fact = np.concatenate([[0.0], np.cumsum(np.log(np.arange(1, n + 1)))])
    j = np.arange(1, n)                              # j = n has every draw below it
    log_p, log_q = np.log(j / n), np.log1p(-j / n)
    i = np.arange(k, n + 1)
    log_comb = log_fact[n] - log_fact[i] - log_fact[n - i]
    at_least_k = np.exp(log_comb[None, :] + i[None, :] * log_p[:, None]
                        + (n - i)[None, :] * log_q[:, None]).sum(axis=1)
    cdf = np.minimum(np.maximum.accumulate(np.append(at_least_k, 1.0)), 1.0)
    cdf[-1] = 1.0
    if n % 2:
        return cdf, None
    # The (k+1)-th is above the k-th (the j-th value) when exactly k draws are at or
    # below the j-th and fewer than k below it: P(N_j = k) − P(N_(j-1) = k, none at j).
    jj = np.arange(1, n + 1)
    with np.errstate(divide="ignore"):
        log_ck = log_fact[n] - log_fact[k] - log_fact[n - k]
        exactly = np.exp(log_ck + k * np.log(jj / n) + (n - k) * np.log((n - jj) / n))
        none_at_j = np.exp(log_ck + k * np.log((jj - 1) / n) + (n - k) * np.log((n - jj) / n))
    p_here = np.diff(np.concatenate([[0.0], cdf]))
    split = np.where(p_here > 0, np.clip(exactly - none_at_j, 0.0, None) / np.where(p_here > 0, p_here, 1.0),
                     0.0)
    return cdf, np.clip(split, 0.0, 1.0)


def bootstrap_medians(sorted_values, rng, size: int = RESAMPLES):
    """``size`` draws of the median of a resample (with replacement, same size) of the
    sorted array ``sorted_values``, from the exact law of where that median lands."""
    import numpy as np

    x = np.asarray(sorted_values, dtype=float)
    n = len(x)
    cdf, split = _median_law(n)
    low = np.minimum(np.searchsorted(cdf, rng.random(size), side="right"), n - 1)   # 0-based k-th
    if split is None:
        return x[low]
    # Above the k-th, the other n − k draws are uniform over the values after it: the
    # (k+1)-th is the lowest of them.
    after = n - 1 - low
    u = rng.random(size)
    offset = np.ceil(after * -np.expm1(np.log1p(-rng.random(size)) / (n - n // 2)))
    high = np.where(u < split[low], low + np.clip(offset, 1, np.maximum(after, 1)), low).astype(int)
    return (x[low] + x[np.minimum(high, n - 1)]) / 2


def ratio_interval(ratio: float | None, num, den, power: int) -> tuple[float, float] | None:
    """The 90% interval of ``ratio`` = num's figure ÷ den's figure, each figure
    proportional to its record's median time to the power ``power`` (−1: a rate such
    as TFLOP/s or tokens/s; +1: a time such as µs per op or a step's seconds)."""
    import numpy as np

    ratio = _positive(ratio)
    if ratio is None or num is den or power not in (-1, 1):
        return None
    a, b = time_samples(num), time_samples(den)
    if a is None or b is None:
        return None
    a, b = np.sort(a), np.sort(b)
    rng = np.random.default_rng(SEED)
    d = np.log(bootstrap_medians(a, rng)) - np.log(bootstrap_medians(b, rng))
    observed = math.log(float(np.median(a))) - math.log(float(np.median(b)))
    ends = sorted(power * (float(q) - observed) for q in np.quantile(d, LEVEL))
    lo, hi = ratio * math.exp(ends[0]), ratio * math.exp(ends[1])
    return (lo, hi) if math.isfinite(lo) and math.isfinite(hi) else None


def significant(interval: tuple[float, float] | None, null: float = 1.0) -> bool | None:
    """Whether the interval excludes ``null``; None without an interval."""
    if interval is None:
        return None
    lo, hi = interval
    return not lo <= null <= hi


@dataclass
class Geomean:
    """A geometric mean of per-case ratios with its 90% interval.

    ``n`` cases went in; ``noisy_left_out`` cases both runs measured were left out
    because one side's CoV was high. ``lo``/``hi`` are None when no case had an
    interval of its own (nothing about the noise was measured)."""

    value: float
    lo: float | None
    hi: float | None
    n: int
    noisy_left_out: int = 0

    @property
    def significant(self) -> bool | None:
        return significant(None if self.lo is None else (self.lo, self.hi))

    def to_json(self) -> dict:
        return {"value": self.value, "lo": self.lo, "hi": self.hi, "n": self.n,
                "noisy_left_out": self.noisy_left_out}


def geomean(ratios: Sequence[float], intervals: Sequence[tuple[float, float] | None],
            noisy_left_out: int = 0) -> Geomean | None:
    """The geometric mean of ``ratios`` (each > 0) and its 90% interval.

    The interval is a two-level bootstrap (``RESAMPLES`` replicates, a fixed seed):
    each replicate draws the cases with replacement, and each drawn case's log ratio
    with its own measurement noise (normal, with the standard error its 90% interval
    implies, (log hi − log lo) / (2 · 1.645); none for a case without one).
    Resampling the cases makes the interval say how much the mean depends on which
    cases the suite has (two cases at 0.8× and 1.3× do not make a measured 1.02×);
    the inner draw adds what each case's own samples allow, so that one case alone
    keeps its own interval.
    """
    if not ratios:
        return None
    import numpy as np

    logs = np.log(np.asarray(ratios, dtype=float))
    ses = np.asarray([0.0 if iv is None else (math.log(iv[1]) - math.log(iv[0])) / (2 * Z90)
                      for iv in intervals], dtype=float)
    value = float(math.exp(logs.mean()))
    if all(iv is None for iv in intervals):
        return Geomean(value, None, None, len(ratios), noisy_left_out)
    rng = np.random.default_rng(SEED)
    n = len(logs)
    pick = rng.integers(0, n, size=(RESAMPLES, n))
    means = (logs[pick] + ses[pick] * rng.standard_normal((RESAMPLES, n))).mean(axis=1)
    lo, hi = np.exp(np.quantile(means, LEVEL))
    return Geomean(value, float(lo), float(hi), n, noisy_left_out)


def fmt_interval(interval: tuple[float, float] | None, digits: int = 2, scale: float = 1.0,
                 shift: float = 0.0) -> str:
    """`` [lo–hi]`` (each end ``scale·x + shift``), with as many more decimals (up to two
    more) as it takes for the ends to differ; "" without an interval."""
    if interval is None:
        return ""
    lo, hi = (scale * x + shift for x in interval)
    d = digits
    while d < digits + 2 and f"{lo:.{d}f}" == f"{hi:.{d}f}":
        d += 1
    return f" [{lo:.{d}f}–{hi:.{d}f}]"


def marks(interval: tuple[float, float] | None, noisy: bool = False) -> str:
    """`` ~`` when the interval contains 1, `` !`` when a side is noisy."""
    return (f" {NOT_SIGNIFICANT}" if significant(interval) is False else "") + (f" {NOISY}" if noisy else "")


def fmt_ratio(ratio: float, interval: tuple[float, float] | None, noisy: bool = False,
              digits: int = 2) -> str:
    """``1.03× [0.98–1.08] ~``: the ratio, its 90% interval, ``~`` when the interval
    contains 1, ``!`` when either case is noisy; a bare ratio without an interval."""
    return f"{ratio:.{digits}f}×" + fmt_interval(interval, digits) + marks(interval, noisy)
