"""One SQLite file per decoded model: meta, vocabulary, packed top-k records, an inverted token index.

Layout (all written through sqlite-utils, WAL mode):
- ``meta(key, value)``: model identity and shape (JSON values); ``ready`` is written in the same
  transaction as the vocabulary, so a cache is usable only when both are there.
- ``vocab(id, text, norm)``: every token id's text; ``norm`` (lower-cased, leading space markers
  stripped) is indexed for word and prefix search.
- ``decoded(id, layer, view, direction, ids, probs)``: one row per (layer, view, direction); ``ids``
  is an int32 array [neurons, top_k] and ``probs`` a float32 array of the same shape. A single
  neuron is read with incremental blob I/O, so ``show`` never loads a whole layer.
- ``units(layer, view, decoded_with, at)``: one row per decoded (layer, view), written once.
- ``postings`` and ``token_stats``: the inverted token index (cache.postings).

A (layer, view) unit, both directions plus its postings, is written in one transaction, so a
decode that is interrupted (Ctrl-C, kill -9, power loss) keeps every finished unit and never leaves a
partial one. SQLite errors reach callers as typed errors: CorruptCache only when SQLite itself says the
file is not a database or is malformed, CacheBusy when another process held it locked too long.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from pathlib import Path

from . import labels as label_tables
from .sqlerrors import BUSY_TIMEOUT_S

RECIPE_VERSION = 2  # 2: token_stats (best prob per token) for early-stopping search


@dataclass(frozen=True)
class TopToken:
    rank: int
    token_id: int
    token: str
    prob: float


def connect(path: Path, readonly: bool, handoff: bool) -> sqlite3.Connection:
    if readonly:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=BUSY_TIMEOUT_S, check_same_thread=not handoff)
    else:
        conn = sqlite3.connect(str(path), timeout=BUSY_TIMEOUT_S, check_same_thread=not handoff)
    conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_S * 1000}")
    return conn


SCHEMA = (
    "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT)",
    "CREATE TABLE IF NOT EXISTS vocab (id INTEGER PRIMARY KEY, text TEXT NOT NULL, norm TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS decoded (id INTEGER PRIMARY KEY, layer INTEGER NOT NULL, view TEXT NOT NULL, "
    "direction TEXT NOT NULL, ids BLOB NOT NULL, probs BLOB NOT NULL, UNIQUE(layer, view, direction))",
    "CREATE TABLE IF NOT EXISTS units (layer INTEGER NOT NULL, view TEXT NOT NULL, decoded_with TEXT NOT NULL, "
    "at REAL NOT NULL, PRIMARY KEY (layer, view))",
    "CREATE TABLE IF NOT EXISTS token_stats (token_id INTEGER PRIMARY KEY, best REAL NOT NULL)",
    "CREATE TABLE IF NOT EXISTS postings (token_id INTEGER NOT NULL, layer INTEGER NOT NULL, view TEXT NOT NULL, "
    "entries BLOB NOT NULL, PRIMARY KEY (token_id, layer, view)) WITHOUT ROWID",
    *label_tables.SCHEMA,
)
