"""What the selected neuron does on text: its max-activating examples (the activating token highlighted,
its value, both signs), how often each GLU case occurs, and a probe box that shows its activation on each
token of any text typed there as a coloured strip."""
from __future__ import annotations

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import Input, Static

from ...cache.examples import CASES, Examples
from ...choices import DIRECTIONS
from ..format import show_token
from ..messages import ProbeResult
from .activity import begin, end

SHOWN = 3          # examples per sign
CONTEXT = 10       # tokens of context per example line


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


def strip(tokens: list[str], values: list[float]) -> Text:
    """The probe's text, each token coloured by the neuron's activation on it (green +, red -)."""
    peak = max((abs(v) for v in values), default=0.0) or 1.0
    text = Text()
    for token, value in zip(tokens, values):
        level = min(1.0, abs(value) / peak)
        shade = int(40 + 215 * level)
        colour = f"rgb(0,{shade},0)" if value > 0 else f"rgb({shade},0,0)"
        text.append(show_token(token).replace("␣", " "), style=f"bold white on {colour}" if level > 0.15 else "")
    text.append(f"   peak {max(values, key=abs) if values else 0:+.2f}", style="dim")
    return text


class BehaviourPane(Vertical):
    """Under the neuron's tokens: its examples and cases (from the cache) and the probe (a worker)."""

    def __init__(self, model, **kwargs):
        super().__init__(**kwargs)
        self.model = model            # the API's Model: the probe loads it once, shared with the chat pane
        self.ref = None
        self.probe_task = None              # the running probe's Task on the activity line

    def compose(self) -> ComposeResult:
        yield Static("", id="examples")
        yield Input(placeholder="probe: type text, enter shows this neuron's activation on each token", id="probe",
                    compact=True)
        yield Static("", id="probe-strip")

    def show(self, store, ref) -> None:
        """Show ``ref``'s examples from ``store`` (the screen's read-only cache), or how to get them."""
        self.ref = ref
        box = self.query_one("#examples", Static)
        ex = Examples(store) if store is not None else None
        if ex is None or not ex.has_tables() or not ex.complete:
            box.update(Text("no examples yet: press E (or run `neuroscope examples MODEL`) to see where neurons "
                            "fire", style="dim"))
            return
        lines = Text(no_wrap=True, overflow="ellipsis")
        for sign in DIRECTIONS:
            for example in ex.neuron(ref.layer, ref.neuron, sign, SHOWN, CONTEXT):
                lines.append_text(example_line(example))
                lines.append("\n")
        counts = ex.counts(ref.layer)
        if counts is not None:
            cases, positive = counts
            total = int(ex.spec["windows"]) * int(ex.spec["window"])
            lines.append_text(case_bar(None if cases is None else {c: int(cases[i, ref.neuron])
                                                                  for i, c in enumerate(CASES)},
                                       int(positive[ref.neuron]) / max(1, total)))
        box.update(lines)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        if event.input.id != "probe":
            return
        event.stop()
        text = event.value.strip()
        if not text or self.ref is None:
            return
        loading = getattr(self.model, "_lm", None) is None
        self.query_one("#probe-strip", Static).update(Text("loading model… (the line over the filter counts the "
                                                           "seconds; esc cancels)" if loading else "running…",
                                                           style="dim italic"))
        if self.probe_task is not None:
            self.probe_task.cancelled.set()
        self.probe_task = begin(self, f"probing {self.ref} on the text", self.cancelled)
        self.probe_worker(text, self.ref, self.probe_task)

    def cancelled(self) -> None:
        self.query_one("#probe-strip", Static).update(Text("probe cancelled", style="dim italic"))

    @work(thread=True, exclusive=True, exit_on_error=False, group="probe", name="probe")
    def probe_worker(self, text: str, ref, task=None) -> None:
        result = self.model.trace(text, top=1, neurons=[ref])
        [neuron] = result.neurons
        self.post_message(ProbeResult(ref, [t.token for t in result.tokens], neuron.activations, task))

    def on_worker_state_changed(self, event) -> None:
        from textual.worker import WorkerState

        self.app.route_worker_state(event)      # failures become notifications
        if event.worker.group == "probe" and event.state in (WorkerState.ERROR, WorkerState.CANCELLED):
            end(self, self.probe_task)
            self.query_one("#probe-strip", Static).update(Text("probe failed", style="dim italic"))

    def on_probe_result(self, message: ProbeResult) -> None:
        end(self, message.task)
        if message.task is not None and message.task.cancelled.is_set():
            return
        head = Text(f"{message.ref} ", style="bold")
        self.query_one("#probe-strip", Static).update(head + strip(message.tokens, message.values))
