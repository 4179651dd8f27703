"""Argument parsing only: every command delegates to neuroscope.commands (core/cache/tui do the work)."""
from __future__ import annotations

import argparse
import sys

from .choices import DEFAULT_TOP_K, DIRECTIONS, SEARCH_MATCHES, TOP_K_RANGE, VIEWS
from .concepts import BY, DEFAULT_BY, DEFAULT_MIN_MASS, DEFAULT_STRENGTH
from .core.clamp import MODES, POSITIONS
from .core.options import DTYPES, check_top_k
from .errors import NeuroscopeError as Error


class UsageError(Exception):
    pass


class Parser(argparse.ArgumentParser):
    """argparse that reports a usage problem as the (sub)command's usage and one error line, exit code 2; a
    misspelt command, option or choice gets a did-you-mean (difflib: argparse's own arrives with 3.14)."""

    def error(self, message: str):
        import re

        from .errors import one_line

        hint = self.suggestion(message)
        command = re.match(r"argument COMMAND: invalid choice: ('.*?') \(choose from (.*)\)$", message)
        if command:                              # argparse's list of every command is in the usage and --help
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
        import difflib
        import re

        choice = re.search(r"invalid choice: '(.*?)' \(choose from (.*)\)$", message)
        if choice:
            typed, known = choice[1], re.findall(r"'(.*?)'", choice[2]) or [c.strip() for c in choice[2].split(",")]
        else:
            unknown = re.match(r"unrecognized arguments: (.*)$", message)
            options = [w.split("=")[0] for w in (unknown[1].split() if unknown else []) if w.startswith("--")]
            typed, known = (options[0] if options else ""), [o for o in self._option_string_actions
                                                             if o.startswith("--")]
        bare = {k.lstrip("-"): k for k in known}             # --nope is not close to --compare for its dashes
        close = difflib.get_close_matches(typed.lstrip("-"), list(bare), n=1) if typed.lstrip("-") else []
        return f"; did you mean {bare[close[0]]}?" if close else ""


