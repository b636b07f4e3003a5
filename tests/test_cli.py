import json
import subprocess

import pytest

from gpubench.cli import main
from gpubench.results import load_run


def invoke(capsys, *args):
    with pytest.raises(SystemExit) as exc:
        main(list(args))
    out, err = capsys.readouterr()
    return exc.value.code, out, err


def assert_one_line_error(code, err, *needles):
    lines = [l for l in err.splitlines() if l.strip()]
    assert code == 2, err
    assert len(lines) == 1, err
    assert lines[0].startswith("gpubench: error: ")
    assert "Traceback" not in err
    for needle in needles:
        assert needle in lines[0], lines[0]


@pytest.mark.parametrize("args, needles", [
    (["run", "--suite", "mixed-precisio", "--device", "cpu"], ["unknown suite 'mixed-precisio'", "mixed-precision"]),
    (["run", "--benchmark", "matmull", "--device", "cpu"], ["unknown benchmark 'matmull'", "matmul"]),
    (["run", "--dtype", "bf17", "--device", "cpu"], ["unknown dtype 'bf17'"]),
    (["run", "--benchmark", "matmul", "--shape", "1000000x1000000x1000000", "--device", "cpu"],
     ["needs", "GiB"]),
    (["run", "--benchmark", "matmul", "--shape", "12x3", "--device", "cpu"], ["--shape '12x3'"]),
    (["run", "--device", "tpu"], ["--device 'tpu'"]),
    (["run", "--device", "cuda:0"], ["--device cuda:0"]),
    (["run", "--suite", "mamf", "--benchmark", "matmul"], ["not both"]),
    (["run", "--budget", "-3", "--device", "cpu"], ["--budget"]),
    (["run", "--no-such-flag"], ["No such option"]),
    (["run", "--benchmark", "membw", "--size", "1.5G", "--device", "cpu"], ["--size", "not a size in bytes"]),
    (["frobnicate"], ["No such command"]),
    (["show"], ["Missing argument"]),
])
def test_bad_input_is_one_line_exit_2(capsys, args, needles):
    code, out, err = invoke(capsys, *args)
    assert_one_line_error(code, err, *needles)


def test_unwritable_out(capsys, tmp_path):
    blocker = tmp_path / "file.txt"
    blocker.write_text("I am a file, not a folder")
    code, _, err = invoke(capsys, "run", "--device", "cpu", "--out", str(blocker / "r.json"))
    assert_one_line_error(code, err, "--out")
    code, _, err = invoke(capsys, "run", "--device", "cpu", "--out", str(tmp_path))
    assert_one_line_error(code, err, "is a directory")


def test_existing_result_is_not_overwritten(capsys, tmp_path):
    old = tmp_path / "old.json"
    old.write_text('{"precious": true}')
    code, _, err = invoke(capsys, "run", "--device", "cpu", "--out", str(old))
    assert_one_line_error(code, err, "already exists", "--force")
    assert old.read_text() == '{"precious": true}'


@pytest.mark.parametrize("content, needle", [
    ("{broken", "not valid JSON"),
    ('{"name": "a package.json perhaps"}', "not a gpubench result file"),
    ('{"schema_version": 7, "suite": "x", "env": {}, "records": []}', "newer than this gpubench"),
])
def test_show_rejects_bad_files(capsys, tmp_path, content, needle):
    f = tmp_path / "x.json"
    f.write_text(content)
    code, out, err = invoke(capsys, "show", str(f))
    assert_one_line_error(code, err, str(f), needle)
    assert out == ""


def test_show_missing_file(capsys, tmp_path):
    code, _, err = invoke(capsys, "show", str(tmp_path / "nope.json"))
    assert_one_line_error(code, err, "no such file")


