"""Other tools' results as gpubench result files: ``gpubench import``.

One module per tool, each with ``sniff(text, doc)`` (is this file mine?) and
``parse(source) -> Run``:

- ``nccl_tests``: nccl-tests' text output (any version that prints the ``# Using
  devices`` block) and its JSON (``-J file.json``, since nccl-tests 2.17.x, 2025);
- ``mamf_finder``: the output of stas00/ml-engineering's mamf-finder.py;
- ``pytest_benchmark``: pytest-benchmark's ``--benchmark-json`` files (gpubench's own
  ``benchmarks/`` front end, whose records keep gpubench's case ids, and any other).

An imported file is an ordinary result file (it loads, shows, compares and uploads
like one) whose ``suite`` is ``imported:<tool>`` and whose ``provenance`` names the
tool, its version where the file states it, the file and its SHA-256. Its ``env`` holds
what the file states and nothing else. Records keep gpubench's case ids where the case
is the same: nccl-tests' all_reduce of 1 GiB on 8 ranks in place is gpubench's
``all_reduce[dtype=fp32,inplace=True,size_bytes=1073741824,world_size=8]``.

Anything that is not one of these formats, or is one cut short, is a
``GpubenchError`` naming the file: nothing is written.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from gpubench import __version__
from gpubench.errors import GpubenchError
from gpubench.results import Run, utc_now

MAX_BYTES = 64 << 20        # the largest nccl-tests JSON with per-iteration samples stays far below


class ImportFailed(GpubenchError):
    """A file that cannot be imported; the message starts with the file's name."""


@dataclass
class Source:
    """One file to import: its bytes as text, parsed JSON when it is JSON, and options."""
    path: Path
    raw: bytes
    text: str
    doc: Any = None                     # the parsed JSON document, or None
    options: dict = field(default_factory=dict)

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.raw).hexdigest()

    def fail(self, why: str) -> ImportFailed:
        return ImportFailed(f"{self.path}: {why}")


def read_source(path: str | os.PathLike, **options) -> Source:
    path = Path(path)
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise ImportFailed(f"{path}: no such file") from None
    except OSError as e:
        raise ImportFailed(f"{path}: cannot read ({e.strerror or e})") from None
    if path.is_dir():
        raise ImportFailed(f"{path}: is a directory, not a file")
    if size > MAX_BYTES:
        raise ImportFailed(f"{path}: {size} bytes is more than the {MAX_BYTES >> 20} MiB an import reads")
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise ImportFailed(f"{path}: cannot read ({e.strerror or e})") from None
    if not raw.strip():
        raise ImportFailed(f"{path}: the file is empty: nothing to import")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ImportFailed(f"{path}: not a text file (invalid UTF-8 at byte {e.start}): not the output of a "
                           f"tool gpubench imports") from None
    doc = None
    if text.lstrip()[:1] in "{[":
        try:
            doc = json.loads(text)
        except (json.JSONDecodeError, RecursionError, ValueError):
            doc = None
    return Source(path=path, raw=raw, text=text, doc=doc, options=dict(options))


@dataclass(frozen=True)
class Format:
    name: str               # the tool, as provenance and the suite name say it
    describe: str
    sniff: Callable[[Source], bool]
    parse: Callable[[Source], Run]


def formats() -> list[Format]:
    from gpubench.importers import mamf_finder, nccl_tests, pytest_benchmark

    return [nccl_tests.FORMAT, mamf_finder.FORMAT, pytest_benchmark.FORMAT]


FORMAT_NAMES = ("nccl-tests", "mamf-finder", "pytest-benchmark")


def detect(src: Source) -> Format:
    for fmt in formats():
        if fmt.sniff(src):
            return fmt
    kinds = "; ".join(f.describe for f in formats())
    what = "a JSON document" if src.doc is not None else "text"
    raise src.fail(f"unknown format: {what} that is none of the outputs gpubench imports ({kinds})")


def import_file(path: str | os.PathLike, *, fmt: str | None = None, **options) -> Run:
    """The Run a file becomes; ImportFailed (one line, naming the file) otherwise."""
    src = read_source(path, **options)
    if fmt is None:
        chosen = detect(src)
    else:
        by_name = {f.name: f for f in formats()}
        if fmt not in by_name:
            raise ImportFailed(f"--format {fmt!r}: use one of {', '.join(by_name)}")
        chosen = by_name[fmt]
        if not chosen.sniff(src):
            raise src.fail(f"not {chosen.describe}")
    run = chosen.parse(src)
    if not run.records:
        raise src.fail(f"{chosen.name} output with no results in it: nothing to import")
    return run


# ---- what every importer fills in the same way ----

def provenance(src: Source, tool: str, version: str | None, fmt: str, **more) -> dict:
    return {"imported": True, "tool": tool, "tool_version": version, "format": fmt,
            "source_file": src.path.name, "source_sha256": src.sha256, "source_bytes": len(src.raw),
            "imported_at": utc_now(), "imported_by": f"gpubench {__version__} (gpubench import)", **more}


def device_env(name: str | None, *, memory_bytes: int | None = None, kind: str = "cuda",
               capability: list | None = None) -> dict:
    """The ``env.device`` block of a GPU a file names: its hardware-table entry where the
    name (and memory, when stated) identifies one, else the name alone (no peak, no MFU)."""
    from gpubench.hardware import match_gpu

    spec = match_gpu(name, memory_bytes) if name else None
    return {"type": kind, "index": None, "label": kind, "name": name, "total_memory_bytes": memory_bytes,
            "capability": capability, "spec_key": spec.key if spec else None,
            "peak_tflops": dict(spec.peak_tflops) if spec else None,
            "peak_mem_bandwidth_gbps": spec.mem_bandwidth_gbps if spec else None}


def new_run(tool: str, env: dict, prov: dict, *, started_at: str | None, config: dict | None = None,
            status: str = "complete") -> Run:
    # started_at None where the file does not say when it ran: the import time is not it.
    return Run(suite=f"imported:{tool}", env=env, config=config or {}, status=status, started_at=started_at,
               finished_at=None, provenance=prov)


def describe(run: Run) -> str:
    """One line on what an imported run holds, for the command's output."""
    prov = run.provenance or {}
    dev = (run.env or {}).get("device") or {}
    tool = prov.get("tool", "?") + (f" {prov['tool_version']}" if prov.get("tool_version") else "")
    benches = sorted({r.benchmark for r in run.records})
    gpu = dev.get("name") or "device not stated"
    if dev.get("type") == "cpu":
        key = " (CPU)"
    else:
        key = f" → {dev['spec_key']}" if dev.get("spec_key") else (" (not in the hardware table)"
                                                                     if dev.get("name") else "")
    ok = sum(r.status == "ok" for r in run.records)
    return (f"{tool}, {', '.join(benches)}, {gpu}{key}: {len(run.records)} record(s), {ok} ok")


__all__ = ["FORMAT_NAMES", "Format", "ImportFailed", "Source", "describe", "detect", "device_env", "formats",
           "import_file", "new_run", "provenance", "read_source"]
