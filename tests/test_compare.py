"""gpubench compare: cases matched across runs, ratios, missing cases, outputs, the CLI.

The runs are real: gpubench measures them on the CPU once per session. "Another
machine" is one of them with its env block and records edited (test data for the
matching logic, not measurements).
"""

import copy
import json
import math
import subprocess
import sys

import pandas as pd
import pytest

from gpubench.compare import COLLECTIVE_NAMES, MAIN_METRICS, compare_runs, main_metric
from gpubench.errors import GpubenchError
from gpubench.results import Record, Run, load_run

from cli_helpers import invoke, one_line_error
from hub_stub import StubHub, closed_port_url

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="session")
def real_files(tmp_path_factory):
    """Three real runs on the CPU, measured concurrently: two membw suites, one matmul."""
    d = tmp_path_factory.mktemp("real")
    cmds = {
        "membw_a": ["run", "--suite", "membw", "--device", "cpu", "--quick"],
        "membw_b": ["run", "--suite", "membw", "--device", "cpu", "--quick"],
        "matmul": ["run", "--benchmark", "matmul", "--dtype", "fp32,bf16", "--shape", "256x256x256",
                   "--device", "cpu", "--quick"],
    }
    procs = {k: subprocess.Popen([sys.executable, "-m", "gpubench", *v, "--out", str(d / f"{k}.json")],
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for k, v in cmds.items()}
    for k, p in procs.items():
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, f"{k}: {err}"
    return {k: d / f"{k}.json" for k in cmds}


@pytest.fixture(autouse=True)
def no_hub_settings(monkeypatch, tmp_path):
    for var in ("GPUBENCH_HUB", "GPUBENCH_TOKEN", "GPUBENCH_CONFIG"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "no-config"))


def other_machine(run_b: Run, matmul: Run) -> Run:
    """run_b, as if measured on an H100 box: 16 MiB copy dropped, the matmuls added,
    a % of peak on the 64 MiB copy, and the 4 MiB copy measured twice (failed last)."""
    other = copy.deepcopy(run_b)
    other.env["device"].update(name="NVIDIA H100 80GB HBM3", type="cuda", label="cuda:0")
    other.env["host"]["hostname"] = "gpu-box"
    other.records = [r for r in other.records if r.params["size_bytes"] != 16 << 20]
    other.records += copy.deepcopy(matmul.records)
    big = next(r for r in other.records if r.benchmark == "membw" and r.params["size_bytes"] == 64 << 20)
    big.metrics["pct_of_peak"] = 12.5
    small = next(r for r in other.records if r.benchmark == "membw" and r.params["size_bytes"] == 4 << 20)
    other.records.append(Record(benchmark="membw", params=dict(small.params), status="failed",
                                device="cuda:0", error="check failed"))
    return other


@pytest.fixture(scope="session")
def runs(real_files):
    a = load_run(real_files["membw_a"])
    b = other_machine(load_run(real_files["membw_b"]), load_run(real_files["matmul"]))
    return a, b


def metric(run: Run, size_mib: int) -> float:
    return next(r.metrics["gbps"] for r in run.records
                if r.benchmark == "membw" and r.params["size_bytes"] == size_mib << 20 and r.status == "ok")


# ---- the main metric of each benchmark ----

def test_every_benchmark_has_a_main_metric():
    from gpubench.benches.comm import COLLECTIVES
    from gpubench.registry import BENCHMARKS, get_benchmark

    get_benchmark("matmul")     # loads the registry
    assert set(COLLECTIVE_NAMES) == set(COLLECTIVES)
    assert set(BENCHMARKS) | {"mamf", "transformer-fits"} <= set(MAIN_METRICS)
    assert MAIN_METRICS["all_reduce"] == ("busbw_gbps", "GB/s", True)
    assert MAIN_METRICS["transformer-step"][0] == "tokens_per_s"


