"""Argument vectors for every subcommand (Hypothesis strategies) and an in-process runner that reports
what a user would see: the exit code, stdout, stderr and any traceback. Shared by tests/test_fuzz_cli.py
(about 500 cases in `make test`) and bench/fuzz.py (10,000).

Every case must exit 0 or 2, print no traceback, give exactly one `error:` line when it fails (an argument
error from argparse may put the subcommand's usage before it, and only such an error), and leave the cache
folder as it was unless the command writes there by design (a decode, or a show/search that had to decode
first).
"""

from __future__ import annotations

import hashlib
import io
import sqlite3
import traceback
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass
from pathlib import Path

from hypothesis import strategies as st

VIEWS = ["up", "gate", "down"]
JUNK = st.one_of(
    st.text(max_size=24),
    st.sampled_from(
        [
            "",
            " ",
            "-",
            "--",
            "-x",
            "--nope",
            "\t",
            "L1:N7",
            "1:7",
            "demo.gguf",
            "a/b",
            "org/name",
            "~nobody/x",
            "/",
            ".",
            "..",
            "x" * 300,
            "L-1:N2",
            "9" * 40,
            "nan",
            "inf",
            "-inf",
            "1e400",
            "\u0120dog",
            "dog",
            "\U0001f436",
            "L1:N7=3",
            "=",
            "1:7=",
            "cuda",
            "cuda:9",
            "cpu",
            "auto",
            "x\ry",
            "a\nb",
            "L1\n:N2",
            "\u2028",
            "\x1b[31mred",
            "dog\n",
        ]
    ),
)
NUMBER = st.one_of(
    st.integers(-3, 60).map(str),
    st.sampled_from(["0", "1", "2", "255", "256", "100000", "1e9", "0.5", "-1", "nan", "inf", "x", ""]),
    JUNK,
)
SMALL = st.one_of(st.integers(-2, 6).map(str), st.sampled_from(["0", "1", "1001", "100000", "-1", "x", "1.5"]))
FLOAT = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True).map(repr), st.sampled_from(["0", "0.7", "1", "101", "-0.1", "x"])
)


GOOD_PROMPT = st.sampled_from(["t5 t9 dog", "dog", "a b c", "hello there"])
CORPUS = str(Path(__file__).parent / "data" / "corpus.txt")  # a few hundred words of the fixtures' vocabulary


def neuron() -> st.SearchStrategy[str]:
    ints = st.integers(-2, 70)
    return st.one_of(
        st.builds(lambda a, b: f"L{a}:N{b}", ints, ints), st.builds(lambda a, b: f"{a}:{b}", ints, ints), JUNK
    )


def clamp_spec() -> st.SearchStrategy[str]:
    return st.one_of(st.builds(lambda n, v: f"{n}={v}", neuron(), st.one_of(NUMBER, FLOAT)), JUNK)


def good_neuron() -> st.SearchStrategy[str]:
    return st.builds(
        lambda a, b, short: f"{a}:{b}" if short else f"L{a}:N{b}", st.integers(0, 1), st.integers(0, 63), st.booleans()
    )


# option -> (a strategy of good values, a strategy of any values); None: a flag without a value
def opt(good, bad=None):
    return (good, st.one_of(good, bad if bad is not None else JUNK))


