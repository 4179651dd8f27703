"""Command palette (ctrl+p): go to neuron, switch model, switch view / direction, help."""

from __future__ import annotations

import asyncio
import re
from functools import partial
from typing import TYPE_CHECKING, Callable, Protocol, cast

from textual.command import DiscoveryHit, Hit, Hits, Provider

from ..cache.catalog import list_caches
from ..choices import VIEWS
from ..core.refs import BadNeuronRef, NeuronRef

if TYPE_CHECKING:
    from .options import Options

_GOTO_PREFIX = re.compile(r"^\s*(go\s*to|goto|neuron|go)\s*(neuron)?\s*", re.I)

Command = tuple[str, Callable[[], object], str]  # (name, what it runs, help)


class Palette(Protocol):
    """What the commands run on the app (NeuroscopeApp; app.py has mypy check it, as this module cannot
    import the app, which imports it)."""

    options: Options

    def action_goto_prompt(self) -> None: ...
    async def action_main(self, action: str) -> None: ...
    def action_concept_prompt(self) -> None: ...
    def action_help(self) -> None: ...
    def open_model(self, spec: str) -> None: ...
    def goto(self, ref: NeuronRef) -> None: ...


class NeuroscopeCommands(Provider):
    @property
    def neuroscope(self) -> Palette:
        """The app (Textual types a provider's ``app`` as a bare App; it is NeuroscopeApp)."""
        return cast("Palette", self.app)

    def _static(self) -> list[Command]:
        app = self.neuroscope
        cmds: list[Command] = [("Go to neuron…", app.action_goto_prompt, "type L29:N808 or 29:808")]
        for view in VIEWS:
            cmds.append(
                (
                    f"Switch view: {view}",
                    partial(app.action_main, f"set_view('{view}')"),
                    f"show each neuron's {view} view",
                )
            )
        cmds.append(
            (
                "Toggle direction (pos/neg)",
                partial(app.action_main, "toggle_direction"),
                "what a neuron promotes vs suppresses",
            )
        )
        cmds.append(("Cancel decode", partial(app.action_main, "back"), "finished layers are kept"))
        cmds.append(
            (
                "Clamp a concept…",
                app.action_concept_prompt,
                "put every neuron labelled with a word into the clamp basket, each with its sign",
            )
        )
        cmds.append(("Help: keys", app.action_help, "every key of the app"))
        return cmds

    async def _models(self) -> list[Command]:
        app = self.neuroscope
        caches = await asyncio.to_thread(list_caches, app.options.cache_dir)
        out: list[Command] = []
        for _path, status in caches:
            if status is None:
                continue
            done = "complete" if status.get("complete") else "partial"
            out.append(
                (
                    f"Switch model: {status['model']}",
                    partial(app.open_model, status["source"]),
                    f"{status['layers']} × {status['neurons_per_layer']} neurons, {done} — {status['source']}",
                )
            )
        return out

    async def discover(self) -> Hits:
        for name, command, help_text in self._static() + await self._models():
            yield DiscoveryHit(name, command, help=help_text)

    async def search(self, query: str) -> Hits:
        text = _GOTO_PREFIX.sub("", query)
        try:
            ref = NeuronRef.parse(text)
        except BadNeuronRef:
            ref = None
        if ref is not None:
            yield Hit(1.0, f"Go to neuron {ref}", partial(self.neuroscope.goto, ref), help="show it in tree and detail")
        matcher = self.matcher(query)
        for name, command, help_text in self._static() + await self._models():
            score = matcher.match(name)
            if score > 0:
                yield Hit(score, matcher.highlight(name), command, help=help_text)
