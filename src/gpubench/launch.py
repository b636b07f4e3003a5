"""``gpubench run … --nproc N``: the same command again, N times, under torchrun on this node.

The launching process measures nothing. The CLI has already checked the arguments
(bad input fails before any rank starts); this module rebuilds the command line
without ``--nproc``, starts ``python -m torch.distributed.run --standalone`` with
it, passes the output through, and, when a rank fails, says which one and makes
sure the result file does not claim to be complete. torchrun does the rest: one
process per rank with RANK/WORLD_SIZE/LOCAL_RANK set, and when one of them exits
badly it stops the others (SIGTERM, then SIGKILL) and lists every failure.

Written for any command with a ``--nproc`` option (collectives now; DDP/FSDP
training steps later): ``child_args`` works from click's parsed parameters.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from collections import deque
from dataclasses import dataclass
from pathlib import Path

import click

from gpubench.distributed import PEER_LOST_EXIT
from gpubench.errors import GpubenchError

MONITOR_INTERVAL_S = 0.5        # how often torchrun looks at its workers
# Exit codes that say "I was stopped", not "I failed": torchrun's SIGTERM, and a rank
# that gave up because another one vanished.
VICTIM_CODES = {-signal.SIGTERM, PEER_LOST_EXIT, 128 + signal.SIGTERM}


def child_args(ctx: click.Context, drop: tuple[str, ...] = ("nproc",),
               override: dict[str, object] | None = None) -> list[str]:
    """The command line of ``ctx`` as the user gave it, minus ``drop``, with ``override``."""
    from click.core import ParameterSource

    override = dict(override or {})
    args: list[str] = []
    for p in ctx.command.params:
        if not isinstance(p, click.Option) or p.name in drop:
            continue
        if p.name in override:
            value = override.pop(p.name)
        elif ctx.get_parameter_source(p.name) in (ParameterSource.DEFAULT, ParameterSource.DEFAULT_MAP):
            continue
        else:
            value = ctx.params.get(p.name)
        flag = max(p.opts, key=len)
        if value is None:
            continue
        if p.is_flag:
            if value:
                args.append(flag)
            continue
        for v in (value if p.multiple else [value]):
            args += [flag, str(v)]
    if override:
        raise ValueError(f"no options named {sorted(override)}")
    names = [ctx.info_name]             # the subcommand chain below the program itself
    c = ctx.parent
    while c is not None and c.parent is not None:
        names.insert(0, c.info_name)
        c = c.parent
    return names + args


def torchrun_command(nproc: int, args: list[str], module: str = "gpubench") -> list[str]:
    # --max-restarts 0: a benchmark that failed once would fail again, and restarting
    # would overwrite the result file. --standalone: a rendezvous on localhost, free port.
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nnodes", "1",
            "--nproc-per-node", str(nproc), "--max-restarts", "0",
            "--monitor-interval", str(MONITOR_INTERVAL_S), "-m", module, *args]


@dataclass(frozen=True)
class Failure:
    rank: int
    local_rank: int | None
    exitcode: int
    host: str | None = None

    def describe(self) -> str:
        who = f"rank {self.rank}" + (f" (local rank {self.local_rank})" if self.local_rank is not None
                                     and self.local_rank != self.rank else "")
        if self.exitcode < 0:
            try:
                name = signal.Signals(-self.exitcode).name
            except ValueError:
                name = f"signal {-self.exitcode}"
            how = f"was killed by {name}"
        elif self.exitcode == PEER_LOST_EXIT:
            how = "stopped because another rank vanished"
        else:
            how = f"exited with code {self.exitcode}"
        return f"{who}{f' on {self.host}' if self.host else ''} {how}"


_FAILURE = re.compile(r"host\s*:\s*(?P<host>\S+)\s*\n\s*rank\s*:\s*(?P<rank>\d+)\s*"
                      r"(?:\(local_rank:\s*(?P<local>\d+)\))?\s*\n\s*exitcode\s*:\s*(?P<code>-?\d+)")


def parse_failures(text: str) -> list[Failure]:
    """The ranks torchrun's ChildFailedError summary lists, each once."""
    seen: dict[int, Failure] = {}
    for m in _FAILURE.finditer(text):
        rank = int(m.group("rank"))
        local = int(m.group("local")) if m.group("local") is not None else None
        seen.setdefault(rank, Failure(rank, local, int(m.group("code")), m.group("host")))
    return sorted(seen.values(), key=lambda f: f.rank)


