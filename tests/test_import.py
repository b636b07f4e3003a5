"""`gpubench import` (issue 15): real outputs of nccl-tests, mamf-finder and pytest-benchmark
(tests/data/import, sources in SOURCE.md) become gpubench result files whose figures are the
source's own, under gpubench's case ids; bad input is one line and writes nothing."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import pytest

from cli_helpers import invoke, one_line_error
from gpubench.compare import compare_runs
from gpubench.importers import import_file
from gpubench.results import Record, Run, load_run

DATA = Path(__file__).parent / "data" / "import"
NCCL_H100 = DATA / "nccl-tests" / "issue290-8xh100-all_reduce.txt"
NCCL_GB10 = DATA / "nccl-tests" / "issue25-2xgb10-all_gather.txt"
MAMF_V2 = DATA / "mamf-finder" / "strix-halo-gfx1151-bf16-v2.txt"
MAMF_V1 = DATA / "mamf-finder" / "pr60-gh200-bf16-v1.txt"
PB_PLAIN = DATA / "pytest-benchmark" / "ionelmc-test_storage-0030.json"
PB_GPUBENCH = DATA / "pytest-benchmark" / "gpubench-benchmarks-matmul-cpu.json"


def nccl_rows(path: Path) -> list[list[str]]:
    """The result rows of an nccl-tests log, read the plain way: lines that are not comments."""
    return [line.split() for line in path.read_text().splitlines() if line.strip() and not line.startswith("#")]


def by_case(run: Run) -> dict[str, Record]:
    return {r.case_id: r for r in run.records}


def test_nccl_tests_text_keeps_its_figures_under_gpubench_case_ids():
    run = import_file(NCCL_H100)
    rows = nccl_rows(NCCL_H100)
    assert len(run.records) == 2 * len(rows)
    got = by_case(run)
    for size, count, typ, redop, root, *cells in rows:
        assert (typ, redop, root) == ("float", "sum", "-1")
        for inplace, (time, algbw, busbw, wrong) in ((False, cells[:4]), (True, cells[4:8])):
            rec = got[f"all_reduce[dtype=fp32,inplace={inplace},size_bytes={size},world_size=8]"]
            assert rec.status == "ok" and rec.check["wrong"] == int(wrong)
            assert rec.metrics == {"algbw_gbps": float(algbw), "busbw_gbps": float(busbw),
                                   "latency_us": float(time)}
            assert rec.timing["mean_s"] == pytest.approx(float(time) * 1e-6)
            assert rec.work["count"] == int(count)
    dev = run.env["device"]
    assert dev["name"] == "NVIDIA H100 80GB HBM3" and dev["spec_key"] == "h100-sxm"
    assert run.env["distributed"]["world_size"] == 8 and run.env["distributed"]["hosts"] == ["node005"]
    prov = run.provenance
    assert prov["tool"] == "nccl-tests" and prov["imported"] is True
    assert prov["source_sha256"] == hashlib.sha256(NCCL_H100.read_bytes()).hexdigest()
    assert "inferred" in prov["collective"][0]      # this log predates the 'Collective test starting' line
    assert run.suite == "imported:nccl-tests" and run.started_at is None


def test_nccl_tests_version_and_collective_from_a_newer_log():
    run = import_file(NCCL_GB10)
    [row] = nccl_rows(NCCL_GB10)
    out_of_place = by_case(run)[f"all_gather[dtype=fp32,inplace=False,size_bytes={row[0]},world_size=2]"]
    assert out_of_place.metrics["busbw_gbps"] == float(row[7])
    text = NCCL_GB10.read_text()
    assert run.provenance["tool_version"] == re.search(r"nccl-tests version (\S+)", text).group(1)
    code = int(re.search(r"nccl-library=(\d+)", text).group(1))
    assert run.env["software"]["nccl"] == f"{code // 10000}.{code % 10000 // 100}.{code % 100}"
    assert run.env["device"]["spec_key"] is None            # GB10 is not in the hardware table
    assert run.env["distributed"]["hosts"] == ["spark", "spark-3995"]


def nccl_json(text_path: Path) -> dict:
    """The -J document nccl-tests (src/util.cu, JSON format 3) writes for the run a text log
    shows: same devices and rows. No published -J output of this size was found."""
    rows = nccl_rows(text_path)
    ranks = [re.match(r"#\s*Rank\s+(\d+) Group\s+(\d+) Pid\s+(\d+) on\s+(\S+) device\s+(\d+) \[(\S+)\] (.*)", l)
             for l in text_path.read_text().splitlines() if "Rank" in l and "Pid" in l]
    results = []
    for size, count, typ, redop, root, *c in rows:
        place = [{"time": float(c[i]), "alg_bw": float(c[i + 1]), "bus_bw": float(c[i + 2]), "nwrong": float(c[i + 3])}
                 for i in (0, 4)]
        results.append({"size": int(size), "count": int(count), "type": typ, "redop": redop, "root": f"{root:>6}",
                        "out_of_place": place[0], "in_place": place[1], "actual_iterations": 2,
                        "experiment_name": ""})
    return {"version": 3, "start_time": "2025-03-03 00:00:00",
            "args": ["./build/all_reduce_perf", "-b", "128M", "-e", "4G", "-f", "2", "-g", "8"],
            "env": ["NCCL_DEBUG=WARN", "MY_SECRET_TOKEN=abc", "HOME=/root"], "nccl_version": 22602,
            "config": {"nthreads": 1, "ngpus": 8, "minimum_bytes": 134217728, "maximum_bytes": 4294967296,
                       "step_factor": 2, "warmup_iters": 5, "iterations": 2, "aggregated_iterations": 1,
                       "validation": 1, "graph": 0, "blocking_collectives": False, "parallel_init": False,
                       "devices": [{"rank": int(m[1]), "group": int(m[2]), "pid": int(m[3]), "hostname": m[4],
                                    "device": int(m[5]), "device_hex": m[6], "device_info": m[7]} for m in ranks]},
            "results": results, "out_of_bounds": {"count": 0, "okay": True},
            "average_bus_bandwidth": {"bandwidth": 439.369, "okay": "unchecked"}, "errors": [],
            "end_time": "2025-03-03 00:00:09"}


def test_nccl_tests_json_gives_the_records_the_text_gives(tmp_path):
    path = tmp_path / "all_reduce.json"
    doc = nccl_json(NCCL_H100)
    path.write_text(json.dumps(doc))
    from_json, from_text = import_file(path), import_file(NCCL_H100)
    assert {c: r.metrics for c, r in by_case(from_json).items()} == {c: r.metrics for c, r in by_case(from_text).items()}
    assert "named by the log" in from_json.provenance["collective"][0]
    assert from_json.env["software"]["nccl"] == "2.26.2" and from_json.started_at == "2025-03-03T00:00:00"
    assert from_json.env["env_vars"] == {"NCCL_DEBUG": "WARN"}          # never the rest of the environment
    path.write_text(json.dumps(doc)[:-200])                            # a run that died mid-write
    with pytest.raises(Exception, match="truncated or invalid nccl-tests JSON"):
        import_file(path)


def test_mamf_finder_v2_and_v1_figures_and_shapes():
    v2 = import_file(MAMF_V2).records[0]
    text = MAMF_V2.read_text()
    stat = {s: (float(v), shape) for s, v, shape in re.findall(r"^(mean|median|max):\s+([\d.]+) TFLOPS @ (\S+)", text, re.M)}
    assert v2.case_id == "mamf[dtype=bf16]"
    assert (v2.metrics["tflops"], v2.metrics["tflops_mean"], v2.metrics["tflops_max"]) == \
        (stat["median"][0], stat["mean"][0], stat["max"][0])
    assert "x".join(str(v2.metrics[k]) for k in ("best_m", "best_n", "best_k")) == stat["median"][1]
    assert v2.metrics["probes"] == int(re.search(r"Tried\s+(\d+) shapes", text).group(1))
    v1run = import_file(MAMF_V1)
    v1 = v1run.records[0]
    best, m, mid, last = re.search(r"best outcome was ([\d.]+)TFLOPS @ (\d+)x(\d+)x(\d+)", MAMF_V1.read_text()).groups()
    assert "tflops" not in v1.metrics and v1.metrics["tflops_max"] == float(best)
    # Version 1 printed the reduction dimension in the middle; gpubench's k is the reduction.
    assert (v1.metrics["best_m"], v1.metrics["best_n"], v1.metrics["best_k"]) == (int(m), int(last), int(mid))
    assert v1run.env["device"]["name"] == "NVIDIA GH200 480GB" and v1run.env["software"]["torch_cuda"] == "12.5"


def test_pytest_benchmark_plain_and_gpubench_front_end():
    src = json.loads(PB_PLAIN.read_text())["benchmarks"][0]
    [rec] = import_file(PB_PLAIN).records
    assert rec.case_id == f"pytest-benchmark[test={src['fullname']}]"
    assert rec.metrics["median_s"] == src["stats"]["median"] and rec.metrics["max_s"] == src["stats"]["max"]
    assert rec.timing["n"] == src["stats"]["rounds"]
    doc = json.loads(PB_GPUBENCH.read_text())
    run = import_file(PB_GPUBENCH)
    assert run.env == doc["machine_info"]["gpubench"]
    for b, rec in zip(doc["benchmarks"], run.records):
        assert rec.case_id == b["extra_info"]["case_id"]         # the case id `gpubench run` writes
        assert rec.metrics["tflops"] == b["extra_info"]["tflops"]
        assert rec.timing["median_s"] == b["stats"]["median"]


def test_import_then_show_and_compare_with_a_gpubench_run(tmp_path, capsys):
    out = tmp_path / "nccl.json"
    code, stdout, err = invoke(capsys, "import", NCCL_H100, "-o", out)
    assert code == 0 and "h100-sxm" in stdout and out.exists(), err
    imported = load_run(out)
    assert imported.imported and imported.provenance["source_file"] == NCCL_H100.name
    # A gpubench comm run on 8 H100 (its own fingerprint): all_reduce exists in place only.
    native = Run(suite="comm", status="complete",
                 env={"device": {"type": "cuda", "label": "cuda:0", "name": "NVIDIA H100 80GB HBM3",
                                 "spec_key": "h100-sxm", "total_memory_bytes": 85_032_096_256},
                      "host": {"hostname": "gpu-node"}, "software": {"torch": "2.9.0"},
                      "distributed": {"world_size": 8, "backend": "nccl"}},
                 records=[Record(benchmark="all_reduce", status="ok", device="cuda:0",
                                 params={"dtype": "fp32", "inplace": True, "size_bytes": s, "world_size": 8},
                                 metrics={"busbw_gbps": 400.0 + i, "algbw_gbps": (400.0 + i) / 1.75})
                          for i, s in enumerate((1 << 27, 1 << 30))])
    native_path = tmp_path / "native.json"
    native_path.write_text(json.dumps(native.to_dict()))
    cmp = compare_runs([load_run(native_path), imported])
    both = [row for row in cmp.rows if row.statuses == ["ok", "ok"]]
    assert [row.case_id for row in both] == [r.case_id for r in native.records]
    for row, rec in zip(both, native.records):
        assert row.ratios[1] == pytest.approx(by_case(imported)[rec.case_id].metrics["busbw_gbps"]
                                              / rec.metrics["busbw_gbps"])
    code, stdout, _ = invoke(capsys, "compare", native_path, out)
    assert code == 0 and "imported from nccl-tests" in stdout and "· imported" in stdout
    code, stdout, _ = invoke(capsys, "show", out)
    assert code == 0 and "imported from nccl-tests" in stdout and "vs published" in stdout


def test_an_imported_file_passes_the_hubs_upload_checks(tmp_path, capsys):
    from gpubench.hub.validate import parse_upload

    for src in (NCCL_H100, MAMF_V2, PB_GPUBENCH, PB_PLAIN):
        out = tmp_path / f"{src.stem}.json"
        assert invoke(capsys, "import", src, "-o", out)[0] == 0
        doc, run = parse_upload(out.read_bytes())
        assert run.imported and doc["provenance"]["source_sha256"] == hashlib.sha256(src.read_bytes()).hexdigest()


@pytest.mark.parametrize("content, needle", [
    ("nothing a benchmark wrote\n", "unknown format"),
    ("cut", "truncated nccl-tests log"),
    ('{"machine_info": {}, "benchmarks": [], "version": "5.1.0"}', "pytest-benchmark file with no benchmarks"),
])
def test_bad_input_is_one_line_and_writes_nothing(tmp_path, capsys, content, needle):
    src = tmp_path / "in.txt"
    if content == "cut":        # the real log, stopped before its footer
        text = NCCL_H100.read_text()
        content = text[:text.index("# Out of bounds")]
    src.write_text(content)
    out = tmp_path / "out.json"
    code, _, err = invoke(capsys, "import", src, "-o", out)
    one_line_error(code, err, str(src), needle)
    assert not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["in.txt"]
