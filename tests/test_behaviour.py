"""What neurons do on text: trace against hooks written here, examples of a planted neuron, an interrupted
examples run, agreement against a count made here, and bad input."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch

import neuroscope
from neuroscope.errors import Cancelled

from .fuzzing import run, snapshot
from .models import FIRING, build_firing_llama, firing_corpus, vocab

MODULES = {
    "llama": ("model.layers", "down_proj", "gate_proj", "up_proj"),
    "gpt2": ("transformer.h", "c_proj", None, None),
    "neox": ("gpt_neox.layers", "dense_4h_to_h", None, None),
}


def hooked_forward(lm, kind: str, ids: torch.Tensor) -> dict:
    """Each layer's down-projection input (and, for Llama, gate and up outputs), by hooks written here."""
    blocks, down, gate, up = MODULES[kind]
    layers = lm.model.get_submodule(blocks)
    seen, handles = {}, []
    for i, block in enumerate(layers):
        mlp = block.mlp
        handles.append(
            getattr(mlp, down).register_forward_pre_hook(
                lambda _m, a, i=i: seen.__setitem__(("act", i), a[0][0].float().clone())
            )
        )
        for name, attr in (("gate", gate), ("up", up)):
            if attr:
                handles.append(
                    getattr(mlp, attr).register_forward_hook(
                        lambda _m, _a, out, i=i, name=name: seen.__setitem__((name, i), out[0].float().clone())
                    )
                )
    try:
        with torch.inference_mode():
            lm.model(input_ids=ids)
    finally:
        for h in handles:
            h.remove()
    return seen


@pytest.mark.parametrize("kind", ["llama", "gpt2", "neox"])
def test_trace_equals_hooks_written_here(model_dirs, tmp_path, kind):
    model = neuroscope.open(str(model_dirs[kind]), cache_dir=tmp_path, device="cpu", dtype="float32", progress=False)
    prompt = "dog t5 t9 cat t12 Dog"
    refs = ["L0:N3", "L1:N7", "L1:N60"]
    result = model.trace(prompt, top=4, neurons=refs)
    lm = model.loaded()
    ids = lm.tokenizer(prompt, return_tensors="pt")["input_ids"]
    seen = hooked_forward(lm, kind, ids)
    for trace_, ref in zip(result.neurons, refs):
        layer, neuron = (int(x) for x in ref[1:].split(":N"))
        np.testing.assert_allclose(trace_.activations, seen[("act", layer)][:, neuron].numpy(), rtol=1e-4, atol=1e-6)
    everything = torch.stack([seen[("act", i)] for i in range(2)])  # [L, T, n]
    assert [t.token for t in result.tokens] == [vocab()[i] for i in ids[0].tolist()]
    for t, token in enumerate(result.tokens):
        best = everything[:, t, :].abs().flatten().argmax().item()
        top = token.top[0]
        assert (top.layer, top.neuron) == divmod(best, everything.shape[2])
        assert top.activation == pytest.approx(float(everything[top.layer, t, top.neuron]), rel=1e-4)
        assert [abs(f.activation) for f in token.top] == sorted((abs(f.activation) for f in token.top), reverse=True)
        if kind == "llama":
            assert top.gate == pytest.approx(float(seen[("gate", top.layer)][t, top.neuron]), rel=1e-4, abs=1e-6)
            assert top.up == pytest.approx(float(seen[("up", top.layer)][t, top.neuron]), rel=1e-4, abs=1e-6)
            assert top.case == ("+" if top.gate > 0 else "-") + ("+" if top.up > 0 else "-")
        else:
            assert top.gate is None and top.case is None
        with model.store("down") as store:  # the label: down, by the sign
            want = store.top(top.layer, top.neuron, "down", "pos" if top.activation > 0 else "neg")[0].token
        assert top.label == want
    assert set(result.as_dict()) == {"model", "prompt", "tokens", "neurons"}


@pytest.fixture(scope="module")
def firing(tmp_path_factory):
    root = tmp_path_factory.mktemp("firing")
    folder = build_firing_llama(root / "firing-llama")
    corpus = firing_corpus(root / "corpus.txt", tokens=6000, seed=3, share=0.08)
    return folder, corpus, root