ENGINE = {
    "--device": opt(st.just("cpu"), st.sampled_from(["auto", "cuda", "cuda:3", "gpu", "CPU", ""])),
    "--dtype": opt(st.sampled_from(["float32", "auto"]), st.sampled_from(["bfloat16", "float16", ""])),
    "--trust-remote-code": None,
}
OPTIONS = {
    "decode": {
        **ENGINE,
        "--views": opt(
            st.sampled_from(["up", "gate", "down", "up,down", "up,gate,down"]), st.sampled_from(["", ",", "side"])
        ),
        "--top-k": opt(st.sampled_from(["5", "10"]), NUMBER),
        "--rebuild": None,
        "--json": None,
        "--devices": opt(st.sampled_from(["cpu", "cuda:0,cuda:1", "cpu,", "x,y"])),
    },
    "show": {
        **ENGINE,
        "--view": opt(st.sampled_from(VIEWS), st.sampled_from(["side", ""])),
        "--direction": opt(st.sampled_from(["pos", "neg"]), st.just("both")),
        "--json": None,
    },
    "search": {
        **ENGINE,
        "--view": opt(st.sampled_from(VIEWS)),
        "--direction": opt(st.sampled_from(["pos", "neg"])),
        "--max-rank": opt(st.sampled_from(["1", "3", "10"]), NUMBER),
        "--match": opt(st.sampled_from(["word", "exact", "prefix", "contains", "label"]), st.just("regex")),
        "--limit": opt(st.sampled_from(["1", "5", "50"]), NUMBER),
        "--json": None,
    },
    "models": {"--json": None},
    "clamp": {
        **ENGINE,
        "--set": opt(
            st.builds(lambda n, v: f"{n}={v}", good_neuron(), st.sampled_from(["3", "-2.5", "0", "20"])), clamp_spec()
        ),
        "--mode": opt(st.sampled_from(["set", "add", "scale"]), st.just("mul")),
        "--positions": opt(st.sampled_from(["all", "generated"]), st.just("some")),
        "--prompt": opt(GOOD_PROMPT),
        "--chat": None,
        "--target": opt(st.sampled_from(["dog", "cat", "t5"])),
        "--max-new-tokens": opt(st.sampled_from(["1", "2", "3"]), SMALL),
        "--samples": opt(st.sampled_from(["1", "2"]), SMALL),
        "--temperature": opt(st.sampled_from(["0", "0.7", "1"]), FLOAT),
        "--top-p": opt(st.sampled_from(["0.9", "1"]), FLOAT),
        "--seed": opt(st.sampled_from(["0", "7"]), NUMBER),
        "--preset": opt(st.sampled_from(["dogs", "nope"])),
        "--save-preset": opt(st.sampled_from(["dogs", "b.1"])),
        "--json": None,
    },
    "compare": {
        **ENGINE,
        "--view": opt(st.sampled_from(VIEWS)),
        "--direction": opt(st.sampled_from(["pos", "neg"])),
        "--top": opt(st.sampled_from(["1", "5"]), SMALL),
        "--json": None,
    },
    "tui": {**ENGINE, "--compare": opt(st.just("{model}"))},
    "trace": {
        **ENGINE,
        "--prompt": opt(GOOD_PROMPT),
        "--chat": None,
        "--top": opt(st.sampled_from(["1", "3"]), SMALL),
        "--neuron": opt(good_neuron(), neuron()),
        "--json": None,
    },
    "examples": {
        **ENGINE,
        "--corpus": opt(
            st.just("{corpus}"),
            st.sampled_from(
                [
                    "{root}/notes.bin",
                    "{root}/nope.txt",
                    "{root}/empty.txt",
                    "{root}",
                    "{root}/nope.parquet",
                    "no_such_dataset",
                    "a/b/c",
                    "no_such:cfg@test",
                ]
            ),
        ),
        "--text-column": opt(st.just("text"), st.sampled_from(["", "body"])),
        "--tokens": opt(st.sampled_from(["256", "512"]), NUMBER),
        "--per-neuron": opt(st.just("4"), SMALL),
        "--context": opt(st.just("8"), SMALL),
        "--window": opt(st.just("64"), SMALL),
        "--batch-size": opt(st.just("2"), SMALL),
        "--json": None,
    },
    "agreement": {**ENGINE, "--json": None},
    "top": {
        **ENGINE,
        "--by": opt(st.sampled_from(["mass", "prob", "entropy", "copy", "suppression", "cosine"]), st.just("size")),
        "--view": opt(st.sampled_from(VIEWS)),
        "--direction": opt(st.sampled_from(["pos", "neg"])),
        "--layer": opt(st.sampled_from(["0", "1"]), NUMBER),
        "--limit": opt(st.sampled_from(["1", "20"]), NUMBER),
        "--json": None,
    },
    "concept": {**ENGINE, "--view": opt(st.sampled_from(VIEWS)), "--json": None},
    "export": {
        **ENGINE,
        "--format": opt(st.sampled_from(["jsonl", "csv", "parquet"]), st.just("xml")),
        "--views": opt(st.sampled_from(["up", "up,down", "gate"]), st.sampled_from(["", "side"])),
        "--out": opt(
            st.sampled_from(["{root}/x.jsonl", "{root}/y.csv", "{root}/z.parquet"]),
            st.sampled_from(["{root}", "{root}/no/such/dir/x.csv", "{root}/notes.txt/x"]),
        ),
    },
}
OPTIONS["clamp"] = {
    **OPTIONS["clamp"],
    "--concept": opt(st.sampled_from(["dog", "t5", "t1"]), st.just("qqqq")),
    "--strength": opt(st.sampled_from(["1", "3"]), FLOAT),
    "--min-mass": opt(st.sampled_from(["0", "0.1"]), FLOAT),
}
POSITIONALS = {
    "decode": ["model"],
    "show": ["model", "neuron"],
    "search": ["model", "text"],
    "models": [],
    "clamp": ["model"],
    "compare": ["model", "model"],
    "tui": ["model?"],
    "trace": ["model"],
    "examples": ["model"],
    "agreement": ["model"],
    "top": ["model"],
    "concept": ["model", "text"],
    "export": ["model"],
}
REQUIRED = {
    "clamp": ["--set", "--prompt", "--max-new-tokens"],
    "trace": ["--prompt"],
    "examples": ["--corpus", "--tokens", "--window"],
}


