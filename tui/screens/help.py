"""Every key, as tui.keys makes the table from the Bindings (and the user's keymap)."""

from __future__ import annotations

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static


def keys_table(rows: list[tuple[str, str, str]]) -> Table:
    """(section, keys, what) rows (tui.keys.rows: made from the Bindings) as one table."""
    table = Table(box=None, show_header=False, padding=(0, 1), expand=True)
    table.add_column("keys", style="bold cyan", no_wrap=True)
    table.add_column("what", ratio=1)
    section = None
    for where, keys, what in rows:
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

    def __init__(self, rows: list[tuple[str, str, str]]):
        super().__init__()
        self.rows = rows

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="help-box") as box:
            box.border_title = "neuroscope keys"
            box.border_subtitle = "escape closes"
            yield Static(keys_table(self.rows))

    def action_scroll(self, where: str) -> None:
        box = self.query_one("#help-box", VerticalScroll)
        box.scroll_down() if where == "down" else box.scroll_up()
