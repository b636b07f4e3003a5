"""The GPT training step (forward, backward, AdamW) through gpubench's own
``transformer-step`` definition (gpubench.benches.transformer): the loss and every
gradient are checked against a float64 copy of the weights before any step is timed.
Its cases come from a suite; mixed-precision has one step per precision, the
``transformer`` suite the sizes, checkpointing and compile:

    pytest benchmarks/test_transformer.py --gpubench-suite transformer --benchmark-json out.json

The running is in conftest.py's ``gpubench_run``."""

GPUBENCH_BENCHMARK = "transformer-step"


def test_transformer_step(gpubench_case, gpubench_run):
    info = gpubench_run(gpubench_case)
    assert info["check"]["grad_rel_err"] <= info["check"]["tolerance"]
    if "metrics" in info:       # absent under --benchmark-disable: checked, not timed
        assert info["tokens_per_s"] > 0 and info["metrics"]["loss"] > 0
