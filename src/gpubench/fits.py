"""The largest model that trains here: a search over the GPT size ladder, per mode.

For a buyer the question is not "how fast is a 1.3B step" but "what is the biggest
model this card trains at all, in bf16, with checkpointing, …, and how much room is
left". Each mode (precision, checkpointing, micro-batch) climbs the ladder
(``gpubench.gpt.config.LADDER_GPU``: 125m … 13b) with real training steps:

1. start at the largest size whose memory estimate fits the limit (the device's
   memory, or ``limit_bytes``), so a card is not made to train every small size;
2. a size fits when its step runs, passes its check and peaks below the limit; on
   success climb, on an out-of-memory failure descend, until a fitting size sits
   next to a failing one (or an end of the ladder);
3. any other failure ends the search: it says nothing about memory.

Every step tried is its own record; a ``transformer-fits`` record sums the mode up:
the largest size, its peak memory and the headroom, and the next size's estimated
need.
"""

from __future__ import annotations

import time
from typing import Any

from gpubench.gpt.config import LADDER_CPU, LADDER_GPU, get_size
from gpubench.gpt.memory import estimate_step_bytes
from gpubench.registry import SEARCHES, Case, Search
from gpubench.results import Record, utc_now
from gpubench.timing import TimerConfig

STEP = "transformer-step"


def footprint(record: Record) -> int | None:
    """The memory a step needed: the CUDA allocator's peak; on a CPU, whose resident set is
    too noisy to decide by, the tensors counted exactly (model states and the activations
    saved for the backward)."""
    m = record.metrics or {}
    if "cuda" in str(m.get("peak_memory_source", "")):
        return m.get("peak_memory_bytes")
    if m.get("model_state_bytes") is not None and m.get("saved_activation_bytes") is not None:
        return m["model_state_bytes"] + m["saved_activation_bytes"]
    return m.get("peak_memory_bytes")


def _fits(record: Record, limit: int) -> bool:
    peak = footprint(record)
    return record.status == "ok" and peak is not None and peak <= limit


def _about_memory(record: Record, limit: int) -> bool:
    """A failure that says the size does not fit (rather than something else broke)."""
    if record.status == "ok":
        return not _fits(record, limit)
    return record.status == "failed" and "out of memory" in (record.error or "")


def run_fits(runner, search: Search) -> None:
    p = dict(search.params)
    device = runner.device
    mode = {"dtype": p["dtype"], "checkpointing": p.get("checkpointing", "none"),
            "micro_batch": int(p.get("micro_batch", 1))}
    ladder = tuple(p.get("ladder") or (LADDER_GPU if device.is_cuda else LADDER_CPU))
    limit = int(p.get("limit_bytes") or device.total_memory_bytes)
    label = f"fits {mode['dtype']} ckpt={mode['checkpointing']} mb{mode['micro_batch']}"
    runner.progress.begin(label)
    started, t0 = utc_now(), time.perf_counter()
    summary_params = {**mode, "limit_bytes": limit}
    base = {"benchmark": "transformer-fits", "params": summary_params, "device": device.label,
            "started_at": started}
    reason = device.unsupported_reason(mode["dtype"])
    if reason:
        record = Record(status="skipped", reason=reason, duration_s=0.0, **base)
        runner.emit(record)
        runner.progress.done(record, label)
        return

    def estimate(name: str) -> float:
        return estimate_step_bytes(get_size(name), mode["dtype"], mode["checkpointing"], mode["micro_batch"],
                                   cuda=device.is_cuda)["total"]

    quick = TimerConfig.for_device(device, quick=True)
    tried: dict[int, Record] = {}

    def attempt(k: int) -> Record:
        rec = runner.run_case(Case(STEP, {"model": ladder[k], **mode, "search": "fits"}), quick)
        runner.emit(rec)
        tried[k] = rec
        peak = footprint(rec)
        runner.progress.note(f"{label}: {ladder[k]} " + (f"peak {peak / 2**30:.2f} GiB" if peak else rec.status)
                             + (" fits" if _fits(rec, limit) else " does not fit"))
        return rec

    k = max((i for i, name in enumerate(ladder) if estimate(name) <= limit), default=0)
    best = worst = None       # the largest size that fits, the smallest that does not
    broken: Record | None = None
    while 0 <= k < len(ladder) and k not in tried:
        rec = attempt(k)
        if _fits(rec, limit):
            best = k
            k += 1
        elif _about_memory(rec, limit):
            worst = k
            k -= 1
        else:
            broken = rec
            break
        if best is not None and worst is not None and worst == best + 1:
            break

    if broken is not None:
        record = Record(status="failed", error=f"{ladder[k]} failed for a reason other than memory: "
                                               f"{broken.error or broken.reason}",
                        duration_s=time.perf_counter() - t0, **base)
    elif best is None:
        record = Record(status="failed",
                        error=f"even {ladder[0]} does not fit in {limit / 2**30:.2f} GiB "
                              f"(estimated {estimate(ladder[0]) / 2**30:.2f} GiB)",
                        metrics={"tried": [ladder[i] for i in sorted(tried)]},
                        duration_s=time.perf_counter() - t0, **base)
    else:
        rec = tried[best]
        peak = footprint(rec)
        metrics: dict[str, Any] = {
            "largest_model": ladder[best],
            "largest_params": get_size(ladder[best]).params(),
            "peak_memory_bytes": peak,
            "peak_memory_source": ("torch.cuda.max_memory_allocated" if device.is_cuda else
                                   "model states + saved activations, counted from the tensors"),
            "memory_headroom_bytes": limit - peak,
            "limit_bytes": limit,
            "tokens_per_s": rec.metrics.get("tokens_per_s"),
            "mfu": rec.metrics.get("mfu"),
            "top_of_ladder": best == len(ladder) - 1,
            "next_model": ladder[worst] if worst is not None else None,
            "next_needed_bytes_est": int(estimate(ladder[worst])) if worst is not None else None,
            "tried": [ladder[i] for i in sorted(tried)],
        }
        record = Record(status="ok", metrics=metrics, duration_s=time.perf_counter() - t0, **base)
    runner.emit(record)
    runner.progress.done(record, label)


SEARCHES["fits"] = run_fits