@st.composite
def argv(draw, command: str, models: list[str], root: str = ".") -> list[str]:
    """One argument vector for ``command``. A third of the cases are valid throughout (real models and
    neurons, good option values), a third valid but for one part, a third anything at all; options come in
    any order, sometimes with their value missing, sometimes repeated."""
    style = draw(st.sampled_from(["good", "one-off", "any"]))
    bad_at = draw(st.integers(0, 8)) if style == "one-off" else -1
    slot = iter(range(100))

    def pick(good, any_):
        return draw(any_ if style == "any" or next(slot) == bad_at else good)

    good_model = st.sampled_from(models[:3])
    any_model = st.one_of(st.sampled_from(models), JUNK)
    positional: list[str] = []
    for kind in POSITIONALS[command]:
        if kind == "model?" and draw(st.booleans()):
            continue
        if kind in ("model", "model?"):
            positional.append(pick(good_model, any_model))
        elif kind == "neuron":
            positional.append(pick(good_neuron(), neuron()))
        else:
            positional.append(pick(st.sampled_from(["dog", "DOG", "t1", "t", "cat"]), JUNK))
    parts: list[list[str]] = []
    options = OPTIONS[command]
    flags = draw(st.lists(st.sampled_from(sorted(options)), max_size=5))
    if style != "any":
        flags = REQUIRED.get(command, []) + flags
    for flag in flags:
        spec = options[flag]
        if spec is None:
            parts.append([flag])
        elif style == "any" and draw(st.integers(0, 12)) == 0:
            parts.append([flag])  # the value is missing
        else:
            value = pick(*spec)
            parts.append(
                [flag, value.replace("{model}", draw(good_model)).replace("{corpus}", CORPUS).replace("{root}", root)]
            )
    parts = [parts[i] for i in draw(st.permutations(range(len(parts))))]
    at = 0
    for word in positional:  # positionals keep their order, options go anywhere
        at = draw(st.integers(at, len(parts)))
        parts.insert(at, [word])
        at += 1
    out = [command] + [token for part in parts for token in part]
    if style == "any" and draw(st.integers(0, 10)) == 0:
        out.insert(draw(st.integers(1, len(out))), draw(JUNK))  # a stray word anywhere
    return out


