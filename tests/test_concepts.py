"""Concepts: the normal form and grouping against expectations written here, planted "dog" neurons found
with their signs, the one-time label upgrade, top against a count made here, export read back record for
record, fluency against a forward pass made here, and bad input."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

import neuroscope
from neuroscope.cache.labels import concept_key, label_unit, vocabulary_keys

from . import reference
from .fuzzing import run, snapshot
from .models import CONCEPT_NEURONS, vocab

KEYS = {
    "dog": "dog",
    " Dog": "dog",
    "\u0120dogs": "dog",
    "\u2581DOGS": "dog",
    "dogs,": "dog",
    "dog's": "dog",
    "puppies": "puppy",
    "boxes": "box",
    "walked": "walk",
    "walking": "walk",
    "running": "run",
    "bus": "bus",
    "this": "this",
    "was": "was",
    "need": "need",
    "string": "string",
    "t12": "t12",
    ",": "",
    " ": "",
    "Cats": "cat",
    "classes": "class",
    "hotdog": "hotdog",
}


@pytest.mark.parametrize("text, key", sorted(KEYS.items()))
def test_concept_key(text, key):
    assert concept_key(text) == key


def test_grouping_on_hand_built_top_k():
    texts = ["dog", " Dog", " dogs", "cat", " cats", ",", "the", "Cat", "dog's", "t1"]
    keys, token_keys, _freq = vocabulary_keys(texts)
    ids = np.array(
        [
            [0, 3, 1, 2, 4],  # dog .4 + Dog .1 + dogs .1 = .6 vs cat .3 + cats .1 = .4
            [3, 0, 4, 7, 6],  # cat .35 + cats .15 + Cat .1 = .6 vs dog .3, the .1
            [5, 6, 9, 0, 3],  # "," carries most, but no letters: the .3 wins over t1 .2
            [2, 8, 3, 4, 7],
        ]
    )  # dogs .25 + dog's .25 = .5 vs cat + cats + Cat = .5 exactly: a tie
    probs = np.array(
        [
            [0.4, 0.3, 0.1, 0.1, 0.1],
            [0.35, 0.3, 0.15, 0.1, 0.1],
            [0.4, 0.3, 0.2, 0.05, 0.05],
            [0.25, 0.25, 0.125, 0.125, 0.25],
        ],
        np.float32,
    )
    label, mass, count, entropy = label_unit(ids, probs, token_keys)
    names = [keys[i] for i in label]
    assert names[:3] == ["dog", "cat", "the"]
    assert names[3] == ("dog" if keys.index("dog") < keys.index("cat") else "cat")  # ties: the lower key id
    assert mass[:3] == pytest.approx([0.6, 0.6, 0.3], abs=1e-6) and mass[3] == pytest.approx(0.5, abs=1e-6)
    assert count.tolist()[:3] == [3, 3, 1]
    for row, h in zip(probs, entropy):
        q = row / row.sum()
        assert h == pytest.approx(-(q * np.log(q)).sum(), rel=1e-5)


def test_planted_neurons_are_labelled_and_found_with_their_sign(concept_model):
    folder, model = concept_model
    for layer, neuron, view, direction in CONCEPT_NEURONS:
        label = model.neuron((layer, neuron)).label(view, direction)
        ids, probs = reference.decode(folder, "llama", layer, view, direction, 10)
        dogs = [p for i, p in zip(ids[neuron], probs[neuron]) if vocab()[i] in ("dog", "Dog", "\u0120dog")]
        assert label.label == "dog" and label.count == 3 and label.mass == pytest.approx(sum(dogs), rel=1e-4)
    found = {(c.layer, c.neuron, c.view, c.direction): c for c in model.concept("Dogs")}
    for key, sign in CONCEPT_NEURONS.items():
        assert found[key].sign == sign
    masses = [c.label_mass for c in found.values()]
    assert masses == sorted(masses, reverse=True)
    with model.store() as store:  # every neuron found really has the label dog
        from neuroscope.cache.labels import Labels

        labels = Labels(store)
        for layer, neuron, view, direction in found:
            key = labels.unit(layer, view, direction)[0][neuron]
            assert labels.keys([key])[int(key)] == "dog"


def test_search_matches_labels_and_every_hit_carries_its_label(concept_model):
    folder, model = concept_model
    hits = model.search("DOGS", match="label", limit=None)
    assert {(h.layer, h.neuron, h.view, h.direction) for h in hits} >= set(CONCEPT_NEURONS)
    assert all(h.label == "dog" for h in hits)
    masses = [h.label_mass for h in hits]
    assert masses == sorted(masses, reverse=True)
    for h in hits:  # the hit's token is the neuron's top-1 token
        top = model.neuron((h.layer, h.neuron)).top(h.view, h.direction)[0]
        assert (h.token_id, h.prob) == (top.token_id, pytest.approx(top.prob))
    word = model.search("dog", match="exact", max_rank=3, limit=None)
    for h in word:
        label = model.neuron((h.layer, h.neuron)).label(h.view, h.direction)
        assert (h.label, h.label_mass) == (label.label, pytest.approx(label.mass))
    out = run(["search", str(folder), "dogs", "--match", "label", "--json", "--cache-dir", str(model.path.parent)])
    assert [(h["layer"], h["neuron"], h["view"], h["direction"]) for h in json.loads(out.stdout)["hits"]] == [
        (h.layer, h.neuron, h.view, h.direction) for h in hits
    ]
    assert run(
        ["search", str(folder), "qqqq", "--match", "label", "--cache-dir", str(model.path.parent)]
    ).stdout.startswith("no neuron")


def test_labels_are_added_to_an_old_cache_once_and_announced(concept_model, tmp_path):
    import shutil

    from neuroscope.cache.labels import Labels
    from neuroscope.cache.store import Store

    folder, model = concept_model
    cache = tmp_path / "old"
    cache.mkdir()
    shutil.copy(model.path, cache / model.path.name)
    with Store(cache / model.path.name) as store:  # as a cache made before labels were kept
        for table in ("labels", "concept_index", "token_concepts", "concept_keys"):
            store.conn.execute(f"DELETE FROM {table}")
        store.conn.commit()
    notes = []
    old = neuroscope.open(
        str(folder), cache_dir=cache, device="cpu", dtype="float32", progress=False, note=notes.append
    )
    assert [c.as_dict() for c in old.concept("dog")] == [c.as_dict() for c in model.concept("dog")]
    assert sum("labelling" in n and "one-time upgrade" in n for n in notes) == 1
    old.concept("dog")
    assert sum("labelling" in n for n in notes) == 1  # once
    with Store(old.path, readonly=True) as a, Store(model.path, readonly=True) as b:
        for layer in range(2):
            for view in ("up", "gate", "down"):
                for d in ("pos", "neg"):
                    for x, y in zip(Labels(a).unit(layer, view, d), Labels(b).unit(layer, view, d)):
                        np.testing.assert_array_equal(x, y)


def test_top_against_a_count_made_here(concept_model):
    from neuroscope.cache.labels import Labels

    _, model = concept_model
    rows = model.top("mass", limit=5)
    best = []
    with model.store() as store:
        labels = Labels(store)
        for layer in range(2):
            for view in ("up", "gate", "down"):
                for d in ("pos", "neg"):
                    masses = labels.unit(layer, view, d)[1]
                    best += [(float(m), layer, i, view, d) for i, m in enumerate(masses)]
    best.sort(key=lambda r: (-r[0], r[1], r[2], r[3], r[4]))
    assert [(r.layer, r.neuron, r.view, r.direction) for r in rows] == [b[1:] for b in best[:5]]
    assert [r.label_mass for r in rows] == pytest.approx([b[0] for b in best[:5]])
    by_prob = model.top("prob", limit=4)
    with model.store() as store:
        firsts = [
            (
                store.tops(r.layer, r.view, r.direction)[1][r.neuron, 0],
                store.token_texts([int(store.tops(r.layer, r.view, r.direction)[0][r.neuron, 0])]),
            )
            for r in rows + by_prob
        ]
        every = sorted(
            float(store.tops(layer, view, d)[1][i, 0])
            for layer in range(2)
            for view in ("up", "gate", "down")
            for d in ("pos", "neg")
            for i in range(store.neurons)
        )
    assert [r.prob for r in rows + by_prob] == pytest.approx([float(p) for p, _ in firsts])
    assert [r.token for r in rows + by_prob] == [next(iter(t.values())) for _, t in firsts]
    assert [r.prob for r in by_prob] == pytest.approx(every[::-1][:4])
    with model.store() as store:

        def overlaps(write_direction):  # every neuron's Σ min(p, q) over shared tokens, here
            out = []
            for layer in range(2):
                up, down = store.tops(layer, "up", "pos"), store.tops(layer, "down", write_direction)
                for i in range(store.neurons):
                    out.append(
                        (
                            sum(
                                min(float(p), float(q))
                                for a, p in zip(up[0][i], up[1][i])
                                for b, q in zip(down[0][i], down[1][i])
                                if a == b
                            ),
                            layer,
                            i,
                        )
                    )
            return sorted(out, key=lambda r: (-r[0], r[1], r[2]))

        entropies = sorted(
            (
                (float(e), layer, i, view, d)
                for layer in range(2)
                for view in ("up", "gate", "down")
                for d in ("pos", "neg")
                for i, e in enumerate(Labels(store).unit(layer, view, d)[3])
            ),
            key=lambda r: (r[0], r[1], r[2], r[3], r[4]),
        )
        words = store.conn.execute("SELECT word, specificity FROM concept_words").fetchone()
        spec = np.frombuffer(words[1], np.float32)
        scores = []
        for layer in range(2):
            for view in ("up", "gate", "down"):
                for d in ("pos", "neg"):
                    key, mass, count, _ = Labels(store).unit(layer, view, d)
                    scores += [
                        (float(m) * float(spec[k]), int(c), layer, i, view, d)
                        for i, (k, m, c) in enumerate(zip(key, mass, count))
                    ]
        scores.sort(key=lambda r: (-(r[0] + min(r[1], 10) * 1e-4), r[2], r[3], r[4], r[5]))
        relations = (("copy", overlaps("pos")), ("suppression", overlaps("neg")))
    assert [w[1:] for w in relations[0][1]] != [w[1:] for w in relations[1][1]]  # neg is not the pos decode here
    for by, want in relations:  # the whole ranking, highest first, not just its head
        got = model.top(by, limit=len(want))
        assert len(got) == len(want) == 128 and want[0][0] > want[-1][0], by
        assert [(r.layer, r.neuron) for r in got] == [w[1:] for w in want], by
        assert [getattr(r, by) for r in got] == pytest.approx([w[0] for w in want], rel=1e-5, abs=1e-9), by
    got = model.top("entropy", limit=len(entropies))  # every unit's every neuron, lowest entropy first
    assert [(r.layer, r.neuron, r.view, r.direction, r.entropy) for r in got] == [e[1:] + e[:1] for e in entropies]
    got = model.top(limit=6)  # the default: content score
    assert [(r.layer, r.neuron, r.view, r.direction) for r in got] == [s[2:] for s in scores[:6]]
    assert [r.score for r in got] == pytest.approx([s[0] for s in scores[:6]])
    assert all(r.label_mass >= 0.5 for r in model.top(min_mass=0.5, limit=50))


def test_concept_clamps_carry_sign_and_strength_and_scale_with_the_peaks(concept_model, tmp_path):
    """Without examples each planted neuron is clamped at sign x strength; with examples, at sign x
    strength x its top example's |activation| for that sign; and the run equals one with those --set clamps."""
    folder, model = concept_model
    values = {
        (c.ref.layer, c.ref.neuron): c.value
        for c in model.experiment(None, prompt="dog", concept="dogs", strength=2.5).clamps.clamps
    }
    for (layer, neuron, _view, _direction), sign in CONCEPT_NEURONS.items():
        assert values[layer, neuron] == sign * 2.5
    labelled = {(c.layer, c.neuron) for c in model.concept("dog") if c.label_mass >= 0.5}
    assert set(values) == labelled  # one clamp per neuron, every one of them

    copy = tmp_path / "with-examples"
    import shutil

    shutil.copytree(model.path.parent, copy)
    with_examples = neuroscope.open(str(folder), cache_dir=copy, device="cpu", dtype="float32", progress=False)
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(" ".join(vocab()[3:120]) * 4)
    with_examples.examples(str(corpus), tokens=512, window=64, per_neuron=2)
    exp = with_examples.experiment(None, prompt="dog", concept="dog", strength=2.5)
    for clamp in exp.clamps.clamps:
        sign = 1 if clamp.value > 0 else -1
        [top] = with_examples.neuron(clamp.ref).examples("pos" if sign > 0 else "neg", limit=1)
        assert clamp.value == pytest.approx(sign * 2.5 * abs(top.activation), rel=1e-6)
    by_concept = with_examples.clamp(None, prompt="dog", concept="dog", strength=2.5, max_new_tokens=6)
    by_hand = with_examples.clamp([f"{c.ref}={c.value!r}" for c in exp.clamps.clamps], prompt="dog", max_new_tokens=6)
    assert by_concept.clamped.text == by_hand.clamped.text and by_concept.clamped.text != by_concept.baseline.text


