"""The ``gpubench`` command.

Bad input (an unknown name, an impossible shape, an unwritable file, a file
that is not a result) ends in one line on stderr and exit code 2, before any
work; a case that fails during a suite becomes a failed record and the suite
goes on.
"""

from __future__ import annotations

import json
import re
import sys
import warnings
from datetime import datetime, timezone
from pathlib import Path

import click

from gpubench import __version__
from gpubench.errors import GpubenchError


def _warning_line(message, category, filename, lineno, file=None, line=None):
    print(f"gpubench: warning: {message}", file=sys.stderr)


def default_out_path(device_slug: str, host: str) -> Path:
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    host = re.sub(r"[^A-Za-z0-9_.-]+", "-", host) or "host"
    return Path("results") / f"{device_slug}-{host}-{stamp}.json"


def parse_shape(text: str) -> dict:
    parts = re.split(r"[x×,]", text.lower().strip())
    if len(parts) != 3 or not all(p.strip().isdigit() and int(p) > 0 for p in parts):
        raise GpubenchError(f"--shape {text!r} is not MxNxK with three positive whole numbers")
    m, n, k = (int(p) for p in parts)
    return {"m": m, "n": n, "k": k}


def parse_params(items) -> dict:
    """KEY=VALUE pairs; values stay text (each benchmark's normalize parses its own)."""
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key or not value.strip():
            raise GpubenchError(f"-p {item!r} is not KEY=VALUE")
        out[key] = value.strip()
    return out


def parse_dtypes(text: str | None) -> list[str] | None:
    if text is None:
        return None
    from gpubench.dtypes import get_precision

    names = [get_precision(d.strip()).name for d in text.split(",") if d.strip()]
    if not names:       # `--dtype ""` (an unset shell variable) must not mean "the default"
        raise GpubenchError(f"--dtype {text!r} names no precision (e.g. --dtype bf16,fp8_e4m3)")
    return list(dict.fromkeys(names))       # fp8,fp8_e4m3 is one precision, measured once


class ByteSize(click.ParamType):
    """A size in bytes: 1073741824, 64K, 1M, 1G (×1024, as nccl-tests reads them; KiB/MiB/GiB too)."""

    name = "bytes"

    def get_metavar(self, param, *args, **kwargs) -> str:     # click 8.2 added ctx
        return "BYTES"

    def convert(self, value, param, ctx):
        if isinstance(value, int):
            return value
        from gpubench.benches.comm import parse_bytes

        try:
            return parse_bytes(value)
        except GpubenchError as e:
            self.fail(str(e), param, ctx)


BYTES = ByteSize()
SIZE_HELP = "bytes, or K/M/G (×1024, as nccl-tests reads them; KiB/MiB/GiB alike)"


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="gpubench")
def cli():
    """gpubench: measure what a GPU delivers, and what a training run will cost."""


@cli.command()
@click.option("--suite", metavar="NAME", help="suite to run (see `gpubench list`); default mixed-precision")
@click.option("--benchmark", metavar="NAME", help="run one benchmark instead of a suite")
@click.option("--dtype", metavar="LIST",
              help="comma-separated precisions: fp32,tf32,bf16,fp16,fp8_e4m3 (fp8 means fp8_e4m3)")
@click.option("--shape", multiple=True, metavar="MxNxK", help="MxNxK for --benchmark matmul (repeatable)")
@click.option("--scaling", type=click.Choice(["tensor", "row"]), default="tensor", show_default=True,
              help="FP8 scale granularity for --benchmark matmul")
@click.option("--size", "size_bytes", type=BYTES, multiple=True,
              help=f"buffer size for --benchmark membw or a collective: {SIZE_HELP} (repeatable)")
@click.option("--device", default="auto", show_default=True, metavar="DEVICE", help="cpu, cuda or cuda:N")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path),
              help="result file (default results/<device>-<host>-<time>.json)")
@click.option("--force", is_flag=True, help="overwrite --out if it exists")
@click.option("--quick", is_flag=True, help="shorter warm-up and timing (noisier)")
@click.option("--budget", type=float, metavar="SECONDS", help="seconds per precision for the mamf search")
@click.option("--strict", is_flag=True, help="exit with code 1 if any case failed")
@click.option("--nproc", type=int, metavar="N",
              help="start N ranks on this node under torchrun; collectives (--suite comm) on a GPU "
                   "node default to one rank per visible GPU")
@click.option("--dist-timeout", type=float, metavar="SECONDS",
              help="seconds a rank waits for the others (rendezvous, a collective); default 180")
