"""The cloud price table: every offer dated and sourced, every GPU's default from the
same period and the same rule, the article's prices kept apart as historical, and
`gpubench estimate` saying which price it used."""

import dataclasses
import re

import pytest
from click.testing import CliRunner

from gpubench.cli import cli
from gpubench.errors import GpubenchError, UnknownNameError
from gpubench.estimate import prices as P
from gpubench.estimate import cost as C
from gpubench.hardware import GPUS

_URL = re.compile(r"https?://\S+")
_TITLE = re.compile(r"'[^']{8,}'")


def _months(as_of: str) -> int:
    year, month = as_of.split("-")
    return int(year) * 12 + int(month)


def _defaults():
    return {k: P.cloud_price(k) for k in GPUS if P.cloud_price(k) is not None}


# ---------------------------------------------------------------------------
# The table.


@pytest.mark.parametrize("key", sorted(GPUS))
def test_every_offer_has_provider_kind_date_and_source(key):
    for p in P.cloud_prices(key):
        assert p.usd_per_gpu_hour > 0
        assert p.provider and p.offer
        assert p.kind in P.CLOUD_KINDS
        assert re.fullmatch(r"20\d\d-(0[1-9]|1[0-2])", p.as_of), p
        assert "2025-01" <= p.as_of <= "2026-12", p          # read in 2025-2026, not before
        assert _URL.search(p.source) or _TITLE.search(p.source), p
        if p.usd_per_offer_hour is not None:
            assert p.usd_per_offer_hour / p.gpus == pytest.approx(p.usd_per_gpu_hour)


def test_defaults_come_from_one_period_and_one_kind_of_offer():
    defaults = _defaults()
    # The main training GPUs all have one.
    for key in ("a100-sxm-40gb", "a100-sxm-80gb", "h100-sxm", "h200-sxm", "b200", "l40s", "mi300x"):
        assert key in defaults, key
    newest = max(_months(p.as_of) for p in defaults.values())
    assert newest >= _months("2026-06")                          # late 2026
    for key, p in defaults.items():
        assert newest - _months(p.as_of) <= 12, (key, p.as_of)
        assert p.kind == "on-demand", key


def test_default_rule_is_aws_where_aws_rents_the_gpu():
    for key, offers in P.CLOUD_PRICES.items():
        default = P.cloud_price(key)
        if any(p.provider == "AWS" and p.kind == "on-demand" for p in offers):
            assert default.provider == "AWS", key
        else:
            assert default is None or default.provider in P.DEFAULT_PROVIDERS
    # A100 or H100 compares GPUs: one provider, one month.
    a100, h100, h200 = (P.cloud_price(k) for k in ("a100-80gb", "h100", "h200"))
    assert {a100.provider, h100.provider, h200.provider} == {"AWS"}
    assert a100.as_of == h100.as_of == h200.as_of
    assert (a100.offer, h100.offer, h200.offer) == ("p4de.24xlarge", "p5.48xlarge", "p5en.48xlarge")
    assert h100.usd_per_gpu_hour == pytest.approx(55.04 / 8)
    assert h200.usd_per_gpu_hour == pytest.approx(63.296 / 8)
    assert h100.usd_per_offer_hour == 55.04 and h100.gpus == 8


def test_no_default_is_a_historical_figure():
    for case, h in P.HISTORICAL_PRICES.items():
        assert h.gpu_key in GPUS
        assert _months(P.CLOUD_PRICES_AS_OF) - _months(h.as_of) > 12, case
        default = P.cloud_price(h.gpu_key)
        assert default is None or default.usd_per_gpu_hour != pytest.approx(h.usd_per_gpu_hour), case
    assert P.cloud_price("h100").usd_per_gpu_hour != pytest.approx(12.29)   # AWS p5 at launch, 2023
    assert P.cloud_price("v100") is None                     # the article's $2.28 is not a default
    assert P.cloud_price("h800") is None                     # nor DeepSeek's assumed $2
    assert P.pricing_for("v100").cloud_usd_per_gpu_hour is None


def test_article_price_names_the_reproductions():
    assert P.article_price("gpt3-175b").price.offer == "p4de.24xlarge"
    assert P.article_price("deepseek-v3").usd_per_gpu_hour == 2.0
    with pytest.raises(GpubenchError, match="gpt3-175b"):
        P.article_price("gpt-5")


