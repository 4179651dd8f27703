"""Bulk export of every neuron's top-k with its label: jsonl, csv or parquet (pyarrow, an optional extra).

Rows are streamed unit by unit (layer x view x direction), so memory stays one unit's records. A file is
written next to its final name and renamed into place at the end: a failed or interrupted export leaves no
partial file.
"""
from __future__ import annotations

import csv
import json
import os
import sys
from pathlib import Path

import numpy as np

from .cache.labels import Labels
from .core.errors import UsageError

FORMATS = ("jsonl", "csv", "parquet")


def check_out(out: str | None, fmt: str) -> Path | None:
    """The output path, checked before any work: its folder exists and is writable, it is not a folder."""
    if fmt not in FORMATS:
        raise UsageError(f"unknown format {fmt!r}: choose {', '.join(FORMATS)}")
    if out is None or out == "-":
        if fmt == "parquet":
            raise UsageError("parquet is binary: give --out PATH")
        return None
    path = Path(out).expanduser()
    if path.is_dir():
        raise UsageError(f"--out {out} is a folder, not a file")
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise UsageError(f"cannot write {out}: no folder {parent}")
    if not os.access(parent, os.W_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise UsageError(f"cannot write {out}: permission denied")
    if fmt == "parquet":
        try:
            import pyarrow  # noqa: F401
        except ImportError:
            raise UsageError("parquet needs pyarrow: pip install 'neuroscope[export]' (or pyarrow)") from None
    return path


def units(store, views):
    labels = Labels(store)
    for layer in range(store.layers):
        for view in views:
            for direction in ("pos", "neg"):
                tops, lab = store.tops(layer, view, direction), labels.unit(layer, view, direction)
                if tops is not None and lab is not None:
                    yield layer, view, direction, tops, lab


def export(store, fmt: str, out: Path | None, views=None) -> int:
    """Write every decoded neuron-direction of ``views`` (default: all decoded); returns the row count."""
    views = [v for v in (views or store.views) if v in store.decoded_views()]
    vocab = int(store.meta["vocab"])
    texts = store.token_texts(range(vocab))
    texts = [texts[i] for i in range(vocab)]
    labels = Labels(store)
    tmp = None if out is None else out.with_name(f".{out.name}.{os.getpid()}.partial")
    try:
        if fmt == "parquet":
            count = _parquet(store, tmp, views, texts, labels)
        else:
            handle = sys.stdout if tmp is None else open(tmp, "w", encoding="utf-8", newline="")
            try:
                count = (_jsonl if fmt == "jsonl" else _csv)(store, handle, views, texts, labels)
            finally:
                if tmp is not None:
                    handle.close()
        if tmp is not None:
            os.replace(tmp, out)
        return count
    except BaseException:
        if tmp is not None and tmp.exists():
            tmp.unlink()
        raise


def _key_texts(labels, lab) -> dict[int, str]:
    return labels.keys(np.unique(lab[0]).tolist())


def _jsonl(store, handle, views, texts, labels) -> int:
    enc = [json.dumps(t, ensure_ascii=False) for t in texts]
    count = 0
    for layer, view, direction, (ids, probs), lab in units(store, views):
        keys = {k: json.dumps(v, ensure_ascii=False) for k, v in _key_texts(labels, lab).items()}
        head = f'{{"layer": {layer}, "neuron": '
        tail = f', "view": "{view}", "direction": "{direction}", "label": '
        lines = []
        for i, (row_ids, row_p, key, mass) in enumerate(zip(ids.tolist(), probs.tolist(), lab[0].tolist(),
                                                            lab[1].tolist())):
            top = ", ".join(f'{{"token_id": {t}, "token": {enc[t]}, "prob": {p!r}}}' for t, p in zip(row_ids, row_p))
            lines.append(f'{head}{i}{tail}{keys[key]}, "label_mass": {mass!r}, "top": [{top}]}}\n')
        handle.write("".join(lines))
        count += len(lines)
    return count


def _csv(store, handle, views, texts, labels) -> int:
    k = store.top_k
    writer = csv.writer(handle)
    writer.writerow(["layer", "neuron", "view", "direction", "label", "label_mass"]
                    + [f"{field}_{r}" for r in range(1, k + 1) for field in ("token_id", "token", "prob")])
    count = 0
    for layer, view, direction, (ids, probs), lab in units(store, views):
        keys = _key_texts(labels, lab)
        for i, (row_ids, row_p, key, mass) in enumerate(zip(ids.tolist(), probs.tolist(), lab[0].tolist(),
                                                            lab[1].tolist())):
            cells = [layer, i, view, direction, keys[key], repr(mass)]
            for t, p in zip(row_ids, row_p):
                cells += [t, texts[t], repr(p)]
            writer.writerow(cells)
            count += 1
    return count


def _parquet(store, path, views, texts, labels) -> int:
    import pyarrow as pa
    import pyarrow.parquet as pq

    top_type = pa.list_(pa.struct([("token_id", pa.int32()), ("token", pa.string()), ("prob", pa.float32())]))
    schema = pa.schema([("layer", pa.int32()), ("neuron", pa.int32()), ("view", pa.string()),
                        ("direction", pa.string()), ("label", pa.string()), ("label_mass", pa.float32()),
                        ("top", top_type)])
    vocab = pa.array(texts, pa.string())
    count = 0
    with pq.ParquetWriter(str(path), schema) as writer:
        for layer, view, direction, (ids, probs), lab in units(store, views):
            n, k = ids.shape
            keys = _key_texts(labels, lab)
            structs = pa.StructArray.from_arrays(
                [pa.array(ids.ravel(), pa.int32()), vocab.take(pa.array(ids.ravel())), pa.array(probs.ravel())],
                names=["token_id", "token", "prob"])
            top = pa.ListArray.from_arrays(pa.array(np.arange(0, n * k + 1, k, dtype=np.int32)), structs)
            table = pa.table({"layer": pa.array(np.full(n, layer, np.int32)),
                              "neuron": pa.array(np.arange(n, dtype=np.int32)),
                              "view": pa.array([view] * n), "direction": pa.array([direction] * n),
                              "label": pa.array([keys[key] for key in lab[0].tolist()], pa.string()),
                              "label_mass": pa.array(lab[1]), "top": top}, schema=schema)
            writer.write_table(table)
            count += n
    return count
