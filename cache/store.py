"""One SQLite file per decoded model: meta, vocabulary, packed top-k records, an inverted token index.

Layout (all written through sqlite-utils, WAL mode):
- ``meta(key, value)``: model identity and shape (JSON values).
- ``vocab(id, text, norm)``: every token id's text; ``norm`` (lower-cased, leading space markers
  stripped) is indexed for word and prefix search.
- ``decoded(id, layer, view, direction, ids, probs)``: one row per (layer, view, direction); ``ids``
  is an int32 array [neurons, top_k] and ``probs`` a float32 array of the same shape. A single
  neuron is read with incremental blob I/O, so ``show`` never loads a whole layer.
- ``postings(token_id, layer, view, entries)``: for each token, the neurons of one layer and view
  whose top-k hold it. ``entries`` packs uint32 codes (neuron * 2 + direction), uint8 ranks
  (0-based) and float32 probabilities.

A (layer, view) unit, both directions plus its postings, is written in one transaction, so a
decode that is interrupted keeps every finished unit and never leaves a partial one.
"""
from __future__ import annotations

import json
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

RECIPE_VERSION = 2  # 2: token_stats (best prob per token) for early-stopping search
DIRECTIONS = ("pos", "neg")
ALL_VIEWS = ("up", "gate", "down")
MATCH_MODES = ("word", "exact", "prefix", "contains")
SPACE_MARKERS = " \t\n\r\u0120\u2581\u010a"  # whitespace, GPT-2 'Ġ', SentencePiece '▁', GPT-2 'Ċ'


class CacheError(Exception):
    """A cache file that cannot be used; the message says what to do."""


def normalize(text: str) -> str:
    """The form `word` matching compares: leading whitespace/space markers stripped, case folded."""
    return text.lstrip(SPACE_MARKERS).casefold()


@dataclass(frozen=True)
class TopToken:
    rank: int
    token_id: int
    token: str
    prob: float


@dataclass(frozen=True)
class Hit:
    layer: int
    neuron: int
    view: str
    direction: str
    rank: int
    token_id: int
    token: str
    prob: float

    def as_dict(self) -> dict:
        return {
            "layer": self.layer, "neuron": self.neuron, "view": self.view,
            "direction": self.direction, "rank": self.rank + 1, "token_id": self.token_id,
            "token": self.token, "prob": self.prob,
        }


_POSTING_DTYPES = (np.uint32, np.uint8, np.float32)


def pack_postings(codes: np.ndarray, ranks: np.ndarray, probs: np.ndarray) -> bytes:
    return codes.astype(np.uint32).tobytes() + ranks.astype(np.uint8).tobytes() + probs.astype(np.float32).tobytes()


def unpack_postings(blob: bytes) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    n = len(blob) // 9
    codes = np.frombuffer(blob, np.uint32, n, 0)
    ranks = np.frombuffer(blob, np.uint8, n, 4 * n)
    probs = np.frombuffer(blob, np.float32, n, 5 * n)
    return codes, ranks, probs


