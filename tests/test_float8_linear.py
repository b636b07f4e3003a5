"""FP8 training linears (gpubench.gpt.float8) against float64 references from the
unquantized tensors, plus the plumbing: parameter sharing, conversion, fallback."""

import copy
import itertools

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from gpubench.gpt import float8
from gpubench.gpt.float8 import (
    E4M3,
    E5M2,
    Float8Linear,
    convert_to_float8,
    eligible,
    float8_unsupported_reason,
)

needs_fp8 = pytest.mark.skipif(float8_unsupported_reason(torch.device("cpu")) is not None,
                               reason=str(float8_unsupported_reason(torch.device("cpu"))))

# Relative Frobenius error ‖out − ref‖/‖ref‖ against float64 on the unquantized tensors.
# Measured on torch 2.13 CPU over all shapes below, 5 draws each, fp32/bf16/autocast:
#   forward 0.036-0.038 (e4m3 on both operands), dX and dW 0.058-0.063 (e5m2 gradient).
FWD_BOUND = 0.1
BWD_BOUND = 0.15
BIAS_BOUND = 1e-5       # bias grad is an fp32 sum of the (unquantized) output grad: measured < 1e-7
FALLBACK_BOUND = 1e-2   # F.linear in bf16: measured <= 3e-3; fp32 ~1.6e-7
# Whole model (Tiny below), 100 draws: loss rel. error median 1.3e-4, max 5.4e-4; parameter
# grads median up to 0.087, max 0.107 (blocks.0: its grad went through two FP8 backward GEMMs).
MODEL_LOSS_BOUND = 1.5e-3
MODEL_GRAD_BOUND = 0.25

SHAPES = list(itertools.product((32, 128), (64, 256), (48, 96)))    # (M, K, N)
MODES = ("fp32", "bf16", "autocast")


def rel(out: torch.Tensor, ref: torch.Tensor) -> float:
    return ((out.double() - ref).norm() / ref.norm()).item()


