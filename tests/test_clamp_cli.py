"""`neuroscope clamp`: the JSON contract, presets, and one-line errors with exit code 2. Runs main() in
process (one subprocess checks the real command) so the model loads fast."""

import json
import os
import signal
import subprocess
import sys
import time

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
    code, out, err = clamp(
        capsys, model, "--set", f"{DOG}=20", "--prompt", PROMPT, "--target", "dog", "--max-new-tokens", 6, "--json"
    )
    assert code == 0, err
    got = json.loads(out)
    assert list(got) == [
        "model",
        "hub_id",
        "revision",
        "clamps",
        "prompt",
        "target",
        "baseline",
        "clamped",
        "activation",
        "settings",
    ]
    assert got["settings"] == {
        "positions": "all",
        "chat": False,
        "samples": None,
        "max_new_tokens": 6,
        "temperature": None,
        "top_p": None,
        "seed": 0,
    }
    assert got["model"] == "clamp-llama" and got["prompt"] == PROMPT and got["target"] == "dog"
    assert got["clamps"] == [{"layer": 1, "neuron": 5, "value": 20.0, "mode": "set"}]
    for side in ("baseline", "clamped"):
        assert set(got[side]) == {"text", "target_prob", "target_rate"} and got[side]["target_rate"] is None
    assert got["clamped"]["target_prob"] >= 5 * got["baseline"]["target_prob"]
    assert "dog" in got["clamped"]["text"].split()
    (act,) = got["activation"]
    assert set(act) == {"layer", "neuron", "min", "max", "last"} and act["min"] <= act["last"] <= act["max"]


def test_samples_preset_and_text_output(model, capsys, data_dir):
    code, out, err = clamp(
        capsys,
        model,
        "--set",
        f"{DOG}=20",
        "--prompt",
        PROMPT,
        "--target",
        "dog",
        "--max-new-tokens",
        4,
        "--samples",
        4,
        "--seed",
        1,
        "--save-preset",
        "dogs",
        "--json",
    )
    assert code == 0, err
    got = json.loads(out)
    assert 0 <= got["baseline"]["target_rate"] <= got["clamped"]["target_rate"] <= 1
    assert (data_dir / "presets" / "dogs.json").is_file() and "saved preset 'dogs'" in err
    code, out, err = clamp(capsys, model, "--preset", "dogs", "--max-new-tokens", 4)
    assert code == 0, err
    assert "--- baseline ---" in out and "--- clamped ---" in out  # streamed replies
    assert f"{DOG}=20" in out and "p(target)" in out and "ratio" in out


def test_multi_token_target_measures_first_token(model, capsys):
    code, out, err = clamp(
        capsys, model, "--set", f"{DOG}=20", "--prompt", PROMPT, "--target", "dog cat", "--max-new-tokens", 2, "--json"
    )
    assert code == 0 and "is 2 tokens; measuring p of its first token" in err


@pytest.mark.parametrize(
    "args, message",
    [
        (["--set", "L1:N64=3"], "neuron 64 is out of range"),
        (["--set", "L9:N1=3"], "layer 9 is out of range"),
        (["--set", "L1:N5=big"], "is not a number"),
        (["--set", "L1:N5"], "malformed --set"),
        ([], "no clamps"),
        (["--set", "L1:N5=3", "--prompt", " "], "the prompt is empty"),
        (["--set", "L1:N5=3", "--chat"], "has no chat template"),
        (["--preset", "nope"], "no preset named 'nope'"),
    ],
)
def test_bad_input_is_one_line_exit_2(model, capsys, args, message):
    if "--prompt" not in args:
        args = [*args, "--prompt", PROMPT]
    code, out, err = clamp(capsys, model, *args)
    assert code == 2 and out == ""
    lines = [line for line in err.splitlines() if not line.startswith("neuroscope: loading")]
    assert len(lines) == 1 and message in lines[0] and lines[0].startswith("neuroscope clamp: error:")


