"""What the panes ask of the app. Widgets never import the app (an import-linter contract), so they reach it
through this Protocol; NeuroscopeApp implements it (app.py has mypy check that it does)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable, Protocol, cast

if TYPE_CHECKING:
    from textual.message_pump import MessagePump
    from textual.worker import Worker

    from ..core.refs import NeuronRef

# what the clamp-value modal hands back: (value, mode), or None when it was cancelled
ClampDone = Callable[["tuple[float, str] | None"], None]


class Host(Protocol):
    def ask_clamp_value(self, ref: NeuronRef, value: float, mode: str, note: str, done: ClampDone) -> None: ...

    def route_worker_state(self, event: Worker.StateChanged) -> None: ...


def host(node: MessagePump) -> Host:
    """``node``'s app as the panes use it (Textual types ``node.app`` as a bare App; it is NeuroscopeApp)."""
    return cast("Host", node.app)
