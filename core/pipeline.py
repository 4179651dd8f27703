"""Decode a model into its cache file: resume what is there, skip what is done, commit unit by unit."""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

from ..cache.catalog import cache_path, decode_lock, remove_cache, remove_stale
from ..cache.store import RECIPE_VERSION, Store
from .sources import Source

Note = Callable[[str], None]


@dataclass
class DecodeResult:
    path: Path
    views: list[str]
    neurons: int
    seconds: float
    decoded_units: int
    device: str


def _check_views(views: Sequence[str], available: Sequence[str], arch: str) -> list[str]:
    missing = [v for v in views if v not in available]
    if missing:
        raise ValueError(f"{arch} has no '{missing[0]}' view; it has {', '.join(available)}")
    return [v for v in available if v in views]


def _already_decoded(path, views, top_k: int) -> tuple[list[str], int] | None:
    """(views, neurons) when the cache already holds every requested view at this top-k, else None."""
    if not path.exists():
        return None
    try:
        with Store(path, readonly=True) as store:
            wanted = list(views or store.views)
            if store.top_k < top_k or any(v not in store.views for v in wanted):
                return None
            if store.has_decoded(wanted):
                return [v for v in store.views if v in wanted], store.layers * store.neurons
    except Exception:  # unreadable: the full path below rebuilds it
        return None
    return None


def open_for_decode(source: Source, lm, views: Sequence[str] | None, top_k: int, cache_dir, rebuild: bool,
                    note: Note) -> tuple[Store, list[str], list[tuple[int, str]]]:
    """Under the decode lock: drop stale or too-small caches, create meta and vocabulary, and list the
    (layer, view) units still to decode. Returns (store, views, todo)."""
    path = cache_path(source.name, source.source, source.fingerprint, cache_dir)
    if path.exists() and not rebuild:
        try:
            with Store(path, readonly=True) as old:
                if old.top_k < top_k:
                    note(f"cache holds top-{old.top_k}; rebuilding for top-{top_k}")
                    rebuild = True
        except Exception:
            rebuild = True
    if rebuild:
        remove_cache(path)
    remove_stale(source.source, path, cache_dir, note)
    adapter = lm.adapter
    views = _check_views(views or adapter.views, adapter.views, adapter.arch)
    store = Store(path, handoff=True)  # units are written from the decoder's writer thread
    if not store.meta:
        store.set_meta(name=source.name, source=source.source, fingerprint=source.fingerprint,
                       recipe=RECIPE_VERSION, top_k=top_k, arch=adapter.arch, layers=adapter.num_layers,
                       neurons_per_layer=adapter.neurons, hidden=adapter.hidden, vocab=adapter.vocab,
                       views=adapter.views, created=time.time())
        store.write_vocab(lm.token_texts())
    done = store.done_units()
    todo = [(layer, v) for layer in range(adapter.num_layers) for v in views if (layer, v) not in done]
    if done and todo:
        note(f"resuming: {len(done)} layer-views already cached, {len(todo)} to go")
    return store, views, todo


def ensure_decoded(source: Source, views: Sequence[str] | None = None, top_k: int = 10, device: str = "auto",
                   dtype: str = "auto", cache_dir=None, rebuild: bool = False, trust_remote_code: bool = False,
                   progress: Callable[[int, int], None] | None = None, note: Note | None = None,
                   cancel: threading.Event | None = None, on_unit: Callable[[int, str], None] | None = None,
                   loaded=None) -> DecodeResult:
    """Make sure ``views`` (default: all the architecture has) are decoded; return where they are."""
    from .decode import DecodeRecipe, Decoder
    from .models import load_for_decode

    note = note or (lambda _msg: None)
    path = cache_path(source.name, source.source, source.fingerprint, cache_dir)
    started = time.perf_counter()
    with decode_lock(path, note):
        cached = None if rebuild else _already_decoded(path, views, top_k)
        if cached is not None:  # nothing to do: do not pay for loading the model
            return DecodeResult(path, cached[0], cached[1], time.perf_counter() - started, 0, "")
        lm = loaded or load_for_decode(source, trust_remote_code=trust_remote_code)
        store, views, todo = open_for_decode(source, lm, views, top_k, cache_dir, rebuild, note)
        device_desc = ""
        try:
            if todo:
                decoder = Decoder(lm.adapter, DecodeRecipe(top_k=store.top_k, views=views, device=device,
                                                           dtype=dtype))
                device_desc = decoder.describe()
                store.set_meta(decoded_with=device_desc)

                def write(layer: int, view: str, pos, neg) -> None:
                    store.write_unit(layer, view, pos, neg)
                    if on_unit is not None:
                        on_unit(layer, view)

                decoder.run(todo, write, progress, cancel)
            store.touch()
        finally:
            store.close()
    adapter = lm.adapter
    return DecodeResult(path, views, adapter.num_layers * adapter.neurons, time.perf_counter() - started,
                        len(todo), device_desc)
