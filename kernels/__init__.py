"""Triton kernels, installed as ``gpubench.kernels``.

Each kernel module keeps its correctness check beside it (against a float64
reference) and runs under ``TRITON_INTERPRET=1`` on a CPU for the tests.
"""
