"""Flash attention in Triton: forward and a FlashAttention-2 style backward.

``flash_attention(q, k, v, causal=False, sm_scale=None)`` takes (batch, heads,
seq, head_dim) tensors in fp16, bf16 or fp32 (fp32 is for testing: its products
run in IEEE fp32, not TF32) and is differentiable. ``flash_attention_fp8`` runs
the same forward on e4m3 inputs with per-tensor scales. ``attention_reference``
is the float64 definition every test and benchmark checks them against.

The algorithm (Dao 2023, "FlashAttention-2"): a program owns BLOCK_M query rows
and streams K and V through in BLOCK_N tiles, keeping a running row maximum m,
a running sum l and an unnormalised output in registers, so the N×N score matrix
never reaches memory. Scores are kept in base 2 (the scale folds in log2 e) so
each exponential is one ``exp2``. The forward stores the log-sum-exp per row;
the backward recomputes P = exp2(S - lse) tile by tile instead of storing it.

Masking costs a compare and a select on every score, so each loop is split into
an unmasked part and a masked part: the diagonal tiles of a causal mask and the
ragged last tile of a sequence that is not a multiple of the block size. Interior
tiles, almost all of the work at long sequences, run mask-free.

Causal means query i sees keys j <= i (the upper-left aligned mask of
``torch.nn.functional.scaled_dot_product_attention(is_causal=True)``), for any
query and key lengths.
"""

from __future__ import annotations

import math
import os

import torch
import triton
import triton.language as tl

__all__ = [
    "SUPPORTED_DTYPES",
    "SUPPORTED_HEAD_DIMS",
    "attention_reference",
    "flash_attention",
    "flash_attention_fp8",
    "quantize_fp8",
]

SUPPORTED_HEAD_DIMS = (16, 32, 64, 128)
SUPPORTED_DTYPES = (torch.float16, torch.bfloat16, torch.float32)
LOG2E = 1.4426950408889634
FP8_DTYPE = torch.float8_e4m3fn

# The interpreter runs one program at a time on the CPU: one small tile shape,
# nothing to tune. Read once, as Triton itself does when it wraps the kernels.
INTERPRET = os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")


def _configs(shapes: list[tuple[int, int, int, int]]) -> list[triton.Config]:
    """(BLOCK_M, BLOCK_N, warps, stages) tuples as autotune configs.

    BLOCK_M counts query rows and BLOCK_N keys, in every kernel.
    """
    if INTERPRET:
        return [triton.Config({"BLOCK_M": 16, "BLOCK_N": 16}, num_warps=4, num_stages=1)]
    return [triton.Config({"BLOCK_M": m, "BLOCK_N": n}, num_warps=w, num_stages=s)
            for m, n, w, s in shapes]


def _pruner(live_values, budget: int, spills=()):
    """Drop configs whose tiles cannot stay in registers.

    ``live_values(m, n, d)`` estimates the 32-bit values a program keeps live
    (fp32 accumulators and score tiles, 16-bit operand tiles at half a register
    each); divided over the program's threads it must stay under ``budget``. The
    budgets come from compiling every config for sm_90a and sm_80 and reading the
    spills (scripts/attention_compile_report.py; kernels/NOTES-attention.md): a
    spilled config cannot win, and compiling it costs seconds per autotune key.
    """
    def prune(configs, named_args, **kwargs):
        d = kwargs.get("HEAD_DIM", named_args.get("HEAD_DIM", 64))
        kept = [c for c in configs
                if live_values(c.kwargs["BLOCK_M"], c.kwargs["BLOCK_N"], d) / (32 * c.num_warps) <= budget
                and (c.kwargs["BLOCK_M"], c.kwargs["BLOCK_N"], c.num_warps, d) not in spills]
        return kept or configs[:1]
    return {"early_config_prune": prune}


# acc (m·d) + scores (m·n) in fp32, q (m·d) in 16 bits
FWD_PRUNE = _pruner(lambda m, n, d: 1.5 * m * d + m * n, 160)
# dk, dv (2·n·d) in fp32, k and v (n·d) in 16 bits, Pᵀ (m·n). Also pruned: the (BLOCK_M, BLOCK_N,
# warps, head_dim) found spilling where the estimate sits on the budget: 32×64 with 4 warps at
# d=128 spills under triton 3.6 (sm_90a), while 32×128 with 8 warps, the same estimate, does not.
DKDV_PRUNE = _pruner(lambda m, n, d: 3 * n * d + m * n, 208, spills={(32, 64, 4, 128)})
# dq (m·d) in fp32, q and do (m·d) in 16 bits, P and dP (2·m·n)
DQ_PRUNE = _pruner(lambda m, n, d: 2 * m * d + 2 * m * n, 192)