def test_real_command(model):
    proc = subprocess.run(
        [sys.executable, "-m", "neuroscope", "clamp", model, "--set", "1:5=x", "--prompt", "a"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2 and proc.stderr.strip().endswith("value 'x' is not a number in --set '1:5=x'")


def test_preset_rerun_reproduces_the_experiment(model, capsys, data_dir):
    """--save-preset keeps every setting: --preset NAME alone re-runs the same experiment (same JSON), and an
    option given with it overrides the saved one, the rest staying as saved."""
    code, first, err = clamp(
        capsys,
        model,
        "--set",
        f"{DOG}=20",
        "--mode",
        "add",
        "--positions",
        "generated",
        "--prompt",
        PROMPT,
        "--target",
        "dog",
        "--max-new-tokens",
        5,
        "--samples",
        6,
        "--temperature",
        0.9,
        "--top-p",
        0.95,
        "--seed",
        7,
        "--save-preset",
        "rerun",
        "--json",
    )
    assert code == 0, err
    saved = json.loads((data_dir / "presets" / "rerun.json").read_text())
    assert {
        k: saved[k]
        for k in ("prompt", "target", "samples", "max_new_tokens", "temperature", "top_p", "seed", "positions")
    } == {
        "prompt": PROMPT,
        "target": "dog",
        "samples": 6,
        "max_new_tokens": 5,
        "temperature": 0.9,
        "top_p": 0.95,
        "seed": 7,
        "positions": "generated",
    }
    code, again, err = clamp(capsys, model, "--preset", "rerun", "--json")
    assert code == 0, err
    assert json.loads(again) == json.loads(first)
    got = json.loads(first)
    assert got["settings"] == {
        "positions": "generated",
        "chat": False,
        "samples": 6,
        "max_new_tokens": 5,
        "temperature": 0.9,
        "top_p": 0.95,
        "seed": 7,
    }
    assert len(got["baseline"]["text"].split()) <= 5 and got["clamps"][0]["mode"] == "add"
    code, other, err = clamp(capsys, model, "--preset", "rerun", "--seed", 8, "--mode", "set", "--json")
    assert code == 0, err
    other = json.loads(other)
    assert other["settings"] == {**got["settings"], "seed": 8} and other["clamps"][0]["mode"] == "set"


def test_bad_preset_file_is_one_line(model, capsys, data_dir):
    (data_dir / "presets").mkdir(parents=True)
    (data_dir / "presets" / "odd.json").write_text(
        json.dumps({"clamps": [{"layer": 1, "neuron": 5, "value": 3}], "seed": "seven"})
    )
    code, out, err = clamp(capsys, model, "--preset", "odd")
    assert code == 2 and err.strip() == (
        "neuroscope clamp: error: preset 'odd' is unreadable (seed is \"seven\", not a int)"
    )


def test_tiny_probabilities_print_in_scientific_notation(model, capsys):
    """A suppressed target's p is far below 1e-3: the table prints it as x.xxe-yy (the JSON's value, to three
    figures), never as 0.0000, and the ratio likewise."""
    code, out, err = clamp(
        capsys, model, "--set", f"{DOG}=-60", "--prompt", PROMPT, "--target", "dog", "--max-new-tokens", 2, "--json"
    )
    assert code == 0, err
    probs = json.loads(out)
    clamped = probs["clamped"]["target_prob"]
    assert 0 < clamped < 1e-3
    code, out, err = clamp(
        capsys, model, "--set", f"{DOG}=-60", "--prompt", PROMPT, "--target", "dog", "--max-new-tokens", 2
    )
    assert code == 0, err
    rows = {line.split()[0]: line.split()[1] for line in out.splitlines()[-3:]}
    assert "e-" in rows["clamped"] and float(rows["clamped"]) == pytest.approx(clamped, rel=5e-3)
    ratio = clamped / probs["baseline"]["target_prob"]
    assert float(rows["ratio"].rstrip("x")) == pytest.approx(ratio, rel=5e-3) and "0.0000" not in out


def test_samples_show_progress_on_stderr(model, capsys):
    code, out, err = clamp(
        capsys,
        model,
        "--set",
        f"{DOG}=20",
        "--prompt",
        PROMPT,
        "--target",
        "dog",
        "--max-new-tokens",
        3,
        "--samples",
        5,
        "--json",
    )
    assert code == 0, err
    bars = [line for line in err.splitlines() if line.startswith("clamp ")]
    # 2 sides x 5 replies x 3 tokens, sampled and then scored
    assert bars[0].split()[3] == "0/60" and bars[-1].split()[2:4] == ["100.0%", "60/60"]
    assert all("tokens" in b and "ETA" in b for b in bars) and len(bars) == len(set(bars))


def test_sampling_reports_every_step_and_stops_on_request(model):
    """The API's progress factory sees the tokens step by step (per side, samples x tokens sampled, then
    scored reply by reply; never going back) up to the total; an exception raised from it, as Ctrl-C's
    KeyboardInterrupt is, stops the run there."""
    import neuroscope

    calls, closed = [], []
    lm = neuroscope.open(
        model,
        device="cpu",
        progress=lambda label: (lambda d, t: calls.append((label, d, t)), lambda: closed.append(label)),
    )
    lm.clamp([f"{DOG}=20"], prompt=PROMPT, target="dog", max_new_tokens=4, samples=3, temperature=1.0)
    assert {c[0] for c in calls} == {"clamp clamp-llama"} and closed == ["clamp clamp-llama"]
    done = [d for _, d, t in calls if t == 48]  # 2 sides x (3 x 4 sampled + 3 x 4 scored)
    assert len(done) == len(calls) and done == sorted(done) and done[-1] == 48
    assert {3, 6, 9} <= set(done)  # sampling the baseline: one step (3 tokens) at a time
    assert {16, 20, 24} <= set(done)  # scoring its replies: one reply (4 tokens) at a time

    def stop(done, total):
        if done >= 6:
            raise KeyboardInterrupt

    lm.progress = lambda label: (stop, lambda: closed.append("stopped"))
    with pytest.raises(KeyboardInterrupt):
        lm.clamp([f"{DOG}=20"], prompt=PROMPT, target="dog", max_new_tokens=4, samples=3, temperature=1.0)
    assert closed[-1] == "stopped"


@pytest.mark.slow
@pytest.mark.parametrize("sig, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_samples_can_be_stopped(model, tmp_path, sig, code):
    """Ctrl-C or `kill` while the samples run: one line on stderr after the bar, the shell's exit code, no JSON."""
    env = {**os.environ, "NEUROSCOPE_DATA_DIR": str(tmp_path)}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "neuroscope",
            "clamp",
            model,
            "--set",
            f"{DOG}=20",
            "--prompt",
            PROMPT,
            "--target",
            "dog",
            "--samples",
            "1000",
            "--max-new-tokens",
            "240",
            "--temperature",
            "1",
            "--json",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    lines = []
    while not (lines and lines[-1].startswith("clamp ")):
        lines.append(proc.stderr.readline())
        assert lines[-1], f"the run ended before its progress bar: {lines}"
    started = time.monotonic()
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == code and out == "" and time.monotonic() - started < 10
    assert (
        err.splitlines()[-1] == "neuroscope: interrupted; no result was measured (a --save-preset, if given, "
        "is already saved)"
    )


def test_number_formats():
    from neuroscope.cli.output import fmt_prob, fmt_ratio

    assert [fmt_prob(p) for p in (3.0624e-07, 1.2141e-05, 0.00099, 0.001, 0.5, 0.0, None)] == [
        "3.06e-07",
        "1.21e-05",
        "9.90e-04",
        "0.0010",
        "0.5000",
        "0.0000",
        "-",
    ]
    assert [fmt_ratio(r) for r in (39.64, 3.6, 0.0512, 2.5e-05, 412.4, 1.3e9)] == [
        "39.6x",
        "3.6x",
        "0.0512x",
        "2.50e-05x",
        "412x",
        "1.30e+09x",
    ]


def test_concept_preset_keeps_the_concept_not_its_clamps(model, capsys, data_dir, tmp_path):
    """A --concept run's preset saves the concept, strength and min-mass (its neurons are found again on the
    re-run, not frozen into --set clamps), and the re-run's JSON equals the original's."""
    cache = str(tmp_path / "cache")
    code, first, err = clamp(
        capsys,
        model,
        "--concept",
        "dog",
        "--strength",
        2.5,
        "--min-mass",
        0.3,
        "--prompt",
        PROMPT,
        "--target",
        "dog",
        "--max-new-tokens",
        3,
        "--save-preset",
        "dogc",
        "--json",
        "--cache-dir",
        cache,
    )
    assert code == 0, err
    saved = json.loads((data_dir / "presets" / "dogc.json").read_text())
    assert saved["clamps"] == [] and (saved["concept"], saved["strength"], saved["min_mass"]) == ("dog", 2.5, 0.3)
    assert any(c["layer"] == 1 and c["neuron"] == 5 for c in json.loads(first)["clamps"])  # the planted writer
    code, again, err = clamp(capsys, model, "--preset", "dogc", "--json", "--cache-dir", cache)
    assert code == 0, err
    assert json.loads(again) == json.loads(first)
