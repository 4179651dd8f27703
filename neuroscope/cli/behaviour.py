"""`neuroscope trace`, `neuroscope examples`, `neuroscope agreement` and `show --examples`: what neurons do on
text, printed from the API's results (neuroscope.behaviour)."""

from __future__ import annotations

import json

from ..attribution import DEFAULT_TOP
from ..choices import DIRECTIONS
from ..core.corpus import label
from ..core.refs import NeuronRef
from ..errors import UsageError
from .arguments import positive
from .output import emit_json, open_model

SHOWN = 5  # examples per sign in the plain `show --examples` output


def register(sub, common, engine) -> None:
    p = sub.add_parser("trace", parents=[common, engine], help="which neurons fire on each token of a prompt")
    p.add_argument("model", metavar="MODEL")
    p.add_argument("--prompt", required=True, help="the text to run")
    p.add_argument("--chat", action="store_true", help="apply the model's chat template to the prompt")
    p.add_argument(
        "--top",
        type=positive,
        default=None,
        help="neurons listed per token, by |activation| (default 10); with --attribute, sources listed (default 20)",
    )
    p.add_argument(
        "--neuron",
        dest="neurons",
        action="append",
        default=[],
        metavar="NEURON",
        help="also give this neuron's activation at every token (repeatable)",
    )
    p.add_argument(
        "--attribute",
        metavar="NEURON",
        help="split this neuron's read pre-activations at one token into their sources (embedding, heads, "
        "earlier neurons, biases), exactly",
    )
    p.add_argument(
        "--at",
        type=int,
        metavar="INDEX",
        help="the token --attribute explains (negative counts from the end; default: where it fires most)",
    )
    p.add_argument("--json", action="store_true")
    p.set_defaults(run=cmd_trace)

    p = sub.add_parser(
        "examples",
        parents=[common, engine],
        help="max-activating examples of every neuron over a corpus (cached, resumable)",
    )
    p.add_argument("model", metavar="MODEL")
    p.add_argument(
        "--corpus",
        default=None,
        help="a .txt file, a folder of .txt/.md files, a .jsonl/.parquet/.csv file, a folder saved by "
        "datasets' save_to_disk (FOLDER@SPLIT), or a Hugging Face dataset name[:config][@split] "
        "(default split train; needs neuroscope[corpora]) (default: the King James Bible)",
    )
    p.add_argument(
        "--text-column",
        default=None,
        metavar="COLUMN",
        help="the column (or JSON field) holding the text in a .jsonl/.parquet/.csv file or a dataset (default text)",
    )
    p.add_argument("--tokens", type=positive, default=100_000, help="corpus tokens to run (default 100,000)")
    p.add_argument("--per-neuron", type=positive, default=20, help="examples kept per neuron and sign (default 20)")
    p.add_argument("--context", type=positive, default=24, help="tokens shown around an example (default 24)")
    p.add_argument(
        "--window",
        type=positive,
        default=None,
        help="tokens per forward pass row (default 128, or the model's context where shorter)",
    )
    p.add_argument("--batch-size", type=positive, default=8, help="rows per forward pass (default 8)")
    p.add_argument("--rebuild", action="store_true", help="discard the cached examples and run again")
    p.add_argument("--json", action="store_true")
    p.set_defaults(run=cmd_examples)

    p = sub.add_parser(
        "agreement",
        parents=[common, engine],
        help="how often the weight decode names what neurons respond to, per layer",
    )
    p.add_argument("model", metavar="MODEL")
    p.add_argument("--json", action="store_true")
    p.set_defaults(run=cmd_agreement)


def _tok(text: str, width: int = 14) -> str:
    shown = json.dumps(text, ensure_ascii=False)
    return shown if len(shown) <= width else shown[: width - 2] + '…"'


def cmd_trace(args) -> int:
    if args.at is not None and args.attribute is None:
        raise UsageError("--at needs --attribute NEURON (the neuron whose pre-activation it explains)")
    target = NeuronRef.parse(args.attribute) if args.attribute is not None else None
    top = args.top or 10
    model = open_model(args)
    attribution = None
    if target is not None:  # everything it needs checked first: the neuron, --at, the family
        attribution = model.attribute(args.prompt, target, at=args.at, top=args.top or DEFAULT_TOP, chat=args.chat)
    result = model.trace(args.prompt, chat=args.chat, top=top, neurons=args.neurons or None)
    if args.json:
        out = result.as_dict()
        if attribution is not None:
            out["attribution"] = attribution.as_dict()
        emit_json(out, model)
        return 0
    print(f"{model.name}: the top {top} neurons of each token by |activation| (label: what it writes there)")
    for token in result.tokens:
        firings = "  ".join(
            f"{NeuronRef(f.layer, f.neuron)} {f.activation:+.2f}{' ' + f.case if f.case else ''} {_tok(f.label or '?')}"
            for f in token.top[:4]
        )
        print(f"  {token.index:>3} {_tok(token.token):<16} {firings}")
    for n in result.neurons or ():
        values = " ".join(f"{v:+.2f}" for v in n.activations)
        print(f"{n.ref}: {values}")
    if attribution is not None:
        print_attribution(attribution)
    return 0


