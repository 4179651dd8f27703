import os

import pytest

import neuroscope

from .models import build, build_concept_llama

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ["NEUROSCOPE_CONFIG"] = os.devnull + ".no-config.toml"  # never the developer's own config.toml


@pytest.fixture(scope="session")
def model_dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    return {kind: build(kind, root / kind) for kind in ("llama", "gpt2", "neox")}


@pytest.fixture(scope="module")
def concept_model(tmp_path_factory):
    """The concept Llama of tests/models.py (planted "dog" neurons), decoded once per test module."""
    root = tmp_path_factory.mktemp("concepts")
    folder = build_concept_llama(root / "concept-llama")
    model = neuroscope.open(str(folder), cache_dir=root / "cache", device="cpu", dtype="float32", progress=False)
    model.decode()
    return folder, model


@pytest.fixture
def cache_dir(tmp_path):
    return tmp_path / "cache"


def pytest_collection_modifyitems(items):
    """Tests that compare the app's rendering with a stored picture carry the `snapshot` mark: the pictures
    belong to the Textual version they were made with (the lowest-versions run leaves them out)."""
    for item in items:
        if "snap_compare" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.snapshot)
