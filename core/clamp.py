"""Clamp MLP neurons: forward pre-hooks on the down projection, installed by a context manager that
always removes them. A neuron's activation is the down projection's input (SwiGLU: act(gate)*up;
GPT-2/NeoX: act(c_fc)), so a pre-hook there sees and replaces exactly that value.

This module imports torch only inside functions, so the app can build a ClampSet without torch.
"""

from __future__ import annotations

import json
import math
import re
import threading
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import BadClamp
from .refs import NeuronRef

MODES = ("set", "add", "scale")
POSITIONS = ("all", "generated")
MAX_VALUE = 1_000_000  # activations past this only overflow the model's arithmetic
_PRESET_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")

# One lock serialises every forward pass of every model: clamp hooks change shared module state, so
# a baseline run must never overlap a clamped one. Reentrant, so a clamped run may call helpers that
# take it again.
FORWARD_LOCK = threading.RLock()


@dataclass(frozen=True)
class Clamp:
    ref: NeuronRef
    value: float
    mode: str = "set"

    def __str__(self) -> str:
        return f"{self.ref}={self.value:g}"

    def as_dict(self) -> dict:
        return {"layer": self.ref.layer, "neuron": self.ref.neuron, "value": self.value, "mode": self.mode}

    @classmethod
    def parse(cls, text: str, mode: str = "set") -> "Clamp":
        """``L29:N808=8`` (or ``29:808=-4.5``)."""
        if mode not in MODES:
            raise BadClamp(f"unknown mode '{mode}': choose from {', '.join(MODES)}")
        neuron, sep, value = (text or "").partition("=")
        if not sep or not neuron.strip() or not value.strip():
            raise BadClamp(f"malformed --set '{text}': write NEURON=VALUE, e.g. L29:N808=8")
        ref = NeuronRef.parse(neuron)
        return cls(ref, parse_value(value, f"in --set '{text}'"), mode)


def parse_value(text: str, where: str = "") -> float:
    try:
        value = float(str(text).strip())
    except ValueError:
        raise BadClamp(f"value '{str(text).strip()}' is not a number{' ' + where if where else ''}") from None
    if not math.isfinite(value) or abs(value) > MAX_VALUE:
        raise BadClamp(
            f"value '{str(text).strip()}' must be a number between -{MAX_VALUE:,} and {MAX_VALUE:,}"
            f"{' ' + where if where else ''}"
        )
    return value


@dataclass
class ClampSet:
    clamps: list[Clamp] = field(default_factory=list)
    positions: str = "all"

    def __bool__(self) -> bool:
        return bool(self.clamps)

    def check(self, layers: int, neurons: int) -> "ClampSet":
        if self.positions not in POSITIONS:
            raise BadClamp(f"unknown positions '{self.positions}': choose from {', '.join(POSITIONS)}")
        for c in self.clamps:
            c.ref.check(layers, neurons)
        return self

    def by_layer(self) -> dict[int, list[Clamp]]:
        """Clamps grouped by layer; a neuron given twice keeps its last value."""
        out: dict[int, dict[int, Clamp]] = {}
        for c in self.clamps:
            out.setdefault(c.ref.layer, {})[c.ref.neuron] = c
        return {layer: list(d.values()) for layer, d in sorted(out.items())}

    def describe(self) -> str:
        modes = {c.mode for c in self.clamps}
        text = ", ".join(str(c) for c in self.clamps) or "no clamps"
        return f"{text} ({'/'.join(sorted(modes)) or 'set'}, {self.positions} positions)"

    def as_dict(self) -> dict:
        return {"clamps": [c.as_dict() for c in self.clamps], "positions": self.positions}

    @classmethod
    def from_dict(cls, data: dict) -> "ClampSet":
        try:
            clamps = [
                Clamp(NeuronRef(int(c["layer"]), int(c["neuron"])), parse_value(c["value"]), c.get("mode", "set"))
                for c in data["clamps"]
            ]
            positions = data.get("positions", "all")
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise BadClamp(f"malformed clamp set ({exc})") from None
        bad = [c.mode for c in clamps if c.mode not in MODES]
        if bad or positions not in POSITIONS:
            raise BadClamp(
                f"malformed clamp set (mode {bad[0]!r})" if bad else f"malformed clamp set (positions {positions!r})"
            )
        return cls(clamps, positions)


# -- hooks ------------------------------------------------------------------------------------
class _LayerHook:
    """Pre-hook state for one down projection: which neurons, what values, from which position."""

    def __init__(self, clamps: list[Clamp], start: int):
        self.clamps = clamps
        self.start = start  # first absolute position clamped (0 = all positions)
        self.seen = 0  # positions this layer has processed in this context (KV-cached runs)
        self._cache: dict = {}

    def _tensors(self, x):
        import torch

        key = (x.device, x.dtype)
        if key not in self._cache:
            groups = {}
            for mode in MODES:
                sel = [c for c in self.clamps if c.mode == mode]
                if sel:
                    idx = torch.tensor([c.ref.neuron for c in sel], device=x.device)
                    val = torch.tensor([c.value for c in sel], device=x.device, dtype=x.dtype)
                    groups[mode] = (idx, val)
            self._cache[key] = groups
        return self._cache[key]

    def __call__(self, module, args):
        x = args[0]
        length = x.shape[-2] if x.dim() >= 2 else 1
        first = self.seen
        self.seen += length
        skip = max(0, self.start - first)  # leading positions of this call left alone
        if skip >= length:
            return None
        x = x.clone()
        part = x[..., skip:, :] if x.dim() >= 2 else x
        for mode, (idx, val) in self._tensors(x).items():
            if mode == "set":
                part[..., idx] = val
            elif mode == "add":
                part[..., idx] += val
            else:
                part[..., idx] *= val
        return (x, *args[1:])


