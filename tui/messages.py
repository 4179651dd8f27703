"""Typed messages that workers post back to the UI thread."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from textual.message import Message

from ..cache.store import Hit

if TYPE_CHECKING:  # the engine's types only: this module never imports torch
    from ..core.agreement import Agreement
    from ..core.circuits.attribution import Attribution
    from ..core.clamp import Clamp
    from ..core.compare import Comparison
    from ..core.measure import Activation
    from ..core.refs import NeuronRef
    from .widgets.activity import Task


@dataclass
class DecodeProgress(Message):
    """Neuron vectors decoded so far in this run, out of ``total``."""

    done: int
    total: int


def progress_messages(post, every_s: float = 0.1):
    """The API's progress factory (label -> (progress, close)): ``post`` gets a DecodeProgress at the first
    and last step and at most every ``every_s`` seconds between."""
    import time

    def factory(_label: str):
        last = [0.0]

        def progress(done: int, total: int) -> None:
            now = time.monotonic()
            if done in (0, total) or now - last[0] >= every_s:
                last[0] = now
                post(DecodeProgress(done, total))

        return progress, lambda: None

    return factory


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
    """Hits for a filter query (already debounced; an empty query clears the results). In compare mode
    ``where[i]`` is "both", "base" or "other": which model hit i came from (None in the browser)."""

    query: str
    match: str
    hits: list[Hit]
    where: list[str] | None = None


@dataclass
class ClampSuggestion(Message):
    """A neuron's natural activation on the chat prompt, and a clamp value suggested from it."""

    ref: NeuronRef
    activation: Activation | None  # None when it could not be measured
    suggested: float
    prompt: str
    task: Task | None = None  # the activity line's Task; a cancelled one is dropped


@dataclass
class ChatStream(Message):
    """New reply text for one side ("baseline" or "clamped"), batched every ~50 ms."""

    side: str
    text: str


@dataclass
class ChatProb(Message):
    """p(target's first token) after the prompt for one side."""

    side: str
    token: str
    prob: float


@dataclass
class ChatFinished(Message):
    """A generation ended: normally, or cancelled with ``escape``."""

    cancelled: bool


@dataclass
class CompareStatus(Message):
    """Compare mode: a one-line state of the other model (decoding, waiting, comparing)."""

    text: str


@dataclass
class CompareReady(Message):
    """Compare mode: the statistics for one view and direction (a core.compare.Comparison)."""

    comparison: Comparison


@dataclass
class CompareFailed(Message):
    """Compare mode: the models cannot be compared (different vocabularies or shapes)."""

    text: str


@dataclass
class ProbeResult(Message):
    """The selected neuron's activation on each token of the probe's text."""

    ref: NeuronRef
    tokens: list[str]
    values: list[float]
    task: Task | None = None  # the activity line's Task; a cancelled one is dropped
    text: str = ""  # the text probed (what "why it fired" explains)


@dataclass
class WhyFiredResult(Message):
    """Why the neuron fired at token ``index`` of the probe's ``text``: its reads split into their sources (a
    core.circuits.attribution.Attribution)."""

    ref: NeuronRef
    text: str
    index: int
    attribution: Attribution
    task: Task | None = None  # the activity line's Task; a cancelled one is dropped


@dataclass
class AgreementReady(Message):
    """The decode <-> behaviour agreement (a core.agreement.Agreement)."""

    agreement: Agreement


@dataclass
class ExamplesDone(Message):
    """An examples run finished ("done") or was cancelled ("cancelled")."""

    outcome: str


@dataclass
class ConceptClamps(Message):
    """The clamps of every neuron labelled with a concept (for the basket)."""

    word: str
    clamps: list[Clamp]


@dataclass
class CircuitReady(Message):
    """A neuron's circuit (neuroscope.circuits.circuit's dict), or None when the graph is not built: then
    ``built`` says how far it is, (layers done, layers needed)."""

    ref: NeuronRef
    circuit: dict | None
    built: tuple[int, int] = (0, 0)


@dataclass
class GraphDone(Message):
    """A circuit-graph build finished ("done"), was cancelled ("cancelled") or failed ("failed")."""

    outcome: str
