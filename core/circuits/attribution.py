"""Exact attribution of one neuron's read pre-activations at one token, with no gradients and no transcoder.

Neuron j of layer L reads the residual stream x through the norm in front of its MLP: its gate or up
pre-activation is r_j · (g ⊙ c(x) / s(x) + β) + b_j, with c the centring of LayerNorm families (identity for
RMS), g the gain, β the norm's bias and s(x) its scale at that token. Everything but s is linear in x, and x is a
sum: the embedding (position embeddings and Gemma's scale included: it is block 0's input), what each earlier
attention layer adds (each head's slice of the output projection, plus its bias), what each earlier MLP adds
(activation_i × down column d_i, plus its bias) and, unless the block is parallel (NeoX), layer L's own
attention. With ř = c(g ⊙ r_j) (centring moves onto the read row) each part contributes part · ř / s(x); for a
neuron that is activation × w_ij / s(x), w_ij being core.circuits' virtual weight. Gemma2 puts a norm on each
attention and MLP output before the residual: linear but for its scale s_o at the token, so a part through it
is read with g_o ⊙ ř / s_o (and a neuron's weight is that token's). The parts, with the read's
bias and r_j · β, sum to the pre-activation the model computes (float64 here, float32 there).

The per-family knowledge (attention module, output projection and its layout, head count, parallel blocks,
output norms) comes from core.arch.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from ...choices import READS
from ...errors import UsageError
from ..clamp import FORWARD_LOCK, down_module
from ..loading.adapter import parameter
from ..refs import NeuronRef
from .weights import CircuitWeights

DEFAULT_EPS = 1e-5  # OLMo's parameter-free LayerNorm hard-codes it


@dataclass
class Part:
    """One source of a read pre-activation at one token."""

    kind: str  # "embed", "attn", "neuron" or "bias"
    layer: int | None
    head: int | None
    neuron: int | None
    value: float
    label: str | None = None
    activation: float | None = None  # a neuron's activation at the token ...
    weight: float | None = None  # ... and its virtual weight into the read (value = activation × weight / scale)

    def as_dict(self) -> dict:
        out = {
            "kind": self.kind,
            "layer": self.layer,
            "head": self.head,
            "neuron": self.neuron,
            "value": self.value,
            "label": self.label,
        }
        if self.kind == "neuron":
            out |= {"activation": self.activation, "weight": self.weight}
        return out


@dataclass
class Read:
    """One read vector's pre-activation split into its top sources and the rest."""

    view: str
    total: float  # the pre-activation as the model computed it
    scale: float  # s(x): the norm's scale at the token
    sources: list[Part] = field(default_factory=list)  # highest |value| first
    rest: float = 0.0  # every source not listed, summed

    def as_dict(self) -> dict:
        return {
            "total": self.total,
            "scale": self.scale,
            "sources": [p.as_dict() for p in self.sources],
            "rest": self.rest,
        }


@dataclass
class Attribution:
    layer: int
    neuron: int
    index: int
    token: str
    activation: float
    reads: dict[str, Read]

    def as_dict(self) -> dict:
        return {
            "layer": self.layer,
            "neuron": self.neuron,
            "index": self.index,
            "token": self.token,
            "activation": self.activation,
            "reads": {v: r.as_dict() for v, r in self.reads.items()},
        }

    def rows(self) -> list[dict]:
        """One row per listed source and one "rest" row per read vector (the DataFrame's rows)."""
        out = []
        for view, read in self.reads.items():
            out += [{"via": view, **p.as_dict()} for p in read.sources]
            out.append({"via": view, "kind": "rest", "value": read.rest})
        return out

    def to_pandas(self):
        try:
            import pandas as pd
        except ImportError:
            raise UsageError("to_pandas() needs pandas: pip install pandas") from None
        return pd.DataFrame(self.rows())


def _first(out):
    return out[0] if isinstance(out, tuple) else out


