"""Tiny SAELens-format dictionaries for the tests, written at test time: cfg.json and sae_weights.safetensors
(W_enc [d_in, d_sae], b_enc, W_dec [d_sae, d_in], b_dec, and threshold for jumprelu), random but for planted
features: DEC_FEATURE's decoder row is the LM-head row of DEC_TOKEN divided by the final norm's gain, and
ENC_FEATURE's encoder column that of ENC_TOKEN, so through the final norm and head each decodes to its token
first."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

DEC_FEATURE, DEC_TOKEN = 7, 4  # F7 writes "\u0120dog"
ENC_FEATURE, ENC_TOKEN = 3, 8  # F3 reads "\u0120cat"
D_SAE = 24


def model_tensors(model_dir: Path) -> dict[str, np.ndarray]:
    from safetensors.numpy import load_file

    return load_file(str(Path(model_dir) / "model.safetensors"))


def write_sae(
    folder: Path,
    model_dir: Path | None = None,
    d_in: int = 32,
    d_sae: int = D_SAE,
    hook: str = "blocks.1.hook_resid_post",
    architecture: str = "standard",
    seed: int = 0,
    drop: tuple[str, ...] = (),
    **cfg_extra,
) -> Path:
    """A SAELens folder; with ``model_dir`` (a tiny Llama) the planted features are written through its head."""
    from safetensors.numpy import save_file

    rng = np.random.default_rng(seed)
    tensors = {
        "W_enc": rng.standard_normal((d_in, d_sae)).astype(np.float32),
        "b_enc": rng.standard_normal(d_sae).astype(np.float32),
        "W_dec": rng.standard_normal((d_sae, d_in)).astype(np.float32),
        "b_dec": rng.standard_normal(d_in).astype(np.float32),
    }
    if architecture == "jumprelu":
        tensors["threshold"] = np.abs(rng.standard_normal(d_sae)).astype(np.float32)
    if model_dir is not None:
        weights = model_tensors(model_dir)
        head, gain = weights["lm_head.weight"], weights["model.norm.weight"]
        tensors["W_dec"][DEC_FEATURE] = head[DEC_TOKEN] / gain
        tensors["W_enc"][:, ENC_FEATURE] = head[ENC_TOKEN] / gain
    for name in drop:
        tensors.pop(name)
    cfg = {
        "architecture": architecture,
        "d_in": d_in,
        "d_sae": d_sae,
        "hook_name": hook,
        "apply_b_dec_to_input": False,
        "normalize_activations": "none",
        "dtype": "float32",
        **({"k": 4} if architecture == "topk" else {}),
        **cfg_extra,
    }
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "cfg.json").write_text(json.dumps(cfg))
    save_file(tensors, str(folder / "sae_weights.safetensors"))
    return folder
