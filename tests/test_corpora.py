"""Corpora users have: the same documents as a folder of .txt files, a .jsonl, .parquet or .csv file, a
folder saved by ``datasets`` and a Hugging Face dataset id read from a local cache (offline) give the same
token windows and the same examples; bad corpus input is one line, exit 2, before any model loads; a big
corpus is read only as far as the examples need. No network: conftest sets HF_HUB_OFFLINE=1."""

from __future__ import annotations

import csv
import json
import random
import sys

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import neuroscope
from neuroscope.cache.examples import Examples
from neuroscope.core import corpus as corpus_mod
from neuroscope.core.corpus import open_corpus, windows
from neuroscope.errors import UsageError

from .fuzzing import run, snapshot
from .models import FIRING, build_firing_llama, vocab

datasets = pytest.importorskip("datasets")  # the `corpora` extra, in the `test` extra too

TOKENS, WINDOW = 1536, 64
EOS = 1  # tests/models.py: "<eos>" is token 1


def documents(count: int = 24, words: int = 80, seed: int = 11) -> list[str]:
    """Texts of the firing Llama's words (filler t20-t299, "dog"/"cat" at a tenth of the places)."""
    rng = random.Random(seed)
    filler = [f"t{i}" for i in range(20, 300)]
    return [
        " ".join(rng.choice(["dog", "cat"]) if rng.random() < 0.1 else rng.choice(filler) for _ in range(words))
        for _ in range(count)
    ]


def expected_windows(docs: list[str], tokens: int = TOKENS) -> np.ndarray:
    """The token stream written here: each word's id in the fixtures' vocabulary, <eos> after each text."""
    ids = []
    for doc in docs:
        ids += [vocab().index(w) for w in doc.split()] + [EOS]
    return np.asarray(ids[:tokens], np.int32).reshape(-1, WINDOW)


def hub_cache(root, docs: list[str], name: str = "corpus_test", revision: str = "0123abcd"):
    """What `load_dataset(name)` leaves in the datasets cache once online: the parquet builder's prepared
    arrow split under <cache>/<name>/default/0.0.0/<revision>, made here from a local parquet file."""
    from datasets.data_files import DataFilesDict
    from datasets.packaged_modules.parquet.parquet import Parquet, ParquetConfig

    pq.write_table(pa.table({"text": docs}), root / "hub-train.parquet")

    # the class lives in the parquet builder's module: datasets patches a builder module's globals for streaming
    configs = [
        ParquetConfig(
            name="default", data_files=DataFilesDict.from_patterns({"train": [str(root / "hub-train.parquet")]})
        )
    ]
    Hub = type("Hub", (Parquet,), {"BUILDER_CONFIGS": configs, "__module__": Parquet.__module__})
    cache = root / "hf-datasets"
    Hub(dataset_name=name, config_name="default", hash=revision, cache_dir=str(cache)).download_and_prepare()
    return cache


