"""The inverted token index of a cache: packing postings when a unit is written, and search over them.

``postings(token_id, layer, view, entries)`` holds, for each token, the neurons of one layer and view
whose top-k lists contain it. ``entries`` packs uint32 codes (neuron * 2 + direction), uint8 ranks
(0-based) and float32 probabilities. ``token_stats(token_id, best)`` keeps each token's highest
probability anywhere, an upper bound that lets a search stop once its result is settled.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from typing import Callable, Iterable, Sequence

import numpy as np

from ..choices import DIRECTIONS, MATCH_MODES
from ..choices import VIEWS as ALL_VIEWS
from ..errors import UsageError
from .words import SPACE_MARKERS, normalize  # noqa: F401 - re-exported


@dataclass(frozen=True)
class Hit:
    layer: int
    neuron: int
    view: str
    direction: str
    rank: int
    token_id: int
    token: str
    prob: float
    label: str | None = None  # the neuron's concept label in this view and direction (cache.labels)
    label_mass: float | None = None
    label_count: int = 0

    def as_dict(self) -> dict:
        return {
            "layer": self.layer,
            "neuron": self.neuron,
            "view": self.view,
            "direction": self.direction,
            "rank": self.rank + 1,
            "token_id": self.token_id,
            "token": self.token,
            "prob": self.prob,
            "label": self.label,
            "label_mass": self.label_mass,
        }


def pack_postings(codes: np.ndarray, ranks: np.ndarray, probs: np.ndarray) -> bytes:
    return codes.astype(np.uint32).tobytes() + ranks.astype(np.uint8).tobytes() + probs.astype(np.float32).tobytes()


def unpack_postings(blob: bytes) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    n = len(blob) // 9
    codes = np.frombuffer(blob, np.uint32, n, 0)
    ranks = np.frombuffer(blob, np.uint8, n, 4 * n)
    probs = np.frombuffer(blob, np.float32, n, 5 * n)
    return codes, ranks, probs


def unpack_many(toks: np.ndarray, layers: np.ndarray, views: np.ndarray, blobs) -> tuple[np.ndarray, ...]:
    """Unpack many posting blobs at once: per-entry token, layer, view, code, rank, prob arrays."""
    counts = np.fromiter((len(b) // 9 for b in blobs), np.int64, len(blobs))
    buf = np.frombuffer(b"".join(blobs), np.uint8)
    base = np.repeat(np.concatenate(([0], np.cumsum(counts * 9)[:-1])), counts)  # blob start per entry
    n = np.repeat(counts, counts)  # entries in its blob
    j = np.arange(len(base)) - np.repeat(np.concatenate(([0], np.cumsum(counts)[:-1])), counts)
    four = np.arange(4)
    codes = buf[(base + 4 * j)[:, None] + four].copy().view(np.uint32).ravel()
    ranks = buf[base + 4 * n + j]
    probs = buf[(base + 5 * n + 4 * j)[:, None] + four].copy().view(np.float32).ravel()
    return (np.repeat(toks, counts), np.repeat(layers, counts), np.repeat(views, counts), codes, ranks, probs)


def build_postings(units) -> list[tuple[int, bytes, float]]:
    """Invert one (layer, view)'s top-k lists (both directions) into per-token packed entries, with each
    token's highest probability."""
    tok_parts, code_parts, rank_parts, prob_parts = [], [], [], []
    for d, (ids, probs) in enumerate(units):
        n, k = ids.shape
        tok_parts.append(np.asarray(ids, np.int64).ravel())
        code_parts.append(np.repeat(np.arange(n, dtype=np.uint32) * 2 + d, k))
        rank_parts.append(np.tile(np.arange(k, dtype=np.uint8), n))
        prob_parts.append(np.asarray(probs, np.float32).ravel())
    toks = np.concatenate(tok_parts)
    order = np.argsort(toks, kind="stable")
    toks = toks[order]
    codes = np.concatenate(code_parts)[order]
    ranks = np.concatenate(rank_parts)[order]
    probs = np.concatenate(prob_parts)[order]
    uniq, starts = np.unique(toks, return_index=True)
    ends = np.append(starts[1:], len(toks))
    best = np.maximum.reduceat(probs, starts) if len(starts) else np.empty(0, np.float32)
    return [
        (int(t), pack_postings(codes[s:e], ranks[s:e], probs[s:e]), float(b))
        for t, s, e, b in zip(uniq.tolist(), starts.tolist(), ends.tolist(), best.tolist())
    ]


