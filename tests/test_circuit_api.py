"""`Model.circuit`: the typed result equals the real `neuroscope circuit --json` (the CLI's main, run in-process)
for every way of naming the neuron, its weights the float64 virtual weights, its edges' refs round-trip, its
DataFrame one row per edge, and bad input is a UsageError before anything loads."""

from __future__ import annotations

import json

import pytest

import neuroscope
from neuroscope.circuit_results import Circuit, Edge
from neuroscope.cli import main
from neuroscope.core.refs import NeuronRef
from neuroscope.errors import UsageError

from .core.test_circuits import SOURCE, TARGET, build_circuit_model, reference


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("circuit-api")
    return {kind: build_circuit_model(kind, root / kind) for kind in ("llama", "gpt2")}


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("circuit-api-cache")


def opened(folder, cache_dir) -> neuroscope.Model:
    return neuroscope.open(str(folder), cache_dir=cache_dir, device="cpu", dtype="float32", progress=False)


def cli_circuit(capsys, folder, cache_dir, *args) -> dict:
    code = main(
        ["circuit", str(folder), *map(str, args), "--json", "--cache-dir", str(cache_dir), "--dtype", "float32"]
        + ["--device", "cpu"]
    )
    out, err = capsys.readouterr()
    assert code == 0, err
    return json.loads(out)


@pytest.mark.parametrize(
    "kind, neuron, top, via",
    [
        ("llama", "L2:N5", 5, None),
        ("llama", "L0:N3", 20, "up"),
        ("llama", "L1:N9", 32, "gate"),
        ("gpt2", "L1:N7", 7, None),
    ],
)
def test_the_api_equals_the_cli_json(tiny, cache, capsys, kind, neuron, top, via):
    model = opened(tiny[kind], cache)
    got = model.circuit(neuron, top=top, via=via)
    want = cli_circuit(capsys, tiny[kind], cache, neuron, "--top", top, *(["--via", via] if via else []))
    assert isinstance(got, Circuit) and all(isinstance(e, Edge) for e in got.upstream + got.downstream)
    assert got.as_dict() == want == got.to_dict()
    assert list(got.as_dict()) == list(want)  # the key order too


def test_every_way_of_naming_the_neuron_gives_the_same_circuit(tiny, cache):
    model = opened(tiny["llama"], cache)
    (t, j) = TARGET
    first = model.circuit(f"L{t}:N{j}", top=4)
    for ref in (f"{t}:{j}", (t, j), NeuronRef(t, j), model.neuron(f"L{t}:N{j}")):
        assert model.circuit(ref, top=4) == first
    other = first.upstream[0]
    assert model.circuit(other, top=4).ref == other.ref  # an Edge names its neuron as well


def test_weights_are_the_float64_virtual_weights_and_the_planted_edge_leads(tiny, cache):
    (s, i), (t, j) = SOURCE, TARGET
    model = opened(tiny["llama"], cache)
    up = model.circuit(f"L{t}:N{j}", top=10).upstream
    assert (up[0].layer, up[0].neuron, up[0].via) == (s, i, "up")
    for e in up:
        want = reference(tiny["llama"], "llama", e.layer, t, e.via)[e.neuron, j]
        assert e.weight == pytest.approx(want, rel=1e-4, abs=1e-4)
    down = model.circuit(f"L{s}:N{i}", top=10).downstream
    assert (down[0].layer, down[0].neuron) == (t, j)
    for e in down:
        assert e.weight == pytest.approx(reference(tiny["llama"], "llama", s, e.layer, e.via)[i, e.neuron], abs=1e-4)


def test_edge_refs_round_trip(tiny, cache):
    model = opened(tiny["llama"], cache)
    got = model.circuit("L1:N20", top=32)
    assert got.upstream and got.downstream
    for e in got.upstream + got.downstream:
        assert str(e) == f"L{e.layer}:N{e.neuron}" == str(e.ref)
        assert NeuronRef.parse(str(e)) == e.ref == NeuronRef(e.layer, e.neuron)
        assert model.neuron(e).ref == e.ref
    assert got.ref == NeuronRef(1, 20)


def test_to_pandas_has_one_row_per_edge(tiny, cache):
    pytest.importorskip("pandas")
    model = opened(tiny["llama"], cache)
    got = model.circuit("L1:N20", top=6)
    frame = got.to_pandas()
    assert len(frame) == len(got.upstream) + len(got.downstream) == 2 * 6  # top per list, over both read vectors
    assert list(frame.columns) == ["direction", "layer", "neuron", "via", "weight", "label"]
    assert (frame["direction"] == "in").sum() == len(got.upstream)
    assert frame["weight"].tolist() == [e.weight for e in got.upstream + got.downstream]
    assert len(got.upstream.to_pandas()) == len(got.upstream)  # the lists are Records


def test_to_pandas_without_pandas_names_it(tiny, cache, monkeypatch):
    import sys

    got = opened(tiny["llama"], cache).circuit("L1:N20", top=2)
    monkeypatch.setitem(sys.modules, "pandas", None)  # import pandas now raises ImportError
    with pytest.raises(UsageError, match="needs pandas: pip install pandas"):
        got.to_pandas()


@pytest.mark.parametrize(
    "ref, kwargs, message",
    [
        ("L9:N0", {}, "layer 9 is out of range"),
        ("L1:N64", {}, "neuron 64 is out of range"),
        ("nonsense", {}, "malformed neuron"),
        (3.5, {}, "a neuron is written"),
        ("L1:N0", {"top": 0}, "--top must be"),
        ("L1:N0", {"top": 33}, "--top must be"),
        ("L1:N0", {"top": "5"}, "--top must be"),
        ("L1:N0", {"top": True}, "--top must be"),
        ("L1:N0", {"via": "gate"}, "no 'gate' read vector"),
        ("L1:N0", {"via": "down"}, "no 'down' read vector"),
    ],
)
def test_bad_input_raises_before_anything_loads(tiny, tmp_path, ref, kwargs, message):
    cache_dir = tmp_path / "cache"
    model = opened(tiny["gpt2"], cache_dir)
    with pytest.raises(UsageError, match=message):
        model.circuit(ref, **kwargs)
    assert not cache_dir.exists() and model._lm is None  # nothing was made or loaded
