"""`neuroscope clamp`: clamp neurons, generate baseline vs clamped, measure p(target) and the target rate.

Everything the user typed is checked before the model loads (Model.experiment and Model.prepare in the
API): clamps, values, settings and presets on their own, neuron ranges, the context length and the chat
template against the model's headers, the prompt's and target's tokens with the tokenizer alone. A typo
costs milliseconds, not a model load."""

from __future__ import annotations

import argparse
import json
import sys

from ..cache.words import stands_for
from ..clamping import experiment
from ..concepts import DEFAULT_MIN_MASS, DEFAULT_STRENGTH
from ..core.clamp import MODES, POSITIONS, check_preset_name, save_preset
from ..core.experiment import ClampRequest
from .arguments import positive
from .output import emit_json, fmt_prob, fmt_ratio, note, open_model


def register(sub, common, engine) -> None:
    p = sub.add_parser(
        "clamp",
        parents=[common, engine],
        help="clamp neurons and generate: baseline vs clamped",
        epilog="--save-preset NAME keeps every setting of the run (clamps, mode, positions, prompt, "
        "chat, target, samples, max-new-tokens, temperature, top-p, seed, concept, strength, "
        "min-mass); --preset NAME re-runs it, and any of these options given with it "
        "overrides the saved value (--set adds clamps; --mode applies to the preset's too).",
    )
    p.add_argument("model", metavar="MODEL")
    p.add_argument(
        "--set",
        dest="sets",
        action="append",
        default=[],
        metavar="NEURON=VALUE",
        help="a neuron and its value, e.g. L29:N808=8 (repeatable)",
    )
    p.add_argument(
        "--mode",
        choices=MODES,
        default=None,
        help="set (default): replace the activation; add: add to it; scale: multiply it",
    )
    p.add_argument(
        "--positions",
        choices=POSITIONS,
        default=None,
        help="clamp at every position (default) or only at generated ones",
    )
    p.add_argument("--prompt", default=None, help="the prompt text")
    p.add_argument(
        "--chat",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="apply the model's chat template to the prompt (--no-chat: not, over a preset's)",
    )
    p.add_argument("--target", default=None, help="a word whose probability (first token) is measured")
    p.add_argument("--max-new-tokens", type=positive, default=None, help="default 40")
    p.add_argument(
        "--samples",
        type=positive,
        default=None,
        help="sample N replies each way and report how many contain --target (a progress bar with "
        "ETA on stderr; Ctrl-C stops)",
    )
    p.add_argument(
        "--temperature",
        type=float,
        default=None,
        help="sample with this temperature (default: greedy; 0: greedy over a preset's)",
    )
    p.add_argument("--top-p", type=float, default=None)
    p.add_argument("--seed", type=int, default=None, help="default 0")
    p.add_argument(
        "--concept",
        default=None,
        metavar="WORD",
        help="clamp every neuron labelled WORD, each with the sign that pushes it into the output",
    )
    p.add_argument(
        "--strength",
        type=float,
        default=None,
        help=f"with --concept: the value is sign x strength x the neuron's peak activation "
        f"(default {DEFAULT_STRENGTH:g})",
    )
    p.add_argument(
        "--min-mass",
        type=float,
        default=None,
        help=f"with --concept: only neurons whose label holds at least this mass (default {DEFAULT_MIN_MASS:g})",
    )
    p.add_argument(
        "--preset",
        default=None,
        metavar="NAME",
        help="re-run a saved experiment; options given with it override what it saved",
    )
    p.add_argument(
        "--save-preset", default=None, metavar="NAME", help="save this run's clamps and every setting under NAME"
    )
    p.add_argument("--json", action="store_true")
    p.set_defaults(run=cmd_clamp)


def _stream_printer():
    current = [None]

    def on_text(side: str, text: str) -> None:
        if current[0] != side:
            sys.stdout.write(("\n" if current[0] else "") + f"--- {side} ---\n")
            current[0] = side
        sys.stdout.write(text)
        sys.stdout.flush()

    def finish() -> None:
        if current[0]:
            sys.stdout.write("\n\n")

    return on_text, finish


def _fmt_rate(side, n) -> str:
    return "-" if side.target_rate is None else f"{round(side.target_rate * n)}/{n} = {side.target_rate:.2f}"


def _split_note(t) -> str:
    """What p(target) measures when the tokenizer splits the word (only its first token is measured)."""
    if t.tokens <= 1:
        return ""
    verdict = (
        "a leading piece that stands for the word"
        if stands_for(t.token, t.word)
        else "too short a piece to stand for the word: p(target) is that piece's probability"
    )
    return f" (the first of its {t.tokens} tokens; {verdict})"


def cmd_clamp(args) -> int:
    if args.save_preset:
        check_preset_name(args.save_preset)
    model = open_model(args)
    exp = experiment(model, ClampRequest.of(vars(args), clamps=args.sets))  # each option is a field of that name
    prepared = model.prepare(exp)  # headers and tokenizer only: every check before the load
    if args.save_preset:  # every setting, so that --preset NAME re-runs this experiment
        clamps, settings = exp.preset()
        path = save_preset(args.save_preset, clamps, {"model": model.name, **settings})
        note(f"saved preset '{args.save_preset}' -> {path}")
    on_text, finish = (None, lambda: None) if args.json else _stream_printer()
    report = model.run(exp, prepared, on_text=on_text)
    finish()
    result, clamps, target = report.result, exp.clamps, exp.target
    if args.json:
        emit_json(report.as_dict(), model)
        return 0
    print(f"{model.name}: {clamps.describe()}")
    for a in result.activation:
        print(f"  natural activation of {a.ref} on the prompt: min {a.min:.3f}  max {a.max:.3f}  last {a.last:.3f}")
    if result.target is not None:
        t = result.target
        print(
            f"  target {json.dumps(target, ensure_ascii=False)} -> token {json.dumps(t.token, ensure_ascii=False)}"
            + _split_note(t)
        )
        n = exp.samples or 0
        print(f"  {'':<9} {'p(target)':>10}  {'replies with target' if n else ''}".rstrip())
        for name, side in (("baseline", result.baseline), ("clamped", result.clamped)):
            fluent = f"  fluency {side.fluency:+.2f} nats/token" if side.fluency is not None else ""
            print(f"  {name:<9} {fmt_prob(side.target_prob):>10}  {_fmt_rate(side, n) if n else ''}{fluent}".rstrip())
        if result.baseline.target_prob and result.clamped.target_prob is not None:
            print(f"  ratio     {fmt_ratio(result.clamped.target_prob / result.baseline.target_prob):>11}")
    return 0
