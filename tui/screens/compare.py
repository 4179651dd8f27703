"""Compare mode (`neuroscope tui BASE --compare OTHER`): the browser of BASE (the screen of screens/browser.py
with its layout, screens/layout.py) with one ComparisonPane (widgets/comparison.py) where the browser has its
detail pane: the selected neuron in both models side by side, the per-layer agreement as a bar chart, a
"changed only" list that walks the most-changed neurons, and a filter that searches both models. The pane
owns the other model, the statistics and their workers; its keys work anywhere on the screen."""

from __future__ import annotations

from typing import ClassVar

from textual.app import ComposeResult
from textual.binding import BindingType

from ...core.compare import Comparison
from ...core.loading.sources import Source
from ..keys import screen_wide
from ..messages import CompareFailed
from ..options import Options
from ..widgets.agreement_chart import AgreementChart
from ..widgets.behaviour import BehaviourPane
from ..widgets.compare_panes import ChangedTable
from ..widgets.comparison import KEYS, ComparisonPane
from ..widgets.detail import NeuronDetail
from .browser import BrowserScreen
from .error import ErrorScreen
from .layout import browser_layout, neuron_tree


class CompareScreen(BrowserScreen):
    BINDINGS: ClassVar[list[BindingType]] = [*screen_wide(KEYS, "#comparison")]

    def __init__(self, source: Source, other: Source, options: Options | None = None):
        super().__init__(source, options)
        self.other = other

    def compose(self) -> ComposeResult:
        """Both models' panes where the browser has its detail pane. The detail and behaviour panes are
        there too, hidden: the behaviour keys (E, F, M) work here as in the browser."""
        tree = neuron_tree(self.browsing)
        comparison = ComparisonPane(self.browsing, self.other, self.goto, id="comparison")
        detail, behaviour = NeuronDetail(id="detail"), BehaviourPane(self.browsing, tree, None, id="behaviour")
        detail.display = behaviour.display = False
        yield from browser_layout(self.browsing, tree, [comparison, detail, behaviour], comparison.search)

    @property
    def comparison_pane(self) -> ComparisonPane | None:
        return next(iter(self.query(ComparisonPane)), None)

    @property
    def comparison(self) -> Comparison | None:
        """The statistics for the view and direction shown, once the worker made them."""
        pane = self.comparison_pane
        return pane.comparison if pane is not None else None

    @property
    def chart(self) -> AgreementChart:
        return self.query_one("#agreement", AgreementChart)

    @property
    def changed_table(self) -> ChangedTable:
        return self.query_one("#changed", ChangedTable)

    def on_compare_failed(self, message: CompareFailed) -> None:  # the pane shows it on its chart first
        self.app.push_screen(ErrorScreen("cannot compare these models", message.text))
