"""``transformer-step``: one full training step of a GPT (forward, backward, AdamW).

Parameters (all but ``model`` have defaults):

* ``model``: a named size (``gpubench.gpt.config.SIZES``: tiny … 13b, Llama 2 7B/70B
  slices); any shape field may be overridden (``layers``, ``hidden``, ``heads``,
  ``kv_heads``, ``ffn_hidden``, ``seq``, ``vocab``, ``mlp``, ``pos``), validated before
  anything is allocated;
* ``dtype``: fp32, tf32, bf16, fp16 (with loss scaling) or fp8_e4m3 (FP8 linears);
* ``checkpointing``: none, every (block) or attention (sub-block);
* ``compile`` (torch.compile per block), ``micro_batch``, ``grad_accum``;
* ``parallel``: none, ddp or fsdp (needs ≥ 2 ranks: ``--nproc N`` or torchrun);
* ``attention``: sdpa or triton (gpubench's flash attention kernel);
* ``usd_per_gpu_hour``: the price for cost per token (default: the hardware table's
  on-demand cloud price for this GPU, with its source; none on a CPU).

What one iteration is: ``grad_accum`` micro-batches of ``micro_batch`` sequences of
``seq`` tokens per rank, then the optimizer step. FLOPs per iteration (per rank) are
model FLOPs per token (PaLM's 6·N + 12·L·H·Q·T) times its tokens, so the runner's
TFLOP/s is model FLOP/s; ``mfu`` divides it by the dense datasheet peak of the
precision (``mfu_vs_bf16_peak`` too, for FP8, whose attention and LM head run in
bf16); ``hfu`` counts what checkpointing recomputes as well. A GPU missing from the
hardware table, or a CPU, gets neither.

Before timing, ``check`` builds a float64 copy of the same weights (plain linears,
SDPA, no checkpointing: the definition) and compares the loss and every gradient of
one forward and backward on a fresh probe batch with the configured model's
(precision, FP8 linears, Triton attention, checkpointing and DDP/FSDP all included;
torch.compile is compared with the eager module on a real batch instead, since a
second shape would compile twice). Then it counts the activations one forward saves
for the backward. Under DDP/FSDP the ranks alternate between two probe batches and
the reference averages their gradients as the ranks do, so a reduction that was
skipped or wrong fails the check.
"""

from __future__ import annotations

import contextlib
import math
from typing import Any, Mapping

import torch

from gpubench.device import DeviceInfo
from gpubench.dtypes import get_precision
from gpubench.errors import CheckFailed, GpubenchError, SkipCase
from gpubench.gpt import memory
from gpubench.gpt.config import GPTConfig, get_size
from gpubench.gpt.step import PARALLEL, PRECISIONS, StepConfig, TrainStep
from gpubench.registry import Benchmark, Workload, register_benchmark

NAME = "transformer-step"

# Shape fields a case may override, and the GPTConfig field each one sets.
OVERRIDES = {"layers": "layers", "hidden": "hidden", "heads": "heads", "kv_heads": "kv_heads",
             "ffn_hidden": "ffn_hidden", "seq": "seq_len", "vocab": "vocab", "mlp": "mlp", "pos": "pos"}

# ‖x − ref‖/‖ref‖ allowed against float64, for the loss and for all gradients taken
# together, at initialisation on a probe batch. Observed on the CPU (tiny/mini/small):
# fp32 ≈ 1e-6; bf16 autocast ≈ 5e-3 (loss) and 1-2e-2 (gradients); fp16 ≈ 1e-3 and
# 3e-3; FP8 linears ≈ 1e-2 and 6e-2. TF32 carries a 10-bit mantissa like fp16.
TOLERANCE = {"fp32": (1e-4, 1e-4), "tf32": (1e-2, 3e-2), "bf16": (3e-2, 8e-2),
             "fp16": (1e-2, 3e-2), "fp8_e4m3": (5e-2, 0.25)}
