"""End to end: the real `neuroscope tui MODEL --cache-dir DIR` command in tmux, read with capture-pane."""

from __future__ import annotations

import shlex
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")]


def _tmux(*args: str) -> str:
    return subprocess.run(["tmux", *args], check=True, capture_output=True, text=True).stdout


def _wait_screen(session: str, needle: str, timeout: float = 30.0) -> str:
    deadline = time.monotonic() + timeout
    screen = ""
    while time.monotonic() < deadline:
        screen = _tmux("capture-pane", "-p", "-t", session)
        if needle in screen:
            return screen
        time.sleep(0.2)
    raise AssertionError(f"{needle!r} never appeared; last screen:\n{screen}")


def test_filter_finds_planted_neuron_in_real_command(tiny_model, tmp_path):
    exe = Path(sys.executable).with_name("neuroscope")  # this environment's script, else one on PATH
    exe = str(exe) if exe.exists() else shutil.which("neuroscope")
    command = [exe] if exe else [sys.executable, "-m", "neuroscope"]
    command += ["tui", str(tiny_model.folder), "--cache-dir", str(tiny_model.cache_dir)]
    session = f"nstest-{uuid.uuid4().hex[:8]}"
    status = tmp_path / "exit"
    # Textual draws on stderr, so stderr stays on the terminal: what the app prints after it leaves its
    # screen (a traceback) is read from the pane, which stays open (sleep) once the exit status is written.
    shell = f"env TERM=xterm-256color {shlex.join(command)}; echo EXIT=$? > {shlex.quote(str(status))}; sleep 60"
    _tmux("new-session", "-d", "-s", session, "-x", "100", "-y", "30", shell)
    try:
        _wait_screen(session, "L0:N0")  # the tree is up
        _tmux("send-keys", "-t", session, "/")
        time.sleep(0.3)
        _tmux("send-keys", "-t", session, "-l", tiny_model.token)
        screen = _wait_screen(session, "match '" + tiny_model.token)
        assert tiny_model.planted in screen
        _tmux("send-keys", "-t", session, "Enter")
        screen = _wait_screen(session, f"{tiny_model.planted}  up pos")
        _tmux("send-keys", "-t", session, "Escape")
        time.sleep(0.6)  # else escape + q arrive as alt+q
        _tmux("send-keys", "-t", session, "q")
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not status.exists():
            time.sleep(0.2)
        assert status.exists(), "q did not quit the app"
        time.sleep(0.3)  # the echo's write and the last output reach the pane
        left = _tmux("capture-pane", "-p", "-S", "-", "-t", session)
        assert status.read_text().strip() == "EXIT=0", f"q quit with {status.read_text().strip()}:\n{left}"
        assert "Traceback" not in left and "Error" not in left, left
    finally:
        subprocess.run(["tmux", "kill-session", "-t", session], capture_output=True)
