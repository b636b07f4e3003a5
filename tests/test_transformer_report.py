"""The transformer-step tables of ``gpubench.report``: the cross-record ratios
(speed-up by precision, checkpointing's memory and time, DDP/FSDP scaling), the
fits summary, and what ``render`` prints for a real CPU run.

Records are built in code: the figures are invented, nothing here asserts a
hardware measurement, only the arithmetic and the layout of the tables.
"""

import re

import pytest

from gpubench import report
from gpubench.results import Record, ResultWriter, Run, load_run

GIB = 1 << 30
MIB = 1 << 20
CUDA_SOURCE = "torch.cuda.max_memory_allocated"
RSS_SOURCE = "process resident high-water mark (VmHWM) less the resident set before the case"


def step(dtype="bf16", tokens=1000.0, *, model="1.3b", n_params=1_440_000_000, ckpt="none",
         parallel="none", world=1, device="cuda:0", step_s=1.0, status="ok", search=None, **metrics):
    params = {"model": model, "dtype": dtype, "checkpointing": ckpt, "compile": False, "micro_batch": 4,
              "grad_accum": 1, "parallel": parallel, "attention": "sdpa"}
    if search:
        params["search"] = search
    cuda = device.startswith("cuda")
    m = {"step_s": step_s, "tokens_per_s": tokens * world, "tokens_per_s_per_gpu": tokens,
         "mfu": 0.4, "hfu": None, "peak_memory_bytes": 10 * GIB,
         "peak_memory_source": CUDA_SOURCE if cuda else RSS_SOURCE,
         "saved_activation_bytes": 100 * MIB, "energy_per_token_j": None, "usd_per_million_tokens": None}
    m.update(metrics)
    return Record(benchmark="transformer-step", params=params, status=status, device=device,
                  work={"world_size": world, "model": {"name": model, "params": n_params}},
                  metrics=m if status == "ok" else {}, error="boom" if status == "failed" else None)


def cells(table: str) -> list[list[str]]:
    """A tabulate table as rows of cells (cells are separated by two or more spaces)."""
    lines = table.splitlines()
    return [re.split(r"\s{2,}", line.strip()) for line in lines[2:]]


def header_cells(table: str) -> list[str]:
    return re.split(r"\s{2,}", table.splitlines()[0].strip())


def column(table: str, name: str) -> dict[str, str]:
    """{first cell + second cell: the cell in column ``name``} for each row."""
    i = header_cells(table).index(name)
    return {f"{row[0]} | {row[1]}": row[i] for row in cells(table)}


# ---- speed-up by precision ----

def test_speedup_over_fp32_and_bf16():
    table = report.transformer_speedup_table([step("fp32", 1000.0), step("bf16", 3000.0),
                                              step("fp16", 2400.0), step("fp8_e4m3", 4500.0)])
    fp32, bf16 = column(table, "× fp32"), column(table, "× bf16")
    case = "1.3b (1.44B) mb4"
    assert fp32[f"{case} | bf16"] == "3.00×"
    assert fp32[f"{case} | fp32"] == "1.00×"
    assert fp32[f"{case} | fp16"] == "2.40×"
    assert bf16[f"{case} | fp16"] == "0.80×"
    assert bf16[f"{case} | fp8"] == "1.50×"      # fp8_e4m3 is shown as fp8
    assert bf16[f"{case} | fp32"] == "0.33×"


def test_speedup_missing_baseline_is_a_dash_and_groups_do_not_mix():
    records = [step("fp32", 1000.0), step("bf16", 2000.0),
               # another model: its own group, with no fp32 record
               step("bf16", 500.0, model="2.7b", n_params=2_700_000_000), step("fp16", 600.0, model="2.7b",
                                                                              n_params=2_700_000_000),
               # alone in its group (checkpointing differs): nothing to compare, no row
               step("fp16", 900.0, ckpt="every")]
    table = report.transformer_speedup_table(records)
    fp32, bf16 = column(table, "× fp32"), column(table, "× bf16")
    assert fp32["2.7b (2.7B) mb4 | fp16"] == "—"
    assert fp32["2.7b (2.7B) mb4 | bf16"] == "—"
    assert bf16["2.7b (2.7B) mb4 | fp16"] == "1.20×"
    assert fp32["1.3b (1.44B) mb4 | bf16"] == "2.00×"
    assert len(cells(table)) == 4
    assert "ckpt=every" not in table


