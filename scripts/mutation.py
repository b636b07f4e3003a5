"""Mutation testing of gpubench's core modules: does the test suite notice when the code is wrong?

mutmut (pinned in the ``mutation`` extra of pyproject.toml) makes small changes to one
module's functions at a time (a ``<`` becomes ``<=``, a constant moves by one, an argument
goes missing, ...) and runs that module's tests against each change; a change no test
notices "survives", and a surviving mutant is either a gap in the tests or a change that
does not alter behaviour (an equivalent mutant).

Each module is run against the tests that are about it (``MODULES`` below), never the whole
suite, in a copy of the working tree under ``build/mutation/<module>/`` (mutmut writes its
mutated copies into ``mutants/`` there, so the working tree is never touched). Within those
tests mutmut further runs only the tests that call the mutated function.

    python scripts/mutation.py                      # every module in MODULES
    python scripts/mutation.py timing dtypes        # some of them
    python scripts/mutation.py --list               # the module -> tests mapping
    python scripts/mutation.py --report             # the scores of the last runs again

Output: per module, the mutants killed, survived, timed out and not reached by any test, and
the score killed / (killed + survived + no tests) (timeouts count as killed: the mutant hung
a test). ``build/mutation/summary.json`` keeps the figures; ``build/mutation/<module>/
survivors.txt`` the diff of every surviving mutant. See docs/mutation.md for how to read them.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "build" / "mutation"

# module name -> (source file, the test files that are about it)
MODULES: dict[str, tuple[str, list[str]]] = {
    "timing": ("src/gpubench/timing.py", ["tests/test_timing.py"]),
    "results": ("src/gpubench/results.py", ["tests/test_results.py", "tests/test_outfiles.py",
                                            "tests/test_import.py"]),
    "outfiles": ("src/gpubench/outfiles.py", ["tests/test_outfiles.py", "tests/test_results.py"]),
    "dtypes": ("src/gpubench/dtypes.py", ["tests/test_matmul.py"]),
    "estimate.memory": ("src/gpubench/estimate/memory.py",
                        ["tests/test_estimate_memory.py", "tests/test_estimate_zero.py",
                         "tests/test_guards_estimate.py"]),
    "estimate.perf": ("src/gpubench/estimate/perf.py",
                      ["tests/test_estimate.py", "tests/test_estimate_zero.py", "tests/test_estimate_memory.py",
                       "tests/test_estimate_features.py", "tests/test_estimate_comm.py",
                       "tests/test_guards_estimate.py"]),
    "estimate.comm": ("src/gpubench/estimate/comm.py",
                      ["tests/test_estimate_comm.py", "tests/test_estimate_zero.py",
                       "tests/test_guards_estimate.py"]),
    "estimate.cost": ("src/gpubench/estimate/cost.py",
                      ["tests/test_estimate_cost.py", "tests/test_guards_estimate.py"]),
    "compare": ("src/gpubench/compare.py",
                ["tests/test_compare.py", "tests/test_compare_noise.py", "tests/test_guards_compare.py",
                 "tests/test_baselines.py", "tests/test_import.py"]),
    "hub.validate": ("src/gpubench/hub/validate.py", ["tests/test_hub_validate.py"]),
}

# What the copy needs besides src/ and tests/ (mutmut runs the tests from inside mutants/).
ALSO_COPY = ["kernels", "results", "benchmarks"]

# mutmut's exit codes -> what they mean (mutmut.stats.status_by_exit_code, summarised)
KILLED, SURVIVED, TIMEOUT, NO_TESTS, OTHER = "killed", "survived", "timeout", "no tests", "other"


def _status(code) -> str:
    if code in (1, 3):
        return KILLED
    if code == 0:
        return SURVIVED
    if code in (36, 24, -24, 152, 255):
        return TIMEOUT
    if code in (5, 33):
        return NO_TESTS
    if code is None:
        return "not checked"
    return OTHER           # segfault, suspicious, skipped


def _setup_cfg(source: str, tests: list[str]) -> str:
    lines = ["[mutmut]", "source_paths = src", f"only_mutate = {source}",
             "pytest_add_cli_args_test_selection ="]
    lines += [f"    {t}" for t in tests]
    lines += ["pytest_add_cli_args =", "    -p", "    no:cacheprovider", "    -o", "    addopts=",
              "also_copy ="]
    lines += [f"    {p}" for p in ALSO_COPY]
    # torch is not fork-safe once it has run: fork every mutant from a clean server process.
    lines += ["process_isolation = forkserver", "use_git_change_detection = false", ""]
    return "\n".join(lines)


def prepare(name: str, resume: bool = False) -> Path:
    """A fresh copy of the tree for one module (``resume``: refresh the copy but keep mutmut's
    ``mutants/``, so mutants already judged are not run again and an interrupted run goes on)."""
    source, tests = MODULES[name]
    work = OUT / name
    if work.exists() and not resume:
        shutil.rmtree(work)
    work.mkdir(parents=True, exist_ok=True)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for d in ["src", "tests", *ALSO_COPY]:
        if (ROOT / d).exists():
            shutil.copytree(ROOT / d, work / d, ignore=ignore, dirs_exist_ok=True)
    shutil.copy2(ROOT / "pyproject.toml", work / "pyproject.toml")
    missing = [t for t in tests if not (work / t).exists()]
    (work / "setup.cfg").write_text(_setup_cfg(source, [t for t in tests if t not in missing]))
    if missing:
        print(f"{name}: test files not found, left out: {', '.join(missing)}")
    return work


def collect(name: str) -> dict:
    """Read mutmut's verdicts for one module from its .meta file."""
    source, _ = MODULES[name]
    work = OUT / name
    meta = work / "mutants" / (source + ".meta")
    counts = {KILLED: 0, SURVIVED: 0, TIMEOUT: 0, NO_TESTS: 0, OTHER: 0, "not checked": 0}
    survivors = []
    if meta.exists():
        data = json.loads(meta.read_text())
        for key, code in sorted(data.get("exit_code_by_key", {}).items()):
            s = _status(code)
            counts[s] = counts.get(s, 0) + 1
            if s in (SURVIVED, NO_TESTS):
                survivors.append((key, s))
    caught = counts[KILLED] + counts[TIMEOUT]
    judged = caught + counts[SURVIVED] + counts[NO_TESTS]
    return {"module": name, "source": source, **counts, "total": sum(counts.values()),
            "score": caught / judged if judged else None, "survivors": survivors}


