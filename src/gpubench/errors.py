"""Errors that mean "the user asked for something wrong".

The CLI turns any ``GpubenchError`` into one line on stderr and exit code 2, so a
message must name the offending thing (the flag, the file, the dtype) on its own.
Anything else that escapes is a bug and keeps its traceback.
"""


class GpubenchError(Exception):
    """Bad input or an impossible request: reported in one line, exit code 2."""


class UnknownNameError(GpubenchError):
    """A suite, benchmark, dtype or GPU name that is not in a registry."""

    def __init__(self, kind: str, name: str, known):
        import difflib

        known = sorted(known)
        close = difflib.get_close_matches(name, known, n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        super().__init__(f"unknown {kind} {name!r} (known: {', '.join(known)}){hint}")
        self.kind, self.name, self.known = kind, name, known


class ResultFileError(GpubenchError):
    """A file that is not a readable gpubench result file."""


class SkipCase(Exception):
    """Raised by a benchmark's setup when a case means nothing on this device.

    The runner records it as ``skipped`` with the message as the reason.
    """


class CheckFailed(Exception):
    """A kernel's output disagreed with its float64 reference: never time it."""
