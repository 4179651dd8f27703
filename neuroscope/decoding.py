"""A model's decode and its cache, for the API: the decode itself (one process or several), the cache opened
read-only (decoded first when it lacks a view), and every decoded model of a cache folder. The functions
take the API's Model (neuroscope.api), whose methods of those names call them."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Callable, Sequence

from .cache.catalog import list_caches
from .cache.store import Store
from .choices import DEFAULT_TOP_K
from .core.options import DecodeRecipe, check_top_k
from .errors import UsageError
from .results import CachedModel, Records


def cached_store(path: Path) -> Store | None:
    """Model._cached_store: the cache at ``path`` read-only when it is usable (a corrupt one raises
    CorruptCache: never replaced here)."""
    if not path.exists():
        return None
    store = Store(path, readonly=True)
    if store.ready:
        return store
    store.close()
    return None


def decode(
    model,
    views: Sequence[str] | None = None,
    top_k: int = DEFAULT_TOP_K,
    rebuild: bool = False,
    devices: Sequence[str] | None = None,
    cancel: threading.Event | None = None,
    on_unit: Callable[[int, str], None] | None = None,
    announce: bool = True,
):
    """Model.decode: the recipe checked, announced, run here or on ``devices``; returns a DecodeResult."""
    from .core.options import under_torchrun
    from .core.pipeline import ensure_decoded

    recipe = DecodeRecipe(
        top_k=check_top_k(top_k),
        views=model.info.check_views(list(views) if views else None),
        device=model.device,
        dtype=model.dtype,
    )
    views = recipe.views
    if rebuild or not model.is_decoded(views):
        if not devices:
            from .core.decode import pick_device

            pick_device(model.device)  # a missing GPU is one line before anything is said or made
        if announce:
            model.note(f"decoding {model.name} ({model.source.source}); Ctrl-C stops, finished layers are kept")
    progress, close = model._progress()
    try:
        if devices or under_torchrun():
            from .core.distributed import decode_distributed

            return decode_distributed(
                model.source,
                devices,
                recipe,
                cache_dir=model.cache_dir,
                rebuild=rebuild,
                trust_remote_code=model.trust_remote_code,
                progress=progress,
                note=model.note,
            )
        return ensure_decoded(
            model.source,
            recipe,
            info=model.info,
            cache_dir=model.cache_dir,
            rebuild=rebuild,
            trust_remote_code=model.trust_remote_code,
            progress=progress,
            note=model.note,
            cancel=cancel,
            on_unit=on_unit,
        )
    finally:
        close()


def open_store(model, view: str | None = None, check: Callable[[int, int], object] | None = None) -> Store:
    """Model.store: the cache read-only, decoding first when it lacks ``view`` (or any view), what the
    caller asks for checked by ``check(layers, neurons)`` before any decode starts."""
    cached = model._cached_store()
    if cached is not None:
        with cached:
            if view is not None and view not in cached.views:
                raise UsageError(f"{cached.meta.get('arch')} has no '{view}' view; it has {', '.join(cached.views)}")
            if check is not None:
                check(cached.layers, cached.neurons)
    if not model.is_decoded([view] if view else None):
        model.info.check_views([view] if view else None)
        if check is not None:
            check(model.info.layers, model.info.neurons)
        model.decode()
    from .concepts import ensure_labels

    ensure_labels(model.path, model.note)  # caches made before labels were kept: labelled once
    return Store(model.path, readonly=True)


def models(cache_dir=None, note: Callable[[str], None] | None = None) -> Records:
    """Every decoded model in the cache folder, most recently used first."""
    out = Records()
    for path, status in list_caches(cache_dir):
        if status is None:
            if note:
                note(f"unreadable cache file {path} (delete it, or rebuild with `neuroscope decode MODEL --rebuild`)")
            continue
        if status.get("ready"):
            out.append(
                CachedModel(
                    status["model"],
                    status["source"],
                    status["layers"],
                    status["neurons_per_layer"],
                    status["views"],
                    status["complete"],
                    status.get("last_used") or 0,
                    status.get("hub_id"),
                    status.get("revision"),
                )
            )
    return out


def views(model) -> tuple[str, ...]:
    """Model.views: the cache's views when it is there, else the headers'."""
    cached = model._cached_store()
    if cached is not None:
        with cached:
            return tuple(cached.views)
    return model.info.views
