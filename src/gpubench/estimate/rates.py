"""Measured rates: what this machine did, in absolute units, for predicting its own steps.

A calibration profile's efficiencies are fractions of datasheet figures, so they can be
carried to another GPU; a device without a datasheet (a CPU, an unlisted GPU) has nothing
to take a fraction of. ``MeasuredRates`` holds the measurements themselves, for the device
they were taken on, and answers the performance model's questions about it:

* ``gemm_s(precision, m, n, k)``: from ``matmul``/``mamf`` records. A measured shape gives
  its own time; another shape is interpolated (inverse-distance weights over log m, log n,
  log k of the rates of the nearest measured shapes) only when a measured shape lies within
  2× in every dimension. Beyond that the rates say nothing and ``OutOfRange`` names the shape:
  never a silent extrapolation. A measured time includes one eager dispatch (the ``eager``
  op-overhead); it is taken off, because the step model charges every operation's host cost
  separately.
* ``bandwidth(working_set_bytes)``: ``membw`` copy rates by buffer size, interpolated in log
  size. A working set smaller than every measured buffer runs from a cache at least as fast
  as the smallest buffer measured: its rate is used (a floor on speed, said in ``assumptions``).
* ``op_s`` and ``op_eager_s``: one framework operation's host cost in a training step
  (autograd) and alone (``op-overhead``).
* ``attention_s``: fused attention records (SDPA's fused backends, the Triton kernel),
  scaled by FLOPs from the nearest measured case; without any, the FLOPs at the GEMM rate
  of the nearest measured shape, said in ``assumptions``.
* ``collective_s(op, bytes, world)``: collective records (``comm``) of that world size,
  interpolated in log size between measured messages, linear in bytes above the largest.
* ``host_overlap``: whether the device runs behind the host (a GPU's asynchronous stream)
  or the host does the arithmetic itself (a CPU): a CPU step pays host costs and kernels
  one after the other.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from gpubench.errors import GpubenchError

NEAR = 2.0                 # a measured shape within this factor in every dimension vouches for a GEMM
NEIGHBOURS = 4


class OutOfRange(GpubenchError):
    """A question the measured rates cannot answer without extrapolating."""


def precision_key(p: str) -> str:
    p = p.lower()
    return "fp8" if p.startswith("fp8") else p


@dataclass
class MeasuredRates:
    device: dict                                            # type, name, spec_key, memory
    gemm: dict[str, list[list]] = field(default_factory=dict)   # prec -> [m, n, k, seconds, layout]
    membw: list[list[float]] = field(default_factory=list)  # [bytes of the buffer, bytes/s]
    op_s: float | None = None                               # one operation in a training step
    op_eager_s: float | None = None                         # one operation without autograd
    attention: list[dict] = field(default_factory=list)     # {direction, causal, batch, heads, seq,
                                                            #  head_dim, dtype, impl, flops, seconds}
    collectives: dict[str, list[list[float]]] = field(default_factory=dict)  # "op/world" -> [bytes, s]
    host_overlap: bool = True
    assumptions: list[str] = field(default_factory=list)

    # ---- serialisation (inside a profile) ----
    def to_dict(self) -> dict:
        return {"device": self.device, "gemm": self.gemm, "membw": self.membw, "op_s": self.op_s,
                "op_eager_s": self.op_eager_s, "attention": self.attention,
                "collectives": self.collectives, "host_overlap": self.host_overlap}

    @classmethod
    def from_dict(cls, d: dict) -> "MeasuredRates":
        if not isinstance(d, dict) or not isinstance(d.get("device"), dict):
            raise GpubenchError("the profile's measured rates are malformed (no device)")
        gemm = {k: [list(x) + ["nt"] * (5 - len(x)) for x in v] for k, v in (d.get("gemm") or {}).items()}
        return cls(device=d["device"], gemm=gemm,
                   membw=[list(x) for x in d.get("membw") or []], op_s=d.get("op_s"),
                   op_eager_s=d.get("op_eager_s"), attention=list(d.get("attention") or []),
                   collectives={k: [list(x) for x in v] for k, v in (d.get("collectives") or {}).items()},
                   host_overlap=bool(d.get("host_overlap", True)))

    def note(self, text: str) -> None:
        if text not in self.assumptions:
            self.assumptions.append(text)

    # ---- GEMMs ----
    def has_gemm(self, precision: str) -> bool:
        return bool(self.gemm.get(precision_key(precision)))

    def gemm_s(self, precision: str, m: float, n: float, k: float, batch: float = 1.0,
               layout: str = "nt") -> float:
        """Seconds of batch × (m×k)·(k×n) on this device, dispatch excluded. ``layout``: nt (a
        linear layer's forward), nn (its input gradient), tn (its weight gradient); shapes of
        the same layout answer first, any layout where that one was never measured (noted)."""
        if m <= 0 or n <= 0 or k <= 0:
            return 0.0
        key = precision_key(precision)
        every = self.gemm.get(key)
        if not every:
            raise OutOfRange(f"no {key} GEMM was measured on {self.device.get('name')}")
        points = [p for p in every if p[4] == layout]
        if not points:
            points = every
            self.note(f"{key} GEMMs of layout {layout} were not measured: other layouts' rates used")
        flops = 2.0 * m * n * k
        rate = _idw_rate(points, m, n, k)
        if rate is None:
            near = min(points, key=lambda p: _dist(p, m, n, k))
            raise OutOfRange(f"{key} GEMM {m:.0f}×{n:.0f}×{k:.0f} is beyond every measured shape "
                             f"(nearest {near[0]:.0f}×{near[1]:.0f}×{near[2]:.0f}); measure shapes "
                             f"within {NEAR:g}× of it")
        return batch * self._kernel(flops / rate)

    def gemm_nearest_rate(self, precision: str, m: float, n: float, k: float) -> float:
        """FLOP/s of the nearest measured shape, however far (attention's fallback)."""
        key = precision_key(precision)
        points = self.gemm.get(key) or self.gemm.get("fp32") or next(iter(self.gemm.values()), None)
        points = [p for p in points or [] if p[4] == "nt"] or points
        if not points:
            raise OutOfRange(f"no GEMM was measured on {self.device.get('name')}")
        p = min(points, key=lambda p: _dist(p, m, n, k))
        return 2.0 * p[0] * p[1] * p[2] / self._kernel(p[3])

    def _kernel(self, measured_s: float) -> float:
        """A measured time less the dispatch the step model charges on its own (at most half)."""
        eager = self.op_eager_s or 0.0
        return max(measured_s - eager, 0.5 * measured_s)

    # ---- memory ----
    def bandwidth(self, working_set_bytes: float) -> float:
        if not self.membw:
            raise OutOfRange(f"no memory bandwidth (membw) was measured on {self.device.get('name')}")
        pts = sorted(self.membw)
        if working_set_bytes <= pts[0][0]:
            if working_set_bytes < pts[0][0] / NEAR:
                self.note(f"working sets below {pts[0][0] / 2**20:.2g} MiB use the smallest measured "
                          f"buffer's bandwidth (a cache at least that fast)")
            return pts[0][1]
        if working_set_bytes >= pts[-1][0]:
            return pts[-1][1]
        for (s0, b0), (s1, b1) in zip(pts, pts[1:]):
            if s0 <= working_set_bytes <= s1:
                w = math.log(working_set_bytes / s0) / math.log(s1 / s0) if s1 > s0 else 0.0
                return math.exp((1 - w) * math.log(b0) + w * math.log(b1))
        return pts[-1][1]

    # ---- attention ----
    def attention_s(self, direction: str, flops: float, batch: float, heads: float, seq: float,
                    head_dim: int, precision: str, keys: float) -> float:
        """Seconds of the attention core's forward (``fwd``) or backward (``bwd``) doing ``flops``.

        A measured case (fused kernels only) is scaled by FLOPs from the nearest one in sequence,
        head width and batch × heads; its backward is its fwd+bwd time less its forward."""
        # A 16-bit run's attention is timed by 16-bit records, a float32 run's by float32 ones.
        wide = precision_key(precision) in ("fp32", "tf32")
        cases = [a for a in self.attention if a.get("seconds")
                 and (str(a.get("dtype")) in ("fp32", "tf32")) == wide]
        if cases:
            def distance(a):
                return (abs(math.log(a["seq"] / seq)) + abs(math.log(a["head_dim"] / head_dim))
                        + abs(math.log(a["batch"] * a["heads"] / max(1.0, batch * heads))))
            key = "fwd" if direction == "fwd" else "fwd+bwd"
            same = [a for a in cases if a["direction"] == key]
            if same:
                a = min(same, key=distance)
                if direction == "fwd":
                    return a["seconds"] * flops / a["flops"]
                fwd = [f for f in cases if f["direction"] == "fwd" and _same_case(f, a)]
                if fwd:
                    t_b = a["seconds"] - fwd[0]["seconds"]
                    f_b = a["flops"] - fwd[0]["flops"]
                    if t_b > 0 and f_b > 0:
                        return t_b * flops / f_b
                return a["seconds"] * flops / a["flops"]
        self.note("attention: no fused attention measured; its time is its FLOPs at the GEMM rate "
                  "of the nearest measured shape")
        return flops / self.gemm_nearest_rate(precision, seq, keys, head_dim)

    # ---- collectives ----
    def collective_s(self, op: str, nbytes: float, world: int) -> float:
        pts = sorted(self.collectives.get(f"{op}/{world}", []))
        if not pts:
            raise OutOfRange(f"no {op} over {world} ranks was measured on {self.device.get('name')} "
                             f"(run --suite comm --nproc {world})")
        if nbytes <= pts[0][0]:
            return pts[0][1]
        if nbytes >= pts[-1][0]:
            return pts[-1][1] * nbytes / pts[-1][0]
        for (s0, t0), (s1, t1) in zip(pts, pts[1:]):
            if s0 <= nbytes <= s1:
                w = math.log(nbytes / s0) / math.log(s1 / s0) if s1 > s0 else 0.0
                return math.exp((1 - w) * math.log(t0) + w * math.log(t1))
        return pts[-1][1]


def _same_case(a: dict, b: dict) -> bool:
    return all(a.get(k) == b.get(k) for k in ("batch", "heads", "seq", "head_dim", "causal", "impl", "dtype"))


def _dist(p, m, n, k) -> float:
    return math.sqrt(math.log(m / p[0]) ** 2 + math.log(n / p[1]) ** 2 + math.log(k / p[2]) ** 2)


def _idw_rate(points, m, n, k) -> float | None:
    """Rate at (m, n, k) from the nearest measured shapes, or None when none is within NEAR."""
    near = [p for p in points if all(1 / NEAR <= q / r <= NEAR for q, r in ((m, p[0]), (n, p[1]), (k, p[2])))]
    if not near:
        return None
    near.sort(key=lambda p: _dist(p, m, n, k))
    num = den = 0.0
    for p in near[:NEIGHBOURS]:
        d = _dist(p, m, n, k)
        rate = 2.0 * p[0] * p[1] * p[2] / p[3]
        if d < 1e-9:
            return rate
        w = 1.0 / d ** 2
        num, den = num + w * math.log(rate), den + w
    return math.exp(num / den)


__all__ = ["MeasuredRates", "OutOfRange", "precision_key", "NEAR"]
