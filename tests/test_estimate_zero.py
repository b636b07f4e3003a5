"""Data parallelism as frameworks run it: ZeRO stages, FSDP, Megatron's distributed optimizer,
their traffic and what it overlaps."""

import pytest

from gpubench.estimate.cluster import make_cluster
from gpubench.estimate.comm import Group, collective_time
from gpubench.estimate.models import get_model
from gpubench.estimate.perf import StepModel, make_layout
from gpubench.estimate.profile import default_profile

GPT3 = get_model("gpt3-175b")


def run(model=GPT3, gpu="a100-80gb", gpus=384, **layout):
    c = make_cluster(gpu, gpus)
    sm = StepModel(model, c, make_layout(model, gpus, **layout), default_profile(c.gpu.key, c.gpu.arch))
    return sm, sm.estimate()


def test_zero_stage_changes_the_prediction_where_it_changes_the_traffic():
    base = dict(micro_batch=4, global_batch=1536, recompute="full", precision="fp16", framework="deepspeed")
    _, z1 = run(zero=1, **base)
    _, z3 = run(zero=3, **base)
    assert z3["step_time_s"] > 1.2 * z1["step_time_s"]
    assert z3["overlaps"]["dp_traffic_s"] > 2 * z1["overlaps"]["dp_traffic_s"]


def test_zero3_gathers_every_micro_batch_zero1_once_a_step():
    one = dict(global_batch=384, recompute="full", precision="fp16", framework="fsdp")
    two = dict(global_batch=768, recompute="full", precision="fp16", framework="fsdp")
    _, a = run(zero=3, **one)
    _, b = run(zero=3, **two)
    assert b["overlaps"]["dp_traffic_s"] == pytest.approx(2 * a["overlaps"]["dp_traffic_s"], rel=1e-6)
    _, c = run(zero=1, framework="megatron", **{k: v for k, v in one.items() if k != "framework"})
    _, d = run(zero=1, framework="megatron", **{k: v for k, v in two.items() if k != "framework"})
    assert d["overlaps"]["dp_traffic_s"] == pytest.approx(c["overlaps"]["dp_traffic_s"], rel=1e-6)


def test_zero3_traffic_is_two_gathers_and_a_reduce_scatter_per_micro_batch():
    sm, e = run(zero=3, global_batch=384, recompute="none", precision="bf16", framework="fsdp")
    P = sm.params_per_gpu()
    g = sm.dp_group
    expect = 2 * collective_time("all_gather", P * 2, g) + collective_time("reduce_scatter", P * 4, g)
    assert e["overlaps"]["dp_traffic_s"] == pytest.approx(expect, rel=1e-9)
    # DeepSpeed gathers a third time for the recomputed forward.
    sm, ds = run(zero=3, global_batch=384, recompute="full", precision="fp16", framework="deepspeed")
    g = sm.dp_group
    expect = 3 * collective_time("all_gather", P * 2, g) + collective_time("reduce_scatter", P * 2, g)
    assert ds["overlaps"]["dp_traffic_s"] == pytest.approx(expect, rel=1e-9)


def test_deepspeed_zero3_drives_one_nic_a_rank_fsdp_the_nodes():
    """What Narayanan Table 2 measured for DeepSpeed ZeRO-3 (per-GPU traffic at one NIC's rate)
    against PyTorch FSDP, whose NCCL rings drive all of a node's NICs."""
    ds, _ = run(gpus=1536, zero=3, framework="deepspeed", global_batch=1536, precision="fp16")
    fs, _ = run(gpus=1536, zero=3, framework="fsdp", global_batch=1536, precision="fp16")
    assert ds.dp_group.bandwidth() == pytest.approx(ds.links.inter_bw)
    assert fs.dp_group.bandwidth() == pytest.approx(min(fs.links.intra_bw, 8 * fs.links.inter_bw))


def test_gradient_reduction_hides_behind_the_last_backward():
    sm, e = run(model=get_model("llama3.1-8b"), gpu="h100", gpus=64, zero=1, global_batch=64)
    o = e["overlaps"]
    assert o["dp_comm_hidden_behind_compute_s"] > 0
    assert e["breakdown"]["dp_comm_exposed_s"] + o["dp_comm_hidden_behind_compute_s"] == pytest.approx(
        o["dp_traffic_s"], rel=1e-9)
    # Hidden traffic still costs the compute the multiprocessors it borrows.
    assert e["breakdown"]["overlap_interference_s"] > 0


def test_distributed_optimizer_moves_the_same_bytes_as_an_all_reduce():
    """Reduce-scatter + all-gather of the same size is the ring all-reduce, split in two."""
    g = Group(64, 1, make_cluster("h100", 64) and StepModel(
        GPT3, make_cluster("a100-80gb", 64), make_layout(GPT3, 64, tp=8, pp=8), default_profile(
            "a100-sxm-80gb", "ampere")).links)
    S = 4e9
    rs_ag = collective_time("reduce_scatter", S, g) + collective_time("all_gather", S, g)
    assert rs_ag == pytest.approx(collective_time("all_reduce", S, g), rel=0.02)
