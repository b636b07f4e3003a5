"""What a run shows while it runs: a bar with an ETA on a terminal, plain lines elsewhere."""

import io
import re

from rich.console import Console

from gpubench.progress import LineProgress, RichProgress, make_progress
from gpubench.results import Record

MATMUL = Record("matmul", {"dtype": "bf16"}, "ok", "cuda:0", metrics={"tflops": 612.31})
ALL_REDUCE = Record("all_reduce", {"size_bytes": 1 << 30}, "ok", "cuda:0",
                    metrics={"algbw_gbps": 212.3, "busbw_gbps": 371.52})
STEP = Record("transformer-step", {"model": "1.3b"}, "ok", "cuda:0", metrics={"tokens_per_s": 48213.7})
SKIPPED = Record("all_gather", {}, "skipped", "cpu", reason="collectives need at least 2 ranks")


class Tty(io.StringIO):
    def isatty(self):
        return True


def test_plain_lines_off_a_terminal():
    """Logs and pipes get one parseable line per case with the figure it is read by: a
    collective's busbw and a step's tokens/s, which used to print as a bare 'ok'."""
    stream = io.StringIO()
    progress = make_progress(stream, env={})
    assert isinstance(progress, LineProgress)
    progress.start(4)
    for label, record in [("matmul bf16 8192x8192x8192", MATMUL), ("all_reduce bf16 1 GiB", ALL_REDUCE),
                          ("transformer-step 1.3b bf16", STEP), ("all_gather fp32 4 KiB", SKIPPED)]:
        progress.begin(label)
        progress.done(record, label)
    progress.stop()
    assert stream.getvalue().splitlines() == [
        "[1/4] matmul bf16 8192x8192x8192: 612.3 TFLOP/s",
        "[2/4] all_reduce bf16 1 GiB: 371.5 GB/s busbw",
        "[3/4] transformer-step 1.3b bf16: 48,214 tokens/s",
        "[4/4] all_gather fp32 4 KiB: skipped: collectives need at least 2 ranks",
    ]


def test_ci_gets_plain_lines_even_on_a_terminal():
    """A CI runner may give the job a pseudo-terminal; its log must still read line by line."""
    assert isinstance(make_progress(Tty(), env={"CI": "true"}), LineProgress)
    assert isinstance(make_progress(Tty(), env={"TERM": "dumb"}), LineProgress)
    assert isinstance(make_progress(Tty(), env={}), RichProgress)


def test_terminal_bar_shows_eta_current_case_and_last_figure():
    """On a terminal: the percentage, an ETA from the mean time per item so far (10 s an item,
    2 of 4 done: 20 s left), the case running now and the last case's figure."""
    buf = io.StringIO()
    now = [0.0]
    progress = RichProgress(Console(file=buf, force_terminal=True, width=120), clock=lambda: now[0])
    progress.start(4)
    progress.begin("matmul bf16 4096x4096x4096")
    now[0] = 10.0
    progress.done(MATMUL, "matmul bf16 4096x4096x4096")
    progress.begin("all_reduce bf16 1 GiB")
    now[0] = 20.0
    progress.done(ALL_REDUCE, "all_reduce bf16 1 GiB")
    progress.begin("membw copy 1024 MiB")
    frame = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", buf.getvalue())     # colours, cursor moves
    progress.stop()
    assert "25%" in frame and "ETA 0:00:30" in frame
    assert "50%" in frame and "2/4" in frame and "ETA 0:00:20" in frame
    assert "now:  membw copy 1024 MiB" in frame
    assert "last: matmul bf16 4096x4096x4096 · 612.3 TFLOP/s" in frame
    assert "last: all_reduce bf16 1 GiB · 371.5 GB/s busbw" in frame
