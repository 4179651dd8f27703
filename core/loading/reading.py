"""Calling transformers on the user's files: quiet, and with its failures turned into one line naming the
files (``reading``); the tokenizer, whose JSON files are parsed first so a damaged one is named."""

from __future__ import annotations

import logging
import os
import warnings
from contextlib import contextmanager

from ...errors import DamagedModel, ModelLoadError, NeuroscopeError, UnsupportedModel, first_line
from ..arch import SUPPORTED
from .sources import Source


def quiet():
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
    except Exception as exc:
        if "trust_remote_code" in str(exc):
            raise ModelLoadError(
                f"{name} needs its own code to load; rerun with --trust-remote-code if you trust it"
            ) from None
        if "does not recognize this architecture" in str(exc):
            raise UnsupportedModel(f"unsupported architecture in {name}; supported: {SUPPORTED}") from None
        raise ModelLoadError(f"could not load {name}: {first_line(exc)}") from exc


TOKENIZER_JSON = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "vocab.json",
    "added_tokens.json",
)


def load_tokenizer(source: Source, trust_remote_code: bool = False):
    """The model's tokenizer. Its JSON files are parsed first, so a damaged one is named in the error."""
    quiet()
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
