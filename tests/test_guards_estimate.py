"""The estimator's inputs held to published figures and to their own definitions: link rates,
node counts, the user's price, and the memory estimate's parts adding up.

Each test names in its docstring the break it guards against; the published figures are in
tests/data/ with their sources."""

import csv
import math
from pathlib import Path

import pytest

from estimate_helpers import run_json
from gpubench.estimate.cluster import FACTS, make_cluster
from gpubench.estimate.comm import Group, Links, collective_time, ring_steps
from gpubench.estimate.memory import ALLOCATOR_OVERHEAD, RESERVED_BYTES, memory_estimate, state_bytes
from gpubench.estimate.models import get_model
from gpubench.estimate.perf import StepModel, make_layout
from gpubench.estimate.profile import default_profile

DATA = Path(__file__).resolve().parent / "data"


def _published_links():
    with open(DATA / "interconnect_published.csv", newline="") as f:
        return list(csv.DictReader(f))


@pytest.mark.parametrize("row", _published_links(), ids=lambda r: r["gpu"])
def test_link_rates_are_the_datasheets(row):
    """Guards: a link rate in the interconnect table off its datasheet (the H100's inter-node
    bandwidth halved passed every test): NVLink is the aggregate halved per direction, the
    network one NIC per GPU at its InfiniBand rate (Gb/s ÷ 8 = GB/s)."""
    link = FACTS[row["gpu"]]
    assert link.intra_node_gbps == pytest.approx(float(row["nvlink_aggregate_gbps"]) / 2, rel=1e-12)
    assert link.inter_node_gbps == pytest.approx(float(row["nic_per_gpu_gbit"]) / 8, rel=1e-12)
    assert link.gpus_per_node == 8


def _step_model(model, gpu, gpus, cluster=None, **layout):
    c = cluster or make_cluster(gpu, gpus)
    return StepModel(model, c, make_layout(model, gpus, **layout), default_profile(c.gpu.key, c.gpu.arch))


def test_the_step_model_uses_the_clusters_link_rates():
    """Guards: the step model scaling a link rate on its way in (inter-node bandwidth halved in
    perf.py): the rank's links are the cluster's figures times the profile's achieved fractions,
    and the data-parallel group across nodes rides the network at that rate."""
    m = get_model("llama3.1-8b")
    for inter in (None, 12.5):
        c = make_cluster("h100", 64, inter_node_gbps=inter)
        sm = _step_model(m, None, 64, cluster=c, tp=8, global_batch=64)
        prof = sm.profile
        assert sm.links.inter_bw == pytest.approx(c.link.inter_node_gbps * 1e9 * prof.inter_node_efficiency, rel=1e-12)
        assert sm.links.intra_bw == pytest.approx(c.link.intra_node_gbps * 1e9 * prof.intra_node_efficiency, rel=1e-12)
        assert sm.dp_group.n == 8 and sm.dp_group.nodes == 8 and sm.dp_group.per_node == 1
        assert sm.dp_group.bandwidth() == pytest.approx(sm.links.inter_bw, rel=1e-12)
    assert make_cluster("h100", 64, inter_node_gbps=12.5).link.inter_node_gbps == 12.5


@pytest.mark.parametrize("gpus, nodes", [(1, 1), (7, 1), (8, 1), (9, 2), (12, 2), (16, 2), (17, 3), (1000, 125),
                                         (1001, 126)])
def test_node_counts_round_up(gpus, nodes):
    """Guards: the node count rounded down (12 GPUs on 8-GPU nodes is 2 nodes, not 1): the
    cluster's, a communication group's, and what the estimate reports."""
    assert make_cluster("h100", gpus).nodes == nodes
    links = Links(100e9, 10e9)
    assert Group(gpus, 8, links).nodes == nodes
    assert Group(gpus, min(gpus, 8), links).nodes == nodes


def test_a_group_spilling_into_a_second_node_pays_the_network():
    """Guards: Group.nodes rounded down: 12 ranks, 8 a node, span 2 nodes, so the ring crosses
    the network twice in an all-reduce and the bus runs at the network's rate, not NVLink's."""
    links = Links(450e9, 50e9)
    g = Group(12, 8, links)
    assert ring_steps("all_reduce", 12, g.nodes) == (20.0, 2.0)
    assert g.bandwidth() == pytest.approx(8 * 50e9)
    one_node = Group(8, 8, links)
    assert one_node.bandwidth() == pytest.approx(450e9)
    S = 1e9
    assert collective_time("all_reduce", S, g) > collective_time("all_reduce", S, one_node)


