"""Base vs perturbed copy: the comparison against statistics computed here from float64 reference decodes."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

from neuroscope.cache.catalog import cache_path
from neuroscope.cache.store import Store
from neuroscope.core.compare import (
    Incompatible,
    SafetensorsWeights,
    check_compatible,
    compare_stores,
    neuron_cosines,
    precheck,
)
from neuroscope.core.loading.sources import resolve
from neuroscope.core.options import DecodeRecipe
from neuroscope.core.pipeline import ensure_decoded
from neuroscope.core.refs import NeuronRef

from .. import reference
from ..models import build

K = 10
_BUILT: dict[str, dict] = {}


def perturbed_copy(src: Path, dst: Path, layers: tuple[int, ...], scale: float = 0.5, seed: int = 1) -> Path:
    """A copy of a saved model with Gaussian noise (``scale`` x each tensor's typical magnitude) added to
    the MLP weights of ``layers``."""
    shutil.copytree(src, dst, dirs_exist_ok=True)
    weights = load_file(str(src / "model.safetensors"))
    rng = np.random.default_rng(seed)
    marks = tuple(f"layers.{layer}.mlp." for layer in layers) + tuple(f"h.{layer}.mlp." for layer in layers)
    for name, value in weights.items():
        if any(m in name for m in marks):
            sigma = float(np.median(np.abs(value))) / 0.6745  # robust: a planted row does not inflate it
            noise = scale * sigma * rng.standard_normal(value.shape)
            weights[name] = (value + noise).astype(value.dtype)
    save_file(weights, str(dst / "model.safetensors"), metadata={"format": "pt"})
    return dst


def other_tokenizer(src: Path, dst: Path) -> Path:
    """The same weights with one token renamed: the vocabularies differ in one id's text."""
    shutil.copytree(src, dst, dirs_exist_ok=True)
    tok = json.loads((dst / "tokenizer.json").read_text())
    vocab = tok["model"]["vocab"]
    vocab["wolf"] = vocab.pop("dog")
    (dst / "tokenizer.json").write_text(json.dumps(tok))
    return dst


def build_pair(root: Path) -> dict:
    """Once per session: a tiny Llama, its copy with noise in layer 1's MLP, both decoded in float32."""
    key = str(root)
    if key not in _BUILT:
        base = build("llama", root / "base", seed=3)
        tuned = perturbed_copy(base, root / "tuned", layers=(1,))
        cache = root / "cache"
        for folder in (base, tuned):
            ensure_decoded(resolve(str(folder)), DecodeRecipe(dtype="float32", device="cpu"), cache_dir=cache)
        _BUILT[key] = {"base": base, "tuned": tuned, "cache": cache, "root": root}
    return _BUILT[key]


@pytest.fixture(scope="session")
def pair(tmp_path_factory):
    return build_pair(tmp_path_factory.getbasetemp() / "compare-pair")


def _stores(pair, a="base", b="tuned"):
    sources = [resolve(str(pair[x])) for x in (a, b)]
    paths = [cache_path(s.name, s.source, s.fingerprint, pair["cache"]) for s in sources]
    return sources, [Store(p, readonly=True) for p in paths]


def _reference(pair, view: str, direction: str):
    """Same-top-1 fractions, Jaccards and cosines from float64 decodes of both models' safetensors."""
    per_layer, jaccards, cosines = [], {}, {}
    for layer in range(2):
        a_ids, _ = reference.decode(pair["base"], "llama", layer, view, direction, K)
        b_ids, _ = reference.decode(pair["tuned"], "llama", layer, view, direction, K)
        per_layer.append(float(np.mean(a_ids[:, 0] == b_ids[:, 0])))
        va = reference.vectors_and_head(pair["base"], "llama", layer, view)[0]
        vb = reference.vectors_and_head(pair["tuned"], "llama", layer, view)[0]
        for n in range(a_ids.shape[0]):
            sa, sb = set(a_ids[n].tolist()), set(b_ids[n].tolist())
            jaccards[(layer, n)] = len(sa & sb) / len(sa | sb)
            cosines[(layer, n)] = float(va[n] @ vb[n] / np.linalg.norm(va[n]) / np.linalg.norm(vb[n]))
    return per_layer, jaccards, cosines


@pytest.mark.parametrize("view, direction", [("up", "pos"), ("gate", "neg"), ("down", "pos")])
def test_fractions_match_float64_reference(pair, view, direction):
    sources, (base, tuned) = _stores(pair)
    with base, tuned:
        result = compare_stores(base, tuned, view, direction, top=20, base_source=sources[0], other_source=sources[1])
    ref_layers, ref_jac, ref_cos = _reference(pair, view, direction)
    assert [p.same_top1 for p in result.per_layer] == pytest.approx(ref_layers, abs=1e-12)
    assert [p.neurons for p in result.per_layer] == [64, 64]
    assert result.same_top1 == pytest.approx(sum(ref_layers) / 2, abs=1e-12)
    assert result.mean_topk_jaccard == pytest.approx(np.mean(list(ref_jac.values())), abs=1e-12)
    assert result.per_layer[0].same_top1 == 1.0  # layer 0 is untouched
    assert result.per_layer[1].same_top1 < 0.9  # layer 1 really changed
    assert not result.same_model
    # most changed: the lowest Jaccards of all, each with the right Jaccard and weight cosine
    listed = result.most_changed
    assert len(listed) == 20
    assert [c.jaccard for c in listed] == pytest.approx(sorted(ref_jac.values())[:20], abs=1e-12)
    for c in listed:
        assert c.layer == 1
        assert c.jaccard == pytest.approx(ref_jac[(c.layer, c.neuron)], abs=1e-12)
        assert c.cosine == pytest.approx(ref_cos[(c.layer, c.neuron)], abs=1e-6)
    for a, b in zip(listed, listed[1:]):
        assert (a.jaccard, -a.prob_change) <= (b.jaccard, -b.prob_change)
    assert set(result.as_dict()) == {
        "base",
        "other",
        "view",
        "direction",
        "same_top1",
        "mean_topk_jaccard",
        "per_layer",
        "most_changed",
    }
    assert set(result.as_dict()["most_changed"][0]) == {
        "layer",
        "neuron",
        "base_top",
        "other_top",
        "jaccard",
        "prob_change",
        "cosine",
    }


def test_same_model_agrees_completely(pair):
    sources, (a, b) = _stores(pair, "base", "base")
    with a, b:
        result = compare_stores(a, b, "up", "pos", base_source=sources[0], other_source=sources[1])
    assert result.same_model and result.same_top1 == 1.0 and result.mean_topk_jaccard == 1.0
    assert all(p.same_top1 == 1.0 for p in result.per_layer) and result.most_changed == []


def test_different_tokenizer_is_refused(pair):
    odd = other_tokenizer(pair["base"], pair["root"] / "othertok")
    sources, (a, b) = _stores(pair, "base", "base")
    b.close()
    precheck(sources[0], resolve(str(odd)))  # same sizes: only the cached vocab tables can tell
    with (
        a,
        Store(
            ensure_decoded(
                resolve(str(odd)), DecodeRecipe(dtype="float32", device="cpu"), cache_dir=pair["cache"]
            ).path,
            readonly=True,
        ) as b,
    ):
        with pytest.raises(
            Incompatible,
            match=r"tokenizer vocabularies differ: 1 of 384 token id has different "
            r'text \(first: id 2 is "dog" in BASE, "wolf" in OTHER\)',
        ):
            check_compatible(a, b)


def test_different_shape_is_refused_before_decoding(pair, model_dirs):
    with pytest.raises(Incompatible, match="MLP shapes differ: base has 2 layers x 64 neurons, gpt2 has 2 x 128"):
        precheck(resolve(str(pair["base"])), resolve(str(model_dirs["gpt2"])))


def test_cosines_of_transposed_and_bf16_tensors(model_dirs, tmp_path):
    """GPT-2 keeps c_fc as [hidden, neurons] (Conv1D); bf16 tensors are widened exactly."""
    import torch
    from safetensors.torch import save_file as save_torch

    gpt2 = model_dirs["gpt2"]
    noisy = perturbed_copy(gpt2, tmp_path / "gpt2-noisy", layers=(0, 1), scale=0.3)
    refs = [NeuronRef(0, 3), NeuronRef(1, 100), NeuronRef(1, 5)]
    got = neuron_cosines(resolve(str(gpt2)), resolve(str(noisy)), "up", refs, 128, 32)
    for ref, value in zip(refs, got):
        a = reference.vectors_and_head(gpt2, "gpt2", ref.layer, "up")[0][ref.neuron]
        b = reference.vectors_and_head(noisy, "gpt2", ref.layer, "up")[0][ref.neuron]
        assert value == pytest.approx(a @ b / np.linalg.norm(a) / np.linalg.norm(b), abs=1e-9)
    folder = tmp_path / "bf16"
    folder.mkdir()
    t = torch.randn(32, 8)  # down_proj is [hidden, neurons]
    save_torch({"model.layers.0.mlp.down_proj.weight": t.bfloat16()}, str(folder / "model.safetensors"))
    got = SafetensorsWeights(folder).vectors(0, "down", [1, 6], 8, 32)
    np.testing.assert_array_equal(got, t.bfloat16().double().numpy().T[[1, 6]])
