"""What a stored circuit graph is (its spec in the cache's meta) and what building one returns: torch-free, for
the builders (core.circuits.build, core.circuits.distributed) and the lookups alike."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


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
