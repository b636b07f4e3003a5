"""pytest-benchmark's JSON (``pytest --benchmark-json FILE``, or a saved ``.benchmarks/``
file) as gpubench records.

The file is ``{"machine_info": {…}, "commit_info": {…}, "benchmarks": [{"name",
"fullname", "group", "params", "stats": {min, max, mean, stddev, rounds, median, iqr,
q1, q3, …, "data"?}, "options", "extra_info"}], "datetime", "version"}``, its times in
seconds per iteration.

- A benchmark of gpubench's own pytest-benchmark front end (``benchmarks/``) says its
  gpubench case in ``extra_info`` (``benchmark``, ``params``, ``metrics``) and its
  environment in ``machine_info.gpubench``: it becomes the record gpubench itself would
  have written for that case (same case id; figures from pytest-benchmark's median), so
  it compares with ``gpubench run`` files directly.
- Any other benchmark becomes a ``pytest-benchmark`` record whose case is the test
  (``params.test`` = its full name) and whose figures are the time statistics
  (``median_s`` first: lower is better); ``extra_info`` is kept in ``work``. Such a file
  names no GPU, and pytest-benchmark times on the host: its device is the CPU it states.
"""

from __future__ import annotations

import math
from typing import Any

from gpubench.importers import Format, Source, new_run, provenance
from gpubench.results import Record

TOOL = "pytest-benchmark"
BENCHMARK = "pytest-benchmark"          # the benchmark name of a test that is not a gpubench case
_STATS = (("median", "median_s"), ("mean", "mean_s"), ("min", "min_s"), ("max", "max_s"),
          ("stddev", "stddev_s"), ("iqr", "iqr_s"))


def _num(v: Any) -> float | None:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return None
    v = float(v)
    return v if math.isfinite(v) else None


def _timing(stats: dict, options: dict) -> dict:
    out: dict[str, Any] = {"method": f"pytest-benchmark, timer {options.get('timer', '?')} (seconds per iteration)"}
    for key, name in _STATS:
        if _num(stats.get(key)) is not None:
            out[name] = float(stats[key])
    if isinstance(stats.get("rounds"), int):
        out["n"] = stats["rounds"]
    if isinstance(stats.get("iterations"), int):
        out["iterations"] = stats["iterations"]
    mean, sd = _num(stats.get("mean")), _num(stats.get("stddev"))
    if mean and sd is not None:
        out["cov"] = sd / mean
    data = stats.get("data")
    if isinstance(data, list) and data and all(_num(x) is not None for x in data):
        out["samples_s"] = [float(x) for x in data]
    return out


def _gpubench_record(b: dict, extra: dict, timing: dict | None) -> Record:
    from gpubench.hub.vocabulary import known_metric_name

    metrics = {k: v for k, v in (extra.get("metrics") or {}).items()
               if known_metric_name(k) and (_num(v) is not None or isinstance(v, str))}
    work = {"flops": _num(extra.get("flops")), "bytes": _num(extra.get("bytes")),
            "pytest_benchmark_test": b.get("fullname") or b.get("name")}
    if isinstance(extra.get("info"), dict):
        work.update({k: v for k, v in extra["info"].items() if k not in work})
    check = extra.get("check") if isinstance(extra.get("check"), dict) else None
    status = "ok" if timing and metrics else "skipped"
    return Record(benchmark=str(extra["benchmark"]), params=dict(extra["params"]), status=status,
                  reason=None if status == "ok" else "pytest-benchmark recorded no timing (--benchmark-disable?)",
                  device=str(extra.get("device") or "unknown"), timing=timing, check=check, work=work,
                  metrics=metrics if status == "ok" else {})


def _plain_record(b: dict, extra: dict, timing: dict | None, stats: dict) -> Record:
    params: dict[str, Any] = {"test": str(b.get("fullname") or b.get("name"))}
    metrics: dict[str, Any] = {}
    if timing:
        metrics = {name: timing[name] for _, name in _STATS if name in timing}
        if _num(stats.get("ops")) is not None:
            metrics["ops_per_s"] = float(stats["ops"])
    work = {"group": b.get("group"), "extra_info": extra or None, "params": b.get("params")}
    return Record(benchmark=BENCHMARK, params=params, status="ok" if timing else "skipped",
                  reason=None if timing else "pytest-benchmark recorded no timing for it",
                  device="cpu", timing=timing, work=work, metrics=metrics)


def _env(doc: dict) -> dict:
    mi = doc.get("machine_info") if isinstance(doc.get("machine_info"), dict) else {}
    if isinstance(mi.get("gpubench"), dict):
        return mi["gpubench"]
    cpu = mi.get("cpu") if isinstance(mi.get("cpu"), dict) else {}
    name = cpu.get("brand_raw") or mi.get("processor") or mi.get("machine")
    return {"device": {"type": "cpu", "index": None, "label": "cpu", "name": name, "spec_key": None,
                       "peak_tflops": None},
            "host": {"hostname": mi.get("node"), "os": " ".join(str(mi[k]) for k in ("system", "release")
                                                                 if mi.get(k)) or None,
                     "cpu": name, "cpu_count": cpu.get("count")},
            "software": {"python": mi.get("python_version"),
                         "python_implementation": mi.get("python_implementation")}}


def parse(src: Source):
    doc = src.doc
    benches = doc.get("benchmarks")
    if not isinstance(benches, list):
        raise src.fail("pytest-benchmark JSON whose 'benchmarks' is not a list")
    if not benches:
        raise src.fail("a pytest-benchmark file with no benchmarks (its 'benchmarks' list is empty): nothing to import")
    records = []
    for i, b in enumerate(benches):
        if not isinstance(b, dict) or not (b.get("fullname") or b.get("name")):
            raise src.fail(f"benchmarks[{i}] has no name: not a pytest-benchmark entry")
        stats = b.get("stats") if isinstance(b.get("stats"), dict) else {}
        options = b.get("options") if isinstance(b.get("options"), dict) else {}
        timing = _timing(stats, options) if _num(stats.get("median")) is not None else None
        extra = b.get("extra_info") if isinstance(b.get("extra_info"), dict) else {}
        if isinstance(extra.get("benchmark"), str) and isinstance(extra.get("params"), dict):
            records.append(_gpubench_record(b, extra, timing))
        else:
            records.append(_plain_record(b, extra, timing, stats))
    prov = provenance(src, TOOL, str(doc["version"]) if doc.get("version") is not None else None,
                      "pytest-benchmark JSON", commit_info=doc.get("commit_info"))
    started = doc.get("datetime") if isinstance(doc.get("datetime"), str) else None
    run = new_run(TOOL, _env(doc), prov, started_at=started)
    run.records = records
    return run


def sniff(src: Source) -> bool:
    d = src.doc
    return isinstance(d, dict) and "benchmarks" in d and any(k in d for k in ("machine_info", "datetime", "version"))


FORMAT = Format(TOOL, "a pytest-benchmark JSON file", sniff, parse)
