"""Under the probe strip: "why it fired", the selected neuron's read pre-activations at one token of the probe's
text split exactly into their sources (neuroscope.attribution: the embedding, each attention head, each earlier
neuron, the biases), the largest WHY_TOP of each read by |value| and the rest summed.

The behaviour pane's `y` opens it once a probe has a result: the token where |activation| is largest is chosen
first, h / l (left / right) choose another (the probe strip highlights it), enter explains it in a thread worker
(the activity line counts its seconds), escape cancels a running one, else leaves. Each token's answer is kept
until the next probe, so moving back shows it at once; an error is one line in the pane. Eight lines at most: a
header, then the reads side by side (GPT-2 and NeoX read with up only), each its total, its sources and the rest.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from rich.text import Text
from textual import work
from textual.binding import Binding, BindingType
from textual.message import Message
from textual.widgets import Static
from textual.worker import Worker, WorkerState

from ...errors import NeuroscopeError, first_line, one_line
from ..format import show_token
from ..messages import WhyFiredResult
from .activity import Task, begin, end

if TYPE_CHECKING:
    from ...api import Model
    from ...core.circuits.attribution import Attribution, Part, Read
    from ...core.refs import NeuronRef

WHY_TOP = 5  # sources listed per read (the rest is summed): a header and 7 rows per read fit 80x24
GAP = " │ "  # between the reads' columns


def where(part: Part) -> str:
    """A source in the app's notation: L12:N345 (a neuron), L5:H3 (a head), embed, L5 bias."""
    if part.kind == "neuron":
        return f"L{part.layer}:N{part.neuron}"
    if part.kind == "attn":
        return f"L{part.layer}:H{part.head}" if part.head is not None else f"L{part.layer} attn"
    if part.kind == "bias":
        return f"L{part.layer} bias"
    return "embed"


def value(x: float) -> str:
    return f"{x:+.3f}"


def cell(text: str, width: int, style: str = "", right: bool = False) -> Text:
    """``text`` in exactly ``width`` columns (cut with an ellipsis)."""
    if width <= 0:
        return Text("")
    if len(text) > width:
        text = text[: width - 1] + "…"
    return Text(text.rjust(width) if right else text.ljust(width), style=style)


def column(read: Read, width: int) -> list[Text]:
    """One read's rows: its name and total, its sources (largest |value| first), the rest."""
    names = [where(p) for p in read.sources]
    name_w = max(4, *(len(n) for n in names)) if names else 4
    value_w = max(len(value(x)) for x in [read.total, read.rest, *(p.value for p in read.sources)])
    label_w = width - name_w - value_w - 2

    def row(name: Text, number: Text, label: Text) -> Text:
        return Text(" ").join([name, number, label])

    rows = [
        row(cell(read.view, name_w, "bold"), cell(value(read.total), value_w, "bold", True), cell("pre-act", label_w))
    ]
    for name, part in zip(names, read.sources):
        colour = "green" if part.value > 0 else "red"
        label = show_token(part.label) if part.label else "—" if part.kind == "neuron" else ""
        rows.append(row(cell(name, name_w), cell(value(part.value), value_w, colour, True), cell(label, label_w)))
    rows.append(row(cell("rest", name_w), cell(value(read.rest), value_w, right=True), cell("others", label_w)))
    for line in rows[-1:]:
        line.stylize("dim")
    return rows


