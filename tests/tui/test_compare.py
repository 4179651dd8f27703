"""Compare mode (`tui BASE --compare OTHER`): Pilot tests and snapshots of the side-by-side panes, the
agreement chart, the changed-only walk and the two-model filter, on the tiny Llama and a noisy copy.

Regenerate the snapshots after an intended change: pytest tests/tui/test_compare.py --snapshot-update"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from helpers import static_text, table_cells, wait_for
from textual.widgets import Input

from neuroscope.core.loading.sources import resolve
from neuroscope.tui.screens.error import ErrorScreen
from neuroscope.tui.widgets.compare_panes import ONLY

from ..core.test_compare import perturbed_copy

SIZE = (100, 30)


@pytest.fixture(scope="session")
def tuned(tiny_model, tmp_path_factory) -> dict:
    """A copy of the tiny Llama with noise in layer 1's MLP, decoded next to the base in one cache folder."""
    from neuroscope.core.options import DecodeRecipe
    from neuroscope.core.pipeline import ensure_decoded

    root = tmp_path_factory.mktemp("tui-compare")
    folder = perturbed_copy(tiny_model.folder, root / "tiny-tuned", layers=(1,), scale=0.3)
    cache = root / "cache"
    cache.mkdir()
    shutil.copy(tiny_model.cache_file, cache / tiny_model.cache_file.name)
    result = ensure_decoded(resolve(str(folder)), DecodeRecipe(dtype="float32", device="cpu"), cache_dir=cache)
    return {"folder": folder, "cache": cache, "cache_file": result.path}


@pytest.fixture
def compare_app(tiny_model, tuned):
    from neuroscope.tui.app import NeuroscopeApp
    from neuroscope.tui.options import Options

    def make(other=None, cache=None):
        return NeuroscopeApp(
            resolve(str(tiny_model.folder)),
            Options(cache_dir=str(cache or tuned["cache"]), device="cpu", dtype="float32"),
            compare=resolve(str(other or tuned["folder"])),
        )

    return make


async def ready(pilot):
    app = pilot.app
    await wait_for(
        pilot,
        lambda: (
            app.main_screen is not None
            and app.main_screen.comparison is not None
            and app.main_screen.current is not None
        ),
    )
    for widget in app.screen.query(Input):
        widget.cursor_blink = False
    await pilot.pause()


def panes(screen):
    return [table_cells(screen.query_one(f"#pane-{side}")) for side in ("base", "other")]


def title(screen) -> str:
    return static_text(screen.query_one("#compare-title"))


async def test_side_by_side_in_sync_and_chart(compare_app):
    app = compare_app()
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        screen = app.main_screen
        c = screen.comparison
        assert (c.view, c.direction) == ("up", "pos")
        assert [p.same_top1 for p in c.per_layer][0] == 1.0 and c.per_layer[1].same_top1 < 1.0
        assert screen.chart.fractions == [p.same_top1 for p in c.per_layer]
        chart = screen.chart.render().plain
        assert "same top-1 L0 100.0%" in chart and f"all layers {c.same_top1:.1%}" in chart and "100%│" in chart
        assert title(screen).startswith("L0:N0  up pos  top-1 kept  jaccard 1.00")
        base, other = panes(screen)
        assert base == other and len(base) == 10  # layer 0 is untouched: identical panes
        await pilot.press("j", "j")
        assert title(screen).startswith("L0:N2  up pos")
        assert panes(screen)[0] == panes(screen)[1]
        await pilot.press("v", "g")  # view switch: both panes and the statistics follow
        await wait_for(pilot, lambda: screen.comparison.view == "gate")
        assert title(screen).startswith("L0:N2  gate pos")
        assert "gate pos" in screen.chart.render().plain
        table = screen.query_one("#pane-base")
        table.focus()
        await pilot.press("j", "j", "j")  # cursors of the two panes move together
        assert screen.query_one("#pane-other").cursor_row == table.cursor_row == 3


