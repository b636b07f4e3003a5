"""One module per benchmark family; importing this package registers them all."""

from gpubench.benches import matmul, membw  # noqa: F401
