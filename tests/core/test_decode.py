"""The engine against an independent float64 reference, on tiny models loaded through the real path."""

import numpy as np
import pytest

from neuroscope.cache.store import Store
from neuroscope.core.loading.sources import resolve
from neuroscope.core.options import DecodeRecipe
from neuroscope.core.pipeline import ensure_decoded

from .. import reference
from ..models import PLANTED, PLANTED_TOKEN, vocab

VIEWS = {"llama": ["up", "gate", "down"], "gpt2": ["up", "down"], "neox": ["up", "down"]}


def _decode(model_dirs, cache_dir, kind, dtype="float32", top_k=10):
    result = ensure_decoded(
        resolve(str(model_dirs[kind])), DecodeRecipe(top_k=top_k, dtype=dtype, device="cpu"), cache_dir=cache_dir
    )
    return result, Store(result.path, readonly=True)


@pytest.mark.parametrize("kind", ["llama", "gpt2", "neox"])
def test_float32_decode_matches_float64_reference(model_dirs, cache_dir, kind):
    result, store = _decode(model_dirs, cache_dir, kind)
    assert result.views == VIEWS[kind]
    assert store.status()["complete"]
    for layer in range(2):
        for view in VIEWS[kind]:
            for direction in ("pos", "neg"):
                ids, probs = store.tops(layer, view, direction)
                ref_ids, ref_probs = reference.decode(model_dirs[kind], kind, layer, view, direction, 10)
                assert ids.shape == ref_ids.shape
                np.testing.assert_array_equal(ids, ref_ids, err_msg=f"{kind} L{layer} {view} {direction}")
                np.testing.assert_allclose(probs, ref_probs, rtol=1e-3, atol=0)


def test_bf16_decode_close_to_reference(model_dirs, cache_dir):
    _, store = _decode(model_dirs, cache_dir, "llama", dtype="bfloat16")
    agree = total = 0
    for layer in range(2):
        for view in VIEWS["llama"]:
            for direction in ("pos", "neg"):
                ids, probs = store.tops(layer, view, direction)
                ref_ids, ref_probs = reference.decode(model_dirs["llama"], "llama", layer, view, direction, 10)
                agree += int((ids == ref_ids).all(axis=1).sum())
                total += ids.shape[0]
                # candidates are rescored exactly: a token's prob only carries the bf16 error of the denominator
                same = ids == ref_ids
                np.testing.assert_allclose(probs[same], ref_probs[same], rtol=2e-2)
    assert agree / total >= 0.97, f"only {agree}/{total} neurons have the float32 top-10"


def test_planted_neuron_decodes_top1(model_dirs, cache_dir):
    _, store = _decode(model_dirs, cache_dir, "llama")
    layer, neuron = PLANTED
    top = store.top(layer, neuron, "up", "pos")
    assert top[0].token == PLANTED_TOKEN and top[0].token_id == vocab().index(PLANTED_TOKEN)
    assert top[0].prob > 0.5
    hits = store.search("dog", views=["up"], directions=["pos"])
    assert (layer, neuron) in [(h.layer, h.neuron) for h in hits]


def test_top_k_option_and_narrow_views(model_dirs, cache_dir):
    result, store = _decode(model_dirs, cache_dir, "neox", top_k=25)
    ids, probs = store.tops(0, "down", "neg")
    assert ids.shape == (64, 25)
    assert np.all(np.diff(probs, axis=1) <= 0), "top-k must be sorted by probability"
    ref_ids, _ = reference.decode(model_dirs["neox"], "neox", 0, "down", "neg", 25)
    np.testing.assert_array_equal(ids, ref_ids)


def test_missing_view_is_refused(model_dirs, cache_dir):
    with pytest.raises(ValueError, match="has no 'gate' view"):
        ensure_decoded(
            resolve(str(model_dirs["gpt2"])), DecodeRecipe(views=["gate"], device="cpu"), cache_dir=cache_dir
        )
