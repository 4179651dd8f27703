"""`neuroscope export MODEL --what edges` and `Model.export(what="edges")`: one row per cached edge, counted
against the graph's packed arrays, weights against the float64 virtual weights, csv and parquet read back equal
to jsonl, and the refusals (one line, exit 2, nothing made)."""

from __future__ import annotations

import csv
import json
import subprocess
import sys

import numpy as np
import pytest

import neuroscope
from neuroscope.cache.edges import Edges
from neuroscope.cache.store import Store
from neuroscope.choices import EDGE_TOP
from neuroscope.cli import main
from neuroscope.errors import UsageError

from .core.test_circuits import LAYERS, NEURONS, SOURCE, TARGET, build_circuit_model, reference

FIELDS = ["layer", "neuron", "direction", "via", "other_layer", "other_neuron", "weight", "rank"]


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return build_circuit_model("llama", tmp_path_factory.mktemp("edges-model") / "llama")


@pytest.fixture(scope="module")
def exported(folder, tmp_path_factory):
    """The real CLI's jsonl export into a fresh cache (so the graph is built on the way), and the cache."""
    cache = tmp_path_factory.mktemp("edges-cache")
    out = tmp_path_factory.mktemp("edges-out") / "edges.jsonl"
    args = ["export", str(folder), "--what", "edges", "--out", str(out), "--cache-dir", str(cache)]
    assert main([*args, "--device", "cpu", "--dtype", "float32"]) == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    return rows, cache


def as_float32(rows: list[dict]) -> list[dict]:
    return [{**r, "weight": float(np.float32(r["weight"]))} for r in rows]


def opened(folder, cache) -> neuroscope.Model:
    return neuroscope.open(str(folder), cache_dir=cache, device="cpu", dtype="float32", progress=False)


def test_one_row_per_cached_edge_counted_from_the_packed_arrays(folder, exported):
    rows, cache = exported
    assert all(list(r) == FIELDS for r in rows)
    with Store(opened(folder, cache).path, readonly=True) as store:
        edges = Edges(store)
        reads = edges.spec["reads"]
        want = {
            direction: sum(
                int((p.ids >= 0).sum())
                for layer in range(LAYERS)
                for via in reads
                if (p := edges.layer(layer, direction, via)) is not None
            )
            for direction in ("in", "out")
        }
    assert reads == ["gate", "up"]
    ins = [r for r in rows if r["direction"] == "in"]
    # every later layer has at least EDGE_TOP earlier neurons: each in-list is full
    assert len(ins) == want["in"] == (LAYERS - 1) * NEURONS * EDGE_TOP * len(reads)
    assert len(rows) - len(ins) == want["out"]
    assert {r["layer"] for r in ins} == set(range(1, LAYERS))  # layer 0 reads no earlier neuron
    assert {r["layer"] for r in rows if r["direction"] == "out"} == set(range(LAYERS - 1))  # the last feeds none
    assert all(r["other_layer"] < r["layer"] for r in ins)
    assert all(r["other_layer"] > r["layer"] for r in rows if r["direction"] == "out")
    assert {r["rank"] for r in ins} == set(range(1, EDGE_TOP + 1))


def test_weights_equal_the_float64_virtual_weights(folder, exported):
    rows, _ = exported
    refs = {}

    def w(s, t, via):
        if (s, t, via) not in refs:
            refs[s, t, via] = reference(folder, "llama", s, t, via)
        return refs[s, t, via]

    rng = np.random.default_rng(0)
    for r in [rows[i] for i in rng.choice(len(rows), 200, replace=False)]:
        if r["direction"] == "in":
            want = w(r["other_layer"], r["layer"], r["via"])[r["other_neuron"], r["neuron"]]
        else:
            want = w(r["layer"], r["other_layer"], r["via"])[r["neuron"], r["other_neuron"]]
        assert r["weight"] == pytest.approx(want, rel=1e-4, abs=1e-4)
    (s, i), (t, j) = SOURCE, TARGET
    first = next(
        r for r in rows if (r["layer"], r["neuron"], r["direction"], r["via"], r["rank"]) == (t, j, "in", "up", 1)
    )
    assert (first["other_layer"], first["other_neuron"]) == (s, i)  # the planted edge
    column = np.concatenate([w(layer, t, "up")[:, j] for layer in range(t)])
    assert abs(first["weight"]) == pytest.approx(np.abs(column).max(), rel=1e-5)
    ranked = [r for r in rows if (r["layer"], r["neuron"], r["direction"], r["via"]) == (t, j, "in", "up")]
    assert [r["rank"] for r in ranked] == list(range(1, EDGE_TOP + 1))
    assert [abs(r["weight"]) for r in ranked] == sorted((abs(r["weight"]) for r in ranked), reverse=True)


