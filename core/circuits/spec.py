"""What a stored circuit graph is (its spec in the cache's meta), how a pass opens its tables, and what building
one returns: torch-free, for the builders (core.circuits.build, core.circuits.distributed) and the lookups
alike."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from ...cache.edges import Edges
from ...cache.store import Store
from ...choices import DEFAULT_TOP_K


@dataclass
class GraphResult:
    path: Path
    units_done: int  # units computed by this call (0: the graph was cached)
    seconds: float
    device: str


def graph_spec(views, layers: int, neurons: int, top: int) -> dict:
    """The spec a graph of a model with these ``views`` and shape is stored under (meta ``edges``)."""
    return {"top": top, "reads": [v for v in ("gate", "up") if v in views], "layers": layers, "neurons": neurons}


def spec_matches(old: dict | None, spec: dict) -> bool:
    """Whether a stored graph's spec (None: no graph) is the one wanted."""
    if not old:
        return False
    return all(old.get(key) == value for key, value in spec.items())


def open_edges(store: Store, source, info, lm, spec: dict, rebuild: bool, note: Callable[[str], None]):
    """(the cache's edge tables, the units already done) for a pass of ``spec``: the store initialised when it is
    new, the tables started afresh unless they hold a pass of this spec (a resumed one is announced)."""
    from ..pipeline import cache_meta

    if not store.ready:
        store.initialize(cache_meta(source, info, DEFAULT_TOP_K, None), lm.token_texts())
    edges = Edges(store)
    if rebuild or not spec_matches(edges.spec, spec) or not edges.has_tables():
        edges.start(spec)
    done = set(edges.spec.get("done", []))
    if done:
        note(f"resuming the circuit graph: {len(done)} of {info.layers - 1} layers already cached")
    return edges, done