def unpack_many(toks: np.ndarray, layers: np.ndarray, views: np.ndarray, blobs) -> tuple[np.ndarray, ...]:
    """Unpack many posting blobs at once: per-entry token, layer, view, code, rank, prob arrays."""
    counts = np.fromiter((len(b) // 9 for b in blobs), np.int64, len(blobs))
    buf = np.frombuffer(b"".join(blobs), np.uint8)
    base = np.repeat(np.concatenate(([0], np.cumsum(counts * 9)[:-1])), counts)   # blob start per entry
    n = np.repeat(counts, counts)                                                  # entries in its blob
    j = np.arange(len(base)) - np.repeat(np.concatenate(([0], np.cumsum(counts)[:-1])), counts)
    four = np.arange(4)
    codes = buf[(base + 4 * j)[:, None] + four].copy().view(np.uint32).ravel()
    ranks = buf[base + 4 * n + j]
    probs = buf[(base + 5 * n + 4 * j)[:, None] + four].copy().view(np.float32).ravel()
    return (np.repeat(toks, counts), np.repeat(layers, counts), np.repeat(views, counts), codes, ranks, probs)


def _connect(path: Path, readonly: bool, handoff: bool) -> sqlite3.Connection:
    if readonly:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30, check_same_thread=not handoff)
    else:
        conn = sqlite3.connect(str(path), timeout=30, check_same_thread=not handoff)
    conn.execute("PRAGMA busy_timeout = 30000")
    return conn


class Store:
    """A decoded model's cache file. One Store (one connection) per thread; ``handoff=True`` lets one
    thread at a time use it from another thread (the decoder's writer thread)."""

    def __init__(self, path: str | Path, readonly: bool = False, handoff: bool = False):
        self.path = Path(path)
        self._db = None
        if readonly and not self.path.exists():
            raise CacheError(f"no cache file at {self.path}")
        try:
            self.conn = _connect(self.path, readonly, handoff)
            if not readonly:
                self.db.enable_wal()
                self._create_schema()
            self._meta = self._read_meta()
        except sqlite3.DatabaseError as exc:
            raise CacheError(
                f"cache file {self.path} is unreadable ({exc}); delete it or run "
                f"`neuroscope decode MODEL --rebuild`"
            ) from None
        self._vocab_cache: dict[int, str] = {}

    @property
    def db(self):
        """sqlite-utils over the same connection, for writes (imported lazily: reads need only sqlite3)."""
        if self._db is None:
            import sqlite_utils

            self._db = sqlite_utils.Database(self.conn)
        return self._db

    # -- schema and meta ---------------------------------------------------------------
    def _create_schema(self) -> None:
        with self.db.atomic():
            self.db.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT)")
            self.db.execute(
                "CREATE TABLE IF NOT EXISTS vocab (id INTEGER PRIMARY KEY, text TEXT NOT NULL, norm TEXT NOT NULL)"
            )
            self.db.execute(
                "CREATE TABLE IF NOT EXISTS decoded (id INTEGER PRIMARY KEY, layer INTEGER NOT NULL, "
                "view TEXT NOT NULL, direction TEXT NOT NULL, ids BLOB NOT NULL, probs BLOB NOT NULL, "
                "UNIQUE(layer, view, direction))"
            )
            self.db.execute(
                "CREATE TABLE IF NOT EXISTS token_stats (token_id INTEGER PRIMARY KEY, best REAL NOT NULL)"
            )
            self.db.execute(
                "CREATE TABLE IF NOT EXISTS postings (token_id INTEGER NOT NULL, layer INTEGER NOT NULL, "
                "view TEXT NOT NULL, entries BLOB NOT NULL, PRIMARY KEY (token_id, layer, view)) WITHOUT ROWID"
            )

    def _read_meta(self) -> dict:
        rows = self.conn.execute("SELECT key, value FROM meta").fetchall()
        return {k: json.loads(v) for k, v in rows}

    @property
    def meta(self) -> dict:
        return dict(self._meta)

    def set_meta(self, **values) -> None:
        with self.db.atomic():
            self.conn.executemany(
                "INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)",
                [(k, json.dumps(v)) for k, v in values.items()],
            )
        self._meta.update(values)

    def touch(self) -> None:
        """Record use, so the app can open the most recently used model."""
        self.set_meta(last_used=time.time())

    def write_vocab(self, texts: Sequence[str]) -> None:
        with self.db.atomic():
            self.conn.execute("DELETE FROM vocab")
            self.conn.executemany(
                "INSERT INTO vocab (id, text, norm) VALUES (?, ?, ?)",
                ((i, t, normalize(t)) for i, t in enumerate(texts)),
            )
            self.conn.execute("CREATE INDEX IF NOT EXISTS vocab_norm ON vocab(norm)")
            self.conn.execute("CREATE INDEX IF NOT EXISTS vocab_text ON vocab(text)")

    # -- shape helpers -------------------------------------------------------------------
    @property
    def layers(self) -> int:
        return int(self._meta["layers"])

    @property
    def neurons(self) -> int:
        return int(self._meta["neurons_per_layer"])

    @property
    def top_k(self) -> int:
        return int(self._meta["top_k"])

    @property
    def views(self) -> list[str]:
        """The views the architecture has (not necessarily decoded yet)."""
        return list(self._meta["views"])

    # -- writing -------------------------------------------------------------------------
    def done_units(self) -> set[tuple[int, str]]:
        rows = self.conn.execute(
            "SELECT layer, view FROM decoded GROUP BY layer, view HAVING COUNT(*) = 2"
        ).fetchall()
        return {(int(layer), view) for layer, view in rows}

    def write_unit(self, layer: int, view: str, pos: tuple[np.ndarray, np.ndarray],
                   neg: tuple[np.ndarray, np.ndarray]) -> None:
        """Store one (layer, view): pos/neg = (token ids [n, k], probs [n, k]); atomically."""
        postings = _build_postings((pos, neg))
        with self.db.atomic():
            for direction, (ids, probs) in zip(DIRECTIONS, (pos, neg)):
                self.conn.execute(
                    "INSERT OR REPLACE INTO decoded (layer, view, direction, ids, probs) VALUES (?, ?, ?, ?, ?)",
                    (layer, view, direction, np.ascontiguousarray(ids, np.int32).tobytes(),
                     np.ascontiguousarray(probs, np.float32).tobytes()),
                )
            self.conn.execute("DELETE FROM postings WHERE layer = ? AND view = ?", (layer, view))
            self.conn.executemany(
                "INSERT INTO postings (token_id, layer, view, entries) VALUES (?, ?, ?, ?)",
                ((tok, layer, view, blob) for tok, blob, _ in postings),
            )
            self.conn.executemany(
                "INSERT INTO token_stats (token_id, best) VALUES (?, ?) "
                "ON CONFLICT(token_id) DO UPDATE SET best = max(best, excluded.best)",
                ((tok, best) for tok, _, best in postings),
            )

    # -- reading -------------------------------------------------------------------------
    def _rowid(self, layer: int, view: str, direction: str) -> int | None:
        row = self.conn.execute(
            "SELECT id FROM decoded WHERE layer = ? AND view = ? AND direction = ?", (layer, view, direction)
        ).fetchone()
        return None if row is None else int(row[0])

    def tops(self, layer: int, view: str, direction: str, start: int = 0,
             stop: int | None = None) -> tuple[np.ndarray, np.ndarray] | None:
        """Top-k ids and probs of neurons [start, stop) of one layer; None if not decoded."""
        rowid = self._rowid(layer, view, direction)
        if rowid is None:
            return None
        k = self.top_k
        stop = self.neurons if stop is None else min(stop, self.neurons)
        start = max(0, min(start, stop))
        n = stop - start
        out = []
        for column, dtype in (("ids", np.int32), ("probs", np.float32)):
            with self.conn.blobopen("decoded", column, rowid, readonly=True) as blob:
                blob.seek(start * k * 4)
                out.append(np.frombuffer(blob.read(n * k * 4), dtype).reshape(n, k))
        return out[0], out[1]

    def top(self, layer: int, neuron: int, view: str, direction: str) -> list[TopToken] | None:
        got = self.tops(layer, view, direction, neuron, neuron + 1)
        if got is None:
            return None
        ids, probs = got[0][0].tolist(), got[1][0].tolist()
        texts = self.token_texts(ids)
        return [TopToken(r, i, texts[i], p) for r, (i, p) in enumerate(zip(ids, probs))]

    def token_texts(self, ids: Iterable[int]) -> dict[int, str]:
        ids = {int(i) for i in ids}
        missing = [i for i in ids if i not in self._vocab_cache]
        for start in range(0, len(missing), 500):
            part = missing[start:start + 500]
            marks = ",".join("?" * len(part))
            for i, text in self.conn.execute(f"SELECT id, text FROM vocab WHERE id IN ({marks})", part):
                self._vocab_cache[int(i)] = text
        return {i: self._vocab_cache.get(i, f"<{i}>") for i in ids}

    def _match_clause(self, query: str, match: str) -> tuple[str, tuple]:
        if match == "exact":
            return "text = ?", (query,)
        if match == "word":
            return "norm = ?", (normalize(query),)
        if match == "prefix":
            q = normalize(query)
            return "norm >= ? AND norm < ?", (q, q + "\U0010ffff")
        if match == "contains":
            return "instr(norm, ?) > 0", (query.casefold(),)
        raise ValueError(f"unknown match mode {match!r}; choose from {', '.join(MATCH_MODES)}")

    def match_tokens(self, query: str, match: str = "word") -> list[int]:
        """Token ids whose text matches ``query`` under a match mode (see MATCH_MODES)."""
        clause, params = self._match_clause(query, match)
        return [int(r[0]) for r in self.conn.execute(f"SELECT id FROM vocab WHERE {clause}", params)]

    def search(self, query: str, match: str = "word", views: Sequence[str] | None = None,
               directions: Sequence[str] | None = None, max_rank: int = 1, limit: int | None = 50) -> list[Hit]:
        """Neurons whose top ``max_rank`` tokens include a token matching ``query``, by prob, highest first.

        Matching tokens are visited in order of their best probability anywhere (token_stats); once
        ``limit`` hits beat the next token's best, no later token can enter the result, so a query that
        matches thousands of tokens (a one-letter prefix) reads only the postings it needs."""
        clause, params = self._match_clause(query, match)
        tokens = self.conn.execute(
            f"SELECT v.id, s.best FROM vocab v JOIN token_stats s ON s.token_id = v.id WHERE {clause} "
            f"ORDER BY s.best DESC", params).fetchall()
        views = list(views or ALL_VIEWS)
        dir_codes = [DIRECTIONS.index(d) for d in (directions or DIRECTIONS)]
        parts: list[tuple[np.ndarray, ...]] = []
        found = 0
        start, batch = 0, 16
        while start < len(tokens):
            part = [t for t, _ in tokens[start:start + batch]]
            start += batch
            batch = min(batch * 2, 500)
            found += self._collect(part, views, dir_codes, max_rank, parts)
            if limit is not None and found >= limit:
                merged = [np.concatenate(c) for c in zip(*parts)]
                kth = np.partition(merged[5], found - limit)[found - limit]
                keep = merged[5] >= kth               # the best ``limit`` so far (ties kept)
                parts = [tuple(c[keep] for c in merged)]
                found = int(keep.sum())
                if start >= len(tokens) or kth > tokens[start][1]:
                    break
        if not parts:
            return []
        tok, layer, view, codes, ranks, probs = (np.concatenate(c) for c in zip(*parts))
        # Highest prob first; ties broken by layer, neuron for a stable order.
        order = np.lexsort((codes, layer, -probs.astype(np.float64)))
        if limit is not None:
            order = order[:limit]
        texts = self.token_texts(tok[order].tolist())
        return [
            Hit(int(layer[i]), int(codes[i] >> 1), ALL_VIEWS[int(view[i])], DIRECTIONS[int(codes[i] & 1)],
                int(ranks[i]), int(tok[i]), texts[int(tok[i])], float(probs[i]))
            for i in order
        ]

    def _collect(self, token_ids: list[int], views: list[str], dir_codes: list[int], max_rank: int,
                 parts: list) -> int:
        """Append the postings of ``token_ids`` that pass the filters to ``parts``; return how many.
        All rows of the batch are unpacked at once (no per-row numpy calls)."""
        sql = (f"SELECT token_id, layer, view, entries FROM postings WHERE token_id IN "
               f"({','.join('?' * len(token_ids))}) AND view IN ({','.join('?' * len(views))})")
        rows = self.conn.execute(sql, [*token_ids, *views]).fetchall()
        if not rows:
            return 0
        toks, layers, view_names, blobs = zip(*rows)
        tok, layer, view, codes, ranks, probs = unpack_many(
            np.array(toks, np.int64), np.array(layers, np.int64),
            np.array([ALL_VIEWS.index(v) for v in view_names], np.int64), blobs)
        keep = ranks < max_rank
        if len(dir_codes) == 1:
            keep &= (codes & 1) == dir_codes[0]
        n = int(keep.sum())
        if n:
            parts.append((tok[keep], layer[keep], view[keep], codes[keep], ranks[keep], probs[keep]))
        return n

    def decoded_views(self) -> list[str]:
        """Views decoded in both directions for every layer."""
        done = self.done_units()
        return [v for v in self.views if all((layer, v) in done for layer in range(self.layers))]

    def has_decoded(self, views: Sequence[str] | None = None) -> bool:
        """True when every view in ``views`` (default: every view the architecture has) is decoded."""
        decoded = self.decoded_views()
        return all(v in decoded for v in (views or self.views))

    def status(self) -> dict:
        views = self.decoded_views()
        m = self._meta
        return {
            "model": m.get("name"), "source": m.get("source"), "layers": m.get("layers"),
            "neurons_per_layer": m.get("neurons_per_layer"), "views": views,
            "complete": bool(views) and set(views) == set(self.views),
        }

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> "Store":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _build_postings(units) -> list[tuple[int, bytes, float]]:
    """Invert one (layer, view)'s top-k lists (both directions) into per-token packed entries, with each
    token's highest probability (kept in token_stats, an upper bound that lets search stop early)."""
    tok_parts, code_parts, rank_parts, prob_parts = [], [], [], []
    for d, (ids, probs) in enumerate(units):
        n, k = ids.shape
        tok_parts.append(np.asarray(ids, np.int64).ravel())
        code_parts.append(np.repeat(np.arange(n, dtype=np.uint32) * 2 + d, k))
        rank_parts.append(np.tile(np.arange(k, dtype=np.uint8), n))
        prob_parts.append(np.asarray(probs, np.float32).ravel())
    toks = np.concatenate(tok_parts)
    order = np.argsort(toks, kind="stable")
    toks = toks[order]
    codes = np.concatenate(code_parts)[order]
    ranks = np.concatenate(rank_parts)[order]
    probs = np.concatenate(prob_parts)[order]
    uniq, starts = np.unique(toks, return_index=True)
    ends = np.append(starts[1:], len(toks))
    best = np.maximum.reduceat(probs, starts) if len(starts) else np.empty(0, np.float32)
    return [
        (int(t), pack_postings(codes[s:e], ranks[s:e], probs[s:e]), float(b))
        for t, s, e, b in zip(uniq.tolist(), starts.tolist(), ends.tolist(), best.tolist())
    ]
