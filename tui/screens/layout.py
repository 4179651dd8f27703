"""The browser's layout, shared by the browser (screens/main.py) and compare mode (screens/compare.py): the
tree on the left; on the right the filter's results, the screen's panes for the selected neuron and the chat
pane; under them the progress row, the activity line, the filter bar and the keys."""

from __future__ import annotations

from collections.abc import Iterable

from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.widget import Widget
from textual.widgets import Header, ProgressBar, Static

from ..browsing import Browsing
from ..widgets.activity import Activity
from ..widgets.chat_pane import ChatPane
from ..widgets.filter import FilterBar, ResultsTable, Search
from ..widgets.footer import HelpFooter
from ..widgets.neuron_tree import NeuronTree


def neuron_tree(browsing: Browsing) -> NeuronTree:
    """The tree of layers and neurons (and heads, once cached), labelled from the cache."""
    return NeuronTree(browsing.source.name, labels=browsing.labels, heads=browsing.head_labels, id="tree")


def browser_layout(browsing: Browsing, tree: NeuronTree, panes: Iterable[Widget], search: Search) -> ComposeResult:
    """The tree on the left; on the right the filter's results, the screen's ``panes`` for the selected
    neuron and the chat pane; under them the progress row, the activity line, the filter bar and the keys."""
    yield Header(icon="◆")
    with Horizontal(id="body"):
        yield tree
        with Vertical(id="right"):
            yield ResultsTable(id="results")
            yield from panes
            yield ChatPane(browsing.runner, browsing.options, id="chat")
    with Horizontal(id="decode-row"):
        yield Static("decoding", id="decode-label")
        yield ProgressBar(id="decode-bar", show_eta=True)
    yield Activity(browsing.runner, id="activity")
    yield FilterBar(search, id="filter")
    yield HelpFooter()
