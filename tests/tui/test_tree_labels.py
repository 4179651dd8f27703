"""The tree names each neuron by its strongest concept label over all views and directions, marked with
where it is strongest (u+ ... d−); below LABEL_FLOOR a label is no label and the top-1 token of the view
shown stands in, quoted and dim. Checked against a plain-Python reference over the cache's label arrays."""

from __future__ import annotations

import sqlite3

import numpy as np
from helpers import static_text, wait_for

from neuroscope.cache.labels import LABEL_FLOOR, Labels
from neuroscope.core.refs import NeuronRef

SIZE = (160, 45)
MARK = {
    ("up", "pos"): "u+",
    ("up", "neg"): "u−",
    ("gate", "pos"): "g+",
    ("gate", "neg"): "g−",
    ("down", "pos"): "d+",
    ("down", "neg"): "d−",
}


async def ready(pilot):
    await wait_for(pilot, lambda: pilot.app.main_screen is not None and pilot.app.main_screen.current is not None)


def reference(store, layer: int, neuron: int, shown=("up", "pos")) -> str | None:
    """The label text the tree should show, by a loop over every unit (the shown one first: ties name it)."""
    labels = Labels(store)
    units = [shown] + [u for u in MARK if u != shown]
    best = None
    for view, direction in units:
        key, mass, count, _ = (a[neuron] for a in labels.unit(layer, view, direction))
        if key != 0 and (best is None or mass > best[1]):
            best = (int(key), float(mass), int(count), MARK[view, direction])
    if best is None or best[1] < LABEL_FLOOR:
        return None
    name = labels.keys([best[0]])[best[0]]
    return f"{best[3]} {name}{f' ×{best[2]}' if best[2] > 1 else ''} {min(1.0, best[1]):.2f}"


async def test_tree_names_the_strongest_label_of_any_view(app_factory):
    app = app_factory()
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        screen = app.main_screen
        elsewhere = 0
        for neuron in range(64):
            leaf = screen.neuron_tree.node_for(0, neuron)
            want = reference(screen.store, 0, neuron)
            assert want is not None
            assert leaf.label.plain == f"L0:N{neuron} {want}"
            elsewhere += not want.startswith("u+")
        assert elsewhere > 10  # most neurons are named from a view or direction not shown
        await pilot.press("n")  # the label is the neuron's, not the view's: a switch keeps it
        assert screen.neuron_tree.node_for(0, 0).label.plain == f"L0:N0 {reference(screen.store, 0, 0, ('up', 'neg'))}"


async def test_a_label_under_the_floor_falls_back_to_the_quoted_token(app_factory, partial_cache, tiny_model):
    """Plant it: neuron L0:N3's label mass is set to 0.01 in every view and direction of the cache copy."""
    [path] = partial_cache.glob("*.sqlite")
    with sqlite3.connect(path) as conn:
        rows = conn.execute("SELECT view, direction, mass FROM labels WHERE layer = 0").fetchall()
        for view, direction, mass in rows:
            masses = np.frombuffer(mass, np.float32).copy()
            masses[3] = 0.01
            conn.execute(
                "UPDATE labels SET mass = ? WHERE layer = 0 AND view = ? AND direction = ?",
                (masses.tobytes(), view, direction),
            )
    app = app_factory(cache_dir=partial_cache)
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        screen = app.main_screen
        [top] = screen.store.top(0, 3, "up", "pos")[:1]
        leaf = screen.neuron_tree.node_for(0, 3)
        assert leaf.label.plain == f"L0:N3 “{top.token}” {top.prob:.3f}"
        token_span = [s for s in leaf.label.spans if leaf.label.plain[s.start : s.end].strip().startswith("“")]
        assert token_span and "dim" in str(token_span[0].style)
        app.goto(NeuronRef(0, 3))
        await pilot.pause()
        title = static_text(screen.query_one("#detail-title"))
        assert title.startswith("L0:N3  up pos  tiny-llama")  # no label under the floor in the title
        assert screen.neuron_tree.node_for(0, 4).label.plain == f"L0:N4 {reference(screen.store, 0, 4)}"
