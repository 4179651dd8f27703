"""Dictionary (SAE) features: `show MODEL F7 --sae PATH` decodes a planted feature's decoder row (or encoder column)
through the tiny Llama's final norm and LM head, equal to a float64 reference written here; every dictionary that
does not fit is one line and exit code 2 before the model loads; each hook site maps onto every family's modules."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from .fuzzing import run
from .models import vocab
from .sae_plant import D_SAE, DEC_FEATURE, DEC_TOKEN, ENC_FEATURE, ENC_TOKEN, model_tensors, write_sae


def reference(model_dir, vector: np.ndarray) -> np.ndarray:
    """float64 softmax(lm_head(rmsnorm(vector))) of the tiny Llama, by hand."""
    weights = model_tensors(model_dir)
    eps = json.loads((model_dir / "config.json").read_text())["rms_norm_eps"]
    x = vector.astype(np.float64)
    normed = x / np.sqrt(np.mean(x * x) + eps) * weights["model.norm.weight"].astype(np.float64)
    logits = weights["lm_head.weight"].astype(np.float64) @ normed
    e = np.exp(logits - logits.max())
    return e / e.sum()


@pytest.fixture
def no_load(monkeypatch):
    """Fails the test if the model's weights are loaded."""
    import neuroscope.core.loading.models as models

    def refuse(*_a, **_k):
        raise AssertionError("the model was loaded")

    monkeypatch.setattr(models, "load_for_decode", refuse)
    monkeypatch.setattr(models, "load", refuse)


def show(model_dir, cache_dir, *args):
    return run(["show", str(model_dir), *map(str, args), "--cache-dir", str(cache_dir), "--device", "cpu"])


@pytest.mark.parametrize("architecture", ["standard", "jumprelu", "topk"])
@pytest.mark.parametrize("direction", ["pos", "neg"])
def test_planted_decoder_row(model_dirs, tmp_path, architecture, direction):
    model = model_dirs["llama"]
    sae = write_sae(tmp_path / "sae", model, architecture=architecture)
    got = show(model, tmp_path / "cache", f"F{DEC_FEATURE}", "--sae", sae, "--direction", direction, "--json")
    assert got.code == 0, got.stderr
    out = json.loads(got.stdout)
    assert set(out) == {
        "model", "hub_id", "revision", "feature", "layer", "view", "direction", "label", "label_mass", "top", "sae"
    }  # fmt: skip
    assert (out["feature"], out["layer"], out["view"], out["direction"]) == (DEC_FEATURE, 1, "dec", direction)
    assert out["sae"] == {
        "path": str(sae), "architecture": architecture, "hook_name": "blocks.1.hook_resid_post", "d_sae": D_SAE
    }  # fmt: skip
    row = model_tensors(model)["lm_head.weight"][DEC_TOKEN] / model_tensors(model)["model.norm.weight"]
    p = reference(model, row if direction == "pos" else -row)
    ids = [t["token_id"] for t in out["top"]]
    assert ids == list(np.argsort(-p, kind="stable")[: len(ids)])
    assert np.allclose([t["prob"] for t in out["top"]], p[ids], rtol=1e-5, atol=1e-8)
    if direction == "pos":
        assert out["top"][0]["token"] == vocab()[DEC_TOKEN] and out["label"] == "dog"


def test_planted_encoder_column_and_plain_output(model_dirs, tmp_path):
    model = model_dirs["llama"]
    sae = write_sae(tmp_path / "sae", model)
    got = show(model, tmp_path / "cache", f"f{ENC_FEATURE}", "--sae", sae, "--view", "enc", "--json")
    assert got.code == 0, got.stderr
    out = json.loads(got.stdout)
    column = model_tensors(model)["lm_head.weight"][ENC_TOKEN] / model_tensors(model)["model.norm.weight"]
    p = reference(model, column)
    assert out["view"] == "enc" and out["top"][0]["token_id"] == ENC_TOKEN == int(np.argmax(p))
    assert out["top"][0]["prob"] == pytest.approx(p[ENC_TOKEN], rel=1e-5)
    plain = show(model, tmp_path / "cache", f"F{DEC_FEATURE}", "--sae", sae)
    assert plain.code == 0, plain.stderr
    lines = plain.stdout.splitlines()
    assert lines[0].startswith(f"llama F{DEC_FEATURE} dec pos  (standard dictionary at blocks.1.hook_resid_post")
    assert '"\u0120dog"' in lines[1] and lines[1].split()[0] == "1"


def damage(folder):
    (folder / "sae_weights.safetensors").write_bytes((folder / "sae_weights.safetensors").read_bytes()[:200])


def garble(folder):
    (folder / "cfg.json").write_text("{not json")


