"""``gpubench import``: other tools' result files as gpubench result files."""

from __future__ import annotations

import json
import re
from pathlib import Path

import click

from gpubench.errors import GpubenchError


def default_out(run, source: Path) -> Path:
    tool = (run.provenance or {}).get("tool", "imported")
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "-", source.stem).strip("-.") or "file"
    return Path("results") / f"imported-{tool}-{stem}.json"


@click.command("import")
@click.argument("files", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("-o", "--out", type=click.Path(dir_okay=False, path_type=Path),
              help="result file to write (one input only; default results/imported-<tool>-<name>.json)")
@click.option("--force", is_flag=True, help="overwrite an existing output (never an input)")
@click.option("--format", "fmt", type=click.Choice(["nccl-tests", "mamf-finder", "pytest-benchmark"]),
              help="the tool that wrote the files (default: recognised from their content)")
@click.option("--collective", metavar="NAME",
              help="the collective of an nccl-tests log that does not name it (all_reduce, all_gather, …)")
def import_(files, out, force, fmt, collective):
    """Turn nccl-tests, mamf-finder and pytest-benchmark output into result files of gpubench's.

    The records take gpubench's case ids where the case is the same (nccl-tests' all_reduce
    of 1 GiB on 8 ranks matches gpubench's), the environment is what the file states, and
    `provenance` names the tool, its version and the original file's SHA-256. The result
    shows, compares and uploads like a file of `gpubench run`."""
    from gpubench.importers import describe, import_file
    from gpubench.outfiles import check_output, write_text_atomic
    from gpubench.results import clean_floats

    if out is not None and len(files) > 1:
        raise GpubenchError(f"--out names one file and {len(files)} files were given: leave --out out "
                            f"(each goes to results/imported-<tool>-<name>.json)")
    # Every input is read and converted before anything is written: one bad file, no output.
    runs = [import_file(f, fmt=fmt, collective=collective) for f in files]
    targets = [out or default_out(run, f) for run, f in zip(runs, files)]
    if len(set(map(str, targets))) < len(targets):
        raise GpubenchError("two inputs would be written to the same result file: import them one at a time "
                            "with --out")
    for k, target in enumerate(targets):
        check_output(target, "--out", force=force, inputs=files,
                     others=[("--out", t) for t in targets[k + 1:]])
        if not target.parent.exists():
            if out is not None:
                raise GpubenchError(f"--out {target}: folder {target.parent} does not exist")
    for run, source, target in zip(runs, files, targets):
        target.parent.mkdir(parents=True, exist_ok=True)
        # NaN is no JSON number: a figure a tool printed as nan is stored as null.
        write_text_atomic(target, json.dumps(clean_floats(run.to_dict()), indent=1, allow_nan=False) + "\n")
        click.echo(f"{source}: {describe(run)} → {target}")
