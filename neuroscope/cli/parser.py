"""Argument parsing only: the top-level parser, the options every command shares, and GROUPS, the one place
commands are registered. Each command group (a module of this package) adds its subcommands in
``register(sub, common, engine)`` and names the function that runs each (``set_defaults(run=...)``); adding
a command is one new module and one line in GROUPS."""

from __future__ import annotations

import argparse
import difflib
import re
import sys

from .. import config
from ..core.options import DTYPES
from ..errors import UsageError, one_line
from . import app, behaviour, circuit, clamp, compare, concepts, model

GROUPS = (model, circuit, clamp, compare, behaviour, concepts, app)  # in the order `neuroscope --help` lists them


class Parser(argparse.ArgumentParser):
    """argparse that reports a usage problem as the (sub)command's usage and one error line, exit code 2; a
    misspelt command, option or choice gets a did-you-mean (difflib: argparse's own arrives with 3.14)."""

    def error(self, message: str):
        hint = self.suggestion(message)
        command = re.match(r"argument COMMAND: invalid choice: ('.*?') \(choose from (.*)\)$", message)
        if command:  # argparse's list of every command is in the usage and --help
            message = f"unknown command {command[1]}" + ("" if hint else f"; choose from {command[2]}")
        sys.stderr.write(self.format_usage())
        sys.stderr.write(f"{self.prog}: error: {one_line(message + hint)} (see --help)\n")
        raise SystemExit(2)

    def parse_args(self, args=None, namespace=None):
        """As argparse's, but an unknown option is reported by the subcommand it was given to (its usage,
        its options to suggest from), not by the top-level parser."""
        parsed, extras = self.parse_known_args(args, namespace)
        if extras:
            sub = next((a for a in self._actions if isinstance(a, argparse._SubParsersAction)), None)
            owner = sub.choices.get(getattr(parsed, sub.dest, None)) if sub is not None else None
            (owner or self).error(f"unrecognized arguments: {' '.join(extras)}")
        return parsed

    def suggestion(self, message: str) -> str:
        """'; did you mean X?' for the closest known word to what argparse refused, else ''."""
        choice = re.search(r"invalid choice: '(.*?)' \(choose from (.*)\)$", message)
        if choice:
            typed, known = choice[1], re.findall(r"'(.*?)'", choice[2]) or [c.strip() for c in choice[2].split(",")]
        else:
            unknown = re.match(r"unrecognized arguments: (.*)$", message)
            options = [w.split("=")[0] for w in (unknown[1].split() if unknown else []) if w.startswith("--")]
            typed, known = (
                (options[0] if options else ""),
                [o for o in self._option_string_actions if o.startswith("--")],
            )
        bare = {k.lstrip("-"): k for k in known}  # --nope is not close to --compare for its dashes
        close = difflib.get_close_matches(typed.lstrip("-"), list(bare), n=1) if typed.lstrip("-") else []
        return f"; did you mean {bare[close[0]]}?" if close else ""


def parents() -> tuple[Parser, Parser]:
    """The options shared by the subcommands: ``common`` (every command) and ``engine`` (commands that may
    load a model)."""
    common = Parser(add_help=False)
    common.add_argument(
        "--cache-dir", help="where decode caches live (default: $NEUROSCOPE_CACHE_DIR, else the platform cache dir)"
    )
    engine = Parser(add_help=False)
    engine.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda or cuda:N")
    engine.add_argument(
        "--dtype",
        default="auto",
        choices=DTYPES,
        help="matmul dtype; auto = bfloat16 where the hardware is fast at it, with exact "
        "float32 rescoring of the top-k",
    )
    engine.add_argument(
        "--trust-remote-code", action="store_true", help="allow a model's own Python code to run (off by default)"
    )
    return common, engine


def build_parser() -> Parser:
    common, engine = parents()
    parser = Parser(
        prog="neuroscope",
        description="Decode what every MLP neuron of a language model means "
        "by passing its weights through the model's own final norm and LM head.",
        epilog="MODEL is `demo`, a Hugging Face model folder, a .gguf file, or a cached hub id. "
        "A neuron is written L29:N808 (or 29:808). With no command, the app opens.",
    )
    parser.add_argument("--version", action="version", version="neuroscope 0.1.0")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    for group in GROUPS:
        group.register(sub, common, engine)
    return parser


def check_text(argv: list[str]) -> None:
    """Every argument must be text the terminal can show back (argv bytes that are not UTF-8 arrive as
    lone surrogates, which no output stream can print)."""
    for arg in argv:
        try:
            arg.encode("utf-8")
        except UnicodeEncodeError:
            shown = arg.encode("utf-8", "backslashreplace").decode("ascii", "backslashreplace")
            sys.stderr.write(f"neuroscope: error: argument {shown!r} is not valid UTF-8\n")
            raise SystemExit(2) from None
        if "\0" in arg:
            sys.stderr.write("neuroscope: error: an argument contains a NUL character\n")
            raise SystemExit(2)


def parse(argv: list[str]):
    """argv -> parsed arguments (``args.run`` is the command's function); a usage problem is one line on
    stderr and SystemExit(2)."""
    check_text(argv)
    if not argv or (argv[0].startswith("-") and argv[0] not in ("-h", "--help", "--version")):
        argv = ["tui", *argv]  # no command: the app (neuroscope --cache-dir DIR works too)
    args = build_parser().parse_args(argv)
    try:
        args.config = config.load()  # config.toml: defaults for what the command line omits
    except UsageError as exc:
        sys.stderr.write(f"neuroscope: error: {one_line(str(exc))}\n")
        raise SystemExit(2) from None
    config.apply_defaults(args, args.config)
    return args
