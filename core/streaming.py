"""Decode a safetensors checkpoint without instantiating the model.

The model's skeleton is built from its config on the 'meta' device (so the final norm is the model's own
module class, with its own epsilon and weight convention), then only the final norm and the LM head are
read from the checkpoint; each layer's MLP matrix is read from the memory-mapped file when the decoder
asks for it and dropped after. Peak memory is about the head + one MLP matrix + one chunk of logits.
Single files and sharded checkpoints (model.safetensors.index.json) both work.
"""
from __future__ import annotations

import json
import os
import struct
import threading
from concurrent.futures import ThreadPoolExecutor, wait
from pathlib import Path

import torch
from torch import nn

from .sources import Source


# Head names that older checkpoints store under another name (transformers renames them on load).
LEGACY_HEAD_NAMES = {"lm_head.weight": "embed_out.weight"}


PIECE = 32 << 20   # a tensor larger than this is read in pieces by parallel threads
READERS = min(8, os.cpu_count() or 1)
_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()

_DTYPES = {"F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
           "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8, "U8": torch.uint8,
           "BOOL": torch.bool}


class Checkpoint:
    """Tensor lookup over one or many safetensors files. Only headers are read up front; a tensor is
    read with plain file reads when asked (not memory-mapped, so pages already decoded do not stay in
    this process's resident memory)."""

    def __init__(self, folder: Path):
        index = folder / "model.safetensors.index.json"
        if index.is_file():
            files = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        else:
            files = ["model.safetensors"]
        self.entries: dict[str, tuple[Path, int, dict]] = {}
        for name in files:
            path = folder / name
            with open(path, "rb") as handle:
                (size,) = struct.unpack("<Q", handle.read(8))
                header = json.loads(handle.read(size))
            header.pop("__metadata__", None)
            for key, info in header.items():
                self.entries[key] = (path, 8 + size, info)

    def key(self, name: str) -> str | None:
        """The checkpoint key for a parameter name (some checkpoints drop the base-model prefix)."""
        if name in self.entries:
            return name
        short = name.split(".", 1)[1] if "." in name else name
        return short if short in self.entries else None

    def get(self, name: str, pin: bool = False) -> torch.Tensor:
        """One tensor, read into fresh memory (page-locked with ``pin``, for fast copies to a GPU). Large
        tensors are read in pieces by parallel threads: one thread copying out of the page cache
        is slower than a GPU decodes a layer."""
        key = self.key(name)
        if key is None:
            raise KeyError(name)
        path, base, info = self.entries[key]
        if info["dtype"] not in _DTYPES:
            raise KeyError(f"{key}: unsupported dtype {info['dtype']}")
        start, stop = info["data_offsets"]
        out = torch.empty(info["shape"], dtype=_DTYPES[info["dtype"]], pin_memory=pin)
        view = memoryview(out.view(-1).view(torch.uint8).numpy())
        if len(view) != stop - start:
            raise KeyError(f"{key}: shape and byte range disagree in {path.name}")
        pieces = [(a, min(a + PIECE, len(view))) for a in range(0, len(view), PIECE)] or [(0, 0)]
        fd = os.open(path, os.O_RDONLY)
        try:
            if len(pieces) == 1:
                _read(fd, view, base + start)
            else:
                jobs = [_readers().submit(_read, fd, view[a:b], base + start + a) for a, b in pieces]
                wait(jobs)  # every piece has stopped before the descriptor is closed
                for job in jobs:
                    job.result()
        except EOFError:
            raise KeyError(f"{key}: truncated checkpoint file {path.name}") from None
        finally:
            os.close(fd)
        return out


def _readers() -> ThreadPoolExecutor:
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(max_workers=READERS, thread_name_prefix="neuroscope-read")
        return _pool


def _read(fd: int, view: memoryview, offset: int) -> None:
    """Fill ``view`` from ``offset`` of the file (pread releases the GIL; short reads are continued)."""
    done = 0
    while done < len(view):
        n = os.preadv(fd, [view[done:]], offset + done)
        if n == 0:
            raise EOFError
        done += n


def has_safetensors(folder: Path) -> bool:
    return (folder / "model.safetensors").is_file() or (folder / "model.safetensors.index.json").is_file()


def _materialize(module: nn.Module, prefix: str, ckpt: Checkpoint, fallback: dict[str, str]) -> None:
    """Give ``module`` its real parameters from the checkpoint (buffers are recomputed by to_empty)."""
    module.to_empty(device="cpu")
    for name, param in list(module.named_parameters(recurse=False)):
        full = f"{prefix}.{name}"
        key = full if ckpt.key(full) else fallback.get(full)
        if key is None or ckpt.key(key) is None:
            raise KeyError(full)
        setattr(module, name, nn.Parameter(ckpt.get(key), requires_grad=False))


def load_streaming(source: Source, trust_remote_code: bool = False):
    """A DecodeModel whose MLP matrices are read from the checkpoint on demand."""
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    from .models import DecodeModel, LoadedModel, _quiet, adapter_for

    _quiet()
    folder = source.load_dir
    config = AutoConfig.from_pretrained(str(folder), trust_remote_code=trust_remote_code)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config, trust_remote_code=trust_remote_code)
    model.eval()
    adapter = adapter_for(model)
    ckpt = Checkpoint(folder)
    names = {id(m): n for n, m in model.named_modules()}
    head_key = f"{names[id(adapter.head)]}.weight"
    aliases = {head_key: LEGACY_HEAD_NAMES.get(head_key)}
    embed = model.get_input_embeddings()
    if ckpt.key(head_key) is None and getattr(config, "tie_word_embeddings", False) and embed is not None:
        aliases[head_key] = f"{names[id(embed)]}.weight"
    _materialize(adapter.final_norm, names[id(adapter.final_norm)], ckpt, {})
    _materialize(adapter.head, names[id(adapter.head)], ckpt, aliases)
    mlp_names = [names[id(m)] for m in adapter.layers]
    for mlp in mlp_names:  # every matrix must be there under the model's own name, or we load it whole
        for attr in adapter.names.values():
            if ckpt.key(f"{mlp}.{attr}.weight") is None:
                raise KeyError(f"{mlp}.{attr}.weight")

    def fetch(layer: int, view: str, pin: bool = False) -> torch.Tensor:
        return ckpt.get(f"{mlp_names[layer]}.{adapter.names[view]}.weight", pin=pin)

    adapter.fetch = fetch
    tokenizer = AutoTokenizer.from_pretrained(str(folder), trust_remote_code=trust_remote_code)
    texts = LoadedModel(source, model, tokenizer, adapter).token_texts
    return DecodeModel(source, adapter, texts)
