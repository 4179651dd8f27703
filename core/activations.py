"""What a neuron does on text. A neuron's activation is the input of its MLP's down projection, the quantity
clamping sets (SwiGLU: act(gate) * up; GPT-2/NeoX: act(c_fc)). For gated MLPs the gate and up
pre-activations come with it, and their signs give the GLU case: "++", "+-", "-+" or "--" (gate, up), as
GLUScope splits a SwiGLU neuron's examples, because for gated MLPs "positive" is not enough.

``captured`` hooks every layer for one forward pass; ``trace`` turns that into the per-token view of
``neuroscope trace``.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, field

import torch

from ..cache.examples import CASES
from .clamp import FORWARD_LOCK, down_module
from .refs import NeuronRef


def case_codes(gate: torch.Tensor, up: torch.Tensor) -> torch.Tensor:
    """Index into CASES of each (gate, up) pair, as int8: pre-activations, or booleans saying "> 0"."""
    gate_neg = ~gate if gate.dtype == torch.bool else gate <= 0
    up_neg = ~up if up.dtype == torch.bool else up <= 0
    return gate_neg.to(torch.int8) * 2 + up_neg.to(torch.int8)


@contextmanager
def captured(adapter, layers=None):
    """Record, for one forward pass, every layer's activation [B, T, n] (and, for gated MLPs, the gate and
    up pre-activations) as float32 tensors: yields {layer: {"act": …, "gate": …, "up": …}}. The hooks are
    removed on every exit; FORWARD_LOCK is held throughout."""
    layers = range(adapter.num_layers) if layers is None else layers
    got: dict[int, dict[str, torch.Tensor]] = {layer: {} for layer in layers}
    gated = "gate" in adapter.names
    with FORWARD_LOCK:
        handles = []
        try:
            for layer in layers:
                slot = got[layer]
                handles.append(
                    down_module(adapter, layer).register_forward_pre_hook(
                        lambda _m, args, slot=slot: slot.__setitem__("act", args[0].detach().float())
                    )
                )
                if gated:
                    mlp = adapter.layers[layer]
                    for view in ("gate", "up"):
                        handles.append(
                            getattr(mlp, adapter.names[view]).register_forward_hook(
                                lambda _m, _a, out, slot=slot, view=view: slot.__setitem__(view, out.detach().float())
                            )
                        )
            yield got
        finally:
            for handle in handles:
                handle.remove()


@dataclass
class Firing:
    """One neuron at one token."""

    layer: int
    neuron: int
    activation: float
    gate: float | None = None
    up: float | None = None
    label: str | None = None  # the top token of what it writes there: the down view, in its sign's direction

    @property
    def case(self) -> str | None:
        if self.gate is None or self.up is None:
            return None
        return CASES[(self.gate <= 0) * 2 + (self.up <= 0)]

    def as_dict(self) -> dict:
        return {
            "layer": self.layer,
            "neuron": self.neuron,
            "activation": self.activation,
            "gate": self.gate,
            "up": self.up,
            "case": self.case,
            "label": self.label,
        }


@dataclass
class TokenTrace:
    index: int
    token: str
    top: list[Firing] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {"index": self.index, "token": self.token, "top": [f.as_dict() for f in self.top]}


@dataclass
class NeuronTrace:
    ref: NeuronRef
    activations: list[float]
    gate: list[float] | None = None
    up: list[float] | None = None

    def as_dict(self) -> dict:
        return {"layer": self.ref.layer, "neuron": self.ref.neuron, "activations": self.activations}


@dataclass
class Trace:
    model: str
    prompt: str
    tokens: list[TokenTrace]
    neurons: list[NeuronTrace] | None = None

    def as_dict(self) -> dict:
        out = {"model": self.model, "prompt": self.prompt, "tokens": [t.as_dict() for t in self.tokens]}
        if self.neurons is not None:
            out["neurons"] = [n.as_dict() for n in self.neurons]
        return out


@torch.inference_mode()
def trace(lm, ids: torch.Tensor, top: int = 10, refs: list[NeuronRef] | None = None):
    """Run ``ids`` [1, T] once with hooks. Returns (per-token top ``top`` Firings by |activation| over all
    layers and neurons, without labels; per-neuron NeuronTraces for ``refs``; the token texts)."""
    from .generate import on_model

    ids = on_model(lm, ids)
    with captured(lm.adapter) as got:
        lm.model(input_ids=ids, use_cache=False)
    layers = sorted(got)
    act = torch.stack([got[layer]["act"][0] for layer in layers])  # [L, T, n]
    gated = "gate" in got[layers[0]]
    gate = torch.stack([got[layer]["gate"][0] for layer in layers]) if gated else None
    up = torch.stack([got[layer]["up"][0] for layer in layers]) if gated else None
    n_layers, length, n = act.shape
    k = min(top, n_layers * n)
    flat = act.permute(1, 0, 2).reshape(length, -1)  # [T, L * n]
    best = flat.abs().topk(k, dim=1).indices
    per_token = []
    for t in range(length):
        firings = []
        for code in best[t].tolist():
            layer, neuron = divmod(code, n)
            firings.append(
                Firing(
                    layer,
                    neuron,
                    float(act[layer, t, neuron]),
                    float(gate[layer, t, neuron]) if gate is not None else None,
                    float(up[layer, t, neuron]) if up is not None else None,
                )
            )
        per_token.append(firings)
    neurons = None
    if refs is not None:
        neurons = [
            NeuronTrace(
                r,
                act[r.layer, :, r.neuron].tolist(),
                gate[r.layer, :, r.neuron].tolist() if gate is not None else None,
                up[r.layer, :, r.neuron].tolist() if up is not None else None,
            )
            for r in refs
        ]
    texts = [lm.tokenizer.decode([i]) for i in ids[0].tolist()]
    return per_token, neurons, texts
