"""Clamp hooks on a tiny Llama whose L1:N5 writes "dog": the effect, the modes and positions, and that
the hooks are always gone afterwards (normal exit, exception, cancel): outputs equal bit for bit."""

import threading

import pytest
import torch

from neuroscope.core.clamp import (
    BadClamp,
    Clamp,
    ClampSet,
    clamped,
    hooks_installed,
    load_preset,
    recording,
    save_preset,
)
from neuroscope.core.generate import GenSettings, build_prompt, generate, next_token_probs
from neuroscope.core.loading.models import load
from neuroscope.core.loading.sources import resolve
from neuroscope.core.measure import Experiment, contains_word, run_experiment, target_token
from neuroscope.core.refs import NeuronRef
from neuroscope.errors import GenerationError

from ..models import CLAMP_PLANTED, CLAMP_WORD, build_clamp_llama

PROMPT = "t5 t9 t12 cat t40"
DOG = NeuronRef(*CLAMP_PLANTED)


@pytest.fixture(scope="module")
def lm(tmp_path_factory):
    return load(resolve(str(build_clamp_llama(tmp_path_factory.mktemp("clamp") / "clamp-llama"))))


@pytest.fixture(scope="module")
def prompt(lm):
    return build_prompt(lm, PROMPT, chat=False)


def logits(lm, prompt):
    with torch.inference_mode():
        return lm.model(input_ids=prompt.ids, use_cache=False).logits.clone()


def test_clamping_the_planted_neuron_raises_p_dog(lm, prompt):
    target = target_token(lm, prompt, CLAMP_WORD)
    base = next_token_probs(lm, prompt)[target.token_id]
    high = next_token_probs(lm, prompt, ClampSet([Clamp(DOG, 20.0)]))[target.token_id]
    assert high >= 5 * base and high > 0.01
    other = next_token_probs(lm, prompt, ClampSet([Clamp(NeuronRef(1, 6), 20.0)]))[target.token_id]
    assert other < high / 5  # a neuron that does not write "dog" does not do it
    assert hooks_installed(lm.adapter) == 0


def test_hooks_gone_after_normal_exit_exception_and_cancel(lm, prompt):
    before = logits(lm, prompt)
    clamps = ClampSet([Clamp(DOG, 20.0), Clamp(NeuronRef(0, 3), -4.0, "add")])
    with clamped(lm.adapter, clamps):
        assert hooks_installed(lm.adapter) == 2
        assert not torch.equal(logits(lm, prompt), before)
    assert hooks_installed(lm.adapter) == 0 and torch.equal(logits(lm, prompt), before)

    with pytest.raises(RuntimeError, match="boom"):
        with clamped(lm.adapter, clamps):
            raise RuntimeError("boom")
    assert hooks_installed(lm.adapter) == 0 and torch.equal(logits(lm, prompt), before)

    cancel, pieces = threading.Event(), []

    def on_text(text):
        pieces.append(text)
        cancel.set()  # cancel after the first streamed piece

    gen = generate(lm, prompt, GenSettings(max_new_tokens=30), clamps, on_text=on_text, cancel=cancel)
    assert gen.cancelled and gen.new_tokens < 30
    assert hooks_installed(lm.adapter) == 0 and torch.equal(logits(lm, prompt), before)

    def boom(_text):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        generate(lm, prompt, GenSettings(max_new_tokens=5), clamps, on_text=boom)
    assert hooks_installed(lm.adapter) == 0 and torch.equal(logits(lm, prompt), before)


def seen_by_down(lm, prompt, clamps, ref):
    """The down projection's input at ``ref`` (after the clamp hook) for every prompt position."""
    with clamped(lm.adapter, clamps, prompt.length), recording(lm.adapter, [ref]) as got, torch.inference_mode():
        lm.model(input_ids=prompt.ids, use_cache=False)
    return got[ref]


