"""nccl-tests' output (NVIDIA/nccl-tests) as gpubench collective records.

Two forms, both written by ``src/util.cu``:

- text, what every ``*_perf`` binary prints: a header (``# nccl-tests version …`` since
  2.17, ``# Collective test starting: all_reduce_perf`` since mid-2025, ``# nThread …
  iters: N …``), one ``#  Rank  r Group g Pid p on HOST device d [bus] NAME`` line per
  rank, a column header, one row per size (out-of-place then in-place: time µs, algbw,
  busbw, #wrong; with ``-I 1`` also i_min/i_max/i_p99/i_cv%), and a footer starting
  ``# Out of bounds values``;
- JSON (``-J out.json``): ``{"version", "start_time", "args", "nccl_version", "config":
  {…, "devices": [...]}, "results": [{size, count, type, redop, root, out_of_place:
  {time, alg_bw, bus_bw, nwrong}, in_place: {…}, …}], "out_of_bounds", …}``.

Each row gives two records, ``inplace=False`` and ``inplace=True``, under gpubench's
case id for the same collective: ``params = {size_bytes: S, dtype, inplace, world_size:
n}`` with nccl-tests' S (the convention gpubench's collectives follow), ``metrics =
{algbw_gbps, busbw_gbps, latency_us}`` as nccl-tests printed them. nccl-tests' time is
the mean over its timed iterations, so ``timing.mean_s`` holds it (gpubench's own time
is a median). A row with wrong elements is a ``failed`` record. gpubench's
``all_reduce`` exists only in place (torch.distributed has no other form): the
in-place rows are the ones that meet gpubench's.

Which collective: the ``Collective test starting`` line or the JSON's command line.
Older logs name none; an all-reduce is still certain from the numbers, since nccl-tests
multiplies algbw by 2(n−1)/n for it alone (with a reduction and no root), and any other
collective needs ``--collective``.
"""

from __future__ import annotations

import math
import re
from pathlib import PurePath
from typing import Any

from gpubench.importers import Format, Source, device_env, new_run, provenance
from gpubench.results import Record

TOOL = "nccl-tests"
# Binary (without _perf and any build suffix) -> gpubench's benchmark name where it has one.
OPS = {"all_reduce": "all_reduce", "all_gather": "all_gather", "reduce_scatter": "reduce_scatter",
       "broadcast": "broadcast", "alltoall": "all_to_all", "sendrecv": "sendrecv", "reduce": "reduce",
       "gather": "gather", "scatter": "scatter", "hypercube": "hypercube", "alltoallv": "alltoallv"}
GPUBENCH_OPS = ("all_reduce", "all_gather", "reduce_scatter", "broadcast", "all_to_all", "sendrecv")
DTYPES = {"float": "fp32", "half": "fp16", "bfloat16": "bf16", "double": "fp64", "f8e4m3": "fp8_e4m3",
          "f8e5m2": "fp8_e5m2"}
FOOTER = "# Out of bounds values"

_VERSION = re.compile(r"#\s*nccl-tests version (\S+)(?:\s+\(([0-9a-f]+)\))?.*?nccl-headers=(\d+)\s+nccl-library=(\d+)")
_STARTING = re.compile(r"#\s*Collective test starting:\s*(\S+)")
_NTHREAD = re.compile(r"#\s*nThread\s+(\d+)\s+nGpus\s+(\d+)\s+minBytes\s+(\d+)\s+maxBytes\s+(\d+)")
_ITERS = re.compile(r"warmup iters:\s*(\d+)\s+iters:\s*(\d+)(?:\s+agg iters:\s*(\d+))?")
_RANK = re.compile(r"#\s*Rank\s+(\d+)(?:\s+Group\s+(\d+))?\s+Pid\s+(\d+)\s+on\s+(\S+)\s+device\s+(\d+)\s+"
                   r"\[([^\]]*)\]\s+(.*?)\s*$")
_NCCL_LINE = re.compile(r"^NCCL version (\d+\.\d+\.\d+)(?:\+cuda([\d.]+))?")
# What launchers put in front of a rank's lines: srun -l ("  0: "), mpirun --tag-output ("[1,0]<stdout>:").
_PREFIX = re.compile(r"^(?:\s*\d+:\s?|\[[^\]]*\]<stdout>:)")


def _op_of(program: str) -> str | None:
    name = PurePath(program.strip()).name
    m = re.match(r"([a-z_]+?)_perf", name)
    return OPS.get(m.group(1)) if m else None


