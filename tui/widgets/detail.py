"""The selected neuron: its top-k tokens with probability bars for the current view and direction,
and one compact line per other view, so read-side (up/gate) and write-side (down) meaning show together. For an
attention head: what its largest OV direction writes, with a line for what it reads and for its other directions."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import Static

from ..format import bar, prob_text, show_token
from ..heads import HeadShown
from .tables import VimTable

BAR = 16


class NeuronDetail(Vertical):
    def compose(self) -> ComposeResult:
        yield Static("Pick a neuron in the tree", id="detail-title")
        yield VimTable(id="detail-table")
        yield Static("", id="other-views")

    def on_mount(self) -> None:
        table = self.query_one("#detail-table", VimTable)
        table.add_column("#", key="rank", width=2)
        table.add_column("token", key="token", width=14)
        table.add_column("prob", key="prob", width=5)
        table.add_column("", key="bar", width=BAR)

    def show(self, title: Text, top: list | None, others: list[tuple[str, list | None]]) -> None:
        """``top``: TopToken list (None: not decoded yet); ``others``: (view, TopToken list or None)."""
        self.query_one("#detail-title", Static).update(title)
        table = self.query_one("#detail-table", VimTable)
        table.clear()
        if top is None:
            table.add_row("", Text("not decoded yet", style="dim"), "", "")
        else:
            table.add_rows(
                (str(t.rank + 1), Text(show_token(t.token)), prob_text(t.prob), Text(bar(t.prob, BAR), style="blue"))
                for t in top
            )
        lines = Text(no_wrap=True, overflow="ellipsis")
        for view, tops in others:
            if lines:
                lines.append("\n")
            lines.append(f"{view:<5}", style="bold")
            if tops is None:
                lines.append(" not decoded yet", style="dim")
                continue
            for t in tops[:3]:
                lines.append(" ")
                lines.append(show_token(t.token)[:14], style="green")
                lines.append(f" {prob_text(t.prob)}", style="dim")
        self.query_one("#other-views", Static).update(lines)

    def show_head(self, shown: HeadShown | None) -> None:
        """A head (None: its layer's heads are no longer in the cache)."""
        if shown is None:
            self.show(Text("this head is not in the cache", style="dim"), None, [])
            return
        self.query_one("#detail-title", Static).update(shown.title)
        table = self.query_one("#detail-table", VimTable)
        table.clear()
        table.add_rows(
            (str(i + 1), Text(show_token(token)), prob_text(p), Text(bar(p, BAR), style="blue"))
            for i, (token, p) in enumerate(shown.writes)
        )
        self.query_one("#other-views", Static).update(shown.lines)
