"""A decode killed with SIGKILL at any moment loses nothing and resumes to the same cache; two decoders and
a reader on one model never corrupt it, decode each unit once, and never remove the lock while it is held."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from neuroscope.cache.store import Store

from ..models import build_slow_llama

pytestmark = pytest.mark.slow
UNITS = 4 * 3

# A child that runs the real command with one pause written here: after the signal file appears, the
# process sleeps inside an open transaction, so the parent's SIGKILL lands exactly there.
CHILD = textwrap.dedent("""
    import os, sys, time
    from neuroscope.cache import store
    where, signal_file = os.environ["PAUSE_AT"], os.environ["PAUSE_SIGNAL"]

    def pause():
        open(signal_file, "w").close()
        time.sleep(120)

    if where == "meta":          # meta rows inserted, the vocabulary about to be: nothing may be committed
        normalize, first = store.normalize, []
        def pausing(text):       # first called by Store.initialize, on the vocabulary's first row
            if not first:
                first.append(1)
                pause()
            return normalize(text)
        store.normalize = pausing
    elif where == "unit":        # the third unit's decoded rows inserted, its postings not yet
        build, seen = store.postings.build_postings, []
        class Pausing(list):
            def __iter__(self):
                if len(seen) == 3 and not getattr(self, "paused", False):
                    self.paused = True
                    pause()
                return super().__iter__()
        def build_postings(units):
            seen.append(1)
            return Pausing(build(units))
        store.postings.build_postings = build_postings
    from neuroscope.cli import main
    sys.exit(main(sys.argv[1:]))
