"""`neuroscope trace --attribute`: the JSON contract on tiny saved models (trace's JSON plus "attribution"), the
parts summing to the pre-activation, the default token being where trace's own hooks see the neuron fire most,
and the refusals (one line, exit 2, no cache made)."""

from __future__ import annotations

import json

import pytest

from neuroscope.cli import main

from .core.test_circuits import SOURCE, TARGET, build_circuit_model, reference

PROMPT = "the dog sat on the cat and the dog ran"


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("attribution-cli")
    return {kind: build_circuit_model(kind, root / kind) for kind in ("llama", "gpt2")}


def trace(capsys, folder, *args, cache):
    code = main(
        ["trace", str(folder), "--prompt", PROMPT, *map(str, args), "--cache-dir", str(cache), "--dtype", "float32"]
    )
    out, err = capsys.readouterr()
    return code, out, err


def test_json_contract_and_the_parts_sum(tiny, tmp_path, capsys):
    t, j = TARGET
    ref = f"L{t}:N{j}"
    code, out, err = trace(
        capsys, tiny["llama"], "--attribute", ref, "--neuron", ref, "--top", "6", "--json", cache=tmp_path
    )
    assert code == 0, err
    got = json.loads(out)
    assert {"model", "prompt", "tokens", "neurons", "attribution"} <= set(got)
    a = got["attribution"]
    assert list(a)[:5] == ["layer", "neuron", "index", "token", "activation"] and (a["layer"], a["neuron"]) == (t, j)
    fired = [abs(v) for v in got["neurons"][0]["activations"]]  # trace's own hooks (core.activations)
    assert a["index"] == fired.index(max(fired))
    assert a["token"] == got["tokens"][a["index"]]["token"]
    assert a["activation"] == pytest.approx(got["neurons"][0]["activations"][a["index"]], rel=1e-5)
    assert list(a["reads"]) == ["gate", "up"]
    for read in a["reads"].values():
        assert {"total", "sources", "rest"} <= set(read) and len(read["sources"]) == 6
        for s in read["sources"]:
            assert list(s)[:6] == ["kind", "layer", "head", "neuron", "value", "label"]
            assert s["kind"] in ("embed", "attn", "neuron", "bias")
            assert (s["head"] is None) == (s["kind"] != "attn") and (s["neuron"] is None) == (s["kind"] != "neuron")
        values = [abs(s["value"]) for s in read["sources"]]
        assert values == sorted(values, reverse=True)
        parts = sum(s["value"] for s in read["sources"]) + read["rest"]
        assert parts == pytest.approx(read["total"], rel=1e-4, abs=1e-4 * read["scale"])
    # the planted L0:N3 at the token where it fires most: its activation as trace's hooks see it, its weight the
    # float64 virtual weight, its value their product over the norm's scale; neurons carry labels from the decode
    src = f"L{SOURCE[0]}:N{SOURCE[1]}"
    code, out, err = trace(capsys, tiny["llama"], "--neuron", src, "--json", cache=tmp_path)
    acts = json.loads(out)["neurons"][0]["activations"]
    at = max(range(len(acts)), key=lambda k: abs(acts[k]))
    code, out, err = trace(
        capsys, tiny["llama"], "--attribute", ref, "--at", at, "--top", "1000", "--json", cache=tmp_path
    )
    up = json.loads(out)["attribution"]["reads"]["up"]
    (planted,) = [s for s in up["sources"] if (s["kind"], s["layer"], s["neuron"]) == ("neuron", *SOURCE)]
    w = reference(tiny["llama"], "llama", SOURCE[0], t, "up")[SOURCE[1], j]
    assert planted["activation"] == pytest.approx(acts[at], rel=1e-5)
    assert planted["weight"] == pytest.approx(w, rel=1e-5)
    assert planted["value"] == pytest.approx(acts[at] * w / up["scale"], rel=1e-4)
    assert all(s["label"] is not None for s in up["sources"] if s["kind"] in ("neuron", "embed"))


def test_gpt2_has_only_up_and_negative_at_counts_from_the_end(tiny, tmp_path, capsys):
    code, out, err = trace(capsys, tiny["gpt2"], "--attribute", "L1:N7", "--at", "-1", "--json", cache=tmp_path)
    assert code == 0, err
    got = json.loads(out)
    assert list(got["attribution"]["reads"]) == ["up"]
    assert (
        got["attribution"]["index"] == len(got["tokens"]) - 1
        and len(got["attribution"]["reads"]["up"]["sources"]) == 20
    )


def test_the_plain_output_names_the_sources(tiny, tmp_path, capsys):
    code, out, err = trace(capsys, tiny["llama"], "--attribute", "L1:N2", "--top", "4", cache=tmp_path)
    assert code == 0, err
    assert "why L1:N2 fired at token" in out and "gate pre-activation" in out and "up pre-activation" in out
    assert out.count("    rest ") == 2


@pytest.mark.parametrize(
    "args, message",
    [
        (("--at", "3"), "--at needs --attribute NEURON"),
        (("--attribute", "L1:N2", "--at", "99"), "--at 99 is outside the prompt's"),
        (("--attribute", "L1:N2", "--at", "-99"), "--at -99 is outside the prompt's"),
        (("--attribute", "L7:N2"), "layer 7"),
        (("--attribute", "L1:N999"), "999"),
        (("--attribute", "dog"), "dog"),
        (("--attribute", "L1:N2", "--top", "0"), "--top"),
    ],
)
def test_bad_input_is_one_line_and_makes_no_cache(tiny, tmp_path, capsys, args, message):
    cache = tmp_path / "cache"
    try:
        code, out, err = trace(capsys, tiny["llama"], *args, cache=cache)
    except SystemExit as stop:  # argparse's refusals: the usage, then one error line
        code, err = stop.code, capsys.readouterr().err.split("\nneuroscope trace: ")[-1]
    assert code == 2
    assert message in err and len(err.strip().splitlines()) == 1, err
    assert not cache.exists() or not any(cache.iterdir())