def test_speedup_ignores_failed_records_and_fits_probes():
    records = [step("fp32", status="failed"), step("bf16", 3000.0), step("fp32", 10.0, search="fits")]
    assert report.transformer_speedup_table(records) == ""


# ---- activation checkpointing ----

def test_checkpointing_on_cuda_uses_peak_memory():
    records = [step(ckpt="none", step_s=1.0, peak_memory_bytes=40 * GIB, saved_activation_bytes=900 * MIB),
               step(ckpt="every", step_s=1.3, peak_memory_bytes=10 * GIB, saved_activation_bytes=10 * MIB),
               step(ckpt="attention", step_s=1.1, peak_memory_bytes=30 * GIB, saved_activation_bytes=800 * MIB)]
    table = report.checkpointing_table(records)
    saved = column(table, "memory saved % (CUDA peak)")
    added = column(table, "time added %")
    case = "1.3b (1.44B) bf16 mb4"
    assert saved[f"{case} | every"] == "75.0"
    assert saved[f"{case} | attention"] == "25.0"
    assert saved[f"{case} | none"] == "0.0"
    assert added[f"{case} | every"] == "30.0"
    assert added[f"{case} | attention"] == "10.0"
    # The activation-based column is for CPU records only: absent here.
    assert "saved activations, CPU" not in table


def test_checkpointing_cuda_decided_by_the_memory_source_too():
    # A record whose device label does not say cuda, but whose peak the CUDA allocator counted.
    records = [step(ckpt="none", device="gpu", peak_memory_bytes=8 * GIB, peak_memory_source=CUDA_SOURCE),
               step(ckpt="every", device="gpu", peak_memory_bytes=6 * GIB, peak_memory_source=CUDA_SOURCE)]
    saved = column(report.checkpointing_table(records), "memory saved % (CUDA peak)")
    assert saved["1.3b (1.44B) bf16 mb4 | every"] == "25.0"


def test_checkpointing_on_cpu_uses_saved_activations_not_rss():
    # RSS going the "wrong" way must not matter: the counted saved activations decide.
    records = [step(ckpt="none", device="cpu", peak_memory_bytes=100 * MIB, saved_activation_bytes=16 * MIB),
               step(ckpt="every", device="cpu", step_s=1.6, peak_memory_bytes=200 * MIB,
                    saved_activation_bytes=4 * MIB)]
    table = report.checkpointing_table(records)
    saved = column(table, "memory saved % (saved activations, CPU)")
    case = "1.3b (1.44B) bf16 mb4"
    assert saved[f"{case} | every"] == "75.0"
    assert column(table, "time added %")[f"{case} | every"] == "60.0"
    assert "CUDA peak" not in table


def test_checkpointing_without_a_none_baseline_shows_dashes():
    records = [step(ckpt="none", peak_memory_bytes=40 * GIB), step(ckpt="every", peak_memory_bytes=10 * GIB),
               step(ckpt="every", model="2.7b", n_params=2_700_000_000, step_s=2.0),
               step(ckpt="attention", model="2.7b", n_params=2_700_000_000, step_s=1.5)]
    table = report.checkpointing_table(records)
    saved = column(table, "memory saved % (CUDA peak)")
    added = column(table, "time added %")
    assert saved["2.7b (2.7B) bf16 mb4 | every"] == "—"
    assert added["2.7b (2.7B) bf16 mb4 | attention"] == "—"
    assert saved["1.3b (1.44B) bf16 mb4 | every"] == "75.0"


# ---- DDP / FSDP scaling ----

def test_scaling_efficiency_is_per_gpu_rate_over_parallel_none():
    records = [step(parallel="none", world=8, tokens=1000.0), step(parallel="ddp", world=8, tokens=900.0),
               step(parallel="fsdp", world=8, tokens=850.0),
               # single-rank records are not part of the scaling comparison
               step(parallel="none", world=1, tokens=5000.0)]
    table = report.scaling_table(records)
    eff = column(table, "scaling efficiency %")
    total = column(table, "tokens/s (all)")
    case = "1.3b (1.44B) bf16 mb4"
    assert eff == {f"{case} | none": "100.0", f"{case} | ddp": "90.0", f"{case} | fsdp": "85.0"}
    assert total[f"{case} | ddp"] == "7,200"
    assert column(table, "ranks")[f"{case} | fsdp"] == "8"


