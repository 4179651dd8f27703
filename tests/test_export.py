"""Export: every format read back record for record against the cache, awkward token texts surviving the
standard json and csv readers, and worker processes writing what one process writes."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from .models import vocab


@pytest.mark.parametrize("fmt", ["jsonl", "csv", "parquet"])
def test_export_reads_back_record_for_record(concept_model, tmp_path, fmt):
    from neuroscope.cache.labels import Labels

    if fmt == "parquet":
        pytest.importorskip("pyarrow")
    _, model = concept_model
    out = tmp_path / f"neurons.{fmt}"
    count = model.export(fmt, str(out))
    if fmt == "jsonl":
        rows = [json.loads(line) for line in out.read_text().splitlines()]
    elif fmt == "csv":
        with open(out, newline="") as handle:
            rows = []
            for r in csv.DictReader(handle):
                top = [
                    {"token_id": int(r[f"token_id_{k}"]), "token": r[f"token_{k}"], "prob": float(r[f"prob_{k}"])}
                    for k in range(1, 11)
                ]
                rows.append(
                    {
                        "layer": int(r["layer"]),
                        "neuron": int(r["neuron"]),
                        "view": r["view"],
                        "direction": r["direction"],
                        "label": r["label"],
                        "label_mass": float(r["label_mass"]),
                        "top": top,
                    }
                )
    else:
        import pyarrow.parquet as pq

        rows = pq.read_table(out).to_pylist()
    assert count == len(rows) == 2 * 3 * 2 * 64
    by_key = {(r["layer"], r["neuron"], r["view"], r["direction"]): r for r in rows}
    with model.store() as store:
        labels = Labels(store)
        for layer in range(2):
            for view in ("up", "gate", "down"):
                for d in ("pos", "neg"):
                    ids, probs = store.tops(layer, view, d)
                    key, mass, _, _ = labels.unit(layer, view, d)
                    names = labels.keys(key)
                    for i in range(64):
                        r = by_key[(layer, i, view, d)]
                        assert r["label"] == names[int(key[i])]
                        assert np.float32(r["label_mass"]) == mass[i]
                        assert [t["token_id"] for t in r["top"]] == ids[i].tolist()
                        assert [t["token"] for t in r["top"]] == [vocab()[t] for t in ids[i]]
                        assert np.array([t["prob"] for t in r["top"]], np.float32).tolist() == probs[i].tolist()


@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
def test_export_rows_survive_awkward_token_texts(fmt):
    """Commas, quotes, newlines, backslashes, unicode, empty text and tiny/huge floats read back exactly
    through the standard json and csv readers."""
    import io

    from neuroscope.export import block, csv_cell, json_text

    texts = [
        "line\u2028sep",
        "para\u2029sep",
        "\x85nel",
        "a,b",
        'say "hi"',
        "line\nbreak",
        "cr\rlf",
        "back\\slash",
        "",
        " ",
        "ünï ✓",
        "\u2581dog",
        "tab\tx",
    ]  # the first six are also labels
    quote = json_text if fmt == "jsonl" else csv_cell
    enc = np.array([quote(t) for t in texts], dtype=object)
    rng = np.random.default_rng(0)
    ids = np.stack([rng.permutation(len(texts))[:4] for _ in range(6)]).astype(np.int32)
    probs = rng.random((6, 4)).astype(np.float32)
    probs[0] = [1.0, 1e-30, 3.4e38, 0.0]
    masses = rng.random(6).astype(np.float32)
    names = [texts[i] for i in range(6)]
    text = block(fmt, 3, "gate", "neg", ids, probs, [quote(t) for t in names], masses, enc)
    if fmt == "jsonl":
        rows = [json.loads(line) for line in text.splitlines()]  # one record per line, whatever splits
        cells = [[r["neuron"], r["label"], r["label_mass"], *[x for t in r["top"] for x in t.values()]] for r in rows]
        assert all(r["layer"] == 3 and r["view"] == "gate" and r["direction"] == "neg" for r in rows)
        assert all(isinstance(t["prob"], float) for r in rows for t in r["top"])
    else:
        rows = list(csv.reader(io.StringIO(text, newline="")))
        assert all(r[0] == "3" and r[2:4] == ["gate", "neg"] for r in rows)
        cells = [[int(r[1]), r[4], float(r[5]), *[f(x) for f, x in zip([int, str, float] * 4, r[6:])]] for r in rows]
    assert len(cells) == 6
    for i, row in enumerate(cells):
        assert row[:2] == [i, names[i]] and np.float32(row[2]) == masses[i]
        assert row[3::3] == ids[i].tolist() and row[4::3] == [texts[t] for t in ids[i]]
        assert np.array(row[5::3], np.float32).tolist() == probs[i].tolist()


@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
def test_export_by_worker_processes_equals_one_process(concept_model, tmp_path, fmt):
    """The pool of formatting processes writes the same bytes, in the same order, as one process."""
    _, model = concept_model
    one, pool = tmp_path / f"one.{fmt}", tmp_path / f"pool.{fmt}"
    assert model.export(fmt, str(one), workers=1) == model.export(fmt, str(pool), workers=2) == 2 * 3 * 2 * 64
    assert one.read_bytes() == pool.read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([one.name, pool.name])  # no partial files left
