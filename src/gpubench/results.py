"""The result file: one JSON document per run, versioned, written as records arrive.

Layout (schema 2)::

    {
      "schema_version": 2,
      "tool": {"name": "gpubench", "version": "0.1.0"},
      "run_id": "…",                  # random, unique per run: the hub's idempotency key is a content hash
      "suite": "mixed-precision",
      "status": "running" | "complete" | "interrupted" | "crashed",
      "started_at": "2026-11-23T10:00:00+00:00", "finished_at": … | null,
      "units": {…},                   # what each unit suffix means
      "config": {…},                  # timer settings and command-line choices
      "env": {…},                     # gpubench.env.fingerprint()
      "records": [Record, …],
      "provenance": {…}               # only in files `gpubench import` made from another tool's output
    }

A record says what was measured (``benchmark``, ``params``), whether it was
(``status``: ok / skipped with ``reason`` / failed with ``error``), how (``timing``:
method, warm-up, L2 flush, graph, and the stats in seconds), that the output was
right (``check``), how much work an iteration is (``work``), what that gives
(``metrics``, unit in every name) and what the GPU did meanwhile (``telemetry``).

The file is rewritten whole (write to a temporary file, then rename) after every
record: a crash or Ctrl-C leaves a valid file with every finished record in it
and a status that says the run did not complete.

Schema history: 1 was the first draft, with a record's statistics flat in a
``stats`` block and no ``timing``/``check``/``telemetry``/``units``; ``migrate``
brings such files up to date on load, so old files keep loading.
"""

from __future__ import annotations

import json
import os
import uuid
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable

from gpubench import __version__
from gpubench.errors import GpubenchError, ResultFileError

SCHEMA_VERSION = 2
STATUSES = ("ok", "skipped", "failed")
RUN_STATUSES = ("running", "complete", "interrupted", "crashed")

UNITS = {
    "_s": "seconds",
    "_j": "joules",
    "_w": "watts",
    "_mhz": "megahertz",
    "_c": "degrees Celsius",
    "_bytes": "bytes",
    "tflops": "TFLOP/s (1e12 floating-point operations per second)",
    "gbps": "GB/s (1e9 bytes per second)",
    "pct_of_peak": "percent of the device's dense datasheet peak for that precision",
    "energy_per_tflop_j": "joules per 1e12 floating-point operations",
    "cov": "coefficient of variation (std / mean), a ratio",
    "rel_err": "‖out − ref‖ / ‖ref‖ against a float64 reference, a ratio",
    "flops": "floating-point operations per iteration",
    "flop_per_byte": "arithmetic intensity: floating-point operations per byte moved",
    "speedup": "ratio",
    "_us": "microseconds",
    "straggler_ratio": "slowest rank's median iteration time ÷ the fastest rank's, a ratio",
    "tokens_per_s": "training tokens per second (all ranks; _per_gpu: one rank's)",
    "mfu": "model FLOP/s (PaLM's 6·N + 12·L·H·Q·T per token) ÷ dense datasheet peak, a fraction 0-1",
    "hfu": "hardware FLOP/s (model FLOPs plus checkpointing's recomputation) ÷ dense peak, a fraction 0-1",
    "usd_per_gpu_hour": "US dollars per GPU-hour",
    "usd_per_million_tokens": "US dollars per 1e6 training tokens at usd_per_gpu_hour",
    "memory_fraction": "peak memory ÷ the device's total memory, a fraction 0-1",
    "loss": "training cross-entropy, nats per token",
}


def utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


