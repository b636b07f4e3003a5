"""The estimator held to its track record: published runs the project keeps, with sources.

The back-test table (``src/gpubench/estimate/data/published_runs.csv``) is data in the project;
these tests hold the table to its own rules (a source, a date, the assumed fields said) and the
model to the table: error per family, better than the one-constant baseline, ranges that
contain what was published, and the one kind of fitted constant (the stacks' η) equal to
what the table gives."""

import csv
import json
import math
from statistics import fmean

import pytest

from gpubench.cli import main
from gpubench.estimate.backtest import (
    DATA,
    METRICS,
    RESIDUALS,
    backtest,
    cross_validate,
    fit_efficiency,
    load_runs,
    model_fingerprint,
    residuals_and_kind,
    summary,
)
from gpubench.estimate.stacks import EFFICIENCY
from gpubench.estimate.uncertainty import interval
from gpubench.hardware import get_gpu


@pytest.fixture(scope="module")
def bt():
    preds, skipped = backtest()
    return preds, skipped, summary(preds)


def test_every_row_has_a_source_a_date_and_says_what_it_assumed():
    with open(DATA, newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) >= 200
    assert len({r["id"] for r in rows}) == len(rows)
    for r in rows:
        assert r["source"].strip() and r["date"].strip(), r["id"]
        assert r["metric"] in METRICS and float(r["value"]) > 0, r["id"]
        get_gpu(r["gpu"])
        # A layout field the defaults filled is named in `assumed`.
        if r["tp"].strip() and not r["micro_batch"].strip():
            pytest.fail(f"{r['id']}: a layout without a micro-batch")
    assumed = [r for r in rows if r["assumed"].strip()]
    assert len(assumed) > len(rows) / 2      # most published runs leave something out, and say so


def test_families_cover_stacks_generations_moe_and_whole_runs(bt):
    _, _, summ = bt
    for fam in ("megatron/a100", "megatron/h100", "deepspeed/a100", "fsdp/a100", "fsdp/h100", "moe", "whole-run"):
        assert summ[fam]["rows"] >= 10, fam


def test_error_per_family(bt):
    """Dense families of the stacks the table covers well: mean |error| within 15%."""
    _, _, summ = bt
    for fam in ("megatron/a100", "megatron/h100", "deepspeed/a100", "fsdp/a100", "fsdp/h100"):
        assert summ[fam]["mae"] <= 0.15, (fam, summ[fam])
    assert summ["moe"]["mae"] <= 0.25
    assert summ["all"]["mae"] <= 0.15


def test_the_model_beats_the_one_constant_baseline(bt):
    _, _, summ = bt
    for fam, s in summ.items():
        if s["rows"] >= 20:
            assert s["mae"] < s["baseline_mae"], (fam, s)


def test_published_layouts_are_predicted_to_fit(bt):
    preds, _, _ = bt
    fit = fmean(1.0 if p.fits else 0.0 for p in preds)
    assert fit >= 0.88


def test_narayanan_table_2_within_15_percent(bt):
    """PTD-P and ZeRO-3 (DeepSpeed) at 384, 768 and 1536 A100s, 175B and 530B (Table 2)."""
    preds, _, _ = bt
    rows = [p for p in preds if p.run.id.startswith("narayanan-t2-")]
    assert len(rows) == 9
    for p in rows:
        assert abs(p.error) <= 0.15, (p.run.id, p.predicted, p.run.value)
    zero3 = sorted((p for p in rows if "zero-3" in p.run.id), key=lambda p: int(p.run.row["gpus"]))
    # ZeRO-3 loses most of its per-GPU throughput as the per-GPU batch shrinks.
    assert zero3[-1].predicted < 0.45 * zero3[0].predicted


def test_stored_efficiencies_are_the_fit():
    """η is the only constant fitted on the table; what the code uses is what the table gives."""
    fitted = fit_efficiency()
    for fam, table in fitted.items():
        for arch, (eta, rows, _) in table.items():
            assert EFFICIENCY[fam][arch][0] == pytest.approx(eta, abs=0.01), (fam, arch)
            assert EFFICIENCY[fam][arch][1] == rows


def test_stored_residuals_belong_to_this_model():
    """Ranges are built from leave-one-source-out residuals stored beside the table; they are
    those of the current model (refresh: python scripts/refresh_backtest_residuals.py)."""
    stored = json.loads(RESIDUALS.read_text())
    assert stored["model_fingerprint"] == model_fingerprint(), \
        "stale: run python scripts/refresh_backtest_residuals.py and commit the file"
    res, kind = residuals_and_kind()
    assert kind == "leave-one-source-out" and sum(len(v) for v in res.values()) >= 200


def test_ranges_contain_what_was_published():
    """Each row's 80% range, built from the other rows' residuals, holds the published figure
    for at least 70% of rows (the residuals are each row predicted without its publication)."""
    res, _ = residuals_and_kind()
    inside = total = 0
    for fam, xs in res.items():
        for i, x in enumerate(xs):
            others = dict(res)
            others[fam] = xs[:i] + xs[i + 1:]
            lo, hi, _ = interval(others, fam)
            inside += lo <= math.exp(-x) <= hi     # true time ÷ predicted = e^(−x)
            total += 1
    assert inside / total >= 0.70


def test_a_thin_family_gets_a_wider_range(bt):
    preds, _, _ = bt
    res: dict[str, list[float]] = {}
    for p in preds:
        res.setdefault(p.run.family, []).append(math.log(p.time_ratio))
    lo_dense, hi_dense, _ = interval(res, "megatron/a100")
    lo_thin, hi_thin, basis = interval(res, "other/a100")
    assert "fewer than" in basis
    assert hi_thin / lo_thin > hi_dense / lo_dense


@pytest.mark.slow
def test_leave_one_source_out():
    """Refit η without a publication, predict it: the model still beats the baseline."""
    preds, _ = backtest()
    held = {p.run.id: p for p in cross_validate()}
    errs = [abs(held[p.run.id].predicted / p.run.value - 1) for p in preds if p.run.id in held]
    base = [abs(p.baseline_error) for p in preds if p.run.id in held]
    assert len(errs) > 150
    assert fmean(errs) <= 0.20 and fmean(errs) < fmean(base)


def test_backtest_command(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["backtest", "--no-rows"])
    out, _ = capsys.readouterr()
    assert exc.value.code == 0
    assert "baseline" in out and "megatron/h100" in out and "whole-run" in out
    with pytest.raises(SystemExit) as exc:
        main(["backtest", "--family", "nonsense"])
    _, err = capsys.readouterr()
    assert exc.value.code == 2 and "--family" in err and len(err.strip().splitlines()) == 1


def test_rows_that_cannot_be_predicted_say_why():
    runs = load_runs()
    skipped = [r for r in runs if r.excluded]
    assert skipped and all(r.excluded for r in skipped)