def test_a_planted_neuron_fires_where_it_should(firing):
    folder, corpus, root = firing
    model = neuroscope.open(str(folder), cache_dir=root / "cache", device="cpu", dtype="float32", progress=False)
    result = model.examples(str(corpus), tokens=4096, per_neuron=20, window=64, batch=4)
    assert result.complete and result.tokens == 4096 and result.processed == 4096
    neuron = model.neuron(FIRING)
    pos, neg = neuron.examples("pos"), neuron.examples("neg")
    assert len(pos) == len(neg) == 20
    assert all(e.tokens[e.index] == "dog" and e.case == "++" and e.activation > 0 for e in pos)
    assert all(e.tokens[e.index] == "cat" and e.case == "+-" and e.activation < 0 for e in neg)
    assert [e.activation for e in pos] == sorted((e.activation for e in pos), reverse=True)
    counts = neuron.cases()
    assert sum(counts["cases"].values()) == 4096 and 0 < counts["positive"] < 1
    again = model.examples(str(corpus), tokens=4096, per_neuron=20, window=64, batch=4)
    assert again.processed == 0  # cached


def test_an_interrupted_run_resumes_to_the_same_examples(firing, tmp_path):
    from neuroscope.cache.examples import Examples

    folder, corpus, _ = firing
    cache = tmp_path / "cache"
    interrupted = neuroscope.open(str(folder), cache_dir=cache, device="cpu", dtype="float32", progress=False)
    cancel, batches = threading.Event(), []

    def progress(done, total):
        batches.append(done)
        if len(batches) == 4:
            cancel.set()

    interrupted.progress = lambda _label: (progress, lambda: None)
    with pytest.raises(Cancelled):  # committed after every batch, cancelled mid-run
        interrupted.examples(str(corpus), tokens=4096, window=64, batch=4, cancel=cancel, commit_s=0.0)
    with interrupted._cached_store() as store:
        assert 0 < Examples(store).spec["windows_done"] < 64 and not Examples(store).complete
    notes = []
    interrupted.note = notes.append
    resumed = interrupted.examples(str(corpus), tokens=4096, window=64, batch=4)
    assert resumed.complete and 0 < resumed.processed < 4096 and any("resuming examples" in n for n in notes)
    fresh = neuroscope.open(str(folder), cache_dir=tmp_path / "fresh", device="cpu", dtype="float32", progress=False)
    fresh.examples(str(corpus), tokens=4096, window=64, batch=4)
    with interrupted._cached_store() as a, fresh._cached_store() as b:
        sa, sb = Examples(a).states(a.neurons), Examples(b).states(b.neurons)
        assert sorted(sa) == sorted(sb) == [0, 1]
        for layer in sa:
            for key in ("vals", "pos", "case", "cases", "positive"):
                np.testing.assert_array_equal(sa[layer][key], sb[layer][key], err_msg=f"L{layer} {key}")