MISMATCHES = {
    "d_in": (dict(d_in=16), None, "F1", "d_in is 16, but llama's residual stream is 32 wide"),
    "layer": (dict(hook="blocks.2.hook_resid_pre"), None, "F1", "blocks.2.hook_resid_pre is out of range"),
    "hook": (dict(hook="blocks.1.hook_attn_out"), None, "F1", "unknown hook site 'hook_attn_out'"),
    "hook form": (dict(hook="model.layers.1"), None, "F1", "is not a TransformerLens hook"),
    "architecture": (dict(architecture="gated"), None, "F1", "unknown architecture 'gated'"),
    "topk without k": (dict(architecture="topk", k=0), None, "F1", "needs k from 1 to d_sae"),
    "no W_dec": (dict(drop=("W_dec",)), None, "F1", "has no W_dec"),
    "no threshold": (dict(architecture="jumprelu", drop=("threshold",)), None, "F1", "has no threshold"),
    "damaged": ({}, damage, "F1", "truncated"),
    "garbled cfg": ({}, garble, "F1", "cfg.json: not valid JSON"),
    "missing weights": ({}, lambda f: (f / "sae_weights.safetensors").unlink(), "F1", "no sae_weights.safetensors"),
    "not a folder": ({}, lambda f: None, "F1", "nope does not exist"),
    "malformed ref": ({}, None, "F7x", "malformed feature 'F7x'"),
    "neuron ref": ({}, None, "L1:N7", "malformed feature 'L1:N7'"),
    "out of range": ({}, None, f"F{D_SAE}", f"feature {D_SAE} is out of range"),
}


@pytest.mark.parametrize("case", sorted(MISMATCHES))
def test_mismatch_is_one_line_before_any_load(model_dirs, tmp_path, no_load, case):
    kwargs, spoil, ref, message = MISMATCHES[case]
    sae = write_sae(tmp_path / "sae", **kwargs)
    if spoil is not None:
        spoil(sae)
    path = tmp_path / "nope" if case == "not a folder" else sae
    got = show(model_dirs["llama"], tmp_path / "cache", ref, "--sae", path)
    assert got.code == 2, (got.stdout, got.stderr)
    assert got.traceback is None and not got.problems()
    lines = got.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("neuroscope show: error: ") and message in lines[0], lines
    assert not (tmp_path / "cache").exists() or not any((tmp_path / "cache").iterdir())


def test_feature_without_sae_and_views_that_do_not_fit(model_dirs, tmp_path, no_load):
    sae = write_sae(tmp_path / "sae")
    for args, message in (
        (["F7"], "F7 is a dictionary feature: add --sae PATH"),
        (["L1:N7", "--view", "dec"], "--view dec is a dictionary feature's view"),
        (["F7", "--sae", sae, "--view", "up"], "--view up is a neuron's view"),
        (["F7", "--sae", sae, "--examples"], "--examples is for neurons"),
    ):
        got = show(model_dirs["llama"], tmp_path / "cache", *args)
        assert got.code == 2 and got.stderr.count("\n") == 1 and message in got.stderr, (args, got.stderr)


def test_dictionary_checks_are_torch_free(tmp_path):
    sae = write_sae(tmp_path / "sae")
    code = (
        "import sys; from neuroscope.core.dictionaries import open_dictionary; "
        f"d = open_dictionary({str(sae)!r}); v = d.vector(7, 'dec'); "
        "assert v.shape == (32,) and d.hook.layer == 1 and d.hook.site == 'resid_post'; "
        "assert 'torch' not in sys.modules, 'torch was imported'"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr


FAMILY_CONFIGS = {
    "llama": {}, "qwen2": {}, "olmo": {}, "gemma": {}, "gemma2": {}, "gpt2": {},
    "gpt_neox": {"use_parallel_residual": False},
}  # fmt: skip


@pytest.mark.parametrize("kind", sorted(FAMILY_CONFIGS))
def test_every_site_maps_onto_the_family_modules(kind):
    """Each hook site of layer 1 names modules that the family's real transformers model has, and a forward hook
    there sees a residual-stream-shaped tensor."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    from neuroscope.core.arch import SITES, by_model_type

    shape = (
        {"n_embd": 32, "n_layer": 2, "n_head": 4, "n_positions": 16}
        if kind == "gpt2"
        else {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4}
        | ({} if kind == "gpt_neox" else {"num_key_value_heads": 2, "head_dim": 8})
    )
    config = AutoConfig.for_model(kind, vocab_size=64, **shape, **FAMILY_CONFIGS[kind])
    model = AutoModelForCausalLM.from_config(config).eval()
    family = by_model_type(kind)
    names = dict(model.named_modules())
    seen = {}
    for site in SITES:
        point = family.site(1, site)
        assert point is not None
        found = next((names[m] for m in point.modules if m in names), None)
        assert found is not None, (site, point)
        if point.side == "input":
            found.register_forward_pre_hook(lambda _m, args, site=site: seen.__setitem__(site, args[0].shape))
        else:
            found.register_forward_hook(
                lambda _m, _a, out, site=site: seen.__setitem__(site, (out[0] if isinstance(out, tuple) else out).shape)
            )
    with torch.no_grad():
        model(torch.tensor([[1, 2, 3]]))
    assert seen == {site: (1, 3, 32) for site in SITES}
    if family.parallel_key:
        assert family.site(1, "resid_mid", parallel=True) is None
