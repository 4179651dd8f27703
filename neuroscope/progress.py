"""A one-line progress bar with rate and ETA on stderr (no dependency, safe when stderr is not a tty)."""
from __future__ import annotations

import sys
import time


class ProgressBar:
    def __init__(self, label: str, unit: str = "neurons", stream=None, min_interval: float = 0.2):
        self.label, self.unit = label, unit
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self.start = time.perf_counter()
        self.last = 0.0
        self.min_interval = min_interval if self.tty else 5.0
        self.done = self.total = 0

    def __call__(self, done: int, total: int) -> None:
        finished = done >= total and self.done >= self.total > 0 and self.last > 0   # the end, already shown
        if done == 0 and self.done == 0:
            self.start = time.perf_counter()      # the clock (rate, ETA) starts with the work, not the bar
        self.done, self.total = done, total
        now = time.perf_counter()
        if finished or (done < total and now - self.last < self.min_interval):
            return
        self.last = now
        self.stream.write(("\r" if self.tty else "") + self.line(now) + ("" if self.tty else "\n"))
        self.stream.flush()

    def line(self, now: float) -> str:
        elapsed = now - self.start
        frac = self.done / self.total if self.total else 1.0
        rate = self.done / elapsed if elapsed > 0 else 0.0
        eta = (self.total - self.done) / rate if rate > 0 else 0.0
        width = 28
        filled = int(width * frac)
        bar = "█" * filled + "░" * (width - filled)
        return (f"{self.label} {bar} {frac:6.1%} {self.done:,}/{self.total:,} {self.unit} "
                f"{rate:,.0f}/s  {_clock(elapsed)} elapsed, ETA {_clock(eta) if rate > 0 or frac >= 1 else '?'}")

    def close(self) -> None:
        if self.tty and self.total:
            self.stream.write("\n")
            self.stream.flush()

    def __enter__(self) -> "ProgressBar":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _clock(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 60}:{seconds % 60:02d}" if seconds < 3600 else f"{seconds // 3600}h{seconds // 60 % 60:02d}"
