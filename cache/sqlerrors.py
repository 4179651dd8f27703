"""SQLite errors on a cache file as the typed errors a user can act on (anything else stays a bug)."""

from __future__ import annotations

import functools
import sqlite3
from pathlib import Path

from ..errors import CacheBusy, CacheError, CorruptCache

BUSY_TIMEOUT_S = 30
_CORRUPT = {11, 26}  # SQLITE_CORRUPT, SQLITE_NOTADB
_BUSY = {5, 6}  # SQLITE_BUSY, SQLITE_LOCKED
_ENVIRONMENT = {
    8: "is read-only",
    10: "could not be read or written (I/O error)",
    13: "is on a full disk",
    14: "could not be opened",
}  # SQLITE_READONLY, SQLITE_IOERR, SQLITE_FULL, SQLITE_CANTOPEN


def translate(exc: sqlite3.Error, path: Path | None = None) -> CacheError | None:
    """The typed error for an SQLite error on a cache file, or None for one that means a bug."""
    code = (getattr(exc, "sqlite_errorcode", None) or 0) & 0xFF
    where = f"cache file {path}" if path else "a cache file"
    if code in _CORRUPT:
        return CorruptCache(
            f"{where} is unreadable, SQLite says it is corrupt ({exc}); run `neuroscope decode MODEL --rebuild`"
        )
    if code in _BUSY:
        return CacheBusy(f"{where} stayed locked by another process for {BUSY_TIMEOUT_S} s; try again")
    if code in _ENVIRONMENT:
        return CacheError(f"{where} {_ENVIRONMENT[code]} ({exc})")
    return None


def guarded(method):
    """Turn the SQLite errors a user can act on into typed cache errors; others stay (they are bugs)."""

    @functools.wraps(method)
    def run(self, *args, **kwargs):
        try:
            return method(self, *args, **kwargs)
        except sqlite3.Error as exc:
            typed = translate(exc, self.path)
            if typed is None:
                raise
            raise typed from None

    return run
