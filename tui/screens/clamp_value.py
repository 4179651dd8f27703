"""Ask for a clamp value (and mode) for one neuron, suggesting one from its natural activation."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Input, Select, Static

from ...core.clamp import MODES, BadClamp, parse_value


class ClampValueScreen(ModalScreen[tuple[float, str] | None]):
    """Dismisses with (value, mode), or None on escape. A non-numeric value is a notification."""

    BINDINGS = [Binding("escape", "cancel", "Cancel", id="clamp_value.cancel")]

    def __init__(self, ref, value: float, mode: str = "set", note: str = ""):
        super().__init__()
        self.ref, self.value, self.mode, self.note = ref, value, mode, note

    def compose(self) -> ComposeResult:
        with Vertical(id="clamp-value-box") as box:
            box.border_title = f"clamp {self.ref}"
            box.border_subtitle = "enter adds · escape cancels"
            if self.note:
                yield Static(self.note, id="clamp-value-note")
            with Horizontal(id="clamp-value-row"):
                yield Input(value=f"{self.value:g}", placeholder="value, e.g. 8 or -4.5", id="clamp-value-input")
                yield Select([(m, m) for m in MODES], value=self.mode, allow_blank=False, id="clamp-value-mode")

    def on_mount(self) -> None:
        self.query_one("#clamp-value-input", Input).focus()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        try:
            value = parse_value(event.value)
        except BadClamp as exc:
            self.app.notify(str(exc), title="clamp", severity="error")
            return
        self.dismiss((value, str(self.query_one("#clamp-value-mode", Select).value)))

    def action_cancel(self) -> None:
        self.dismiss(None)
