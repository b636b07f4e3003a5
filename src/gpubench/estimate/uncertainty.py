"""How sure an estimate is: a range from the back-test's residuals.

For the family an estimate belongs to (its stack and GPU generation, MoE, or whole runs), the
back-test gives the residuals x = log(predicted ÷ published time) of the rows of that family,
each row predicted with the stacks' η fitted without its own publication (leave one source
out: what the model does on a run it has not seen).
The range at level ``LEVEL`` is the Student-t prediction interval of one more such residual,
mean ± t(n−1)·sd·√(1 + 1/n), turned back into times: true time = predicted / e^x. A family with
fewer than ``MIN_ROWS`` rows borrows every row's residuals (and says so in ``basis``): a thin
back-test gives a wide range, a dense one a narrow range, and a biased family an off-centre one.

GPU-hours and cost use the whole-run family (published GPU-hours of whole runs, which also
carry the goodput model's error) when it has enough rows, else the step family.

With a calibration profile that carries a self-check (``selfcheck.py``: the model's error on
the measured machine's own steps), that error is a second, independent source of doubt: the
half-width in log space becomes √(h² + (t·r)²), r the self-check's rms log error over its n
steps and t the Student quantile at n − 1. A profile that missed its own steps by 20% cannot
promise 5% at scale.
"""

from __future__ import annotations

import math
from statistics import fmean, stdev

LEVEL = 0.8
MIN_ROWS = 5
# Student t quantiles at 0.90 (two-sided 80%) by degrees of freedom; normal beyond 30.
_T90 = {1: 3.078, 2: 1.886, 3: 1.638, 4: 1.533, 5: 1.476, 6: 1.440, 7: 1.415, 8: 1.397, 9: 1.383,
        10: 1.372, 12: 1.356, 15: 1.341, 20: 1.325, 25: 1.316, 30: 1.310}
_Z90 = 1.2816


def t90(df: int) -> float:
    if df >= 31:
        return _Z90
    keys = sorted(k for k in _T90 if k <= max(1, df))
    return _T90[keys[-1]]


def interval(residuals: dict[str, list[float]], family: str) -> tuple[float, float, str]:
    """(low, high) multipliers on a predicted time at ``LEVEL``, and what they rest on."""
    rows = residuals.get(family, [])
    basis = f"{len(rows)} back-test row(s) of family {family}"
    if len(rows) < MIN_ROWS:
        everything = [x for xs in residuals.values() for x in xs]
        basis = (f"all {len(everything)} back-test rows (family {family} has only {len(rows)}, "
                 f"fewer than {MIN_ROWS})")
        rows = everything
    if len(rows) < 2:
        return 0.5, 2.0, "no back-test to speak of: a factor of two either way"
    mean, sd, n = fmean(rows), stdev(rows), len(rows)
    half = t90(n - 1) * sd * math.sqrt(1 + 1 / n)
    # true = predicted / e^x: the highest residual gives the shortest true time.
    low, high = math.exp(-(mean + half)), math.exp(-(mean - half))
    return low, high, (f"{int(LEVEL * 100)}% prediction interval of log(predicted/published time) over "
                       f"{basis}: mean {mean:+.3f}, sd {sd:.3f}")


def widen(lo: float, hi: float, self_check: dict | None) -> tuple[float, float, str]:
    """(low, high) with the machine's self-check error added in quadrature, and why."""
    if not self_check or not self_check.get("cases") or self_check.get("rms_log_error") is None:
        return lo, hi, ""
    n, r = int(self_check["cases"]), float(self_check["rms_log_error"])
    centre, half = (math.log(lo) + math.log(hi)) / 2, (math.log(hi) - math.log(lo)) / 2
    extra = t90(max(1, n - 1)) * r
    half = math.sqrt(half ** 2 + extra ** 2)
    return (math.exp(centre - half), math.exp(centre + half),
            f"; widened by the profile's self-check (rms log error {r:.3f} over {n} step(s) of the "
            f"measured machine)")


def uncertainty(step_time_s: float, gpu_hours: float, cost_usd: float | None, family: str,
                residuals: dict[str, list[float]], kind: str = "in-sample",
                self_check: dict | None = None) -> dict:
    lo, hi, basis = interval(residuals, family)
    whole = "whole-run" if len(residuals.get("whole-run", [])) >= MIN_ROWS else family
    wlo, whi, wbasis = interval(residuals, whole)
    lo, hi, why = widen(lo, hi, self_check)
    wlo, whi, _ = widen(wlo, whi, self_check)
    return {
        "level": LEVEL,
        "family": family,
        "step_time_s": [step_time_s * lo, step_time_s * hi],
        "gpu_hours": [gpu_hours * wlo, gpu_hours * whi],
        "cost_usd_cloud": [cost_usd * wlo, cost_usd * whi] if cost_usd is not None else None,
        "basis": f"{kind} back-test residuals; step time: {basis}; GPU-hours and cost: {wbasis}{why}",
    }
