"""One module per benchmark family; importing this package registers them all."""

from gpubench.benches import attention, comm, matmul, membw, overhead, transformer  # noqa: F401
