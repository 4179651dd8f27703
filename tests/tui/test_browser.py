"""Pilot tests of the browser against a tiny Llama decoded by the real engine (see conftest.py)."""

from __future__ import annotations

import json

from helpers import static_text, table_cells, wait_for
from textual.widgets import Input

from neuroscope.tui.screens.error import ErrorScreen
from neuroscope.tui.screens.help import HelpScreen
from neuroscope.tui.screens.main import MainScreen

SIZE = (100, 30)


def main(app) -> MainScreen:
    return app.main_screen


def detail_title(app) -> str:
    return static_text(main(app).query_one("#detail-title"))


def top_token(app) -> str:
    return table_cells(main(app).query_one("#detail-table"))[0][1]


def cursor(app):
    info = main(app).neuron_tree.cursor_node.data
    return (info.kind, info.layer, info.start)


async def ready(pilot):
    await wait_for(
        pilot,
        lambda: (
            pilot.app.main_screen is not None
            and pilot.app.main_screen.neuron_tree.cursor_node is not None
            and pilot.app.main_screen.current is not None
        ),
    )


async def test_opens_on_first_neuron_and_navigates_tree(app_factory, tiny_model):
    app = app_factory()
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        screen = main(app)
        assert sorted(screen.neuron_tree.layer_nodes()) == [0, 1]
        assert cursor(app) == ("neuron", 0, 0)
        assert "L0:N0" in detail_title(app)
        assert "tiny-llama" in screen.title
        assert "2 × 64 neurons" in screen.sub_title and "decoded" in screen.sub_title
        await pilot.press("j", "j", "down")
        assert cursor(app) == ("neuron", 0, 3)
        assert "L0:N3" in detail_title(app)
        await pilot.press("k")
        assert cursor(app) == ("neuron", 0, 2)
        await pilot.press("G")  # last line: the collapsed layer 1
        assert cursor(app) == ("layer", 1, 0)
        await pilot.press("l")  # expand L1 (groups load on expand)
        await pilot.press("l")  # into its first group
        assert cursor(app) == ("group", 1, 0)
        await pilot.press("l", "l")  # expand the group, first neuron
        assert cursor(app) == ("neuron", 1, 0)
        await pilot.press("h", "h")  # to the group, collapse it
        assert cursor(app) == ("group", 1, 0)
        assert not screen.neuron_tree.cursor_node.is_expanded
        await pilot.press("home")
        assert screen.neuron_tree.cursor_line == 0


async def test_lazy_groups_never_create_all_neurons(app_factory):
    app = app_factory()
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        tree = main(app).neuron_tree
        layer1 = tree.layer_nodes()[1]
        assert not layer1.children  # nothing loaded until expanded
        tree.ensure_loaded(layer1)
        assert [c.data.kind for c in layer1.children] == ["group"]
        assert not layer1.children[0].children


async def test_views_and_direction(app_factory, tiny_model):
    app = app_factory()
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        app.goto(__import__("neuroscope.core.refs", fromlist=["NeuronRef"]).NeuronRef(1, 7))
        await pilot.pause()
        assert "L1:N7" in detail_title(app) and "up pos" in detail_title(app)
        assert top_token(app) == tiny_model.token
        leaf = main(app).neuron_tree.node_for(1, 7)
        assert tiny_model.token in leaf.label.plain
        other = static_text(main(app).query_one("#other-views"))
        assert other.splitlines()[0].startswith("gate") and other.splitlines()[1].startswith("down")
        await pilot.press("n")
        assert "up neg" in detail_title(app) and "up neg" in main(app).sub_title
        assert top_token(app) != tiny_model.token
        assert leaf.label.plain == "L1:N7 u+ zebra 1.00"  # the tree names the strongest label: up pos
        assert any("direction: neg" in n.message for n in app._notifications)
        await pilot.press("v", "g")
        assert "gate neg" in detail_title(app)
        assert any("view: gate" in n.message for n in app._notifications)
        assert static_text(main(app).query_one("#other-views")).splitlines()[0].startswith("up")
        await pilot.press("v", "d")
        assert "down neg" in detail_title(app)
        await pilot.press("n", "v", "u")
        assert "up pos" in detail_title(app) and top_token(app) == tiny_model.token


