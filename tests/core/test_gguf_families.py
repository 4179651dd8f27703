"""GGUF files of every family the registry's GGUF entries name (core/arch.py: Llama, Qwen2/3, Gemma/Gemma2),
written as llama.cpp's converter writes them (tests/models.py write_gguf). The decode-only reader
(core/loading/gguf_fast.py) must decode each like a float64 reference computed here from the original
safetensors weights, and like the same weights saved with save_pretrained; the planted neuron decodes to its
token; and the final norm, head and MLP it builds are what transformers' own GGUF loader builds."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from safetensors.numpy import load_file

from neuroscope.core.options import DecodeRecipe

from ..gguf_models import GGUF_KINDS, build_family, write_gguf
from ..models import PLANTED

CPU32 = DecodeRecipe(device="cpu", dtype="float32")
FAMILY = {"llama": "llama", "qwen2": "qwen2", "qwen3": "qwen2", "gemma": "gemma", "gemma2": "gemma"}


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("gguf-families")
    out = {}
    for seed, kind in enumerate(GGUF_KINDS):
        folder = build_family(kind, root / kind, seed=10 + seed)
        out[kind] = (folder, write_gguf(folder, root / f"{kind}.gguf"))
    return out


def reference(folder, layer: int, view: str, direction: str, k: int = 10):
    """Top-k ids and probabilities in float64, from the safetensors weights and the config, by hand: RMSNorm
    with the model's gain (1 + w for Gemma), the head (the embedding when tied), Gemma2's logit cap."""
    w = {name: t.astype(np.float64) for name, t in load_file(str(folder / "model.safetensors")).items()}
    cfg = json.loads((folder / "config.json").read_text())
    mlp = f"model.layers.{layer}.mlp."
    vec = {"up": w[mlp + "up_proj.weight"], "gate": w[mlp + "gate_proj.weight"], "down": w[mlp + "down_proj.weight"].T}
    x = vec[view] * (-1 if direction == "neg" else 1)
    gain = w["model.norm.weight"] + (1.0 if cfg["model_type"].startswith("gemma") else 0.0)
    x = x / np.sqrt((x * x).mean(-1, keepdims=True) + cfg["rms_norm_eps"]) * gain
    logits = x @ w.get("lm_head.weight", w["model.embed_tokens.weight"]).T
    cap = cfg.get("final_logit_softcapping")
    if cap:
        logits = np.tanh(logits / cap) * cap
    p = np.exp(logits - logits.max(-1, keepdims=True))
    p /= p.sum(-1, keepdims=True)
    ids = np.argsort(-p, axis=-1, kind="stable")[:, :k]
    return ids, np.take_along_axis(p, ids, -1)


@pytest.mark.parametrize("kind", GGUF_KINDS)
def test_gguf_decodes_like_its_float64_reference_and_its_safetensors(files, tmp_path, kind):
    from neuroscope.cache.store import Store
    from neuroscope.core.loading.modelinfo import inspect_model
    from neuroscope.core.loading.sources import resolve
    from neuroscope.core.pipeline import ensure_decoded

    folder, gguf = files[kind]
    source = resolve(str(gguf))
    info = inspect_model(source)
    assert (info.family.name, info.arch, info.layers, info.neurons) == (FAMILY[kind], kind, 2, 64)
    a = ensure_decoded(source, CPU32, cache_dir=tmp_path)
    b = ensure_decoded(resolve(str(folder)), CPU32, cache_dir=tmp_path)
    with Store(a.path, readonly=True) as x, Store(b.path, readonly=True) as y:
        assert x.status()["complete"] and y.status()["complete"]
        for layer in range(2):
            for view in ("up", "gate", "down"):
                for d in ("pos", "neg"):
                    where = f"{kind} L{layer} {view} {d}"
                    ids, probs = x.tops(layer, view, d)
                    want_ids, want_probs = reference(folder, layer, view, d)
                    np.testing.assert_array_equal(ids, want_ids, err_msg=where)
                    np.testing.assert_allclose(probs, want_probs, rtol=1e-3, err_msg=where)
                    np.testing.assert_array_equal(ids, y.tops(layer, view, d)[0], err_msg=where)
        top = x.top(*PLANTED, "up", "pos")[0]
        assert top.token == " dog"  # "Ġdog" (gpt2 BPE) or "▁dog" (Gemma's SentencePiece)


@pytest.mark.parametrize("kind", ["llama", "qwen2", "gemma2"])  # transformers reads no gemma (v1) GGUF, and
def test_reads_what_transformers_reads(files, kind):  # no qwen3 head_dim but the default one
    """The final norm, head and MLP matrices the decode-only reader builds equal those of transformers' own
    GGUF loader (which de-quantizes and converts the whole file), and those of the original model."""
    from transformers import AutoModelForCausalLM

    from neuroscope.core.loading.models import load, load_for_decode
    from neuroscope.core.loading.sources import resolve

    folder, gguf = files[kind]
    fast = load_for_decode(resolve(str(gguf))).adapter
    theirs = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32)
    original = load(resolve(str(folder))).adapter
    assert type(fast.final_norm) is type(theirs.model.norm) is type(original.final_norm)
    assert torch.equal(fast.final_norm.weight, theirs.model.norm.weight)
    torch.testing.assert_close(fast.final_norm.weight, original.final_norm.weight, rtol=0, atol=1e-6)  # (1 + w) - 1
    assert torch.equal(fast.head.weight, theirs.lm_head.weight) and torch.equal(fast.head.weight, original.head.weight)
    for layer in range(2):
        for view in ("up", "gate", "down"):
            assert torch.equal(fast.vectors(layer, view), original.vectors(layer, view))
            module = getattr(theirs.model.layers[layer].mlp, fast.names[view])
            assert torch.equal(getattr(fast.layers[layer], fast.names[view]).weight, module.weight)
    assert fast.softcap == original.softcap == (10.0 if kind == "gemma2" else None)
