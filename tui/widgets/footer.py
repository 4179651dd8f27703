"""The footer with the help key first, so a narrow terminal (80 columns) or a widget with many keys never
pushes it off the line."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.widgets import Footer


class HelpFooter(Footer):
    def compose(self) -> ComposeResult:
        keys = list(super().compose())
        yield from sorted(keys, key=lambda key: getattr(key, "action", "") not in ("help", "app.help"))
