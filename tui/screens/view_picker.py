"""Switching the view is two keys, `v` then `u` / `g` / `d`: a stray letter typed into the tree (d, g)
never changes what the browser shows."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import ModalScreen
from textual.widgets import Static

from ...choices import VIEWS
from .. import keys

VIEW_MEANS = {
    "up": "what each neuron reads (its up row)",
    "gate": "what opens each neuron's gate (its gate row)",
    "down": "what each neuron writes (its down column)",
}
DIRECTION_MEANS = {"pos": "what each neuron promotes", "neg": "what each neuron suppresses"}


class ViewScreen(ModalScreen[str | None]):
    """A one-line prompt over the footer; dismisses with the view picked, or None (escape, or `v` again)."""

    BINDINGS = [
        Binding("u", "pick('up')", "Up", id="view.up"),
        Binding("g", "pick('gate')", "Gate", id="view.gate"),
        Binding("d", "pick('down')", "Down", id="view.down"),
        Binding("escape,v", "pick('')", "Keep", key_display="esc", id="view.keep"),
    ]

    def __init__(self, current: str, views=VIEWS):
        super().__init__()
        self.current, self.views = current, tuple(views)

    def compose(self) -> ComposeResult:
        keymap = getattr(self.app, "options", None)
        keymap = keymap.keymap if keymap is not None else {}
        by_id = {b.id: b for b in self.BINDINGS if isinstance(b, Binding)}
        picks = " · ".join(f"{keys.binding_keys(by_id[f'view.{v}'], keymap)} {v}" for v in VIEWS if v in self.views)
        box = Static(
            f"view ({self.current} now):  {picks}  ·  {keys.binding_keys(by_id['view.keep'], keymap)} "
            f"keeps {self.current}",
            id="view-box",
        )
        box.border_title = "switch view"
        yield box

    def action_pick(self, view: str) -> None:
        self.dismiss(view or None)
