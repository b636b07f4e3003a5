"""Published measurements to put beside gpubench's own: "how fast is my GPU?" against what.

The table (``data/baselines.csv``) holds figures others measured and published, one
row each, in gpubench's terms:

- ``gpu``: a key of the hardware table (``gpubench.hardware.GPUS``). A figure belongs
  to the GPU it was measured on and to no other: an H100 figure is never shown beside
  an H200 run, even where the two chips share their compute.
- ``benchmark`` and ``case``: the gpubench case the figure is a measurement of, as
  ``key=value`` pairs separated by ``;`` (a record matches when each pair equals its
  param). ``nearest``: the gpubench case it is shown beside when no record is of the
  exact case (another size, precision or model), the difference said in ``note``. A
  row has one or both; one with neither could never meet a measurement.
- ``requires``: ``key=value`` pairs of a record's ``work`` block that, when the record
  states them, must agree (an NVLS figure is not a ring's baseline; a record that does
  not say which algorithm NCCL chose is shown beside both).
- ``metric``, ``value``, ``unit``: the record metric compared, and the published figure.
- ``label`` (how a report names it), ``measured`` (what exactly was measured),
  ``software``, ``source``, ``url``, ``date``, ``note``.

``matches(record, gpu)`` finds the rows a record is compared with; ``Footnotes``
numbers their sources for a report. Nothing here imports torch.
"""

from __future__ import annotations

import csv
import math
import re
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterable

DATA = Path(__file__).resolve().parent / "data" / "baselines.csv"
COLUMNS = ("id", "gpu", "benchmark", "case", "nearest", "requires", "metric", "value", "unit", "label",
           "measured", "software", "source", "url", "date", "note")
_DATE = re.compile(r"\d{4}-\d{2}(-\d{2})?\Z")


def parse_pairs(text: str, where: str = "") -> dict[str, str]:
    """``a=1;b=x`` -> {"a": "1", "b": "x"}."""
    out: dict[str, str] = {}
    for part in (p.strip() for p in (text or "").split(";")):
        if not part:
            continue
        key, sep, value = part.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"{where}: {part!r} is not key=value")
        out[key.strip()] = value.strip()
    return out


@dataclass(frozen=True)
class Baseline:
    id: str
    gpu: str
    benchmark: str
    case: dict = field(hash=False)
    nearest: dict = field(hash=False)
    requires: dict = field(hash=False)
    metric: str
    value: float
    unit: str
    label: str
    measured: str
    software: str
    source: str
    url: str
    date: str
    note: str

    def citation(self) -> str:
        return f"{self.source} ({self.date}) {self.url}"

    def to_json(self) -> dict:
        return {"id": self.id, "gpu": self.gpu, "benchmark": self.benchmark, "case": dict(self.case),
                "nearest": dict(self.nearest), "requires": dict(self.requires), "metric": self.metric,
                "value": self.value, "unit": self.unit, "label": self.label, "measured": self.measured,
                "software": self.software, "source": self.source, "url": self.url, "date": self.date,
                "note": self.note}


def _row(raw: dict, line: int, known_gpus) -> Baseline:
    where = f"{DATA.name} line {line}"
    missing = [c for c in ("id", "gpu", "benchmark", "metric", "value", "unit", "label", "source", "url", "date")
               if not (raw.get(c) or "").strip()]
    if missing:
        raise ValueError(f"{where}: empty {', '.join(missing)}")
    if raw["gpu"] not in known_gpus:
        raise ValueError(f"{where}: gpu {raw['gpu']!r} is not a key of the hardware table")
    try:
        value = float(raw["value"])
    except ValueError:
        raise ValueError(f"{where}: value {raw['value']!r} is not a number") from None
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"{where}: value {value} must be a positive number")
    if not _DATE.match(raw["date"].strip()):
        raise ValueError(f"{where}: date {raw['date']!r} is not YYYY-MM or YYYY-MM-DD")
    if not raw["url"].startswith("https://"):
        raise ValueError(f"{where}: url {raw['url']!r} is not an https address")
    case, nearest = parse_pairs(raw.get("case", ""), where), parse_pairs(raw.get("nearest", ""), where)
    if not case and not nearest:
        raise ValueError(f"{where}: neither a case nor a nearest case: the row could never be shown")
    return Baseline(id=raw["id"].strip(), gpu=raw["gpu"].strip(), benchmark=raw["benchmark"].strip(), case=case,
                    nearest=nearest, requires=parse_pairs(raw.get("requires", ""), where),
                    metric=raw["metric"].strip(), value=value, unit=raw["unit"].strip(), label=raw["label"].strip(),
                    measured=(raw.get("measured") or "").strip(), software=(raw.get("software") or "").strip(),
                    source=raw["source"].strip(), url=raw["url"].strip(), date=raw["date"].strip(),
                    note=(raw.get("note") or "").strip())


