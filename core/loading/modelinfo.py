"""What a model is, from its headers alone: architecture, shape, views, context, chat template. Torch-free.

``inspect_model`` reads config.json (or a GGUF header) and the safetensors headers, checks that they agree
(every MLP matrix, the final norm and the head present in the shape the config implies, every tensor's
bytes inside its file) and returns a :class:`ModelInfo`. The CLI, the app and the API check what the user
typed against it (neuron references, views, clamps, token counts) before any weight is loaded or any
decode starts, so a typo or a damaged file costs milliseconds, not a model load.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

from ...errors import DamagedModel, ModelNotFound, UsageError, first_line
from ..arch import Family, Shape, by_gguf_arch, by_model_type, config_shape, text_config
from ..refs import NeuronRef
from .sources import Source
from .weights import SafetensorsIndex, has_safetensors

TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "vocab.json", "tokenizer_config.json")
OTHER_WEIGHTS = ("*.bin", "*.pt", "*.pth")
LIMITS = {"layers": 100_000, "neurons": 10_000_000, "hidden": 1_000_000, "vocab": 100_000_000}


@dataclass(frozen=True)
class ModelInfo:
    source: Source
    family: Family
    arch: str  # config model_type, or the GGUF architecture
    shape: Shape
    chat_template: bool

    @property
    def views(self) -> tuple[str, ...]:
        return self.family.views

    @property
    def layers(self) -> int:
        return self.shape.layers

    @property
    def neurons(self) -> int:
        return self.shape.neurons

    def check_ref(self, ref: NeuronRef) -> NeuronRef:
        return ref.check(self.layers, self.neurons)

    def check_refs(self, refs: Iterable[NeuronRef]) -> None:
        for ref in refs:
            self.check_ref(ref)

    def check_views(self, views: Sequence[str] | None) -> list[str]:
        """The requested views in the model's order (default: all it has); UsageError for one it lacks."""
        missing = [v for v in views or () if v not in self.views]
        if missing:
            raise UsageError(f"{self.arch} has no '{missing[0]}' view; it has {', '.join(self.views)}")
        return [v for v in self.views if not views or v in views]

    def check_new_tokens(self, count: int) -> None:
        if self.shape.context is not None and count > self.shape.context:
            raise UsageError(
                f"--max-new-tokens {count} exceeds {self.source.name}'s context of {self.shape.context:,} tokens"
            )


def _read_json(path: Path, what: str) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise DamagedModel(f"{path}: cannot be read ({first_line(exc)})") from None
    except ValueError as exc:
        raise DamagedModel(f"{path}: not valid JSON ({first_line(exc)})") from None
    if not isinstance(data, dict):
        raise DamagedModel(f"{path}: {what} is not a JSON object")
    return data


def _plausible(shape: Shape, where: str) -> None:
    for key, limit in LIMITS.items():
        if getattr(shape, key) > limit:
            raise DamagedModel(f"{where}: {key} = {getattr(shape, key):,} is implausibly large")


def _check_checkpoint(folder: Path, family: Family, shape: Shape, cfg: dict) -> None:
    """Every MLP matrix, the final norm and the head are in the safetensors files in the config's shape."""
    index = SafetensorsIndex(folder)
    where = f"the safetensors checkpoint in {folder}"
    for layer in range(shape.layers):
        for view in family.views:
            name = family.weight_name(layer, view)
            entry = index.entry(name)
            rows = family.layouts[view] == "rows"
            want = (shape.neurons, shape.hidden) if rows else (shape.hidden, shape.neurons)
            if entry is None:
                raise DamagedModel(f"{where} has no {name} (config.json says {shape.layers} layers)")
            if entry.shape != want:
                raise DamagedModel(
                    f"{entry.path.name}: {name} has shape {list(entry.shape)}, config.json implies {list(want)}"
                )
    extra = family.weight_name(shape.layers, family.views[0])
    if index.entry(extra) is not None:
        raise DamagedModel(f"{where} has more layers than the {shape.layers} config.json says")
    head = index.entry(f"{family.head}.weight") or index.entry(family.head_aliases.get(f"{family.head}.weight", ""))
    if head is None and cfg.get("tie_word_embeddings", True):
        head = index.entry(f"{family.base}.{family.embed}.weight")
    if head is None:
        raise DamagedModel(f"{where} has no LM head ({family.head}.weight)")
    if head.shape != (shape.vocab, shape.hidden):
        raise DamagedModel(
            f"{head.path.name}: the LM head has shape {list(head.shape)}, config.json implies "
            f"{[shape.vocab, shape.hidden]}"
        )


def inspect_model(source: Source) -> ModelInfo:
    """Read and cross-check a model's headers; ModelNotFound / UnsupportedModel / DamagedModel otherwise."""
    if source.kind == "gguf":
        from .gguf_fast import GGUFFile, describe

        d = describe(GGUFFile(source.path))
        family = by_gguf_arch(d["arch"]) or by_model_type(d["arch"], str(source.path))
        shape = Shape(d["layers"], d["neurons"], d["hidden"], d["vocab"], d["context"])
        _plausible(shape, str(source.path))
        return ModelInfo(source, family, d["arch"], shape, d["chat_template"])
    folder = source.load_dir
    config_path = folder / "config.json"
    cfg = text_config(_read_json(config_path, "config.json"))
    family = by_model_type(cfg.get("model_type"), str(config_path))
    shape = config_shape(family, cfg, str(config_path))
    _plausible(shape, str(config_path))
    if has_safetensors(folder):
        _check_checkpoint(folder, family, shape, cfg)
    elif not any(next(folder.glob(p), None) for p in OTHER_WEIGHTS):
        raise ModelNotFound(f"{folder} has no weights (model.safetensors, a sharded index, or .bin files)")
    if not any((folder / name).is_file() for name in TOKENIZER_FILES):
        raise ModelNotFound(f"{folder} has no tokenizer files ({', '.join(TOKENIZER_FILES)})")
    chat = (folder / "chat_template.jinja").is_file() or (folder / "chat_template.json").is_file()
    tok_config = folder / "tokenizer_config.json"
    if tok_config.is_file():
        chat = chat or isinstance(_read_json(tok_config, "tokenizer_config.json").get("chat_template"), (str, list))
    return ModelInfo(source, family, str(cfg.get("model_type")), shape, chat)


def attention_heads(info: ModelInfo) -> int:
    """Attention heads per layer, from the headers alone (config.json's head count key, or the GGUF's
    ``<arch>.attention.head_count``); DamagedModel when they do not say."""
    source = info.source
    if source.kind == "gguf":
        from .gguf_fast import GGUFFile, _field_int

        return _field_int(GGUFFile(source.path), f"{info.arch}.attention.head_count")
    config_path = source.load_dir / "config.json"
    cfg = text_config(_read_json(config_path, "config.json"))
    for key in info.family.head_keys:
        value = cfg.get(key)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
    raise DamagedModel(f"{config_path}: no attention head count ({', '.join(info.family.head_keys)})")
