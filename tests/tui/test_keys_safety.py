"""Single letters are safe: typed into an input they are text (no binding fires), and a stray word typed
into the tree never switches the view (views are `v` then u / g / d); what a key changes is named."""

from __future__ import annotations

import pytest
from helpers import wait_for
from textual.widgets import Input

from neuroscope.tui.screens.main import MainScreen
from neuroscope.tui.screens.view_picker import ViewScreen

LETTERS = "vudgnqcCEFMAXUjkhlGoebBwy?/"


async def ready(pilot):
    await wait_for(pilot, lambda: pilot.app.main_screen is not None and pilot.app.main_screen.current is not None)


def state(screen: MainScreen) -> tuple:
    return (
        screen.view,
        screen.direction,
        screen.current,
        screen.chat.display,
        len(screen.chat.basket.clamps),
        screen.neuron_tree.order_name,
        screen.decoding,
        type(screen.app.screen).__name__,
    )


async def test_a_stray_word_in_the_tree_changes_nothing(app_factory):
    app = app_factory()
    async with app.run_test(size=(80, 24)) as pilot:
        await ready(pilot)
        screen = app.main_screen
        screen.neuron_tree.focus()
        before = state(screen)
        await pilot.press(*"dog")  # d = down and g = gate before views went behind v
        await pilot.pause()
        assert state(screen) == before and screen.view == "up"
        assert not [n for n in app._notifications if n.title == "view"]


async def test_v_then_a_view_key_switches_and_says_so(app_factory):
    app = app_factory()
    async with app.run_test(size=(80, 24)) as pilot:
        await ready(pilot)
        screen = app.main_screen
        await pilot.press("v")
        assert isinstance(app.screen, ViewScreen)
        await pilot.press("d")
        assert screen.view == "down" and app.screen is screen
        assert [n.message for n in app._notifications if n.title == "view"][-1].startswith("view: down")
        await pilot.press("v", "escape")  # escape keeps the view
        assert screen.view == "down" and app.screen is screen
        await pilot.press("v", "o")  # any other key is no view: the prompt stays open
        assert isinstance(app.screen, ViewScreen)
        await pilot.press("v")  # v again closes it
        assert app.screen is screen and screen.view == "down"


@pytest.mark.parametrize("target", ["query", "probe", "chat-prompt", "chat-target"])
async def test_letters_typed_into_an_input_are_text_not_keys(app_factory, target):
    app = app_factory()
    async with app.run_test(size=(160, 45)) as pilot:
        await ready(pilot)
        screen = app.main_screen
        if target.startswith("chat"):
            await pilot.press("C")
        field = screen.query_one(f"#{target}", Input)
        field.focus()
        await pilot.pause()
        before = state(screen)
        await pilot.press(*LETTERS)
        await pilot.pause(0.3)
        assert field.value == LETTERS
        assert state(screen) == before and app.is_running and app.focused is field