@click.option("--sizes", metavar="MIN:MAX[:FACTOR]",
              help=f"collective message sizes, like nccl-tests -b -e -f (8:1G:2); sizes in {SIZE_HELP}")
@click.option("-p", "--param", "param_items", multiple=True, metavar="KEY=VALUE",
              help="a parameter of --benchmark's cases, e.g. -p model=1.3b -p compile=true (repeatable)")
@click.option("--selfcheck", "then_selfcheck", is_flag=True,
              help="then predict the run's training steps from its own kernels (gpubench selfcheck)")
def run(suite, benchmark, dtype, shape, scaling, size_bytes, device, out, force, quick, budget, strict,
        nproc, dist_timeout, sizes, param_items, then_selfcheck):
    """Run a suite (or one benchmark), print a table, and write a result file."""
    from gpubench import distributed
    from gpubench.device import resolve_device
    from gpubench.env import fingerprint
    from gpubench.progress import make_progress
    from gpubench.registry import Case, Search, get_benchmark, get_suite
    from gpubench.report import render
    from gpubench.results import ResultWriter, Run, check_writable
    from gpubench.runner import Runner, memory_problem
    from gpubench.timing import TimerConfig

    if suite and benchmark:
        raise GpubenchError("give --suite or --benchmark, not both")
    if budget is not None and budget <= 0:
        raise GpubenchError(f"--budget {budget} must be a positive number of seconds")
    dtypes = parse_dtypes(dtype)
    shapes = [parse_shape(s) for s in shape]
    extra = parse_params(param_items)
    if extra and not benchmark:
        raise GpubenchError("-p/--param sets parameters of --benchmark's cases; a suite's cases are fixed")
    if "size_bytes" in extra:       # -p size_bytes=1G reads like --size 1G
        from gpubench.benches.comm import parse_bytes

        extra["size_bytes"] = parse_bytes(extra["size_bytes"])
    if sizes:
        from gpubench.benches.comm import parse_sweep

        sweep = parse_sweep(sizes)
    # Under torchrun each rank takes its local GPU; --nproc starts torchrun, so not both.
    rank = distributed.rank_info()
    if nproc is not None and rank is not None:
        raise GpubenchError("--nproc starts torchrun itself: leave it out when torchrun launches gpubench")
    if nproc is not None and nproc < 1:
        raise GpubenchError(f"--nproc {nproc}: need at least one process")
    dev = resolve_device(distributed.rank_device(device, rank))
    if nproc is not None and dev.is_cuda and nproc > torch_cuda_count():
        raise GpubenchError(f"--nproc {nproc}: one rank per GPU, and {torch_cuda_count()} CUDA "
                            f"device(s) are visible (use --device cpu for gloo ranks)")

    if benchmark:
        bench = get_benchmark(benchmark)
        unknown = sorted(set(extra) - bench.user_params) if bench.user_params is not None else []
        if unknown:
            raise GpubenchError(f"-p {unknown[0]}: {benchmark} takes no such parameter "
                                f"(it takes {', '.join(sorted(bench.user_params))})")
        items = [Case(c.benchmark, {**c.params, **extra})
                 for c in _benchmark_cases(benchmark, dev, dtypes, shapes, scaling, size_bytes)]
        for case in items:
            params = bench.normalize(case.params)
            problem = memory_problem(bench, params, dev)
            if problem:
                raise GpubenchError(f"{bench.label(params)}: {problem}")
        name = benchmark
    else:
        if shapes or size_bytes:
            raise GpubenchError("--shape and --size go with --benchmark, not with a suite")
        name = suite or "mixed-precision"
        items = get_suite(name).items(dev, dtypes, nproc or (rank.world_size if rank else 1))
        # Items without a precision (copies, op overhead) survive any --dtype: a suite left
        # with only those measured nothing the user asked for.
        if not items or (dtypes and not any((getattr(i, "params", None) or {}).get("dtype") for i in items)):
            raise GpubenchError(f"suite {name} has no {dev.type} cases for --dtype {dtype}")
        if budget is not None:
            items = [Search(i.strategy, {**i.params, "budget_s": budget}) if isinstance(i, Search) else i
                     for i in items]

    chosen = None       # said once the input has passed every check
    if rank is None and _only_collectives(items):
        what = f"{benchmark} measures a collective" if benchmark else f"suite {name} measures collectives"
        if nproc is None:
            nproc = _ranks_for_collectives(what, dev, device)
            chosen = f"{what} between ranks: --nproc {nproc}, one rank per visible GPU"
            if not benchmark:
                items = get_suite(name).items(dev, dtypes, nproc)
        elif nproc < 2:
            raise GpubenchError(f"--nproc {nproc}: {what} between ranks, and needs at least 2")
    if sizes:
        from gpubench.benches.comm import resize

        items = resize(items, sweep)
    world = nproc or (rank.world_size if rank else 1)
    distributed.refuse_searches(items, world)
    if world < 2:       # collectives are skipped alone: one record per op, not the sweep
        from gpubench.benches.comm import alone

        items = alone(items)
    root = rank is None or rank.is_root
    if root and out is None:
        from gpubench.outfiles import claim_new

        out = claim_new(default_out_path(dev.slug, _hostname()))
    if root:
        check_writable(out, force)
    if nproc is not None:
        from gpubench.launch import child_args, launch

        if chosen:
            click.echo(chosen, err=True)
        sys.exit(launch(nproc, child_args(click.get_current_context(), override={"out": out}), out))
    timer_config = TimerConfig.for_device(dev, quick=quick)
    ctx = distributed.init(rank, dev, dist_timeout) if rank else None
    run_ = Run(suite=name, env=fingerprint(dev) if root else {},
               config={"timer": timer_config.__dict__, "quick": quick, "dtypes": dtypes,
                       "device": dev.label, "world_size": world})
    writer = ResultWriter(out, run_) if root else None     # rank 0 alone writes
    if root:
        click.echo(f"gpubench {name} on {dev.label} ({dev.name}): {len(items)} item(s)"
                   + (f" × {world} ranks" if ctx else "") + f" → {out}", err=True)
    if ctx:
        from gpubench.runner import SilentProgress

        runner = distributed.DistRunner(ctx, dev, timer_config, writer,
                                        make_progress() if root else SilentProgress())
    else:
        runner = Runner(dev, timer_config, writer, make_progress())
    finished = False
    try:
        runner.run(items)
        finished = True
    except KeyboardInterrupt:
        if writer:
            writer.close("interrupted")
            click.echo(f"interrupted: {len(run_.records)} record(s) kept in {out}", err=True)
        sys.exit(130)
    except distributed.PeerLost as e:
        if writer:
            writer.close("crashed")
        click.echo(f"gpubench: error: {e}" + (f"; {len(run_.records)} record(s) kept in {out}"
                                              if writer else ""), err=True)
        sys.exit(distributed.PEER_LOST_EXIT)
    except BaseException:
        if writer:
            writer.close("crashed")
            click.echo(f"gpubench crashed: {len(run_.records)} record(s) kept in {out}", err=True)
        raise
    finally:
        if ctx and finished:    # a broken group may hang on the way down: exiting ends it too
            distributed.shutdown()
    if not root:
        distributed.leave(0)
    writer.close("complete")
    click.echo(render(run_))
    failed = sum(r.status == "failed" for r in run_.records)
    click.echo(f"\nwrote {out}" + (f" ({failed} case(s) failed: see the table)" if failed else ""), err=True)
    if then_selfcheck and root:
        _selfcheck_after(out)
    code = 1 if strict and failed else 0
    if ctx:
        distributed.leave(code)
    if code:
        sys.exit(code)


