"""results/ holds files from real runs: each must load, be complete, and name its hardware."""

from pathlib import Path

import pytest

from gpubench.results import load_run

FILES = sorted((Path(__file__).resolve().parents[1] / "results").glob("*.json"))


@pytest.mark.parametrize("path", FILES, ids=[p.name for p in FILES])
def test_committed_result_file(path):
    run = load_run(path)
    assert run.status == "complete"
    dev = run.env["device"]
    slug = dev["spec_key"] or ("cpu" if dev["type"] == "cpu" else None)
    assert slug and path.name.startswith(slug + "-"), "file name must start with the device it ran on"
    assert run.env["software"]["torch"] and run.env["host"]["hostname"]
    assert run.records and all(r.device == dev["label"] for r in run.records)
    for r in run.records:
        if r.status == "ok" and r.check is not None:
            assert r.check["rel_err"] <= r.check["tolerance"]


def test_there_is_at_least_one_real_result():
    assert FILES
