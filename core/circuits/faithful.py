"""Is the weight graph faithful? Over the examples corpus, how often the largest neuron sources of a neuron's
exact attribution (core.circuits.attribution), at the tokens where it fires most, are among its top-k upstream
edges of the circuit graph (core.circuits.graph), for each read vector.

For a target neuron of layer L with read vector ``via``: at each of its top-activating corpus tokens (both
signs, by |activation|, from the cached examples: the window the model saw, cut after the token), the ``m``
earlier neurons with the largest |activation × w / s| are the sources; a hit is a source among the target's
top-``k`` edges by |w| for that read vector. Two baselines: chance, the fraction expected of ``m`` neurons drawn
uniformly from the L × neurons earlier ones (k / (L × neurons)), and a shuffled control, the same sources
scored against the top-k edges of another neuron of layer L drawn at random (what a neuron with large down
columns, a hub in many fan-ins, scores anywhere). Each token also reports how the |attribution| of the read
splits between earlier neurons, the embedding, attention heads and biases (what a neuron graph can explain at
all), and the share of the neurons' |attribution| that the top-k edges carry.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from ...cache.edges import Edges
from ...cache.examples import Examples
from ...cache.store import Store
from ..refs import NeuronRef
from .attribution import split

KINDS = ("neuron", "embed", "attn", "bias")


@dataclass
class Score:
    """One target neuron, one of its top tokens, one read vector."""

    layer: int
    neuron: int
    control: int  # the neuron of the same layer whose edges are the shuffled control
    via: str
    position: int  # global corpus position (cache.examples)
    activation: float  # as the attribution's forward pass computes it
    recorded: float  # as the examples run recorded it
    sources: int  # neuron sources scored (m, or fewer earlier neurons)
    hits: int  # of them, among the target's top-k edges
    control_hits: int  # ... among the control neuron's top-k edges
    chance: float  # k / (earlier neurons): the expected fraction of uniformly drawn sources
    mass: dict[str, float]  # |attribution| share per kind of source (sums to 1)
    edge_mass: float  # share of the neurons' |attribution| carried by the target's top-k edges
    control_edge_mass: float


@dataclass
class Summary:
    """Scores pooled: hit fractions (hits / sources), means of the per-token chance and shares."""

    scores: int
    faithful: float
    control: float
    chance: float
    mass: dict[str, float]
    edge_mass: float
    control_edge_mass: float

    def as_dict(self) -> dict:
        return {
            "scores": self.scores,
            "faithful": self.faithful,
            "control": self.control,
            "chance": self.chance,
            "mass": self.mass,
            "edge_mass": self.edge_mass,
            "control_edge_mass": self.control_edge_mass,
        }


def summarize(scores: list[Score]) -> Summary:
    if not scores:
        return Summary(0, float("nan"), float("nan"), float("nan"), dict.fromkeys(KINDS, float("nan")), 0.0, 0.0)
    sources = sum(s.sources for s in scores)
    return Summary(
        len(scores),
        sum(s.hits for s in scores) / sources,
        sum(s.control_hits for s in scores) / sources,
        float(np.mean([s.chance for s in scores])),
        {kind: float(np.mean([s.mass[kind] for s in scores])) for kind in KINDS},
        float(np.mean([s.edge_mass for s in scores])),
        float(np.mean([s.control_edge_mass for s in scores])),
    )


@dataclass
class Faithfulness:
    k: int
    m: int
    tokens: int  # top tokens per target neuron
    targets: list[tuple[int, int, int]]  # (layer, neuron, control neuron)
    scores: list[Score] = field(default_factory=list)

    def by_via(self) -> dict[str, Summary]:
        vias = sorted({s.via for s in self.scores})
        return {via: summarize([s for s in self.scores if s.via == via]) for via in vias}

    def by_layers(self, bands: list[tuple[int, int]]) -> dict[str, Summary]:
        """Pooled over both read vectors, per band of target layers (first, last), inclusive."""
        return {f"L{a}-L{b}": summarize([s for s in self.scores if a <= s.layer <= b]) for a, b in bands}

    def as_dict(self) -> dict:
        return {
            "k": self.k,
            "m": self.m,
            "tokens": self.tokens,
            "targets": len(self.targets),
            "all": summarize(self.scores).as_dict(),
            "via": {via: s.as_dict() for via, s in self.by_via().items()},
            "max_activation_error": max(
                (abs(s.activation - s.recorded) / max(1e-6, abs(s.recorded)) for s in self.scores), default=0.0
            ),
        }


def sample_targets(
    layers: int, neurons: int, count: int, seed: int = 0, min_layer: int = 2
) -> list[tuple[int, int, int]]:
    """``count`` (layer, neuron, control neuron) triples, seeded: layers spread evenly over min_layer .. the
    last, a random neuron in each and a different random neuron of the same layer as its control."""
    if not 0 <= min_layer < layers or neurons < 2:
        raise ValueError(f"no target layers from {min_layer} in a model of {layers} layers x {neurons} neurons")
    rng = np.random.default_rng(seed)
    span = layers - min_layer
    out = []
    for i in range(count):
        layer = min_layer + (i * span) // count if count >= span else min_layer + int(rng.integers(span))
        neuron = int(rng.integers(neurons))
        control = int((neuron + 1 + rng.integers(neurons - 1)) % neurons)
        out.append((layer, neuron, control))
    return out


def top_tokens(examples: Examples, layer: int, neuron: int, count: int) -> list[tuple[int, float]]:
    """(corpus position, recorded activation) of a neuron's ``count`` largest |activation|s, both signs."""
    both = examples.neuron(layer, neuron, "pos", count, context=1) + examples.neuron(layer, neuron, "neg", count, 1)
    both.sort(key=lambda e: -abs(e.activation))
    return [(e.position, e.activation) for e in both[:count]]


