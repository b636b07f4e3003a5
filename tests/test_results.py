import json

import pytest

from gpubench.errors import ResultFileError
from gpubench.results import (SCHEMA_VERSION, Record, ResultWriter, Run, case_id, load_run,
                              migrate, to_dataframe)


def _record(i=0, status="ok", **kw):
    base = dict(benchmark="matmul", params={"dtype": "bf16", "m": 64 * (i + 1), "n": 64, "k": 64},
                status=status, device="cpu",
                timing={"method": "host_clock", "median_s": 0.001 * (i + 1), "p10_s": 0.0009,
                        "p90_s": 0.0012, "cov": 0.01, "n": 10, "samples_s": [0.001] * 10},
                metrics={"tflops": 1.5 + i, "pct_of_peak": None}, work={"flops": 2 * 64 ** 3})
    base.update(kw)
    return Record(**base)


def test_round_trip(tmp_path):
    path = tmp_path / "run.json"
    run = Run(suite="mixed-precision", env={"device": {"type": "cpu", "name": "x"},
                                           "host": {"hostname": "h"}})
    w = ResultWriter(path, run)
    w.add(_record(0))
    w.add(_record(1, status="skipped", reason="why not", timing=None, metrics={}))
    w.add(_record(2, status="failed", error="boom", timing=None, metrics={}))
    w.close("complete")
    back = load_run(path)
    assert back.schema_version == SCHEMA_VERSION
    assert back.run_id == run.run_id and back.status == "complete" and back.finished_at
    assert [r.to_dict() for r in back.records] == [r.to_dict() for r in run.records]
    assert back.records[1].reason == "why not" and back.records[2].error == "boom"
    doc = json.loads(path.read_text())
    assert doc["units"]["tflops"].startswith("TFLOP/s")
    assert doc["records"][0]["case_id"] == case_id("matmul", run.records[0].params)


def test_file_is_valid_after_every_record(tmp_path):
    """A crash between records must leave everything measured so far on disk."""
    path = tmp_path / "run.json"
    w = ResultWriter(path, Run(suite="s", env={}))
    assert load_run(path).records == [] and load_run(path).status == "running"
    for i in range(3):
        w.add(_record(i))
        on_disk = load_run(path)
        assert len(on_disk.records) == i + 1 and on_disk.status == "running"
    assert not list(tmp_path.glob(".*.tmp"))      # no temporary files left behind


def test_case_id_is_order_independent():
    assert case_id("b", {"x": 1, "y": 2}) == case_id("b", {"y": 2, "x": 1})
    assert case_id("b", {"x": 1}) != case_id("b", {"x": 2})


def test_loads_schema_v1(tmp_path):
    v1 = {"schema_version": 1, "suite": "mixed-precision", "env": {"device": {"name": "NVIDIA A100-SXM4-80GB"}},
          "records": [{"benchmark": "matmul", "params": {"dtype": "bf16", "m": 8192, "n": 8192, "k": 8192},
                       "status": "ok", "stats": {"median_s": 0.004, "p10_s": 0.0039, "p90_s": 0.0041,
                                                 "n": 50}, "metrics": {"tflops": 274.9}},
                      {"benchmark": "matmul", "params": {"dtype": "fp8_e4m3", "m": 1, "n": 1, "k": 1},
                       "status": "skipped", "reason": "needs sm89"}]}
    path = tmp_path / "old.json"
    path.write_text(json.dumps(v1))
    run = load_run(path)
    assert run.schema_version == SCHEMA_VERSION and run.status == "complete"
    ok = run.records[0]
    assert ok.timing["median_s"] == 0.004 and ok.timing["method"] == "unknown"
    assert ok.metrics["tflops"] == 274.9 and ok.telemetry is None
    assert run.records[1].reason == "needs sm89"
    df = to_dataframe([path])
    assert df.loc[0, "timing.median_s"] == 0.004


@pytest.mark.parametrize("content, message", [
    ("{not json", "is not valid JSON"),
    ("[1, 2, 3]", "not a gpubench result file"),
    ('{"hello": "world"}', "not a gpubench result file"),
    ('{"schema_version": 99, "suite": "x", "env": {}, "records": []}', "newer than this gpubench"),
    ('{"schema_version": "two"}', "not a positive integer"),
    ('{"schema_version": 2, "suite": "x", "env": {}, "records": [{"benchmark": "m"}]}', "has no 'params'"),
    ('{"schema_version": 2, "suite": "x", "env": {}, "records": [{"benchmark": "m", "params": {}, '
     '"status": "weird"}]}', "status 'weird'"),
    ('{"schema_version": 2, "suite": "x", "env": {}}', "no 'records'"),
])
def test_rejects_bad_files(tmp_path, content, message):
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(ResultFileError, match=message):
        load_run(path)


def test_missing_and_binary_files(tmp_path):
    with pytest.raises(ResultFileError, match="no such file"):
        load_run(tmp_path / "nope.json")
    binary = tmp_path / "bin.json"
    binary.write_bytes(b"\xff\xfe\x00\x81")
    with pytest.raises(ResultFileError):
        load_run(binary)


def test_dataframe(tmp_path):
    paths = []
    for host in ("a", "b"):
        run = Run(suite="mixed-precision", env={"device": {"type": "cuda", "name": f"GPU {host}",
                                                           "spec_key": "h100-sxm"},
                                                "host": {"hostname": host}})
        run.records = [_record(0), _record(1)]
        p = tmp_path / f"{host}.json"
        ResultWriter(p, run).close()
        paths.append(p)
    df = to_dataframe(paths)
    assert len(df) == 4
    assert set(df["host"]) == {"a", "b"}
    assert {"params.dtype", "params.m", "metrics.tflops", "timing.median_s", "work.flops"} <= set(df.columns)
    assert "timing.samples_s" not in df.columns
    assert df.groupby("host")["metrics.tflops"].max().to_dict() == {"a": 2.5, "b": 2.5}


def test_record_rejects_unknown_status():
    with pytest.raises(ValueError):
        _record(status="maybe")


def test_migrate_rejects_non_dict():
    with pytest.raises(ResultFileError):
        migrate("text")
