"""The chat pane: the clamp basket, a prompt and a target word, and baseline vs clamped replies
streaming side by side with p(target) for both. Generation runs in a thread worker; escape cancels."""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING, Any

from rich.text import Text
from textual import work
from textual.actions import SkipAction
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.widgets import Input, Static
from textual.worker import Worker, WorkerState

from ...core.clamp import Clamp, ClampSet
from ...core.refs import NeuronRef
from ..format import show_token
from ..host import host
from ..messages import ChatFinished, ChatProb, ChatStream, ClampSuggestion, ConceptClamps
from ..options import DEFAULT_PROMPT, Options
from .activity import Task, begin, end
from .clamp_panel import ClampPanel

if TYPE_CHECKING:
    from ...api import Model

SIDES = ("baseline", "clamped")
STREAM_EVERY_S = 0.05


class ChatPane(Vertical):
    BINDINGS = [Binding("escape", "cancel", "Cancel", id="chat.cancel")]

    def __init__(self, model: Model, options: Options, **kwargs: Any) -> None:
        """``model``: the API's Model (neuroscope.api), loaded on first use in a worker."""
        super().__init__(**kwargs)
        self.model, self.options = model, options
        self.model.note = lambda text: self.app.call_from_thread(self.status, text)  # loading…, clamping…
        self.cancel_event = threading.Event()
        self.generating = False
        self.tasks: dict[str, Task] = {}  # worker group -> its Task on the activity line
        self.texts = {side: "" for side in SIDES}
        self.max_new_tokens = options.chat_max_new_tokens
        self.default_prompt = options.chat_prompt or DEFAULT_PROMPT

    def compose(self) -> ComposeResult:
        yield ClampPanel(id="basket")
        with Horizontal(id="chat-inputs"):
            yield Input(placeholder=f"prompt (enter runs), e.g. {self.default_prompt}", id="chat-prompt")
            yield Input(placeholder="target word", id="chat-target")
        with Horizontal(id="chat-replies"):
            for side in SIDES:
                with Vertical(classes="reply"):
                    yield Static(side, id=f"{side}-title", classes="reply-title")
                    with VerticalScroll(classes="reply-scroll"):
                        yield Static("", id=f"{side}-text", classes="reply-text")
        yield Static("c adds the selected neuron · enter runs · escape cancels", id="chat-status")

    def on_show(self) -> None:
        self.screen.add_class("-chat-open")  # app.tcss gives the pane the behaviour's rows when short

    def on_hide(self) -> None:
        self.screen.remove_class("-chat-open")

    @property
    def lm(self):
        """The loaded model (None until first use); setting it hands the pane a model already loaded."""
        return self.model._lm

    @lm.setter
    def lm(self, value) -> None:
        self.model._lm = value

    @property
    def basket(self) -> ClampPanel:
        return self.query_one("#basket", ClampPanel)

    def status(self, text: str) -> None:
        self.query_one("#chat-status", Static).update(text)

    def prompt_text(self) -> str:
        return self.query_one("#chat-prompt", Input).value.strip()

    # -- adding a concept ------------------------------------------------------------------
    def add_concept(self, word: str) -> None:
        """Every neuron labelled ``word`` into the basket, each valued sign x strength x its peak activation
        (the CLI's defaults)."""
        self.status(f"finding the neurons of '{word}'…")
        self.concept_worker(word)

    @work(thread=True, exclusive=True, exit_on_error=False, group="concept", name="clamp a concept")
    def concept_worker(self, word: str) -> None:
        from ...concepts import DEFAULT_MIN_MASS, DEFAULT_STRENGTH, concept_clamps

        self.post_message(ConceptClamps(word, concept_clamps(self.model, word, DEFAULT_STRENGTH, DEFAULT_MIN_MASS)))

    def on_concept_clamps(self, message: ConceptClamps) -> None:
        for clamp in message.clamps:
            self.basket.put(clamp)
        self.display = True
        self.status(f"{len(message.clamps)} clamps of the concept '{message.word}' in the basket")
        self.query_one("#chat-prompt", Input).focus()

    # -- adding a neuron -------------------------------------------------------------------
    def request_clamp(self, ref: NeuronRef) -> None:
        """Measure ``ref``'s natural activation on the prompt (or a default one), then ask for a value. The
        activity line says so (loading the model first, the seconds counting); escape drops the request."""
        prompt = self.prompt_text() or self.default_prompt
        old = self.tasks.get("clamp-suggest")
        if old is not None:
            old.cancelled.set()  # the newer c wins (the worker is exclusive)
        self.tasks["clamp-suggest"] = task = begin(self, f"measuring {ref} on “{prompt}” for a clamp value")
        self.suggest_worker(ref, prompt, task)

    @work(thread=True, exclusive=True, exit_on_error=False, group="clamp-suggest", name="measure activation")
    def suggest_worker(self, ref: NeuronRef, prompt: str, task: Task | None = None) -> None:
        from ...core.measure import suggest_value

        [act] = self.model.activations(prompt, [ref])
        self.post_message(ClampSuggestion(ref, act, suggest_value(act), prompt, task))

    def on_clamp_suggestion(self, message: ClampSuggestion) -> None:
        end(self, message.task)
        if message.task is not None and message.task.cancelled.is_set():
            return  # escape was pressed while it ran
        act = message.activation
        note = (
            f"natural activation on “{message.prompt}”: min {act.min:.3g} · max {act.max:.3g} · "
            f"last {act.last:.3g}\nsuggested: 4 × the larger extreme"
            if act is not None
            else ""
        )
        self.status("ready")

        def done(result: tuple[float, str] | None) -> None:
            if result is None:
                return
            self.basket.put(Clamp(message.ref, result[0], result[1]))
            self.display = True
            self.query_one("#chat-prompt", Input).focus()

        host(self).ask_clamp_value(message.ref, message.suggested, "set", note, done)

    # -- generation ------------------------------------------------------------------------
    def on_input_submitted(self, event: Input.Submitted) -> None:
        if event.input.id in ("chat-prompt", "chat-target"):
            event.stop()
            self.start()

    def start(self) -> bool:
        prompt = self.prompt_text()
        if not prompt:
            self.app.notify("the prompt is empty: type a question first", title="chat", severity="error")
            return False
        if not self.basket.clamps:
            self.app.notify("the clamp basket is empty: select a neuron and press c", title="chat", severity="error")
            return False
        if self.generating:
            self.app.notify("a generation is running: escape cancels it", title="chat", severity="warning")
            return False
        target = self.query_one("#chat-target", Input).value.strip() or None
        self.cancel_event = threading.Event()
        self.generating = True
        self.texts = {side: "" for side in SIDES}
        for side in SIDES:
            self.query_one(f"#{side}-text", Static).update("")
            self.query_one(f"#{side}-title", Static).update(side)
        self.status("generating… (escape cancels)")
        self.tasks["chat"] = begin(self, "generating baseline and clamped replies", self.cancel_generation)
        self.generate_worker(prompt, target, self.basket.clamp_set, self.cancel_event)
        return True

    @work(thread=True, exclusive=True, exit_on_error=False, group="chat", name="generate")
    def generate_worker(self, prompt: str, target: str | None, clamps: ClampSet, cancel: threading.Event) -> None:
        from ...core.generate import has_chat_template
        from ...core.measure import Result

        chat = has_chat_template(self.model.tokenizer())
        exp = self.model.experiment(
            clamps.clamps, prompt, target, chat=chat, max_new_tokens=self.max_new_tokens, positions=clamps.positions
        )
        built = self.model.prepare(exp)
        buffers: dict[str, list[str]] = {side: [] for side in SIDES}
        last = [time.monotonic()]

        def flush() -> None:
            for side, parts in buffers.items():
                if parts:
                    self.post_message(ChatStream(side, "".join(parts)))
                    parts.clear()
            last[0] = time.monotonic()

        def on_text(side: str, text: str) -> None:
            buffers[side].append(text)
            if time.monotonic() - last[0] >= STREAM_EVERY_S:
                flush()

        self.model.loaded()
        self.app.call_from_thread(self.status, "generating… (escape cancels)")
        try:
            result = self.model.run(exp, built, on_text=on_text, cancel=cancel).result
        finally:
            flush()
        assert isinstance(result, Result)  # ClampReport types it as object
        if result.target is not None:
            for side in SIDES:
                prob = getattr(result, side).target_prob
                if prob is not None:
                    self.post_message(ChatProb(side, result.target.token, prob))
        self.post_message(ChatFinished(cancel.is_set()))

    def on_chat_stream(self, message: ChatStream) -> None:
        end(self, self.tasks.pop("chat", None))  # the replies stream now: they say what happens
        self.texts[message.side] += message.text
        self.query_one(f"#{message.side}-text", Static).update(Text(self.texts[message.side]))

    def on_chat_prob(self, message: ChatProb) -> None:
        title = Text(message.side, style="bold")
        prob = f"{min(1.0, message.prob):.4f}" if message.prob >= 1e-3 else f"{message.prob:.2e}"
        title.append(f" p('{show_token(message.token.strip())}')={prob}", style="green")
        self.query_one(f"#{message.side}-title", Static).update(title)

    def on_chat_finished(self, message: ChatFinished) -> None:
        end(self, self.tasks.pop("chat", None))
        self.generating = False
        self.status("cancelled (partial replies kept)" if message.cancelled else "done")

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        host(self).route_worker_state(event)  # failures become notifications
        if event.state in (WorkerState.ERROR, WorkerState.CANCELLED):
            end(self, self.tasks.pop(event.worker.group, None))
            if event.worker.group == "chat":
                self.generating = False
            self.status("failed" if event.state == WorkerState.ERROR else "cancelled")

    def action_cancel(self) -> None:
        if not self.cancel_generation():
            raise SkipAction()  # let the screen's escape (back) run

    def cancel_generation(self) -> bool:
        if not self.generating or self.cancel_event.is_set():
            return False
        self.cancel_event.set()
        self.status("cancelling…")
        return True
