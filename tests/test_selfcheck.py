"""The self-check: measured rates, the step model on them, and the command.

The loop on real measurements (the CPU transformer suite predicted from its own kernels) is
``test_transformer_bench.py::test_cli_transformer_suite_on_cpu_and_its_self_check``; here the
pieces are held to exact figures on synthetic measurements, where the right answer is known.
"""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
import torch

from estimate_helpers import run_error, run_json
from gpubench.errors import GpubenchError
from gpubench.estimate.profile import DEFAULTS
from gpubench.estimate.rates import MeasuredRates, OutOfRange
from gpubench.estimate.selfcheck import self_check, step_layout
from gpubench.estimate.stacks import EAGER_HOST_OPS
from gpubench.gpt.config import get_size
from gpubench.registry import get_benchmark
from gpubench.results import Record, ResultWriter, Run
from gpubench.suites import OP_OVERHEAD, step_kernels

RATE = 1e11             # the fake device's FLOP/s at every GEMM shape
OP_S = 5e-6             # and its cost of one operation


def rates(**kw) -> MeasuredRates:
    return MeasuredRates(device={"type": "cpu", "name": "fake"}, host_overlap=False, **kw)


# ---- measured rates ----

def test_a_measured_shape_gives_its_own_time_less_the_dispatch():
    r = rates(gemm={"fp32": [[256, 256, 256, 1e-3, "nt"]]}, op_eager_s=1e-5)
    assert r.gemm_s("fp32", 256, 256, 256) == pytest.approx(1e-3 - 1e-5, rel=1e-12)
    assert r.gemm_s("fp32", 256, 256, 256, batch=3) == pytest.approx(3 * (1e-3 - 1e-5), rel=1e-12)


def test_between_measured_shapes_the_rate_is_interpolated_in_log_space():
    t1, t2 = 2 * 256**3 / 1e11, 2 * 512**3 / 4e11         # 100 and 400 GFLOP/s
    r = rates(gemm={"fp32": [[256, 256, 256, t1, "nt"], [512, 512, 512, t2, "nt"]]})
    mid = math.sqrt(256 * 512)
    rate = 2 * mid**3 / r.gemm_s("fp32", mid, mid, mid)
    assert rate == pytest.approx(2e11, rel=1e-9)          # the geometric mean of the two rates


def test_beyond_every_measured_shape_is_refused_not_extrapolated():
    r = rates(gemm={"fp32": [[256, 256, 256, 1e-3, "nt"]]})
    with pytest.raises(OutOfRange, match="1024×256×256 is beyond every measured shape"):
        r.gemm_s("fp32", 1024, 256, 256)
    with pytest.raises(OutOfRange, match="no bf16 GEMM"):
        r.gemm_s("bf16", 256, 256, 256)


def test_the_layout_measured_answers_and_an_unmeasured_one_is_noted():
    r = rates(gemm={"fp16": [[128, 64, 192, 1e-4, "nt"], [128, 64, 192, 5e-4, "nn"]]})
    assert r.gemm_s("fp16", 128, 64, 192, layout="nn") == pytest.approx(5e-4)
    assert r.gemm_s("fp16", 128, 64, 192, layout="nt") == pytest.approx(1e-4)
    r.gemm_s("fp16", 128, 64, 192, layout="tn")
    assert any("layout tn were not measured" in a for a in r.assumptions)


def test_bandwidth_by_working_set():
    r = rates(membw=[[1 << 20, 100e9], [1 << 26, 25e9]])
    assert r.bandwidth(1 << 23) == pytest.approx(50e9, rel=1e-9)    # halfway in log size
    assert r.bandwidth(1 << 30) == 25e9
    assert r.bandwidth(1 << 10) == 100e9 and r.assumptions          # a cache: said, not silent


def test_collectives_interpolate_and_need_their_world_size():
    r = rates(collectives={"all_reduce/2": [[1 << 12, 1e-4], [1 << 20, 1e-3]]})
    assert r.collective_s("all_reduce", 1 << 21, 2) == pytest.approx(2e-3)     # bandwidth-bound
    with pytest.raises(OutOfRange, match="--nproc 4"):
        r.collective_s("all_reduce", 1 << 20, 4)


