"""Attention heads through the decode's lens against a float64 SVD-and-decode written here: each head's OV
circuit W_O^h W_V^h diag(g) formed in full from the saved model's own modules (the head slicing written out for
grouped-query Llama, GPT-2's fused Conv1D and NeoX's interleaved projection), its singular values, and the tokens
its singular directions write (final norm + LM head) and read (input embedding)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from neuroscope.core.circuits.heads import HeadWeights, decode_head
from neuroscope.core.loading.models import load
from neuroscope.core.loading.sources import resolve

from .test_circuits import build_circuit_model

KINDS = ("llama", "gpt2", "gpt_neox", "gemma")
TOP, RANKS = 5, 3


@pytest.fixture(scope="module")
def loaded(tmp_path_factory):
    root = tmp_path_factory.mktemp("head-models")
    return {
        kind: load(resolve(str(build_circuit_model(kind, root / kind, plant=False))), dtype=torch.float32)
        for kind in KINDS
    }


def a64(t) -> np.ndarray:
    return t.detach().double().numpy()


def ov_reference(model, kind: str, layer: int, head: int) -> np.ndarray:
    """[hidden, hidden] W_O^h W_V^h diag(g), written out per family."""
    c = model.config
    if kind == "gpt2":
        block = model.transformer.h[layer]
        hidden, d = c.n_embd, c.n_embd // c.n_head
        qkv = a64(block.attn.c_attn.weight)  # [hidden, 3 hidden]: y = x @ W
        w_v = qkv[:, 2 * hidden + head * d : 2 * hidden + (head + 1) * d].T
        w_o = a64(block.attn.c_proj.weight)[head * d : (head + 1) * d].T
        g = a64(block.ln_1.weight)
    elif kind == "gpt_neox":
        block = model.gpt_neox.layers[layer]
        d = c.hidden_size // c.num_attention_heads
        qkv = a64(block.attention.query_key_value.weight)  # rows: head 0 (q, k, v), head 1 (q, k, v), ...
        w_v = qkv[head * 3 * d + 2 * d : head * 3 * d + 3 * d]
        w_o = a64(block.attention.dense.weight)[:, head * d : (head + 1) * d]
        g = a64(block.input_layernorm.weight)
    else:
        block = model.model.layers[layer]
        d = c.head_dim
        group = head // (c.num_attention_heads // c.num_key_value_heads)
        w_v = a64(block.self_attn.v_proj.weight)[group * d : (group + 1) * d]
        w_o = a64(block.self_attn.o_proj.weight)[:, head * d : (head + 1) * d]
        g = a64(block.input_layernorm.weight) + (1.0 if kind == "gemma" else 0.0)
    return w_o @ (w_v * g)


def final_norm(model, kind: str, x: np.ndarray) -> np.ndarray:
    c = model.config
    if kind in ("gpt2", "gpt_neox"):
        norm = model.transformer.ln_f if kind == "gpt2" else model.gpt_neox.final_layer_norm
        eps = getattr(c, "layer_norm_epsilon", None) or c.layer_norm_eps
        y = x - x.mean()
        return y / np.sqrt((y * y).mean() + eps) * a64(norm.weight) + a64(norm.bias)
    g = a64(model.model.norm.weight) + (1.0 if kind == "gemma" else 0.0)
    return x / np.sqrt((x * x).mean() + c.rms_norm_eps) * g


def decode_reference(model, kind: str, x: np.ndarray) -> tuple[list[int], np.ndarray]:
    logits = a64(model.get_output_embeddings().weight) @ final_norm(model, kind, x)
    p = np.exp(logits - logits.max())
    p /= p.sum()
    order = np.argsort(-p)[:TOP]
    return list(order), p[order]


def embedding(model, kind: str) -> np.ndarray:
    e = a64(model.get_input_embeddings().weight)
    return e - e.mean(axis=1, keepdims=True) if kind in ("gpt2", "gpt_neox") else e


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("layer, head", [(0, 0), (1, 3), (2, 1)])
def test_head_decodes_equal_the_float64_svd_and_decode(loaded, kind, layer, head):
    lm = loaded[kind]
    got = decode_head(HeadWeights(lm.adapter), layer, head, RANKS, TOP)
    u, s, vt = np.linalg.svd(ov_reference(lm.model, kind, layer, head))
    assert [d.sigma for d in got] == pytest.approx(list(s[:RANKS]), rel=1e-9)
    assert s[RANKS + 5 :].max() < 1e-9 * s[0]  # rank = head dimension (8): the rest is zero
    emb = embedding(lm.model, kind)
    for d in got:
        k = d.rank
        # a singular pair's sign is arbitrary: take the one whose written tokens match, then its read side too
        sign = next(
            sg
            for sg in (1.0, -1.0)
            if [t for t, _ in d.writes["pos"]] == decode_reference(lm.model, kind, sg * u[:, k])[0]
        )
        for direction, flip in (("pos", sign), ("neg", -sign)):
            ids, probs = decode_reference(lm.model, kind, flip * u[:, k])
            assert [t for t, _ in d.writes[direction]] == ids
            assert [p for _, p in d.writes[direction]] == pytest.approx(list(probs), rel=1e-4)
            scores = emb @ (flip * vt[k])
            order = list(np.argsort(-scores)[:TOP])
            assert [t for t, _ in d.reads[direction]] == order
            assert [w for _, w in d.reads[direction]] == pytest.approx(list(scores[order]), rel=1e-6)


def test_grouped_heads_share_their_value_rows(loaded):
    """Llama's fixture has 4 heads over 2 key-value heads: heads 0 and 1 read through the same W_V rows."""
    hw = HeadWeights(loaded["llama"].adapter)
    assert torch.equal(hw.value(1, 0), hw.value(1, 1)) and not torch.equal(hw.value(1, 1), hw.value(1, 2))
