"""Attention, the Triton kernel and each SDPA backend, through gpubench's own
``attention`` definition (gpubench.benches.attention): checked against float64 (out,
and dq, dk, dv for fwd+bwd) before it is timed; a backend that cannot run a case
is skipped with SDPA's reason. Its cases are in the ``attention`` suite:

    pytest benchmarks/test_attention.py --gpubench-suite attention --benchmark-json out.json

The running is in conftest.py's ``gpubench_run``."""

GPUBENCH_BENCHMARK = "attention"


def test_attention(gpubench_case, gpubench_run):
    info = gpubench_run(gpubench_case)
    if "tflops" in info:
        assert info["tflops"] > 0
