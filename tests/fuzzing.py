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

from .fuzz_options import CORPUS, JUNK, OPTIONS, POSITIONALS, REQUIRED, good_neuron, neuron


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
        elif kind == "unit":  # show: a neuron, a head or a dictionary feature, well formed or not
            heads = st.sampled_from(["L0:H0", "1:h2", "L1:H9", "L99:H0", "L1:H", "L1:Hx", "-1:h0"])
            features = st.sampled_from(["F7", "f3", "F0", "F23", "F24", "F-1", "Fx", "F"])  # with --sae (24 wide)
            positional.append(pick(st.one_of(good_neuron(), heads, features), st.one_of(neuron(), heads, features)))
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
                [
                    flag,
                    value.replace("{model}", draw(good_model))
                    .replace("{corpus}", CORPUS)
                    .replace("{sae}", f"{root}/sae")
                    .replace("{root}", root),
                ]
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
        or "building the circuit graph" in outcome.stderr
    )
