"""Load a model from a Source and expose its MLP neurons, final norm and LM head uniformly."""
from __future__ import annotations

import copy
import logging
import os
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

from .arch import SUPPORTED, Family, by_model_type
from .errors import DamagedModel, ModelLoadError, NeuroscopeError, UnsupportedModel, first_line
from .sources import Source

__all__ = ["SUPPORTED", "Adapter", "adapter_for", "load", "load_for_decode", "load_tokenizer", "reading"]


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
    origin: str = ""                 # where the weights were read from (named in damaged-file errors)
    family: Family | None = None     # the registry entry (core.arch)

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


def adapter_for(model: nn.Module) -> Adapter:
    """The registry entry's view of a transformers causal LM (core.arch says where everything is)."""
    config = model.config
    arch = getattr(config, "model_type", None) or type(model).__name__
    family = by_model_type(arch, type(model).__name__)
    base = getattr(model, family.base, None)
    blocks = getattr(base, family.blocks, None)
    head = model.get_output_embeddings()
    norm = getattr(base, family.final_norm, None)
    mlps = [getattr(block, family.mlp, None) for block in blocks or ()]
    if head is None or norm is None or not mlps or not all(
            m is not None and all(hasattr(m, attr) for attr in family.modules.values()) for m in mlps):
        raise UnsupportedModel(f"{arch}: its modules are not where neuroscope's '{family.name}' entry expects "
                               f"them; supported: {SUPPORTED}")
    softcap = getattr(config, "final_logit_softcapping", None) or None
    return Adapter(arch, model, mlps, dict(family.modules), dict(family.layouts), norm, head, family.down, softcap,
                   family=family)


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
        from .arch import by_gguf_arch

        gg = gguf_fast.GGUFFile(source.path)
        if by_gguf_arch(gg.fields.get("general.architecture")) is not None:
            _quiet()
            loaded = gguf_fast.load_for_decode(source, gg)
            loaded.adapter.origin = str(source.path)
            return loaded
    else:
        from . import streaming
        from .weights import has_safetensors

        if has_safetensors(source.load_dir):
            try:
                return streaming.load_streaming(source, trust_remote_code=trust_remote_code)
            except KeyError:  # a checkpoint whose names do not follow the model's: load it whole
                pass
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


@contextmanager
def reading(name: str):
    """A library (transformers, tokenizers, safetensors) reading the user's model files: whatever it raises
    means it could not read them, and becomes one line naming the model. Only the library call sits
    inside; neuroscope's own code around it keeps its tracebacks."""
    try:
        yield
    except NeuroscopeError:
        raise
    except Exception as exc:  # noqa: BLE001 - tokenizers raises bare Exception; see the docstring
        if "trust_remote_code" in str(exc):
            raise ModelLoadError(f"{name} needs its own code to load; rerun with --trust-remote-code if you "
                                 f"trust it") from None
        if "does not recognize this architecture" in str(exc):
            raise UnsupportedModel(f"unsupported architecture in {name}; supported: {SUPPORTED}") from None
        raise ModelLoadError(f"could not load {name}: {first_line(exc)}") from exc


TOKENIZER_JSON = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.json",
                  "added_tokens.json")


def load_tokenizer(source: Source, trust_remote_code: bool = False):
    """The model's tokenizer. Its JSON files are parsed first, so a damaged one is named in the error."""
    _quiet()
    import json

    from transformers import AutoTokenizer

    kwargs = {"gguf_file": source.path.name} if source.kind == "gguf" else {}
    for name in () if source.kind == "gguf" else TOKENIZER_JSON:
        path = source.load_dir / name
        if path.is_file():
            try:
                json.loads(path.read_bytes())
            except (ValueError, UnicodeDecodeError) as exc:
                raise DamagedModel(f"{path}: not valid JSON ({first_line(exc)})") from None
    with reading(f"{source.name}'s tokenizer ({source.load_dir})"):
        return AutoTokenizer.from_pretrained(str(source.load_dir), trust_remote_code=trust_remote_code, **kwargs)


def load(source: Source, trust_remote_code: bool = False, dtype: torch.dtype | str = "auto",
         tokenizer=None) -> LoadedModel:
    """Load model + tokenizer on the CPU through transformers. Safetensors are preferred; remote code
    runs only when ``trust_remote_code`` is given. Every weight must come from the checkpoint: a missing
    one (which transformers would fill with random numbers) is a DamagedModel."""
    _quiet()
    from transformers import AutoModelForCausalLM

    kwargs: dict = {"trust_remote_code": trust_remote_code}
    if source.kind == "gguf":
        kwargs["gguf_file"] = source.path.name
        dtype = torch.float32 if dtype == "auto" else dtype  # dequantized weights
    tokenizer = tokenizer or load_tokenizer(source, trust_remote_code)
    with reading(source.name):
        model, info = AutoModelForCausalLM.from_pretrained(str(source.load_dir), dtype=dtype,
                                                           output_loading_info=True, **kwargs)
    missing = sorted(info.get("missing_keys") or ())
    if missing:
        raise DamagedModel(f"{source.name}: {len(missing)} weight(s) missing from the checkpoint "
                           f"(first: {missing[0]})")
    model.eval()
    model.requires_grad_(False)
    adapter = adapter_for(model)
    adapter.origin = str(source.path)
    return LoadedModel(source, model, tokenizer, adapter)


def fp32_norm(adapter: Adapter, device: torch.device) -> nn.Module:
    """A float32 copy of the model's own final norm module on ``device`` (RMSNorm gains, LayerNorm bias,
    Gemma's 1+w all come with the module)."""
    return copy.deepcopy(adapter.final_norm).to(device=device, dtype=torch.float32)
