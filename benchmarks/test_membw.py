"""Device memory bandwidth (copy), through gpubench's own ``membw`` definition
(gpubench.benches.membw): checked for an exact copy before it is timed. The
running is in conftest.py's ``gpubench_run``."""

GPUBENCH_BENCHMARK = "membw"


def test_membw(gpubench_case, gpubench_run):
    info = gpubench_run(gpubench_case)
    if "gbps" in info:
        assert info["gbps"] > 0