def test_the_api_writes_what_the_cli_writes_in_every_format(folder, exported, tmp_path):
    rows, cache = exported
    model = opened(folder, cache)
    for fmt in ("jsonl", "csv", "parquet"):
        if fmt == "parquet" and pytest.importorskip("pyarrow") is None:
            continue
        out = tmp_path / f"edges.{fmt}"
        assert model.export(fmt, str(out), what="edges") == len(rows)
        if fmt == "jsonl":
            back = [json.loads(line) for line in out.read_text().splitlines()]
        elif fmt == "csv":
            with open(out, newline="") as handle:
                reader = csv.DictReader(handle)
                assert reader.fieldnames == FIELDS
                back = [
                    {
                        k: (v if k in ("direction", "via") else float(v) if k == "weight" else int(v))
                        for k, v in r.items()
                    }
                    for r in reader
                ]
        else:
            import pyarrow.parquet as pq

            table = pq.read_table(out)
            assert table.column_names == FIELDS
            back = table.to_pylist()
        assert as_float32(back) == as_float32(rows), fmt  # 9 digits give every float32 back exactly


def test_jsonl_to_stdout(folder, exported, capsys):
    rows, cache = exported
    assert main(["export", str(folder), "--what", "edges", "--cache-dir", str(cache)]) == 0
    assert [json.loads(line) for line in capsys.readouterr().out.splitlines()] == rows


@pytest.mark.parametrize(
    "args, message",
    [
        (["--what", "edge"], "invalid choice: 'edge'"),
        (["--what", "edges", "--format", "xml"], "unknown format 'xml'"),
        (["--what", "edges", "--format", "parquet"], "parquet is binary"),
        (["--what", "edges", "--views", "up"], "--views applies to --what neurons"),
        (["--what", "edges", "--out", "/no/such/folder/e.jsonl"], "no folder /no/such/folder"),
    ],
)
def test_bad_input_is_one_line_and_exit_2_before_anything_is_made(folder, tmp_path, args, message):
    cache = tmp_path / "cache"
    run = subprocess.run(
        [sys.executable, "-m", "neuroscope", "export", str(folder), *args, "--cache-dir", str(cache)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 2, run.stderr
    assert message in run.stderr.strip().splitlines()[-1] and "Traceback" not in run.stderr
    assert not cache.exists()


def test_the_api_refuses_an_unknown_what_before_anything(folder, tmp_path):
    model = opened(folder, tmp_path / "cache")
    with pytest.raises(UsageError, match="unknown export 'graph': choose neurons, edges"):
        model.export("jsonl", str(tmp_path / "x.jsonl"), what="graph")
    assert not (tmp_path / "cache").exists() and not (tmp_path / "x.jsonl").exists()


def test_an_uncached_graph_is_built_first_with_progress(folder, exported, tmp_path):
    rows, _ = exported
    seen: list[tuple[str, int, int]] = []

    def factory(label):
        return (lambda done, total: seen.append((label.split()[0], done, total))), (lambda: None)

    model = neuroscope.open(str(folder), cache_dir=tmp_path / "cache", device="cpu", dtype="float32", progress=factory)
    assert model.export("jsonl", str(tmp_path / "e.jsonl"), what="edges") == len(rows)
    assert ("circuit", LAYERS - 1, LAYERS - 1) in seen  # the graph's units (target layers), all done
    exports = [s for s in seen if s[0] == "export"]
    assert exports[-1][1] == exports[-1][2] == (2 * LAYERS - 1) * 2 * NEURONS  # neuron-directions


def test_empty_slots_are_not_rows_and_ranks_keep_their_place():
    """A slot whose id is -1 (a list the pass could not fill) is no edge; the others keep their rank."""
    from neuroscope.cache.edges import Packed
    from neuroscope.export_edges import edge_blocks, edge_text

    ids = np.array([[9, -1, 12], [-1, -1, -1], [13, 14, -1]], np.int32)  # 8 neurons a layer: 9 is L1:N1
    packed = Packed(
        ids, np.array([[1, 0, 1], [0, 0, 0], [0, 1, 0]], np.int8), (np.arange(9, dtype=np.float32) - 4).reshape(3, 3)
    )
    blocks = list(edge_blocks(packed, neurons=8, block=2))
    assert len(blocks) == 2  # neurons 0-1, then 2
    text = "".join(edge_text("jsonl", 0, "out", ["gate", "up"], b) for b in blocks)
    got = [json.loads(line) for line in text.splitlines()]
    assert [(r["neuron"], r["via"], r["other_layer"], r["other_neuron"], r["weight"], r["rank"]) for r in got] == [
        (0, "up", 1, 1, -4.0, 1),
        (0, "up", 1, 4, -2.0, 3),
        (2, "gate", 1, 5, 2.0, 1),
        (2, "up", 1, 6, 3.0, 2),
    ]
