"""Stopping a command from outside, as a terminal or a job scheduler does: Ctrl-C (SIGINT to the whole
process group) and `kill` (SIGTERM to the command alone) during an export by worker processes leave no
file, no partial file and no worker behind, with one line on stderr and the shell's exit codes (130, 143);
a decode stopped by SIGTERM keeps its finished units and the next run resumes to the same cache."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

import neuroscope
from neuroscope.cache.store import Store
from neuroscope.errors import NeuroscopeError

from .models import build_slow_llama

pytestmark = pytest.mark.slow
NEURONS = 24_000  # 2 layers x 3 views x 2 directions x 24,000 = 288,000 rows: the CLI uses its pool


@pytest.fixture(scope="module")
def wide_model(tmp_path_factory):
    root = tmp_path_factory.mktemp("signals")
    folder = build_slow_llama(root / "wide-llama", layers=2, neurons=NEURONS, vocab_size=512)
    model = neuroscope.open(str(folder), cache_dir=root / "cache", device="cpu", dtype="float32", progress=False)
    model.decode()
    return folder, model


POOL = 2  # the CPUs the stopped export's command is told it has, whatever the machine's: its pool size


def start(args: list[str], cpus: int | None = None) -> subprocess.Popen:
    """``neuroscope ARGS`` in a session of its own; with ``cpus``, its os.cpu_count() says that many (the export
    sizes its pool by it, and with one CPU makes none)."""
    command = (
        [sys.executable, "-m", "neuroscope"]
        if cpus is None
        else [
            sys.executable,
            "-c",
            f"import os, sys; os.cpu_count = lambda: {cpus}; sys.argv[0] = 'neuroscope'; "
            "from neuroscope.cli import main; sys.exit(main())",
        ]
    )
    return subprocess.Popen(
        [*command, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
    )


def workers(pid: int) -> set[int]:
    """The live export workers of ``pid``: its children running multiprocessing's spawn_main (so not its
    resource tracker), read from /proc as ps does."""
    found = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                cmdline = (entry / "cmdline").read_bytes()
            except (OSError, IndexError):
                continue
            if int(stat[1]) == pid and b"spawn_main" in cmdline:
                found.add(int(entry.name))
    return found


def gone(pid: int) -> bool:
    """Exited: no /proc entry, or a zombie waiting for a reaper."""
    try:
        return (Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]) == "Z"
    except OSError:
        return True


def wait_for(predicate, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def units_done(cache: Path) -> int:
    """Finished units of the one cache in ``cache`` (0 while it is not there or is being created)."""
    files = list(cache.glob("*.sqlite"))
    if not files:
        return 0
    try:
        with Store(files[0], readonly=True) as store:
            return len(store.done_units()) if store.ready else 0
    except (sqlite3.Error, NeuroscopeError):  # created this instant, not yet whole: poll again
        return 0


@pytest.mark.parametrize("sig, to_group, code", [(signal.SIGINT, True, 130), (signal.SIGTERM, False, 143)])
def test_export_stopped_leaves_nothing(wide_model, tmp_path, sig, to_group, code):
    folder, model = wide_model
    out = tmp_path / "out"
    out.mkdir()
    target = out / "all.jsonl"
    proc = start(
        ["export", str(folder), "--format", "jsonl", "--out", str(target), "--cache-dir", str(model.path.parent)],
        cpus=POOL,
    )
    wait_for(lambda: any(out.glob(".all.jsonl.*.partial")) or proc.poll() is not None)
    wait_for(lambda: len(workers(proc.pid)) == POOL or proc.poll() is not None)
    spawned = workers(proc.pid)  # every worker spawned; none can have imported and
    assert proc.poll() is None and len(spawned) == POOL  # rendered 288,000 rows yet
    time.sleep(0.1)
    os.killpg(proc.pid, sig) if to_group else proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == code, err
    assert err.strip().splitlines() == [
        "neuroscope: interrupted; no file was written (any decode it started keeps its finished layers)"
    ]
    assert list(out.iterdir()) == []  # neither the file nor a partial one
    wait_for(lambda: all(gone(w) for w in spawned), timeout=10)  # no worker left


def test_export_not_stopped_writes_every_row(wide_model, tmp_path):
    """The same command left alone: every row, so the test above stops a run that had work left."""
    folder, model = wide_model
    target = tmp_path / "all.jsonl"
    proc = start(
        ["export", str(folder), "--format", "jsonl", "--out", str(target), "--cache-dir", str(model.path.parent)],
        cpus=POOL,
    )
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    with open(target, "rb") as handle:
        assert sum(1 for _ in handle) == 2 * 3 * 2 * NEURONS
    assert sorted(p.name for p in tmp_path.iterdir()) == ["all.jsonl"]


def test_decode_stopped_by_sigterm_resumes_to_the_same_cache(wide_model, tmp_path):
    folder, model = wide_model
    cache = tmp_path / "cache"
    args = ["decode", str(folder), "--dtype", "float32", "--device", "cpu", "--cache-dir", str(cache)]
    proc = start(args)

    wait_for(lambda: units_done(cache) >= 1 or proc.poll() is not None, timeout=120)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, err
    assert "interrupted; every finished layer is saved" in err and "Traceback" not in err
    done = units_done(cache)
    assert 1 <= done < 2 * 3  # stopped part-way, finished units kept
    again = subprocess.run([sys.executable, "-m", "neuroscope", *args], capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr
    with Store(next(cache.glob("wide-llama-*.sqlite")), readonly=True) as got, Store(model.path, readonly=True) as want:
        assert got.done_units() == want.done_units()
        for layer in range(2):
            for view in ("up", "gate", "down"):
                for direction in ("pos", "neg"):
                    a, b = got.tops(layer, view, direction), want.tops(layer, view, direction)
                    assert (a[0] == b[0]).all() and (a[1] == b[1]).all()


def test_the_cli_puts_the_sigterm_handler_back(tmp_path):
    """cli.main in a program (a notebook, a test) leaves SIGTERM as it found it, and runs in a thread too
    (where no handler can be set)."""
    from neuroscope.cli import main

    def mine(_signum, _frame):
        pass

    before = signal.signal(signal.SIGTERM, mine)
    try:
        assert main(["models", "--cache-dir", str(tmp_path)]) == 0
        assert signal.getsignal(signal.SIGTERM) is mine
        codes = []
        thread = threading.Thread(target=lambda: codes.append(main(["models", "--cache-dir", str(tmp_path)])))
        thread.start()
        thread.join(60)
        assert codes == [0] and signal.getsignal(signal.SIGTERM) is mine
    finally:
        signal.signal(signal.SIGTERM, before)


def test_sigterm_to_rank_0_of_a_multi_device_decode_stops_every_rank(tmp_path):
    """`kill` reaches rank 0 alone (not the process group, as Ctrl-C would): it stops the other ranks
    instead of waiting for them in the next gather, and keeps its finished units."""
    folder = build_slow_llama(tmp_path / "slow-llama")
    cache = tmp_path / "cache"
    proc = start(["decode", str(folder), "--devices", "cpu,cpu", "--dtype", "float32", "--cache-dir", str(cache)])

    wait_for(lambda: units_done(cache) >= 2 or proc.poll() is not None, timeout=180)
    ranks = workers(proc.pid)
    assert proc.poll() is None and len(ranks) == 1
    started = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, err
    assert time.monotonic() - started < 20 and "Traceback" not in err  # not a 60 s wait per rank
    wait_for(lambda: all(gone(r) for r in ranks), timeout=10)
    assert 2 <= units_done(cache) < 12