# Forward: BLOCK_M query rows per program, BLOCK_N keys per tile (BLOCK_M % BLOCK_N == 0,
# so the causal diagonal starts on a tile boundary). Shapes after the Triton tutorial and
# FlashAttention-2's own choices for Ampere and Hopper.
FWD_CONFIGS = _configs([(128, 64, 4, 3), (128, 64, 8, 3), (128, 128, 8, 2), (128, 32, 4, 4),
                        (128, 32, 8, 3), (64, 64, 4, 3), (64, 32, 4, 4)])
# dK/dV: BLOCK_M query rows per tile, BLOCK_N keys per program (BLOCK_N % BLOCK_M == 0).
DKDV_CONFIGS = _configs([(32, 128, 4, 3), (32, 128, 8, 3), (64, 128, 8, 3), (32, 64, 4, 3),
                         (64, 64, 4, 3), (32, 128, 4, 4), (16, 64, 4, 4)])
# dQ: BLOCK_M query rows per program, BLOCK_N keys per tile (BLOCK_M % BLOCK_N == 0).
DQ_CONFIGS = _configs([(128, 32, 4, 3), (128, 32, 8, 3), (128, 64, 8, 3), (64, 64, 4, 3),
                       (64, 32, 4, 3), (128, 64, 4, 3)])


# --------------------------------------------------------------------------- forward

@triton.jit
def _fwd_tiles(acc, l_i, m_i, q, k_base, v_base, stride_kn, stride_kd, stride_vn, stride_vd,
               offs_m, offs_d, lo, hi, N_K, qk_scale,
               MASKED: tl.constexpr, CAUSAL: tl.constexpr, DOT_PRECISION: tl.constexpr,
               FP8: tl.constexpr, BLOCK_N: tl.constexpr):
    for start_n in range(lo, hi, BLOCK_N):
        offs_n = start_n + tl.arange(0, BLOCK_N)
        kt_ptrs = k_base + offs_n[None, :] * stride_kn + offs_d[:, None] * stride_kd
        v_ptrs = v_base + offs_n[:, None] * stride_vn + offs_d[None, :] * stride_vd
        if MASKED:
            kt = tl.load(kt_ptrs, mask=offs_n[None, :] < N_K, other=0.0)
        else:
            kt = tl.load(kt_ptrs)
        qk = tl.dot(q, kt, input_precision=DOT_PRECISION)
        if MASKED:
            keep = offs_n[None, :] < N_K
            if CAUSAL:
                keep = keep & (offs_m[:, None] >= offs_n[None, :])
            qk = tl.where(keep, qk, float("-inf"))
        m_new = tl.maximum(m_i, tl.max(qk, 1) * qk_scale)
        p = tl.exp2(qk * qk_scale - m_new[:, None])
        alpha = tl.exp2(m_i - m_new)
        acc = acc * alpha[:, None]
        if MASKED:
            v = tl.load(v_ptrs, mask=offs_n[:, None] < N_K, other=0.0)
        else:
            v = tl.load(v_ptrs)
        p_low = p.to(v.dtype)
        if FP8:
            # Normalise by the P that was multiplied: e4m3 keeps 3 mantissa bits, and a
            # sum of unrounded P would bias every row by the rounding's mean error.
            l_i = l_i * alpha + tl.sum(p_low.to(tl.float32), 1)
        else:
            l_i = l_i * alpha + tl.sum(p, 1)
        acc = tl.dot(p_low, v, acc, input_precision=DOT_PRECISION)
        m_i = m_new
    return acc, l_i, m_i