@pytest.fixture(scope="module")
def corpora(tmp_path_factory):
    """The firing Llama and the same texts in every form."""
    root = tmp_path_factory.mktemp("corpora")
    folder = build_firing_llama(root / "firing-llama")
    docs = documents()
    (root / "texts").mkdir()
    for i, doc in enumerate(docs):
        (root / "texts" / f"doc{i:03d}.txt").write_text(doc)
    pq.write_table(pa.table({"id": list(range(len(docs))), "text": docs}), root / "texts.parquet", row_group_size=5)
    with open(root / "texts.jsonl", "w") as handle:
        handle.writelines(json.dumps({"id": i, "text": doc}) + "\n" for i, doc in enumerate(docs))
    with open(root / "texts.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "body"])
        writer.writerows([i, doc] for i, doc in enumerate(docs))
    datasets.Dataset.from_dict({"text": docs, "n": list(range(len(docs)))}).save_to_disk(str(root / "saved"))
    datasets.DatasetDict(
        {"train": datasets.Dataset.from_dict({"text": ["t20 t21"]}), "test": datasets.Dataset.from_dict({"text": docs})}
    ).save_to_disk(str(root / "saved-dict"))
    return folder, docs, root, hub_cache(root, docs)


@pytest.fixture
def offline_hub(corpora, monkeypatch):
    """The datasets library offline, on the cache made above (no network whatever the environment says)."""
    import huggingface_hub.constants

    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", corpora[3])
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")


def computed(folder, cache, corpus, **kw):
    model = neuroscope.open(str(folder), cache_dir=cache, device="cpu", dtype="float32", progress=False)
    result = model.examples(corpus, tokens=TOKENS, per_neuron=5, window=WINDOW, batch=4, **kw)
    with model._cached_store() as store:
        ex = Examples(store)
        return result, ex.windows(), ex.states(store.neurons), model.neuron(FIRING).examples("pos")


@pytest.mark.parametrize(
    "form, kw, source",
    [
        ("texts.parquet", {}, {"kind": "parquet", "column": "text"}),
        ("texts.jsonl", {}, {"kind": "jsonl", "column": "text"}),
        ("texts.csv", {"text_column": "body"}, {"kind": "csv", "column": "body"}),
        ("saved", {}, {"kind": "saved", "column": "text", "split": None, "rows": 24}),
        ("saved-dict@test", {}, {"kind": "saved", "column": "text", "split": "test", "rows": 24}),
        (
            "corpus_test",
            {},
            {
                "kind": "hub",
                "dataset": "corpus_test",
                "config": "default",
                "split": "train",
                "revision": "0123abcd",
                "column": "text",
                "streamed": False,
            },
        ),
    ],
)
def test_every_form_gives_the_examples_of_the_same_text_files(corpora, offline_hub, tmp_path, form, kw, source):
    folder, docs, root, _ = corpora
    reference, ref_windows, ref_states, ref_pos = computed(folder, tmp_path / "txt", str(root / "texts"))
    np.testing.assert_array_equal(ref_windows, expected_windows(docs))  # the stream written in this test
    assert all(e.tokens[e.index] == "dog" for e in ref_pos)  # the planted neuron, as a check
    spec = form if form == "corpus_test" else root / form if form == "texts.parquet" else str(root / form)  # a Path too
    result, got_windows, got_states, got_pos = computed(folder, tmp_path / "other", spec, **kw)
    np.testing.assert_array_equal(got_windows, ref_windows)
    assert sorted(got_states) == sorted(ref_states) == [0, 1]
    for layer in ref_states:
        for key in ("vals", "pos", "case", "cases", "positive"):
            np.testing.assert_array_equal(got_states[layer][key], ref_states[layer][key], err_msg=f"L{layer} {key}")
    assert [e.as_dict() for e in got_pos] == [e.as_dict() for e in ref_pos]
    assert result.complete and result.tokens == reference.tokens == TOKENS
    assert {k: v for k, v in result.source.items() if k in source} == source
    if source["kind"] != "hub":
        assert result.source["path"] == str((root / form.split("@")[0]).resolve())


def test_the_cli_json_names_the_corpus_and_a_column_change_starts_again(corpora, tmp_path):
    folder, docs, root, _ = corpora
    cache = tmp_path / "cache"
    pq.write_table(pa.table({"text": docs, "other": list(reversed(docs))}), tmp_path / "two.parquet")
    args = [
        "examples",
        str(folder),
        "--corpus",
        str(tmp_path / "two.parquet"),
        "--tokens",
        str(TOKENS),
        "--window",
        str(WINDOW),
        "--per-neuron",
        "5",
        "--device",
        "cpu",
        "--cache-dir",
        str(cache),
        "--json",
    ]
    first = run(args)
    assert first.code == 0 and not first.problems(), first.stderr
    out = json.loads(first.stdout)
    assert out["corpus"] == "two.parquet" and out["processed"] == TOKENS
    assert out["corpus_source"] == {"kind": "parquet", "path": str(tmp_path / "two.parquet"), "column": "text"}
    other = run(args + ["--text-column", "other"])
    assert other.code == 0 and json.loads(other.stdout)["processed"] == TOKENS  # not the cached column
    assert json.loads(other.stdout)["corpus_source"]["column"] == "other"
    assert "starting the examples again" in other.stderr
    plain = run(args[:-1] + ["--text-column", "other"])
    assert plain.code == 0 and f"of {tmp_path / 'two.parquet'} (column 'other') already cached" in plain.stdout


def test_the_default_corpus_is_named():
    corpus = open_corpus(None)
    assert corpus.source["kind"] == "kjv" and corpus.source["title"] == "the King James Bible"
    assert corpus_mod.label(corpus.name, corpus.source).startswith("the King James Bible (kjv, the default corpus")


@pytest.fixture
def no_model_load(monkeypatch):
    """Loading the model or its tokenizer fails the test: bad corpus input must be refused before."""
    from neuroscope.core.loading import models

    def refuse(*_args, **_kwargs):
        raise AssertionError("the model (or its tokenizer) was loaded on bad corpus input")

    monkeypatch.setattr(models, "load", refuse)
    monkeypatch.setattr(models, "load_tokenizer", refuse)


@pytest.mark.parametrize(
    "corpus, extra, message",
    [
        ("{root}/missing.txt", [], "no such corpus: {root}/missing.txt (give a .txt file"),
        ("/nonexistent.txt", [], "no such corpus: /nonexistent.txt"),
        ("{root}/texts.parquet", ["--text-column", "body"], "has no column 'body' (its columns: id, text)"),
        ("{root}/texts.parquet", ["--text-column", "id"], "column 'id' of {root}/texts.parquet holds int64, not text"),
        (
            "{root}/texts.csv",
            [],
            "texts.csv has no column 'text' (its columns: id, body): choose one with --text-column",
        ),
        ("{root}/texts.jsonl", ["--text-column", "body"], "(line 1) has no column 'body' (its columns: id, text)"),
        (
            "{root}/saved",
            ["--text-column", "body"],
            "the saved dataset {root}/saved has no column 'body' (its columns: text, n)",
        ),
        ("{root}/saved-dict@valid", [], "has no split 'valid' (its splits: train, test)"),
        (
            "{root}/texts",
            ["--text-column", "body"],
            "--text-column 'body' is for .jsonl/.parquet/.csv files and datasets",
        ),
        ("{root}/texts.parquet", ["--text-column", " "], "--text-column is empty"),
        ("{root}/fake.parquet", [], "fake.parquet is not a parquet file"),
        ("{root}/blank.jsonl", [], "blank.jsonl holds no JSON lines"),
        (
            "nobody_has_this_corpus",
            [],
            "cannot read the dataset nobody_has_this_corpus: it is not in the local Hugging "
            "Face cache (HF_HUB_OFFLINE or HF_DATASETS_OFFLINE is set); run it once online",
        ),
        ("corpus_test:nope", [], "cannot read the dataset corpus_test:nope from the local Hugging Face cache"),
        ("corpus_test@validation", [], "corpus_test@validation has no split 'validation' (its splits: train)"),
        ("owner/name/extra", [], "no such corpus: owner/name/extra"),
        ("bad id!", [], "no such corpus: bad id!"),
    ],
)
def test_bad_corpus_input_is_one_line_exit_2_before_the_model_loads(
    corpora, offline_hub, no_model_load, tmp_path, corpus, extra, message
):
    folder, _, root, _ = corpora
    (root / "fake.parquet").write_text("not parquet at all")
    (root / "blank.jsonl").write_text("\n  \n")
    cache = tmp_path / "cache"
    before = snapshot(cache)
    outcome = run(["examples", str(folder), "--corpus", corpus.format(root=root), *extra, "--cache-dir", str(cache)])
    assert outcome.code == 2 and not outcome.problems(), outcome.stderr + (outcome.traceback or "")
    assert message.format(root=root) in outcome.stderr
    assert snapshot(cache) == before


def test_without_the_datasets_library_the_error_names_the_extra(corpora, no_model_load, monkeypatch, tmp_path):
    folder, _, root, _ = corpora
    monkeypatch.setitem(sys.modules, "datasets", None)  # `import datasets` fails, as uninstalled
    for corpus in ("wikitext:wikitext-2-raw-v1@test", str(root / "saved")):
        outcome = run(["examples", str(folder), "--corpus", corpus, "--cache-dir", str(tmp_path)])
        assert outcome.code == 2 and not outcome.problems(), outcome.stderr
        assert "needs the datasets library: pip install 'neuroscope[corpora]'" in outcome.stderr


def test_an_unreachable_hub_reads_the_local_cache(corpora, monkeypatch, no_model_load):
    """Online by the flags, but the hub's endpoint refuses (a closed local port, so no network): the id is
    read from the local cache, said so; one that is not cached is one line naming the unreachable host."""
    import huggingface_hub.constants

    _, docs, _, cache = corpora
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", cache)
    for module, name in ((datasets.config, "HF_HUB_OFFLINE"), (huggingface_hub.constants, "HF_HUB_OFFLINE")):
        monkeypatch.setattr(module, name, False)
    for module, name in ((datasets.config, "HF_ENDPOINT"), (huggingface_hub.constants, "ENDPOINT")):
        monkeypatch.setattr(module, name, "http://127.0.0.1:9")
    for var in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(var, raising=False)
    corpus = open_corpus("corpus_test")
    assert corpus.source["streamed"] is False and list(corpus.documents()) == docs
    assert corpus_mod.label(corpus.name, corpus.source).endswith("revision 0123abcd, from the local cache)")
    assert datasets.config.HF_HUB_OFFLINE is False  # the flags are given back
    with pytest.raises(
        UsageError,
        match=r"nobody_has_this: it is not in the local Hugging Face cache \(the hub is "
        r"unreachable: 127\.0\.0\.1: Connection refused\)",
    ):
        open_corpus("nobody_has_this")


def test_a_streamed_dataset_reads_like_the_mapped_one(corpora):
    """What an online hub id gives (an IterableDataset, here streamed from the local parquet file, so no
    network) is read by the same reader, in the same order, column only."""
    from neuroscope.core.corpus_formats import read_rows

    _, docs, root, _ = corpora
    streamed = datasets.load_dataset(
        "parquet", data_files={"train": str(root / "texts.parquet")}, split="train", streaming=True
    )
    assert isinstance(streamed, datasets.IterableDataset)
    assert list(read_rows(streamed, "text")) == docs


def test_hub_ids_parse_as_name_config_split():
    from neuroscope.core.corpus_formats import parse_hub_id

    assert parse_hub_id("wikitext") == ("wikitext", None, "train")
    assert parse_hub_id("Salesforce/wikitext:wikitext-2-raw-v1@test") == (
        "Salesforce/wikitext",
        "wikitext-2-raw-v1",
        "test",
    )
    assert parse_hub_id("HuggingFaceFW/fineweb-edu@train") == ("HuggingFaceFW/fineweb-edu", None, "train")
    for bad in ("a/b/c", "name:", "name@", "-lead", "two words", "notes.txt", "data.parquet"):
        assert parse_hub_id(bad) is None, bad


@pytest.fixture(scope="module")
def tokenizer(corpora):
    """The tiny models' own tokenizer (word level, over tests/models.py's vocabulary)."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(corpora[0])


def test_a_folder_of_shards_reads_its_data_files_in_name_order(corpora, tokenizer, tmp_path):
    """A dataset repository's folder (data/train-0000x.parquet, a README.md beside them): the data files only,
    by name, each with the column; the same windows as the texts one by one."""
    _, docs, _, _ = corpora
    (tmp_path / "data").mkdir()
    (tmp_path / "README.md").write_text("# a dataset card, not a document")
    for i, part in enumerate((docs[12:], docs[:12])):  # written out of order: read by name
        pq.write_table(pa.table({"text": part}), tmp_path / "data" / f"train-{1 - i:05d}-of-00002.parquet")
    corpus = open_corpus(str(tmp_path))
    assert corpus.source == {"kind": "folder", "path": str(tmp_path.resolve()), "column": "text", "files": 2}
    np.testing.assert_array_equal(windows(corpus, tokenizer, TOKENS, WINDOW), expected_windows(docs))
    with pytest.raises(UsageError, match="train-00000-of-00002.parquet has no column 'body'"):
        open_corpus(str(tmp_path), "body")


def test_a_big_text_file_is_read_in_pieces_to_the_same_windows(tokenizer, tmp_path, monkeypatch):
    words = documents(count=1, words=3000)[0].split()
    path = tmp_path / "big.txt"
    path.write_text("\n".join(" ".join(words[i : i + 10]) for i in range(0, len(words), 10)))
    whole = windows(open_corpus(str(path)), tokenizer, 2048, WINDOW)
    np.testing.assert_array_equal(whole, expected_windows([" ".join(words)], 2048))
    monkeypatch.setattr(corpus_mod, "BIG", 1000)
    monkeypatch.setattr(corpus_mod, "PIECE", 700)
    pieces = list(open_corpus(str(path)).pieces())
    assert len(pieces) > 10 and [last for _, last in pieces] == [False] * (len(pieces) - 1) + [True]
    np.testing.assert_array_equal(windows(open_corpus(str(path)), tokenizer, 2048, WINDOW), whole)


def test_reading_stops_once_the_tokens_are_gathered(tokenizer, tmp_path):
    """A jsonl whose line 200 is broken: the first windows come without reading that far (more tokens reach the
    line and say so); the first text of a 40 MB parquet file allocates a small part of it."""
    docs = documents(count=400, words=40)
    lines = [json.dumps({"text": d}) for d in docs]
    lines[199] = "{broken"
    (tmp_path / "late.jsonl").write_text("\n".join(lines) + "\n")
    corpus = open_corpus(str(tmp_path / "late.jsonl"))
    assert windows(corpus, tokenizer, 1024, WINDOW).shape == (16, WINDOW)
    with pytest.raises(UsageError, match="line 200 is not JSON"):
        windows(corpus, tokenizer, 40 * 400, WINDOW)
    rng = random.Random(3)
    big = ["".join(rng.choices("abcdefgh ", k=40_000)) for _ in range(1000)]  # 40 MB of text in 1,000 rows
    pq.write_table(pa.table({"text": big}), tmp_path / "big.parquet", row_group_size=10)
    corpus = open_corpus(str(tmp_path / "big.parquet"))
    before = pa.total_allocated_bytes()
    stream = corpus.pieces()
    first, _ = next(stream)
    assert first == big[0] and pa.total_allocated_bytes() - before < 8 << 20  # not 40 MB
    stream.close()
