"""The real `neuroscope` command: JSON contracts, one-line errors with exit code 2, cache-only speed path."""

import json
import subprocess
import sys

import pytest

from .models import PLANTED, build


def run(*args, cache_dir=None):
    cmd = [sys.executable, "-m", "neuroscope", *map(str, args)]
    if cache_dir is not None:
        cmd += ["--cache-dir", str(cache_dir)]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def decoded(model_dirs, tmp_path_factory):
    cache = tmp_path_factory.mktemp("cli-cache")
    proc = run("decode", model_dirs["llama"], "--json", "--dtype", "float32", cache_dir=cache)
    assert proc.returncode == 0, proc.stderr
    return model_dirs["llama"], cache, json.loads(proc.stdout)


def test_decode_json(decoded):
    _, _, summary = decoded
    assert summary["model"] == "llama" and summary["views"] == ["up", "gate", "down"]
    assert summary["neurons"] == 2 * 64 and summary["seconds"] >= 0


def test_search_finds_planted_neuron(decoded):
    model, cache, _ = decoded
    proc = run("search", model, "DOG", "--view", "up", "--direction", "pos", "--json", cache_dir=cache)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["model"] == "llama" and out["query"] == "DOG"
    first = out["hits"][0]
    assert (first["layer"], first["neuron"]) == PLANTED
    assert set(first) == {
        "layer",
        "neuron",
        "view",
        "direction",
        "rank",
        "token_id",
        "token",
        "prob",
        "label",
        "label_mass",
    }
    assert first["rank"] == 1 and first["token"] == "\u0120dog"
    probs = [h["prob"] for h in out["hits"]]
    assert probs == sorted(probs, reverse=True)
    plain = run("search", model, "dog", cache_dir=cache)
    assert "L1:N7" in plain.stdout


def test_show_json_and_plain(decoded):
    model, cache, _ = decoded
    proc = run("show", model, "L1:N7", "--json", cache_dir=cache)
    out = json.loads(proc.stdout)
    assert {k: out[k] for k in ("model", "layer", "neuron", "view", "direction")} == {
        "model": "llama",
        "layer": 1,
        "neuron": 7,
        "view": "up",
        "direction": "pos",
    }
    assert len(out["top"]) == 10 and out["top"][0]["token"] == "\u0120dog"
    assert set(out["top"][0]) == {"token_id", "token", "prob"}
    assert "L1:N7 up pos" in run("show", model, "1:7", cache_dir=cache).stdout


def test_models_json(decoded):
    model, cache, _ = decoded
    out = json.loads(run("models", "--json", cache_dir=cache).stdout)
    assert out == [
        {
            "model": "llama",
            "source": str(model),
            "layers": 2,
            "neurons_per_layer": 64,
            "views": ["up", "gate", "down"],
            "complete": True,
            "hub_id": None,
            "revision": None,
        }
    ]