def edge_ids(edges: Edges, layer: int, neuron: int, via: str, k: int) -> np.ndarray:
    """A neuron's top-k upstream edges for one read vector, as global ids (layer * neurons + neuron)."""
    packed = edges.neuron(layer, neuron, "in", via)
    if packed is None:
        return np.zeros(0, np.int64)
    ids = packed.ids[:k].astype(np.int64)  # stored highest |weight| first
    return ids[ids >= 0]


def score_token(lm, ids: torch.Tensor, ref: NeuronRef, at: int, edges: dict, control: dict, m: int):
    """(activation, {via: (sources, hits, control hits, chance, mass, edge mass, control edge mass)}) at token
    ``at`` of ``ids``; ``edges``/``control``: per read vector, the global ids of the target's / control's edges."""
    got = split(lm, ids, ref, at)
    out = {}
    for via, sp in got.reads.items():
        fixed = {kind: sum(abs(p.value) for p in sp.fixed if p.kind == kind) for kind in KINDS[1:]}
        if sp.values is None:
            continue
        mag = sp.values.abs().flatten()  # global ids: layer * neurons + neuron
        best = mag.topk(min(m, mag.numel())).indices.cpu().numpy()
        own, other = np.asarray(edges[via], np.int64), np.asarray(control[via], np.int64)
        neuron_mass = float(mag.sum())
        total = neuron_mass + sum(fixed.values())
        mass = {"neuron": neuron_mass / total if total else 0.0} | {
            kind: v / total if total else 0.0 for kind, v in fixed.items()
        }

        out[via] = (
            len(best),
            int(np.isin(best, own).sum()),
            int(np.isin(best, other).sum()),
            len(own) / mag.numel(),
            mass,
            _carried(mag, own, neuron_mass),
            _carried(mag, other, neuron_mass),
        )
    return got.activation, out


def _carried(mag: torch.Tensor, chosen: np.ndarray, neuron_mass: float) -> float:
    """The share of the neurons' |attribution| on the ``chosen`` global ids."""
    return float(mag[torch.from_numpy(chosen).to(mag.device)].sum()) / neuron_mass if neuron_mass else 0.0


def measure(lm, store: Store, targets, tokens: int = 4, m: int = 5, k: int | None = None, progress=None):
    """Faithfulness of the graph in ``store`` (complete, with examples) for ``targets`` ((layer, neuron,
    control) triples, e.g. from ``sample_targets``): ``tokens`` top tokens each, top-``m`` neuron sources, top-
    ``k`` edges (default: every stored edge; at most the graph's top)."""
    edges, examples = Edges(store), Examples(store)
    top = int(edges.spec["top"])
    k = top if k is None else k
    if not 1 <= k <= top:
        raise ValueError(f"k must be from 1 to the graph's top ({top}), not {k}")
    window = int(examples.run_spec["window"])
    reads = list(edges.spec["reads"])
    result = Faithfulness(k, m, tokens, list(targets))
    for i, (layer, neuron, control) in enumerate(result.targets):
        own = {via: edge_ids(edges, layer, neuron, via, k) for via in reads}
        other = {via: edge_ids(edges, layer, control, via, k) for via in reads}
        for position, recorded in top_tokens(examples, layer, neuron, tokens):
            context, at = examples.context(position, window, window, after=0)  # the window, up to the token
            ids = torch.tensor([context], dtype=torch.int64)
            activation, per = score_token(lm, ids, NeuronRef(layer, neuron), at, own, other, m)
            for via, (n, hits, control_hits, chance, mass, em, cem) in per.items():
                result.scores.append(
                    Score(
                        layer,
                        neuron,
                        control,
                        via,
                        position,
                        activation,
                        recorded,
                        n,
                        hits,
                        control_hits,
                        chance,
                        mass,
                        em,
                        cem,
                    )  # fmt: skip
                )
        if progress is not None:
            progress(i + 1, len(result.targets))
    return result