def print_attribution(a) -> None:
    ref = NeuronRef(a.layer, a.neuron)
    print(f"why {ref} fired at token {a.index} {_tok(a.token)} (activation {a.activation:+.3f}):")
    for via, read in a.reads.items():
        print(f"  {via} pre-activation {read.total:+.4f}, the sum of (the norm's scale s = {read.scale:.4f}):")
        for p in read.sources:
            where = {
                "embed": "embedding",
                "attn": f"L{p.layer}:H{p.head}" if p.head is not None else f"L{p.layer} attention",
                "neuron": str(NeuronRef(p.layer or 0, p.neuron or 0)),
                "bias": f"L{p.layer} bias",
            }[p.kind]
            extra = f"  act {p.activation:+.3f} x w {p.weight:+.4f} / s" if p.kind == "neuron" else ""
            print(f"    {where:<14} {p.value:>+10.4f}  {_tok(p.label, 24) if p.label else '—':<24}{extra}")
        print(f"    {'rest':<14} {read.rest:>+10.4f}")


def cmd_examples(args) -> int:
    model = open_model(args)
    result = model.examples(
        args.corpus,
        tokens=args.tokens,
        per_neuron=args.per_neuron,
        window=args.window,
        batch=args.batch_size,
        rebuild=args.rebuild,
        text_column=args.text_column,
    )
    summary = {
        "model": model.name,
        "corpus": result.corpus,
        "corpus_source": result.source,
        "tokens": result.tokens,
        "processed": result.processed,
        "per_neuron": args.per_neuron,
        "seconds": round(result.seconds, 3),
        "complete": result.complete,
    }
    if args.json:
        emit_json(summary, model)
        return 0
    what = "computed" if result.processed else "already cached"
    print(
        f"{model.name}: top-{args.per_neuron} examples of every neuron, both signs, over {result.tokens:,} tokens "
        f"of {label(result.corpus, result.source)} {what} in {result.seconds:.1f} s -> {result.path}"
    )
    return 0


def examples_of(neuron, context: int) -> dict:
    """What `show --examples` adds: both signs' examples and the GLU cases (the JSON shape)."""
    counts = neuron.cases()
    return {
        "pos": [e.as_dict() for e in neuron.examples("pos", context=context)],
        "neg": [e.as_dict() for e in neuron.examples("neg", context=context)],
        "cases": counts["cases"],
        "positive": counts["positive"],
    }


def _context(example: dict) -> str:
    parts = []
    for i, token in enumerate(example["tokens"]):
        parts.append(f"[[{token}]]" if i == example["index"] else token)
    return "".join(parts).replace("\n", "⏎")


def print_examples(shown: dict) -> None:
    for sign in DIRECTIONS:
        print(f"  {sign} examples (activation, context with [[the token]]):")
        for e in shown[sign][:SHOWN]:
            case = f" {e['case']}" if e["case"] else ""
            print(f"    {e['activation']:+8.2f}{case}  {_context(e)[-90:]}")
    cases = shown["cases"]
    if cases:
        total = sum(cases.values()) or 1
        print("  GLU cases over the corpus: " + "  ".join(f"{c} {n / total:.0%}" for c, n in cases.items()))
    print(f"  positive on {shown['positive']:.1%} of the corpus tokens")


def cmd_agreement(args) -> int:
    model = open_model(args)
    result = model.agreement()
    if args.json:
        emit_json(result.as_dict(), model)
        return 0
    print(
        f"{model.name}: a neuron agrees when a token of its decoded top-{result.top_k} is among the tokens at its "
        f"top-{result.per_neuron} examples (up/gate: the token; down: the next token)"
    )
    print(
        f"overall {result.agree:.1%} agree (chance, decodes paired with other neurons' examples: {result.chance:.1%})"
    )
    for view, a in result.views.items():
        print(f"\n{view}: {a.agree:.1%} (chance {a.chance:.1%})")
        for p in a.per_layer:
            bar = "█" * round(p.agree * 30)
            print(f"  L{p.layer:<3} {p.agree:6.1%}  {bar:<30}  chance {p.chance:5.1%}")
    return 0
