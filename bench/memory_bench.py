"""Peak memory of a streamed decode: a randomly initialised Llama with 1B+ parameters, saved as sharded
bf16 safetensors, decoded by `neuroscope decode` in a child process; prints its peak RSS against the
checkpoint's size (target: under 40%).

    python bench/memory_bench.py [--workdir DIR] [--views up]
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def build(path: Path) -> None:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    import tests.models as tm  # a WordLevel tokenizer of the right size

    config = LlamaConfig(vocab_size=32000, hidden_size=2048, intermediate_size=8192, num_hidden_layers=16,
                         num_attention_heads=16, num_key_value_heads=8, tie_word_embeddings=False,
                         dtype="bfloat16")
    with torch.device("meta"):
        model = LlamaForCausalLM(config)
    model = model.to_empty(device="cpu").to(torch.bfloat16)
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.copy_(torch.rand(p.shape, generator=gen) + 0.5 if "norm" in name
                    else torch.randn(p.shape, generator=gen) * 0.02)
    params = sum(p.numel() for p in model.parameters())
    model.save_pretrained(path, max_shard_size="500MB")
    tm.VOCAB = 32000
    tm.save_tokenizer(path)
    print(f"built {params / 1e9:.2f} B parameters -> {path}", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--workdir", default=None)
    ap.add_argument("--views", default="up")
    args = ap.parse_args()
    work = Path(args.workdir or tempfile.mkdtemp(prefix="neuroscope-mem-"))
    model = work / "llama-1b"
    if not (model / "config.json").exists():
        build(model)
    size = sum(f.stat().st_size for f in model.glob("*.safetensors"))
    shards = len(list(model.glob("*.safetensors")))
    cache = work / "cache"
    t = time.perf_counter()
    subprocess.run([sys.executable, "-m", "neuroscope", "decode", str(model), "--views", args.views, "--rebuild",
                    "--cache-dir", str(cache)], check=True)
    seconds = time.perf_counter() - t
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024  # Linux reports KiB
    print(json.dumps({"checkpoint_gb": round(size / 1e9, 2), "shards": shards, "views": args.views,
                      "peak_rss_gb": round(peak / 1e9, 2), "ratio": round(peak / size, 3),
                      "decode_seconds": round(seconds, 1), "target_ratio": 0.4}, indent=1))


if __name__ == "__main__":
    main()