def _selfcheck_after(out: Path) -> None:
    """The self-check of a run just written; a run it cannot check says why and keeps exit 0."""
    from gpubench.estimate.report import render_selfcheck
    from gpubench.estimate.selfcheck import self_check

    try:
        result = self_check([out])
    except GpubenchError as e:
        click.echo(f"\nself-check not run: {e}", err=True)
        return
    click.echo("\n" + render_selfcheck(result))


def _only_collectives(items) -> bool:
    from gpubench.benches.comm import COLLECTIVES
    from gpubench.registry import Case

    return bool(items) and all(isinstance(i, Case) and i.benchmark in COLLECTIVES for i in items)


def _ranks_for_collectives(what: str, dev, device_spec: str) -> int:
    """The --nproc a run of collectives gets when it gives none: every visible GPU, as
    nccl-tests' users expect. A single process would only record them skipped."""
    if not dev.is_cuda:
        # On a CPU the number of gloo ranks is a choice (cores, memory), not a fact of the node.
        raise GpubenchError(f"{what} between ranks: give --nproc N (N ≥ 2; gloo ranks on this CPU)")
    count = torch_cuda_count()
    if count < 2:
        raise GpubenchError(f"{what} between ranks, and {count} CUDA device is visible: NCCL needs "
                            f"≥2 GPUs, one rank each (or gloo ranks: --device cpu --nproc N)")
    if (device_spec or "").strip().lower().startswith("cuda:"):
        raise GpubenchError(f"{what} between ranks, and --device {device_spec} names one GPU: use "
                            f"--device cuda (one rank per visible GPU) or --nproc N")
    return count


