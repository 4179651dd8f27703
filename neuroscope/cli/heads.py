"""`show MODEL L5:H3` and the heads part of `search`: what an attention head's top OV directions write and read,
printed from what neuroscope.heads returns. The ref is checked before anything loads."""

from __future__ import annotations

from ..cache.labels import LABEL_FLOOR
from ..cache.words import quoted
from ..core.refs import HeadRef
from ..heads import Head, HeadMatch
from ..heads import search_heads as find_heads
from .errors import CommandError
from .output import emit_json, fmt_prob, note, open_model


def show_head(args) -> int:
    ref = HeadRef.parse(args.neuron)
    if args.examples:
        raise CommandError("--examples is for neurons: a head has no activation examples")
    model = open_model(args)
    got: Head = model.head(ref)
    if args.json:
        emit_json(got.as_dict(), model)
        return 0
    print(f"{model.name} {ref}  (OV circuit: top {len(got.directions)} singular directions)")
    for d in got.directions:
        print(f"  σ{d.rank + 1} = {d.sigma:.4g}")
        for direction, sign in (("pos", "+"), ("neg", "−")):
            label = d.labels[direction]
            mass = d.label_mass[direction]
            named = f"label: {label} ({mass:.0%})" if label else f"label: none (no word holds {LABEL_FLOOR:.0%})"
            tokens = "  ".join(f"{quoted(t.token)} {fmt_prob(t.value)}" for t in d.writes[direction][:6])
            print(f"    writes {sign}  {named:<28} {tokens}")
        for direction, sign in (("pos", "+"), ("neg", "−")):
            tokens = "  ".join(f"{quoted(t.token)} {t.value:+.3f}" for t in d.reads[direction][:6])
            print(f"    reads  {sign}  {tokens}")
    return 0


def search_heads(model, args) -> list[HeadMatch] | None:
    """The head directions ``search`` shows next to its neurons (None: the heads are not cached, no --heads)."""
    found = find_heads(model, args.text, args.match, args.max_rank, args.direction, build=args.heads)
    if found is None:
        note(f"attention heads are not in {model.name}'s cache yet: add --heads to search them too (decoded once)")
        return None
    return list(found)[: args.limit]


def print_head_hits(model, heads: list[HeadMatch] | None, text: str) -> None:
    if heads is None:
        return
    print()
    if not heads:
        print(f"no head of {model.name} carries '{text}'")
        return
    print(f"{'head':<10} {'σ':>2} {'side':<6} {'dir':<4} {'pos':>3}  {'token':<18} {'value':>8}  label")
    for h in heads:
        value = fmt_prob(h.value) if h.side == "writes" else f"{h.value:+.3f}"
        print(
            f"{str(h.ref):<10} {h.rank:>2} {h.side:<6} {h.direction:<4} {h.position:>3}  "
            f"{quoted(h.token):<18} {value:>8}  {h.label or '—'}"
        )
