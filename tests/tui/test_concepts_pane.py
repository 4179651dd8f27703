"""Pilot tests of concepts in the app, on the tiny Llama whose L1:N7 up row is the unembedding of "zebra":
the tree and the filter results show labels, the filter matches labels, M sorts each layer by label mass
(following direction switches)."""

from __future__ import annotations

import numpy as np
from helpers import table_cells, wait_for
from textual.widgets import Select

from neuroscope.cache.labels import Labels

SIZE = (120, 30)


async def ready(pilot):
    await wait_for(pilot, lambda: pilot.app.main_screen is not None and pilot.app.main_screen.current is not None)


def first_group(screen, layer: int):
    node = screen.neuron_tree.layer_nodes()[layer]
    screen.neuron_tree.ensure_loaded(node)
    return node.children[0]


async def test_filter_matches_labels_and_shows_them(app_factory, tiny_model):
    app = app_factory()
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        screen = app.main_screen
        await pilot.press("slash")
        await pilot.pause()
        screen.query_one("#match", Select).value = "label"
        await pilot.press(*"Zebras")  # the concept key: case and plural folded
        await wait_for(pilot, lambda: screen.results.display and screen.results.row_count > 0)
        rows = table_cells(screen.results)
        assert rows[0][:3] == [tiny_model.planted, "up", "pos"] and rows[0][6].startswith("zebra")
        assert all(r[6].startswith("zebra") for r in rows)


async def test_m_sorts_each_layer_by_label_mass(app_factory, tiny_model):
    app = app_factory()
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        screen = app.main_screen
        from neuroscope.core.refs import NeuronRef

        app.goto(NeuronRef(0, 5))
        await pilot.pause()
        await pilot.press("M")
        await pilot.pause()
        leaf = screen.neuron_tree.cursor_node  # the cursor stays on the neuron it was on
        assert (leaf.data.kind, leaf.data.layer, leaf.data.start) == ("neuron", 0, 5)
        mass = float(Labels(screen.store).unit(0, "up", "pos")[1][5])
        assert leaf.label.plain.startswith(f"L0:N5  {min(1.0, mass):6.2f} │ ")  # its label mass, a column
        group = first_group(screen, 1)
        assert str(group.label).startswith("label mass #1")
        assert group.data.members[0] == 7  # the planted neuron is the most specialised
        for direction in ("pos", "neg"):
            masses = Labels(screen.store).unit(1, "up", direction)[1]
            members = list(first_group(screen, 1).data.members)
            assert members == np.argsort(-masses, kind="stable")[: len(members)].tolist()
            if direction == "pos":
                await pilot.press("n")  # the other direction: sorted again
                await pilot.pause()
        await pilot.press("M")
        await pilot.pause()
        assert first_group(screen, 1).data.members is None
