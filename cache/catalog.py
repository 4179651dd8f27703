"""Which cache file belongs to which model, listing, stale-file clean-up and the decode lock.

A model's cache is found by its key alone (the model's real path or hub id, a cheap fingerprint of its
files and the decode recipe): ``demo`` and the demo's GGUF path, a folder and a symlink to it, all reach
the one file, whatever display name made it (the name lives in meta). Files are removed in two cases
only, each announced: a cache of the same model whose key is stale (its files changed, or an older
recipe), and one that SQLite itself reports as corrupt. Nothing is removed on any other error.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import os
import re
import sqlite3
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

from ..errors import CacheError
from .paths import cache_dir
from .schema import RECIPE_VERSION
from .store import Store

SUFFIX = ".sqlite"
SIDE_FILES = ("-wal", "-shm", "-journal")
Note = Callable[[str], None]


def cache_key(source: str, fingerprint: str) -> str:
    """Model identity plus decode recipe: weights rebuilt at the same path get a new key."""
    raw = f"{source}\0{fingerprint}\0recipe={RECIPE_VERSION}".encode()
    return hashlib.sha256(raw).hexdigest()[:16]


def slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-")[:60] or "model"


def cache_path(name: str, source: str, fingerprint: str, directory: str | os.PathLike | None = None) -> Path:
    """The model's cache file: the existing one with its key, whatever name it was made under, else a
    new one named after ``name``."""
    root = cache_dir(directory)
    key = cache_key(source, fingerprint)
    fresh = root / f"{slug(name)}-{key}{SUFFIX}"
    if fresh.exists() or not root.is_dir():
        return fresh
    found = sorted(root.glob(f"*-{key}{SUFFIX}"))
    return found[0] if found else fresh


def list_caches(directory: str | os.PathLike | None = None) -> list[tuple[Path, dict | None]]:
    """Every cache file with its status dict (None for an unreadable file), most recently used first."""
    root = cache_dir(directory)
    if not root.is_dir():
        return []
    found = []
    for path in sorted(root.glob(f"*{SUFFIX}")):
        try:
            with Store(path, readonly=True) as store:
                status = store.status()
                status["last_used"] = store.meta.get("last_used", 0)
                status["fingerprint"] = store.meta.get("fingerprint")
                status["ready"] = store.ready
        except (CacheError, sqlite3.Error, KeyError, TypeError, ValueError):
            status = None
        found.append((path, status))
    found.sort(key=lambda item: -((item[1] or {}).get("last_used") or 0))
    return found


def most_recent(directory: str | os.PathLike | None = None) -> str | None:
    """The MODEL argument of the most recently used cached model ("demo" for the demo), or None."""
    for _, status in list_caches(directory):
        if status is not None and status.get("ready"):
            return "demo" if status["model"] == "demo" else status["source"]
    return None


def mark_used(name: str, source: str, fingerprint: str, directory: str | os.PathLike | None = None) -> None:
    """Record that a cached model was opened, so the app can reopen the most recently used one."""
    path = cache_path(name, source, fingerprint, directory)
    if not path.exists():
        return
    try:
        with Store(path) as store:
            if store.ready:
                store.touch()
    except CacheError:
        pass  # an unreadable or busy cache is reported where it is read


def remove_files(path: Path, lock: bool = False) -> None:
    """Delete a cache file and its SQLite side files (and its lock file with ``lock``). Call it only while
    holding the cache's lock: a lock file is never unlinked while someone else may hold it."""
    for suffix in ("", *SIDE_FILES, *((".lock",) if lock else ())):
        try:
            os.unlink(f"{path}{suffix}")
        except FileNotFoundError:
            pass


def remove_stale(source: str, keep: Path, directory: str | os.PathLike | None = None, note: Note | None = None) -> None:
    """Delete caches of the same model whose key is stale (its files changed, or an older recipe), each
    under its own lock; one that another process is using right now is left alone."""
    same_key = keep.name.rsplit("-", 1)[-1]
    for path, status in list_caches(directory):
        if path.name.endswith(f"-{same_key}") or status is None or status.get("source") != source:
            continue
        with try_lock(path) as held:
            if not held:
                continue
            remove_files(path, lock=True)
        if note:
            note(f"removed stale cache {path.name} (the model's files or the decode recipe changed)")


class Lock:
    """A held decode lock. ``discard`` unlinks the lock file while it is still held (the last step of
    removing a cache nobody will use)."""

    def __init__(self, path: Path, handle):
        self.path, self.handle = path, handle

    def discard(self) -> None:
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass


def _open_locked(lock_path: Path, blocking: bool, note: Note | None):
    """Open and flock the lock file; retry when it was unlinked (and maybe recreated) between the open and
    the flock, so two processes can never hold locks on two different files of one name."""
    while True:
        handle = open(lock_path, "a+")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno not in (errno.EAGAIN, errno.EACCES):
                handle.close()
                raise
            if not blocking:
                handle.close()
                return None
            if note:
                note("another neuroscope process is decoding this model; waiting for it to finish…")
                note = None
            fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            same = os.fstat(handle.fileno()).st_ino == os.stat(lock_path).st_ino
        except FileNotFoundError:
            same = False
        if same:
            return handle
        handle.close()  # we locked an unlinked file: its holder removed the cache; start over


@contextmanager
def decode_lock(path: Path, note: Note | None = None) -> Iterator[Lock]:
    """One decoding process per cache file; a second one waits (and says so) rather than interleave."""
    path.parent.mkdir(parents=True, exist_ok=True)
    lock_path = Path(f"{path}.lock")
    handle = _open_locked(lock_path, True, note)
    try:
        yield Lock(lock_path, handle)
    finally:
        fcntl.flock(handle, fcntl.LOCK_UN)
        handle.close()


@contextmanager
def try_lock(path: Path) -> Iterator[bool]:
    """The decode lock if it is free right now (True), else False at once. Creates no lock file for a
    cache that has none."""
    lock_path = Path(f"{path}.lock")
    if not path.exists():
        yield False
        return
    handle = _open_locked(lock_path, False, None)
    try:
        yield handle is not None
    finally:
        if handle is not None:
            fcntl.flock(handle, fcntl.LOCK_UN)
            handle.close()
