"""Search for the API, the CLI and the app: neurons whose top tokens match a text (the cache's token index,
cache.postings) or whose concept label is the text's concept, each hit with its neuron's label.
``search_neurons`` is what neuroscope.api's Model.search calls."""

from __future__ import annotations

from dataclasses import replace

from .cache.labels import Labels
from .choices import DEFAULT_TOP_K, SEARCH_MATCHES
from .errors import UsageError
from .results import Records, check_view_direction


def with_labels(store, hits: list) -> list:
    """Search hits with each neuron's label (in the hit's view and direction) filled in."""
    labels, units, out = Labels(store), {}, []
    if not labels.has_tables():
        return list(hits)
    for hit in hits:
        unit = (hit.layer, hit.view, hit.direction)
        if unit not in units:
            units[unit] = labels.unit(*unit)
        got = units[unit]
        if got is None:
            out.append(hit)
            continue
        if int(got[0][hit.neuron]) == 0:  # no label above the floor
            out.append(hit)
            continue
        out.append(
            replace(
                hit,
                label=int(got[0][hit.neuron]),
                label_mass=float(got[1][hit.neuron]),
                label_count=int(got[2][hit.neuron]),
            )
        )
    names = labels.keys([h.label for h in out if h.label is not None])
    return [replace(h, label=names.get(h.label, "")) if h.label is not None else h for h in out]


def label_search(store, word: str, views=None, directions=None, limit: int | None = 50) -> list:
    """``search --match label``: neurons labelled with ``word``'s concept key, highest label mass first, each
    with its top-1 token (rank 1) and label."""
    from .cache.postings import Hit

    found = [n for n in Labels(store).neurons(word, views) if not directions or n[3] in directions]
    found = found[:limit] if limit is not None else found
    tops, hits = {}, []
    for layer, neuron, view, direction, _mass in found:
        if (layer, view, direction) not in tops:
            tops[layer, view, direction] = store.tops(layer, view, direction)
        ids, probs = tops[layer, view, direction]
        hits.append(Hit(layer, neuron, view, direction, 0, int(ids[neuron, 0]), "", float(probs[neuron, 0])))
    texts = store.token_texts([h.token_id for h in hits])
    return with_labels(store, [replace(h, token=texts[h.token_id]) for h in hits])


def search_neurons(
    model,
    text: str,
    view: str | None = None,
    direction: str | None = None,
    max_rank: int = 1,
    match: str = "word",
    limit: int | None = 50,
) -> Records:
    """Model.search: every argument checked (``max_rank`` against the cached top-k) before any decode."""
    if not isinstance(text, str) or not text.strip():
        raise UsageError("TEXT is empty: give a token to search for, e.g. dog")
    if match not in SEARCH_MATCHES:
        raise UsageError(f"unknown match mode {match!r}; choose from {', '.join(SEARCH_MATCHES)}")
    check_view_direction(view, direction)
    if (
        not isinstance(max_rank, int)
        or max_rank < 1
        or (limit is not None and (not isinstance(limit, int) or limit < 1))
    ):
        raise UsageError("max_rank and limit must be whole numbers of at least 1")
    cached = model._cached_store()
    k = DEFAULT_TOP_K
    if cached is not None:
        with cached:
            k = cached.top_k
    if max_rank > k:
        raise UsageError(
            f"--max-rank {max_rank} exceeds the cached top-{k}; decode again with --top-k {max_rank} --rebuild"
        )
    views, directions = [view] if view else None, [direction] if direction else None
    with model.store(view) as store:
        if match == "label":
            return Records(label_search(store, text, views, directions, limit))
        return Records(
            with_labels(
                store,
                store.search(text, match=match, views=views, directions=directions, max_rank=max_rank, limit=limit),
            )
        )


def match_word(model, text: str):
    """Model.match_word: which tokens stand for the word ``text`` (cache.labels.WordMatch)."""
    if not isinstance(text, str) or not text.strip():
        raise UsageError("TEXT is empty: give a word, e.g. dog")
    with model.store() as store:
        return store.match_word(text)
