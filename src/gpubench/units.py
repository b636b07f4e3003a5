"""How sizes are written for people: binary units, as nccl-tests and `--size 1G` read them."""


def format_bytes(n: int | float) -> str:
    """64 KiB, 1.5 MiB, 1 GiB, 512 B: the largest binary unit the size reaches."""
    for unit, size in (("TiB", 1 << 40), ("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= size:
            return f"{n / size:g} {unit}"
    return f"{n:g} B"
