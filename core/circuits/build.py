"""Build (or resume, or find cached) a model's circuit graph in its cache file, unit by unit under the decode
lock, as core.pipeline does for the decode."""

from __future__ import annotations

import threading
import time
from typing import Callable, Sequence

from ...cache.catalog import cache_path, decode_lock
from ...cache.edges import stored_edges_spec
from ...cache.store import Store
from ...choices import EDGE_TOP
from ..loading.modelinfo import ModelInfo, inspect_model
from ..loading.sources import Source
from .spec import GraphResult, graph_spec, open_edges, spec_matches

Note = Callable[[str], None]


def ensure_graph(
    source: Source,
    *,
    info: ModelInfo | None = None,
    cache_dir=None,
    device: str = "auto",
    top: int = EDGE_TOP,
    rebuild: bool = False,
    trust_remote_code: bool = False,
    loaded=None,
    progress: Callable[[int, int], None] | None = None,
    note: Note | None = None,
    cancel: threading.Event | None = None,
    chunk_elements: int | None = None,
    dtype=None,
    devices: Sequence[str] | None = None,
) -> GraphResult:
    """Every neuron's top-``top`` edges into the cache; resumes a stopped pass; returns at once when it is there.
    ``loaded``: the model when it is loaded already (else the decode's cheapest load)."""
    note = note or (lambda _msg: None)
    info = info or inspect_model(source)
    spec = graph_spec(info.views, info.layers, info.neurons, top)
    path = cache_path(source.name, source.source, source.fingerprint, cache_dir)
    started = time.perf_counter()
    old = None if rebuild else stored_edges_spec(path)
    if old is not None and spec_matches(old, spec) and len(old.get("done", [])) >= info.layers - 1:
        return GraphResult(path, 0, time.perf_counter() - started, "")
    import torch  # only to build: a cached graph is a lookup, without torch

    from ..options import under_torchrun

    if devices or under_torchrun():  # one process per device (core.circuits.distributed)
        from .distributed import graph_distributed

        return graph_distributed(
            source,
            devices,
            cache_dir=cache_dir,
            top=top,
            rebuild=rebuild,
            trust_remote_code=trust_remote_code,
            chunk_elements=chunk_elements,
            dtype=dtype or torch.float32,
            progress=progress,
            note=note,
        )

    from ..decode.device import pick_device
    from .graph import CHUNK_ELEMENTS, GraphPass
    from .weights import CircuitWeights

    dev = pick_device(device)
    with decode_lock(path, note):
        lm = loaded or _load(source, trust_remote_code)
        store = Store(path)
        try:
            edges, done = open_edges(store, source, info, lm, spec, rebuild, note)
            cw = CircuitWeights(lm.adapter, dev, dtype or torch.float32)
            graph = GraphPass(cw, top, chunk_elements or CHUNK_ELEMENTS)
            todo = len(graph.units) - len(done)
            graph.run(done, edges.partial(), edges.commit, progress, cancel)
        finally:
            store.close()
    return GraphResult(path, todo, time.perf_counter() - started, str(dev))


def _load(source: Source, trust_remote_code: bool):
    from ..loading.models import load_for_decode

    return load_for_decode(source, trust_remote_code=trust_remote_code)
