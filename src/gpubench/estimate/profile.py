"""Calibration profiles: the measured efficiencies the performance model runs on.

Every number is a fraction of a datasheet figure, so a profile measured on one
GPU can be carried to another by peak ratios; when that happens the estimate
says so (``carried_from``). ``gpubench calibrate`` builds a profile from result
files; without one, a default profile built from published measurements is used:

* GEMM ceilings: the maximum achievable matmul (mamf-finder, stas00/ml-engineering):
  A100 SXM bf16 271.2 of 312 TFLOP/s; H100 SXM bf16 794.5 of 989, fp8 1402.6 of
  1979; H200 fp8 1453.4.
* Attention: FlashAttention-2 on A100 (Dao 2023: 50–73% of peak forward) and
  FlashAttention-3 on H100 (Shah et al. 2024: up to 740 TFLOP/s fp16 forward).
* Links: nccl-tests all-reduce bus bandwidth on 8×A100 (about 230 of 300 GB/s)
  and 8×H100 (about 370 of 450 GB/s ring), InfiniBand at about 90% of line rate.
* Memory: a device copy at about 3.0 of 3.35 TB/s on one H100 SXM (2026-11, in the
  project's reference facts; not yet a gpubench result file).
A profile describes the machine, not the software: which attention kernel runs, what
overlaps and how much of these ceilings kernels reach inside a training step belong to the
software stack (``stacks.py``). Where a calibration measured attention, its rates replace the
stack's kernel table; ``attention``, ``tp_overlap``, ``dp_overlap`` and ``kernel_gap_s`` are
the profile's statements about the measured machine's software (dp_overlap: the share of
compute time that data-parallel traffic can hide behind, kernel_gap_s: idle time between
dependent kernels).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from gpubench.errors import GpubenchError


@dataclass(frozen=True)
class Profile:
    name: str
    gpu_key: str                               # where the figures were measured
    gemm_ceiling: dict[str, float]             # large-GEMM TFLOP/s ÷ dense peak, per precision
    attention: str = "flash"                   # "flash" (fused, causal blocks skipped) or "unfused"
    attention_fwd_efficiency: float = 0.60     # flash attention forward, fraction of the bf16 peak
    attention_bwd_efficiency: float = 0.45
    mem_bw_efficiency: float = 0.88            # achieved copy bandwidth ÷ datasheet
    intra_node_efficiency: float = 0.77        # all-reduce bus bandwidth ÷ per-direction link rate
    inter_node_efficiency: float = 0.90
    tp_overlap: float = 0.0                    # share of tensor-parallel communication hidden
    dp_overlap: float = 0.8                    # share of the last backward pass DP reduction can hide behind
    kernel_gap_s: float = 4e-6                 # idle time between dependent kernels
    provenance: tuple[dict, ...] = ()
    carried_from: str | None = None            # set when applied to another GPU than measured
    # Measured GEMMs by shape: (precision, m, n, k, fraction of the dense peak). The model's
    # shape terms are anchored to the nearest measured shape (``gemm_anchor``).
    gemm_shapes: tuple[tuple, ...] = ()
    # What was measured, in absolute units, on the device itself (``rates.MeasuredRates``):
    # the self-check predicts that device's own steps from it.
    rates: dict | None = None
    # The self-check's verdict on this device (``selfcheck.summarize``): how far the model
    # missed the device's own measured steps; estimates made with this profile widen by it.
    self_check: dict | None = None

    @property
    def rates_only(self) -> bool:
        """Measured on a device without datasheet figures: no fractions of a peak to carry."""
        return not self.gemm_ceiling

    def measured_rates(self):
        from gpubench.estimate.rates import MeasuredRates

        return MeasuredRates.from_dict(self.rates) if self.rates else None

    def ceiling(self, precision: str) -> float:
        key = "fp8" if precision.startswith("fp8") else precision
        if key in self.gemm_ceiling:
            return self.gemm_ceiling[key]
        if key in ("fp16", "bf16") and ({"fp16", "bf16"} & self.gemm_ceiling.keys()):
            return self.gemm_ceiling.get("bf16", self.gemm_ceiling.get("fp16"))
        return min(self.gemm_ceiling.values()) if self.gemm_ceiling else float("nan")

    def measured(self, field: str) -> bool:
        """Whether a calibration measured this field (rather than taking a published default)."""
        if not any(p.get("kind") == "measured" for p in self.provenance):
            return False
        published = set()
        for p in self.provenance:
            if p.get("kind") == "published":
                published.update(p.get("fields", ()))
        return field not in published

    def gemm_anchor(self, precision: str, m: float, n: float, k: float, sms: int, peak_flops: float) -> float:
        """Measured ÷ modelled rate at the nearest measured shape of this precision (1 if none).

        Only shapes inside the measured range are anchored (every dimension within 2× of a
        measured shape's); beyond it the model's shape terms stand alone."""
        if not self.gemm_shapes:
            return 1.0
        return _anchor(self.gemm_shapes, "fp8" if precision.startswith("fp8") else precision,
                       float(m), float(n), float(k), self.ceiling(precision), sms, peak_flops)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["provenance"] = list(self.provenance)
        d["gemm_shapes"] = [list(x) for x in self.gemm_shapes]
        d["kind"] = "gpubench-calibration-profile"
        d["version"] = 1
        return d

    @classmethod
    def from_dict(cls, d: dict, source: str = "profile") -> "Profile":
        if not isinstance(d, dict) or d.get("kind") != "gpubench-calibration-profile":
            raise GpubenchError(f"--calibration {source} is not a gpubench calibration profile")
        known = set(cls.__dataclass_fields__)
        kw = {k: v for k, v in d.items() if k in known}
        kw["provenance"] = tuple(kw.get("provenance", ()))
        kw["gemm_shapes"] = tuple(tuple(x) for x in kw.get("gemm_shapes", ()))
        try:
            return cls(**kw)
        except TypeError as e:
            raise GpubenchError(f"--calibration {source}: {e}") from None

    def save(self, path: str | Path) -> None:
        from gpubench.outfiles import write_text_atomic

        write_text_atomic(Path(path), json.dumps(self.to_dict(), indent=2) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> "Profile":
        try:
            return cls.from_dict(json.loads(Path(path).read_text()), str(path))
        except FileNotFoundError:
            raise GpubenchError(f"--calibration {path}: no such file") from None
        except json.JSONDecodeError as e:
            raise GpubenchError(f"--calibration {path} is not valid JSON ({e.msg})") from None

    def carried_to(self, gpu_key: str) -> "Profile":
        """The same fractions applied to another GPU: flagged, never silent."""
        if self.rates_only:
            dev = (self.rates or {}).get("device") or {}
            raise GpubenchError(f"calibration profile {self.name} was measured on "
                                f"{dev.get('name') or 'a device'} ({dev.get('type') or 'no datasheet'}), "
                                f"which has no datasheet peak: it holds measured rates only, which "
                                f"predict that device's own steps (gpubench selfcheck), not a {gpu_key}")
        if gpu_key == self.gpu_key:
            return self
        return replace(self, carried_from=self.carried_from or self.gpu_key, gpu_key=gpu_key)


def _anchor(shapes, precision, m, n, k, ceiling, sms, peak_flops) -> float:
    import math

    from gpubench.estimate.kernels import shape_efficiency

    best, best_d = None, None
    for p, sm, sn, sk, frac in shapes:
        if p != precision:
            continue
        ratios = (m / sm, n / sn, k / sk)
        if any(r > 2 or r < 0.5 for r in ratios):
            continue
        d = sum(abs(math.log(r)) for r in ratios)
        if best_d is None or d < best_d:
            best, best_d = (sm, sn, sk, frac), d
    if best is None:
        return 1.0
    sm, sn, sk, frac = best
    modelled = ceiling * shape_efficiency(int(sm), int(sn), int(sk), 1, sms, peak_flops)
    return frac / modelled if modelled > 0 else 1.0


_MAMF = {"source": "mamf-finder, stas00/ml-engineering (compute/accelerator)", "kind": "published"}
_NCCL = {"source": "nccl-tests all-reduce bus bandwidth, published DGX figures", "kind": "published"}

DEFAULTS: dict[str, Profile] = {
    "ampere": Profile(
        name="published-a100", gpu_key="a100-sxm-80gb",
        gemm_ceiling={"bf16": 271.2 / 312, "fp16": 271.2 / 312, "tf32": 0.75, "fp32": 0.90},
        attention="unfused",
        attention_fwd_efficiency=0.60, attention_bwd_efficiency=0.45, mem_bw_efficiency=0.89,
        intra_node_efficiency=230 / 300, inter_node_efficiency=0.90,
        provenance=(_MAMF, {"source": "Dao 2023, FlashAttention-2 (A100)", "kind": "published"}, _NCCL)),
    "hopper": Profile(
        name="published-h100", gpu_key="h100-sxm",
        gemm_ceiling={"bf16": 794.5 / 989, "fp16": 794.5 / 989, "fp8": 1402.6 / 1979, "tf32": 0.75,
                      "fp32": 0.85},
        attention_fwd_efficiency=0.60, attention_bwd_efficiency=0.45, mem_bw_efficiency=3.0 / 3.35,
        intra_node_efficiency=370 / 450, inter_node_efficiency=0.90,
        provenance=(_MAMF, {"source": "Shah et al. 2024, FlashAttention-3 (H100)", "kind": "published"},
                    _NCCL, {"source": "H100 SXM device copy, 2026-11 (project reference facts)", "kind": "published"})),
}


def default_profile(gpu_key: str, arch: str) -> Profile:
    """The published profile of the GPU's architecture, else the closest one, flagged."""
    if arch in DEFAULTS:
        return DEFAULTS[arch].carried_to(gpu_key)
    fallback = DEFAULTS["hopper"] if arch in ("blackwell", "ada", "cdna3") else DEFAULTS["ampere"]
    return fallback.carried_to(gpu_key)
