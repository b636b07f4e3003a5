"""How long one kernel takes on one GPU: GEMMs by shape, attention by kernel family, memory-bound work.

* **GEMM**: FLOPs over (dense peak × the profile's GEMM ceiling), degraded by the quantisation
  of output tiles into waves over the multiprocessors and by a short inner dimension, never
  faster than its bytes over achieved memory bandwidth. The ceiling is the best a large GEMM
  reaches on the GPU (mamf-finder, or this machine's calibration); the shape terms are why
  a layer's real GEMMs fall short of it. Where a calibration profile measured GEMMs near the
  shape, the model is anchored to the measurement (``Profile.gemm_shapes``).
* **Attention**: the FLOPs a causal (or windowed) kernel really does, over the peak × the
  kernel family's efficiency on the architecture (``ATTENTION``), degraded for short key
  ranges and narrow heads; or, for the unfused attention of older stacks, two batched GEMMs
  plus the softmax's memory traffic over s².
* **Memory-bound kernels**: bytes moved over achieved bandwidth (datasheet × the profile's copy
  efficiency).
"""

from __future__ import annotations

import math
from functools import lru_cache

# Output tiles a GEMM library picks from (rows, cols, relative efficiency of the tile itself):
# big tiles are the most efficient, small ones waste less on ragged edges.
TILES = ((256, 128, 1.0), (128, 256, 1.0), (128, 128, 0.92), (128, 64, 0.8), (64, 64, 0.62))
# Each output tile pays a fixed time (filling the software pipeline, the epilogue's write) that
# does not shrink with its inner dimension: a GEMM of inner dimension k runs at k/(k + k½) of
# its tile rate, with k½ the inner dimension whose main loop lasts as long as that fixed time.
# It grows with the rate a multiprocessor computes at: 64 on an A100 in bf16 (the reference),
# ×(per-SM rate ÷ the A100's) elsewhere (H100 bf16 ≈ 166, fp8 ≈ 332).
K_HALF = 64
K_HALF_REF_RATE = 312e12 / 108      # A100 bf16 FLOP/s per multiprocessor

# Attention kernels' sustained efficiency (fraction of the dense bf16/fp16 peak, forward and
# backward) on long sequences with 128-wide heads, per kernel family and architecture.
ATTENTION = {
    # Dao 2023 (FlashAttention-2), Fig. 4-6 on A100: forward 50-73% of peak, backward up to ~63%.
    ("flash2", "ampere"): (0.65, 0.50),
    # Shah et al. 2024 (FlashAttention-3), abstract and Fig. 5: FA2 reaches ~35% on H100.
    ("flash2", "hopper"): (0.35, 0.30),
    # FlashAttention-3 on H100: forward up to 740 TFLOP/s (75%); backward 1.5-1.75x FA2's.
    ("flash3", "hopper"): (0.62, 0.48),
    # cuDNN fused attention (Transformer Engine's default on Hopper), same paper's comparisons:
    # a little below FA3 forward, about equal backward.
    ("cudnn", "hopper"): (0.55, 0.45),
    ("cudnn", "ampere"): (0.60, 0.48),
}
ATTENTION_FAMILIES = ("unfused", "flash2", "flash3", "cudnn")
KEYS_HALF = 256      # keys per query at which a fused kernel loses half its rate (launch, tails)
HEAD_HALF = 32       # head width at which it loses half (FA3 Fig. 5: d=64 about 0.8x d=128)


def wave_efficiency(m: int, n: int, batch: int, sms: int) -> float:
    """Best share of the GPU a GEMM's output tiles keep busy (quantisation of tiles and waves)."""
    best = 0.0
    for tm, tn, tile_eff in TILES:
        tiles = math.ceil(m / tm) * math.ceil(n / tn) * batch
        waves = math.ceil(tiles / sms)
        useful = (m * n * batch) / (tiles * tm * tn)
        best = max(best, tile_eff * useful * tiles / (waves * sms))
    return best


def k_half(peak_flops: float, sms: int) -> float:
    return K_HALF * (peak_flops / sms) / K_HALF_REF_RATE


def shape_efficiency(m: int, n: int, k: int, batch: int, sms: int, peak_flops: float) -> float:
    return wave_efficiency(m, n, batch, sms) * (k / (k + k_half(peak_flops, sms)))


@lru_cache(maxsize=1 << 17)
def gemm_time(m: int, n: int, k: int, batch: int, peak_flops: float, ceiling: float,
              mem_bytes_per_s: float, elem_bytes: float, sms: int, anchor: float = 1.0) -> float:
    """Seconds for batch × (m×k)·(k×n). ``anchor``: measured ÷ modelled rate near this shape."""
    if m <= 0 or n <= 0 or k <= 0:
        return 0.0
    flops = 2.0 * m * n * k * batch
    compute = flops / (peak_flops * ceiling * shape_efficiency(m, n, k, batch, sms, peak_flops) * anchor)
    memory = (m * k + k * n + m * n) * batch * elem_bytes / mem_bytes_per_s
    return max(compute, memory)


def attention_efficiency(family: str, arch: str, mean_keys: float, head_dim: int,
                         measured: tuple[float, float] | None = None) -> tuple[float, float]:
    """(forward, backward) fraction of peak a fused kernel sustains at this key range and head width."""
    base = measured or ATTENTION.get((family, arch)) or ATTENTION.get((family, "ampere")) \
        or ATTENTION[("flash2", "ampere")]
    scale = (mean_keys / (mean_keys + KEYS_HALF)) * min(1.0, (head_dim / (head_dim + HEAD_HALF))
                                                      / (128 / (128 + HEAD_HALF)))
    return base[0] * scale, base[1] * scale
