"""A DataTable with the vim aliases (hidden from the footer)."""

from __future__ import annotations

from textual.binding import Binding
from textual.widgets import DataTable


class VimTable(DataTable):
    BINDINGS = [
        Binding("j", "cursor_down", "Down", show=False, id="table.down"),
        Binding("k", "cursor_up", "Up", show=False, id="table.up"),
        Binding("home", "first_row", "First", show=False, id="table.first"),
        Binding("G,end", "last_row", "Last", show=False, key_display="G", id="table.last"),
        Binding("h", "back", "Back", show=False, id="table.back"),
    ]

    def __init__(self, **kwargs):
        super().__init__(cursor_type="row", zebra_stripes=False, **kwargs)

    def action_first_row(self) -> None:
        if self.row_count:
            self.move_cursor(row=0)

    def action_last_row(self) -> None:
        if self.row_count:
            self.move_cursor(row=self.row_count - 1)

    def action_back(self) -> None:
        focus_tree = getattr(self.screen, "action_focus_tree", None)
        if focus_tree is not None:
            focus_tree()
