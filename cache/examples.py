"""Max-activating examples in the model's cache file (no torch).

- ``corpus_windows(window, ids)``: the token stream the examples point into, int32 [window] per row;
- ``example_state(layer, vals, pos, codes, cases, positive)``: per layer, for both signs and every neuron
  its top-N activations (float32), their global token positions (int64) and GLU case codes (int8), stored
  neuron-major ([2, n, N]) so one neuron is one contiguous slice; plus per-neuron case counts [4, n] and
  positive-activation counts [n];
- meta ``examples``: the run's spec (corpus, tokens, window, N) and progress (windows_done, complete).

A commit (every state row and the progress) is one transaction, so an interrupted run resumes from its
last commit and never mixes two.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..choices import DIRECTIONS
from .store import Store, guarded

SCHEMA = (
    "CREATE TABLE IF NOT EXISTS corpus_windows (window INTEGER PRIMARY KEY, ids BLOB NOT NULL)",
    "CREATE TABLE IF NOT EXISTS example_state (layer INTEGER PRIMARY KEY, vals BLOB NOT NULL, pos BLOB NOT NULL, "
    "codes BLOB NOT NULL, cases BLOB, positive BLOB NOT NULL)",
)
CASES = ("++", "+-", "-+", "--")  # GLU cases (gate sign, up sign), indexed by the stored codes; "+" is > 0
SIGNS = DIRECTIONS


@dataclass(frozen=True)
class Example:
    activation: float
    position: int  # global token index into the corpus stream
    case: str | None  # the GLU case at that token ("++", "+-", "-+", "--"); None for ungated MLPs
    tokens: list[str]  # the context, as token texts
    index: int  # where the activating token is in ``tokens``

    def as_dict(self) -> dict:
        return {"activation": self.activation, "tokens": self.tokens, "index": self.index, "case": self.case}


class Examples:
    """The examples part of a cache file; ``store`` is open read-only or for writing."""

    def __init__(self, store: Store):
        self.store, self.conn = store, store.conn

    @guarded
    def create(self) -> None:
        with self.store.db.atomic():
            for statement in SCHEMA:
                self.conn.execute(statement)

    @property
    def path(self):
        return self.store.path

    @property
    def spec(self) -> dict | None:
        return self.store.meta.get("examples")

    @property
    def run_spec(self) -> dict:
        """The spec of the run this file holds, for what comes after ``start()`` (commit, the readers)."""
        spec = self.spec
        assert spec is not None, "no examples run in this cache: start() one first"
        return spec

    def has_tables(self) -> bool:
        return self.conn.execute("SELECT COUNT(*) FROM sqlite_master WHERE name = 'example_state'").fetchone()[0] > 0

    @property
    def complete(self) -> bool:
        spec = self.spec
        return bool(spec and spec.get("complete")) and self.has_tables()

    # -- writing ---------------------------------------------------------------------------------
    @guarded
    def start(self, spec: dict, windows: np.ndarray) -> None:
        """A fresh run: the corpus windows and the spec, replacing any earlier run, in one transaction."""
        with self.store.db.atomic():
            self.conn.execute("DELETE FROM corpus_windows")
            self.conn.execute("DELETE FROM example_state")
            self.conn.executemany(
                "INSERT INTO corpus_windows (window, ids) VALUES (?, ?)",
                ((i, np.ascontiguousarray(row, np.int32).tobytes()) for i, row in enumerate(windows)),
            )
            self.store._put_meta(
                {"examples": {**spec, "windows": int(len(windows)), "windows_done": 0, "complete": False}}
            )
        self.store._meta["examples"] = {**spec, "windows": int(len(windows)), "windows_done": 0, "complete": False}

    @guarded
    def commit(self, states: dict[int, dict], windows_done: int, seconds: float) -> None:
        """Every layer's state and the progress, in one transaction."""
        spec = dict(self.run_spec)
        spec.update(
            windows_done=int(windows_done),
            complete=windows_done >= spec["windows"],
            seconds=round(float(spec.get("seconds", 0.0)) + seconds, 3),
        )
        with self.store.db.atomic():
            self.conn.executemany(
                "INSERT OR REPLACE INTO example_state (layer, vals, pos, codes, cases, positive) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (
                    (
                        layer,
                        _major(a["vals"], np.float32),
                        _major(a["pos"], np.int64),
                        _major(a["case"], np.int8),
                        None if a["cases"] is None else np.ascontiguousarray(a["cases"], np.int64).tobytes(),
                        np.ascontiguousarray(a["positive"], np.int64).tobytes(),
                    )
                    for layer, a in states.items()
                ),
            )
            self.store._put_meta({"examples": spec})
        self.store._meta["examples"] = spec

    # -- reading ---------------------------------------------------------------------------------
    @guarded
    def windows(self) -> np.ndarray:
        rows = self.conn.execute("SELECT ids FROM corpus_windows ORDER BY window").fetchall()
        return np.stack([np.frombuffer(r[0], np.int32) for r in rows]) if rows else np.zeros((0, 0), np.int32)

    @guarded
    def states(self, neurons: int) -> dict[int, dict]:
        """Every layer's state in the engine's layout ([2, N, n]; core.examples.LayerState.from_numpy)."""
        per = int(self.run_spec["per_neuron"])
        out = {}
        for layer, vals, pos, codes, cases, positive in self.conn.execute("SELECT * FROM example_state"):

            def back(blob, dtype):
                return np.frombuffer(blob, dtype).reshape(2, neurons, per).transpose(0, 2, 1)

            out[int(layer)] = {
                "vals": back(vals, np.float32),
                "pos": back(pos, np.int64),
                "case": back(codes, np.int8),
                "cases": None if cases is None else np.frombuffer(cases, np.int64).reshape(4, neurons),
                "positive": np.frombuffer(positive, np.int64),
            }
        return out

    @guarded
    def layer_state(self, layer: int):
        """(vals, pos, codes) as [2 signs, N, n] arrays and whether the MLP is gated; None when not there."""
        row = self.conn.execute(
            "SELECT vals, pos, codes, cases FROM example_state WHERE layer = ?", (layer,)
        ).fetchone()
        if row is None:
            return None
        n, per = self.store.neurons, int(self.run_spec["per_neuron"])

        def back(blob, dtype):
            return np.frombuffer(blob, dtype).reshape(2, n, per).transpose(0, 2, 1)

        return back(row[0], np.float32), back(row[1], np.int64), back(row[2], np.int8), row[3] is not None

    def _slice(self, layer: int, column: str, dtype, offset: int, count: int) -> np.ndarray | None:
        row = self.conn.execute("SELECT rowid FROM example_state WHERE layer = ?", (layer,)).fetchone()
        if row is None:
            return None
        size = np.dtype(dtype).itemsize
        with self.conn.blobopen("example_state", column, row[0], readonly=True) as blob:
            blob.seek(offset * size)
            return np.frombuffer(blob.read(count * size), dtype)

    @guarded
    def neuron(self, layer: int, neuron: int, sign: str, limit: int | None = None, context: int = 24) -> list[Example]:
        """A neuron's top examples for one sign (highest |activation| first), each with its context."""
        spec = self.run_spec
        n, per, window = self.store.neurons, int(spec["per_neuron"]), int(spec["window"])
        at = (SIGNS.index(sign) * n + neuron) * per
        vals = self._slice(layer, "vals", np.float32, at, per)
        if vals is None:
            return []
        pos = self._slice(layer, "pos", np.int64, at, per)
        codes = self._slice(layer, "codes", np.int8, at, per)
        assert pos is not None and codes is not None  # the row that holds vals holds them too
        gated = self.conn.execute("SELECT cases IS NOT NULL FROM example_state WHERE layer = ?", (layer,)).fetchone()[0]
        out = []
        for value, p, code in zip(vals.tolist(), pos.tolist(), codes.tolist()):
            if p < 0 or not np.isfinite(value):
                continue
            ids, index = self.context(p, window, context)
            texts = self.store.token_texts(ids)
            out.append(
                Example(
                    value if sign == "pos" else -value,
                    p,
                    CASES[code] if gated else None,
                    [texts[i] for i in ids],
                    index,
                )
            )
            if limit is not None and len(out) >= limit:
                break
        return out

    def context(self, position: int, window: int, context: int, after: int = 3) -> tuple[list[int], int]:
        """Token ids around ``position`` inside its window (what the model saw), and its index among them."""
        w, t = divmod(position, window)
        row = self.conn.execute("SELECT ids FROM corpus_windows WHERE window = ?", (w,)).fetchone()
        ids = np.frombuffer(row[0], np.int32).tolist()
        stop = min(len(ids), t + 1 + after)
        start = max(0, stop - context)
        return ids[start:stop], t - start

    @guarded
    def next_token(self, position: int) -> int | None:
        """The token after ``position`` in its window (None at a window's end)."""
        window = int(self.run_spec["window"])
        w, t = divmod(position, window)
        if t + 1 >= window:
            return None
        row = self.conn.execute("SELECT ids FROM corpus_windows WHERE window = ?", (w,)).fetchone()
        return int(np.frombuffer(row[0], np.int32)[t + 1])

    @guarded
    def token_at(self, position: int) -> int:
        window = int(self.run_spec["window"])
        w, t = divmod(position, window)
        row = self.conn.execute("SELECT ids FROM corpus_windows WHERE window = ?", (w,)).fetchone()
        return int(np.frombuffer(row[0], np.int32)[t])

    @guarded
    def counts(self, layer: int) -> tuple[np.ndarray | None, np.ndarray] | None:
        """(case counts [4, n] or None for ungated MLPs, positive counts [n]) of one layer."""
        row = self.conn.execute("SELECT cases, positive FROM example_state WHERE layer = ?", (layer,)).fetchone()
        if row is None:
            return None
        n = self.store.neurons
        return (
            None if row[0] is None else np.frombuffer(row[0], np.int64).reshape(4, n),
            np.frombuffer(row[1], np.int64),
        )


def _major(a: np.ndarray, dtype) -> bytes:
    """[2, N, n] -> neuron-major bytes ([2, n, N])."""
    return np.ascontiguousarray(np.asarray(a, dtype).transpose(0, 2, 1)).tobytes()


def stored_spec(path) -> dict | None:
    """The examples spec the cache file at ``path`` holds (read-only, lock-free), or None."""
    if not path.exists():
        return None
    with Store(path, readonly=True) as store:
        return store.meta.get("examples") if store.ready else None
