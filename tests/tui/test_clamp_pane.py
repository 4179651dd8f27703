"""Pilot tests of the clamp basket and the chat pane (streaming, cancel), and a snapshot of the pane.

Regenerate the snapshot after an intended change: pytest tests/tui/test_clamp_pane.py --snapshot-update"""

from __future__ import annotations

import time

from helpers import static_text, table_cells, wait_for
from textual.widgets import Input

from neuroscope.core.refs import NeuronRef
from neuroscope.tui.screens.clamp_value import ClampValueScreen

SIZE = (100, 30)


async def ready(pilot):
    app = pilot.app
    await wait_for(pilot, lambda: app.main_screen is not None and app.main_screen.current is not None)
    for widget in app.screen.query(Input):
        widget.cursor_blink = False


async def add_clamp(pilot, value: str | None = None):
    """Press c on the selected neuron and accept the suggestion (or type ``value``)."""
    await pilot.press("c")
    await wait_for(pilot, lambda: isinstance(pilot.app.screen, ClampValueScreen), timeout=30)
    if value is not None:
        field = pilot.app.screen.query_one("#clamp-value-input", Input)
        field.value = value
    await pilot.press("enter")


def load_slow_model(pane, tiny_model, delay: float):
    """Give the pane its model up front, slowed down so a test can watch it stream and cancel it."""
    from neuroscope.core.loading.models import load
    from neuroscope.core.loading.sources import resolve

    pane.lm = load(resolve(str(tiny_model.folder)))
    pane.lm.model.register_forward_hook(lambda *args: time.sleep(delay))
    return pane.lm


async def test_basket_add_edit_remove_clear(app_factory, tiny_model):
    app = app_factory()
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        chat = app.main_screen.chat
        assert not chat.display
        await pilot.press("c")
        await wait_for(pilot, lambda: isinstance(app.screen, ClampValueScreen), timeout=30)
        screen = app.screen
        suggested = float(screen.query_one("#clamp-value-input", Input).value)
        assert "natural activation" in static_text(screen.query_one("#clamp-value-note"))
        assert suggested != 0
        screen.query_one("#clamp-value-input", Input).value = "lots"
        await pilot.press("enter")
        await pilot.pause()
        assert app.screen is screen  # a bad value keeps the prompt open
        assert any("not a number" in n.message for n in app._notifications)
        screen.query_one("#clamp-value-input", Input).value = "6.5"
        await pilot.press("enter")
        await wait_for(pilot, lambda: chat.display and chat.basket.clamps)
        assert table_cells(chat.basket) == [["L0:N0", "6.5", "set"]]
        assert app.focused is chat.query_one("#chat-prompt")

        app.main_screen.neuron_tree.focus()
        await pilot.press("j")
        await add_clamp(pilot, "-2")
        await wait_for(pilot, lambda: len(chat.basket.clamps) == 2)
        chat.basket.focus()
        await pilot.press("e")  # edit the first row's value
        await wait_for(pilot, lambda: isinstance(app.screen, ClampValueScreen))
        app.screen.query_one("#clamp-value-input", Input).value = "9"
        await pilot.press("enter")
        await wait_for(pilot, lambda: table_cells(chat.basket)[0] == ["L0:N0", "9", "set"])
        await pilot.press("x")
        assert table_cells(chat.basket) == [["L0:N1", "-2", "set"]]
        await pilot.press("X")
        assert chat.basket.clamps == [] and chat.basket.row_count == 0
        assert app._notifications and list(app._notifications)[-1].message == (
            "clamp basket cleared (1 clamp): U puts it back"
        )
        await pilot.press("U")  # undo the clear
        assert table_cells(chat.basket) == [["L0:N1", "-2", "set"]]
        await pilot.press("U")  # and the remove before it
        assert table_cells(chat.basket) == [["L0:N0", "9", "set"], ["L0:N1", "-2", "set"]]
        await pilot.press("U")
        assert list(app._notifications)[-1].message == "nothing to undo in the basket"


