"""Scale check on CPU: a Llama with Llama-3.1-8B's neuron count (32 layers x 14,336) on a skinny residual
stream (hidden 32, vocab 49,152). Decodes all views and both directions through the real CLI, then reports
decode time, cache size and the wall time of `neuroscope search` (a fresh process each time).

    python bench/scale_bench.py [--workdir DIR]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def build(path: Path) -> None:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from tests.models import save_tokenizer

    config = LlamaConfig(
        vocab_size=49152,
        hidden_size=32,
        intermediate_size=14336,
        num_hidden_layers=32,
        num_attention_heads=4,
        num_key_value_heads=2,
        tie_word_embeddings=False,
    )
    torch.manual_seed(0)
    with torch.device("meta"):
        model = LlamaForCausalLM(config)
    model = model.to_empty(device="cpu")
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.copy_(torch.rand(p.shape, generator=gen) + 0.5 if "norm" in name else torch.randn(p.shape, generator=gen))
    model.save_pretrained(path)
    import tests.models as tm

    tm.VOCAB = 49152
    save_tokenizer(path)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--workdir", default=None)
    args = ap.parse_args()
    work = Path(args.workdir or tempfile.mkdtemp(prefix="neuroscope-scale-"))
    model, cache = work / "llama8b-skinny", work / "cache"
    if not (model / "config.json").exists():
        t = time.perf_counter()
        build(model)
        print(f"built {model} in {time.perf_counter() - t:.0f} s", flush=True)
    cli = [sys.executable, "-m", "neuroscope"]
    t = time.perf_counter()
    subprocess.run([*cli, "decode", str(model), "--cache-dir", str(cache)], check=True)
    decode_s = time.perf_counter() - t
    size = sum(p.stat().st_size for p in cache.glob("*.sqlite*"))
    times = []
    for word in ("dog", "cat", "t123", "dog", "t7"):
        t = time.perf_counter()
        out = subprocess.run(
            [*cli, "search", str(model), word, "--max-rank", "10", "--json", "--cache-dir", str(cache)],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        times.append(time.perf_counter() - t)
        hits = len(json.loads(out)["hits"])
    print(
        json.dumps(
            {
                "machine": f"{platform.processor() or platform.machine()}, cores={__import__('os').cpu_count()}",
                "neurons": 32 * 14336,
                "views": 3,
                "directions": 2,
                "decode_seconds": round(decode_s, 1),
                "cache_mb": round(size / 2**20, 1),
                "search_seconds_median": round(statistics.median(times), 3),
                "search_seconds_max": round(max(times), 3),
                "last_hits": hits,
            },
            indent=1,
        )
    )


if __name__ == "__main__":
    main()