def test_cache_only_commands_do_not_import_torch(decoded):
    model, cache, _ = decoded
    code = (
        "import sys; from neuroscope.cli import main; "
        f"rc = main(['search', {str(model)!r}, 'dog', '--cache-dir', {str(cache)!r}]); "
        f"main(['show', {str(model)!r}, 'L0:N1', '--cache-dir', {str(cache)!r}]); "
        f"main(['models', '--cache-dir', {str(cache)!r}]); "
        "assert rc == 0; assert 'torch' not in sys.modules and 'transformers' not in sys.modules, 'torch loaded'; "
        "assert 'textual' not in sys.modules"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def test_core_and_cache_never_import_textual():
    code = (
        "import sys, neuroscope.core.decode, neuroscope.core.pipeline, neuroscope.cache.store, "
        "neuroscope.cache.catalog; assert 'textual' not in sys.modules"
    )
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0
    code = "import sys, neuroscope.cache.store, neuroscope.cache.catalog; assert 'torch' not in sys.modules"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


@pytest.mark.parametrize(
    "args, message",
    [
        (("show", "no/such/dir", "1:2"), "no such model"),
        (("show", "missing.gguf", "1:2"), "no such GGUF file"),
        (("show", "{llama}", "L1-N2"), "malformed neuron"),
        (("show", "{llama}", "L9:N0"), "layer 9 is out of range"),
        (("show", "{llama}", "L1:N640"), "neuron 640 is out of range"),
        (("show", "{gpt2}", "L0:N1", "--view", "gate"), "has no 'gate' view"),
        (("search", "{llama}", "   "), "TEXT is empty"),
        (("decode", "{llama}", "--top-k", "0"), "--top-k must be between 1 and 255"),
        (("decode", "{llama}", "--views", "up,sideways"), "unknown view 'sideways'"),
        (("decode", "{opt}", "--device", "cpu"), "unsupported architecture"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(decoded, model_dirs, tmp_path_factory, args, message):
    _, cache, _ = decoded
    dirs = dict(model_dirs)
    if any("{opt}" in a for a in args):
        dirs["opt"] = build("opt", tmp_path_factory.mktemp("opt") / "opt")
    proc = run(*[a.format(**dirs) for a in args], cache_dir=cache)
    assert proc.returncode == 2, proc.stderr
    # progress and notes may come first (a model is decoded on demand); the error is one line, the last
    errors = [line for line in proc.stderr.splitlines() if "error:" in line]
    assert len(errors) == 1 and message in errors[0], proc.stderr
    assert proc.stderr.splitlines()[-1] == errors[0]
    assert "Traceback" not in proc.stderr


def test_corrupt_cache_is_reported(model_dirs, tmp_path):
    cache = tmp_path / "c"
    assert run("decode", model_dirs["neox"], "--dtype", "float32", cache_dir=cache).returncode == 0
    [path] = cache.glob("*.sqlite")
    path.write_bytes(b"garbage" * 1000)
    proc = run("show", model_dirs["neox"], "0:0", cache_dir=cache)
    assert proc.returncode == 2 and "unreadable" in proc.stderr and "--rebuild" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert run("decode", model_dirs["neox"], "--rebuild", cache_dir=cache).returncode == 0
    assert run("show", model_dirs["neox"], "0:0", cache_dir=cache).returncode == 0


def test_most_recently_used_model(model_dirs, tmp_path):
    from neuroscope.cache.catalog import mark_used, most_recent
    from neuroscope.core.loading.sources import resolve

    cache = tmp_path / "mru"
    assert most_recent(cache) is None  # nothing cached: the app opens demo
    for kind in ("gpt2", "neox"):
        assert run("decode", model_dirs[kind], "--dtype", "float32", cache_dir=cache).returncode == 0
    assert most_recent(cache) == str(model_dirs["neox"])  # the last decoded
    s = resolve(str(model_dirs["gpt2"]))
    mark_used(s.name, s.source, s.fingerprint, cache)  # what `neuroscope tui` does on open
    assert most_recent(cache) == str(model_dirs["gpt2"])


@pytest.mark.parametrize(
    "args",
    [
        ("show", "{llama}", "L1\nN2"),
        ("search", "{llama}", "dog", "--match", "x\ry"),
        ("decode", "{llama}", "--views", "up,si\u2028de"),
        ("show", "no\nsuch", "1:2"),
    ],
)
def test_control_characters_stay_on_one_line(model_dirs, args):
    """What the user typed is echoed in the error with its newlines and carriage returns escaped."""
    from .fuzzing import run as run_in_process
    from .fuzzing import split_usage

    outcome = run_in_process([a.format(**model_dirs) for a in args])
    assert outcome.code == 2 and not outcome.problems()
    usage, rest = split_usage(outcome.stderr)
    assert len(rest) == 1 and bool(usage) == (args[0] in ("search", "decode"))  # argparse errors: with usage
    assert any(escaped in outcome.stderr for escaped in ("\\n", "\\r", "\\u2028"))


def test_show_prints_tiny_probabilities_in_scientific_notation(decoded):
    """The planted neuron's top-1 holds nearly all the mass, so its later tokens' probabilities are far
    below 1e-3: the table shows each as the JSON's value to three figures, never as 0.0000."""
    model, cache, _ = decoded
    ref = "L{}:N{}".format(*PLANTED)
    got = json.loads(run("show", model, ref, "--json", cache_dir=cache).stdout)["top"]
    tiny = [t["prob"] for t in got if 0 < t["prob"] < 1e-3]
    assert tiny, "the planted neuron should have top-k tokens below 1e-3"
    rows = run("show", model, ref, cache_dir=cache).stdout.splitlines()[1:]
    shown = [float(row.split()[-2]) for row in rows]  # rank, token, prob, bar
    assert shown == pytest.approx([t["prob"] for t in got], rel=5e-3, abs=5e-5)
    assert all("e-" in row.split()[-2] for row, t in zip(rows, got) if 0 < t["prob"] < 1e-3)


def test_every_command_is_run_by_a_function_of_a_registered_group():
    """The commands are registered in one place (cli/parser.py's GROUPS): each subcommand names the function
    that runs it, defined in the group module that added it, and every group adds at least one."""
    import argparse

    from neuroscope.cli.parser import GROUPS, build_parser

    [sub] = [a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)]
    runs = {name: parser.get_default("run") for name, parser in sub.choices.items()}
    assert [name for name, run in runs.items() if not callable(run)] == []
    assert {run.__module__ for run in runs.values()} == {group.__name__ for group in GROUPS}
    assert set(runs) == {
        "decode",
        "show",
        "search",
        "models",
        "circuit",
        "clamp",
        "compare",
        "trace",
        "examples",
        "agreement",
        "top",
        "concept",
        "export",
        "tui",
    }
