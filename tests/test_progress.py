"""The CLI's progress bar (neuroscope/progress.py): plain lines every few seconds when stderr is a file or a
pipe (no carriage returns, no escape codes), a rich bar redrawn in place when stderr is a terminal."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
import types

import neuroscope.progress as progress
from neuroscope.progress import PLAIN_INTERVAL, ProgressBar

LINE = re.compile(r"^decode [█░]{28} +(\d+\.\d)% ([\d,]+)/([\d,]+) neuron-views [\d,]+/s  \d+:\d\d elapsed, ETA \S+$")


def test_plain_lines_every_few_seconds_when_stderr_is_a_file(tmp_path, monkeypatch):
    """100 steps half a second apart (on a clock the test moves): a line when the work starts, one each time
    PLAIN_INTERVAL (5 s) has passed, and one at the end; each a whole line, nothing drawn over."""
    clock = [1000.0]
    monkeypatch.setattr(progress, "time", types.SimpleNamespace(perf_counter=lambda: clock[0]))
    log = tmp_path / "stderr.log"
    with open(log, "w", encoding="utf-8") as stream:
        bar = ProgressBar("decode", unit="neuron-views", stream=stream)
        for done in range(101):
            bar(done, 100)
            clock[0] += 0.5
        bar(100, 100)  # the end reported twice is shown once
        bar.close()
    text = log.read_text(encoding="utf-8")
    assert "\r" not in text and "\x1b" not in text
    lines = text.splitlines()
    every = int(PLAIN_INTERVAL / 0.5)
    assert [int(LINE.match(line).group(2)) for line in lines] == list(range(0, 100, every)) + [100], lines
    assert lines[-1].startswith("decode " + "█" * 28 + " 100.0% 100/100") and "0:50 elapsed, ETA 0:00" in lines[-1]


def test_a_real_decode_writes_plain_lines_to_a_pipe(model_dirs, tmp_path):
    """`neuroscope decode` with stderr a pipe (as in CI or `2> log`): plain lines, from 0 to all 384
    neuron-views (2 layers x 3 views x 64 neurons)."""
    env = {**os.environ, "NEUROSCOPE_DATA_DIR": str(tmp_path / "data"), "TERM": "xterm-256color"}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "neuroscope",
            "decode",
            str(model_dirs["llama"]),
            "--cache-dir",
            str(tmp_path / "cache"),
            "--device",
            "cpu",
            "--dtype",
            "float32",
        ],
        capture_output=True,
        env=env,
        timeout=300,
    )  # bytes: text mode would turn \r into \n
    err = proc.stderr.decode("utf-8")
    assert proc.returncode == 0, err
    assert "\r" not in err and "\x1b" not in err
    bars = [line for line in err.split("\n") if line.startswith("decode ")]
    assert bars and all(LINE.match(b) for b in bars), err
    assert LINE.match(bars[0]).group(2) == "0" and bars[-1].split()[2:4] == ["100.0%", "384/384"], bars


def test_a_terminal_gets_a_rich_bar_redrawn_in_place(monkeypatch):
    """On a pseudo-terminal the bar is rich's: its bar characters, colours, the line redrawn in place, and
    the cursor given back when the bar closes."""
    monkeypatch.setenv("TERM", "xterm-256color")
    monkeypatch.setenv("COLUMNS", "120")
    monkeypatch.delenv("NO_COLOR", raising=False)
    master, slave = os.openpty()
    chunks: list[bytes] = []

    def drain():  # read while the bar draws, so a full pty buffer can never block it
        while True:
            try:
                chunk = os.read(master, 65536)
            except OSError:
                return
            if not chunk:
                return
            chunks.append(chunk)

    reader = threading.Thread(target=drain)
    reader.start()
    with os.fdopen(slave, "w", encoding="utf-8") as stream:
        bar = ProgressBar("decode", unit="neuron-views", stream=stream)
        for done in range(0, 101, 10):
            bar(done, 100)
        bar.close()
    reader.join(timeout=10)
    os.close(master)
    out = b"".join(chunks).decode("utf-8", errors="replace")
    assert "━" in out and "\x1b[" in out and "\r" in out, repr(out)  # rich's bar, styled, redrawn
    assert "100/100 neuron-views" in out and "100.0%" in out
    assert out.rstrip("\r\n").endswith("\x1b[?25h"), repr(out[-80:])  # the cursor is back
    assert "█" not in out  # not the plain lines
