"""The app says what it waits on: every model load it starts (c, the probe, E, the chat) shows "loading
model… (n s)" on the activity line at once, the seconds counting up, until the result replaces it; escape
cancels and leaves the app usable. The load is the real one, slowed by a fixed sleep so a test can watch
it (the tiny model loads in well under a second)."""

from __future__ import annotations

import time

import pytest
from helpers import static_text, wait_for
from textual.widgets import Input

from neuroscope.core.refs import NeuronRef
from neuroscope.tui.screens.clamp_value import ClampValueScreen

LOAD_S = 1.6


@pytest.fixture
def slow_load(monkeypatch):
    import neuroscope.core.loading.models as models

    real = models.load

    def load(*args, **kwargs):
        time.sleep(LOAD_S)
        return real(*args, **kwargs)

    monkeypatch.setattr(models, "load", load)


async def ready(pilot):
    app = pilot.app
    await wait_for(pilot, lambda: app.main_screen is not None and app.main_screen.current is not None)
    for widget in app.screen.query(Input):
        widget.cursor_blink = False


def activity(app) -> str:
    line = app.main_screen.query_one("#activity")
    return static_text(line) if line.display else ""


async def press_shows_loading(pilot, key: str) -> str:
    """Press ``key``: once the app has handled the press, the activity line already says "loading model…
    (0 s)" — before the slowed load (LOAD_S) could finish, so the line did not wait for it. Returns the line."""
    await pilot.press(key)
    shown = activity(pilot.app)
    assert shown.startswith("loading model… (0 s)"), f"after {key!r} the activity line reads {shown!r}"
    return shown


@pytest.mark.parametrize("size", [(80, 24), (160, 45)])
async def test_clamp_says_loading_model_at_once_counts_then_asks(app_factory, slow_load, size):
    app = app_factory()
    async with app.run_test(size=size) as pilot:
        await ready(pilot)
        assert activity(app) == ""
        shown = await press_shows_loading(pilot, "c")
        assert "measuring L0:N0" in shown and "esc cancels" in shown
        await wait_for(pilot, lambda: "loading model… (1 s)" in activity(app), timeout=3)
        await wait_for(
            pilot,
            lambda: isinstance(app.screen, ClampValueScreen) and app.screen.query("#clamp-value-input"),
            timeout=30,
        )
        assert activity(app) == ""  # replaced by the result
        await pilot.press("escape")


async def test_escape_cancels_a_clamp_while_the_model_loads(app_factory, slow_load):
    app = app_factory()
    async with app.run_test(size=(80, 24)) as pilot:
        await ready(pilot)
        screen = app.main_screen
        await pilot.press("c")
        assert activity(app).startswith("loading model…")
        await pilot.press("escape")
        assert activity(app) == ""
        assert any(n.message.startswith("cancelled: measuring L0:N0") for n in app._notifications)
        await pilot.press("j")  # usable at once
        assert screen.current == NeuronRef(0, 1)
        await wait_for(pilot, lambda: screen.runner._lm is not None, timeout=30)  # it loaded behind
        await pilot.pause(0.3)
        assert app.screen is screen and not screen.chat.basket.clamps  # the cancelled request asks nothing
        await pilot.press("c")  # loaded now: no wait, asks at once
        assert not activity(app).startswith("loading model")
        await wait_for(
            pilot,
            lambda: isinstance(app.screen, ClampValueScreen) and app.screen.query("#clamp-value-input"),
            timeout=30,
        )
        assert "L0:N1" in str(app.screen.query_one("#clamp-value-box").border_title)


async def test_the_activity_line_is_not_textual_loading_widget(app_factory, slow_load):
    """While the model loads the line says so, but Textual's own ``loading`` flag (a widget under a loading
    indicator: a wait pointer over it, clicks dropped, out of the focus chain) stays off."""
    app = app_factory()
    async with app.run_test(size=(80, 24)) as pilot:
        await ready(pilot)
        screen = app.main_screen
        line = screen.query_one("#activity")
        await pilot.press("c")
        assert activity(app).startswith("loading model…") and line.model_loading
        assert line.loading is False
        await pilot.press("escape")
        await wait_for(pilot, lambda: screen.runner._lm is not None, timeout=30)


