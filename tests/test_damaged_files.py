"""Damaged model files: every truncation is one line and exit 2, every byte flip is exit 0 or one line and
exit 2, never a traceback, and a failed command leaves nothing in the cache folder."""

from __future__ import annotations

import random
import shutil

import numpy as np
import pytest

from .fuzzing import run
from .gguf_models import build_gguf

CUTS = 20
FLIPS = 20


@pytest.fixture(scope="module")
def originals(model_dirs, tmp_path_factory):
    root = tmp_path_factory.mktemp("damaged")
    gguf = build_gguf(model_dirs["llama"], root / "tiny.gguf")
    return {"gguf": gguf, "folder": model_dirs["llama"]}


def damaged_copy(originals, which: str, dest, damage) -> str:
    """A copy of the model with one file damaged; returns the MODEL argument."""
    if which == "gguf":
        target = dest / "tiny.gguf"
        shutil.copy(originals["gguf"], target)
        model = target
    else:
        model = dest / "model"
        shutil.copytree(originals["folder"], model)
        target = model / which
    data = bytearray(target.read_bytes())
    target.write_bytes(damage(data))
    return str(model)


def cut_points(size: int, header: int) -> list[int]:
    """Half the cuts inside the header (where a parser can trip), half over the rest of the file."""
    inside = np.linspace(0, header - 1, CUTS // 2) if header else []
    return sorted({int(x) for x in (*inside, *np.linspace(header, size - 1, CUTS - len(inside)))})


def header_size(which: str, data: bytes, path) -> int:
    if which == "gguf":
        from neuroscope.core.loading.gguf_fast import GGUFFile

        return GGUFFile(path).data_start
    if which.endswith(".safetensors"):
        return 8 + int.from_bytes(data[:8], "little")
    return 0


def check(outcome, cache, must_fail: bool) -> None:
    """Truncations are found in the headers, before anything is made: the cache folder stays empty. Damage
    only the weights' values show (NaN) stops the decode at that layer: what was finished before is a
    valid partial cache, nothing else."""
    assert not outcome.problems(), outcome.problems()
    if must_fail:
        assert outcome.code == 2, (outcome.argv, outcome.stdout, outcome.stderr)
    if outcome.code == 2:
        line = outcome.stderr.strip().splitlines()[-1]
        assert line.startswith(f"neuroscope {outcome.argv[0]}: error:")
        left = sorted(p.name for p in cache.iterdir()) if cache.exists() else []
        if must_fail or "NaN" not in line:
            assert not left, f"a failed command left {left} in the cache folder"
        elif left:
            assert_partial(cache)


def assert_partial(cache) -> None:
    from neuroscope.cache.store import Store

    [path] = cache.glob("*.sqlite")
    with Store(path, readonly=True) as store:
        assert store.ready and store.integrity_ok() and not store.status()["complete"]


FILES = ["gguf", "model.safetensors", "config.json", "tokenizer.json"]


@pytest.mark.parametrize("command", ["decode", "clamp"])
@pytest.mark.parametrize("which", FILES)
def test_truncated_files(originals, tmp_path, which, command, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    path = originals["gguf"] if which == "gguf" else originals["folder"] / which
    data = path.read_bytes()
    size = len(data.rstrip()) if which.endswith(".json") else len(data)  # a trailing newline is no content
    named = 0
    for i, cut in enumerate(cut_points(size, header_size(which, data, path))):
        dest = tmp_path / f"cut{i}"
        dest.mkdir()
        model = damaged_copy(originals, which, dest, lambda data, cut=cut: bytes(data[:cut]))
        cache = dest / "cache"
        args = ["decode", model] if command == "decode" else [CLAMP[0], model, *CLAMP[1:]]
        outcome = run([*args, "--cache-dir", str(cache), "--device", "cpu", "--dtype", "float32"])
        check(outcome, cache, must_fail=True)
        named += (which if which != "gguf" else "tiny.gguf") in outcome.stderr
    assert named >= CUTS * 3 // 4, "most errors should name the damaged file"


CLAMP = ["clamp", "--set", "L1:N7=4", "--prompt", "dog t5", "--max-new-tokens", "2"]


@pytest.mark.parametrize("command", ["decode", "clamp"])
@pytest.mark.parametrize("which", FILES)
def test_flipped_bytes(originals, tmp_path, which, command, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("NEUROSCOPE_DATA_DIR", str(tmp_path / "data"))
    rng = random.Random(f"flip-{which}-{command}")
    codes = []
    for i in range(FLIPS):
        dest = tmp_path / f"flip{i}"
        dest.mkdir()

        def flip(data: bytearray) -> bytes:
            for _ in range(rng.choice([1, 1, 3, 20])):
                at = rng.randrange(len(data))
                data[at] ^= 1 << rng.randrange(8)
            return bytes(data)

        model = damaged_copy(originals, which, dest, flip)
        cache = dest / "cache"
        args = ["decode", model] if command == "decode" else [CLAMP[0], model, *CLAMP[1:]]
        outcome = run([*args, "--cache-dir", str(cache), "--device", "cpu", "--dtype", "float32"])
        check(outcome, cache, must_fail=False)
        codes.append(outcome.code)
    assert set(codes) <= {0, 2}


def test_nan_weights_are_named(originals, tmp_path):
    """A float32 weight turned NaN is named (one line, exit 2) when the unit that reads it comes up: the
    decode goes unit by unit (layer 0 up, gate, down, then layer 1 up, ...), so the NaN in layer 1's gate
    stops it after (1, "up") is written. That unit and every one before it are kept, with the tops an
    undamaged decode gives; nothing of layer 1's gate or down is written."""
    from safetensors.numpy import load_file, save_file

    from neuroscope.cache.store import Store
    from neuroscope.core.loading.sources import resolve
    from neuroscope.core.options import DecodeRecipe
    from neuroscope.core.pipeline import ensure_decoded

    model = tmp_path / "nan"
    shutil.copytree(originals["folder"], model)
    weights = load_file(str(model / "model.safetensors"))
    weights["model.layers.1.mlp.gate_proj.weight"][3, 5] = np.nan
    save_file(weights, str(model / "model.safetensors"))
    cache = tmp_path / "cache"
    outcome = run(["decode", str(model), "--cache-dir", str(cache), "--device", "cpu", "--dtype", "float32"])
    check(outcome, cache, must_fail=False)
    assert outcome.code == 2
    [error] = [line for line in outcome.stderr.splitlines() if "error" in line]  # one line, no traceback
    assert "Traceback" not in outcome.stderr and error.startswith("neuroscope decode: error:")
    assert "layer 1 gate weights hold NaN" in error and str(model) in error
    kept = {(0, "up"), (0, "gate"), (0, "down"), (1, "up")}
    clean = ensure_decoded(
        resolve(str(originals["folder"])), DecodeRecipe(device="cpu", dtype="float32"), cache_dir=tmp_path / "clean"
    )
    [path] = cache.glob("*.sqlite")
    with Store(path, readonly=True) as store, Store(clean.path, readonly=True) as want:
        assert store.done_units() == kept
        for layer, view in kept:
            for d in ("pos", "neg"):
                (ids, probs), (want_ids, want_probs) = store.tops(layer, view, d), want.tops(layer, view, d)
                np.testing.assert_array_equal(ids, want_ids)
                np.testing.assert_allclose(probs, want_probs, rtol=1e-6)
        for view in ("gate", "down"):
            assert all(store.tops(1, view, d) is None for d in ("pos", "neg"))


def test_gguf_decodes_like_its_safetensors(originals, tmp_path):
    from neuroscope.cache.store import Store
    from neuroscope.core.loading.sources import resolve
    from neuroscope.core.options import DecodeRecipe
    from neuroscope.core.pipeline import ensure_decoded

    a = ensure_decoded(resolve(str(originals["gguf"])), DecodeRecipe(device="cpu", dtype="float32"), cache_dir=tmp_path)
    b = ensure_decoded(
        resolve(str(originals["folder"])), DecodeRecipe(device="cpu", dtype="float32"), cache_dir=tmp_path
    )
    with Store(a.path, readonly=True) as x, Store(b.path, readonly=True) as y:
        for layer in range(2):
            for view in ("up", "gate", "down"):
                for d in ("pos", "neg"):
                    (ia, pa), (ib, pb) = x.tops(layer, view, d), y.tops(layer, view, d)
                    np.testing.assert_array_equal(ia, ib)
                    np.testing.assert_allclose(pa, pb, rtol=1e-5)
        assert x.top(1, 7, "up", "pos")[0].token == " dog"  # gpt2-style byte decoding of "Ġdog"
