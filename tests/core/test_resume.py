"""Interrupted decodes resume; changed weights are never served stale; concurrent decodes stay consistent."""

import json
import subprocess
import sys
import threading

import numpy as np
import pytest
import torch

from neuroscope.cache.catalog import cache_path
from neuroscope.cache.store import Store
from neuroscope.core.decode import Cancelled
from neuroscope.core.loading.sources import resolve
from neuroscope.core.options import DecodeRecipe
from neuroscope.core.pipeline import ensure_decoded

from ..models import build


def test_cancel_keeps_finished_units_and_resumes(model_dirs, cache_dir):
    source = resolve(str(model_dirs["llama"]))
    cancel = threading.Event()
    seen = []

    def on_unit(layer, view):
        seen.append((layer, view))
        if len(seen) == 2:
            cancel.set()

    with pytest.raises(Cancelled):
        ensure_decoded(
            source, DecodeRecipe(device="cpu", dtype="float32"), cache_dir=cache_dir, cancel=cancel, on_unit=on_unit
        )
    path = cache_path(source.name, source.source, source.fingerprint, cache_dir)
    with Store(path, readonly=True) as store:
        assert store.done_units() == set(seen)  # finished units committed, nothing partial
        assert not store.status()["complete"]
    result = ensure_decoded(source, DecodeRecipe(device="cpu", dtype="float32"), cache_dir=cache_dir)
    assert 2 <= len(seen) < 6
    assert result.decoded_units == 6 - len(seen)  # resumed, did not redo the finished units
    fresh = ensure_decoded(source, DecodeRecipe(device="cpu", dtype="float32"), cache_dir=cache_dir.parent / "fresh")
    with Store(result.path, readonly=True) as a, Store(fresh.path, readonly=True) as b:
        for layer in range(2):
            for view in ("up", "gate", "down"):
                np.testing.assert_array_equal(a.tops(layer, view, "neg")[0], b.tops(layer, view, "neg")[0])


def test_rebuilt_weights_get_a_new_cache(tmp_path, cache_dir):
    path = build("neox", tmp_path / "m", seed=1)
    first = ensure_decoded(resolve(str(path)), DecodeRecipe(device="cpu", dtype="float32"), cache_dir=cache_dir)
    build("neox", tmp_path / "m", seed=2)  # same path, new weights
    second = ensure_decoded(resolve(str(path)), DecodeRecipe(device="cpu", dtype="float32"), cache_dir=cache_dir)
    assert second.path != first.path and second.decoded_units == 4
    assert not first.path.exists(), "the stale cache must be removed"
    from safetensors.torch import load_file

    w = load_file(str(path / "model.safetensors"))
    with Store(second.path, readonly=True) as store:
        assert store.meta["fingerprint"] == resolve(str(path)).fingerprint
        ids, _ = store.tops(0, "up", "pos", 0, 1)
    # the cached top-1 matches the new weights, not the old
    v = w["gpt_neox.layers.0.mlp.dense_h_to_4h.weight"][0]
    ln = torch.nn.functional.layer_norm(
        v, (32,), w["gpt_neox.final_layer_norm.weight"], w["gpt_neox.final_layer_norm.bias"], 1e-5
    )
    assert int((w["embed_out.weight"] @ ln).argmax()) == int(ids[0, 0])


def test_two_processes_decoding_the_same_model(model_dirs, cache_dir):
    cmd = [
        sys.executable,
        "-m",
        "neuroscope",
        "decode",
        str(model_dirs["gpt2"]),
        "--cache-dir",
        str(cache_dir),
        "--device",
        "cpu",
        "--json",
    ]
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    files = list(cache_dir.glob("*.sqlite"))
    assert len(files) == 1
    # each of the 2 layers x 2 views was decoded by exactly one of the two processes: the sum of what they
    # report is 4 (a unit decoded twice would make it more, whatever the table's constraints do)
    assert sum(json.loads(out)["units_decoded"] for out, _ in outs) == 2 * 2
    with Store(files[0], readonly=True) as store:
        assert store.status()["complete"] and len(store.unit_log()) == 2 * 2


