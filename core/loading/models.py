"""Load a model from a Source: the cheapest load that decodes exactly like the full model
(``load_for_decode``), or the whole model with its tokenizer (``load``)."""

from __future__ import annotations

import contextlib
import io
from typing import TYPE_CHECKING, cast

import torch

from ...errors import DamagedModel
from ..arch import SUPPORTED
from .adapter import Adapter, DecodeModel, LoadedModel, adapter_for, fp32_norm
from .reading import load_tokenizer, quiet, reading
from .sources import Source

if TYPE_CHECKING:
    from transformers import PreTrainedModel

__all__ = [
    "SUPPORTED",
    "Adapter",
    "DecodeModel",
    "LoadedModel",
    "adapter_for",
    "fp32_norm",
    "load",
    "load_for_decode",
    "load_tokenizer",
    "reading",
]


def load_for_decode(source: Source, trust_remote_code: bool = False):
    """The cheapest load that decodes exactly like the full model: Llama-family GGUF files de-quantize only
    the MLP, final norm and head (core.loading.gguf_fast); safetensors checkpoints are streamed matrix by matrix
    (core.loading.streaming); anything else loads the whole model through transformers."""
    if source.kind == "gguf":
        from ..arch import by_gguf_arch
        from . import gguf_fast

        gg = gguf_fast.GGUFFile(source.path)
        arch = gg.fields.get("general.architecture")  # a string in every GGUF file that names one
        if by_gguf_arch(arch if isinstance(arch, str) else None) is not None:
            quiet()
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


def load(
    source: Source, trust_remote_code: bool = False, dtype: torch.dtype | str = "auto", tokenizer=None
) -> LoadedModel:
    """Load model + tokenizer on the CPU through transformers. Safetensors are preferred; remote code
    runs only when ``trust_remote_code`` is given. Every weight must come from the checkpoint: a missing
    one (which transformers would fill with random numbers) is a DamagedModel."""
    quiet()
    from transformers import AutoModelForCausalLM

    kwargs: dict = {"trust_remote_code": trust_remote_code}
    if source.kind == "gguf":
        kwargs["gguf_file"] = source.path.name
        dtype = torch.float32 if dtype == "auto" else dtype  # dequantized weights
    tokenizer = tokenizer or load_tokenizer(source, trust_remote_code)
    # transformers' GGUF conversion draws a tqdm bar of its own that no setting turns off: it goes nowhere
    hush = contextlib.redirect_stderr(io.StringIO()) if source.kind == "gguf" else contextlib.nullcontext()
    with reading(source.name), hush:
        # with output_loading_info transformers returns (model, info); its annotation names only the model
        model, info = cast(
            "tuple[PreTrainedModel, dict]",
            AutoModelForCausalLM.from_pretrained(str(source.load_dir), dtype=dtype, output_loading_info=True, **kwargs),
        )
    missing = sorted(info.get("missing_keys") or ())
    if missing:
        raise DamagedModel(f"{source.name}: {len(missing)} weight(s) missing from the checkpoint (first: {missing[0]})")
    model.eval()
    model.requires_grad_(False)
    adapter = adapter_for(model)
    adapter.origin = str(source.path)
    return LoadedModel(source, model, tokenizer, adapter)
