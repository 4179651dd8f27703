"""Every pane stays usable at 80x24 and 160x45: with the chat pane open the token table keeps at least 5
rows, the help key is always in the footer, and the focused widget is always marked."""

from __future__ import annotations

import pytest
from helpers import wait_for
from textual.widgets import Input
from textual.widgets._footer import FooterKey

SIZES = [(80, 24), (160, 45)]


async def ready(pilot):
    app = pilot.app
    await wait_for(pilot, lambda: app.main_screen is not None and app.main_screen.current is not None)
    for widget in app.screen.query(Input):
        widget.cursor_blink = False


def footer_help(app) -> FooterKey | None:
    keys = [k for k in app.screen.query(FooterKey) if k.description == "Help"]
    return keys[0] if keys else None


def visible_rows(table) -> int:
    """Token rows the table shows without scrolling (its header takes one line)."""
    return min(table.row_count, table.scrollable_content_region.height - 1)


@pytest.mark.parametrize("size", SIZES)
async def test_chat_open_keeps_five_token_rows_and_the_help_key(app_factory, size):
    app = app_factory()
    async with app.run_test(size=size) as pilot:
        await ready(pilot)
        screen = app.main_screen
        table = screen.query_one("#detail-table")
        width = size[0]
        help_key = footer_help(app)
        assert help_key is not None and help_key.key_display == "?" and help_key.region.right <= width
        await pilot.press("C")
        await pilot.pause(0.2)
        assert screen.chat.display and screen.query_one("#chat-replies").region.height >= 2
        assert visible_rows(table) >= 5
        help_key = footer_help(app)  # in the prompt "?" is text: f1 is the help key
        assert help_key is not None and help_key.key_display == "f1" and help_key.region.right <= width
        screen.chat.basket.focus()  # the basket's own keys crowd the footer: help stays first
        await pilot.pause()
        help_key = footer_help(app)
        assert help_key is not None and help_key.key_display == "?" and help_key.region.right <= width
        assert help_key.region.x <= 1
        screen.query_one("#chat-prompt").focus()
        behaviour = screen.query_one("#behaviour")
        assert behaviour.display == (size[1] >= 36)  # short: the chat pane takes the examples' rows
        await pilot.press("escape", "C")  # chat closed again: the examples come back
        await pilot.pause(0.2)
        assert behaviour.display and behaviour.region.height >= 2 and visible_rows(table) >= 5


async def test_focus_is_always_marked(app_factory):
    app = app_factory()
    async with app.run_test(size=(160, 45)) as pilot:
        await ready(pilot)
        screen = app.main_screen
        await pilot.press("C")
        await pilot.pause()
        title = screen.query_one("#detail-title")
        tree, table = screen.neuron_tree, screen.query_one("#detail-table")
        tree.focus()
        await pilot.pause()
        assert tree.styles.border_right[0] == "heavy"
        plain_title = title.styles.background
        table.focus()
        await pilot.pause()
        assert tree.styles.border_right[0] == "solid" and title.styles.background != plain_title
        basket = screen.chat.basket
        basket.focus()
        await pilot.pause()
        assert basket.styles.border_left[0] == "heavy" and title.styles.background == plain_title
        inputs = [screen.query_one(f"#{i}", Input) for i in ("query", "probe", "chat-prompt", "chat-target")]
        for field in inputs:
            field.focus()
            await pilot.pause()
            others = [f.styles.background for f in inputs if f is not field]
            assert all(field.styles.background != b for b in others), field.id
        screen.neuron_tree.focus()
        await pilot.press("slash", *"zebra")
        await wait_for(pilot, lambda: screen.results.row_count > 0)
        screen.results.focus()
        await pilot.pause()
        assert screen.results.styles.border_top[0] == "heavy"
