"""Attention heads in the cache, `show MODEL L5:H3`, `search` and `model.head`: on tiny saved Llama and GPT-2 models
with a planted head (L1:H2 writes "Ġcat" and reads "doghouse"), every cached head against core's decode_head and a
float64 SVD written in tests/core/test_heads.py, the JSON shape, the search hits, a lookup without torch, resuming
a stopped build, the GGUF reader's heads against the safetensors ones, and the refusals (one line, exit 2)."""

from __future__ import annotations

import json
import subprocess
import sys
import threading

import numpy as np
import pytest

import neuroscope
from neuroscope.cache.heads import Heads
from neuroscope.cache.store import Store
from neuroscope.choices import HEAD_RANKS, HEAD_TOP
from neuroscope.cli import main
from neuroscope.core.refs import HeadRef, is_head_ref
from neuroscope.errors import BadHeadRef, Cancelled

from .core.test_heads import ov_reference
from .heads_plant import PLANTED_HEAD, READ_TEXT, READ_TOKEN, WRITE_TEXT, WRITE_TOKEN, build_head_model

KINDS = ("llama", "gpt2")
PLANTED = f"L{PLANTED_HEAD[0]}:H{PLANTED_HEAD[1]}"


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("heads-cli")
    return {kind: build_head_model(kind, root / kind) for kind in KINDS}


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("heads-cache")


def run(capsys, *args, cache):
    code = main([*map(str, args), "--cache-dir", str(cache), "--dtype", "float32", "--device", "cpu"])
    out, err = capsys.readouterr()
    return code, out, err


def shown(capsys, model, ref, cache) -> dict:
    code, out, err = run(capsys, "show", model, ref, "--json", cache=cache)
    assert code == 0, err
    return json.loads(out)


def test_head_refs_parse_and_check():
    assert HeadRef.parse("L5:H3") == HeadRef.parse("5:h3") == HeadRef.parse(" l5 : H3 ") == HeadRef(5, 3)
    assert str(HeadRef(5, 3)) == "L5:H3" and is_head_ref("5:h3") and is_head_ref("L1:Hx")
    assert not is_head_ref("L29:N808") and not is_head_ref("29:808")
    for text, message in (("L5:Hx", "malformed head"), ("5:3", "malformed head"), ("L5:H", "malformed head")):
        with pytest.raises(BadHeadRef, match=message):
            HeadRef.parse(text)
    with pytest.raises(BadHeadRef, match="layer 30 is out of range: the model has layers 0-29"):
        HeadRef(30, 0).check(30, 9)
    with pytest.raises(BadHeadRef, match="head 9 is out of range: each layer has heads 0-8"):
        HeadRef(3, 9).check(30, 9)
    with pytest.raises(BadHeadRef, match="count from 0"):
        HeadRef(-1, 0).check(30, 9)


@pytest.mark.parametrize("kind", KINDS)
def test_cached_heads_equal_decode_head_and_the_float64_svd(tiny, cache, capsys, kind):
    import torch

    from neuroscope.core.circuits.heads import HeadWeights, decode_head
    from neuroscope.core.loading.models import load
    from neuroscope.core.loading.sources import resolve

    shown(capsys, tiny[kind], PLANTED, cache)  # builds every head of the model once
    lm = load(resolve(str(tiny[kind])), dtype=torch.float32)
    hw = HeadWeights(lm.adapter)
    model = neuroscope.open(str(tiny[kind]), cache_dir=cache, progress=False)
    with Store(model.path, readonly=True) as store:
        table = Heads(store)
        assert table.complete and table.spec["ranks"] == HEAD_RANKS and table.spec["top"] == HEAD_TOP
        for layer in range(3):
            got = table.layer(layer)
            for head in range(hw.heads):
                want = decode_head(hw, layer, head, HEAD_RANKS, HEAD_TOP)
                s = np.linalg.svd(ov_reference(lm.model, kind, layer, head), compute_uv=False)
                np.testing.assert_allclose(got.sigma[head], s[:HEAD_RANKS], rtol=1e-5)
                for d in want:
                    for sign, name in enumerate(("pos", "neg")):
                        assert list(got.write_ids[head, d.rank, sign]) == [t for t, _ in d.writes[name]]
                        np.testing.assert_allclose(
                            got.write_probs[head, d.rank, sign], [p for _, p in d.writes[name]], rtol=1e-4, atol=1e-7
                        )
                        assert list(got.read_ids[head, d.rank, sign]) == [t for t, _ in d.reads[name]]
                        np.testing.assert_allclose(
                            got.read_weights[head, d.rank, sign], [w for _, w in d.reads[name]], rtol=1e-5
                        )


