"""Base vs fine-tune: how much two decoded models' neuron maps agree, and which neurons changed most.

Everything here reads the two caches (top-k ids and probabilities per neuron) and, for the listed
neurons only, the two models' weight vectors. It imports no torch: weights are read straight from
safetensors files (memory-mapped, bf16/f16/f32/f64); other formats (GGUF, .bin) fall back to
``models.load`` and import torch then.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from .refs import NeuronRef
from .sources import Source

PAPER_SAME_TOP1 = 0.754   # Davies 2025: Llama-3.1-8B vs Instruct, up-projection neurons, same top-1 token


class Incompatible(ValueError):
    """The two models cannot be compared neuron by neuron; the message says what differs (one line)."""


@dataclass
class LayerAgreement:
    layer: int
    same_top1: float        # fraction of the layer's neurons whose top-1 token is the same in both
    neurons: int
    mean_jaccard: float     # mean Jaccard overlap of the top-k sets

    def as_dict(self) -> dict:
        return {"layer": self.layer, "same_top1": self.same_top1, "neurons": self.neurons}


@dataclass
class ChangedNeuron:
    layer: int
    neuron: int
    base_top: str           # top-1 token text in each model
    other_top: str
    jaccard: float          # overlap of the two top-k sets
    prob_change: float      # half the L1 distance of the top-k distributions (a token missing from one is 0)
    cosine: float | None = None   # of the two models' weight vectors for this neuron and view

    @property
    def ref(self) -> NeuronRef:
        return NeuronRef(self.layer, self.neuron)

    def as_dict(self) -> dict:
        return {"layer": self.layer, "neuron": self.neuron, "base_top": self.base_top,
                "other_top": self.other_top, "jaccard": self.jaccard, "cosine": self.cosine}


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
    changed_index: dict = field(default_factory=dict, repr=False)   # (layer, neuron) -> ChangedNeuron

    def as_dict(self) -> dict:
        return {"base": self.base, "other": self.other, "view": self.view, "direction": self.direction,
                "same_top1": self.same_top1, "mean_topk_jaccard": self.mean_topk_jaccard,
                "per_layer": [p.as_dict() for p in self.per_layer],
                "most_changed": [c.as_dict() for c in self.most_changed]}


# -- compatibility --------------------------------------------------------------------------------
def _config_shape(source: Source) -> dict | None:
    """Layers, neurons per layer and vocabulary size from config.json, without loading anything."""
    if source.kind == "gguf":
        return None
    try:
        cfg = json.loads((source.load_dir / "config.json").read_text())
    except (OSError, ValueError):
        return None
    cfg = cfg.get("text_config") or cfg
    layers = cfg.get("num_hidden_layers", cfg.get("n_layer"))
    neurons = cfg.get("intermediate_size", cfg.get("n_inner"))
    if neurons is None and cfg.get("n_embd"):
        neurons = 4 * cfg["n_embd"]           # GPT-2's default
    shape = {"layers": layers, "neurons": neurons, "vocab": cfg.get("vocab_size")}
    return shape if all(isinstance(v, int) for v in shape.values()) else None


def precheck(base: Source, other: Source) -> None:
    """Refuse before decoding anything when the configs already show different shapes or vocab sizes."""
    a, b = _config_shape(base), _config_shape(other)
    if a is None or b is None:
        return
    if (a["layers"], a["neurons"]) != (b["layers"], b["neurons"]):
        raise Incompatible(f"MLP shapes differ: {base.name} has {a['layers']} layers x {a['neurons']} neurons, "
                           f"{other.name} has {b['layers']} x {b['neurons']}; only models of one shape compare")
    if a["vocab"] != b["vocab"]:
        raise Incompatible(f"tokenizer vocabularies differ: {base.name} has {a['vocab']:,} tokens, "
                           f"{other.name} has {b['vocab']:,}; neuron maps compare only over one vocabulary")


def check_compatible(base, other, base_name: str = "BASE", other_name: str = "OTHER") -> None:
    """Both caches (Store-like) must have the same MLP shape and the same text for every token id."""
    if (base.layers, base.neurons) != (other.layers, other.neurons):
        raise Incompatible(f"MLP shapes differ: {base_name} has {base.layers} layers x {base.neurons} neurons, "
                           f"{other_name} has {other.layers} x {other.neurons}; only models of one shape compare")
    hb, ho = base.meta.get("hidden"), other.meta.get("hidden")
    if hb != ho:
        raise Incompatible(f"hidden sizes differ: {base_name} {hb}, {other_name} {ho}; weight vectors cannot be compared")
    vb, vo = int(base.meta.get("vocab", 0)), int(other.meta.get("vocab", 0))
    if vb != vo:
        raise Incompatible(f"tokenizer vocabularies differ: {base_name} has {vb:,} tokens, {other_name} has {vo:,}; "
                           f"neuron maps compare only over one vocabulary")
    differ, first = 0, None
    for start in range(0, vb, 4096):
        ids = range(start, min(vb, start + 4096))
        ta, to = base.token_texts(ids), other.token_texts(ids)
        for i in ids:
            if ta[i] != to[i]:
                differ += 1
                first = first if first is not None else (i, ta[i], to[i])
    if differ:
        i, a, b = first
        ids_have = "token id has" if differ == 1 else "token ids have"
        raise Incompatible(f"tokenizer vocabularies differ: {differ:,} of {vb:,} {ids_have} different text "
                           f"(first: id {i} is {json.dumps(a, ensure_ascii=False)} in {base_name}, "
                           f"{json.dumps(b, ensure_ascii=False)} in {other_name}); "
                           f"neuron maps compare only over one vocabulary")


# -- statistics -------------------------------------------------------------------------------------
def overlap(a_ids: np.ndarray, a_p: np.ndarray, b_ids: np.ndarray, b_p: np.ndarray):
    """Per neuron: Jaccard of the two top-k id sets and half the L1 distance of their probabilities."""
    k = a_ids.shape[1]
    match = a_ids[:, :, None] == b_ids[:, None, :]                     # [n, k, k]
    inter = match.sum((1, 2))
    jaccard = inter / (2 * k - inter)
    b_for_a = (match * b_p[:, None, :].astype(np.float64)).sum(-1)      # b's prob of each of a's tokens
    only_b = (b_p * ~match.any(1)).sum(-1)
    change = 0.5 * (np.abs(a_p - b_for_a).sum(-1) + only_b)
    return jaccard, change


def compare_stores(base, other, view: str, direction: str, top: int = 50,
                   base_source: Source | None = None, other_source: Source | None = None,
                   cosines: bool = True) -> Comparison:
    """Agreement statistics for one view and direction; the ``top`` most-changed neurons with cosines."""
    check_compatible(base, other, base_source.name if base_source else "BASE",
                     other_source.name if other_source else "OTHER")
    k = min(base.top_k, other.top_k)
    per_layer, jac_all, chg_all, same_total, n_total = [], [], [], 0, 0
    tops1 = []
    for layer in range(base.layers):
        got_a, got_b = base.tops(layer, view, direction), other.tops(layer, view, direction)
        if got_a is None or got_b is None:
            which = base_source.name if got_a is None and base_source else other_source.name if other_source else "a model"
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
    order = np.lexsort((flat, -chg, jac))                    # lowest overlap, then largest change
    order = order[(jac[order] < 1.0) | (chg[order] > 0.0)][:max(0, top)]   # never list an unchanged neuron
    ids_needed = [int(tops1[i // n][side][i % n]) for i in order for side in (0, 1)]
    texts_a, texts_b = base.token_texts(ids_needed), other.token_texts(ids_needed)
    changed = [ChangedNeuron(int(i // n), int(i % n), texts_a[int(tops1[i // n][0][i % n])],
                             texts_b[int(tops1[i // n][1][i % n])], float(jac[i]), float(chg[i]))
               for i in order]
    same_model = bool(base_source and other_source and base_source.source == other_source.source
                      and base_source.fingerprint == other_source.fingerprint)
    if cosines and changed and base_source is not None and other_source is not None:
        refs = [c.ref for c in changed]
        values = [1.0] * len(refs) if same_model else neuron_cosines(base_source, other_source, view, refs,
                                                                     base.neurons, int(base.meta["hidden"]))
        for c, value in zip(changed, values):
            c.cosine = value
    result = Comparison(base_source.name if base_source else "BASE", other_source.name if other_source else "OTHER",
                        view, direction, k, same_total / max(1, n_total), float(jac.mean()) if len(jac) else 1.0,
                        per_layer, changed, same_model)
    result.changed_index = {(c.layer, c.neuron): c for c in changed}
    return result


# -- weight vectors ---------------------------------------------------------------------------------
_PATTERNS = {  # view -> (regex on the tensor name, default layout when neurons == hidden)
    "up": [(r"layers\.(\d+)\.mlp\.up_proj\.weight$", "rows"), (r"\bh\.(\d+)\.mlp\.c_fc\.weight$", "cols"),
           (r"layers\.(\d+)\.mlp\.dense_h_to_4h\.weight$", "rows")],
    "gate": [(r"layers\.(\d+)\.mlp\.gate_proj\.weight$", "rows")],
    "down": [(r"layers\.(\d+)\.mlp\.down_proj\.weight$", "cols"), (r"\bh\.(\d+)\.mlp\.c_proj\.weight$", "rows"),
             (r"layers\.(\d+)\.mlp\.dense_4h_to_h\.weight$", "cols")],
}
_DTYPES = {"F64": np.float64, "F32": np.float32, "F16": np.float16, "BF16": np.uint16}


class SafetensorsWeights:
    """A model folder's MLP tensors, read from safetensors headers and memory-mapped on demand."""

    def __init__(self, folder: Path):
        self.entries: dict[str, tuple[Path, str, list[int], int, int]] = {}
        for file in sorted(Path(folder).glob("*.safetensors")):
            with open(file, "rb") as fh:
                size = int.from_bytes(fh.read(8), "little")
                header = json.loads(fh.read(size))
            for name, info in header.items():
                if name != "__metadata__":
                    start, end = info["data_offsets"]
                    self.entries[name] = (file, info["dtype"], info["shape"], 8 + size + start, end - start)

    def vectors(self, layer: int, view: str, neurons: Sequence[int], n: int, hidden: int) -> np.ndarray | None:
        """[len(neurons), hidden] float64 vectors, or None when the tensor is not found or not readable."""
        for pattern, layout in _PATTERNS.get(view, []):
            rx = re.compile(pattern)
            name = next((k for k in self.entries if (m := rx.search(k)) and int(m.group(1)) == layer), None)
            if name is None:
                continue
            file, dtype, shape, offset, _ = self.entries[name]
            if dtype not in _DTYPES or len(shape) != 2:
                return None
            if shape == [n, hidden] and n != hidden:
                layout = "rows"
            elif shape == [hidden, n] and n != hidden:
                layout = "cols"
            mm = np.memmap(file, dtype=_DTYPES[dtype], mode="r", offset=offset, shape=tuple(shape))
            idx = np.asarray(neurons, dtype=np.int64)
            raw = np.asarray(mm[idx] if layout == "rows" else mm[:, idx].T)
            if dtype == "BF16":
                raw = (raw.astype(np.uint32) << 16).view(np.float32)
            return raw.astype(np.float64)
        return None


def _torch_reader(loaded: dict) -> Callable:
    """Vectors through ``models.load`` (imports torch: only for GGUF / .bin models); loads each model once."""
    def read(source: Source, layer: int, view: str, neurons: Sequence[int]) -> np.ndarray:
        from .models import load

        if source.source not in loaded:
            loaded[source.source] = load(source)
        vec = loaded[source.source].adapter.vectors(layer, view)[list(neurons)]
        return vec.detach().double().cpu().numpy()
    return read


def neuron_cosines(base: Source, other: Source, view: str, refs: Sequence[NeuronRef], n: int, hidden: int,
                   vectors: Callable | None = None) -> list[float | None]:
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
