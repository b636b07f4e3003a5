"""A new user's first hour without a GPU (issue 13): names that can be found, help that
points at commands that exist, and no cost printed for a run that cannot happen."""

import re
from pathlib import Path

import click
import pytest

from cli_helpers import invoke, one_line_error
from estimate_helpers import run_error, run_json
from gpubench.cli import cli

ROOT = Path(__file__).resolve().parents[1]

SMALL = ["--model", "llama3.1-8b", "--gpus", "64", "--tokens", "1B"]


# ---- help that points somewhere ----------------------------------------------------------

def _commands(group: click.Group, prefix=()):
    ctx = click.Context(group)
    for name in group.list_commands(ctx):
        cmd = group.get_command(ctx, name)
        yield prefix + (name,), cmd
        if isinstance(cmd, click.Group):
            yield from _commands(cmd, prefix + (name,))


def _help_texts():
    for path, cmd in _commands(cli):
        texts = [cmd.help or ""] + [p.help or "" for p in cmd.params if isinstance(p, click.Option)]
        yield path, cmd, " ".join(texts)


def test_every_command_named_in_help_exists():
    """Guards help that points nowhere: `gpubench estimate --list-models` was named in
    estimate's help when no such thing ran. Every `gpubench WORD [WORD]` a help text names
    must be a command (or `list`'s argument), and every --flag it names an option of that
    command or of the command it names."""
    from gpubench import catalog

    paths = {p: c for p, c in _commands(cli)}
    options = {p: {o for prm in c.params if isinstance(prm, click.Option) for o in prm.opts + prm.secondary_opts}
               for p, c in paths.items()}
    every_option = set().union(*options.values())
    named = 0
    for path, cmd, text in _help_texts():
        for words in re.findall(r"gpubench ((?:[a-z][a-z-]*)(?: [a-z][a-z-]*)?)", text):
            first, *rest = words.split()
            assert (first,) in paths, f"{' '.join(path)}: help names `gpubench {words}`"
            if rest and isinstance(paths[(first,)], click.Group):
                assert (first, rest[0]) in paths, f"{' '.join(path)}: help names `gpubench {words}`"
            if first == "list" and rest and rest[0] not in ("models", "gpus", "suites", "benchmarks",
                                                            "precisions"):
                continue        # prose after the command ("gpubench list names them")
            if first == "list" and rest:
                assert rest[0] in catalog.LISTS
            named += 1
        for flag in re.findall(r"(?<![\w-])(--[a-z][a-z0-9-]+)", text):
            assert flag in every_option, f"{' '.join(path)}: help names {flag}, which no command takes"
    assert named >= 3      # the test reads the help it means to


def test_list_gpus_names_every_gpu_and_each_short_name_resolves(capsys):
    """`gpubench list gpus` is where the names are found: every key of the hardware table,
    each short name printed beside the key it resolves to, with memory, dense peaks and the
    price estimate would charge, dated."""
    from gpubench.hardware import GPUS, get_gpu

    code, out, err = invoke(capsys, "list", "gpus", "--json")
    import json

    rows = json.loads(out)
    assert code == 0 and {r["key"] for r in rows} == set(GPUS)
    for r in rows:
        for alias in r["aliases"]:
            assert get_gpu(alias).key == r["key"]
        assert r["memory_gb"] == GPUS[r["key"]].memory_gb
        assert r["dense_peak_tflops"] == dict(GPUS[r["key"]].peak_tflops)
        if r["price"]:
            assert r["price"]["usd_per_gpu_hour"] > 0 and re.search(r"20\d\d", r["price"]["as_of"])
    assert "a100" in next(r for r in rows if r["key"] == "a100-sxm-80gb")["aliases"]
    code, text, _ = invoke(capsys, "list", "gpus")
    assert code == 0 and all(k in text for k in GPUS) and "TFLOP/s" in text


def test_list_models_names_every_model_estimate_takes(capsys):
    from gpubench.estimate.models import ZOO, get_model

    code, out, _ = invoke(capsys, "list", "models")
    assert code == 0
    listed = [line.split()[0] for line in out.splitlines()[2:] if line.strip()]
    assert listed == list(ZOO)
    assert all(get_model(n) is ZOO[n] for n in listed)
    code, _, err = invoke(capsys, "list", "model")
    one_line_error(code, err, "list model", "models")


def test_short_gpu_names_resolve_and_say_which(capsys):
    """`--gpu h100` worked and `--gpu a100` did not; a short name now picks the common form
    and the answer says which."""
    e = run_json(capsys, "estimate", "--gpu", "a100", *SMALL)
    assert e["cluster"]["gpu"] == "a100-sxm-80gb" or e["cluster"].get("gpu_key") == "a100-sxm-80gb"
    assert "a100 means a100-sxm-80gb" in e["gpu_note"]
    code, out, _ = invoke(capsys, "estimate", "--gpu", "a100", *SMALL)
    assert code == 0 and out.splitlines()[0].startswith("--gpu a100 means a100-sxm-80gb")
    e = run_json(capsys, "estimate", "--gpu", "a100-sxm-80gb", *SMALL)
    assert e["gpu_note"] is None


