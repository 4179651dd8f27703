"""Pilot tests of "why it fired" (widgets/why_fired.py) at 80x24 on the tests' tiny Llama: after a probe, `y`
chooses the token where |activation| is largest (a forward hook here says which), h / l choose another, enter
shows each read's total, its top sources and the rest, the numbers those of Model.attribute called here; escape
cancels a running explanation, then leaves; a refusal or a bug is one line in the pane."""

from __future__ import annotations

import re
import threading

import pytest
from helpers import static_text, wait_for
from textual.widgets import Input

from neuroscope.core.refs import NeuronRef
from neuroscope.errors import UsageError

SIZE = (80, 24)
REF = NeuronRef(1, 7)  # the tiny model's planted neuron: it reads from layer 0's neurons
TEXT = "dog cat zebra apple river stone green seven"  # every word in the tiny vocabulary (tiny_model.WORDS)
TOP = 5  # the pane's WHY_TOP


@pytest.fixture(scope="module")
def hooked(tiny_model):
    """REF's activation on each token of TEXT, read by a hook on its down projection's input (transformers
    only: no neuroscope code), and the tokens."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model.folder)
    lm = AutoModelForCausalLM.from_pretrained(tiny_model.folder, torch_dtype=torch.float32)
    ids = tok(TEXT, return_tensors="pt")["input_ids"]
    seen = {}
    down = lm.model.layers[REF.layer].mlp.down_proj
    handle = down.register_forward_pre_hook(lambda _m, args: seen.update(acts=args[0][0, :, REF.neuron].clone()))
    with torch.no_grad():
        lm(input_ids=ids)
    handle.remove()
    return seen["acts"].tolist(), tok.convert_ids_to_tokens(ids[0].tolist())


@pytest.fixture(scope="module")
def attributions(tiny_model, hooked):
    """Model.attribute at every token of TEXT, from a model opened here (not the app's)."""
    import neuroscope

    model = neuroscope.open(
        str(tiny_model.folder), cache_dir=tiny_model.cache_dir, device="cpu", dtype="float32", progress=False
    )
    return [model.attribute(TEXT, str(REF), at=i, top=TOP) for i in range(len(hooked[0]))]


async def probed(pilot):
    """The app on REF with TEXT probed, the focus back on the tree."""
    app = pilot.app
    await wait_for(pilot, lambda: app.main_screen is not None and app.main_screen.current is not None)
    screen = app.main_screen
    app.goto(REF)
    await pilot.pause()
    probe = screen.query_one("#probe", Input)
    probe.focus()
    probe.value = TEXT
    await pilot.press("enter")
    await wait_for(pilot, lambda: "peak" in static_text(screen.query_one("#probe-strip")), timeout=60)
    await pilot.press("escape")  # out of the probe box: there y is text
    return screen


def pane(screen):
    return screen.query_one("#why")


def shown(screen) -> list[str]:
    return static_text(pane(screen)).splitlines()


def chosen_in_strip(screen) -> list[str]:
    strip = screen.query_one("#probe-strip")
    content = strip.content if hasattr(strip, "content") else strip.renderable  # Textual < 6: renderable
    return [content.plain[s.start : s.end] for s in content.spans if "reverse" in str(s.style)]


def check_table(lines: list[str], attribution) -> None:
    """The pane's rows against an Attribution: per read (side by side) its total, its sources, the rest."""
    reads = list(attribution.reads.values())
    assert [r.view for r in reads] == ["gate", "up"]
    body = lines[1:]
    assert len(body) == TOP + 2  # the total, the sources, the rest
    columns = [[c.split() for c in line.split("│")] for line in body]
    assert all(len(row) == len(reads) for row in columns)
    for k, read in enumerate(reads):
        cells = [row[k] for row in columns]
        assert cells[0][:2] == [read.view, f"{read.total:+.3f}"]
        for part, got in zip(read.sources, cells[1:-1]):
            name = {"embed": "embed", "attn": f"L{part.layer}:H{part.head}", "bias": f"L{part.layer} bias"}.get(
                part.kind, f"L{part.layer}:N{part.neuron}"
            )
            assert " ".join(got).startswith(f"{name} {part.value:+.3f}")
        assert cells[-1][:2] == ["rest", f"{read.rest:+.3f}"]


async def test_y_chooses_where_it_fires_most_and_enter_explains_it(app_factory, hooked, attributions):
    acts, tokens = hooked
    most = max(range(len(acts)), key=lambda i: abs(acts[i]))
    app = app_factory()
    async with app.run_test(size=SIZE) as pilot:
        screen = await probed(pilot)
        assert not pane(screen).display and "y: why it fired" in static_text(screen.query_one("#probe-strip"))
        await pilot.press("y")
        await pilot.pause()
        why = pane(screen)
        assert why.display and app.focused is why and why.index == most
        assert shown(screen)[0].startswith(f"{REF} at {most} {tokens[most]} {acts[most]:+.2f}")
        assert chosen_in_strip(screen) == [tokens[most]]

        await pilot.press("enter")
        await wait_for(pilot, lambda: most in why.results, timeout=60)
        await pilot.pause()
        lines = shown(screen)
        check_table(lines, attributions[most])
        assert len(lines) <= 8 and why.region.bottom <= SIZE[1] - 2  # over the filter bar and keys
        assert why.region.height == len(lines)  # nothing cut off at 80x24

        step = 1 if most < len(acts) - 1 else -1
        await pilot.press("l" if step == 1 else "h")
        await pilot.pause()
        other = most + step
        assert why.index == other and chosen_in_strip(screen) == [tokens[other]]
        assert shown(screen)[0].startswith(f"{REF} at {other} {tokens[other]} {acts[other]:+.2f}")
        assert "enter:" in shown(screen)[1]  # not yet explained: no stale table
        await pilot.press("enter")
        await wait_for(pilot, lambda: other in why.results, timeout=60)
        await pilot.pause()
        assert why.results[other].index == other
        check_table(shown(screen), attributions[other])

        await pilot.press("h" if step == 1 else "l")  # back: its answer is kept
        await pilot.pause()
        assert why.index == most
        check_table(shown(screen), attributions[most])
        for _ in range(len(acts) + 2):  # the ends hold
            await pilot.press("h")
        assert why.index == 0
        await pilot.press("right")
        assert why.index == 1


async def test_escape_cancels_a_running_explanation_then_leaves(app_factory, hooked):
    app = app_factory()
    async with app.run_test(size=SIZE) as pilot:
        screen = await probed(pilot)
        release, started = threading.Event(), threading.Event()
        real = screen.runner.attribute

        def slow(*args, **kwargs):
            started.set()
            release.wait(30)
            return real(*args, **kwargs)

        screen.runner.attribute = slow
        await pilot.press("y", "enter")
        why = pane(screen)
        await wait_for(pilot, started.is_set)
        activity = screen.query_one("#activity")
        assert "explaining" in shown(screen)[1] and f"explaining why {REF} fired" in static_text(activity)
        await pilot.press("escape")
        await pilot.pause()
        assert shown(screen)[1].startswith("cancelled") and not activity.display
        assert why.display and app.focused is why  # the first escape only cancels
        release.set()
        await wait_for(pilot, lambda: not [w for w in app.workers if w.group == "why" and not w.is_finished])
        await pilot.pause(0.2)
        assert why.results == {} and shown(screen)[1].startswith("cancelled")  # its answer is dropped

        await pilot.press("escape")
        await pilot.pause()
        assert not why.display and app.focused is screen.neuron_tree and not screen.has_class("-why-open")
        assert chosen_in_strip(screen) == [] and "y: why it fired" in static_text(screen.query_one("#probe-strip"))


@pytest.mark.parametrize(
    "error, line",
    [
        (UsageError("this model cannot be attributed\nsecond line"), "why it fired failed: this model cannot be"),
        (RuntimeError("boom\ntraceback"), "why it fired failed: unexpected RuntimeError: boom (a bug in neuroscope"),
    ],
)
async def test_a_refusal_is_one_line_in_the_pane(app_factory, error, line):
    app = app_factory()
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: app.main_screen is not None and app.main_screen.current is not None)
        screen = app.main_screen
        await pilot.press("y")  # no probe yet: a warning, nothing opens
        await pilot.pause()
        assert not pane(screen).display
        assert any(n.message.startswith("probe some text first") for n in app._notifications)
        screen = await probed(pilot)

        def refuse(*args, **kwargs):
            raise error

        screen.runner.attribute = refuse
        await pilot.press("y", "enter")
        await wait_for(pilot, lambda: len(shown(screen)) > 1 and "failed" in shown(screen)[1])
        lines = shown(screen)
        assert len(lines) == 2 and lines[1].startswith(line) and "\n" not in lines[1]
        assert not re.search("second line|traceback", static_text(pane(screen)))
        assert app.is_running and not screen.query_one("#activity").display
        screen.runner.attribute = type(screen.runner).attribute.__get__(screen.runner)
        await pilot.press("enter")  # once the cause is gone, enter explains it
        await wait_for(pilot, lambda: pane(screen).index in pane(screen).results, timeout=60)