def table(result: Attribution, width: int) -> Text:
    """The reads side by side in ``width`` columns."""
    reads = list(result.reads.values())
    each = max(12, (width - len(GAP) * (len(reads) - 1)) // max(1, len(reads)))
    columns = [column(read, each) for read in reads]
    out = Text(no_wrap=True, overflow="ellipsis")
    for i in range(max(len(c) for c in columns)):
        if i:
            out.append("\n")
        for k, rows in enumerate(columns):
            if k:
                out.append(GAP, style="dim")
            out.append_text(rows[i] if i < len(rows) else Text(" " * each))
    return out


class WhyFiredPane(Static):
    """The attribution at one token of the probe's text (a worker); the token's choice and its keys."""

    can_focus = True
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("h,left", "move(-1)", "Previous token", show=False, key_display="h", id="why.prev"),
        Binding("l,right", "move(1)", "Next token", show=False, key_display="l", id="why.next"),
        Binding("enter", "explain", "Why it fired", show=False, id="why.run"),
        Binding("escape", "leave", "Cancel / leave", show=False, id="why.leave"),
    ]

    class Chosen(Message):
        """The chosen token changed (None: the pane closed): the probe strip highlights it."""

        def __init__(self, index: int | None) -> None:
            super().__init__()
            self.index = index

    class Left(Message):
        """Escape with nothing running: the pane closes and the focus goes back."""

    def __init__(self, model: Model, **kwargs: Any) -> None:
        """``model``: the API's Model, shared with the probe (loaded once)."""
        super().__init__("", **kwargs)
        self.model = model
        self.ref: NeuronRef | None = None  # the probe's neuron and text, its tokens and their activations
        self.text = ""
        self.tokens: list[str] = []
        self.values: list[float] = []
        self.index = 0  # the chosen token
        self.results: dict[int, Attribution] = {}  # each explained token's answer, until the next probe
        self.notes: dict[int, Text] = {}  # a token's one-line state: explaining, cancelled, failed
        self.explaining: Task | None = None  # the running explanation's Task on the activity line
        self.running: int | None = None  # the token it explains
        self.worker: Worker | None = None  # its worker

    # -- the probe's result --------------------------------------------------------------------------
    def load(self, ref: NeuronRef, text: str, tokens: list[str], values: list[float]) -> None:
        """A new probe result: its answers are new, its first choice the token where |activation| is largest."""
        self.stop_running()
        self.ref, self.text, self.tokens, self.values = ref, text, list(tokens), list(values)
        self.index = max(range(len(values)), key=lambda i: abs(values[i])) if values else 0
        self.results, self.notes = {}, {}
        self.show_state()
        if self.display:
            self.post_message(self.Chosen(self.index))

    def open(self) -> None:
        self.display = True
        self.focus()
        self.show_state()
        self.post_message(self.Chosen(self.index))

    def on_show(self) -> None:
        self.screen.add_class("-why-open")  # app.tcss: the pane takes the examples' rows (short: the circuit's)

    def on_hide(self) -> None:
        self.screen.remove_class("-why-open")

    def on_resize(self) -> None:
        self.show_state()

    # -- keys ----------------------------------------------------------------------------------------
    def action_move(self, step: int) -> None:
        if not self.tokens:
            return
        index = min(len(self.tokens) - 1, max(0, self.index + step))
        if index != self.index:
            self.index = index
            self.show_state()
            self.post_message(self.Chosen(index))

    def action_explain(self) -> None:
        ref, index = self.ref, self.index
        if ref is None or not self.tokens or index in self.results or self.running == index:
            return
        self.stop_running()
        self.notes[index] = Text("explaining… (the line over the filter counts the seconds; esc cancels)", "dim italic")
        self.running = index
        self.explaining = begin(self, f"explaining why {ref} fired at token {index}", self.cancelled)
        self.show_state()
        self.worker = self.explain_worker(ref, self.text, index, self.explaining)

    def action_leave(self) -> None:
        """Escape: cancel a running explanation, else leave the pane."""
        if self.explaining is not None and self.explaining.live:
            self.stop_running()
            return
        self.post_message(self.Left())

    def stop_running(self) -> None:
        task = self.explaining
        if task is not None and task.live:
            task.cancelled.set()
            self.cancelled()
        end(self, task)
        self.explaining = None

    def cancelled(self) -> None:
        """The running explanation was cancelled (escape here, or the screen's escape): its answer is dropped."""
        if self.running is not None:
            self.notes[self.running] = Text("cancelled: enter explains it again", style="dim italic")
        self.running = None
        self.show_state()

    # -- the worker ----------------------------------------------------------------------------------
    @work(thread=True, exclusive=True, exit_on_error=False, group="why", name="why it fired")
    def explain_worker(self, ref: NeuronRef, text: str, index: int, task: Task) -> None:
        result = self.model.attribute(text, ref, at=index, top=WHY_TOP)
        self.post_message(WhyFiredResult(ref, text, index, result, task))

    def on_why_fired_result(self, message: WhyFiredResult) -> None:
        message.stop()
        end(self, message.task)
        if message.task is not None and message.task.cancelled.is_set():
            return
        if (message.ref, message.text) != (self.ref, self.text):
            return  # an answer for an earlier probe
        self.results[message.index] = message.attribution
        self.notes.pop(message.index, None)
        if self.running == message.index:
            self.running = None
        self.show_state()

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        """A failed explanation is one line in the pane (the failure of one already replaced or cancelled is
        dropped with it)."""
        if event.worker is not self.worker or event.state != WorkerState.ERROR:
            return
        error: BaseException = event.worker.error or RuntimeError("the worker failed")
        task, index = self.explaining, self.running
        end(self, task)
        self.explaining, self.running, self.worker = None, None, None
        if task is None or task.cancelled.is_set() or index is None:
            return
        if isinstance(error, NeuroscopeError):
            line = first_line(error)
        else:  # a bug: say so, with the exception's type
            line = f"unexpected {type(error).__name__}: {first_line(error)} (a bug in neuroscope; please report it)"
        self.notes[index] = Text(f"why it fired failed: {one_line(line)}", style="red")
        self.show_state()

    # -- what it shows -------------------------------------------------------------------------------
    def header(self) -> Text:
        i = self.index
        line = Text(no_wrap=True, overflow="ellipsis")
        if self.ref is None or not self.tokens:
            return line
        line.append(f"{self.ref} at {i} ", style="bold")
        line.append(show_token(self.tokens[i]), style="bold reverse")
        line.append(f" {self.values[i]:+.2f}", style="bold green" if self.values[i] > 0 else "bold red")
        line.append("  h/l · enter: why · esc", style="dim")
        return line

    def show_state(self) -> None:
        out = self.header()
        width = max(24, self.size.width - 2) if self.size.width else 60
        if self.index in self.results:
            out.append("\n")
            out.append_text(table(self.results[self.index], width))
        elif self.index in self.notes:
            out.append("\n")
            out.append_text(self.notes[self.index])
        elif self.tokens:
            out.append("\nenter: each read's pre-activation here, split into its sources", style="dim")
        self.update(out)
