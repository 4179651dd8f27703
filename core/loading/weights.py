"""Safetensors headers of a model folder, read and checked without torch.

One reader for everyone: the pre-load checks (core.inspect), the streamed decode (core.loading.streaming, which
reads tensors into torch) and compare's weight vectors (core.compare, which reads rows with numpy).
Opening a folder reads only the headers and checks that every tensor's bytes lie inside its file, so a
truncated or garbled checkpoint is one clear line before any work starts.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ...errors import DamagedModel, first_line

INDEX = "model.safetensors.index.json"
SINGLE = "model.safetensors"
MAX_HEADER = 256 << 20  # a real header is a few MB at most
ITEMSIZE = {
    "F64": 8,
    "F32": 4,
    "F16": 2,
    "BF16": 2,
    "I64": 8,
    "I32": 4,
    "I16": 2,
    "I8": 1,
    "U8": 1,
    "BOOL": 1,
    "F8_E4M3": 1,
    "F8_E5M2": 1,
    "U16": 2,
    "U32": 4,
    "U64": 8,
}
NUMPY = {"F64": np.float64, "F32": np.float32, "F16": np.float16, "BF16": np.uint16}


@dataclass(frozen=True)
class Entry:
    path: Path
    offset: int  # absolute byte offset of the tensor's data in its file
    nbytes: int
    dtype: str
    shape: tuple[int, ...]


def has_safetensors(folder: Path) -> bool:
    return (folder / SINGLE).is_file() or (folder / INDEX).is_file()


def _files(folder: Path) -> list[Path]:
    index = folder / INDEX
    if not index.is_file():
        return [folder / SINGLE]
    try:
        weight_map = json.loads(index.read_text(encoding="utf-8"))["weight_map"]
        names = sorted(set(weight_map.values()))
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise DamagedModel(f"{index}: not a readable safetensors index ({first_line(exc)})") from None
    if not names or not all(isinstance(n, str) and n and "/" not in n and n not in (".", "..") for n in names):
        raise DamagedModel(f"{index}: its weight_map names no usable shard files")
    missing = [n for n in names if not (folder / n).is_file()]
    if missing:
        raise DamagedModel(f"{index} names {missing[0]}, which is missing from {folder}")
    return [folder / n for n in names]


def _header(path: Path) -> tuple[int, dict]:
    size = path.stat().st_size
    with open(path, "rb") as handle:
        raw = handle.read(8)
        if len(raw) < 8:
            raise DamagedModel(f"{path}: truncated safetensors file ({size} bytes, no header)")
        length = int.from_bytes(raw, "little")
        if length > min(MAX_HEADER, size - 8):
            raise DamagedModel(
                f"{path}: truncated or garbled safetensors file (the header claims {length:,} "
                f"bytes, the file has {size:,})"
            )
        text = handle.read(length)
    try:
        header = json.loads(text)
    except ValueError as exc:
        raise DamagedModel(f"{path}: garbled safetensors header ({first_line(exc)})") from None
    if not isinstance(header, dict):
        raise DamagedModel(f"{path}: garbled safetensors header (not a JSON object)")
    return 8 + length, header


def _entry(path: Path, base: int, size: int, name: str, info) -> Entry:
    try:
        dtype, shape, (start, stop) = info["dtype"], tuple(info["shape"]), info["data_offsets"]
        ok = (
            isinstance(dtype, str)
            and all(isinstance(d, int) and d >= 0 for d in shape)
            and isinstance(start, int)
            and isinstance(stop, int)
            and 0 <= start <= stop
        )
    except (KeyError, TypeError, ValueError):
        ok = False
    if not ok:
        raise DamagedModel(f"{path}: garbled safetensors header entry for {name!r}")
    if dtype not in ITEMSIZE:
        raise DamagedModel(f"{path}: tensor {name!r} has an unknown dtype {dtype!r}")
    if stop - start != math.prod(shape) * ITEMSIZE[dtype]:
        raise DamagedModel(f"{path}: tensor {name!r}'s shape {list(shape)} does not match its byte range")
    if base + stop > size:
        raise DamagedModel(
            f"{path}: truncated (tensor {name!r} needs bytes up to {base + stop:,}, the file has {size:,})"
        )
    return Entry(path, base + start, stop - start, dtype, shape)


class SafetensorsIndex:
    """Every tensor of a folder's safetensors checkpoint (one file or sharded with an index)."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)
        self.entries: dict[str, Entry] = {}
        for path in _files(self.folder):
            self.entries.update(file_entries(path))

    def key(self, name: str) -> str | None:
        """The checkpoint key of a parameter name (some checkpoints drop the base-model prefix)."""
        if name in self.entries:
            return name
        short = name.split(".", 1)[1] if "." in name else name
        return short if short in self.entries else None

    def entry(self, name: str) -> Entry | None:
        key = self.key(name)
        return None if key is None else self.entries[key]

    def rows(self, name: str, index, layout: str) -> np.ndarray | None:
        """float64 vectors of one 2-D tensor: rows ``index`` (layout "rows") or columns (layout "cols"),
        read through a memory map; None when the tensor is missing or not a float type."""
        entry = self.entry(name)
        return None if entry is None else entry_rows(entry, index, layout)


def file_entries(path: Path) -> dict[str, Entry]:
    """Every tensor of one safetensors file, from its header alone (each one's bytes checked to lie inside the
    file); DamagedModel naming the file otherwise."""
    try:
        size = path.stat().st_size
        base, header = _header(path)
    except OSError as exc:
        raise DamagedModel(f"{path}: cannot be read ({first_line(exc)})") from None
    header.pop("__metadata__", None)
    return {name: _entry(path, base, size, name, info) for name, info in header.items()}


def entry_rows(entry: Entry, index, layout: str) -> np.ndarray | None:
    """float64 rows ``index`` (layout "rows") or columns (layout "cols") of one 2-D tensor, read through a
    memory map; None when it is not a 2-D float tensor."""
    if entry.dtype not in NUMPY or len(entry.shape) != 2:
        return None
    mm = np.memmap(entry.path, dtype=NUMPY[entry.dtype], mode="r", offset=entry.offset, shape=entry.shape)
    idx = np.asarray(index, dtype=np.int64)
    raw = np.asarray(mm[idx] if layout == "rows" else mm[:, idx].T)
    if entry.dtype == "BF16":
        raw = (raw.astype(np.uint32) << 16).view(np.float32)
    return raw.astype(np.float64)


def read_into(path: Path, view: memoryview, offset: int) -> None:
    """Fill ``view`` from ``offset`` of the file (pread releases the GIL; short reads are continued)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        read_fd(fd, view, offset, path)
    finally:
        os.close(fd)


def read_fd(fd: int, view: memoryview, offset: int, path: Path) -> None:
    done = 0
    while done < len(view):
        n = os.preadv(fd, [view[done:]], offset + done)
        if n == 0:
            raise DamagedModel(f"{path}: truncated while reading (the file shrank after its header was checked)")
        done += n
