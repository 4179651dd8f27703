"""Exact attribution against hooks written here: the parts sum to the pre-activation the model computes, each
listed neuron's value is its activation × the float64 virtual weight / the norm's scale computed here, and the
heads of a layer sum to what that attention layer adds, on tiny saved models of each family."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from neuroscope.core.circuits.attribution import attribute
from neuroscope.core.loading.models import load
from neuroscope.core.loading.sources import resolve
from neuroscope.core.refs import NeuronRef
from neuroscope.errors import UsageError

from .test_circuits import SOURCE, TARGET, build_circuit_model, reference

KINDS = ("llama", "qwen2", "olmo", "gemma", "gemma2", "gpt2", "gpt_neox")
IDS = torch.tensor([[5, 17, 40, 99, 3, 250, 7, 12]])


@pytest.fixture(scope="module")
def loaded(tmp_path_factory):
    root = tmp_path_factory.mktemp("attribution-models")
    out = {}
    for kind in KINDS:
        folder = build_circuit_model(
            kind, root / kind, plant=kind != "olmo"
        )  # OLMo's norms have no gain to plant through
        out[kind] = (folder, load(resolve(str(folder)), dtype=torch.float32))
    return out


def blocks_of(model, kind):
    if kind == "gpt2":
        return model.transformer.h
    return model.gpt_neox.layers if kind == "gpt_neox" else model.model.layers


def hooked(lm, kind: str, layer: int):
    """What the model computes, read by hooks written here: each layer's neuron activations (the down
    projection's input), the read pre-activations of ``layer`` and the residual its MLP norm reads."""
    blocks = blocks_of(lm.model, kind)
    block = blocks[layer]
    mlp = block.mlp
    norm = {"gpt2": "ln_2", "gemma2": "pre_feedforward_layernorm"}.get(kind, "post_attention_layernorm")
    norm = getattr(block, norm)
    down = {"gpt2": "c_proj", "gpt_neox": "dense_4h_to_h"}.get(kind, "down_proj")
    reads = {"gpt2": {"up": "c_fc"}, "gpt_neox": {"up": "dense_h_to_4h"}}.get(
        kind, {"gate": "gate_proj", "up": "up_proj"}
    )
    got: dict = {"act": {}, "mlp": {}}
    handles = [norm.register_forward_pre_hook(lambda _m, a: got.__setitem__("x", a[0][0].double()))]
    for k in range(len(blocks)):
        handles.append(
            getattr(blocks[k].mlp, down).register_forward_pre_hook(
                lambda _m, a, k=k: got["act"].__setitem__(k, a[0][0].double())
            )
        )
        handles.append(
            blocks[k].mlp.register_forward_hook(lambda _m, _a, out, k=k: got["mlp"].__setitem__(k, out[0].double()))
        )
    for view, name in reads.items():
        handles.append(
            getattr(mlp, name).register_forward_hook(
                lambda _m, _a, out, view=view: got.__setitem__(view, out[0].double())
            )
        )
    with torch.no_grad():
        lm.model(input_ids=IDS, use_cache=False)
    for h in handles:
        h.remove()
    return got


def scale_of(x: torch.Tensor, kind: str, config) -> float:
    """s(x) of the norm in front of the MLP, written from the formulas (RMS or LayerNorm) and the config's eps."""
    if kind in ("gpt2", "gpt_neox", "olmo"):
        eps = getattr(config, "layer_norm_epsilon", None) or getattr(config, "layer_norm_eps", None) or 1e-5
        return float(torch.sqrt(((x - x.mean()) ** 2).mean() + eps))
    return float(torch.sqrt((x * x).mean() + config.rms_norm_eps))


def gemma2_weight(lm, got, s: int, t: int, view: str, index: int) -> np.ndarray:
    """Gemma2 rescales each MLP output by its post_feedforward_layernorm: w = (g_pf ⊙ d_i) · (g_pre ⊙ r_j) / s_m,
    s_m the RMS of layer s's MLP output at the token (gains are 1 + w)."""
    layers = lm.model.model.layers
    m = got["mlp"][s][index]
    s_m = float(torch.sqrt((m * m).mean() + lm.model.config.rms_norm_eps))
    g_pf = layers[s].post_feedforward_layernorm.weight.double() + 1
    g_pre = layers[t].pre_feedforward_layernorm.weight.double() + 1
    down = layers[s].mlp.down_proj.weight.double().T * g_pf  # [neurons, hidden]
    rows = getattr(layers[t].mlp, f"{view}_proj").weight.double() * g_pre
    return (down @ rows.T).numpy() / s_m


def olmo_reference(lm, s: int, t: int, view: str) -> np.ndarray:
    """OLMo's norms have no gain: w = centred down column · read row."""
    layers = lm.model.model.layers
    down = layers[s].mlp.down_proj.weight.double().T.numpy()
    rows = getattr(layers[t].mlp, f"{view}_proj").weight.double().numpy()
    return (down - down.mean(axis=1, keepdims=True)) @ rows.T


@pytest.mark.parametrize("kind", KINDS)
def test_the_parts_sum_to_the_hooked_pre_activation(loaded, kind):
    folder, lm = loaded[kind]
    target = NeuronRef(*TARGET)
    got = hooked(lm, kind, target.layer)
    for at in (None, 0, -1, 3):
        a = attribute(lm, IDS, target, at=at, top=5)
        want_index = int(got["act"][target.layer][:, target.neuron].abs().argmax()) if at is None else at % IDS.shape[1]
        assert a.index == want_index
        for view, read in a.reads.items():
            total = float(got[view][a.index, target.neuron])
            assert read.total == pytest.approx(total, rel=1e-5)
            parts = sum(p.value for p in read.sources) + read.rest
            assert parts == pytest.approx(total, rel=1e-4, abs=1e-4 * read.scale)
            assert len(read.sources) == 5
            assert [abs(p.value) for p in read.sources] == sorted((abs(p.value) for p in read.sources), reverse=True)


