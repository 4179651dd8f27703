"""Pilot tests of the circuit pane on the tiny Llama, its graph built by the real code path: the neighbours it
lists are neuroscope.circuits.circuit's (and the float64 virtual weights' top 10), enter jumps along an edge (tree
cursor and detail on the target), the back key retraces the jumps; without a graph it says so, never builds one
on a cursor move, and its build key builds it."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
from helpers import static_text, table_cells, wait_for

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from tests.core.test_circuits import reference

SIZE = (80, 24)


def api_model(folder, cache_dir):
    import neuroscope

    return neuroscope.open(str(folder), cache_dir=cache_dir, device="cpu", dtype="float32", progress=False)


@pytest.fixture(scope="module")
def graph_cache(tmp_path_factory, tiny_model) -> Path:
    """A copy of the decoded cache with its circuit graph built (neuroscope.circuits.ensure_graph)."""
    from neuroscope.circuits import ensure_graph, graph_status

    target = tmp_path_factory.mktemp("tui-circuit") / "cache"
    target.mkdir()
    shutil.copy(tiny_model.cache_file, target / tiny_model.cache_file.name)
    model = api_model(tiny_model.folder, target)
    ensure_graph(model, announce=False)
    done, needed = graph_status(model)
    assert done >= needed == 1
    return target


def expected_rows(got: dict) -> list[list[str]]:
    """The table's rows for a circuit dict, as the user reads them."""
    from neuroscope.core.refs import NeuronRef

    rows = []
    for key, title in (("upstream", "reads from"), ("downstream", "writes to")):
        rows.append([title, "", "", f"({key})"])
        if not got[key]:
            why = "layer 0 reads no earlier neuron" if key == "upstream" else "the last layer feeds no neuron"
            rows.append(["none", "", "", why])
        for e in got[key]:
            rows.append([str(NeuronRef(e["layer"], e["neuron"])), e["via"], f"{e['weight']:+.4f}", e["label"] or "—"])
    return rows


async def ready(pilot):
    app = pilot.app
    await wait_for(pilot, lambda: app.main_screen is not None and app.main_screen.current is not None)


def pane_of(app):
    from neuroscope.tui.widgets.circuit_pane import CircuitPane

    return app.main_screen.query_one("#circuit", CircuitPane)


async def shown(pilot, ref):
    """Wait until the pane shows ``ref``'s circuit."""
    pane = pane_of(pilot.app)
    await wait_for(pilot, lambda: pane.ref == ref and pane.circuit is not None and pane.table.row_count > 0)


def on(app, ref) -> bool:
    """The browser shows ``ref``: the screen's neuron, the tree's cursor and the detail's title."""
    screen = app.main_screen
    node = screen.neuron_tree.cursor_node
    return (
        screen.current == ref
        and node is not None
        and node.data is not None
        and (node.data.kind, node.data.layer, node.data.start) == ("neuron", ref.layer, ref.neuron)
        and node.parent.is_expanded
        and node.parent.parent.is_expanded
        and static_text(screen.query_one("#detail-title")).startswith(f"{ref}  ")
    )


async def test_the_pane_lists_circuit_s_neighbours_and_the_float64_top_10(app_factory, tiny_model, graph_cache):
    from neuroscope.circuits import circuit
    from neuroscope.core.refs import NeuronRef

    ref = NeuronRef(1, 7)  # the planted neuron: its up row reads the LM-head row of "zebra"
    want = circuit(api_model(tiny_model.folder, graph_cache), ref, top=10)
    app = app_factory(cache_dir=graph_cache)
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        app.goto(ref)
        await shown(pilot, ref)
        pane = pane_of(app)
        cells = table_cells(pane.table)
        assert cells == expected_rows(want)
        assert len(want["upstream"]) == 10 and want["downstream"] == []  # L1 is the last layer
        assert pane.rows == [None] + [NeuronRef(e["layer"], e["neuron"]) for e in want["upstream"]] + [None, None]

    # independent of the code under test: the float64 virtual weights of every L0 neuron into L1:N7, both reads
    edges = [
        (abs(w), n, via, w)
        for via in ("gate", "up")
        for n, w in enumerate(reference(tiny_model.folder, "llama", 0, 1, via)[:, 7])
    ]
    top = sorted(edges, reverse=True)[:10]
    assert [(e["neuron"], e["via"]) for e in want["upstream"]] == [(n, via) for _, n, via, _ in top]
    assert np.allclose([e["weight"] for e in want["upstream"]], [w for *_, w in top], rtol=1e-4, atol=1e-5)


