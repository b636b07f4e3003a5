"""The GPT module and its config: counts against the module itself and against the
estimator's independent accounting, validation, causality, checkpointing."""

import pytest
import torch

from gpubench.errors import GpubenchError
from gpubench.estimate import flops as est_flops
from gpubench.gpt.config import SIZES, GPTConfig, get_size
from gpubench.gpt.model import GPT

VARIANTS = [
    get_size("tiny"),
    get_size("tiny").with_(mlp="gelu", pos="learned"),
    get_size("tiny").with_(kv_heads=2),
    get_size("mini").with_(ffn_hidden=200, vocab=1000),
]


def _meta_model(cfg: GPTConfig) -> GPT:
    with torch.device("meta"):      # shapes only: a 13B model costs nothing
        return GPT(cfg)


@pytest.mark.parametrize("cfg", list(SIZES.values()) + VARIANTS, ids=lambda c: f"{c.name}-{c.mlp}-{c.pos}-{c.kv_heads}")
def test_parameter_and_flop_counts_match_the_module(cfg):
    model = _meta_model(cfg)
    assert cfg.params() == sum(p.numel() for p in model.parameters())
    linears = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
    n = sum(m.weight.numel() for m in linears)          # every weight a token multiplies
    assert cfg.matmul_params() == n
    palm = 6 * n + 12 * cfg.layers * cfg.heads * cfg.head_dim * cfg.seq_len
    assert cfg.model_flops_per_token() == palm
    # The estimator counts the same shape its own way (ModelConfig, estimate.flops).
    m = cfg.to_model_config()
    assert cfg.model_flops_per_token() == pytest.approx(est_flops.model_flops_per_token(m), rel=1e-12)
    assert cfg.hardware_flops_per_token("every") == pytest.approx(
        est_flops.hardware_flops_per_token(m, "full"), rel=1e-12)
    assert cfg.model_flops_per_token() < cfg.hardware_flops_per_token("attention") < \
        cfg.hardware_flops_per_token("every")


def test_named_sizes_are_about_their_names():
    for name, billions in [("125m", 0.125), ("350m", 0.35), ("760m", 0.76), ("1.3b", 1.3), ("2.7b", 2.7),
                           ("6.7b", 6.7), ("13b", 13)]:
        # Untied embeddings and a padded vocabulary add up to ~30% at the small end.
        assert 0.9 < get_size(name).params() / (billions * 1e9) < 1.35, name


@pytest.mark.parametrize("changes, words", [
    ({"heads": 5}, "heads=5 does not divide hidden=64"),
    ({"kv_heads": 3}, "kv_heads=3 must divide heads=4"),
    ({"hidden": 0}, "hidden=0 must be a positive"),
    ({"mlp": "relu"}, "mlp='relu'"),
    ({"pos": "alibi"}, "pos='alibi'"),
    ({"hidden": 60, "heads": 4}, "rotary positions need an even head_dim"),
])
def test_invalid_configs_are_refused_with_the_reason(changes, words):
    with pytest.raises(GpubenchError, match=words.replace("(", r"\(")):
        get_size("tiny").with_(**changes)


def test_unknown_size_suggests_a_close_name():
    with pytest.raises(GpubenchError, match="did you mean 1.3b"):
        get_size("1.3B-xl")


@pytest.mark.parametrize("cfg", VARIANTS[:3], ids=["swiglu-rope", "gelu-learned", "gqa"])
def test_the_model_is_causal(cfg):
    model = GPT(cfg).double()
    x = torch.randint(0, cfg.vocab, (2, 40))
    y = x.clone()
    y[:, 25:] = torch.randint(0, cfg.vocab, (2, 15))       # change only the future
    a, b = model(x), model(y)
    assert torch.equal(a[:, :25], b[:, :25])
    assert not torch.allclose(a[:, 25:], b[:, 25:])


def test_checkpointing_changes_memory_not_numbers():
    from gpubench.gpt.memory import count_saved

    cfg = get_size("mini")
    model = GPT(cfg).double()
    x = torch.randint(0, cfg.vocab, (2, cfg.seq_len))
    results = {}
    for mode in ("none", "attention", "every"):
        model.set_checkpointing(mode)
        model.zero_grad()
        with count_saved(model.parameters()) as seen:
            loss = model(x, x)
        loss.backward()
        results[mode] = (loss.item(), [p.grad.clone() for p in model.parameters()], sum(seen.values()))
    base_loss, base_grads, base_saved = results["none"]
    for mode in ("attention", "every"):
        loss, grads, saved = results[mode]
        assert loss == pytest.approx(base_loss, rel=1e-12)
        assert all(torch.allclose(g, b, rtol=1e-10, atol=1e-14) for g, b in zip(grads, base_grads))
    # What the forward keeps for the backward shrinks: every < attention < none.
    assert results["every"][2] < results["attention"][2] < base_saved
    assert results["every"][2] < 0.25 * base_saved


def test_memory_estimate_is_near_what_autograd_saves():
    from gpubench.gpt.memory import count_saved, estimate_step_bytes

    cfg = get_size("small")
    model = GPT(cfg)
    x = torch.randint(0, cfg.vocab, (4, cfg.seq_len))
    for mode in ("none", "attention"):
        model.set_checkpointing(mode)
        with count_saved(model.parameters()) as seen:
            loss = model(x, x)
        del loss
        est = estimate_step_bytes(cfg, "fp32", mode, 4, cuda=False)
        measured = sum(seen.values())
        assert 0.6 < (est["activations"] + est["logits"]) / measured < 1.5, (mode, est, measured)


def test_triton_attention_path_matches_sdpa():
    """The Triton kernel inside the model (interpreter on a CPU): same loss and gradients."""
    cfg = get_size("tiny").with_(seq_len=32, hidden=64, heads=4)      # head_dim 16
    ref = GPT(cfg)
    tri = GPT(cfg.with_(attention="triton"))
    tri.load_state_dict(ref.state_dict())
    x = torch.randint(0, cfg.vocab, (1, 32))
    la, lb = ref(x, x), tri(x, x)
    la.backward()
    lb.backward()
    assert lb.item() == pytest.approx(la.item(), rel=1e-5)
    for (name, a), b in zip(ref.named_parameters(), tri.parameters()):
        assert torch.allclose(a.grad, b.grad, rtol=1e-3, atol=1e-6), name