def test_pricing_entries_carry_the_default_and_its_source():
    for key, entry in P.PRICES.items():
        default = P.cloud_price(key)
        if default is None:
            assert entry.cloud_usd_per_gpu_hour is None, key
            assert not any(s.startswith("cloud:") for s in entry.sources), key
        else:
            assert entry.cloud_usd_per_gpu_hour == default.usd_per_gpu_hour, key
            assert entry.sources[0].startswith(f"cloud: {default.describe()}:"), key
            assert entry.sources[0].endswith(f"({default.date})"), key
    # GPUs whose only sourced figure is a cloud price still get an entry.
    assert P.pricing_for("h100-nvl").cloud_usd_per_gpu_hour == pytest.approx(6.98)


def test_cloud_prices_lists_every_offer_default_first():
    offers = P.cloud_prices("h100")                           # an alias
    assert offers[0] == P.cloud_price("h100-sxm")
    assert {p.provider for p in offers} >= {"AWS", "Microsoft Azure", "Google Cloud", "Lambda",
                                            "CoreWeave"}
    gcp = {p.kind: p for p in offers if p.provider == "Google Cloud"}
    assert gcp["committed-3y"].usd_per_gpu_hour < gcp["committed-1y"].usd_per_gpu_hour \
        < gcp["on-demand"].usd_per_gpu_hour
    assert P.cloud_prices("v100") == []
    with pytest.raises(UnknownNameError):
        P.cloud_prices("h1000")
    with pytest.raises(UnknownNameError):
        P.cloud_price("tpu-v4")


def test_cloud_price_is_frozen_and_checked():
    good = P.cloud_price("h100")
    with pytest.raises(dataclasses.FrozenInstanceError):
        good.usd_per_gpu_hour = 1.0
    for bad in ({"kind": "cheap"}, {"as_of": "10/2026"}, {"source": "somewhere"},
                {"usd_per_gpu_hour": -1.0}, {"provider": ""}):
        with pytest.raises(ValueError):
            dataclasses.replace(good, **bad)


# ---------------------------------------------------------------------------
# Which price a cost used.


def test_price_basis_says_table_or_user():
    table = C.cloud_price_basis("h100")
    assert (table["basis"], table["provider"], table["as_of"]) == ("price table", "AWS", "2026-10")
    assert C.cloud_price_basis("h100", 2.5)["basis"] == "--price"
    assert C.cloud_price_basis("h100", 55.04 / 8)["basis"] == "price table"
    assert C.cloud_price_basis("h100", 55.04 / 8, given=True)["basis"] == "--price"
    assert C.cloud_price_basis("v100")["basis"] == "none"


_RUN = ["estimate", "--model", "llama2-7b", "--gpus", "8", "--tokens", "10B", "--tp", "1", "--pp", "1",
        "--zero", "3", "--mfu", "0.4"]


def _estimate(*args: str) -> str:
    result = CliRunner().invoke(cli, [*_RUN, *args])
    assert result.exit_code == 0, result.output
    return result.output


def test_estimate_prints_the_price_it_used_with_offer_date_and_source():
    out = _estimate("--gpu", "a100-sxm-80gb")
    assert "$3.43/GPU-hour" in out
    line = next(ln for ln in out.splitlines() if ln.startswith("cloud price "))
    assert "AWS p4de.24xlarge on-demand" in line and "as of 2026-10" in line
    source = next(ln for ln in out.splitlines() if ln.startswith("cloud price source"))
    assert "https://aws.amazon.com/ec2/pricing/on-demand/" in source
    assert "$5.12" not in out                                 # not the article's 2022 price


def test_estimate_says_when_price_replaced_the_table():
    out = _estimate("--gpu", "h100-sxm", "--price", "2.5")
    line = next(ln for ln in out.splitlines() if ln.startswith("cloud price "))
    assert "$2.50/GPU-hour, given with --price" in line
    assert "$6.88, AWS p5.48xlarge" in line and "2026-10" in line
    assert not any(ln.startswith("cloud price source") for ln in out.splitlines())
