"""The screen that runs the browser's layout (screens/layout.py), for the browser (screens/main.py) and compare
mode (screens/compare.py): the tree, the decode in a worker, the filter's results, the view and direction, the
clamp basket and chat pane, and the back key. Each screen composes its own panes for the selected neuron (compare
mode's: a ComparisonPane); they own their keys (screen-wide: keys.screen_wide) and workers, share the state of
one Browsing (tui/browsing.py), and the screen tells them the neuron, view and direction to show. The decode
and every filter query run in workers; layers appear as the decode commits them."""

from __future__ import annotations

from typing import ClassVar

from rich.text import Text
from textual import work
from textual.binding import Binding, BindingType
from textual.screen import Screen
from textual.widgets import DataTable, Input, ProgressBar, Static, Tree
from textual.worker import Worker, WorkerState

from ...core.loading.sources import Source
from ...core.refs import HeadRef, NeuronRef
from ...errors import BadNeuronRef, Cancelled
from ..browsing import Browsing
from ..format import concept_labels, show_token
from ..heads import head_shown
from ..host import host
from ..keys import screen_wide
from ..messages import DecodeNote, DecodeProgress, ExamplesDone, SearchResults, UnitCommitted
from ..options import Options
from ..widgets.activity import Activity, begin, end
from ..widgets.behaviour import BehaviourPane
from ..widgets.chat_pane import ChatPane
from ..widgets.circuit_pane import CircuitPane
from ..widgets.comparison import ComparisonPane
from ..widgets.detail import NeuronDetail
from ..widgets.filter import ResultsTable
from ..widgets.neuron_tree import NeuronTree
from .view_picker import DIRECTION_MEANS, VIEW_MEANS, VIEWS, ViewScreen


