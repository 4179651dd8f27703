"""Sparse dictionaries (SAEs) in the SAELens folder format, read and checked without torch.

A folder holds ``cfg.json`` (``architecture`` standard / jumprelu / topk, ``d_in``, ``d_sae``, ``hook_name`` in
TransformerLens form ``blocks.L.hook_resid_pre|resid_mid|resid_post|mlp_out``, ``apply_b_dec_to_input``,
``normalize_activations``, and ``k`` for topk; newer SAELens releases keep the hook under ``metadata``) and
``sae_weights.safetensors`` (``W_enc`` [d_in, d_sae], ``b_enc`` [d_sae], ``W_dec`` [d_sae, d_in], ``b_dec``
[d_in], and ``threshold`` [d_sae] for jumprelu). :func:`open_dictionary` reads the config and the safetensors
header (the project's own reader, core.loading.weights), so a damaged or foreign folder is one line before
anything loads; :meth:`Dictionary.check` then holds it against a model's headers (its width, layer and hook
site, the site placed in the family's module tree by the registry, core.arch) before the model loads.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..choices import FEATURE_VIEWS
from ..errors import DamagedDictionary, DamagedModel, DictionaryMismatch, UsageError, first_line
from .arch import SITES, SitePoint, text_config
from .loading.modelinfo import ModelInfo
from .loading.weights import NUMPY, Entry, entry_rows, file_entries

CONFIG = "cfg.json"
WEIGHTS = "sae_weights.safetensors"
ARCHITECTURES = ("standard", "jumprelu", "topk")
NORMALIZE = ("none", "expected_average_only_in", "constant_norm_rescale", "layer_norm")  # SAELens's options
HOOK = re.compile(r"^blocks\.(\d+)\.hook_([a-z_]+)$")
MAX_WIDTH = 1 << 26  # d_in and d_sae: a real dictionary is at most a few million features wide


@dataclass(frozen=True)
class Hook:
    """A TransformerLens hook point: ``blocks.{layer}.hook_{site}``."""

    layer: int
    site: str  # one of core.arch.SITES

    @property
    def name(self) -> str:
        return f"blocks.{self.layer}.hook_{self.site}"

    @classmethod
    def parse(cls, text, where: str) -> "Hook":
        m = HOOK.fullmatch(text) if isinstance(text, str) else None
        if m is None:
            raise DamagedDictionary(
                f"{where}: hook_name {text!r} is not a TransformerLens hook (blocks.L.hook_resid_pre, "
                f"hook_resid_mid, hook_resid_post or hook_mlp_out)"
            )
        if m.group(2) not in SITES:
            raise DamagedDictionary(
                f"{where}: unknown hook site 'hook_{m.group(2)}' in {text!r}; neuroscope reads "
                f"{', '.join('hook_' + s for s in SITES)}"
            )
        return cls(int(m.group(1)), m.group(2))


@dataclass(frozen=True)
class SaeConfig:
    """What cfg.json says: the architecture, the widths, the hook, and how inputs are prepared."""

    architecture: str
    d_in: int
    d_sae: int
    hook: Hook
    apply_b_dec_to_input: bool = False
    normalize_activations: str = "none"
    k: int | None = None  # topk: the latents kept per token

    @classmethod
    def of(cls, cfg: dict, where: str) -> "SaeConfig":
        meta = _object(cfg, "metadata")
        arch = cfg.get("architecture", "standard")
        if arch not in ARCHITECTURES:
            raise DamagedDictionary(
                f"{where}: unknown architecture {arch!r}; neuroscope reads {', '.join(ARCHITECTURES)}"
            )
        d_in, d_sae = (_width(cfg, key, where) for key in ("d_in", "d_sae"))
        hook = Hook.parse(cfg.get("hook_name", meta.get("hook_name")), where)
        apply = cfg.get("apply_b_dec_to_input", False)
        if not isinstance(apply, bool):
            raise DamagedDictionary(f"{where}: apply_b_dec_to_input is {apply!r}, not true or false")
        norm = cfg.get("normalize_activations") or "none"
        if norm not in NORMALIZE:
            raise DamagedDictionary(
                f"{where}: unknown normalize_activations {norm!r}; SAELens writes {', '.join(NORMALIZE)}"
            )
        k = None
        if arch == "topk":
            k = cfg.get("k", _object(cfg, "activation_fn_kwargs").get("k"))
            if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= d_sae:
                raise DamagedDictionary(f"{where}: a topk dictionary needs k from 1 to d_sae ({d_sae}), not {k!r}")
        return cls(arch, d_in, d_sae, hook, apply, norm, k)


def _object(cfg: dict, key: str) -> dict:
    """A nested object of cfg.json (newer SAELens: ``metadata``; older topk: ``activation_fn_kwargs``), or {}."""
    value = cfg.get(key)
    return value if isinstance(value, dict) else {}


def _width(cfg: dict, key: str, where: str) -> int:
    value = cfg.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_WIDTH:
        raise DamagedDictionary(f"{where}: {key} is {value!r}, not a positive whole number")
    return value


@dataclass(frozen=True)
class Dictionary:
    """A SAELens dictionary folder, its config and the header entries of its tensors (nothing read yet)."""

    path: Path
    config: SaeConfig
    tensors: dict[str, Entry]

    @property
    def d_sae(self) -> int:
        return self.config.d_sae

    @property
    def hook(self) -> Hook:
        return self.config.hook

    def describe(self) -> dict:
        """The ``sae`` object of the JSON: where it is and what it is."""
        c = self.config
        return {"path": str(self.path), "architecture": c.architecture, "hook_name": c.hook.name, "d_sae": c.d_sae}

    def check(self, info: ModelInfo) -> SitePoint:
        """Its width, layer and hook site against the model's headers (nothing loads); the site's place in the
        model's module tree. DictionaryMismatch for one that does not fit."""
        c, name = self.config, info.source.name
        if c.d_in != info.shape.hidden:
            raise DictionaryMismatch(
                f"{self.path}: d_in is {c.d_in}, but {name}'s residual stream is {info.shape.hidden} wide"
            )
        if c.hook.layer >= info.layers:
            raise DictionaryMismatch(
                f"{self.path}: {c.hook.name} is out of range: {name} has layers 0-{info.layers - 1}"
            )
        point = info.family.site(c.hook.layer, c.hook.site, _parallel(info))
        if point is None:
            raise DictionaryMismatch(
                f"{self.path}: {name} has no {c.hook.name} (its attention and MLP read the block's input in parallel)"
            )
        return point

    def vector(self, feature: int, view: str) -> np.ndarray:
        """Feature ``feature``'s float64 vector [d_in]: its decoder row (``dec``, what it writes into the stream)
        or its encoder column (``enc``, what it reads)."""
        if view not in FEATURE_VIEWS:
            raise UsageError(f"unknown feature view {view!r}; choose {', '.join(FEATURE_VIEWS)}")
        entry = self.tensors["W_dec" if view == "dec" else "W_enc"]
        got = entry_rows(entry, [feature], "rows" if view == "dec" else "cols")
        assert got is not None  # open_dictionary checked its dtype and shape
        if not np.isfinite(got).all():
            raise DamagedDictionary(f"{entry.path}: feature {feature}'s {view} vector holds NaN or infinite values")
        return got[0]