@triton.autotune(configs=FWD_CONFIGS, key=["N_Q", "N_K", "HEAD_DIM", "CAUSAL"], prune_configs_by=FWD_PRUNE)
@triton.jit
def _fwd_kernel(Q, K, V, O, LSE, qk_scale, v_scale,
                stride_qz, stride_qh, stride_qm, stride_qd,
                stride_kz, stride_kh, stride_kn, stride_kd,
                stride_vz, stride_vh, stride_vn, stride_vd,
                stride_oz, stride_oh, stride_om, stride_od,
                H, N_Q, N_K,
                HEAD_DIM: tl.constexpr, CAUSAL: tl.constexpr, DOT_PRECISION: tl.constexpr,
                FP8: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr):
    tl.static_assert(BLOCK_M % BLOCK_N == 0)
    start_m = tl.program_id(0) * BLOCK_M
    off_hz = tl.program_id(1)
    off_z = (off_hz // H).to(tl.int64)
    off_h = (off_hz % H).to(tl.int64)
    q_base = Q + off_z * stride_qz + off_h * stride_qh
    k_base = K + off_z * stride_kz + off_h * stride_kh
    v_base = V + off_z * stride_vz + off_h * stride_vh
    o_base = O + off_z * stride_oz + off_h * stride_oh

    offs_m = start_m + tl.arange(0, BLOCK_M)
    offs_d = tl.arange(0, HEAD_DIM)
    row_ok = offs_m < N_Q
    q = tl.load(q_base + offs_m[:, None] * stride_qm + offs_d[None, :] * stride_qd,
                mask=row_ok[:, None], other=0.0)
    m_i = tl.full([BLOCK_M], float("-inf"), tl.float32)
    l_i = tl.zeros([BLOCK_M], tl.float32)
    acc = tl.zeros([BLOCK_M, HEAD_DIM], tl.float32)

    full_n = (N_K // BLOCK_N) * BLOCK_N          # keys in whole tiles
    if CAUSAL:
        hi = tl.minimum(start_m + BLOCK_M, N_K)  # the last key any of these rows sees
        mid = tl.minimum(start_m, full_n)        # tiles wholly left of the diagonal
    else:
        hi = N_K
        mid = full_n
    acc, l_i, m_i = _fwd_tiles(acc, l_i, m_i, q, k_base, v_base, stride_kn, stride_kd,
                               stride_vn, stride_vd, offs_m, offs_d, 0, mid, N_K, qk_scale,
                               False, CAUSAL, DOT_PRECISION, FP8, BLOCK_N)
    acc, l_i, m_i = _fwd_tiles(acc, l_i, m_i, q, k_base, v_base, stride_kn, stride_kd,
                               stride_vn, stride_vd, offs_m, offs_d, mid, hi, N_K, qk_scale,
                               True, CAUSAL, DOT_PRECISION, FP8, BLOCK_N)
    # v_scale undoes V's FP8 scaling (1.0 otherwise); q's and k's are folded into qk_scale.
    acc = acc * (v_scale / l_i)[:, None]
    tl.store(LSE + off_hz.to(tl.int64) * N_Q + offs_m, m_i + tl.log2(l_i), mask=row_ok)
    tl.store(o_base + offs_m[:, None] * stride_om + offs_d[None, :] * stride_od,
             acc.to(O.dtype.element_ty), mask=row_ok[:, None])


# -------------------------------------------------------------------------- backward

@triton.jit
def _bwd_delta_kernel(O, DO, DELTA,
                      stride_oz, stride_oh, stride_om, stride_od,
                      stride_dz, stride_dh, stride_dm, stride_dd,
                      H, N_Q, HEAD_DIM: tl.constexpr, BLOCK_M: tl.constexpr):
    # delta_i = rowsum(dO ∘ O) = rowsum(P ∘ dP): the softmax Jacobian's correction term.
    start_m = tl.program_id(0) * BLOCK_M
    off_hz = tl.program_id(1)
    off_z = (off_hz // H).to(tl.int64)
    off_h = (off_hz % H).to(tl.int64)
    offs_m = start_m + tl.arange(0, BLOCK_M)
    offs_d = tl.arange(0, HEAD_DIM)
    row_ok = offs_m < N_Q
    o = tl.load(O + off_z * stride_oz + off_h * stride_oh
                + offs_m[:, None] * stride_om + offs_d[None, :] * stride_od,
                mask=row_ok[:, None], other=0.0).to(tl.float32)
    do = tl.load(DO + off_z * stride_dz + off_h * stride_dh
                 + offs_m[:, None] * stride_dm + offs_d[None, :] * stride_dd,
                 mask=row_ok[:, None], other=0.0).to(tl.float32)
    tl.store(DELTA + off_hz.to(tl.int64) * N_Q + offs_m, tl.sum(o * do, 1), mask=row_ok)


@triton.jit
def _dkdv_tiles(dk, dv, k, v, q_base, do_base, lse_base, delta_base,
                stride_qm, stride_qd, stride_dom, stride_dod,
                offs_n, offs_d, lo, hi, N_Q, qk_scale,
                MASKED: tl.constexpr, CAUSAL: tl.constexpr, DOT_PRECISION: tl.constexpr,
                BLOCK_M: tl.constexpr):
    for start_m in range(lo, hi, BLOCK_M):
        offs_m = start_m + tl.arange(0, BLOCK_M)
        qt_ptrs = q_base + offs_m[None, :] * stride_qm + offs_d[:, None] * stride_qd
        do_ptrs = do_base + offs_m[:, None] * stride_dom + offs_d[None, :] * stride_dod
        if MASKED:
            row_ok = offs_m < N_Q
            qt = tl.load(qt_ptrs, mask=row_ok[None, :], other=0.0)
            lse = tl.load(lse_base + offs_m, mask=row_ok, other=float("inf"))
        else:
            qt = tl.load(qt_ptrs)
            lse = tl.load(lse_base + offs_m)
        # Sᵀ and Pᵀ for this tile: rows are this program's keys, columns the queries.
        pt = tl.exp2(tl.dot(k, qt, input_precision=DOT_PRECISION) * qk_scale - lse[None, :])
        if MASKED:
            if CAUSAL:
                pt = tl.where(offs_m[None, :] >= offs_n[:, None], pt, 0.0)
        if MASKED:
            do = tl.load(do_ptrs, mask=row_ok[:, None], other=0.0)
            delta = tl.load(delta_base + offs_m, mask=row_ok, other=0.0)
        else:
            do = tl.load(do_ptrs)
            delta = tl.load(delta_base + offs_m)
        dv = tl.dot(pt.to(do.dtype), do, dv, input_precision=DOT_PRECISION)
        dpt = tl.dot(v, tl.trans(do), input_precision=DOT_PRECISION)
        dst = pt * (dpt - delta[None, :])
        dk = tl.dot(dst.to(qt.dtype), tl.trans(qt), dk, input_precision=DOT_PRECISION)
    return dk, dv


@triton.autotune(configs=DKDV_CONFIGS, key=["N_Q", "N_K", "HEAD_DIM", "CAUSAL"], prune_configs_by=DKDV_PRUNE)
@triton.jit
def _bwd_dkdv_kernel(Q, K, V, DO, DK, DV, LSE, DELTA, sm_scale, qk_scale,
                     stride_qz, stride_qh, stride_qm, stride_qd,
                     stride_kz, stride_kh, stride_kn, stride_kd,
                     stride_vz, stride_vh, stride_vn, stride_vd,
                     stride_doz, stride_doh, stride_dom, stride_dod,
                     stride_dkz, stride_dkh, stride_dkn, stride_dkd,
                     H, N_Q, N_K,
                     HEAD_DIM: tl.constexpr, CAUSAL: tl.constexpr, DOT_PRECISION: tl.constexpr,
                     BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr):
    tl.static_assert(BLOCK_N % BLOCK_M == 0)
    start_n = tl.program_id(0) * BLOCK_N
    off_hz = tl.program_id(1)
    off_z = (off_hz // H).to(tl.int64)
    off_h = (off_hz % H).to(tl.int64)
    q_base = Q + off_z * stride_qz + off_h * stride_qh
    do_base = DO + off_z * stride_doz + off_h * stride_doh
    lse_base = LSE + off_hz.to(tl.int64) * N_Q
    delta_base = DELTA + off_hz.to(tl.int64) * N_Q

    offs_n = start_n + tl.arange(0, BLOCK_N)
    offs_d = tl.arange(0, HEAD_DIM)
    col_ok = offs_n < N_K
    k = tl.load(K + off_z * stride_kz + off_h * stride_kh
                + offs_n[:, None] * stride_kn + offs_d[None, :] * stride_kd,
                mask=col_ok[:, None], other=0.0)
    v = tl.load(V + off_z * stride_vz + off_h * stride_vh
                + offs_n[:, None] * stride_vn + offs_d[None, :] * stride_vd,
                mask=col_ok[:, None], other=0.0)
    dk = tl.zeros([BLOCK_N, HEAD_DIM], tl.float32)
    dv = tl.zeros([BLOCK_N, HEAD_DIM], tl.float32)

    full_m = (N_Q // BLOCK_M) * BLOCK_M
    if CAUSAL:
        # Queries before start_n see none of these keys; the diagonal tiles need the mask.
        diag_hi = tl.minimum(start_n + BLOCK_N, N_Q)
        dk, dv = _dkdv_tiles(dk, dv, k, v, q_base, do_base, lse_base, delta_base,
                             stride_qm, stride_qd, stride_dom, stride_dod,
                             offs_n, offs_d, start_n, diag_hi, N_Q, qk_scale,
                             True, CAUSAL, DOT_PRECISION, BLOCK_M)
        lo = start_n + BLOCK_N
        tail_lo = tl.maximum(lo, full_m)
    else:
        lo = 0
        tail_lo = full_m
    dk, dv = _dkdv_tiles(dk, dv, k, v, q_base, do_base, lse_base, delta_base,
                         stride_qm, stride_qd, stride_dom, stride_dod,
                         offs_n, offs_d, lo, full_m, N_Q, qk_scale,
                         False, CAUSAL, DOT_PRECISION, BLOCK_M)
    dk, dv = _dkdv_tiles(dk, dv, k, v, q_base, do_base, lse_base, delta_base,
                         stride_qm, stride_qd, stride_dom, stride_dod,
                         offs_n, offs_d, tail_lo, N_Q, N_Q, qk_scale,
                         True, CAUSAL, DOT_PRECISION, BLOCK_M)
    # dK = scale · dSᵀQ: the scale of S = scale · QKᵀ was left out of the loop.
    dk = dk * sm_scale
    out = off_z * stride_dkz + off_h * stride_dkh + offs_n[:, None] * stride_dkn + offs_d[None, :] * stride_dkd
    tl.store(DK + out, dk.to(DK.dtype.element_ty), mask=col_ok[:, None])
    tl.store(DV + out, dv.to(DV.dtype.element_ty), mask=col_ok[:, None])


@triton.jit
def _dq_tiles(dq, q, do, lse, delta, k_base, v_base, stride_kn, stride_kd, stride_vn, stride_vd,
              offs_m, offs_d, lo, hi, N_K, qk_scale,
              MASKED: tl.constexpr, CAUSAL: tl.constexpr, DOT_PRECISION: tl.constexpr,
              BLOCK_N: tl.constexpr):
    for start_n in range(lo, hi, BLOCK_N):
        offs_n = start_n + tl.arange(0, BLOCK_N)
        kt_ptrs = k_base + offs_n[None, :] * stride_kn + offs_d[:, None] * stride_kd
        vt_ptrs = v_base + offs_n[None, :] * stride_vn + offs_d[:, None] * stride_vd
        if MASKED:
            col_ok = offs_n < N_K
            kt = tl.load(kt_ptrs, mask=col_ok[None, :], other=0.0)
            vt = tl.load(vt_ptrs, mask=col_ok[None, :], other=0.0)
        else:
            kt = tl.load(kt_ptrs)
            vt = tl.load(vt_ptrs)
        p = tl.exp2(tl.dot(q, kt, input_precision=DOT_PRECISION) * qk_scale - lse[:, None])
        if MASKED:
            keep = col_ok[None, :]
            if CAUSAL:
                keep = keep & (offs_m[:, None] >= offs_n[None, :])
            p = tl.where(keep, p, 0.0)
        dp = tl.dot(do, vt, input_precision=DOT_PRECISION)
        ds = p * (dp - delta[:, None])
        dq = tl.dot(ds.to(kt.dtype), tl.trans(kt), dq, input_precision=DOT_PRECISION)
    return dq


@triton.autotune(configs=DQ_CONFIGS, key=["N_Q", "N_K", "HEAD_DIM", "CAUSAL"], prune_configs_by=DQ_PRUNE)
@triton.jit
def _bwd_dq_kernel(Q, K, V, DO, DQ, LSE, DELTA, sm_scale, qk_scale,
                   stride_qz, stride_qh, stride_qm, stride_qd,
                   stride_kz, stride_kh, stride_kn, stride_kd,
                   stride_vz, stride_vh, stride_vn, stride_vd,
                   stride_doz, stride_doh, stride_dom, stride_dod,
                   stride_dqz, stride_dqh, stride_dqm, stride_dqd,
                   H, N_Q, N_K,
                   HEAD_DIM: tl.constexpr, CAUSAL: tl.constexpr, DOT_PRECISION: tl.constexpr,
                   BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr):
    tl.static_assert(BLOCK_M % BLOCK_N == 0)
    start_m = tl.program_id(0) * BLOCK_M
    off_hz = tl.program_id(1)
    off_z = (off_hz // H).to(tl.int64)
    off_h = (off_hz % H).to(tl.int64)
    k_base = K + off_z * stride_kz + off_h * stride_kh
    v_base = V + off_z * stride_vz + off_h * stride_vh

    offs_m = start_m + tl.arange(0, BLOCK_M)
    offs_d = tl.arange(0, HEAD_DIM)
    row_ok = offs_m < N_Q
    q = tl.load(Q + off_z * stride_qz + off_h * stride_qh
                + offs_m[:, None] * stride_qm + offs_d[None, :] * stride_qd,
                mask=row_ok[:, None], other=0.0)
    do = tl.load(DO + off_z * stride_doz + off_h * stride_doh
                 + offs_m[:, None] * stride_dom + offs_d[None, :] * stride_dod,
                 mask=row_ok[:, None], other=0.0)
    # Rows past the end get lse = +inf, so their P is exactly 0.
    lse = tl.load(LSE + off_hz.to(tl.int64) * N_Q + offs_m, mask=row_ok, other=float("inf"))
    delta = tl.load(DELTA + off_hz.to(tl.int64) * N_Q + offs_m, mask=row_ok, other=0.0)
    dq = tl.zeros([BLOCK_M, HEAD_DIM], tl.float32)

    full_n = (N_K // BLOCK_N) * BLOCK_N
    if CAUSAL:
        hi = tl.minimum(start_m + BLOCK_M, N_K)
        mid = tl.minimum(start_m, full_n)
    else:
        hi = N_K
        mid = full_n
    dq = _dq_tiles(dq, q, do, lse, delta, k_base, v_base, stride_kn, stride_kd, stride_vn, stride_vd,
                   offs_m, offs_d, 0, mid, N_K, qk_scale, False, CAUSAL, DOT_PRECISION, BLOCK_N)
    dq = _dq_tiles(dq, q, do, lse, delta, k_base, v_base, stride_kn, stride_kd, stride_vn, stride_vd,
                   offs_m, offs_d, mid, hi, N_K, qk_scale, True, CAUSAL, DOT_PRECISION, BLOCK_N)
    dq = dq * sm_scale
    tl.store(DQ + off_z * stride_dqz + off_h * stride_dqh
             + offs_m[:, None] * stride_dqm + offs_d[None, :] * stride_dqd,
             dq.to(DQ.dtype.element_ty), mask=row_ok[:, None])


# ----------------------------------------------------------------------------- Python

def _validate(q, k, v, causal, sm_scale, dtypes=SUPPORTED_DTYPES) -> float:
    """Every check before any launch: a bad argument is a ValueError that names it."""
    for name, t in (("q", q), ("k", k), ("v", v)):
        if not isinstance(t, torch.Tensor):
            raise ValueError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
        if t.dim() != 4:
            raise ValueError(f"{name} must have rank 4 (batch, heads, seq, head_dim), "
                             f"got shape {tuple(t.shape)}")
        if t.dtype not in dtypes:
            names = ", ".join(str(d).replace("torch.", "") for d in dtypes)
            raise ValueError(f"{name} has dtype {t.dtype}: use {names}")
    for name, t in (("k", k), ("v", v)):
        if t.dtype != q.dtype:
            raise ValueError(f"{name} has dtype {t.dtype} but q has {q.dtype}: they must match")
        if t.device != q.device:
            raise ValueError(f"{name} is on {t.device} but q is on {q.device}: they must match")
    if q.device.type != "cuda" and not INTERPRET:
        raise ValueError(f"q is on {q.device}: flash_attention runs on CUDA devices "
                         "(or on the CPU under TRITON_INTERPRET=1)")
    b, h, n_q, d = q.shape
    if k.shape[0] != b or k.shape[1] != h:
        raise ValueError(f"k has batch×heads {tuple(k.shape[:2])} but q has {(b, h)}")
    if k.shape != v.shape:
        raise ValueError(f"v has shape {tuple(v.shape)} but k has {tuple(k.shape)}: they must match")
    if k.shape[3] != d:
        raise ValueError(f"k has head_dim {k.shape[3]} but q has {d}")
    if d not in SUPPORTED_HEAD_DIMS:
        raise ValueError(f"head_dim={d} is not supported: use one of {SUPPORTED_HEAD_DIMS}")
    if n_q == 0 or k.shape[2] == 0 or b == 0 or h == 0:
        raise ValueError(f"q {tuple(q.shape)} and k {tuple(k.shape)} must have no empty dimension")
    if not isinstance(causal, bool):
        raise ValueError(f"causal must be True or False, got {causal!r}")
    if sm_scale is None:
        return 1.0 / math.sqrt(d)
    return _positive("sm_scale", sm_scale)


def _positive(name: str, value) -> float:
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, (int, float)) \
            or not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a positive finite number, got {value!r}")
    return float(value)


def _strides(t: torch.Tensor) -> tuple[int, int, int, int]:
    return tuple(t.stride())  # type: ignore[return-value]


def _empty(shape, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    # Every buffer a kernel must fill comes from here, so a test can poison them
    # all with NaN and prove that every element was written.
    return torch.empty(shape, dtype=dtype, device=device)


def _dot_precision(dtype: torch.dtype) -> str:
    # fp32 inputs exist for testing: compute them in IEEE fp32 so they test the algorithm.
    return "ieee" if dtype == torch.float32 else "tf32"


def _forward(q, k, v, causal: bool, sm_scale: float, q_scale: float = 1.0, k_scale: float = 1.0,
             v_scale: float = 1.0, out_dtype: torch.dtype | None = None):
    b, h, n_q, d = q.shape
    n_k = k.shape[2]
    o = _empty((b, h, n_q, d), out_dtype or q.dtype, q.device)
    lse = _empty((b * h, n_q), torch.float32, q.device)

    def grid(meta):
        return (triton.cdiv(n_q, meta["BLOCK_M"]), b * h)

    _fwd_kernel[grid](q, k, v, o, lse, sm_scale * q_scale * k_scale * LOG2E, v_scale,
                      *_strides(q), *_strides(k), *_strides(v), *_strides(o),
                      h, n_q, n_k, HEAD_DIM=d, CAUSAL=causal, DOT_PRECISION=_dot_precision(q.dtype),
                      FP8=q.dtype == FP8_DTYPE)
    return o, lse


def _backward(do, q, k, v, o, lse, causal: bool, sm_scale: float):
    b, h, n_q, d = q.shape
    n_k = k.shape[2]
    dq = _empty((b, h, n_q, d), q.dtype, q.device)
    dk = _empty((b, h, n_k, d), k.dtype, k.device)
    dv = _empty((b, h, n_k, d), v.dtype, v.device)
    delta = _empty((b * h, n_q), torch.float32, q.device)
    block = 16 if INTERPRET else 128
    _bwd_delta_kernel[(triton.cdiv(n_q, block), b * h)](
        o, do, delta, *_strides(o), *_strides(do), h, n_q, HEAD_DIM=d, BLOCK_M=block)
    precision = _dot_precision(q.dtype)

    def grid_k(meta):
        return (triton.cdiv(n_k, meta["BLOCK_N"]), b * h)

    def grid_q(meta):
        return (triton.cdiv(n_q, meta["BLOCK_M"]), b * h)

    _bwd_dkdv_kernel[grid_k](q, k, v, do, dk, dv, lse, delta, sm_scale, sm_scale * LOG2E,
                             *_strides(q), *_strides(k), *_strides(v), *_strides(do), *_strides(dk),
                             h, n_q, n_k, HEAD_DIM=d, CAUSAL=causal, DOT_PRECISION=precision)
    _bwd_dq_kernel[grid_q](q, k, v, do, dq, lse, delta, sm_scale, sm_scale * LOG2E,
                           *_strides(q), *_strides(k), *_strides(v), *_strides(do), *_strides(dq),
                           h, n_q, n_k, HEAD_DIM=d, CAUSAL=causal, DOT_PRECISION=precision)
    return dq, dk, dv


def _unit_stride(t: torch.Tensor) -> torch.Tensor:
    # Any batch/head/seq strides work; a strided head_dim would make every load a gather.
    return t if t.stride(-1) == 1 else t.contiguous()


class _FlashAttention(torch.autograd.Function):
    @staticmethod
    def forward(ctx, q, k, v, causal, sm_scale):
        q, k, v = _unit_stride(q), _unit_stride(k), _unit_stride(v)
        o, lse = _forward(q, k, v, causal, sm_scale)
        ctx.save_for_backward(q, k, v, o, lse)
        ctx.causal, ctx.sm_scale = causal, sm_scale
        return o

    @staticmethod
    def backward(ctx, do):
        q, k, v, o, lse = ctx.saved_tensors
        dq, dk, dv = _backward(_unit_stride(do), q, k, v, o, lse, ctx.causal, ctx.sm_scale)
        return dq, dk, dv, None, None


def flash_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                    causal: bool = False, sm_scale: float | None = None) -> torch.Tensor:
    """softmax(sm_scale · q kᵀ [+ causal mask]) v for (batch, heads, seq, head_dim) tensors.

    ``sm_scale`` defaults to 1/sqrt(head_dim). Differentiable with respect to q, k and v.
    """
    scale = _validate(q, k, v, causal, sm_scale)
    return _FlashAttention.apply(q, k, v, causal, scale)


def attention_reference(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                        causal: bool = False, sm_scale: float | None = None) -> torch.Tensor:
    """The definition, in float64: what every kernel here is checked against."""
    q64, k64, v64 = q.double(), k.double(), v.double()
    scale = 1.0 / math.sqrt(q.shape[-1]) if sm_scale is None else sm_scale
    s = (q64 @ k64.transpose(-1, -2)) * scale
    if causal:
        n_q, n_k = q.shape[-2], k.shape[-2]
        allowed = torch.ones(n_q, n_k, dtype=torch.bool, device=q.device).tril()
        s = s.masked_fill(~allowed, float("-inf"))
    return torch.softmax(s, dim=-1) @ v64


# ------------------------------------------------------------------------ FP8 forward

FP8_MAX = 448.0                  # largest finite e4m3fn value
FP8_OUT_DTYPES = (torch.bfloat16, torch.float16, torch.float32)


def quantize_fp8(x: torch.Tensor) -> tuple[torch.Tensor, float]:
    """Per-tensor dynamic scaling: the largest |x| maps to e4m3's largest finite value.

    Returns (x8, scale) with x ≈ x8 · scale.
    """
    scale = (x.abs().amax().float().clamp(min=1e-12) / FP8_MAX).item()
    return (x.float() / scale).clamp(-FP8_MAX, FP8_MAX).to(FP8_DTYPE), scale


def flash_attention_fp8(q8: torch.Tensor, k8: torch.Tensor, v8: torch.Tensor,
                        q_scale: float, k_scale: float, v_scale: float,
                        causal: bool = False, sm_scale: float | None = None,
                        out_dtype: torch.dtype = torch.bfloat16) -> torch.Tensor:
    """Forward attention on e4m3 inputs with per-tensor scales (q = q8 · q_scale, …).

    The same kernel as ``flash_attention``: both products run on FP8 tensor cores
    (sm_89+), the q and k scales fold into the softmax scale, and P is rounded to
    e4m3 before the PV product, as FlashAttention-3's FP8 path does; P lies in
    [0, 1], where e4m3 keeps three mantissa bits, so expect errors near 1e-2, not
    bf16's 1e-3. Forward only: there is no FP8 backward.
    """
    scale = _validate(q8, k8, v8, causal, sm_scale, dtypes=(FP8_DTYPE,))
    scales = [_positive(n, s) for n, s in (("q_scale", q_scale), ("k_scale", k_scale),
                                            ("v_scale", v_scale))]
    if out_dtype not in FP8_OUT_DTYPES:
        raise ValueError(f"out_dtype {out_dtype} is not supported: use bfloat16, float16 or float32")
    if q8.device.type == "cuda" and torch.cuda.get_device_capability(q8.device) < (8, 9):
        raise ValueError(f"q8 is on {torch.cuda.get_device_name(q8.device)}: FP8 tensor cores "
                         "need compute capability 8.9 or newer")
    q8, k8, v8 = _unit_stride(q8), _unit_stride(k8), _unit_stride(v8)
    out, _ = _forward(q8, k8, v8, causal, scale, *scales, out_dtype=out_dtype)
    return out
