"""Decode (or resume, or find cached) every attention head of a model into its cache file, layer by layer under
the decode lock, as core.circuits.build does for the circuit graph. A cached head is a lookup without torch."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from ...cache.catalog import cache_path, decode_lock
from ...cache.heads import Heads, stored_heads_spec
from ...cache.store import Store
from ...choices import DEFAULT_TOP_K, HEAD_RANKS, HEAD_TOP
from ...errors import Cancelled
from ..loading.modelinfo import ModelInfo, inspect_model
from ..loading.sources import Source

Note = Callable[[str], None]


@dataclass
class HeadsResult:
    path: Path
    layers_done: int  # layers decoded by this call (0: they were cached)
    seconds: float


def heads_spec(layers: int, heads: int, ranks: int = HEAD_RANKS, top: int = HEAD_TOP) -> dict:
    """The spec a model's heads are stored under (meta ``heads``)."""
    return {"ranks": ranks, "top": top, "layers": layers, "heads": heads}


def same_spec(old: dict | None, spec: dict) -> bool:
    return old is not None and bool(old) and all(old.get(key) == value for key, value in spec.items())


def ensure_heads(
    source: Source,
    heads: int,
    *,
    info: ModelInfo | None = None,
    cache_dir=None,
    rebuild: bool = False,
    trust_remote_code: bool = False,
    loaded=None,
    progress: Callable[[int, int], None] | None = None,
    note: Note | None = None,
    cancel: threading.Event | None = None,
) -> HeadsResult:
    """Every head of every layer (``heads`` per layer) into the cache; resumes a stopped build; returns at once
    when all are there. ``loaded``: the model when it is loaded already (else the decode's cheapest load, which
    reads the attention matrices from the file on demand)."""
    note = note or (lambda _msg: None)
    info = info or inspect_model(source)
    spec = heads_spec(info.layers, heads)
    path = cache_path(source.name, source.source, source.fingerprint, cache_dir)
    started = time.perf_counter()
    old = None if rebuild else stored_heads_spec(path)
    if old is not None and same_spec(old, spec) and len(old.get("done", [])) >= info.layers:
        return HeadsResult(path, 0, time.perf_counter() - started)

    from ..pipeline import cache_meta
    from .heads import HeadWeights, Lens, decode_layer

    with decode_lock(path, note):
        lm = loaded or _load(source, trust_remote_code)
        store = Store(path)
        try:
            if not store.ready:
                store.initialize(cache_meta(source, info, DEFAULT_TOP_K, None), lm.token_texts())
            table = Heads(store)
            if rebuild or not same_spec(table.spec, spec) or not table.has_tables():
                table.start(spec)
            done = set(table.spec.get("done", []))
            if done:
                note(f"resuming the heads: {len(done)} of {info.layers} layers already cached")
            hw = HeadWeights(lm.adapter)
            lens = Lens(hw)
            todo = [layer for layer in range(info.layers) if layer not in done]
            if progress:
                progress(len(done), info.layers)
            for layer in todo:
                if cancel is not None and cancel.is_set():
                    raise Cancelled()
                t0 = time.perf_counter()
                got = decode_layer(hw, layer, spec["ranks"], spec["top"], lens)
                table.commit(layer, got, time.perf_counter() - t0)
                done.add(layer)
                if progress:
                    progress(len(done), info.layers)
        finally:
            store.close()
    return HeadsResult(path, len(todo), time.perf_counter() - started)


def _load(source: Source, trust_remote_code: bool):
    from ..loading.models import load_for_decode

    return load_for_decode(source, trust_remote_code=trust_remote_code)
