"""Read only what a decode needs from a GGUF file: MLP weights, final norm, LM head, token texts.

transformers' GGUF path converts the tokenizer and de-quantizes every tensor of the model (about 18 s
for the demo); a decode needs the MLP matrices, the final norm and the head. This module parses the
GGUF header itself (a small, documented format), de-quantizes just those tensors with the `gguf`
package's numpy kernels, and builds the model skeleton from transformers' own classes on the meta
device, so the final norm is the model's own module. Every GGUF architecture an entry of the registry
names (core.arch: ``Family.gguf``: Llama, Qwen2/3, Gemma/Gemma2) is read here, with that entry's tensor names,
skeleton class and norm convention; others take the transformers path (core.loading.models.load).
"""

from __future__ import annotations

import mmap
import os
import struct
from pathlib import Path

import numpy as np

from ...errors import DamagedModel, UnsupportedModel, first_line
from ..arch import GGUFLayout, by_gguf_arch

_SCALARS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q", 12: "<d"}


class GGUFFile:
    """Header, metadata and tensor index of a GGUF file, over a read-only memory map. Every read is
    bounds-checked and every tensor's data must lie inside the file, so a truncated or garbled file is
    one DamagedModel line naming it, never a struct error."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        try:
            with open(self.path, "rb") as handle:
                size = os.fstat(handle.fileno()).st_size
                if size < 24:
                    raise self._damaged(f"truncated ({size} bytes)")
                self.buf = mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ)
        except OSError as exc:
            raise DamagedModel(f"{self.path}: cannot be read ({first_line(exc)})") from None
        if self.buf[:4] != b"GGUF":
            raise DamagedModel(f"{self.path} is not a GGUF file (no GGUF magic)")
        self.pos = 4
        version, n_tensors, n_kv = self._unpack("<IQQ")
        if not 2 <= version <= 3:
            raise self._damaged(f"unsupported GGUF version {version}")
        if n_kv > len(self.buf) // 12 or n_tensors > len(self.buf) // 24:
            raise self._damaged(f"garbled header ({n_kv:,} metadata entries, {n_tensors:,} tensors)")
        self.fields: dict[str, object] = {}
        for _ in range(n_kv):
            key = self._string()
            (vtype,) = self._unpack("<I")
            self.fields[key] = self._value(vtype, keep=not key.startswith("tokenizer.ggml.merges"))
        self.tensors: dict[str, tuple[tuple[int, ...], int, int]] = {}
        for _ in range(n_tensors):
            name = self._string()
            (n_dims,) = self._unpack("<I")
            if not 1 <= n_dims <= 4:
                raise self._damaged(f"tensor {name!r} has {n_dims} dimensions")
            dims = self._unpack(f"<{n_dims}Q")
            qtype, offset = self._unpack("<IQ")
            self.tensors[name] = (tuple(dims), qtype, offset)
        align = self.fields.get("general.alignment", 32)
        if not isinstance(align, int) or align < 1 or align & (align - 1) or align > 1 << 20:
            raise self._damaged(f"bad alignment {align!r}")
        self.data_start = (self.pos + align - 1) // align * align
        for name in self.tensors:
            self._extent(name)

    def _damaged(self, what: str) -> DamagedModel:
        return DamagedModel(f"{self.path}: damaged GGUF file: {what}")

    def _need(self, n: int) -> None:
        if n < 0 or self.pos + n > len(self.buf):
            raise self._damaged(f"truncated (byte {self.pos + n:,} of a {len(self.buf):,}-byte file is needed)")

    def _unpack(self, fmt: str):
        size = struct.calcsize(fmt)
        self._need(size)
        out = struct.unpack_from(fmt, self.buf, self.pos)
        self.pos += size
        return out

    def _string(self) -> str:
        (n,) = self._unpack("<Q")
        self._need(n)
        start = self.pos
        self.pos = start + n
        return self.buf[start : self.pos].decode("utf-8", errors="replace")

    def _value(self, vtype: int, keep: bool = True, depth: int = 0):
        if vtype in _SCALARS:
            return self._unpack(_SCALARS[vtype])[0]
        if vtype == 8:
            return self._string()
        if vtype == 9 and depth == 0:
            etype, count = self._unpack("<IQ")
            if etype in _SCALARS:
                size = struct.calcsize(_SCALARS[etype])
                self._need(size * count)
                arr = np.frombuffer(self.buf, _SCALARS[etype], count, self.pos) if keep else None
                self.pos += size * count
                return arr
            if count > len(self.buf) - self.pos:
                raise self._damaged(f"truncated or garbled (an array of {count:,} entries does not fit in the file)")
            if etype == 8 and not keep:
                for _ in range(count):
                    (n,) = self._unpack("<Q")
                    self._need(n)
                    self.pos += n
                return None
            return [self._value(etype, depth=depth + 1) for _ in range(count)]
        raise self._damaged(f"unknown metadata value type {vtype}")

    def _extent(self, name: str) -> tuple[int, int, int]:
        """(start byte, rows, bytes per row) of a tensor's data, checked against the file's size."""
        from gguf import GGML_QUANT_SIZES, GGMLQuantizationType

        dims, qtype, offset = self.tensors[name]
        if qtype not in GGML_QUANT_SIZES:
            raise self._damaged(f"tensor {name!r} has an unknown quantization type {qtype}")
        block, type_size = GGML_QUANT_SIZES[GGMLQuantizationType(qtype)]  # a known type: the check above
        if dims[0] % block:
            raise self._damaged(f"tensor {name!r}: row of {dims[0]} is not a whole number of {block}-blocks")
        rows = int(np.prod(dims[1:], dtype=object)) if len(dims) > 1 else 1
        row_bytes = dims[0] // block * type_size
        start = self.data_start + offset
        if start + rows * row_bytes > len(self.buf):
            raise self._damaged(
                f"truncated (tensor {name!r} needs bytes up to {start + rows * row_bytes:,}, "
                f"the file has {len(self.buf):,})"
            )
        return start, rows, row_bytes

    def tensor(self, name: str) -> np.ndarray:
        """De-quantized float32 array in PyTorch's [out, in] layout."""
        from gguf import GGMLQuantizationType
        from gguf.quants import dequantize

        dims, qtype, _ = self.tensors[name]
        start, rows, row_bytes = self._extent(name)
        raw = np.frombuffer(self.buf, np.uint8, rows * row_bytes, start).reshape(rows, row_bytes)
        out = dequantize(raw, GGMLQuantizationType(qtype)) if qtype not in (0,) else raw.view(np.float32)
        return np.asarray(out, np.float32).reshape(tuple(reversed(dims)))