def culprits(failures: list[Failure]) -> list[Failure]:
    """The ranks that failed on their own, not those stopped because of them."""
    own = [f for f in failures if f.exitcode not in VICTIM_CODES]
    return own or failures


def mark_crashed(path: Path, message: str) -> str | None:
    """If the result file still says 'running', make it say 'crashed' and why; returns its status."""
    return _settle(path, "crashed", message)[0]


def mark_interrupted(path: Path) -> tuple[str | None, int]:
    """If the result file still says 'running', make it say 'interrupted'; returns its status
    and how many records it keeps."""
    return _settle(path, "interrupted")


def _settle(path: Path, status: str, message: str | None = None) -> tuple[str | None, int]:
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None, 0
    records = len(doc.get("records") or [])
    if doc.get("status") != "running":
        return doc.get("status"), records
    from gpubench.results import _atomic_write, utc_now

    doc["status"] = status
    doc["finished_at"] = doc.get("finished_at") or utc_now()
    if message is not None:
        doc.setdefault("config", {})["launch_failure"] = message
    _atomic_write(path, json.dumps(doc, indent=1) + "\n")
    return status, records


def _wind_down(proc: subprocess.Popen) -> None:
    """Wait for torchrun and its ranks to finish after Ctrl-C, reading what they still write.

    Their last words (rank 0's own "interrupted" line, each rank's KeyboardInterrupt,
    torchrun's SignalException) are dropped: the launcher says it once, for all of them.
    Read, not ignored, so that no rank blocks on a full pipe instead of exiting.
    """
    try:
        try:
            proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
    except KeyboardInterrupt:       # a second Ctrl-C: stop waiting for them
        proc.kill()


def _without_launcher_traceback(lines):
    """Pass lines on, minus the stack of torchrun's own ChildFailedError (its summary stays).

    A traceback is held until its exception line; a rank's traceback passes whole.
    """
    held: list[str] = []
    for line in lines:
        if held or line.startswith("Traceback (most recent call last):"):
            held.append(line)
            if len(held) > 1 and line[:1] not in (" ", "\t", "\n", "") and \
                    not line.startswith("Traceback"):
                if "ChildFailedError" in line:
                    yield line
                else:
                    yield from held
                held = []
            continue
        yield line
    yield from held


def launch(nproc: int, args: list[str], out: Path | None = None, env: dict | None = None) -> int:
    """Run ``gpubench ARGS`` on ``nproc`` ranks; return the exit code for the CLI."""
    if nproc < 1:
        raise GpubenchError(f"--nproc {nproc}: need at least one process")
    env = dict(os.environ if env is None else env)
    env.setdefault("PYTHONUNBUFFERED", "1")
    # torchrun would set 1 and print a banner about it; say it ourselves, sized to the node.
    env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // nproc)))
    cmd = torchrun_command(nproc, args)
    tail: deque[str] = deque(maxlen=400)
    try:
        proc = subprocess.Popen(cmd, env=env, stderr=subprocess.PIPE, text=True, bufsize=1,
                                errors="replace")
    except OSError as e:
        raise GpubenchError(f"cannot start torchrun ({e})") from None
    try:
        for line in _without_launcher_traceback(proc.stderr):   # keep the end for the summary
            sys.stderr.write(line)
            tail.append(line)
        rc = proc.wait()
    except KeyboardInterrupt:
        # Ctrl-C reached torchrun and the ranks too (same process group); let them finish up.
        _wind_down(proc)
        if out is not None:
            status, records = mark_interrupted(out)
            print(f"interrupted: {records} record(s) kept in {out}" if status is not None
                  else f"interrupted: nothing written to {out}", file=sys.stderr, flush=True)
        return 130
    if rc == 0:
        return 0
    failures = parse_failures("".join(tail))
    blamed = culprits(failures)
    what = ("; ".join(f.describe() for f in blamed) if blamed
            else f"torchrun exited with code {rc} (no rank failure listed)")
    status = mark_crashed(out, what) if out is not None else None
    if status == "complete" and all(f.rank == 0 and f.exitcode == 1 for f in failures):
        return 1            # rank 0 finished and reported failed cases (--strict)
    others = [f for f in failures if f not in blamed]
    line = f"gpubench: error: {what}"
    if others:
        line += f"; stopped with it: {', '.join(f'rank {f.rank}' for f in others)}"
    if out is not None:
        line += f"; {out}: {status or 'not written'}"
    print(line, file=sys.stderr, flush=True)
    # A bad-input error on every failing rank is still bad input (exit 2), like one process.
    return 2 if blamed and all(f.exitcode == 2 for f in blamed) else 1
