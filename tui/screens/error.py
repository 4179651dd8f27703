"""A failure explained in a modal: what went wrong and what to do; the app keeps running."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Static


class ErrorScreen(ModalScreen[None]):
    BINDINGS = [Binding("escape,enter,q", "close", "Close", id="error.close")]

    def __init__(self, title: str, message: str):
        super().__init__()
        self.error_title = title
        self.message = message

    def compose(self) -> ComposeResult:
        with Vertical(id="error-box") as box:
            box.border_title = self.error_title
            box.border_subtitle = "escape closes"
            yield Static(Text(self.message), id="error-message")

    def action_close(self) -> None:
        self.dismiss(None)
