"""`neuroscope top`, `neuroscope concept` and `neuroscope export`: concepts instead of token lists."""

from __future__ import annotations

import sys

from ..cache.words import quoted
from ..choices import DIRECTIONS, EXPORTS, VIEWS
from ..concepts import BY, DEFAULT_BY
from .arguments import natural, positive, views
from .output import emit_json, fmt_prob, note, open_model


def register(sub, common, engine) -> None:
    p = sub.add_parser("top", parents=[common, engine], help="the most specialised neurons (content concepts first)")
    p.add_argument("model", metavar="MODEL")
    p.add_argument(
        "--by",
        choices=BY,
        default=DEFAULT_BY,
        help="score (default): label mass x how specific its word is (function words, numbers, single "
        "characters and special tokens last); mass: of the label's tokens; prob: of the top-1 "
        "token; entropy: lowest first; copy / suppression: what it reads (up) it writes (down) / "
        "writes against; cosine: between its read row (up, gate) and its down column (from the "
        "weights, once)",
    )
    p.add_argument("--all", action="store_true", help="rank every label by its mass alone (same as --by mass)")
    p.add_argument(
        "--min-mass",
        type=float,
        default=0.0,
        metavar="M",
        help="only neurons whose label holds at least M of their top-k mass (0-1, default 0)",
    )
    p.add_argument("--view", choices=VIEWS, default=None)
    p.add_argument("--direction", choices=DIRECTIONS, default=None)
    p.add_argument("--layer", type=natural, default=None)
    p.add_argument("--limit", type=positive, default=20)
    p.add_argument("--json", action="store_true")
    p.set_defaults(run=cmd_top)

    p = sub.add_parser("concept", parents=[common, engine], help="every neuron labelled with a concept")
    p.add_argument("model", metavar="MODEL")
    p.add_argument("word", metavar="WORD")
    p.add_argument("--view", choices=VIEWS, default=None)
    p.add_argument("--limit", type=positive, default=50, help="rows printed (JSON lists all)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(run=cmd_concept)

    p = sub.add_parser(
        "export",
        parents=[common, engine],
        help="every neuron's top-k and label, or the circuit graph's edges: jsonl, csv, parquet",
    )
    p.add_argument("model", metavar="MODEL")
    p.add_argument(
        "--what",
        choices=EXPORTS,
        default="neurons",
        help="neurons (default): every neuron-direction's top-k and label; edges: the circuit graph, one row per "
        "edge (built first when it is not cached)",
    )
    p.add_argument("--format", default="jsonl", help="jsonl (default), csv or parquet (needs pyarrow)")
    p.add_argument("--views", type=views, default=None, help="the views to export (--what neurons only)")
    p.add_argument("--out", default=None, help="the file (default: stdout for jsonl and csv)")
    p.set_defaults(run=cmd_export)


def _tok(text: str, width: int = 16) -> str:
    shown = quoted(text)
    return shown if len(shown) <= width else shown[: width - 2] + '…"'


def _label(r, width: int = 18) -> str:
    """The label, or (no label above the floor) the top-1 token in quotes, marked with a ~."""
    return r.label[:width] if r.label else "~" + _tok(r.token, width - 1)


def cmd_top(args) -> int:
    by = "mass" if args.all else args.by
    model = open_model(args)
    rows = model.top(
        by, view=args.view, layer=args.layer, limit=args.limit, direction=args.direction, min_mass=args.min_mass
    )
    if args.json:
        emit_json({"model": model.name, "by": by, "neurons": rows.as_dicts()}, model)
        return 0
    extra = {"copy": "copy", "suppression": "suppr.", "cosine": "cosine", "score": "score"}.get(by)
    what = "content score (label mass x word specificity)" if by == "score" else by
    print(f"{model.name}: the {len(rows)} most specialised neurons by {what}")
    print(
        f"{'neuron':<12} {'view':<5} {'dir':<4} {'label':<18} {'×':>2} {'mass':>8} {'entropy':>7} {'top-1':>8}  "
        f"{'token':<16}" + (f" {extra:>7}" if extra else "")
    )
    for r in rows:
        score = getattr(r, by) if extra else None
        print(
            f"{f'L{r.layer}:N{r.neuron}':<12} {r.view:<5} {r.direction:<4} {_label(r):<18} {r.count:>2} "
            f"{fmt_prob(r.label_mass, 3):>8} {r.entropy:7.3f} {fmt_prob(r.prob, 3):>8}  {_tok(r.token):<16}"
            + (f" {score:7.3f}" if extra else "")
        )
    return 0


def cmd_concept(args) -> int:
    model = open_model(args)
    rows = model.concept(args.word, views=[args.view] if args.view else None)
    matched = model.match_word(args.word)
    name = matched.concept
    if args.json:
        emit_json(
            {"model": model.name, "concept": name, "neurons": rows.as_dicts(), "matched": matched.as_dict()}, model
        )
        return 0
    note(matched.describe())
    if not rows:
        print(f"no neuron of {model.name} is labelled {name!r}")
        return 0
    print(
        f"{model.name}: {len(rows)} neuron-views labelled {name!r} (sign: what an activation needs "
        f"to push it into the output)"
    )
    for r in rows[: args.limit]:
        print(f"  L{r.layer}:N{r.neuron:<6} {r.view:<5} {r.direction:<4} mass {r.label_mass:.3f}  sign {r.sign:+d}")
    if len(rows) > args.limit:
        print(f"  … {len(rows) - args.limit} more (--limit)")
    return 0


def cmd_export(args) -> int:
    model = open_model(args)
    count = model.export(args.format, args.out, views=args.views, workers=None, what=args.what)
    if args.out not in (None, "-"):
        rows = "edges" if args.what == "edges" else "neuron-directions"
        note(f"wrote {count:,} {rows} of {model.name} to {args.out}")
    sys.stdout.flush()
    return 0
