"""Is an uploaded body a gpubench result file the hub should keep?

``parse_upload`` turns raw bytes into ``(document, Run)`` or raises
``UploadRejected`` with an HTTP status and the path of the offending field
(``records[3].timing.median_s``), so an uploader can fix the file. The checks
are the ones gpubench's own loader makes (``Run.from_dict``) plus the ones a
shared database needs and a local file does not: sizes, values no measurement
can produce, and strings the database or a JSON response could choke on (NUL,
lone surrogates). What is accepted is tabled in ``vocabulary.py``.

Status codes: 413 too large, 400 not UTF-8 JSON, 422 everything else (the body
is JSON but not an acceptable result file).
"""

from __future__ import annotations

import json
import math
import re
from datetime import datetime, timezone
from typing import Any

from gpubench.errors import GpubenchError
from gpubench.hardware import GPUS, GPUSpec, match_gpu
from gpubench.hub import vocabulary as V
from gpubench.results import (
    RUN_STATUSES,
    SCHEMA_VERSION,
    STATUSES,
    Run,
    case_id,
    migrate,
)


class UploadRejected(Exception):
    """An upload the hub refuses: HTTP status, the field at fault, and why."""

    def __init__(self, status_code: int, field: str, message: str):
        super().__init__(f"{field}: {message}")
        self.status_code = status_code
        self.field = field
        self.message = message

    def to_json(self) -> dict:
        return {"detail": {"field": self.field, "message": self.message}}


_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_MAX_PATH_CHARS = 300


def field_path(parts: tuple) -> str:
    """('records', 3, 'timing', 'median_s') -> 'records[3].timing.median_s'."""
    out = ""
    for p in parts:
        if isinstance(p, int):
            out += f"[{p}]"
        elif _IDENT.match(p):
            out += f".{p}" if out else p
        else:
            out += "[" + json.dumps(p[:80]) + "]"
    return out if len(out) <= _MAX_PATH_CHARS else out[: _MAX_PATH_CHARS - 1] + "…"


def _reject(parts: tuple, message: str, status: int = 422) -> UploadRejected:
    return UploadRejected(status, field_path(parts), message)


def parse_upload(raw: bytes, max_bytes: int = V.MAX_UPLOAD_BYTES) -> tuple[dict, Run]:
    """The parsed document (as uploaded, before any schema migration) and its Run."""
    if len(raw) > max_bytes:
        raise UploadRejected(413, "body", f"the upload is larger than the limit of {max_bytes} bytes")
    if not raw.strip():
        raise UploadRejected(400, "body", "the body is empty: send the result file's JSON")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise UploadRejected(400, "body", f"the body is not UTF-8 (invalid byte at offset {e.start})") from None
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as e:
        raise UploadRejected(400, "body", f"the body is not valid JSON ({e.msg} at line {e.lineno}, "
                                          f"column {e.colno})") from None
    except RecursionError:
        raise UploadRejected(400, "body", "the JSON is nested too deeply") from None
    except ValueError as e:     # e.g. an integer literal with thousands of digits
        raise UploadRejected(400, "body", f"the body is not acceptable JSON ({e})") from None
    run = validate_document(doc)
    return doc, run


def validate_document(doc: Any) -> Run:
    """Check a parsed document; return its Run (migrated to the current schema)."""
    _check_version(doc)
    _check_values(doc)
    _check_top(doc)
    try:
        migrated = migrate(dict(doc), "upload")
    except GpubenchError as e:
        raise UploadRejected(422, "schema_version", str(e)) from None
    except (TypeError, ValueError, AttributeError, KeyError) as e:   # an old file of the wrong shape
        raise UploadRejected(422, "records", f"cannot bring the file up to schema {SCHEMA_VERSION}: "
                                             f"{e.__class__.__name__}: {e}") from None
    spec = gpu_spec(migrated.get("env") or {})
    for i, rec in enumerate(migrated["records"]):
        _check_record(rec, i, spec)
    try:
        return Run.from_dict(migrated, source="upload")
    except GpubenchError as e:      # whatever gpubench's own loader rejects that the checks above missed
        raise UploadRejected(422, "records", str(e)) from None
    except (TypeError, ValueError) as e:
        raise UploadRejected(422, "document", f"{e.__class__.__name__}: {e}") from None


# ---- the document as a whole ----

def _check_version(doc: Any) -> None:
    if not isinstance(doc, dict):
        raise UploadRejected(422, "schema_version", f"the body is a JSON {type(doc).__name__}, not an "
                                                    "object: not a gpubench result file (no schema_version)")
    if "schema_version" not in doc:
        raise UploadRejected(422, "schema_version", "missing: not a gpubench result file")
    v = doc["schema_version"]
    if isinstance(v, bool) or not isinstance(v, int) or v < 1:
        raise UploadRejected(422, "schema_version", f"{_show(v)} is not a positive integer")
    if v > SCHEMA_VERSION:
        raise UploadRejected(422, "schema_version", f"{v} is newer than this hub reads "
                                                    f"({SCHEMA_VERSION}): the hub must be upgraded")


