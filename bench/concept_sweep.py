"""The dog-steering trade-off on a model (default: the demo): `clamp --concept dog` over strengths and neuron
sets (by the least label mass a neuron needs), 20 sampled replies each to "What is your favourite animal?",
reporting the dog rate, the fluency (mean log-prob per token under the unclamped model, nats) against the
baseline's, and distinct-2 (unique token bigrams / all bigrams over the replies), which falls when steering
wins by repeating itself ("dogsdogsdogs" is fluent to the model, but not distinct).

    python bench/concept_sweep.py [--model demo] [--cache-dir DIR] [--seeds 0,1,2]
"""

from __future__ import annotations

import argparse
import json
import time

import neuroscope

CONFIGS = [(2.0, 0.5), (3.0, 0.5), (4.0, 0.5), (6.0, 0.5), (3.0, 0.1), (4.0, 0.1), (6.0, 0.1), (3.0, 0.05), (4.0, 0.05)]


def distinct2(tokenizer, texts: list[str]) -> float:
    pairs = [tuple(ids[i : i + 2]) for ids in (tokenizer(t)["input_ids"] for t in texts) for i in range(len(ids) - 1)]
    return len(set(pairs)) / max(1, len(pairs))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="demo")
    parser.add_argument("--cache-dir", default=None)
    parser.add_argument("--concept", default="dog")
    parser.add_argument("--seeds", default="0", help="seeds of the sampling, comma-separated (default 0)")
    parser.add_argument("--configs", default=None, help="strength:min_mass pairs, e.g. 3:0.5,4:0.1")
    args = parser.parse_args()
    configs = [tuple(float(x) for x in c.split(":")) for c in args.configs.split(",")] if args.configs else CONFIGS
    model = neuroscope.open(args.model, cache_dir=args.cache_dir, progress=False)
    tok = model.tokenizer()
    print(
        f"{'strength':>8} {'min mass':>8} {'seed':>4} {'neurons':>7} {'dogs':>6} {'fluency':>8} {'base':>7} "
        f"{'Δ nats':>7} {'distinct-2':>10} {'base':>6}  first reply"
    )
    for seed in (int(s) for s in args.seeds.split(",")):
        for strength, min_mass in configs:
            t = time.perf_counter()
            r = model.clamp(
                None,
                prompt="What is your favourite animal?",
                chat=True,
                target=args.concept,
                samples=20,
                max_new_tokens=40,
                seed=seed,
                concept=args.concept,
                strength=strength,
                min_mass=min_mass,
            )
            c, b = r.clamped, r.baseline
            print(
                f"{strength:8g} {min_mass:8g} {seed:4d} {len(r.experiment.clamps.clamps):7d} "
                f"{round(c.target_rate * 20):>3}/20 {c.fluency:8.2f} {b.fluency:7.2f} {c.fluency - b.fluency:7.2f} "
                f"{distinct2(tok, c.samples):10.2f} {distinct2(tok, b.samples):6.2f}  "
                f"{json.dumps(c.samples[0][:70], ensure_ascii=False)}  ({time.perf_counter() - t:.0f} s)",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
