"""Virtual weights and the circuit graph against float64 products written here, on tiny saved models of each
family (safetensors and GGUF read through the decode's own loaders), with a planted edge."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch
from safetensors.numpy import load_file

from neuroscope.cache.catalog import cache_path
from neuroscope.cache.edges import Edges
from neuroscope.cache.store import Store
from neuroscope.core.circuits.build import ensure_graph
from neuroscope.core.circuits.weights import CircuitWeights, token_weights, virtual_weights
from neuroscope.core.loading.models import load_for_decode
from neuroscope.core.loading.sources import resolve
from neuroscope.errors import Cancelled

from ..gguf_models import build_family, write_gguf
from ..models import randomize, save_tokenizer

SOURCE, TARGET = (0, 3), (2, 5)  # the planted edge: L0:N3's down column feeds L2:N5's up row
LAYERS, HIDDEN, NEURONS = 3, 32, 64


def build_circuit_model(kind: str, path, seed: int = 0, plant: bool = True):
    """A 3-layer model of ``kind`` with random norm gains and, with ``plant``, L0:N3's down column written as
    5 x L2:N5's up row through L2's MLP-input gain (centred for LayerNorm families), that up row scaled by 3."""
    from transformers import AutoConfig, AutoModelForCausalLM

    shape = (
        {"n_embd": HIDDEN, "n_layer": LAYERS, "n_head": 4, "n_inner": NEURONS, "n_positions": 64}
        if kind == "gpt2"
        else {
            "hidden_size": HIDDEN,
            "intermediate_size": NEURONS,
            "num_hidden_layers": LAYERS,
            "num_attention_heads": 4,
            "max_position_embeddings": 64,
            **({} if kind == "gpt_neox" else {"num_key_value_heads": 2, "head_dim": 8}),
        }
    )
    config = AutoConfig.for_model(
        kind, vocab_size=384, tie_word_embeddings=False, eos_token_id=1, bos_token_id=1, **shape
    )
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config)
    randomize(model, seed)
    if plant:
        with torch.no_grad():
            rows, down, gain, centre = parts(model, kind)
            (s, i), (t, j) = SOURCE, TARGET
            rows(t)[j] *= 3
            g = gain(t)
            d = 5 * g * rows(t)[j]
            down(s)[:, i] = d - d.mean() if centre else d
    path.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(path, safe_serialization=True)
    save_tokenizer(path)
    return path


def parts(model, kind):
    """(up rows of layer, down columns [h, n] of layer, MLP-input gain of layer, centred) as modules hold them."""
    if kind == "gpt2":
        h = model.transformer.h
        return (
            (lambda t: h[t].mlp.c_fc.weight.T),
            (lambda s: h[s].mlp.c_proj.weight.T),
            (lambda t: h[t].ln_2.weight),
            True,
        )
    if kind == "gpt_neox":
        h = model.gpt_neox.layers
        return (
            (lambda t: h[t].mlp.dense_h_to_4h.weight),
            (lambda s: h[s].mlp.dense_4h_to_h.weight),
            (lambda t: h[t].post_attention_layernorm.weight),
            True,
        )
    h = model.model.layers
    norm = {"gemma2": "pre_feedforward_layernorm"}.get(kind, "post_attention_layernorm")
    shift = 1.0 if kind.startswith("gemma") else 0.0
    return (
        (lambda t: h[t].mlp.up_proj.weight),
        (lambda s: h[s].mlp.down_proj.weight),
        (lambda t: getattr(h[t], norm).weight + shift),
        False,
    )


def reference(folder, kind: str, s: int, t: int, view: str = "up") -> np.ndarray:
    """float64 w[i, j] = Σ_d d̃_i[d] g_t[d] r_j[d], from the saved tensors by their checkpoint names."""
    w = {k: v.astype(np.float64) for k, v in load_file(str(folder / "model.safetensors")).items()}
    if kind == "gpt2":
        down, rows, g = (
            w[f"transformer.h.{s}.mlp.c_proj.weight"],
            w[f"transformer.h.{t}.mlp.c_fc.weight"].T,
            w[f"transformer.h.{t}.ln_2.weight"],
        )
    elif kind == "gpt_neox":
        down = w[f"gpt_neox.layers.{s}.mlp.dense_4h_to_h.weight"].T
        rows = w[f"gpt_neox.layers.{t}.mlp.dense_h_to_4h.weight"]
        g = w[f"gpt_neox.layers.{t}.post_attention_layernorm.weight"]
    else:
        down, rows = w[f"model.layers.{s}.mlp.down_proj.weight"].T, w[f"model.layers.{t}.mlp.{view}_proj.weight"]
        norm = "pre_feedforward_layernorm" if kind == "gemma2" else "post_attention_layernorm"
        g = w[f"model.layers.{t}.{norm}.weight"] + (1.0 if kind.startswith("gemma") else 0.0)
    if kind in ("gpt2", "gpt_neox"):
        down = down - down.mean(axis=1, keepdims=True)
    out = np.zeros((down.shape[0], rows.shape[0]))
    for d in range(down.shape[1]):
        out += np.outer(down[:, d], g[d] * rows[:, d])
    return out


def weights_of(folder, dtype=torch.float64) -> CircuitWeights:
    return CircuitWeights(load_for_decode(resolve(str(folder))).adapter, "cpu", dtype)


KINDS = ("llama", "gemma", "gemma2", "gpt2", "gpt_neox")


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("circuit-models")
    return {kind: build_circuit_model(kind, root / kind) for kind in KINDS}


@pytest.mark.parametrize("kind", KINDS)
def test_virtual_weights_equal_the_float64_product(folders, kind):
    cw = weights_of(folders[kind])
    assert cw.reads == (("up",) if kind in ("gpt2", "gpt_neox") else ("gate", "up"))
    for s, t in ((0, 1), (0, 2), (1, 2)):
        for view in cw.reads:
            np.testing.assert_allclose(
                virtual_weights(cw, s, t, view).numpy(),
                reference(folders[kind], kind, s, t, view),
                rtol=1e-9,
                atol=1e-9,
            )


@pytest.mark.parametrize("kind", KINDS)
def test_the_planted_edge_ranks_first_upstream_and_downstream(folders, kind):
    w = np.abs(virtual_weights(weights_of(folders[kind]), SOURCE[0], TARGET[0], "up").numpy())
    (_, i), (_, j) = SOURCE, TARGET
    assert int(np.argmax(w[:, j])) == i and int(np.argmax(w[i])) == j


@pytest.mark.parametrize("kind", ("llama", "gemma2"))
def test_gguf_virtual_weights_equal_the_safetensors_ones(tmp_path, kind):
    folder = build_family(kind, tmp_path / kind)
    gguf = write_gguf(folder, tmp_path / f"{kind}.gguf")
    a, b = weights_of(folder), weights_of(gguf)
    for view in ("gate", "up"):
        np.testing.assert_allclose(
            virtual_weights(b, 0, 1, view).numpy(), reference(folder, kind, 0, 1, view), rtol=1e-5, atol=1e-5
        )
        np.testing.assert_allclose(
            virtual_weights(a, 0, 1, view).numpy(), virtual_weights(b, 0, 1, view).numpy(), rtol=1e-5, atol=1e-5
        )
    ids, scores = token_weights(b, 1, "up", 7, 5)
    emb = load_file(str(folder / "model.safetensors"))["model.embed_tokens.weight"].astype(np.float64)
    gain = load_file(str(folder / "model.safetensors"))[
        f"model.layers.1.{'pre_feedforward_layernorm' if kind == 'gemma2' else 'post_attention_layernorm'}.weight"
    ]
    row = load_file(str(folder / "model.safetensors"))["model.layers.1.mlp.up_proj.weight"][7]
    want = emb @ ((gain + (1.0 if kind == "gemma2" else 0.0)) * row)
    assert list(ids.numpy()) == list(np.argsort(-np.abs(want))[:5])
    np.testing.assert_allclose(scores.numpy(), want[ids.numpy()], rtol=1e-4)


# -- the graph --------------------------------------------------------------------------------------------------


def expected_graph(folder, kind: str, k: int):
    """Every neuron's top-k fan-in per read and fan-out over all reads and later layers, from the float64 product."""
    reads = ("up",) if kind in ("gpt2", "gpt_neox") else ("gate", "up")
    fan_in, fan_out = {}, {(s, via): [] for s in range(LAYERS) for via in reads}
    for t in range(1, LAYERS):
        for vi, via in enumerate(reads):
            blocks = [reference(folder, kind, s, t, via) for s in range(t)]
            full = np.concatenate(blocks)  # [t * n, n]: rows are global source ids
            order = np.argsort(-np.abs(full), axis=0)[:k].T
            fan_in[(t, via)] = (order, np.take_along_axis(full.T, order, 1))
            for s, b in enumerate(blocks):
                fan_out[(s, via)].append((b, (t * NEURONS + np.arange(NEURONS)) * len(reads) + vi))
    outs = {}
    for key, parts_ in fan_out.items():
        if not parts_:
            continue
        w = np.concatenate([b for b, _ in parts_], axis=1)
        codes = np.concatenate([c for _, c in parts_])
        order = np.argsort(-np.abs(w), axis=1)[:, :k]
        outs[key] = (codes[order], np.take_along_axis(w, order, 1))
    return fan_in, outs, reads


