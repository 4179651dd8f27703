"""Concept labels: what each neuron x view x direction is about, from its decoded top-k (no torch).

A token's concept key and the leading-piece rule are defined in cache.words: " Dogs", "dog" and "DOG" share
the key "dog", and a leading piece such as " Californ" stands for the word it begins ("california"). A
neuron's label is the word whose tokens carry the most probability mass in its top-k; with it are kept that
mass, how many of the top-k tokens share it, and the entropy of the top-k (renormalised, in nats). A label
holding less than ``LABEL_FLOOR`` of the mass is no label (the neuron is shown by its top-1 token).

Tables: ``concept_keys(id, key)`` (one row per distinct key of the vocabulary), ``token_concepts`` (the word
id of every token, pieces mapped to their word: one int32 blob), ``concept_words`` (per key id: the word id
it stands for, its English Zipf frequency and its specificity, int32 / float32 / float32 blobs),
``labels(layer, view, direction, label, mass, count, entropy)`` (per unit and direction: int32 / float32 /
uint8 / float32 arrays over the neurons) and ``concept_index(concept, layer, view, entries)`` (per word, the
neurons of one unit labelled with it: uint32 neuron * 2 + direction codes, then float32 masses) for
`concept` and `search --match label`. ``weight_cosines(layer, view, cosine)``: per neuron, the cosine
between what it reads (its up or gate row) and what it writes (its down column), float32 (measured from the
weights once, on first use). meta ``labels_version`` says which rules made the labels: a cache labelled by
older rules is labelled again once, announced, without a decode.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .postings import DIRECTIONS
from .words import (
    PIECE_MIN_LETTERS,
    concept_key,
    initial_keys,
    is_piece_of,
    key_candidates,
    normalize,
    quoted,
    specificity,
    surface,
    vocabulary_keys,
    word_groups,
    zipf,
)

VERSION = 2  # 2: leading pieces join their word, special tokens and sub-floor masses no label
LABEL_FLOOR = 0.05  # a label holding less of its top-k mass is no label (fall back to the top-1 token)
SCHEMA = (
    "CREATE TABLE IF NOT EXISTS concept_keys (id INTEGER PRIMARY KEY, key TEXT NOT NULL UNIQUE)",
    "CREATE TABLE IF NOT EXISTS token_concepts (id INTEGER PRIMARY KEY, ids BLOB NOT NULL)",
    "CREATE TABLE IF NOT EXISTS concept_words (id INTEGER PRIMARY KEY, word BLOB NOT NULL, zipf BLOB NOT NULL, "
    "specificity BLOB NOT NULL)",
    "CREATE TABLE IF NOT EXISTS labels (layer INTEGER NOT NULL, view TEXT NOT NULL, direction TEXT NOT NULL, "
    "label BLOB NOT NULL, mass BLOB NOT NULL, count BLOB NOT NULL, entropy BLOB NOT NULL, "
    "PRIMARY KEY (layer, view, direction))",
    "CREATE TABLE IF NOT EXISTS concept_index (concept INTEGER NOT NULL, layer INTEGER NOT NULL, view TEXT NOT NULL, "
    "entries BLOB NOT NULL, PRIMARY KEY (concept, layer, view)) WITHOUT ROWID",
    "CREATE TABLE IF NOT EXISTS weight_cosines (layer INTEGER NOT NULL, view TEXT NOT NULL, cosine BLOB NOT NULL, "
    "PRIMARY KEY (layer, view))",
)


CHUNK_CELLS = 1 << 22  # label_unit's k x k temporaries: about 4M cells (32 MB of float64) at a time


def label_unit(ids: np.ndarray, probs: np.ndarray, token_keys: np.ndarray):
    """Per neuron (row) of one direction: (label word id, label mass, tokens sharing it, top-k entropy). Ties
    in mass go to the lower id (deterministic); tokens with no letters or digits never label, and a label of
    less than LABEL_FLOOR mass is none (id 0, mass 0, count 0). ``token_keys``: each token's word id.
    Each row's k x k key equality does the grouping (k is small), so no sort over the whole unit is needed;
    rows go in chunks so the temporaries stay small even at --top-k 255."""
    n, k = ids.shape
    step = max(1, CHUNK_CELLS // max(1, k * k))
    if n > step:
        parts = [_label_rows(ids[i : i + step], probs[i : i + step], token_keys) for i in range(0, n, step)]
        return tuple(np.concatenate(column) for column in zip(*parts))
    return _label_rows(ids, probs, token_keys)


def _label_rows(ids: np.ndarray, probs: np.ndarray, token_keys: np.ndarray):
    keys = token_keys[ids]  # [n, k]
    p = probs.astype(np.float64)
    same = keys[:, :, None] == keys[:, None, :]  # [n, k, k]
    mass = (same * p[:, None, :]).sum(2)  # at each position: its key's mass in the row
    count = same.sum(2)
    empty = keys == 0  # no letters or digits: never a label
    score = np.where(empty, -1.0, mass)
    pick = np.where(score == score.max(1, keepdims=True), keys, np.iinfo(np.int32).max).min(1)
    rows = np.arange(len(keys))
    at = (keys == pick[:, None]).argmax(1)
    none = empty[rows, at] | (mass[rows, at] < LABEL_FLOOR)
    label = np.where(none, 0, pick).astype(np.int32)
    top_mass = np.minimum(np.where(none, 0.0, mass[rows, at]), 1.0).astype(np.float32)  # rounding: ≤ 1
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
    return {
        int(c): code[s:e].tobytes() + mass[s:e].astype(np.float32).tobytes()
        for c, s, e in zip(uniq.tolist(), starts.tolist(), ends.tolist())
    }


def unpack_entries(blob: bytes) -> tuple[np.ndarray, np.ndarray]:
    n = len(blob) // 8
    return np.frombuffer(blob, np.uint32, n, 0), np.frombuffer(blob, np.float32, n, 4 * n)


@dataclass(frozen=True)
class WordMatch:
    """How a word the user typed was matched against the vocabulary."""

    word: str  # as typed
    concept: str  # the concept it names ("" when none)
    tokens: tuple  # (token_id, text, piece) of every token that stands for it
    note: str | None = None  # said when the word was not matched by its own tokens

    def as_dict(self) -> dict:
        return {
            "word": self.word,
            "concept": self.concept,
            "note": self.note,
            "tokens": [{"token_id": i, "token": t, "piece": p} for i, t, p in self.tokens],
        }

    def describe(self, limit: int = 6) -> str:
        """One line: which tokens matched (pieces marked)."""
        shown = [quoted(t) + (" (piece)" if p else "") for _i, t, p in self.tokens[:limit]]
        more = f" +{len(self.tokens) - limit} more" if len(self.tokens) > limit else ""
        head = f"{self.word!r} matches " + (", ".join(shown) + more if shown else "no token")
        return head + (f"; {self.note}" if self.note else "")


def key_tables(texts: list[str]) -> tuple:
    """(keys, each token's own key id, Zipf per key, word id per key, specificity per key): the word work of
    a vocabulary (about 0.4 s for 49k tokens), done once when a cache is made."""
    keys, own, freq = vocabulary_keys(texts)
    word = word_groups(keys, freq)
    initial = initial_keys(texts, own, len(keys))
    np.logical_or.at(initial, word, initial.copy())  # a piece that starts words makes its word initial
    return keys, own, freq, word, specificity(keys, freq, initial)


class Labels:
    """The labels part of a cache file (``store`` open read-only, or for writing inside its transactions)."""

    def __init__(self, store):
        self.store, self.conn = store, store.conn

    def _table(self, name: str) -> bool:
        return self.conn.execute("SELECT COUNT(*) FROM sqlite_master WHERE name = ?", (name,)).fetchone()[0] > 0

    def has_tables(self) -> bool:
        return self._table("labels")

    def outdated(self) -> bool:
        """Labels were made by older rules (or the vocabulary's words were never measured): label again."""
        return int(self.store.meta.get("labels_version") or 1) < VERSION or not self._table("concept_words")

    def token_keys(self) -> np.ndarray | None:
        """Every token's word id (a leading piece has its word's), or None in a cache made before labels."""
        cached = getattr(self.store, "_token_keys", None)
        if cached is None and self.has_tables():
            row = self.conn.execute("SELECT ids FROM token_concepts WHERE id = 0").fetchone()
            cached = None if row is None else np.frombuffer(row[0], np.int32)
            self.store._token_keys = cached
        return cached

    def words(self) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
        """Per key id: (the word id it stands for, English Zipf frequency, specificity); None before v2."""
        cached = getattr(self.store, "_key_words", None)
        if cached is None and self._table("concept_words"):
            row = self.conn.execute("SELECT word, zipf, specificity FROM concept_words WHERE id = 0").fetchone()
            if row is not None:
                cached = (
                    np.frombuffer(row[0], np.int32),
                    np.frombuffer(row[1], np.float32),
                    np.frombuffer(row[2], np.float32),
                )
                self.store._key_words = cached
        return cached

    # -- writing (inside the caller's transaction) -----------------------------------------------------
    def write_keys(self, texts: list[str], tables: tuple | None = None) -> None:
        keys, own, freq, word, spec = tables or key_tables(texts)
        self.conn.execute("DELETE FROM concept_keys")
        self.conn.executemany("INSERT INTO concept_keys (id, key) VALUES (?, ?)", enumerate(keys))
        token_keys = word[own].astype(np.int32)
        self.conn.execute("INSERT OR REPLACE INTO token_concepts (id, ids) VALUES (0, ?)", (token_keys.tobytes(),))
        self.conn.execute(
            "INSERT OR REPLACE INTO concept_words (id, word, zipf, specificity) VALUES (0, ?, ?, ?)",
            (word.tobytes(), freq.tobytes(), spec.tobytes()),
        )
        self.store._put_meta({"labels_version": VERSION})
        self.store._meta["labels_version"] = VERSION
        self.store._token_keys, self.store._key_words = token_keys, (word, freq, spec)

    def upgrade(self) -> int:
        """Label every decoded unit again by this version's rules (inside the caller's transaction, so a
        cache is never half old, half new); returns how many units."""
        vocab = int(self.store.meta["vocab"])
        texts = self.store.token_texts(range(vocab))
        self.write_keys([texts[i] for i in range(vocab)])
        done = sorted(self.store.done_units())
        for layer, view in done:
            self._label(layer, view, self.store.tops(layer, view, "pos"), self.store.tops(layer, view, "neg"))
        return len(done)

    def write_unit(self, layer: int, view: str, pos, neg) -> None:
        if self.token_keys() is None or self.outdated():  # a cache labelled by older rules, resumed now
            self.upgrade()
        self._label(layer, view, pos, neg)

    def _label(self, layer: int, view: str, pos, neg) -> None:
        token_keys = self.token_keys()
        assert token_keys is not None  # write_unit() and upgrade() write the keys first
        labelled = [label_unit(ids, probs, token_keys) for ids, probs in (pos, neg)]
        self.conn.executemany(
            "INSERT OR REPLACE INTO labels (layer, view, direction, label, mass, count, entropy) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            (
                (layer, view, direction, *(a.tobytes() for a in arrays))
                for direction, arrays in zip(DIRECTIONS, labelled)
            ),
        )
        self.conn.execute("DELETE FROM concept_index WHERE layer = ? AND view = ?", (layer, view))
        self.conn.executemany(
            "INSERT INTO concept_index (concept, layer, view, entries) VALUES (?, ?, ?, ?)",
            ((c, layer, view, blob) for c, blob in index_entries(tuple(labelled)).items()),
        )

    def write_cosines(self, layer: int, view: str, cosine: np.ndarray) -> None:
        self.conn.execute(
            "INSERT OR REPLACE INTO weight_cosines (layer, view, cosine) VALUES (?, ?, ?)",
            (layer, view, np.asarray(cosine, np.float32).tobytes()),
        )

    def cosines(self, layer: int, view: str) -> np.ndarray | None:
        """Per neuron: cosine(its ``view`` row, its down column), or None where not measured yet."""
        if not self.conn.execute("SELECT COUNT(*) FROM sqlite_master WHERE name = 'weight_cosines'").fetchone()[0]:
            return None
        row = self.conn.execute(
            "SELECT cosine FROM weight_cosines WHERE layer = ? AND view = ?", (layer, view)
        ).fetchone()
        return None if row is None else np.frombuffer(row[0], np.float32)

    def missing(self) -> list[tuple[int, str]]:
        """Decoded units that have no labels yet (caches made before labels were kept), or every decoded unit
        when the labels were made by older rules."""
        if not self.has_tables() or self.outdated():
            return sorted(self.store.done_units())
        have = {
            (int(a), b)
            for a, b in self.conn.execute("SELECT layer, view FROM labels GROUP BY layer, view HAVING COUNT(*) = 2")
        }
        return sorted(self.store.done_units() - have)

    # -- reading ---------------------------------------------------------------------------------------
    def unit(self, layer: int, view: str, direction: str):
        """(label key ids [n] int32, masses float32, counts uint8, entropies float32) of one unit's direction."""
        row = self.conn.execute(
            "SELECT label, mass, count, entropy FROM labels WHERE layer = ? AND view = ? AND direction = ?",
            (layer, view, direction),
        ).fetchone()
        if row is None:
            return None
        return (
            np.frombuffer(row[0], np.int32),
            np.frombuffer(row[1], np.float32),
            np.frombuffer(row[2], np.uint8),
            np.frombuffer(row[3], np.float32),
        )

    def keys(self, ids) -> dict[int, str]:
        ids = sorted({int(i) for i in ids})
        out = {}
        for start in range(0, len(ids), 500):
            part = ids[start : start + 500]
            marks = ",".join("?" * len(part))
            out.update(self.conn.execute(f"SELECT id, key FROM concept_keys WHERE id IN ({marks})", part).fetchall())
        return out

    def key_id(self, word: str) -> int | None:
        """The id of the concept ``word`` names: its key's, or, for a leading piece, its word's."""
        row = None
        for key in key_candidates(word):
            row = self.conn.execute("SELECT id FROM concept_keys WHERE key = ?", (key,)).fetchone() if key else None
            if row is not None:
                break
        if row is None or row[0] == 0:
            return None
        words = self.words()
        return int(row[0]) if words is None else int(words[0][row[0]])

    def word_tokens(self, word: str) -> list[int]:
        """Every token that stands for ``word``'s concept (its forms and its leading pieces), by token id."""
        concept, token_keys = self.key_id(word), self.token_keys()
        if concept is None or token_keys is None:
            return []
        return np.flatnonzero(token_keys == concept).tolist()

    def match_word(self, word: str) -> WordMatch:
        """The tokens that stand for ``word``: its forms and the leading pieces of the word it names (the rule
        in cache.words); for a word that is no key of the vocabulary (the tokenizer splits it), its longest
        leading piece that passes the rule, else none, with a note saying why."""
        keys = [k for k in key_candidates(word) if k]
        if not keys:
            return WordMatch(word, "", ())
        key = keys[-1]
        concept = self.key_id(word)
        if concept is not None:
            name = self.keys([concept]).get(concept, key)
            texts = self.store.token_texts(self.word_tokens(word))
            tokens = tuple((i, t, not {concept_key(t), surface(t)} & {name}) for i, t in sorted(texts.items()))
            note = f"{word!r} is a leading piece of {name!r}: matching the word" if name not in keys else None
            return WordMatch(word, name, tokens, note)
        lengths = [n for n in range(len(key) - 1, PIECE_MIN_LETTERS - 1, -1) if 2 * n >= len(key)]
        marks = ",".join("?" * len(lengths))
        found = (
            dict(
                self.conn.execute(
                    f"SELECT key, id FROM concept_keys WHERE key IN ({marks})", [key[:n] for n in lengths]
                ).fetchall()
            )
            if lengths and key.isalpha()
            else {}
        )
        words = self.words()
        if found and words is not None:
            whole = float(zipf([key])[0])
            for n in lengths:  # longest first
                piece = key[:n]
                if piece in found and is_piece_of(piece, key, float(words[1][found[piece]]), whole):
                    rows = self.conn.execute(
                        "SELECT id, text FROM vocab WHERE norm >= ? AND norm < ?", (piece, piece + "\U0010ffff")
                    ).fetchall()
                    tokens = tuple((int(i), t, True) for i, t in rows if concept_key(t) == piece)
                    return WordMatch(
                        word,
                        key,
                        tokens,
                        f"no token of the vocabulary is {key!r}; its leading piece {piece!r} stands for it",
                    )
        q = normalize(word)
        prefixes = [q[:n] for n in range(len(q), 0, -1)]
        row = (
            self.conn.execute(
                f"SELECT text FROM vocab WHERE norm IN ({','.join('?' * len(prefixes))}) "
                f"ORDER BY length(norm) DESC LIMIT 1",
                prefixes,
            ).fetchone()
            if prefixes
            else None
        )
        why = (
            f"its longest leading piece there, {quoted(row[0])}, cannot stand for it (a piece needs "
            f"{PIECE_MIN_LETTERS}+ letters, half the word, and to be 10x rarer than it as a word)"
            if row
            else "and no token spells its start"
        )
        return WordMatch(word, key, (), f"no token of the vocabulary is {key!r}, {why}")

    def neurons(self, word: str, views=None) -> list[tuple[int, int, str, str, float]]:
        """(layer, neuron, view, direction, label mass) of every neuron labelled with ``word``'s key, highest
        mass first."""
        concept = self.key_id(word)
        if concept is None:
            return []
        out: list[tuple[int, int, str, str, float]] = []
        for layer, view, blob in self.conn.execute(
            "SELECT layer, view, entries FROM concept_index WHERE concept = ?", (concept,)
        ):
            if views and view not in views:
                continue
            codes, masses = unpack_entries(blob)
            out.extend(
                (int(layer), int(c >> 1), view, DIRECTIONS[int(c & 1)], float(m))
                for c, m in zip(codes.tolist(), masses.tolist())
            )
        out.sort(key=lambda r: (-r[4], r[0], r[1], r[2], r[3]))
        return out
