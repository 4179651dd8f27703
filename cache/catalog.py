"""Which cache file belongs to which model, listing, stale-file clean-up and the decode lock."""
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

from .paths import cache_dir
from .store import RECIPE_VERSION, CacheError, Store

SUFFIX = ".sqlite"


def cache_key(source: str, fingerprint: str) -> str:
    """Model identity plus decode recipe: weights rebuilt at the same path get a new key."""
    raw = f"{source}\0{fingerprint}\0recipe={RECIPE_VERSION}".encode()
    return hashlib.sha256(raw).hexdigest()[:16]


def slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-")[:60] or "model"


def cache_path(name: str, source: str, fingerprint: str, directory: str | os.PathLike | None = None) -> Path:
    return cache_dir(directory) / f"{slug(name)}-{cache_key(source, fingerprint)}{SUFFIX}"


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
        except (CacheError, sqlite3.Error, KeyError):
            status = None
        found.append((path, status))
    found.sort(key=lambda item: -(item[1] or {}).get("last_used", 0))
    return found


def most_recent(directory: str | os.PathLike | None = None) -> str | None:
    """The MODEL argument of the most recently used cached model ("demo" for the demo), or None."""
    for _, status in list_caches(directory):
        if status is not None:
            return "demo" if status["model"] == "demo" else status["source"]
    return None


def mark_used(name: str, source: str, fingerprint: str, directory: str | os.PathLike | None = None) -> None:
    """Record that a cached model was opened, so the app can reopen the most recently used one."""
    path = cache_path(name, source, fingerprint, directory)
    if path.exists():
        try:
            with Store(path) as store:
                store.touch()
        except (CacheError, sqlite3.Error):
            pass  # an unreadable cache is reported where it is read


def remove_stale(source: str, keep: Path, directory: str | os.PathLike | None = None,
                 note: Callable[[str], None] | None = None) -> None:
    """Delete caches of the same source whose fingerprint no longer matches the weights."""
    for path, status in list_caches(directory):
        if path != keep and status is not None and status.get("source") == source:
            remove_cache(path)
            if note:
                note(f"removed stale cache {path.name} (the model's files changed)")


def remove_cache(path: Path) -> None:
    for suffix in ("", "-wal", "-shm", ".lock"):
        try:
            os.unlink(f"{path}{suffix}")
        except FileNotFoundError:
            pass


@contextmanager
def decode_lock(path: Path, note: Callable[[str], None] | None = None) -> Iterator[None]:
    """One decoding process per cache file; a second one waits (and says so) rather than interleave."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(f"{path}.lock", "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno not in (errno.EAGAIN, errno.EACCES):
                raise
            if note:
                note("another neuroscope process is decoding this model; waiting for it to finish…")
            fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