def _parallel(info: ModelInfo) -> bool:
    """Whether the model's blocks run attention and the MLP side by side (the family's config key says)."""
    key = info.family.parallel_key
    if key is None or info.source.kind == "gguf":
        return False
    try:
        cfg = text_config(json.loads((info.source.load_dir / "config.json").read_text(encoding="utf-8")))
    except (OSError, ValueError):
        return False  # inspect_model read it already; a file changed since then fails at the load
    return bool(cfg.get(key, True))


def _shapes(c: SaeConfig) -> dict[str, tuple[int, ...]]:
    """The tensors a SAELens file of this config holds, in their shapes."""
    want = {"W_enc": (c.d_in, c.d_sae), "b_enc": (c.d_sae,), "W_dec": (c.d_sae, c.d_in), "b_dec": (c.d_in,)}
    return {**want, "threshold": (c.d_sae,)} if c.architecture == "jumprelu" else want


def open_dictionary(path) -> Dictionary:
    """The SAELens folder at ``path``, its cfg.json parsed and its safetensors header checked against it:
    DamagedDictionary (one line naming the file) for a missing, garbled or foreign one. Torch-free."""
    folder = Path(path)
    if not folder.is_dir():
        what = "does not exist" if not folder.exists() else "is a file"
        raise DamagedDictionary(f"--sae {folder} {what}: give a SAELens folder ({CONFIG} and {WEIGHTS})")
    where = folder / CONFIG
    try:
        cfg = json.loads(where.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DamagedDictionary(f"{folder} has no {CONFIG}: not a SAELens dictionary folder") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise DamagedDictionary(f"{where}: cannot be read ({first_line(exc)})") from None
    except ValueError as exc:
        raise DamagedDictionary(f"{where}: not valid JSON ({first_line(exc)})") from None
    if not isinstance(cfg, dict):
        raise DamagedDictionary(f"{where}: not a JSON object")
    config = SaeConfig.of(cfg, str(where))
    weights = folder / WEIGHTS
    if not weights.is_file():
        raise DamagedDictionary(f"{folder} has no {WEIGHTS}")
    try:
        tensors = file_entries(weights)
    except DamagedModel as exc:  # the reader's own words, as a dictionary's error
        raise DamagedDictionary(str(exc)) from None
    for name, shape in _shapes(config).items():
        entry = tensors.get(name)
        if entry is None:
            raise DamagedDictionary(f"{weights} has no {name} (a {config.architecture} dictionary needs it)")
        if entry.shape != shape:
            raise DamagedDictionary(f"{weights}: {name} has shape {list(entry.shape)}, {CONFIG} implies {list(shape)}")
        if entry.dtype not in NUMPY:
            raise DamagedDictionary(f"{weights}: {name} is {entry.dtype}, not a float type")
    return Dictionary(folder, config, tensors)
