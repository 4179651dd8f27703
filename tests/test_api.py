"""The notebook API, driven as a notebook would: open, decode, top, search, activations, clamp, compare,
models. Results are checked against the float64 references the CLI tests use, and against the CLI's JSON."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import neuroscope

from . import reference
from .core.test_compare import build_pair
from .models import CLAMP_PLANTED, PLANTED, PLANTED_TOKEN, build_clamp_llama, vocab


def cli_json(*args) -> dict | list:
    """The real `neuroscope` command's JSON, run as a user runs it (this environment's console script, in a
    process of its own), so the API is held against the CLI's output and not against its own as_dict()."""
    script = Path(sys.executable).with_name("neuroscope")
    command = [str(script)] if script.exists() else [sys.executable, "-m", "neuroscope"]
    done = subprocess.run(command + [str(a) for a in args], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def close(got, want):
    """Equal, numbers within float32 rounding (the CLI ran in another process)."""
    if isinstance(want, dict):
        assert isinstance(got, dict) and set(got) == set(want), (got, want)
        for k in want:
            close(got[k], want[k])
    elif isinstance(want, list):
        assert isinstance(got, list) and len(got) == len(want), (got, want)
        for a, b in zip(got, want):
            close(a, b)
    elif isinstance(want, float):
        assert got == pytest.approx(want, rel=1e-5, abs=1e-7)
    else:
        assert got == want and type(got) is type(want), (got, want)


@pytest.fixture(scope="module")
def llama(model_dirs, tmp_path_factory):
    cache = tmp_path_factory.mktemp("api-cache")
    return neuroscope.open(str(model_dirs["llama"]), cache_dir=cache, device="cpu", dtype="float32", progress=False)


def test_open_decode_and_top_against_float64(llama, model_dirs):
    assert not llama.is_decoded() and llama.views == ("up", "gate", "down")
    result = llama.decode()
    assert result.views == ["up", "gate", "down"] and result.neurons == 2 * 64 and result.decoded_units == 6
    assert llama.decode().decoded_units == 0  # cached: nothing decoded again
    for layer, view, direction in ((1, "up", "pos"), (0, "gate", "neg"), (1, "down", "pos")):
        ids, probs = reference.decode(model_dirs["llama"], "llama", layer, view, direction, 10)
        for neuron in (0, 7, 63):
            top = llama.neuron(f"L{layer}:N{neuron}").top(view, direction)
            assert [t.token_id for t in top] == ids[neuron].tolist()
            np.testing.assert_allclose([t.prob for t in top], probs[neuron], rtol=1e-3)
            assert [t.token for t in top] == [vocab()[i] for i in ids[neuron]]
    assert llama.neuron(PLANTED).top()[0].token == PLANTED_TOKEN  # (1, 7) as a tuple works too
    tops = llama.neuron("1:7").tops()
    assert set(tops) == {"up", "gate", "down"} and tops["up"][0].token == PLANTED_TOKEN


def test_search_against_float64_and_the_cli(llama, model_dirs):
    llama.decode()
    want = set()
    for layer in range(2):
        for view in ("up", "gate", "down"):
            for direction in ("pos", "neg"):
                ids, _ = reference.decode(model_dirs["llama"], "llama", layer, view, direction, 1)
                want |= {
                    (layer, n, view, direction)
                    for n in range(64)
                    if vocab()[ids[n, 0]].lstrip("\u0120").casefold() == "dog"
                }
    hits = llama.search("DOG", limit=None)
    assert {(h.layer, h.neuron, h.view, h.direction) for h in hits} == want and (*PLANTED, "up", "pos") in want
    probs = [h.prob for h in hits]
    assert probs == sorted(probs, reverse=True)
    cli = cli_json("search", model_dirs["llama"], "DOG", "--limit", "1000", "--json", "--cache-dir", llama.cache_dir)
    assert cli["hits"] == hits.as_dicts()
    shown = cli_json(
        "show",
        model_dirs["llama"],
        "L1:N7",
        "--view",
        "gate",
        "--direction",
        "neg",
        "--json",
        "--cache-dir",
        llama.cache_dir,
    )
    top = llama.neuron("L1:N7").top("gate", "neg")
    assert shown["top"] == [{"token_id": t.token_id, "token": t.token, "prob": t.prob} for t in top]


def test_records_to_pandas(llama, monkeypatch):
    hits = llama.search("dog", max_rank=3)
    assert hits.as_dicts()[0]["rank"] == 1 and {"layer", "neuron", "token", "prob"} <= set(hits.as_dicts()[0])
    monkeypatch.setitem(sys.modules, "pandas", None)  # pandas is not a dependency
    with pytest.raises(neuroscope.UsageError, match="needs pandas"):
        hits.to_pandas()
    monkeypatch.undo()
    pd = pytest.importorskip("pandas")
    frame = hits.to_pandas()
    assert isinstance(frame, pd.DataFrame) and len(frame) == len(hits) and "token_id" in frame.columns


def test_user_errors_are_typed_and_checked_before_any_work(model_dirs, tmp_path):
    with pytest.raises(neuroscope.ModelNotFound):
        neuroscope.open(str(tmp_path / "nope"))
    model = neuroscope.open(str(model_dirs["gpt2"]), cache_dir=tmp_path / "c", progress=False)
    with pytest.raises(neuroscope.BadNeuronRef, match="layer 9 is out of range"):
        model.neuron("L9:N0").top()
    with pytest.raises(neuroscope.UsageError, match="has no 'gate' view"):
        model.neuron("L0:N0").top(view="gate")
    with pytest.raises(neuroscope.UsageError, match="exceeds the cached top-10"):
        model.search("dog", max_rank=11)
    assert not (tmp_path / "c").exists()  # nothing decoded, nothing written
    with pytest.raises(neuroscope.UsageError, match="unknown device"):
        neuroscope.open(str(model_dirs["gpt2"]), device="gpu")


@pytest.fixture(scope="module")
def clamp_model(tmp_path_factory):
    folder = build_clamp_llama(tmp_path_factory.mktemp("api-clamp") / "clamp-llama")
    return folder, neuroscope.open(str(folder), device="cpu", progress=False)


def test_activations_equal_a_hook_written_here(clamp_model):
    folder, model = clamp_model
    got = model.activations("t5 t9 dog", ["L1:N5", (0, 3)], chat=False)
    lm = model.loaded()
    seen = {}
    hooks = [
        lm.model.model.layers[layer].mlp.down_proj.register_forward_pre_hook(
            lambda _m, args, layer=layer: seen.__setitem__(layer, args[0][0].detach().clone())
        )
        for layer in (0, 1)
    ]
    try:
        ids = lm.tokenizer("t5 t9 dog", return_tensors="pt")["input_ids"]
        with torch.inference_mode():
            lm.model(input_ids=ids)
    finally:
        for h in hooks:
            h.remove()
    for act, (layer, neuron) in zip(got, [(1, 5), (0, 3)]):
        column = seen[layer][:, neuron]
        assert act.min == pytest.approx(float(column.min()), rel=1e-5)
        assert act.max == pytest.approx(float(column.max()), rel=1e-5)
        assert act.last == pytest.approx(float(column[-1]), rel=1e-5)


def test_clamp_equals_the_cli(clamp_model, tmp_path, monkeypatch):
    monkeypatch.setenv("NEUROSCOPE_DATA_DIR", str(tmp_path / "data"))
    folder, model = clamp_model
    dog = "L{}:N{}".format(*CLAMP_PLANTED)
    report = model.clamp({dog: 20}, prompt="t5 t9 t12 cat t40", target="dog", max_new_tokens=6)
    assert report.clamped.target_prob >= 5 * report.baseline.target_prob
    cli = cli_json(
        "clamp",
        folder,
        "--set",
        f"{dog}=20",
        "--prompt",
        "t5 t9 t12 cat t40",
        "--target",
        "dog",
        "--max-new-tokens",
        6,
        "--device",
        "cpu",
        "--json",
    )
    assert {k: cli.pop(k) for k in ("hub_id", "revision")} == model.provenance  # what the CLI adds
    s = report.experiment.settings  # the JSON contract, from the report's attributes

    def side(run):
        return {"text": run.text, "target_prob": run.target_prob, "target_rate": run.target_rate}

    close(
        cli,
        {
            "model": report.model,
            "clamps": [{"layer": 1, "neuron": 5, "value": 20.0, "mode": "set"}],
            "prompt": "t5 t9 t12 cat t40",
            "target": "dog",
            "baseline": side(report.baseline),
            "clamped": side(report.clamped),
            "settings": {
                "positions": "all",
                "chat": s.chat,
                "samples": None,
                "max_new_tokens": 6,
                "temperature": s.temperature,
                "top_p": s.top_p,
                "seed": s.seed,
            },
            "activation": [
                {"layer": a.ref.layer, "neuron": a.ref.neuron, "min": a.min, "max": a.max, "last": a.last}
                for a in report.activation
            ],
        },
    )
    assert [a.ref for a in report.activation] == [neuroscope.NeuronRef(*CLAMP_PLANTED)] and report.model == folder.name
    with pytest.raises(neuroscope.UsageError, match="out of range"):
        model.clamp({"L1:N64": 3}, prompt="hi")
    with pytest.raises(neuroscope.UsageError, match="no clamps"):
        model.clamp({}, prompt="hi")


def test_compare_equals_the_cli_and_models_lists_the_caches(tmp_path_factory):
    pair = build_pair(tmp_path_factory.getbasetemp() / "compare-pair")
    result = neuroscope.compare(str(pair["base"]), str(pair["tuned"]), cache_dir=pair["cache"], progress=False, top=5)
    assert result.per_layer[0].same_top1 == 1.0 and result.per_layer[1].same_top1 < 0.9
    cli = cli_json("compare", pair["base"], pair["tuned"], "--top", 5, "--json", "--cache-dir", pair["cache"])
    assert [cli.pop(f"{side}_{k}") for side in ("base", "other") for k in ("hub_id", "revision")] == [None] * 4
    assert len(result.most_changed) == 5 and (result.base, result.other) == ("base", "tuned")
    close(
        cli,
        {
            "base": result.base,
            "other": result.other,
            "view": result.view,
            "direction": result.direction,
            "same_top1": result.same_top1,
            "mean_topk_jaccard": result.mean_topk_jaccard,
            "per_layer": [{"layer": p.layer, "same_top1": p.same_top1, "neurons": p.neurons} for p in result.per_layer],
            "most_changed": [
                {
                    "layer": c.layer,
                    "neuron": c.neuron,
                    "base_top": c.base_top,
                    "other_top": c.other_top,
                    "jaccard": c.jaccard,
                    "prob_change": c.prob_change,
                    "cosine": c.cosine,
                }
                for c in result.most_changed
            ],
        },
    )
    listed = neuroscope.models(pair["cache"])
    assert {m.model for m in listed} >= {"base", "tuned"} and all(m.complete for m in listed)
    close(
        cli_json("models", "--json", "--cache-dir", pair["cache"]),
        [
            {
                "model": m.model,
                "hub_id": m.hub_id,
                "revision": m.revision,
                "source": m.source,
                "layers": m.layers,
                "neurons_per_layer": m.neurons_per_layer,
                "views": list(m.views),
                "complete": m.complete,
            }
            for m in listed
        ],
    )


def test_experiment_and_clamp_take_the_request_fields_by_name():
    """Model.experiment and Model.clamp build a ClampRequest from their keyword arguments (one relay):
    every field is an argument of the same name, in the same order, so none can drift."""
    import inspect
    from dataclasses import fields

    from neuroscope import Model
    from neuroscope.core.experiment import ClampRequest

    names = [f.name for f in fields(ClampRequest)]
    assert list(inspect.signature(Model.experiment).parameters)[1:] == names
    clamp = [p for p in inspect.signature(Model.clamp).parameters if p not in ("self", "on_text", "cancel")]
    assert clamp == names
