"""`neuroscope clamp`: the JSON contract, presets, and one-line errors with exit code 2. Runs main() in
process (one subprocess checks the real command) so the model loads fast."""
import json
import subprocess
import sys

import pytest

from neuroscope.cli import main

from .models import CLAMP_PLANTED, build_clamp_llama

DOG = "L{}:N{}".format(*CLAMP_PLANTED)
PROMPT = "t5 t9 t12 cat t40"


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return str(build_clamp_llama(tmp_path_factory.mktemp("clamp-cli") / "clamp-llama"))


@pytest.fixture(autouse=True)
def data_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("NEUROSCOPE_DATA_DIR", str(tmp_path / "data"))
    return tmp_path / "data"


def clamp(capsys, *args):
    code = main(["clamp", *map(str, args)])
    out, err = capsys.readouterr()
    return code, out, err


def test_json_contract(model, capsys):
    code, out, err = clamp(capsys, model, "--set", f"{DOG}=20", "--prompt", PROMPT, "--target", "dog",
                           "--max-new-tokens", 6, "--json")
    assert code == 0, err
    got = json.loads(out)
    assert list(got) == ["model", "hub_id", "revision", "clamps", "prompt", "target", "baseline", "clamped",
                         "activation"]
    assert got["model"] == "clamp-llama" and got["prompt"] == PROMPT and got["target"] == "dog"
    assert got["clamps"] == [{"layer": 1, "neuron": 5, "value": 20.0, "mode": "set"}]
    for side in ("baseline", "clamped"):
        assert set(got[side]) == {"text", "target_prob", "target_rate"} and got[side]["target_rate"] is None
    assert got["clamped"]["target_prob"] >= 5 * got["baseline"]["target_prob"]
    assert "dog" in got["clamped"]["text"].split()
    (act,) = got["activation"]
    assert set(act) == {"layer", "neuron", "min", "max", "last"} and act["min"] <= act["last"] <= act["max"]


def test_samples_preset_and_text_output(model, capsys, data_dir):
    code, out, err = clamp(capsys, model, "--set", f"{DOG}=20", "--prompt", PROMPT, "--target", "dog",
                           "--max-new-tokens", 4, "--samples", 4, "--seed", 1, "--save-preset", "dogs", "--json")
    assert code == 0, err
    got = json.loads(out)
    assert 0 <= got["baseline"]["target_rate"] <= got["clamped"]["target_rate"] <= 1
    assert (data_dir / "presets" / "dogs.json").is_file() and "saved preset 'dogs'" in err
    code, out, err = clamp(capsys, model, "--preset", "dogs", "--max-new-tokens", 4)
    assert code == 0, err
    assert "--- baseline ---" in out and "--- clamped ---" in out          # streamed replies
    assert f"{DOG}=20" in out and "p(target)" in out and "ratio" in out


def test_multi_token_target_measures_first_token(model, capsys):
    code, out, err = clamp(capsys, model, "--set", f"{DOG}=20", "--prompt", PROMPT, "--target", "dog cat",
                           "--max-new-tokens", 2, "--json")
    assert code == 0 and "is 2 tokens; measuring p of its first token" in err


@pytest.mark.parametrize("args, message", [
    (["--set", "L1:N64=3"], "neuron 64 is out of range"),
    (["--set", "L9:N1=3"], "layer 9 is out of range"),
    (["--set", "L1:N5=big"], "is not a number"),
    (["--set", "L1:N5"], "malformed --set"),
    ([], "no clamps"),
    (["--set", "L1:N5=3", "--prompt", " "], "the prompt is empty"),
    (["--set", "L1:N5=3", "--chat"], "has no chat template"),
    (["--preset", "nope"], "no preset named 'nope'"),
])
def test_bad_input_is_one_line_exit_2(model, capsys, args, message):
    if "--prompt" not in args:
        args = [*args, "--prompt", PROMPT]
    code, out, err = clamp(capsys, model, *args)
    assert code == 2 and out == ""
    lines = [line for line in err.splitlines() if not line.startswith("neuroscope: loading")]
    assert len(lines) == 1 and message in lines[0] and lines[0].startswith("neuroscope clamp: error:")


def test_real_command(model):
    proc = subprocess.run([sys.executable, "-m", "neuroscope", "clamp", model, "--set", "1:5=x", "--prompt", "a"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and proc.stderr.strip().endswith("value 'x' is not a number in --set '1:5=x'")