async def test_changed_only_walks_most_changed_with_highlights(compare_app):
    app = compare_app()
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        screen = app.main_screen
        changed = screen.comparison.most_changed
        assert changed and all(c.layer == 1 for c in changed[:10])
        assert [c.jaccard for c in changed] == sorted(c.jaccard for c in changed)
        await pilot.press("o")
        table = screen.changed_table
        assert table.display and table.row_count == len(changed)
        assert screen.current == changed[0].ref
        assert screen.neuron_tree.cursor_node.data.layer == changed[0].layer  # the tree follows
        assert screen.neuron_tree.cursor_node.data.start == changed[0].neuron
        await pilot.press("j")
        assert screen.current == changed[1].ref
        first = changed[1]
        verdict = "kept" if first.base_top == first.other_top else "changed"
        assert title(screen).startswith(f"{first.ref}  up pos  top-1 {verdict}")
        assert f"jaccard {first.jaccard:.2f}" in title(screen) and f"cos {first.cosine:.3f}" in title(screen)
        # tokens in one model's top-k only are highlighted, the shared ones are not
        base_table, other_table = (screen.query_one(f"#pane-{s}") for s in ("base", "other"))
        base_tokens = {str(base_table.get_row_at(i)[1]) for i in range(base_table.row_count)}
        for i in range(other_table.row_count):
            cell = other_table.get_row_at(i)[1]
            assert (cell.style == ONLY) == (cell.plain not in base_tokens), cell.plain
        assert any(other_table.get_row_at(i)[1].style == ONLY for i in range(other_table.row_count))
        await pilot.press("o", "right_square_bracket")  # list hidden: ] still walks
        assert not table.display and screen.current == changed[2].ref
        await pilot.press("left_square_bracket", "left_square_bracket")
        assert screen.current == changed[0].ref


async def test_filter_searches_both_models(compare_app, tiny_model):
    app = compare_app()
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        screen = app.main_screen
        await pilot.press("slash", *"w0")
        await pilot.press("ctrl+t", "ctrl+t")  # prefix: many tokens, so some match one model only
        await wait_for(pilot, lambda: screen.results.row_count > 0)
        rows = table_cells(screen.results)
        where = {r[-1] for r in rows}
        assert where <= {"both", "base", "other"} and {"base", "other"} & where
        assert "in either model" in str(screen.results.border_title)
        for width, wide in ((60, False), (200, True)):  # a re-layout (label off, then on) keeps the model column
            await pilot.resize_terminal(width, SIZE[1])
            await wait_for(pilot, lambda w=wide: screen.results.wide is w)
            assert [r[-1] for r in table_cells(screen.results)] == [r[-1] for r in rows]


async def test_same_model_twice_agrees(compare_app, tiny_model):
    app = compare_app(other=tiny_model.folder)
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        c = app.main_screen.comparison
        assert c.same_top1 == 1.0 and c.same_model and c.most_changed == []
        assert any("same model" in n.message for n in app._notifications)


async def test_other_decoded_on_demand_and_vocab_refused(compare_app, tiny_model, tmp_path):
    odd = tmp_path / "odd-vocab"
    shutil.copytree(tiny_model.folder, odd)
    tok = json.loads((odd / "tokenizer.json").read_text())
    tok["model"]["vocab"]["wolf"] = tok["model"]["vocab"].pop("dog")
    (odd / "tokenizer.json").write_text(json.dumps(tok))
    cache = tmp_path / "cache"
    cache.mkdir()
    shutil.copy(tiny_model.cache_file, cache / tiny_model.cache_file.name)
    app = compare_app(other=odd, cache=cache)
    async with app.run_test(size=SIZE) as pilot:

        def error_text() -> str:  # the modal's widgets mount a moment after the screen is pushed
            if not isinstance(app.screen, ErrorScreen):
                return ""
            return " ".join(static_text(w) for w in app.screen.query("Static"))

        await wait_for(pilot, lambda: "vocabularies" in error_text(), timeout=60)
        assert list(Path(cache).glob("odd-vocab-*.sqlite"))  # OTHER was decoded in the worker
        text = error_text()
        assert "tokenizer vocabularies differ" in text and '"dog"' in text and '"wolf"' in text


def test_snapshot_side_by_side(snap_compare, compare_app):
    async def run_before(pilot) -> None:
        await ready(pilot)
        await pilot.press("right_square_bracket")  # the most-changed neuron
        await pilot.pause(0.2)

    assert snap_compare(compare_app(), terminal_size=SIZE, run_before=run_before)


def test_snapshot_changed_only(snap_compare, compare_app):
    async def run_before(pilot) -> None:
        await ready(pilot)
        await pilot.press("o", "j")
        await pilot.pause(0.2)

    assert snap_compare(compare_app(), terminal_size=SIZE, run_before=run_before)