async def test_probe_says_loading_model_then_shows_the_strip(app_factory, slow_load):
    app = app_factory()
    async with app.run_test(size=(80, 24)) as pilot:
        await ready(pilot)
        screen = app.main_screen
        strip = screen.query_one("#probe-strip")
        probe = screen.query_one("#probe", Input)
        probe.focus()
        probe.value = "dog cat zebra"
        assert "probing L0:N0" in await press_shows_loading(pilot, "enter")
        assert static_text(strip).startswith("loading model…")  # not a bare "running…"
        await wait_for(pilot, lambda: "peak" in static_text(strip), timeout=30)
        assert static_text(strip).startswith("L0:N0 ") and activity(app) == ""


async def test_escape_cancels_a_probe_while_the_model_loads(app_factory, slow_load):
    app = app_factory()
    async with app.run_test(size=(80, 24)) as pilot:
        await ready(pilot)
        screen = app.main_screen
        strip = screen.query_one("#probe-strip")
        probe = screen.query_one("#probe", Input)
        probe.focus()
        probe.value = "dog cat"
        await pilot.press("enter")
        await pilot.press("escape")
        assert activity(app) == "" and static_text(strip) == "probe cancelled"
        await wait_for(pilot, lambda: screen.runner._lm is not None, timeout=30)
        await pilot.pause(0.3)
        assert static_text(strip) == "probe cancelled"  # the late result is dropped


async def test_chat_says_loading_model_until_the_replies_stream(app_factory, slow_load):
    from neuroscope.core.clamp import Clamp

    app = app_factory()
    async with app.run_test(size=(80, 24)) as pilot:
        await ready(pilot)
        chat = app.main_screen.chat
        chat.max_new_tokens = 4
        chat.basket.put(Clamp(NeuronRef(1, 7), 5.0, "set"))
        await pilot.press("C", *"dog cat", "enter")
        assert activity(app).startswith("loading model…") and "generating baseline and clamped" in activity(app)
        await wait_for(pilot, lambda: "done" in static_text(chat.query_one("#chat-status")), timeout=60)
        assert activity(app) == ""


async def test_examples_say_loading_model_and_escape_cancels(app_factory, slow_load, partial_cache):
    """E on a cache without examples (a copy: the run writes to it): the activity line counts the load,
    escape cancels at once; the run stops at its first check and the app says so."""
    app = app_factory(cache_dir=partial_cache)
    async with app.run_test(size=(80, 24)) as pilot:
        await ready(pilot)
        screen = app.main_screen
        await press_shows_loading(pilot, "E")
        assert "computing every neuron's examples" in activity(app)
        await pilot.press("escape")
        assert activity(app) == "" and screen.cancel.is_set()
        await pilot.press("j")
        assert screen.current == NeuronRef(0, 1)
        await wait_for(pilot, lambda: any("examples cancelled" in n.message for n in app._notifications), timeout=60)
        assert not screen.decoding and not screen.query_one("#decode-row").display


async def test_a_failed_examples_run_leaves_the_app_as_it_was(app_factory, partial_cache, monkeypatch):
    """A corpus that cannot be read: one notification, the activity line and the progress row go away and
    E can be pressed again."""
    import neuroscope.core.corpus as corpus

    def broken(*_args, **_kwargs):
        raise OSError("the corpus disk went away")

    monkeypatch.setattr(corpus, "open_corpus", broken)
    app = app_factory(cache_dir=partial_cache)
    async with app.run_test(size=(80, 24)) as pilot:
        await ready(pilot)
        screen = app.main_screen
        await pilot.press("E")
        await wait_for(pilot, lambda: any("the corpus disk went away" in n.message for n in app._notifications))
        await pilot.pause()
        assert activity(app) == "" and not screen.decoding and not screen.query_one("#decode-row").display