@pytest.mark.parametrize("kind", KINDS)
def test_each_neuron_is_activation_times_the_float64_weight_over_the_scale(loaded, kind):
    folder, lm = loaded[kind]
    target = NeuronRef(*TARGET)
    got = hooked(lm, kind, target.layer)
    a = attribute(lm, IDS, target, at=-2, top=1000)  # every source listed
    s = scale_of(got["x"][a.index], kind, lm.model.config)
    neurons = 0
    for view, read in a.reads.items():
        assert read.scale == pytest.approx(s, rel=1e-6)
        assert read.rest == pytest.approx(0.0, abs=1e-9)
        for p in read.sources:
            if p.kind != "neuron":
                continue
            if kind == "olmo":
                w = olmo_reference(lm, p.layer, target.layer, view)
            elif kind == "gemma2":
                w = gemma2_weight(lm, got, p.layer, target.layer, view, a.index)
            else:
                w = reference(folder, kind, p.layer, target.layer, view)
            act = float(got["act"][p.layer][a.index, p.neuron])
            assert p.activation == pytest.approx(act, rel=1e-6)
            assert p.weight == pytest.approx(w[p.neuron, target.neuron], rel=1e-6, abs=1e-9)
            assert p.value == pytest.approx(act * w[p.neuron, target.neuron] / s, rel=1e-5, abs=1e-9)
            neurons += 1
    assert neurons == len(a.reads) * target.layer * 64  # every earlier neuron, once per read


def test_the_planted_source_leads_where_it_fires(loaded):
    """L0:N3 writes 5 × L2:N5's up row through the gain: it leads the up read wherever it is active enough."""
    folder, lm = loaded["llama"]
    got = hooked(lm, "llama", TARGET[0])
    src = got["act"][SOURCE[0]][:, SOURCE[1]]
    t = int(src.abs().argmax())
    a = attribute(lm, IDS, NeuronRef(*TARGET), at=t, top=3)
    lead = a.reads["up"].sources[0]
    assert (lead.kind, lead.layer, lead.neuron) == ("neuron", *SOURCE)


@pytest.mark.parametrize("kind", ("llama", "gpt2", "gpt_neox"))
def test_the_heads_of_a_layer_sum_to_what_it_adds(loaded, kind):
    """Per head = the slice of the output projection: a layer's heads (and its bias) sum to its attention output
    as a hook on the attention module sees it, read through ř / s."""
    folder, lm = loaded[kind]
    blocks = blocks_of(lm.model, kind)
    attn_name = {"gpt2": "attn", "gpt_neox": "attention"}.get(kind, "self_attn")
    out_name = {"gpt2": "c_proj", "gpt_neox": "dense"}.get(kind, "o_proj")
    outs, zs = {}, {}
    handles = [
        getattr(b, attn_name).register_forward_hook(lambda _m, _a, out, k=k: outs.__setitem__(k, out[0][0].double()))
        for k, b in enumerate(blocks)
    ] + [
        getattr(getattr(b, attn_name), out_name).register_forward_pre_hook(
            lambda _m, a, k=k: zs.__setitem__(k, a[0][0].double())
        )
        for k, b in enumerate(blocks)
    ]
    got = hooked(lm, kind, TARGET[0])
    for h in handles:
        h.remove()
    a = attribute(lm, IDS, NeuronRef(*TARGET), at=4, top=1000)
    read = a.reads["up"]
    mlp_block = blocks[TARGET[0]]
    norm = mlp_block.ln_2 if kind == "gpt2" else mlp_block.post_attention_layernorm
    if kind == "gpt2":
        up = mlp_block.mlp.c_fc.weight.T
    else:
        up = mlp_block.mlp.dense_h_to_4h.weight if kind == "gpt_neox" else mlp_block.mlp.up_proj.weight
    rr = up[TARGET[1]].double() * norm.weight.double()
    if kind != "llama":
        rr = rr - rr.mean()
    s = scale_of(got["x"][4], kind, lm.model.config)
    layers_with_heads = {p.layer for p in read.sources if p.kind == "attn"}
    assert layers_with_heads == ({0, 1} if kind == "gpt_neox" else {0, 1, 2})  # NeoX's MLP reads the block's input
    for k in layers_with_heads:
        parts = sum(
            p.value for p in read.sources if p.layer == k and (p.kind == "attn" or p.label == "attention output bias")
        )
        heads = [p for p in read.sources if p.layer == k and p.kind == "attn"]
        assert sorted(p.head for p in heads) == [0, 1, 2, 3]
        # head h alone: its 8 dimensions of the projection's input through its slice of the projection
        w_out = getattr(getattr(blocks[k], attn_name), out_name).weight.double()
        for p in heads:
            dims = slice(8 * p.head, 8 * (p.head + 1))
            wrote = zs[k][4, dims] @ (w_out[dims] if kind == "gpt2" else w_out[:, dims].T)  # Conv1D: [in, out]
            assert p.value == pytest.approx(float(wrote @ rr) / s, rel=1e-6, abs=1e-9)
        assert parts == pytest.approx(float(outs[k][4] @ rr) / s, rel=1e-4, abs=1e-6)  # float32 there


def test_a_bad_index_is_one_line(loaded):
    with pytest.raises(UsageError, match="outside the prompt's 8 tokens"):
        attribute(loaded["llama"][1], IDS, NeuronRef(1, 0), at=8)
