"""Under the neuron's tokens: its circuit from the weights (neuroscope.circuits), the neurons it reads from
(upstream) and writes to (downstream), CIRCUIT_TOP of each, with the read vector each edge goes through, the
virtual weight and the neighbour's label; enter on one jumps to it, and the back key retraces the jumps.

The circuit graph is built once into the model's cache; the pane never builds it by itself: until it is built the
pane says so and its build key builds it (a worker, the screen's progress row, escape cancels, finished layers
kept). Once built, each lookup runs in a worker (a fraction of a second to a second or two on a large model), so
the cursor never waits on it. The pane owns its keys (its screen makes them screen-wide) and its workers."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, Callable, ClassVar

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.widgets import DataTable, Static
from textual.worker import Worker, WorkerState, get_current_worker

from ...circuits import circuit, ensure_graph, graph_status
from ...core.refs import NeuronRef
from ...errors import Cancelled
from ..host import host
from ..keys import binding_keys
from ..messages import CircuitReady, GraphDone, progress_messages
from ..options import model_for
from .activity import begin
from .tables import VimTable

if TYPE_CHECKING:
    from ..browsing import Browsing

CIRCUIT_TOP = 10  # neighbours listed per direction
SETTLE_S = 0.08  # a lookup waits this long first: the next cursor move cancels it
SECTIONS = (("upstream", "reads from"), ("downstream", "writes to"))
NONE = {"upstream": "layer 0 reads no earlier neuron", "downstream": "the last layer feeds no neuron"}

Goto = Callable[..., bool]  # the screen's goto(ref, focus_tree=...)


class CircuitPane(Vertical):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("B", "build", "Build circuit graph", show=False, id="circuit.build"),
        Binding("w", "walk", "Walk the circuit", show=False, id="circuit.walk"),
        Binding("b", "back", "Back along the circuit", show=False, id="circuit.back"),
    ]

    def __init__(self, browsing: Browsing, goto: Goto, **kwargs: Any) -> None:
        """``browsing``: the screen's shared state; ``goto``: the screen's goto (tree cursor, detail, panes)."""
        super().__init__(**kwargs)
        self.browsing = browsing
        self.goto = goto
        self.model = model_for(browsing.source, browsing.options)  # lookups: reads the cache, loads nothing
        self.ref: NeuronRef | None = None
        self.asked = False  # a lookup of ``ref`` was started (or answered): the same neuron again is no new one
        self.building = False
        self.circuit: dict | None = None  # the circuit shown
        self.rows: list[NeuronRef | None] = []  # the neighbour of each table row (None: a section's title)
        self.history: list[NeuronRef] = []  # where each jump started: the back key pops it

    def compose(self) -> ComposeResult:
        yield Static("", id="circuit-title")
        yield VimTable(id="circuit-table", show_header=False)

    def on_mount(self) -> None:
        table = self.query_one("#circuit-table", VimTable)
        table.add_column("neuron", key="neuron", width=10)
        table.add_column("via", key="via", width=4)
        table.add_column("weight", key="weight", width=8)
        table.add_column("label", key="label")

    @property
    def table(self) -> VimTable:
        return self.query_one("#circuit-table", VimTable)

    def status(self, text: str | Text) -> None:
        self.query_one("#circuit-title", Static).update(text if isinstance(text, Text) else Text(text, style="dim"))

    def clear(self) -> None:
        self.circuit, self.rows = None, []
        self.table.clear()

    # -- the selected neuron ------------------------------------------------------------------------
    def show(self, ref: NeuronRef) -> None:
        """Show ``ref``'s circuit (a lookup in a worker), or what it waits on."""
        if ref == self.ref and self.asked:
            return
        self.ref, self.asked = ref, False
        store = self.browsing.store
        if self.building:
            return self.status("building the circuit graph… (the bar below; esc cancels)")
        if store is None or not store.status()["complete"]:
            self.clear()
            return self.status("the circuit shows once the decode is complete")
        self.asked = True
        if self.circuit is not None:
            self.status(f"{ref}: looking up its circuit…")
        self.lookup_worker(ref)

    @work(thread=True, exclusive=True, exit_on_error=False, group="circuit", name="circuit lookup")
    def lookup_worker(self, ref: NeuronRef) -> None:
        time.sleep(SETTLE_S)
        if get_current_worker().is_cancelled:
            return
        done, needed = graph_status(self.model)
        if done < needed:
            self.post_message(CircuitReady(ref, None, (done, needed)))
            return
        got = circuit(self.model, ref, top=CIRCUIT_TOP)  # the graph is there: a lookup, nothing is built
        if not get_current_worker().is_cancelled:
            self.post_message(CircuitReady(ref, got, (done, needed)))

    def on_circuit_ready(self, message: CircuitReady) -> None:
        message.stop()
        if message.ref != self.ref or self.building:
            return
        if message.circuit is None:
            self.clear()
            done, needed = message.built
            key = self.key_of("circuit.build")
            partly = f" ({done} of {needed} layers: finished layers are kept)" if done else ""
            return self.status(f"circuit graph not built{partly}: press {key} to build")
        self.fill(message.ref, message.circuit)

    def key_of(self, binding_id: str) -> str:
        """The key a binding has now (config.toml's keymap may remap it)."""
        [binding] = [b for b in self.BINDINGS if isinstance(b, Binding) and b.id == binding_id]
        return binding_keys(binding, self.browsing.options.keymap).split(" / ")[0]

    def fill(self, ref: NeuronRef, got: dict) -> None:
        table = self.table
        focused, self.circuit, self.rows = table.has_focus, got, []
        table.clear()
        for key, title in SECTIONS:
            table.add_row(Text(title, style="bold"), "", "", Text(f"({key})", style="dim"))
            self.rows.append(None)
            if not got[key]:
                table.add_row(Text("none", style="dim"), "", "", Text(NONE[key], style="dim"))
                self.rows.append(None)
            for e in got[key]:
                neighbour = NeuronRef(e["layer"], e["neuron"])
                weight = Text(f"{e['weight']:+.4f}", style="green" if e["weight"] > 0 else "red")
                table.add_row(str(neighbour), e["via"], weight, e["label"] or "—")
                self.rows.append(neighbour)
        head = Text(f"{ref} circuit", style="bold")
        head.append(f"  {self.key_of('circuit.walk')} walk · enter jumps", style="dim")
        if self.history:
            head.append(f" · {self.key_of('circuit.back')} back ({len(self.history)})", style="dim")
        self.status(head)
        if focused:
            self.cursor_to_first()

    def cursor_to_first(self) -> None:
        first = next((i for i, r in enumerate(self.rows) if r is not None), None)
        if first is not None:
            self.table.move_cursor(row=first)

    # -- walking: jump along an edge, back along the path ------------------------------------------
    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        if 0 <= event.cursor_row < len(self.rows) and self.rows[event.cursor_row] is not None:
            self.jump(self.rows[event.cursor_row])

    def jump(self, target: NeuronRef | None) -> None:
        if target is None or self.ref is None:
            return
        start = self.ref
        if self.goto(target, focus_tree=False):
            self.history.append(start)

    def action_walk(self) -> None:
        """Focus the neighbours (enter jumps to one)."""
        self.table.focus()
        self.cursor_to_first()

    def action_back(self) -> None:
        if not self.history:
            self.notify("no jump to go back from: enter on a neighbour jumps to it", timeout=3)
            return
        self.goto(self.history.pop(), focus_tree=False)

    # -- building the graph ---------------------------------------------------------------------------
    def action_build(self) -> None:
        b = self.browsing
        if b.decoding:
            self.notify("a decode or examples run is going on: wait for it (escape cancels)", severity="warning")
            return
        if b.store is None or not b.store.status()["complete"]:
            self.notify("the circuit graph is built once the decode is complete", severity="warning")
            return
        b.decoding, self.building = True, True
        b.progress_label = "circuit graph (esc cancels)"
        b.waiting = begin(self, "building the circuit graph from the weights (finished layers are kept)", b.cancel.set)
        self.clear()
        self.status("building the circuit graph… (the bar below; esc cancels)")
        self.build_worker()

    @work(thread=True, exclusive=True, exit_on_error=False, group="circuit-build", name="circuit graph")
    def build_worker(self) -> None:
        b = self.browsing
        builder = model_for(b.source, b.options, progress=progress_messages(self.post_message))
        try:  # imports torch: only ever in this thread
            ensure_graph(builder, cancel=b.cancel, announce=False)
        except Cancelled:
            self.post_message(GraphDone("cancelled"))
            return
        self.post_message(GraphDone("done"))

    def built(self, outcome: str) -> None:
        """The screen's word that a build ended (it has put its progress row away): show the neuron again."""
        self.building, self.asked = False, False
        if outcome == "done":
            self.notify("circuit graph built", title="circuit")
        elif outcome == "cancelled":
            key = self.key_of("circuit.build")
            self.notify(f"circuit graph cancelled; finished layers are kept, press {key} to resume", title="circuit")
        if self.ref is not None:
            self.show(self.ref)

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        host(self).route_worker_state(event)  # failures become notifications
        if event.worker.group == "circuit-build" and event.state in (WorkerState.ERROR, WorkerState.CANCELLED):
            self.post_message(GraphDone("failed"))
        elif event.worker.group == "circuit" and event.state == WorkerState.ERROR:
            self.asked = False
            self.status("the circuit lookup failed (see the notification)")