async def test_chat_streams_side_by_side_and_escape_cancels(app_factory, tiny_model):
    from neuroscope.core.clamp import hooks_installed

    app = app_factory()
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        chat = app.main_screen.chat
        lm = load_slow_model(chat, tiny_model, delay=0.03)
        chat.max_new_tokens = 40
        await add_clamp(pilot, "5")
        await wait_for(pilot, lambda: chat.basket.clamps)
        await pilot.press(*"dog cat")
        await pilot.press("enter")
        assert chat.generating
        await wait_for(pilot, lambda: len(chat.texts["baseline"].split()) >= 3, timeout=20)
        assert chat.generating  # streamed before the end
        await pilot.press("escape")
        await wait_for(pilot, lambda: not chat.generating, timeout=20)
        assert "cancelled" in static_text(chat.query_one("#chat-status"))
        assert len(chat.texts["baseline"].split()) < 40 and chat.texts["clamped"] == ""
        assert hooks_installed(lm.adapter) == 0
        await pilot.press("escape")  # nothing to cancel: back to the tree
        assert app.focused is app.main_screen.neuron_tree


async def test_chat_needs_prompt_and_clamps(app_factory):
    app = app_factory()
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        chat = app.main_screen.chat
        await pilot.press("C")
        assert chat.display and app.focused is chat.query_one("#chat-prompt")
        await pilot.press("enter")
        await pilot.press(*"dog", "enter")
        messages = [n.message for n in app._notifications]
        assert any("prompt is empty" in m for m in messages) and any("basket is empty" in m for m in messages)
        assert not chat.generating


def planted_sign(tiny_model) -> int:
    """The planted neuron's sign from the saved weights in float64, not from the code under test: its up row
    through the final RMSNorm and the head puts the word top (a pos concept: +1, the up pre-activation is
    positive on it) or bottom (neg: -1)."""
    import numpy as np
    from safetensors.numpy import load_file
    from tiny_model import PLANTED_LAYER, PLANTED_NEURON, vocab

    w = {k: v.astype(np.float64) for k, v in load_file(str(tiny_model.folder / "model.safetensors")).items()}
    row = w[f"model.layers.{PLANTED_LAYER}.mlp.up_proj.weight"][PLANTED_NEURON]
    logits = w["lm_head.weight"] @ (row / np.sqrt((row**2).mean() + 1e-6) * w["model.norm.weight"])
    word = vocab().index(tiny_model.token)
    assert word in (logits.argmax(), logits.argmin())
    return 1 if logits.argmax() == word else -1


async def test_concept_palette_fills_the_basket_with_the_planted_neuron(app_factory, tiny_model):
    """The palette's "Clamp a concept" puts the planted zebra neuron in the basket with its sign; a word no
    neuron carries is one notification and an unchanged basket."""
    app = app_factory()
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        chat = app.main_screen.chat
        await pilot.press("ctrl+p")
        await pilot.pause()
        await pilot.press(*"clamp a concept")
        await pilot.pause(0.5)
        await pilot.press("enter")
        await wait_for(pilot, lambda: app.screen.query("#goto-input"))
        app.screen.query_one("#goto-input", Input).value = tiny_model.token.upper() + "S"  # normal form
        await pilot.press("enter")
        await wait_for(pilot, lambda: chat.basket.clamps, timeout=30)
        refs = {str(c.ref): c.value for c in chat.basket.clamps}
        assert tiny_model.planted in refs
        assert refs[tiny_model.planted] == 3.0 * planted_sign(tiny_model)  # no examples: sign x strength
        assert chat.display and "in the basket" in static_text(chat.query_one("#chat-status"))
        before = list(chat.basket.clamps)
        app.action_concept_prompt()
        await pilot.pause()
        app.screen.query_one("#goto-input", Input).value = "qqqq"
        await pilot.press("enter")
        await wait_for(pilot, lambda: any("labelled" in n.message for n in app._notifications), timeout=30)
        assert chat.basket.clamps == before


def test_chat_pane_snapshot(snap_compare, app_factory, tiny_model):
    async def run_before(pilot) -> None:
        await ready(pilot)
        chat = pilot.app.main_screen.chat
        chat.max_new_tokens = 12
        app = pilot.app
        app.main_screen.goto(NeuronRef(1, 7))
        await pilot.pause(0.2)
        await add_clamp(pilot, "8")
        await wait_for(pilot, lambda: chat.basket.clamps)
        await pilot.press(*"dog cat")
        await pilot.press("tab", *tiny_model.token, "enter")
        await wait_for(pilot, lambda: "done" in static_text(chat.query_one("#chat-status")), timeout=30)
        await pilot.pause(0.2)

    assert snap_compare(app_factory(), terminal_size=SIZE, run_before=run_before)
