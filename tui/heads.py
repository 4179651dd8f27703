"""Attention heads in the app, read from the cache (no torch): the label after each head in the tree (its
largest OV direction's write label in the direction shown, else its top written token) and what the detail pane
shows for a head (what its directions write and read). The heads are built by `neuroscope show MODEL L5:H3`,
`search --heads` or `model.head(...)`; until then a layer shows no heads node."""

from __future__ import annotations

from dataclasses import dataclass

from rich.text import Text

from ..cache.heads import HeadLayer, Heads
from ..cache.labels import LABEL_FLOOR, Labels
from ..cache.postings import DIRECTIONS
from ..cache.store import Store
from ..core.refs import HeadRef
from .format import TreeLabel, prob_text, show_token


def head_layer(store: Store | None, layer: int) -> HeadLayer | None:
    """One layer's heads from the cache, or None when they are not built."""
    if store is None:
        return None
    heads = Heads(store)
    return heads.layer(layer) if heads.has_tables() else None


def head_labels(store: Store | None, layer: int, direction: str) -> list[TreeLabel] | None:
    """A TreeLabel per head of ``layer`` (None: its heads are not in the cache)."""
    got = head_layer(store, layer)
    if got is None or store is None:
        return None
    d = DIRECTIONS.index(direction)
    assert got.label is not None and got.mass is not None
    labels = Labels(store)
    names = labels.keys(got.label[:, 0, d].tolist()) if labels.has_tables() else {}
    firsts = got.write_ids[:, 0, d, 0]
    texts = store.token_texts({int(i) for i in firsts})
    out = []
    for h in range(got.sigma.shape[0]):
        name = names.get(int(got.label[h, 0, d]))
        if name and got.mass[h, 0, d] >= LABEL_FLOOR:
            out.append(TreeLabel(name, min(1.0, float(got.mass[h, 0, d]))))
        else:
            out.append(TreeLabel(texts[int(firsts[h])], float(got.write_probs[h, 0, d, 0]), token=True))
    return out


def head_leaf(ref: HeadRef, label: TreeLabel | None, width: int = 0) -> Text:
    text = Text(str(ref).ljust(width), style="bold cyan")
    if label is None:
        text.append(" …", style="dim")
    elif label.token:
        text.append(f" “{show_token(label.text)[:20]}”", style="dim green")
        text.append(f" {prob_text(label.value)}", style="dim")
    else:
        text.append(f" {label.text}", style="yellow")
        text.append(f" {label.value:.2f}", style="dim")
    return text


@dataclass(frozen=True)
class HeadShown:
    """What the detail pane shows for a head, in one direction: the title, the largest direction's written
    tokens (token, probability) for the table, and a line each for what it reads and the other directions."""

    title: Text
    writes: list[tuple[str, float]]
    lines: Text


def head_shown(store: Store, ref: HeadRef, direction: str, model: str) -> HeadShown | None:
    got = head_layer(store, ref.layer)
    if got is None or ref.head >= got.sigma.shape[0]:
        return None
    h, d = ref.head, DIRECTIONS.index(direction)
    texts = store.token_texts({int(i) for a in (got.write_ids[h], got.read_ids[h]) for i in a[:, d].ravel()})
    labels = Labels(store)
    assert got.label is not None and got.mass is not None
    names = labels.keys(got.label[h, :, d].tolist()) if labels.has_tables() else {}
    title = Text(str(ref), style="bold cyan")
    title.append(f"  writes {'+' if d == 0 else '−'}  σ1 {got.sigma[h, 0]:.3g}", style="bold green")
    name = names.get(int(got.label[h, 0, d]))
    if name and got.mass[h, 0, d] >= LABEL_FLOOR:
        title.append(f"  {name} {float(got.mass[h, 0, d]):.2f}", style="bold yellow")
    title.append(f"  {model}", style="dim")
    writes = [(texts[int(i)], float(p)) for i, p in zip(got.write_ids[h, 0, d], got.write_probs[h, 0, d])]
    lines = Text(no_wrap=True, overflow="ellipsis")
    lines.append("reads", style="bold")
    for i, w in list(zip(got.read_ids[h, 0, d], got.read_weights[h, 0, d]))[:3]:
        lines.append(f" {show_token(texts[int(i)])[:14]}", style="green")
        lines.append(f" {w:+.2f}", style="dim")
    for r in range(1, got.sigma.shape[1]):
        lines.append(f"\nσ{r + 1:<4}", style="bold")
        for i, p in list(zip(got.write_ids[h, r, d], got.write_probs[h, r, d]))[:3]:
            lines.append(f" {show_token(texts[int(i)])[:14]}", style="green")
            lines.append(f" {prob_text(float(p))}", style="dim")
    return HeadShown(title, writes, lines)
