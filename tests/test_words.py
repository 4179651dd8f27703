"""Words, not tokens: leading pieces join the word they begin, labels have a floor, tokens print escaped,
and `top` ranks content words first (a tiny model with planted pieces, and the real demo)."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from neuroscope.cache.labels import LABEL_FLOOR, label_unit
from neuroscope.cache.words import escape_token, is_piece_of, vocabulary_keys, word_groups

G = "\u0120"  # the byte-level BPE space marker
PIECE_VOCAB = [
    "<unk>",
    "<eos>",
    f"{G}California",
    f"{G}Californ",
    f"{G}Calif",
    "California",
    f"{G}earth",
    f"{G}earthquake",
    f"{G}earthqu",
    f"{G}earthquakes",
    f"{G}dog",
    f"{G}the",
    "ing",
    f"{G}h",
    "yss",
    "op",
]
PLANTED = {"Californ": (1, 5, "up"), "earthqu": (0, 9, "down"), "earth": (1, 13, "up")}


def keys_of(texts):
    keys, own, freq = vocabulary_keys(texts)
    word = word_groups(keys, freq)
    return [keys[word[i]] for i in own]


def test_leading_pieces_join_their_word_and_real_words_stay():
    got = dict(zip(PIECE_VOCAB, keys_of(PIECE_VOCAB)))
    for piece in (f"{G}Californ", f"{G}Calif", "California"):
        assert got[piece] == "california"
    assert got[f"{G}earthqu"] == got[f"{G}earthquakes"] == "earthquake"
    assert got[f"{G}earth"] == "earth"  # a word of its own: never swallowed
    assert got[f"{G}h"] == "h" and got["<unk>"] == ""  # too short to be a piece; special: no key
    # the rule, case by case (Zipf numbers are wordfreq's English list)
    assert is_piece_of("californ", "california", 1.4, 5.0)
    assert not is_piece_of("calif", "californiaaaaaaa", 1.0, 5.0)  # less than half the word
    assert not is_piece_of("cal", "cali", 0.0, 5.0)  # fewer than 4 letters
    assert not is_piece_of("earth", "earthquake", 5.06, 4.15)  # more common than the word


def test_a_label_below_the_floor_is_no_label():
    keys, own, freq = vocabulary_keys(["<unk>", " dog", " cat", "t1", "t2"])
    ids = np.array([[1, 2, 3], [3, 1, 4]])
    probs = np.array([[0.5, 0.1, 0.1], [0.9, LABEL_FLOOR / 2, 0.01]], np.float32)
    label, mass, count, _ = label_unit(ids, probs, own)
    assert keys[label[0]] == "dog" and mass[0] == pytest.approx(0.5)
    # t1 (0.9) labels row 1; make it fall under the floor with a row whose best word holds 2.5 %
    probs2 = np.array([[LABEL_FLOOR / 2, LABEL_FLOOR / 4, 0.0]], np.float32)
    label2, mass2, count2, _ = label_unit(np.array([[1, 2, 0]]), probs2, own)
    assert label2[0] == 0 and mass2[0] == 0 and count2[0] == 0


@pytest.mark.parametrize(
    "text, shown",
    [
        ("\u00a0", "\\u00a0"),
        ("\n", "\\n"),
        (" a\tb", " a\\tb"),
        ("\u200b", "\\u200b"),
        ("dog", "dog"),
        ("\\", "\\\\"),
        ("é", "é"),
    ],
)
def test_invisible_characters_are_escaped(text, shown):
    assert escape_token(text) == shown


@pytest.fixture(scope="module")
def piece_model(tmp_path_factory):
    """A tiny Llama whose vocabulary holds words and their leading pieces; three planted neurons decode to
    " Californ", " earthqu" (pieces) and " earth" (a word)."""
    from tokenizers import Tokenizer
    from tokenizers.models import WordLevel
    from tokenizers.pre_tokenizers import WhitespaceSplit
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    from .models import randomize

    texts = PIECE_VOCAB + [f"t{i}" for i in range(256 - len(PIECE_VOCAB))]
    path = tmp_path_factory.mktemp("pieces") / "piece-llama"
    torch.manual_seed(3)
    config = LlamaConfig(
        vocab_size=len(texts),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        tie_word_embeddings=False,
        eos_token_id=1,
        bos_token_id=1,
        pad_token_id=0,
    )
    model = LlamaForCausalLM(config)
    randomize(model, 3)
    with torch.no_grad():
        head = model.lm_head.weight
        for piece, (layer, neuron, view) in PLANTED.items():
            row = head[texts.index(G + piece)] * 6.0
            mlp = model.model.layers[layer].mlp
            if view == "up":
                mlp.up_proj.weight[neuron] = row
            else:
                mlp.down_proj.weight[:, neuron] = row
    model.save_pretrained(path, safe_serialization=True)
    tok = Tokenizer(WordLevel({w: i for i, w in enumerate(texts)}, unk_token="<unk>"))
    tok.pre_tokenizer = WhitespaceSplit()
    PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", eos_token="<eos>").save_pretrained(path)
    return path


def run(*args, cache):
    proc = subprocess.run(
        [sys.executable, "-m", "neuroscope", *args, "--cache-dir", str(cache)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    return proc


def test_a_planted_piece_neuron_is_found_by_the_whole_word(piece_model, tmp_path):
    cache = tmp_path / "cache"
    got = json.loads(run("search", str(piece_model), "California", "--json", cache=cache).stdout)
    layer, neuron, view = PLANTED["Californ"]
    hit = next(h for h in got["hits"] if (h["layer"], h["neuron"], h["view"]) == (layer, neuron, view))
    assert hit["token"].endswith("Californ") and hit["label"] == "california"
    assert {t["token"]: t["piece"] for t in got["matched"]["tokens"]}[f"{G}Californ"] is True
    concept = json.loads(run("concept", str(piece_model), "california", "--json", cache=cache).stdout)
    assert (layer, neuron, view) in {(n["layer"], n["neuron"], n["view"]) for n in concept["neurons"]}
    layer, neuron, view = PLANTED["earthqu"]
    shown = json.loads(
        run("show", str(piece_model), f"L{layer}:N{neuron}", "--view", view, "--json", cache=cache).stdout
    )
    assert shown["top"][0]["token"].endswith("earthqu") and shown["label"] == "earthquake"
    layer, neuron, view = PLANTED["earth"]
    shown = json.loads(
        run("show", str(piece_model), f"L{layer}:N{neuron}", "--view", view, "--json", cache=cache).stdout
    )
    assert shown["label"] == "earth"
    split = run("search", str(piece_model), "hyssop", cache=cache)
    assert "no token of the vocabulary is 'hyssop'" in split.stderr and "cannot stand for it" in split.stderr


# -- the real demo ---------------------------------------------------------------------------------------
DEMO = [pytest.mark.demo, pytest.mark.slow]
# Judged here, not by the ranking code: English function words (determiners, pronouns, prepositions,
# conjunctions, auxiliaries), and the token shapes that are no content word.
STOP = set(
    """a an the this that these those all any each every some no none both either neither one
