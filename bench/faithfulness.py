"""Is the weight graph faithful? How often a neuron's largest neuron sources of exact attribution, at its
top-activating corpus tokens (the cached examples), are among its top-k upstream edges, against chance and a
shuffled control (core.circuits.faithful).

    python bench/faithfulness.py [MODEL=demo] [--neurons 64] [--tokens 4] [--m 5] [--k 32] [--seed 0] [--min-layer 2]

Needs the model's examples and circuit graph in its cache (`neuroscope examples MODEL`, `neuroscope circuit
MODEL L1:N0` build them once). Prints a table (per read vector and per band of layers) and a JSON line.
"""

from __future__ import annotations

import argparse
import json
import time


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model", nargs="?", default="demo")
    ap.add_argument("--neurons", type=int, default=64)
    ap.add_argument("--tokens", type=int, default=4)
    ap.add_argument("--m", type=int, default=5)
    ap.add_argument("--k", type=int, default=None)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--min-layer", type=int, default=2)
    args = ap.parse_args()

    import neuroscope
    from neuroscope.behaviour import require_examples
    from neuroscope.cache.store import Store
    from neuroscope.circuits import ensure_graph
    from neuroscope.core.circuits.faithful import measure, sample_targets

    model = neuroscope.open(args.model, progress=False)
    require_examples(model)
    ensure_graph(model)
    started = time.perf_counter()
    with Store(model.path, readonly=True) as store:
        targets = sample_targets(store.layers, store.neurons, args.neurons, args.seed, args.min_layer)
        result = measure(model.loaded(), store, targets, args.tokens, args.m, args.k)
    seconds = time.perf_counter() - started
    layers = model.info.layers
    third = max(1, (layers - args.min_layer) // 3)
    bands = [(a, min(layers - 1, a + third - 1)) for a in range(args.min_layer, layers, third)]
    print(
        f"{args.model}: {len(targets)} neurons x {args.tokens} top tokens, top-{args.m} neuron sources vs top-{result.k} edges"  # noqa: E501
    )
    print(
        f"{'':10} {'scores':>6} {'faithful':>8} {'control':>8} {'chance':>8} {'neuron':>7} {'attn':>6} {'embed':>6} {'bias':>6} {'edge mass':>9} {'ctrl mass':>9}"  # noqa: E501
    )
    rows = {**result.by_via(), **result.by_layers(bands)}
    for name, s in rows.items():
        mass = s.mass
        print(
            f"{name:10} {s.scores:6d} {s.faithful:8.3f} {s.control:8.3f} {s.chance:8.4f} {mass['neuron']:7.3f} "
            f"{mass['attn']:6.3f} {mass['embed']:6.3f} {mass['bias']:6.3f} {s.edge_mass:9.3f} {s.control_edge_mass:9.3f}"  # noqa: E501
        )
    print(json.dumps({"model": args.model, "seed": args.seed, "seconds": round(seconds, 1), **result.as_dict()}))


if __name__ == "__main__":
    main()