def down_module(adapter, layer: int):
    return getattr(adapter.layers[layer], adapter.down_name)


@contextmanager
def clamped(adapter, clamps: ClampSet | None, prompt_len: int = 0):
    """Install the clamps for the duration of the block, holding FORWARD_LOCK; the hooks are removed on
    every exit (normal, exception, cancellation). ``prompt_len`` matters for positions="generated": the
    prompt's positions before its last one are left alone (the last prompt position predicts the first
    generated token, so it is clamped). Positions are counted per call, so one block = one sequence run
    with a KV cache (or one full forward)."""
    with FORWARD_LOCK:
        handles = []
        try:
            if clamps:
                start = max(0, prompt_len - 1) if clamps.positions == "generated" else 0
                for layer, group in clamps.by_layer().items():
                    hook = _LayerHook(group, start)
                    handles.append(down_module(adapter, layer).register_forward_pre_hook(hook))
            yield
        finally:
            for handle in handles:
                handle.remove()


@contextmanager
def recording(adapter, refs: list[NeuronRef]):
    """Record the natural activation of ``refs`` (batch 0) during the block: yields {ref: [T] tensor}."""
    got: dict[NeuronRef, object] = {}
    with FORWARD_LOCK:
        handles = []
        try:
            by_layer: dict[int, list[NeuronRef]] = {}
            for ref in refs:
                by_layer.setdefault(ref.layer, []).append(ref)
            for layer, group in by_layer.items():

                def hook(module, args, group=group):
                    x = args[0].detach()
                    x = x[0] if x.dim() == 3 else x
                    for ref in group:
                        got[ref] = x[..., ref.neuron].float().cpu()

                handles.append(down_module(adapter, layer).register_forward_pre_hook(hook))
            yield got
        finally:
            for handle in handles:
                handle.remove()


def hooks_installed(adapter) -> int:
    """How many forward pre-hooks sit on the down projections (0 when nothing is clamped)."""
    return sum(len(down_module(adapter, i)._forward_pre_hooks) for i in range(adapter.num_layers))


# -- presets ------------------------------------------------------------------------------------
def presets_dir() -> Path:
    from ..cache.paths import data_dir  # honours $NEUROSCOPE_DATA_DIR

    return data_dir() / "presets"


def check_preset_name(name: str) -> str:
    """A preset name is a plain file stem: it can never name a path outside the presets folder."""
    if not isinstance(name, str) or not _PRESET_NAME.fullmatch(name):
        raise BadClamp(f"bad preset name '{name}': use letters, digits, '.', '_' or '-' (up to 64)")
    return name


def _preset_path(name: str) -> Path:
    return presets_dir() / f"{check_preset_name(name)}.json"


def save_preset(name: str, clamps: ClampSet, extra: dict | None = None) -> Path:
    path = _preset_path(name)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"name": name, **clamps.as_dict(), **(extra or {})}, indent=2), encoding="utf-8")
    tmp.replace(path)
    return path


# every setting of an experiment a preset keeps besides its clamps, and the JSON types each may have
PRESET_SETTINGS = {
    "prompt": (str,),
    "target": (str,),
    "chat": (bool,),
    "samples": (int,),
    "max_new_tokens": (int,),
    "temperature": (int, float),
    "top_p": (int, float),
    "seed": (int,),
    "concept": (str,),
    "strength": (int, float),
    "min_mass": (int, float),
}


def _check_settings(name: str, extra: dict) -> dict:
    for key, kinds in PRESET_SETTINGS.items():
        value = extra.get(key)
        if value is not None and (not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds)):
            raise BadClamp(
                f"preset '{name}' is unreadable ({key} is {json.dumps(value)[:40]}, not a "
                f"{'/'.join(k.__name__ for k in kinds)})"
            )
    return extra


def load_preset(name: str) -> tuple[ClampSet, dict]:
    """The saved ClampSet and the rest of the preset (prompt, target, chat, samples, max_new_tokens,
    temperature, top_p, seed, concept, strength, min_mass: those saved, each of its JSON type)."""
    path = _preset_path(name)
    if not path.is_file():
        have = sorted(p.stem for p in presets_dir().glob("*.json")) if presets_dir().is_dir() else []
        raise BadClamp(f"no preset named '{name}'" + (f"; saved: {', '.join(have)}" if have else ""))
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise BadClamp(f"preset '{name}' is unreadable ({exc})") from None
    if not isinstance(data, dict):
        raise BadClamp(f"preset '{name}' is unreadable (not a JSON object)")
    extra = {k: v for k, v in data.items() if k not in ("name", "clamps", "positions")}
    return ClampSet.from_dict(data), _check_settings(name, extra)
