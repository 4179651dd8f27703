"""Every key, from tui/keys.py."""
from __future__ import annotations

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

from ..keys import KEYS


def keys_table() -> Table:
    table = Table(box=None, show_header=False, padding=(0, 1), expand=True)
    table.add_column("keys", style="bold cyan", no_wrap=True)
    table.add_column("what", ratio=1)
    section = None
    for where, keys, what in KEYS:
        if where != section:
            section = where
            table.add_row(Text(where, style="bold underline"), "")
        table.add_row(keys, what)
    return table


class HelpScreen(ModalScreen[None]):
    BINDINGS = [
        Binding("escape,q,question_mark,f1", "dismiss", "Close", id="help.close"),
        Binding("j", "scroll('down')", "Down", show=False, id="help.down"),
        Binding("k", "scroll('up')", "Up", show=False, id="help.up"),
    ]

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="help-box") as box:
            box.border_title = "neuroscope keys"
            box.border_subtitle = "escape closes"
            yield Static(keys_table())

    def action_dismiss(self) -> None:
        self.dismiss(None)

    def action_scroll(self, where: str) -> None:
        box = self.query_one("#help-box", VerticalScroll)
        box.scroll_down() if where == "down" else box.scroll_up()