def test_cosine_against_the_weights_in_float64(concept_model):
    from safetensors.numpy import load_file

    folder, model = concept_model
    w = load_file(str(folder / "model.safetensors"))
    want = []
    for layer in range(2):
        down = w[f"model.layers.{layer}.mlp.down_proj.weight"].astype(np.float64).T  # [neurons, hidden]
        for view in ("up", "gate"):
            read = w[f"model.layers.{layer}.mlp.{view}_proj.weight"].astype(np.float64)
            cos = (read * down).sum(1) / np.linalg.norm(read, axis=1) / np.linalg.norm(down, axis=1)
            want += [(c, layer, i, view) for i, c in enumerate(cos)]
    want.sort(key=lambda r: (-r[0], r[1], r[2], r[3]))
    rows = model.top("cosine", limit=6)
    assert [(r.layer, r.neuron, r.view) for r in rows] == [x[1:] for x in want[:6]]
    assert [r.cosine for r in rows] == pytest.approx([x[0] for x in want[:6]], abs=1e-5)
    gate = model.top("cosine", view="gate", layer=1, limit=3)
    assert [r.cosine for r in gate] == pytest.approx(
        sorted((x[0] for x in want if x[1] == 1 and x[3] == "gate"), reverse=True)[:3], abs=1e-5
    )