@dataclass
class Record:
    benchmark: str
    params: dict[str, Any]
    status: str
    device: str
    reason: str | None = None       # why skipped
    error: str | None = None        # why failed
    timing: dict | None = None
    check: dict | None = None
    work: dict | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    telemetry: dict | None = None
    started_at: str | None = None
    duration_s: float | None = None

    def __post_init__(self):
        if self.status not in STATUSES:
            raise ValueError(f"record status {self.status!r} is not one of {STATUSES}")

    @property
    def case_id(self) -> str:
        return case_id(self.benchmark, self.params)

    def to_dict(self) -> dict:
        return {"case_id": self.case_id, **asdict(self)}

    @classmethod
    def from_dict(cls, d: dict, where: str = "record") -> "Record":
        if not isinstance(d, dict):
            raise ResultFileError(f"{where} is not an object")
        for key in ("benchmark", "params", "status"):
            if key not in d:
                raise ResultFileError(f"{where} has no {key!r}")
        if d["status"] not in STATUSES:
            raise ResultFileError(f"{where}: status {d['status']!r} is not one of {', '.join(STATUSES)}")
        if not isinstance(d["params"], dict):
            raise ResultFileError(f"{where}: params is not an object")
        known = {f for f in cls.__dataclass_fields__}
        kwargs = {k: v for k, v in d.items() if k in known}
        kwargs.setdefault("device", "unknown")
        return cls(**kwargs)


def case_id(benchmark: str, params: dict) -> str:
    """Stable identity of a case across runs and machines: benchmark + sorted params."""
    inner = ",".join(f"{k}={params[k]}" for k in sorted(params))
    return f"{benchmark}[{inner}]"


@dataclass
class Run:
    suite: str
    env: dict
    config: dict = field(default_factory=dict)
    records: list[Record] = field(default_factory=list)
    status: str = "running"
    started_at: str = field(default_factory=utc_now)
    finished_at: str | None = None
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    schema_version: int = SCHEMA_VERSION
    tool: dict = field(default_factory=lambda: {"name": "gpubench", "version": __version__})
    # Set by `gpubench import` (gpubench.importers): which tool measured the figures, and the
    # SHA-256 of the file they came from. None for a run gpubench measured itself.
    provenance: dict | None = None
    path: Path | None = None        # where it was loaded from; not serialised

    @property
    def imported(self) -> bool:
        return isinstance(self.provenance, dict) and bool(self.provenance.get("imported"))

    def to_dict(self) -> dict:
        return {
            "schema_version": self.schema_version,
            "tool": self.tool,
            "run_id": self.run_id,
            "suite": self.suite,
            "status": self.status,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "units": UNITS,
            "config": self.config,
            "env": self.env,
            "records": [r.to_dict() for r in self.records],
            # Only imported files carry the key: gpubench's own files stay as they were.
            **({"provenance": self.provenance} if self.provenance is not None else {}),
        }

    @classmethod
    def from_dict(cls, d: dict, source: str = "result") -> "Run":
        d = migrate(d, source)
        for key in ("suite", "env", "records"):
            if key not in d:
                raise ResultFileError(f"{source}: no {key!r} field")
        if not isinstance(d["records"], list):
            raise ResultFileError(f"{source}: 'records' is not a list")
        records = [Record.from_dict(r, f"{source}: record {i}") for i, r in enumerate(d["records"])]
        return cls(
            suite=d["suite"], env=d["env"], config=d.get("config", {}), records=records,
            status=d.get("status", "complete"), started_at=d.get("started_at"),
            finished_at=d.get("finished_at"), run_id=d.get("run_id") or uuid.uuid4().hex,
            schema_version=SCHEMA_VERSION, tool=d.get("tool", {"name": "gpubench"}),
            provenance=d["provenance"] if isinstance(d.get("provenance"), dict) else None,
        )


# ---- migrations: each takes a document of version N and returns version N+1 ----

def _v1_to_v2(doc: dict) -> dict:
    doc = dict(doc)
    records = []
    for r in doc.get("records", []):
        r = dict(r)
        stats = r.pop("stats", None)
        if stats is not None:
            r["timing"] = {"method": stats.pop("method", "unknown"), **stats}
        r.setdefault("check", None)
        r.setdefault("telemetry", None)
        r.setdefault("metrics", {})
        records.append(r)
    doc["records"] = records
    doc.setdefault("status", "complete")
    doc["schema_version"] = 2
    return doc


MIGRATIONS = {1: _v1_to_v2}