COMPILED_VS_EAGER = 5e-2        # loss of the compiled step against the eager one, same precision
PROBE_TOKENS = 128              # per sequence in the probe batch (a multiple of 16, for FP8)
PROBE_SEQUENCES = 2


def _bool(name: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise GpubenchError(f"{NAME} {name}={value!r}: use true or false")


def _int(name: str, value: Any) -> int:
    if isinstance(value, bool):
        raise GpubenchError(f"{NAME} {name}={value!r} is not a whole number")
    try:
        number = int(str(value).strip()) if isinstance(value, str) else int(value)
    except (TypeError, ValueError):
        raise GpubenchError(f"{NAME} {name}={value!r} is not a whole number") from None
    if not isinstance(value, str) and number != value:
        raise GpubenchError(f"{NAME} {name}={value!r} is not a whole number")
    return number


def _choice(name: str, value: Any, allowed) -> str:
    text = str(value).strip().lower()
    if text not in allowed:
        raise GpubenchError(f"{NAME} {name}={value!r}: use one of {', '.join(allowed)}")
    return text


def model_config(params: Mapping[str, Any]) -> GPTConfig:
    """The model a (normalized) case trains."""
    base = get_size(params["model"])
    changes: dict[str, Any] = {field: params[key] for key, field in OVERRIDES.items() if key in params}
    changes["attention"] = params.get("attention", "sdpa")
    if changes.keys() - {"attention"}:
        changes["name"] = base.name + "*"     # a modified shape must not pass for the named one
    return base.with_(**changes)


def step_config(params: Mapping[str, Any]) -> StepConfig:
    return StepConfig(model=model_config(params), precision=params["dtype"],
                      checkpointing=params["checkpointing"], compile=params["compile"],
                      micro_batch=params["micro_batch"], grad_accum=params["grad_accum"],
                      parallel=params["parallel"])


def _world() -> tuple[int, int]:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _shared_seed() -> int:
    """A fresh seed, rank 0's on every rank: replicas start equal, probe batches match."""
    import secrets

    import torch.distributed as dist

    seed = [secrets.randbits(62)]
    if dist.is_available() and dist.is_initialized():
        dist.broadcast_object_list(seed, src=0)
    return int(seed[0])


@register_benchmark
class TransformerStep(Benchmark):
    name = NAME
    description = "GPT training step (fwd+bwd+AdamW): tokens/s, MFU/HFU, memory, energy and $ per token"

    def normalize(self, params: Mapping[str, Any]) -> dict[str, Any]:
        p = dict(params)
        unknown = set(p) - set(OVERRIDES) - {"model", "dtype", "checkpointing", "compile", "micro_batch",
                                             "grad_accum", "parallel", "attention", "usd_per_gpu_hour",
                                             "search"}
        if unknown:
            raise GpubenchError(f"{NAME}: unknown parameter(s) {', '.join(sorted(unknown))}")
        p["model"] = get_size(p.get("model", "tiny")).name
        dtype = get_precision(str(p.get("dtype", "bf16"))).name
        if dtype not in PRECISIONS:
            raise GpubenchError(f"{NAME} dtype={dtype}: use one of {', '.join(PRECISIONS)}")
        p["dtype"] = dtype
        p["checkpointing"] = _choice("checkpointing", p.get("checkpointing", "none"), ("none", "every", "attention"))
        p["compile"] = _bool("compile", p.get("compile", False))
        p["micro_batch"] = _int("micro_batch", p.get("micro_batch", 1))
        p["grad_accum"] = _int("grad_accum", p.get("grad_accum", 1))
        p["parallel"] = _choice("parallel", p.get("parallel", "none"), PARALLEL)
        p["attention"] = _choice("attention", p.get("attention", "sdpa"), ("sdpa", "triton"))
        for key in ("layers", "hidden", "heads", "kv_heads", "ffn_hidden", "seq", "vocab"):
            if key in p:
                p[key] = _int(key, p[key])
        if "usd_per_gpu_hour" in p:
            try:
                p["usd_per_gpu_hour"] = float(p["usd_per_gpu_hour"])
            except (TypeError, ValueError):
                raise GpubenchError(f"{NAME} usd_per_gpu_hour={p['usd_per_gpu_hour']!r} is not a number") from None
            if not p["usd_per_gpu_hour"] >= 0:
                raise GpubenchError(f"{NAME} usd_per_gpu_hour must be ≥ 0")
        step_config(p)          # the shape and the step are validated here, before anything runs
        return p

    def label(self, params: Mapping[str, Any]) -> str:
        parts = [params["model"] + ("*" if set(OVERRIDES) & set(params) else ""),
                 "fp8" if params["dtype"] == "fp8_e4m3" else params["dtype"],
                 f"mb{params['micro_batch']}" + (f"×{params['grad_accum']}" if params["grad_accum"] > 1 else "")]
        if params["checkpointing"] != "none":
            parts.append(f"ckpt={params['checkpointing']}")
        if params["compile"]:
            parts.append("compile")
        if params["parallel"] != "none":
            parts.append(params["parallel"])
        if params["attention"] != "sdpa":
            parts.append(params["attention"] + " attn")
        return " ".join(parts)

    def memory_bytes(self, params: Mapping[str, Any]) -> int:
        cfg = step_config(params)
        _, world = _world()
        step = memory.estimate_step_bytes(cfg.model, cfg.precision, cfg.checkpointing, cfg.micro_batch,
                                          cfg.parallel, world, cuda=True)
        # The check holds float32 weights (4 bytes a parameter) beside a float64 copy and
        # its gradients (16); that copy moves to the host when the device is short of memory.
        return int(max(step["total"], 20.0 * cfg.model.params()))

    def prepare(self, params: Mapping[str, Any], device: DeviceInfo) -> Workload:
        cfg = step_config(params)
        reason = device.unsupported_reason(cfg.precision)
        if reason:
            raise SkipCase(reason)
        _, world = _world()
        if cfg.parallel != "none" and world < 2:
            raise SkipCase(f"parallel={cfg.parallel} needs at least 2 ranks (--nproc N or torchrun)")
        if cfg.parallel == "fsdp" and cfg.precision == "fp16" and torch.__version__ < "2.6":
            # From 2.6 the inf/NaN check over DTensor gradient shards is reduced across ranks.
            raise SkipCase(f"fp16 over FSDP2 needs torch ≥ 2.6 (torch.amp.GradScaler agreeing on "
                           f"inf/NaN across gradient shards); this is torch {torch.__version__}; use bf16")
        if cfg.model.attention == "triton":
            _triton_attention_problem(cfg.model, device)
        if cfg.compile and device.is_cuda is False and world > 1:
            raise SkipCase("torch.compile with gloo ranks on a CPU is not measured")
        seed = _shared_seed()
        rss_before = None if device.is_cuda else memory.resident_bytes()
        step = TrainStep(cfg, device.torch_device, seed)
        probe_seed = seed ^ 0x5EED
        info: dict[str, Any] = {
            "model": cfg.model.as_dict(), "seed": seed, "world_size": world,
            "tokens_per_step_per_rank": cfg.tokens_per_step,
            "tokens_per_step": cfg.tokens_per_step * world,
            "model_flops_per_token": cfg.model.model_flops_per_token(),
            "hardware_flops_per_token": cfg.model.hardware_flops_per_token(cfg.checkpointing),
            "optimizer": "AdamW (fused)" if device.is_cuda and cfg.parallel != "fsdp" else "AdamW (foreach)",
            "resident_before_bytes": rss_before,
            # Under torchrun with parallel=none each rank trains its own replica: the per-GPU baseline.
            "ranks_independent": cfg.parallel == "none" and world > 1,
        }
        if step.float8 is not None:
            info["float8"] = {"backend": step.float8["backend"], "converted": len(step.float8["converted"]),
                              "skipped": step.float8["skipped"]}
        return Workload(
            fn=step,
            flops=cfg.model.model_flops_per_token() * cfg.tokens_per_step,
            check=lambda: _check(step, device, probe_seed, info),
            context=step.context,
            info=info,
            timer=_timer(device, cfg),
        )

    def metrics(self, params, work: Workload, seconds: float, device: DeviceInfo,
                telemetry, aux_s) -> dict[str, Any]:
        step: TrainStep = work.fn
        cfg = step.cfg
        world = step.world_size
        tokens_rank = cfg.tokens_per_step
        per_gpu = tokens_rank / seconds
        m: dict[str, Any] = {
            "step_s": seconds,
            "tokens_per_s": per_gpu * world,
            "tokens_per_s_per_gpu": per_gpu,
            "model_tflops_per_gpu": work.flops / seconds / 1e12,
            "hardware_tflops_per_gpu": work.info["hardware_flops_per_token"] * tokens_rank / seconds / 1e12,
        }
        peak = device.peak_tflops(cfg.precision)
        m["peak_tflops"] = peak
        m["mfu"] = m["model_tflops_per_gpu"] / peak if peak else None
        m["hfu"] = m["hardware_tflops_per_gpu"] / peak if peak else None
        if cfg.precision == "fp8_e4m3":
            bf16 = device.peak_tflops("bf16")
            m["mfu_vs_bf16_peak"] = m["model_tflops_per_gpu"] / bf16 if bf16 else None
        peak_mem, source = memory.peak_bytes(step.device, work.info.get("resident_before_bytes"))
        m["peak_memory_bytes"] = peak_mem
        m["peak_memory_source"] = source
        m["memory_fraction"] = (peak_mem / device.total_memory_bytes
                                if peak_mem and device.is_cuda and device.total_memory_bytes else None)
        m["saved_activation_bytes"] = work.info.get("saved_activation_bytes")
        m["model_state_bytes"] = _state_bytes(step)
        power = (telemetry or {}).get("power_w_mean")
        # Rank 0's power stands for every rank's: the GPUs of one step draw alike.
        m["power_w"] = power
        m["energy_per_token_j"] = power * seconds / tokens_rank if power else None
        price, price_source = _price(params, device)
        m["usd_per_gpu_hour"] = price
        m["price_source"] = price_source
        m["usd_per_million_tokens"] = (price / 3600.0 / per_gpu * 1e6) if price is not None else None
        loss = step.last_loss
        m["loss"] = float(loss) if loss is not None else None
        if m["loss"] is None or not math.isfinite(m["loss"]):
            raise CheckFailed(f"the training loss became {m['loss']} during timing")
        if step.scaler is not None:
            m["loss_scale"] = float(step.scaler.get_scale())
        if step.float8 is not None:
            # Linears that ran in bf16 instead (a token count not a multiple of 16): FP8 in name only.
            m["fp8_fallback_calls"] = sum(getattr(mod, "fallback_calls", 0) for mod in step.raw.modules())
        return m


def _state_bytes(step: TrainStep) -> int:
    """This rank's weights, gradients and optimizer state, counted from the tensors: exact on
    any device (FSDP's shards count as the shard)."""
    def nbytes(t) -> int:
        local = t.to_local() if hasattr(t, "to_local") else t
        return local.numel() * local.element_size()

    total = 0
    for p in step.raw.parameters():
        total += nbytes(p)
        for value in step.opt.state.get(p, {}).values():
            if isinstance(value, torch.Tensor) and value.dim() > 0:
                total += nbytes(value)
    # Gradients are freed by zero_grad(set_to_none=True) after each step, but held at the peak.
    return total + sum(nbytes(p) for p in step.raw.parameters())


def _timer(device: DeviceInfo, cfg: StepConfig) -> dict[str, Any]:
    """A step is milliseconds to seconds: warm up a few steps (allocator, cuBLAS and
    autotuner caches, the optimizer's state), then time at least ten on a GPU."""
    if device.is_cuda:
        return {"warmup_s": 2.0, "min_warmup_iters": 3, "measure_s": 4.0, "min_iters": 10, "max_iters": 200}
    return {"warmup_s": 0.0, "min_warmup_iters": 1, "measure_s": 0.3, "min_iters": 3, "max_iters": 20}


def _triton_attention_problem(model: GPTConfig, device: DeviceInfo) -> None:
    from gpubench.benches.attention import INTERPRETER_ON_CPU, TRITON_ON_CPU
    from gpubench.kernels.attention import SUPPORTED_HEAD_DIMS

    if model.head_dim not in SUPPORTED_HEAD_DIMS:
        raise SkipCase(f"the Triton attention kernel takes head_dim {SUPPORTED_HEAD_DIMS}, "
                       f"{model.name} has {model.head_dim}")
    if not device.is_cuda and not INTERPRETER_ON_CPU:
        raise SkipCase(TRITON_ON_CPU)


def _price(params: Mapping[str, Any], device: DeviceInfo) -> tuple[float | None, str | None]:
    if "usd_per_gpu_hour" in params:
        return params["usd_per_gpu_hour"], "given (usd_per_gpu_hour)"
    if device.spec is None:
        return None, None
    from gpubench.estimate.prices import pricing_for

    entry = pricing_for(device.spec.key)
    if entry is None or entry.cloud_usd_per_gpu_hour is None:
        return None, None
    source = next((s for s in entry.sources if s.startswith("cloud:")), None)
    return entry.cloud_usd_per_gpu_hour, source


# ---- the check ----

def _check(step: TrainStep, device: DeviceInfo, seed: int, info: dict[str, Any]) -> dict[str, Any]:
    cfg = step.cfg
    gen = torch.Generator(device="cpu")
    gen.manual_seed(seed)
    t = min(PROBE_TOKENS, cfg.model.seq_len)
    b = PROBE_SEQUENCES if t % 16 == 0 else 16      # FP8 GEMMs want rows in multiples of 16
    # Under DDP/FSDP rank r runs probe batch r mod 2, so the gradient the step averages
    # is no single rank's own: a step that skipped or botched the reduction fails. The
    # reference averages the ranks' gradients the same way; the loss is this rank's.
    world = step.world_size if cfg.parallel != "none" else 1
    probes = [torch.randint(0, cfg.model.vocab, (b, t + 1), generator=gen) for _ in range(min(world, 2))]
    shares = [len(range(j, world, len(probes))) / world for j in range(len(probes))]
    tokens = probes[step.rank % len(probes)].to(step.device)
    x, y = tokens[:, :-1], tokens[:, 1:]

    with _eager(cfg.compile):
        loss = float(step.forward_backward(x, y))
    grads = step.full_grads()
    if step.scaler is not None:
        inv = 1.0 / float(step.scaler.get_scale())
        grads = {k: g * inv for k, g in grads.items()}
    missing = [n for n, p in step.raw.named_parameters() if n not in grads]
    if missing:
        raise CheckFailed(f"no gradient reached {len(missing)} parameter(s), e.g. {missing[0]}")
    step.zero_grad()

    ref_device = _reference_device(step, device)
    ref = step.reference_model(ref_device)
    ref_losses = []
    for probe, share in zip(probes, shares):
        probe = probe.to(ref_device)
        ref_loss_t = ref(probe[:, :-1], probe[:, 1:])
        (ref_loss_t * share).backward()
        ref_losses.append(ref_loss_t.item())
    ref_loss = ref_losses[step.rank % len(probes)]
    num = den = 0.0
    worst_name, worst = None, 0.0
    for name, p in ref.named_parameters():
        g = grads[name].to(ref_device, torch.float64)
        diff = (g - p.grad).norm().item() ** 2
        size = p.grad.norm().item() ** 2
        num, den = num + diff, den + size
        if size > 0 and math.sqrt(diff / size) > worst:
            worst_name, worst = name, math.sqrt(diff / size)
    del ref, ref_loss_t, grads
    loss_err = abs(loss - ref_loss) / abs(ref_loss)
    grad_err = math.sqrt(num / den) if den > 0 else float("inf")
    loss_tol, grad_tol = TOLERANCE[cfg.precision]
    block: dict[str, Any] = {
        "reference": f"float64 copy of the weights on {ref_device.type} (SDPA, plain linears, no checkpointing)",
        "probe_tokens": [b, t], "probe_batches": len(probes), "loss": loss, "loss_ref": ref_loss,
        "rel_err": grad_err, "loss_rel_err": loss_err, "grad_rel_err": grad_err,
        "worst_param": worst_name, "worst_param_rel_err": worst,
        "tolerance": grad_tol, "loss_tolerance": loss_tol,
    }
    if not math.isfinite(loss) or not loss_err <= loss_tol:
        raise CheckFailed(f"loss {loss:.6g} vs float64 {ref_loss:.6g}: rel err {loss_err:.2e} > {loss_tol:.0e}")
    if not grad_err <= grad_tol:
        raise CheckFailed(f"gradients vs float64: rel err {grad_err:.2e} > {grad_tol:.0e} "
                          f"(worst {worst_name}: {worst:.2e})")

    if cfg.compile:
        block["compiled_vs_eager_loss_rel_err"] = _compiled_vs_eager(step)
    info["saved_activation_bytes"] = _saved_activations(step)
    memory.reset_peak(step.device)
    return block


def _eager(compiled: bool):
    """Run compiled blocks as plain Python (the probe's shape would compile again)."""
    set_stance = getattr(torch.compiler, "set_stance", None)
    if compiled and set_stance is not None:
        return set_stance("force_eager")
    return contextlib.nullcontext()


def _compiled_vs_eager(step: TrainStep) -> float:
    x, y = step.next_batch()
    # With gradients enabled, as the step runs: under no_grad the blocks would compile an
    # inference graph here and the training graph again in the warm-up (twice the compile time).
    with torch.enable_grad():
        with step.autocast():
            compiled = float(step.model(x, y).detach())     # compiles here, outside the timing
        with _eager(True), step.autocast():
            eager = float(step.model(x, y).detach())
    err = abs(compiled - eager) / abs(eager)
    if not err <= COMPILED_VS_EAGER:
        raise CheckFailed(f"compiled step's loss {compiled:.6g} vs eager {eager:.6g}: "
                          f"rel err {err:.2e} > {COMPILED_VS_EAGER:.0e}")
    return err


def _saved_activations(step: TrainStep) -> int | None:
    """Bytes one forward of a real micro-batch keeps for the backward (eager, this precision)."""
    if step.cfg.parallel != "none":
        return None         # wrapped modules save gathered weights and bucket views too
    x, y = step.next_batch()
    with _eager(step.cfg.compile), memory.count_saved(step.raw.parameters()) as seen:
        with step.autocast():
            loss = step.raw(x, y)
    del loss
    return int(sum(seen.values()))


HOST_SHARE = 0.5        # of the host's available memory the float64 reference may take


def _reference_device(step: TrainStep, device: DeviceInfo) -> torch.device:
    """Where the float64 copy of the check lives: the device when it has room, else the host when
    it has room to spare; else the step cannot be checked, which is reported as out of memory
    (a 6.7B model's copy is 110 GB: on a 128 GB host that would swap or be killed, and the
    largest-model search must descend to a size it can check)."""
    need = 2 * 8 * step.cfg.model.params() + (1 << 30)      # float64 weights and gradients
    if not device.is_cuda:
        return device.torch_device
    free = torch.cuda.mem_get_info(device.index)[0]
    if need < free:
        return device.torch_device
    host = memory.host_available_bytes()
    if host is not None and need <= HOST_SHARE * host:
        return torch.device("cpu")
    raise CheckFailed(f"out of memory for the check: its float64 reference needs {need / 1e9:.0f} GB; "
                      f"the GPU has {free / 1e9:.0f} GB free and the host "
                      f"{'an unknown amount' if host is None else f'{host / 1e9:.0f} GB'} available "
                      f"(at most {HOST_SHARE:.0%} of it is used)")


__all__ = ["TransformerStep", "model_config", "step_config"]