def _byte_decoder() -> dict[str, int]:
    """Inverse of GPT-2's bytes_to_unicode table."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {chr(c): b for b, c in zip(bs, cs)}


def token_texts(gg: GGUFFile, vocab: int) -> list[str]:
    tokens = gg.fields.get("tokenizer.ggml.tokens")
    tokens = tokens if isinstance(tokens, list) and all(isinstance(t, str) for t in tokens) else []
    model = gg.fields.get("tokenizer.ggml.model", "gpt2")
    texts = []
    if model == "gpt2":
        table = _byte_decoder()
        for tok in tokens:
            try:
                texts.append(bytes(table[ch] for ch in tok).decode("utf-8", errors="replace"))
            except KeyError:  # special tokens such as <|im_start|> are not byte-mapped
                texts.append(tok)
    else:  # SentencePiece-style: '▁' is a space, <0xNN> a raw byte
        for tok in tokens:
            byte = tok[3:5] if len(tok) == 6 and tok.startswith("<0x") and tok.endswith(">") else ""
            if byte and all(c in "0123456789abcdefABCDEF" for c in byte):
                texts.append(bytes([int(byte, 16)]).decode("utf-8", errors="replace"))
            else:
                texts.append(tok.replace("\u2581", " "))
    texts = texts[:vocab]
    texts.extend(f"<unused {i}>" for i in range(len(texts), vocab))
    return texts


def _field_int(gg: GGUFFile, key: str) -> int:
    """A positive whole-number metadata field. A field holds what GGUFFile._value returns: an int, a
    float, a bool, a str, an array (ndarray or list) or None; only a positive int passes."""
    value = gg.fields.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise gg._damaged(f"metadata {key} is {'missing' if value is None else repr(value)}")
    return value


def _optional_field_int(gg: GGUFFile, key: str) -> int | None:
    return None if gg.fields.get(key) is None else _field_int(gg, key)


STANDARD = GGUFLayout(archs={})  # llama.cpp's tensor names, for architectures the reader does not take


def describe(gg: GGUFFile) -> dict:
    """Architecture, shape and tokenizer facts from the header alone; DamagedModel when the tensors do not
    agree with the metadata."""
    arch = gg.fields.get("general.architecture")
    if not isinstance(arch, str) or not arch:
        raise gg._damaged("no general.architecture")
    family = by_gguf_arch(arch)
    layout = family.gguf if family is not None and family.gguf is not None else STANDARD
    embd = gg.tensors.get(layout.embed)
    if embd is None or len(embd[0]) != 2:
        raise gg._damaged(f"no {layout.embed}")
    hidden, vocab = int(embd[0][0]), int(embd[0][1])
    layers, neurons = _field_int(gg, f"{arch}.block_count"), _field_int(gg, f"{arch}.feed_forward_length")
    info = {
        "arch": arch,
        "layers": layers,
        "neurons": neurons,
        "hidden": _field_int(gg, f"{arch}.embedding_length"),
        "vocab": vocab,
        "context": _optional_field_int(gg, f"{arch}.context_length"),
        "tied": layout.head not in gg.tensors,
        "chat_template": isinstance(gg.fields.get("tokenizer.chat_template"), str),
    }
    if info["hidden"] != hidden:
        raise gg._damaged(f"token_embd.weight is {hidden} wide, the metadata says {info['hidden']}")
    if layout is not STANDARD:  # the decode-only reader: every tensor it reads must be there, in its shape
        want: dict[str, tuple[int, ...]] = {
            name.format(i=i): (hidden, neurons) if view != "down" else (neurons, hidden)
            for i in range(layers)
            for view, name in layout.ffn.items()
        }
        want[layout.norm] = (hidden,)
        if not info["tied"]:
            want[layout.head] = (hidden, vocab)
        for name, dims in want.items():
            got = gg.tensors.get(name)
            if got is None:
                raise gg._damaged(f"tensor {name} is missing")
            if tuple(got[0]) != dims:
                raise gg._damaged(f"tensor {name} has dims {list(got[0])}, the metadata implies {list(dims)}")
    return info


def _metadata_number(gg: GGUFFile, key: str):
    value = gg.fields.get(key)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < float("inf"):
        raise gg._damaged(f"metadata {key} is {value!r}")
    return value


def skeleton(gg: GGUFFile, info: dict, layout: GGUFLayout):
    """The transformers causal LM of the file's architecture (the registry names its model_type), built from
    the GGUF metadata on the meta device: nothing is allocated until a module is given real weights."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    f, arch = gg.fields, info["arch"]
    heads = _field_int(gg, f"{arch}.attention.head_count")
    eps = f.get(f"{arch}.attention.layer_norm_rms_epsilon", 1e-5)
    if not isinstance(eps, float) or not 0 < eps < 1:
        raise gg._damaged(f"metadata {arch}.attention.layer_norm_rms_epsilon is {eps!r}")
    extra = {
        name: _metadata_number(gg, f"{arch}.{key}") for key, name in layout.metadata.items() if f"{arch}.{key}" in f
    }
    try:
        config = AutoConfig.for_model(
            layout.archs[arch],
            vocab_size=info["vocab"],
            hidden_size=info["hidden"],
            intermediate_size=info["neurons"],
            num_hidden_layers=info["layers"],
            num_attention_heads=heads,
            num_key_value_heads=_optional_field_int(gg, f"{arch}.attention.head_count_kv") or heads,
            rms_norm_eps=float(eps),
            tie_word_embeddings=info["tied"],
            **extra,
        )
    except ValueError as exc:  # a transformers too old to know the architecture
        raise UnsupportedModel(
            f"{gg.path}: this transformers cannot build a '{layout.archs[arch]}' model ({first_line(exc)})"
        ) from None
    with torch.device("meta"):
        return AutoModelForCausalLM.from_config(config)


