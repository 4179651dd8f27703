"""`neuroscope compare BASE OTHER`: how much of the neuron map a fine-tune kept, layer by layer."""

from __future__ import annotations

import json

from .. import api
from ..choices import DIRECTIONS, VIEWS
from ..core.compare import PAPER_SAME_TOP1, Comparison
from ..core.refs import NeuronRef
from .arguments import positive
from .output import emit_json, fmt_prob, open_model

BAR = 30


def register(sub, common, engine) -> None:
    p = sub.add_parser("compare", parents=[common, engine], help="compare two models' neuron maps (base vs fine-tune)")
    p.add_argument("base", metavar="BASE")
    p.add_argument("other", metavar="OTHER")
    p.add_argument("--view", choices=VIEWS, default="up")
    p.add_argument("--direction", choices=DIRECTIONS, default="pos")
    p.add_argument("--top", type=positive, default=50, help="how many most-changed neurons to list (default 50)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(run=cmd_compare)


def _bar(fraction: float, width: int = BAR) -> str:
    eighths = int(round(max(0.0, min(1.0, fraction)) * width * 8))
    full, part = divmod(eighths, 8)
    return ("█" * full + (" ▏▎▍▌▋▊▉"[part] if part else "")).ljust(width)


def _tok(text: str, width: int = 16) -> str:
    shown = json.dumps(text, ensure_ascii=False)
    return shown if len(shown) <= width else shown[: width - 2] + '…"'


def cmd_compare(args) -> int:
    base, other = open_model(args, args.base), open_model(args, args.other)
    result = api.compare(base, other, view=args.view, direction=args.direction, top=args.top)
    if args.json:
        emit_json(result.as_dict(), base, other)
    else:
        print_plain(result)
    return 0


def print_plain(c: Comparison) -> None:
    total = sum(p.neurons for p in c.per_layer)
    print(f"{c.base} vs {c.other} · {c.view} {c.direction} · top-{c.top_k}")
    print(
        f"same top-1 token: {c.same_top1:.1%} of {total:,} neurons   mean top-{c.top_k} Jaccard: "
        f"{c.mean_topk_jaccard:.3f}   (paper, Llama-3.1-8B vs Instruct, up: {PAPER_SAME_TOP1:.1%})"
    )
    print()
    print(f"{'layer':<6} {'neurons':>7}  {'same top-1':>10}  {'':<{BAR}}  {'jaccard':>7}")
    for p in c.per_layer:
        print(f"L{p.layer:<5} {p.neurons:>7,}  {p.same_top1:>10.1%}  {_bar(p.same_top1)}  {p.mean_jaccard:>7.3f}")
    if not c.most_changed:
        return
    print()
    print(f"most changed (lowest top-{c.top_k} overlap, then largest probability change):")
    print(f"{'neuron':<12} {'jaccard':>7} {'Δprob':>8} {'cosine':>7}  {'base top':<16}  {'other top':<16}")
    for m in c.most_changed:
        cosine = "-" if m.cosine is None else f"{m.cosine:.3f}"
        print(
            f"{str(NeuronRef(m.layer, m.neuron)):<12} {m.jaccard:>7.3f} {fmt_prob(m.prob_change, 3):>8} {cosine:>7}  "
            f"{_tok(m.base_top):<16}  {_tok(m.other_top):<16}"
        )
