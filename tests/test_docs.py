"""The README and docs/ as a newcomer meets them: a first screen that says what to run, links
that lead somewhere, and commands that gpubench accepts as written."""

import re
import shlex
from pathlib import Path

import click
import pytest

from cli_helpers import invoke
from gpubench.cli import cli

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
PAGES = [README, *sorted((ROOT / "docs").glob("*.md"))]


def test_the_first_screen_says_what_to_run():
    """The README buried the lead (738 lines; how to get `gpubench` on the PATH nowhere): its
    first screen now names the two commands and how to run gpubench afterwards."""
    lines = README.read_text().splitlines()
    assert len(lines) <= 220, f"the README is {len(lines)} lines: move detail to docs/"
    first = "\n".join(lines[:45])
    for needle in ("make run", "make test", "source .venv/bin/activate", ".venv/bin/gpubench"):
        assert needle in first, needle
    assert "first hour without a gpu" in "\n".join(lines[:25]).lower()


def _anchors(text: str) -> set[str]:
    def slug(title):
        title = re.sub(r"[`*]", "", title.strip().lower())
        return re.sub(r"[^\w\- ]", "", title).replace(" ", "-")
    return {slug(m) for m in re.findall(r"^#+ (.+)$", text, re.M)}


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_link_leads_somewhere(page):
    text = page.read_text()
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if re.match(r"https?://", target):
            continue
        path, _, anchor = target.partition("#")
        dest = (page.parent / path).resolve() if path else page
        assert dest.exists(), f"{page.name}: link to {target} leads nowhere"
        if anchor and dest.suffix == ".md":
            assert anchor in _anchors(dest.read_text()), f"{page.name}: no section #{anchor} in {dest.name}"


def _shown_commands(page: Path):
    """`gpubench …` lines inside the page's code blocks (continuations joined, comments cut)."""
    text = page.read_text()
    for block in re.findall(r"```[a-z]*\n(.*?)```", text, re.S):
        joined = re.sub(r"\\\n\s*", " ", block)
        # A block with a `$ ` prompt mixes commands and their output: only prompted lines count.
        prompted = any(line.startswith("$ ") for line in joined.splitlines())
        for line in joined.splitlines():
            if prompted and not line.startswith("$ "):
                continue
            line = line.strip().removeprefix("$ ")
            if line.startswith("gpubench ") and "…" not in line:
                yield line.split(" #")[0].strip()


def _resolve(args: list[str]):
    cmd, path = cli, []
    while isinstance(cmd, click.Group) and args and not args[0].startswith("-"):
        nxt = cmd.get_command(click.Context(cmd), args[0])
        assert nxt is not None, f"no command `gpubench {' '.join(path + args[:1])}`"
        cmd, path, args = nxt, path + [args[0]], args[1:]
    return cmd, path, args


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_command_shown_parses(page):
    """A command a page shows must be one gpubench takes: its subcommands and options exist
    and its values convert (sizes, numbers, choices). Parsing only: nothing runs."""
    shown = list(_shown_commands(page))
    for line in shown:
        cmd, path, args = _resolve(shlex.split(line)[1:])
        try:
            cmd.make_context(" ".join(path), args)
        except click.exceptions.Exit:
            pass
        except click.UsageError as e:
            pytest.fail(f"{page.name}: `{line}`: {e}")
    if page == README:
        assert len(shown) >= 5


@pytest.mark.parametrize("line", [
    "gpubench list gpus",
    "gpubench estimate --model llama3.1-8b --gpu h100 --gpus 64 --tokens 1T",
    "gpubench compare results/cpu-vm-20261123T035329Z.json results/cpu-vm-20261123T064542Z.json",
    "gpubench selfcheck results/cpu-vm-20261201T231843Z.json",
])
def test_the_readmes_first_hour_runs(capsys, monkeypatch, line):
    """What the README tells a newcomer without a GPU to run, run: exit 0, and the figures it
    quotes still come out (the sample was pasted from a real run, not written by hand)."""
    assert line in list(_shown_commands(README)) or line in README.read_text()
    monkeypatch.chdir(ROOT)
    code, out, err = invoke(capsys, *shlex.split(line)[1:])
    assert code == 0, err
    quoted = {
        "gpubench list gpus": ["$6.88", "AWS 2026-10"],
        "gpubench estimate": ["$6.88/GPU-hour", "the planner's fastest"],
        "gpubench selfcheck": ["median |error| 16% over 4 step(s)"],
        "gpubench compare": ["geometric mean 0.97× (90% CI 0.95–0.98) over 1 case(s); 14 noisy case(s) left out"],
    }
    for key, needles in quoted.items():
        if line.startswith(key):
            for n in needles:
                assert n in out and n in README.read_text(), n