@pytest.mark.parametrize("typed, meant", [("nvidia-h100", "h100"), ("amd-mi300", "mi300"),
                                          ("h10", "h100"), ("a100-sxm4-80", "a100-sxm4-80gb")])
def test_a_mistyped_gpu_gets_a_suggestion_not_a_wall_of_names(capsys, typed, meant):
    line = run_error(capsys, "estimate", "--gpu", typed, *SMALL)
    assert f"did you mean {meant}" in line and "gpubench list gpus" in line
    assert len(line) < 200, line       # was all 38 names


def test_a_mistyped_model_gets_a_suggestion(capsys):
    line = run_error(capsys, "estimate", "--gpu", "h100", "--model", "llama3.1-7b", "--gpus", "8",
                     "--tokens", "1B")
    assert "did you mean" in line and "llama3.1-8b" in line and "gpubench list models" in line


# ---- no cost for a run that cannot happen --------------------------------------------------

BIG = ["--model", "llama3.1-70b", "--gpu", "h100", "--gpus", "2048", "--tokens", "15T"]


def test_estimate_without_layout_flags_takes_the_planners_best_that_fits(capsys):
    """It picked tp1 pp1 (1.5 TB a GPU), printed a cost and MFU, exited 0 and said DOES NOT
    FIT on its last line. Now: the planner's fastest layout that fits, said as such."""
    e = run_json(capsys, "estimate", *BIG)
    assert e["memory"]["fits"] and e["memory"]["total_gb"] <= e["memory"]["capacity_gb"]
    assert e["layout_chosen_by"]["by"] == "planner" and e["layout_chosen_by"]["fit"] > 0
    best = run_json(capsys, "plan", *BIG, "--top", "1")["ranked"][0]
    assert {k: e["layout"][k] for k in ("tp", "pp", "dp", "cp", "micro_batch", "zero", "recompute")} == \
        {k: best["layout"][k] for k in ("tp", "pp", "dp", "cp", "micro_batch", "zero", "recompute")}
    code, out, _ = invoke(capsys, "estimate", *BIG)
    assert code == 0 and "the planner's fastest" in out and "DOES NOT FIT" not in out


def test_layout_flags_that_do_not_fit_are_refused_in_one_line(capsys):
    line = run_error(capsys, "estimate", *BIG, "--tp", "1", "--pp", "1")
    needed = float(re.search(r"needs ([\d,.]+) GB", line).group(1).replace(",", ""))
    assert needed > 80 and "has 80 GB" in line and "gpubench plan" in line and "--ignore-memory" in line
    e = run_json(capsys, "estimate", *BIG, "--tp", "1", "--pp", "1", "--ignore-memory")
    assert not e["memory"]["fits"] and e["memory"]["total_gb"] == pytest.approx(needed, rel=1e-3)
    assert e["layout_chosen_by"] == {"by": "flags"}


def test_both_precision_spellings_mean_the_same_estimate(capsys):
    """run says fp8_e4m3, estimate said fp8: both commands take both."""
    args = ["estimate", "--gpu", "h100", *SMALL, "--tp", "1", "--zero", "1"]
    a = run_json(capsys, *args, "--precision", "fp8")
    b = run_json(capsys, *args, "--precision", "fp8_e4m3")
    assert a["layout"]["precision"] == b["layout"]["precision"] == "fp8"
    assert a["step_time_s"] == b["step_time_s"]


def test_plan_checks_the_settings_it_does_not_search(capsys):
    """--moe-imbalance 0.5 (below perfect balance) went through plan unchecked and gave an
    MFU above 100%."""
    line = run_error(capsys, "plan", "--model", "mixtral-8x7b", "--gpu", "h100", "--gpus", "64", "--tokens", "1B",
                     "--moe-imbalance", "0.5")
    assert "--moe-imbalance 0.5" in line


def test_no_option_shows_as_bare_text():
    """Numeric options showed as `TEXT` in help; every option now names what it takes
    (INTEGER, SECONDS, BYTES, NAME, URL, …)."""
    bare = []
    for path, cmd in _commands(cli):
        ctx = click.Context(cmd, info_name=path[-1])
        for p in cmd.params:
            if isinstance(p, click.Option) and not p.is_flag:
                record = p.get_help_record(ctx)
                if record and re.search(r"\bTEXT\b", record[0]):
                    bare.append(f"{' '.join(path)} {record[0]}")
    assert not bare, bare


@pytest.mark.parametrize("size, text", [(64 << 10, "copy 64 KiB"), (256 << 10, "copy 256 KiB"),
                                        (64 << 20, "copy 64 MiB"), (3 << 29, "copy 1.5 GiB")])
def test_a_small_buffer_is_not_labelled_zero_mib(size, text):
    """compare and the progress line called a 64 KiB copy "copy 0 MiB": two different cases
    under one label."""
    from gpubench.compare import label

    assert label("membw", {"op": "copy", "size_bytes": size}, "id") == text


