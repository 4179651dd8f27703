"""The cache file of one decoded model: writing units, reading records, searching (layout: cache.schema)."""

from __future__ import annotations

import json
import sqlite3
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from ..errors import CacheError, CorruptCache
from . import labels as label_tables
from . import postings
from .postings import ALL_VIEWS, DIRECTIONS, MATCH_MODES, Hit, normalize  # noqa: F401 - re-exported
from .schema import SCHEMA, TopToken, connect
from .sqlerrors import BUSY_TIMEOUT_S, guarded, translate  # noqa: F401 - re-exported


class Store:
    """A decoded model's cache file. One Store (one connection) per thread; ``handoff=True`` lets one
    thread at a time use it from another thread (the decoder's writer thread)."""

    @guarded
    def __init__(self, path: str | Path, readonly: bool = False, handoff: bool = False):
        self.path = Path(path)
        self._db = None
        if readonly and not self.path.exists():
            raise CacheError(f"no cache file at {self.path}")
        self.conn = connect(self.path, readonly, handoff)
        try:
            if not readonly:
                self.db.enable_wal()
                with self.db.atomic():
                    for statement in SCHEMA:
                        self.db.execute(statement)
            self._meta = self._read_meta()
        except BaseException:
            self.conn.close()
            raise
        self._vocab_cache: dict[int, str] = {}

    @property
    def db(self):
        """sqlite-utils over the same connection, for writes (imported lazily: reads need only sqlite3)."""
        if self._db is None:
            import sqlite_utils

            self._db = sqlite_utils.Database(self.conn)
        return self._db

    # -- meta ----------------------------------------------------------------------------
    def _read_meta(self) -> dict:
        try:
            rows = self.conn.execute("SELECT key, value FROM meta").fetchall()
        except sqlite3.OperationalError as exc:
            if "no such table" in str(exc):  # an empty file: created, schema not written yet
                return {}
            raise
        try:
            return {k: json.loads(v) for k, v in rows}
        except (TypeError, ValueError):
            raise CorruptCache(
                f"cache file {self.path} has garbled metadata; run `neuroscope decode MODEL --rebuild`"
            ) from None

    @property
    def meta(self) -> dict:
        return dict(self._meta)

    @property
    def ready(self) -> bool:
        """Meta and vocabulary are both there. Caches written before the ``ready`` flag count as ready when
        their vocabulary is complete."""
        m = self._meta
        if m.get("ready"):
            return True
        if "layers" not in m or "vocab" not in m:
            return False
        row = self.conn.execute("SELECT COUNT(*), MAX(id) FROM vocab").fetchone()
        return row[0] == m["vocab"] and row[1] == m["vocab"] - 1

    @guarded
    def set_meta(self, **values) -> None:
        with self.db.atomic():
            self._put_meta(values)
        self._meta.update(values)

    def _put_meta(self, values: dict) -> None:
        self.conn.executemany(
            "INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", [(k, json.dumps(v)) for k, v in values.items()]
        )

    @guarded
    def initialize(self, meta: dict, texts: Sequence[str], key_tables: tuple | None = None) -> None:
        """Write meta (with ``ready``) and the vocabulary in one transaction: a cache interrupted here has
        neither, and is started again from nothing. ``key_tables``: cache.labels.key_tables(texts), computed
        before the file was made (else here)."""
        values = {**meta, "vocab": len(texts), "ready": True, "labels_version": label_tables.VERSION}
        with self.db.atomic():
            self.conn.execute("DELETE FROM meta")
            self.conn.execute("DELETE FROM vocab")
            self._put_meta(values)
            self.conn.executemany(
                "INSERT INTO vocab (id, text, norm) VALUES (?, ?, ?)",
                ((i, t, normalize(t)) for i, t in enumerate(texts)),
            )
            self.conn.execute("CREATE INDEX IF NOT EXISTS vocab_norm ON vocab(norm)")
            self.conn.execute("CREATE INDEX IF NOT EXISTS vocab_text ON vocab(text)")
            label_tables.Labels(self).write_keys(list(texts), key_tables)
        self._meta = dict(values)

    def touch(self) -> None:
        """Record use, so the app can open the most recently used model."""
        self.set_meta(last_used=time.time())

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

    @property
    def precision(self) -> str | None:
        """The matmul dtype every unit was decoded with ("float32" or "bfloat16")."""
        if self._meta.get("precision"):
            return self._meta["precision"]
        used = str(self._meta.get("decoded_with", ""))  # caches written before "precision" was kept
        return next((p for p in ("bfloat16", "float32") if p in used), None)

    # -- writing -------------------------------------------------------------------------
    @guarded
    def done_units(self) -> set[tuple[int, str]]:
        if not self._meta:
            return set()  # a file whose schema is still being created holds no units
        rows = self.conn.execute("SELECT layer, view FROM decoded GROUP BY layer, view HAVING COUNT(*) = 2").fetchall()
        return {(int(layer), view) for layer, view in rows}

    @contextmanager
    def snapshot(self):
        """One consistent view of the file for several reads, while a decoder may commit units."""
        if self.conn.in_transaction:
            yield
            return
        self.conn.execute("BEGIN")
        try:
            yield
        finally:
            self.conn.execute("COMMIT")

    @guarded
    def write_unit(
        self,
        layer: int,
        view: str,
        pos: tuple[np.ndarray, np.ndarray],
        neg: tuple[np.ndarray, np.ndarray],
        decoded_with: str = "",
    ) -> None:
        """Store one (layer, view): pos/neg = (token ids [n, k], probs [n, k]); atomically. A unit is written
        once: writing it again is a bug and fails (its rows are UNIQUE)."""
        pos, neg = ((ids, np.minimum(probs, np.float32(1.0))) for ids, probs in (pos, neg))  # bf16 rounding
        packed = postings.build_postings((pos, neg))
        with self.db.atomic():
            self.conn.execute(
                "INSERT INTO units (layer, view, decoded_with, at) VALUES (?, ?, ?, ?)",
                (layer, view, decoded_with, time.time()),
            )
            for direction, (ids, probs) in zip(DIRECTIONS, (pos, neg)):
                self.conn.execute(
                    "INSERT INTO decoded (layer, view, direction, ids, probs) VALUES (?, ?, ?, ?, ?)",
                    (
                        layer,
                        view,
                        direction,
                        np.ascontiguousarray(ids, np.int32).tobytes(),
                        np.ascontiguousarray(probs, np.float32).tobytes(),
                    ),
                )
            self.conn.executemany(
                "INSERT INTO postings (token_id, layer, view, entries) VALUES (?, ?, ?, ?)",
                ((tok, layer, view, blob) for tok, blob, _ in packed),
            )
            self.conn.executemany(
                "INSERT INTO token_stats (token_id, best) VALUES (?, ?) "
                "ON CONFLICT(token_id) DO UPDATE SET best = max(best, excluded.best)",
                ((tok, best) for tok, _, best in packed),
            )
            label_tables.Labels(self).write_unit(layer, view, pos, neg)

    @guarded
    def label_missing(self, note=None) -> int:
        """Give the decoded units that have no labels theirs (a one-time upgrade of caches made before labels
        were kept), one transaction per unit; returns how many units were labelled."""
        labels = label_tables.Labels(self)
        todo = labels.missing()
        if not todo:
            return 0
        if labels.has_tables() and labels.outdated():
            if note:
                note(
                    f"labelling {len(todo) * 2 * self.neurons:,} neuron-directions of {self.meta.get('name')} again "
                    f"by this version's rules (word pieces join their word; once, no decode)"
                )
            with self.db.atomic():
                return labels.upgrade()
        if note:
            note(
                f"labelling {len(todo) * 2 * self.neurons:,} neuron-directions of {self.meta.get('name')} "
                f"(a one-time upgrade of this cache)"
            )
        for layer, view in todo:
            pos, neg = self.tops(layer, view, "pos"), self.tops(layer, view, "neg")
            with self.db.atomic():
                labels.write_unit(layer, view, pos, neg)
        return len(todo)

    @guarded
    def clear_units(self) -> None:
        """Drop every decoded unit (a decode at another precision replaces them all), in one transaction."""
        with self.db.atomic():
            for table in ("decoded", "units", "postings", "token_stats", "labels", "concept_index"):
                self.conn.execute(f"DELETE FROM {table}")

    @guarded
    def unit_log(self) -> list[tuple[int, str, str]]:
        """(layer, view, decoded_with) of every unit written since units were logged."""
        return [
            (int(a), b, c)
            for a, b, c in self.conn.execute("SELECT layer, view, decoded_with FROM units ORDER BY at, layer, view")
        ]

    # -- reading -------------------------------------------------------------------------
    def _rowid(self, layer: int, view: str, direction: str) -> int | None:
        row = self.conn.execute(
            "SELECT id FROM decoded WHERE layer = ? AND view = ? AND direction = ?", (layer, view, direction)
        ).fetchone()
        return None if row is None else int(row[0])

    @guarded
    def tops(
        self, layer: int, view: str, direction: str, start: int = 0, stop: int | None = None
    ) -> tuple[np.ndarray, np.ndarray] | None:
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
                data = blob.read(n * k * 4)
            if len(data) != n * k * 4:
                raise CorruptCache(
                    f"cache file {self.path}: layer {layer} {view} {direction} is short; run "
                    f"`neuroscope decode MODEL --rebuild`"
                )
            out.append(np.frombuffer(data, dtype).reshape(n, k))
        return out[0], np.minimum(out[1], np.float32(1.0))  # a bf16 softmax can round a hair past 1

    def top(self, layer: int, neuron: int, view: str, direction: str) -> list[TopToken] | None:
        got = self.tops(layer, view, direction, neuron, neuron + 1)
        if got is None:
            return None
        ids, probs = got[0][0].tolist(), got[1][0].tolist()
        texts = self.token_texts(ids)
        return [TopToken(r, i, texts[i], p) for r, (i, p) in enumerate(zip(ids, probs))]

    @guarded
    def token_texts(self, ids: Iterable[int]) -> dict[int, str]:
        ids = {int(i) for i in ids}
        missing = [i for i in ids if i not in self._vocab_cache]
        for start in range(0, len(missing), 500):
            part = missing[start : start + 500]
            marks = ",".join("?" * len(part))
            for i, text in self.conn.execute(f"SELECT id, text FROM vocab WHERE id IN ({marks})", part):
                self._vocab_cache[int(i)] = text
        return {i: self._vocab_cache.get(i, f"<{i}>") for i in ids}

    @guarded
    def match_tokens(self, query: str, match: str = "word") -> list[int]:
        """Token ids whose text matches ``query`` under a match mode (see MATCH_MODES)."""
        clause, params = postings.match_clause(query, match)
        return [int(r[0]) for r in self.conn.execute(f"SELECT id FROM vocab WHERE {clause}", params)]

    @guarded
    def search(
        self,
        query: str,
        match: str = "word",
        views: Sequence[str] | None = None,
        directions: Sequence[str] | None = None,
        max_rank: int = 1,
        limit: int | None = 50,
    ) -> list[Hit]:
        """Neurons whose top ``max_rank`` tokens include a token matching ``query`` (cache.postings.search),
        read from one snapshot of the file."""
        with self.snapshot():
            ids = None
            if match == "word" and label_tables.Labels(self).has_tables():
                word = label_tables.Labels(self).match_word(query)
                ids = {t[0] for t in word.tokens} | set(self.match_tokens(query, "word"))
            return postings.search(
                self.conn, self.token_texts, query, match, views, directions, max_rank, limit, token_ids=ids
            )

    @guarded
    def match_word(self, query: str) -> "label_tables.WordMatch":
        return label_tables.Labels(self).match_word(query)  # which tokens stand for the word ``query``

    def decoded_views(self) -> list[str]:
        """Views decoded in both directions for every layer."""
        done = self.done_units()
        return [v for v in self.views if all((layer, v) in done for layer in range(self.layers))]

    def has_decoded(self, views: Sequence[str] | None = None) -> bool:
        """True when every view in ``views`` (default: every view the architecture has) is decoded."""
        decoded = self.decoded_views()
        return all(v in decoded for v in (views or self.views))

    @guarded
    def integrity_ok(self) -> bool:
        return self.conn.execute("PRAGMA quick_check").fetchone()[0] == "ok"

    def status(self) -> dict:
        m = self._meta
        ready = self.ready
        views = self.decoded_views() if ready else []
        return {
            "model": m.get("name"),
            "hub_id": m.get("hub_id"),
            "revision": m.get("revision"),
            "source": m.get("source"),
            "layers": m.get("layers"),
            "neurons_per_layer": m.get("neurons_per_layer"),
            "views": views,
            "complete": ready and bool(views) and set(views) == set(self.views),
        }

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> "Store":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