def stored(path):
    with Store(path, readonly=True) as store:
        e = Edges(store)
        spec = e.spec
        fan_in = {(t, via): e.layer(t, "in", via) for t in range(1, LAYERS) for via in spec["reads"]}
        outs = {(s, via): e.layer(s, "out", via) for s in range(LAYERS) for via in spec["reads"]}
        return spec, fan_in, outs


def check_graph(path, folder, kind, k):
    fan_in, outs, reads = expected_graph(folder, kind, k)
    spec, got_in, got_out = stored(path)
    assert spec["reads"] == list(reads) and spec["top"] == k
    for key, (ids, w) in fan_in.items():
        assert np.array_equal(got_in[key].ids, ids), key
        np.testing.assert_allclose(got_in[key].weights, w, rtol=1e-5, atol=1e-5)
    for key, (codes, w) in outs.items():
        p = got_out[key]
        assert np.array_equal(p.ids.astype(np.int64) * len(reads) + p.vias, codes), key
        np.testing.assert_allclose(p.weights, w, rtol=1e-5, atol=1e-5)
    assert all(got_out[(LAYERS - 1, via)].ids.shape[1] == 0 for via in reads)  # the last layer feeds no neuron


@pytest.mark.parametrize("kind", ("llama", "gpt2"))
def test_the_stored_graph_is_the_float64_top_k_chunked_or_not(folders, tmp_path, kind):
    source = resolve(str(folders[kind]))
    for chunk, where in ((NEURONS * NEURONS, "whole"), (7 * NEURONS, "chunked")):
        result = ensure_graph(
            source, cache_dir=tmp_path / where, device="cpu", top=8, chunk_elements=chunk, dtype=torch.float64
        )
        assert result.units_done == LAYERS - 1
        check_graph(result.path, folders[kind], kind, 8)
    again = ensure_graph(source, cache_dir=tmp_path / "whole", device="cpu", top=8)
    assert again.units_done == 0  # cached: a lookup