def test_main_metric_of_real_and_edge_records(runs):
    a, _ = runs
    copy_rec = next(r for r in a.records if r.benchmark == "membw")
    assert main_metric(copy_rec) == ("gbps", copy_rec.metrics["gbps"], "GB/s", None)   # a CPU: no peak
    skipped = Record("matmul", {"dtype": "tf32", "m": 8, "n": 8, "k": 8}, "skipped", "cpu", reason="x",
                     metrics={"tflops": 1.0})
    assert main_metric(skipped) == ("tflops", None, "TFLOP/s", None)
    step = Record("transformer-step", {"model": "tiny"}, "ok", "cuda:0",
                  metrics={"tokens_per_s": 1234.0, "mfu": 0.42})
    name, value, unit, pct = main_metric(step)
    assert (name, value, unit) == ("tokens_per_s", 1234.0, "tokens/s") and pct == pytest.approx(42.0)
    coll = Record("all_reduce", {"size_bytes": 8}, "ok", "cuda:0",
                  metrics={"algbw_gbps": 2.0, "busbw_gbps": 3.0, "latency_us": 9.0})
    assert main_metric(coll) == ("busbw_gbps", 3.0, "GB/s", None)
    fits = Record("transformer-fits", {"dtype": "bf16"}, "ok", "cuda:0", metrics={"largest_params": 1180800})
    assert main_metric(fits)[:3] == ("largest_params", 1180800.0, "params")
    # Unknown benchmark: the first numeric metric in key order, whatever order the file has.
    for metrics in ({"zeta_s": 3, "name": "x", "flag": True, "beta_gbps": 2.0, "nan": float("nan")},
                    {"beta_gbps": 2.0, "zeta_s": 3, "flag": True, "name": "x"}):
        assert main_metric(Record("newbench", {}, "ok", "cpu", metrics=metrics)) == ("beta_gbps", 2.0, "GB/s", None)


# ---- matching ----

def test_cases_matched_ratios_and_missing(runs):
    a, b = runs
    cmp = compare_runs([a, b])
    ids = [row.case_id for row in cmp.rows]
    # first run's cases first, then what only the second run has; nothing dropped
    assert ids == [r.case_id for r in a.records] + [r.case_id for r in b.records if r.benchmark == "matmul"]
    assert len(ids) == len(set(ids)) == 5
    rows = {row.case_id: row for row in cmp.rows}
    by_size = {r.params["size_bytes"] >> 20: rows[r.case_id] for r in a.records}

    big = by_size[64]
    assert big.values == [metric(a, 64), metric(b, 64)]
    assert big.ratios[0] == 1.0 and big.ratios[1] == pytest.approx(metric(b, 64) / metric(a, 64))
    assert big.pct_of_peak == [None, 12.5] and big.statuses == ["ok", "ok"]
    assert big.label == "copy 64 MiB" and big.metric == "gbps" and big.unit == "GB/s"

    dropped = by_size[16]               # measured by run 1 only
    assert dropped.statuses == ["ok", "missing"] and dropped.values[1] is None and dropped.ratios == [1.0, None]

    twice = by_size[4]                  # ok, then failed: the ok one counts
    assert twice.statuses == ["ok", "ok"]
    assert twice.ratios[1] == pytest.approx(metric(b, 4) / metric(a, 4))

    mm = [row for row in cmp.rows if row.benchmark == "matmul"]
    assert [row.label for row in mm] == ["fp32 256x256x256", "bf16 256x256x256"]
    for row in mm:
        assert row.statuses == ["missing", "ok"] and row.values[0] is None and row.values[1] > 0
        assert row.ratios == [None, None]      # no baseline: no ratio


def test_last_ok_record_of_a_repeated_case_wins(runs):
    a, b = runs
    b = copy.deepcopy(b)
    small = next(r for r in b.records if r.benchmark == "membw" and r.params["size_bytes"] == 4 << 20)
    again = copy.deepcopy(small)
    again.metrics["gbps"] = small.metrics["gbps"] * 3
    b.records.append(again)
    row = next(r for r in compare_runs([a, b]).rows if r.case_id == small.case_id)
    assert row.values[1] == again.metrics["gbps"]
    assert row.ratios[1] == pytest.approx(again.metrics["gbps"] / metric(a, 4))
    # every record of a case failed: the last one's status shows, no value
    b.records = [copy.deepcopy(r) for r in b.records]
    for r in b.records:
        if r.case_id == small.case_id:
            r.status, r.error = "skipped", "not here"
    row = next(r for r in compare_runs([a, b]).rows if r.case_id == small.case_id)
    assert row.statuses[1] == "skipped" and row.values[1] is None and row.ratios[1] is None


