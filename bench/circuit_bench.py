"""The circuit graph's all-pairs pass against the bare matmul floor of the same layer pairs, in the same run.

    python bench/circuit_bench.py [--layers 6] [--neurons 1536] [--hidden 576] [--threads N] [--demo]

A random Llama of the demo's widths (built from its config, saved, read back through the decode's streaming
loader) runs the pass (fan-in and fan-out top-32, no token tops, commits dropped) and then only the matmuls of
the same (source, target, read) pairs in the same chunks, into the same reused block; prints both times and the
ratio (target <= 1.3 on CPU). --hidden sets the residual width: the floor's cost per virtual weight grows with it,
the pass's own work per weight does not (Llama-3.1-8B's is 4096).
--demo: builds the demo's whole graph in a fresh cache and prints its time and the graph's bytes.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--layers", type=int, default=6)
    ap.add_argument("--neurons", type=int, default=1536)
    ap.add_argument("--hidden", type=int, default=576)
    ap.add_argument("--demo", action="store_true")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's own choice)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    from transformers import LlamaConfig, LlamaForCausalLM

    from neuroscope.choices import EDGE_TOP
    from neuroscope.core.circuits.graph import GraphPass
    from neuroscope.core.circuits.weights import CircuitWeights
    from neuroscope.core.loading.models import load_for_decode
    from neuroscope.core.loading.sources import resolve

    with tempfile.TemporaryDirectory() as tmp:
        config = LlamaConfig(
            vocab_size=512,
            hidden_size=args.hidden,
            intermediate_size=args.neurons,
            num_hidden_layers=args.layers,
            num_attention_heads=9,
            num_key_value_heads=3,
        )
        LlamaForCausalLM(config).save_pretrained(tmp)
        from tokenizers import Tokenizer
        from tokenizers.models import WordLevel
        from transformers import PreTrainedTokenizerFast

        PreTrainedTokenizerFast(
            tokenizer_object=Tokenizer(WordLevel({f"t{i}": i for i in range(512)}, unk_token="t0"))
        ).save_pretrained(tmp)
        cw = CircuitWeights(load_for_decode(resolve(tmp)).adapter)
        graph = GraphPass(cw, EDGE_TOP, tokens=False)
        graph.stack()  # every layer's down columns, read once as the pass does; not timed in either
        started = time.perf_counter()
        graph.run(set(), {}, lambda *a, **k: None)
        passed = time.perf_counter() - started
        started = time.perf_counter()
        stack, buffer = graph.stack(), graph.buffer()
        for t in graph.units:
            for via in cw.reads:
                rows = cw.read_rows(t, via).T.contiguous()
                for a, b in graph.chunks(t):
                    torch.matmul(stack[a:b], rows, out=buffer[: b - a])  # into one block, as the pass does
        floor = time.perf_counter() - started
    print(
        f"[pass] {args.layers} layers x {args.neurons} neurons x hidden {args.hidden}, {torch.get_num_threads()} "
        f"threads: pass {passed:.2f} s, matmul floor {floor:.2f} s, ratio {passed / floor:.2f}x (target <= 1.3)"
    )
    if args.demo:
        from neuroscope.cache.edges import Edges
        from neuroscope.cache.store import Store
        from neuroscope.core.circuits.build import ensure_graph

        with tempfile.TemporaryDirectory() as cache:
            started = time.perf_counter()
            result = ensure_graph(resolve("demo"), cache_dir=Path(cache), device="auto")
            seconds = time.perf_counter() - started
            with Store(result.path, readonly=True) as store:
                size = Edges(store).nbytes()
            print(f"[demo] whole graph in {seconds:.1f} s on {result.device}; {size:,} bytes of edges in the cache")


if __name__ == "__main__":
    main()