@pytest.mark.parametrize("kind", ("llama", "gpt2"))
@pytest.mark.parametrize("k", (2, 4))
def test_a_small_top_takes_the_prefiltered_path_to_the_same_graph(folders, tmp_path, kind, k):
    """With k small against a layer's 64 neurons a top's first block is sieved by the k-th best of its group
    maxima (core.circuits.sieve, through graph.Top.fold): still exactly the float64 top-k."""
    source = resolve(str(folders[kind]))
    for chunk, where in ((NEURONS * NEURONS, "whole"), (7 * NEURONS, "chunked")):
        result = ensure_graph(
            source, cache_dir=tmp_path / where, device="cpu", top=k, chunk_elements=chunk, dtype=torch.float64
        )
        check_graph(result.path, folders[kind], kind, k)


def stop_after_one_unit(source, cache_dir, chunk_elements=4 * NEURONS) -> None:
    """Build the graph (top 8, float64) and stop it inside its second unit: the first is committed."""
    cancel = threading.Event()

    def progress(done, total):
        if done == 1:  # the first unit is committed: stop the pass inside the next one
            cancel.set()

    with pytest.raises(Cancelled):
        ensure_graph(
            source,
            cache_dir=cache_dir,
            device="cpu",
            top=8,
            dtype=torch.float64,
            progress=progress,
            cancel=cancel,
            chunk_elements=chunk_elements,
        )


def test_a_pass_stopped_after_one_unit_resumes_to_the_same_graph(folders, tmp_path):
    source = resolve(str(folders["llama"]))
    stop_after_one_unit(source, tmp_path)
    with Store(cache_path(source.name, source.source, source.fingerprint, tmp_path), readonly=True) as store:
        assert Edges(store).spec["done"] == [LAYERS - 1]
    resumed = ensure_graph(source, cache_dir=tmp_path, device="cpu", top=8, dtype=torch.float64)
    assert resumed.units_done == LAYERS - 2
    check_graph(resumed.path, folders["llama"], "llama", 8)


def test_the_stored_tokens_are_the_float64_embedding_top_k(folders, tmp_path):
    folder = folders["gpt2"]
    result = ensure_graph(
        resolve(str(folder)), cache_dir=tmp_path, device="cpu", top=6, chunk_elements=50 * NEURONS, dtype=torch.float64
    )
    w = {k: v.astype(np.float64) for k, v in load_file(str(folder / "model.safetensors")).items()}
    embed = w["transformer.wte.weight"]
    embed = embed - embed.mean(axis=1, keepdims=True)  # ln_1 / ln_2 are LayerNorms: centred
    with Store(result.path, readonly=True) as store:
        for layer in range(LAYERS):
            got = Edges(store).layer(layer, "tokens", "up")
            gain = w[f"transformer.h.{layer}.ln_2.weight"][:, None]
            scores = embed @ (gain * w[f"transformer.h.{layer}.mlp.c_fc.weight"])
            order = np.argsort(-np.abs(scores), axis=0)[:6].T
            assert np.array_equal(got.ids, order), layer
            np.testing.assert_allclose(got.weights, np.take_along_axis(scores.T, order, 1), rtol=1e-6, atol=1e-9)
