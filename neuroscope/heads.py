"""Attention heads through the decode's lens, for the API, the CLI and the app: each head's top OV singular
directions, what they write (both signs, with a label) and what they read, from the model's cache (built there
once, on first use, with progress; core.circuits.head_build), and the heads whose directions carry a word."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from .choices import HEAD_RANKS, HEAD_TOP
from .core.refs import HeadRef
from .errors import BadHeadRef
from .results import Records

Model = Any  # neuroscope.api.Model, which calls this module: importing it here, even for typing, is a cycle


@dataclass(frozen=True)
class HeadToken:
    """One token of a head direction: ``value`` its probability (writes) or embedding weight (reads)."""

    token_id: int
    token: str
    value: float


@dataclass(frozen=True)
class HeadDirection:
    """Singular direction ``rank`` (0 = the largest) of a head's OV circuit: ``sigma``, what it writes and reads
    in each sign (``pos``: u with v, ``neg``: -u with -v), and the label of each write sign (None: no word holds
    LABEL_FLOOR of its top mass)."""

    rank: int
    sigma: float
    writes: dict[str, list[HeadToken]]
    reads: dict[str, list[HeadToken]]
    labels: dict[str, str | None]
    label_mass: dict[str, float | None]

    def as_dict(self) -> dict:
        return {
            "rank": self.rank + 1,
            "sigma": self.sigma,
            "writes": {
                d: {
                    "label": self.labels[d],
                    "label_mass": self.label_mass[d],
                    "tokens": [{"token_id": t.token_id, "token": t.token, "prob": t.value} for t in tokens],
                }
                for d, tokens in self.writes.items()
            },
            "reads": {
                d: [{"token_id": t.token_id, "token": t.token, "weight": t.value} for t in tokens]
                for d, tokens in self.reads.items()
            },
        }


@dataclass(frozen=True)
class Head:
    """``model.head("L5:H3")``: the head's top singular directions, largest first. ``as_dict()`` is the CLI's
    ``show MODEL L5:H3 --json``; ``to_pandas()`` one row per token (rank, sigma, side, direction, position,
    token_id, token, value, label)."""

    model: str
    layer: int
    head: int
    directions: list[HeadDirection]
    provenance: dict = field(default_factory=dict)

    @property
    def ref(self) -> HeadRef:
        return HeadRef(self.layer, self.head)

    def __str__(self) -> str:
        return str(self.ref)

    def as_dict(self) -> dict:
        return {
            "model": self.model,
            **{k: self.provenance.get(k) for k in ("hub_id", "revision")},
            "layer": self.layer,
            "head": self.head,
            "directions": [d.as_dict() for d in self.directions],
        }

    def rows(self) -> Records:
        out = Records()
        for d in self.directions:
            for side, lists in (("writes", d.writes), ("reads", d.reads)):
                for direction, tokens in lists.items():
                    label = d.labels[direction] if side == "writes" else None
                    for i, t in enumerate(tokens):
                        out.append(
                            {
                                "rank": d.rank + 1,
                                "sigma": d.sigma,
                                "side": side,
                                "direction": direction,
                                "position": i + 1,
                                "token_id": t.token_id,
                                "token": t.token,
                                "value": t.value,
                                "label": label,
                            }
                        )
        return out

    def to_pandas(self):
        return self.rows().to_pandas()


@dataclass(frozen=True)
class HeadMatch:
    """A search hit among the heads: head direction ``rank`` whose ``side`` (writes or reads) in ``direction``
    holds ``token`` at ``position`` (1-based), with its probability or weight and the direction's label."""

    layer: int
    head: int
    rank: int
    side: str
    direction: str
    position: int
    token_id: int
    token: str
    value: float
    label: str | None

    @property
    def ref(self) -> HeadRef:
        return HeadRef(self.layer, self.head)

    def as_dict(self) -> dict:
        return {"ref": str(self.ref), **asdict(self)}


def head_shape(model: Model) -> tuple[int, int]:
    """(layers, heads per layer): from the cached heads' spec when they are built, else from the headers (nothing
    loads, torch is not imported)."""
    from .cache.heads import stored_heads_spec

    spec = stored_heads_spec(model.path) if model.path.exists() else None
    if spec:
        return int(spec["layers"]), int(spec["heads"])
    from .core.loading.modelinfo import attention_heads

    return model.info.layers, attention_heads(model.info)


def as_head_ref(value) -> HeadRef:
    if isinstance(value, HeadRef):
        return value
    if isinstance(value, tuple) and len(value) == 2 and all(isinstance(v, int) for v in value):
        return HeadRef(*value)
    if isinstance(value, str):
        return HeadRef.parse(value)
    raise BadHeadRef(f"a head is written L5:H3, not {value!r}")