def test_agreement_against_a_count_made_here(firing):
    """agree pairs each neuron's examples with its own decode; chance with the decode of another neuron of the
    layer: a permutation per layer, drawn in layer order from default_rng(seed=0), as core/agreement.py says."""
    from neuroscope.cache.examples import Examples

    folder, corpus, root = firing
    model = neuroscope.open(str(folder), cache_dir=root / "cache", device="cpu", dtype="float32", progress=False)
    model.examples(str(corpus), tokens=4096, per_neuron=20, window=64, batch=4)
    result = model.agreement()
    with model.store() as store:
        ex = Examples(store)
        rng = np.random.default_rng(0)
        perms = [rng.permutation(store.neurons) for _ in range(2)]
        assert all((p != np.arange(store.neurons)).sum() > store.neurons // 2 for p in perms)

        def hit(layer, neuron, decoder, view):  # any example of neuron in the decode of decoder?
            found = False
            for sign in ("pos", "neg"):
                for e in ex.neuron(layer, neuron, sign, context=4):
                    if view == "down":
                        token, direction = ex.next_token(e.position), sign
                    else:
                        token = ex.token_at(e.position)
                        part = e.case[0] if view == "gate" else e.case[1]
                        direction = "pos" if part == "+" else "neg"
                    ids = store.top(layer, decoder, view, direction)
                    found = found or (token is not None and token in {t.token_id for t in ids})
            return found

        chances = 0
        for view in ("up", "gate", "down"):
            for layer in range(2):
                agree = sum(hit(layer, i, i, view) for i in range(store.neurons))
                chance = sum(hit(layer, i, int(perms[layer][i]), view) for i in range(store.neurons))
                chances += chance
                got = result.views[view].per_layer[layer]
                assert (got.agree, got.chance) == pytest.approx((agree / store.neurons, chance / store.neurons))
        assert result.chance == pytest.approx(chances / (3 * 2 * store.neurons)) and result.chance < result.agree
    assert set(result.as_dict()) == {"model", "top_k", "per_neuron", "agree", "chance", "views"}


@pytest.mark.parametrize(
    "args, message",
    [
        (["trace", "{m}", "--prompt", " "], "the prompt is empty"),
        (["trace", "{m}", "--prompt", "dog", "--neuron", "L9:N1"], "layer 9 is out of range"),
        (["trace", "{m}", "--prompt", "dog", "--neuron", "L1-N1"], "malformed neuron"),
        (["examples", "{m}", "--corpus", "{root}/missing.txt"], "no such corpus"),
        (["examples", "{m}", "--corpus", "{root}/empty.txt"], "is empty"),
        (["examples", "{m}", "--corpus", "{root}/binary.txt"], "is binary"),
        (["examples", "{m}", "--corpus", "{root}/empty-folder"], "holds no .txt or .md files"),
        (["examples", "{m}", "--per-neuron", "0"], "expected a number of at least 1"),
        (["examples", "{m}", "--corpus", "{root}/short.txt"], "fewer than one window"),
        (["show", "{m}", "L9:N0", "--examples"], "layer 9 is out of range"),
        (["show", "{m}", "L0:N0", "--examples"], "has no examples yet"),
    ],
)
def test_bad_input_is_one_line_exit_2_and_writes_nothing(firing, tmp_path, args, message):
    folder, _, _ = firing
    (tmp_path / "empty.txt").write_text("")
    (tmp_path / "binary.txt").write_bytes(b"\x00\x01\x02" * 100)
    (tmp_path / "short.txt").write_text("dog cat")
    (tmp_path / "empty-folder").mkdir()
    cache = tmp_path / "cache"
    if args[0] == "show" and "has no examples" in message:
        neuroscope.open(str(folder), cache_dir=cache, dtype="float32", device="cpu", progress=False).decode()
    before = snapshot(cache)
    outcome = run([a.format(m=folder, root=tmp_path) for a in args] + ["--cache-dir", str(cache)])
    assert outcome.code == 2 and not outcome.problems() and message in outcome.stderr, outcome.stderr
    assert "loading" not in outcome.stderr  # caught before the model loads
    assert snapshot(cache) == before


def test_the_window_fits_a_short_context(model_dirs, tmp_path):
    """The tiny GPT-2 has 64 learned positions: by default the rows are 64 tokens long (not 128, past its
    position table); a --window above 64 is one line, exit 2, nothing written."""
    import json

    folder, cache = model_dirs["gpt2"], tmp_path / "cache"
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(" ".join(vocab()[3:200]) * 3)
    refused = run(
        [
            "examples",
            str(folder),
            "--corpus",
            str(corpus),
            "--tokens",
            "256",
            "--window",
            "65",
            "--cache-dir",
            str(cache),
        ]
    )
    assert refused.code == 2 and "--window 65 exceeds" in refused.stderr and not refused.problems()
    assert not cache.exists() or snapshot(cache) == {}
    done = run(
        [
            "examples",
            str(folder),
            "--corpus",
            str(corpus),
            "--tokens",
            "256",
            "--json",
            "--cache-dir",
            str(cache),
            "--device",
            "cpu",
        ]
    )
    assert done.code == 0 and not done.problems(), done.stderr
    from neuroscope.cache.examples import Examples
    from neuroscope.cache.store import Store

    with Store(neuroscope.open(str(folder), cache_dir=cache).path, readonly=True) as store:
        assert int(Examples(store).spec["window"]) == 64
    assert json.loads(done.stdout)["complete"] is True
