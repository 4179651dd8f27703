"""Base vs fine-tune: how much two decoded models' neuron maps agree, and which neurons changed most.

Everything here reads the two caches (top-k ids and probabilities per neuron) and, for the listed
neurons only, the two models' weight vectors. It imports no torch: weights are read straight from
safetensors files (memory-mapped, bf16/f16/f32/f64); other formats (GGUF, .bin) fall back to
``models.load`` and import torch then.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from ..errors import Incompatible
from .arch import by_weight_names
from .loading.modelinfo import ModelInfo, inspect_model
from .loading.sources import Source
from .loading.weights import SafetensorsIndex, has_safetensors
from .refs import NeuronRef

__all__ = ["Incompatible", "compare_stores", "neuron_cosines", "precheck"]

PAPER_SAME_TOP1 = 0.754  # Davies 2025: Llama-3.1-8B vs Instruct, up-projection neurons, same top-1 token


@dataclass
class LayerAgreement:
    layer: int
    same_top1: float  # fraction of the layer's neurons whose top-1 token is the same in both
    neurons: int
    mean_jaccard: float  # mean Jaccard overlap of the top-k sets

    def as_dict(self) -> dict:
        return {"layer": self.layer, "same_top1": self.same_top1, "neurons": self.neurons}


@dataclass
class ChangedNeuron:
    layer: int
    neuron: int
    base_top: str  # top-1 token text in each model
    other_top: str
    jaccard: float  # overlap of the two top-k sets
    prob_change: float  # half the L1 distance of the top-k distributions (a token missing from one is 0)
    cosine: float | None = None  # of the two models' weight vectors for this neuron and view

    @property
    def ref(self) -> NeuronRef:
        return NeuronRef(self.layer, self.neuron)

    def as_dict(self) -> dict:
        return {
            "layer": self.layer,
            "neuron": self.neuron,
            "base_top": self.base_top,
            "other_top": self.other_top,
            "jaccard": self.jaccard,
            "prob_change": self.prob_change,
            "cosine": self.cosine,
        }


@dataclass
class Comparison:
    base: str
    other: str
    view: str
    direction: str
    top_k: int
    same_top1: float
    mean_topk_jaccard: float
    per_layer: list[LayerAgreement]
    most_changed: list[ChangedNeuron]
    same_model: bool = False
    changed_index: dict = field(default_factory=dict, repr=False)  # (layer, neuron) -> ChangedNeuron

    def as_dict(self) -> dict:
        return {
            "base": self.base,
            "other": self.other,
            "view": self.view,
            "direction": self.direction,
            "same_top1": self.same_top1,
            "mean_topk_jaccard": self.mean_topk_jaccard,
            "per_layer": [p.as_dict() for p in self.per_layer],
            "most_changed": [c.as_dict() for c in self.most_changed],
        }


# -- compatibility --------------------------------------------------------------------------------
def precheck(base: ModelInfo | Source, other: ModelInfo | Source) -> None:
    """Refuse before decoding anything when the headers already show different shapes or vocab sizes."""
    base, other = (m if isinstance(m, ModelInfo) else inspect_model(m) for m in (base, other))
    a, b = base.shape, other.shape
    if (a.layers, a.neurons) != (b.layers, b.neurons):
        raise Incompatible(
            f"MLP shapes differ: {base.source.name} has {a.layers} layers x {a.neurons} neurons, "
            f"{other.source.name} has {b.layers} x {b.neurons}; only models of one shape compare"
        )
    if a.vocab != b.vocab:
        raise Incompatible(
            f"tokenizer vocabularies differ: {base.source.name} has {a.vocab:,} tokens, "
            f"{other.source.name} has {b.vocab:,}; neuron maps compare only over one vocabulary"
        )


def check_compatible(base, other, base_name: str = "BASE", other_name: str = "OTHER") -> None:
    """Both caches (Store-like) must have the same MLP shape and the same text for every token id."""
    if (base.layers, base.neurons) != (other.layers, other.neurons):
        raise Incompatible(
            f"MLP shapes differ: {base_name} has {base.layers} layers x {base.neurons} neurons, "
            f"{other_name} has {other.layers} x {other.neurons}; only models of one shape compare"
        )
    hb, ho = base.meta.get("hidden"), other.meta.get("hidden")
    if hb != ho:
        raise Incompatible(
            f"hidden sizes differ: {base_name} {hb}, {other_name} {ho}; weight vectors cannot be compared"
        )
    vb, vo = int(base.meta.get("vocab", 0)), int(other.meta.get("vocab", 0))
    if vb != vo:
        raise Incompatible(
            f"tokenizer vocabularies differ: {base_name} has {vb:,} tokens, {other_name} has {vo:,}; "
            f"neuron maps compare only over one vocabulary"
        )
    differ, first = 0, None
    for start in range(0, vb, 4096):
        ids = range(start, min(vb, start + 4096))
        ta, to = base.token_texts(ids), other.token_texts(ids)
        for i in ids:
            if ta[i] != to[i]:
                differ += 1
                first = first if first is not None else (i, ta[i], to[i])
    if first is not None:  # some id differs
        i, a, b = first
        ids_have = "token id has" if differ == 1 else "token ids have"
        raise Incompatible(
            f"tokenizer vocabularies differ: {differ:,} of {vb:,} {ids_have} different text "
            f"(first: id {i} is {json.dumps(a, ensure_ascii=False)} in {base_name}, "
            f"{json.dumps(b, ensure_ascii=False)} in {other_name}); "
            f"neuron maps compare only over one vocabulary"
        )


# -- statistics -------------------------------------------------------------------------------------
def overlap(a_ids: np.ndarray, a_p: np.ndarray, b_ids: np.ndarray, b_p: np.ndarray):
    """Per neuron: Jaccard of the two top-k id sets and half the L1 distance of their probabilities."""
    k = a_ids.shape[1]
    match = a_ids[:, :, None] == b_ids[:, None, :]  # [n, k, k]
    inter = match.sum((1, 2))
    jaccard = inter / (2 * k - inter)
    b_for_a = (match * b_p[:, None, :].astype(np.float64)).sum(-1)  # b's prob of each of a's tokens
    only_b = (b_p * ~match.any(1)).sum(-1)
    change = 0.5 * (np.abs(a_p - b_for_a).sum(-1) + only_b)
    return jaccard, change


def compare_stores(
    base,
    other,
    view: str,
    direction: str,
    top: int = 50,
    base_source: Source | None = None,
    other_source: Source | None = None,
    cosines: bool = True,
) -> Comparison:
    """Agreement statistics for one view and direction; the ``top`` most-changed neurons with cosines."""
    check_compatible(
        base, other, base_source.name if base_source else "BASE", other_source.name if other_source else "OTHER"
    )
    k = min(base.top_k, other.top_k)
    per_layer, jac_all, chg_all, same_total, n_total = [], [], [], 0, 0
    tops1 = []
    for layer in range(base.layers):
        got_a, got_b = base.tops(layer, view, direction), other.tops(layer, view, direction)
        if got_a is None or got_b is None:
            which = (
                base_source.name if got_a is None and base_source else other_source.name if other_source else "a model"
            )
            raise Incompatible(f"layer {layer} {view} is not decoded in {which}; decode it first")
        a_ids, a_p = got_a[0][:, :k], got_a[1][:, :k]
        b_ids, b_p = got_b[0][:, :k], got_b[1][:, :k]
        same = a_ids[:, 0] == b_ids[:, 0]
        jac, chg = overlap(a_ids, a_p, b_ids, b_p)
        per_layer.append(LayerAgreement(layer, float(same.mean()), len(same), float(jac.mean())))
        same_total += int(same.sum())
        n_total += len(same)
        jac_all.append(jac)
        chg_all.append(chg)
        tops1.append((a_ids[:, 0], b_ids[:, 0]))
    jac = np.concatenate(jac_all)
    chg = np.concatenate(chg_all)
    n = base.neurons
    flat = np.arange(len(jac))
    order = np.lexsort((flat, -chg, jac))  # lowest overlap, then largest change
    order = order[(jac[order] < 1.0) | (chg[order] > 0.0)][: max(0, top)]  # never list an unchanged neuron
    ids_needed = [int(tops1[i // n][side][i % n]) for i in order for side in (0, 1)]
    texts_a, texts_b = base.token_texts(ids_needed), other.token_texts(ids_needed)
    changed = [
        ChangedNeuron(
            int(i // n),
            int(i % n),
            texts_a[int(tops1[i // n][0][i % n])],
            texts_b[int(tops1[i // n][1][i % n])],
            float(jac[i]),
            float(chg[i]),
        )
        for i in order
    ]
    same_model = bool(
        base_source
        and other_source
        and base_source.source == other_source.source
        and base_source.fingerprint == other_source.fingerprint
    )
    if cosines and changed and base_source is not None and other_source is not None:
        refs = [c.ref for c in changed]
        values = (
            [1.0] * len(refs)
            if same_model
            else neuron_cosines(base_source, other_source, view, refs, base.neurons, int(base.meta["hidden"]))
        )
        for c, value in zip(changed, values):
            c.cosine = value
    result = Comparison(
        base_source.name if base_source else "BASE",
        other_source.name if other_source else "OTHER",
        view,
        direction,
        k,
        same_total / max(1, n_total),
        float(jac.mean()) if len(jac) else 1.0,
        per_layer,
        changed,
        same_model,
    )
    result.changed_index = {(c.layer, c.neuron): c for c in changed}
    return result


# -- weight vectors ---------------------------------------------------------------------------------
class SafetensorsWeights:
    """A model folder's MLP vectors, read from its safetensors files through a memory map (no torch); the
    tensor names and layouts come from the architecture registry."""

    def __init__(self, folder: Path):
        folder = Path(folder)
        self.index = SafetensorsIndex(folder) if has_safetensors(folder) else None
        self.family = None if self.index is None else by_weight_names(lambda name: self.index.key(name) is not None)

    def vectors(self, layer: int, view: str, neurons: Sequence[int], n: int, hidden: int) -> np.ndarray | None:
        """[len(neurons), hidden] float64 vectors, or None when the tensor is not found or not readable."""
        if self.index is None or self.family is None or view not in self.family.modules:
            return None
        return self.index.rows(self.family.weight_name(layer, view), neurons, self.family.layouts[view])


def _torch_reader(loaded: dict) -> Callable:
    """Vectors through ``models.load`` (imports torch: only for GGUF / .bin models); loads each model once."""

    def read(source: Source, layer: int, view: str, neurons: Sequence[int]) -> np.ndarray:
        from .loading.models import load

        if source.source not in loaded:
            loaded[source.source] = load(source)
        vec = loaded[source.source].adapter.vectors(layer, view)[list(neurons)]
        return vec.detach().double().cpu().numpy()

    return read


def neuron_cosines(
    base: Source,
    other: Source,
    view: str,
    refs: Sequence[NeuronRef],
    n: int,
    hidden: int,
    vectors: Callable | None = None,
) -> list[float | None]:
    """Cosine similarity of each neuron's weight vector (one view) in the two models."""
    readers = [SafetensorsWeights(s.load_dir) for s in (base, other)]
    by_layer: dict[int, list[int]] = {}
    for pos, ref in enumerate(refs):
        by_layer.setdefault(ref.layer, []).append(pos)
    out: list[float | None] = [None] * len(refs)
    vectors = vectors or _torch_reader({})
    for layer, positions in sorted(by_layer.items()):
        neurons = [refs[p].neuron for p in positions]
        pair = []
        for reader, source in zip(readers, (base, other)):
            vec = reader.vectors(layer, view, neurons, n, hidden)
            pair.append(vec if vec is not None else vectors(source, layer, view, neurons))
        a, b = pair
        denom = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
        cos = np.where(denom > 0, (a * b).sum(1) / np.where(denom > 0, denom, 1), 0.0)
        for p, value in zip(positions, cos.tolist()):
            out[p] = float(value)
    return out
