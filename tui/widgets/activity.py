"""One line over the filter bar that says what the app is doing while it waits on the model: "loading
model… (12 s)" until the whole model is loaded, then what it runs, the seconds counting up, and that
escape cancels. Panes begin a Task when they start a worker that needs the model and end it when the
result comes; a cancelled task's result is dropped (a load in progress cannot be interrupted: the model
finishes loading in the background and the next use starts at once)."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable

from rich.text import Text
from textual.dom import NoScreen
from textual.widgets import Static

if TYPE_CHECKING:
    from textual.timer import Timer
    from textual.widget import Widget

    from ...api import Model

TICK_S = 0.25


@dataclass
class Task:
    what: str  # "measuring L0:N3 on the prompt"
    on_cancel: Callable[[], object] | None = None  # e.g. set the engine's cancel event
    started: float = field(default_factory=time.monotonic)
    cancelled: threading.Event = field(default_factory=threading.Event)
    done: bool = False

    @property
    def live(self) -> bool:
        return not self.done and not self.cancelled.is_set()


class Activity(Static):
    DEFAULT_CSS = "Activity { height: 1; padding: 0 1; display: none; }"

    def __init__(self, model: Model, **kwargs: Any) -> None:
        """``model``: the API's Model the tasks wait on (loaded once, shared by chat, probe and examples)."""
        super().__init__("", **kwargs)
        self.model = model
        self.tasks: list[Task] = []
        self._timer: Timer | None = None

    @property
    def model_loading(self) -> bool:
        """Whether the model is still loading (not ``loading``: that is Textual's own flag, which makes a widget
        a loading indicator that takes no clicks)."""
        return getattr(self.model, "_lm", None) is None

    def begin(self, what: str, on_cancel: Callable[[], object] | None = None) -> Task:
        task = Task(what, on_cancel)
        self.tasks.append(task)
        if self._timer is None:
            self._timer = self.set_interval(TICK_S, self.tick)
        self.tick()
        return task

    def end(self, task: Task | None) -> None:
        if task is not None:
            task.done = True
        self.tick()

    def cancel(self) -> Task | None:
        """Cancel the newest running task (escape); None when nothing runs."""
        live = [t for t in self.tasks if t.live]
        if not live:
            return None
        task = live[-1]
        task.cancelled.set()
        if task.on_cancel is not None:
            task.on_cancel()
        self.tick()
        return task

    def text(self) -> Text:
        live = [t for t in self.tasks if t.live]
        if not live:
            return Text("")
        task = live[-1]
        seconds = int(time.monotonic() - task.started)
        line = Text()
        if self.model_loading:
            line.append(f"loading model… ({seconds} s)", style="bold yellow")
            line.append(f"  then {task.what}", style="")
        else:
            line.append(f"{task.what}… ({seconds} s)", style="bold yellow")
        if len(live) > 1:
            line.append(f"  (+{len(live) - 1} waiting)", style="dim")
        line.append("  · esc cancels", style="dim")
        return line

    def tick(self) -> None:
        self.tasks = [t for t in self.tasks if t.live]
        if not self.tasks and self._timer is not None:
            self._timer.stop()
            self._timer = None
        self.display = bool(self.tasks)
        self.update(self.text())


def activity_of(widget: Widget) -> Activity | None:
    """The screen's activity line (None on a screen without one, or before the widget is mounted)."""
    try:
        found = widget.screen.query(Activity)
    except NoScreen:
        return None
    return found.first() if found else None


def begin(widget: Widget, what: str, on_cancel: Callable[[], object] | None = None) -> Task:
    """Show ``what`` on the activity line of ``widget``'s screen (a bare Task where it has none)."""
    activity = activity_of(widget)
    return activity.begin(what, on_cancel) if activity is not None else Task(what, on_cancel)


def end(widget: Widget, task: Task | None) -> None:
    """Take ``task`` off the activity line; returns None, so ``task = end(widget, task)`` clears it."""
    activity = activity_of(widget)
    if activity is not None:
        activity.end(task)
    elif task is not None:
        task.done = True
