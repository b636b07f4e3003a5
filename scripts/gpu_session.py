"""One short GPU session that is sure to bring something back: stages in order of value, each in
its own time box, inside one call's budget; a summary of every stage and the headline figures
against their targets; everything packed into at most three files.

    OUT=/some/dir bash scripts/gpu_session.sh            # on the GPU machine, repository root
    OUT=/some/dir bash scripts/gpu_session.sh --dry-run  # the same stages on the CPU, tiny sizes

What comes back in $OUT: ``summary.json`` (per stage: status, seconds, command, result files;
the headline figures with their targets), ``session.log`` (the same, readable) and
``session.tar.gz`` (every result file and log). A lent machine returns at most 8 files of
16 MiB each, so nothing else is left there.

A stage that runs out of its box is sent SIGINT, as Ctrl-C would: ``gpubench run`` keeps every
record it finished and marks its file ``interrupted``; after a grace period it is killed. A
stage whose turn comes with too little time left is ``skipped``. Stages never share a result
file, so a stage that failed costs only itself.

Copy the result files from the tarball into ``results/`` afterwards (they carry their
environment fingerprint).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

GRACE_S = 20            # after SIGINT: time to write the interrupted file
MIN_STAGE_S = 15        # a stage with less than this left is skipped, not started

# Targets for the first H100/H200 runs (README, "Targets"), by headline.
TARGETS = {
    "bf16_best_tflops": (">=", 760.0, "TFLOP/s"),
    "fp8_over_bf16": (">=", 1.7, "×"),
    "large_shape_cov": ("<=", 0.02, "CoV"),
    "triton_over_flash_fwd": (">=", 1.0, "×"),
    "triton_over_flash_fwd_bwd": (">=", 0.9, "×"),
    "mfu_1p3b_bf16": (None, None, "fraction of the dense bf16 peak"),
    "selfcheck_median_abs_error": ("<=", 0.05, "fraction"),
}


@dataclass
class Stage:
    name: str
    args: list[str]                  # gpubench arguments; "{out}" is the stage's result file
    box_s: float                     # on a GPU
    dry_args: list[str] | None = None
    dry_box_s: float | None = None
    result: bool = True              # writes a result file
    status: str = "pending"
    seconds: float = 0.0
    rc: int | None = None
    files: list[str] = field(default_factory=list)


def stages() -> list[Stage]:
    """In order of value: what must come back first comes first."""
    return [
        Stage("environment", ["env", "--json"], 30, result=False, dry_box_s=30),
        Stage("smoke", ["run", "--suite", "smoke", "--out", "{out}"], 90,
              ["run", "--suite", "smoke", "--device", "cpu", "--quick", "--out", "{out}"], 40),
        Stage("mixed-precision", ["run", "--suite", "mixed-precision", "--selfcheck", "--out", "{out}"], 150,
              ["run", "--suite", "mixed-precision", "--device", "cpu", "--quick", "--dtype", "fp32",
               "--selfcheck", "--out", "{out}"], 60),
        Stage("attention-long", ["run", "--suite", "attention-long", "--out", "{out}"], 75,
              ["run", "--suite", "attention-long", "--device", "cpu", "--quick", "--out", "{out}"], 20),
        Stage("step-1.3b", ["run", "--suite", "step-1.3b", "--selfcheck", "--out", "{out}"], 75,
              ["run", "--suite", "step-1.3b", "--device", "cpu", "--quick", "--selfcheck", "--out", "{out}"], 40),
        Stage("mamf", ["run", "--suite", "mamf", "--budget", "6", "--out", "{out}"], 60,
              ["run", "--suite", "mamf", "--device", "cpu", "--budget", "1", "--out", "{out}"], 20),
        # Whatever time is left: the rest of the transformer suite (it stops cleanly at its box).
        Stage("transformer", ["run", "--suite", "transformer", "--out", "{out}"], 600,
              ["run", "--suite", "transformer", "--device", "cpu", "--quick", "--out", "{out}"], 8),
    ]


def run_stage(stage: Stage, cmd: list[str], box: float, work: Path, env: dict) -> None:
    log_out, log_err = work / f"{stage.name}.txt", work / f"{stage.name}.err"
    start = time.monotonic()
    with open(log_out, "w") as out, open(log_err, "w") as err:
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, env=env, start_new_session=True)
        try:
            stage.rc = proc.wait(timeout=box)
            stage.status = "ok" if stage.rc == 0 else "failed"
        except subprocess.TimeoutExpired:
            stage.status = "timeout"
            os.killpg(proc.pid, signal.SIGINT)      # gpubench run keeps its records, file "interrupted"
            try:
                stage.rc = proc.wait(timeout=GRACE_S)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                stage.rc = proc.wait()
    stage.seconds = time.monotonic() - start
    stage.files = [p.name for p in (log_out, log_err)]


def headlines(work: Path) -> dict:
    """The figures the targets are about, from whatever result files came back."""
    from gpubench.results import load_run

    out: dict = {}
    records = []
    for f in sorted(work.glob("*.json")):
        try:
            run = load_run(f)
        except Exception:           # a stage killed mid-write: its file is what it is
            continue
        records += [(f.name, r) for r in run.records if r.status == "ok"]

    def best(dtype_prefix):
        cands = [(r.metrics.get("tflops") or 0.0, name, r) for name, r in records
                 if r.benchmark in ("matmul", "mamf") and str(r.params.get("dtype", "")).startswith(dtype_prefix)
                 and str(r.params.get("search", "")) != "mamf"]
        return max(cands, key=lambda c: c[0]) if cands else None

    bf16, fp8 = best("bf16"), best("fp8")
    if bf16:
        out["bf16_best_tflops"] = {"value": bf16[0], "source": f"{bf16[1]} {bf16[2].case_id}"}
    if bf16 and fp8 and bf16[0]:
        out["fp8_over_bf16"] = {"value": fp8[0] / bf16[0], "source": f"{fp8[1]} {fp8[2].case_id}"}
    covs = [((r.timing or {}).get("cov"), name, r) for name, r in records if r.benchmark == "matmul"
            and all(isinstance(r.params.get(d), int) for d in "mnk")
            and r.params["m"] * r.params["n"] * r.params["k"] >= 8192 ** 3]
    covs = [c for c in covs if c[0] is not None]
    if covs:
        worst = max(covs, key=lambda c: c[0])
        out["large_shape_cov"] = {"value": worst[0], "source": f"{worst[1]} {worst[2].case_id} (worst of {len(covs)})"}
    for direction, key in (("fwd", "triton_over_flash_fwd"), ("fwd+bwd", "triton_over_flash_fwd_bwd")):
        by_case: dict = {}
        for name, r in records:
            p = r.params
            if (r.benchmark == "attention" and p.get("direction") == direction and p.get("dtype") == "bf16"
                    and p.get("head_dim") == 128 and (p.get("seq") or 0) >= 4096):
                case = (p["batch"], p["heads"], p["seq"], p["causal"])
                by_case.setdefault(case, {})[p.get("impl")] = r.metrics.get("tflops")
        ratios = sorted(v["triton"] / v["sdpa-flash"] for v in by_case.values()
                        if v.get("triton") and v.get("sdpa-flash"))
        if ratios:
            out[key] = {"value": ratios[len(ratios) // 2], "source": f"median over {len(ratios)} case(s)",
                        "min": ratios[0]}
    steps = [(r.metrics.get("mfu"), name, r) for name, r in records if r.benchmark == "transformer-step"
             and r.params.get("model") == "1.3b" and r.params.get("dtype") == "bf16"
             and r.params.get("checkpointing") == "none" and not r.params.get("compile")
             and r.metrics.get("mfu") is not None]
    if steps:
        mfu = max(steps, key=lambda c: c[0])
        out["mfu_1p3b_bf16"] = {"value": mfu[0], "source": f"{mfu[1]} {mfu[2].case_id}"}
    return out


def selfcheck_headline(work: Path, env: dict, py: str) -> dict | None:
    files = [str(f) for f in sorted(work.glob("*.json")) if f.name.startswith(("mixed-precision", "step-1.3b"))]
    if not files:
        return None
    errors = []
    for f in files:
        proc = subprocess.run([py, "-m", "gpubench", "selfcheck", f, "--json"], capture_output=True,
                              text=True, env=env, timeout=120)
        if proc.returncode == 0:
            s = json.loads(proc.stdout)["summary"]
            errors.append((s["median_abs_error"], Path(f).name, s["cases"]))
    if not errors:
        return None
    worst = max(errors)
    return {"value": worst[0], "source": f"{worst[1]}: median over {worst[2]} step(s) (worst file of "
                                         f"{len(errors)})"}


def judge(figures: dict, dry: bool) -> dict:
    for key, fig in figures.items():
        op, target, unit = TARGETS[key]
        fig.update(unit=unit, target=None if op is None else f"{op} {target:g}")
        if op is None or dry:
            fig["met"] = None       # a CPU dry run is no test of a GPU target
        else:
            fig["met"] = fig["value"] >= target if op == ">=" else fig["value"] <= target
    return figures


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dry-run", action="store_true",
                    default=os.environ.get("GPUBENCH_SESSION_DRY_RUN") == "1",
                    help="every stage on the CPU with tiny sizes (also GPUBENCH_SESSION_DRY_RUN=1)")
    ap.add_argument("--budget", type=float, default=None,
                    help="seconds for the whole session (default 480 on a GPU, 300 dry)")
    ap.add_argument("--only", help="comma-separated stage names to run (the others are skipped)")
    ap.add_argument("--box", action="append", default=[], metavar="STAGE=SECONDS",
                    help="override a stage's time box (repeatable)")
    args = ap.parse_args(argv)
    # Never over another session's files (or anything else): a fresh directory without $OUT, and
    # in $OUT none of the names this session writes.
    out = Path(os.environ.get("OUT") or tempfile.mkdtemp(prefix="gpubench-session-")).resolve()
    out.mkdir(parents=True, exist_ok=True)
    taken = [n for n in ("session", "session.log", "session.tar.gz", "summary.json") if (out / n).exists()]
    if taken:
        print(f"gpu_session: error: {out} already holds {', '.join(taken)}; give an empty OUT", file=sys.stderr)
        return 2
    work = out / "session"
    work.mkdir()
    py = os.environ.get("PY") or sys.executable
    env = dict(os.environ)
    if args.dry_run:
        env["CUDA_VISIBLE_DEVICES"] = ""
    budget = args.budget or (300.0 if args.dry_run else 480.0)
    boxes = {}
    for item in args.box:
        name, _, sec = item.partition("=")
        boxes[name] = float(sec)
    only = set(args.only.split(",")) if args.only else None
    deadline = time.monotonic() + budget
    t0 = time.monotonic()
    plan = stages()
    lines = [f"gpubench session ({'dry run on the CPU' if args.dry_run else 'GPU'}), budget {budget:.0f} s"]

    if not args.dry_run:
        # The project on this machine (no network: no dependencies fetched).
        subprocess.run([py, "-m", "pip", "install", "--no-deps", "--no-build-isolation", "-e", "."],
                       stdout=open(work / "install.log", "w"), stderr=subprocess.STDOUT, timeout=120)
        with open(work / "nvidia-smi.txt", "w") as f:
            subprocess.run(["nvidia-smi"], stdout=f, stderr=subprocess.STDOUT, timeout=30)

    for stage in plan:
        left = deadline - time.monotonic()
        if only is not None and stage.name not in only:
            stage.status = "skipped"
            continue
        if left < MIN_STAGE_S:
            stage.status = "skipped"
            continue
        gp_args = stage.dry_args if args.dry_run and stage.dry_args else stage.args
        box = boxes.get(stage.name) or ((stage.dry_box_s or stage.box_s) if args.dry_run else stage.box_s)
        # Leave the grace period inside the budget: a timed-out stage still gets to write its file.
        box = min(box, left - GRACE_S) if left > 2 * GRACE_S else left / 2
        result = work / f"{stage.name}.json"
        cmd = [py, "-m", "gpubench"] + [str(result) if a == "{out}" else a for a in gp_args]
        run_stage(stage, cmd, box, work, env)
        if stage.result and result.exists():
            stage.files.append(result.name)
        lines.append(f"{stage.name:16s} {stage.status:8s} {stage.seconds:6.1f} s  rc={stage.rc}")

    figures = headlines(work)
    sc = selfcheck_headline(work, env, py)
    if sc:
        figures["selfcheck_median_abs_error"] = sc
    figures = judge(figures, args.dry_run)
    summary = {
        "kind": "gpubench-session", "dry_run": args.dry_run, "budget_s": budget,
        "seconds": time.monotonic() - t0,
        "stages": [{"name": s.name, "status": s.status, "seconds": round(s.seconds, 2), "rc": s.rc,
                    "box_s": boxes.get(s.name) or ((s.dry_box_s or s.box_s) if args.dry_run else s.box_s),
                    "command": ["gpubench"] + (s.dry_args if args.dry_run and s.dry_args else s.args),
                    "files": [f"session.tar.gz:session/{f}" for f in s.files]} for s in plan],
        "headlines": figures,
    }
    for key, fig in figures.items():
        met = {True: "met", False: "MISSED", None: "—"}[fig["met"]]
        lines.append(f"{key:28s} {fig['value']:.4g} {fig['unit']}  target {fig['target'] or '—'}  {met}")
    (work / "session.log").write_text("\n".join(lines) + "\n")
    with tarfile.open(out / "session.tar.gz", "w:gz") as tar:
        tar.add(work, arcname="session")
    shutil.copy(work / "session.log", out / "session.log")
    shutil.rmtree(work)
    (out / "summary.json").write_text(json.dumps(summary, indent=2, default=float) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