class BrowserScreen(Screen):
    BINDINGS: ClassVar[list[BindingType]] = [
        *screen_wide(BehaviourPane.BINDINGS, "#behaviour"),
        Binding("slash", "focus_filter", "Filter", id="filter"),
        Binding("v", "pick_view", "View", id="view"),
        Binding("n", "toggle_direction", "±Dir", id="direction"),
        Binding("escape", "back", "Back", id="back"),
        Binding("c", "clamp_add", "Clamp", id="clamp.add"),
        Binding("C", "toggle_chat", "Chat", id="chat.toggle"),
    ]

    def __init__(self, source: Source, options: Options | None = None):
        super().__init__()
        self.source = source
        self.options = options or Options()
        self.browsing = Browsing(source, self.options, self.post_message)

    # -- the shared state, as the app (and tests) read it ---------------------------------
    path = property(lambda self: self.browsing.path)
    runner = property(lambda self: self.browsing.runner)
    store = property(lambda self: self.browsing.store)
    current = property(lambda self: self.browsing.current)
    decoding = property(lambda self: self.browsing.decoding)
    cancel = property(lambda self: self.browsing.cancel)

    @property
    def view(self) -> str:
        return self.browsing.view

    @view.setter
    def view(self, view: str) -> None:
        if view != self.browsing.view:
            self.browsing.view = view
            self.refresh_view()

    @property
    def direction(self) -> str:
        return self.browsing.direction

    @direction.setter
    def direction(self, direction: str) -> None:
        if direction != self.browsing.direction:
            self.browsing.direction = direction
            self.refresh_view()

    @property
    def neuron_tree(self) -> NeuronTree:  # not ``tree``: DOMNode.tree is Textual's debug rendering
        return self.query_one("#tree", NeuronTree)

    @property
    def results(self) -> ResultsTable:
        return self.query_one("#results", ResultsTable)

    @property
    def chat(self) -> ChatPane:
        return self.query_one("#chat", ChatPane)

    async def action_pane(self, selector: str, action: str) -> None:
        """Run a pane's action (its keys, made screen-wide by keys.screen_wide)."""
        for pane in self.query(selector):
            await pane.run_action(action)

    def on_mount(self) -> None:
        self.title = self.source.name
        self.chat.display = False  # #results and #decode-row start hidden (app.tcss)
        self.open_store()
        if self.store is None or not self.store.status()["complete"]:
            self.start_decode()
        self.update_header()
        self.neuron_tree.focus()
        if self.store is not None and self.store.layers:
            node = self.neuron_tree.node_for(0, 0)
            if node is not None:
                self.call_after_refresh(self.neuron_tree.focus_node, node)

    def on_unmount(self) -> None:
        self.browsing.close()

    # -- the cache ---------------------------------------------------------------------
    def open_store(self) -> None:
        """Open (or reopen, to see new meta) the cache read-only and put its decoded layers in the tree."""
        error = self.browsing.open_store()
        if error is not None:
            self.notify(error, title="cache", severity="warning")
        store = self.store
        if store is None:
            return
        self.neuron_tree.neurons = store.neurons
        for layer in sorted({layer for layer, _ in store.done_units()}):
            self.neuron_tree.add_layer(layer)

    def update_header(self) -> None:
        self.sub_title = self.browsing.header()

    # -- decoding and examples runs (they share the progress row) ------------------------
    def start_decode(self) -> None:
        b = self.browsing
        b.decoding = True
        b.progress_label = "decoding (esc cancels)"
        b.waiting = begin(self, "decoding every neuron (finished layers are kept)", b.cancel.set)
        self.decode_worker()

    @work(thread=True, exclusive=True, exit_on_error=False, group="decode", name="decode")
    def decode_worker(self) -> str:
        def committed(layer: int, view: str) -> None:
            self.post_message(UnitCommitted(layer, view))

        try:  # imports torch: only ever in this thread
            self.browsing.model.decode(cancel=self.cancel, announce=False, on_unit=committed)
        except Cancelled:
            return "cancelled"
        return "done"

    def on_decode_progress(self, message: DecodeProgress) -> None:
        if self.browsing.waiting is not None:
            self.on_first_progress()  # the progress bar replaces the activity line
        self.query_one("#decode-bar", ProgressBar).update(total=max(1, message.total), progress=message.done)
        if not self.cancel.is_set():
            self.query_one("#decode-label", Static).update(self.browsing.progress_label)

    def on_first_progress(self) -> None:
        """A decode's or examples run's first progress: its bar takes over from the activity line."""
        task, self.browsing.waiting = self.browsing.waiting, None
        end(self, task)
        if task is not None and not task.cancelled.is_set():
            self.query_one("#decode-row").display = True

    def end_run(self) -> None:
        """A decode or examples run ended: the activity line and the progress row go away."""
        b = self.browsing
        end(self, b.waiting)
        b.waiting = None
        b.decoding = False
        self.query_one("#decode-row").display = False

    def on_decode_note(self, message: DecodeNote) -> None:
        self.notify(message.text, title="decode", timeout=4)

    def on_unit_committed(self, message: UnitCommitted) -> None:
        if self.store is None:
            self.open_store()
        if self.store is None:
            return
        self.neuron_tree.add_layer(message.layer)
        if message.view == self.view:
            self.neuron_tree.relabel()
            if self.current is not None and self.current.layer == message.layer:
                self.show_neuron(self.current)
        self.update_header()

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        host(self).route_worker_state(event)  # failures -> error modal / notification
        if event.worker.group != "decode" or event.state not in (
            WorkerState.SUCCESS,
            WorkerState.ERROR,
            WorkerState.CANCELLED,
        ):
            return
        self.end_run()
        self.open_store()
        self.neuron_tree.relabel()
        if self.current is not None:
            self.show_neuron(self.current)
        elif self.store is not None and self.neuron_tree.cursor_node is None:
            self.neuron_tree.cursor_line = 0
        if event.state == WorkerState.SUCCESS and event.worker.result == "cancelled":
            done = len(self.store.done_units()) if self.store else 0
            self.notify(
                f"decode cancelled; {done} finished layer-views kept — reopen the model to resume",
                title="decode",
                severity="warning",
            )
        self.update_header()
        if event.state == WorkerState.SUCCESS:
            for comparison in self.query(ComparisonPane):
                comparison.start_compare()  # the base's decode is complete: compare it now

    def on_examples_done(self, message: ExamplesDone) -> None:
        """The behaviour pane's examples run ended (done, cancelled, or failed: its error is a notification
        and the app stays as it was)."""
        self.end_run()
        self.cancel.clear()
        if message.outcome == "failed":
            return
        self.query_one("#decode-bar", ProgressBar).update(progress=0)
        self.open_store()
        if self.current is not None:
            self.show_neuron(self.current)
        self.notify(
            "examples ready"
            if message.outcome == "done"
            else "examples cancelled; what was done is kept, press E to resume",
            title="examples",
        )

    # -- the selected neuron -------------------------------------------------------------
    def on_tree_node_highlighted(self, event: Tree.NodeHighlighted) -> None:
        self.show_node(event.node.data)

    def on_tree_node_selected(self, event: Tree.NodeSelected) -> None:
        if self.show_node(event.node.data):
            self.query_one("#detail-table").focus()

    def show_node(self, info) -> bool:
        """Show a neuron's or a head's leaf in the detail pane; False for any other node."""
        if info is not None and info.kind == "neuron":
            self.show_neuron(NeuronRef(info.layer, info.start))
        elif info is not None and info.kind == "head" and self.store is not None:
            shown = head_shown(self.store, HeadRef(info.layer, info.start), self.direction, self.source.name)
            self.query_one("#detail", NeuronDetail).show_head(shown)
        else:
            return False
        return True

    def show_neuron(self, ref: NeuronRef) -> None:
        self.browsing.current = ref
        store = self.store
        if store is None:
            return
        title = Text(str(ref), style="bold")
        title.append(f"  {self.view} {self.direction}", style="bold green")
        [label] = concept_labels(store, ref.layer, self.view, self.direction, [ref.neuron]) or [None]
        if label is not None:
            title.append(f"  {show_token(label[0])} {label[1]:.2f}", style="bold yellow")
        title.append(f"  {self.source.name}", style="dim")
        top = store.top(ref.layer, ref.neuron, self.view, self.direction)
        others = [(v, store.top(ref.layer, ref.neuron, v, self.direction)) for v in store.views if v != self.view]
        self.query_one("#detail", NeuronDetail).show(title, top, others)
        for pane in self.query(BehaviourPane):
            pane.show(store, ref)
        for circuit in self.query(CircuitPane):
            circuit.show(ref)
        for comparison in self.query(ComparisonPane):
            comparison.show(ref)

    def goto(self, ref: NeuronRef, focus_tree: bool = True) -> bool:
        """Show a neuron in tree and detail; False (with a notification) when it cannot be shown."""
        if self.store is None:
            self.notify("nothing is decoded yet", severity="warning")
            return False
        try:
            ref.check(self.store.layers, self.store.neurons)
        except BadNeuronRef as exc:
            self.notify(str(exc), severity="error")
            return False
        node = self.neuron_tree.node_for(ref.layer, ref.neuron)
        if node is None:
            self.notify(f"layer {ref.layer} is not decoded yet", severity="warning")
            return False
        self.show_neuron(ref)
        if focus_tree:
            self.neuron_tree.focus()
        self.call_after_refresh(self.neuron_tree.focus_node, node)
        return True

    # -- view and direction ------------------------------------------------------------
    def action_pick_view(self) -> None:
        """`v`, then u / g / d: the view changes only on the second key (a stray d or g does nothing)."""
        views = self.store.views if self.store is not None else VIEWS

        def picked(view: str | None) -> None:
            if view:
                self.action_set_view(view)

        self.app.push_screen(ViewScreen(self.view, views), picked)

    def action_set_view(self, view: str) -> None:
        if self.store is not None and view not in self.store.views:
            self.notify(f"{self.store.meta.get('arch')} has no {view} view", severity="warning")
            return
        if view != self.view:
            self.notify(f"view: {view} — {VIEW_MEANS[view]}", title="view", timeout=2)
        self.view = view

    def action_toggle_direction(self) -> None:
        self.direction = "neg" if self.direction == "pos" else "pos"
        self.notify(f"direction: {self.direction} — {DIRECTION_MEANS[self.direction]}", title="direction", timeout=2)

    def refresh_view(self) -> None:
        """After a view or direction switch: the panes, the tree's labels (or order) and the header follow."""
        panes = self.query(BehaviourPane)
        for pane in panes:
            pane.refresh_view()
        if not panes:
            self.neuron_tree.relabel()
        cursor = self.neuron_tree.cursor_node
        if cursor is not None and cursor.data is not None and cursor.data.kind == "head":
            self.show_node(cursor.data)  # a head under the cursor shows in the new direction
        elif self.current is not None:
            self.show_neuron(self.current)
        self.update_header()
        for comparison in self.query(ComparisonPane):
            comparison.start_compare()  # the statistics are made again for the view shown

    # -- filter ----------------------------------------------------------------------------
    def action_focus_filter(self) -> None:
        for comparison in self.query(ComparisonPane):
            comparison.hide_changed()
        self.query_one("#query", Input).focus()

    def action_focus_tree(self) -> None:
        self.neuron_tree.focus()

    def on_search_results(self, message: SearchResults) -> None:
        if message.query:
            for comparison in self.query(ComparisonPane):
                comparison.hide_changed()
        self.results.show_results(message)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        if event.input.id == "query" and self.results.row_count:
            self.results.focus()
            self.results.move_cursor(row=0)
            self.jump(0, focus_tree=False)

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        if event.data_table.id == "results":
            self.jump(event.cursor_row)
        event.stop()

    def jump(self, row: int, focus_tree: bool = True) -> None:
        hits = self.results.hits
        if not 0 <= row < len(hits):
            return
        hit = hits[row]
        self.view, self.direction = hit.view, hit.direction
        self.goto(NeuronRef(hit.layer, hit.neuron), focus_tree)

    # -- clamping and the chat pane -----------------------------------------------------
    def action_clamp_add(self) -> None:
        if self.current is None:
            self.notify("select a neuron first", severity="warning")
            return
        self.chat.request_clamp(self.current)

    def action_toggle_chat(self) -> None:
        self.chat.display = not self.chat.display
        if self.chat.display:
            self.query_one("#chat-prompt", Input).focus()

    def on_resize(self) -> None:
        self.set_class(self.size.height < 36, "-short")  # 80x24: the chat pane takes the behaviour's rows

    def action_back(self) -> None:
        if self.chat.cancel_generation():
            return
        task = self.query_one("#activity", Activity).cancel()
        if task is not None:
            behind = " (the model finishes loading in the background: the next use starts at once)"
            return self.notify(f"cancelled: {task.what}{behind if self.runner._lm is None else ''}", timeout=4)
        focused = self.focused
        if focused is not None and focused is not self.neuron_tree:
            self.neuron_tree.focus()
        elif self.results.display:
            self.query_one("#query", Input).value = ""
            self.results.display = False
        elif self.decoding and not self.cancel.is_set():
            self.cancel.set()
            self.query_one("#decode-label", Static).update("cancelling…")
