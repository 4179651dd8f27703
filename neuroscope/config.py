"""The user's config.toml: defaults for every command and the app's keymap.

It lives in ``platformdirs.user_config_dir("neuroscope")`` (``~/.config/neuroscope/config.toml`` on Linux),
or wherever ``$NEUROSCOPE_CONFIG`` points. Both tables are optional::

    [defaults]                 # used when the command line does not say
    cache_dir = "/scratch/neuroscope"
    device = "cuda"
    dtype = "bfloat16"
    chat_prompt = "What is your favourite animal?"
    chat_max_new_tokens = 64

    [keymap]                   # binding id = keys (comma-separated), as in `neuroscope tui`'s help
    "view.gate" = "G"
    "filter" = "slash,f"

A file that is not TOML, an unknown default or a value of the wrong type is one line naming the file.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from .core.options import check_device_name, check_dtype
from .errors import UsageError

ENV = "NEUROSCOPE_CONFIG"
DEFAULTS = {"cache_dir": str, "device": str, "dtype": str, "chat_prompt": str, "chat_max_new_tokens": int}


@dataclass(frozen=True)
class Config:
    path: Path | None = None
    defaults: dict = field(default_factory=dict)
    keymap: dict = field(default_factory=dict)


def config_path() -> Path:
    if os.environ.get(ENV):
        return Path(os.environ[ENV]).expanduser()
    import platformdirs

    return Path(platformdirs.user_config_dir("neuroscope")) / "config.toml"


def load(path: Path | None = None) -> Config:
    """The config (empty when the file does not exist); UsageError naming the file when it is wrong."""
    path = path or config_path()
    if not path.is_file():
        return Config(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise UsageError(f"{path}: not a readable TOML file ({exc})") from None
    unknown = sorted(set(data) - {"defaults", "keymap"})
    if unknown:
        raise UsageError(f"{path}: unknown table [{unknown[0]}]; it may hold [defaults] and [keymap]")
    defaults, keymap = data.get("defaults", {}), data.get("keymap", {})
    if not isinstance(defaults, dict) or not isinstance(keymap, dict):
        raise UsageError(f"{path}: [defaults] and [keymap] must be tables")
    for key, value in defaults.items():
        kind = DEFAULTS.get(key)
        if kind is None:
            raise UsageError(f"{path}: unknown default {key!r}; known: {', '.join(DEFAULTS)}")
        if not isinstance(value, kind) or isinstance(value, bool):
            raise UsageError(f"{path}: default {key} must be a {kind.__name__}, not {value!r}")
    for key, check in (("device", check_device_name), ("dtype", check_dtype)):
        if key in defaults:
            try:
                check(defaults[key])
            except UsageError as exc:
                raise UsageError(f"{path}: default {exc}") from None
    for key, value in keymap.items():
        if not isinstance(value, str) or not value.strip():
            raise UsageError(f'{path}: keymap {key!r} must be a string of keys, e.g. "ctrl+g" or "j,down"')
    return Config(path, dict(defaults), {k: v.replace(" ", "") for k, v in keymap.items()})


def apply_defaults(args, config: Config) -> None:
    """Fill the options the user did not give on the command line from [defaults]."""
    d = config.defaults
    if getattr(args, "cache_dir", None) is None and "cache_dir" in d and not os.environ.get("NEUROSCOPE_CACHE_DIR"):
        args.cache_dir = d["cache_dir"]
    for key in ("device", "dtype"):
        if getattr(args, key, None) == "auto" and key in d:
            setattr(args, key, d[key])
