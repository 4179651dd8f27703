"""`neuroscope top`, `neuroscope concept` and `neuroscope export`: concepts instead of token lists."""
from __future__ import annotations

import json
import sys

from .output import _emit_json, fmt_prob, note, open_model


def _tok(text: str, width: int = 16) -> str:
    shown = json.dumps(text, ensure_ascii=False)
    return shown if len(shown) <= width else shown[:width - 2] + "…\""


def cmd_top(args) -> int:
    model = open_model(args)
    rows = model.top(args.by, view=args.view, layer=args.layer, limit=args.limit, direction=args.direction)
    if args.json:
        _emit_json({"model": model.name, "by": args.by, "neurons": rows.as_dicts()}, model)
        return 0
    extra = {"copy": "copy", "suppression": "suppr.", "cosine": "cosine"}.get(args.by)
    print(f"{model.name}: the {len(rows)} most specialised neurons by {args.by}")
    print(f"{'neuron':<12} {'view':<5} {'dir':<4} {'label':<18} {'×':>2} {'mass':>8} {'entropy':>7} {'top-1':>8}  "
          f"{'token':<16}" + (f" {extra:>7}" if extra else ""))
    for r in rows:
        score = getattr(r, args.by) if extra else None
        print(f"{f'L{r.layer}:N{r.neuron}':<12} {r.view:<5} {r.direction:<4} {_tok(r.label, 18):<18} {r.count:>2} "
              f"{fmt_prob(r.label_mass, 3):>8} {r.entropy:7.3f} {fmt_prob(r.prob, 3):>8}  {_tok(r.token):<16}"
              + (f" {score:7.3f}" if extra else ""))
    return 0


def cmd_concept(args) -> int:
    model = open_model(args)
    rows = model.concept(args.word, views=[args.view] if args.view else None)
    from .cache.labels import concept_key

    if args.json:
        _emit_json({"model": model.name, "concept": concept_key(args.word), "neurons": rows.as_dicts()}, model)
        return 0
    if not rows:
        print(f"no neuron of {model.name} is labelled {concept_key(args.word)!r}")
        return 0
    print(f"{model.name}: {len(rows)} neuron-views labelled {concept_key(args.word)!r} (sign: what an activation needs "
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
