"""The filter bar (a query input plus the match mode, and the worker that runs the query) and its results
table."""

from __future__ import annotations

import asyncio
from typing import Callable

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.widgets import Input, Select
from textual.worker import Worker

from ...cache.labels import LABEL_FLOOR
from ...cache.store import Hit, Store
from ...choices import SEARCH_MATCHES
from ...concepts import Label, label_search, with_labels
from ...core.refs import NeuronRef
from ..format import prob_text, show_token
from ..host import host
from ..messages import SearchResults
from .tables import VimTable

RESULT_LIMIT = 200
MAX_RANK = 3
DEBOUNCE_S = 0.15
MATCH_MODES = SEARCH_MATCHES  # label: neurons whose concept label is the query's concept key


def search_cache(path, query: str, match: str):
    """Run one filter query on its own connection (called in a worker thread)."""
    if not path.exists():
        return []
    with Store(path, readonly=True) as store:
        if not store.meta:
            return []
        if match == "label":
            return label_search(store, query, limit=RESULT_LIMIT)
        return with_labels(
            store, store.search(query, match=match, max_rank=min(MAX_RANK, store.top_k), limit=RESULT_LIMIT)
        )


class FilterInput(Input):
    BINDINGS = [Binding("ctrl+t", "cycle_match", "Match mode", show=False, id="filter.match")]

    def action_cycle_match(self) -> None:
        parent = self.parent
        assert parent is not None, "a key reaches the input only once it is mounted"
        select = parent.query_one("#match", Select)
        select.value = MATCH_MODES[(MATCH_MODES.index(select.value) + 1) % len(MATCH_MODES)]


# (query, match) -> (hits, where): where[i] names the model hit i came from, or None with one model
Search = Callable[[str, str], "tuple[list[Hit], list[str] | None]"]


class FilterBar(Horizontal):
    """Each change of the query or the match mode runs ``search`` in a worker (after a pause: the next
    keystroke cancels it) and posts SearchResults for the screen, which shows them in its ResultsTable;
    results of a query that has changed since are dropped here."""

    def __init__(self, search: Search, **kwargs):
        super().__init__(**kwargs)
        self.search = search

    def compose(self) -> ComposeResult:
        yield FilterInput(placeholder="/ filter by token, e.g. dog", id="query", compact=True)
        yield Select([(m, m) for m in MATCH_MODES], value="word", allow_blank=False, id="match", compact=True)

    @property
    def query_text(self) -> str:
        return self.query_one("#query", Input).value

    @property
    def match(self) -> str:
        return str(self.query_one("#match", Select).value)

    def on_input_changed(self, event: Input.Changed) -> None:
        if event.input.id == "query":
            self.refilter()

    def on_select_changed(self, event: Select.Changed) -> None:
        if event.select.id == "match":
            self.refilter()

    def refilter(self) -> None:
        query = self.query_text.strip()
        if not query:
            self.workers.cancel_group(self, "filter")
            self.post_message(SearchResults("", self.match, []))
            return
        self.run_filter(query, self.match)

    @work(exclusive=True, group="filter", exit_on_error=False)
    async def run_filter(self, query: str, match: str) -> None:
        await asyncio.sleep(DEBOUNCE_S)  # the next keystroke cancels this worker
        hits, where = await asyncio.to_thread(self.search, query, match)
        self.post_message(SearchResults(query, match, hits, where))

    def on_search_results(self, message: SearchResults) -> None:
        if message.query != self.query_text.strip() or message.match != self.match:
            message.stop()  # stale

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        host(self).route_worker_state(event)  # a failed query becomes a notification


class ResultsTable(VimTable):
    """Search hits; the label column shows when the table is wide enough for it without scrolling.

    In the compare screen each hit also says which model it came from (``where``: "both", "base" or
    "other"); the table owns that column too, so a re-layout on resize keeps it."""

    COLUMNS = (
        ("neuron", "neuron", 10),
        ("view", "view", 4),
        ("dir", "dir", 3),
        ("#", "rank", 2),
        ("token", "token", 12),
        ("prob", "prob", 5),
    )
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

    def show_results(self, message: SearchResults) -> None:
        """Show a query's hits (an empty query hides the table), titled with what was searched."""
        if not message.query:
            self.fill([])
            self.display = False
            return
        self.fill(message.hits, message.where)
        self.display = True
        n, query, match = len(message.hits), message.query, message.match
        more = "+" if n >= RESULT_LIMIT else ""
        if message.where is None:
            self.border_title = (
                f"{n}{more} match '{query}' ({match}, top {MAX_RANK})"
                if n
                else f"no neuron's top {MAX_RANK} matches '{query}' ({match})"
            )
        else:
            self.border_title = (
                f"{n}{more} match '{query}' in either model ({match}, top {MAX_RANK})"
                if n
                else f"no neuron's top {MAX_RANK} matches '{query}' in either model"
            )

    def fill(self, hits: list[Hit], where: list[str] | None = None) -> None:
        """Show ``hits``; ``where[i]`` (compare only) names the model hit i came from."""
        relayout = (where is None) != (self.where is None)
        self.hits, self.where = list(hits), None if where is None else list(where)
        if relayout:  # the model column came or went: fit again
            self._layout(self._fits())
        self.clear()
        self.add_rows(self._row(h, None if where is None else where[i]) for i, h in enumerate(hits))

    def _row(self, h: Hit, where: str | None) -> tuple:
        cells = [
            str(NeuronRef(h.layer, h.neuron)),
            h.view,
            h.direction,
            str(h.rank + 1),
            Text(show_token(h.token)),
            prob_text(h.prob),
        ]
        if self.wide:
            label, mass = h.label, h.label_mass
            if label is not None and mass is not None and mass >= LABEL_FLOOR:  # under the floor: no label
                cells.append(Text(show_token(str(Label(label, min(1.0, mass), h.label_count, 0.0)))))
            else:
                cells.append("")
        if where is not None:
            cells.append(Text(where, style="bold yellow" if where != "both" else "dim"))
        return tuple(cells)
