"""One neuron of a model, for the API: ``model.neuron("L29:N808")``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Protocol

from .core.refs import NeuronRef
from .results import Records, check_view_direction

if TYPE_CHECKING:
    from .cache.store import Store


class NeuronModel(Protocol):
    """What a Neuron asks of its model: neuroscope.api.Model (a Protocol here, since api imports this
    module: naming Model would be an import cycle)."""

    @property
    def views(self) -> tuple[str, ...]: ...

    def store(self, view: str | None = None, check: Callable[[int, int], object] | None = None) -> Store: ...


@dataclass
class Neuron:
    """One MLP neuron of a model: ``model.neuron("L29:N808")``."""

    model: NeuronModel  # neuroscope.api.Model
    ref: NeuronRef

    def __str__(self) -> str:
        return str(self.ref)

    def top(self, view: str = "up", direction: str = "pos") -> Records:
        """Its top-k tokens (TopToken: rank, token_id, token, prob) in one view and direction."""
        check_view_direction(view, direction)
        with self.model.store(view, check=self.ref.check) as store:
            top = store.top(self.ref.layer, self.ref.neuron, view, direction)
        assert top is not None  # store(view) decodes the view first
        return Records(top)

    def tops(self, direction: str = "pos") -> dict[str, Records]:
        """Its top-k tokens in every view the model has."""
        return {view: self.top(view, direction) for view in self.model.views}

    def examples(self, sign: str = "pos", limit: int | None = None, context: int = 24) -> Records:
        """Its max-activating examples for one sign (Example: activation, tokens, index, case), highest
        |activation| first; after ``model.examples()``."""
        from .behaviour import neuron_examples

        return neuron_examples(self.model, self.ref, sign, limit, context)

    def cases(self) -> dict:
        """How often each GLU case occurs for it over the examples' corpus, and how often it is positive."""
        from .behaviour import neuron_cases

        return neuron_cases(self.model, self.ref)

    def label(self, view: str = "up", direction: str = "pos"):
        """Its concept label in one view and direction (concepts.Label: label, mass, count, entropy)."""
        from .concepts import neuron_label

        check_view_direction(view, direction)
        with self.model.store(view, check=self.ref.check) as store:
            return neuron_label(store, self.ref.layer, self.ref.neuron, view, direction)
