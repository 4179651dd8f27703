"""The filter bar (a query input plus the match mode) and its results table."""
from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.widgets import Input, Select

from ...cache.labels import LABEL_FLOOR
from ...cache.store import Hit, Store
from ...choices import SEARCH_MATCHES
from ...concepts import Label, label_search, with_labels
from ...core.refs import NeuronRef
from ..format import prob_text, show_token
from .tables import VimTable

RESULT_LIMIT = 200
MAX_RANK = 3
MATCH_MODES = SEARCH_MATCHES      # label: neurons whose concept label is the query's concept key


def search_cache(path, query: str, match: str):
    """Run one filter query on its own connection (called in a worker thread)."""
    if not path.exists():
        return []
    with Store(path, readonly=True) as store:
        if not store.meta:
            return []
        if match == "label":
            return label_search(store, query, limit=RESULT_LIMIT)
        return with_labels(store, store.search(query, match=match, max_rank=min(MAX_RANK, store.top_k),
                                               limit=RESULT_LIMIT))


class FilterInput(Input):
    BINDINGS = [Binding("ctrl+t", "cycle_match", "Match mode", show=False, id="filter.match")]

    def action_cycle_match(self) -> None:
        select = self.parent.query_one("#match", Select)
        select.value = MATCH_MODES[(MATCH_MODES.index(select.value) + 1) % len(MATCH_MODES)]


class FilterBar(Horizontal):
    def compose(self) -> ComposeResult:
        yield FilterInput(placeholder="/ filter by token, e.g. dog", id="query", compact=True)
        yield Select([(m, m) for m in MATCH_MODES], value="word", allow_blank=False, id="match", compact=True)

    @property
    def query_text(self) -> str:
        return self.query_one("#query", Input).value

    @property
    def match(self) -> str:
        return str(self.query_one("#match", Select).value)


class ResultsTable(VimTable):
    """Search hits; the label column shows when the table is wide enough for it without scrolling.

    In the compare screen each hit also says which model it came from (``where``: "both", "base" or
    "other"); the table owns that column too, so a re-layout on resize keeps it."""
    COLUMNS = (("neuron", "neuron", 10), ("view", "view", 4), ("dir", "dir", 3), ("#", "rank", 2),
               ("token", "token", 12), ("prob", "prob", 5))
    LABEL = ("label", "label", 14)
    WHERE = ("in", "in", 5)
    hits: list[Hit] = []
    where: list[str] | None = None
    wide: bool | None = None

    def on_mount(self) -> None:
        self._layout(self._fits())

    def on_resize(self) -> None:
        wide = self._fits()
        if wide != self.wide:
            self._layout(wide)
            self.fill(self.hits, self.where)

    def _fits(self) -> bool:
        """Whether every column, the label's included, fits the width without scrolling (before the first
        layout, when there is no width yet: assume it does, as on_mount does)."""
        width = self.scrollable_content_region.width
        need = sum(w + 2 * self.cell_padding for *_, w in (*self.COLUMNS, self.LABEL, *self._where_column))
        return True if width == 0 else width >= need

    @property
    def _where_column(self) -> tuple:
        return () if self.where is None else (self.WHERE,)

    def _layout(self, wide: bool) -> None:
        self.wide = wide
        self.clear(columns=True)
        for label, key, width in (*self.COLUMNS, *((self.LABEL,) if wide else ()), *self._where_column):
            self.add_column(label, key=key, width=width)

    def fill(self, hits: list[Hit], where: list[str] | None = None) -> None:
        """Show ``hits``; ``where[i]`` (compare only) names the model hit i came from."""
        relayout = (where is None) != (self.where is None)
        self.hits, self.where = list(hits), None if where is None else list(where)
        if relayout:                                   # the model column came or went: fit again
            self._layout(self._fits())
        self.clear()
        self.add_rows(self._row(h, None if where is None else where[i]) for i, h in enumerate(hits))

    def _row(self, h: Hit, where: str | None) -> tuple:
        cells = [str(NeuronRef(h.layer, h.neuron)), h.view, h.direction, str(h.rank + 1), Text(show_token(h.token)),
                 prob_text(h.prob)]
        if self.wide:
            shown = h.label is not None and h.label_mass >= LABEL_FLOOR       # under the floor: no label
            cells.append(Text(show_token(str(Label(h.label, min(1.0, h.label_mass), h.label_count, 0.0))))
                         if shown else "")
        if where is not None:
            cells.append(Text(where, style="bold yellow" if where != "both" else "dim"))
        return tuple(cells)