@pytest.mark.parametrize("kind", KINDS)
def test_the_planted_head_writes_and_reads_its_tokens_first(tiny, cache, capsys, kind):
    got = shown(capsys, tiny[kind], PLANTED, cache)
    assert list(got) == ["model", "hub_id", "revision", "layer", "head", "directions"]
    assert (got["layer"], got["head"]) == PLANTED_HEAD and len(got["directions"]) == HEAD_RANKS
    top = got["directions"][0]
    assert list(top) == ["rank", "sigma", "writes", "reads"] and top["rank"] == 1
    assert [d["sigma"] for d in got["directions"]] == sorted((d["sigma"] for d in got["directions"]), reverse=True)
    assert list(top["writes"]) == ["pos", "neg"] and list(top["writes"]["pos"]) == ["label", "label_mass", "tokens"]
    assert list(top["writes"]["pos"]["tokens"][0]) == ["token_id", "token", "prob"]
    assert list(top["reads"]["pos"][0]) == ["token_id", "token", "weight"]
    # a singular pair's sign is the SVD's: the planted write is first in one sign, its read first in the same
    sign = next(s for s in ("pos", "neg") if top["writes"][s]["tokens"][0]["token_id"] == WRITE_TOKEN)
    assert top["writes"][sign]["tokens"][0]["token"] == WRITE_TEXT and top["writes"][sign]["label"] == "cat"
    assert top["reads"][sign][0]["token_id"] == READ_TOKEN and top["reads"][sign][0]["token"] == READ_TEXT

    code, out, err = run(capsys, "show", tiny[kind], PLANTED.lower().lstrip("l"), cache=cache)  # "1:h2"
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0].startswith(f"{kind} {PLANTED}") and lines[1].strip().startswith("σ1 = ")
    writes = next(line for line in lines if "label: cat" in line)
    assert writes.split("label: cat")[1].split()[1] == '"Ġcat"'  # after the mass: the first token


def test_search_finds_the_planted_head_by_what_it_writes_reads_and_its_label(tiny, cache, capsys):
    shown(capsys, tiny["llama"], PLANTED, cache)
    code, out, err = run(capsys, "search", tiny["llama"], "cat", "--json", cache=cache)
    assert code == 0, err
    got = json.loads(out)
    assert list(got)[:5] == ["model", "hub_id", "revision", "query", "hits"] and got["hits"]  # neurons as before
    heads = got["heads"]
    assert all(list(h) == ["ref", *HEAD_HIT_KEYS] for h in heads)
    planted = [h for h in heads if h["ref"] == PLANTED and h["rank"] == 1 and h["side"] == "writes"]
    assert planted and planted[0]["position"] == 1 and planted[0]["token"] == WRITE_TEXT
    assert planted[0]["label"] == "cat" and planted[0]["value"] > 0.9
    assert all(h["token"] in ("cat", WRITE_TEXT) and h["position"] == 1 for h in heads)  # --max-rank 1

    code, out, err = run(capsys, "search", tiny["llama"], READ_TEXT, "--match", "exact", "--json", cache=cache)
    reads = [h for h in json.loads(out)["heads"] if h["side"] == "reads"]
    assert reads[0]["ref"] == PLANTED and reads[0]["rank"] == 1 and reads[0]["token_id"] == READ_TOKEN
    assert [h["value"] for h in reads] == sorted((h["value"] for h in reads), reverse=True)

    code, out, err = run(capsys, "search", tiny["llama"], "cat", "--match", "label", "--json", cache=cache)
    labelled = json.loads(out)["heads"]
    assert any(h["ref"] == PLANTED and h["rank"] == 1 for h in labelled)
    assert all(h["label"] == "cat" and h["side"] == "writes" for h in labelled)

    code, out, err = run(capsys, "search", tiny["llama"], "cat", cache=cache)
    table = out.split("\n\n")[-1].splitlines()
    assert table[0].split()[:3] == ["head", "σ", "side"]
    assert any(row.split()[:3] == [PLANTED, "1", "writes"] for row in table[1:])


HEAD_HIT_KEYS = ["layer", "head", "rank", "side", "direction", "position", "token_id", "token", "value", "label"]


def test_search_does_not_build_heads_unless_asked(tiny, tmp_path, capsys):
    code, out, err = run(capsys, "search", tiny["gpt2"], "cat", "--json", cache=tmp_path)
    assert code == 0 and json.loads(out)["heads"] is None and "add --heads" in err
    code, out, err = run(capsys, "search", tiny["gpt2"], "cat", "--heads", "--json", cache=tmp_path)
    assert code == 0 and any(h["ref"] == PLANTED for h in json.loads(out)["heads"])