def test_search_probes_hidden_unless_asked(runs):
    a, _ = runs
    probe = copy.deepcopy(a)
    probe.records.append(Record("matmul", {"dtype": "fp32", "m": 64, "n": 64, "k": 64, "search": "mamf"},
                                "ok", "cpu", metrics={"tflops": 0.1}))
    hidden = compare_runs([a, probe])
    assert hidden.hidden_probes == 1 and len(hidden.rows) == 3
    assert "1 search probe record(s) not compared" in hidden.table()
    shown = compare_runs([a, probe], probes=True)
    assert len(shown.rows) == 4 and shown.rows[-1].label.endswith("[search=mamf]")
    assert shown.rows[-1].statuses == ["missing", "ok"]


def test_names(runs):
    a, b = runs
    cmp = compare_runs([a, b])
    assert cmp.runs[0].gpu == a.env["device"]["name"] and cmp.runs[0].host == a.env["host"]["hostname"]
    assert cmp.runs[0].name == f"{cmp.runs[0].gpu} · {cmp.runs[0].host} · {a.started_at[:10]}"
    assert cmp.runs[1].name.startswith("NVIDIA H100 80GB HBM3 · gpu-box · ")
    assert cmp.runs[1].host == "gpu-box" and cmp.runs[1].run_id == b.run_id and cmp.runs[1].suite == "membw"
    same = compare_runs([a, a])             # the same file twice: names still differ
    assert same.runs[0].name != same.runs[1].name
    assert [r.name for r in compare_runs([a, b], names=["old", "new"]).runs] == ["old", "new"]
    with pytest.raises(GpubenchError, match="1 name"):
        compare_runs([a, b], names=["only one"])


def test_json_is_strict_and_shaped(runs):
    a, b = runs
    b = copy.deepcopy(b)
    next(r for r in b.records if r.benchmark == "membw").metrics["gbps"] = float("nan")
    doc = compare_runs([a, b]).to_json()
    text = json.dumps(doc, allow_nan=False)          # raises on NaN
    assert set(doc) == {"runs", "rows", "geomean"}
    assert set(doc["runs"][0]) == {"name", "gpu", "host", "started_at", "suite", "run_id"}
    assert set(doc["rows"][0]) == {"case_id", "benchmark", "label", "metric", "unit", "values", "ratios",
                                   "pct_of_peak", "statuses", "ratio_ci", "significant", "noisy"}
    assert doc["rows"][0]["values"][1] is None and doc["rows"][0]["ratios"][1] is None   # NaN → null
    assert json.loads(text) == doc


def test_table_text(runs):
    a, b = runs
    cmp = compare_runs([a, b])
    text = cmp.table()
    big = next(r for r in cmp.rows if r.label == "copy 64 MiB")
    line = next(l for l in text.splitlines() if l.startswith("membw") and "copy 64 MiB" in l)
    assert f"({big.ratios[1]:.2f}× [" in line and "12.5% of peak" in line
    line16 = next(l for l in text.splitlines() if "copy 16 MiB" in l)
    assert line16.rstrip().endswith("missing")
    assert "NVIDIA H100 80GB HBM3" in text and "host gpu-box" in text and "host vm" in text
    assert a.run_id in text and b.run_id in text
    assert "5 case(s): 2 measured in every run, 3 missing" in text
    # The geometric mean leaves out the cases a busy CPU made noisy, and says so.
    kept = [r.ratios[1] for r in cmp.rows if r.ratios[1] and not r.noisy[1]]
    noisy = sum(1 for r in cmp.rows if r.ratios[1] and r.noisy[1])
    line = next(l for l in text.splitlines() if l.startswith("run 2 ÷ run 1: geometric mean"))
    if kept:
        geo = math.exp(sum(math.log(x) for x in kept) / len(kept))
        assert f"geometric mean {geo:.2f}× (" in line and f"over {len(kept)} case(s)" in line
    assert (f"{noisy} noisy case(s) left out" in line) == bool(noisy)