def match_clause(query: str, match: str) -> tuple[str, tuple]:
    """The SQL condition on the vocab table for a match mode (parameterised)."""
    if match == "exact":
        return "text = ?", (query,)
    if match == "word":
        return "norm = ?", (normalize(query),)
    if match == "prefix":
        q = normalize(query)
        return "norm >= ? AND norm < ?", (q, q + "\U0010ffff")
    if match == "contains":
        return "instr(norm, ?) > 0", (query.casefold(),)
    raise UsageError(f"unknown match mode {match!r}; choose from {', '.join(MATCH_MODES)}")


def search(
    conn: sqlite3.Connection,
    texts: Callable,
    query: str,
    match: str = "word",
    views: Sequence[str] | None = None,
    directions: Sequence[str] | None = None,
    max_rank: int = 1,
    limit: int | None = 50,
    token_ids: Iterable[int] | None = None,
) -> list[Hit]:
    """Neurons whose top ``max_rank`` tokens include a token matching ``query`` (or, given ``token_ids``,
    one of those tokens), by prob, highest first.

    Matching tokens are visited in order of their best probability anywhere (token_stats); once
    ``limit`` hits beat the next token's best, no later token can enter the result, so a query that
    matches thousands of tokens (a one-letter prefix) reads only the postings it needs."""
    if token_ids is None:
        clause, params = match_clause(query, match)
        tokens = conn.execute(
            f"SELECT v.id, s.best FROM vocab v JOIN token_stats s ON s.token_id = v.id WHERE {clause} "
            f"ORDER BY s.best DESC",
            params,
        ).fetchall()
    else:
        ids = sorted({int(i) for i in token_ids})
        tokens = []
        for at in range(0, len(ids), 500):
            part = ids[at : at + 500]
            tokens += conn.execute(
                f"SELECT token_id, best FROM token_stats WHERE token_id IN ({','.join('?' * len(part))})", part
            ).fetchall()
        tokens.sort(key=lambda r: (-r[1], r[0]))
    views = list(views or ALL_VIEWS)
    dir_codes = [DIRECTIONS.index(d) for d in (directions or DIRECTIONS)]
    parts: list[tuple[np.ndarray, ...]] = []
    found = 0
    start, batch = 0, 16
    while start < len(tokens):
        part = [t for t, _ in tokens[start : start + batch]]
        start += batch
        batch = min(batch * 2, 500)
        found += _collect(conn, part, views, dir_codes, max_rank, parts)
        if limit is not None and found >= limit:
            merged = [np.concatenate(c) for c in zip(*parts)]
            kth = np.partition(merged[5], found - limit)[found - limit]
            keep = merged[5] >= kth  # the best ``limit`` so far (ties kept)
            parts = [tuple(c[keep] for c in merged)]
            found = int(keep.sum())
            if start >= len(tokens) or kth > tokens[start][1]:
                break
    if not parts:
        return []
    tok, layer, view, codes, ranks, probs = (np.concatenate(c) for c in zip(*parts))
    # Highest prob first; ties broken by layer, neuron for a stable order.
    order = np.lexsort((codes, layer, -probs.astype(np.float64)))
    if limit is not None:
        order = order[:limit]
    shown = texts(tok[order].tolist())
    return [
        Hit(
            int(layer[i]),
            int(codes[i] >> 1),
            ALL_VIEWS[int(view[i])],
            DIRECTIONS[int(codes[i] & 1)],
            int(ranks[i]),
            int(tok[i]),
            shown[int(tok[i])],
            min(1.0, float(probs[i])),
        )
        for i in order
    ]


def _collect(conn, token_ids: list[int], views: list[str], dir_codes: list[int], max_rank: int, parts: list) -> int:
    """Append the postings of ``token_ids`` that pass the filters to ``parts``; return how many.
    All rows of the batch are unpacked at once (no per-row numpy calls)."""
    sql = (
        f"SELECT token_id, layer, view, entries FROM postings WHERE token_id IN "
        f"({','.join('?' * len(token_ids))}) AND view IN ({','.join('?' * len(views))})"
    )
    rows = conn.execute(sql, [*token_ids, *views]).fetchall()
    if not rows:
        return 0
    toks, layers, view_names, blobs = zip(*rows)
    tok, layer, view, codes, ranks, probs = unpack_many(
        np.array(toks, np.int64),
        np.array(layers, np.int64),
        np.array([ALL_VIEWS.index(v) for v in view_names], np.int64),
        blobs,
    )
    keep = ranks < max_rank
    if len(dir_codes) == 1:
        keep &= (codes & 1) == dir_codes[0]
    n = int(keep.sum())
    if n:
        parts.append((tok[keep], layer[keep], view[keep], codes[keep], ranks[keep], probs[keep]))
    return n
