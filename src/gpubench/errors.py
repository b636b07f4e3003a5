"""Errors that mean "the user asked for something wrong".

The CLI turns any ``GpubenchError`` into one line on stderr and exit code 2, so a
message must name the offending thing (the flag, the file, the dtype) on its own.
Anything else that escapes is a bug and keeps its traceback.
"""


class GpubenchError(Exception):
    """Bad input or an impossible request: reported in one line, exit code 2."""


class UnknownNameError(GpubenchError):
    """A suite, benchmark, dtype or GPU name that is not in a registry."""

    # A list longer than this is not read: the message points at the command that lists it.
    MAX_LISTED = 15

    def __init__(self, kind: str, name: str, known, *, close=None, listed_by: str | None = None):
        import difflib

        known = sorted(known)
        if close is None:
            close = difflib.get_close_matches(name, known, n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        if listed_by and len(known) > self.MAX_LISTED:
            where = f" ({listed_by} lists them)"
        else:
            where = f" (known: {', '.join(known)})"
        super().__init__(f"unknown {kind} {name!r}{hint}{where}")
        self.kind, self.name, self.known, self.close = kind, name, known, list(close)


class ResultFileError(GpubenchError):
    """A file that is not a readable gpubench result file."""


class SkipCase(Exception):
    """Raised by a benchmark's setup when a case means nothing on this device.

    The runner records it as ``skipped`` with the message as the reason.
    """


class CheckFailed(Exception):
    """A kernel's output disagreed with its float64 reference: never time it."""