# ---- found by a new user's walk on a fresh clone ------------------------------------------

@pytest.mark.parametrize("flag, typed", [("--price", "2,50"), ("--tokens", "1,5T"), ("--price", "1.000,50")])
def test_a_decimal_comma_is_refused_not_read_as_thousands(capsys, flag, typed):
    """`--price 2,50` read as $250/GPU-hour and `--tokens 1,5T` as 15T, exit 0: a 10–100×
    wrong answer for anyone who writes decimals with a comma."""
    args = ["estimate", "--model", "llama3.1-8b", "--gpu", "h100", "--gpus", "8", "--tokens", "1T", flag, typed]
    line = run_error(capsys, *args)
    assert typed in line and "dot" in line


def test_a_thousands_separator_still_reads():
    from gpubench.estimate.commands import parse_amount

    assert parse_amount("--gpus", "1,024") == 1024 and parse_amount("--gpu-price", "30,000") == 30000
    assert parse_amount("--tokens", "2,048,000") == 2_048_000


def test_runs_started_in_the_same_second_keep_both_files(tmp_path, capsys, monkeypatch):
    """A script starting one run per GPU gave every run the same default name (device, host,
    second): both said `wrote results/…json` and one was lost. The default name is now
    claimed exclusively; the next run gets `-2`."""
    import gpubench.cli as cli_mod
    from gpubench.outfiles import claim_new

    first, second = claim_new(tmp_path / "r.json"), claim_new(tmp_path / "r.json")
    assert first != second and first.exists() and second.exists()
    # a whole run whose default name is taken by a finished run writes beside it
    (tmp_path / "d.json").write_text('{"sentinel": true}')
    monkeypatch.setattr(cli_mod, "default_out_path", lambda *a: tmp_path / "d.json")
    code, _, err = invoke(capsys, "run", "--benchmark", "membw", "--size", "64K", "--quick", "--device", "cpu")
    assert code == 0, err
    assert (tmp_path / "d.json").read_text() == '{"sentinel": true}' and (tmp_path / "d-2.json").stat().st_size > 0


@pytest.mark.parametrize("args, needle", [
    (["run", "--benchmark", "membw", "--size", "64K", "--out", "/proc/gpubench-x.json"], "cannot write in /proc"),
    (["calibrate", "results/cpu-vm-20261201T231843Z.json", "-o", "/nonexistent-dir/p.json"], "does not exist"),
])
def test_an_unwritable_output_is_one_line_before_any_work(capsys, monkeypatch, args, needle):
    """Both ended in a traceback (calibrate's after the profile was computed)."""
    monkeypatch.chdir(ROOT)
    code, _, err = invoke(capsys, *args)
    one_line_error(code, err, needle)


@pytest.mark.parametrize("args, needle", [
    (["--benchmark", "membw", "--shape", "64x64x64"], "--shape goes with --benchmark matmul"),
    (["--benchmark", "matmul", "--size", "1M"], "--size goes with"),
    (["--benchmark", "matmul", "-p", "foo=bar"], "-p foo"),
    (["--benchmark", "membw", "-p", "model=tiny"], "-p model"),
    (["--suite", "transformer", "--dtype", "fp8"], "no cpu cases for --dtype fp8"),
    (["--dtype", ""], "names no precision"),
])
def test_an_option_the_run_would_ignore_is_refused(tmp_path, capsys, args, needle):
    """Each of these ran the default case (or only copies) and exited 0: the user believed
    their case was measured."""
    code, _, err = invoke(capsys, "run", *args, "--quick", "--device", "cpu", "--out", tmp_path / "x.json")
    one_line_error(code, err, needle)
    assert not (tmp_path / "x.json").exists()


def test_an_attention_kernel_the_gpu_cannot_run_is_refused(capsys):
    """`--attention flash3` on an A100 printed flash2's numbers under flash3's name."""
    line = run_error(capsys, "estimate", "--gpu", "a100", *SMALL, "--attention", "flash3")
    assert "flash3" in line and "hopper" in line and "ampere" in line
    e = run_json(capsys, "estimate", "--gpu", "h100", *SMALL, "--attention", "flash3")
    assert e["profile"]["attention"] == "flash3"


def test_a_usage_error_points_at_the_help_of_the_command_typed(capsys):
    """`hub serve --port 80000` said "see gpubench serve --help", which does not exist."""
    code, _, err = invoke(capsys, "hub", "serve", "--port", "80000")
    one_line_error(code, err, "(see gpubench hub serve --help)")
    code, _, err = invoke(capsys, "run", "--suite")
    one_line_error(code, err, "(see gpubench run --help)")


def test_a_small_run_is_not_printed_as_zero(capsys):
    """15M tokens printed "0.0B tokens" and "0.0 days"."""
    code, out, _ = invoke(capsys, "estimate", "--model", "llama3.1-8b", "--gpu", "h100", "--gpus", "8",
                          "--tokens", "15M")
    assert code == 0 and "15.0M tokens" in out and "0.0 days" not in out and "0.0B" not in out