i me my mine we us our you your he him his she her it its they them their oneself itself themselves
yourselves myself ourselves himself herself of in on at by for with without from to into onto upon over
under about above below across after before between through during until since than as like thereof
therein whereby whereas hence thus and or nor but yet so because although though while if unless whether
is am are was were be been being have has had do does did can could may might must shall should will would
not hadn didn doesn isn wasn don won""".split()
)


def content_word(label: str) -> bool:
    return len(label) > 1 and label.isalpha() and label.lower() not in STOP


@pytest.fixture(scope="module")
def demo_cache(tmp_path_factory):
    import os

    return os.environ.get("NEUROSCOPE_TEST_DEMO_CACHE") or str(tmp_path_factory.mktemp("demo-cache"))


@pytest.mark.demo
@pytest.mark.slow
def test_demo_california_earthquake_and_content_first(demo_cache):
    california = json.loads(run("search", "demo", "California", "--max-rank", "3", "--json", cache=demo_cache).stdout)
    assert "L25:N794" in [f"L{h['layer']}:N{h['neuron']}" for h in california["hits"][:5]]
    concept = json.loads(run("concept", "demo", "california", "--json", cache=demo_cache).stdout)
    assert (25, 794) in {(n["layer"], n["neuron"]) for n in concept["neurons"]}
    for ref in ("L11:N1501", "L7:N600", "L5:N1533"):
        views = [
            json.loads(run("show", "demo", ref, "--view", v, "--direction", d, "--json", cache=demo_cache).stdout)
            for v in ("up", "gate", "down")
            for d in ("pos", "neg")
        ]
        assert "earthquake" in {v["label"] for v in views}, ref
    top = json.loads(run("top", "demo", "--json", cache=demo_cache).stdout)["neurons"]
    assert len(top) == 20
    bad = [(r["label"], r["token"]) for r in top if not content_word(r["label"])]
    assert not bad, bad


@pytest.mark.demo
@pytest.mark.slow
def test_demo_no_probability_above_one_and_no_label_below_the_floor(demo_cache):
    out = run("export", "demo", "--format", "jsonl", cache=demo_cache).stdout.splitlines()
    assert len(out) == 30 * 1536 * 3 * 2
    worst, low = 0.0, []
    for line in out:
        row = json.loads(line)
        worst = max(worst, max(t["prob"] for t in row["top"]))
        if row["label"] is not None and row["label_mass"] < LABEL_FLOOR:
            low.append(row)
    assert worst <= 1.0 and not low
    shown = json.loads(run("show", "demo", "L0:N97", "--view", "gate", "--json", cache=demo_cache).stdout)
    assert all(t["prob"] <= 1.0 for t in shown["top"])


def test_a_split_targets_first_token_is_judged_by_the_rule():
    from neuroscope.cache.words import stands_for

    assert stands_for(" earthqu", "earthquakes") and stands_for(" Californ", "Californian")
    assert stands_for(" dog", "dog")
    assert not stands_for(" h", "hyssop") and not stands_for(" earth", "earthquake")