def load_for_decode(source, gg: GGUFFile | None = None):
    """A DecodeModel with only MLP, final norm and head materialised (the rest stays on 'meta')."""
    import torch

    from .adapter import DecodeModel, adapter_for

    gg = gg or GGUFFile(source.path)
    info = describe(gg)
    family = by_gguf_arch(info["arch"])
    if family is None or family.gguf is None:
        raise UnsupportedModel(f"{gg.path}: no registry entry reads GGUF architecture '{info['arch']}'")
    layout = family.gguf
    model = skeleton(gg, info, layout)

    def put(module: torch.nn.Module, name: str, shift: float = 0.0) -> None:
        weight = torch.from_numpy(gg.tensor(name).copy())
        module.weight = torch.nn.Parameter(weight - shift if shift else weight, requires_grad=False)

    base = getattr(model, family.base)
    for i, block in enumerate(getattr(base, family.blocks)):
        for view, name in layout.ffn.items():
            put(getattr(getattr(block, family.mlp), family.modules[view]), name.format(i=i))
    put(getattr(base, family.final_norm), layout.norm, layout.norm_shift)
    put(getattr(model, family.head), layout.embed if info["tied"] else layout.head)
    model.eval()
    adapter = adapter_for(model)
    names = {f"{family.base}.{family.embed}.weight": (layout.embed, 0.0)}
    for i, block in enumerate(getattr(base, family.blocks)):
        attr = family.mlp_norm_attr(block)
        if attr is not None:
            names[f"{family.base}.{family.blocks}.{i}.{attr}.weight"] = (layout.mlp_norm.format(i=i), layout.norm_shift)
        at = f"{family.base}.{family.blocks}.{i}"  # attention heads (core.circuits.heads) read these three
        names[f"{at}.{family.attn_norm}.weight"] = (layout.attn_norm.format(i=i), layout.norm_shift)
        names[f"{at}.{family.attention}.{family.value}.weight"] = (layout.attn_v.format(i=i), 0.0)
        names[f"{at}.{family.attention}.{family.attn_out}.weight"] = (layout.attn_output.format(i=i), 0.0)

    def read(name: str) -> torch.Tensor:  # other tensors, in the skeleton module's convention (see put)
        if name not in names or names[name][0] not in gg.tensors:
            raise KeyError(name)
        return torch.from_numpy(gg.tensor(names[name][0]).copy()) - names[name][1]

    adapter.read = read
    return DecodeModel(source, adapter, lambda: token_texts(gg, adapter.vocab))
