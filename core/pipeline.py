"""Decode a model into its cache file: check first, resume what is there, skip what is done, commit unit
by unit.

Order of work: the model's headers are checked (core.loading.modelinfo) and the device is found before anything
is created in the cache folder; a cache that already holds what was asked is read without a lock and
without loading the model; otherwise, under the decode lock, stale or corrupt caches are removed
(announced), meta and vocabulary are written in one transaction, and each (layer, view) is committed as
it finishes. One cache has one precision: ``--dtype auto`` continues in the cache's own, an explicit
other dtype re-decodes it (announced).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, Sequence

from ..cache.catalog import Lock, cache_path, decode_lock, remove_files, remove_stale
from ..cache.schema import RECIPE_VERSION
from ..cache.store import Store
from ..errors import CorruptCache
from .loading.modelinfo import ModelInfo, inspect_model
from .loading.provenance import provenance
from .loading.sources import Source
from .options import DecodeRecipe, check_dtype

Note = Callable[[str], None]


@dataclass
class DecodeResult:
    path: Path
    views: list[str]
    neurons: int
    seconds: float
    decoded_units: int
    device: str


def cached_views(path: Path, views: Sequence[str], top_k: int, dtype: str = "auto") -> list[str] | None:
    """The views, when the cache already holds every one of them at this top-k and precision; else None.
    Read-only and lock-free: this is all a cached ``show`` or ``search`` pays."""
    if not path.exists():
        return None
    try:
        with Store(path, readonly=True) as store:
            if not store.ready or store.top_k < top_k:
                return None
            if dtype != "auto" and store.precision not in (None, dtype):
                return None
            wanted = list(views) or store.views
            return [v for v in store.views if v in wanted] if store.has_decoded(wanted) else None
    except CorruptCache:
        return None  # the decode path removes it, under the lock, and says so


def _discard_reason(path: Path, top_k: int) -> str | None:
    """Why an existing cache file must be started again, or None to keep it. Only a corrupt file, an
    unfinished one (no vocabulary: nothing decoded) or a smaller top-k qualify; any other error is raised."""
    try:
        with Store(path, readonly=True) as old:
            if not old.ready:
                return "it was never finished (no vocabulary yet; nothing was decoded)"
            if old.top_k < top_k:
                return f"it holds top-{old.top_k}; rebuilding for top-{top_k}"
    except CorruptCache as exc:
        return f"SQLite reports it corrupt ({exc})"
    return None


def cache_meta(source: Source, info: ModelInfo, top_k: int, precision: str | None) -> dict:
    """The meta a new cache of this model starts with (the decode and the examples engine both make one)."""
    return dict(
        name=source.name,
        source=source.source,
        fingerprint=source.fingerprint,
        **provenance(source),
        recipe=RECIPE_VERSION,
        top_k=top_k,
        arch=info.arch,
        layers=info.layers,
        neurons_per_layer=info.neurons,
        hidden=info.shape.hidden,
        views=list(info.views),
        precision=precision,
        created=time.time(),
    )


def open_for_decode(
    source: Source, lm, info: ModelInfo, recipe: DecodeRecipe, auto_dtype: str, cache_dir, rebuild: bool, note: Note
):
    """Under the decode lock: drop stale, corrupt or too-small caches (announced), create meta and
    vocabulary, settle the precision and list the (layer, view) units of ``recipe.views`` (checked) still to
    decode. Returns (store, todo, precision, created)."""
    views, top_k, dtype = info.check_views(recipe.views), recipe.top_k, recipe.dtype  # the callers' list again
    path = cache_path(source.name, source.source, source.fingerprint, cache_dir)
    remove_stale(source.source, path, cache_dir, note)
    if path.exists():
        reason = "--rebuild was given" if rebuild else _discard_reason(path, top_k)
        if reason:
            remove_files(path)
            note(f"removed cache {path.name}: {reason}")
    created = not path.exists()
    texts = tables = None
    if created:  # the vocabulary's word work before the file exists (it is never half made)
        from ..cache.labels import key_tables

        texts = lm.token_texts()
        tables = key_tables(list(texts))
    store = Store(path, handoff=True)  # units are written from the decoder's writer thread
    try:
        if not store.ready:
            store.initialize(
                cache_meta(source, info, top_k, auto_dtype if dtype == "auto" else dtype),
                texts if texts is not None else lm.token_texts(),
                tables,
            )
        done = store.done_units()
        held = store.precision if done else None
        precision = held if held and dtype == "auto" else (auto_dtype if dtype == "auto" else dtype)
        if held and precision != held:
            note(f"the cache holds {held} decodes; --dtype {dtype} decodes every view again in {precision}")
            store.clear_units()
            done = set()
        if store.meta.get("precision") != precision:
            store.set_meta(precision=precision)
    except BaseException:
        store.close()
        raise
    todo = [(layer, v) for layer in range(info.layers) for v in views if (layer, v) not in done]
    if done and todo:
        note(f"resuming: {len(done)} layer-views already cached, {len(todo)} to go")
    return store, todo, precision, created


def _joined(old: str | None, new: str) -> str:
    parts = [p for p in (old or "").split(" + ") if p]
    return " + ".join(parts if new in parts else [*parts, new])


def discard_if_empty(store: Store, lock: Lock, created: bool) -> None:
    """After a failure: a cache this run created and nothing was decoded into leaves no file behind."""
    if created and not store.done_units():
        store.close()
        remove_files(store.path)
        lock.discard()


def ensure_decoded(
    source: Source,
    recipe: DecodeRecipe | None = None,
    *,
    info: ModelInfo | None = None,
    cache_dir=None,
    rebuild: bool = False,
    trust_remote_code: bool = False,
    loaded=None,
    progress: Callable[[int, int], None] | None = None,
    note: Note | None = None,
    cancel: threading.Event | None = None,
    on_unit: Callable[[int, str], None] | None = None,
) -> DecodeResult:
    """Make sure the recipe's views (None: all the architecture has) are decoded with its top-k, on its
    device in its dtype; return where they are. ``info``: the model's headers when the caller has read them;
    ``loaded``: the model when it is loaded already."""
    note = note or (lambda _msg: None)
    recipe = recipe or DecodeRecipe()
    top_k, dtype = recipe.top_k, check_dtype(recipe.dtype)
    info = info or inspect_model(source)
    views = info.check_views(recipe.views)
    recipe = replace(recipe, views=views)
    path = cache_path(source.name, source.source, source.fingerprint, cache_dir)
    started = time.perf_counter()

    def result(views, units=0, device_desc=""):
        return DecodeResult(
            path, list(views), info.layers * info.neurons, time.perf_counter() - started, units, device_desc
        )

    cached = None if rebuild else cached_views(path, views, top_k, dtype)
    if cached is not None:  # nothing to do: no lock, no model load
        return result(cached)
    from .decode import Decoder, dtype_name, pick_device, pick_dtype
    from .loading.models import load_for_decode

    dev = pick_device(recipe.device)  # a missing GPU is reported before any file is created
    auto = dtype_name(pick_dtype("auto", dev))
    with decode_lock(path, note) as lock:
        cached = None if rebuild else cached_views(path, views, top_k, dtype)
        if cached is not None:  # another process finished it while we waited
            return result(cached)
        try:
            lm = loaded or load_for_decode(source, trust_remote_code=trust_remote_code)
        except BaseException:
            if not path.exists():  # nothing was made: leave no lock file behind either
                lock.discard()
            raise
        store, todo, precision, created = open_for_decode(source, lm, info, recipe, auto, cache_dir, rebuild, note)
        device_desc = ""
        try:
            if todo:
                decoder = Decoder(lm.adapter, replace(recipe, top_k=store.top_k, device=str(dev), dtype=precision))
                device_desc = decoder.describe()
                store.set_meta(decoded_with=_joined(store.meta.get("decoded_with"), device_desc))

                def write(layer: int, view: str, pos, neg) -> None:
                    store.write_unit(layer, view, pos, neg, device_desc)
                    if on_unit is not None:
                        on_unit(layer, view)

                decoder.run(todo, write, progress, cancel)
            store.touch()
        except BaseException:
            discard_if_empty(store, lock, created)
            raise
        finally:
            store.close()
    return result(views, len(todo), device_desc)