def write_survivors(name: str, result: dict) -> None:
    """The diff of each surviving mutant, for reading (mutmut show, one process for all)."""
    work = OUT / name
    keys = [k for k, _ in result["survivors"]]
    if not keys:
        (work / "survivors.txt").write_text("no surviving mutants\n")
        return
    script = ("import sys\n"
              "from mutmut.mutation.diff_apply import get_diff_for_mutant\n"
              "for k in sys.argv[1:]:\n"
              "    print('=' * 80)\n"
              "    try:\n"
              "        print(get_diff_for_mutant(k))\n"
              "    except Exception as e:\n"
              "        print(k, 'diff unavailable:', e)\n")
    r = subprocess.run([sys.executable, "-c", script, *keys], cwd=work, capture_output=True, text=True)
    status = dict(result["survivors"])
    out = [f"# {result['module']}: {len(keys)} mutant(s) not killed "
           f"(see docs/mutation.md: equivalent, or a gap in the tests)\n"]
    chunks = r.stdout.split("=" * 80 + "\n")[1:]
    for key, chunk in zip(keys, chunks):
        out.append(f"## {key} [{status[key]}]\n{chunk}")
    if r.returncode:
        out.append(r.stderr[-2000:])
    (work / "survivors.txt").write_text("\n".join(out))


