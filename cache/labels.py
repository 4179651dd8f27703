"""Concept labels: what each neuron x view x direction is about, from its decoded top-k (no torch).

A token's concept key is a normal form: leading whitespace and tokenizer space markers stripped, case
folded, and simple English plurals and inflections folded ("Dogs", " dog", "DOG", "dogs" -> "dog";
"puppies" -> "puppy"; "boxes" -> "box"; "walked", "walking" -> "walk"). A neuron's label is the key whose
tokens carry the most probability mass in its top-k; with it are kept that mass, how many of the top-k
tokens share the key, and the entropy of the top-k (renormalised, in nats).

Tables: ``concept_keys(id, key)`` (one row per distinct key of the vocabulary), ``token_concepts`` (the key
id of every token, one int32 blob), ``labels(layer, view, direction, label, mass, count, entropy)`` (per
unit and direction: int32 / float32 / uint8 / float32 arrays over the neurons) and
``concept_index(concept, layer, view, entries)`` (per key, the neurons of one unit labelled with it:
uint32 neuron * 2 + direction codes, then float32 masses) for `concept` and `search --match label`.
``weight_cosines(layer, view, cosine)``: per neuron, the cosine between what it reads (its up or gate row)
and what it writes (its down column), float32 (measured from the weights once, on first use).
"""
from __future__ import annotations

import re

import numpy as np

from .postings import DIRECTIONS, SPACE_MARKERS

SCHEMA = (
    "CREATE TABLE IF NOT EXISTS concept_keys (id INTEGER PRIMARY KEY, key TEXT NOT NULL UNIQUE)",
    "CREATE TABLE IF NOT EXISTS token_concepts (id INTEGER PRIMARY KEY, ids BLOB NOT NULL)",
    "CREATE TABLE IF NOT EXISTS labels (layer INTEGER NOT NULL, view TEXT NOT NULL, direction TEXT NOT NULL, "
    "label BLOB NOT NULL, mass BLOB NOT NULL, count BLOB NOT NULL, entropy BLOB NOT NULL, "
    "PRIMARY KEY (layer, view, direction))",
    "CREATE TABLE IF NOT EXISTS concept_index (concept INTEGER NOT NULL, layer INTEGER NOT NULL, view TEXT NOT NULL, "
    "entries BLOB NOT NULL, PRIMARY KEY (concept, layer, view)) WITHOUT ROWID",
    "CREATE TABLE IF NOT EXISTS weight_cosines (layer INTEGER NOT NULL, view TEXT NOT NULL, cosine BLOB NOT NULL, "
    "PRIMARY KEY (layer, view))",
)
_EDGE = re.compile(r"^[\W_]+|[\W_]+$")
_VOWELS = set("aeiou")
LABEL_FLOOR = 0.05          # a label holding less of its top-k mass is no label (fall back to the top-1 token)


def concept_key(text: str) -> str:
    """The normal form labels group tokens by (see the module's docstring); "" for a token with no letters
    or digits."""
    word = _EDGE.sub("", text.lstrip(SPACE_MARKERS).casefold())
    if word.endswith(("'s", "’s")):
        word = word[:-2]
    if not word.isalpha() or len(word) < 3:
        return word
    if len(word) > 4 and word.endswith("ies"):
        return word[:-3] + "y"
    if len(word) > 4 and word.endswith(("sses", "shes", "ches", "xes", "zes")):
        return word[:-2]
    if len(word) > 3 and word.endswith("s") and not word.endswith(("ss", "us", "is")):
        return word[:-1]
    for ending in ("ing", "ed"):
        stem = word[: -len(ending)]
        if word.endswith(ending) and len(stem) >= 3 and any(c in _VOWELS for c in stem):
            if len(stem) > 3 and stem[-1] == stem[-2] and stem[-1] not in "lsz":
                stem = stem[:-1]                        # running -> run, stopped -> stop
            return stem
    return word


def vocabulary_keys(texts: list[str]) -> tuple[list[str], np.ndarray]:
    """(distinct keys, key id of every token); the empty key (no letters or digits) is id 0."""
    ids: dict[str, int] = {"": 0}
    out = np.empty(len(texts), np.int32)
    for i, text in enumerate(texts):
        out[i] = ids.setdefault(concept_key(text), len(ids))
    return list(ids), out


CHUNK_CELLS = 1 << 22          # label_unit's k x k temporaries: about 4M cells (32 MB of float64) at a time


