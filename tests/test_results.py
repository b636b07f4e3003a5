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


def test_a_write_cut_off_halfway_leaves_the_previous_file(tmp_path):
    """Guards: the result file rewritten in place (a plain open-and-write): a rewrite cut off
    halfway (here by the file-size limit, as a full disk or a kill mid-write would) must leave the
    previous complete file readable, not a truncated one, and no temporary file behind."""
    import resource

    path = tmp_path / "run.json"
    w = ResultWriter(path, Run(suite="s", env={}))
    w.add(_record(0))
    before = path.read_bytes()
    big = _record(1, timing={"method": "host_clock", "median_s": 1e-3, "samples_s": [1.2345e-3] * 4000})
    new_size = len(json.dumps({**w.run.to_dict(), "records": [r.to_dict() for r in w.run.records + [big]]},
                              indent=1))
    assert new_size > 4 * len(before)
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    # Python ignores SIGXFSZ: a write past the limit stops there and raises EFBIG.
    resource.setrlimit(resource.RLIMIT_FSIZE, ((len(before) + new_size) // 2, hard))
    try:
        with pytest.raises(OSError):
            w.add(big)
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
    assert path.read_bytes() == before
    assert len(load_run(path).records) == 1
    assert [p.name for p in tmp_path.iterdir()] == ["run.json"]
    w.flush()                                   # with room again, the next write has both records
    assert len(load_run(path).records) == 2


def test_a_loaded_run_is_the_run_that_was_written(tmp_path):
    """Guards: a field lost or defaulted on the way to disk and back (suite, config, start and
    finish times, tool, status, run id), and the path a loaded run remembers."""
    path = tmp_path / "r.json"
    run = Run(suite="mamf", env={"device": {"name": "x"}}, config={"quick": True, "timer": {"warmup_s": 0.1}},
              started_at="2026-11-23T10:00:00+00:00", tool={"name": "gpubench", "version": "9.9"})
    w = ResultWriter(path, run)
    w.add(_record(0))
    w.close("interrupted")
    back = load_run(path)
    assert back.to_dict() == run.to_dict()
    assert (back.suite, back.config, back.started_at, back.tool, back.status) == (
        "mamf", {"quick": True, "timer": {"warmup_s": 0.1}}, "2026-11-23T10:00:00+00:00",
        {"name": "gpubench", "version": "9.9"}, "interrupted")
    assert back.finished_at and back.path == path
    doc = json.loads(path.read_text())
    assert list(doc)[:11] == ["schema_version", "tool", "run_id", "suite", "status", "started_at", "finished_at",
                              "units", "config", "env", "records"]
    with pytest.raises(ValueError):
        w.close("finished")                      # not a run status


def test_a_v1_record_gets_every_v2_field(tmp_path):
    """Guards: the v1 → v2 migration leaving out a field v2 readers expect (check, telemetry,
    metrics, timing's method) or the run's status; and the migrated file writes back as v2."""
    v1 = {"schema_version": 1, "suite": "s", "env": {},
          "records": [{"benchmark": "membw", "params": {"size_bytes": 1}, "status": "ok",
                       "stats": {"median_s": 0.5, "method": "cuda_event"}}]}
    doc = migrate(json.loads(json.dumps(v1)))
    r = doc["records"][0]
    assert doc["schema_version"] == 2 and doc["status"] == "complete"
    assert r["timing"] == {"method": "cuda_event", "median_s": 0.5} and "stats" not in r
    assert r["check"] is None and r["telemetry"] is None and r["metrics"] == {}
    assert "check" in r and "telemetry" in r
    assert migrate({"schema_version": 1, "suite": "s", "env": {}})["records"] == []
    assert migrate({**v1, "status": "interrupted"})["status"] == "interrupted"
    run = Run.from_dict(doc)
    assert run.to_dict()["schema_version"] == SCHEMA_VERSION == 2


def test_what_json_cannot_hold_is_refused_or_converted(tmp_path):
    """Guards: NaN or infinity written into a result file (not JSON: other readers fail), and
    numpy/torch scalars or paths in a record breaking the write instead of being stored."""
    import math
    from pathlib import Path

    import numpy as np
    import torch

    from gpubench.results import clean_floats

    path = tmp_path / "r.json"
    w = ResultWriter(path, Run(suite="s", env={}))
    w.add(_record(0, metrics={"tflops": np.float32(1.5), "n": torch.tensor(3), "where": Path("/x/y")}))
    assert load_run(path).records[0].metrics == {"tflops": 1.5, "n": 3, "where": "/x/y"}
    with pytest.raises(ValueError):
        w.add(_record(1, metrics={"tflops": math.nan}))
    w.run.records.pop()
    with pytest.raises(TypeError, match="object is not JSON serialisable"):
        w.add(_record(2, metrics={"what": object()}))
    assert clean_floats({"a": [1.0, math.nan, (math.inf, -math.inf)], "b": {"c": 2.5}, "d": "x"}) == \
        {"a": [1.0, None, [None, None]], "b": {"c": 2.5}, "d": "x"}


def test_check_writable_makes_the_folder_and_refuses_to_overwrite(tmp_path):
    """Guards: --out into a folder that does not exist yet failing late (after the run), and an
    existing result replaced without --force."""
    from gpubench.errors import GpubenchError
    from gpubench.results import check_writable

    deep = tmp_path / "a" / "b" / "r.json"
    check_writable(deep)
    assert deep.parent.is_dir()
    check_writable(deep)                          # again: the folder exists, no error
    deep.write_text("{}")
    with pytest.raises(GpubenchError, match="already exists"):
        check_writable(deep)
    check_writable(deep, force=True)
    (tmp_path / "file").write_text("x")
    with pytest.raises(GpubenchError, match="cannot create folder"):
        check_writable(tmp_path / "file" / "sub" / "r.json")


def test_dataframe_row_carries_the_run_and_the_record(tmp_path):
    """Guards: to_dataframe dropping or misnaming a column: each row has its run's identity and
    environment, the record's own fields, and every block flattened as block.key (no samples)."""
    run = Run(suite="s", env={"device": {"type": "cuda", "name": "GPU", "spec_key": "h100-sxm"},
                             "host": {"hostname": "h"}}, status="complete", started_at="2026-01-01T00:00:00+00:00")
    rec = _record(0, check={"rel_err": 1e-3}, telemetry={"power_w": 500.0}, duration_s=1.5)
    failed = _record(1, status="failed", error="boom", timing=None, metrics={})
    run.records = [rec, failed]
    path = tmp_path / "r.json"
    ResultWriter(path, run).close("complete")
    df = to_dataframe([path])
    row = df.iloc[0].to_dict()
    want = {"run_id": run.run_id, "suite": "s", "run_status": "complete",
            "run_started_at": "2026-01-01T00:00:00+00:00", "file": str(path), "device_name": "GPU",
            "device_type": "cuda", "spec_key": "h100-sxm", "host": "h", "case_id": rec.case_id,
            "benchmark": "matmul", "status": "ok", "device": "cpu", "duration_s": 1.5,
            "params.m": 64, "metrics.tflops": 1.5, "timing.median_s": 0.001, "check.rel_err": 1e-3,
            "work.flops": 2 * 64 ** 3, "telemetry.power_w": 500.0}
    assert {k: row[k] for k in want} == want
    assert row["reason"] is None and df.iloc[0].isna()["error"]     # pandas turns the None it shares with "boom" to NaN
    assert df.iloc[1]["error"] == "boom" and df.iloc[1]["status"] == "failed"
    assert not [c for c in df.columns if "samples_s" in c]
    assert to_dataframe([run]).iloc[0]["file"] is None        # a Run in memory has no file