def _check_values(doc: Any) -> None:
    """Every value anywhere: finite numbers of sane size, strings a database can store,
    a bounded depth. Iterative, so a deep file cannot exhaust the stack."""
    stack: list[tuple[Any, tuple, int]] = [(doc, (), 0)]
    while stack:
        value, parts, depth = stack.pop()
        if depth > V.MAX_NESTING:
            raise _reject(parts, f"nested more than {V.MAX_NESTING} levels deep")
        if isinstance(value, dict):
            for k, v in value.items():
                _check_string(k, parts + (k,), "key")
                stack.append((v, parts + (k,), depth + 1))
        elif isinstance(value, list):
            for i, v in enumerate(value):
                stack.append((v, parts + (i,), depth + 1))
        elif isinstance(value, str):
            _check_string(value, parts, "value")
        elif isinstance(value, float) and not math.isfinite(value):
            raise _reject(parts, f"{value} is not a finite number")
        elif isinstance(value, int) and not isinstance(value, bool) and abs(value) > V.MAX_ABS_INT:
            raise _reject(parts, f"integer out of range (more than {V.MAX_ABS_INT} in magnitude)")


def _check_string(s: str, parts: tuple, what: str) -> None:
    if "\x00" in s:
        raise _reject(parts, f"the {what} contains a NUL character")
    try:
        s.encode("utf-8")
    except UnicodeEncodeError:
        raise _reject(parts, f"the {what} contains an unpaired UTF-16 surrogate (not text)") from None


def _check_top(doc: dict) -> None:
    _name(doc.get("suite"), ("suite",), required=True)
    if "status" in doc and doc["status"] not in RUN_STATUSES:
        raise _reject(("status",), f"{_show(doc['status'])} is not one of {', '.join(RUN_STATUSES)}")
    if doc.get("run_id") is not None:
        _name(doc["run_id"], ("run_id",))
    for key in ("env", "config", "tool"):
        if key in doc and not isinstance(doc[key], dict):
            raise _reject((key,), "is not an object")
    if "env" not in doc:
        raise _reject(("env",), "missing: the environment block says which GPU ran this")
    if doc.get("started_at") is not None and parse_time(doc["started_at"]) is None:
        raise _reject(("started_at",), f"{_show(doc['started_at'])} is not an ISO 8601 time")
    if isinstance(doc.get("tool"), dict) and doc["tool"].get("version") is not None:
        _name(doc["tool"]["version"], ("tool", "version"))
    env = doc["env"]
    for block, fields in (("device", ("name", "type", "spec_key", "label")), ("host", ("hostname",))):
        if block in env and env[block] is not None:
            if not isinstance(env[block], dict):
                raise _reject(("env", block), "is not an object")
            for f in fields:
                if env[block].get(f) is not None:
                    _name(env[block][f], ("env", block, f))
    sw = env.get("software")
    if isinstance(sw, dict) and sw.get("gpubench") is not None:
        _name(sw["gpubench"], ("env", "software", "gpubench"))
    if "records" not in doc:
        raise _reject(("records",), "missing: a result file has a list of records (it may be empty)")
    if not isinstance(doc["records"], list):
        raise _reject(("records",), "is not a list")
    if len(doc["records"]) > V.MAX_RECORDS:
        raise _reject(("records",), f"more than {V.MAX_RECORDS} records")
    for i, rec in enumerate(doc["records"]):
        if not isinstance(rec, dict):
            raise _reject(("records", i), "is not an object")


def _name(value: Any, parts: tuple, required: bool = False) -> None:
    if value is None and not required:
        return
    if not isinstance(value, str):
        raise _reject(parts, f"{_show(value)} is not a string")
    if required and not value.strip():
        raise _reject(parts, "is empty")
    if len(value) > V.NAME_MAX_CHARS:
        raise _reject(parts, f"longer than {V.NAME_MAX_CHARS} characters")


# ---- one record ----