def test_api_head_is_typed_and_matches_the_cli(tiny, cache, capsys):
    model = neuroscope.open(str(tiny["llama"]), cache_dir=cache, progress=False, device="cpu")
    head = model.head(PLANTED)
    assert head.ref == HeadRef(*PLANTED_HEAD) and str(head) == PLANTED
    assert head.as_dict() == shown(capsys, tiny["llama"], PLANTED, cache)
    rows = head.rows()
    assert len(rows) == HEAD_RANKS * 2 * 2 * HEAD_TOP  # ranks x sides x signs x tokens
    assert {r["side"] for r in rows} == {"writes", "reads"} and rows[0]["rank"] == 1
    assert model.head((1, 2)).as_dict() == head.as_dict()
    with pytest.raises(BadHeadRef, match="head 4 is out of range"):
        model.head("L1:H4")


def test_cached_heads_are_a_lookup_without_torch(tiny, cache, capsys):
    built = shown(capsys, tiny["llama"], PLANTED, cache)
    script = (
        "import sys; from neuroscope.cli import main; "
        f"rc = main(['show', {str(tiny['llama'])!r}, {PLANTED!r}, '--json', '--cache-dir', {str(cache)!r}]); "
        f"rc += main(['search', {str(tiny['llama'])!r}, 'cat', '--json', '--cache-dir', {str(cache)!r}]); "
        "assert rc == 0; assert 'torch' not in sys.modules and 'transformers' not in sys.modules, 'torch loaded'; "
        "assert 'textual' not in sys.modules"
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    first, second = proc.stdout.splitlines()
    assert json.loads(first) == built and json.loads(second)["heads"]
    assert "decoding" not in proc.stderr


def test_a_stopped_build_resumes_from_its_last_layer(tiny, tmp_path):
    from neuroscope.core.circuits.head_build import ensure_heads
    from neuroscope.core.loading.sources import resolve

    model = neuroscope.open(str(tiny["llama"]), cache_dir=tmp_path, progress=False)
    with model.store():  # decoded first, as the API does
        pass
    source, stop, seen = resolve(str(tiny["llama"])), threading.Event(), []

    def progress(done, total):
        seen.append(done)
        if done == 1:
            stop.set()

    with pytest.raises(Cancelled):
        ensure_heads(source, 4, cache_dir=tmp_path, progress=progress, cancel=stop)
    with Store(model.path, readonly=True) as store:
        assert Heads(store).spec["done"] == [0] and not Heads(store).complete
    again = ensure_heads(source, 4, cache_dir=tmp_path)
    assert again.layers_done == 2
    fresh = tmp_path / "fresh"
    ensure_heads(source, 4, cache_dir=fresh)
    with Store(model.path, readonly=True) as a, Store(neuroscope.open(str(tiny["llama"]), cache_dir=fresh).path) as b:
        for layer in range(3):
            x, y = Heads(a).layer(layer), Heads(b).layer(layer)
            assert np.array_equal(x.write_ids, y.write_ids) and np.array_equal(x.label, y.label)
    assert ensure_heads(source, 4, cache_dir=tmp_path).layers_done == 0  # cached: a lookup


@pytest.mark.parametrize("kind", ("llama", "gemma2"))
def test_gguf_heads_equal_the_safetensors_ones(tmp_path, kind):

    from neuroscope.core.circuits.heads import HeadWeights, Lens, decode_layer
    from neuroscope.core.loading.models import load_for_decode
    from neuroscope.core.loading.sources import resolve

    from .gguf_models import build_family, write_gguf

    folder = build_family(kind, tmp_path / kind)
    gguf = write_gguf(folder, tmp_path / f"{kind}.gguf")
    got = []
    for path in (folder, gguf):
        hw = HeadWeights(load_for_decode(resolve(str(path))).adapter)
        got.append([decode_layer(hw, layer, HEAD_RANKS, HEAD_TOP, Lens(hw)) for layer in range(2)])
    for a, b in zip(*got):
        np.testing.assert_allclose(a.sigma, b.sigma, rtol=1e-5)
        assert np.array_equal(a.write_ids[..., :3], b.write_ids[..., :3])
        assert np.array_equal(a.read_ids[..., :3], b.read_ids[..., :3])


@pytest.mark.parametrize(
    "args, message",
    [
        (["L3:H0"], "layer 3 is out of range"),
        (["L1:H4"], "head 4 is out of range"),
        (["L1:Hx"], "malformed head"),
        (["L1:H2", "--examples"], "--examples is for neurons"),
    ],
)
def test_bad_head_refs_are_one_line_and_exit_2_before_anything_loads(tiny, tmp_path, args, message):
    cache = tmp_path / "cache"
    proc = subprocess.run(
        [sys.executable, "-m", "neuroscope", "show", str(tiny["gpt2"]), *args, "--cache-dir", str(cache)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2, proc.stderr
    assert message in proc.stderr.strip().splitlines()[-1] and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and not cache.exists()
