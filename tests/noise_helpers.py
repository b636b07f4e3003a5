"""Timing samples whose statistics are known by construction, for the interval tests.

``samples(median, spread, n)`` are the n quantiles (i + ½)/n of a log-normal with that
median and log standard deviation: for an odd n the middle one is the median
exactly, so a figure computed from them has a known value, and the spread, not
chance, decides how wide an interval is. The order is shuffled with a fixed seed
(the statistics do not depend on it; real samples are not sorted).
"""

import math
import random
from statistics import NormalDist

from gpubench.results import Record, Run

_N01 = NormalDist()


def samples(median: float, spread: float, n: int = 101, *, phase: float = 0.5, seed: int = 0) -> list[float]:
    xs = [median * math.exp(spread * _N01.inv_cdf((i + phase) / n)) for i in range(n)]
    random.Random(seed).shuffle(xs)
    return xs


def timing(xs: list[float], high_cov: bool = False) -> dict:
    ordered = sorted(xs)
    mean = sum(xs) / len(xs)
    std = math.sqrt(sum((x - mean) ** 2 for x in xs) / (len(xs) - 1))
    return {"method": "host_clock", "n": len(xs), "median_s": ordered[len(xs) // 2], "cov": std / mean,
            "high_cov": high_cov, "samples_s": xs}


def membw(size: int, xs: list[float] | None, *, high_cov: bool = False, median: float | None = None) -> Record:
    """A copy case whose GB/s is its bytes over the median of ``xs`` (or over ``median``
    for a record without samples)."""
    t = timing(xs, high_cov) if xs is not None else None
    med = t["median_s"] if t else median
    return Record("membw", {"size_bytes": size}, "ok", "cpu", timing=t, work={"bytes": 2 * size},
                  metrics={"gbps": 2 * size / med / 1e9})


def overhead(ops: int, xs: list[float]) -> Record:
    """A lower-is-better case: µs per op proportional to the median time."""
    t = timing(xs)
    return Record("op-overhead", {"mode": "eager", "ops": ops}, "ok", "cpu", timing=t,
                  metrics={"per_op_us": t["median_s"] / ops * 1e6})


def run(records: list[Record], host: str = "h") -> Run:
    return Run(suite="membw", env={"device": {"name": "Test GPU", "type": "cpu"}, "host": {"hostname": host}},
               records=records, status="complete")
