"""A one-line prompt for the palette's "Go to neuron…"."""
from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Input, Static


class GotoScreen(ModalScreen[str | None]):
    BINDINGS = [Binding("escape", "cancel", "Cancel", id="goto.cancel")]

    def compose(self) -> ComposeResult:
        with Vertical(id="goto-box") as box:
            box.border_title = "go to neuron"
            yield Static("L29:N808 or 29:808, enter to go")
            yield Input(placeholder="L29:N808", id="goto-input")

    def on_input_submitted(self, event: Input.Submitted) -> None:
        self.dismiss(event.value)

    def action_cancel(self) -> None:
        self.dismiss(None)
