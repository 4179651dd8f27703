"""Decode speed, as ratios against floors measured in the same run (never timed assertions in tests).

1. Engine on the demo's shapes (Llama, hidden 576, vocab 49,152, 1,536 neurons x 3 views x 2 layers,
   random weights): the bare matmul floor (fp32 and bf16), neuroscope's decode of both directions, and a
   naive baseline (fp32 logits -> full softmax -> top-k, per direction, as existing tools do).
2. End to end on the real demo: `neuroscope decode demo` (all views, both directions, fresh cache) against
   a process that imports torch + transformers, loads the demo with transformers and runs the bare fp32
   matmuls for every view (bench/demo_floor.py). Target: ratio <= 1.3.
3. --agreement: decode the demo again in float32 and report how often the default (bf16 matmul + exact
   rescoring) gives the same top-10 ids, and the largest relative probability difference.

    python bench/decode_bench.py [--skip-demo] [--agreement]
"""

from __future__ import annotations

import argparse
import datetime
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent


def best(fn, repeat=3):
    fn()
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def engine_bench() -> None:
    from transformers import LlamaConfig, LlamaForCausalLM

    from neuroscope.core.decode import Decoder, DecodeRecipe
    from neuroscope.core.loading.models import adapter_for

    cfg = LlamaConfig(
        vocab_size=49152,
        hidden_size=576,
        intermediate_size=1536,
        num_hidden_layers=2,
        num_attention_heads=9,
        num_key_value_heads=3,
        tie_word_embeddings=True,
    )
    torch.manual_seed(0)
    model = LlamaForCausalLM(cfg).eval()
    with torch.no_grad():
        model.lm_head.weight.normal_()
    adapter = adapter_for(model)
    units = [(layer, view) for layer in range(2) for view in ("up", "gate", "down")]
    head = model.lm_head.weight.detach()
    vecs = [adapter.vectors(layer, view).detach() for layer, view in units]

    def matmul(dtype):
        w = head.to(dtype)
        xs = [v.to(dtype) for v in vecs]

        def run():
            with torch.inference_mode():
                for x in xs:
                    for s in range(0, x.shape[0], 1024):
                        x[s : s + 1024] @ w.t()

        return run

    def naive():
        norm = adapter.final_norm
        with torch.inference_mode():
            for v in vecs:
                for sign in (1, -1):
                    for s in range(0, v.shape[0], 1024):
                        logits = norm(sign * v[s : s + 1024]) @ head.t()
                        torch.softmax(logits, dim=-1).topk(10, dim=-1)

    results = {
        "fp32 matmul floor": best(matmul(torch.float32)),
        "bf16 matmul floor": best(matmul(torch.bfloat16)),
        "naive fp32 softmax+topk": best(naive, 1),
    }
    for dtype in ("float32", "bfloat16"):
        dec = Decoder(adapter, DecodeRecipe(dtype=dtype, device="cpu"))
        results[f"neuroscope {dtype}"] = best(lambda dec=dec: [dec.decode_unit(layer, view) for layer, view in units])
    print(
        f"\n[engine] demo shapes, {len(units)} layer-views x 1536 neurons x 2 directions, {platform.machine()}, "
        f"{torch.get_num_threads()} threads"
    )
    for name, sec in results.items():
        print(
            f"  {name:<26} {sec:7.2f} s   x{sec / results['fp32 matmul floor']:.2f} fp32 floor   "
            f"x{sec / results['bf16 matmul floor']:.2f} bf16 floor"
        )


def demo_bench(agreement: bool) -> None:
    cli = [sys.executable, "-m", "neuroscope"]
    t = time.perf_counter()
    out = subprocess.run([sys.executable, str(HERE / "demo_floor.py")], check=True, capture_output=True, text=True)
    floor = time.perf_counter() - t
    cache = tempfile.mkdtemp(prefix="neuroscope-bench-")
    t = time.perf_counter()
    subprocess.run([*cli, "decode", "demo", "--cache-dir", cache], check=True, stderr=subprocess.DEVNULL)
    ours = time.perf_counter() - t
    print(
        f"\n[demo] floor process {floor:.1f} s ({out.stdout.strip()}); `neuroscope decode demo` {ours:.1f} s; "
        f"ratio {ours / floor:.2f} (target <= 1.3)"
    )
    if agreement:
        exact = tempfile.mkdtemp(prefix="neuroscope-bench-f32-")
        subprocess.run(
            [*cli, "decode", "demo", "--dtype", "float32", "--cache-dir", exact], check=True, stderr=subprocess.DEVNULL
        )
        compare(cache, exact)


def compare(fast_dir: str, exact_dir: str) -> None:
    import numpy as np

    from neuroscope.cache.store import Store

    [a_path], [b_path] = Path(fast_dir).glob("*.sqlite"), Path(exact_dir).glob("*.sqlite")
    same = top1 = total = 0
    worst = 0.0
    with Store(a_path, readonly=True) as a, Store(b_path, readonly=True) as b:
        for layer in range(a.layers):
            for view in a.views:
                for d in ("pos", "neg"):
                    ia, pa = a.tops(layer, view, d)
                    ib, pb = b.tops(layer, view, d)
                    eq = (ia == ib).all(axis=1)
                    same += int(eq.sum())
                    top1 += int((ia[:, 0] == ib[:, 0]).sum())
                    total += len(eq)
                    worst = max(worst, float(np.max(np.abs(pa[eq] - pb[eq]) / pb[eq])))
    print(
        f"[agreement] bf16+rescoring vs float32 on the demo: identical top-10 ids for {same / total:.4%} of "
        f"{total:,} neuron-directions, same top-1 for {top1 / total:.4%}; max relative prob difference "
        f"{worst:.2e}"
    )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--skip-demo", action="store_true")
    ap.add_argument("--agreement", action="store_true")
    args = ap.parse_args()
    print(
        f"neuroscope decode bench, {datetime.date.today()}, {platform.processor() or platform.machine()}, "
        f"torch {torch.__version__}"
    )
    engine_bench()
    if not args.skip_demo:
        demo_bench(args.agreement)


if __name__ == "__main__":
    main()
