"""Streaming a safetensors checkpoint decodes exactly like loading the whole model."""

import json

import numpy as np
import pytest
import torch

from neuroscope.cache.store import Store
from neuroscope.core.loading.models import load, load_for_decode
from neuroscope.core.loading.sources import resolve
from neuroscope.core.options import DecodeRecipe
from neuroscope.core.pipeline import ensure_decoded
from neuroscope.errors import DamagedModel

from ..models import build


@pytest.mark.parametrize("kind", ["llama", "gpt2", "neox"])
def test_streamed_model_reads_the_same_weights(model_dirs, kind):
    source = resolve(str(model_dirs[kind]))
    streamed, full = load_for_decode(source), load(source)
    assert streamed.adapter.fetch is not None, "safetensors checkpoints must take the streaming path"
    assert next(streamed.adapter.layers[0].parameters()).is_meta, "the MLP must not be materialised"
    for layer in range(2):
        for view in full.adapter.views:
            assert torch.equal(streamed.adapter.vectors(layer, view), full.adapter.vectors(layer, view))
    assert torch.equal(streamed.adapter.head.weight, full.adapter.head.weight)
    for a, b in zip(streamed.adapter.final_norm.parameters(), full.adapter.final_norm.parameters()):
        assert torch.equal(a, b)
    assert streamed.token_texts() == full.token_texts()


@pytest.mark.parametrize("kind", ["llama", "gpt2"])
def test_streaming_and_loaded_decodes_are_identical(model_dirs, tmp_path, kind):
    source = resolve(str(model_dirs[kind]))
    full = load(source)
    a = ensure_decoded(source, DecodeRecipe(device="cpu", dtype="float32"), cache_dir=tmp_path / "a")
    b = ensure_decoded(source, DecodeRecipe(device="cpu", dtype="float32"), cache_dir=tmp_path / "b", loaded=full)
    with Store(a.path, readonly=True) as sa, Store(b.path, readonly=True) as sb:
        for layer in range(2):
            for view in full.adapter.views:
                for d in ("pos", "neg"):
                    ia, pa = sa.tops(layer, view, d)
                    ib, pb = sb.tops(layer, view, d)
                    np.testing.assert_array_equal(ia, ib)
                    np.testing.assert_array_equal(pa, pb)


def test_sharded_checkpoint_streams(tmp_path):
    from transformers import AutoModelForCausalLM

    single = build("llama", tmp_path / "single", seed=3)
    model = AutoModelForCausalLM.from_pretrained(single)
    sharded = tmp_path / "sharded"
    model.save_pretrained(sharded, max_shard_size="20KB")
    for f in single.glob("tokenizer*"):
        (sharded / f.name).write_bytes(f.read_bytes())
    (sharded / "special_tokens_map.json").write_text((single / "special_tokens_map.json").read_text()) if (
        single / "special_tokens_map.json"
    ).exists() else None
    index = json.loads((sharded / "model.safetensors.index.json").read_text())
    assert len(set(index["weight_map"].values())) > 2
    streamed = load_for_decode(resolve(str(sharded)))
    full = load(resolve(str(single)))
    for layer in range(2):
        assert torch.equal(streamed.adapter.vectors(layer, "down"), full.adapter.vectors(layer, "down"))
    assert torch.equal(streamed.adapter.head.weight, full.adapter.head.weight)


def test_large_tensors_are_read_in_parallel_pieces(model_dirs, monkeypatch):
    """Reads split into many pieces (some ending mid-element) still give every tensor byte for byte."""
    from safetensors.torch import load_file

    from neuroscope.core.loading import streaming

    monkeypatch.setattr(streaming, "PIECE", 1001)
    folder = model_dirs["llama"]
    ckpt = streaming.Checkpoint(folder)
    want = load_file(str(folder / "model.safetensors"))
    assert max(t.numel() * t.element_size() for t in want.values()) > 10 * 1001
    for name, tensor in want.items():
        assert torch.equal(ckpt.get(name), tensor), name


def test_truncated_checkpoint_read_in_pieces_is_a_clear_error(model_dirs, tmp_path, monkeypatch):
    import shutil

    from neuroscope.core.loading import streaming

    monkeypatch.setattr(streaming, "PIECE", 1001)
    folder = tmp_path / "cut"
    shutil.copytree(model_dirs["llama"], folder)
    weights = folder / "model.safetensors"
    ckpt = streaming.Checkpoint(folder)
    last = max(ckpt.entries, key=lambda k: ckpt.entries[k].offset + ckpt.entries[k].nbytes)
    size = weights.stat().st_size
    with open(weights, "r+b") as handle:
        handle.truncate(size - 5000)  # the last tensor loses its tail: several pieces come back short
    with pytest.raises(DamagedModel, match="truncated while reading"):
        ckpt.get(last)
    with pytest.raises(DamagedModel, match="truncated"):  # opened afresh, the headers already tell
        streaming.Checkpoint(folder)
