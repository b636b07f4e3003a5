"""The layout search's speed: Qwen3-30B-A3B (48 layers, 128 experts) on 1024 H100 at a global
batch of 4096 sequences is a space of about 145,000 layouts Megatron-LM would accept. The
target is ≥ 100,000 layouts in ≤ 10 s on one CPU core; this records the figure, it does not
assert a time."""

from gpubench.estimate.cluster import make_cluster
from gpubench.estimate.models import get_model
from gpubench.estimate.plan import search
from gpubench.estimate.profile import default_profile


def test_plan_search_rate(benchmark):
    model = get_model("qwen3-30b-a3b")
    cluster = make_cluster("h100", 1024)
    profile = default_profile(cluster.gpu.key, cluster.gpu.arch)

    def run():
        return search(model, cluster, global_batch=4096, precision="bf16", profile=profile,
                      tokens=36e12, top=5, max_layouts=10**6)

    ranked, stats = benchmark.pedantic(run, rounds=3, iterations=1, warmup_rounds=0)
    benchmark.extra_info.update({k: v for k, v in stats.items() if k not in ("note", "families")})
    benchmark.extra_info["best_layout"] = ranked[0]["layout"]
    assert stats["evaluated"] >= 100_000
    assert ranked and all(e["memory"]["fits"] for e in ranked)