def nccl_code(code: int) -> str:
    """NCCL's version code as a version: 22903 -> 2.29.3 (codes before 2.9 were 2708 -> 2.7.8)."""
    if code >= 20900:
        return f"{code // 10000}.{code % 10000 // 100}.{code % 100}"
    return f"{code // 1000}.{code % 1000 // 100}.{code % 100}"


def busbw_factor(op: str, n: int) -> float | None:
    if op == "all_reduce":
        return 2 * (n - 1) / n
    if op in ("all_gather", "reduce_scatter", "all_to_all", "gather", "scatter", "alltoallv"):
        return (n - 1) / n
    if op in ("broadcast", "reduce", "sendrecv"):
        return 1.0
    return None


def _number(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


# ---- the records, common to text and JSON ----

def _infer_op(rows: list[dict], n: int, src: Source) -> tuple[str, str]:
    """The collective of a log that does not name it, when the numbers settle it."""
    factors = [p["busbw"] / p["algbw"] for r in rows for p in r["places"].values()
               if p and p.get("algbw") and p["algbw"] >= 1.0 and p.get("busbw")]
    reductions = {r["redop"] for r in rows}
    roots = {r.get("root") for r in rows}
    if n >= 2 and factors and reductions and "none" not in reductions and roots <= {"-1", None}:
        want = 2 * (n - 1) / n
        # Two decimals in the log: the factor is good to about 1% once algbw passes 1 GB/s.
        if all(abs(f / want - 1) < 0.01 for f in factors):
            return "all_reduce", f"inferred: busbw ÷ algbw = 2(n−1)/n with n = {n}, as nccl-tests counts an all-reduce"
    raise src.fail("the log does not say which collective it measured (nccl-tests before mid-2025 prints no "
                   "'# Collective test starting:' line) and its numbers do not settle it: give --collective "
                   f"({', '.join(sorted(set(OPS.values())))})")


def _choose_op(named: str | None, rows: list[dict], n: int, src: Source) -> tuple[str, str]:
    given = src.options.get("collective")
    if given:
        given = OPS.get(given.replace("_perf", ""), given)
        if given not in OPS.values():
            raise src.fail(f"--collective {given!r} is not one of {', '.join(sorted(set(OPS.values())))}")
        if named and named != given:
            raise src.fail(f"--collective {given} contradicts the log, which measured {named}")
        return given, "given with --collective"
    if named:
        return named, "named by the log"
    return _infer_op(rows, n, src)


def _records(op: str, n: int, rows: list[dict], timing_base: dict, device: str) -> list[Record]:
    factor = busbw_factor(op, n)
    out = []
    for row in rows:
        dtype = DTYPES.get(row["type"], row["type"])
        for place, values in row["places"].items():
            if not values:
                continue
            params: dict[str, Any] = {"size_bytes": row["size"], "dtype": dtype, "inplace": place == "in_place",
                                      "world_size": n}
            # A reduction other than a sum, or a root other than rank 0, is another case than gpubench's.
            if row["redop"] not in ("sum", "none"):
                params["redop"] = row["redop"]
            if row.get("root") not in (None, "-1", "0"):
                params["root"] = int(row["root"])
            metrics: dict[str, Any] = {"algbw_gbps": values["algbw"], "busbw_gbps": values["busbw"]}
            time_key = "cputime_us" if values.get("cputime") else "latency_us"
            metrics[time_key] = values["time"]
            timing = {**timing_base, "mean_s": values["time"] * 1e-6}
            for key, name in (("i_min", "min_s"), ("i_max", "max_s"), ("i_p99", "p99_s")):
                if values.get(key) is not None:
                    timing[name] = values[key] * 1e-6
            if values.get("i_cv") is not None:
                timing["cov"] = values["i_cv"] / 100.0
            if values.get("samples_us"):
                timing["samples_s"] = [t * 1e-6 for t in values["samples_us"]]
            wrong = values.get("wrong")
            work = {"bytes": row["size"], "count": row["count"], "nccl_tests_type": row["type"],
                    "redop": row["redop"], "root": row.get("root"), "busbw_factor": factor}
            status, error, check = "ok", None, None
            if wrong is None:
                check = {"reference": "none: nccl-tests ran without its data check (#wrong N/A)"}
            elif wrong > 0:
                status, error = "failed", f"nccl-tests found {wrong:g} wrong element(s) in its data check"
            else:
                check = {"reference": "nccl-tests data check (every element compared)", "wrong": 0}
            out.append(Record(benchmark=op, params=params, status=status, device=device, error=error,
                              timing=timing, check=check, work=work, metrics=metrics))
    return out


def _env(ranks: list[dict], nccl: str | None, cuda: str | None, tests_version: str | None,
         env_vars: dict | None = None) -> dict:
    names = list(dict.fromkeys(r["name"] for r in ranks))
    hosts = list(dict.fromkeys(r["host"] for r in ranks))
    name = names[0] if len(names) == 1 else ("mixed: " + ", ".join(names) if names else None)
    dev = device_env(name if len(names) == 1 else None)
    if len(names) != 1:
        dev["name"] = name
    n = len(ranks)
    return {"device": dev,
            "gpu": {"count": n, "names": names},
            "host": {"hostname": hosts[0] if hosts else None},
            "software": {"nccl": nccl, "cuda": cuda, "nccl_tests": tests_version},
            "distributed": {"world_size": n, "nodes": len(hosts),
                            "ranks_per_node": n // len(hosts) if hosts and n % len(hosts) == 0 else None,
                            "hosts": hosts, "backend": "nccl", "nccl_version": nccl},
            "env_vars": env_vars or {}}


# ---- text ----

def _strip(line: str) -> str:
    return _PREFIX.sub("", line, count=1).rstrip()


def _columns(header: str) -> tuple[int, list[list[str]]]:
    """(number of leading fields, the fields of each placement) of a column-header line."""
    tokens = header.lstrip("#").split()
    lead = 0
    while lead < len(tokens) and tokens[lead] not in ("time", "cputime"):
        lead += 1
    groups: list[list[str]] = []
    for tok in tokens[lead:]:
        if tok in ("time", "cputime"):
            groups.append([])
        if tok == "timestamp":
            break
        groups[-1].append(tok)
    return lead, groups


def _placement(names: list[str], tokens: list[str]) -> dict:
    values: dict[str, Any] = {}
    for name, tok in zip(names, tokens):
        if name in ("time", "cputime"):
            values["time"] = _number(tok)
            values["cputime"] = name == "cputime"
        elif name in ("algbw", "busbw"):
            values[name] = _number(tok)
        elif name in ("#wrong", "error", "wrong"):
            values["wrong"] = None if tok == "N/A" else _number(tok)
        elif name.startswith("i_"):
            values[name.rstrip("%")] = _number(tok)
    return values


class _Block:
    def __init__(self):
        self.op_named: str | None = None
        self.ranks: list[dict] = []
        self.iters: dict = {}
        self.lead = 0
        self.groups: list[list[str]] = []
        self.rows: list[dict] = []
        self.ended = False


def parse_text(src: Source):
    tests_version = tests_commit = nccl = cuda = None
    blocks: list[_Block] = []
    block = None
    for number, raw in enumerate(src.text.splitlines(), 1):
        line = _strip(raw)
        if not line.strip():
            continue
        if (m := _VERSION.search(line)):
            tests_version, tests_commit = m.group(1), m.group(2)
            nccl = nccl or nccl_code(int(m.group(4)))
            continue
        if (m := _STARTING.search(line)):
            block = _Block()
            blocks.append(block)
            block.op_named = _op_of(m.group(1))
            if block.op_named is None:
                raise src.fail(f"line {number}: nccl-tests test {m.group(1)!r} is not one gpubench knows")
            continue
        if (m := _NTHREAD.search(line)):
            if block is None or block.ranks or block.rows:
                block = _Block()
                blocks.append(block)
            it = _ITERS.search(line)
            block.iters = {"threads": int(m.group(1)), "gpus_per_thread": int(m.group(2)),
                           "min_bytes": int(m.group(3)), "max_bytes": int(m.group(4))}
            if it:
                block.iters.update(warmup_iters=int(it.group(1)), iters=int(it.group(2)),
                                   agg_iters=int(it.group(3) or 1))
            continue
        if (m := _NCCL_LINE.match(line.strip())):
            nccl, cuda = m.group(1), m.group(2) or cuda
            continue
        if block is None:
            continue
        if (m := _RANK.search(line)):
            block.ranks.append({"rank": int(m.group(1)), "host": m.group(4), "device": int(m.group(5)),
                                "bus": m.group(6), "name": m.group(7)})
            continue
        stripped = line.strip()
        if stripped.startswith("#"):
            words = stripped.lstrip("#").split()
            if words[:2] == ["size", "count"]:
                block.lead, block.groups = _columns(stripped)
            elif stripped.startswith(FOOTER):
                block.ended = True
            continue
        tokens = stripped.split()
        if not block.groups or not tokens[0].isdigit() or block.ended:
            continue
        row = _row(tokens, block, number, src)
        if row is not None:
            block.rows.append(row)
    blocks = [b for b in blocks if b.rows or b.ranks]
    if not blocks:
        raise src.fail("no nccl-tests result table: no '# Using devices' rank lines and no result rows")
    records, ops = [], []
    for i, b in enumerate(blocks):
        where = f"test {i + 1} of {len(blocks)}" if len(blocks) > 1 else "the log"
        if not b.ranks:
            raise src.fail(f"{where} has no '#  Rank …' lines under '# Using devices': the number of ranks is "
                           f"not stated")
        if not b.groups:
            raise src.fail(f"truncated nccl-tests log: {where} ends before its result table")
        if not b.rows:
            raise src.fail(f"truncated nccl-tests log: {where} has a result table header and no result row")
        if not b.ended:
            raise src.fail(f"truncated nccl-tests log: {where} ends after the row of {b.rows[-1]['size']} bytes "
                           f"without the '{FOOTER}' footer (the run stopped or the file was cut)")
        n = len(b.ranks)
        op, how = _choose_op(b.op_named, b.rows, n, src)
        ops.append((op, how))
        timing = {"method": "nccl-tests: mean time per operation over its timed iterations",
                  **{k: b.iters[k] for k in ("warmup_iters", "iters", "agg_iters") if k in b.iters}}
        records += _records(op, n, b.rows, timing, "cuda")
    first = blocks[0]
    env = _env(first.ranks, nccl, cuda, tests_version)
    prov = provenance(src, TOOL, tests_version, "nccl-tests text output",
                      **({"tool_commit": tests_commit} if tests_commit else {}),
                      collective=[f"{op} ({how})" for op, how in ops])
    run = new_run(TOOL, env, prov, started_at=None, config={"nccl_tests": first.iters})
    run.records = records
    return run


def _row(tokens: list[str], block: _Block, number: int, src: Source) -> dict | None:
    need = block.lead + sum(len(g) for g in block.groups)
    if len(tokens) < block.lead + 1 or not tokens[1].isdigit():
        return None             # not a result row (a stray log line that starts with a number)
    lead = tokens[:block.lead]
    rest = tokens[block.lead:]
    places: dict[str, dict | None] = {"out_of_place": None, "in_place": None}
    names = ["out_of_place", "in_place"][:len(block.groups)]
    if len(tokens) >= need:
        at = 0
        for place, group in zip(names, block.groups):
            places[place] = _placement(group, rest[at:at + len(group)])
            at += len(group)
    elif len(block.groups) == 2 and len(rest) == len(block.groups[1]):
        places["in_place"] = _placement(block.groups[1], rest)     # trace replay: in-place only
    else:
        raise src.fail(f"truncated nccl-tests log: line {number}, the row of {tokens[0]} bytes, has "
                       f"{len(tokens)} of its {need} fields")
    for place, values in places.items():
        if values is not None and any(values.get(k) is None for k in ("time", "algbw", "busbw")):
            raise src.fail(f"line {number}: the row of {tokens[0]} bytes has a field that is not a number")
    has_root = block.lead >= 5
    return {"size": int(lead[0]), "count": int(lead[1]), "type": lead[2], "redop": lead[3],
            "root": lead[4].strip() if has_root else None, "places": places}


# ---- JSON (-J) ----

def parse_json(src: Source):
    doc = src.doc
    if doc is None:
        raise src.fail("truncated or invalid nccl-tests JSON (-J output): the document does not parse "
                       "(nccl-tests closes it when the run ends)")
    results = doc.get("results")
    if not isinstance(results, list):
        raise src.fail("nccl-tests JSON without a 'results' list: the run ended before its result table")
    if not results:
        raise src.fail("nccl-tests JSON with an empty 'results' list: nothing to import")
    config = doc.get("config") if isinstance(doc.get("config"), dict) else {}
    devices = config.get("devices") or doc.get("devices") or []
    if not isinstance(devices, list) or not devices:
        raise src.fail("nccl-tests JSON without 'config.devices': the number of ranks is not stated")
    ranks = [{"rank": d.get("rank"), "host": str(d.get("hostname")), "device": d.get("device"),
              "bus": d.get("device_hex"), "name": str(d.get("device_info") or "").strip() or None}
             for d in devices if isinstance(d, dict)]
    if "end_time" not in doc:
        raise src.fail("truncated nccl-tests JSON: no 'end_time' (nccl-tests writes it when the run ends)")
    rows = []
    for i, r in enumerate(results):
        if not isinstance(r, dict) or not isinstance(r.get("size"), int):
            raise src.fail(f"results[{i}] is not a result of nccl-tests (no integer 'size')")
        places = {}
        for place in ("out_of_place", "in_place"):
            v = r.get(place)
            if not isinstance(v, dict):
                places[place] = None
                continue
            values = {"time": _num(v.get("time", v.get("cpu_time"))), "cputime": "cpu_time" in v,
                      "algbw": _num(v.get("alg_bw")), "busbw": _num(v.get("bus_bw")),
                      "wrong": _num(v.get("nwrong"))}
            if any(values[k] is None for k in ("time", "algbw", "busbw")):
                raise src.fail(f"results[{i}].{place}: time, alg_bw or bus_bw is not a number")
            per = r.get(f"{place}_per_iter")
            if isinstance(per, dict):
                values.update(i_min=_num(per.get("min_us")), i_max=_num(per.get("max_us")),
                              i_p99=_num(per.get("p99_us")), i_cv=_num(per.get("cv_pct")))
                if isinstance(per.get("times_us"), list):
                    values["samples_us"] = [t for t in (_num(x) for x in per["times_us"]) if t is not None]
            places[place] = values
        rows.append({"size": r["size"], "count": r.get("count"), "type": str(r.get("type")),
                     "redop": str(r.get("redop")), "root": str(r.get("root", "")).strip() or None,
                     "places": places})
    args = doc.get("args") if isinstance(doc.get("args"), list) else []
    named = _op_of(str(args[0])) if args else None
    n = len(ranks)
    op, how = _choose_op(named, rows, n, src)
    nccl = nccl_code(doc["nccl_version"]) if isinstance(doc.get("nccl_version"), int) else None
    iters = {k: config[k] for k in ("warmup_iters", "iterations", "aggregated_iterations") if k in config}
    timing = {"method": "nccl-tests: mean time per operation over its timed iterations",
              **({"warmup_iters": iters["warmup_iters"]} if "warmup_iters" in iters else {}),
              **({"iters": iters["iterations"]} if "iterations" in iters else {}),
              **({"agg_iters": iters["aggregated_iterations"]} if "aggregated_iterations" in iters else {})}
    env = _env(ranks, nccl, None, None, _env_vars(doc.get("env")))
    started = doc.get("start_time")
    prov = provenance(src, TOOL, None, f"nccl-tests JSON output (-J, format version {doc.get('version')})",
                      collective=[f"{op} ({how})"], command=[str(a) for a in args][:64],
                      times="start_time as the file states it: the machine's local time")
    run = new_run(TOOL, env, prov, started_at=_local_time(started), config={"nccl_tests": config and {
        k: v for k, v in config.items() if k != "devices"}})
    run.records = _records(op, n, rows, timing, "cuda")
    return run


def _num(v: Any) -> float | None:
    if isinstance(v, bool):
        return None
    if isinstance(v, (int, float)) and math.isfinite(v):
        return float(v)
    return None                     # nccl-tests writes a NaN as the string "nan"


def _local_time(text: Any) -> str | None:
    if isinstance(text, str) and re.fullmatch(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}", text.strip()):
        return text.strip().replace(" ", "T")
    return None


def _env_vars(items: Any) -> dict:
    """The NCCL/CUDA variables of the JSON's environment; never the rest (it is the whole
    environment of the run, secrets included)."""
    from gpubench.env import ENV_PREFIXES, SECRET_WORDS

    out = {}
    for item in items if isinstance(items, list) else []:
        if not isinstance(item, str) or "=" not in item:
            continue
        key, _, value = item.partition("=")
        if key.startswith(ENV_PREFIXES) and not any(w in key.upper() for w in SECRET_WORDS):
            out[key] = value
    return out


# ---- the format ----

def sniff(src: Source) -> bool:
    if isinstance(src.doc, dict):
        return "results" in src.doc and ("nccl_version" in src.doc or "config" in src.doc)
    if src.doc is None and src.text.lstrip().startswith("{"):
        return '"bus_bw"' in src.text or '"nccl_version"' in src.text
    head = src.text[:200_000]
    return bool(_NTHREAD.search(head) or _VERSION.search(head) or _STARTING.search(head))


def parse(src: Source):
    if src.text.lstrip().startswith("{"):
        return parse_json(src)
    return parse_text(src)


FORMAT = Format(TOOL, "an nccl-tests log (text, or JSON from -J)", sniff, parse)
