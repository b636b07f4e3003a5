"""What a node and its network give each GPU: the facts the communication model needs.

Link figures are datasheet rates per GPU and per direction (NVLink aggregate
bidirectional halved); the achievable fraction of them lives in the calibration
profile, not here. ``inter_node_gbps`` is the network bandwidth per GPU of the
usual reference system (DGX/HGX with one NIC per GPU).
"""

from __future__ import annotations

from dataclasses import dataclass

from gpubench.errors import GpubenchError
from gpubench.hardware import GPUSpec, get_gpu


@dataclass(frozen=True)
class Interconnect:
    multiprocessors: int        # SMs (CUs on AMD): the unit of wave quantisation
    intra_node_gbps: float      # per GPU, per direction, inside a node (NVLink / Infinity Fabric / PCIe)
    inter_node_gbps: float      # per GPU, per direction, between nodes
    gpus_per_node: int
    source: str


_NVLINK = "NVIDIA datasheets (NVLink aggregate bandwidth, halved per direction)"
FACTS: dict[str, Interconnect] = {
    "v100-sxm2-16gb": Interconnect(80, 150, 12.5, 8, f"{_NVLINK}; DGX-1 EDR InfiniBand"),
    "v100-sxm2-32gb": Interconnect(80, 150, 12.5, 8, f"{_NVLINK}; DGX-1 EDR InfiniBand"),
    "v100-pcie-16gb": Interconnect(80, 16, 12.5, 8, "PCIe 3.0 x16"),
    "v100-pcie-32gb": Interconnect(80, 16, 12.5, 8, "PCIe 3.0 x16"),
    "a100-sxm-40gb": Interconnect(108, 300, 25, 8, f"{_NVLINK}; DGX A100 8x HDR 200 Gb/s"),
    "a100-sxm-80gb": Interconnect(108, 300, 25, 8, f"{_NVLINK}; DGX A100 8x HDR 200 Gb/s"),
    "a100-pcie-40gb": Interconnect(108, 32, 25, 8, "PCIe 4.0 x16"),
    "a100-pcie-80gb": Interconnect(108, 32, 25, 8, "PCIe 4.0 x16"),
    "h100-sxm": Interconnect(132, 450, 50, 8, f"{_NVLINK}; DGX H100 8x NDR 400 Gb/s"),
    "h100-pcie": Interconnect(114, 64, 50, 8, "PCIe 5.0 x16"),
    "h100-nvl": Interconnect(132, 300, 50, 8, "NVLink bridge pairs (600 GB/s); PCIe 5.0 beyond the pair"),
    "h200-sxm": Interconnect(132, 450, 50, 8, f"{_NVLINK}; HGX H200 8x NDR 400 Gb/s"),
    "h200-nvl": Interconnect(132, 450, 50, 8, "NVLink bridges (900 GB/s)"),
    "h800-sxm": Interconnect(132, 200, 50, 8, "H800 NVLink 400 GB/s; 8x NDR 400 Gb/s (DeepSeek-V3 report)"),
    "b200": Interconnect(148, 900, 50, 8, f"{_NVLINK}; HGX B200 8x 400 Gb/s"),
    "l40s": Interconnect(142, 32, 25, 8, "PCIe 4.0 x16, no NVLink"),
    "rtx-4090": Interconnect(128, 32, 12.5, 8, "PCIe 4.0 x16, no NVLink"),
    "mi300x": Interconnect(304, 448, 50, 8, "AMD MI300X: 7 Infinity Fabric links x 64 GB/s"),
}


@dataclass(frozen=True)
class Cluster:
    gpu: GPUSpec
    gpus: int
    link: Interconnect
    power_limit_w: float | None = None     # a cap below the GPU's TDP (None: runs at TDP)

    @property
    def clock_factor(self) -> float:
        """Compute-bound rate under a power cap: dynamic power goes as f·V² with V ∝ f under DVFS,
        so f ∝ P^(1/3); memory-bound work keeps its rate."""
        if not self.power_limit_w or self.power_limit_w >= self.gpu.tdp_w:
            return 1.0
        return (self.power_limit_w / self.gpu.tdp_w) ** (1 / 3)

    @property
    def nodes(self) -> int:
        return -(-self.gpus // self.link.gpus_per_node)


def make_cluster(gpu_name: str, gpus: int, intra_node_gbps: float | None = None,
                 inter_node_gbps: float | None = None, gpus_per_node: int | None = None,
                 power_limit_w: float | None = None) -> Cluster:
    if gpus <= 0:
        raise GpubenchError(f"--gpus {gpus} must be positive")
    spec = get_gpu(gpu_name)
    base = FACTS.get(spec.key)
    if base is None:
        raise GpubenchError(f"--gpu {gpu_name}: no interconnect facts for {spec.key}")
    for flag, value in (("--intra-node-gbps", intra_node_gbps), ("--inter-node-gbps", inter_node_gbps),
                        ("--gpus-per-node", gpus_per_node), ("--power-limit-w", power_limit_w)):
        if value is not None and value <= 0:
            raise GpubenchError(f"{flag} {value} must be positive")
    link = Interconnect(base.multiprocessors, intra_node_gbps or base.intra_node_gbps,
                        inter_node_gbps or base.inter_node_gbps, gpus_per_node or base.gpus_per_node,
                        base.source + (" (overridden)" if intra_node_gbps or inter_node_gbps else ""))
    if power_limit_w is not None and power_limit_w < 0.3 * spec.tdp_w:
        raise GpubenchError(f"--power-limit-w {power_limit_w:g} is under 30% of the {spec.key}'s "
                            f"{spec.tdp_w:g} W TDP: no GPU trains there")
    return Cluster(spec, gpus, link, power_limit_w)
