"""A one-line prompt for the palette's "Go to neuron…"."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Input, Static


class GotoScreen(ModalScreen[str | None]):
    """One line of input in a modal: "go to neuron" by default, or any other question."""

    BINDINGS = [Binding("escape", "cancel", "Cancel", id="goto.cancel")]

    def __init__(
        self, title: str = "go to neuron", hint: str = "L29:N808 or 29:808, enter to go", placeholder: str = "L29:N808"
    ):
        super().__init__()
        self.question, self.hint, self.placeholder = title, hint, placeholder

    def compose(self) -> ComposeResult:
        with Vertical(id="goto-box") as box:
            box.border_title = self.question
            yield Static(self.hint)
            yield Input(placeholder=self.placeholder, id="goto-input")

    def on_input_submitted(self, event: Input.Submitted) -> None:
        self.dismiss(event.value)

    def action_cancel(self) -> None:
        self.dismiss(None)
