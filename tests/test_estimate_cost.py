"""Cost views: the article's figures, Epoch AI's amortized method worked by hand,
and a price table whose every figure is sourced and dated."""

import json
import math
import re

import pytest

from gpubench.errors import GpubenchError, UnknownNameError
from gpubench.estimate import prices as P
from gpubench.estimate.cost import (
    acquisition_cost,
    capex_energy_cost,
    cloud_cost,
    energy_kwh,
    usd_per_million_tokens,
)
from gpubench.hardware import GPUS

# ---------------------------------------------------------------------------
# The article's figures (reference README, section 1).


def test_gpt3_rented_on_p4de():
    # 128 p4de.24xlarge (8 A100 80GB each) at $40.96/h for 34 days (816 h).
    out = cloud_cost(1024 * 816, 40.96 / 8)
    assert out["usd"] == pytest.approx(4.28e6, rel=0.005)
    assert out["gpu_hours"] == 1024 * 816
    assert out["usd_per_gpu_hour"] == pytest.approx(5.12)


def test_articles_p4de_price_is_historical_not_the_default():
    gpt3 = P.article_price("gpt3-175b")
    assert gpt3.usd_per_gpu_hour == pytest.approx(40.96 / 8) == pytest.approx(5.12)
    assert (gpt3.gpu_key, gpt3.price.offer, gpt3.as_of) == ("a100-sxm-80gb", "p4de.24xlarge", "2022-08")
    # Today's default for the same GPU is AWS's current p4de list, not the article's 2022 one.
    assert P.pricing_for("a100-80gb").cloud_usd_per_gpu_hour == pytest.approx(27.4471 / 8)
    assert P.cloud_price("a100-80gb").as_of > gpt3.as_of


def test_mt_nlg_rented_just_over_14m():
    # 2048 A100 for 8 weeks at the article's p4de price.
    price = P.article_price("mt-nlg-530b").usd_per_gpu_hour
    usd = cloud_cost(2048 * 8 * 7 * 24, price)["usd"]
    assert 14.0e6 < usd < 14.2e6


def test_mt_nlg_on_premises():
    out = acquisition_cost("a100-sxm-80gb", 2048, electricity_usd_per_kwh=0.15)
    assert out["nodes"] == 256
    assert out["upfront_usd"] == 44_800_000  # 256 x $175,000, exactly
    assert out["power_kw"] == pytest.approx(256 * 6.5)  # "about 1.7 MW"
    assert 1.6e3 < out["power_kw"] < 1.7e3
    assert out["energy_kwh_per_year"] == pytest.approx(1664 * 8766)
    assert 2.1e6 < out["yearly_energy_usd"] < 2.3e6  # "about $2.2M a year"
    assert out["pue"] == 1.0


def test_m6_10t_shows_the_arithmetic_not_the_rounding():
    # The article says "over $300,000"; 512 V100 x 240 h x $2.28 is $280,166.40.
    out = cloud_cost(512 * 240, 2.28)
    assert out["usd"] == pytest.approx(280_166.40, abs=0.01)
    m6 = P.article_price("m6-10t")
    assert (m6.usd_per_gpu_hour, m6.gpu_key, m6.as_of) == (2.28, "v100-sxm2-32gb", "2021-10")


# ---------------------------------------------------------------------------
# Epoch AI's amortized hardware + energy method, computed by hand.


def test_epoch_method_by_hand_a100():
    gpus, hours, price = 1024, 816, 15_000
    out = capex_energy_cost("a100-sxm-80gb", gpus, hours, gpu_price_usd=price)

    cluster = gpus * price * 1.66 / 0.81                 # servers, then the network
    per_hour = 0.14 * math.log(10) / 8766                # 0.14 OOM/year depreciation
    hardware = cluster * per_hour * hours
    server_kw = 0.4 * (6.5 / 8 / 0.4)                    # DGX A100: 6.5 kW over 8 GPUs
    kwh = gpus * server_kw * 0.75 * 1.1 * hours          # avg draw, hyperscaler PUE
    energy = kwh * 0.0806

    assert out["cluster_capex_usd"] == pytest.approx(cluster)
    assert out["hardware_usd"] == pytest.approx(hardware)
    assert out["energy_kwh"] == pytest.approx(kwh)
    assert out["energy_usd"] == pytest.approx(energy)
    assert out["total_usd"] == pytest.approx(hardware + energy)
    # Rough magnitudes, so a wrong constant cannot hide behind the same wrong constant.
    assert out["hardware_usd"] == pytest.approx(944_600, rel=1e-3)
    assert out["energy_kwh"] == pytest.approx(560_102.4)


@pytest.mark.parametrize("gpu", ["a100-sxm-80gb", "a100-sxm-40gb", "h100-sxm"])
def test_energy_is_a_few_percent_of_amortized_cost(gpu):
    # Cottier et al. 2024: energy is 2-6% of frontier training cost.
    out = capex_energy_cost(gpu, 1024, 816)
    share = out["energy_usd"] / out["total_usd"]
    assert 0.01 < share < 0.15
    assert out["energy_fraction_of_total"] == pytest.approx(share)


