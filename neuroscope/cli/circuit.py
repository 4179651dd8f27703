"""`neuroscope circuit MODEL NEURON`: the neurons that feed a neuron, the neurons that read it, and the input
tokens it responds to directly, from the weights alone (neuroscope.circuits)."""

from __future__ import annotations

import argparse
import json

from ..choices import EDGE_TOP, READS
from ..circuits import DEFAULT_TOP, check_top, check_via, circuit, ensure_graph
from ..core.refs import NeuronRef
from ..errors import UsageError
from .arguments import devices
from .output import emit_json, open_model


def _top(text: str) -> int:
    try:
        return check_top(int(text))
    except (ValueError, UsageError):
        raise argparse.ArgumentTypeError(
            f"--top must be a whole number between 1 and {EDGE_TOP}, not '{text}'"
        ) from None


def register(sub, common, engine) -> None:
    p = sub.add_parser(
        "circuit",
        parents=[common, engine],
        help="a neuron's circuit from the weights: what feeds it, what reads it, which tokens it reads",
    )
    p.add_argument("model", metavar="MODEL")
    p.add_argument("neuron", metavar="NEURON", help="L29:N808 or 29:808")
    p.add_argument(
        "--top",
        type=_top,
        default=DEFAULT_TOP,
        help=f"neighbours and tokens listed per list (1-{EDGE_TOP}, default {DEFAULT_TOP})",
    )
    p.add_argument("--via", choices=READS, help="only this read vector (default: every one the model has)")
    p.add_argument(
        "--devices",
        type=devices,
        default=None,
        help="build the circuit graph (when it is not cached yet) over several devices, one process each, e.g. "
        "cuda:0,cuda:1 (under torchrun the ranks are taken from the environment)",
    )
    p.add_argument("--json", action="store_true")
    p.set_defaults(run=cmd_circuit)


def cmd_circuit(args) -> int:
    ref = NeuronRef.parse(args.neuron)
    model = open_model(args)
    model.neuron(ref)  # out of range: one line, nothing loaded
    check_via(model, args.via)  # --via gate on GPT-2: one line, nothing loaded
    if args.devices:
        from ..core.distributed import check_devices  # torch: only when a graph is to be built

        check_devices(args.devices)  # one line, before anything is decoded or spawned
        with model.store():  # decoded (and labelled) first, here, then the graph over the devices
            pass
        ensure_graph(model, devices=args.devices)
    out = circuit(model, ref, top=args.top, via=args.via)
    if args.json:
        emit_json(out, model)
        return 0
    print(f"{model.name} {ref}: virtual weights w = d_i · (g ⊙ r_j), largest |w| first")
    for title, key in (("reads from (upstream)", "upstream"), ("writes to (downstream)", "downstream")):
        print(f"{title}:")
        if not out[key]:
            print(
                "  none"
                + (" (layer 0 reads no earlier neuron)" if key == "upstream" else " (the last layer feeds no neuron)")
            )
        for e in out[key]:
            shown = str(NeuronRef(e["layer"], e["neuron"]))
            print(f"  {shown:<12} via {e['via']:<4} {e['weight']:>+10.4f}  {e['label'] or '—'}")
    for via, tokens in out["tokens"].items():
        print(
            f"input tokens ({via}): "
            + "  ".join(f"{json.dumps(t['token'], ensure_ascii=False)} {t['weight']:+.3f}" for t in tokens)
        )
    return 0
