"""Decode a safetensors checkpoint without instantiating the model.

The model's skeleton is built from its config on the 'meta' device (so the final norm is the model's own
module class, with its own epsilon and weight convention), then only the final norm and the LM head are
read from the checkpoint; each layer's MLP matrix is read from the file when the decoder asks for it and
dropped after. Peak memory is about the head + one MLP matrix + one chunk of logits. Single files and
sharded checkpoints (model.safetensors.index.json) both work. Every tensor read must have the shape the
skeleton expects, so a config.json that disagrees with its weights is one clear line, not a crash later.
"""

from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor, wait
from pathlib import Path

import torch
from torch import nn

from ...errors import DamagedModel
from .adapter import DecodeModel, LoadedModel, adapter_for
from .reading import load_tokenizer, quiet, reading
from .sources import Source
from .weights import SafetensorsIndex, read_fd

PIECE = 32 << 20  # a tensor larger than this is read in pieces by parallel threads
READERS = min(8, os.cpu_count() or 1)
_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()

_DTYPES = {
    "F64": torch.float64,
    "F32": torch.float32,
    "F16": torch.float16,
    "BF16": torch.bfloat16,
    "I64": torch.int64,
    "I32": torch.int32,
    "I16": torch.int16,
    "I8": torch.int8,
    "U8": torch.uint8,
    "BOOL": torch.bool,
}


class Checkpoint:
    """Tensor reads over a checked safetensors index. A tensor is read with plain file reads when asked
    (not memory-mapped, so pages already decoded do not stay in this process's resident memory)."""

    def __init__(self, folder: Path):
        self.index = SafetensorsIndex(folder)
        self.entries = self.index.entries

    def key(self, name: str) -> str | None:
        return self.index.key(name)

    def get(self, name: str, pin: bool = False, shape: tuple[int, ...] | None = None) -> torch.Tensor:
        """One tensor, read into fresh memory (page-locked with ``pin``, for fast copies to a GPU); with
        ``shape``, DamagedModel unless it has that shape. Large tensors are read in pieces by parallel
        threads: one thread copying out of the page cache is slower than a GPU decodes a layer."""
        entry = self.index.entry(name)
        if entry is None:
            raise KeyError(name)
        if shape is not None and tuple(shape) != entry.shape:
            raise DamagedModel(
                f"{entry.path.name}: {name} has shape {list(entry.shape)}, config.json implies {list(shape)}"
            )
        if entry.dtype not in _DTYPES:
            raise DamagedModel(f"{entry.path.name}: {name} has dtype {entry.dtype}, which neuroscope cannot read")
        out = torch.empty(entry.shape, dtype=_DTYPES[entry.dtype], pin_memory=pin)
        # numpy's stubs give ndarray the buffer protocol (__buffer__) only from Python 3.12 on
        view = memoryview(out.view(-1).view(torch.uint8).numpy())  # type: ignore[arg-type]
        pieces = [(a, min(a + PIECE, len(view))) for a in range(0, len(view), PIECE)] or [(0, 0)]
        fd = os.open(entry.path, os.O_RDONLY)
        try:
            if len(pieces) == 1:
                read_fd(fd, view, entry.offset, entry.path)
            else:
                jobs = [_readers().submit(read_fd, fd, view[a:b], entry.offset + a, entry.path) for a, b in pieces]
                wait(jobs)  # every piece has stopped before the descriptor is closed
                for job in jobs:
                    job.result()
        finally:
            os.close(fd)
        return out


def _readers() -> ThreadPoolExecutor:
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(max_workers=READERS, thread_name_prefix="neuroscope-read")
        return _pool


def _materialize(module: nn.Module, prefix: str, ckpt: Checkpoint, fallback: dict[str, str | None]) -> None:
    """Give ``module`` its real parameters from the checkpoint (buffers are recomputed by to_empty)."""
    module.to_empty(device="cpu")
    for name, param in list(module.named_parameters(recurse=False)):
        full = f"{prefix}.{name}"
        key = full if ckpt.key(full) else fallback.get(full)
        if key is None or ckpt.key(key) is None:
            raise KeyError(full)
        setattr(module, name, nn.Parameter(ckpt.get(key, shape=tuple(param.shape)), requires_grad=False))


def load_streaming(source: Source, trust_remote_code: bool = False):
    """A DecodeModel whose MLP matrices are read from the checkpoint on demand. KeyError when the
    checkpoint's names do not follow the model's (the caller then loads it whole)."""
    quiet()
    folder = source.load_dir
    ckpt = Checkpoint(folder)
    with reading(source.name):
        from transformers import AutoConfig, AutoModelForCausalLM

        config = AutoConfig.from_pretrained(str(folder), trust_remote_code=trust_remote_code)
        with torch.device("meta"):
            model = AutoModelForCausalLM.from_config(config, trust_remote_code=trust_remote_code)
    model.eval()
    adapter = adapter_for(model)
    adapter.origin = str(folder)
    family = adapter.family
    names = {id(m): n for n, m in model.named_modules()}
    head_key = f"{names[id(adapter.head)]}.weight"
    aliases = {head_key: family.head_aliases.get(head_key)}
    embed = model.get_input_embeddings()
    if ckpt.key(head_key) is None and getattr(config, "tie_word_embeddings", False) and embed is not None:
        aliases[head_key] = f"{names[id(embed)]}.weight"
    _materialize(adapter.final_norm, names[id(adapter.final_norm)], ckpt, {})
    _materialize(adapter.head, names[id(adapter.head)], ckpt, aliases)
    shapes = {}
    for layer in range(adapter.num_layers):  # every matrix there under the model's own name, in its shape
        for view in adapter.views:
            name = family.weight_name(layer, view)
            entry = ckpt.index.entry(name)
            if entry is None:
                raise KeyError(name)
            shapes[(layer, view)] = tuple(getattr(adapter.layers[layer], adapter.names[view]).weight.shape)
            if entry.shape != shapes[(layer, view)]:
                raise DamagedModel(
                    f"{entry.path.name}: {name} has shape {list(entry.shape)}, config.json "
                    f"implies {list(shapes[(layer, view)])}"
                )

    def fetch(layer: int, view: str, pin: bool = False) -> torch.Tensor:
        return ckpt.get(family.weight_name(layer, view), pin=pin, shape=shapes[(layer, view)])

    def read(name: str) -> torch.Tensor:
        key = ckpt.key(name) or aliases.get(name) or (f"{names[id(embed)]}.weight" if name == head_key else None)
        if key is None or ckpt.key(key) is None:
            raise KeyError(name)
        return ckpt.get(key)

    adapter.fetch, adapter.read = fetch, read
    tokenizer = load_tokenizer(source, trust_remote_code)
    texts = LoadedModel(source, model, tokenizer, adapter).token_texts
    return DecodeModel(source, adapter, texts)