def migrate(doc: Any, source: str = "result") -> dict:
    if not isinstance(doc, dict) or "schema_version" not in doc:
        raise ResultFileError(f"{source} is not a gpubench result file (no schema_version)")
    version = doc["schema_version"]
    if not isinstance(version, int) or version < 1:
        raise ResultFileError(f"{source}: schema_version {version!r} is not a positive integer")
    if version > SCHEMA_VERSION:
        raise ResultFileError(f"{source} has schema_version {version}, newer than this gpubench "
                              f"reads ({SCHEMA_VERSION}): upgrade gpubench")
    while version < SCHEMA_VERSION:
        doc = MIGRATIONS[version](doc)
        version = doc["schema_version"]
    return doc


# ---- files ----

def load_run(path: str | os.PathLike) -> Run:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ResultFileError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ResultFileError(f"{path}: cannot read ({e.__class__.__name__}: {e})") from None
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as e:
        raise ResultFileError(f"{path} is not valid JSON ({e.msg} at line {e.lineno}, "
                              f"column {e.colno})") from None
    run = Run.from_dict(doc, source=str(path))
    run.path = path
    return run


def _atomic_write(path: Path, text: str) -> None:
    # One writer for every file gpubench makes: atomic, and readable as open() would leave it.
    from gpubench.outfiles import write_text_atomic

    write_text_atomic(path, text)


def check_writable(path: Path, force: bool = False) -> None:
    """Fail before anything runs if the result cannot be written or would destroy one."""
    from gpubench.outfiles import check_output, probe_folder

    check_output(path, "--out", force=force, create_parent=True)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise GpubenchError(f"--out {path}: cannot create folder {path.parent} ({e.strerror})") from None
    probe_folder(path, "--out")


class ResultWriter:
    """Keeps the file on disk equal to the run so far."""

    def __init__(self, path: str | os.PathLike, run: Run):
        self.path = Path(path)
        self.run = run
        self.flush()

    def add(self, record: Record) -> None:
        self.run.records.append(record)
        self.flush()

    def close(self, status: str = "complete") -> None:
        if status not in RUN_STATUSES:
            raise ValueError(status)
        self.run.status = status
        self.run.finished_at = utc_now()
        self.flush()

    def flush(self) -> None:
        text = json.dumps(self.run.to_dict(), indent=1, allow_nan=False, default=_json_default)
        _atomic_write(self.path, text + "\n")


def _json_default(obj):
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "item"):        # numpy / torch scalars
        return obj.item()
    raise TypeError(f"{type(obj).__name__} is not JSON serialisable")


def clean_floats(obj):
    """NaN and infinities are not JSON: store them as null."""
    if isinstance(obj, float):
        return obj if obj == obj and obj not in (float("inf"), float("-inf")) else None
    if isinstance(obj, dict):
        return {k: clean_floats(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [clean_floats(v) for v in obj]
    return obj


# ---- analysis ----

def to_dataframe(runs: Iterable[Run | str | os.PathLike]):
    """One row per record: run and environment columns, then params.*, metrics.*,
    timing.* (without the raw samples), check.* and telemetry.* columns."""
    import pandas as pd

    rows = []
    for run in runs:
        if not isinstance(run, Run):
            run = load_run(run)
        env = run.env or {}
        dev = env.get("device") or {}
        base = {
            "run_id": run.run_id, "suite": run.suite, "run_status": run.status,
            "run_started_at": run.started_at, "file": str(run.path) if run.path else None,
            "device_name": dev.get("name"), "device_type": dev.get("type"),
            "spec_key": dev.get("spec_key"), "host": (env.get("host") or {}).get("hostname"),
        }
        for rec in run.records:
            row = dict(base)
            row.update({"case_id": rec.case_id, "benchmark": rec.benchmark, "status": rec.status,
                        "reason": rec.reason, "error": rec.error, "device": rec.device,
                        "duration_s": rec.duration_s})
            for block in ("params", "metrics", "timing", "check", "work", "telemetry"):
                for k, v in (getattr(rec, block) or {}).items():
                    if k == "samples_s":
                        continue
                    row[f"{block}.{k}"] = v
            rows.append(row)
    return pd.DataFrame(rows)