def test_the_table_names_every_kind_of_source_and_one_read_fills_the_width():
    """Without the app: each kind of source in its notation, and a GPT-2/NeoX result (up only) one column."""
    from neuroscope.core.circuits.attribution import Attribution, Part, Read
    from neuroscope.tui.widgets.why_fired import table

    parts = [
        Part("neuron", 12, None, 345, 2.5, "dog", activation=1.0, weight=2.5),
        Part("attn", 5, 3, None, -1.25),
        Part("embed", None, None, None, 0.5, " dog"),
        Part("bias", 4, None, None, 0.125, "read bias"),
    ]
    one = Attribution(12, 7, 2, " dog", 3.0, {"up": Read("up", 2.0, 1.0, parts, 0.125)})
    lines = table(one, 40).plain.splitlines()
    assert [line.split()[:2] for line in lines] == [
        ["up", "+2.000"],
        ["L12:N345", "+2.500"],
        ["L5:H3", "-1.250"],
        ["embed", "+0.500"],
        ["L4", "bias"],
        ["rest", "+0.125"],
    ]
    assert all(len(line) == 40 and "│" not in line for line in lines)
    assert lines[1].endswith("dog".ljust(40 - len("L12:N345 +2.500 ")))
    two = Attribution(12, 7, 2, " dog", 3.0, {"gate": Read("gate", 1.0, 1.0, parts[:1], 0.0), **one.reads})
    lines = table(two, 41).plain.splitlines()
    assert len(lines) == 6 and all(line.count("│") == 1 for line in lines)  # the shorter read padded
    assert lines[0].split("│")[0].split()[:2] == ["gate", "+1.000"] and lines[3].split("│")[0].strip() == ""
