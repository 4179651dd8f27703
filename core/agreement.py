"""Decode <-> behaviour agreement: how often does the weight decode name what a neuron actually responds to?

For a neuron and a view, it agrees when any token of its decoded top-k appears among the tokens at its
max-activating positions: for up and gate the activating token itself (what the neuron reads), for down
the token that follows it (what the neuron writes towards). Each example is matched against the decode of
the direction its own activation makes relevant: for down the example's sign; for a gated MLP's up and gate
the sign of that pre-activation at the example (its GLU case); for an ungated MLP's up the example's sign.
``chance`` is the same figure with every neuron's decode paired with another neuron's examples (a fixed
random permutation within the layer): what agreement would be if decode and behaviour were unrelated.
Torch-free: everything comes from the cache (decoded units and examples).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..choices import DIRECTIONS
from ..errors import UsageError

UP_POSITIVE = np.array([True, False, True, False])  # by case code: "++", "+-", "-+", "--" -> up > 0
GATE_POSITIVE = np.array([True, True, False, False])  # gate > 0


@dataclass
class LayerAgreement:
    layer: int
    agree: float
    chance: float
    neurons: int

    def as_dict(self) -> dict:
        return {"layer": self.layer, "agree": self.agree, "chance": self.chance, "neurons": self.neurons}


@dataclass
class ViewAgreement:
    view: str
    agree: float
    chance: float
    per_layer: list[LayerAgreement] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {"agree": self.agree, "chance": self.chance, "per_layer": [p.as_dict() for p in self.per_layer]}


@dataclass
class Agreement:
    model: str
    top_k: int
    per_neuron: int
    views: dict[str, ViewAgreement]
    agree: float
    chance: float

    def as_dict(self) -> dict:
        return {
            "model": self.model,
            "top_k": self.top_k,
            "per_neuron": self.per_neuron,
            "agree": self.agree,
            "chance": self.chance,
            "views": {v: a.as_dict() for v, a in self.views.items()},
        }


def _layer(store, examples, layer: int, windows: np.ndarray, views, rng) -> dict[str, tuple]:
    """Per view: (agree [n] bool, chance [n] bool, has examples [n] bool) for one layer."""
    states = examples.layer_state(layer)
    if states is None:
        return {}
    vals, pos, codes, gated = states  # [2, N, n] each
    valid = (pos >= 0) & np.isfinite(vals)
    w, t = np.divmod(np.where(valid, pos, 0), windows.shape[1])
    here = np.where(valid, windows[w, t], -1)
    following = np.where(valid & (t + 1 < windows.shape[1]), windows[w, np.minimum(t + 1, windows.shape[1] - 1)], -1)
    n = vals.shape[2]
    perm = rng.permutation(n)
    sign = np.broadcast_to(np.array([True, False])[:, None, None], vals.shape)  # pos examples, neg examples
    out = {}
    for view in views:
        tops = [store.tops(layer, view, d) for d in DIRECTIONS]
        if any(x is None for x in tops):
            continue
        decoded = np.stack([tops[0][0], tops[1][0]])  # [2 directions, n, k]
        tokens = following if view == "down" else here
        if view == "down" or not gated:
            positive = sign
        else:
            positive = (UP_POSITIVE if view == "up" else GATE_POSITIVE)[codes.astype(np.int64)]
        direction = np.where(positive, 0, 1)  # 0: the pos decode, 1: the neg decode
        out[view] = (
            _hits(decoded, direction, tokens, valid, np.arange(n)),
            _hits(decoded, direction, tokens, valid, perm),
            valid.any((0, 1)),
        )
    return out


def _hits(decoded, direction, tokens, valid, order) -> np.ndarray:
    """Per neuron i: does any of its examples' tokens appear in the decode of neuron order[i], in the direction
    that example makes relevant? decoded [2, n, k]; direction/tokens/valid [2, N, n]."""
    ids = decoded[direction, order[None, None, :]]  # [2, N, n, k]
    found = (tokens[..., None] == ids).any(-1) & valid & (tokens >= 0)
    return found.any((0, 1))


def agreement(store, examples, views=None, seed: int = 0) -> Agreement:
    """Agreement per view and layer, and overall, from a cache holding both the decode and the examples."""
    if not examples.complete:
        raise UsageError(f"{store.meta.get('name')} has no finished examples: run `neuroscope examples MODEL`")
    views = [v for v in (views or store.views) if v in store.decoded_views()]
    if not views:
        raise UsageError(f"{store.meta.get('name')} is not decoded: run `neuroscope decode MODEL`")
    windows = examples.windows()
    rng = np.random.default_rng(seed)
    per_view = {v: ViewAgreement(v, 0.0, 0.0) for v in views}
    totals = {v: [0, 0, 0] for v in views}
    for layer in range(store.layers):
        for view, (agree, chance, has) in _layer(store, examples, layer, windows, views, rng).items():
            count = int(has.sum())
            a, c = int((agree & has).sum()), int((chance & has).sum())
            per_view[view].per_layer.append(LayerAgreement(layer, a / max(1, count), c / max(1, count), count))
            totals[view] = [totals[view][0] + a, totals[view][1] + c, totals[view][2] + count]
    for view, (a, c, count) in totals.items():
        per_view[view].agree, per_view[view].chance = a / max(1, count), c / max(1, count)
    a, c, count = (sum(t[i] for t in totals.values()) for i in range(3))
    return Agreement(
        store.meta.get("name"),
        store.top_k,
        int(examples.spec["per_neuron"]),
        per_view,
        a / max(1, count),
        c / max(1, count),
    )
