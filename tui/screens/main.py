"""The browser: tree of layers and neurons, the selected neuron's tokens, the filter and its results.

Reads from the cache on the UI thread are single small blob reads; the decode and every filter query
run in workers. The cache may still be filling: layers appear as the decode worker commits them."""
from __future__ import annotations

import asyncio
import threading

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.reactive import reactive
from textual.screen import Screen
from textual.widgets import DataTable, Header, Input, ProgressBar, Select, Static, Tree
from textual.worker import Worker, WorkerState

from ...cache.store import Store
from ...core.loading.sources import Source
from ...core.refs import NeuronRef
from ...errors import BadNeuronRef, CacheError, Cancelled
from ..format import concept_labels, show_token, tree_labels
from ..messages import DecodeNote, DecodeProgress, SearchResults, UnitCommitted, progress_messages
from ..options import Options, model_for
from ..screens.view_picker import DIRECTION_MEANS, VIEW_MEANS, VIEWS, ViewScreen
from ..widgets.activity import Activity, begin, end
from ..widgets.agreement_chart import AgreementChart
from ..widgets.behaviour import BehaviourPane
from ..widgets.chat_pane import ChatPane
from ..widgets.detail import NeuronDetail
from ..widgets.filter import MAX_RANK, RESULT_LIMIT, FilterBar, ResultsTable, search_cache
from ..widgets.footer import HelpFooter
from ..widgets.neuron_tree import NeuronTree
from .behaviour import BehaviourActions

DEBOUNCE_S = 0.15