def _check_record(rec: dict, i: int, spec: GPUSpec | None) -> None:
    at = ("records", i)
    for key in ("benchmark", "params", "status"):
        if key not in rec:
            raise _reject(at + (key,), "missing")
    _name(rec["benchmark"], at + ("benchmark",), required=True)
    if rec["status"] not in STATUSES:
        raise _reject(at + ("status",), f"{_show(rec['status'])} is not one of {', '.join(STATUSES)}")
    params = rec["params"]
    if not isinstance(params, dict):
        raise _reject(at + ("params",), "is not an object")
    for k, v in params.items():
        if len(k) > V.NAME_MAX_CHARS:
            raise _reject(at + ("params", k), f"the name is longer than {V.NAME_MAX_CHARS} characters")
        if isinstance(v, str) and len(v) > V.TEXT_MAX_CHARS:
            raise _reject(at + ("params", k), f"longer than {V.TEXT_MAX_CHARS} characters")
    if len(case_id(rec["benchmark"], params).encode("utf-8")) > V.CASE_ID_MAX_BYTES:
        raise _reject(at + ("params",), f"the case id these params make is longer than "
                                        f"{V.CASE_ID_MAX_BYTES} bytes")
    if rec.get("device") is not None:
        _name(rec["device"], at + ("device",))
    for block in ("timing", "check", "work", "metrics", "telemetry"):
        if rec.get(block) is not None and not isinstance(rec[block], dict):
            raise _reject(at + (block,), "is not an object")
    metrics = rec.get("metrics") or {}
    for name in metrics:
        if len(name) > V.NAME_MAX_CHARS:
            raise _reject(at + ("metrics", name[:80]), f"metric name longer than {V.NAME_MAX_CHARS} characters")
        if not V.known_metric_name(name):
            raise _reject(at + ("metrics", name),
                          "unknown metric: its name has no unit suffix the hub knows "
                          "(see gpubench.results.UNITS)")
    for block in ("timing", "metrics", "work", "telemetry"):
        _check_nonnegative(rec.get(block) or {}, at + (block,))
    for name, (lo, hi) in V.FRACTION_BOUNDS.items():
        v = metrics.get(name)
        if _num(v) is not None and not lo <= v <= hi:
            raise _reject(at + ("metrics", name), f"{v} is outside [{lo:g}, {hi:g}]")
    peak = _peak_for(spec, params.get("dtype"))
    if peak is not None:
        limit = V.TFLOPS_PEAK_FACTOR * peak
        for name in V.TFLOPS_METRICS:
            v = _num(metrics.get(name))
            if v is not None and v > limit:
                raise _reject(at + ("metrics", name),
                              f"{v:g} TFLOP/s is more than {V.TFLOPS_PEAK_FACTOR:g}× the dense "
                              f"{params['dtype']} peak of {spec.name} ({peak:g} TFLOP/s)")


def _check_nonnegative(block: dict, at: tuple) -> None:
    stack = [(block, at, None)]
    while stack:
        value, parts, key = stack.pop()
        if isinstance(value, dict):
            for k, v in value.items():
                stack.append((v, parts + (k,), k))
        elif isinstance(value, list):
            for j, v in enumerate(value):
                stack.append((v, parts + (j,), key))     # a list's items share its key's unit
        elif key is not None and _num(value) is not None and value < 0 and _nonnegative_key(key):
            raise _reject(parts, f"{value} is negative: a time, size, energy, power or rate cannot be")


def _nonnegative_key(key: str) -> bool:
    return key not in V.SIGNED_KEYS and not V.NONNEGATIVE_UNIT_WORDS.isdisjoint(key.split("_"))


def _peak_for(spec: GPUSpec | None, dtype: Any) -> float | None:
    if spec is None or not isinstance(dtype, str):
        return None
    try:
        # Imported here: dtypes imports torch, which only this check needs.
        from gpubench.dtypes import get_precision

        return spec.peak(get_precision(dtype).peak_key)
    except GpubenchError:       # a precision gpubench does not know: no peak, no check
        return None


# ---- helpers shared with the store ----

def gpu_spec(env: dict) -> GPUSpec | None:
    """The datasheet entry of the run's device, or None (a CPU, an unknown GPU)."""
    dev = env.get("device") if isinstance(env, dict) else None
    if not isinstance(dev, dict) or dev.get("type") == "cpu":
        return None
    key = dev.get("spec_key")
    if isinstance(key, str) and key in GPUS:
        return GPUS[key]
    name = dev.get("name")
    mem = _num(dev.get("total_memory_bytes"))
    return match_gpu(name, int(mem) if mem and mem > 0 else None) if isinstance(name, str) else None


def parse_time(value: Any) -> datetime | None:
    """An ISO 8601 time as a naive UTC datetime (naive input is taken as UTC), or None."""
    if not isinstance(value, str) or len(value) > 64:
        return None
    try:
        t = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        if t.tzinfo is not None:
            t = t.astimezone(timezone.utc).replace(tzinfo=None)
    except (ValueError, OverflowError):     # OverflowError: year 1 with a positive offset
        return None
    return t


def _num(v: Any) -> float | None:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return None
    return float(v)


def _show(v: Any) -> str:
    text = json.dumps(v) if not isinstance(v, (dict, list)) else type(v).__name__
    return text if len(text) <= 60 else text[:59] + "…"