def test_fluency_against_a_forward_pass_made_here(concept_model):
    from neuroscope.core.generate import Tokenized, build_prompt, fluency

    _, model = concept_model
    lm = model.loaded()
    prompt = build_prompt(Tokenized(model.source, lm.tokenizer, lm.model), "dog t5 t9", chat=False)
    replies = [[7, 12, 1], [40, 41, 42, 43]]
    got = fluency(lm, prompt, replies)
    total = 0.0
    for reply in replies:
        ids = torch.tensor([prompt.ids[0].tolist() + reply])
        with torch.no_grad():
            logp = torch.log_softmax(lm.model(input_ids=ids).logits[0].double(), -1)
        total += sum(float(logp[prompt.length - 1 + j, t]) for j, t in enumerate(reply))
    assert got == pytest.approx(total / 7, rel=1e-5) and got < 0 and not math.isnan(got)


@pytest.mark.parametrize(
    "args, message, code",
    [
        (["concept", "{m}", "t100"], "no neuron of concept-llama is labelled 't100'", 0),  # a token, no label
        (["concept", "{m}", " ,"], "the concept is empty", 2),
        (["concept", "{m}", "Qwxyzzies"], "no token of concept-llama's vocabulary has the concept 'qwxyzzy'", 2),
        (["clamp", "{m}", "--concept", "qwxyzzy", "--prompt", "dog"], "has the concept 'qwxyzzy'", 2),
        (["clamp", "{m}", "--concept", "t100", "--prompt", "dog"], "no neuron of concept-llama is labelled 't100'", 2),
        (["clamp", "{m}", "--concept", "dog", "--min-mass", "2", "--prompt", "dog"], "--min-mass must be", 2),
        (["export", "{m}", "--format", "xml"], "unknown format 'xml'", 2),
        (["export", "{m}", "--out", "{tmp}/no/such/folder/x.jsonl"], "no folder", 2),
        (["export", "{m}", "--out", "{tmp}"], "is a folder", 2),
        (["top", "{m}", "--layer", "7"], "layer 7 is out of range", 2),
        (["top", "{m}", "--by", "cosine", "--view", "down"], "choose --view up or gate", 2),
    ],
)
def test_bad_input(concept_model, tmp_path, args, message, code):
    folder, model = concept_model
    before = snapshot(model.path.parent)
    outcome = run([a.format(m=folder, tmp=tmp_path) for a in args] + ["--cache-dir", str(model.path.parent)])
    assert outcome.code == code and not outcome.problems(), outcome.stderr
    assert message in (outcome.stderr if code else outcome.stdout)
    assert snapshot(model.path.parent) == before and list(tmp_path.iterdir()) == []  # no partial file