def test_capex_parameters_are_reported():
    out = capex_energy_cost("v100", 512, 240, pue=P.PUE_OTHER)
    assert out["gpu"] == "v100-sxm2-32gb"
    assert out["server_overhead_ratio"] == 1.69
    assert out["chip_to_server_power_ratio"] == pytest.approx(1.67, abs=0.005)
    assert out["pue"] == 1.25
    assert out["gpu_price_usd"] == P.pricing_for("v100-sxm2-32gb").gpu_purchase_usd
    json.dumps(out)  # plain JSON


def test_every_key_names_its_unit():
    units = ("_usd", "_kwh", "_kw", "_hours", "_usd_per_kwh", "_usd_per_gpu_hour", "_ratio",
             "_fraction", "_fraction_of_total", "_per_year", "_basis", "_per_node")
    plain = {"gpu", "gpus", "nodes", "node", "hours", "method", "pue", "usd", "gpu_hours",
             "hours_per_year", "usd_per_gpu_hour", "depreciation_ooms_per_year"}
    for out in (capex_energy_cost("h100", 8, 10), acquisition_cost("h100", 16),
                acquisition_cost("a100-40gb", 9, gpu_price_usd=10_000),
                cloud_cost(10, 2.0)):
        for k, v in out.items():
            assert k in plain or k.endswith(units), k
            assert isinstance(v, (int, float, str)) and not isinstance(v, bool), k


def test_energy_kwh_helper():
    # 8 H100 for 10 h: 8 x 0.7 kW x 1.82 x 0.75 x 1.1 x 10 h.
    assert energy_kwh(8, 10, "h100-sxm") == pytest.approx(8 * 10.2 / 8 * 0.75 * 1.1 * 10)
    assert energy_kwh(8, 10, "h100-sxm", pue=1.0, utilization_power=1.0) == pytest.approx(102)


def test_hopper_and_blackwell_use_h100_power_ratio():
    for gpu in ("h200-sxm", "h800-sxm", "b200"):
        assert P.chip_to_server_power_ratio(gpu) == P.CHIP_TO_SERVER_POWER_H100
    assert P.chip_to_server_power_ratio("mi300x") == P.CHIP_TO_SERVER_POWER_DEFAULT
    assert P.server_overhead("h100") == 1.64
    assert P.server_overhead("a100-40gb") == 1.66


def test_amortization_rate():
    # About 32% of the cluster's value a year.
    assert P.AMORTIZATION_FRACTION_PER_HOUR * 8766 == pytest.approx(0.3224, abs=1e-4)


# ---------------------------------------------------------------------------
# Acquisition fall-backs.


def test_acquisition_rounds_up_to_whole_nodes():
    out = acquisition_cost("a100-sxm-80gb", 9)
    assert out["nodes"] == 2
    assert out["upfront_usd"] == 2 * 175_000


def test_acquisition_from_gpu_price_when_no_node_price():
    out = acquisition_cost("h200-sxm", 16, gpu_price_usd=32_000)
    assert out["upfront_usd"] == pytest.approx(16 * 32_000 * 1.64 / 0.81)
    assert out["power_kw"] == pytest.approx(2 * 10.2)


def test_acquisition_estimates_power_without_a_node_figure():
    out = acquisition_cost("mi300x", 8)
    assert out["power_kw"] == pytest.approx(8 * 0.75 * 1.8)
    assert "estimated" in out["power_basis"]


def test_acquisition_given_node_overrides_table():
    out = acquisition_cost("a100-sxm-80gb", 32, node_price_usd=200_000, gpus_per_node=16,
                           node_power_kw=10)
    assert out["nodes"] == 2
    assert out["upfront_usd"] == 400_000
    assert out["power_kw"] == 20
    assert out["yearly_energy_usd"] == pytest.approx(20 * 8766 * 0.0806)


def test_usd_per_million_tokens():
    # GPT-3 rented, 300B tokens.
    assert usd_per_million_tokens(4_278_190.08, 300e9) == pytest.approx(14.26, abs=0.01)


# ---------------------------------------------------------------------------
# Bad input.