@dataclass
class Outcome:
    argv: list[str]
    code: int | None
    stdout: str
    stderr: str
    traceback: str | None

    def problems(self) -> list[str]:
        """What is wrong with this outcome, from a user's point of view (empty: nothing)."""
        found = []
        if self.traceback is not None:
            found.append("raised:\n" + self.traceback)
        elif self.code not in (0, 2):
            found.append(f"exit code {self.code}")
        if "Traceback" in self.stderr:
            found.append("a traceback on stderr")
        if self.code == 2:
            errors = [line for line in self.stderr.splitlines() if "error:" in line]
            if len(errors) != 1 or not self.stderr.rstrip("\n").endswith(errors[0] if errors else "\0"):
                found.append(f"not one error line at the end of stderr: {self.stderr[-500:]!r}")
        usage, rest = split_usage(self.stderr)
        if usage and (self.code != 2 or len(rest) != 1 or not rest[0].endswith("(see --help)")):
            found.append(f"a usage that is not argparse's, before its one error line: {self.stderr[-500:]!r}")
        if any(line.startswith("usage:") for line in rest):
            found.append(f"a usage after other output: {self.stderr[-500:]!r}")
        return found


def split_usage(stderr: str) -> tuple[list[str], list[str]]:
    """argparse's usage (a first line "usage: ...", then indented lines) and the lines after it."""
    lines = stderr.splitlines()
    if not lines or not lines[0].startswith("usage: "):
        return [], lines
    end = 1
    while end < len(lines) and lines[end].startswith(" "):
        end += 1
    return lines[:end], lines[end:]


def run(args: list[str]) -> Outcome:
    """The real `neuroscope` entry point, in this process; `tui` runs every check up to the app's start."""
    from neuroscope.cli import parse
    from neuroscope.cli.app import prepare_tui
    from neuroscope.cli.errors import dispatch

    out, err = io.StringIO(), io.StringIO()
    code, tb = None, None
    with redirect_stdout(out), redirect_stderr(err):
        try:
            parsed = parse(list(args))
            if parsed.command == "tui":
                parsed.run = lambda parsed: prepare_tui(parsed) and 0
            code = dispatch(parsed)
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        except BaseException:
            tb = traceback.format_exc()
    return Outcome(list(args), code, out.getvalue(), err.getvalue(), tb)


def snapshot(folder: Path) -> dict:
    """The cache folder as a user would judge it: which caches and locks exist, and each cache's logical
    content (every row of every table). SQLite's -wal/-shm side files are left out: they come and go with
    connections and carry no content of their own once a connection closes."""
    state = {}
    if not folder.is_dir():
        return state
    for path in sorted(folder.iterdir()):
        if path.name.endswith(("-wal", "-shm")):
            continue
        if path.suffix != ".sqlite":
            state[path.name] = path.stat().st_size
            continue
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            digest = hashlib.sha256()
            for line in conn.iterdump():
                digest.update(line.encode("utf-8", "backslashreplace"))
            state[path.name] = digest.hexdigest()
        finally:
            conn.close()
    return state


def writes_by_design(outcome: Outcome) -> bool:
    """A decode, or a command that had to decode first (it says so on stderr). A clamp's concept is looked
    up in a decoded cache, so one whose neurons miss --min-mass may exit 2 after that decode (kept); a word
    no token has fails before it."""
    concept = "--concept" in outcome.argv
    return (outcome.code == 0 or (outcome.code == 2 and concept and "decoding " in outcome.stderr)) and (
        outcome.argv[0] in ("decode", "examples")
        or "decoding " in outcome.stderr
        or "removed cache" in outcome.stderr
        or "measuring read/write" in outcome.stderr
    )
