"""An independent float64 decode: reads the saved safetensors with numpy and applies the norm by hand."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from safetensors.numpy import load_file


def _weights(path: Path) -> dict:
    return {k: v.astype(np.float64) for k, v in load_file(str(path / "model.safetensors")).items()}


def vectors_and_head(path: Path, kind: str, layer: int, view: str):
    """Neuron vectors [n, h], the final-norm function and the head matrix [V, h] in float64."""
    w = _weights(path)
    cfg = json.loads((path / "config.json").read_text())
    if kind in ("llama", "qwen2", "olmo"):
        mlp = f"model.layers.{layer}.mlp."
        vec = {
            "up": w[mlp + "up_proj.weight"],
            "gate": w[mlp + "gate_proj.weight"],
            "down": w[mlp + "down_proj.weight"].T,
        }[view]
        if kind == "olmo":  # a LayerNorm with no weight or bias, eps 1e-5

            def norm(x):
                mu = x.mean(-1, keepdims=True)
                return (x - mu) / np.sqrt(((x - mu) ** 2).mean(-1, keepdims=True) + 1e-5)
        else:
            g, eps = w["model.norm.weight"], cfg["rms_norm_eps"]

            def norm(x):
                return x / np.sqrt((x * x).mean(-1, keepdims=True) + eps) * g

        head = w["lm_head.weight"]
    else:
        if kind == "gpt2":
            mlp = f"transformer.h.{layer}.mlp."
            vec = {"up": w[mlp + "c_fc.weight"].T, "down": w[mlp + "c_proj.weight"]}[view]  # Conv1D [in, out]
            g, b, eps = w["transformer.ln_f.weight"], w["transformer.ln_f.bias"], cfg["layer_norm_epsilon"]
            head = w.get("lm_head.weight", w["transformer.wte.weight"])
        else:
            mlp = f"gpt_neox.layers.{layer}.mlp."
            vec = {"up": w[mlp + "dense_h_to_4h.weight"], "down": w[mlp + "dense_4h_to_h.weight"].T}[view]
            g, b = w["gpt_neox.final_layer_norm.weight"], w["gpt_neox.final_layer_norm.bias"]
            eps = cfg["layer_norm_eps"]
            head = w["embed_out.weight"]

        def norm(x):
            mu = x.mean(-1, keepdims=True)
            var = ((x - mu) ** 2).mean(-1, keepdims=True)
            return (x - mu) / np.sqrt(var + eps) * g + b

    return vec, norm, head


def decode(path: Path, kind: str, layer: int, view: str, direction: str, k: int):
    vec, norm, head = vectors_and_head(path, kind, layer, view)
    if direction == "neg":
        vec = -vec
    logits = norm(vec) @ head.T
    logits -= logits.max(-1, keepdims=True)
    p = np.exp(logits)
    p /= p.sum(-1, keepdims=True)
    ids = np.argsort(-p, axis=-1, kind="stable")[:, :k]
    return ids, np.take_along_axis(p, ids, -1)
