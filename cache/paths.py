"""Where neuroscope keeps its files: caches (rebuildable), data (not rebuildable), config."""

from __future__ import annotations

import os
from pathlib import Path

ENV_CACHE_DIR = "NEUROSCOPE_CACHE_DIR"


def cache_dir(override: str | os.PathLike | None = None) -> Path:
    """The decode cache folder: --cache-dir, else $NEUROSCOPE_CACHE_DIR, else the platform cache dir."""
    if override:
        return Path(override).expanduser()
    env = os.environ.get(ENV_CACHE_DIR)
    if env:
        return Path(env).expanduser()
    import platformdirs

    return Path(platformdirs.user_cache_dir("neuroscope"))


ENV_DATA_DIR = "NEUROSCOPE_DATA_DIR"


def data_dir() -> Path:
    """Saved clamp sets and transcripts: things a user cannot rebuild ($NEUROSCOPE_DATA_DIR overrides)."""
    env = os.environ.get(ENV_DATA_DIR)
    if env:
        return Path(env).expanduser()
    import platformdirs

    return Path(platformdirs.user_data_dir("neuroscope"))