@pytest.mark.parametrize("call, flag", [
    (lambda: cloud_cost(-1, 5.12), "--gpu-hours"),
    (lambda: cloud_cost(10, -5.12), "--usd-per-gpu-hour"),
    (lambda: cloud_cost(float("nan"), 5.12), "--gpu-hours"),
    (lambda: capex_energy_cost("a100-80gb", -8, 10), "--gpus"),
    (lambda: capex_energy_cost("a100-80gb", 0, 10), "--gpus"),
    (lambda: capex_energy_cost("a100-80gb", 8.5, 10), "--gpus"),
    (lambda: capex_energy_cost("a100-80gb", 8, -10), "--hours"),
    (lambda: capex_energy_cost("a100-80gb", 8, 10, gpu_price_usd=-1), "--gpu-price"),
    (lambda: capex_energy_cost("a100-80gb", 8, 10, electricity_usd_per_kwh=-0.1),
     "--electricity-price"),
    (lambda: capex_energy_cost("a100-80gb", 8, 10, pue=0.9), "--pue"),
    (lambda: capex_energy_cost("a100-80gb", 8, 10, utilization_power=1.5), "--utilization-power"),
    (lambda: acquisition_cost("a100-80gb", -1), "--gpus"),
    (lambda: acquisition_cost("a100-80gb", True), "--gpus"),
    (lambda: acquisition_cost("a100-80gb", 8, node_price_usd=-5), "--node-price"),
    (lambda: acquisition_cost("a100-80gb", 8, gpus_per_node=0), "--gpus-per-node"),
    (lambda: acquisition_cost("a100-80gb", 8, node_power_kw=-1), "--node-power-kw"),
    (lambda: energy_kwh(8, -1, "h100"), "--hours"),
    (lambda: usd_per_million_tokens(100, 0), "--tokens"),
    (lambda: usd_per_million_tokens(-100, 10), "--cost-usd"),
])
def test_bad_numbers_name_the_flag(call, flag):
    with pytest.raises(GpubenchError, match=re.escape(flag)) as exc:
        call()
    assert "\n" not in str(exc.value)


def test_missing_purchase_price_asks_for_one():
    with pytest.raises(GpubenchError, match=r"no purchase price for h200-sxm: pass --gpu-price"):
        capex_energy_cost("h200", 8, 10)
    with pytest.raises(GpubenchError, match=r"--node-price"):
        acquisition_cost("h800", 8)


@pytest.mark.parametrize("call", [
    lambda: capex_energy_cost("a1000", 8, 10),
    lambda: acquisition_cost("not-a-gpu", 8),
    lambda: energy_kwh(8, 10, "h1000"),
    lambda: P.pricing_for("tpu-v4"),
])
def test_unknown_gpu(call):
    with pytest.raises(UnknownNameError):
        call()


# ---------------------------------------------------------------------------
# The table.

_DATE = re.compile(r"\((0[1-9]|1[0-2])/(19|20)\d\d\)")
_URL = re.compile(r"https?://\S+")
_TITLE = re.compile(r"'[^']{8,}'")


def test_table_covers_the_main_training_gpus():
    for key in ("a100-sxm-40gb", "a100-sxm-80gb", "h100-sxm", "h100-pcie", "h200-sxm",
                "h800-sxm", "v100-sxm2-32gb", "b200", "mi300x", "l40s"):
        assert key in P.PRICES


@pytest.mark.parametrize("key", sorted(P.PRICES))
def test_every_entry_is_sourced_and_dated(key):
    p = P.PRICES[key]
    assert key in GPUS and p.gpu_key == key
    assert p.sources
    assert any(_DATE.search(s) and (_URL.search(s) or _TITLE.search(s)) for s in p.sources)
    for s in p.sources:
        assert _DATE.search(s), s
        assert _URL.search(s) or _TITLE.search(s), s
    figures = {"cloud": p.cloud_usd_per_gpu_hour, "purchase": p.gpu_purchase_usd,
               "node price": p.node and p.node.node_price_usd,
               "node power": p.node and p.node.node_max_power_kw}
    for tag, value in figures.items():
        if value is not None:
            assert value > 0
            assert any(s.startswith(tag + ":") for s in p.sources), (key, tag)


def test_an_unsourced_figure_is_refused():
    with pytest.raises(ValueError, match="no source"):
        P.Pricing("h100-sxm", cloud_usd_per_gpu_hour=3.0, gpu_purchase_usd=None, node=None,
                  sources=(P._src("purchase", "'Some price list'", "01/2024"),))
    with pytest.raises(ValueError, match="date"):
        P.Pricing("h100-sxm", cloud_usd_per_gpu_hour=3.0, gpu_purchase_usd=None, node=None,
                  sources=("cloud: somewhere, undated",))


def test_node_facts_match_the_dgx_datasheets():
    assert P.PRICES["a100-sxm-80gb"].node.node_max_power_kw == 6.5
    assert P.PRICES["h100-sxm"].node.node_max_power_kw == 10.2
    # The Epoch ratios give the DGX figures back.
    assert 8 * 0.4 * P.CHIP_TO_SERVER_POWER_A100 == pytest.approx(6.5)
    assert 8 * 0.7 * P.CHIP_TO_SERVER_POWER_H100 == pytest.approx(10.2)


def test_article_implied_electricity_price_is_noted():
    assert "0.15/kWh" in P.PRICES["a100-sxm-80gb"].notes
