"""Read only what a decode needs from a GGUF file: MLP weights, final norm, LM head, token texts.

transformers' GGUF path converts the tokenizer and de-quantizes every tensor of the model (about 18 s
for the demo); a decode needs the MLP matrices, the final norm and the head. This module parses the
GGUF header itself (a small, documented format), de-quantizes just those tensors with the `gguf`
package's numpy kernels, and builds the model skeleton from transformers' own classes on the meta
device, so the final norm is the model's own module. Llama-family GGUFs only; others take the
transformers path (core.models.load).
"""
from __future__ import annotations

import mmap
import struct
from pathlib import Path

import numpy as np

_SCALARS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q", 12: "<d"}
FAST_ARCHS = ("llama",)


class GGUFFile:
    """Header, metadata and tensor index of a GGUF file, over a read-only memory map."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        with open(self.path, "rb") as handle:
            self.buf = mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ)
        if self.buf[:4] != b"GGUF":
            raise ValueError(f"{self.path} is not a GGUF file")
        version, n_tensors, n_kv = struct.unpack_from("<IQQ", self.buf, 4)
        if version < 2:
            raise ValueError(f"GGUF version {version} is too old")
        self.pos = 24
        self.fields: dict[str, object] = {}
        for _ in range(n_kv):
            key = self._string()
            (vtype,) = self._unpack("<I")
            self.fields[key] = self._value(vtype, keep=not key.startswith("tokenizer.ggml.merges"))
        self.tensors: dict[str, tuple[tuple[int, ...], int, int]] = {}
        for _ in range(n_tensors):
            name = self._string()
            (n_dims,) = self._unpack("<I")
            dims = struct.unpack_from(f"<{n_dims}Q", self.buf, self.pos)
            self.pos += 8 * n_dims
            qtype, offset = self._unpack("<IQ")
            self.tensors[name] = (tuple(dims), qtype, offset)
        align = int(self.fields.get("general.alignment", 32))
        self.data_start = (self.pos + align - 1) // align * align

    def _unpack(self, fmt: str):
        out = struct.unpack_from(fmt, self.buf, self.pos)
        self.pos += struct.calcsize(fmt)
        return out

    def _string(self) -> str:
        (n,) = struct.unpack_from("<Q", self.buf, self.pos)
        start = self.pos + 8
        self.pos = start + n
        return self.buf[start:self.pos].decode("utf-8", errors="replace")

    def _value(self, vtype: int, keep: bool = True):
        if vtype in _SCALARS:
            return self._unpack(_SCALARS[vtype])[0]
        if vtype == 8:
            return self._string()
        if vtype == 9:
            etype, count = self._unpack("<IQ")
            if etype in _SCALARS:
                size = struct.calcsize(_SCALARS[etype])
                arr = np.frombuffer(self.buf, _SCALARS[etype], count, self.pos) if keep else None
                self.pos += size * count
                return arr
            if etype == 8 and not keep:
                for _ in range(count):
                    (n,) = struct.unpack_from("<Q", self.buf, self.pos)
                    self.pos += 8 + n
                return None
            return [self._value(etype) for _ in range(count)]
        raise ValueError(f"unknown GGUF value type {vtype}")

    def tensor(self, name: str) -> np.ndarray:
        """De-quantized float32 array in PyTorch's [out, in] layout."""
        from gguf import GGML_QUANT_SIZES
        from gguf.quants import dequantize

        dims, qtype, offset = self.tensors[name]
        block, type_size = GGML_QUANT_SIZES[qtype]
        rows = int(np.prod(dims[1:])) if len(dims) > 1 else 1
        row_bytes = dims[0] // block * type_size
        raw = np.frombuffer(self.buf, np.uint8, rows * row_bytes, self.data_start + offset).reshape(rows, row_bytes)
        out = dequantize(raw, qtype) if qtype not in (0,) else raw.view(np.float32)
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
    tokens = gg.fields.get("tokenizer.ggml.tokens") or []
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
            if len(tok) == 6 and tok.startswith("<0x") and tok.endswith(">"):
                texts.append(bytes([int(tok[3:5], 16)]).decode("utf-8", errors="replace"))
            else:
                texts.append(tok.replace("\u2581", " "))
    texts = texts[:vocab]
    texts.extend(f"<unused {i}>" for i in range(len(texts), vocab))
    return texts


def supported(path: Path) -> bool:
    try:
        return GGUFFile(path).fields.get("general.architecture") in FAST_ARCHS
    except (OSError, ValueError):
        return False


def load_for_decode(source):
    """A DecodeModel with only MLP, final norm and head materialised (the rest stays on 'meta')."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from .models import DecodeModel, adapter_for

    gg = GGUFFile(source.path)
    f = gg.fields
    arch = f["general.architecture"]
    tied = "output.weight" not in gg.tensors
    embd = gg.tensors["token_embd.weight"][0]
    config = LlamaConfig(
        vocab_size=int(embd[1]), hidden_size=int(f[f"{arch}.embedding_length"]),
        intermediate_size=int(f[f"{arch}.feed_forward_length"]), num_hidden_layers=int(f[f"{arch}.block_count"]),
        num_attention_heads=int(f[f"{arch}.attention.head_count"]),
        num_key_value_heads=int(f.get(f"{arch}.attention.head_count_kv", f[f"{arch}.attention.head_count"])),
        rms_norm_eps=float(f.get(f"{arch}.attention.layer_norm_rms_epsilon", 1e-5)), tie_word_embeddings=tied,
    )
    with torch.device("meta"):
        model = LlamaForCausalLM(config)

    def put(module: torch.nn.Module, name: str) -> None:
        module.weight = torch.nn.Parameter(torch.from_numpy(gg.tensor(name).copy()), requires_grad=False)

    for i, layer in enumerate(model.model.layers):
        put(layer.mlp.up_proj, f"blk.{i}.ffn_up.weight")
        put(layer.mlp.gate_proj, f"blk.{i}.ffn_gate.weight")
        put(layer.mlp.down_proj, f"blk.{i}.ffn_down.weight")
    put(model.model.norm, "output_norm.weight")
    put(model.lm_head, "token_embd.weight" if tied else "output.weight")
    model.eval()
    adapter = adapter_for(model)
    return DecodeModel(source, adapter, lambda: token_texts(gg, adapter.vocab))