# ---- the host operations the eager stack states, recounted on the code ----

def _count_ops(model: str, precision: str, checkpointing: str) -> tuple[int, int, int]:
    from torch.utils._python_dispatch import TorchDispatchMode

    from gpubench.gpt.step import StepConfig, TrainStep

    class Count(TorchDispatchMode):
        n = 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            self.n += 1
            return func(*args, **(kwargs or {}))

    step = TrainStep(StepConfig(model=get_size(model), precision=precision, checkpointing=checkpointing,
                                micro_batch=2), torch.device("cpu"), 1)
    step()
    x, y = step.next_batch()
    with Count() as fwd:
        with step.autocast():
            loss = step.model(x, y)
    with Count() as bwd:
        (step.scaler.scale(loss) if step.scaler else loss).backward()
    with Count() as opt:
        if step.scaler:
            step.scaler.step(step.opt)
            step.scaler.update()
        else:
            step.opt.step()
        step.opt.zero_grad(set_to_none=True)
    return fwd.n, bwd.n, opt.n


@pytest.mark.parametrize("precision,key", [("fp32", "fp32"), ("bf16", "bf16"), ("fp16", "fp16"),
                                           ("fp8_e4m3", "fp8")])
@pytest.mark.parametrize("checkpointing,mode", [("none", "none"), ("every", "full"), ("attention", "selective")])
def test_eager_stack_host_ops_are_the_codes_own(precision, key, checkpointing, mode):
    """The stack's operation counts are those of gpubench.gpt: a change to the model's code that
    adds or removes operations fails here until the table is recounted."""
    table = EAGER_HOST_OPS[key]
    layer_f, layer_b = table["layer"][mode]
    exact = torch.__version__.startswith("2.13")          # counted under torch 2.13
    for model in ("tiny", "mini"):
        cfg = get_size(model)
        f, b, o = _count_ops(model, precision, checkpointing)
        want_mb = cfg.layers * (layer_f + layer_b) + table["micro_batch"]
        want_opt = table["step"] + table["per_param"] * (cfg.layers * 6 + 3)
        if exact:
            assert (f + b, o) == (want_mb, want_opt), (model, f, b, o)
        else:
            assert abs(f + b - want_mb) <= 0.15 * want_mb and abs(o - want_opt) <= 0.15 * want_opt


# ---- the step model on a fake device whose every rate is known ----

def _kernel_records(model: str, micro_batch: int, dtypes, attention_dtypes) -> list[Record]:
    """Every kernel the suite measures for a step, each timed at exactly RATE FLOP/s."""
    out = []
    for case in step_kernels(model, micro_batch, dtypes, attention_dtypes=attention_dtypes):
        params = get_benchmark(case.benchmark).normalize(case.params)
        if case.benchmark == "matmul":
            flops = 2.0 * params["m"] * params["n"] * params["k"]
        else:
            from gpubench.benches.attention import attention_flops

            flops = attention_flops(params["batch"], params["heads"], params["seq"], params["head_dim"],
                                    params["causal"], params["direction"])
        out.append(Record(case.benchmark, params, "ok", "cpu", timing={"median_s": flops / RATE},
                          work={"flops": flops}, metrics={"tflops": RATE / 1e12}))
    for case in OP_OVERHEAD:
        per = OP_S if case.params["mode"] == "autograd" else 0.0
        out.append(Record("op-overhead", dict(case.params), "ok", "cpu", timing={"median_s": 1.0},
                          metrics={"per_op_s": per or 1e-12}))
    # A memory so fast it costs nothing measurable: only GEMMs, attention and operations remain.
    out.append(Record("membw", {"op": "copy", "size_bytes": 1 << 20}, "ok", "cpu", metrics={"gbps": 1e9}))
    return out


def _step_record(model: str, dtype: str, step_s: float, **extra) -> Record:
    params = get_benchmark("transformer-step").normalize({"model": model, "dtype": dtype, "micro_batch": 2,
                                                          **extra})
    return Record("transformer-step", params, "ok", "cpu", timing={"median_s": step_s, "cov": 0.01},
                  metrics={"step_s": step_s, "tokens_per_s": 1.0})


