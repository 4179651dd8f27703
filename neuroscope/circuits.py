"""A neuron's circuit from the weights alone: the earlier neurons that feed it, the later neurons that read what
it writes, and the input tokens its read vectors respond to directly (core.circuits). The graph is built into
the model's cache on first use (with progress), then every question is a lookup.

Labels: an upstream neuron carries its down/pos label (the edge runs through what it writes); a downstream
neuron carries the label of the read vector the edge goes into (its ``via``), pos direction.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .choices import EDGE_TOP, READS
from .errors import UsageError

Model = Any  # neuroscope.api.Model, which calls this module: importing it here, even for typing, is a cycle

DEFAULT_TOP = 20


def check_top(top: int) -> int:
    if isinstance(top, bool) or not isinstance(top, int) or not 1 <= top <= EDGE_TOP:
        raise UsageError(f"--top must be between 1 and {EDGE_TOP}, not {top}")
    return top


@dataclass(frozen=True)
class Shape:
    """What the circuit checks need of a model: from its cache's meta when it is decoded (the cache key holds
    the weights' fingerprint, so they are the model's), else from its headers."""

    arch: str
    views: tuple[str, ...]
    layers: int
    neurons: int


def model_shape(model: Model) -> Shape:
    cached = model._cached_store()
    if cached is not None:
        with cached:
            return Shape(str(cached.meta["arch"]), tuple(cached.views), cached.layers, cached.neurons)
    info = model.info
    return Shape(info.arch, tuple(info.views), info.layers, info.neurons)


def check_via(model: Model, via: str | None, shape: Shape | None = None) -> list[str]:
    """The read vectors asked for (None: every one the model has); UsageError for one it lacks."""
    shape = shape or model_shape(model)
    reads = [v for v in READS if v in shape.views]
    if via is None:
        return reads
    if via not in reads:
        raise UsageError(f"{shape.arch} has no '{via}' read vector; it has {', '.join(reads)}")
    return [via]


def graph_status(model: Model, shape: Shape | None = None) -> tuple[int, int]:
    """(layers of the circuit graph in the cache, layers it needs): built when the first is >= the second. A graph
    of another spec (top, read vectors, shape) counts as none. Reads the cache's meta only: nothing loads."""
    from .cache.edges import stored_edges_spec
    from .core.circuits.spec import graph_spec

    shape = shape or model_shape(model)
    needed = max(0, shape.layers - 1)
    spec = stored_edges_spec(model.path) or {}
    want = graph_spec(shape.views, shape.layers, shape.neurons, EDGE_TOP)
    if not spec or spec != {**spec, **want}:
        return 0, needed
    return len(spec.get("done", [])), needed


def graph_cached(model: Model, shape: Shape | None = None) -> bool:
    """Whether the model's cache holds its whole circuit graph (then every question is a lookup, no torch)."""
    done, needed = graph_status(model, shape)
    return done >= needed


def ensure_graph(model: Model, cancel=None, announce: bool = True, devices=None):
    """The model's circuit graph in its cache (built, or resumed, on first use); None when it was cached.
    ``announce``: say so first through ``model.note`` (the app shows its own progress instead). ``devices``
    (e.g. ["cuda:0", "cuda:1"]): one process per device (core.circuits.distributed; torchrun ranks too)."""
    from .core.circuits.build import ensure_graph as build

    if graph_cached(model):
        return None
    if announce:
        model.note(f"building the circuit graph of {model.name} (once; Ctrl-C stops, finished layers are kept)")
    progress, close = model._progress("circuit")
    try:
        return build(
            model.source,
            info=model.info,
            cache_dir=model.cache_dir,
            device=model.device,
            top=EDGE_TOP,
            trust_remote_code=model.trust_remote_code,
            progress=progress,
            note=model.note,
            cancel=cancel,
            devices=devices,
        )
    finally:
        close()


def circuit(model: Model, ref, top: int = DEFAULT_TOP, via: str | None = None) -> dict:
    """The circuit of one neuron as the CLI's --json (without hub_id and revision): upstream, downstream and
    tokens, each sorted by |weight|, highest first. Everything is checked before anything loads."""
    from .cache.edges import Edges
    from .cache.store import Store
    from .concepts import neuron_label

    top = check_top(top)
    neuron = model.neuron(ref)  # out of range: one line, nothing loaded
    ref = neuron.ref
    shape = model_shape(model)
    vias = check_via(model, via, shape)
    with model.store():  # decoded (and labelled) first: the neighbours' labels
        pass
    ensure_graph(model)
    n = shape.neurons
    with Store(model.path, readonly=True) as store:
        edges = Edges(store)
        reads = list(edges.spec["reads"])

        def label(layer: int, neuron_: int, view: str) -> str | None:
            got = neuron_label(store, layer, neuron_, view, "pos")
            return got.label if got else None

        def listed(rows, view_of) -> list[dict]:
            rows = sorted(rows, key=lambda r: -abs(r[3]))[:top]
            return [
                {
                    "layer": layer,
                    "neuron": neuron_,
                    "via": v,
                    "weight": round(float(w), 6),
                    "label": label(layer, neuron_, view_of(v)),
                }
                for layer, neuron_, v, w in rows
            ]

        upstream = []
        for v in vias:
            p = edges.neuron(ref.layer, ref.neuron, "in", v)
            if p is not None:
                upstream += [(int(i) // n, int(i) % n, v, float(w)) for i, w in zip(p.ids, p.weights) if i >= 0]
        downstream = []
        for v in vias:
            p = edges.neuron(ref.layer, ref.neuron, "out", v)
            if p is not None:
                downstream += [
                    (int(i) // n, int(i) % n, reads[int(k)], float(w))
                    for i, k, w in zip(p.ids, p.vias, p.weights)
                    if i >= 0
                ]
        tokens = {}
        for v in vias:
            p = edges.neuron(ref.layer, ref.neuron, "tokens", v)
            ids = [int(i) for i in p.ids[:top]] if p is not None else []
            texts = store.token_texts(ids)
            tokens[v] = (
                [
                    {"token_id": i, "token": texts.get(i, ""), "weight": round(float(w), 6)}
                    for i, w in zip(ids, p.weights[:top])
                ]
                if p is not None
                else []
            )
        return {
            "model": model.name,
            "layer": ref.layer,
            "neuron": ref.neuron,
            "upstream": listed(upstream, lambda v: "down"),
            "downstream": listed(downstream, lambda v: v),
            "tokens": tokens,
        }
