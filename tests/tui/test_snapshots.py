"""Snapshots (pytest-textual-snapshot) of the main screen, the filter results and the help screen.

Regenerate after an intended change: pytest tests/tui/test_snapshots.py --snapshot-update"""

from __future__ import annotations

from helpers import static_text, wait_for
from textual.widgets import Input, Static

SIZE = (100, 30)


async def _ready(pilot) -> None:
    app = pilot.app
    await wait_for(pilot, lambda: app.main_screen is not None and app.main_screen.current is not None)
    circuit = app.main_screen.query_one("#circuit-title", Static)  # its lookup worker has answered (no graph)
    await wait_for(pilot, lambda: static_text(circuit).startswith("circuit graph not built"))
    for widget in app.screen.query(Input):
        widget.cursor_blink = False
    await pilot.pause()


def test_main_screen(snap_compare, app_factory):
    assert snap_compare(app_factory(), terminal_size=SIZE, run_before=_ready)


def test_main_screen_80x24(snap_compare, app_factory):
    assert snap_compare(app_factory(), terminal_size=(80, 24), run_before=_ready)


def test_filter_results(snap_compare, app_factory, tiny_model):
    async def run_before(pilot) -> None:
        await _ready(pilot)
        screen = pilot.app.main_screen
        await pilot.press("slash")
        await pilot.pause()
        await pilot.press(*tiny_model.token)
        await wait_for(pilot, lambda: screen.results.row_count > 0)
        await pilot.press("enter")
        await pilot.pause(0.2)

    assert snap_compare(app_factory(), terminal_size=SIZE, run_before=run_before)


def test_help_screen(snap_compare, app_factory):
    async def run_before(pilot) -> None:
        await _ready(pilot)
        await pilot.press("question_mark")
        await pilot.pause(0.2)

    assert snap_compare(app_factory(), terminal_size=SIZE, run_before=run_before)


def test_main_screen_160x45(snap_compare, app_factory):
    assert snap_compare(app_factory(), terminal_size=(160, 45), run_before=_ready)


def test_chat_open_80x24(snap_compare, app_factory):
    """The chat pane open on a short terminal: 5 token rows stay, the prompt is marked as focused, help is
    the footer's first key (f1: in an input "?" is text)."""

    async def run_before(pilot) -> None:
        await _ready(pilot)
        await pilot.press("C")
        await pilot.pause(0.2)

    assert snap_compare(app_factory(), terminal_size=(80, 24), run_before=run_before)


def test_view_picker_80x24(snap_compare, app_factory):
    async def run_before(pilot) -> None:
        await _ready(pilot)
        await pilot.press("v")
        await pilot.pause(0.2)

    assert snap_compare(app_factory(), terminal_size=(80, 24), run_before=run_before)


def test_sorted_by_mass_keeps_the_cursor_160x45(snap_compare, app_factory):
    """M on L0:N5: the cursor stays on it, each neuron shows its label mass (magenta) after its name."""

    async def run_before(pilot) -> None:
        from neuroscope.core.refs import NeuronRef

        await _ready(pilot)
        pilot.app.goto(NeuronRef(0, 5))
        await pilot.pause()
        await pilot.press("M")
        await pilot.pause(0.3)

    assert snap_compare(app_factory(), terminal_size=(160, 45), run_before=run_before)