def _capture(lm, layer: int, ids: torch.Tensor) -> dict:
    """One forward pass recording what attribution needs up to ``layer`` (float64, batch row 0)."""
    adapter, family = lm.adapter, lm.adapter.family
    blocks = list(getattr(getattr(adapter.model, family.base), family.blocks))
    norm_attr = family.mlp_norm_attr(blocks[layer])
    if norm_attr is None:
        raise ValueError(f"{adapter.arch}: layer {layer} has no norm in front of its MLP")
    got: dict = {}

    def keep(key, value):
        got[key] = value.detach()[0].double()

    hooks = [
        blocks[0].register_forward_pre_hook(
            lambda _m, args, kwargs: keep("embed", args[0] if args else kwargs["hidden_states"]), with_kwargs=True
        ),
        getattr(blocks[layer], norm_attr).register_forward_pre_hook(lambda _m, args: keep("x", args[0])),
    ]
    for view in (v for v in READS if v in adapter.names):
        module = getattr(adapter.layers[layer], adapter.names[view])
        hooks.append(module.register_forward_hook(lambda _m, _a, out, view=view: keep(view, _first(out))))
    for k in range(layer + 1):
        attention = getattr(blocks[k], family.attention)
        out_proj = getattr(attention, family.attn_out)
        hooks.append(out_proj.register_forward_pre_hook(lambda _m, args, k=k: keep(("z", k), args[0])))
        hooks.append(down_module(adapter, k).register_forward_pre_hook(lambda _m, args, k=k: keep(("act", k), args[0])))
        if family.out_norm(blocks[k], "attn") is not None:  # the raw outputs: the output norms' scales
            hooks.append(attention.register_forward_hook(lambda _m, _a, out, k=k: keep(("attn", k), _first(out))))
        if family.out_norm(blocks[k], "mlp") is not None:
            mlp = getattr(blocks[k], family.mlp)
            hooks.append(mlp.register_forward_hook(lambda _m, _a, out, k=k: keep(("mlp", k), _first(out))))
    with FORWARD_LOCK:
        try:
            adapter.model(input_ids=ids, use_cache=False)
        finally:
            for h in hooks:
                h.remove()
    got["norm"] = getattr(blocks[layer], norm_attr)
    got["blocks"] = blocks
    return got


def pick_index(activations: torch.Tensor, at: int | None) -> int:
    """The token to attribute: ``at`` (negative counts from the end), or where |activation| is largest."""
    length = activations.shape[0]
    if at is None:
        return int(activations.abs().argmax())
    index = at + length if at < 0 else at
    if not 0 <= index < length:
        raise UsageError(f"--at {at} is outside the prompt's {length} tokens (0 to {length - 1}, or -1 to -{length})")
    return index


def _scale(x: torch.Tensor, norm, layer_norm: bool) -> float:
    eps = getattr(norm, "variance_epsilon", None) or getattr(norm, "eps", None) or DEFAULT_EPS
    y = x - x.mean() if layer_norm else x
    return float(torch.sqrt((y * y).mean() + eps))


@dataclass
class Split:
    """One read vector's pre-activation split into every source: the embedding, heads and biases as parts, and
    every earlier neuron as ``values`` [layers, neurons] (activation × weight / scale), before any listing."""

    view: str
    total: float
    scale: float
    fixed: list[Part]
    values: torch.Tensor | None  # None at layer 0 (no earlier neuron)
    acts: list[torch.Tensor]
    weights: list[torch.Tensor]

    def neuron(self, layer: int, index: int) -> Part:
        assert self.values is not None
        value = float(self.values[layer, index])
        return Part(
            "neuron",
            layer,
            None,
            index,
            value,
            activation=float(self.acts[layer][index]),
            weight=float(self.weights[layer][index]),
        )


@dataclass
class Splits:
    layer: int
    neuron: int
    index: int
    token_id: int
    activation: float
    reads: dict[str, Split]