def test_two_process_gloo_decode_fills_the_same_cache(model_dirs, tmp_path):
    """--devices cpu,cpu spawns two ranks (gloo); rank 0 writes every unit, identical to one process."""
    single = ensure_decoded(
        resolve(str(model_dirs["llama"])), DecodeRecipe(device="cpu", dtype="float32"), cache_dir=tmp_path / "one"
    )
    cmd = [
        sys.executable,
        "-m",
        "neuroscope",
        "decode",
        str(model_dirs["llama"]),
        "--devices",
        "cpu,cpu",
        "--dtype",
        "float32",
        "--json",
        "--cache-dir",
        str(tmp_path / "two"),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    [path] = (tmp_path / "two").glob("*.sqlite")
    with Store(single.path, readonly=True) as a, Store(path, readonly=True) as b:
        assert b.status()["complete"] and b.meta["decoded_with"].startswith("2 x cpu")
        assert a.done_units() == b.done_units()
        for layer in range(2):
            for view in ("up", "gate", "down"):
                for d in ("pos", "neg"):
                    for x, y in zip(a.tops(layer, view, d), b.tops(layer, view, d)):
                        np.testing.assert_array_equal(x, y)


def test_one_cache_one_precision(model_dirs, cache_dir):
    """A resumed `--dtype auto` decode continues in the cache's own precision; an explicit other dtype
    decodes every view again, and says so; the cache is never served for a precision it does not hold."""
    from neuroscope.core.decode import dtype_name, pick_device, pick_dtype
    from neuroscope.core.pipeline import cached_views

    auto = dtype_name(pick_dtype("auto", pick_device("cpu")))
    first = "float32" if auto == "bfloat16" else "bfloat16"  # the precision auto would NOT pick here
    source = resolve(str(model_dirs["llama"]))
    cancel, seen = threading.Event(), []

    def on_unit(layer, view):
        seen.append((layer, view))
        cancel.set()

    with pytest.raises(Cancelled):
        ensure_decoded(
            source, DecodeRecipe(device="cpu", dtype=first), cache_dir=cache_dir, cancel=cancel, on_unit=on_unit
        )
    result = ensure_decoded(source, DecodeRecipe(device="cpu", dtype="auto"), cache_dir=cache_dir)
    with Store(result.path, readonly=True) as store:
        assert store.precision == first and store.status()["complete"]
        assert {with_ for _, _, with_ in store.unit_log()} == {f"cpu {first}"}  # no unit in another precision
    assert cached_views(result.path, [], 1, first) is not None and cached_views(result.path, [], 1, auto) is None
    notes = []
    again = ensure_decoded(source, DecodeRecipe(device="cpu", dtype=auto), cache_dir=cache_dir, note=notes.append)
    assert again.path == result.path and again.decoded_units == 6
    assert any(f"the cache holds {first} decodes" in n for n in notes)
    with Store(result.path, readonly=True) as store:
        assert store.precision == auto and {w for _, _, w in store.unit_log()} == {f"cpu {auto}"}


def test_a_locked_cache_is_reported_never_rebuilt(model_dirs, cache_dir, monkeypatch):
    """Another connection holds the cache locked past the busy timeout: the decode says so and the finished
    cache is left exactly as it was."""
    import sqlite3

    from neuroscope.cache import store as store_module
    from neuroscope.errors import CacheBusy

    source = resolve(str(model_dirs["neox"]))
    path = ensure_decoded(source, DecodeRecipe(device="cpu", dtype="float32"), cache_dir=cache_dir).path
    before = path.read_bytes()
    monkeypatch.setattr(store_module, "BUSY_TIMEOUT_S", 0.2)
    holder = sqlite3.connect(path)
    holder.execute("PRAGMA locking_mode = EXCLUSIVE")
    holder.execute("BEGIN EXCLUSIVE")
    try:
        with pytest.raises(CacheBusy, match="locked by another process"):
            ensure_decoded(source, DecodeRecipe(device="cpu", dtype="float32", top_k=20), cache_dir=cache_dir)
    finally:
        holder.rollback()
        holder.close()
    assert path.exists() and path.read_bytes() == before