async def test_enter_jumps_along_edges_and_back_retraces_them(app_factory, graph_cache):
    from neuroscope.core.refs import NeuronRef

    app = app_factory(cache_dir=graph_cache)
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        screen, pane = app.main_screen, pane_of(app)
        start = NeuronRef(0, 0)
        await wait_for(pilot, lambda: on(app, start))
        await shown(pilot, start)
        await pilot.press("b")  # nothing to go back from yet: it says so and stays
        await pilot.pause()
        assert on(app, start) and any("no jump to go back from" in n.message for n in app._notifications)

        await pilot.press("w")  # the neighbours, the cursor on the first (L0 reads nothing: a downstream one)
        await pilot.pause()
        assert screen.focused is pane.table
        first = pane.rows[pane.table.cursor_row]
        top = pane.circuit["downstream"][0]
        assert first == NeuronRef(top["layer"], top["neuron"]) and first.layer == 1
        await pilot.press("enter")  # jump 1: start -> first
        await wait_for(pilot, lambda: on(app, first))
        await shown(pilot, first)
        assert pane.history == [start] and screen.focused is pane.table  # walking on needs no key

        upstream = [NeuronRef(e["layer"], e["neuron"]) for e in pane.circuit["upstream"]]
        row = next(i for i, r in enumerate(pane.rows) if r is not None and r != start)  # not back where we began
        second = pane.rows[row]
        assert second in upstream and second.layer == 0
        await pilot.press(*["j"] * (row - pane.table.cursor_row), "enter")  # jump 2: first -> second
        await wait_for(pilot, lambda: on(app, second))
        await shown(pilot, second)
        assert pane.history == [start, first]
        assert "b back (2)" in static_text(pane.query_one("#circuit-title"))

        screen.neuron_tree.focus()  # the back key works from the tree too
        await pilot.press("b")
        await wait_for(pilot, lambda: on(app, first))
        await shown(pilot, first)
        await pilot.press("b")
        await wait_for(pilot, lambda: on(app, start))
        await shown(pilot, start)
        assert pane.history == []


async def test_without_a_graph_it_says_so_and_the_build_key_builds_it(app_factory, tiny_model, partial_cache):
    from neuroscope.cache.edges import stored_edges_spec
    from neuroscope.circuits import circuit, graph_status
    from neuroscope.core.refs import NeuronRef

    model = api_model(tiny_model.folder, partial_cache)
    assert graph_status(model) == (0, 1)
    app = app_factory(cache_dir=partial_cache)
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        screen, pane = app.main_screen, pane_of(app)
        title = pane.query_one("#circuit-title")
        await wait_for(pilot, lambda: static_text(title) == "circuit graph not built: press B to build")
        screen.neuron_tree.focus()
        await pilot.press("j", "j", "j")  # cursor moves never build it
        await pilot.pause(0.5)
        assert screen.current == NeuronRef(0, 3) and pane.table.row_count == 0
        assert static_text(title) == "circuit graph not built: press B to build"
        assert stored_edges_spec(model.path) is None and not pane.building

        await pilot.press("B")  # builds it in a worker (on this tiny model it is done at once)
        await wait_for(pilot, lambda: any(n.message == "circuit graph built" for n in app._notifications), timeout=60)
        await shown(pilot, NeuronRef(0, 3))
        assert not pane.building and not screen.decoding and not screen.query_one("#decode-row").display
        assert graph_status(model) == (1, 1)
        want = circuit(model, NeuronRef(0, 3), top=10)
        cells = table_cells(pane.table)
        assert [c[:3] for c in cells] == [r[:3] for r in expected_rows(want)]


async def test_a_cancelled_build_says_so_keeps_nothing_half_made_and_b_resumes(app_factory, tiny_model, partial_cache):
    """Escape sets the screen's cancel event (tests/tui/test_activity.py); here it is set before the build's
    first chunk, as an escape pressed at once would, so the real pass stops where it checks it."""
    from neuroscope.circuits import graph_status

    model = api_model(tiny_model.folder, partial_cache)
    app = app_factory(cache_dir=partial_cache)
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        screen, pane = app.main_screen, pane_of(app)
        title = pane.query_one("#circuit-title")
        await wait_for(pilot, lambda: static_text(title).startswith("circuit graph not built"))
        screen.cancel.set()
        await pilot.press("B")
        await wait_for(pilot, lambda: any("circuit graph cancelled" in n.message for n in app._notifications))
        await wait_for(pilot, lambda: static_text(title).startswith("circuit graph not built"))
        assert graph_status(model) == (0, 1) and not screen.decoding and not screen.cancel.is_set()
        assert "press B to resume" in [n.message for n in app._notifications if "cancelled" in n.message][-1]
        await pilot.press("B")  # the cancel is spent: this build runs to the end
        await wait_for(pilot, lambda: any(n.message == "circuit graph built" for n in app._notifications), timeout=60)
        await wait_for(pilot, lambda: pane.circuit is not None)
        assert graph_status(model) == (1, 1)
