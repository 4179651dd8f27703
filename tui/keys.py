"""Every key of the app, in one place: the help screen and the README list are made from this."""
from __future__ import annotations

KEYS: list[tuple[str, str, str]] = [
    # (section, keys, what)
    ("Anywhere", "? / f1", "this help"),
    ("Anywhere", "ctrl+p", "command palette: go to neuron (L29:N808 or 29:808), switch model, switch view"),
    ("Anywhere", "q / ctrl+q", "quit (a running decode stops; finished layers are kept)"),
    ("Browser", "/", "filter neurons by token (results update as you type)"),
    ("Browser", "u / g / d", "show the up / gate / down view"),
    ("Browser", "n", "toggle direction: pos (what the neuron promotes) / neg (what it suppresses)"),
    ("Browser", "enter", "open: expand a layer or group; on a neuron, focus its token table"),
    ("Browser", "escape", "back: leave the filter or table, then clear the filter, then cancel a decode"),
    ("Browser", "tab / shift+tab", "move between tree, token table, filter, match mode and results"),
    ("Tree", "up / down, j / k", "move"),
    ("Tree", "left / right, h / l", "collapse (or go to parent) / expand (or go to first child)"),
    ("Tree", "home / G", "first / last line  (g is the gate view, so vim's gg is home)"),
    ("Tables", "j / k, home / G", "move, first / last row"),
    ("Tables", "h", "back to the tree"),
    ("Filter", "enter", "go to the first result"),
    ("Filter", "ctrl+t", "cycle the match mode: word, exact, prefix, contains"),
    ("Results", "enter", "jump to that neuron (view and direction follow the result)"),
    ("Clamp", "c", "add the selected neuron to the clamp basket (asks for a value, suggests one)"),
    ("Clamp", "C", "show / hide the chat pane (basket, prompt, baseline vs clamped replies)"),
    ("Clamp", "enter / e, x, X", "in the basket: edit the value, remove the clamp, clear the basket"),
    ("Clamp", "enter", "in the prompt or target: generate baseline and clamped replies side by side"),
    ("Clamp", "escape", "cancel a running generation (partial replies are kept)"),
    ("Compare", "o", "tui BASE --compare OTHER: show / hide the changed-only list (most-changed neurons first)"),
    ("Compare", "] / [", "tui BASE --compare OTHER: next / previous most-changed neuron"),
]


def keys_markdown() -> str:
    lines = ["| Keys | Where | What |", "|---|---|---|"]
    lines += [f"| `{k}` | {s} | {w} |" for s, k, w in KEYS]
    return "\n".join(lines)