def test_dataframe_and_plot(runs, tmp_path, monkeypatch):
    a, b = runs
    cmp = compare_runs([a, b], names=["A", "B"])
    df = cmp.to_dataframe()
    assert list(df["case_id"]) == [r.case_id for r in cmp.rows]
    assert {"A", "A ratio", "A % of peak", "A status", "B", "B ratio", "B status"} <= set(df.columns)
    assert df.loc[df["label"] == "copy 16 MiB", "B status"].item() == "missing"
    png = tmp_path / "c.png"
    cmp.plot(png)
    data = png.read_bytes()
    assert data.startswith(PNG_SIGNATURE) and len(data) > 1000
    for mod in ("matplotlib", "matplotlib.figure", "matplotlib.backends.backend_agg"):
        monkeypatch.setitem(sys.modules, mod, None)     # as if not installed
    with pytest.raises(GpubenchError, match="pip install matplotlib"):
        cmp.plot(tmp_path / "d.png")


# ---- the command ----



def write(run: Run, path):
    path.write_text(json.dumps(run.to_dict(), allow_nan=False))
    return path


def test_cli_compare_files_csv_plot(runs, real_files, tmp_path, capsys):
    a, b = runs
    fb = write(b, tmp_path / "b.json")
    code, out, err = invoke(capsys, "compare", real_files["membw_a"], fb,
                            "--csv", tmp_path / "c.csv", "--plot", tmp_path / "c.png")
    assert code == 0, err
    assert "copy 64 MiB" in out and "missing" in out and "NVIDIA H100 80GB HBM3" in out
    df = pd.read_csv(tmp_path / "c.csv")
    assert len(df) == 5 and list(df.columns[:5]) == ["case_id", "benchmark", "label", "metric", "unit"]
    row = df[df["label"] == "copy 64 MiB"].iloc[0]
    assert row.iloc[5] == pytest.approx(metric(a, 64))          # run 1's value column
    assert (tmp_path / "c.png").read_bytes().startswith(PNG_SIGNATURE)
    assert f"wrote {tmp_path / 'c.csv'}" in err

    code, out, _ = invoke(capsys, "compare", real_files["membw_a"], fb, "--json")
    assert code == 0 and json.loads(out)["rows"][0]["ratios"][0] == 1.0


@pytest.mark.parametrize("args, needles", [
    (["only.json"], ["at least 2 runs", "got 1"]),
    (["A", "nope.json"], ["nope.json: no such file"]),
    (["A", "abc123"], ["abc123: no such file", "--hub"]),
])
def test_cli_compare_errors(real_files, capsys, args, needles):
    args = [str(real_files["membw_a"]) if x == "A" else x for x in args]
    one_line_error(*invoke(capsys, "compare", *args)[::2], *needles)


def test_cli_compare_not_a_result_file(real_files, tmp_path, capsys):
    bad = tmp_path / "bad.json"
    bad.write_text('{"hello": 1}')
    one_line_error(*invoke(capsys, "compare", real_files["membw_a"], bad)[::2], "not a gpubench result file")


def test_cli_compare_fetches_run_ids_from_the_hub(runs, real_files, capsys, monkeypatch):
    a, b = runs
    with StubHub() as hub:
        hub.documents["b1"] = b.to_dict()
        code, out, err = invoke(capsys, "compare", real_files["membw_a"], "b1", "--hub", hub.url + "/")
        assert code == 0, err
        assert "NVIDIA H100 80GB HBM3" in out and "copy 64 MiB" in out
        assert hub.requests[-1]["method"] == "GET" and hub.requests[-1]["path"] == "/api/v1/runs/b1"

        one_line_error(*invoke(capsys, "compare", real_files["membw_a"], "zzz", "--hub", hub.url)[::2],
                       "'zzz' not found", hub.url)
        monkeypatch.setenv("GPUBENCH_HUB", hub.url)          # the hub from the environment
        code, out, _ = invoke(capsys, "compare", "b1", real_files["membw_a"])
        assert code == 0 and out.index("gpu-box") < out.index("host vm")    # run 1 is the hub's


def test_cli_compare_hub_unreachable(real_files, capsys):
    url = closed_port_url()
    one_line_error(*invoke(capsys, "compare", real_files["membw_a"], "r1", "--hub", url)[::2],
                   "cannot reach hub", url)