def test_estimate_reports_whole_nodes(capsys):
    """Guards: the estimate's node count (and the acquisition bill built on it) rounded down."""
    e = run_json(capsys, "estimate", "--model", "llama2-7b", "--gpu", "h100", "--gpus", "12", "--tp", "4",
                 "--global-batch", "48", "--tokens", "1B")
    assert e["cluster"]["nodes"] == 2
    acq = e["cost_details"]["acquisition"]
    assert acq["nodes"] == 2 and acq["upfront_usd"] == pytest.approx(2 * acq["node_price_usd"], rel=1e-12)


def test_the_users_price_is_the_one_charged(capsys):
    """Guards: --price ignored (its test passed the price the table already had): a price no
    table holds must be the one every cloud figure is charged at, and said to be the user's."""
    base = ["estimate", "--model", "llama2-7b", "--gpu", "h100", "--gpus", "64", "--global-batch", "512",
            "--tokens", "100B"]
    table = run_json(capsys, *base)
    given = run_json(capsys, *base, "--price", "1.2345")
    assert table["cost_details"]["cloud_price"]["basis"] == "price table"
    assert table["cost_details"]["cloud_price"]["usd_per_gpu_hour"] != pytest.approx(1.2345)
    assert given["cost_details"]["cloud_price"]["basis"] == "--price"
    assert given["cost_details"]["cloud_price"]["usd_per_gpu_hour"] == 1.2345
    assert given["gpu_hours"] == pytest.approx(table["gpu_hours"], rel=1e-12)
    assert given["cost_usd"]["cloud"] == pytest.approx(given["gpu_hours"] * 1.2345, rel=1e-12)
    assert given["usd_per_million_tokens"] == pytest.approx(given["cost_usd"]["cloud"] / 100e9 * 1e6, rel=1e-9)


def test_memory_total_is_every_part_plus_overheads():
    """Guards: a part (the optimizer state, say) left out of the total: the total is the model
    states, activations and logits, plus the allocator's factor and the reserve; and the
    optimizer state is Adam's 12 bytes a parameter (fp32 master, two moments), sharded by ZeRO-1."""
    m = get_model("llama3.1-8b")
    for zero in (0, 1):
        sm = _step_model(m, "h100", 64, tp=8, global_batch=64, zero=zero, framework="megatron")
        mem = memory_estimate(sm)
        parts = ("weights_gb", "gradients_gb", "optimizer_gb", "activations_gb", "logits_gb")
        allocated = sum(mem[p] for p in parts) * 1e9
        assert mem["total_gb"] * 1e9 == pytest.approx(allocated * (1 + ALLOCATOR_OVERHEAD) + RESERVED_BYTES,
                                                      rel=1e-12)
        assert mem["optimizer_gb"] * 1e9 == pytest.approx(12 * sm.params_per_gpu() / (8 if zero else 1), rel=1e-12)
        assert mem["fits"] == (mem["total_gb"] <= mem["capacity_gb"]) and mem["capacity_gb"] == 80
        assert sum(state_bytes(sm).values()) / 1e9 == pytest.approx(
            mem["weights_gb"] + mem["gradients_gb"] + mem["optimizer_gb"], rel=1e-12)


# ---- collectives: NCCL's cost model, term by term (estimate/comm.py's docstring) -----------------

def test_placement_of_strided_groups():
    """Guards: how many members of a group share a node: a group of `size` ranks `stride` apart
    on nodes of 8 GPUs."""
    from gpubench.estimate.comm import placement

    cases = {(8, 1): 8, (16, 1): 8, (8, 2): 4, (4, 8): 1, (4, 16): 1, (1, 1): 1, (3, 3): 2, (2, 4): 2, (2, 7): 1}
    assert {k: placement(*k, 8) for k in cases} == cases


