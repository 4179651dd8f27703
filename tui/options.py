"""What the app runs with: where caches live, how to decode and load, the chat's defaults and the keymap
(from the command line and the user's config.toml, neuroscope.config)."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..api import Model
from ..core.loading.sources import Source

DEFAULT_PROMPT = "What is your favourite animal?"
MAX_NEW_TOKENS = 48


@dataclass
class Options:
    cache_dir: str | None = None
    device: str = "auto"
    dtype: str = "auto"
    trust_remote_code: bool = False
    chat_prompt: str = DEFAULT_PROMPT
    chat_max_new_tokens: int = MAX_NEW_TOKENS
    keymap: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_args(cls, args) -> "Options":
        config = getattr(args, "config", None)
        defaults = config.defaults if config is not None else {}
        return cls(
            cache_dir=getattr(args, "cache_dir", None),
            device=getattr(args, "device", "auto"),
            dtype=getattr(args, "dtype", "auto"),
            trust_remote_code=getattr(args, "trust_remote_code", False),
            chat_prompt=defaults.get("chat_prompt", DEFAULT_PROMPT),
            chat_max_new_tokens=defaults.get("chat_max_new_tokens", MAX_NEW_TOKENS),
            keymap=dict(config.keymap) if config is not None else {},
        )


def model_for(source: Source, options: Options, note=None, progress=False) -> Model:
    """The API's view of the model, with the app's options."""
    return Model(
        source,
        options.cache_dir,
        options.device,
        options.dtype,
        options.trust_remote_code,
        progress=progress,
        note=note,
    )