async def test_filter_then_jump_to_result(app_factory, tiny_model):
    app = app_factory()
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        screen = main(app)
        await pilot.press("slash")
        await pilot.pause()
        assert isinstance(app.focused, Input)
        await pilot.press(*tiny_model.token)
        await wait_for(pilot, lambda: screen.results.display and screen.results.row_count > 0)
        rows = table_cells(screen.results)
        assert rows[0][:4] == [tiny_model.planted, "up", "pos", "1"] and rows[0][4] == tiny_model.token
        assert "match 'zebra' (word" in str(screen.results.border_title)
        await pilot.press("n")  # typed into the filter, not a direction switch
        assert screen.direction == "pos"
        await pilot.press("backspace")
        await wait_for(pilot, lambda: screen.results.row_count > 0)
        await pilot.press("enter")  # enter in the filter: first result, focus results
        await pilot.pause()
        assert app.focused is screen.results
        assert tiny_model.planted in detail_title(app)
        await pilot.press("enter")  # enter on a result: jump, focus the tree
        await pilot.pause()
        assert cursor(app) == ("neuron", 1, 7)
        assert app.focused is screen.neuron_tree
        await pilot.press("escape")  # back: clear the filter
        assert not screen.results.display and screen.query_one("#query", Input).value == ""


async def test_filter_match_modes(app_factory, tiny_model):
    app = app_factory()
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        screen = main(app)
        await pilot.press("slash")
        await pilot.pause()
        await pilot.press("z", "e", "b")
        await wait_for(pilot, lambda: screen.results.display)
        assert screen.results.row_count == 0
        assert "no neuron" in str(screen.results.border_title)
        await pilot.press("ctrl+t", "ctrl+t")  # word -> exact -> prefix
        await wait_for(pilot, lambda: screen.results.row_count > 0)
        assert "prefix" in str(screen.results.border_title)
        assert tiny_model.planted in [r[0] for r in table_cells(screen.results)]


async def test_help_screen(app_factory):
    app = app_factory()
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        await pilot.press("question_mark")
        await pilot.pause()
        assert isinstance(app.screen, HelpScreen)
        await pilot.press("escape")
        await pilot.pause()
        assert isinstance(app.screen, MainScreen)
        await pilot.press("f1")
        await pilot.pause()
        assert isinstance(app.screen, HelpScreen)
        await pilot.press("escape")


async def test_bindings_have_ids(app_factory):
    from neuroscope.tui.app import NeuroscopeApp
    from neuroscope.tui.widgets.neuron_tree import NeuronTree
    from neuroscope.tui.widgets.tables import VimTable

    for cls in (NeuroscopeApp, MainScreen, HelpScreen, ErrorScreen, NeuronTree, VimTable):
        assert all(b.id for b in cls.BINDINGS), cls
    vim = [b for b in NeuronTree.BINDINGS + VimTable.BINDINGS]
    assert not any(b.show for b in vim)


async def test_palette_go_to_neuron(app_factory, tiny_model):
    app = app_factory()
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        await pilot.press("ctrl+p")
        await pilot.pause()
        await pilot.press(*"1:7")
        await pilot.pause(0.5)
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, MainScreen) and "L1:N7" in detail_title(app))
        assert cursor(app) == ("neuron", 1, 7)


async def test_palette_switch_view(app_factory):
    app = app_factory()
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        await pilot.press("ctrl+p")
        await pilot.pause()
        await pilot.press(*"switch view: down")
        await pilot.pause(0.5)
        await pilot.press("enter")
        await wait_for(pilot, lambda: main(app).view == "down")
        assert "down pos" in detail_title(app)


async def test_palette_bad_neuron_is_a_notification(app_factory):
    """ctrl+p, a neuron the model does not have, enter: an error notification, the browser as it was."""
    app = app_factory()
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        before = (cursor(app), detail_title(app))
        await pilot.press("ctrl+p")
        await pilot.pause()
        await pilot.press(*"9:0")  # the tiny model has layers 0-1
        await pilot.pause(0.5)
        await pilot.press("enter")
        await wait_for(pilot, lambda: any("out of range" in n.message for n in app._notifications))
        [note] = [n for n in app._notifications if "out of range" in n.message]
        assert note.severity == "error" and note.message.startswith("layer 9 is out of range")
        assert isinstance(app.screen, MainScreen) and (cursor(app), detail_title(app)) == before


