"""The neuroscope browser app: bindings, screens and error routing. The work lives in screens/browser.py and
the widgets its screens are composed of."""

from __future__ import annotations

from typing import TYPE_CHECKING

from textual.app import App
from textual.binding import Binding
from textual.worker import Worker, WorkerState

from ..core.loading.sources import Source, resolve
from ..core.refs import NeuronRef
from ..errors import BadNeuronRef, ModelNotFound, NeuroscopeError
from . import keys
from .commands import NeuroscopeCommands, Palette
from .host import ClampDone, Host
from .options import Options
from .screens.browser import BrowserScreen
from .screens.compare import CompareScreen
from .screens.error import ErrorScreen
from .screens.goto import GotoScreen
from .screens.help import HelpScreen
from .screens.main import MainScreen
from .screens.view_picker import ViewScreen
from .widgets.behaviour import BehaviourPane
from .widgets.chat_pane import ChatPane
from .widgets.circuit_pane import CircuitPane
from .widgets.clamp_panel import ClampPanel
from .widgets.filter import FilterInput
from .widgets.neuron_tree import NeuronTree
from .widgets.tables import VimTable
from .widgets.why_fired import WhyFiredPane


class NeuroscopeApp(App[int]):
    CSS_PATH = "app.tcss"
    TITLE = "neuroscope"
    COMMANDS = App.COMMANDS | {NeuroscopeCommands}
    BINDINGS = [
        Binding("question_mark,f1", "help", "Help", id="help"),
        Binding("q", "quit", "Quit", id="quit"),
    ]

    def __init__(self, source: Source, options: Options | None = None, compare: Source | None = None):
        super().__init__()
        self.source = source
        self.options = options or Options()
        self.compare = compare  # compare mode: OTHER shown beside the source, neuron by neuron
        if self.options.keymap:
            self.set_keymap(self.options.keymap)

    @classmethod
    def bindings(cls) -> dict:
        """Every binding of the app, its screens and widgets, by id (what the help table and the keymap
        name)."""
        return keys.collect(
            [
                cls,
                MainScreen,
                CompareScreen,
                BehaviourPane,
                CircuitPane,
                NeuronTree,
                VimTable,
                FilterInput,
                ClampPanel,
                ChatPane,
                HelpScreen,
                ViewScreen,
                WhyFiredPane,
            ]
        )

    def on_mount(self) -> None:
        if self.compare is not None:
            self.push_screen(CompareScreen(self.source, self.compare, self.options))
        else:
            self.push_screen(MainScreen(self.source, self.options))

    @property
    def main_screen(self) -> BrowserScreen | None:
        """The browser (or compare) screen under any modals."""
        return next((s for s in reversed(self.screen_stack) if isinstance(s, BrowserScreen)), None)

    # -- actions (also used by the command palette) ---------------------------------------
    def action_help(self) -> None:
        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen(keys.rows(self.bindings(), self.options.keymap)))

    def ask_clamp_value(self, ref: NeuronRef, value: float, mode: str, note: str, done: ClampDone) -> None:
        """The modal that asks for a clamp value and mode (widgets call this; they never import screens)."""
        from .screens.clamp_value import ClampValueScreen

        self.push_screen(ClampValueScreen(ref, value, mode, note), done)

    async def action_main(self, action: str) -> None:
        if self.main_screen is not None:
            await self.main_screen.run_action(action)

    def goto(self, ref: NeuronRef) -> None:
        if self.main_screen is not None:
            self.main_screen.goto(ref)

    def action_goto_prompt(self) -> None:
        def done(text: str | None) -> None:
            if not text:
                return
            try:
                self.goto(NeuronRef.parse(text))
            except BadNeuronRef as exc:
                self.notify(str(exc), severity="error")

        self.push_screen(GotoScreen(), done)

    def action_concept_prompt(self) -> None:
        def done(word: str | None) -> None:
            if word and word.strip() and self.main_screen is not None:
                self.main_screen.chat.add_concept(word.strip())

        self.push_screen(
            GotoScreen(
                "clamp a concept", "a word, e.g. dog: every neuron labelled with it goes into the basket", "dog"
            ),
            done,
        )

    def open_model(self, spec: str) -> None:
        """Switch the browser to another model (decoding it in a worker if needed)."""
        try:
            source = resolve(spec)
        except ModelNotFound as exc:
            self.notify(str(exc), title="switch model", severity="error")
            return
        self.source = source
        self.switch_screen(MainScreen(source, self.options))

    # -- error routing: a worker's exception never kills the app ---------------------------
    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        self.route_worker_state(event)

    def route_worker_state(self, event: Worker.StateChanged) -> None:
        """Failed workers become an error modal (decode) or a notification (the rest). Screens forward
        their workers' StateChanged here: the message does not bubble."""
        if event.state != WorkerState.ERROR:
            return
        error = event.worker.error
        if isinstance(error, NeuroscopeError):
            message = str(error)
        else:  # a bug: say so, with the exception's type, rather than pass it off as the user's problem
            message = f"unexpected {type(error).__name__}: {error} (a bug in neuroscope; please report it)"
        if event.worker.group == "decode":
            title = error.title if isinstance(error, NeuroscopeError) else "decode failed"
            self.push_screen(
                ErrorScreen(
                    title, f"{message}\n\nThe app keeps what was decoded. Fix the cause and open the model again."
                )
            )
        else:
            self.notify(message, title=f"{event.worker.name or event.worker.group} failed", severity="error")


if TYPE_CHECKING:
    _HOST: type[Host] = NeuroscopeApp  # mypy checks that the app is what the panes take it for
    _PALETTE: type[Palette] = NeuroscopeApp  # and what the command palette does


def run_app(source: Source, args, other: Source | None = None) -> int:
    """Entry point for `neuroscope tui` (after cli.commands.prepare_tui checked the arguments): run the app
    until the user quits."""
    app = NeuroscopeApp(source, Options.from_args(args), compare=other)
    app.run()
    return app.return_code or 0
