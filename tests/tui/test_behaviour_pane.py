"""Pilot tests of what the app shows of a neuron's behaviour, on the planted firing model: its examples
with the activating token highlighted, the probe strip, sorting a layer by firing, and the agreement chart."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from helpers import static_text, wait_for
from textual.widgets import Input

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from tests.models import FIRING, build_firing_llama, firing_corpus

SIZE = (100, 30)


@pytest.fixture(scope="module")
def firing_app(tmp_path_factory):
    import neuroscope
    from neuroscope.tui.app import NeuroscopeApp
    from neuroscope.tui.options import Options

    root = tmp_path_factory.mktemp("tui-firing")
    folder = build_firing_llama(root / "firing-llama")
    corpus = firing_corpus(root / "corpus.txt", tokens=3000, seed=5, share=0.1)
    model = neuroscope.open(str(folder), cache_dir=root / "cache", device="cpu", dtype="float32", progress=False)
    model.decode()
    model.examples(str(corpus), tokens=2048, window=64, batch=4)

    def make():
        return NeuroscopeApp(model.source, Options(cache_dir=str(root / "cache"), device="cpu", dtype="float32"))

    return make


async def test_examples_probe_sort_and_agreement(firing_app):
    from neuroscope.core.refs import NeuronRef

    app = firing_app()
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: app.main_screen is not None and app.main_screen.current is not None)
        screen = app.main_screen
        app.goto(NeuronRef(*FIRING))
        await pilot.pause()
        box = screen.query_one("#examples")
        shown = box.content if hasattr(box, "content") else box.renderable  # the rich Text given to it
        lines = shown.plain.splitlines()
        assert lines[0].lstrip().startswith("+") and "++" in lines[0] and "dog" in lines[0]
        assert lines[3].lstrip().startswith("-") and "+-" in lines[3] and "cat" in lines[3]
        highlighted = [shown.plain[s.start : s.end] for s in shown.spans if "reverse" in str(s.style)]
        assert highlighted[:3] == ["dog"] * 3 and highlighted[3:6] == ["cat"] * 3
        assert "GLU cases" in lines[-1] and "fires (> 0) on" in lines[-1]

        probe = screen.query_one("#probe", Input)
        probe.focus()
        probe.value = "t30 dog t40 cat"
        await pilot.press("enter")
        await wait_for(pilot, lambda: "peak" in static_text(screen.query_one("#probe-strip")), timeout=30)
        strip = static_text(screen.query_one("#probe-strip"))
        assert strip.startswith(f"{NeuronRef(*FIRING)} ") and "peak +" in strip

        screen.neuron_tree.focus()
        await pilot.press("F")  # sort each layer by how often its neurons fire
        await pilot.pause()
        layer0 = screen.neuron_tree.layer_nodes()[0]
        group = layer0.children[0]
        assert group.data.members is not None and str(group.label).startswith("firing #1")
        from neuroscope.cache.examples import Examples

        ex = Examples(screen.store)
        counts = ex.counts(0)[1]
        assert list(group.data.members) == sorted(range(64), key=lambda i: (-int(counts[i]), i))
        assert screen.neuron_tree.node_for(*FIRING).data.start == FIRING[1]  # still reachable by its number
        await pilot.pause()
        leaf = screen.neuron_tree.cursor_node  # the cursor stayed on its neuron
        assert (leaf.data.kind, leaf.data.layer, leaf.data.start) == ("neuron", *FIRING)
        assert leaf.parent.is_expanded and screen.current == NeuronRef(*FIRING)
        firing = ex.counts(FIRING[0])[1][FIRING[1]] / (int(ex.spec["windows"]) * int(ex.spec["window"]))
        name = str(NeuronRef(*FIRING)).ljust(len("L1:N63"))  # the tree's name column
        assert leaf.label.plain.startswith(f"{name} {f'{firing:.1%}':>6} │ ")  # its firing rate, a column
        await pilot.press("F")
        assert screen.neuron_tree.layer_nodes()[0].children[0].data.members is None
        await pilot.pause()
        leaf = screen.neuron_tree.cursor_node
        assert (leaf.data.kind, leaf.data.layer, leaf.data.start) == ("neuron", *FIRING)
        assert "%" not in leaf.label.plain and "│" not in leaf.label.plain  # index order: no sort column

        await pilot.press("A")
        chart = screen.query_one("#behaviour-agreement")
        await wait_for(pilot, lambda: chart.fractions, timeout=30)
        assert len(chart.fractions) == 2 and "of neurons agree" in chart.title
        agreement = screen.query_one("#behaviour").agreement.views[screen.view]  # the pane owns it
        assert chart.chance == agreement.chance
        await pilot.pause()
        shown = chart.render().plain
        peak = max(*chart.fractions, agreement.chance)
        top = min(s for s in (0.01, 0.02, 0.05, 0.1, 0.2, 0.25, 0.5, 1.0) if s >= peak)
        assert f"{top:.0%}│".rjust(5) in shown and "╌ chance" in shown
        await pilot.press("A")
        assert not chart.display
