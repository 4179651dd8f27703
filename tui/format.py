"""How tokens, probabilities and neurons are drawn. Everything returns rich Text (never markup: a token
such as ``[b]`` must show as typed)."""
from __future__ import annotations

import json

from rich.text import Text

EIGHTHS = " ▏▎▍▌▋▊▉█"


def show_token(token: str) -> str:
    """A token as one visible line: escapes like JSON, a leading space shown as ␣."""
    body = json.dumps(token, ensure_ascii=False)[1:-1].replace('\\"', '"')
    stripped = body.lstrip(" ")
    return "␣" * (len(body) - len(stripped)) + stripped


def bar(prob: float, width: int = 20) -> str:
    """A horizontal bar of ``width`` cells with eighth-cell resolution."""
    eighths = int(round(max(0.0, min(1.0, prob)) * width * 8))
    full, part = divmod(eighths, 8)
    return ("█" * full + (EIGHTHS[part] if part else "")).ljust(width)


def prob_text(prob: float) -> str:
    return f"{prob:.3f}" if prob >= 0.001 else f"{prob:.0e}"


def neuron_label(layer: int, neuron: int, token: str | None, prob: float | None) -> Text:
    text = Text(f"L{layer}:N{neuron}", style="bold")
    if token is None:
        text.append("  …", style="dim")
    else:
        text.append("  ")
        text.append(show_token(token)[:24], style="green")
        text.append(f" {prob_text(prob)}", style="dim")
    return text


def concept_labels(store, layer: int, view: str, direction: str, neurons):
    """("dog ×7", 0.93) per neuron from the cache's concept labels (None where a neuron's top-k has no
    letters or digits to label); None when the cache has no labels."""
    from ..cache.labels import Labels

    labels = Labels(store)
    got = labels.unit(layer, view, direction) if labels.has_tables() else None
    if got is None:
        return None
    keys, masses, counts = (a[list(neurons)] for a in got[:3])
    names = labels.keys(keys.tolist())
    return [None if not names.get(int(k)) else (f"{names[int(k)]} ×{c}" if c > 1 else names[int(k)], float(m))
            for k, m, c in zip(keys.tolist(), masses.tolist(), counts.tolist())]


def tree_labels(store, layer: int, view: str, direction: str, neurons):
    """What the tree shows after each neuron: its concept label and mass ("dog ×7", 0.93), or its top-1
    token and prob where it has no label. A contiguous range is one slice read; a list reads the layer."""
    contiguous = isinstance(neurons, range)
    got = store.tops(layer, view, direction, *((neurons.start, neurons.stop) if contiguous else (0, None)))
    if got is None:
        return None
    ids, probs = got[0][:, 0], got[1][:, 0]
    if not contiguous:
        ids, probs = ids[list(neurons)], probs[list(neurons)]
    ids, probs = ids.tolist(), probs.tolist()
    texts = store.token_texts(ids)
    shown = [(texts[i], p) for i, p in zip(ids, probs)]
    labelled = concept_labels(store, layer, view, direction, neurons)
    return shown if labelled is None else [own or top for own, top in zip(labelled, shown)]
