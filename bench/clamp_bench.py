"""Generation speed with clamps vs without, on the same model, prompt and settings, in the same run.

    python bench/clamp_bench.py [MODEL] [--tokens 64] [--rounds 3] [--clamps L29:N808=20,L15:N806=-20]

Greedy decoding of exactly --tokens new tokens (EOS is ignored), alternating unclamped and clamped runs
so that machine noise hits both; prints tokens/s (median of the rounds) and the ratio (target >= 0.95).
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model", nargs="?", default="demo")
    ap.add_argument("--tokens", type=int, default=64)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--clamps", default="L29:N808=20,L15:N806=-20")
    ap.add_argument("--prompt", default="My favourite animal is the")
    args = ap.parse_args()

    from neuroscope.core import generate as gen
    from neuroscope.core.clamp import Clamp, ClampSet
    from neuroscope.core.generate import GenSettings, build_prompt, generation_config
    from neuroscope.core.loading.models import load
    from neuroscope.core.loading.sources import resolve

    lm = load(resolve(args.model))
    clamps = ClampSet([Clamp.parse(s) for s in args.clamps.split(",")]).check(lm.adapter.num_layers, lm.adapter.neurons)
    prompt = build_prompt(lm, args.prompt, chat=False)
    settings = GenSettings(max_new_tokens=args.tokens)
    config = generation_config(lm, settings)
    config.min_new_tokens = args.tokens  # the same token count every run

    def run(cs) -> float:
        original = gen.generation_config
        gen.generation_config = lambda *a, **k: config
        try:
            start = time.perf_counter()
            out = gen.generate(lm, prompt, settings, cs)
            seconds = time.perf_counter() - start
        finally:
            gen.generation_config = original
        assert out.new_tokens == args.tokens, out.new_tokens
        return args.tokens / seconds

    run(None)  # warm-up
    plain, clamped = [], []
    for _ in range(args.rounds):
        plain.append(run(None))
        clamped.append(run(clamps))
    p, c = statistics.median(plain), statistics.median(clamped)
    print(
        f"model {args.model}: {args.tokens} new tokens, greedy, {torch.get_num_threads()} threads, "
        f"{args.rounds} rounds; clamps {clamps.describe()}"
    )
    print(f"without clamps  {p:7.1f} tokens/s  (rounds: {', '.join(f'{x:.1f}' for x in plain)})")
    print(f"with clamps     {c:7.1f} tokens/s  (rounds: {', '.join(f'{x:.1f}' for x in clamped)})")
    print(f"ratio           {c / p:7.3f}  (target >= 0.95)")


if __name__ == "__main__":
    main()