def _write(path, records, host="box", device="Fake CPU"):
    run = Run(suite="transformer", env={"device": {"type": "cpu", "name": device},
                                        "host": {"hostname": host}})
    w = ResultWriter(path, run)
    for r in records:
        w.add(r)
    w.close("complete")
    return path


def test_the_model_charges_every_gemm_flop_and_every_operation_once(tmp_path):
    """On a device that does exactly RATE FLOP/s at every measured shape and OP_S an operation, the
    prediction's GEMM term is the step's GEMM FLOPs (6 × matmul weights × tokens) over RATE, the
    attention term its attention FLOPs (3 × 4·L·H·T per token, halved by causality) over RATE, and
    the host term the stack's operation count × OP_S: nothing counted twice, nothing left out."""
    f = _write(tmp_path / "r.json", _kernel_records("mini", 2, ["fp32"], ["fp32"])
               + [_step_record("mini", "fp32", 0.02)])
    result = self_check([f])
    case = result["cases"][0]
    assert case.why is None, case.why
    cfg = get_size("mini")
    tokens = 2 * cfg.seq_len
    b = case.breakdown
    assert b["gemm_s"] + b["lm_head_s"] == pytest.approx(6 * cfg.matmul_params() * tokens / RATE, rel=1e-6)
    causal_keys = (cfg.seq_len + 1) / 2
    attn = 3.5 * 2 * 2 * cfg.layers * cfg.heads * cfg.seq_len * causal_keys * 2 * cfg.head_dim / RATE
    assert b["attention_s"] == pytest.approx(attn, rel=0.02)
    ops = cfg.layers * sum(EAGER_HOST_OPS["fp32"]["layer"]["none"]) + EAGER_HOST_OPS["fp32"]["micro_batch"]
    assert b["kernel_gaps_s"] == pytest.approx(ops * OP_S, rel=1e-9)
    assert case.predicted_s == pytest.approx(sum(b.values()), rel=1e-9)
    assert case.error == pytest.approx(case.predicted_s / 0.02 - 1)


def test_recomputation_and_accumulation_cost_what_they_redo(tmp_path):
    recs = _kernel_records("mini", 2, ["fp32"], ["fp32"])
    f = _write(tmp_path / "r.json", recs + [_step_record("mini", "fp32", 0.02),
                                             _step_record("mini", "fp32", 0.02, checkpointing="every"),
                                             _step_record("mini", "fp32", 0.02, grad_accum=2)])
    plain, every, accum = (c.breakdown for c in self_check([f])["cases"])
    # Full recomputation runs each layer's forward GEMMs again: a third of its GEMM time.
    assert every["recompute_s"] == pytest.approx(
        plain["gemm_s"] / 3 + plain["attention_s"] / 3.5 + plain["elementwise_s"] / 3, rel=1e-6)
    assert accum["gemm_s"] == pytest.approx(2 * plain["gemm_s"], rel=1e-9)


def test_selfcheck_bad_input_one_line_exit_2(capsys, tmp_path):
    recs = _kernel_records("mini", 2, ["fp32"], ["fp32"])
    a = _write(tmp_path / "a.json", recs + [_step_record("mini", "fp32", 0.02)])
    b = _write(tmp_path / "b.json", recs, host="other-box")
    line = run_error(capsys, "selfcheck", str(a), str(b))
    assert "different machines" in line and "other-box" in line
    line = run_error(capsys, "selfcheck", str(b))
    assert "no ok transformer-step record" in line and str(b) in line
    # A step whose GEMMs were never measured near its shapes: refused, naming the case.
    c = _write(tmp_path / "c.json", recs + [_step_record("125m", "fp32", 0.02)])
    line = run_error(capsys, "selfcheck", str(c))
    assert "transformer-step" in line and "125m" in line and "beyond every measured shape" in line


