"""Dense matmul in every precision of the suite, through gpubench's own ``matmul``
definition (gpubench.benches.matmul): one test per case, checked against float64
before it is timed. The running is in conftest.py's ``gpubench_run``."""

GPUBENCH_BENCHMARK = "matmul"


def test_matmul(gpubench_case, gpubench_run):
    info = gpubench_run(gpubench_case)
    if "tflops" in info:
        assert info["tflops"] > 0