""")


@pytest.fixture(scope="module")
def slow_model(tmp_path_factory):
    root = tmp_path_factory.mktemp("slow")
    folder = build_slow_llama(root / "slow-llama")
    # the uninterrupted decode, run exactly as the interrupted ones are (a fresh process: the test process's
    # own state after earlier tests can change float32 matmul rounding in the last bits)
    out = subprocess.run(decode_cmd(folder, root / "reference"), capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    [reference] = (root / "reference").glob("*.sqlite")
    return folder, reference


def units_done(cache: Path) -> int:
    """Committed units of the one cache in ``cache`` (0 while it is missing or being created)."""
    import sqlite3

    files = list(cache.glob("*.sqlite"))
    if not files:
        return 0
    try:
        conn = sqlite3.connect(f"file:{files[0]}?mode=ro", uri=True, timeout=1)
        try:
            return conn.execute("SELECT COUNT(*) FROM units").fetchone()[0]
        finally:
            conn.close()
    except sqlite3.Error:
        return 0


def decode_cmd(folder: Path, cache: Path) -> list[str]:
    return [
        sys.executable,
        "-m",
        "neuroscope",
        "decode",
        str(folder),
        "--cache-dir",
        str(cache),
        "--device",
        "cpu",
        "--dtype",
        "float32",
        "--json",
    ]


def assert_consistent(cache: Path, reference: Path, complete: bool = False) -> set:
    """Whatever the cache holds is whole and equal to the uninterrupted decode, unit for unit."""
    files = list(cache.glob("*.sqlite"))
    if not files:
        assert not complete
        return set()
    [path] = files
    with Store(path, readonly=True) as store, Store(reference, readonly=True) as ref, store.snapshot():
        assert store.integrity_ok()
        if not store.ready:
            assert not complete and not store.done_units()
            return set()
        assert store.meta["vocab"] == ref.meta["vocab"] and store.token_texts(range(50)) == ref.token_texts(range(50))
        done = store.done_units()
        assert {(layer, view) for layer, view, _ in store.unit_log()} == done
        for layer, view in done:
            for direction in ("pos", "neg"):
                for a, b in zip(store.tops(layer, view, direction), ref.tops(layer, view, direction)):
                    np.testing.assert_array_equal(a, b)
        for token in ("dog", "t5", "t123"):
            assert store.search(token, max_rank=10, limit=None) == [
                h for h in ref.search(token, max_rank=10, limit=None) if (h.layer, h.view) in done
            ]
        if complete:
            assert done == ref.done_units() and len(done) == UNITS
        return done


def test_sigkill_at_random_moments_resumes_to_the_same_cache(slow_model, tmp_path):
    folder, reference = slow_model
    rng = random.Random(7)
    kills, resumed = 0, 0
    for sequence in range(4):
        cache = tmp_path / f"cache{sequence}"
        for attempt in range(3):
            proc = subprocess.Popen(decode_cmd(folder, cache), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            deadline = time.monotonic() + 120
            while not list(cache.glob("*.sqlite")) and proc.poll() is None and time.monotonic() < deadline:
                time.sleep(0.01)
            if attempt == 0:  # once per sequence among the units, whatever the load
                while units_done(cache) == 0 and proc.poll() is None and time.monotonic() < deadline:
                    time.sleep(0.01)
                time.sleep(rng.uniform(0, 0.2))
            else:
                time.sleep(rng.uniform(0, 1.5))  # somewhere in initialisation or the units
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
                kills += 1
            proc.communicate()
            assert_consistent(cache, reference)
        before = assert_consistent(cache, reference)
        out = subprocess.run(decode_cmd(folder, cache), capture_output=True, text=True, timeout=300)
        assert out.returncode == 0, out.stderr
        if before and len(before) < UNITS:
            resumed += 1
            assert f"resuming: {len(before)} layer-views already cached" in out.stderr
        assert assert_consistent(cache, reference, complete=True)
    assert kills >= 10 and resumed >= 1


@pytest.mark.parametrize("where", ["meta", "unit"])
def test_sigkill_inside_a_transaction(slow_model, tmp_path, where):
    """Killed between meta and vocabulary (one transaction), or half-way through a unit's rows."""
    folder, reference = slow_model
    cache, signal_file = tmp_path / "cache", tmp_path / "paused"
    env = {**os.environ, "PAUSE_AT": where, "PAUSE_SIGNAL": str(signal_file)}
    proc = subprocess.Popen(
        [sys.executable, "-c", CHILD, *decode_cmd(folder, cache)[3:]],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 120
    while not signal_file.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    assert signal_file.exists(), proc.communicate()
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    done = assert_consistent(cache, reference)
    assert done == (set() if where == "meta" else {(0, "up"), (0, "gate")})
    out = subprocess.run(decode_cmd(folder, cache), capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    if where == "meta":
        assert "it was never finished" in out.stderr  # the unfinished file is started again, and said so
    assert_consistent(cache, reference, complete=True)


def read_while_decoding(cache: Path, reference: Path, stop: threading.Event, seen: set, errors: list) -> None:
    """The reader: the cache stays consistent at every look, and the lock file keeps one inode."""
    while not stop.is_set():
        try:
            assert_consistent(cache, reference)
            for lock in cache.glob("*.lock"):
                seen.add(os.stat(lock).st_ino)
        except FileNotFoundError:
            pass
        except Exception as exc:
            errors.append(repr(exc))
        time.sleep(0.02)


def test_two_decoders_and_a_reader(slow_model, tmp_path):
    folder, reference = slow_model
    for round_ in range(3):
        cache = tmp_path / f"round{round_}"
        stop, seen, errors = threading.Event(), set(), []
        reader = threading.Thread(target=read_while_decoding, args=(cache, reference, stop, seen, errors))
        reader.start()
        procs = [
            subprocess.Popen(decode_cmd(folder, cache), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for _ in range(2)
        ]
        outs = [p.communicate(timeout=300) for p in procs]
        stop.set()
        reader.join()
        assert [p.returncode for p in procs] == [0, 0], outs
        assert not errors, errors[:3]
        import json

        decoded = [json.loads(out)["units_decoded"] for out, _ in outs]
        assert sorted(decoded) == [0, UNITS], decoded  # one decoded every unit, the other waited
        assert any("waiting for it to finish" in err for _, err in outs)
        assert len(seen) == 1, "the lock file was removed and made again while the decode ran"
        assert assert_consistent(cache, reference, complete=True)
        [path] = cache.glob("*.sqlite")
        with Store(path, readonly=True) as store:
            assert len(store.unit_log()) == UNITS  # each unit written exactly once
