"""The circuit graph in the model's cache file (no torch): every neuron's top-k virtual-weight edges.

- ``edges(layer, direction, via)``: one row per layer and direction, packed arrays over its neurons, neuron-major
  ([neurons, k], so one neuron is one contiguous slice): ``ids`` int32, the other end's global neuron id
  (layer * neurons + neuron); ``vias`` int8, the index into meta ``edges.reads`` of the read vector the edge
  goes into (the target's); ``weights`` float32, signed, highest |weight| first. direction "in" rows are per
  read vector (``via`` its name), "out" rows per read vector of every later layer (``via`` the targets'), and
  "tokens" rows per read vector hold token ids: the embedding rows that read vector responds to directly.
- ``edge_partial(layer, via, ...)``: the fan-out of source layers still collecting edges from units to come.
- meta ``edges``: the spec (top, reads, layers, neurons) and ``done``, the target layers committed.

A unit (one target layer: its fan-in, the source layer its fan-out completes and every partial fan-out) is one
transaction, so an interrupted pass resumes from its last unit and never mixes two.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .store import Store, guarded

SCHEMA = (
    "CREATE TABLE IF NOT EXISTS edges (layer INTEGER NOT NULL, direction TEXT NOT NULL, via TEXT NOT NULL, "
    "ids BLOB NOT NULL, vias BLOB NOT NULL, weights BLOB NOT NULL, PRIMARY KEY (layer, direction, via))",
    "CREATE TABLE IF NOT EXISTS edge_partial (layer INTEGER NOT NULL, via TEXT NOT NULL, ids BLOB NOT NULL, "
    "vias BLOB NOT NULL, weights BLOB NOT NULL, PRIMARY KEY (layer, via))",
)


@dataclass(frozen=True)
class Packed:
    """One layer's edges in one direction: [neurons, k] arrays."""

    ids: np.ndarray  # int32 global neuron ids of the other end
    vias: np.ndarray  # int8 read-vector indices (into the spec's reads)
    weights: np.ndarray  # float32 signed weights, highest |weight| first along k

    def blobs(self) -> tuple[bytes, bytes, bytes]:
        return (
            np.ascontiguousarray(self.ids, np.int32).tobytes(),
            np.ascontiguousarray(self.vias, np.int8).tobytes(),
            np.ascontiguousarray(self.weights, np.float32).tobytes(),
        )

    @classmethod
    def unpack(cls, ids: bytes, vias: bytes, weights: bytes, neurons: int) -> "Packed":
        return cls(
            np.frombuffer(ids, np.int32).reshape(neurons, -1),
            np.frombuffer(vias, np.int8).reshape(neurons, -1),
            np.frombuffer(weights, np.float32).reshape(neurons, -1),
        )


def stored_edges_spec(path) -> dict | None:
    """The edges spec of a cache file, read-only, or None (no file, or no graph in it)."""
    from pathlib import Path

    if not Path(path).exists():
        return None
    with Store(path, readonly=True) as store:
        return store.meta.get("edges") if store.ready else None


class Edges:
    """The graph part of a cache file; ``store`` is open read-only or for writing."""

    def __init__(self, store: Store):
        self.store, self.conn = store, store.conn

    @property
    def path(self):
        return self.store.path

    @property
    def spec(self) -> dict:
        """The graph's spec in meta (top, reads, layers, neurons, done); empty when the file holds no graph."""
        return self.store.meta.get("edges") or {}

    @property
    def neurons(self) -> int:
        return int(self.spec.get("neurons", 0))

    @property
    def complete(self) -> bool:
        spec = self.spec
        return bool(spec) and len(spec.get("done", [])) >= max(0, spec["layers"] - 1) and self.has_tables()

    def has_tables(self) -> bool:
        return self.conn.execute("SELECT COUNT(*) FROM sqlite_master WHERE name = 'edges'").fetchone()[0] > 0

    # -- writing ---------------------------------------------------------------------------------
    @guarded
    def start(self, spec: dict) -> None:
        """A fresh pass (tables made, any earlier graph dropped), in one transaction."""
        fresh = {**spec, "done": []}
        with self.store.db.atomic():
            for statement in SCHEMA:
                self.conn.execute(statement)
            self.conn.execute("DELETE FROM edges")
            self.conn.execute("DELETE FROM edge_partial")
            self.store._put_meta({"edges": fresh})
        self.store._meta["edges"] = fresh

    @guarded
    def commit(
        self,
        unit: int,
        fan_in: dict[str, Packed],
        fan_out: dict[tuple[int, str], Packed],
        partial: dict[tuple[int, str], Packed],
        seconds: float,
        tokens: dict[tuple[int, str], Packed] | None = None,
    ) -> None:
        """One unit: target layer ``unit``'s fan-in per read vector, the finished fan-outs and the partial ones,
        and ``tokens``: (layer, via) -> its neurons' top embedding rows."""
        spec = dict(self.spec)
        spec.update(
            done=sorted({*spec.get("done", []), int(unit)}), seconds=round(float(spec.get("seconds", 0.0)) + seconds, 3)
        )
        rows = [(unit, "in", via, *p.blobs()) for via, p in fan_in.items()]
        rows += [(layer, "out", via, *p.blobs()) for (layer, via), p in fan_out.items()]
        rows += [(layer, "tokens", via, *p.blobs()) for (layer, via), p in (tokens or {}).items()]
        with self.store.db.atomic():
            self.conn.executemany(
                "INSERT OR REPLACE INTO edges (layer, direction, via, ids, vias, weights) VALUES (?, ?, ?, ?, ?, ?)",
                rows,
            )
            self.conn.execute("DELETE FROM edge_partial")
            self.conn.executemany(
                "INSERT INTO edge_partial (layer, via, ids, vias, weights) VALUES (?, ?, ?, ?, ?)",
                ((layer, via, *p.blobs()) for (layer, via), p in partial.items()),
            )
            self.store._put_meta({"edges": spec})
        self.store._meta["edges"] = spec

    # -- reading ---------------------------------------------------------------------------------
    @guarded
    def partial(self) -> dict[tuple[int, str], Packed]:
        neurons = self.neurons
        return {
            (int(layer), via): Packed.unpack(i, v, w, neurons)
            for layer, via, i, v, w in self.conn.execute("SELECT layer, via, ids, vias, weights FROM edge_partial")
        }

    @guarded
    def neuron(self, layer: int, neuron: int, direction: str, via: str) -> Packed | None:
        """One neuron's edges (1-D arrays), or None when the graph has no such row."""
        row = self.conn.execute(
            "SELECT ids, vias, weights FROM edges WHERE layer = ? AND direction = ? AND via = ?",
            (layer, direction, via),
        ).fetchone()
        if row is None:
            return None
        packed = Packed.unpack(row[0], row[1], row[2], self.neurons)
        return Packed(packed.ids[neuron], packed.vias[neuron], packed.weights[neuron])

    @guarded
    def layer(self, layer: int, direction: str, via: str) -> Packed | None:
        row = self.conn.execute(
            "SELECT ids, vias, weights FROM edges WHERE layer = ? AND direction = ? AND via = ?",
            (layer, direction, via),
        ).fetchone()
        return None if row is None else Packed.unpack(row[0], row[1], row[2], self.neurons)

    def nbytes(self) -> int:
        """Bytes of the graph's arrays in the file (what the bench reports)."""
        row = self.conn.execute("SELECT COALESCE(SUM(LENGTH(ids) + LENGTH(vias) + LENGTH(weights)), 0) FROM edges")
        return int(row.fetchone()[0])
