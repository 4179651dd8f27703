"""The help screen's and README's key table, made from the Bindings themselves.

Each row names the bindings it shows by their ids (``{view.up}``); the keys come from those Bindings (their
``key_display``, else their keys), or from the user's keymap when config.toml remaps them, so the table
always says what the keys are. Keys that Textual's own widgets bind (the palette, focus, a tree's arrows,
enter in an input) are written as they are.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import replace

from textual.binding import Binding, BindingType
from textual.keys import key_to_character

from ..cache.labels import LABEL_FLOOR

ROWS: list[tuple[str, str, str]] = [
    # (section, keys with {binding-id} placeholders, what)
    ("Anywhere", "{help}", "this help"),
    ("Anywhere", "ctrl+p", "command palette: go to neuron (L29:N808 or 29:808), switch model, switch view"),
    ("Anywhere", "{quit} / ctrl+q", "quit (a running decode stops; finished layers are kept)"),
    (
        "Anywhere",
        "{back}",
        'while the line over the filter says "loading model… (n s)" (clamp, probe, examples, '
        "chat): cancel what waits on it; the app stays usable",
    ),
    ("Browser", "{filter}", "filter neurons by token (results update as you type)"),
    (
        "Browser",
        "{view} then {view.up} / {view.gate} / {view.down} / {view.keep}",
        "show the up / gate / down view, or keep it (two keys: a stray letter never switches the view)",
    ),
    ("Browser", "{direction}", "toggle direction: pos (what the neuron promotes) / neg (what it suppresses)"),
    ("Browser", "enter", "open: expand a layer or group; on a neuron, focus its token table"),
    ("Browser", "{back}", "back: leave the filter or table, then clear the filter, then cancel a decode"),
    ("Browser", "tab / shift+tab", "move between tree, token table, filter, match mode and results"),
    ("Tree", "up / down, {tree.down} / {tree.up}", "move"),
    (
        "Tree",
        "left / right, {tree.collapse} / {tree.expand}",
        "collapse (or go to parent) / expand (or go to first child)",
    ),
    ("Tree", "{tree.first} / {tree.last}", "first / last line"),
    (
        "Tree",
        "(labels)",
        "each neuron's strongest concept label over all views and directions: where it is "
        "strongest (u/g/d = up/gate/down, + pos, − neg: u− is up neg), the label ×tokens sharing "
        "it, its mass; "
        f"below a mass of {LABEL_FLOOR} it is no label and the top-1 token of the view shown "
        "stands in, “quoted” and dim",
    ),
    ("Tables", "{table.down} / {table.up}, {table.first} / {table.last}", "move, first / last row"),
    ("Tables", "{table.back}", "back to the tree"),
    ("Filter", "enter", "go to the first result"),
    ("Filter", "{filter.match}", "cycle the match mode: word, exact, prefix, contains, label (concept label)"),
    ("Results", "enter", "jump to that neuron (view and direction follow the result)"),
    (
        "Behaviour",
        "{examples.run}",
        "compute every neuron's max-activating examples over the default corpus (esc cancels; resumes)",
    ),
    ("Behaviour", "enter", "in the probe box: the selected neuron's activation on each token of the text"),
    (
        "Behaviour",
        "{probe.why}",
        "after a probe: why it fired, the neuron's reads at a token split into their sources (embedding, heads, "
        "neurons, biases)",
    ),
    (
        "Behaviour",
        "{why.prev} / {why.next}, {why.run}",
        "in why it fired: choose the token (or left / right; first: where it fires most, either sign), explain it",
    ),
    ("Behaviour", "{why.leave}", "in why it fired: cancel a running explanation, else leave"),
    (
        "Behaviour",
        "{tree.firing}",
        "sort each layer's neurons by how often they fire, the rate after each "
        "neuron / back to index order (the cursor stays on its neuron)",
    ),
    (
        "Concepts",
        "{tree.mass}",
        "sort each layer's neurons by label mass in the view shown (most specialised "
        "first), the mass after each neuron / back to index order",
    ),
    (
        "Concepts",
        "ctrl+p, Clamp a concept…",
        "put every neuron labelled with a word into the clamp basket, each with the sign that promotes it",
    ),
    (
        "Circuit",
        "{circuit.build}",
        "build the circuit graph from the weights, once, into the cache (esc cancels; finished layers are kept)",
    ),
    (
        "Circuit",
        "{circuit.walk}, enter",
        "focus the selected neuron's neighbours (reads from / writes to); enter jumps to the one under the cursor",
    ),
    ("Circuit", "{circuit.back}", "back along the jumps taken, one jump a press"),
    ("Behaviour", "{agreement.toggle}", "show / hide how often the decode names what neurons fire on, per layer"),
    ("Clamp", "{clamp.add}", "add the selected neuron to the clamp basket (asks for a value, suggests one)"),
    ("Clamp", "{chat.toggle}", "show / hide the chat pane (basket, prompt, baseline vs clamped replies)"),
    (
        "Clamp",
        "{basket.edit}, {basket.remove}, {basket.clear}, {basket.undo}",
        "in the basket: edit the value, remove the clamp, clear the basket, undo the last remove or clear",
    ),
    ("Clamp", "enter", "in the prompt or target: generate baseline and clamped replies side by side"),
    ("Clamp", "{chat.cancel}", "cancel a running generation (partial replies are kept)"),
    (
        "Compare",
        "{compare.changed}",
        "tui BASE --compare OTHER: show / hide the changed-only list (most-changed neurons first)",
    ),
    ("Compare", "{compare.next} / {compare.prev}", "tui BASE --compare OTHER: next / previous most-changed neuron"),
]
_NAMED = {"slash": "/", "question_mark": "?"}
_FIELD = re.compile(r"\{([a-z_.]+)\}")


def show_key(key: str) -> str:
    """How one key is written: "?" for question_mark, "]" for right_square_bracket, f1 as f1."""
    key = key.strip()
    if key in _NAMED:
        return _NAMED[key]
    char = key_to_character(key) if len(key) > 1 and "+" not in key else None
    return char if char and char.isprintable() and not char.isspace() else key


def binding_keys(binding: Binding, keymap: dict[str, str]) -> str:
    if binding.id in keymap:
        keys = keymap[binding.id]
    elif binding.key_display:
        return binding.key_display
    else:
        keys = binding.key
    return " / ".join(show_key(k) for k in keys.split(","))


def collect(classes: Iterable[type]) -> dict[str, Binding]:
    """Every binding with an id, from the BINDINGS of these classes (and their bases)."""
    found: dict[str, Binding] = {}
    for cls in classes:
        for klass in reversed(cls.__mro__):
            for binding in getattr(klass, "BINDINGS", None) or ():
                if isinstance(binding, Binding) and binding.id:
                    found[binding.id] = binding
    return found


def screen_wide(bindings: Iterable[BindingType], pane: str) -> list[Binding]:
    """A pane's bindings made to work wherever the focus is on its screen: the same keys and ids (a keymap
    remaps them), each running the pane's action through the screen's ``pane`` action. Textual looks for a
    key's binding only along the focused widget and its ancestors, and the behaviour keys (E, F, M, A) must
    work from the tree and the tables, which are not inside the pane."""
    out = []
    for b in bindings:
        if not isinstance(b, Binding):
            raise TypeError(f"{b!r}: a pane's key is a Binding with an id (a keymap remaps it by its id)")
        out.append(replace(b, action=f"pane({pane!r}, {b.action!r})"))
    return out


def rows(bindings: dict[str, Binding], keymap: dict[str, str] | None = None) -> list[tuple[str, str, str]]:
    """(section, keys, what) for the help screen and README; KeyError names a row's unknown binding id."""
    keymap = keymap or {}
    return [
        (section, _FIELD.sub(lambda m: binding_keys(bindings[m.group(1)], keymap), keys), what)
        for section, keys, what in ROWS
    ]


def keys_markdown(table: list[tuple[str, str, str]]) -> str:
    lines = ["| Keys | Where | What |", "|---|---|---|"]
    lines += [f"| `{k}` | {s} | {w} |" for s, k, w in table]
    return "\n".join(lines)