def test_ring_steps_and_time_are_nccls():
    """Guards: the ring's step count (all-reduce 2(n−1) steps, 2(nodes−1) of them on the network;
    all-gather n−1, nodes−1; a send one step, on the network only across nodes) and its time, the
    cheaper protocol's latency plus the bus factor's bytes at the protocol's share of the bus."""
    from gpubench.estimate.comm import RING, bus_factor, ring_time

    assert ring_steps("all_reduce", 16, 2) == (28.0, 2.0) and ring_steps("all_reduce", 8, 1) == (14.0, 0.0)
    assert ring_steps("all_gather", 16, 2) == (14.0, 1.0) and ring_steps("reduce_scatter", 4, 1) == (3.0, 0.0)
    assert ring_steps("p2p", 2, 1) == (1.0, 0.0) and ring_steps("p2p", 2, 2) == (0.0, 1.0)
    g = Group(16, 8, Links(400e9, 40e9))
    bw = g.bandwidth()
    for S in (1e3, 1e9):
        want = min(p["base"] + 28 * p["intra"] + 2 * p["inter"] + bus_factor("all_reduce", 16) * S / (bw * p["bw"])
                   for p in RING.values())
        assert ring_time("all_reduce", S, g) == pytest.approx(want, rel=1e-12)
    assert bus_factor("all_reduce", 16) == 2 * 15 / 16 and bus_factor("all_gather", 16) == 15 / 16
    assert bus_factor("p2p", 2) == 1.0 and bus_factor("all_reduce", 1) == 0.0
    small = ring_time("all_reduce", 1e3, g)           # LL's low latency wins for small messages
    p = RING["ll"]
    assert small == pytest.approx(p["base"] + 28 * p["intra"] + 2 * p["inter"]
                                  + 2 * 15 / 16 * 1e3 / (bw * p["bw"]), rel=1e-12)


def test_tree_all_reduce_is_nccls_double_binary_tree():
    """Guards: the tree's latency (2·((ranks a node − 1) NVLink steps + ⌈log₂ nodes⌉ network
    steps)) and bandwidth (2·S at 90% of the bus) terms."""
    from gpubench.estimate.comm import TREE, tree_time

    g = Group(40, 8, Links(400e9, 40e9))              # 5 nodes: 3 levels
    bw = g.bandwidth()
    for S in (1e3, 1e9):
        want = min(p["base"] + 2 * (7 * p["intra"] + 3 * p["inter"]) + 2.0 * S / (bw * p["bw"])
                   for p in TREE.values())
        assert tree_time(S, g) == pytest.approx(want, rel=1e-12)
    one = Group(8, 8, Links(400e9, 40e9))
    assert tree_time(1e3, one) == pytest.approx(min(p["base"] + 2 * 7 * p["intra"] + 2.0 * 1e3 / (400e9 * p["bw"])
                                                    for p in TREE.values()), rel=1e-12)
    # Across nodes the all-reduce takes the cheaper of ring and tree.
    from gpubench.estimate.comm import ring_time
    assert collective_time("all_reduce", 1e3, g) == pytest.approx(min(ring_time("all_reduce", 1e3, g),
                                                                      tree_time(1e3, g)), rel=1e-12)


def test_all_to_all_splits_local_and_remote_traffic():
    """Guards: the all-to-all's terms: one base latency and one step (NVLink inside a node, the
    network across), and the larger of the bytes for other nodes over the rank's NIC and the bytes
    for its own node's peers over NVLink."""
    from gpubench.estimate.comm import RING, all_to_all_time

    p = RING["simple"]
    links = Links(400e9, 40e9)
    S = 1e9
    inside = Group(8, 8, links)
    assert all_to_all_time(S, inside) == pytest.approx(p["base"] + p["intra"] + 7 / 8 * S / 400e9, rel=1e-12)
    across = Group(32, 8, links)
    assert all_to_all_time(S, across) == pytest.approx(
        p["base"] + p["inter"] + max(24 / 32 * S / 40e9, 7 / 32 * S / 400e9), rel=1e-12)


# ---- cost: inputs passed through and checked --------------------------------------------------------