def test_selfcheck_json_carries_cases_and_summary(capsys, tmp_path):
    recs = _kernel_records("mini", 2, ["fp32"], ["fp32"])
    a = _write(tmp_path / "a.json", recs + [_step_record("mini", "fp32", 0.02),
                                           _step_record("125m", "fp32", 0.05)])
    out = run_json(capsys, "selfcheck", str(a))
    done = [c for c in out["cases"] if c["not_predicted"] is None]
    assert len(out["cases"]) == 2 and len(done) == 1 and out["summary"]["cases"] == 1
    assert out["summary"]["median_abs_error"] == pytest.approx(abs(done[0]["error"]))


def test_step_layout_maps_the_record_to_the_estimators_terms():
    rec = _step_record("mini", "fp8_e4m3", 0.02, checkpointing="attention", grad_accum=4)
    model, layout = step_layout(rec)
    assert (layout.precision, layout.recompute, layout.framework, layout.micro_batch) == ("fp8", "selective",
                                                                                        "eager", 2)
    assert layout.global_batch == 8 and model.layers == get_size("mini").layers


# ---- the self-check widens what a profile promises at scale ----

def test_a_profiles_self_check_widens_the_estimates_range(capsys, tmp_path):
    base = DEFAULTS["hopper"]
    plain, checked = tmp_path / "plain.json", tmp_path / "checked.json"
    base.save(plain)
    replace(base, self_check={"cases": 10, "rms_log_error": 0.2, "median_abs_error": 0.15}).save(checked)
    args = ("estimate", "--model", "llama2-70b", "--gpu", "h100", "--gpus", "512", "--tokens", "2T",
            "--tp", "8", "--pp", "4")
    a = run_json(capsys, *args, "--calibration", str(plain))
    b = run_json(capsys, *args, "--calibration", str(checked))
    assert a["step_time_s"] == b["step_time_s"]
    (alo, ahi), (blo, bhi) = a["uncertainty"]["step_time_s"], b["uncertainty"]["step_time_s"]
    assert blo < alo and bhi > ahi and "self-check" in b["uncertainty"]["basis"]
    # half-widths in log space add in quadrature with t(9)·0.2
    ha, hb = math.log(ahi / alo) / 2, math.log(bhi / blo) / 2
    assert hb == pytest.approx(math.sqrt(ha**2 + (1.383 * 0.2) ** 2), rel=1e-6)


# ---- the benchmarks the self-check adds ----

def test_op_overhead_benchmark(cpu):
    from gpubench.runner import Runner
    from gpubench.timing import TimerConfig

    class Keep:
        def __init__(self):
            self.records = []

        def add(self, r):
            self.records.append(r)

    keep = Keep()
    Runner(cpu, TimerConfig.for_device(cpu, quick=True), keep, telemetry=None).run(list(OP_OVERHEAD))
    auto, eager = keep.records
    assert auto.status == eager.status == "ok", (auto.error, eager.error)
    assert auto.work["ops_per_iteration"] == 2 * auto.params["ops"]
    assert eager.work["ops_per_iteration"] == eager.params["ops"]
    assert auto.metrics["per_op_s"] == pytest.approx(auto.timing["median_s"] / (2 * auto.params["ops"]))
    assert auto.check["rel_err"] <= 1e-4
    bench = get_benchmark("op-overhead")
    for bad in ({"mode": "graph"}, {"ops": 3}, {"ops": 100, "size": 4}):
        with pytest.raises(GpubenchError):
            bench.normalize(bad)


def test_matmul_layouts_of_a_training_step(cpu):
    bench = get_benchmark("matmul")
    for layout in ("nn", "tn"):
        params = bench.normalize({"m": 48, "n": 32, "k": 80, "dtype": "fp32", "layout": layout})
        work = bench.prepare(params, cpu)
        block = work.check()
        assert block["rel_err"] <= 1e-5 and layout in bench.label(params)
    assert "layout" not in bench.normalize({"m": 8, "n": 8, "k": 8, "dtype": "fp32", "layout": "nt"})
    with pytest.raises(GpubenchError, match="FP8"):
        bench.normalize({"m": 16, "n": 16, "k": 16, "dtype": "fp8_e4m3", "layout": "nn"})


# ---- the hub's run page ----