def _top_k(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--top-k must be a whole number, not '{text}'") from None
    try:
        return check_top_k(value)                 # the API's check; argparse's message names the flag
    except Error:
        raise argparse.ArgumentTypeError(f"--top-k must be between {TOP_K_RANGE[0]} and {TOP_K_RANGE[1]}") from None


def _at_least(minimum: int):
    """An argparse type: a whole number of at least ``minimum``."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, not '{text}'") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"expected a number of at least {minimum}, not {value}")
        return value
    return parse


_positive, _natural = _at_least(1), _at_least(0)


def _views(text: str) -> list[str]:
    views = [v.strip() for v in text.split(",") if v.strip()]
    bad = [v for v in views if v not in VIEWS]
    if bad or not views:
        raise argparse.ArgumentTypeError(f"unknown view '{bad[0] if bad else text}': choose from up, gate, down")
    return views


def build_parser() -> Parser:
    common = Parser(add_help=False)
    common.add_argument("--cache-dir", help="where decode caches live (default: $NEUROSCOPE_CACHE_DIR, "
                                             "else the platform cache dir)")
    engine = Parser(add_help=False)
    engine.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda or cuda:N")
    engine.add_argument("--dtype", default="auto", choices=DTYPES,
                        help="matmul dtype; auto = bfloat16 where the hardware is fast at it, with exact "
                             "float32 rescoring of the top-k")
    engine.add_argument("--trust-remote-code", action="store_true",
                        help="allow a model's own Python code to run (off by default)")

    parser = Parser(prog="neuroscope", description="Decode what every MLP neuron of a language model means "
                    "by passing its weights through the model's own final norm and LM head.",
                    epilog="MODEL is `demo`, a Hugging Face model folder, a .gguf file, or a cached hub id. "
                           "A neuron is written L29:N808 (or 29:808). With no command, the app opens.")
    parser.add_argument("--version", action="version", version="neuroscope 0.1.0")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)

    p = sub.add_parser("decode", parents=[common, engine], help="decode every neuron into the cache")
    p.add_argument("model", metavar="MODEL")
    p.add_argument("--views", type=_views, default=None, help="comma-separated views (default: all the model has)")
    p.add_argument("--top-k", type=_top_k, default=DEFAULT_TOP_K,
                   help=f"tokens kept per neuron (default {DEFAULT_TOP_K})")
    p.add_argument("--rebuild", action="store_true", help="discard this model's cache and decode again")
    p.add_argument("--devices", type=lambda t: [d.strip() for d in t.split(",") if d.strip()], default=None,
                   help="spread layers over several devices, one process each, e.g. cuda:0,cuda:1 "
                        "(under torchrun the ranks are taken from the environment)")
    p.add_argument("--json", action="store_true", help="print a JSON summary on stdout")

    p = sub.add_parser("show", parents=[common, engine], help="a neuron's top tokens")
    p.add_argument("model", metavar="MODEL")
    p.add_argument("neuron", metavar="NEURON", help="L29:N808 or 29:808")
    p.add_argument("--view", choices=VIEWS, default="up")
    p.add_argument("--direction", choices=DIRECTIONS, default="pos")
    p.add_argument("--examples", action="store_true", help="add its max-activating examples and GLU cases")
    p.add_argument("--context", type=_positive, default=24, help="with --examples: tokens shown per example")
    p.add_argument("--json", action="store_true")

    p = sub.add_parser("search", parents=[common, engine], help="neurons whose top tokens match TEXT")
    p.add_argument("model", metavar="MODEL")
    p.add_argument("text", metavar="TEXT")
    p.add_argument("--view", choices=VIEWS, default=None, help="only this view (default: all)")
    p.add_argument("--direction", choices=DIRECTIONS, default=None, help="only this direction (default: both)")
    p.add_argument("--max-rank", type=_positive, default=1, help="match within each neuron's top R tokens (default 1)")
    p.add_argument("--match", choices=SEARCH_MATCHES, default="word",
                   help="word (default): the word's tokens in any case, with or without a leading space, its "
                        "plurals, and its leading pieces (\" Californ\" for California: a vocabulary token of 4+ "
                        "letters spelling half the word or more, 10x rarer than it as a word); exact; prefix; "
                        "contains; label: neurons whose concept label is TEXT (dogs, Dog and dog are one concept)")
    p.add_argument("--limit", type=_positive, default=50)
    p.add_argument("--json", action="store_true")

    p = sub.add_parser("models", parents=[common], help="list cached models and whether each decode is complete")
    p.add_argument("--json", action="store_true")

    p = sub.add_parser("clamp", parents=[common, engine], help="clamp neurons and generate: baseline vs clamped",
                       epilog="--save-preset NAME keeps every setting of the run (clamps, mode, positions, prompt, "
                              "chat, target, samples, max-new-tokens, temperature, top-p, seed, concept, strength, "
                              "min-mass); --preset NAME re-runs it, and any of these options given with it "
                              "overrides the saved value (--set adds clamps; --mode applies to the preset's too).")
    p.add_argument("model", metavar="MODEL")
    p.add_argument("--set", dest="sets", action="append", default=[], metavar="NEURON=VALUE",
                   help="a neuron and its value, e.g. L29:N808=8 (repeatable)")
    p.add_argument("--mode", choices=MODES, default=None,
                   help="set (default): replace the activation; add: add to it; scale: multiply it")
    p.add_argument("--positions", choices=POSITIONS, default=None,
                   help="clamp at every position (default) or only at generated ones")
    p.add_argument("--prompt", default=None, help="the prompt text")
    p.add_argument("--chat", action=argparse.BooleanOptionalAction, default=None,
                   help="apply the model's chat template to the prompt (--no-chat: not, over a preset's)")
    p.add_argument("--target", default=None, help="a word whose probability (first token) is measured")
    p.add_argument("--max-new-tokens", type=_positive, default=None, help="default 40")
    p.add_argument("--samples", type=_positive, default=None,
                   help="sample N replies each way and report how many contain --target (a progress bar with "
                        "ETA on stderr; Ctrl-C stops)")
    p.add_argument("--temperature", type=float, default=None,
                   help="sample with this temperature (default: greedy; 0: greedy over a preset's)")
    p.add_argument("--top-p", type=float, default=None)
    p.add_argument("--seed", type=int, default=None, help="default 0")
    p.add_argument("--concept", default=None, metavar="WORD",
                   help="clamp every neuron labelled WORD, each with the sign that pushes it into the output")
    p.add_argument("--strength", type=float, default=None,
                   help=f"with --concept: the value is sign x strength x the neuron's peak activation "
                        f"(default {DEFAULT_STRENGTH:g})")
    p.add_argument("--min-mass", type=float, default=None,
                   help=f"with --concept: only neurons whose label holds at least this mass "
                        f"(default {DEFAULT_MIN_MASS:g})")
    p.add_argument("--preset", default=None, metavar="NAME",
                   help="re-run a saved experiment; options given with it override what it saved")
    p.add_argument("--save-preset", default=None, metavar="NAME",
                   help="save this run's clamps and every setting under NAME")
    p.add_argument("--json", action="store_true")

    p = sub.add_parser("compare", parents=[common, engine], help="compare two models' neuron maps (base vs fine-tune)")
    p.add_argument("base", metavar="BASE")
    p.add_argument("other", metavar="OTHER")
    p.add_argument("--view", choices=VIEWS, default="up")
    p.add_argument("--direction", choices=DIRECTIONS, default="pos")
    p.add_argument("--top", type=_positive, default=50, help="how many most-changed neurons to list (default 50)")
    p.add_argument("--json", action="store_true")

    p = sub.add_parser("trace", parents=[common, engine], help="which neurons fire on each token of a prompt")
    p.add_argument("model", metavar="MODEL")
    p.add_argument("--prompt", required=True, help="the text to run")
    p.add_argument("--chat", action="store_true", help="apply the model's chat template to the prompt")
    p.add_argument("--top", type=_positive, default=10, help="neurons listed per token, by |activation| (default 10)")
    p.add_argument("--neuron", dest="neurons", action="append", default=[], metavar="NEURON",
                   help="also give this neuron's activation at every token (repeatable)")
    p.add_argument("--json", action="store_true")

    p = sub.add_parser("examples", parents=[common, engine],
                       help="max-activating examples of every neuron over a corpus (cached, resumable)")
    p.add_argument("model", metavar="MODEL")
    p.add_argument("--corpus", default=None,
                   help="a .txt file, a folder of .txt/.md files, a .jsonl/.parquet/.csv file, a folder saved by "
                        "datasets' save_to_disk (FOLDER@SPLIT), or a Hugging Face dataset name[:config][@split] "
                        "(default split train; needs neuroscope[corpora]) (default: the King James Bible)")
    p.add_argument("--text-column", default=None, metavar="COLUMN",
                   help="the column (or JSON field) holding the text in a .jsonl/.parquet/.csv file or a dataset "
                        "(default text)")
    p.add_argument("--tokens", type=_positive, default=100_000, help="corpus tokens to run (default 100,000)")
    p.add_argument("--per-neuron", type=_positive, default=20, help="examples kept per neuron and sign (default 20)")
    p.add_argument("--context", type=_positive, default=24, help="tokens shown around an example (default 24)")
    p.add_argument("--window", type=_positive, default=None,
                   help="tokens per forward pass row (default 128, or the model's context where shorter)")
    p.add_argument("--batch-size", type=_positive, default=8, help="rows per forward pass (default 8)")
    p.add_argument("--rebuild", action="store_true", help="discard the cached examples and run again")
    p.add_argument("--json", action="store_true")

    p = sub.add_parser("agreement", parents=[common, engine],
                       help="how often the weight decode names what neurons respond to, per layer")
    p.add_argument("model", metavar="MODEL")
    p.add_argument("--json", action="store_true")

    p = sub.add_parser("top", parents=[common, engine], help="the most specialised neurons (content concepts first)")
    p.add_argument("model", metavar="MODEL")
    p.add_argument("--by", choices=BY, default=DEFAULT_BY,
                   help="score (default): label mass x how specific its word is (function words, numbers, single "
                        "characters and special tokens last); mass: of the label's tokens; prob: of the top-1 "
                        "token; entropy: lowest first; copy / suppression: what it reads (up) it writes (down) / "
                        "writes against; cosine: between its read row (up, gate) and its down column (from the "
                        "weights, once)")
    p.add_argument("--all", action="store_true", help="rank every label by its mass alone (same as --by mass)")
    p.add_argument("--min-mass", type=float, default=0.0, metavar="M",
                   help="only neurons whose label holds at least M of their top-k mass (0-1, default 0)")
    p.add_argument("--view", choices=VIEWS, default=None)
    p.add_argument("--direction", choices=DIRECTIONS, default=None)
    p.add_argument("--layer", type=_natural, default=None)
    p.add_argument("--limit", type=_positive, default=20)
    p.add_argument("--json", action="store_true")

    p = sub.add_parser("concept", parents=[common, engine], help="every neuron labelled with a concept")
    p.add_argument("model", metavar="MODEL")
    p.add_argument("word", metavar="WORD")
    p.add_argument("--view", choices=VIEWS, default=None)
    p.add_argument("--limit", type=_positive, default=50, help="rows printed (JSON lists all)")
    p.add_argument("--json", action="store_true")

    p = sub.add_parser("export", parents=[common, engine], help="every neuron's top-k and label: jsonl, csv, parquet")
    p.add_argument("model", metavar="MODEL")
    p.add_argument("--format", default="jsonl", help="jsonl (default), csv or parquet (needs pyarrow)")
    p.add_argument("--views", type=_views, default=None)
    p.add_argument("--out", default=None, help="the file (default: stdout for jsonl and csv)")

    p = sub.add_parser("tui", parents=[common, engine], help="open the browser app")
    p.add_argument("model", metavar="MODEL", nargs="?", default=None,
                   help="default: the most recently used model, else demo")
    p.add_argument("--compare", default=None, metavar="OTHER",
                   help="show each neuron decoded in OTHER too, side by side")
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
    """argv -> parsed arguments; a usage problem is one line on stderr and SystemExit(2)."""
    check_text(argv)
    if not argv or (argv[0].startswith("-") and argv[0] not in ("-h", "--help", "--version")):
        argv = ["tui", *argv]            # no command: the app (neuroscope --cache-dir DIR works too)
    from . import config
    from .errors import UsageError, one_line

    args = build_parser().parse_args(argv)
    try:
        args.config = config.load()                   # config.toml: defaults for what the command line omits
    except UsageError as exc:
        sys.stderr.write(f"neuroscope: error: {one_line(str(exc))}\n")
        raise SystemExit(2) from None
    config.apply_defaults(args, args.config)
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse(list(sys.argv[1:] if argv is None else argv))
    from . import commands

    if args.command == "tui":
        return commands.dispatch(args)
    with commands.sigterm_stops():
        return commands.dispatch(args)


if __name__ == "__main__":
    raise SystemExit(main())
