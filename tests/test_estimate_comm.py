"""The α–β collective model: step counts, bus factors, placement across nodes, protocols."""

import math

import pytest

from gpubench.estimate.comm import (
    RING,
    Group,
    Links,
    bus_factor,
    collective_time,
    placement,
    ring_steps,
)

A100 = Links(intra_bw=230e9, inter_bw=22.5e9)


@pytest.mark.parametrize("n, nodes, ar, ag", [
    (8, 1, (14, 0), (7, 0)),          # inside a node every step is NVLink
    (16, 2, (28, 2), (14, 1)),        # 2(n−1) steps, 2(nodes−1) of them over the network
    (1024, 128, (1792, 254), (896, 127)),
])
def test_ring_step_counts_are_nccls(n, nodes, ar, ag):
    assert ring_steps("all_reduce", n, nodes) == (ar[0], ar[1])
    assert ring_steps("all_gather", n, nodes) == (ag[0], ag[1])
    assert ring_steps("reduce_scatter", n, nodes) == (ag[0], ag[1])


@pytest.mark.parametrize("n", [2, 8, 64])
def test_bus_factors_are_nccl_tests(n):
    assert bus_factor("all_reduce", n) == pytest.approx(2 * (n - 1) / n)
    for op in ("all_gather", "reduce_scatter", "all_to_all"):
        assert bus_factor(op, n) == pytest.approx((n - 1) / n)
    assert bus_factor("all_reduce", 1) == 0


def test_large_messages_are_bandwidth_bound_small_ones_latency_bound():
    g = Group(8, 8, A100)
    big = 4e9
    t = collective_time("all_gather", big, g)
    assert t == pytest.approx(7 / 8 * big / A100.intra_bw, rel=0.005)
    # 1 KB: the latency terms, not the bytes, decide.
    small = collective_time("all_gather", 1e3, g)
    assert small > 10 * (7 / 8 * 1e3 / A100.intra_bw)
    assert small < RING["simple"]["base"] + 7 * RING["simple"]["intra"] + 1e-9


def test_ring_latency_grows_with_ranks_and_network_steps():
    few = collective_time("all_gather", 1e4, Group(16, 8, A100))
    many = collective_time("all_gather", 1e4, Group(1024, 8, A100))
    assert many > 10 * few


def test_tree_wins_for_small_all_reduce_across_many_nodes_ring_for_large():
    g = Group(1024, 8, A100)
    n = g.n
    ring_only = min(p["base"] + (2 * (n - 1) - 2 * (g.nodes - 1)) * p["intra"] + 2 * (g.nodes - 1) * p["inter"]
                    + bus_factor("all_reduce", n) * 1e6 / (g.bandwidth() * p["bw"]) for p in RING.values())
    assert collective_time("all_reduce", 1e6, g) < 0.5 * ring_only
    # A huge message inside a node: the ring's 2(n−1)/n beats the tree's 2 at 90%.
    inside = Group(8, 8, A100)
    assert collective_time("all_reduce", 8e9, inside) == pytest.approx(2 * 7 / 8 * 8e9 / A100.intra_bw, rel=0.01)


def test_spanning_groups_drive_the_nodes_nics_up_to_nvlink():
    spread = Group(64, 8, A100)                     # 8 ranks a node: 8 NICs, capped by NVLink
    assert spread.bandwidth() == pytest.approx(min(A100.intra_bw, 8 * A100.inter_bw))
    one_per_node = Group(64, 1, A100)               # tp8 × dp64: a DP group has one rank a node
    assert one_per_node.bandwidth() == A100.inter_bw
    flat = Group(64, 8, A100, nics_used=1)          # software that drives one NIC a rank
    assert flat.bandwidth() == A100.inter_bw
    assert Group(8, 8, A100).bandwidth() == A100.intra_bw


@pytest.mark.parametrize("size, stride, expect", [(8, 1, 8), (4, 2, 4), (32, 8, 1), (32, 2, 4), (1, 1, 1)])
def test_megatron_placement(size, stride, expect):
    """tp innermost: a DP group of tp-8 ranks has one member a node; of tp-2 ranks, four."""
    assert placement(size, stride, 8) == expect


def test_all_to_all_remote_share_leaves_through_the_ranks_own_nic():
    g = Group(32, 8, A100)                           # 4 nodes
    S = 1e9
    assert collective_time("all_to_all", S, g) == pytest.approx(24 / 32 * S / A100.inter_bw, rel=0.01)
    inside = Group(8, 8, A100)
    assert collective_time("all_to_all", S, inside) == pytest.approx(7 / 8 * S / A100.intra_bw, rel=0.01)


def test_p2p_and_trivial_groups():
    assert collective_time("all_reduce", 1e9, Group(1, 1, A100)) == 0
    assert collective_time("p2p", 1e9, Group(2, 1, A100)) == pytest.approx(1e9 / A100.inter_bw, rel=0.01)
    with pytest.raises(ValueError):
        collective_time("broadcast", 1.0, Group(2, 1, A100))
    assert math.isfinite(collective_time("all_gather", 1.0, Group(2, 2, A100)))
