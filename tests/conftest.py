import os

import pytest

from .models import build

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ["NEUROSCOPE_CONFIG"] = os.devnull + ".no-config.toml"   # never the developer's own config.toml


@pytest.fixture(scope="session")
def model_dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    return {kind: build(kind, root / kind) for kind in ("llama", "gpt2", "neox")}


@pytest.fixture
def cache_dir(tmp_path):
    return tmp_path / "cache"


def pytest_collection_modifyitems(items):
    """Tests that compare the app's rendering with a stored picture carry the `snapshot` mark: the pictures
    belong to the Textual version they were made with (the lowest-versions run leaves them out)."""
    for item in items:
        if "snap_compare" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.snapshot)
