"""Virtual weights: how much neuron i of layer l, writing its down column d_i into the residual stream, moves
the pre-activation of neuron j of a later layer l' that reads it through the norm in front of l''s MLP.

That norm computes gain ⊙ x / s(x) (RMS) or gain ⊙ (x - mean x) / s(x) (LayerNorm); s(x) is shared by every
source at a token, so the direct-path effect per unit of i's activation is, up to that one positive scale,

    w_ij = Σ_d d̃_i[d] · g_l'[d] · r_j[d]

with r_j the gate or up row, g_l' the gain (Gemma's 1 + w: the registry's ``norm_shift``) and d̃_i the down
column, centred over d for LayerNorm families (GPT-2's ln_2, NeoX's post_attention_layernorm; NeoX's parallel
residual changes nothing here: layer l''s MLP still reads the residual, which holds every earlier MLP's
output, through its own norm). The input side is the same product with an embedding row in place of d_i.
Everything the per-family knowledge needs comes from core.arch (``mlp_norms``, ``mlp_norm_kind``,
``norm_shift``); the weights come through the decode's loaders (streamed safetensors, GGUF, whole models).
Not modelled: Gemma2's post_feedforward_layernorm (a per-token norm of the source layer's whole MLP output)
and Gemma's sqrt(hidden) embedding scale (one constant per model, so no ranking changes).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, cast

import torch

from ...choices import READS
from ..loading.adapter import Adapter, parameter

if TYPE_CHECKING:
    from transformers import PreTrainedModel


class CircuitWeights:
    """The vectors the virtual weights multiply, float32, from a loaded (or streamed) model's adapter."""

    def __init__(self, adapter: Adapter, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32):
        self.adapter, self.family = adapter, adapter.family
        self.device, self.dtype = torch.device(device), dtype
        self.blocks = list(getattr(getattr(adapter.model, self.family.base), self.family.blocks))
        self.centre = self.family.mlp_norm_kind == "layer"

    @property
    def reads(self) -> tuple[str, ...]:
        return tuple(v for v in READS if v in self.adapter.names)

    @property
    def layers(self) -> int:
        return self.adapter.num_layers

    def _put(self, t: torch.Tensor) -> torch.Tensor:
        return t.to(device=self.device, dtype=self.dtype)

    def gain(self, layer: int) -> torch.Tensor:
        """[hidden] the effective gain of the norm in front of ``layer``'s MLP (ones when it has none)."""
        block = self.blocks[layer]
        attr = self.family.mlp_norm_attr(block)
        weight = None if attr is None else parameter(self.adapter, getattr(block, attr))
        if weight is None:
            return torch.ones(self.adapter.hidden, device=self.device, dtype=self.dtype)
        return self._put(weight) + self.family.norm_shift

    def writes(self, layer: int) -> torch.Tensor:
        """[neurons, hidden] the down columns of ``layer``, centred for LayerNorm families."""
        return self.source(self._put(self.adapter.vectors(layer, "down")))

    def source(self, vectors: torch.Tensor) -> torch.Tensor:
        """What a LayerNorm reads of vectors written into the residual stream: their centred part."""
        return vectors - vectors.mean(dim=-1, keepdim=True) if self.centre else vectors

    def rows(self, layer: int, view: str) -> torch.Tensor:
        """[neurons, hidden] the ``view`` rows of ``layer`` as the MLP holds them (no gain)."""
        return self._put(self.adapter.vectors(layer, view))

    def read_rows(self, layer: int, view: str) -> torch.Tensor:
        """[neurons, hidden] the ``view`` rows of ``layer`` scaled by that layer's MLP-input gain: r_j ⊙ g."""
        return self.rows(layer, view) * self.gain(layer)

    def embedding(self) -> torch.Tensor:
        """[vocab, hidden] the input embedding as the first layer's norm reads it (centred for LayerNorms)."""
        embed = cast("PreTrainedModel", self.adapter.model).get_input_embeddings()
        weight = parameter(self.adapter, embed)
        if weight is None:
            raise ValueError(f"{self.adapter.arch}: the input embedding has no weight")
        return self.source(self._put(weight))


def virtual_weights(cw: CircuitWeights, source_layer: int, target_layer: int, view: str) -> torch.Tensor:
    """[source neurons, target neurons] w_ij from every neuron of ``source_layer`` to every ``view`` read of
    ``target_layer`` (which must come later)."""
    if not source_layer < target_layer:
        raise ValueError(f"layer {source_layer} does not feed layer {target_layer}")
    return cw.writes(source_layer) @ cw.read_rows(target_layer, view).T


def token_weights(
    cw: CircuitWeights, layer: int, view: str, neuron: int, top: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """(token ids, weights) of the ``top`` tokens by |E[t] · (g ⊙ r_j)|: what a neuron's read responds to
    directly in the input embedding (highest |weight| first)."""
    row = cw.read_rows(layer, view)[neuron]
    scores = cw.embedding() @ row
    order = scores.abs().topk(min(top, scores.numel())).indices
    return order, scores[order]
