"""From tokens to concepts, for the API: a neuron's label, the most specialised neurons, every neuron of a
concept (with the sign that pushes it into the output), the clamps of a whole concept, and search (by token
or by label). The ``*_neurons`` functions are what neuroscope.api's Model methods of those names call."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from .cache.labels import Labels, concept_key
from .choices import DIRECTIONS
from .errors import UsageError
from .results import Records, check_view_direction
from .searching import label_search, search_neurons, with_labels  # noqa: F401  (the app and the API import them here)

BY = ("score", "mass", "prob", "entropy", "copy", "suppression", "cosine")
DEFAULT_BY = "score"  # top: content concepts first (label mass x the label word's specificity, cache.words)
DEFAULT_STRENGTH = 3.0  # clamp --concept: sign x 3 x each neuron's peak (bench/concept_sweep.py, README)
DEFAULT_MIN_MASS = 0.5  # clamp --concept: the neurons whose label holds at least half their top-k mass


@dataclass(frozen=True)
class Label:
    label: str  # the concept key, e.g. "dog"
    mass: float  # the probability mass of its tokens in the top-k
    count: int  # how many top-k tokens share it
    entropy: float  # of the top-k (renormalised), nats

    def __str__(self) -> str:
        return f"{self.label} ×{self.count} {self.mass:.2f}" if self.count > 1 else f"{self.label} {self.mass:.2f}"


def neuron_label(store, layer: int, neuron: int, view: str, direction: str) -> Label | None:
    labels = Labels(store)
    got = labels.unit(layer, view, direction) if labels.has_tables() else None
    if got is None:
        return None
    key, mass, count, entropy = (a[neuron] for a in got)
    if int(key) == 0:  # no word holds LABEL_FLOOR of the top-k: no label
        return None
    return Label(labels.keys([key]).get(int(key), ""), float(mass), int(count), float(entropy))


@dataclass(frozen=True)
class ConceptNeuron:
    layer: int
    neuron: int
    view: str
    direction: str
    label_mass: float
    sign: int  # the sign an activation needs to push the concept into the output

    def as_dict(self) -> dict:
        return asdict(self)


def sign_of(view: str, direction: str) -> int:
    """down: the activation's sign writes its column's direction (pos: +1, neg: -1). up: a gated neuron's
    activation takes the up pre-activation's sign while the gate is open, so a concept read in the neg
    direction needs -1. gate: the gate opens (> 0) on a pos concept and stays shut on a neg one, so +1 / -1."""
    return 1 if direction == "pos" else -1


def _key(word) -> str:
    key = concept_key(word) if isinstance(word, str) else ""
    if not key:
        raise UsageError("the concept is empty: give a word, e.g. dog")
    return key


def _no_token_has(name: str, key: str) -> UsageError:
    return UsageError(
        f"no token of {name}'s vocabulary has the concept {key!r}, so no neuron can be labelled "
        f"with it (case, leading spaces and plurals are folded; is it a typo?)"
    )


def check_concept_word(model, word: str) -> None:
    """Before a decode: UsageError unless some token of the tokenizer has ``word``'s concept key (else no
    neuron can be labelled with it), which is cheap next to the decode it saves on a typo. A decoded model
    needs nothing here: ``concept`` checks its key table."""
    key = _key(word)
    if model.is_decoded():  # what model.store() asks before it would decode
        return
    from .core.loading.adapter import token_texts

    if not any(concept_key(t) == key for t in token_texts(model.tokenizer(), model.info.shape.vocab)):
        raise _no_token_has(model.name, key)


def concept(store, word: str, views=None, name: str = "the model") -> Records:
    """Every neuron-view labelled ``word``; UsageError for a word no token of the vocabulary has."""
    key, labels = _key(word), Labels(store)
    if labels.key_id(word) is None:
        raise _no_token_has(name, key)
    return Records(
        ConceptNeuron(layer, neuron, view, direction, mass, sign_of(view, direction))
        for layer, neuron, view, direction, mass in labels.neurons(word, views)
    )


@dataclass(frozen=True)
class Specialised:
    layer: int
    neuron: int
    view: str
    direction: str
    label: str
    label_mass: float
    count: int
    entropy: float
    prob: float  # its top-1 token's probability
    token: str  # its top-1 token
    copy: float | None = None  # read (up, pos) and write (down, pos) top-k overlap
    suppression: float | None = None  # read (up, pos) and write-against (down, neg) overlap
    cosine: float | None = None  # cosine(its up or gate row, its down column) in the weights
    score: float | None = None  # label mass x specificity of the label's word (--by score)

    def as_dict(self) -> dict:
        return asdict(self)


def overlap(a_ids, a_p, b_ids, b_p) -> np.ndarray:
    """Per neuron: sum over shared tokens of min(p_a, p_b) (0: disjoint; 1: the same distribution)."""
    out = np.zeros(a_p.shape, np.float32)
    for j in range(b_ids.shape[1]):  # k passes over [n, k], no [n, k, k] temporaries
        np.add(out, np.minimum(a_p, b_p[:, j : j + 1]), out=out, where=a_ids == b_ids[:, j : j + 1])
    return out.sum(1, dtype=np.float64)


def top(
    store,
    by: str = DEFAULT_BY,
    view: str | None = None,
    layer: int | None = None,
    limit: int = 20,
    direction: str | None = None,
    min_mass: float = 0.0,
) -> Records:
    """The most specialised neurons: by score (label mass x the specificity of its word: content words first,
    function words, numbers, single characters and special tokens last), label mass, top-1 prob, lowest
    entropy, copy / suppression or read/write cosine; only neurons whose label holds ``min_mass`` or more."""
    if by not in BY:
        raise UsageError(f"unknown --by {by!r}: choose {', '.join(BY)}")
    if layer is not None and not 0 <= layer < store.layers:
        raise UsageError(f"layer {layer} is out of range: the model has layers 0-{store.layers - 1}")
    if not isinstance(limit, int) or limit < 1:
        raise UsageError("--limit must be a whole number of at least 1")
    if not isinstance(min_mass, (int, float)) or not 0.0 <= min_mass <= 1.0:
        raise UsageError("--min-mass must be a number from 0 to 1")
    relation = by in ("copy", "suppression")
    if relation and not {"up", "down"} <= set(store.views):
        raise UsageError(f"{store.meta.get('arch')} has no up and down views to relate")
    readers = [v for v in ("up", "gate") if v in store.views]
    if by == "cosine" and (view == "down" or "down" not in store.views):
        raise UsageError("--by cosine relates a read view (up, gate) to the down view: choose --view up or gate")
    labels = Labels(store)
    words = labels.words() if by == "score" else None
    layers = [layer] if layer is not None else range(store.layers)
    views = [view] if view else (["up"] if relation else readers if by == "cosine" else store.views)
    directions = [direction] if direction else (["pos"] if relation or by == "cosine" else list(DIRECTIONS))
    rows: list[tuple[float, int, int, str, str, int, float, int, float, float | None]] = []
    for lay in layers:
        for v in views:
            for d in directions:
                got = labels.unit(lay, v, d)
                if got is None:
                    continue
                key, mass, count, entropy = got
                rel = score = None
                if relation:
                    tops, write = store.tops(lay, v, d), store.tops(lay, "down", "pos" if by == "copy" else "neg")
                    if tops is None:
                        continue
                    rel = overlap(*tops, *write) if write is not None else np.zeros(len(key))
                elif by == "cosine":
                    rel = labels.cosines(lay, v)
                    if rel is None:
                        continue
                elif by == "prob":
                    tops = store.tops(lay, v, d)
                    if tops is None:
                        continue
                    score = tops[1][:, 0]
                elif by == "score":
                    rel = mass * (words[2][words[0][key]] if words is not None else 1.0)
                    score = rel + np.minimum(count, 10) * 1e-4  # ties: the concept more tokens agree on
                score = {"mass": mass, "entropy": -entropy}.get(by, rel) if score is None else score
                assert score is not None  # each --by above gives a score or the relation it ranks
                if min_mass > 0:
                    score = np.where(mass >= min_mass, score, -np.inf)
                rows.extend(
                    (
                        float(score[i]),
                        lay,
                        int(i),
                        v,
                        d,
                        int(key[i]),
                        float(mass[i]),
                        int(count[i]),
                        float(entropy[i]),
                        None if rel is None else float(rel[i]),
                    )
                    for i in best_indices(score, limit)
                    if np.isfinite(score[i])
                )
    rows.sort(key=lambda r: (-r[0], r[1], r[2], r[3], r[4]))
    rows = rows[:limit]
    firsts = [store.tops(r[1], r[3], r[4], r[2], r[2] + 1) for r in rows]  # top-1 of the shown rows only
    keys = labels.keys([r[5] for r in rows])
    texts = store.token_texts([int(ids[0, 0]) for ids, _ in firsts])
    return Records(
        Specialised(
            r[1],
            r[2],
            r[3],
            r[4],
            keys.get(r[5], ""),
            r[6],
            r[7],
            r[8],
            float(probs[0, 0]),
            texts[int(ids[0, 0])],
            *(r[9] if by == name else None for name in ("copy", "suppression", "cosine", "score")),
        )
        for r, (ids, probs) in zip(rows, firsts)
    )


def best_indices(score: np.ndarray, limit: int) -> np.ndarray:
    """The indices of the ``limit`` highest scores, highest first, ties by index (what a stable argsort of
    -score gives, in O(n): a partition, then a sort of the few kept). NaN counts as lowest."""
    neg = -np.nan_to_num(np.asarray(score, np.float64), nan=-np.inf)
    if limit >= len(neg):
        return np.argsort(neg, kind="stable")
    kth = np.partition(neg, limit - 1)[limit - 1]
    strict = np.flatnonzero(neg < kth)
    kept = np.concatenate([strict, np.flatnonzero(neg == kth)[: limit - len(strict)]])
    return kept[np.lexsort((kept, neg[kept]))]


def missing_cosines(store) -> list[tuple[int, str]]:
    if "down" not in store.views:
        return []
    labels = Labels(store)
    return [
        (layer, v)
        for layer in range(store.layers)
        for v in ("up", "gate")
        if v in store.views and labels.cosines(layer, v) is None
    ]


def ensure_cosines(model) -> None:
    """Measure, once, every neuron's cosine between its read rows (up, gate) and its down column from the
    weights (the decode's own cheap load), into the cache; announced."""
    from .cache.catalog import decode_lock
    from .cache.store import Store

    with Store(model.path, readonly=True) as store:
        todo = missing_cosines(store)
    if not todo:
        return
    from .core.loading.models import load_for_decode

    model.note(f"measuring read/write cosines of {model.name} from its weights (once; {len(todo)} layer-views)")
    adapter = load_for_decode(model.source, trust_remote_code=model.trust_remote_code).adapter
    with decode_lock(model.path, model.note), Store(model.path) as store:
        labels = Labels(store)
        for layer, v in missing_cosines(store):
            read, write = (adapter.vectors(layer, x).float() for x in (v, "down"))
            cos = (read * write).sum(1) / (read.norm(dim=1) * write.norm(dim=1)).clamp_min(1e-30)
            with store.db.atomic():
                labels.write_cosines(layer, v, cos.numpy())


def ensure_labels(path, note) -> None:
    """Label the decoded units of a cache made before labels were kept (once, announced, under the lock)."""
    from .cache.catalog import decode_lock
    from .cache.store import Store

    if not path.exists():
        return
    with Store(path, readonly=True) as store:
        if not store.ready or not Labels(store).missing():
            return
    with decode_lock(path, note), Store(path) as store:
        store.label_missing(note)


def concept_clamps(model, word: str, strength: float, min_mass: float, views=None):
    """One clamp per neuron of the concept (its best-labelled view, down preferred), valued sign x strength x
    its natural peak for that sign: from the examples when the cache has them, else 1."""
    from .behaviour import _examples_store
    from .core.clamp import MAX_VALUE, Clamp
    from .core.refs import NeuronRef

    neurons = [c for c in model.concept(word, views) if c.label_mass >= min_mass]
    if not neurons:
        raise UsageError(
            f"no neuron of {model.name} is labelled {concept_key(word)!r} with a label mass of at least {min_mass:g}"
        )
    chosen: dict[tuple[int, int], ConceptNeuron] = {}
    for c in neurons:  # highest mass first; a down label wins over the rest
        key = (c.layer, c.neuron)
        if key not in chosen or (c.view == "down" and chosen[key].view != "down"):
            chosen[key] = c
    peaks = {}
    try:
        with _examples_store(model) as store:
            from .cache.examples import Examples

            ex = Examples(store)
            for (layer, neuron), c in chosen.items():
                got = ex.neuron(layer, neuron, "pos" if c.sign > 0 else "neg", limit=1, context=1)
                peak = abs(got[0].activation) if got else 0.0
                peaks[(layer, neuron)] = peak if peak > 0 else 1.0  # never a 0 clamp (that ablates)
    except UsageError:  # no examples: the values are sign x strength
        model.note(
            f"no examples of {model.name} are cached, so each --concept value is sign x strength; run "
            f"`neuroscope examples {model.typed_arg}` to scale each by its neuron's peak activation"
        )
    return [
        Clamp(
            NeuronRef(layer, neuron),
            max(-MAX_VALUE, min(MAX_VALUE, c.sign * strength * peaks.get((layer, neuron), 1.0))),
        )
        for (layer, neuron), c in sorted(chosen.items())
    ]


def top_neurons(
    model,
    by: str = DEFAULT_BY,
    view: str | None = None,
    layer: int | None = None,
    limit: int = 20,
    direction: str | None = None,
    min_mass: float = 0.0,
) -> Records:
    """Model.top: the arguments checked (against the cache, else the headers) before any decode."""
    check_view_direction(view, direction)
    if by not in BY:
        raise UsageError(f"unknown --by {by!r}: choose {', '.join(BY)}")
    if by == "cosine" and view == "down":
        raise UsageError("--by cosine relates a read view (up, gate) to the down view: choose --view up or gate")
    if layer is not None and (not isinstance(layer, int) or isinstance(layer, bool)):
        raise UsageError(f"layer must be a whole number, not {layer!r}")

    def check(layers: int, _neurons: int) -> None:
        if layer is not None and not 0 <= layer < layers:
            raise UsageError(f"layer {layer} is out of range: the model has layers 0-{layers - 1}")
        if not isinstance(limit, int) or isinstance(limit, bool) or limit < 1:
            raise UsageError("--limit must be a whole number of at least 1")

    with model.store(view, check=check):
        pass  # decoded (and labelled) first, once the input is checked
    if by == "cosine":
        ensure_cosines(model)
    with model.store(view) as store:
        return top(store, by, view, layer, limit, direction, min_mass)


def concept_neurons(model, word: str, views=None) -> Records:
    """Model.concept: the views and the word checked before any decode."""
    if views:
        model.info.check_views([views] if isinstance(views, str) else list(views))
    check_concept_word(model, word)  # a word no token has fails before any decode
    with model.store() as store:
        return concept(store, word, views, model.name)
