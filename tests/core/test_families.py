"""Architectures added by one registry entry (core/arch.py) and a fixture (tests/models.py): OLMo, whose
final norm is a LayerNorm without parameters, and Qwen2, whose attention has biases. Each decodes like its
float64 reference, streamed and whole, and clamps through the registry's down projection."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import neuroscope
from neuroscope.core.arch import by_model_type

from .. import reference
from ..models import build

KINDS = ["olmo", "qwen2"]


@pytest.fixture(scope="module")
def families(tmp_path_factory):
    root = tmp_path_factory.mktemp("families")
    return {kind: build(kind, root / kind, seed=4) for kind in KINDS}


@pytest.mark.parametrize("kind", KINDS)
def test_decodes_like_its_float64_reference(families, tmp_path, kind):
    model = neuroscope.open(str(families[kind]), cache_dir=tmp_path, device="cpu", dtype="float32", progress=False)
    assert model.info.family.name == kind and model.views == ("up", "gate", "down")
    model.decode()
    with model.store() as store:
        assert store.meta["arch"] == kind and store.status()["complete"]
        for layer in range(2):
            for view in ("up", "gate", "down"):
                for direction in ("pos", "neg"):
                    ids, probs = store.tops(layer, view, direction)
                    want_ids, want_probs = reference.decode(families[kind], kind, layer, view, direction, 10)
                    np.testing.assert_array_equal(ids, want_ids, err_msg=f"{kind} L{layer} {view} {direction}")
                    np.testing.assert_allclose(probs, want_probs, rtol=1e-3)


@pytest.mark.parametrize("kind", KINDS)
def test_streamed_and_whole_loads_agree_and_clamping_hooks_the_down_projection(families, kind):
    from neuroscope.core.clamp import Clamp, ClampSet, clamped, hooks_installed
    from neuroscope.core.loading.models import load, load_for_decode
    from neuroscope.core.loading.sources import resolve

    source = resolve(str(families[kind]))
    streamed, whole = load_for_decode(source), load(source)
    assert streamed.adapter.fetch is not None  # read from the checkpoint, matrix by matrix
    for view in ("up", "gate", "down"):
        assert torch.equal(streamed.adapter.vectors(1, view), whole.adapter.vectors(1, view))
    assert by_model_type(kind).down == whole.adapter.down_name == "down_proj"
    ids = torch.tensor([[2, 14, 18, 40]])  # token ids (transformers gives Qwen2 its own tokenizer class)
    with torch.inference_mode():
        plain = whole.model(input_ids=ids).logits
        with clamped(whole.adapter, ClampSet([Clamp.parse("L1:N3=25")])):
            assert hooks_installed(whole.adapter) == 1
            pushed = whole.model(input_ids=ids).logits
    assert hooks_installed(whole.adapter) == 0
    assert not torch.allclose(plain, pushed)
    down = whole.model.model.layers[1].mlp.down_proj.weight[:, 3].double()
    assert float(down.norm()) > 0
