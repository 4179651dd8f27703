"""Typed messages that workers post back to the UI thread."""
from __future__ import annotations

from dataclasses import dataclass

from textual.message import Message

from ..cache.store import Hit


@dataclass
class DecodeProgress(Message):
    """Neuron vectors decoded so far in this run, out of ``total``."""

    done: int
    total: int


@dataclass
class UnitCommitted(Message):
    """One (layer, view) was written to the cache and can be shown."""

    layer: int
    view: str


@dataclass
class DecodeNote(Message):
    """A one-line remark from the engine (resuming, waiting for a lock, ...)."""

    text: str


@dataclass
class SearchResults(Message):
    """Hits for a filter query (already debounced)."""

    query: str
    match: str
    hits: list[Hit]
