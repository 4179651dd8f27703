"""What a clamping experiment is, and every check of it that needs no model: torch-free.

The CLI, the app and the API build an :class:`Experiment` from what the user typed and call ``check``
before anything is loaded; ``check_model`` adds what the model's headers can tell (neuron ranges, the
context length, the chat template).
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields

from ..errors import GenerationError
from .clamp import PRESET_SETTINGS, ClampSet

MAX_NEW_TOKENS = 100_000
MAX_SAMPLES = 1000


@dataclass
class GenSettings:
    """Identical for the baseline and the clamped run."""

    max_new_tokens: int = 40
    temperature: float | None = None  # None: greedy (deterministic)
    top_p: float | None = None
    seed: int = 0
    chat: bool = False

    @property
    def sampling(self) -> bool:
        return self.temperature is not None and self.temperature > 0

    def check(self) -> "GenSettings":
        """Every setting in range (no torch needed, nothing loaded)."""
        if not 1 <= self.max_new_tokens <= MAX_NEW_TOKENS:
            raise GenerationError(f"--max-new-tokens must be between 1 and {MAX_NEW_TOKENS:,}")
        if self.temperature is not None and not 0 <= self.temperature <= 100:
            raise GenerationError("--temperature must be a number from 0 (greedy) to 100")
        if self.top_p is not None and not 0 < self.top_p <= 1:
            raise GenerationError("--top-p must be in (0, 1]")
        if not 0 <= self.seed < 2**63:
            raise GenerationError("--seed must be a whole number from 0 to 2**63 - 1")
        return self


@dataclass
class ClampRequest:
    """What the user asked for, as typed: the clamps and every setting, each None for the preset's (when
    ``preset`` names one) or else the default. neuroscope.clamping.experiment makes a checked Experiment of it;
    ``Model.experiment`` and ``Model.clamp`` take the same names as keyword arguments."""

    clamps: object = None  # {"L29:N808": 20}, "L29:N808=20" strings or Clamps (neuroscope.results)
    prompt: str | None = None
    target: str | None = None
    chat: bool | None = None
    samples: int | None = None
    max_new_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    seed: int | None = None
    mode: str | None = None  # core.clamp.MODES; given with a preset it applies to its clamps too
    positions: str | None = None  # core.clamp.POSITIONS
    preset: str | None = None
    concept: str | None = None  # adds a clamp for every neuron labelled with it
    strength: float | None = None
    min_mass: float | None = None

    @classmethod
    def of(cls, values, **overrides) -> "ClampRequest":
        """The request from a mapping that holds every field by name: a function's ``locals()`` (the API's
        keyword arguments) or ``vars(args)`` (the CLI's options); ``overrides`` replace some."""
        return cls(**{f.name: overrides[f.name] if f.name in overrides else values[f.name] for f in fields(cls)})

    def settings(self) -> dict:
        """The settings a preset keeps (core.clamp.PRESET_SETTINGS), as given."""
        return {key: getattr(self, key) for key in PRESET_SETTINGS}


@dataclass
class Experiment:
    """Everything the CLI and the app run: one prompt, baseline vs clamped, same settings."""

    prompt: str
    clamps: ClampSet
    settings: GenSettings
    target: str | None = None
    samples: int | None = None
    given: ClampSet | None = field(default=None, repr=False)  # the clamps typed or saved, before a concept's
    recipe: dict = field(default_factory=dict, repr=False)  # every setting, as settings_from gave it

    def preset(self) -> tuple[ClampSet, dict]:
        """What --save-preset writes: the clamps given (a concept's are found again when it re-runs, with the
        same strength and min-mass) and every setting, so that --preset NAME re-runs this experiment."""
        return (self.given if self.given is not None else self.clamps), dict(self.recipe)

    @property
    def settings_dict(self) -> dict:
        """The generation settings a report shows (the JSON's "settings")."""
        s = self.settings
        return {
            "positions": self.clamps.positions,
            "chat": s.chat,
            "samples": self.samples,
            "max_new_tokens": s.max_new_tokens,
            "temperature": s.temperature,
            "top_p": s.top_p,
            "seed": s.seed,
        }

    def check(self) -> "Experiment":
        """Everything that needs no model: the prompt, the target, the samples and the settings."""
        if not isinstance(self.prompt, str) or not self.prompt.strip():
            raise GenerationError("the prompt is empty: give --prompt TEXT")
        if self.target is not None and (not isinstance(self.target, str) or not self.target.strip()):
            raise GenerationError("--target is empty: give a word, e.g. --target dog")
        if self.samples is not None:
            if self.target is None:
                raise GenerationError("--samples counts replies that contain --target: give --target WORD too")
            if not 1 <= self.samples <= MAX_SAMPLES:
                raise GenerationError(f"--samples must be between 1 and {MAX_SAMPLES:,}")
        self.settings.check()
        return self

    def check_model(self, info) -> "Experiment":
        """What the model's headers (a core.loading.modelinfo.ModelInfo) can tell: ranges, context, chat template."""
        self.clamps.check(info.layers, info.neurons)
        info.check_new_tokens(self.settings.max_new_tokens)
        if self.settings.chat and not info.chat_template:
            raise GenerationError(
                f"{info.source.name} has no chat template: drop --chat and write the prompt out in full"
            )
        return self


def settings_from(given: dict, saved: dict, defaults: dict) -> dict:
    """Every preset setting: what the caller gave (not None), else what the preset saved, else the default.
    An option typed alongside --preset overrides the saved one."""
    return {
        key: given[key] if given.get(key) is not None else saved.get(key, defaults.get(key)) for key in PRESET_SETTINGS
    }
