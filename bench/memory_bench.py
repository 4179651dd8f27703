"""Peak memory of a streamed decode: a randomly initialised Llama with 1B+ parameters, saved as sharded
bf16 safetensors, decoded by `neuroscope decode` in a child process; prints its peak RSS against the
checkpoint's size (target: under 40%).

    python bench/memory_bench.py [--workdir DIR] [--views up]
"""

from __future__ import annotations

import argparse
import json
import os
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

    config = LlamaConfig(
        vocab_size=32000,
        hidden_size=2048,
        intermediate_size=8192,
        num_hidden_layers=16,
        num_attention_heads=16,
        num_key_value_heads=8,
        tie_word_embeddings=False,
        dtype="bfloat16",
    )
    with torch.device("meta"):
        model = LlamaForCausalLM(config)
    model = model.to_empty(device="cpu").to(torch.bfloat16)
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.copy_(
                torch.rand(p.shape, generator=gen) + 0.5
                if "norm" in name
                else torch.randn(p.shape, generator=gen) * 0.02
            )
    params = sum(p.numel() for p in model.parameters())
    model.save_pretrained(path, max_shard_size="500MB")
    tm.VOCAB = 32000
    tm.save_tokenizer(path)
    print(f"built {params / 1e9:.2f} B parameters -> {path}", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--workdir", default=None)
    ap.add_argument("--views", default="up")
    ap.add_argument("--build-only", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    work = Path(args.workdir or tempfile.mkdtemp(prefix="neuroscope-mem-"))
    model = work / "llama-1b"
    if args.build_only:
        build(model)
        return
    if not (model / "config.json").exists():
        # in a process of its own: a decode child forked from a process holding the built model would
        # report that process's memory as its own peak
        subprocess.run([sys.executable, __file__, "--build-only", "--workdir", str(work)], check=True)
    size = sum(f.stat().st_size for f in model.glob("*.safetensors"))
    shards = len(list(model.glob("*.safetensors")))
    cache = work / "cache"
    t = time.perf_counter()
    child = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "neuroscope",
            "decode",
            str(model),
            "--views",
            args.views,
            "--rebuild",
            "--cache-dir",
            str(cache),
        ]
    )
    # this child's own rusage (RUSAGE_CHILDREN would take the largest of all children, the builder's too)
    _, status, usage = os.wait4(child.pid, 0)
    seconds = time.perf_counter() - t
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit("decode failed")
    peak = usage.ru_maxrss * 1024  # Linux reports KiB
    print(
        json.dumps(
            {
                "checkpoint_gb": round(size / 1e9, 2),
                "shards": shards,
                "views": args.views,
                "peak_rss_gb": round(peak / 1e9, 2),
                "ratio": round(peak / size, 3),
                "decode_seconds": round(seconds, 1),
                "target_ratio": 0.4,
            },
            indent=1,
        )
    )


if __name__ == "__main__":
    main()
