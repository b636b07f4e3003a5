"""Compile the attention kernels for a GPU without one, and report what the compiler made.

Triton ships ptxas, cuobjdump and nvdisasm, so every autotune config of every
attention kernel can be compiled for sm_90a (Hopper) or sm_80 (Ampere) on a machine
with no GPU. This reads what costs no device time: registers per thread, spills
(local memory), shared memory per program, and the matrix instructions in the SASS
(HGMMA is Hopper's warpgroup MMA, QGMMA its FP8 form; a kernel with only HMMA on
sm_90 is on the slower Ampere path). A config that does not fit (shared memory, registers) shows as such.

    python scripts/attention_compile_report.py [--arch 90] [--dtype bf16] [--json OUT]

It compiles the kernels' source directly (triton.compile on an ASTSource), with the
specialisations a contiguous (batch, heads, seq, head_dim) tensor gets at run time:
16-byte aligned pointers, unit head_dim stride, strides and lengths divisible by 16.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.pop("TRITON_INTERPRET", None)      # compile for real, even under the test env

import triton
from gpubench.kernels import attention as fa
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource

BIN = Path(triton.__file__).parent / "backends" / "nvidia" / "bin"
KERNELS = {"fwd": fa._fwd_kernel, "dkdv": fa._bwd_dkdv_kernel, "dq": fa._bwd_dq_kernel}
POINTERS = {"Q", "K", "V", "O", "DO", "DQ", "DK", "DV"}
FP32_POINTERS = {"LSE", "DELTA"}
SCALARS = {"qk_scale", "sm_scale", "v_scale"}


def build(kernel, dtype: str, head_dim: int, causal: bool, cfg: triton.Config, arch: int):
    fn = kernel.fn
    signature, constexprs, attrs = {}, {}, {}
    fp8 = dtype == "fp8"
    for i, name in enumerate(fn.arg_names):
        if name in POINTERS:
            # FP8 attention reads e4m3 q, k, v and writes a bf16 output.
            signature[name] = ("*bf16" if name == "O" else "*fp8e4nv") if fp8 else f"*{dtype}"
            attrs[(i,)] = [["tt.divisibility", 16]]
        elif name in FP32_POINTERS:
            signature[name] = "*fp32"
            attrs[(i,)] = [["tt.divisibility", 16]]
        elif name in SCALARS:
            signature[name] = "fp32"
        elif name.startswith("stride_") and name.endswith("d"):
            signature[name] = "constexpr"          # unit stride: Triton specialises 1
            constexprs[name] = 1
        elif name.startswith("stride_") or name in ("N_Q", "N_K"):
            signature[name] = "i32"
            attrs[(i,)] = [["tt.divisibility", 16]]
        elif name == "H":
            signature[name] = "i32"
        else:
            signature[name] = "constexpr"
            constexprs[name] = {"HEAD_DIM": head_dim, "CAUSAL": causal, "FP8": fp8,
                                "DOT_PRECISION": fa._dot_precision(None)}.get(name, cfg.kwargs.get(name))
    src = ASTSource(fn=fn, signature=signature, constexprs=constexprs, attrs=attrs)
    target = GPUTarget("cuda", arch, 32)
    return triton.compile(src, target=target,
                          options={"num_warps": cfg.num_warps, "num_stages": cfg.num_stages})


def resources(cubin: bytes) -> dict:
    with tempfile.NamedTemporaryFile(suffix=".cubin") as f:
        f.write(cubin)
        f.flush()
        usage = subprocess.run([BIN / "cuobjdump", "--dump-resource-usage", f.name],
                               capture_output=True, text=True, check=False).stdout
        sass = subprocess.run([BIN / "cuobjdump", "-sass", f.name], capture_output=True, text=True, check=False).stdout
    get = {k: int(v) for k, v in re.findall(r"(REG|STACK|SHARED|LOCAL):(\d+)", usage)}
    return {"regs": get.get("REG"), "stack_bytes": get.get("STACK"), "local_bytes": get.get("LOCAL"),
            "static_shared_bytes": get.get("SHARED"),
            "hgmma": len(re.findall(r"\b[HQ]GMMA\b", sass)), "hmma": len(re.findall(r"\bHMMA\b", sass)),
            "qgmma": len(re.findall(r"\bQGMMA\b", sass)),
            "ldl_stl": len(re.findall(r"\b(?:LDL|STL)\b", sass))}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--arch", type=int, default=90, help="compute capability ×10 (90 = sm_90a, 80 = sm_80)")
    ap.add_argument("--dtype", default="bf16", choices=["bf16", "fp16", "fp8"],
                    help="fp8: e4m3 inputs, forward kernel only")
    ap.add_argument("--head-dim", type=int, nargs="*", default=[64, 128])
    ap.add_argument("--causal", choices=["both", "yes", "no"], default="both")
    ap.add_argument("--tuned-only", action="store_true", help="skip the configs the autotuner prunes")
    ap.add_argument("--max-configs", type=int, help="at most this many configs per kernel and shape")
    ap.add_argument("--json", type=Path, help="write the rows here too")
    args = ap.parse_args()
    smem_limit = {80: 163 * 1024, 86: 99 * 1024, 89: 99 * 1024, 90: 227 * 1024}.get(args.arch, 99 * 1024)

    rows = []
    kernels = {"fwd": KERNELS["fwd"]} if args.dtype == "fp8" else KERNELS
    for kname, kernel in kernels.items():
        for head_dim in args.head_dim:
            for causal in {"both": (False, True), "yes": (True,), "no": (False,)}[args.causal]:
                tuned = kernel.early_config_prune(kernel.configs, {}, HEAD_DIM=head_dim)
                chosen = tuned if args.tuned_only else kernel.configs
                for cfg in chosen[:args.max_configs]:
                    row = {"kernel": kname, "head_dim": head_dim, "causal": causal,
                           "block_m": cfg.kwargs["BLOCK_M"], "block_n": cfg.kwargs["BLOCK_N"],
                           "warps": cfg.num_warps, "stages": cfg.num_stages,
                           "autotuned": cfg in tuned}
                    t0 = time.perf_counter()
                    try:
                        compiled = build(kernel, args.dtype, head_dim, causal, cfg, args.arch)
                        shared = compiled.metadata.shared
                        row.update(resources(compiled.asm["cubin"]), shared_bytes=shared,
                                   fits=shared <= smem_limit)
                    except Exception as e:  # noqa: BLE001 - a config that will not compile is a finding
                        row.update(error=f"{type(e).__name__}: {str(e).splitlines()[0][:120]}")
                    row["compile_s"] = round(time.perf_counter() - t0, 2)
                    rows.append(row)
                    print(_line(row), flush=True)
    if args.json:
        args.json.write_text(json.dumps({"arch": args.arch, "dtype": args.dtype,
                                         "triton": triton.__version__, "rows": rows}, indent=1))
    bad = [r for r in rows if "error" in r]
    return 1 if len(bad) == len(rows) else 0


def _line(r: dict) -> str:
    head = (f"{r['kernel']:5} d={r['head_dim']:<3} {'causal' if r['causal'] else 'full  '} "
            f"{r['block_m']:>3}x{r['block_n']:<3} w{r['warps']} s{r['stages']} "
            f"{'tuned ' if r['autotuned'] else 'pruned'}")
    if "error" in r:
        return f"{head}  ERROR {r['error']}"
    return (f"{head}  regs {r['regs']:>3}  spill(LDL/STL) {r['ldl_stl']:>3}  "
            f"smem {r['shared_bytes'] / 1024:6.1f} KiB{'' if r['fits'] else ' (too big)'}  "
            f"GMMA {r['hgmma']:>3} (FP8 {r['qgmma']:>2}) HMMA {r['hmma']:>4}  {r['compile_s']:.1f}s")


if __name__ == "__main__":
    sys.exit(main())
