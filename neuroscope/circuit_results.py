"""What ``Model.circuit`` returns: a neuron's circuit as typed records (``Circuit``, ``Edge``, ``TokenWeight``),
made from the dict of neuroscope.circuits.circuit (the CLI's --json), whose shape ``as_dict()`` gives back."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from .core.refs import NeuronRef
from .results import Records


@dataclass(frozen=True)
class Edge:
    """One neighbour of a neuron: the other end (``layer``, ``neuron``), the read vector the edge goes into
    (``via``: the downstream end's gate or up), the signed virtual weight and the other end's label."""

    layer: int
    neuron: int
    via: str
    weight: float
    label: str | None

    @property
    def ref(self) -> NeuronRef:
        return NeuronRef(self.layer, self.neuron)

    def __str__(self) -> str:
        return str(self.ref)

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class TokenWeight:
    """An input token a read vector responds to directly: E[token] · (g ⊙ r), signed."""

    token_id: int
    token: str
    weight: float

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Circuit:
    """A neuron's circuit from the weights: ``upstream`` (the earlier neurons that feed it), ``downstream`` (the
    later neurons that read what it writes), each highest |weight| first, and ``tokens`` (read vector -> the
    input tokens it responds to directly). ``as_dict()`` (or ``to_dict()``) is the CLI's --json."""

    model: str
    layer: int
    neuron: int
    upstream: list[Edge]  # Records: .to_pandas() and .as_dicts()
    downstream: list[Edge]
    tokens: dict[str, list[TokenWeight]]
    hub_id: str | None = None
    revision: str | None = None

    @property
    def ref(self) -> NeuronRef:
        return NeuronRef(self.layer, self.neuron)

    def __str__(self) -> str:
        return f"{self.model} {self.ref}: {len(self.upstream)} upstream, {len(self.downstream)} downstream"

    @classmethod
    def of(cls, out: dict, provenance: dict | None = None) -> "Circuit":
        """From neuroscope.circuits.circuit's dict (and the model's ``{"hub_id", "revision"}``)."""
        return cls(
            model=out["model"],
            layer=out["layer"],
            neuron=out["neuron"],
            upstream=Records(Edge(**e) for e in out["upstream"]),
            downstream=Records(Edge(**e) for e in out["downstream"]),
            tokens={via: Records(TokenWeight(**t) for t in rows) for via, rows in out["tokens"].items()},
            **(provenance or {}),
        )

    def as_dict(self) -> dict:
        """The CLI's --json: model, hub_id, revision, layer, neuron, upstream, downstream, tokens."""
        return {
            "model": self.model,
            "hub_id": self.hub_id,
            "revision": self.revision,
            "layer": self.layer,
            "neuron": self.neuron,
            "upstream": [e.as_dict() for e in self.upstream],
            "downstream": [e.as_dict() for e in self.downstream],
            "tokens": {via: [t.as_dict() for t in rows] for via, rows in self.tokens.items()},
        }

    to_dict = as_dict

    def to_pandas(self):
        """One row per edge: direction ("in": upstream, "out": downstream), layer, neuron, via, weight, label
        (the other end's); pandas where it is installed (UsageError naming it where not)."""
        rows = [{"direction": "in", **e.as_dict()} for e in self.upstream]
        rows += [{"direction": "out", **e.as_dict()} for e in self.downstream]
        frame = Records(rows).to_pandas()
        if frame.empty:  # no edge at all (a one-layer model): the columns all the same
            frame = frame.reindex(columns=["direction", "layer", "neuron", "via", "weight", "label"])
        return frame
