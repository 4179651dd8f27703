"""The weight graph's faithfulness against a count made here: on a tiny saved Llama with a planted edge (L0:N3's
down column written along L2:N5's up row through the gain), with real examples over a corpus and the real graph
in its SQLite cache, every score is recomputed from hooks written here and float64 virtual weights (the
sources by |activation × w|, the top-k edges by |w|), and the planted target scores 1 against a chance of
k / (earlier neurons)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import neuroscope
from neuroscope.cache.examples import Examples
from neuroscope.cache.store import Store
from neuroscope.choices import EDGE_TOP
from neuroscope.circuits import ensure_graph
from neuroscope.core.circuits.faithful import KINDS, measure, sample_targets

from ..models import firing_corpus
from .test_circuits import NEURONS, SOURCE, TARGET, build_circuit_model, reference

CONTROL = 9  # the planted target's control neuron (another of layer 2)


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    root = tmp_path_factory.mktemp("faithful")
    folder = build_circuit_model("llama", root / "llama")
    corpus = firing_corpus(root / "corpus.txt", tokens=3000, seed=3, share=0.08)
    model = neuroscope.open(str(folder), cache_dir=root / "cache", device="cpu", dtype="float32", progress=False)
    model.examples(str(corpus), tokens=2048, per_neuron=8, window=64, batch=4)
    ensure_graph(model, announce=False)
    store = Store(model.path, readonly=True)
    yield folder, model.loaded(), store
    store.close()


def weights_into(folder, layer: int) -> np.ndarray:
    """float64 w [layer * neurons, neurons] from every earlier neuron (global id) into each ``up`` read of
    ``layer``, and the same for ``gate``: {view: w}."""
    return {
        view: np.concatenate([reference(folder, "llama", s, layer, view) for s in range(layer)])
        for view in ("gate", "up")
    }


def hooked_acts(lm, ids: list[int], layer: int) -> np.ndarray:
    """[layer * neurons] every earlier neuron's activation at the last token, by hooks on the down projections."""
    seen = {}
    blocks = lm.model.model.layers
    handles = [
        blocks[s].mlp.down_proj.register_forward_pre_hook(
            lambda _m, a, s=s: seen.__setitem__(s, a[0][0, -1].double().numpy())
        )
        for s in range(layer)
    ]
    with torch.no_grad():
        lm.model(input_ids=torch.tensor([ids]), use_cache=False)
    for h in handles:
        h.remove()
    return np.concatenate([seen[s] for s in range(layer)])


def top_set(w: np.ndarray, k: int) -> set[int]:
    return set(np.argsort(-np.abs(w), kind="stable")[:k].tolist())


def test_the_planted_target_scores_one_against_chance(planted):
    folder, lm, store = planted
    w = weights_into(folder, TARGET[0])
    assert int(np.abs(w["up"][:, TARGET[1]]).argmax()) == SOURCE[0] * NEURONS + SOURCE[1]  # the planted edge
    result = measure(lm, store, [(*TARGET, CONTROL)], tokens=4, m=1)
    assert result.k == EDGE_TOP
    up = result.by_via()["up"]
    assert up.scores == 4
    assert up.faithful == 1.0
    assert up.chance == pytest.approx(EDGE_TOP / (NEURONS * TARGET[0]))  # 32 / 128
    control = top_set(w["up"][:, CONTROL], EDGE_TOP)  # the control: the same source against L2:N9's edges
    assert up.control == (1.0 if SOURCE[0] * NEURONS + SOURCE[1] in control else 0.0)
    for s in result.scores:  # the token the attribution ran is the one the examples recorded
        assert s.activation == pytest.approx(s.recorded, rel=1e-4)
        assert sum(s.mass.values()) == pytest.approx(1.0)
        assert set(s.mass) == set(KINDS) and 0 < s.mass["neuron"] <= 1


def test_one_edge_holds_at_most_one_of_two_sources(planted):
    """k = 1: the planted edge alone; m = 2: it and the runner-up, which no single edge can also hold."""
    folder, lm, store = planted
    up = measure(lm, store, [(*TARGET, CONTROL)], tokens=4, m=2, k=1).by_via()["up"]
    assert up.faithful == 0.5
    assert up.chance == pytest.approx(1 / (NEURONS * TARGET[0]))


def test_every_score_equals_a_count_made_here(planted):
    """Sources by |activation × w| (the norm's scale is common to every source at a token), hits against the
    float64 top-k of the target and of its control, the edges' share of the neurons' |attribution|."""
    folder, lm, store = planted
    k, m = 8, 5
    targets = sample_targets(3, NEURONS, 6, seed=1, min_layer=1)
    assert {t[0] for t in targets} == {1, 2} and all(t[1] != t[2] for t in targets)
    result = measure(lm, store, targets, tokens=3, m=m, k=k)
    assert len(result.scores) == 6 * 3 * 2
    ex = Examples(store)
    window = int(ex.run_spec["window"])
    windows = ex.windows()
    for s in result.scores:
        w = weights_into(folder, s.layer)[s.via]
        row, t = divmod(s.position, window)
        values = hooked_acts(lm, windows[row][: t + 1].tolist(), s.layer) * w[:, s.neuron]
        sources = np.argsort(-np.abs(values), kind="stable")[:m]
        own, other = top_set(w[:, s.neuron], k), top_set(w[:, s.control], k)
        assert s.sources == m
        assert s.hits == sum(int(i) in own for i in sources), s
        assert s.control_hits == sum(int(i) in other for i in sources), s
        assert s.chance == pytest.approx(k / (NEURONS * s.layer))
        assert s.edge_mass == pytest.approx(np.abs(values[list(own)]).sum() / np.abs(values).sum(), rel=1e-4)
        assert s.control_edge_mass == pytest.approx(np.abs(values[list(other)]).sum() / np.abs(values).sum(), rel=1e-4)
    summary = result.as_dict()["all"]
    assert summary["faithful"] == sum(s.hits for s in result.scores) / (m * len(result.scores))
