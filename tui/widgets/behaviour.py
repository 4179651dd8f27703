"""What the selected neuron does on text: its max-activating examples (the activating token highlighted,
its value, both signs), how often each GLU case occurs, and a probe box that shows its activation on each
token of any text typed there as a coloured strip, and under it why the neuron fired at a token of that text (y:
widgets/why_fired.py).

The pane owns the behaviour keys and their workers: compute the examples (E), sort a layer's neurons by how
often they fire (F) or by how specialised they are (M: label mass in the view and direction shown), and show
the decode <-> behaviour agreement per layer (A) in the chart the screen hands it. Its screen makes these keys
work wherever the focus is (keys.screen_wide); the progress of an examples run and its end go to the screen as
messages (DecodeProgress, ExamplesDone), since the screen's progress row is shared with the decode."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.widgets import Input, Static
from textual.worker import Worker, WorkerState

from ...cache.examples import CASES, Examples
from ...cache.labels import Labels
from ...choices import DIRECTIONS
from ...errors import Cancelled
from ..format import show_token
from ..host import host
from ..messages import AgreementReady, ExamplesDone, ProbeResult, progress_messages
from .activity import Task, begin, end
from .agreement_chart import AgreementChart
from .neuron_tree import NeuronTree
from .why_fired import WhyFiredPane

if TYPE_CHECKING:
    from ...cache.store import Store
    from ...core.agreement import Agreement
    from ...core.refs import NeuronRef
    from ..browsing import Browsing

SHOWN = 3  # examples per sign
CONTEXT = 10  # tokens of context per example line


def example_line(example, width: int = 60) -> Text:
    """One example: its activation, then its context with the activating token highlighted."""
    line = Text(f"{example.activation:+8.2f} ", style="bold green" if example.activation > 0 else "bold red")
    if example.case:
        line.append(f"{example.case} ", style="dim")
    for i, token in enumerate(example.tokens):
        shown = show_token(token).replace("␣", " ")
        line.append(shown, style="reverse bold" if i == example.index else "")
    return line


def case_bar(cases: dict | None, positive: float) -> Text:
    text = Text("fires (> 0) on ", style="dim")
    text.append(f"{positive:.1%}", style="bold")
    text.append(" of tokens", style="dim")
    if cases:
        total = sum(cases.values()) or 1
        text.append("  ·  GLU cases ", style="dim")
        for case in CASES:
            share = cases[case] / total
            text.append(f"{case} ", style="bold")
            text.append("█" * max(0, round(share * 10)), style="blue")
            text.append(f" {share:.0%}  ", style="dim")
    return text


def strip(tokens: list[str], values: list[float], chosen: int | None = None) -> Text:
    """The probe's text, each token coloured by the neuron's activation on it (green +, red -); the token
    ``chosen`` in the why-it-fired pane reversed and underlined."""
    peak = max((abs(v) for v in values), default=0.0) or 1.0
    text = Text()
    for i, (token, value) in enumerate(zip(tokens, values)):
        level = min(1.0, abs(value) / peak)
        shade = int(40 + 215 * level)
        colour = f"rgb(0,{shade},0)" if value > 0 else f"rgb({shade},0,0)"
        style = f"bold white on {colour}" if level > 0.15 else ""
        if i == chosen:
            style = f"{style} reverse underline".strip()
        text.append(show_token(token).replace("␣", " "), style=style)
    text.append(f"   peak {max(values, key=abs) if values else 0:+.2f}", style="dim")
    if chosen is None:
        text.append("  · y: why it fired", style="dim")
    return text


class BehaviourPane(Vertical):
    """Under the neuron's tokens: its examples and cases (from the cache) and the probe (a worker); the
    behaviour keys (E, F, M, A, y) and their workers."""

    BINDINGS = [
        Binding("E", "run_examples", "Examples", show=False, id="examples.run"),
        Binding("F", "sort_firing", "Sort by firing", show=False, id="tree.firing"),
        Binding("M", "sort_mass", "Sort by label mass", show=False, id="tree.mass"),
        Binding("A", "toggle_agreement", "Agreement", show=False, id="agreement.toggle"),
        Binding("y", "why", "Why it fired", show=False, id="probe.why"),
    ]

    def __init__(self, browsing: Browsing, tree: NeuronTree, chart: AgreementChart | None, **kwargs: Any) -> None:
        """``browsing``: the screen's shared state (tui.browsing); ``tree``: the tree that F and M sort;
        ``chart``: where A shows the agreement (None: the screen has no room for it)."""
        super().__init__(**kwargs)
        self.browsing = browsing
        self.model = browsing.runner  # the API's Model: the probe loads it once, shared with the chat pane
        self.neuron_tree = tree
        self.chart = chart
        self.agreement: Agreement | None = None  # the decode <-> behaviour agreement, once A computed it
        self.ref: NeuronRef | None = None
        self.probe_task: Task | None = None  # the running probe's Task on the activity line
        self.probed: ProbeResult | None = None  # the strip's result (the why pane's tokens)

    def compose(self) -> ComposeResult:
        yield Static("", id="examples")
        yield Input(
            placeholder="probe: type text, enter shows this neuron's activation on each token", id="probe", compact=True
        )
        yield Static("", id="probe-strip")
        yield WhyFiredPane(self.model, id="why")

    def on_mount(self) -> None:
        if self.chart is not None:
            self.chart.display = False
        self.why.display = False

    def show(self, store: Store | None, ref: NeuronRef) -> None:
        """Show ``ref``'s examples from ``store`` (the screen's read-only cache), or how to get them."""
        self.ref = ref
        box = self.query_one("#examples", Static)
        ex = Examples(store) if store is not None else None
        if ex is None or not ex.has_tables() or not ex.complete:
            box.update(
                Text(
                    "no examples yet: press E (or run `neuroscope examples MODEL`) to see where neurons fire",
                    style="dim",
                )
            )
            return
        lines = Text(no_wrap=True, overflow="ellipsis")
        for sign in DIRECTIONS:
            for example in ex.neuron(ref.layer, ref.neuron, sign, SHOWN, CONTEXT):
                lines.append_text(example_line(example))
                lines.append("\n")
        counts = ex.counts(ref.layer)
        if counts is not None:
            cases, positive = counts
            total = int(ex.run_spec["windows"]) * int(ex.run_spec["window"])
            lines.append_text(
                case_bar(
                    None if cases is None else {c: int(cases[i, ref.neuron]) for i, c in enumerate(CASES)},
                    int(positive[ref.neuron]) / max(1, total),
                )
            )
        box.update(lines)

    def refresh_view(self) -> None:
        """After a view or direction switch: the agreement of the new view; a label-mass order is made again
        for it, else the tree is relabelled."""
        self.show_agreement()
        if self.neuron_tree.order_name == "label mass":
            self.sort_by_mass()
        else:
            self.neuron_tree.relabel()

    # -- the probe -------------------------------------------------------------------------------------
    def on_input_submitted(self, event: Input.Submitted) -> None:
        if event.input.id != "probe":
            return
        event.stop()
        text = event.value.strip()
        if not text or self.ref is None:
            return
        loading = getattr(self.model, "_lm", None) is None
        self.query_one("#probe-strip", Static).update(
            Text(
                "loading model… (the line over the filter counts the seconds; esc cancels)" if loading else "running…",
                style="dim italic",
            )
        )
        if self.probe_task is not None:
            self.probe_task.cancelled.set()
        self.probe_task = begin(self, f"probing {self.ref} on the text", self.cancelled)
        self.probe_worker(text, self.ref, self.probe_task)

    def cancelled(self) -> None:
        self.query_one("#probe-strip", Static).update(Text("probe cancelled", style="dim italic"))

    @work(thread=True, exclusive=True, exit_on_error=False, group="probe", name="probe")
    def probe_worker(self, text: str, ref: NeuronRef, task: Task | None = None) -> None:
        result = self.model.trace(text, top=1, neurons=[ref])
        [neuron] = result.neurons
        self.post_message(ProbeResult(ref, [t.token for t in result.tokens], neuron.activations, task, text))

    def on_probe_result(self, message: ProbeResult) -> None:
        end(self, message.task)
        if message.task is not None and message.task.cancelled.is_set():
            return
        self.probed = message
        self.why.load(message.ref, message.text, message.tokens, message.values)
        self.show_strip(self.why.index if self.why.display else None)

    def show_strip(self, chosen: int | None = None) -> None:
        got = self.probed
        if got is not None:
            head = Text(f"{got.ref} ", style="bold")
            self.query_one("#probe-strip", Static).update(head + strip(got.tokens, got.values, chosen))

    # -- y: why it fired (widgets/why_fired.py) ---------------------------------------------------------
    @property
    def why(self) -> WhyFiredPane:
        return self.query_one("#why", WhyFiredPane)

    def action_why(self) -> None:
        if self.probed is None:
            self.notify("probe some text first: type it in the probe box and press enter, then y", severity="warning")
            return
        if not self.display or self.screen.has_class("-short", "-chat-open"):
            self.notify("the chat pane has the probe's rows here: close it (C) first", severity="warning")
            return
        self.why.open()

    def on_why_fired_pane_chosen(self, message: WhyFiredPane.Chosen) -> None:
        message.stop()
        self.show_strip(message.index)

    def on_why_fired_pane_left(self, message: WhyFiredPane.Left) -> None:
        message.stop()
        self.why.display = False
        self.show_strip(None)
        self.neuron_tree.focus()

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        host(self).route_worker_state(event)  # failures become notifications
        if event.state not in (WorkerState.ERROR, WorkerState.CANCELLED):
            return
        if event.worker.group == "probe":
            end(self, self.probe_task)
            self.query_one("#probe-strip", Static).update(Text("probe failed", style="dim italic"))
        elif event.worker.group == "examples":  # the screen puts the progress row away; E can run again
            self.post_message(ExamplesDone("failed"))

    # -- E: examples -----------------------------------------------------------------------------------
    def action_run_examples(self) -> None:
        b = self.browsing
        if b.decoding:
            self.notify("a decode or examples run is going on: wait for it (escape cancels)", severity="warning")
            return
        b.decoding = True
        b.progress_label = "examples (esc cancels)"
        b.waiting = begin(self, "computing every neuron's examples over the default corpus", b.cancel.set)
        self.examples_worker()

    @work(thread=True, exclusive=True, exit_on_error=False, group="examples", name="examples")
    def examples_worker(self) -> None:
        self.model.progress = progress_messages(self.post_message)  # DecodeProgress bubbles to the screen
        try:
            self.model.examples(cancel=self.browsing.cancel)
        except Cancelled:
            self.post_message(ExamplesDone("cancelled"))
            return
        self.post_message(ExamplesDone("done"))

    # -- F: sort by firing -----------------------------------------------------------------------------
    def action_sort_firing(self) -> None:
        if self.neuron_tree.order_name == "firing":
            self.neuron_tree.set_order({})
            self.notify("neurons in index order", timeout=2)
            return
        store = self.browsing.store
        ex = Examples(store) if store is not None else None
        if store is None or ex is None or not ex.has_tables() or not ex.complete:
            self.notify("no examples yet: press E first", severity="warning")
            return
        orders, values = {}, {}
        tokens = max(1, int(ex.run_spec["windows"]) * int(ex.run_spec["window"]))
        for layer in range(store.layers):
            counts = ex.counts(layer)
            if counts is not None:
                positive = np.asarray(counts[1], np.int64)
                orders[layer] = np.lexsort((np.arange(len(positive)), -positive)).tolist()
                values[layer] = [f"{p / tokens:.1%}" for p in positive.tolist()]
        self.neuron_tree.set_order(orders, "firing", values)
        self.notify(
            "each layer's neurons by how often they fire (> 0), most first; the column after each neuron "
            "is its firing rate over the corpus",
            timeout=4,
        )

    # -- M: sort by label mass (how specialised) ------------------------------------------------------
    def action_sort_mass(self) -> None:
        b = self.browsing
        if self.neuron_tree.order_name == "label mass":
            self.neuron_tree.set_order({})
            self.notify("neurons in index order", timeout=2)
        elif self.sort_by_mass():
            self.notify(
                f"each layer's neurons by label mass in {b.view} {b.direction} (the most "
                f"specialised first; it follows view and direction switches); the column after each "
                f"neuron is that mass",
                timeout=4,
            )

    def sort_by_mass(self) -> bool:
        store = self.browsing.store
        labels = Labels(store) if store is not None else None
        if store is None or labels is None or not labels.has_tables():
            self.notify("this cache has no labels yet: reopen it with `neuroscope tui`", severity="warning")
            return False
        orders, values = {}, {}
        for layer in range(store.layers):
            got = labels.unit(layer, self.browsing.view, self.browsing.direction)
            if got is not None:
                orders[layer] = np.argsort(-got[1], kind="stable").tolist()
                values[layer] = [f"{min(1.0, m):.2f}" for m in got[1].tolist()]
        self.neuron_tree.set_order(orders, "label mass", values)
        return True

    # -- A: agreement ----------------------------------------------------------------------------------
    def action_toggle_agreement(self) -> None:
        chart = self.chart
        if chart is None:
            self.notify("the decode ↔ behaviour agreement shows in the browser (without --compare)", severity="warning")
            return
        chart.display = not chart.display
        if chart.display:
            chart.set_status("computing the decode ↔ behaviour agreement…")
            self.agreement_worker()

    @work(thread=True, exclusive=True, exit_on_error=False, group="agreement", name="agreement")
    def agreement_worker(self) -> None:
        self.post_message(AgreementReady(self.browsing.model.agreement()))

    def on_agreement_ready(self, message: AgreementReady) -> None:
        message.stop()
        self.agreement = message.agreement
        self.show_agreement()

    def show_agreement(self) -> None:
        chart, result, view = self.chart, self.agreement, self.browsing.view
        if chart is None or result is None or view not in result.views:
            return
        a = result.views[view]
        chart.show(
            [p.agree for p in a.per_layer],
            f"{view}: {a.agree:.1%} of neurons agree · chance {a.chance:.1%} · all views {result.agree:.1%}",
            a.chance,
        )