def test_list_and_env(capsys):
    code, out, _ = invoke(capsys, "list")
    assert code == 0
    for name in ("mixed-precision", "mamf", "membw", "matmul", "fp8_e4m3", "tf32"):
        assert name in out
    code, out, _ = invoke(capsys, "env", "--device", "cpu", "--json")
    assert code == 0
    env = json.loads(out)
    assert env["device"]["type"] == "cpu"
    assert env["software"]["torch"] and env["host"]["hostname"]
    assert env["gpu"]["nvml"]["available"] is False and env["gpu"]["nvml"]["unavailable_reason"]


def test_single_benchmark_run(capsys, tmp_path):
    out_file = tmp_path / "mm.json"
    code, out, err = invoke(capsys, "run", "--benchmark", "matmul", "--dtype", "fp32,fp8_e4m3",
                            "--shape", "64x32x48", "--scaling", "row", "--device", "cpu", "--quick",
                            "--out", str(out_file))
    assert code == 0, err
    run = load_run(out_file)
    assert run.suite == "matmul" and run.status == "complete"
    assert [(r.params["dtype"], r.status) for r in run.records] == [("fp32", "ok"), ("fp8_e4m3", "ok")]
    assert run.records[1].params["scaling"] == "row"
    assert "64×32×48" in out


@pytest.mark.slow
def test_mixed_precision_suite_end_to_end_on_cpu(tmp_path, gpubench_cmd, sub_env):
    """The newcomer's path: the real command in a subprocess, then the file checked for content."""
    out_file = tmp_path / "mp.json"
    proc = subprocess.run(gpubench_cmd + ["run", "--suite", "mixed-precision", "--device", "cpu",
                                          "--out", str(out_file)],
                          capture_output=True, text=True, timeout=300, env=sub_env)
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    run = load_run(out_file)
    assert run.status == "complete" and run.suite == "mixed-precision"
    assert run.env["device"]["type"] == "cpu" and run.env["device"]["peak_tflops"] is None
    by_status = {}
    for r in run.records:
        by_status.setdefault(r.status, []).append(r)
    assert not by_status.get("failed"), [r.error for r in by_status.get("failed", [])]
    skipped = by_status["skipped"]
    assert skipped and all(r.params["dtype"] == "tf32" and "TF32" in r.reason for r in skipped)
    ok = by_status["ok"]
    dtypes = {r.params.get("dtype") for r in ok if r.benchmark == "matmul"}
    assert dtypes == {"fp32", "bf16", "fp16", "fp8_e4m3"}
    for r in ok:
        assert r.device == "cpu" and r.timing["median_s"] > 0 and r.timing["n"] >= 3
        assert r.check["rel_err"] <= r.check["tolerance"]
        # No borrowed peak for a CPU: no % of peak, no MFU.
        assert r.metrics.get("pct_of_peak") is None and r.metrics.get("mfu") is None
        if r.benchmark == "matmul":
            m, n, k = r.params["m"], r.params["n"], r.params["k"]
            assert r.work["flops"] == 2 * m * n * k
            assert r.metrics["tflops"] == pytest.approx(2 * m * n * k / r.timing["median_s"] / 1e12)
    assert any(r.benchmark == "membw" and r.metrics["gbps"] > 0 for r in ok)
    steps = {r.params["dtype"] for r in ok if r.benchmark == "transformer-step"}
    assert steps == {"fp32", "bf16", "fp16", "fp8_e4m3"}      # the model-level row of each precision
    assert any("scaling_s" in r.metrics for r in ok if r.params.get("dtype") == "fp8_e4m3")
    # The table on stdout and `gpubench show` agree.
    assert "TFLOP/s" in proc.stdout and "device: cpu" in proc.stdout
    show = subprocess.run(gpubench_cmd + ["show", str(out_file)], capture_output=True, text=True,
                          timeout=120, env=sub_env)
    assert show.returncode == 0 and "skipped (" in show.stdout
    assert show.stdout.split("\n", 1)[1].strip() == proc.stdout.strip()


