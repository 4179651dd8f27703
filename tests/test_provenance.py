"""Every command's JSON names the model's hub id and revision when known: a folder inside the Hugging Face
cache, a config that names its hub id, a GGUF's repository field; a plain folder names none."""

from __future__ import annotations

import json
import shutil

import pytest

from .fuzzing import run
from .gguf_models import build_gguf

REVISION = "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture(scope="module")
def places(model_dirs, tmp_path_factory):
    root = tmp_path_factory.mktemp("provenance")
    snapshot = root / "hub" / "models--tiny-org--tiny.llama" / "snapshots" / REVISION
    shutil.copytree(model_dirs["llama"], snapshot)
    named = root / "named"
    shutil.copytree(model_dirs["llama"], named)
    config = json.loads((named / "config.json").read_text())
    (named / "config.json").write_text(json.dumps({**config, "_name_or_path": "someone/tiny-named"}))
    return {
        "snapshot": (snapshot, "tiny-org/tiny.llama", REVISION),
        "named": (named, "someone/tiny-named", None),
        "gguf": (
            build_gguf(model_dirs["llama"], root / "tiny.gguf", repo="gguf-org/tiny-gguf"),
            "gguf-org/tiny-gguf",
            None,
        ),
        "bare gguf": (build_gguf(model_dirs["llama"], root / "bare.gguf"), None, None),
        "plain": (model_dirs["llama"], None, None),
    }


def json_of(args):
    out = run(args)
    assert out.code == 0 and out.traceback is None, out.stderr
    return json.loads(out.stdout)


@pytest.mark.parametrize("place", ["snapshot", "named", "gguf", "bare gguf", "plain"])
def test_json_names_hub_id_and_revision(places, place, tmp_path):
    folder, hub_id, revision = places[place]
    cache = ["--cache-dir", str(tmp_path)]
    decoded = json_of(["decode", str(folder), "--json", "--device", "cpu", *cache])
    shown = json_of(["show", str(folder), "L1:N3", "--json", *cache])
    top = json_of(["top", str(folder), "--limit", "2", "--json", *cache])
    for out in (decoded, shown, top):
        assert list(out)[:3] == ["model", "hub_id", "revision"]
        assert (out["hub_id"], out["revision"]) == (hub_id, revision)
    [listed] = json_of(["models", "--json", *cache])
    assert (listed["hub_id"], listed["revision"]) == (hub_id, revision)


def test_compare_names_both_sides(places, tmp_path):
    cache = ["--cache-dir", str(tmp_path)]
    out = json_of(["compare", str(places["snapshot"][0]), str(places["named"][0]), "--json", *cache])
    assert out["base"] == "tiny-org/tiny.llama"  # a hub snapshot folder is named by its hub id
    assert (out["base_hub_id"], out["base_revision"]) == ("tiny-org/tiny.llama", REVISION)
    assert (out["other_hub_id"], out["other_revision"]) == ("someone/tiny-named", None)


def test_json_lines_stay_one_line_whatever_the_token_texts(capsys):
    """Every --json output is one line: the line breaks JSON leaves raw (U+0085, U+2028, U+2029) are escaped,
    and the text reads back exactly."""
    from neuroscope.cli.output import emit_json

    value = {"token": "a\u2028b\u2029c\x85d\ne", "top": [{"token": "\u2028"}]}
    emit_json(value)
    out = capsys.readouterr().out
    assert len(out.splitlines()) == 1 and json.loads(out) == value
