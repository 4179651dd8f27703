"""`neuroscope compare`: the JSON contract, the plain table, and the refusals (one line, exit code 2)."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from neuroscope.cli import main

from . import reference
from .core.test_compare import other_tokenizer, pair  # noqa: F401 - the session fixture


def compare(capsys, *args, cache):
    code = main(["compare", *map(str, args), "--cache-dir", str(cache), "--dtype", "float32", "--device", "cpu"])
    out, err = capsys.readouterr()
    return code, out, err


def test_json_contract_and_reference_fractions(pair, capsys):  # noqa: F811
    code, out, err = compare(capsys, pair["base"], pair["tuned"], "--json", "--top", "5", cache=pair["cache"])
    assert code == 0, err
    got = json.loads(out)
    assert list(got) == [
        "base",
        "base_hub_id",
        "base_revision",
        "other",
        "other_hub_id",
        "other_revision",
        "view",
        "direction",
        "same_top1",
        "mean_topk_jaccard",
        "per_layer",
        "most_changed",
    ]
    assert (got["base"], got["other"], got["view"], got["direction"]) == ("base", "tuned", "up", "pos")
    same = []
    for layer in range(2):
        a, _ = reference.decode(pair["base"], "llama", layer, "up", "pos", 10)
        b, _ = reference.decode(pair["tuned"], "llama", layer, "up", "pos", 10)
        same.append(np.mean(a[:, 0] == b[:, 0]))
    assert got["per_layer"] == [
        {"layer": i, "same_top1": pytest.approx(s, abs=1e-12), "neurons": 64} for i, s in enumerate(same)
    ]
    assert got["same_top1"] == pytest.approx(np.mean(same), abs=1e-12)
    assert len(got["most_changed"]) == 5
    first = got["most_changed"][0]
    assert list(first) == ["layer", "neuron", "base_top", "other_top", "jaccard", "prob_change", "cosine"]
    assert 0 <= first["prob_change"] <= 1  # what the table's Δprob column shows
    assert first["layer"] == 1 and 0 <= first["jaccard"] < 1 and -1 <= first["cosine"] < 1
    assert isinstance(first["base_top"], str) and isinstance(first["other_top"], str)


def test_plain_table_has_a_bar_per_layer(pair, capsys):  # noqa: F811
    code, out, _ = compare(capsys, pair["base"], pair["tuned"], "--view", "down", "--top", "3", cache=pair["cache"])
    assert code == 0
    lines = out.splitlines()
    assert lines[0] == "base vs tuned · down pos · top-10"
    assert "same top-1 token:" in lines[1] and "75.4%" in lines[1]
    rows = [line for line in lines if line.startswith(("L0 ", "L1 "))]
    assert rows[0].split()[:3] == ["L0", "64", "100.0%"] and "█" * 30 in rows[0]
    assert "█" in rows[1] and "█" * 30 not in rows[1]
    assert any(line.startswith("most changed") for line in lines)
    assert sum(line.startswith("L1:N") for line in lines) == 3


def test_same_model_twice_is_allowed_and_said(pair, capsys):  # noqa: F811
    code, out, err = compare(capsys, pair["base"], pair["base"], "--json", cache=pair["cache"])
    assert code == 0
    got = json.loads(out)
    assert got["same_top1"] == 1.0 and got["mean_topk_jaccard"] == 1.0 and got["most_changed"] == []
    assert "same model" in err and "1.0" in err


def test_different_tokenizer_is_refused(pair, capsys):  # noqa: F811
    odd = other_tokenizer(pair["base"], pair["root"] / "othertok-cli")
    code, out, err = compare(capsys, pair["base"], odd, cache=pair["cache"])
    assert code == 2 and out == ""
    errors = [line for line in err.splitlines() if "error:" in line]
    assert errors == [err.splitlines()[-1]]
    assert errors[0].startswith("neuroscope compare: error: tokenizer vocabularies differ: 1 of 384 token id")
    assert '"dog" in base, "wolf" in othertok-cli' in errors[0]


def test_different_shape_is_refused_by_the_real_command(pair, model_dirs):  # noqa: F811
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "neuroscope",
            "compare",
            str(pair["base"]),
            str(model_dirs["gpt2"]),
            "--cache-dir",
            str(pair["cache"]),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.splitlines() == [
        "neuroscope compare: error: MLP shapes differ: base has 2 layers x 64 "
        "neurons, gpt2 has 2 x 128; only models of one shape compare"
    ]


def test_missing_view_is_refused(pair, model_dirs, capsys):  # noqa: F811
    code, _, err = compare(capsys, model_dirs["gpt2"], model_dirs["gpt2"], "--view", "gate", cache=pair["cache"])
    assert code == 2 and "has no 'gate' view" in err


def test_cached_pair_compares_without_torch(pair):  # noqa: F811
    code = (
        "import sys; from neuroscope.cli import main; "
        f"rc = main(['compare', {str(pair['base'])!r}, {str(pair['tuned'])!r}, '--json', "
        f"'--cache-dir', {str(pair['cache'])!r}]); "
        "assert rc == 0; assert 'torch' not in sys.modules, 'torch loaded'; "
        "assert 'textual' not in sys.modules"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["per_layer"][0]["same_top1"] == 1.0
