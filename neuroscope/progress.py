"""The CLI's progress bar on stderr: label, bar, percentage, done/total, rate, elapsed time and ETA.

On a terminal it is a ``rich.progress`` bar redrawn in place (rich comes with Textual). When stderr is not a
terminal (a log file, a pipe, CI) it is one plain line every few seconds and one at the end: no carriage
returns, no escape codes, so a log stays readable line by line.
"""

from __future__ import annotations

import sys
import time

from rich.console import Console
from rich.progress import (
    BarColumn,
    Progress,
    ProgressColumn,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text

PLAIN_INTERVAL = 5.0  # seconds between the plain lines written when stderr is not a terminal


class ProgressBar:
    def __init__(self, label: str, unit: str = "neurons", stream=None, min_interval: float = 0.2):
        self.label, self.unit = label, unit
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self.start = time.perf_counter()
        self.last = 0.0
        self.min_interval = min_interval if self.tty else PLAIN_INTERVAL
        self.done = self.total = 0
        self._rich: tuple[Progress, TaskID] | None = None  # (rich Progress, its task), made when the work starts

    def __call__(self, done: int, total: int) -> None:
        if self.tty:
            self._draw(done, total)
            return
        finished = done >= total and self.done >= self.total > 0 and self.last > 0  # the end, already shown
        if done == 0 and self.done == 0:
            self.start = time.perf_counter()  # the clock (rate, ETA) starts with the work, not the bar
        self.done, self.total = done, total
        now = time.perf_counter()
        if finished or (done < total and now - self.last < self.min_interval):
            return
        self.last = now
        self.stream.write(self.line(now) + "\n")
        self.stream.flush()

    def _draw(self, done: int, total: int) -> None:
        """The rich bar: started at the first report (so its clock starts with the work), redrawn by rich
        a few times a second. It leaves sys.stdout alone (a redirected stdout must not end up on stderr)
        and prints what is written to stderr meanwhile above the bar."""
        if self._rich is None:
            progress = Progress(
                TextColumn(self.label, markup=False),
                BarColumn(bar_width=28),
                TextColumn("{task.percentage:>5.1f}%"),
                TextColumn("{task.completed:,.0f}/{task.total:,.0f} " + self.unit, markup=False),
                Rate(),
                TimeElapsedColumn(),
                TextColumn("ETA"),
                TimeRemainingColumn(),
                console=Console(file=self.stream),
                refresh_per_second=1 / self.min_interval,
                redirect_stdout=False,
            )
            self._rich = progress, progress.add_task(self.label, total=total or 1)
            progress.start()
        progress, task = self._rich
        self.done, self.total = done, total
        progress.update(task, completed=done if total else 1, total=total or 1)

    def line(self, now: float) -> str:
        elapsed = now - self.start
        frac = self.done / self.total if self.total else 1.0
        rate = self.done / elapsed if elapsed > 0 else 0.0
        eta = (self.total - self.done) / rate if rate > 0 else 0.0
        width = 28
        filled = int(width * frac)
        bar = "█" * filled + "░" * (width - filled)
        return (
            f"{self.label} {bar} {frac:6.1%} {self.done:,}/{self.total:,} {self.unit} "
            f"{rate:,.0f}/s  {_clock(elapsed)} elapsed, ETA {_clock(eta) if rate > 0 or frac >= 1 else '?'}"
        )

    def close(self) -> None:
        if self._rich is not None:
            self._rich[0].stop()  # the last picture of the bar stays, the cursor comes back
            self._rich = None

    def __enter__(self) -> "ProgressBar":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class Rate(ProgressColumn):
    """Units done per second (rich's own estimate over its recent samples)."""

    def render(self, task) -> Text:
        return Text(f"{task.speed:,.0f}/s" if task.speed else "?/s", style="progress.data.speed")


def _clock(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 60}:{seconds % 60:02d}" if seconds < 3600 else f"{seconds // 3600}h{seconds // 60 % 60:02d}"
