"""How tokens, probabilities and neurons are drawn. Everything returns rich Text (never markup: a token
such as ``[b]`` must show as typed). Every token or label the app prints goes through show_token, and
every probability or mass through prob_text (never above 1)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from rich.text import Text

from ..cache.labels import LABEL_FLOOR
from ..cache.postings import DIRECTIONS

if TYPE_CHECKING:
    from ..cache.store import Store

EIGHTHS = " ▏▎▍▌▋▊▉█"
SIGN = {"pos": "+", "neg": "−"}


def show_token(token: str) -> str:
    """A token as one visible line: escapes like JSON, a leading space shown as ␣."""
    body = json.dumps(token, ensure_ascii=False)[1:-1].replace('\\"', '"')
    body = "".join(c if c.isprintable() or c == " " else f"\\u{ord(c):04x}" for c in body)  # U+00A0, U+200B
    stripped = body.lstrip(" ")
    return "␣" * (len(body) - len(stripped)) + stripped


def bar(prob: float, width: int = 20) -> str:
    """A horizontal bar of ``width`` cells with eighth-cell resolution."""
    eighths = int(round(max(0.0, min(1.0, prob)) * width * 8))
    full, part = divmod(eighths, 8)
    return ("█" * full + (EIGHTHS[part] if part else "")).ljust(width)


def prob_text(prob: float) -> str:
    """A probability or mass for the screen: float rounding never shows one above 1."""
    prob = min(1.0, prob)
    return f"{prob:.3f}" if prob >= 0.001 else f"{prob:.0e}"


def where_mark(view: str, direction: str) -> str:
    """Where a tree label comes from, compactly: the view's initial and the direction's sign (u−: up neg)."""
    return f"{view[0]}{SIGN[direction]}"


@dataclass(frozen=True)
class TreeLabel:
    """What the tree shows after a neuron: its strongest concept label over all views and directions (with
    where it is strongest), or, where no label reaches LABEL_FLOOR, the top-1 token of the view shown."""

    text: str  # the label ("dog ×7") or the token's raw text
    value: float  # label mass or token probability
    where: str = ""  # where_mark of the label; "" for a token
    token: bool = False


def neuron_label(
    layer: int, neuron: int, label: TreeLabel | None, sort_value: str | None = None, width: int = 0
) -> Text:
    """``sort_value``: the key a sorted layer is in order of, shown as a column after the neuron (its name
    padded to ``width``), before the label, so it is never cut off."""
    text = Text(f"L{layer}:N{neuron}".ljust(width if sort_value is not None else 0), style="bold")
    if sort_value is not None:
        text.append(f" {sort_value:>6}", style="bold magenta")
        text.append(" │", style="dim")
    if label is None:
        text.append(" …", style="dim")
    elif label.token:  # no label: the top-1 token, quoted and dim
        text.append(f" “{show_token(label.text)[:20]}”", style="dim green")
        text.append(f" {prob_text(label.value)}", style="dim")
    else:  # where first: a narrow tree cuts the label's end, not it
        text.append(f" {label.where} ", style="cyan")
        text.append(show_token(label.text)[:20], style="green")
        text.append(f" {min(1.0, label.value):.2f}", style="dim")
    return text


def concept_labels(store, layer: int, view: str, direction: str, neurons):
    """("dog ×7", 0.93) per neuron from the cache's concept labels (None where a neuron's top-k has no
    letters or digits to label, or its label holds less than LABEL_FLOOR); None when the cache has no
    labels."""
    from ..cache.labels import Labels

    labels = Labels(store)
    got = labels.unit(layer, view, direction) if labels.has_tables() else None
    if got is None:
        return None
    keys, masses, counts = (a[list(neurons)] for a in got[:3])
    names = labels.keys(keys.tolist())
    return [
        None if not names.get(int(k)) or m < LABEL_FLOOR else (_named(names[int(k)], c), min(1.0, float(m)))
        for k, m, c in zip(keys.tolist(), masses.tolist(), counts.tolist())
    ]


def _named(key: str, count: int) -> str:
    return f"{key} ×{count}" if count > 1 else key


def tree_labels(
    store: Store, layer: int, view: str, direction: str, neurons: range | Sequence[int]
) -> list[TreeLabel | None] | None:
    """A TreeLabel per neuron, or None when this layer shows nothing yet. The label arrays of the layer's
    units are read once each (one small blob per view and direction) and compared with numpy over the
    neurons shown; the view shown goes first, so a tie names it. A contiguous range is one slice read of
    the top-1 tokens; a list reads the layer's."""
    from ..cache.labels import Labels

    contiguous = isinstance(neurons, range)
    span: tuple[int, int | None] = (neurons.start, neurons.stop) if isinstance(neurons, range) else (0, None)
    pick = slice(*span) if contiguous else np.fromiter(neurons, np.int64)
    n = len(neurons)
    best_key, best_mass = np.zeros(n, np.int64), np.zeros(n, np.float64)
    best_count, best_unit = np.zeros(n, np.int64), np.full(n, -1)
    labels = Labels(store)
    units = [(view, direction)] + [(v, d) for v in store.views for d in DIRECTIONS if (v, d) != (view, direction)]
    seen = False
    if labels.has_tables():
        for u, (v, d) in enumerate(units):
            got = labels.unit(layer, v, d)
            if got is None:
                continue
            seen = True
            keys, masses, counts = (np.asarray(a[pick]) for a in got[:3])
            better = (keys != 0) & (masses > best_mass)
            best_key[better], best_mass[better] = keys[better], masses[better]
            best_count[better], best_unit[better] = counts[better], u
    got = store.tops(layer, view, direction, *span)
    if got is None and not seen:
        return None
    labelled = (best_unit >= 0) & (best_mass >= LABEL_FLOOR)
    names = labels.keys(best_key[labelled].tolist()) if labelled.any() else {}
    texts: dict[int, str] | None = None
    top_ids: list[int] = []
    top_probs: list[float] = []
    if got is not None:
        ids, probs = got[0][:, 0], got[1][:, 0]
        if not contiguous:
            ids, probs = ids[pick], probs[pick]
        top_ids, top_probs = ids.tolist(), probs.tolist()
        texts = store.token_texts(top_ids)
    out: list[TreeLabel | None] = []
    for i in range(n):
        name = names.get(int(best_key[i])) if labelled[i] else None
        if name:
            out.append(
                TreeLabel(
                    _named(name, int(best_count[i])),
                    min(1.0, float(best_mass[i])),
                    where_mark(*units[int(best_unit[i])]),
                )
            )
        elif texts is not None:
            out.append(TreeLabel(texts[top_ids[i]], min(1.0, top_probs[i]), token=True))
        else:
            out.append(None)
    return out
