"""Progress on stderr: a live bar on a terminal, one line per case otherwise (CI logs)."""

from __future__ import annotations

import sys

from gpubench.results import Record


def _outcome(record: Record) -> str:
    if record.status == "ok":
        m = record.metrics
        if m.get("tflops") is not None:
            return f"{m['tflops']:.3g} TFLOP/s"
        if m.get("gbps") is not None:
            return f"{m['gbps']:.4g} GB/s"
        return "ok"
    return f"{record.status}: {record.reason or record.error}"


class LineProgress:
    def __init__(self, stream=None):
        self.stream = stream or sys.stderr
        self.total = 0
        self.i = 0

    def start(self, total):
        self.total = total

    def begin(self, label):
        self.i += 1

    def done(self, record, label):
        print(f"[{self.i}/{self.total}] {label}: {_outcome(record)}", file=self.stream, flush=True)

    def note(self, text):
        pass

    def stop(self):
        pass


class RichProgress:
    def __init__(self):
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self.console = Console(stderr=True)
        self.bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                            TimeElapsedColumn(), console=self.console, transient=True)
        self.task = None

    def start(self, total):
        self.bar.start()
        self.task = self.bar.add_task("starting", total=total)

    def begin(self, label):
        self.bar.update(self.task, description=label)

    def done(self, record, label):
        self.bar.console.print(f"{label}: {_outcome(record)}", highlight=False)
        self.bar.advance(self.task)

    def note(self, text):
        self.bar.update(self.task, description=text)

    def stop(self):
        self.bar.stop()


def make_progress():
    return RichProgress() if sys.stderr.isatty() else LineProgress()
