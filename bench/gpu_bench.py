"""Decode speed against the bare bf16 matmul floor, on a GPU (issue 6) or, at small shapes, on the CPU.

Builds a random Llama with real shapes (default on CUDA: Llama-3.1-8B's, 32 x 14,336 neurons, hidden 4,096,
vocab 128,256) on the device itself, saves the tensors a decode reads (MLP, final norm, LM head; attention
is left out, the config is the full model's) as sharded bf16 safetensors with a tokenizer, then measures
in the same run:

- floor: the bare bf16 matmuls of every neuron vector of a view against the LM head, in the decoder's
  own chunk size (nothing else: no norm, no softmax, no top-k, no reads, no writes);
- engine: ``Decoder.run`` over the same vectors already on the device, results discarded (the default
  engine, fused Triton kernels on a GPU, and the classic torch passes for comparison);
- end to end: the real pipeline (``ensure_decoded``: streamed checkpoint reads, next-unit prefetch,
  both directions, writes to a fresh SQLite cache) for up, gate and down, each timed on its own.

The target (issue 6): end-to-end up <= 1.15 x floor. ``--profile`` adds torch.profiler's table for one
unit of the engine, to see where the time above the floor goes.

    python bench/gpu_bench.py                      # CUDA: Llama-3.1-8B shapes
    python bench/gpu_bench.py --shapes tiny        # anywhere, seconds (checks the bench itself)
    python bench/gpu_bench.py --layers 4 --profile
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
SHAPES = {  # hidden, intermediate, layers, vocab, heads, kv heads
    "llama-3.1-8b": (4096, 14336, 32, 128256, 32, 8),
    "llama-3.1-70b": (8192, 28672, 80, 128256, 64, 8),
    "smollm2-135m": (576, 1536, 30, 49152, 9, 3),
    "tiny": (128, 1024, 4, 8192, 4, 2),
}


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def build(folder: Path, shape: str, layers: int | None, device: torch.device) -> None:
    """A decode-only checkpoint: one shard per layer (its three MLP matrices), one for norm + head."""
    from safetensors.torch import save_file
    from transformers import LlamaConfig

    sys.path.insert(0, str(ROOT))
    import tests.models as tm  # a WordLevel tokenizer of any size

    hidden, inter, n_layers, vocab, heads, kv = SHAPES[shape]
    n_layers = layers or n_layers
    config = LlamaConfig(
        vocab_size=vocab,
        hidden_size=hidden,
        intermediate_size=inter,
        num_hidden_layers=n_layers,
        num_attention_heads=heads,
        num_key_value_heads=kv,
        rms_norm_eps=1e-5,
        tie_word_embeddings=False,
        dtype="bfloat16",
    )
    folder.mkdir(parents=True, exist_ok=True)
    gen = torch.Generator(device=device).manual_seed(0)

    def rand(*shape_, scale=0.02):
        return (torch.randn(shape_, generator=gen, device=device) * scale).to(torch.bfloat16).cpu()

    weight_map = {}
    for layer in range(n_layers):
        name = f"layer-{layer:03d}.safetensors"
        p = f"model.layers.{layer}.mlp"
        tensors = {
            f"{p}.gate_proj.weight": rand(inter, hidden),
            f"{p}.up_proj.weight": rand(inter, hidden),
            f"{p}.down_proj.weight": rand(hidden, inter),
        }
        save_file(tensors, folder / name, metadata={"format": "pt"})
        weight_map.update(dict.fromkeys(tensors, name))
    norm = (1 + torch.randn(hidden, generator=gen, device=device) * 0.1).to(torch.bfloat16).cpu()
    tensors = {"model.norm.weight": norm, "lm_head.weight": rand(vocab, hidden)}
    save_file(tensors, folder / "head.safetensors", metadata={"format": "pt"})
    weight_map.update(dict.fromkeys(tensors, "head.safetensors"))
    (folder / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    config.save_pretrained(folder)
    tm.VOCAB = vocab
    tm.save_tokenizer(folder)


def floor_seconds(vectors: list[torch.Tensor], head: torch.Tensor, rows: int, device: torch.device) -> float:
    """Bare bf16 matmuls of every vector against the head, ``rows`` at a time; best of two passes."""
    w = head.to(device, torch.bfloat16)
    xs = [v.to(device, torch.bfloat16) for v in vectors]
    out = torch.empty((min(rows, xs[0].shape[0]), w.shape[0]), dtype=torch.bfloat16, device=device)
    best = float("inf")
    with torch.inference_mode():
        for _ in range(2):
            sync(device)
            t = time.perf_counter()
            for x in xs:
                for s in range(0, x.shape[0], rows):
                    part = x[s : s + rows]
                    torch.mm(part, w.t(), out=out[: part.shape[0]])
            sync(device)
            best = min(best, time.perf_counter() - t)
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--shapes", choices=sorted(SHAPES), default=None, help="default: llama-3.1-8b on CUDA, tiny on the CPU"
    )
    ap.add_argument("--layers", type=int, default=None, help="fewer layers than the model has (faster)")
    ap.add_argument("--views", default="up,gate,down")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--workdir", default=None)
    ap.add_argument("--profile", action="store_true", help="torch.profiler table for one unit of the engine")
    args = ap.parse_args()

    from neuroscope.core.decode import Decoder, DecodeRecipe, pick_device
    from neuroscope.core.loading.sources import resolve
    from neuroscope.core.loading.streaming import load_streaming
    from neuroscope.core.pipeline import ensure_decoded

    device = pick_device(args.device)
    shape = args.shapes or ("llama-3.1-8b" if device.type == "cuda" else "tiny")
    views = args.views.split(",")
    work = Path(args.workdir or tempfile.mkdtemp(prefix="neuroscope-gpu-bench-"))
    folder = work / shape
    gpu = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or platform.machine()
    print(
        f"neuroscope gpu bench, {datetime.date.today()}, {gpu}, torch {torch.__version__}, shapes {shape}", flush=True
    )
    if not (folder / "config.json").exists():
        t = time.perf_counter()
        build(folder, shape, args.layers, device)
        print(f"built {folder} in {time.perf_counter() - t:.0f} s", flush=True)

    source = resolve(str(folder))
    lm = load_streaming(source)
    adapter = lm.adapter
    decoder = Decoder(adapter, DecodeRecipe(device=str(device), dtype="bfloat16"))
    classic = (
        None
        if decoder.engine == "classic"
        else Decoder(adapter, DecodeRecipe(device=str(device), dtype="bfloat16", engine="classic"))
    )
    print(
        f"{adapter.num_layers} layers x {adapter.neurons:,} neurons, hidden {adapter.hidden:,}, "
        f"vocab {adapter.vocab:,}; {decoder.describe()}, chunk {decoder.rows:,} rows",
        flush=True,
    )

    report = {
        "date": str(datetime.date.today()),
        "device": gpu,
        "torch": torch.__version__,
        "shapes": shape,
        "engine": decoder.describe(),
        "layers": adapter.num_layers,
        "neurons_per_layer": adapter.neurons,
        "views": {},
    }
    for view in views:
        vectors = [adapter.vectors(layer, view).to(device) for layer in range(adapter.num_layers)]
        floor = floor_seconds(vectors, adapter.head.weight, decoder.rows, device)
        units = [(layer, view) for layer in range(adapter.num_layers)]
        engine = engine_seconds(decoder, units, vectors, device)
        classic_s = engine_seconds(classic, units, vectors, device) if classic else None
        if args.profile and view == views[0]:
            profile(decoder, vectors[0], view, device)
        del vectors
        if device.type == "cuda":
            torch.cuda.empty_cache()
        cache = Path(tempfile.mkdtemp(prefix="cache-", dir=work))
        t = time.perf_counter()
        ensure_decoded(source, DecodeRecipe(views=[view], device=str(device), dtype="bfloat16"), cache_dir=cache)
        total = time.perf_counter() - t
        row = {
            "floor_s": round(floor, 3),
            "engine_s": round(engine, 3),
            "end_to_end_s": round(total, 3),
            "engine_x_floor": round(engine / floor, 3),
            "end_to_end_x_floor": round(total / floor, 3),
        }
        extra = ""
        if classic_s is not None:
            row["classic_engine_s"] = round(classic_s, 3)
            extra = f"; classic torch passes {classic_s:.2f} s (x{classic_s / floor:.2f})"
        report["views"][view] = row
        print(
            f"[{view}] floor {floor:.2f} s; engine {engine:.2f} s (x{engine / floor:.2f}); "
            f"end to end {total:.2f} s (x{total / floor:.2f}){extra}",
            flush=True,
        )
    print(json.dumps(report, indent=1))


def engine_seconds(decoder, units, vectors: list[torch.Tensor], device: torch.device) -> float:
    """Decoder.run over vectors already on the device (no reads, results dropped)."""
    decoder.fetch = lambda layer, _view: vectors[layer]
    try:
        decoder.decode_unit(*units[0], vectors=vectors[0])  # warm: kernels compiled, buffers allocated
        sync(device)
        t = time.perf_counter()
        decoder.run(units, lambda *_: None)
        sync(device)
        return time.perf_counter() - t
    finally:
        del decoder.fetch
        decoder.scorer.release()
        if device.type == "cuda":
            torch.cuda.empty_cache()


def profile(decoder, vectors: torch.Tensor, view: str, device: torch.device) -> None:
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    decoder.decode_unit(0, view, vectors=vectors)  # warm
    with torch_profile(activities=activities) as prof:
        decoder.decode_unit(0, view, vectors=vectors)
        sync(device)
    key = "self_cuda_time_total" if device.type == "cuda" else "self_cpu_time_total"
    print(prof.key_averages().table(sort_by=key, row_limit=15), flush=True)


if __name__ == "__main__":
    main()