def torch_cuda_count() -> int:
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def _hostname() -> str:
    import socket

    return socket.gethostname().split(".")[0]


def _benchmark_cases(benchmark, dev, dtypes, shapes, scaling, size_bytes):
    from gpubench.benches.comm import COLLECTIVES, cases
    from gpubench.registry import Case

    # An option the benchmark does not read would be dropped and the default case measured
    # under the user's belief that it was theirs.
    if shapes and benchmark != "matmul":
        raise GpubenchError(f"--shape goes with --benchmark matmul, not {benchmark}")
    if size_bytes and benchmark not in ("membw", *COLLECTIVES):
        raise GpubenchError(f"--size goes with --benchmark membw or a collective, not {benchmark}")
    if dtypes and benchmark in ("op-overhead",):
        raise GpubenchError(f"--dtype means nothing for {benchmark}")
    if benchmark == "matmul":
        shapes = shapes or [{"m": n, "n": n, "k": n} for n in ([8192] if dev.is_cuda else [256])]
        cases = []
        for d in dtypes or ["bf16"]:
            extra = {"scaling": scaling} if d.startswith("fp8") else {}
            cases += [Case("matmul", {"dtype": d, **s, **extra}) for s in shapes]
        return cases
    if benchmark == "membw":
        if dtypes:
            raise GpubenchError("--dtype means nothing for membw (it copies bytes)")
        sizes = size_bytes or [(1 << 30) if dev.is_cuda else (64 << 20)]
        return [Case("membw", {"size_bytes": s}) for s in sizes]
    if benchmark == "transformer-step":
        if shapes or size_bytes:
            raise GpubenchError("--shape and --size mean nothing for transformer-step: use -p model=NAME")
        model = "350m" if dev.is_cuda else "tiny"
        return [Case(benchmark, {"model": model, "dtype": d}) for d in dtypes or ["bf16"]]
    if benchmark in COLLECTIVES:
        sizes = size_bytes or [(1 << 30) if dev.is_cuda else (1 << 20)]
        return cases(sizes, dtypes or ["fp32"], ops=[benchmark])
    return [Case(benchmark, {})]


@cli.command("list")
@click.argument("what", required=False, metavar="[suites|benchmarks|precisions|models|gpus]")
@click.option("--json", "as_json", is_flag=True, help="print JSON (models and gpus)")
def list_(what, as_json):
    """List what the other commands accept.

    With no argument: suites, benchmarks and precisions (for `gpubench run`). `gpubench
    list models` and `gpubench list gpus` list what `estimate` and `plan` take: the model
    zoo, and every GPU with its short names, memory, dense peaks and the price used."""
    from gpubench import catalog

    if what is not None and what not in catalog.LISTS:
        raise GpubenchError(f"gpubench list {what}: list one of {', '.join(catalog.LISTS)}")
    if what in ("models", "gpus"):
        rows = catalog.model_rows() if what == "models" else catalog.gpu_rows()
        if as_json:
            click.echo(json.dumps(rows, indent=2))
        else:
            click.echo(catalog.render_models(rows) if what == "models" else catalog.render_gpus(rows))
        return
    if as_json:
        raise GpubenchError("--json goes with gpubench list models or gpubench list gpus")
    from tabulate import tabulate

    from gpubench.dtypes import PRECISIONS
    from gpubench.registry import BENCHMARKS, SUITES, get_suite

    get_suite("mixed-precision")     # loads the registries
    sections = []
    if what in (None, "suites"):
        sections.append("suites (gpubench run --suite NAME)\n" + tabulate(
            [[s.name, len(s.gpu), len(s.cpu), s.description] for s in SUITES.values()],
            headers=["name", "GPU items", "CPU items", "what it measures"]))
    if what in (None, "benchmarks"):
        sections.append("benchmarks (gpubench run --benchmark NAME)\n" + tabulate(
            [[b.name, b.description] for b in BENCHMARKS.values()], headers=["name", "what it measures"]))
    if what in (None, "precisions"):
        from gpubench.dtypes import ALIASES

        also = {}
        for alias, name in ALIASES.items():
            also.setdefault(name, []).append(alias)
        sections.append("precisions (gpubench run --dtype; estimate --precision)\n" + tabulate(
            [[p.name, ", ".join(also.get(p.name, [])), p.doc] for p in PRECISIONS.values()],
            headers=["dtype", "also", "meaning"]))
    if what is None:
        sections.append("for estimate and plan: gpubench list models, gpubench list gpus")
    click.echo("\n\n".join(sections))


