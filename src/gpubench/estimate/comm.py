"""Collective communication cost: latency + bandwidth (α–β), with the algorithm's step count.

A collective over a group of ``n`` ranks in ``nodes`` nodes is costed the way NCCL's own tuner
costs it (``src/graph/tuning.cc``, ``ncclTopoTuneModel``): a base latency, a latency per
algorithm step (NVLink steps and network steps priced apart), and the payload over the bus
bandwidth with the algorithm's bus factor.

* **ring** (every collective): all-reduce takes 2(n−1) steps of which 2(nodes−1) cross the
  network; all-gather and reduce-scatter n−1, of which nodes−1; the bandwidth term is
  nccl-tests' busbw factor (2(n−1)/n for all-reduce, (n−1)/n for all-gather, reduce-scatter and
  all-to-all; S = the full payload) times S over the bus bandwidth B;
* **tree** (all-reduce only, NCCL's double binary tree): 2·((ranks per node − 1) intra-node steps
  + log₂(nodes) network steps), at 2·S over 90% of B (NCCL's own tree discount);
* **protocols**: Simple (full bandwidth, ~8 µs base and 3.4 µs an NVLink step, 9.6 µs a network
  step) and LL (low latency, a quarter of the bandwidth); the cheaper for the size is taken, as
  NCCL's tuner does;
* all-to-all: every rank sends S/n to each peer at once (NCCL groups the sends): the share
  for peers in other nodes, (n − per_node)/n·S, leaves through the rank's own NIC (each rank's
  data has its own destinations, so NICs cannot pool it), the rest rides NVLink, both at once;
  one base latency and one step;
* point-to-point: one step.

The bus bandwidth B of a group inside one node is the intra-node link's; a group spanning
nodes rides the network, where each member has its own NIC (DGX/HGX: one per GPU) and a ring
drives up to ``per_node`` NICs of each node in parallel (NCCL: channels × per-NIC speed), never
more than the intra-node link. How many NICs the issuing software really drives for a flat
collective is an input (``nics_used``), stated by the software stack (``stacks.py``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

OPS = ("all_reduce", "all_gather", "reduce_scatter", "all_to_all", "p2p")

# NCCL tuning.cc (baseLat, hwLat), in seconds: base latency and per-step latency over NVLink
# ("intra") and over the network ("inter"), per algorithm and protocol; LL trades bandwidth
# (a quarter on rings, 1/3.8 on trees) for latency.
RING = {"simple": {"base": 8.4e-6, "intra": 3.4e-6, "inter": 9.6e-6, "bw": 1.0},
        "ll": {"base": 3.6e-6, "intra": 0.47e-6, "inter": 2.7e-6, "bw": 0.25}}
TREE = {"simple": {"base": 0.0, "intra": 28e-6, "inter": 50e-6, "bw": 0.9},
        "ll": {"base": 4.4e-6, "intra": 0.52e-6, "inter": 5.0e-6, "bw": 0.9 / 3.8}}


@dataclass(frozen=True)
class Links:
    """What one rank gets from its links: achieved bytes/s per direction."""

    intra_bw: float
    inter_bw: float                # per GPU (its NIC)


@dataclass(frozen=True)
class Group:
    """n ranks, ``per_node`` of them in each node the group spans."""

    n: int
    per_node: int
    links: Links
    nics_used: int | None = None    # NICs per node a spanning collective drives; None: per_node

    @property
    def nodes(self) -> int:
        return max(1, -(-self.n // max(1, self.per_node)))

    def bandwidth(self) -> float:
        L = self.links
        if self.nodes == 1:
            return L.intra_bw
        nics = self.per_node if self.nics_used is None else max(1, min(self.nics_used, self.per_node))
        network = nics * L.inter_bw
        return min(L.intra_bw, network) if self.per_node > 1 else L.inter_bw


def placement(size: int, stride: int, gpus_per_node: int) -> int:
    """Members of a group of ``size`` ranks, ``stride`` apart, that share one node."""
    if size <= 1 or stride >= gpus_per_node:
        return 1
    return max(1, min(size, gpus_per_node // stride))


def bus_factor(op: str, n: int) -> float:
    """Bytes a rank sends per byte of payload (nccl-tests' busbw factors)."""
    if n <= 1:
        return 0.0
    if op == "all_reduce":
        return 2.0 * (n - 1) / n
    if op == "p2p":
        return 1.0
    return (n - 1) / n


def ring_steps(op: str, n: int, nodes: int) -> tuple[float, float]:
    """(intra-node steps, network steps) of the ring algorithm."""
    if op == "p2p":
        return (0.0, 1.0) if nodes > 1 else (1.0, 0.0)
    total = 2 * (n - 1) if op == "all_reduce" else n - 1
    inter = (2 * (nodes - 1) if op == "all_reduce" else nodes - 1) if nodes > 1 else 0
    return float(total - inter), float(inter)


def ring_time(op: str, payload_bytes: float, group: Group) -> float:
    intra, inter = ring_steps(op, group.n, group.nodes)
    bw = group.bandwidth()
    return min(p["base"] + intra * p["intra"] + inter * p["inter"]
               + bus_factor(op, group.n) * payload_bytes / (bw * p["bw"]) for p in RING.values())


def tree_time(payload_bytes: float, group: Group) -> float:
    ppn = min(group.per_node, group.n)
    levels = math.ceil(math.log2(group.nodes)) if group.nodes > 1 else 0
    bw = group.bandwidth()
    return min(p["base"] + 2 * ((ppn - 1) * p["intra"] + levels * p["inter"])
               + 2.0 * payload_bytes / (bw * p["bw"]) for p in TREE.values())


def all_to_all_time(payload_bytes: float, group: Group) -> float:
    """S = what one rank sends in all (nccl-tests' alltoall size)."""
    n, g, L = group.n, min(group.per_node, group.n), group.links
    p = RING["simple"]
    remote = (n - g) / n * payload_bytes / L.inter_bw if group.nodes > 1 else 0.0
    local = (g - 1) / n * payload_bytes / L.intra_bw
    return p["base"] + (p["inter"] if group.nodes > 1 else p["intra"]) + max(remote, local)


@lru_cache(maxsize=1 << 16)
def collective_time(op: str, payload_bytes: float, group: Group) -> float:
    """Seconds for one collective of ``payload_bytes`` (S: the full, gathered or reduced size)."""
    if op not in OPS:
        raise ValueError(op)
    if payload_bytes <= 0 or (group.n <= 1 and op != "p2p"):
        return 0.0
    if op == "all_to_all":
        return all_to_all_time(payload_bytes, group)
    t = ring_time(op, payload_bytes, group)
    if op == "all_reduce" and group.nodes > 1:
        t = min(t, tree_time(payload_bytes, group))
    return t
