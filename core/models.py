"""Load a model from a Source and expose its MLP neurons, final norm and LM head uniformly."""
from __future__ import annotations

import copy
import logging
import os
import warnings
from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

from .sources import Source

SUPPORTED = "Llama, Mistral, Qwen2/3, Gemma/Gemma2, SmolLM (gate/up/down MLPs), GPT-2, GPT-NeoX/Pythia"


class UnsupportedModel(Exception):
    """The architecture has no adapter; the message names what is supported."""


class ModelLoadError(Exception):
    """Loading failed; the message is one line for the user."""


@dataclass
class Adapter:
    """Where one architecture keeps its MLP weights, final norm and head."""

    arch: str
    model: nn.Module
    layers: list[nn.Module]          # each layer's MLP module
    names: dict[str, str]            # view -> attribute of the MLP module
    layouts: dict[str, str]          # view -> "rows" (weight[i] is neuron i) or "cols" (weight[:, i])
    final_norm: nn.Module
    head: nn.Module
    down_name: str                   # the module whose input is the neuron activation (for clamping)
    softcap: float | None = None
    fetch: Callable[..., torch.Tensor] | None = None   # streamed checkpoints: (layer, view, pin) -> one matrix

    @property
    def views(self) -> list[str]:
        return [v for v in ("up", "gate", "down") if v in self.names]

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


def _conv1d(module: nn.Module) -> bool:
    return type(module).__name__ == "Conv1D"  # GPT-2 stores weights as [in, out]


def adapter_for(model: nn.Module) -> Adapter:
    config = model.config
    arch = getattr(config, "model_type", type(model).__name__)
    head = model.get_output_embeddings()
    softcap = getattr(config, "final_logit_softcapping", None) or None
    base = getattr(model, getattr(model, "base_model_prefix", "model"), None)
    if head is None or base is None:
        raise UnsupportedModel(f"{arch} has no LM head; supported: {SUPPORTED}")
    if hasattr(base, "layers") and hasattr(base, "norm"):
        mlps = [layer.mlp for layer in base.layers] if all(hasattr(x, "mlp") for x in base.layers) else []
        if mlps and all(hasattr(m, n) for m in mlps for n in ("gate_proj", "up_proj", "down_proj")):
            return Adapter(arch, model, mlps, {"up": "up_proj", "gate": "gate_proj", "down": "down_proj"},
                           {"up": "rows", "gate": "rows", "down": "cols"}, base.norm, head, "down_proj", softcap)
    if hasattr(base, "h") and hasattr(base, "ln_f"):
        mlps = [block.mlp for block in base.h]
        if mlps and all(hasattr(m, "c_fc") and hasattr(m, "c_proj") for m in mlps):
            conv = _conv1d(mlps[0].c_fc)
            return Adapter(arch, model, mlps, {"up": "c_fc", "down": "c_proj"},
                           {"up": "cols" if conv else "rows", "down": "rows" if conv else "cols"},
                           base.ln_f, head, "c_proj", softcap)
    if hasattr(base, "layers") and hasattr(base, "final_layer_norm"):
        mlps = [layer.mlp for layer in base.layers]
        if mlps and all(hasattr(m, "dense_h_to_4h") and hasattr(m, "dense_4h_to_h") for m in mlps):
            return Adapter(arch, model, mlps, {"up": "dense_h_to_4h", "down": "dense_4h_to_h"},
                           {"up": "rows", "down": "cols"}, base.final_layer_norm, head, "dense_4h_to_h", softcap)
    raise UnsupportedModel(f"unsupported architecture '{arch}'; supported: {SUPPORTED}")


@dataclass
class LoadedModel:
    source: Source
    model: nn.Module
    tokenizer: object
    adapter: Adapter

    def token_texts(self) -> list[str]:
        """The text of every id the LM head scores (ids past the tokenizer get a placeholder)."""
        tok = self.tokenizer
        vocab = self.adapter.vocab
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
    texts: object  # () -> list[str]

    def token_texts(self) -> list[str]:
        return self.texts()


def load_for_decode(source: Source, trust_remote_code: bool = False):
    """The cheapest load that decodes exactly like the full model: Llama-family GGUF files de-quantize only
    the MLP, final norm and head (core.gguf_fast); safetensors checkpoints are streamed matrix by matrix
    (core.streaming); anything else loads the whole model through transformers."""
    if source.kind == "gguf":
        from . import gguf_fast

        if gguf_fast.supported(source.path):
            _quiet()
            return gguf_fast.load_for_decode(source)
    else:
        from . import streaming

        if streaming.has_safetensors(source.load_dir):
            try:
                return streaming.load_streaming(source, trust_remote_code=trust_remote_code)
            except KeyError:  # a checkpoint whose names do not follow the model's: load it whole
                pass
            except ValueError as exc:
                if "trust_remote_code" in str(exc):
                    raise ModelLoadError(f"{source.name} needs its own code to load; rerun with "
                                         f"--trust-remote-code if you trust it") from None
                raise
    return load(source, trust_remote_code=trust_remote_code)


def _quiet():
    """Silence transformers' progress bars and warnings during a load (our own bar reports progress)."""
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    logging.getLogger("transformers").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", module="transformers")


def load(source: Source, trust_remote_code: bool = False, dtype: torch.dtype | str = "auto") -> LoadedModel:
    """Load model + tokenizer on the CPU through transformers. Safetensors are preferred; remote code
    runs only when ``trust_remote_code`` is given."""
    _quiet()
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    kwargs: dict = {"trust_remote_code": trust_remote_code}
    if source.kind == "gguf":
        kwargs["gguf_file"] = source.path.name
        dtype = torch.float32 if dtype == "auto" else dtype  # dequantized weights
    where = str(source.load_dir)
    try:
        if source.kind != "gguf":
            AutoConfig.from_pretrained(where, trust_remote_code=trust_remote_code)
        tokenizer = AutoTokenizer.from_pretrained(where, **kwargs)
        model = AutoModelForCausalLM.from_pretrained(where, dtype=dtype, **kwargs)
    except (ModelLoadError, UnsupportedModel):
        raise
    except ValueError as exc:
        text = str(exc).splitlines()[0] if str(exc) else "ValueError"
        if "trust_remote_code" in str(exc):
            raise ModelLoadError(
                f"{source.name} needs its own code to load; rerun with --trust-remote-code if you trust it"
            ) from None
        if "does not recognize this architecture" in str(exc) or "Unrecognized" in text:
            raise UnsupportedModel(f"unsupported architecture in {source.name}; supported: {SUPPORTED}") from None
        raise ModelLoadError(f"could not load {source.name}: {text[:200]}") from None
    except (OSError, RuntimeError, KeyError, ImportError) as exc:
        text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelLoadError(f"could not load {source.name}: {text[:200]}") from None
    model.eval()
    model.requires_grad_(False)
    return LoadedModel(source, model, tokenizer, adapter_for(model))


def fp32_norm(adapter: Adapter, device: torch.device) -> nn.Module:
    """A float32 copy of the model's own final norm module on ``device`` (RMSNorm gains, LayerNorm bias,
    Gemma's 1+w all come with the module)."""
    return copy.deepcopy(adapter.final_norm).to(device=device, dtype=torch.float32)