def run_layer(lin: nn.Linear, m: int, mode: str, device="cpu"):
    """Forward + backward through ``lin`` on fresh random data with 3-D input (2, m/2, K).
    Returns (y, x, g): output, input (with .grad) and the output grad used."""
    dtype = torch.bfloat16 if mode == "bf16" else torch.float32
    x = torch.randn(2, m // 2, lin.in_features, device=device, dtype=dtype, requires_grad=True)
    with torch.autocast(torch.device(device).type, dtype=torch.bfloat16, enabled=mode == "autocast"):
        y = lin(x)
    g = torch.randn_like(y)
    y.backward(g)
    return y, x, g


def errors(lin: nn.Linear, y, x, g) -> dict[str, float]:
    k, n = lin.in_features, lin.out_features
    xd, gd = x.detach().double().reshape(-1, k), g.double().reshape(-1, n)
    wd = lin.weight.detach().double()
    ref = xd @ wd.t()
    if lin.bias is not None:
        ref = ref + lin.bias.detach().double()
    out = {"fwd": rel(y.reshape(-1, n), ref),
           "dx": rel(x.grad.reshape(-1, k), gd @ wd),
           "dw": rel(lin.weight.grad, gd.t() @ xd)}
    if lin.bias is not None:
        out["db"] = rel(lin.bias.grad, gd.sum(0))
    return out


def check(err: dict[str, float]):
    assert err["fwd"] < FWD_BOUND, err
    assert err["dx"] < BWD_BOUND, err
    assert err["dw"] < BWD_BOUND, err
    if "db" in err:
        assert err["db"] < BIAS_BOUND, err


@needs_fp8
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("m,k,n", SHAPES)
def test_forward_and_grads_match_float64(m, k, n, mode):
    lin = Float8Linear(k, n, bias=(n == 48))      # with and without bias
    y, x, g = run_layer(lin, m, mode)
    check(errors(lin, y, x, g))
    assert lin.fallback_calls == 0
    assert x.grad.dtype == x.dtype
    assert lin.weight.grad.dtype == torch.float32


@needs_fp8
@pytest.mark.parametrize("mutation", ["scale applied twice", "weight scale for both"])
def test_forward_bound_catches_a_broken_scale(monkeypatch, mutation):
    real = torch._scaled_mm

    def broken(a, b, *, scale_a, scale_b, **kw):
        if a.dtype == E4M3 and b.dtype == E4M3:     # the forward GEMM only
            if mutation == "scale applied twice":
                scale_a = scale_a * scale_a
            else:
                scale_a = scale_b
        return real(a, b, scale_a=scale_a, scale_b=scale_b, **kw)

    monkeypatch.setattr(torch, "_scaled_mm", broken)
    lin = Float8Linear(64, 48)
    y, x, g = run_layer(lin, 32, "fp32")
    err = errors(lin, y, x, g)
    with pytest.raises(AssertionError):
        check(err)
    assert err["fwd"] > FWD_BOUND


@needs_fp8
def test_backward_uses_e5m2_for_gradients(monkeypatch):
    real, seen = torch._scaled_mm, []

    def spy(a, b, **kw):
        seen.append((a.dtype, b.dtype, kw["out_dtype"], kw["use_fast_accum"]))
        return real(a, b, **kw)

    monkeypatch.setattr(torch, "_scaled_mm", spy)
    run_layer(Float8Linear(64, 48), 32, "autocast")
    assert seen == [(E4M3, E4M3, torch.bfloat16, True),      # forward: fast accumulation
                    (E5M2, E4M3, torch.float32, False),      # dX, in x's dtype (fp32)
                    (E5M2, E4M3, torch.float32, False)]      # dW, fp32 for the master weight


def test_from_linear_shares_parameters_and_state_dict():
    lin = nn.Linear(64, 32)
    f8 = Float8Linear.from_linear(lin)
    assert f8.weight is lin.weight and f8.bias is lin.bias
    assert list(f8.state_dict()) == list(lin.state_dict())
    assert f8.fallback_calls == 0
    plain = nn.Linear(64, 32)
    plain.load_state_dict(f8.state_dict())                     # interchangeable both ways
    f8.load_state_dict(nn.Linear(64, 32).state_dict())
    nobias = Float8Linear.from_linear(nn.Linear(64, 32, bias=False))
    assert nobias.bias is None and list(nobias.state_dict()) == ["weight"]


@needs_fp8
def test_optimizer_step_updates_fp32_weight():
    f8 = Float8Linear.from_linear(nn.Linear(64, 32))
    before = f8.weight.detach().clone()
    opt = torch.optim.SGD(f8.parameters(), lr=0.1)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = f8(torch.randn(4, 16, 64)).float().square().mean()
    loss.backward()
    assert f8.weight.grad is not None and f8.weight.grad.dtype == torch.float32
    assert f8.bias.grad.dtype == torch.float32
    opt.step()
    assert f8.weight.dtype == torch.float32
    assert not torch.equal(f8.weight.detach(), before)
    assert f8.fallback_calls == 0


class Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.blocks = nn.Sequential(nn.Linear(64, 128), nn.GELU(), nn.Linear(128, 64))
        self.side = nn.ModuleDict({"down": nn.Linear(64, 24), "up": nn.Linear(24, 64, bias=False)})
        self.lm_head = nn.Linear(64, 32)

    def forward(self, x):
        h = self.blocks(x)
        h = h + self.side["up"](F.gelu(self.side["down"](h)))
        return self.lm_head(h)


def test_convert_picks_the_right_modules():
    model = Tiny()
    report = convert_to_float8(model, backend="gpubench")
    assert report["backend"] == "gpubench"
    assert report["converted"] == ["blocks.0", "blocks.2"]
    assert report["skipped"] == ["side.down (out 24 not a multiple of 16)",
                                 "side.up (in 24 not a multiple of 16)",
                                 "lm_head (skip list)"]
    assert isinstance(model.blocks[0], Float8Linear) and isinstance(model.blocks[2], Float8Linear)
    for name in ("down", "up"):
        assert type(model.side[name]) is nn.Linear
    assert type(model.lm_head) is nn.Linear
    assert not eligible(model.side["up"]) and eligible(model.lm_head)
    # Converting again is a no-op that says why; an empty skip list takes the head too.
    again = convert_to_float8(model, skip=(), backend="gpubench")
    assert again["converted"] == ["lm_head"]
    assert "blocks.0 (already Float8Linear)" in again["skipped"]


@needs_fp8
@pytest.mark.parametrize("mode", ["fp32", "autocast"])
def test_converted_model_loss_and_grads_close_to_unconverted(mode):
    ref_model = Tiny()
    model = copy.deepcopy(ref_model)
    convert_to_float8(model, backend="gpubench")
    x, target = torch.randn(4, 32, 64), torch.randint(0, 32, (4, 32))

    def loss_of(mdl):
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=mode == "autocast"):
            logits = mdl(x)
        loss = F.cross_entropy(logits.float().reshape(-1, 32), target.reshape(-1))
        loss.backward()
        return loss

    # The unconverted model in fp32 (no autocast) is the reference for both modes.
    ref_loss = F.cross_entropy(ref_model(x).reshape(-1, 32), target.reshape(-1))
    ref_loss.backward()
    loss = loss_of(model)
    assert abs(loss.item() - ref_loss.item()) / ref_loss.item() < MODEL_LOSS_BOUND
    ref_params = dict(ref_model.named_parameters())
    for name, p in model.named_parameters():
        assert p.grad.dtype == torch.float32
        assert rel(p.grad, ref_params[name].grad.double()) < MODEL_GRAD_BOUND, name
    assert all(m.fallback_calls == 0 for m in model.modules() if isinstance(m, Float8Linear))


