"""A planted attention head for the heads tests: head PLANTED_HEAD's value row 0 reads READ_TOKEN's embedding and
its output column 0 writes WRITE_TOKEN's unembedding (through the final norm's gain, centred for LayerNorm
families), both scaled, so its top OV direction writes WRITE_TOKEN first and reads READ_TOKEN first."""

from __future__ import annotations

import torch

from .core.test_circuits import build_circuit_model

PLANTED_HEAD = (1, 2)  # L1:H2
WRITE_TOKEN, WRITE_TEXT = 8, "\u0120cat"
READ_TOKEN, READ_TEXT = 5, "doghouse"


def head_slices(model, kind: str, layer: int, head: int):
    """(value row 0 of the head [hidden] as a view, output column 0 [hidden] as a view, attention gain, final
    gain, centred): where the plant goes, as the modules hold it."""
    if kind == "gpt2":
        block, hidden = model.transformer.h[layer], model.config.n_embd
        d = hidden // model.config.n_head
        value = block.attn.c_attn.weight[:, 2 * hidden + head * d]  # Conv1D: y = x @ W
        out = block.attn.c_proj.weight[head * d]
        return value, out, block.ln_1.weight, model.transformer.ln_f.weight, True
    block = model.model.layers[layer]
    d = model.config.head_dim
    group = head // (model.config.num_attention_heads // model.config.num_key_value_heads)
    value = block.self_attn.v_proj.weight[group * d]
    out = block.self_attn.o_proj.weight[:, head * d]
    return value, out, block.input_layernorm.weight, model.model.norm.weight, False


def build_head_model(kind: str, path):
    from transformers import AutoModelForCausalLM

    build_circuit_model(kind, path, plant=False)
    model = AutoModelForCausalLM.from_pretrained(path)
    with torch.no_grad():
        value, out, attn_gain, final_gain, centre = head_slices(model, kind, *PLANTED_HEAD)
        unembed = model.get_output_embeddings().weight
        embed = model.get_input_embeddings().weight
        unembed[WRITE_TOKEN] *= 3
        embed[READ_TOKEN] *= 3
        w = unembed[WRITE_TOKEN] * final_gain
        e = embed[READ_TOKEN]
        if centre:
            w, e = w - w.mean(), e - e.mean()
        out.copy_(8 * w / w.norm())
        value.copy_(8 * e / e.norm() / attn_gain)
    model.save_pretrained(path, safe_serialization=True)
    return path
