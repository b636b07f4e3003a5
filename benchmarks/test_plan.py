"""The layout search's speed: DeepSeek-V3 on 2048 H800 at its published batch (15360
sequences) is a space of about 124,000 layouts. The target is ≥ 100,000 layouts in ≤ 10 s
on one CPU core; this records the figure, it does not assert a time."""

from gpubench.estimate.cluster import make_cluster
from gpubench.estimate.models import get_model
from gpubench.estimate.plan import search
from gpubench.estimate.profile import default_profile


def test_plan_search_rate(benchmark):
    model = get_model("deepseek-v3")
    cluster = make_cluster("h800", 2048)
    profile = default_profile(cluster.gpu.key, cluster.gpu.arch)

    def run():
        return search(model, cluster, global_batch=15360, precision="fp8", profile=profile,
                      tokens=14.8e12, top=5, max_layouts=10**6)

    ranked, stats = benchmark.pedantic(run, rounds=3, iterations=1, warmup_rounds=0)
    benchmark.extra_info.update({k: v for k, v in stats.items() if k != "note"})
    benchmark.extra_info["best_layout"] = ranked[0]["layout"]
    assert stats["evaluated"] >= 100_000
    assert ranked and all(e["memory"]["fits"] for e in ranked)