def read_table(path: Path | str = DATA) -> tuple[Baseline, ...]:
    """Every row of a baselines table, checked; ValueError names the row at fault."""
    from gpubench.hardware import GPUS

    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        if tuple(reader.fieldnames or ()) != COLUMNS:
            raise ValueError(f"{Path(path).name}: columns {reader.fieldnames} are not {list(COLUMNS)}")
        rows = [_row(raw, i, GPUS) for i, raw in enumerate(reader, start=2)]
    ids = [r.id for r in rows]
    dupes = sorted({i for i in ids if ids.count(i) > 1})
    if dupes:
        raise ValueError(f"{Path(path).name}: ids used twice: {', '.join(dupes)}")
    return tuple(rows)


@lru_cache(maxsize=1)
def table() -> tuple[Baseline, ...]:
    return read_table(DATA)


@lru_cache(maxsize=1)
def _index() -> dict[tuple[str, str], tuple[Baseline, ...]]:
    # A hub comparison matches every record of up to four runs: look rows up, do not scan them.
    out: dict[tuple[str, str], list[Baseline]] = {}
    for b in table():
        out.setdefault((b.gpu, b.benchmark), []).append(b)
    return {k: tuple(v) for k, v in out.items()}


# ---- which GPU a run ran on ----

def gpu_key(env: Any) -> str | None:
    """The hardware-table key of a run's device: its ``spec_key``, else what its name (and
    memory) identify; None for a CPU or a GPU the table does not know."""
    from gpubench.hardware import GPUS, match_gpu

    dev = env.get("device") if isinstance(env, dict) else None
    if not isinstance(dev, dict) or dev.get("type") == "cpu":
        return None
    key = dev.get("spec_key")
    if isinstance(key, str) and key in GPUS:
        return key
    name, mem = dev.get("name"), dev.get("total_memory_bytes")
    if not isinstance(name, str):
        return None
    mem = int(mem) if isinstance(mem, (int, float)) and not isinstance(mem, bool) and mem > 0 else None
    spec = match_gpu(name, mem)
    return spec.key if spec else None


# ---- matching records ----

def _text(value: Any) -> str:
    return str(value)


def _params_match(want: dict, params: dict) -> bool:
    return bool(want) and all(k in params and _text(params[k]) == v for k, v in want.items())


def _requires_ok(requires: dict, work: dict | None) -> bool:
    work = work or {}
    for key, want in requires.items():
        have = work.get(key)
        if have is not None and _text(have).strip().upper() != want.strip().upper():
            return False
    return True


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    value = float(value)
    return value if math.isfinite(value) else None


@dataclass(frozen=True)
class Match:
    baseline: Baseline
    exact: bool
    measured: float | None          # the record's figure of the baseline's metric

    @property
    def ratio(self) -> float | None:
        return None if self.measured is None else self.measured / self.baseline.value

    def text(self, mark: str = "") -> str:
        """``0.97× mamf-finder (H100 SXM, bf16) [1]``; ``≈`` before a nearest case's label."""
        ratio = "—" if self.ratio is None else f"{self.ratio:.2f}×"
        near = "" if self.exact else "≈ "
        return f"{ratio} {near}{self.baseline.label}" + (f" [{mark}]" if mark else "")

    def to_json(self) -> dict:
        b = self.baseline
        return {"id": b.id, "label": b.label, "match": "exact" if self.exact else "nearest", "metric": b.metric,
                "published": b.value, "unit": b.unit, "measured": self.measured, "ratio": self.ratio,
                "gpu": b.gpu, "source": b.source, "url": b.url, "date": b.date, "note": b.note}


def matches(record: Any, gpu: str | None, rows: Iterable[Baseline] | None = None) -> list[Match]:
    """The published figures an ok record is compared with: those of its GPU and benchmark
    whose case it is; failing any, those whose nearest case it is."""
    if gpu is None or getattr(record, "status", None) != "ok":
        return []
    params = getattr(record, "params", None) or {}
    work = getattr(record, "work", None)
    metrics = getattr(record, "metrics", None) or {}
    candidates = _index().get((gpu, record.benchmark), ()) if rows is None else rows
    mine = [b for b in candidates
            if b.gpu == gpu and b.benchmark == record.benchmark and _requires_ok(b.requires, work)]
    exact = [b for b in mine if _params_match(b.case, params)]
    chosen = exact or [b for b in mine if _params_match(b.nearest, params)]
    return [Match(b, bool(exact), _number(metrics.get(b.metric))) for b in chosen]