@pytest.mark.parametrize(
    "args", [["concept", "{m}", "qwxyzzy"], ["clamp", "{m}", "--concept", "qwxyzzy", "--prompt", "dog"]]
)
def test_a_word_no_token_has_fails_before_any_decode(concept_model, tmp_path, args):
    folder, _ = concept_model
    empty = tmp_path / "cache"
    empty.mkdir()
    outcome = run([a.format(m=folder) for a in args] + ["--cache-dir", str(empty)])
    assert outcome.code == 2 and not outcome.problems(), outcome.stderr
    assert "has the concept 'qwxyzzy'" in outcome.stderr and "decoding" not in outcome.stderr
    assert list(empty.iterdir()) == []  # nothing decoded, nothing written


def test_labels_in_chunks_equal_labels_at_once(monkeypatch):
    """label_unit bounds its k x k temporaries by working in row chunks (--top-k 255 would need GBs at
    once); chunked, it gives exactly what one pass gives."""
    from neuroscope.cache import labels

    rng = np.random.default_rng(1)
    token_keys = rng.integers(0, 30, 400).astype(np.int32)
    ids = np.stack([rng.permutation(400)[:12] for _ in range(1000)]).astype(np.int32)
    probs = np.sort(rng.random((1000, 12)).astype(np.float32), 1)[:, ::-1].copy()
    whole = labels.label_unit(ids, probs, token_keys)
    monkeypatch.setattr(labels, "CHUNK_CELLS", 12 * 12 * 7)  # chunks of 7 rows, the last one short
    chunked = labels.label_unit(ids, probs, token_keys)
    for a, b in zip(whole, chunked, strict=True):
        assert a.dtype == b.dtype and np.array_equal(a, b)