@pytest.mark.parametrize("mode", ["fp32", "autocast"])
def test_fallback_when_rows_not_multiple_of_16(mode):
    lin = Float8Linear(64, 48)
    y, x, g = run_layer(lin, 24, mode)           # 24 tokens: not a multiple of 16
    assert lin.fallback_calls == 1
    assert y.dtype == (torch.bfloat16 if mode == "autocast" else torch.float32)
    err = errors(lin, y, x, g)
    assert max(err.values()) < FALLBACK_BOUND, err
    assert lin.weight.grad.dtype == torch.float32
    lin(torch.randn(7, 64))
    assert lin.fallback_calls == 2


@needs_fp8
def test_output_dtype_rules():
    lin = Float8Linear(64, 32)
    x = torch.randn(16, 64)
    assert lin(x).dtype == torch.float32
    assert lin(x.bfloat16()).dtype == torch.bfloat16
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert lin(x).dtype == torch.bfloat16
        assert lin(x.bfloat16()).dtype == torch.bfloat16
    assert lin.fallback_calls == 0


def test_unsupported_reason():
    assert float8_unsupported_reason(torch.device("meta")) is not None
    if torch.cuda.is_available():
        cap = torch.cuda.get_device_capability()
        supported = float8_unsupported_reason(torch.device("cuda")) is None
        assert supported == (cap >= (8, 9) and not torch.version.hip)


def test_backend_without_torchao_is_gpubench():
    try:
        import torchao.float8  # noqa: F401
    except ImportError:
        assert float8.float8_backend() == "gpubench"
    else:
        assert float8.float8_backend() in ("torchao", "gpubench")


def test_torchao_backend_converts_the_same_modules():
    pytest.importorskip("torchao.float8", reason="torchao is not installed")
    if float8.float8_backend() != "torchao":
        pytest.skip("torchao.float8 imports but does not run here")
    model = Tiny()
    report = convert_to_float8(model, backend="torchao")
    assert report["converted"] == ["blocks.0", "blocks.2"]
    assert "lm_head (skip list)" in report["skipped"]
    assert type(model.lm_head) is nn.Linear and type(model.side["up"]) is nn.Linear
    assert type(model.blocks[0]) is not nn.Linear


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available() or float8_unsupported_reason(torch.device("cuda")) is not None,
                    reason="needs a CUDA GPU with FP8 _scaled_mm (sm89+)")
@pytest.mark.parametrize("mode", MODES)
def test_cuda_forward_and_grads_match_float64(mode):
    lin = Float8Linear(256, 96).cuda()
    y, x, g = run_layer(lin, 128, mode, device="cuda")
    check(errors(lin, y, x, g))
    assert lin.fallback_calls == 0