async def test_worker_error_becomes_notification(app_factory, monkeypatch):
    import neuroscope.tui.screens.main as main_module

    def broken(*_args, **_kwargs):
        raise RuntimeError("the cache went away")

    monkeypatch.setattr(main_module, "search_cache", broken)
    app = app_factory()
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        await pilot.press("slash")
        await pilot.pause()
        await pilot.press("d", "o", "g")
        await wait_for(pilot, lambda: any("the cache went away" in n.message for n in app._notifications))
        assert app.is_running and isinstance(app.screen, MainScreen)
        await pilot.press("escape", "j")  # still responsive
        assert app.focused is main(app).neuron_tree


async def test_decodes_missing_cache_in_worker(app_factory, empty_cache, tiny_model):
    app = app_factory(cache_dir=empty_cache)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(
            pilot,
            lambda: main(app) is not None and "decoded" in main(app).sub_title and not main(app).decoding,
            timeout=60,
        )
        screen = main(app)
        assert sorted(screen.neuron_tree.layer_nodes()) == [0, 1]
        assert not screen.query_one("#decode-row").display
        app.goto(__import__("neuroscope.core.refs", fromlist=["NeuronRef"]).NeuronRef(1, 7))
        await pilot.pause()
        assert top_token(app) == tiny_model.token


async def test_cancelled_decode_keeps_work_and_resumes(app_factory, empty_cache, monkeypatch):
    """Escape after the first committed unit keeps it; reopening resumes and decodes only the rest."""
    from neuroscope.cache.store import Store
    from neuroscope.tui.messages import UnitCommitted

    post = MainScreen.post_message

    def cancel_after_first_unit(self, message):
        if isinstance(message, UnitCommitted):  # posted by the worker thread right after the commit
            self.cancel.set()
        return post(self, message)

    monkeypatch.setattr(MainScreen, "post_message", cancel_after_first_unit)
    app = app_factory(cache_dir=empty_cache)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: any("decode cancelled" in n.message for n in app._notifications), timeout=60)
        assert "partial" in main(app).sub_title and not main(app).decoding
    [path] = empty_cache.glob("*.sqlite")
    with Store(path, readonly=True) as store:
        first = store.unit_log()
    assert 1 <= len(first) < 6
    monkeypatch.setattr(MainScreen, "post_message", post)
    app = app_factory(cache_dir=empty_cache)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(
            pilot,
            lambda: main(app) is not None and "decoded" in main(app).sub_title and not main(app).decoding,
            timeout=60,
        )
        assert any(f"resuming: {len(first)} layer-views already cached" in n.message for n in app._notifications)
    with Store(path, readonly=True) as store:
        log = store.unit_log()
        assert store.status()["complete"] and len(log) == 6 and log[: len(first)] == first


async def test_palette_switch_model_keeps_the_cache(app_factory, tiny_model, tmp_path):
    """A cache made under another display name (as `decode demo` names the demo GGUF's cache) is found by
    its key: switching to the model from the palette opens it, decodes nothing and deletes nothing."""
    import shutil

    cache = tmp_path / "cache"
    cache.mkdir()
    key = tiny_model.cache_file.name.rsplit("-", 1)[1]
    alias = cache / f"alias-{key}"
    shutil.copy(tiny_model.cache_file, alias)
    app = app_factory(cache_dir=cache)
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        first = main(app)
        await pilot.press("ctrl+p")
        await pilot.pause()
        await pilot.press(*"switch model: tiny")
        await pilot.pause(0.5)
        await pilot.press("enter")
        await wait_for(pilot, lambda: main(app) is not first and main(app).current is not None)
        assert main(app).path == alias and not main(app).decoding and "decoded" in main(app).sub_title
    assert sorted(p.name for p in cache.glob("*.sqlite")) == [alias.name]


async def test_decode_failure_shows_error_modal(app_factory, tmp_path):
    broken = tmp_path / "broken-model"
    broken.mkdir()
    (broken / "config.json").write_text(json.dumps({"model_type": "no-such-arch"}))
    app = app_factory(cache_dir=tmp_path / "cache", folder=broken)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, ErrorScreen), timeout=60)
        assert "no-such-arch" in app.screen.message or "broken-model" in app.screen.message
        await pilot.press("escape")
        await pilot.pause()
        assert isinstance(app.screen, MainScreen) and not main(app).decoding


async def test_small_terminal(app_factory, tiny_model):
    app = app_factory()
    async with app.run_test(size=(80, 24)) as pilot:
        await ready(pilot)
        await pilot.press("slash")
        await pilot.pause()
        await pilot.press(*tiny_model.token)
        await wait_for(pilot, lambda: main(app).results.row_count > 0)
        results = main(app).results
        assert results.virtual_size.width <= results.scrollable_content_region.width
