"""Find the matmul shape a device runs fastest, within a time budget.

A brute-force grid over (m, n, k) at a useful resolution is thousands of
products; the landscape is smooth at large scale (bigger is better until the
tail of the last wave and the cache stop helping) and jagged at small scale
(alignment to tile sizes). So: a coarse ladder of cubes finds the region, then a
pattern search (Hooke–Jeeves style) moves one dimension at a time by a step that
halves whenever no neighbour is better, down to ``step_min``. Every probe is
cached, a probe that fails (out of memory, say) counts as no rate, and the search
stops when the budget is spent, keeping the best it found.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable


@dataclass(frozen=True)
class Probe:
    m: int
    n: int
    k: int
    tflops: float | None


@dataclass
class SearchResult:
    best: Probe | None
    probes: list[Probe] = field(default_factory=list)
    stopped: str = ""               # "converged", "budget" or "max_probes"
    elapsed_s: float = 0.0


def cube_ladder(lo: int, hi: int, align: int) -> list[int]:
    """lo, lo·√2, 2·lo, … up to hi, each rounded to a multiple of align."""
    sizes, s = [], float(lo)
    while s <= hi * 1.0001:
        v = max(align, int(round(s / align)) * align)
        if v not in sizes and v <= hi:
            sizes.append(v)
        s *= 2 ** 0.5
    return sizes


def search_max_matmul(measure: Callable[[int, int, int], float | None], *, lo: int, hi: int,
                      budget_s: float, step_min: int = 256, align: int = 256,
                      min_gain: float = 0.003, max_probes: int = 10_000,
                      clock: Callable[[], float] = time.monotonic) -> SearchResult:
    """``measure(m, n, k)`` returns TFLOP/s or None. ``min_gain`` is the relative
    improvement a move must show to count: smaller differences are timing noise."""
    start = clock()
    seen: dict[tuple[int, int, int], Probe] = {}
    result = SearchResult(best=None)

    def out_of_time() -> str | None:
        if clock() - start >= budget_s:
            return "budget"
        if len(seen) >= max_probes:
            return "max_probes"
        return None

    def probe(m: int, n: int, k: int) -> Probe:
        key = (m, n, k)
        if key not in seen:
            p = Probe(m, n, k, measure(m, n, k))
            seen[key] = p
            result.probes.append(p)
            if p.tflops is not None and (result.best is None or result.best.tflops is None
                                         or p.tflops > result.best.tflops):
                result.best = p
        return seen[key]

    for s in cube_ladder(lo, hi, align):
        if (why := out_of_time()):
            result.stopped = why
            break
        p = probe(s, s, s)
        if p.tflops is None and result.best is not None:
            break               # larger cubes will not fit either

    if not result.stopped and result.best is not None:
        b = result.best
        step = max(step_min, (min(b.m, b.n, b.k) // 4) // step_min * step_min)
        while not result.stopped:
            centre = result.best
            moved = False
            for dim in range(3):
                for sign in (+1, -1):
                    if (why := out_of_time()):
                        result.stopped = why
                        break
                    shape = [centre.m, centre.n, centre.k]
                    shape[dim] = shape[dim] + sign * step
                    if not lo <= shape[dim] <= hi:
                        continue
                    p = probe(*shape)
                    if p.tflops is not None and p.tflops > centre.tflops * (1 + min_gain):
                        moved = True
                if result.stopped:
                    break
            if result.stopped:
                break
            if result.best is not centre and moved:
                continue        # keep the step while it is paying off
            if step <= step_min:
                result.stopped = "converged"
            step = max(step_min, step // 2 // step_min * step_min) if step > step_min else step
    result.stopped = result.stopped or "converged"
    result.elapsed_s = clock() - start
    return result
