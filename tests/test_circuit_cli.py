"""`neuroscope circuit`: the JSON contract on tiny saved models with a planted edge (L0:N3 writes what L2:N5's
up row reads), lists sorted by |weight|, the float64 weights, and the refusals (one line, exit 2, nothing made)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from neuroscope.cli import main

from .core.test_circuits import NEURONS, SOURCE, TARGET, build_circuit_model, reference


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("circuit-cli")
    return {kind: build_circuit_model(kind, root / kind) for kind in ("llama", "gpt2")}


def circuit(capsys, *args, cache):
    code = main(["circuit", *map(str, args), "--cache-dir", str(cache), "--dtype", "float32", "--device", "cpu"])
    out, err = capsys.readouterr()
    return code, out, err


def by_weight(entries) -> bool:
    weights = [abs(e["weight"]) for e in entries]
    return weights == sorted(weights, reverse=True)


def test_json_contract_planted_edge_first_and_float64_weights(tiny, tmp_path, capsys):
    (s, i), (t, j) = SOURCE, TARGET
    code, out, err = circuit(capsys, tiny["llama"], f"L{t}:N{j}", "--json", "--top", "5", cache=tmp_path)
    assert code == 0, err
    got = json.loads(out)
    assert list(got) == ["model", "hub_id", "revision", "layer", "neuron", "upstream", "downstream", "tokens"]
    assert (got["layer"], got["neuron"]) == (t, j) and list(got["tokens"]) == ["gate", "up"]
    assert len(got["upstream"]) == 5 and got["downstream"] == []  # the last layer feeds no neuron
    assert all(list(e) == ["layer", "neuron", "via", "weight", "label"] for e in got["upstream"])
    assert all(by_weight(x) for x in (got["upstream"], got["tokens"]["gate"], got["tokens"]["up"]))
    assert (got["upstream"][0]["layer"], got["upstream"][0]["neuron"], got["upstream"][0]["via"]) == (s, i, "up")
    for e in got["upstream"]:
        want = reference(tiny["llama"], "llama", e["layer"], t, e["via"])[e["neuron"], j]
        assert e["weight"] == pytest.approx(want, rel=1e-4, abs=1e-4)
    assert all(list(x) == ["token_id", "token", "weight"] for x in got["tokens"]["up"])

    code, out, err = circuit(capsys, tiny["llama"], f"L{s}:N{i}", "--json", "--via", "up", cache=tmp_path)
    down = json.loads(out)
    assert code == 0 and down["upstream"] == [] and list(down["tokens"]) == ["up"]  # layer 0: nothing upstream
    first = down["downstream"][0]
    assert (first["layer"], first["neuron"], first["via"]) == (t, j, "up") and by_weight(down["downstream"])
    assert all(e["via"] == "up" for e in down["downstream"]) and len(down["downstream"]) == 20


def test_gpt2_reads_through_up_only(tiny, tmp_path, capsys):
    code, out, err = circuit(capsys, tiny["gpt2"], "L1:N7", "--json", cache=tmp_path)
    assert code == 0, err
    got = json.loads(out)
    assert list(got["tokens"]) == ["up"] and {e["via"] for e in got["upstream"] + got["downstream"]} == {"up"}
    ref = reference(tiny["gpt2"], "gpt2", 0, 1)[:, 7]
    assert [e["neuron"] for e in got["upstream"]] == sorted(range(NEURONS), key=lambda n: -abs(ref[n]))[:20]


@pytest.mark.parametrize(
    "args, message",
    [
        (["L9:N0"], "layer 9 is out of range"),
        (["L1:N64"], "neuron 64 is out of range"),
        (["L1:N0", "--top", "0"], "--top must be"),
        (["L1:N0", "--top", "33"], "--top must be"),
        (["L1:N0", "--via", "gate"], "no 'gate' read vector"),
        (["nonsense"], "malformed neuron"),
    ],
)
def test_bad_input_is_one_line_and_exit_2_before_anything_loads(tiny, tmp_path, args, message):
    cache = tmp_path / "cache"
    run = subprocess.run(
        [sys.executable, "-m", "neuroscope", "circuit", str(tiny["gpt2"]), *args, "--cache-dir", str(cache)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 2, run.stderr
    assert message in run.stderr.strip().splitlines()[-1] and "Traceback" not in run.stderr
    assert not cache.exists()  # nothing was made


def test_cached_graph_is_a_lookup_without_torch(tiny, tmp_path, capsys):
    (t, j) = TARGET
    code, built, err = circuit(capsys, tiny["llama"], f"L{t}:N{j}", "--json", cache=tmp_path)
    assert code == 0, err
    script = (
        "import sys; from neuroscope.cli import main; "
        f"rc = main(['circuit', {str(tiny['llama'])!r}, 'L{t}:N{j}', '--json', '--cache-dir', {str(tmp_path)!r}]); "
        "assert rc == 0; assert 'torch' not in sys.modules and 'transformers' not in sys.modules, 'torch loaded'; "
        "assert 'gguf' not in sys.modules and 'textual' not in sys.modules"
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == json.loads(built)  # the lookup answers what the build did
    assert "building" not in proc.stderr
