"""`examples` throughput against its floor, measured in one process: the tokens/s of a bare batched forward
pass of the same model over the same corpus windows (no hooks), vs the examples engine (hooks, per-batch
top-N merge on the device, GLU case counts) and vs the whole command path (plus SQLite commits).

    python bench/examples_bench.py [--model demo] [--tokens 2048] [--window 128] [--batch 8] [--rounds 3]

Rounds alternate floor / engine / whole so that a drift of the machine's speed hits all three; the median
of each is quoted. Target: engine and whole >= 0.85 x the floor.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="demo")
    parser.add_argument("--tokens", type=int, default=2048)
    parser.add_argument("--window", type=int, default=128)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--per-neuron", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    import torch

    import neuroscope
    from neuroscope.core.corpus import open_corpus, windows
    from neuroscope.core.examples import LayerState, stream

    model = neuroscope.open(args.model, device="cpu", progress=False)
    lm = model.loaded()
    win = windows(open_corpus(None), lm.tokenizer, args.tokens, args.window)
    tokens = win.size
    n, gated = lm.adapter.neurons, "gate" in lm.adapter.names

    @torch.inference_mode()
    def floor():
        for start in range(0, len(win), args.batch):
            ids = torch.from_numpy(win[start : start + args.batch].astype("int64"))
            lm.model(input_ids=ids, use_cache=False)

    def engine():
        states = {layer: LayerState.empty(n, args.per_neuron, gated, "cpu") for layer in range(lm.adapter.num_layers)}
        stream(lm, win, 0, states, args.batch)

    def whole():
        with tempfile.TemporaryDirectory() as cache:
            fresh = neuroscope.open(args.model, cache_dir=cache, device="cpu", progress=False)
            fresh._lm, fresh._tokenizer = lm, lm.tokenizer
            fresh.examples(None, tokens=args.tokens, per_neuron=args.per_neuron, window=args.window, batch=args.batch)

    times = {"floor": [], "engine": [], "whole": []}
    floor()  # warm-up
    for _ in range(args.rounds):
        for name, fn in (("floor", floor), ("engine", engine), ("whole", whole)):
            started = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - started)
    print(
        f"{args.model}: {tokens:,} tokens in {len(win)} windows of {args.window}, batches of {args.batch}, "
        f"top-{args.per_neuron} per neuron and sign, {torch.get_num_threads()} threads, {args.rounds} rounds"
    )
    base = statistics.median(times["floor"])
    for name, values in times.items():
        med = statistics.median(values)
        print(
            f"  {name:<7} {tokens / med:8.1f} tokens/s  (median {med:.2f} s; rounds "
            f"{', '.join(f'{v:.2f}' for v in values)})  x{base / med:.3f} of the floor's throughput"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
