"""A loaded model as the decoder, clamping and compare see it: its MLP layers and views, final norm and
LM head, found through the architecture registry (core.arch)."""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable

import torch
from torch import nn

from ...choices import VIEWS
from ...errors import UnsupportedModel
from ..arch import SUPPORTED, Family, by_model_type
from .sources import Source

if TYPE_CHECKING:
    from transformers import PreTrainedModel


@dataclass
class Adapter:
    """Where one architecture keeps its MLP weights, final norm and head."""

    arch: str
    model: nn.Module
    layers: list[nn.Module]  # each layer's MLP module
    names: dict[str, str]  # view -> attribute of the MLP module
    layouts: dict[str, str]  # view -> "rows" (weight[i] is neuron i) or "cols" (weight[:, i])
    final_norm: nn.Module
    head: nn.Linear  # every family's LM head (a quantized one subclasses it)
    down_name: str  # the module whose input is the neuron activation (for clamping)
    softcap: float | None = None
    fetch: Callable[..., torch.Tensor] | None = None  # streamed checkpoints: (layer, view, pin) -> one matrix
    # streamed and GGUF models: any other parameter by its module-tree name (e.g. model.embed_tokens.weight), read
    # from the file in the module's own convention; core.circuits reads the embedding and MLP-input norms with it
    read: Callable[[str], torch.Tensor] | None = None
    origin: str = ""  # where the weights were read from (named in damaged-file errors)
    family: Family = field(kw_only=True)  # the registry entry (core.arch)

    @property
    def views(self) -> list[str]:
        return [v for v in VIEWS if v in self.names]

    @property
    def num_layers(self) -> int:
        return len(self.layers)

    @property
    def neurons(self) -> int:
        return self._shape(0, "up")[0]

    @property
    def hidden(self) -> int:
        return self._shape(0, "up")[1]

    @property
    def vocab(self) -> int:
        return self.head.weight.shape[0]

    def _shape(self, layer: int, view: str) -> tuple[int, int]:
        rows, cols = getattr(self.layers[layer], self.names[view]).weight.shape  # works on 'meta' too
        return (rows, cols) if self.layouts[view] == "rows" else (cols, rows)

    def vectors(self, layer: int, view: str, pin: bool = False) -> torch.Tensor:
        """[neurons, hidden] weight vectors of one layer and view, in the stored dtype. From the module
        (a view, no copy), or read from the checkpoint when the model is streamed (``fetch``; ``pin``
        reads it into page-locked memory for a GPU)."""
        if view not in self.names:
            raise KeyError(view)
        weight = getattr(self.layers[layer], self.names[view]).weight
        if weight.is_meta and self.fetch is not None:
            weight = self.fetch(layer, view, pin)
        return weight if self.layouts[view] == "rows" else weight.t()


def parameter(adapter: Adapter, module: nn.Module, name: str = "weight") -> torch.Tensor | None:
    """One parameter of a module of the model: the module's own, or (on 'meta') read from the file; None when
    the module has no such parameter (OLMo's LayerNorms carry none)."""
    value = getattr(module, name, None)
    if value is None or not value.is_meta:
        return value
    if adapter.read is None:
        raise KeyError(name)
    full = next(f"{n}.{name}" for n, m in adapter.model.named_modules() if m is module)
    return adapter.read(full)


def adapter_for(model: PreTrainedModel) -> Adapter:
    """The registry entry's view of a transformers causal LM (core.arch says where everything is)."""
    config = model.config
    arch = getattr(config, "model_type", None) or type(model).__name__
    family = by_model_type(arch, type(model).__name__)
    base = getattr(model, family.base, None)
    blocks = getattr(base, family.blocks, None)
    head = model.get_output_embeddings()
    norm = getattr(base, family.final_norm, None)
    found = [getattr(block, family.mlp, None) for block in blocks or ()]
    mlps = [m for m in found if m is not None]
    if (
        head is None
        or norm is None
        or not mlps
        or len(mlps) < len(found)
        or not all(all(hasattr(m, attr) for attr in family.modules.values()) for m in mlps)
    ):
        raise UnsupportedModel(
            f"{arch}: its modules are not where neuroscope's '{family.name}' entry expects them; supported: {SUPPORTED}"
        )
    softcap = getattr(config, "final_logit_softcapping", None) or None
    return Adapter(
        arch, model, mlps, dict(family.modules), dict(family.layouts), norm, head, family.down, softcap, family=family
    )


@dataclass
class LoadedModel:
    source: Source
    model: nn.Module
    tokenizer: object
    adapter: Adapter

    def token_texts(self) -> list[str]:
        return token_texts(self.tokenizer, self.adapter.vocab)


def token_texts(tok, vocab: int) -> list[str]:
    """The text of every id the LM head scores (ids past the tokenizer get a placeholder)."""
    known = min(vocab, len(tok))
    pieces = tok.convert_ids_to_tokens(list(range(known)))
    texts = []
    for i, piece in enumerate(pieces):
        if piece is None:
            texts.append(f"<{i}>")
            continue
        try:
            texts.append(tok.convert_tokens_to_string([piece]))
        except Exception:  # a byte fragment some tokenizers cannot render alone
            texts.append(piece)
    texts.extend(f"<unused {i}>" for i in range(known, vocab))
    return texts


@dataclass
class DecodeModel:
    """What a decode needs: the adapter (MLP, final norm, head) and the vocabulary's texts."""

    source: Source
    adapter: Adapter
    texts: Callable[[], list[str]]

    def token_texts(self) -> list[str]:
        return self.texts()


def fp32_norm(adapter: Adapter, device: torch.device) -> nn.Module:
    """A float32 copy of the model's own final norm module on ``device`` (RMSNorm gains, LayerNorm bias,
    Gemma's 1+w all come with the module)."""
    return copy.deepcopy(adapter.final_norm).to(device=device, dtype=torch.float32)