@pytest.mark.parametrize("mode", ["set", "add", "scale"])
def test_modes(lm, prompt, mode):
    natural = seen_by_down(lm, prompt, None, DOG)
    got = seen_by_down(lm, prompt, ClampSet([Clamp(DOG, 3.0, mode)]), DOG)
    want = {"set": torch.full_like(natural, 3.0), "add": natural + 3.0, "scale": natural * 3.0}[mode]
    torch.testing.assert_close(got, want)


def test_generated_positions_leave_the_prompt_alone(lm, prompt):
    natural = seen_by_down(lm, prompt, None, DOG)
    got = seen_by_down(lm, prompt, ClampSet([Clamp(DOG, 9.0)], positions="generated"), DOG)
    assert torch.equal(got[:-1], natural[:-1]) and got[-1] == 9.0  # the last prompt position predicts


def test_generation_greedy_is_deterministic_and_streams(lm, prompt):
    clamps = ClampSet([Clamp(DOG, 20.0)])
    pieces = []
    a = generate(lm, prompt, GenSettings(max_new_tokens=8), clamps, on_text=pieces.append)
    b = generate(lm, prompt, GenSettings(max_new_tokens=8), clamps)
    assert a.text == b.text and "".join(pieces) == a.text and a.new_tokens == 8
    assert CLAMP_WORD in a.text.split()


def test_sampling_is_seeded_and_counts_target_rate(lm, prompt):
    settings = GenSettings(max_new_tokens=6, temperature=1.0, top_p=0.95, seed=3)
    a = generate(lm, prompt, settings, num=4)
    b = generate(lm, prompt, settings, num=4)
    assert a.texts == b.texts and len(a.texts) == 4
    result = run_experiment(
        lm,
        Experiment(PROMPT, ClampSet([Clamp(DOG, 20.0)]), GenSettings(max_new_tokens=6), target=CLAMP_WORD, samples=8),
    )
    assert result.clamped.target_rate > result.baseline.target_rate
    assert result.clamped.target_prob >= 5 * result.baseline.target_prob
    assert [a.ref for a in result.activation] == [DOG]
    act = result.activation[0]
    assert act.min <= act.last <= act.max


def test_other_architectures_clamp_too(model_dirs):
    for kind in ("gpt2", "neox"):
        other = load(resolve(str(model_dirs[kind])))
        p = build_prompt(other, "dog cat", chat=False)
        base = logits(other, p)
        got = seen_by_down(other, p, ClampSet([Clamp(NeuronRef(1, 2), 7.0)]), NeuronRef(1, 2))
        assert torch.all(got == 7.0)
        assert hooks_installed(other.adapter) == 0 and torch.equal(logits(other, p), base)


def test_bad_input():
    with pytest.raises(BadClamp, match="malformed --set"):
        Clamp.parse("L1:N5")
    with pytest.raises(BadClamp, match="not a number"):
        Clamp.parse("L1:N5=lots")
    with pytest.raises(ValueError, match="malformed neuron"):
        Clamp.parse("L1-N5=3")
    with pytest.raises(ValueError, match="out of range"):
        ClampSet([Clamp.parse("L1:N64=3")]).check(2, 64)
    assert contains_word("Dogs are great", "dog") and not contains_word("a hotdog", "dog")


def test_chat_without_template_and_empty_prompt(lm):
    with pytest.raises(GenerationError, match="no chat template"):
        build_prompt(lm, "hello", chat=True)
    with pytest.raises(GenerationError, match="empty"):
        build_prompt(lm, "  ", chat=False)


def test_presets_roundtrip(tmp_path, monkeypatch):
    monkeypatch.setenv("NEUROSCOPE_DATA_DIR", str(tmp_path))
    clamps = ClampSet([Clamp(DOG, 20.0), Clamp(NeuronRef(0, 1), 0.5, "scale")], positions="generated")
    path = save_preset("dogs", clamps, {"prompt": PROMPT})
    assert path.parent == tmp_path / "presets"
    got, extra = load_preset("dogs")
    assert got == clamps and extra == {"prompt": PROMPT}
    with pytest.raises(BadClamp, match="no preset named 'cats'; saved: dogs"):
        load_preset("cats")
    with pytest.raises(BadClamp, match="bad preset name"):
        save_preset("../x", clamps)