def test_the_hub_run_page_shows_the_self_check(tmp_path):
    import warnings

    from hub_helpers import fresh_database_url

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from fastapi.testclient import TestClient
    from gpubench.hub.app import create_app
    from gpubench.hub.auth import create_token

    recs = _kernel_records("mini", 2, ["fp32"], ["fp32"])
    f = _write(tmp_path / "a.json", recs + [_step_record("mini", "fp32", 0.02)])
    want = self_check([f])["summary"]["median_abs_error"]
    app = create_app(fresh_database_url(tmp_path), auto_migrate=True)
    with app.state.hub.session_factory() as s:
        token = create_token(s, "uploader")
    client = TestClient(app, raise_server_exceptions=False)
    try:
        r = client.post("/api/v1/runs", content=f.read_bytes(), headers={"Authorization": f"Bearer {token}"})
        assert r.status_code == 201, r.text
        page = client.get(f"/runs/{r.json()['id']}").text
        assert "Self-check" in page and f"median |error| {100 * want:.0f}%" in page and "GEMMs" in page
    finally:
        client.close()
        app.state.hub.engine.dispose()


def test_on_a_gpu_the_host_runs_ahead_of_the_device(tmp_path):
    """A GPU's stream runs behind the host: its operations cost nothing while the device is the
    slower (only the floor between queued kernels remains); a CPU pays every one."""
    from gpubench.estimate.perf import KERNEL_GAP_FLOOR_S

    recs = _kernel_records("mini", 2, ["fp32"], ["fp32"]) + [_step_record("mini", "fp32", 0.02)]
    run = Run(suite="transformer", env={"device": {"type": "cuda", "name": "NVIDIA H100 80GB HBM3",
                                                   "spec_key": "h100-sxm", "index": 0},
                                        "host": {"hostname": "box"}})
    w = ResultWriter(tmp_path / "g.json", run)
    for r in recs:
        w.add(r)
    w.close("complete")
    case = self_check([tmp_path / "g.json"])["cases"][0]
    assert case.why is None, case.why
    kernels_per_layer = 3 * (4 + 2 + 24)      # 4 linears, attention fwd/bwd, 24 eager element-wise
    assert case.breakdown["kernel_gaps_s"] == pytest.approx(
        get_size("mini").layers * kernels_per_layer * KERNEL_GAP_FLOOR_S, rel=1e-9)
    cpu = _write(tmp_path / "c.json", recs)
    assert self_check([cpu])["cases"][0].breakdown["kernel_gaps_s"] > case.breakdown["kernel_gaps_s"]


def test_a_ddp_step_pays_its_measured_all_reduce(tmp_path):
    """Data parallelism on measured collectives: the gradient all-reduce of a DDP step is timed from
    the all_reduce records of the same world size; without them the case says what to run."""
    recs = _kernel_records("mini", 2, ["fp32"], ["fp32"])
    ddp = _step_record("mini", "fp32", 0.03, parallel="ddp")
    ddp.work = {"world_size": 2}
    f = _write(tmp_path / "d.json", recs + [ddp])
    with pytest.raises(GpubenchError, match=r"no all_reduce over 2 ranks.*--nproc 2"):
        self_check([f])
    # float32 gradients of the weights the model's data-parallel traffic counts: every matrix a
    # token multiplies, the LM head included (the embedding table and the norms are left out).
    grads = 4 * get_size("mini").matmul_params()
    coll = [Record("all_reduce", {"size_bytes": size, "world_size": 2, "dtype": "fp32"}, "ok", "cpu",
                   timing={"median_s": size / 1e9}, metrics={"busbw_gbps": 1.0}) for size in (1 << 12, 1 << 24)]
    g = _write(tmp_path / "g.json", recs + coll + [ddp])
    result = self_check([g])
    case = result["cases"][0]
    assert case.why is None, case.why
    # The reduction hides behind the backward up to the profile's overlap; never less than the
    # last bucket (one layer's share), never more than the whole all-reduce.
    whole = grads / 1e9
    assert whole / get_size("mini").layers * 0.99 <= case.breakdown["dp_comm_exposed_s"] <= whole * 1.01
    assert any("ranks shared this CPU" in a for a in result["rates"].assumptions)
