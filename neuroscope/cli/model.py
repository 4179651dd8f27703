"""`neuroscope decode`, `show`, `search` and `models`: the neuron map itself, thin layers over the notebook API
(neuroscope.api) printing what it returns. Cache-only paths (search/show on a cached model, models) never
import torch."""

from __future__ import annotations

import time

from .. import api
from ..behaviour import require_examples
from ..cache.labels import LABEL_FLOOR
from ..cache.words import quoted
from ..choices import DEFAULT_TOP_K, DIRECTIONS, FEATURE_VIEWS, SEARCH_MATCHES, VIEWS
from ..concepts import Label
from ..core.refs import NeuronRef, is_feature_ref, is_head_ref
from .arguments import devices, positive, top_k, views
from .behaviour import examples_of, print_examples
from .errors import CommandError
from .features import show_feature
from .heads import print_head_hits, search_heads, show_head
from .output import emit_json, fmt_prob, note, open_model


def register(sub, common, engine) -> None:
    p = sub.add_parser("decode", parents=[common, engine], help="decode every neuron into the cache")
    p.add_argument("model", metavar="MODEL")
    p.add_argument("--views", type=views, default=None, help="comma-separated views (default: all the model has)")
    p.add_argument(
        "--top-k", type=top_k, default=DEFAULT_TOP_K, help=f"tokens kept per neuron (default {DEFAULT_TOP_K})"
    )
    p.add_argument("--rebuild", action="store_true", help="discard this model's cache and decode again")
    p.add_argument(
        "--devices",
        type=devices,
        default=None,
        help="spread layers over several devices, one process each, e.g. cuda:0,cuda:1 "
        "(under torchrun the ranks are taken from the environment)",
    )
    p.add_argument("--json", action="store_true", help="print a JSON summary on stdout")
    p.set_defaults(run=cmd_decode)

    p = sub.add_parser(
        "show", parents=[common, engine], help="a neuron's top tokens, what a head writes and reads, or an SAE feature"
    )
    p.add_argument("model", metavar="MODEL")
    p.add_argument(
        "neuron", metavar="NEURON", help="L29:N808 or 29:808; an attention head: L5:H3 or 5:h3; with --sae: F123"
    )
    p.add_argument(
        "--view",
        choices=(*VIEWS, *FEATURE_VIEWS),
        default=None,
        help="a neuron's up (default), gate or down; a feature's dec (default: what it writes) or enc (what it reads)",
    )
    p.add_argument(
        "--sae", metavar="PATH", default=None, help="a SAELens dictionary folder (cfg.json, sae_weights.safetensors)"
    )
    p.add_argument("--direction", choices=DIRECTIONS, default="pos")
    p.add_argument("--examples", action="store_true", help="add its max-activating examples and GLU cases")
    p.add_argument("--context", type=positive, default=24, help="with --examples: tokens shown per example")
    p.add_argument("--json", action="store_true")
    p.set_defaults(run=cmd_show)

    p = sub.add_parser("search", parents=[common, engine], help="neurons whose top tokens match TEXT")
    p.add_argument("model", metavar="MODEL")
    p.add_argument("text", metavar="TEXT")
    p.add_argument("--view", choices=VIEWS, default=None, help="only this view (default: all)")
    p.add_argument("--direction", choices=DIRECTIONS, default=None, help="only this direction (default: both)")
    p.add_argument("--max-rank", type=positive, default=1, help="match within each neuron's top R tokens (default 1)")
    p.add_argument(
        "--match",
        choices=SEARCH_MATCHES,
        default="word",
        help="word (default): the word's tokens in any case, with or without a leading space, its "
        'plurals, and its leading pieces (" Californ" for California: a vocabulary token of 4+ '
        "letters spelling half the word or more, 10x rarer than it as a word); exact; prefix; "
        "contains; label: neurons whose concept label is TEXT (dogs, Dog and dog are one concept)",
    )
    p.add_argument("--limit", type=positive, default=50)
    p.add_argument(
        "--heads", action="store_true", help="decode the attention heads first when they are not cached (once)"
    )
    p.add_argument("--json", action="store_true")
    p.set_defaults(run=cmd_search)

    p = sub.add_parser("models", parents=[common], help="list cached models and whether each decode is complete")
    p.add_argument("--json", action="store_true")
    p.set_defaults(run=cmd_models)


def cmd_decode(args) -> int:
    model = open_model(args)
    result = model.decode(views=args.views, top_k=args.top_k, rebuild=args.rebuild, devices=args.devices)
    if result is None:  # a torchrun rank other than 0: rank 0 reports
        return 0
    summary = {
        "model": model.name,
        "views": result.views,
        "neurons": result.neurons,
        "units_decoded": result.decoded_units,
        "seconds": round(result.seconds, 3),
    }
    if args.json:
        emit_json(summary, model)
    else:
        what = "decoded" if result.decoded_units else "already cached"
        print(
            f"{model.name}: {result.neurons:,} neurons x {'/'.join(result.views)} {what} "
            f"in {result.seconds:.1f} s{' on ' + result.device if result.device else ''} -> {result.path}"
        )
    return 0


