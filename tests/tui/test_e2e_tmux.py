"""End to end: the real `neuroscope tui MODEL --cache-dir DIR` command in tmux, read with capture-pane."""
from __future__ import annotations

import shlex
import shutil
import subprocess
import sys
import time
import uuid

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


def test_filter_finds_planted_neuron_in_real_command(tiny_model):
    exe = shutil.which("neuroscope")
    command = [exe] if exe else [sys.executable, "-m", "neuroscope"]
    command += ["tui", str(tiny_model.folder), "--cache-dir", str(tiny_model.cache_dir)]
    session = f"nstest-{uuid.uuid4().hex[:8]}"
    env_prefix = "env TERM=xterm-256color "
    _tmux("new-session", "-d", "-s", session, "-x", "100", "-y", "30", env_prefix + shlex.join(command))
    try:
        _wait_screen(session, "L0:N0")               # the tree is up
        _tmux("send-keys", "-t", session, "/")
        time.sleep(0.3)
        _tmux("send-keys", "-t", session, "-l", tiny_model.token)
        screen = _wait_screen(session, "match '" + tiny_model.token)
        assert tiny_model.planted in screen
        _tmux("send-keys", "-t", session, "Enter")
        screen = _wait_screen(session, f"{tiny_model.planted}  up pos")
        _tmux("send-keys", "-t", session, "Escape")
        time.sleep(0.6)                              # else escape + q arrive as alt+q
        _tmux("send-keys", "-t", session, "q")
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            alive = subprocess.run(["tmux", "has-session", "-t", session], capture_output=True).returncode == 0
            if not alive:
                break
            time.sleep(0.2)
        assert not alive, "q did not quit the app"
    finally:
        subprocess.run(["tmux", "kill-session", "-t", session], capture_output=True)
