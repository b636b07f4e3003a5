"""gpubench's pytest-benchmark front end (see README.md). A package so that its test
modules never clash with tests/ modules of the same name (test_matmul.py)."""
