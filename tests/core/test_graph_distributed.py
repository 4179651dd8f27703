"""The circuit graph over two processes (gloo, `circuit --devices cpu,cpu`): rank 0 commits every unit, the
fan-in shares of the ranks merge into the float64 top-k, and the stored graph equals one process's; a graph
stopped after one unit in one process is finished by two."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch

from neuroscope.cache.catalog import cache_path
from neuroscope.cache.edges import Edges
from neuroscope.cache.store import Store
from neuroscope.core.circuits.build import ensure_graph
from neuroscope.core.circuits.distributed import graph_distributed, merge_fan_ins
from neuroscope.core.loading.sources import resolve

from .test_circuits import LAYERS, build_circuit_model, check_graph, stop_after_one_unit


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return build_circuit_model("llama", tmp_path_factory.mktemp("graph-dist") / "llama")


def two_processes(folder, cache) -> None:
    cmd = [sys.executable, "-m", "neuroscope", "circuit", str(folder), "L1:N0", "--devices", "cpu,cpu"]
    cmd += ["--dtype", "float32", "--json", "--cache-dir", str(cache)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr


def graphs(path):
    with Store(path, readonly=True) as store:
        edges = Edges(store)
        out = {}
        for layer in range(LAYERS):
            for kind in ("in", "out", "tokens"):
                for via in ("gate", "up"):
                    got = edges.layer(layer, kind, via)
                    if got is not None:
                        out[(layer, kind, via)] = got
        return edges.spec, out


def test_two_ranks_store_the_same_graph_as_one(folder, tmp_path):
    source = resolve(str(folder))
    single = ensure_graph(source, cache_dir=tmp_path / "one", device="cpu")
    two_processes(folder, tmp_path / "two")
    [path] = (tmp_path / "two").glob("*.sqlite")
    spec_a, a = graphs(single.path)
    spec_b, b = graphs(path)
    assert sorted(spec_b["done"]) == list(range(1, LAYERS)) and spec_a["top"] == spec_b["top"]
    assert a.keys() == b.keys() and len(a) >= 2 * (LAYERS - 1)
    for key in a:
        np.testing.assert_array_equal(a[key].ids, b[key].ids, err_msg=str(key))
        np.testing.assert_array_equal(a[key].vias, b[key].vias, err_msg=str(key))
        np.testing.assert_allclose(a[key].weights, b[key].weights, rtol=1e-6, err_msg=str(key))
    check_graph(path, folder, "llama", spec_b["top"])  # and against the float64 products written in the test


def test_a_pass_stopped_in_one_process_is_finished_by_two(folder, tmp_path):
    source = resolve(str(folder))
    stop_after_one_unit(source, tmp_path)
    path = cache_path(source.name, source.source, source.fingerprint, tmp_path)
    with Store(path, readonly=True) as store:
        assert Edges(store).spec["done"] == [LAYERS - 1]
    # the stored spec says top 8: the CLI's default top differs, so resume through the builder itself
    result = graph_distributed(source, ["cpu", "cpu"], cache_dir=tmp_path, top=8, dtype=torch.float64)
    assert result.units_done == LAYERS - 2
    check_graph(path, folder, "llama", 8)


def test_fan_in_shares_merge_into_the_top_k():
    from neuroscope.cache.edges import Packed

    rng = np.random.default_rng(0)
    weights = rng.normal(size=(5, 12)).astype(np.float32)
    ids = np.arange(12, dtype=np.int32)[None, :].repeat(5, 0)
    vias = np.zeros((5, 12), np.int8)
    shares = [{"up": Packed(ids[:, s], vias[:, s], weights[:, s])} for s in (slice(0, 7), slice(7, 12))]
    got = merge_fan_ins(shares, 4)["up"]
    want = np.argsort(-np.abs(weights), axis=1)[:, :4]
    np.testing.assert_array_equal(got.ids, want)
    np.testing.assert_array_equal(got.weights, np.take_along_axis(weights, want, 1))