def test_interrupted_run_keeps_records_and_says_so(tmp_path, gpubench_cmd, sub_env):
    """SIGINT in the middle of a suite: exit 130, file valid, status interrupted."""
    import signal
    import time

    out_file = tmp_path / "int.json"
    proc = subprocess.Popen(gpubench_cmd + ["run", "--suite", "membw", "--device", "cpu",
                                            "--out", str(out_file)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=sub_env)
    deadline = time.time() + 60
    while time.time() < deadline:
        if out_file.exists() and load_run(out_file).records:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    run = load_run(out_file)
    if proc.returncode == 0:        # it finished before the signal landed
        assert run.status == "complete"
        return
    assert proc.returncode == 130, err
    assert run.status == "interrupted" and run.records
    assert "Traceback" not in err


def test_strict_exit_code_reflects_failures(capsys, tmp_path, monkeypatch):
    from gpubench.benches.matmul import Matmul

    def broken(self, params, device):
        raise RuntimeError("cuBLAS said no")

    monkeypatch.setattr(Matmul, "prepare", broken)
    args = ["run", "--benchmark", "matmul", "--shape", "8x8x8", "--device", "cpu"]
    code, out, err = invoke(capsys, *args, "--out", str(tmp_path / "a.json"))
    assert code == 0 and "1 case(s) failed" in err
    assert "failed (1): bf16 8×8×8 — RuntimeError: cuBLAS said no" in out
    code, _, _ = invoke(capsys, *args, "--strict", "--out", str(tmp_path / "b.json"))
    assert code == 1
    assert load_run(tmp_path / "b.json").records[0].error == "RuntimeError: cuBLAS said no"


def test_sizes_take_suffixes_wherever_a_size_is_taken(capsys, tmp_path, monkeypatch):
    """`--sizes 8:1G` took suffixes and `--size 1G` did not: every size reads K/M/G (×1024,
    as nccl-tests does), KiB/MiB/GiB and plain bytes, through one parser."""
    from gpubench import report
    from gpubench.cli import run
    from gpubench.runner import Runner

    seen = []       # the cases the runner was given: nothing is measured
    monkeypatch.setattr(Runner, "run", lambda self, items: seen.extend(items) or [])
    monkeypatch.setattr(report, "render", lambda run_: "")
    code, _, err = invoke(capsys, "run", "--benchmark", "membw", "--size", "4M", "--size", "8MiB",
                          "--size", "16777216", "--device", "cpu", "--out", str(tmp_path / "a.json"))
    assert code == 0, err
    assert [c.params["size_bytes"] for c in seen] == [4 << 20, 8 << 20, 16 << 20]
    code, _, err = invoke(capsys, "run", "--benchmark", "membw", "-p", "size_bytes=1G", "--device", "cpu",
                          "--out", str(tmp_path / "b.json"))
    assert code == 0 and seen[-1].params["size_bytes"] == 1 << 30, err
    help_text = run.get_help(run.make_context("run", ["--size", "1"]))
    assert "×1024, as nccl-tests" in help_text


def test_fp8_means_fp8_e4m3():
    """`gpubench estimate --precision fp8` and `run --dtype fp8_e4m3` name one format: run takes both."""
    from gpubench.cli import parse_dtypes
    from gpubench.dtypes import get_precision

    assert get_precision("FP8").name == "fp8_e4m3"
    assert parse_dtypes("fp8,bf16,fp8_e4m3") == ["fp8_e4m3", "bf16"]


def test_run_help_shows_units_not_text(capsys):
    """Numeric options showed as TEXT (--sizes) or a bare type: each names what it takes."""
    code, out, _ = invoke(capsys, "run", "--help")
    assert code == 0
    for spec in ("--size BYTES", "--sizes MIN:MAX[:FACTOR]", "--budget SECONDS", "--dist-timeout SECONDS",
                 "--nproc N", "--shape MxNxK", "fp8 means fp8_e4m3"):
        assert spec in out, spec
    assert " TEXT " not in out and "FLOAT" not in out and "INTEGER" not in out