def test_scaling_without_none_baseline_and_without_ranks():
    records = [step(parallel="none", world=4, tokens=1000.0), step(parallel="ddp", world=4, tokens=950.0),
               step(parallel="ddp", world=4, tokens=400.0, model="2.7b", n_params=2_700_000_000),
               step(parallel="fsdp", world=4, tokens=380.0, model="2.7b", n_params=2_700_000_000)]
    eff = column(report.scaling_table(records), "scaling efficiency %")
    assert eff["2.7b (2.7B) bf16 mb4 | fsdp"] == "—"
    assert eff["1.3b (1.44B) bf16 mb4 | ddp"] == "95.0"
    assert report.scaling_table([step(world=1), step(parallel="ddp", world=1)]) == ""


# ---- fits ----

def fits(dtype="bf16", ckpt="every", **metrics):
    m = {"largest_model": "1.3b", "largest_params": 1_440_000_000, "peak_memory_bytes": 60 * GIB,
         "memory_headroom_bytes": 20 * GIB, "limit_bytes": 80 * GIB, "tokens_per_s": 12345.0, "mfu": 0.41,
         "top_of_ladder": False, "next_model": "2.7b", "next_needed_bytes_est": 95 * GIB,
         "tried": ["760m", "1.3b", "2.7b"]}
    m.update(metrics)
    return Record(benchmark="transformer-fits", status="ok", device="cuda:0", metrics=m,
                  params={"dtype": dtype, "checkpointing": ckpt, "micro_batch": 4, "limit_bytes": 80 * GIB})


def test_fits_rows():
    table = report.fits_table([
        fits(),
        fits("fp8_e4m3", "every", largest_model="13b", largest_params=13_000_000_000, top_of_ladder=True,
             next_model=None, next_needed_bytes_est=None, mfu=None),
        Record(benchmark="transformer-fits", status="failed", device="cuda:0", error="even 125m does not fit",
               params={"dtype": "fp32", "checkpointing": "none", "micro_batch": 4, "limit_bytes": 1}),
    ])
    assert header_cells(table) == ["mode", "largest that fits", "peak GiB", "headroom GiB", "limit GiB",
                                   "next size (need)", "tokens/s", "MFU %"]
    rows = cells(table)
    assert rows[0] == ["bf16 ckpt=every mb4", "1.3b (1.44B)", "60", "20", "80", "2.7b (~95 GiB est.)",
                       "12,345", "41.0"]
    assert rows[1][:2] == ["fp8 ckpt=every mb4", "13b (13B)"]
    assert rows[1][5] == "top of ladder" and rows[1][7] == "—"
    assert len(rows) == 2          # the failed search is for problems(), not this table


# ---- the main table ----

def test_transformer_table_columns():
    records = [step("fp8_e4m3", 2000.0, step_s=0.25, hfu=None, energy_per_token_j=0.0125,
                    usd_per_million_tokens=0.5, peak_memory_bytes=12 * GIB, saved_activation_bytes=512 * MIB),
               step("bf16", 1000.0, ckpt="every", hfu=0.5)]
    table = report.transformer_table(records)
    head = header_cells(table)
    assert head[:4] == ["model (params)", "dtype", "mb×accum", "ckpt"]
    for name in ("step ms", "tokens/s", "MFU %", "HFU %", "peak GiB", "saved act. MiB", "mJ/token",
                 "$/M tokens"):
        assert name in head
    # no rank > 1, no compile, no Triton attention, no probe: those columns are left out
    for name in ("tokens/s/GPU", "compile", "attention", "parallel", "search"):
        assert name not in head
    row = dict(zip(head, cells(table)[0]))
    assert row["model (params)"] == "1.3b (1.44B)"
    assert row["dtype"] == "fp8" and row["mb×accum"] == "4×1"
    assert row["step ms"] == "250" and row["tokens/s"] == "2,000"
    assert row["MFU %"] == "40.0" and row["HFU %"] == "—"
    assert row["peak GiB"] == "12" and row["saved act. MiB"] == "512"
    assert row["mJ/token"] == "12.5" and row["$/M tokens"] == "0.5"
    assert dict(zip(head, cells(table)[1]))["HFU %"] == "50.0"


