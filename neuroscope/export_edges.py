"""Bulk export of the circuit graph: one row per cached edge, as jsonl, csv or parquet (pyarrow, optional).

Row: layer, neuron (this end), direction ("in": ``other`` feeds it; "out": it feeds ``other``), via (the read
vector the edge goes into: the downstream end's gate or up), other_layer, other_neuron, weight (the signed
virtual weight, float32 as cached) and rank (1: the largest |weight| of that neuron's list). Layer 0 has no
"in" rows and the last layer no "out" rows.

Rows are streamed a block of neurons at a time from one (layer, direction, via) row of the cache, so memory
stays one such block whatever the model's size; the file is written next to its final name and renamed into
place at the end, as neuroscope.export does (a failed or interrupted export leaves no partial file).
"""

from __future__ import annotations

import csv
import io
import os
import sys
from pathlib import Path

import numpy as np

from .errors import UsageError
from .export import _durable_replace, _stdout_bytes, check_out

EDGE_FIELDS = ("layer", "neuron", "direction", "via", "other_layer", "other_neuron", "weight", "rank")
EDGE_DIRECTIONS = ("in", "out")
BLOCK_NEURONS = 2048  # neurons formatted at once (x the graph's top edges each)


def edge_units(edges):
    """(layer, direction, via, Packed [neurons, top]) of every row the graph holds, in file order."""
    spec = edges.spec
    for layer in range(int(spec["layers"])):
        for direction in EDGE_DIRECTIONS:
            for via in spec["reads"]:
                packed = edges.layer(layer, direction, via)
                if packed is not None:
                    yield layer, direction, via, packed


def edge_blocks(packed, neurons: int, block: int = BLOCK_NEURONS):
    """The edges of one packed row, a block of neurons at a time: (neuron, via index, other_layer,
    other_neuron, weight, rank) arrays, only the slots holding an edge (id >= 0)."""
    n, k = packed.ids.shape
    ranks = np.arange(1, k + 1, dtype=np.int64)
    for a in range(0, n, block):
        ids = packed.ids[a : a + block]
        keep = ids >= 0
        rows = np.nonzero(keep)
        other = ids[keep].astype(np.int64)
        yield (
            rows[0] + a,
            packed.vias[a : a + block][keep],
            other // neurons,
            other % neurons,
            packed.weights[a : a + block][keep],
            ranks[rows[1]],
        )


def edge_text(fmt: str, layer: int, direction: str, reads, columns) -> str:
    """One block's rows as jsonl or csv text: one %-format over the block (no per-row Python); weights with 9
    significant digits, which give back every cached float32 exactly."""
    neuron, via, other_layer, other_neuron, weight, rank = columns
    m = len(neuron)
    if not m:
        return ""
    names = np.array(list(reads), dtype=object)
    cells = np.empty((m, 6), dtype=object)
    cells[:, 0] = neuron.tolist()
    cells[:, 1] = names[via.astype(np.int64)]
    cells[:, 2] = other_layer.tolist()
    cells[:, 3] = other_neuron.tolist()
    cells[:, 4] = weight.tolist()
    cells[:, 5] = rank.tolist()
    if fmt == "jsonl":
        row = (
            f'{{"layer": {layer}, "neuron": %d, "direction": "{direction}", "via": "%s", '
            f'"other_layer": %d, "other_neuron": %d, "weight": %#.9g, "rank": %d}}\n'
        )
    else:
        row = f"{layer},%d,{direction},%s,%d,%d,%#.9g,%d\r\n"
    return (row * m) % tuple(cells.ravel().tolist())


def export_edges(edges, fmt: str, out: Path | None, progress=None) -> int:
    """Write every cached edge of ``edges`` (a cache.edges.Edges on a complete graph); returns the row count.
    ``progress(done, total)`` counts neuron-directions (one neuron's list for one read vector)."""
    spec = edges.spec
    neurons, reads = int(spec["neurons"]), list(spec["reads"])
    total = max(0, 2 * int(spec["layers"]) - 1) * len(reads) * neurons
    tmp = None if out is None else out.with_name(f".{out.name}.{os.getpid()}.partial")
    progress = progress or (lambda done, total: None)
    try:
        if fmt == "parquet":
            count = _parquet(edges, tmp, reads, neurons, progress, total)
        else:
            if tmp is None:
                sys.stdout.flush()
            handle = _stdout_bytes() if tmp is None else open(tmp, "wb")
            try:
                if fmt == "csv":
                    head = io.StringIO()
                    csv.writer(head).writerow(EDGE_FIELDS)
                    handle.write(head.getvalue().encode())
                count = done = 0
                for layer, direction, _via, packed in edge_units(edges):
                    for columns in edge_blocks(packed, neurons):
                        handle.write(edge_text(fmt, layer, direction, reads, columns).encode("utf-8"))
                        count += len(columns[0])
                    done += len(packed.ids)
                    progress(done, total)
            finally:
                if tmp is not None:
                    handle.close()
        if tmp is not None and out is not None:
            _durable_replace(tmp, out)
        return count
    except BaseException:
        if tmp is not None and tmp.exists():
            tmp.unlink()
        raise


def _parquet(edges, path, reads, neurons: int, progress, total: int) -> int:
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = pa.schema(
        [
            ("layer", pa.int32()),
            ("neuron", pa.int32()),
            ("direction", pa.string()),
            ("via", pa.string()),
            ("other_layer", pa.int32()),
            ("other_neuron", pa.int32()),
            ("weight", pa.float32()),
            ("rank", pa.int32()),
        ]
    )
    names = pa.array(reads, pa.string())
    count = done = 0
    with pq.ParquetWriter(str(path), schema) as writer:
        for layer, direction, _via, packed in edge_units(edges):
            for neuron, via, other_layer, other_neuron, weight, rank in edge_blocks(packed, neurons):
                m = len(neuron)
                table = pa.table(
                    {
                        "layer": pa.array(np.full(m, layer, np.int32)),
                        "neuron": pa.array(neuron.astype(np.int32)),
                        "direction": pa.array([direction] * m, pa.string()),
                        "via": names.take(pa.array(via.astype(np.int32))),
                        "other_layer": pa.array(other_layer.astype(np.int32)),
                        "other_neuron": pa.array(other_neuron.astype(np.int32)),
                        "weight": pa.array(weight.astype(np.float32)),
                        "rank": pa.array(rank.astype(np.int32)),
                    },
                    schema=schema,
                )
                writer.write_table(table)
                count += m
            done += len(packed.ids)
            progress(done, total)
    return count


def export_model_edges(model, fmt: str = "jsonl", out=None, views=None) -> int:
    """The API's edge export: ``out`` checked before any work, the circuit graph built into the cache first
    when it is not there (with progress), then a progress bar while the rows are written."""
    from .cache.edges import Edges
    from .cache.store import Store
    from .circuits import ensure_graph

    if views:
        raise UsageError("--views applies to --what neurons: the edges export writes every read vector's edges")
    path = check_out(out, fmt)  # before any work
    ensure_graph(model)
    with Store(model.path, readonly=True) as store:
        progress, close = model._progress("export")
        try:
            return export_edges(Edges(store), fmt, path, progress)
        finally:
            close()
