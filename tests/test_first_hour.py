"""A new user's first hour without a GPU (issue 13): names that can be found, help that
points at commands that exist, and no cost printed for a run that cannot happen."""

import re

import click
import pytest

from cli_helpers import invoke, one_line_error
from estimate_helpers import run_error, run_json
from gpubench.cli import cli

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