def run_module(name: str, max_children: int, timeout_s: float, resume: bool = False) -> dict:
    work = prepare(name, resume)
    log = work / "mutmut.log"
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH",)}
    env["CUDA_VISIBLE_DEVICES"] = env.get("MUTATION_CUDA_VISIBLE_DEVICES", "")   # CPU tests only
    env.setdefault("OMP_NUM_THREADS", "1")
    t0 = time.time()
    with open(log, "a" if resume else "w") as f:
        # Its own process group, so that a timeout ends mutmut's fork server and workers too.
        proc = subprocess.Popen([sys.executable, "-m", "mutmut", "run", "--max-children", str(max_children)],
                                cwd=work, stdout=f, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        try:
            rc = proc.wait(timeout=timeout_s)
        except (subprocess.TimeoutExpired, KeyboardInterrupt) as e:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
            if isinstance(e, KeyboardInterrupt):
                raise
            rc = "timeout"
    result = collect(name)
    result["wall_s"] = round(time.time() - t0, 1)
    result["mutmut_rc"] = rc
    write_survivors(name, result)
    return result


def report(results: list[dict]) -> str:
    head = f"{'module':18s} {'mutants':>7s} {'killed':>6s} {'survived':>8s} {'timeout':>7s} " \
           f"{'no tests':>8s} {'other':>5s} {'score':>6s} {'wall':>6s}"
    lines = [head, "-" * len(head)]
    for r in results:
        score = "n/a" if r["score"] is None else f"{100 * r['score']:.0f}%"
        lines.append(f"{r['module']:18s} {r['total']:7d} {r[KILLED]:6d} {r[SURVIVED]:8d} {r[TIMEOUT]:7d} "
                     f"{r[NO_TESTS]:8d} {r[OTHER]:5d} {score:>6s} {r.get('wall_s', 0):5.0f}s"
                     + ("" if r.get("mutmut_rc") in (0, None) else f"  (mutmut: {r['mutmut_rc']})")
                     + (f"  ({r['not checked']} not checked yet: --resume)" if r.get("not checked") else ""))
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("modules", nargs="*", help=f"any of: {', '.join(MODULES)} (default: all)")
    ap.add_argument("--max-children", type=int, default=max(1, (os.cpu_count() or 2)))
    ap.add_argument("--timeout", type=float, default=3600.0, help="seconds per module (default 3600)")
    ap.add_argument("--list", action="store_true", help="print the module -> tests mapping and stop")
    ap.add_argument("--report", action="store_true", help="print the last runs' scores and stop")
    ap.add_argument("--resume", action="store_true",
                    help="keep the mutants already judged (build/mutation/<module>/mutants) and go on")
    a = ap.parse_args(argv)
    unknown = [m for m in a.modules if m not in MODULES]
    if unknown:
        ap.error(f"unknown module(s) {', '.join(unknown)}: use {', '.join(MODULES)}")
    names = a.modules or list(MODULES)
    if a.list:
        for n in names:
            print(f"{n:18s} {MODULES[n][0]}\n{'':18s} <- {' '.join(MODULES[n][1])}")
        return 0
    summary_path = OUT / "summary.json"
    summary = json.loads(summary_path.read_text()) if summary_path.exists() else {}
    if a.report:
        print(report([summary[n] for n in names if n in summary]))
        return 0
    results = []
    for n in names:
        print(f"== {n}: {MODULES[n][0]} against {len(MODULES[n][1])} test file(s)", flush=True)
        r = run_module(n, a.max_children, a.timeout, a.resume)
        results.append(r)
        summary[n] = r
        OUT.mkdir(parents=True, exist_ok=True)
        summary_path.write_text(json.dumps(summary, indent=1))
        print(report([r]).splitlines()[-1], flush=True)
    print()
    print(report(results))
    print(f"\nsurviving mutants: {OUT}/<module>/survivors.txt; figures: {summary_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
