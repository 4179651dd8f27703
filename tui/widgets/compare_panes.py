"""Base vs other, side by side: the selected neuron's top tokens in both models (tokens that only one
model has in its top-k are highlighted), and the list of most-changed neurons."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.widgets import DataTable, Static

from ...core.refs import NeuronRef
from ..format import bar, prob_text, show_token
from .tables import VimTable

BAR = 5
ONLY = "bold yellow"  # a token in this model's top-k but not in the other's


class SidePane(Vertical):
    """One model's column: its name over its top-k table."""

    def __init__(self, side: str, **kwargs):
        super().__init__(**kwargs)
        self.side = side

    def compose(self) -> ComposeResult:
        yield Static("", classes="pane-name", id=f"name-{self.side}")
        yield VimTable(id=f"pane-{self.side}")

    def on_mount(self) -> None:
        table = self.query_one(VimTable)
        table.add_column("#", key="rank", width=2)
        table.add_column("token", key="token", width=10)
        table.add_column("prob", key="prob", width=5)
        table.add_column("", key="bar", width=BAR)

    def fill(self, name: str, top: list | None, other_ids: set[int]) -> None:
        label = Text(name, style="bold")
        label.append(" · ", style="dim")
        label.append("only here", style=ONLY)
        self.query_one(Static).update(label)
        table = self.query_one(VimTable)
        row = table.cursor_row
        table.clear()
        if top is None:
            table.add_row("", Text("not decoded yet", style="dim"), "", "")
            return
        for t in top:
            only = t.token_id not in other_ids
            token = Text(show_token(t.token), style=ONLY if only else "")
            table.add_row(
                Text(str(t.rank + 1), style=ONLY if only else "dim"),
                token,
                prob_text(t.prob),
                Text(bar(t.prob, BAR), style="yellow" if only else "blue"),
            )
        if 0 < row < table.row_count:
            table.move_cursor(row=row, animate=False)


class ComparePanes(Vertical):
    """The title line (neuron, overlap, cosine) over the two side panes; their cursors move together."""

    def compose(self) -> ComposeResult:
        yield Static("Pick a neuron in the tree", id="compare-title")
        with Horizontal(id="compare-sides"):
            yield SidePane("base", id="side-base")
            yield SidePane("other", id="side-other")

    def show(
        self,
        ref: NeuronRef,
        view: str,
        direction: str,
        names: tuple[str, str],
        tops: tuple[list | None, list | None],
        cosine: float | None,
    ) -> float | None:
        """Fill both panes; return the Jaccard overlap of the two top-k sets (None if one is missing)."""
        base, other = tops
        ids = [set() if top is None else {t.token_id for t in top} for top in tops]
        jaccard = len(ids[0] & ids[1]) / len(ids[0] | ids[1]) if base is not None and other is not None else None
        self.query_one("#side-base", SidePane).fill(names[0], base, ids[1])
        self.query_one("#side-other", SidePane).fill(names[1], other, ids[0])
        title = Text(str(ref), style="bold")
        title.append(f"  {view} {direction}", style="bold green")
        if base and other:
            same = base[0].token_id == other[0].token_id
            title.append("  top-1 kept" if same else "  top-1 changed", style="green" if same else "bold red")
        if jaccard is not None:
            title.append(f"  jaccard {jaccard:.2f}", style="dim")
        if cosine is not None:
            title.append(f"  cos {cosine:.3f}", style="dim")
        self.query_one("#compare-title", Static).update(title)
        return jaccard

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        """Move the other pane's cursor to the same rank (navigation stays in sync)."""
        tables = list(self.query(VimTable))
        for table in tables:
            if table is not event.data_table and table.row_count and table.cursor_row != event.cursor_row:
                if event.cursor_row < table.row_count:
                    table.move_cursor(row=event.cursor_row, animate=False)
        event.stop()


class ChangedTable(VimTable):
    """The most-changed neurons (lowest top-k overlap first): highlighting a row shows it in the panes."""

    changed: list = []

    def on_mount(self) -> None:
        for label, key, width in (
            ("neuron", "neuron", 9),
            ("jacc", "jaccard", 4),
            ("cos", "cosine", 5),
            ("base top", "base", 11),
            ("other top", "other", 11),
        ):
            self.add_column(label, key=key, width=width)

    def fill(self, changed: list) -> None:
        self.changed = list(changed)
        self.clear()
        self.add_rows(
            (
                str(c.ref),
                f"{c.jaccard:.2f}",
                "-" if c.cosine is None else f"{c.cosine:.3f}",
                Text(show_token(c.base_top)),
                Text(show_token(c.other_top), style=ONLY if c.base_top != c.other_top else ""),
            )
            for c in changed
        )
