"""The browser's behaviour keys: compute the examples (E), sort a layer's neurons by how often they fire
(F) or by how specialised they are (M: label mass in the view and direction shown), and show the decode <->
behaviour agreement per layer (A). A mixin of MainScreen (its widgets are the BehaviourPane and an
AgreementChart in the right column)."""
from __future__ import annotations

import numpy as np
from textual import work
from textual.binding import Binding
from textual.widgets import ProgressBar
from textual.worker import Worker, WorkerState

from ...cache.examples import Examples
from ...cache.labels import Labels
from ...errors import Cancelled
from ..messages import AgreementReady, ExamplesDone, progress_messages
from ..widgets.activity import begin, end
from ..widgets.agreement_chart import AgreementChart


class BehaviourActions:
    BEHAVIOUR_BINDINGS = [
        Binding("E", "run_examples", "Examples", show=False, id="examples.run"),
        Binding("F", "sort_firing", "Sort by firing", show=False, id="tree.firing"),
        Binding("M", "sort_mass", "Sort by label mass", show=False, id="tree.mass"),
        Binding("A", "toggle_agreement", "Agreement", show=False, id="agreement.toggle"),
    ]

    # -- E: examples -----------------------------------------------------------------------------------
    def action_run_examples(self) -> None:
        if self.decoding:
            self.notify("a decode or examples run is going on: wait for it (escape cancels)", severity="warning")
            return
        self.decoding = True
        self.progress_label = "examples (esc cancels)"
        self.waiting = begin(self, "computing every neuron's examples over the default corpus",
                                   self.cancel.set)
        self.examples_worker()

    @work(thread=True, exclusive=True, exit_on_error=False, group="examples", name="examples")
    def examples_worker(self) -> None:
        self.runner.progress = progress_messages(self.post_message)
        try:
            self.runner.examples(cancel=self.cancel)
        except Cancelled:
            self.post_message(ExamplesDone("cancelled"))
            return
        self.post_message(ExamplesDone("done"))

    def on_first_progress(self) -> None:
        """A decode's or examples run's first progress: its bar takes over from the activity line."""
        task, self.waiting = self.waiting, None
        end(self, task)
        if task is not None and not task.cancelled.is_set():
            self.query_one("#decode-row").display = True

    def on_examples_done(self, message: ExamplesDone) -> None:
        self.waiting = end(self, self.waiting)
        self.decoding = False
        self.cancel.clear()
        self.query_one("#decode-row").display = False
        self.query_one("#decode-bar", ProgressBar).update(progress=0)
        self.open_store()
        if self.current is not None:
            self.show_neuron(self.current)
        self.notify("examples ready" if message.outcome == "done" else
                    "examples cancelled; what was done is kept, press E to resume", title="examples")

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:   # MainScreen's handler runs too
        """An examples run that failed (its error is a notification) leaves the app as it was."""
        if event.worker.group == "examples" and event.state in (WorkerState.ERROR, WorkerState.CANCELLED):
            self.waiting = end(self, self.waiting)
            self.decoding = False
            self.cancel.clear()
            self.query_one("#decode-row").display = False

    # -- F: sort by firing -----------------------------------------------------------------------------
    def action_sort_firing(self) -> None:
        if self.tree.order_name == "firing":
            self.tree.set_order({})
            self.notify("neurons in index order", timeout=2)
            return
        ex = Examples(self.store) if self.store is not None else None
        if ex is None or not ex.has_tables() or not ex.complete:
            self.notify("no examples yet: press E first", severity="warning")
            return
        orders, values = {}, {}
        tokens = max(1, int(ex.spec["windows"]) * int(ex.spec["window"]))
        for layer in range(self.store.layers):
            counts = ex.counts(layer)
            if counts is not None:
                positive = np.asarray(counts[1], np.int64)
                orders[layer] = np.lexsort((np.arange(len(positive)), -positive)).tolist()
                values[layer] = [f"{p / tokens:.1%}" for p in positive.tolist()]
        self.tree.set_order(orders, "firing", values)
        self.notify("each layer's neurons by how often they fire (> 0), most first; the column after each neuron "
                    "is its firing rate over the corpus", timeout=4)

    # -- M: sort by label mass (how specialised) ------------------------------------------------------
    def action_sort_mass(self) -> None:
        if self.tree.order_name == "label mass":
            self.tree.set_order({})
            self.notify("neurons in index order", timeout=2)
        elif self.sort_by_mass():
            self.notify(f"each layer's neurons by label mass in {self.view} {self.direction} (the most "
                        f"specialised first; it follows view and direction switches); the column after each "
                        f"neuron is that mass", timeout=4)

    def sort_by_mass(self) -> bool:
        labels = Labels(self.store) if self.store is not None else None
        if labels is None or not labels.has_tables():
            self.notify("this cache has no labels yet: reopen it with `neuroscope tui`", severity="warning")
            return False
        orders, values = {}, {}
        for layer in range(self.store.layers):
            got = labels.unit(layer, self.view, self.direction)
            if got is not None:
                orders[layer] = np.argsort(-got[1], kind="stable").tolist()
                values[layer] = [f"{min(1.0, m):.2f}" for m in got[1].tolist()]
        self.tree.set_order(orders, "label mass", values)
        return True

    def resort_or_relabel(self) -> None:
        """After a view or direction switch: a label-mass order is made again for it; else relabel."""
        if self.tree.order_name == "label mass":
            self.sort_by_mass()
        else:
            self.tree.relabel()

    # -- A: agreement ----------------------------------------------------------------------------------
    def action_toggle_agreement(self) -> None:
        chart = self.query_one("#behaviour-agreement", AgreementChart)
        chart.display = not chart.display
        if chart.display:
            chart.set_status("computing the decode ↔ behaviour agreement…")
            self.agreement_worker()

    @work(thread=True, exclusive=True, exit_on_error=False, group="agreement", name="agreement")
    def agreement_worker(self) -> None:
        self.post_message(AgreementReady(self.model.agreement()))

    def on_agreement_ready(self, message: AgreementReady) -> None:
        self.agreement = message.agreement
        self.show_agreement()

    def show_agreement(self) -> None:
        chart = self.query_one("#behaviour-agreement", AgreementChart)
        result = getattr(self, "agreement", None)
        if result is None or self.view not in result.views:
            return
        a = result.views[self.view]
        chart.show([p.agree for p in a.per_layer], f"{self.view}: {a.agree:.1%} of neurons agree · chance "
                                                  f"{a.chance:.1%} · all views {result.agree:.1%}", a.chance)
