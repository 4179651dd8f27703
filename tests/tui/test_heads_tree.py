"""Attention heads in the app's tree, on a Llama with a planted head (tests/heads_plant.py) whose heads are built
by the real code path (model.head): each layer lists its heads after its neuron groups, a head's leaf shows its
label, and the detail pane shows what the planted head writes (the planted token first) and reads (the planted
read token first), in the direction shown; a model without cached heads shows no heads node."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from helpers import static_text, table_cells, wait_for

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from tests.heads_plant import PLANTED_HEAD, READ_TEXT, WRITE_TEXT, build_head_model

SIZE = (100, 30)


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    """(folder, cache dir, the API's Head of the planted head): decoded, heads built."""
    import neuroscope

    root = tmp_path_factory.mktemp("tui-heads")
    folder = build_head_model("llama", root / "llama")
    model = neuroscope.open(str(folder), cache_dir=root / "cache", device="cpu", dtype="float32", progress=False)
    head = model.head(f"L{PLANTED_HEAD[0]}:H{PLANTED_HEAD[1]}")
    return folder, root / "cache", head


def heads_node(tree, layer: int):
    node = tree.layer_nodes()[layer]
    tree.ensure_loaded(node)
    node.expand()
    [heads] = [n for n in node.children if n.data.kind == "heads"]
    return heads


async def test_a_layer_lists_its_heads_and_a_head_shows_what_it_writes_and_reads(app_factory, planted):
    from neuroscope.tui.format import show_token

    folder, cache, head = planted
    layer, h = PLANTED_HEAD
    app = app_factory(cache_dir=cache, folder=folder)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: app.main_screen is not None and app.main_screen.current is not None)
        screen = app.main_screen
        tree = screen.neuron_tree
        heads = heads_node(tree, layer)
        tree.ensure_loaded(heads)
        heads.expand()
        await pilot.pause()
        from transformers import AutoConfig

        n_heads = AutoConfig.from_pretrained(folder).num_attention_heads
        assert [(c.data.kind, c.data.start) for c in heads.children] == [("head", i) for i in range(n_heads)]
        leaf = heads.children[h]
        assert str(leaf.label).startswith(f"L{layer}:H{h}")
        tree.focus()
        tree.move_cursor(leaf)
        await wait_for(pilot, lambda: static_text(screen.query_one("#detail-title")).startswith(f"L{layer}:H{h}  "))
        # a singular pair's sign is the SVD's: the planted write is first in one direction, its read in the same
        planted = next(d for d in ("pos", "neg") if head.directions[0].writes[d][0].token == WRITE_TEXT)
        for direction, mark in (("pos", "+"), ("neg", "−")):
            if direction == "neg":
                await pilot.press("n")  # the other direction: the head stays shown, now its negative side
                await wait_for(pilot, lambda: "writes −" in static_text(screen.query_one("#detail-title")))
            title = static_text(screen.query_one("#detail-title"))
            assert f"writes {mark}" in title
            rows = table_cells(screen.query_one("#detail-table"))
            assert [r[1] for r in rows] == [show_token(t.token) for t in head.directions[0].writes[direction]]
            lines = static_text(screen.query_one("#other-views"))
            assert lines.startswith("reads") and f"σ{len(head.directions)}" in lines
            if direction == planted:
                assert rows[0][1] == show_token(WRITE_TEXT) and "  cat " in title
                assert show_token(READ_TEXT)[:14] in lines.splitlines()[0]
                assert " cat " in str(tree.cursor_node.label)
        assert tree.cursor_node is leaf


async def test_without_cached_heads_a_layer_has_no_heads_node(app_factory):
    app = app_factory()
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: app.main_screen is not None and app.main_screen.current is not None)
        tree = app.main_screen.neuron_tree
        for node in tree.layer_nodes().values():
            tree.ensure_loaded(node)
            assert all(child.data.kind == "group" for child in node.children)
