#!/usr/bin/env python3
"""gpubench's all-reduce against nccl-tests' all_reduce_perf at one size, on this node.

    python scripts/comm_vs_nccl_tests.py [--gpus N] [--size 1G] [--dtype fp32|bf16]
                                         [--nccl-tests DIR] [--out DIR]

Runs ``gpubench run --benchmark all_reduce --nproc N`` (torchrun, one rank per GPU, NCCL)
and ``all_reduce_perf -b S -e S -g N`` (one process driving N GPUs), both in place, and
prints both busbw figures and their ratio; the target is within 5% (exit code 1 outside).
nccl-tests comes from --nccl-tests DIR (its build/ folder or the folder holding
all_reduce_perf), $NCCL_TESTS, or PATH; with none of those and `git`, `make` and `nvcc`
available it is cloned and built into --out (needs network access and NCCL's headers:
set NCCL_HOME if they are not in the CUDA toolkit).

nccl-tests columns (in place: the 2nd group): time (us), algbw, busbw (GB/s), #wrong.
Set NCCL_ALGO=Ring (or NVLS) in the environment to compare one algorithm; both runs
inherit it. GPUBENCH_NCCL_DEBUG=1 records the algorithm NCCL chose in gpubench's file.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

NCCL_TYPES = {"fp32": "float", "bf16": "bfloat16"}
TOLERANCE = 0.05


def parse_size(text: str) -> int:
    m = re.fullmatch(r"(\d+)([KMG]?)", text.strip().upper())
    if not m:
        raise SystemExit(f"--size {text!r}: use bytes, e.g. 1G or 268435456")
    return int(m.group(1)) * {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30}[m.group(2)]


def find_nccl_tests(hint: str | None, workdir: Path) -> Path:
    for base in filter(None, [hint, os.environ.get("NCCL_TESTS")]):
        for cand in (Path(base) / "all_reduce_perf", Path(base) / "build" / "all_reduce_perf"):
            if cand.is_file():
                return cand
    on_path = shutil.which("all_reduce_perf")
    if on_path:
        return Path(on_path)
    if not all(shutil.which(t) for t in ("git", "make", "nvcc")):
        raise SystemExit("all_reduce_perf not found: pass --nccl-tests DIR or set NCCL_TESTS "
                         "(https://github.com/NVIDIA/nccl-tests, `make`)")
    src = workdir / "nccl-tests"
    if not src.exists():
        subprocess.run(["git", "clone", "--depth", "1", "https://github.com/NVIDIA/nccl-tests", str(src)],
                       check=True)
    make = ["make", "-C", str(src), f"-j{os.cpu_count() or 4}"]
    if os.environ.get("NCCL_HOME"):
        make.append(f"NCCL_HOME={os.environ['NCCL_HOME']}")
    subprocess.run(make, check=True)
    return src / "build" / "all_reduce_perf"


def nccl_tests_busbw(exe: Path, size: int, gpus: int, dtype: str, log: Path) -> dict:
    cmd = [str(exe), "-b", str(size), "-e", str(size), "-g", str(gpus), "-d", NCCL_TYPES[dtype],
           "-w", "20", "-n", "100", "-c", "1"]
    print("$", " ".join(cmd), flush=True)
    p = subprocess.run(cmd, check=False, capture_output=True, text=True)
    log.write_text(p.stdout + p.stderr)
    if p.returncode != 0:
        raise SystemExit(f"all_reduce_perf failed ({p.returncode}); see {log}")
    for line in p.stdout.splitlines():
        cols = line.split()
        if len(cols) >= 13 and cols[0] == str(size):
            # size count type redop root | time algbw busbw #wrong (out of place) | the same in place
            return {"time_us": float(cols[9]), "algbw_gbps": float(cols[10]), "busbw_gbps": float(cols[11]),
                    "wrong": cols[12], "out_of_place_busbw_gbps": float(cols[7])}
    raise SystemExit(f"no {size}-byte row in all_reduce_perf's output; see {log}")


def gpubench_busbw(size: int, gpus: int, dtype: str, out: Path) -> dict:
    cmd = [sys.executable, "-m", "gpubench", "run", "--benchmark", "all_reduce", "--size", str(size),
           "--dtype", dtype, "--nproc", str(gpus), "--device", "cuda", "--out", str(out), "--force"]
    print("$", " ".join(cmd), flush=True)
    p = subprocess.run(cmd, check=False)
    if p.returncode != 0:
        raise SystemExit(f"gpubench failed ({p.returncode})")
    rec = json.loads(out.read_text())["records"][0]
    if rec["status"] != "ok":
        raise SystemExit(f"gpubench all_reduce {rec['status']}: {rec.get('error') or rec.get('reason')}")
    m = rec["metrics"]
    return {"time_us": m["latency_us"], "algbw_gbps": m["algbw_gbps"], "busbw_gbps": m["busbw_gbps"],
            "algo": rec["work"].get("nccl_algo"), "proto": rec["work"].get("nccl_proto")}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--gpus", type=int, default=None, help="GPUs (ranks) on this node; default all")
    ap.add_argument("--size", default="1G")
    ap.add_argument("--dtype", choices=sorted(NCCL_TYPES), default="fp32")
    ap.add_argument("--nccl-tests", help="nccl-tests checkout or build folder")
    ap.add_argument("--out", type=Path, help="folder for logs and the result file")
    args = ap.parse_args()
    import torch

    gpus = args.gpus or torch.cuda.device_count()
    if gpus < 2:
        raise SystemExit(f"needs at least 2 GPUs on this node ({gpus} visible)")
    size = parse_size(args.size)
    out = args.out or Path(tempfile.mkdtemp(prefix="gpubench-vs-nccl-tests-"))
    out.mkdir(parents=True, exist_ok=True)
    exe = find_nccl_tests(args.nccl_tests, out)
    ours = gpubench_busbw(size, gpus, args.dtype, out / "gpubench-all_reduce.json")
    theirs = nccl_tests_busbw(exe, size, gpus, args.dtype, out / "all_reduce_perf.log")
    ratio = ours["busbw_gbps"] / theirs["busbw_gbps"]
    print(f"\nall_reduce {args.dtype} {size} B in place on {gpus} × {torch.cuda.get_device_name(0)}, "
          f"NCCL {'.'.join(map(str, torch.cuda.nccl.version()))} (torch), NCCL_ALGO={os.environ.get('NCCL_ALGO', 'auto')}")
    print(f"{'':22}{'time us':>10}{'algbw GB/s':>12}{'busbw GB/s':>12}")
    print(f"{'gpubench':22}{ours['time_us']:>10.1f}{ours['algbw_gbps']:>12.2f}{ours['busbw_gbps']:>12.2f}"
          + (f"   (NCCL chose {ours['algo']}/{ours['proto']})" if ours.get("algo") else ""))
    print(f"{'nccl-tests in-place':22}{theirs['time_us']:>10.1f}{theirs['algbw_gbps']:>12.2f}"
          f"{theirs['busbw_gbps']:>12.2f}   (#wrong {theirs['wrong']}; out of place "
          f"{theirs['out_of_place_busbw_gbps']:.2f})")
    ok = abs(ratio - 1) <= TOLERANCE
    print(f"ratio gpubench / nccl-tests busbw: {ratio:.3f} ({'within' if ok else 'OUTSIDE'} "
          f"{TOLERANCE:.0%}); files in {out}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