class MainScreen(BehaviourActions, Screen):
    BINDINGS = BehaviourActions.BEHAVIOUR_BINDINGS + [
        Binding("slash", "focus_filter", "Filter", id="filter"),
        Binding("v", "pick_view", "View", id="view"),
        Binding("n", "toggle_direction", "±Dir", id="direction"),
        Binding("escape", "back", "Back", id="back"),
        Binding("c", "clamp_add", "Clamp", id="clamp.add"),
        Binding("C", "toggle_chat", "Chat", id="chat.toggle"),
    ]

    view: reactive[str] = reactive("up", init=False)
    direction: reactive[str] = reactive("pos", init=False)

    def __init__(self, source: Source, options: Options | None = None):
        super().__init__()
        self.source = source
        self.options = options or Options()
        self.model = model_for(source, self.options, lambda text: self.post_message(DecodeNote(text)),
                               progress_messages(self.post_message))
        self.runner = model_for(source, self.options)   # the whole model, loaded once: chat, probe, examples
        self.path = self.model.path
        self.store: Store | None = None
        self.cancel = threading.Event()
        self.decoding = False
        self.units_total = 0
        self.progress_label = "decoding (esc cancels)"    # the progress row's label (decode or examples)
        self.waiting = None     # the activity line's Task of a decode or examples run, until its first progress
        self.current: NeuronRef | None = None

    # -- layout ------------------------------------------------------------------------
    def compose(self) -> ComposeResult:
        yield Header(icon="◆")
        with Horizontal(id="body"):
            yield NeuronTree(self.source.name, labels=self.tree_labels, id="tree")
            with Vertical(id="right"):
                yield ResultsTable(id="results")
                yield from self.compose_detail()
                yield ChatPane(self.runner, self.options, id="chat")
        with Horizontal(id="decode-row"):
            yield Static("decoding", id="decode-label")
            yield ProgressBar(id="decode-bar", show_eta=True)
        yield Activity(self.runner, id="activity")
        yield FilterBar(id="filter")
        yield HelpFooter()

    def compose_detail(self) -> ComposeResult:
        """The selected neuron's pane and what it does on text (compare mode composes both models' panes
        here instead)."""
        yield AgreementChart("decode agrees with examples", id="behaviour-agreement")
        yield NeuronDetail(id="detail")
        yield BehaviourPane(self.runner, id="behaviour")

    @property
    def tree(self) -> NeuronTree:
        return self.query_one("#tree", NeuronTree)

    @property
    def results(self) -> ResultsTable:
        return self.query_one("#results", ResultsTable)

    def on_mount(self) -> None:
        self.title = self.source.name
        self.chat.display = False                  # #results and #decode-row start hidden (app.tcss)
        for chart in self.query("#behaviour-agreement"):
            chart.display = False
        self.open_store()
        if self.store is None or not self.store.status()["complete"]:
            self.start_decode()
        self.update_header()
        self.tree.focus()
        if self.store is not None and self.store.layers:
            node = self.tree.node_for(0, 0)
            if node is not None:
                self.call_after_refresh(self.tree.focus_node, node)

    def on_unmount(self) -> None:
        self.cancel.set()
        if self.store is not None:
            self.store.close()

    # -- the cache ---------------------------------------------------------------------
    def open_store(self) -> None:
        """Open (or reopen, to see new meta) the cache read-only; None while it has no meta yet."""
        if self.store is not None:
            self.store.close()
            self.store = None
        if not self.path.exists():
            return
        try:
            store = Store(self.path, readonly=True)
        except CacheError as exc:
            self.notify(str(exc), title="cache", severity="warning")
            return
        if not store.meta.get("layers"):
            store.close()
            return
        self.store = store
        self.tree.neurons = store.neurons
        for layer in sorted({layer for layer, _ in store.done_units()}):
            self.tree.add_layer(layer)

    def tree_labels(self, layer: int, neurons):
        return None if self.store is None else tree_labels(self.store, layer, self.view, self.direction, neurons)

    def update_header(self) -> None:
        parts = []
        store = self.store
        if store is not None:
            device = store.meta.get("decoded_with") or f"{self.options.device} {self.options.dtype}"
            done, total = len(store.done_units()), store.layers * len(store.views)
            parts += [device, f"{store.layers} × {store.neurons:,} neurons"]
        else:
            device = f"{self.options.device} {self.options.dtype}"
            done, total = 0, 0
            parts.append(device)
        parts.append(f"{self.view} {self.direction}")
        if self.decoding:
            parts.append(f"decoding {done}/{total or '?'}")
        elif total and done == total:
            parts.append("decoded")
        else:
            parts.append(f"partial {done}/{total} (reopen to resume)")
        self.sub_title = " · ".join(parts)

    # -- decoding ------------------------------------------------------------------------
    def start_decode(self) -> None:
        self.decoding = True
        self.progress_label = "decoding (esc cancels)"
        self.waiting = begin(self, "decoding every neuron (finished layers are kept)", self.cancel.set)
        self.decode_worker()

    @work(thread=True, exclusive=True, exit_on_error=False, group="decode", name="decode")
    def decode_worker(self) -> str:
        try:                              # imports torch: only ever in this thread
            self.model.decode(cancel=self.cancel, announce=False,
                              on_unit=lambda layer, view: self.post_message(UnitCommitted(layer, view)))
        except Cancelled:
            return "cancelled"
        return "done"

    def on_decode_progress(self, message: DecodeProgress) -> None:
        if self.waiting is not None:
            self.on_first_progress()     # the progress bar replaces the activity line
        self.query_one("#decode-bar", ProgressBar).update(total=max(1, message.total), progress=message.done)
        if not self.cancel.is_set():
            self.query_one("#decode-label", Static).update(self.progress_label)

    def on_decode_note(self, message: DecodeNote) -> None:
        self.notify(message.text, title="decode", timeout=4)

    def on_unit_committed(self, message: UnitCommitted) -> None:
        if self.store is None:
            self.open_store()
        if self.store is None:
            return
        self.tree.add_layer(message.layer)
        if message.view == self.view:
            self.tree.relabel()
            if self.current is not None and self.current.layer == message.layer:
                self.show_neuron(self.current)
        self.update_header()

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        self.app.route_worker_state(event)  # failures -> error modal / notification
        if event.worker.group != "decode" or event.state not in (WorkerState.SUCCESS, WorkerState.ERROR,
                                                                 WorkerState.CANCELLED):
            return
        self.decoding = False
        self.waiting = end(self, self.waiting)
        self.query_one("#decode-row").display = False
        self.open_store()
        self.tree.relabel()
        if self.current is not None:
            self.show_neuron(self.current)
        elif self.store is not None and self.tree.cursor_node is None:
            self.tree.cursor_line = 0
        if event.state == WorkerState.SUCCESS and event.worker.result == "cancelled":
            done = len(self.store.done_units()) if self.store else 0
            self.notify(f"decode cancelled; {done} finished layer-views kept — reopen the model to resume",
                        title="decode", severity="warning")
        self.update_header()

    # -- the selected neuron -------------------------------------------------------------
    def on_tree_node_highlighted(self, event: Tree.NodeHighlighted) -> None:
        info = event.node.data
        if info is not None and info.kind == "neuron":
            self.show_neuron(NeuronRef(info.layer, info.start))

    def on_tree_node_selected(self, event: Tree.NodeSelected) -> None:
        info = event.node.data
        if info is not None and info.kind == "neuron":
            self.show_neuron(NeuronRef(info.layer, info.start))
            self.query_one("#detail-table").focus()

    def show_neuron(self, ref: NeuronRef) -> None:
        self.current = ref
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
        node = self.tree.node_for(ref.layer, ref.neuron)
        if node is None:
            self.notify(f"layer {ref.layer} is not decoded yet", severity="warning")
            return False
        self.show_neuron(ref)
        if focus_tree:
            self.tree.focus()
        self.call_after_refresh(self.tree.focus_node, node)
        return True

    # -- view and direction ------------------------------------------------------------
    def action_pick_view(self) -> None:
        """`v`, then u / g / d: the view changes only on the second key (a stray d or g does nothing)."""
        views = self.store.views if self.store is not None else VIEWS
        self.app.push_screen(ViewScreen(self.view, views), lambda view: view and self.action_set_view(view))

    def action_set_view(self, view: str) -> None:
        if self.store is not None and view not in self.store.views:
            self.notify(f"{self.store.meta.get('arch')} has no {view} view", severity="warning")
            return
        if view != self.view:
            self.notify(f"view: {view} — {VIEW_MEANS[view]}", title="view", timeout=2)
        self.view = view

    def action_toggle_direction(self) -> None:
        self.direction = "neg" if self.direction == "pos" else "pos"
        self.notify(f"direction: {self.direction} — {DIRECTION_MEANS[self.direction]}", title="direction",
                    timeout=2)

    def watch_view(self) -> None:
        self._refresh_view()

    def watch_direction(self) -> None:
        self._refresh_view()

    def _refresh_view(self) -> None:
        if self.query("#behaviour-agreement"):
            self.show_agreement()
        self.resort_or_relabel()
        if self.current is not None:
            self.show_neuron(self.current)
        self.update_header()

    # -- filter ----------------------------------------------------------------------------
    def action_focus_filter(self) -> None:
        self.query_one("#query", Input).focus()

    def action_focus_tree(self) -> None:
        self.tree.focus()

    def on_input_changed(self, event: Input.Changed) -> None:
        if event.input.id == "query":
            self.refilter()

    def on_select_changed(self, event: Select.Changed) -> None:
        if event.select.id == "match":
            self.refilter()

    def refilter(self) -> None:
        bar = self.query_one("#filter", FilterBar)
        query = bar.query_text.strip()
        if not query:
            self.workers.cancel_group(self, "filter")
            self.results.fill([])
            self.results.display = False
            return
        self.run_filter(query, bar.match)

    @work(exclusive=True, group="filter", exit_on_error=False)
    async def run_filter(self, query: str, match: str) -> None:
        await asyncio.sleep(DEBOUNCE_S)  # the next keystroke cancels this worker
        hits = await asyncio.to_thread(search_cache, self.path, query, match)
        self.post_message(SearchResults(query, match, hits))

    def on_search_results(self, message: SearchResults) -> None:
        bar = self.query_one("#filter", FilterBar)
        if message.query != bar.query_text.strip() or message.match != bar.match:
            return  # stale
        self.results.fill(message.hits)
        self.results.display = True
        n = len(message.hits)
        self.results.border_title = (
            f"{n}{'+' if n >= RESULT_LIMIT else ''} match '{message.query}' ({message.match}, top {MAX_RANK})"
            if n else f"no neuron's top {MAX_RANK} matches '{message.query}' ({message.match})")

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
    @property
    def chat(self) -> ChatPane:
        return self.query_one("#chat", ChatPane)

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
        self.set_class(self.size.height < 36, "-short")      # 80x24: the chat pane takes the behaviour's rows

    def action_back(self) -> None:
        if self.chat.cancel_generation():
            return
        task = self.query_one("#activity", Activity).cancel()
        if task is not None:
            behind = " (the model finishes loading in the background: the next use starts at once)"
            return self.notify(f"cancelled: {task.what}{behind if self.runner._lm is None else ''}", timeout=4)
        focused = self.focused
        if focused is not None and focused is not self.tree:
            self.tree.focus()
        elif self.results.display:
            self.query_one("#query", Input).value = ""
            self.results.display = False
        elif self.decoding and not self.cancel.is_set():
            self.cancel.set()
            self.query_one("#decode-label", Static).update("cancelling…")
