"""What a browser screen and its panes share, in one object: the model and its cache, the neuron shown in
the view and direction shown, and the one long run at a time (a decode or an examples run: they share the
progress row and the cancel event). The screen creates it and hands it to the panes that need it; they read
and set it here rather than reach into the screen."""

from __future__ import annotations

import threading

from ..cache.store import Store
from ..core.loading.sources import Source
from ..core.refs import NeuronRef
from ..errors import CacheError
from .format import tree_labels
from .heads import head_labels
from .messages import DecodeNote, progress_messages
from .options import Options, model_for
from .widgets.activity import Task


class Browsing:
    def __init__(self, source: Source, options: Options, post):
        """``post``: the screen's post_message (the engine's remarks and progress go to the screen)."""
        self.source = source
        self.options = options
        self.model = model_for(source, options, lambda text: post(DecodeNote(text)), progress_messages(post))
        self.runner = model_for(source, options)  # the whole model, loaded once: chat, probe, examples
        self.path = self.model.path
        self.store: Store | None = None
        self.current: NeuronRef | None = None
        self.view = "up"
        self.direction = "pos"
        self.cancel = threading.Event()
        self.decoding = False  # a decode or an examples run is going on
        self.progress_label = "decoding (esc cancels)"  # the progress row's label (decode or examples)
        self.waiting: Task | None = None  # a decode's or examples run's activity-line Task, until its first progress

    def open_store(self) -> str | None:
        """Open (or reopen, to see new meta) the cache read-only; ``store`` stays None while it has no meta
        yet. Returns the reason when the cache cannot be read (the screen shows it)."""
        if self.store is not None:
            self.store.close()
            self.store = None
        if not self.path.exists():
            return None
        try:
            store = Store(self.path, readonly=True)
        except CacheError as exc:
            return str(exc)
        if not store.meta.get("layers"):
            store.close()
            return None
        self.store = store
        return None

    def close(self) -> None:
        self.cancel.set()
        if self.store is not None:
            self.store.close()

    def labels(self, layer: int, neurons):
        """The tree's labels of ``neurons`` of ``layer`` (NeuronTree's LabelSource)."""
        return None if self.store is None else tree_labels(self.store, layer, self.view, self.direction, neurons)

    def head_labels(self, layer: int):
        """The tree's labels of ``layer``'s attention heads (NeuronTree's HeadSource; None: not cached)."""
        return head_labels(self.store, layer, self.direction)

    def header(self) -> str:
        """The screen's sub-title: device, size, view and direction, how far the decode is."""
        parts = []
        store = self.store
        if store is not None:
            device = store.meta.get("decoded_with") or f"{self.options.device} {self.options.dtype}"
            done, total = len(store.done_units()), store.layers * len(store.views)
            parts += [device, f"{store.layers} × {store.neurons:,} neurons"]
        else:
            device = f"{self.options.device} {self.options.dtype}"
            done, total = 0, 0
            parts.append(device)
        parts.append(f"{self.view} {self.direction}")
        if self.decoding:
            parts.append(f"decoding {done}/{total or '?'}")
        elif total and done == total:
            parts.append("decoded")
        else:
            parts.append(f"partial {done}/{total} (reopen to resume)")
        return " · ".join(parts)
