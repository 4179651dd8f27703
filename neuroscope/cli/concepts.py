"""`neuroscope top`, `neuroscope concept` and `neuroscope export`: concepts instead of token lists."""
from __future__ import annotations

import sys

from .output import _emit_json, fmt_prob, note, open_model


def _tok(text: str, width: int = 16) -> str:
    from ..cache.words import quoted

    shown = quoted(text)
    return shown if len(shown) <= width else shown[:width - 2] + "…\""


def _label(r, width: int = 18) -> str:
    """The label, or (no label above the floor) the top-1 token in quotes, marked with a ~."""
    return r.label[:width] if r.label else "~" + _tok(r.token, width - 1)


def cmd_top(args) -> int:
    by = "mass" if args.all else args.by
    model = open_model(args)
    rows = model.top(by, view=args.view, layer=args.layer, limit=args.limit, direction=args.direction,
                     min_mass=args.min_mass)
    if args.json:
        _emit_json({"model": model.name, "by": by, "neurons": rows.as_dicts()}, model)
        return 0
    extra = {"copy": "copy", "suppression": "suppr.", "cosine": "cosine", "score": "score"}.get(by)
    what = "content score (label mass x word specificity)" if by == "score" else by
    print(f"{model.name}: the {len(rows)} most specialised neurons by {what}")
    print(f"{'neuron':<12} {'view':<5} {'dir':<4} {'label':<18} {'×':>2} {'mass':>8} {'entropy':>7} {'top-1':>8}  "
          f"{'token':<16}" + (f" {extra:>7}" if extra else ""))
    for r in rows:
        score = getattr(r, by) if extra else None
        print(f"{f'L{r.layer}:N{r.neuron}':<12} {r.view:<5} {r.direction:<4} {_label(r):<18} {r.count:>2} "
              f"{fmt_prob(r.label_mass, 3):>8} {r.entropy:7.3f} {fmt_prob(r.prob, 3):>8}  {_tok(r.token):<16}"
              + (f" {score:7.3f}" if extra else ""))
    return 0


def cmd_concept(args) -> int:
    model = open_model(args)
    rows = model.concept(args.word, views=[args.view] if args.view else None)
    matched = model.match_word(args.word)
    name = matched.concept
    if args.json:
        _emit_json({"model": model.name, "concept": name, "neurons": rows.as_dicts(),
                    "matched": matched.as_dict()}, model)
        return 0
    note(matched.describe())
    if not rows:
        print(f"no neuron of {model.name} is labelled {name!r}")
        return 0
    print(f"{model.name}: {len(rows)} neuron-views labelled {name!r} (sign: what an activation needs "
          f"to push it into the output)")
    for r in rows[: args.limit]:
        print(f"  L{r.layer}:N{r.neuron:<6} {r.view:<5} {r.direction:<4} mass {r.label_mass:.3f}  sign {r.sign:+d}")
    if len(rows) > args.limit:
        print(f"  … {len(rows) - args.limit} more (--limit)")
    return 0


def cmd_export(args) -> int:
    model = open_model(args)
    count = model.export(args.format, args.out, views=args.views, workers=None)
    if args.out not in (None, "-"):
        note(f"wrote {count:,} neuron-directions of {model.name} to {args.out}")
    sys.stdout.flush()
    return 0
