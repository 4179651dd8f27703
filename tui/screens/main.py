"""The browser: the tree of layers and neurons, the filter and its results, and the selected neuron's
panes: its tokens (NeuronDetail), what it does on text (BehaviourPane, with the behaviour keys E, F, M, A)
and the decode <-> behaviour agreement chart that A shows. The rest is shared with compare mode
(screens/browser.py, screens/layout.py)."""

from __future__ import annotations

from textual.app import ComposeResult

from ...cache.store import Hit
from ..widgets.agreement_chart import AgreementChart
from ..widgets.behaviour import BehaviourPane
from ..widgets.detail import NeuronDetail
from ..widgets.filter import search_cache
from .browser import BrowserScreen
from .layout import browser_layout, neuron_tree


class MainScreen(BrowserScreen):
    def compose(self) -> ComposeResult:
        tree = neuron_tree(self.browsing)
        chart = AgreementChart("decode agrees with examples", id="behaviour-agreement")
        panes = [chart, NeuronDetail(id="detail"), BehaviourPane(self.browsing, tree, chart, id="behaviour")]
        yield from browser_layout(self.browsing, tree, panes, self.search)

    def search(self, query: str, match: str) -> tuple[list[Hit], None]:
        """The filter's query, on this model's cache (in the filter's worker thread)."""
        return search_cache(self.path, query, match), None