def for_run(run: Any) -> dict[int, list[Match]]:
    """id(record) -> its matches, for every record of a run that has any."""
    gpu = gpu_key(getattr(run, "env", None))
    if gpu is None:
        return {}
    out = {}
    for rec in run.records:
        found = matches(rec, gpu)
        if found:
            out[id(rec)] = found
    return out


class Footnotes:
    """Numbers each cited source once, in the order a report first cites it."""

    def __init__(self):
        self.order: list[Baseline] = []
        self._keys: dict[tuple, int] = {}

    def mark(self, b: Baseline) -> str:
        key = (b.source, b.url, b.date)
        if key not in self._keys:
            self._keys[key] = len(self._keys) + 1
            self.order.append(b)
        return str(self._keys[key])

    def cell(self, found: list[Match]) -> str:
        return "; ".join(m.text(self.mark(m.baseline)) for m in found) if found else "—"

    def lines(self) -> list[str]:
        if not self.order:
            return []
        out = ["vs published: the record's figure ÷ a figure others measured and published on the same GPU "
               "(≈: a nearest case, not the same one; the data file says how they differ)"]
        out += [f"[{i}] {b.citation()}" for i, b in enumerate(self.order, 1)]
        return out


# ---- hub boards ----

def parse_case_id(case_id: str) -> tuple[str, dict[str, str]]:
    """``all_reduce[dtype=fp32,size_bytes=8]`` -> ("all_reduce", {"dtype": "fp32", ...}).
    Values holding ``,`` or ``=`` do not split back: such cases get no published marks."""
    m = re.fullmatch(r"(.*)\[(.*)\]", case_id or "", re.S)
    if not m:
        return case_id or "", {}
    params = {}
    for part in m.group(2).split(","):
        key, sep, value = part.partition("=")
        if sep:
            params[key] = value
    return m.group(1), params


def is_exact(b: Baseline, case_id: str) -> bool:
    """Whether a figure is of the very case a case id names (else only of its nearest)."""
    return _params_match(b.case, parse_case_id(case_id)[1])


def for_board(benchmark: str, metric: str | None, case_id: str | None = None,
              higher_is_better: bool = True) -> list[Baseline]:
    """The figures a leaderboard draws as reference marks. On a case's board, those of its
    benchmark and metric whose case or nearest case it is, GPU by GPU. On a benchmark's
    board, which ranks each upload by its best case, each GPU's best published figure."""
    rows = [b for b in table() if b.benchmark == benchmark and (metric is None or b.metric == metric)]
    if not case_id:
        best: dict[str, Baseline] = {}
        for b in rows:
            old = best.get(b.gpu)
            if old is None or (b.value > old.value if higher_is_better else b.value < old.value):
                best[b.gpu] = b
        return list(best.values())
    _, params = parse_case_id(case_id)
    out = []
    for gpu in dict.fromkeys(b.gpu for b in rows):      # exact before nearest, GPU by GPU
        mine = [b for b in rows if b.gpu == gpu]
        out += [b for b in mine if _params_match(b.case, params)] or \
            [b for b in mine if _params_match(b.nearest, params)]
    return out


# ---- calibrate ----

_MAMF_CASES = {"bf16": {"dtype": "bf16"}, "fp16": {"dtype": "fp16"}, "fp8": {"dtype": "fp8_e4m3", "scaling": "tensor"}}


def ceiling_notes(gpu: str, ceilings_tflops: dict[str, float]) -> list[str]:
    """One line per measured GEMM ceiling that has a published maximum achievable matmul on
    the same GPU: how far the measurement is from it."""
    out = []
    for key, tflops in sorted(ceilings_tflops.items()):
        case = _MAMF_CASES.get(key)
        if case is None:
            continue
        for b in table():
            if b.gpu == gpu and b.benchmark == "mamf" and b.metric == "tflops" and b.case == case:
                out.append(f"published: measured {key} ceiling {tflops:.1f} TFLOP/s is {tflops / b.value:.2f}× "
                           f"{b.label}'s {b.value:g} {b.unit} [{b.source}, {b.date}]")
    return out


__all__ = ["Baseline", "Footnotes", "Match", "ceiling_notes", "for_board", "for_run", "gpu_key", "is_exact", "matches",
           "parse_case_id", "read_table", "table"]