def test_transformer_table_per_gpu_column_with_ranks():
    table = report.transformer_table([step(parallel="ddp", world=8, tokens=900.0), step(world=1, tokens=1000.0)])
    head = header_cells(table)
    rows = [dict(zip(head, r)) for r in cells(table)]
    assert rows[0]["parallel"] == "ddp ×8"
    assert rows[0]["tokens/s"] == "7,200" and rows[0]["tokens/s/GPU"] == "900"
    assert rows[1]["tokens/s/GPU"] == "1,000"


# ---- render ----

def run_of(records):
    return Run(suite="transformer", env={"device": {"type": "cuda", "name": "test GPU"}}, records=records,
               status="complete")


def test_render_hides_fits_probes_unless_asked_and_lists_failures():
    records = [step("fp32", 1000.0), step("bf16", 3000.0),
               step("bf16", 777.0, model="2.7b", n_params=2_700_000_000, search="fits"),
               step("fp16", status="failed"), fits()]
    text = report.render(run_of(records))
    assert "transformer training step" in text
    assert "speed-up by precision" in text and "3.00×" in text
    assert "largest model that trains" in text
    assert "2.7b (2.7B)" not in text                     # the probe step is hidden
    assert "777" not in text
    assert "failed (1): transformer-step 1.3b fp16 mb4 — boom" in text      # the benchmark's own label
    # no multi-rank and no checkpointing variants: those tables are omitted
    assert "scaling" not in text and "checkpointing vs none" not in text
    assert "transformer-step\ncase" not in text           # no generic fallback table
    shown = report.render(run_of(records), show_probes=True)
    assert "2.7b (2.7B)" in shown and "fits probe" in shown
    # probes never enter a comparison, shown or not
    assert "2.7b (2.7B) mb4" not in shown


@pytest.fixture(scope="module")
def cpu_run(tmp_path_factory):
    """A real run of part of the transformer suite's CPU items, written to and read back from a file."""
    from gpubench.device import resolve_device
    from gpubench.registry import get_suite
    from gpubench.runner import Runner
    from gpubench.timing import TimerConfig

    cpu = resolve_device("cpu")
    items = [c for c in get_suite("transformer").items(cpu)
             if c.benchmark == "transformer-step" and (c.params["model"], c.params["dtype"], c.params.get("checkpointing", "none"),
                 c.params.get("grad_accum", 1)) in {("tiny", "fp32", "none", 1), ("tiny", "bf16", "none", 1),
                                                    ("mini", "fp32", "none", 1), ("mini", "fp32", "every", 1)}]
    assert len(items) == 4
    path = tmp_path_factory.mktemp("transformer") / "run.json"
    writer = ResultWriter(path, Run(suite="transformer", env={"device": {"type": "cpu", "name": "cpu"}}))
    Runner(cpu, TimerConfig.for_device(cpu, quick=True), writer, telemetry=None).run(items)
    writer.close()
    return load_run(path)


def test_render_of_a_real_cpu_run(cpu_run):
    assert [r.status for r in cpu_run.records] == ["ok"] * 4, [r.error or r.reason for r in cpu_run.records]
    text = report.render(cpu_run)
    for title in ("transformer training step", "speed-up by precision", "checkpointing vs none"):
        assert title in text, text
    for head in ("model (params)", "step ms", "tokens/s", "peak GiB", "saved act. MiB", "× fp32", "× bf16",
                 "time added %", "memory saved % (saved activations, CPU)"):
        assert head in text, text
    assert "memory saved % (CUDA peak)" not in text     # a CPU run compares saved activations
    assert "transformer-step\ncase" not in text and "transformer-step[" not in text, text
    assert "scaling" not in text and "largest model" not in text
    assert "tiny (164K)" in text and "mini (1.18M)" in text


# ---- ratios with their 90% interval (noise_helpers: samples of a known median) ----

INTERVAL = r"\[(-?\d+\.\d+)–(-?\d+\.\d+)\]"


def timed(record, spread, n=101, high_cov=False, seed=0):
    """The record with timing samples whose median is its step_s (tokens/s ∝ 1/step_s)."""
    from noise_helpers import samples, timing

    record.timing = timing(samples(record.metrics["step_s"], spread, n, seed=seed), high_cov)
    return record


