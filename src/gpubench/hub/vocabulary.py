"""What the hub accepts in an uploaded result file: plain data, in one place.

The hub stores files from strangers, so it refuses what gpubench itself never
writes. This module is only tables; ``validate.py`` applies them. When a
benchmark starts emitting a new metric, add its name (or its unit suffix) here,
and the test that uploads real result files will say if something was missed.
"""

from __future__ import annotations

from gpubench.results import UNITS

# ---- metric names ----
#
# A metric name is accepted when, after removing the qualifiers below from its
# end, it ends with a unit suffix: results.UNITS' keys (what a result file says
# its suffixes mean) plus the few compare.py reads units from. Names with no
# unit (counts, choices, labels) are listed one by one in UNITLESS_METRICS.

UNIT_SUFFIXES: tuple[str, ...] = tuple(sorted(set(UNITS) | {"_per_s", "_ratio", "_fraction"},
                                              key=lambda s: (-len(s), s)))

# Qualifiers that follow a unit: "model_tflops_per_gpu", "tflops_incl_scaling",
# "mfu_vs_bf16_peak", "power_w_mean", "next_needed_bytes_est".
METRIC_QUALIFIERS: tuple[str, ...] = ("_per_gpu", "_incl_scaling", "_vs_bf16_peak", "_mean", "_max",
                                      "_min", "_median", "_est")

# Metrics the benchmarks emit that carry no unit suffix (searched by hand in
# src/gpubench: benches/*, runner.py's mamf summary, fits.py, distributed.py).
UNITLESS_METRICS: frozenset[str] = frozenset({
    # mamf search summary (runner.run_mamf)
    "best_m", "best_n", "best_k", "probes", "stopped",
    # transformer step (benches/transformer.py)
    "loss_scale", "fp8_fallback_calls", "peak_memory_source", "price_source",
    # transformer-fits (fits.py)
    "largest_model", "largest_params", "top_of_ladder", "next_model", "tried",
    # membw (benches/membw.py): "cache" or "memory"
    "served_from",
})

# ---- values that cannot be negative ----
#
# A key (in a record's timing, metrics, work or telemetry block) is a
# non-negative quantity when one of its "_"-separated words is one of these:
# times, energies, powers, byte counts, clocks and rates.
NONNEGATIVE_UNIT_WORDS: frozenset[str] = frozenset({
    "s", "us", "j", "w", "mhz", "bytes", "gbps", "tflops", "flops",
})
# Keys with such a word that may legitimately be negative (a difference).
SIGNED_KEYS: frozenset[str] = frozenset({"memory_headroom_bytes"})

# Metrics that are TFLOP/s achieved by the kernel or model: at most
# TFLOPS_PEAK_FACTOR × the GPU's dense peak for the record's precision.
TFLOPS_METRICS: tuple[str, ...] = ("tflops", "tflops_incl_scaling", "model_tflops_per_gpu",
                                   "hardware_tflops_per_gpu")
TFLOPS_PEAK_FACTOR = 2.0

# Fractions of the peak: (low, high) inclusive. pct_of_peak is in percent.
FRACTION_BOUNDS: dict[str, tuple[float, float]] = {
    "mfu": (0.0, 2.0),
    "hfu": (0.0, 2.0),
    "mfu_vs_bf16_peak": (0.0, 4.0),     # an FP8 run against the BF16 peak can pass 1 honestly
    "pct_of_peak": (0.0, 200.0),
}

# ---- sizes ----

MAX_UPLOAD_BYTES = 10 * 2**20        # default body limit (the CLI's --max-upload-mib)
NAME_MAX_CHARS = 200                 # suite, benchmark, status, metric names, GPU and host names
TEXT_MAX_CHARS = 10_000              # a params value
# A record's case_id (benchmark + params) is indexed; PostgreSQL's btree takes at
# most about 2,700 bytes per entry, so the limit is in UTF-8 bytes.
CASE_ID_MAX_BYTES = 2_000
MAX_NESTING = 64                     # JSON depth; real files are about 6 deep
MAX_ABS_INT = 2**64                  # seeds are below 2**64; more than that is not a measurement
MAX_RECORDS = 100_000

# Run and record statuses come from gpubench.results (RUN_STATUSES, STATUSES).

# ---- direction ----
#
# Best on a leaderboard is the largest value, except for these metric suffixes
# (times, latencies, energies, costs, errors), where it is the smallest.
LOWER_IS_BETTER_SUFFIXES: tuple[str, ...] = ("_s", "_us", "_j", "usd_per_gpu_hour",
                                             "usd_per_million_tokens", "rel_err", "cov", "loss")


def strip_qualifiers(name: str) -> str:
    changed = True
    while changed:
        changed = False
        for q in METRIC_QUALIFIERS:
            if name.endswith(q) and len(name) > len(q):
                name = name[: -len(q)]
                changed = True
    return name


def known_metric_name(name: str) -> bool:
    """True when the name is one gpubench writes: a unit suffix, or a listed unitless name."""
    if name in UNITLESS_METRICS:
        return True
    base = strip_qualifiers(name)
    for suffix in UNIT_SUFFIXES:
        if suffix.startswith("_"):
            if base.endswith(suffix) and len(base) > len(suffix):
                return True
        elif base == suffix or base.endswith("_" + suffix):
            return True
    return False


def higher_is_better(metric: str) -> bool:
    base = strip_qualifiers(metric)
    if base.endswith("_per_s"):         # a rate (tokens_per_s), not a time
        return True
    return not any(base == s.lstrip("_") or base.endswith(s) for s in LOWER_IS_BETTER_SUFFIXES)