def label_unit(ids: np.ndarray, probs: np.ndarray, token_keys: np.ndarray):
    """Per neuron (row) of one direction: (label key id, label mass, tokens sharing it, top-k entropy). Ties
    in mass go to the lower key id (deterministic); keys of tokens with no letters or digits never label.
    Each row's k x k key equality does the grouping (k is small), so no sort over the whole unit is needed;
    rows go in chunks so the temporaries stay small even at --top-k 255."""
    n, k = ids.shape
    step = max(1, CHUNK_CELLS // max(1, k * k))
    if n > step:
        parts = [_label_rows(ids[i:i + step], probs[i:i + step], token_keys) for i in range(0, n, step)]
        return tuple(np.concatenate(column) for column in zip(*parts))
    return _label_rows(ids, probs, token_keys)


def _label_rows(ids: np.ndarray, probs: np.ndarray, token_keys: np.ndarray):
    keys = token_keys[ids]                                     # [n, k]
    p = probs.astype(np.float64)
    same = keys[:, :, None] == keys[:, None, :]               # [n, k, k]
    mass = (same * p[:, None, :]).sum(2)                       # at each position: its key's mass in the row
    count = same.sum(2)
    empty = keys == 0                                          # no letters or digits: never a label
    score = np.where(empty, -1.0, mass)
    pick = np.where(score == score.max(1, keepdims=True), keys, np.iinfo(np.int32).max).min(1)
    rows = np.arange(len(keys))
    at = (keys == pick[:, None]).argmax(1)
    none = empty[rows, at]
    label = np.where(none, 0, pick).astype(np.int32)
    top_mass = np.minimum(np.where(none, 0.0, mass[rows, at]), 1.0).astype(np.float32)   # rounding: ≤ 1
    top_count = np.where(none, 0, count[rows, at]).astype(np.uint8)
    q = p / np.maximum(p.sum(1, keepdims=True), 1e-300)
    entropy = (-(q * np.log(np.where(q > 0, q, 1.0))).sum(1)).astype(np.float32)
    return label, top_mass, top_count, entropy


def index_entries(labels: tuple, directions=DIRECTIONS) -> dict[int, bytes]:
    """For one unit (both directions' label arrays): concept id -> packed (codes, masses) of its neurons."""
    codes, concepts, masses = [], [], []
    for d, (label, mass, _count, _entropy) in zip(range(len(directions)), labels):
        n = len(label)
        codes.append(np.arange(n, dtype=np.uint32) * 2 + d)
        concepts.append(label)
        masses.append(mass)
    code, concept, mass = (np.concatenate(x) for x in (codes, concepts, masses))
    keep = concept != 0
    code, concept, mass = code[keep], concept[keep], mass[keep]
    order = np.argsort(concept, kind="stable")
    code, concept, mass = code[order], concept[order], mass[order]
    uniq, starts = np.unique(concept, return_index=True)
    ends = np.append(starts[1:], len(concept))
    return {int(c): code[s:e].tobytes() + mass[s:e].astype(np.float32).tobytes()
            for c, s, e in zip(uniq.tolist(), starts.tolist(), ends.tolist())}


def unpack_entries(blob: bytes) -> tuple[np.ndarray, np.ndarray]:
    n = len(blob) // 8
    return np.frombuffer(blob, np.uint32, n, 0), np.frombuffer(blob, np.float32, n, 4 * n)


class Labels:
    """The labels part of a cache file (``store`` open read-only, or for writing inside its transactions)."""

    def __init__(self, store):
        self.store, self.conn = store, store.conn

    def has_tables(self) -> bool:
        return self.conn.execute("SELECT COUNT(*) FROM sqlite_master WHERE name = 'labels'").fetchone()[0] > 0

    def token_keys(self) -> np.ndarray | None:
        cached = getattr(self.store, "_token_keys", None)
        if cached is None and self.has_tables():
            row = self.conn.execute("SELECT ids FROM token_concepts WHERE id = 0").fetchone()
            cached = None if row is None else np.frombuffer(row[0], np.int32)
            self.store._token_keys = cached
        return cached

    # -- writing (inside the caller's transaction) -----------------------------------------------------
    def write_keys(self, texts: list[str]) -> None:
        keys, token_keys = vocabulary_keys(texts)
        self.conn.execute("DELETE FROM concept_keys")
        self.conn.executemany("INSERT INTO concept_keys (id, key) VALUES (?, ?)", enumerate(keys))
        self.conn.execute("INSERT OR REPLACE INTO token_concepts (id, ids) VALUES (0, ?)", (token_keys.tobytes(),))
        self.store._token_keys = token_keys

    def write_unit(self, layer: int, view: str, pos, neg) -> None:
        token_keys = self.token_keys()
        if token_keys is None:                      # a cache made before labels were kept, resumed now
            vocab = int(self.store.meta["vocab"])
            texts = self.store.token_texts(range(vocab))
            self.write_keys([texts[i] for i in range(vocab)])
            token_keys = self.token_keys()
        labelled = [label_unit(ids, probs, token_keys) for ids, probs in (pos, neg)]
        self.conn.executemany(
            "INSERT OR REPLACE INTO labels (layer, view, direction, label, mass, count, entropy) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            ((layer, view, direction, *(a.tobytes() for a in arrays))
             for direction, arrays in zip(DIRECTIONS, labelled)))
        self.conn.execute("DELETE FROM concept_index WHERE layer = ? AND view = ?", (layer, view))
        self.conn.executemany("INSERT INTO concept_index (concept, layer, view, entries) VALUES (?, ?, ?, ?)",
                              ((c, layer, view, blob) for c, blob in index_entries(tuple(labelled)).items()))

    def write_cosines(self, layer: int, view: str, cosine: np.ndarray) -> None:
        self.conn.execute("INSERT OR REPLACE INTO weight_cosines (layer, view, cosine) VALUES (?, ?, ?)",
                          (layer, view, np.asarray(cosine, np.float32).tobytes()))

    def cosines(self, layer: int, view: str) -> np.ndarray | None:
        """Per neuron: cosine(its ``view`` row, its down column), or None where not measured yet."""
        if not self.conn.execute("SELECT COUNT(*) FROM sqlite_master WHERE name = 'weight_cosines'").fetchone()[0]:
            return None
        row = self.conn.execute("SELECT cosine FROM weight_cosines WHERE layer = ? AND view = ?",
                                (layer, view)).fetchone()
        return None if row is None else np.frombuffer(row[0], np.float32)

    def missing(self) -> list[tuple[int, str]]:
        """Decoded units that have no labels yet (caches made before labels were kept)."""
        if not self.has_tables():
            return sorted(self.store.done_units())
        have = {(int(a), b) for a, b in self.conn.execute(
            "SELECT layer, view FROM labels GROUP BY layer, view HAVING COUNT(*) = 2")}
        return sorted(self.store.done_units() - have)

    # -- reading ---------------------------------------------------------------------------------------
    def unit(self, layer: int, view: str, direction: str):
        """(label key ids [n] int32, masses float32, counts uint8, entropies float32) of one unit's direction."""
        row = self.conn.execute("SELECT label, mass, count, entropy FROM labels WHERE layer = ? AND view = ? "
                                "AND direction = ?", (layer, view, direction)).fetchone()
        if row is None:
            return None
        return (np.frombuffer(row[0], np.int32), np.frombuffer(row[1], np.float32), np.frombuffer(row[2], np.uint8),
                np.frombuffer(row[3], np.float32))

    def keys(self, ids) -> dict[int, str]:
        ids = sorted({int(i) for i in ids})
        out = {}
        for start in range(0, len(ids), 500):
            part = ids[start:start + 500]
            marks = ",".join("?" * len(part))
            out.update(self.conn.execute(f"SELECT id, key FROM concept_keys WHERE id IN ({marks})", part).fetchall())
        return out

    def key_id(self, word: str) -> int | None:
        row = self.conn.execute("SELECT id FROM concept_keys WHERE key = ?", (concept_key(word),)).fetchone()
        return None if row is None or row[0] == 0 else int(row[0])

    def neurons(self, word: str, views=None) -> list[tuple[int, int, str, str, float]]:
        """(layer, neuron, view, direction, label mass) of every neuron labelled with ``word``'s key, highest
        mass first."""
        concept = self.key_id(word)
        if concept is None:
            return []
        out = []
        for layer, view, blob in self.conn.execute("SELECT layer, view, entries FROM concept_index WHERE concept = ?",
                                                   (concept,)):
            if views and view not in views:
                continue
            codes, masses = unpack_entries(blob)
            out.extend((int(layer), int(c >> 1), view, DIRECTIONS[int(c & 1)], float(m))
                       for c, m in zip(codes.tolist(), masses.tolist()))
        out.sort(key=lambda r: (-r[4], r[0], r[1], r[2], r[3]))
        return out
