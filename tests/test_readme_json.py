"""The JSON shapes docs/commands.md documents (`- show → {"model",…}`) are the keys the commands really print,
on a tiny model: a field added or renamed without the docs, or a documented field that no command prints, fails
here."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PROVENANCE = {"hub_id", "revision"}  # docs: named right after "model" when known, in every command
PAGES = (ROOT / "docs" / "commands.md",)  # where the JSON contracts live (README links there)


def parse(text: str):
    """The docs' shape notation -> {key: subshape or None}; a list shape -> [subshape]; `…` -> None."""
    pos = 0

    def value():
        nonlocal pos
        while text[pos].isspace():  # a shape may wrap onto the next line of the page
            pos += 1
        if text[pos] == "{":
            pos += 1
            out = {}
            while text[pos] != "}":
                if text[pos] == "…":  # "and more of the same": other keys allowed
                    out["…"] = None
                    pos += 1
                elif text[pos] == '"':
                    end = text.index('"', pos + 1)
                    key = text[pos + 1 : end]
                    pos = end + 1
                    out[key] = None
                    if text[pos] == ":":
                        pos += 1
                        out[key] = value()
                elif not text[pos].isspace():
                    raise ValueError(f"unexpected {text[pos : pos + 20]!r}")
                if text[pos] in ", \n":
                    pos += 1
            pos += 1
            return out
        if text[pos] == "[":
            pos += 1
            inner = None if text[pos] == "…" else value()
            pos = text.index("]", pos) + 1
            return [inner]
        raise ValueError(f"unexpected {text[pos : pos + 20]!r}")

    return value()


def documented() -> dict[str, object]:
    """command -> its documented shape, from PAGES (first shape of each command)."""
    shapes = {}
    for page in PAGES:
        text = page.read_text()
        for m in re.finditer(r"^- (\w+)[^\n`]*?(?:`--json`)? → `([\[{][^`]*)`", text, re.M):
            shapes.setdefault(m.group(1), parse(m.group(2)))
        for m in re.finditer(r"^With `--json`: `(\{\"base\"[^`]*)`", text, re.M):
            shapes.setdefault("compare", parse(m.group(1)))
    return shapes


def test_the_parser_reads_nested_shapes():
    assert parse('{"a","b":[{"c","d"}],"e":{"f"},"g":[…]}') == {
        "a": None,
        "b": [{"c": None, "d": None}],
        "e": {"f": None},
        "g": [None],
    }
    assert parse('{"up":{"a"},…}') == {"up": {"a": None}, "…": None}


def compare(shape, real, where: str, problems: list) -> None:
    if isinstance(shape, dict):
        if not isinstance(real, dict):
            problems.append(f"{where}: documented an object, got {type(real).__name__}")
            return
        want, got = set(shape) - PROVENANCE - {"…"}, set(real) - PROVENANCE
        if "…" in shape:
            got &= want
        if want != got:
            problems.append(f"{where}: the docs lack {sorted(got - want)}, it prints none of {sorted(want - got)}")
        order = [k for k in shape if k in got]
        if order != [k for k in real if k in order]:
            problems.append(f"{where}: the docs' order {order}, printed {[k for k in real if k in order]}")
        if set(real) & PROVENANCE and list(real)[:3] != ["model", "hub_id", "revision"]:
            problems.append(f"{where}: hub_id and revision do not follow model: {list(real)[:4]}")
        for key, sub in shape.items():
            if sub is not None and key in real and real[key] is not None:
                compare(sub, real[key], f"{where}.{key}", problems)
    elif isinstance(shape, list) and shape[0] is not None and isinstance(real, list) and real:
        compare(shape[0], real[0], f"{where}[0]", problems)


@pytest.fixture(scope="module")
def outputs(model_dirs, tmp_path_factory):
    """Each documented command's real JSON on the tiny Llama (the planted dog neuron L1:N7)."""
    cache = str(tmp_path_factory.mktemp("readme-cache"))
    model = str(model_dirs["llama"])
    corpus = tmp_path_factory.mktemp("corpus") / "c.txt"
    corpus.write_text(" ".join(["dog cat doghouse hotdog"] * 400))

    def run(*args):
        proc = subprocess.run(
            [sys.executable, "-m", "neuroscope", *args, "--cache-dir", cache],
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert proc.returncode == 0, (args, proc.stderr)
        return proc.stdout

    got = {"decode": run("decode", model, "--json")}
    got["examples"] = run("examples", model, "--corpus", str(corpus), "--tokens", "1000", "--json")
    got["show"] = run("show", model, "L1:N7", "--json")
    got["trace"] = run("trace", model, "--prompt", "dog cat", "--neuron", "L1:N7", "--json")
    got["agreement"] = run("agreement", model, "--json")
    got["search"] = run("search", model, "dog", "--json")
    got["circuit"] = run("circuit", model, "L1:N7", "--top", "3", "--json")
    got["models"] = run("models", "--json")
    got["top"] = run("top", model, "--json")
    got["concept"] = run("concept", model, "dog", "--json")
    got["export"] = run("export", model, "--format", "jsonl").splitlines()[0]
    got["clamp"] = run(
        "clamp",
        model,
        "--set",
        "L1:N7=5",
        "--prompt",
        "dog cat",
        "--target",
        "dog",
        "--max-new-tokens",
        "3",
        "--samples",
        "2",
        "--temperature",
        "1",
        "--json",
    )
    from .core.test_compare import perturbed_copy

    tuned = perturbed_copy(model_dirs["llama"], tmp_path_factory.mktemp("tuned") / "tuned", layers=(1,))
    got["compare"] = run("compare", model, str(tuned), "--top", "2", "--json")
    return {name: json.loads(text) for name, text in got.items()}


def test_readme_json_fields_equal_the_real_output(outputs):
    shapes = documented()
    missing = sorted(set(outputs) - set(shapes))
    assert not missing, f"docs/commands.md documents no JSON shape for {missing}"
    problems: list[str] = []
    for name, real in outputs.items():
        compare(shapes[name], real, name, problems)
    assert not problems, "\n".join(problems)