def cmd_show(args) -> int:
    if args.sae is not None:
        return show_feature(args)
    if is_feature_ref(args.neuron):
        raise CommandError(f"{args.neuron} is a dictionary feature: add --sae PATH (a SAELens folder)")
    if args.view in FEATURE_VIEWS:
        raise CommandError(f"--view {args.view} is a dictionary feature's view: add --sae PATH, or use up, gate, down")
    if is_head_ref(args.neuron):
        return show_head(args)
    args.view = args.view or "up"
    ref = NeuronRef.parse(args.neuron)
    model = open_model(args)
    neuron = model.neuron(ref)  # out of range: one line, nothing loaded
    if args.examples:  # none cached: one line before a decode that --examples cannot use
        require_examples(model)
    top = neuron.top(args.view, args.direction)
    label = neuron.label(args.view, args.direction)
    shown = None
    if args.examples:
        shown = examples_of(neuron, args.context)
    if args.json:
        out = {
            "model": model.name,
            "layer": ref.layer,
            "neuron": ref.neuron,
            "view": args.view,
            "direction": args.direction,
            "label": label.label if label else None,
            "label_mass": label.mass if label else None,
            "top": [{"token_id": t.token_id, "token": t.token, "prob": t.prob} for t in top],
        }
        emit_json(out if shown is None else {**out, "examples": shown}, model)
        return 0
    print(
        f"{model.name} {ref} {args.view} {args.direction}"
        + (
            f"  label: {label} (entropy {label.entropy:.2f})"
            if label
            else f"  label: none (no word holds {LABEL_FLOOR:.0%} of its top-{len(top)} mass)"
        )
    )
    for t in top:
        bar = "█" * max(1, round(t.prob * 30)) if t.prob >= 0.005 else "·"
        print(f"  {t.rank + 1:>3}  {quoted(t.token):<20} {fmt_prob(t.prob):>8}  {bar}")
    if shown is not None:
        print_examples(shown)
    return 0


def cmd_search(args) -> int:
    if not args.text.strip():
        raise CommandError("TEXT is empty: give a token to search for, e.g. dog")
    model = open_model(args)
    hits = model.search(
        args.text, view=args.view, direction=args.direction, max_rank=args.max_rank, match=args.match, limit=args.limit
    )
    matched = model.match_word(args.text) if args.match in ("word", "label") else None
    heads = search_heads(model, args)
    if args.json:
        out = {"model": model.name, "query": args.text, "hits": [h.as_dict() for h in hits]}
        out = out if matched is None else {**out, "matched": matched.as_dict()}
        emit_json({**out, "heads": None if heads is None else [h.as_dict() for h in heads]}, model)
        return 0
    if matched is not None:
        note(matched.describe())
    if not hits:
        print(
            f"no neuron of {model.name} is labelled '{args.text}'"
            if args.match == "label"
            else f"no neuron of {model.name} has a token matching '{args.text}' ({args.match}) "
            f"within its top {args.max_rank}"
        )
        print_head_hits(model, heads, args.text)
        return 0
    print(f"{'neuron':<12} {'view':<5} {'dir':<4} {'rank':>4}  {'token':<18} {'prob':>8}  label")
    for h in hits:
        ref = str(NeuronRef(h.layer, h.neuron))
        label = "—" if h.label is None else str(Label(h.label, h.label_mass, h.label_count, 0.0))
        print(
            f"{ref:<12} {h.view:<5} {h.direction:<4} {h.rank + 1:>4}  "
            f"{quoted(h.token):<18} {fmt_prob(h.prob):>8}  {label}"
        )
    print_head_hits(model, heads, args.text)
    return 0


def cmd_models(args) -> int:
    rows = api.models(args.cache_dir, note=note)
    if args.json:
        emit_json(rows.as_dicts())
        return 0
    if not rows:
        print("no decoded models yet: try `neuroscope decode demo`")
        return 0
    print(f"{'model':<28} {'layers x neurons':<18} {'views':<14} {'complete':<9} last used")
    for r in rows:
        used = time.strftime("%Y-%m-%d %H:%M", time.localtime(r.last_used)) if r.last_used else "-"
        shape = f"{r.layers} x {r.neurons_per_layer}"
        print(f"{r.model:<28} {shape:<18} {','.join(r.views) or '-':<14} {'yes' if r.complete else 'no':<9} {used}")
    return 0
