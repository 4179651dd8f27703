"""Attention heads through the same lens as neurons. Head h of layer l reads the residual stream through the norm
in front of attention and writes W_O^h W_V^h (g ⊙ x̂) back: its OV circuit, a rank-d map of the residual stream
(d the head dimension). Its top singular directions say what it moves: each right singular vector v_k (in the
space the norm's input lives in, the gain folded in) is what it reads, scored against the input embedding as the
circuit's token weights are; each left singular vector u_k is what it writes, decoded through the final norm and
LM head as a neuron's down column is, in both signs (a singular pair's sign is arbitrary: (u, v) and (-u, -v) are
the same map, so "pos" pairs u with v and "neg" -u with -v).

The SVD is of the small d × d core: W_O^h = Q_o R_o and (W_V^h G)^T = Q_v R_v (QR), R_o R_v^T = U S V^T, so
u = Q_o U and v = Q_v V without forming the hidden × hidden product. The per-family layout of the value and
output projections comes from core.arch (``value``, ``value_layout``, ``attn_out``, ``attn_out_layout``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, cast

import numpy as np
import torch

from ...cache.heads import HeadLayer
from ..loading.adapter import Adapter, fp32_norm, parameter

if TYPE_CHECKING:
    from transformers import PreTrainedModel


@dataclass
class Direction:
    rank: int  # 0 = the largest singular value
    sigma: float
    writes: dict[str, list[tuple[int, float]]]  # direction -> (token id, probability), highest first
    reads: dict[str, list[tuple[int, float]]]  # direction -> (token id, embedding score), highest first


def _config_int(config, keys, default: int | None = None) -> int:
    for key in keys:
        value = getattr(config, key, None)
        if value:
            return int(value)
    if default is None:
        raise ValueError(f"the config has none of {', '.join(keys)}")
    return default


class HeadWeights:
    """Each head's value and output matrices and the attention-input gain of a loaded model, float64."""

    def __init__(self, adapter: Adapter, dtype: torch.dtype = torch.float64):
        self.adapter, self.family, self.dtype = adapter, adapter.family, dtype
        f = self.family
        self.blocks = list(getattr(getattr(adapter.model, f.base), f.blocks))
        config = adapter.model.config
        self.heads = _config_int(config, f.head_keys)
        self.kv_heads = _config_int(config, f.kv_head_keys, self.heads)
        self.centre = f.mlp_norm_kind == "layer"

    def _param(self, module, name: str = "weight") -> torch.Tensor:
        value = parameter(self.adapter, module, name)
        if value is None:
            raise ValueError(f"{self.adapter.arch}: {type(module).__name__} has no {name}")
        return value.to(self.dtype)

    def _attention(self, layer: int):
        return getattr(self.blocks[layer], self.family.attention)

    def gain(self, layer: int) -> torch.Tensor:
        norm = getattr(self.blocks[layer], self.family.attn_norm, None)
        weight = None if norm is None else parameter(self.adapter, norm)
        if weight is None:
            return torch.ones(self.adapter.hidden, dtype=self.dtype)
        return weight.to(self.dtype) + self.family.norm_shift

    def value(self, layer: int, head: int) -> torch.Tensor:
        """[d, hidden] W_V^h: head ``head``'s value rows."""
        w = self._param(getattr(self._attention(layer), self.family.value))
        layout, hidden = self.family.value_layout, self.adapter.hidden
        if layout == "gpt2_qkv":  # Conv1D [hidden, 3 * hidden]: x @ W, then q | k | v
            d = hidden // self.heads
            return w[:, 2 * hidden + head * d : 2 * hidden + (head + 1) * d].T
        if layout == "neox_qkv":  # Linear [3 * hidden, hidden], rows (head, q|k|v, d)
            return w.view(self.heads, 3, -1, hidden)[head, 2]
        d = w.shape[0] // self.kv_heads
        group = head // (self.heads // self.kv_heads)
        return w[group * d : (group + 1) * d]

    def output(self, layer: int, head: int) -> torch.Tensor:
        """[hidden, d] W_O^h: how head ``head``'s d values enter the residual stream."""
        w = self._param(getattr(self._attention(layer), self.family.attn_out))
        if self.family.attn_out_layout == "rows":  # Conv1D [heads * d, hidden]
            d = w.shape[0] // self.heads
            return w[head * d : (head + 1) * d].T
        d = w.shape[1] // self.heads
        return w[:, head * d : (head + 1) * d]

    def ov(self, layer: int, head: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(U [hidden, d], S [d], V [hidden, d]): the SVD of W_O^h W_V^h diag(g), largest first."""
        qo, ro = torch.linalg.qr(self.output(layer, head))
        qv, rv = torch.linalg.qr((self.value(layer, head) * self.gain(layer)).T)
        u, s, vh = torch.linalg.svd(ro @ rv.T)
        return qo @ u, s, qv @ vh.T


class Lens:
    """The decode's own float32 final norm + LM head (softcap and bias as it applies them) and the float64 input
    embedding (centred for LayerNorm families), made once and shared by every head of a model."""

    def __init__(self, hw: HeadWeights):
        adapter = hw.adapter
        self.norm = fp32_norm(adapter, torch.device("cpu"))
        self.head_w = adapter.head.weight.detach().float()
        bias = getattr(adapter.head, "bias", None)
        self.bias = None if bias is None else bias.detach().float()
        self.softcap = adapter.softcap
        embed = parameter(adapter, cast("PreTrainedModel", adapter.model).get_input_embeddings())
        if embed is None:
            raise ValueError(f"{adapter.arch}: the input embedding has no weight")
        emb = embed.to(hw.dtype)
        self.emb = emb - emb.mean(dim=-1, keepdim=True) if hw.centre else emb

    def writes(self, x: torch.Tensor) -> torch.Tensor:
        """[n, vocab] float64 token probabilities of n residual vectors through the final norm and LM head."""
        logits = self.norm(x.float()) @ self.head_w.T
        if self.bias is not None:
            logits = logits + self.bias
        if self.softcap:
            logits = torch.tanh(logits / self.softcap) * self.softcap
        return torch.softmax(logits.double(), dim=-1)

    def reads(self, v: torch.Tensor) -> torch.Tensor:
        """[n, vocab] embedding scores: each token's (centred) embedding row · v."""
        return v.to(self.emb.dtype) @ self.emb.T


@torch.inference_mode()
def decode_head(
    hw: HeadWeights, layer: int, head: int, ranks: int = 3, top: int = 10, lens: Lens | None = None
) -> list[Direction]:
    """The top ``ranks`` singular directions of a head's OV circuit: what each writes (final norm + LM head,
    softmax, top ``top`` tokens per sign) and what it reads (embedding rows · v, top ``top`` per sign)."""
    lens = lens or Lens(hw)
    u, s, v = hw.ov(layer, head)
    out = []
    for k in range(min(ranks, s.numel())):
        writes, reads = {}, {}
        for direction, sign in (("pos", 1.0), ("neg", -1.0)):
            p, i = lens.writes((sign * u[:, k]).unsqueeze(0))[0].topk(top)
            writes[direction] = [(int(a), float(b)) for a, b in zip(i, p)]
            w, j = lens.reads((sign * v[:, k]).unsqueeze(0))[0].topk(top)
            reads[direction] = [(int(a), float(b)) for a, b in zip(j, w)]
        out.append(Direction(k, float(s[k]), writes, reads))
    return out


@torch.inference_mode()
def decode_layer(hw: HeadWeights, layer: int, ranks: int, top: int, lens: Lens) -> HeadLayer:
    """Every head of ``layer`` at once, as the cache stores it: sigma [heads, ranks], and per side ids and
    values [heads, ranks, 2 (pos, neg), top]. A head of lower rank than ``ranks`` (never the case in practice:
    the rank is the head dimension) repeats its last direction."""
    us, vs, sigma = [], [], []
    for head in range(hw.heads):
        u, s, v = hw.ov(layer, head)
        pick = [min(k, s.numel() - 1) for k in range(ranks)]
        us.append(u[:, pick].T)
        vs.append(v[:, pick].T)
        sigma.append(s[pick])
    u, v = torch.stack(us), torch.stack(vs)  # [heads, ranks, hidden]
    signed_u = torch.stack([u, -u], dim=2).reshape(-1, u.shape[-1])  # [heads * ranks * 2, hidden]
    signed_v = torch.stack([v, -v], dim=2).reshape(-1, v.shape[-1])
    wp, wi = lens.writes(signed_u).topk(top, dim=-1)
    rw, ri = lens.reads(signed_v).topk(top, dim=-1)
    shape = (hw.heads, ranks, 2, top)
    return HeadLayer(
        torch.stack(sigma).numpy().astype(np.float32),
        wi.reshape(shape).numpy().astype(np.int32),
        wp.reshape(shape).numpy().astype(np.float32),
        ri.reshape(shape).numpy().astype(np.int32),
        rw.reshape(shape).numpy().astype(np.float32),
    )