def test_capex_energy_uses_the_given_pue_draw_and_price():
    """Guards: the amortized view dropping a given PUE or average draw (the defaults used instead),
    and its figures' arithmetic: GPU-hours n·h, energy n·server kW·draw·PUE·h, TDP in kW."""
    from gpubench.estimate import cost as C
    from gpubench.hardware import get_gpu

    out = C.capex_energy_cost("h100", 16, 100, gpu_price_usd=30000, pue=1.25, utilization_power=0.5,
                              electricity_usd_per_kwh=0.1)
    kw = C.server_power_kw_per_gpu("h100")
    assert out["gpu_hours"] == 1600 and out["tdp_kw"] == get_gpu("h100").tdp_w / 1000
    assert out["energy_kwh"] == pytest.approx(16 * kw * 0.5 * 1.25 * 100, rel=1e-12)
    assert out["energy_usd"] == pytest.approx(out["energy_kwh"] * 0.1, rel=1e-12)
    assert (out["pue"], out["utilization_power_fraction"], out["gpu_price_usd"]) == (1.25, 0.5, 30000)
    assert out["energy_fraction_of_total"] == pytest.approx(out["energy_usd"] / out["total_usd"], rel=1e-12)
    idle = C.capex_energy_cost("h100", 16, 0, gpu_price_usd=30000)
    assert idle["total_usd"] == 0 and idle["energy_fraction_of_total"] == 0.0


@pytest.mark.parametrize("call, flag", [
    (lambda C: C.capex_energy_cost("h100", 8, 10, gpu_price_usd=0), "--gpu-price must be greater than 0"),
    (lambda C: C.capex_energy_cost("h100", 8, 10, gpu_price_usd=1, pue=0), "--pue must be greater than 0"),
    (lambda C: C.capex_energy_cost("h100", 8, 10, gpu_price_usd=1, pue=0.9), "--pue must be at least 1.0"),
    (lambda C: C.capex_energy_cost("h100", 8, 10, gpu_price_usd=1, utilization_power=0),
     "--utilization-power must be greater than 0"),
    (lambda C: C.capex_energy_cost("h100", 8, 10, gpu_price_usd=1, utilization_power=1.5),
     "--utilization-power must be at most 1.0"),
    (lambda C: C.capex_energy_cost("h100", 8, -1, gpu_price_usd=1), "--hours must not be negative"),
    (lambda C: C.capex_energy_cost("h100", 2.5, 1, gpu_price_usd=1), "--gpus must be a whole number"),
    (lambda C: C.capex_energy_cost("h100", True, 1, gpu_price_usd=1), "--gpus must be a finite number"),
    (lambda C: C.acquisition_cost("h100", 8, node_price_usd=0), "--node-price must be greater than 0"),
    (lambda C: C.acquisition_cost("h100", 8, node_power_kw=0), "--node-power-kw must be greater than 0"),
    (lambda C: C.acquisition_cost("h100", 8, gpus_per_node=0), "--gpus-per-node must be greater than 0"),
])
def test_cost_inputs_are_checked_and_named_by_flag(call, flag):
    """Guards: a zero or out-of-range price, PUE, draw or count accepted (a free GPU, a PUE
    under 1), and errors that do not name the flag to change."""
    from gpubench.errors import GpubenchError
    from gpubench.estimate import cost as C

    with pytest.raises(GpubenchError, match=flag.replace(".", r"\.")):
        call(C)


def test_acquisition_with_a_node_size_the_table_does_not_price():
    """Guards: a table node's price or power applied to a node of another size, and the
    acquisition figures losing their GPU and node counts when priced from the GPU."""
    from gpubench.estimate import cost as C

    out = C.acquisition_cost("h100", 12, gpus_per_node=4, gpu_price_usd=25000)
    assert (out["gpu"], out["gpus"], out["gpus_per_node"], out["nodes"], out["node"]) == (
        "h100-sxm", 12, 4, 3, "4-GPU node")
    assert "node_price_usd" not in out and out["gpu_price_usd"] == 25000
    assert out["upfront_usd"] == pytest.approx(12 * C._cluster_capex_per_gpu("h100-sxm", 25000), rel=1e-12)
    assert out["node_power_kw"] == pytest.approx(4 * C.server_power_kw_per_gpu("h100-sxm"), rel=1e-12)
    assert out["power_basis"].endswith("(estimated)")
    given = C.acquisition_cost("h100", 12, gpus_per_node=4, gpu_price_usd=25000, node_power_kw=3.0)
    assert given["node_power_kw"] == 3.0 and given["power_basis"] == "given node power"
    assert given["power_kw"] == 9.0
    table = C.acquisition_cost("h100", 16)
    assert table["power_basis"] == "node maximum power (datasheet)" and table["node"] != "8-GPU node"
