"""Progress on stderr: a live bar on a terminal, one line per case otherwise (CI logs).

On a terminal: how far (percentage, items done of all), the time so far and an ETA,
the case running now and the last one's headline figure; a case that was skipped or
failed stays on the screen above the bar, and the bar goes once the run ends (the
table follows). Anywhere else (a pipe, a file, a CI log, ``CI`` set): one line per
item, ``[i/N] LABEL: FIGURE``, written when the item ends.
"""

from __future__ import annotations

import os
import sys
import time

from gpubench.results import Record


def _number(value: float) -> str:
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    return f"{value:.4g}"


def headline(record: Record) -> str:
    """The figure a case is read by (the one ``gpubench compare`` compares), or what went wrong."""
    if record.status != "ok":
        return f"{record.status}: {record.reason or record.error}"
    from gpubench.compare import COLLECTIVE_NAMES, MAIN_METRICS

    m = record.metrics or {}
    key, unit, _ = MAIN_METRICS.get(record.benchmark, ("", "", True))
    candidates = [(key, unit), ("tflops", "TFLOP/s"), ("gbps", "GB/s")]
    for key, unit in candidates:
        value = m.get(key) if key else None
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            if unit == "params":
                return f"{value / 1e9:.3g}B params" if value >= 1e9 else f"{value / 1e6:.3g}M params"
            busbw = " busbw" if record.benchmark in COLLECTIVE_NAMES else ""
            return f"{_number(value)} {unit}{busbw}"
    return "ok"


def _ci(env) -> bool:
    value = env.get("CI", "").strip().lower()
    return value not in ("", "0", "false", "no")


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
        print(f"[{self.i}/{self.total}] {label}: {headline(record)}", file=self.stream, flush=True)

    def note(self, text):
        pass

    def stop(self):
        pass


def _eta_column():
    from rich.progress import ProgressColumn
    from rich.text import Text

    class Eta(ProgressColumn):
        """Time left at the mean time per item so far: a suite's items differ too much in
        length (8 B to 1 GiB, 125M to 13B parameters) for a recent-speed estimate to settle."""

        max_refresh = 1.0

        def render(self, task):
            if not task.completed or task.total is None or task.elapsed is None:
                return Text("ETA -:--:--", style="progress.remaining")
            left = task.elapsed / task.completed * max(0.0, task.total - task.completed)
            h, rest = divmod(int(left + 0.5), 3600)
            return Text(f"ETA {h}:{rest // 60:02d}:{rest % 60:02d}", style="progress.remaining")

    return Eta()


class RichProgress:
    def __init__(self, console=None, clock=None):
        from rich.console import Console, Group
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TaskProgressColumn,
            TimeElapsedColumn,
        )
        from rich.text import Text

        self.console = console or Console(stderr=True)
        self.current = ""
        self.last = ""
        owner = self

        class Bar(Progress):
            def get_renderables(self):
                lines = [self.make_tasks_table(self.tasks)]
                for prefix, text in (("now:  ", owner.current), ("last: ", owner.last)):
                    if text:
                        lines.append(Text(prefix + text, no_wrap=True, overflow="ellipsis"))
                yield Group(*lines)

        self.bar = Bar(BarColumn(), TaskProgressColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                       _eta_column(), console=self.console, transient=True,
                       get_time=clock or time.monotonic)
        self.task = None

    def start(self, total):
        self.bar.start()
        self.task = self.bar.add_task("", total=total)

    def begin(self, label):
        self.current = label
        self.bar.refresh()

    def done(self, record, label):
        if record.status != "ok":       # worth keeping in view after the bar has moved on
            self.bar.console.print(f"{label}: {headline(record)}", highlight=False, markup=False)
        self.last = f"{label} · {headline(record)}"
        self.bar.advance(self.task)
        self.bar.refresh()

    def note(self, text):
        self.current = text
        self.bar.refresh()

    def stop(self):
        self.bar.stop()


def make_progress(stream=None, env=None):
    """The bar where a person watches a terminal; plain lines for logs, pipes and CI."""
    stream = stream or sys.stderr
    env = os.environ if env is None else env
    tty = getattr(stream, "isatty", lambda: False)()
    if not tty or _ci(env) or env.get("TERM") == "dumb":
        return LineProgress(stream)
    from rich.console import Console

    return RichProgress(Console(stderr=True) if stream is sys.stderr else Console(file=stream))