def heads_cached(model: Model) -> bool:
    """Whether the model's cache holds every head (then a head is a lookup, without torch)."""
    from .cache.heads import stored_heads_spec
    from .core.circuits.head_build import heads_spec, same_spec

    spec = stored_heads_spec(model.path) if model.path.exists() else None
    if not spec:
        return False
    want = heads_spec(int(spec["layers"]), int(spec["heads"]), HEAD_RANKS, HEAD_TOP)
    return same_spec(spec, want) and len(spec.get("done", [])) >= int(spec["layers"])


def ensure_heads(model: Model, cancel=None, announce: bool = True):
    """Every head of the model in its cache (built, or resumed, on first use); None when they were cached."""
    if heads_cached(model):
        return None
    from .core.circuits.head_build import ensure_heads as build

    with model.store():  # decoded (and labelled) first: the vocabulary and the label rules
        pass
    if announce:
        model.note(f"decoding the attention heads of {model.name} (once; Ctrl-C stops, finished layers are kept)")
    progress, close = model._progress("heads")
    try:
        return build(
            model.source,
            head_shape(model)[1],
            info=model.info,
            cache_dir=model.cache_dir,
            trust_remote_code=model.trust_remote_code,
            progress=progress,
            note=model.note,
            cancel=cancel,
        )
    finally:
        close()


def head(model: Model, ref) -> Head:
    """Model.head: the ref checked against the model (one line, nothing loaded), the heads built on first use,
    then one row read from the cache."""
    from .cache.heads import Heads
    from .cache.labels import Labels
    from .cache.postings import DIRECTIONS
    from .cache.store import Store

    ref = as_head_ref(ref).check(*head_shape(model))
    ensure_heads(model)
    with Store(model.path, readonly=True) as store:
        got = Heads(store).layer(ref.layer)
        if got is None:
            raise BadHeadRef(f"{ref} is not in the cache; decode its heads again")
        h = ref.head
        texts = store.token_texts({int(i) for a in (got.write_ids[h], got.read_ids[h]) for i in a.ravel()})
        assert got.label is not None and got.mass is not None
        names = Labels(store).keys(got.label[h].ravel()) if Labels(store).has_tables() else {}
        directions = []
        for r in range(got.sigma.shape[1]):

            def tokens(ids, values, d, r=r):
                return [HeadToken(int(i), texts[int(i)], float(v)) for i, v in zip(ids[h, r, d], values[h, r, d])]

            labels = {
                name: names.get(int(got.label[h, r, d])) if got.label[h, r, d] else None
                for d, name in enumerate(DIRECTIONS)
            }
            directions.append(
                HeadDirection(
                    r,
                    float(got.sigma[h, r]),
                    {name: tokens(got.write_ids, got.write_probs, d) for d, name in enumerate(DIRECTIONS)},
                    {name: tokens(got.read_ids, got.read_weights, d) for d, name in enumerate(DIRECTIONS)},
                    labels,
                    {name: float(got.mass[h, r, d]) if labels[name] else None for d, name in enumerate(DIRECTIONS)},
                )
            )
    return Head(model.name, ref.layer, ref.head, directions, model.provenance)


def search_heads(
    model: Model,
    text: str,
    match: str = "word",
    max_rank: int = 1,
    direction: str | None = None,
    build: bool = False,
) -> Records | None:
    """Head directions whose top ``max_rank`` tokens (writes or reads, either sign unless ``direction``) match
    ``text`` as ``search`` matches neurons' (``match="label"``: write directions labelled with its concept),
    writes first by probability, then reads by weight, each with its label. None when the heads are not in the
    cache and ``build`` is False (then nothing loads: a cached search stays a lookup)."""
    from .cache.heads import Heads
    from .cache.labels import Labels
    from .cache.postings import DIRECTIONS
    from .cache.store import Store

    if not heads_cached(model):
        if not build:
            return None
        ensure_heads(model)
    with Store(model.path, readonly=True) as store:
        heads, labels = Heads(store), Labels(store)
        directions = [direction] if direction else list(DIRECTIONS)
        if match == "label":
            concept = labels.key_id(text) if labels.has_tables() else None
            hits = [] if concept is None else heads.labelled_as(concept, directions)
        else:
            ids = set(store.match_tokens(text, match))
            if match == "word" and labels.has_tables():
                ids |= {t[0] for t in labels.match_word(text).tokens}
            hits = heads.search(ids, max_rank, directions=directions)
        texts = store.token_texts({h.token_id for h in hits})
        names = labels.keys({h.label for h in hits if h.label}) if labels.has_tables() else {}
        return Records(
            HeadMatch(
                h.layer,
                h.head,
                h.rank + 1,
                h.side,
                h.direction,
                h.position + 1,
                h.token_id,
                texts[h.token_id],
                h.value,
                names.get(h.label) if h.label else None,
            )
            for h in hits
        )