def test_speedup_carries_interval_and_marks_what_noise_allows():
    """Guards: a speed-up the samples cannot tell from 1 printed as a result (today a
    bare "1.03×"): it gets its interval and ~; a real 3× gets an interval without ~."""
    records = [timed(step("fp32", 1000.0, step_s=1.0), 0.3, n=21, seed=1),
               timed(step("bf16", 1030.0, step_s=1 / 1.03), 0.3, n=21, seed=2),
               timed(step("fp8_e4m3", 3000.0, step_s=1 / 3), 0.01, seed=3)]
    fp32 = column(report.transformer_speedup_table(records), "× fp32")
    case = "1.3b (1.44B) mb4"
    m = re.fullmatch(rf"1\.03× {INTERVAL} ~", fp32[f"{case} | bf16"])
    assert m and float(m[1]) < 1 < float(m[2])
    m = re.fullmatch(rf"3\.00× {INTERVAL}", fp32[f"{case} | fp8"])
    assert m and 1 < float(m[1]) < 3 < float(m[2])
    assert fp32[f"{case} | fp32"] == "1.00×"            # a case against itself: no interval
    text = report.render(run_of(records))
    assert "~ 90% interval contains 1: not a measured difference" in text


def test_checkpointing_time_added_carries_interval_and_noise():
    """Guards: "time added −55.9%" from two noisy steps printed as a result: it shows an
    interval that holds 0, ~ and ! (either side's CoV is high); a clean +30% does not."""
    noisy = [timed(step(ckpt="none", step_s=1.0), 1.5, n=11, high_cov=True, seed=1),
             timed(step(ckpt="every", step_s=0.441), 1.5, n=11, high_cov=True, seed=2)]
    clean = [timed(step(ckpt=c, step_s=s, model="2.7b", n_params=2_700_000_000), 0.005, seed=i)
             for i, (c, s) in enumerate((("none", 1.0), ("every", 1.3)))]
    added = column(report.checkpointing_table(noisy + clean), "time added %")
    m = re.fullmatch(rf"-55\.9 {INTERVAL} ~ !", added["1.3b (1.44B) bf16 mb4 | every"])
    assert m and float(m[1]) < 0 < float(m[2])
    m = re.fullmatch(rf"30\.0 {INTERVAL}", added["2.7b (2.7B) bf16 mb4 | every"])
    assert m and 0 < float(m[1]) < 30 < float(m[2])
    assert added["2.7b (2.7B) bf16 mb4 | none"] == "0.0"
    text = report.render(run_of(noisy + clean))
    assert "not a measured difference" in text and "a ratio marked ! has such a case" in text


def test_matmul_vs_fp32_carries_interval():
    """Guards: "fp8 at 21× fp32" from an fp32 case timed on a busy machine (6 of its 11
    samples contended) shown as a result, in the matmul table and the best-of table."""
    from noise_helpers import samples, timing

    def mm(dtype, xs, high_cov=False):
        flops = 2 * 256 ** 3
        t = timing(xs, high_cov)
        return Record("matmul", {"dtype": dtype, "m": 256, "n": 256, "k": 256}, "ok", "cuda:0", timing=t,
                      work={"flops": flops}, check={"rel_err": 1e-3},
                      metrics={"tflops": flops / t["median_s"] / 1e12, "pct_of_peak": None})

    busy = samples(0.95e-3, 0.01, 5, seed=1) + samples(21.37e-3, 0.01, 6, seed=2)
    records = [mm("fp32", busy, high_cov=True), mm("fp8_e4m3", samples(1e-3, 0.01, 11, seed=3))]
    fp32 = column(report.matmul_table(records), "vs FP32")
    m = re.fullmatch(rf"(\d+\.\d\d)× {INTERVAL} ~ !", fp32["fp8_e4m3 | 256×256×256"])
    assert m and float(m[2]) < 1 < float(m[3]) and float(m[1]) > 15
    table = report.best_table(records)
    i = header_cells(table).index("vs FP32")
    assert {row[0]: row[i] for row in cells(table)}["fp8_e4m3"] == fp32["fp8_e4m3 | 256×256×256"]
