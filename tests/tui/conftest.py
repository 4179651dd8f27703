"""Fixtures for the app's tests: one tiny Llama per session, decoded once by the real engine."""

from __future__ import annotations

import asyncio
import inspect
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from tiny_model import PLANTED_LAYER, PLANTED_NEURON, PLANTED_TOKEN, build_tiny_llama


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem):
    """Run ``async def`` tests here with asyncio.run (no async plugin needed)."""
    if inspect.iscoroutinefunction(pyfuncitem.obj):
        args = {name: pyfuncitem.funcargs[name] for name in pyfuncitem._fixtureinfo.argnames}
        asyncio.run(pyfuncitem.obj(**args))
        return True
    return None


@dataclass
class TinyModel:
    folder: Path  # the saved model (config, safetensors, tokenizer)
    cache_dir: Path  # a cache folder holding its complete decode
    cache_file: Path
    planted: str = f"L{PLANTED_LAYER}:N{PLANTED_NEURON}"
    token: str = PLANTED_TOKEN


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> TinyModel:
    from neuroscope.core.loading.sources import resolve
    from neuroscope.core.options import DecodeRecipe
    from neuroscope.core.pipeline import ensure_decoded

    root = tmp_path_factory.mktemp("tui")
    folder = build_tiny_llama(root / "tiny-llama")
    cache_dir = root / "cache"
    result = ensure_decoded(resolve(str(folder)), DecodeRecipe(dtype="float32", device="cpu"), cache_dir=cache_dir)
    return TinyModel(folder, cache_dir, result.path)


@pytest.fixture
def app_factory(tiny_model):
    """Make a NeuroscopeApp on the decoded tiny model (or on another cache folder)."""
    from neuroscope.core.loading.sources import resolve
    from neuroscope.tui.app import NeuroscopeApp
    from neuroscope.tui.options import Options

    def make(cache_dir=None, folder=None):
        source = resolve(str(folder or tiny_model.folder))
        return NeuroscopeApp(
            source, Options(cache_dir=str(cache_dir or tiny_model.cache_dir), device="cpu", dtype="float32")
        )

    return make


@pytest.fixture
def empty_cache(tmp_path, tiny_model) -> Path:
    """A cache folder with nothing decoded in it (the app must decode in its worker)."""
    return tmp_path / "cache"


@pytest.fixture
def partial_cache(tmp_path, tiny_model) -> Path:
    """A copy of the complete cache: tests that write to a cache use this, never the shared one."""
    target = tmp_path / "cache"
    target.mkdir()
    shutil.copy(tiny_model.cache_file, target / tiny_model.cache_file.name)
    return target
