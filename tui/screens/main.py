"""The browser: the tree of layers and neurons, the filter and its results, and the selected neuron's
panes: its tokens (NeuronDetail), its circuit from the weights (CircuitPane, with the keys that build the graph
and walk it), what it does on text (BehaviourPane, with the behaviour keys E, F, M, A) and the decode <->
behaviour agreement chart that A shows. The rest is shared with compare mode (screens/browser.py,
screens/layout.py)."""

from __future__ import annotations

from typing import ClassVar

from textual.app import ComposeResult
from textual.binding import BindingType
from textual.widgets import ProgressBar

from ...cache.store import Hit
from ..keys import screen_wide
from ..messages import GraphDone
from ..widgets.agreement_chart import AgreementChart
from ..widgets.behaviour import BehaviourPane
from ..widgets.circuit_pane import CircuitPane
from ..widgets.detail import NeuronDetail
from ..widgets.filter import search_cache
from .browser import BrowserScreen
from .layout import browser_layout, neuron_tree


class MainScreen(BrowserScreen):
    BINDINGS: ClassVar[list[BindingType]] = [*screen_wide(CircuitPane.BINDINGS, "#circuit")]

    def compose(self) -> ComposeResult:
        tree = neuron_tree(self.browsing)
        chart = AgreementChart("decode agrees with examples", id="behaviour-agreement")
        panes = [
            chart,
            NeuronDetail(id="detail"),
            CircuitPane(self.browsing, self.goto, id="circuit"),
            BehaviourPane(self.browsing, tree, chart, id="behaviour"),
        ]
        yield from browser_layout(self.browsing, tree, panes, self.search)

    def search(self, query: str, match: str) -> tuple[list[Hit], None]:
        """The filter's query, on this model's cache (in the filter's worker thread)."""
        return search_cache(self.path, query, match), None

    def on_graph_done(self, message: GraphDone) -> None:
        """The circuit pane's graph build ended (done, cancelled, or failed: its error is a notification)."""
        self.end_run()
        self.cancel.clear()
        self.query_one("#decode-bar", ProgressBar).update(progress=0)
        for pane in self.query(CircuitPane):
            pane.built(message.outcome)