@torch.inference_mode()
def split(lm, ids: torch.Tensor, ref: NeuronRef, at: int | None = None) -> Splits:
    """Every source of ``ref``'s read pre-activations at token ``at`` of ``ids`` [1, T], unlisted."""
    from ..generate import on_model

    adapter, family = lm.adapter, lm.adapter.family
    ids = on_model(lm, ids)
    got = _capture(lm, ref.layer, ids)
    L, j = ref.layer, ref.neuron
    t = pick_index(got[("act", L)][:, j], at)
    config = adapter.model.config
    heads = next(int(getattr(config, k)) for k in family.head_keys if getattr(config, k, None))
    parallel = bool(getattr(config, family.parallel_key, False)) if family.parallel_key else False
    layer_norm = family.mlp_norm_kind == "layer"
    x = got["x"][t]
    s = _scale(x, got["norm"], layer_norm)
    cw = CircuitWeights(adapter, x.device, torch.float64)
    beta = parameter(adapter, got["norm"], "bias")
    reads = {}

    def through(k: int, which: str, rr: torch.Tensor) -> torch.Tensor:
        """What block k's attention or MLP output is read with: ř, or g_o ⊙ ř / s_o where an output norm
        (Gemma2's) rescales it at the token."""
        norm = family.out_norm(got["blocks"][k], which)
        if norm is None:
            return rr
        gain = parameter(adapter, norm)
        assert gain is not None
        return (gain.double() + family.norm_shift) * rr / _scale(got[(which, k)][t], norm, layer_norm)

    for view in (v for v in READS if v in adapter.names):
        row = cw.read_rows(L, view)[j]
        rr = row - row.mean() if layer_norm else row  # c(g ⊙ r): centring moves onto the read row
        fixed = []
        embed = float(got["embed"][t] @ rr) / s
        fixed.append(Part("embed", None, None, None, embed))
        for k in range(L if parallel else L + 1):
            proj = getattr(getattr(got["blocks"][k], family.attention), family.attn_out)
            w_out = parameter(adapter, proj)
            assert w_out is not None
            w_out = w_out.double()
            ra = through(k, "attn", rr)
            q = w_out.T @ ra if family.attn_out_layout == "cols" else w_out @ ra  # [heads * head_dim]
            per_head = (got[("z", k)][t] * q).view(heads, -1).sum(-1) / s
            fixed += [Part("attn", k, h, None, float(v)) for h, v in enumerate(per_head)]
            bias = parameter(adapter, proj, "bias")
            if bias is not None:
                fixed.append(Part("bias", k, None, None, float(bias.double() @ ra) / s, "attention output bias"))
        neuron_values, acts, weights_ = [], [], []
        for k in range(L):
            rm = through(k, "mlp", rr)
            weights = cw.writes(k) @ rm  # [neurons]: c(d_i) · (g ⊙ r), the virtual weight (Gemma2: at this token)
            act = got[("act", k)][t]
            neuron_values.append(act * weights / s)
            acts.append(act)
            weights_.append(weights)
            bias = parameter(adapter, down_module(adapter, k), "bias")
            if bias is not None:
                fixed.append(Part("bias", k, None, None, float(bias.double() @ rm) / s, "MLP output bias"))
        own = getattr(adapter.layers[L], adapter.names[view])
        constant = 0.0
        b = parameter(adapter, own, "bias")
        if b is not None:
            constant += float(b[j])
        if beta is not None:
            constant += float(cw.rows(L, view)[j] @ beta.double())
        if b is not None or beta is not None:
            fixed.append(Part("bias", L, None, None, constant, "read bias"))
        values = torch.stack(neuron_values) if neuron_values else None  # [L, neurons]
        reads[view] = Split(view, float(got[view][t, j]), s, fixed, values, acts, weights_)
    return Splits(L, j, t, int(ids[0, t]), float(got[("act", L)][t, j]), reads)


@torch.inference_mode()
def attribute(lm, ids: torch.Tensor, ref: NeuronRef, at: int | None = None, top: int = 20) -> Attribution:
    """Split ``ref``'s read pre-activations at token ``at`` of ``ids`` [1, T] into their sources: the ``top`` by
    |value| listed, the remainder in ``rest`` (labels are left to the caller)."""
    got = split(lm, ids, ref, at)
    reads = {}
    for view, sp in got.reads.items():
        total_parts = sum(p.value for p in sp.fixed)
        listed = list(sp.fixed)
        if sp.values is not None:
            total_parts += float(sp.values.sum())
            n = sp.values.shape[1]
            best = sp.values.flatten().abs().topk(min(top, sp.values.numel())).indices.tolist()
            listed += [sp.neuron(*divmod(code, n)) for code in best]
        listed.sort(key=lambda p: -abs(p.value))
        shown = listed[:top]
        reads[view] = Read(view, sp.total, sp.scale, shown, total_parts - sum(p.value for p in shown))
    token = lm.tokenizer.decode([got.token_id])
    return Attribution(got.layer, got.neuron, got.index, token, got.activation, reads)
