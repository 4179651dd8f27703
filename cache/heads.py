"""Attention heads through the decode's lens in the model's cache file (no torch): per head, the top singular
directions of its OV circuit, what each writes (final norm + LM head, both signs) and what it reads (the input
embedding), with a concept label per write direction (cache.labels' rules, LABEL_FLOOR included).

- ``heads(layer, ...)``: one row per layer, packed arrays over its heads. ``sigma`` float32 [heads, ranks];
  ``write_ids`` int32 and ``write_probs`` float32 [heads, ranks, 2, top] (sign 0 = pos, 1 = neg, highest first);
  ``read_ids`` int32 and ``read_weights`` float32 of the same shape (embedding row · v, highest first);
  ``label`` int32 (a concept_keys id, 0 = none), ``mass`` float32 and ``count`` uint8 [heads, ranks, 2]: the
  label of each write direction.
- meta ``heads``: the spec (ranks, top, layers, heads) and ``done``, the layers committed. A layer is one
  transaction, so an interrupted build resumes from its last layer.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .labels import Labels, label_unit
from .postings import DIRECTIONS
from .store import Store, guarded

SCHEMA = (
    "CREATE TABLE IF NOT EXISTS heads (layer INTEGER PRIMARY KEY, sigma BLOB NOT NULL, write_ids BLOB NOT NULL, "
    "write_probs BLOB NOT NULL, read_ids BLOB NOT NULL, read_weights BLOB NOT NULL, label BLOB NOT NULL, "
    "mass BLOB NOT NULL, count BLOB NOT NULL)",
)
SIDES = ("writes", "reads")


@dataclass(frozen=True)
class HeadLayer:
    """One layer's heads: sigma [heads, ranks]; ids / values [heads, ranks, 2, top] per side; labels
    [heads, ranks, 2] (filled in when the layer is stored)."""

    sigma: np.ndarray
    write_ids: np.ndarray
    write_probs: np.ndarray
    read_ids: np.ndarray
    read_weights: np.ndarray
    label: np.ndarray | None = None
    mass: np.ndarray | None = None
    count: np.ndarray | None = None


@dataclass(frozen=True)
class HeadHit:
    """A head direction whose top tokens hold a matching token: ``side`` writes or reads, ``position`` its
    0-based place in that list, ``value`` its probability (writes) or embedding weight (reads)."""

    layer: int
    head: int
    rank: int
    side: str
    direction: str
    position: int
    token_id: int
    value: float
    label: int


def stored_heads_spec(path) -> dict | None:
    """The heads spec of a cache file, read-only, or None (no file, or no heads in it)."""
    if not Path(path).exists():
        return None
    with Store(path, readonly=True) as store:
        return store.meta.get("heads") if store.ready else None


class Heads:
    """The heads part of a cache file; ``store`` is open read-only or for writing."""

    def __init__(self, store: Store):
        self.store, self.conn = store, store.conn

    @property
    def spec(self) -> dict:
        """(ranks, top, layers, heads, done); empty when the file holds no heads."""
        return self.store.meta.get("heads") or {}

    def has_tables(self) -> bool:
        return self.conn.execute("SELECT COUNT(*) FROM sqlite_master WHERE name = 'heads'").fetchone()[0] > 0

    @property
    def complete(self) -> bool:
        spec = self.spec
        return bool(spec) and len(spec.get("done", [])) >= spec["layers"] and self.has_tables()

    # -- writing ---------------------------------------------------------------------------------
    @guarded
    def start(self, spec: dict) -> None:
        """A fresh build (table made, any earlier heads dropped), in one transaction."""
        fresh = {**spec, "done": []}
        with self.store.db.atomic():
            for statement in SCHEMA:
                self.conn.execute(statement)
            self.conn.execute("DELETE FROM heads")
            self.store._put_meta({"heads": fresh})
        self.store._meta["heads"] = fresh

    def with_labels(self, got: HeadLayer) -> HeadLayer:
        """``got`` with each write direction's label: the word holding most of its top-``top`` probability
        (cache.labels.label_unit, the rule neurons are labelled by)."""
        shape = got.write_ids.shape
        keys = Labels(self.store).token_keys()
        if keys is None:  # a cache made before labels: none
            label = np.zeros(shape[:3], np.int32)
            return _with(got, label, label.astype(np.float32), label.astype(np.uint8))
        flat = label_unit(got.write_ids.reshape(-1, shape[-1]), got.write_probs.reshape(-1, shape[-1]), keys)
        label, mass, count, _entropy = (a.reshape(shape[:3]) for a in flat)
        return _with(got, label, mass, count)

    @guarded
    def commit(self, layer: int, got: HeadLayer, seconds: float) -> None:
        """One layer, its labels and the spec's ``done`` in one transaction."""
        got = self.with_labels(got)
        spec = dict(self.spec)
        spec.update(
            done=sorted({*spec.get("done", []), int(layer)}),
            seconds=round(float(spec.get("seconds", 0.0)) + seconds, 3),
        )
        blobs = [np.ascontiguousarray(a).tobytes() for a in _arrays(got)]
        blobs += [np.ascontiguousarray(a).tobytes() for a in (got.label, got.mass, got.count)]
        with self.store.db.atomic():
            self.conn.execute(
                "INSERT OR REPLACE INTO heads (layer, sigma, write_ids, write_probs, read_ids, read_weights, label, "
                "mass, count) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (int(layer), *blobs),
            )
            self.store._put_meta({"heads": spec})
        self.store._meta["heads"] = spec

    # -- reading ---------------------------------------------------------------------------------
    @guarded
    def layer(self, layer: int) -> HeadLayer | None:
        """One layer's heads, or None when it is not stored."""
        row = self.conn.execute(
            "SELECT sigma, write_ids, write_probs, read_ids, read_weights, label, mass, count FROM heads "
            "WHERE layer = ?",
            (int(layer),),
        ).fetchone()
        if row is None:
            return None
        spec = self.spec
        heads, ranks, top = int(spec["heads"]), int(spec["ranks"]), int(spec["top"])
        full, three = (heads, ranks, 2, top), (heads, ranks, 2)
        return HeadLayer(
            np.frombuffer(row[0], np.float32).reshape(heads, ranks),
            np.frombuffer(row[1], np.int32).reshape(full),
            np.frombuffer(row[2], np.float32).reshape(full),
            np.frombuffer(row[3], np.int32).reshape(full),
            np.frombuffer(row[4], np.float32).reshape(full),
            np.frombuffer(row[5], np.int32).reshape(three),
            np.frombuffer(row[6], np.float32).reshape(three),
            np.frombuffer(row[7], np.uint8).reshape(three),
        )

    def search(self, token_ids, max_rank: int = 1, sides=SIDES, directions=DIRECTIONS) -> list[HeadHit]:
        """Head directions whose top ``max_rank`` tokens (per side and sign) hold one of ``token_ids``: writes by
        probability, then reads by weight, each highest first."""
        wanted = np.fromiter({int(t) for t in token_ids}, np.int64)
        hits: list[HeadHit] = []
        if not len(wanted):
            return hits
        for layer in sorted(self.spec.get("done", [])):
            got = self.layer(layer)
            if got is None:
                continue
            for side, ids, values in (
                ("writes", got.write_ids, got.write_probs),
                ("reads", got.read_ids, got.read_weights),
            ):
                if side not in sides:
                    continue
                found = np.isin(ids[..., :max_rank], wanted)
                for h, r, d, p in zip(*np.nonzero(found)):
                    if DIRECTIONS[d] not in directions:
                        continue
                    label = int(got.label[h, r, d]) if side == "writes" and got.label is not None else 0
                    hits.append(
                        HeadHit(
                            layer,
                            int(h),
                            int(r),
                            side,
                            DIRECTIONS[d],
                            int(p),
                            int(ids[h, r, d, p]),
                            float(values[h, r, d, p]),
                            label,
                        )
                    )
        hits.sort(key=lambda x: (SIDES.index(x.side), -x.value, x.layer, x.head, x.rank, x.direction))
        return hits

    def labelled_as(self, concept: int, directions=DIRECTIONS) -> list[HeadHit]:
        """Write directions labelled with ``concept`` (a concept_keys id), each with its top token, highest label
        mass first."""
        hits, masses = [], []
        for layer in sorted(self.spec.get("done", [])):
            got = self.layer(layer)
            if got is None or got.label is None or got.mass is None:
                continue
            for h, r, d in zip(*np.nonzero(got.label == concept)):
                if DIRECTIONS[d] in directions:
                    token, prob = int(got.write_ids[h, r, d, 0]), float(got.write_probs[h, r, d, 0])
                    hits.append(HeadHit(layer, int(h), int(r), "writes", DIRECTIONS[d], 0, token, prob, concept))
                    masses.append(float(got.mass[h, r, d]))
        order = sorted(range(len(hits)), key=lambda i: (-masses[i], hits[i].layer, hits[i].head, hits[i].rank))
        return [hits[i] for i in order]


def _arrays(got: HeadLayer) -> tuple[np.ndarray, ...]:
    return (
        np.asarray(got.sigma, np.float32),
        np.asarray(got.write_ids, np.int32),
        np.asarray(got.write_probs, np.float32),
        np.asarray(got.read_ids, np.int32),
        np.asarray(got.read_weights, np.float32),
    )


def _with(got: HeadLayer, label: np.ndarray, mass: np.ndarray, count: np.ndarray) -> HeadLayer:
    sigma, write_ids, write_probs, read_ids, read_weights = _arrays(got)
    return HeadLayer(sigma, write_ids, write_probs, read_ids, read_weights, label, mass, count)
