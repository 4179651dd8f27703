"""The decode lock and cache lookup, on real files: one holder at a time even while holders remove the lock
file, a cache found by its key whatever name it was made under, and only stale caches removed."""

from __future__ import annotations

import os
import threading
import time

from neuroscope.cache.catalog import cache_key, cache_path, decode_lock, remove_stale
from neuroscope.cache.store import Store


def test_one_holder_at_a_time_while_holders_discard_the_lock_file(tmp_path):
    """Eight threads (each with its own open file, so flock treats them as separate holders) take the lock
    over and over; some remove the lock file before letting go, as a holder that removed its cache does.
    A waiter that then gets the old, unlinked file must notice and start over: never two holders at once,
    and the file always there while someone holds it."""
    path = tmp_path / "m-0123456789abcdef.sqlite"
    inside, most, errors = [0], [0], []
    guard = threading.Lock()

    def worker(seed: int) -> None:
        for i in range(40):
            with decode_lock(path) as lock:
                with guard:
                    inside[0] += 1
                    most[0] = max(most[0], inside[0])
                if not os.path.exists(lock.path):
                    errors.append("held, but the lock file is gone")
                time.sleep(0.0005)
                with guard:
                    inside[0] -= 1
                if (i + seed) % 3 == 0:
                    lock.discard()

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert most[0] == 1 and not errors, (most[0], errors[:3])


def make_cache(path, source: str, fingerprint: str) -> None:
    with Store(path) as store:
        store.initialize(
            dict(
                name=path.name,
                source=source,
                fingerprint=fingerprint,
                layers=1,
                neurons_per_layer=1,
                top_k=1,
                views=["up"],
            ),
            ["a", "b"],
        )


def test_found_by_key_and_only_stale_caches_removed(tmp_path):
    key = cache_key("/models/m", "fp1")
    made_as = tmp_path / f"demo-{key}.sqlite"  # made under one display name
    make_cache(made_as, "/models/m", "fp1")
    assert cache_path("m", "/models/m", "fp1", tmp_path) == made_as  # reached under another
    stale = tmp_path / f"m-{cache_key('/models/m', 'fp0')}.sqlite"  # same model, older files
    other = tmp_path / f"x-{cache_key('/models/x', 'fp0')}.sqlite"  # another model
    twin = tmp_path / f"m-{key}.sqlite"  # same key under another name: not stale
    for path, source, fp in ((stale, "/models/m", "fp0"), (other, "/models/x", "fp0"), (twin, "/models/m", "fp1")):
        make_cache(path, source, fp)
    notes = []
    remove_stale("/models/m", made_as, tmp_path, notes.append)
    assert sorted(p.name for p in tmp_path.glob("*.sqlite")) == sorted([made_as.name, other.name, twin.name])
    assert len(notes) == 1 and stale.name in notes[0]
    assert not list(tmp_path.glob(f"{stale.name}*")), "its side files and lock go with it"


def test_a_stale_cache_in_use_is_left_alone(tmp_path):
    stale = tmp_path / f"m-{cache_key('/models/m', 'fp0')}.sqlite"
    make_cache(stale, "/models/m", "fp0")
    keep = tmp_path / f"m-{cache_key('/models/m', 'fp1')}.sqlite"
    with decode_lock(stale):  # another process is decoding the old weights
        remove_stale("/models/m", keep, tmp_path)
    assert stale.exists()