@cli.command()
@click.argument("files", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--probes", is_flag=True, help="also list every probe a search ran (mamf shapes, fits sizes)")
@click.option("--json", "as_json", is_flag=True,
              help="print each file's records, main figures and published comparisons as JSON")
def show(files, probes, as_json):
    """Print the tables of one or more result files."""
    from gpubench.report import render, show_json
    from gpubench.results import load_run

    runs = [load_run(f) for f in files]        # all parsed before anything is printed
    if as_json:
        click.echo(json.dumps([show_json(f, run_) for f, run_ in zip(files, runs)], indent=1, allow_nan=False))
        return
    for i, (f, run_) in enumerate(zip(files, runs)):
        if i:
            click.echo("\n" + "=" * 80 + "\n")
        click.echo(f"{f}")
        click.echo(render(run_, show_probes=probes))


@cli.command()
@click.option("--device", default="auto", show_default=True, metavar="DEVICE", help="cpu, cuda or cuda:N")
@click.option("--json", "as_json", is_flag=True, help="print JSON")
def env(device, as_json):
    """Print the environment fingerprint stored with every run."""
    from gpubench.device import resolve_device
    from gpubench.env import fingerprint

    fp = fingerprint(resolve_device(device))
    if as_json:
        click.echo(json.dumps(fp, indent=2, default=str))
        return
    for key, value in _flatten(fp):
        click.echo(f"{key}: {value}")


def _flatten(obj, prefix=""):
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from _flatten(v, f"{prefix}{k}." if not isinstance(v, dict) or v else f"{prefix}{k}")
            if isinstance(v, dict) and not v:
                yield (f"{prefix}{k}", "{}")
    else:
        yield (prefix.rstrip("."), obj)


def _add_estimate_commands() -> None:
    from gpubench.estimate.commands import backtest, calibrate, estimate, plan, selfcheck

    cli.add_command(estimate)
    cli.add_command(plan)
    cli.add_command(calibrate)
    cli.add_command(backtest)
    cli.add_command(selfcheck)


_add_estimate_commands()


def _add_hub_commands() -> None:
    # Only click at import time: the server's packages load inside the commands.
    from gpubench.hub.commands import hub

    cli.add_command(hub)


_add_hub_commands()


def _add_compare_upload_commands() -> None:
    from gpubench.hub_client import compare, upload

    cli.add_command(compare)
    cli.add_command(upload)


_add_compare_upload_commands()


def _add_import_command() -> None:
    from gpubench.importers.command import import_

    cli.add_command(import_)


_add_import_command()


def _typed_command_path(args: list[str]) -> str:
    """`gpubench run` for `gpubench run --suite`: the commands named before the options."""
    cmd, path = cli, ["gpubench"]
    for word in args:
        if not isinstance(cmd, click.Group) or word.startswith("-"):
            break
        sub = cmd.get_command(click.Context(cmd), word)
        if sub is None:
            break
        cmd = sub
        path.append(word)
    return " ".join(path)


def main(argv: list[str] | None = None) -> None:
    warnings.showwarning = _warning_line
    try:
        code = cli.main(args=argv, prog_name="gpubench", standalone_mode=False)
    except GpubenchError as e:
        click.echo(f"gpubench: error: {e}", err=True)
        sys.exit(2)
    except click.exceptions.UsageError as e:
        # command_path is the whole chain ("gpubench hub serve"): info_name alone named
        # commands that do not exist ("gpubench serve").
        path = e.ctx.command_path if e.ctx else "gpubench"
        if path == "gpubench":      # some errors carry the group's context: find the command typed
            path = _typed_command_path(sys.argv[1:] if argv is None else argv)
        hint = f" (see {path} --help)"
        click.echo(f"gpubench: error: {e.format_message()}{hint}", err=True)
        sys.exit(2)
    except click.exceptions.ClickException as e:
        click.echo(f"gpubench: error: {e.format_message()}", err=True)
        sys.exit(2)
    except (click.exceptions.Abort, KeyboardInterrupt):
        click.echo("gpubench: interrupted", err=True)
        sys.exit(130)
    sys.exit(code if isinstance(code, int) else 0)
