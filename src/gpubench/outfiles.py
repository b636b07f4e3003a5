"""Writing the files gpubench is asked to write, without losing anybody's file.

Every output path a command takes (``run --out``, ``compare --csv/--plot``,
``calibrate -o``) goes through :func:`check_output` before any work and through
:func:`write_atomic` when written:

- an existing non-empty file is refused unless ``--force`` (an empty one holds
  nothing to lose: ``--out "$(mktemp)"`` works);
- a file the command reads (an input) is refused even with ``--force``: one
  typo (``--csv a.json``) would otherwise replace a measurement with a table;
- two outputs of one command may not be the same file;
- the bytes go to a temporary file in the same folder, which then replaces the
  target (``os.replace``, atomic on POSIX): an interrupted write, a full disk or a
  serializer that raises leaves the old file as it was;
- the file gets the mode a plain ``open(path, "w")`` would give it: a new file
  ``0o666 & ~umask`` (``mkstemp`` alone makes 0600, which colleagues cannot read),
  a replaced file its old mode.
"""

from __future__ import annotations

import os
import stat
import tempfile
from pathlib import Path
from typing import IO, Callable, Iterable

from gpubench.errors import GpubenchError


def _umask() -> int:
    # /proc gives it without changing it; os.umask's set-and-restore is a race for threads.
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    old = os.umask(0o022)
    os.umask(old)
    return old


def new_file_mode() -> int:
    """The permission bits ``open(path, "w")`` gives a file it creates."""
    return 0o666 & ~_umask()


def _same_file(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)           # hard links and symlinks too
    except OSError:                             # one of them does not exist (yet)
        return os.path.realpath(a) == os.path.realpath(b)


def check_output(path: str | os.PathLike, flag: str, *, force: bool = False,
                 inputs: Iterable[str | os.PathLike] = (),
                 others: Iterable[tuple[str, str | os.PathLike | None]] = (),
                 create_parent: bool = False) -> None:
    """Refuse ``path`` as the output of ``flag`` if writing it could destroy a file.

    ``inputs`` are the files the command reads (never written, whatever ``force``
    says); ``others`` the command's other outputs as (flag, path) pairs.
    """
    path = Path(path)
    for other_flag, other in others:
        if other is not None and _same_file(path, Path(other)):
            raise GpubenchError(f"{flag} {path} and {other_flag} {other} are the same file: "
                                f"give each its own name")
    for item in inputs:
        item = Path(item)
        if item.exists() and _same_file(path, item):
            raise GpubenchError(f"{flag} {path} is one of the inputs ({item}): gpubench never writes "
                                f"over an input, even with --force; choose another name")
    if path.is_dir():
        raise GpubenchError(f"{flag} {path} is a directory, not a file")
    if path.exists() and not force:
        try:
            empty = path.stat().st_size == 0
        except OSError:
            empty = False
        if not empty:
            raise GpubenchError(f"{flag} {path} already exists; --force overwrites it")
    if path.parent.is_dir():
        probe_folder(path, flag)
    elif not create_parent:
        raise GpubenchError(f"{flag} {path}: folder {path.parent} does not exist")


def probe_folder(path: Path, flag: str) -> None:
    """Fail now, in one line, if ``path``'s folder takes no new file: a read-only folder,
    /proc, a full disk. Checking permissions says too little (root passes them all); the
    probe is the temporary file the atomic write will make."""
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".probe", dir=path.parent)
    except OSError as e:
        raise GpubenchError(f"{flag} {path}: cannot write in {path.parent} ({e.strerror})") from None
    os.close(fd)
    os.unlink(tmp)


def claim_new(path: Path) -> Path:
    """Create ``path`` empty and exclusively, or ``stem-2``, ``stem-3``… if it exists: two
    runs started in the same second (one per GPU from a script) would otherwise pick the
    same default name and the second would replace the first. The empty file holds the
    name until the run writes it (an empty file counts as nothing to lose)."""
    for i in range(1, 1000):
        candidate = path if i == 1 else path.with_name(f"{path.stem}-{i}{path.suffix}")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(candidate, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666)
        except FileExistsError:
            continue
        except OSError as e:
            raise GpubenchError(f"cannot write {candidate}: {e.strerror} (give --out)") from None
        os.close(fd)
        return candidate
    raise GpubenchError(f"{path}: a thousand runs already hold this name; give --out")


def write_atomic(path: str | os.PathLike, write: Callable[[IO[bytes]], None]) -> None:
    """Call ``write`` with a binary file in ``path``'s folder, then put it in ``path``'s place.

    If ``write`` raises (or the process dies) the temporary file goes and ``path`` is
    untouched. A symlink is followed, as ``open`` would: its target is replaced.
    """
    path = Path(os.path.realpath(path))
    try:
        mode = stat.S_IMODE(os.stat(path).st_mode)
    except FileNotFoundError:
        mode = new_file_mode()
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as e:
        raise GpubenchError(f"cannot write {path}: {e.strerror} in {path.parent}") from None
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
            os.fchmod(f.fileno(), mode)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    write_atomic(path, lambda f: f.write(text.encode("utf-8")))
