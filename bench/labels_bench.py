"""Concept labels at Llama-3.1-8B's neuron count (32 layers x 14,336, all views, both directions; the skinny
model of bench/scale_bench.py): the labels of the whole cache against its decode in the same run, export
throughput, and `top` / `concept` as whole commands (fresh processes, torch never imported).

    python bench/labels_bench.py [--workdir DIR]
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from scale_bench import build

NEURON_DIRECTIONS = 32 * 14336 * 3 * 2
TORCH_FREE = (
    "import sys, runpy; sys.argv = ['neuroscope', *sys.argv[1:]]\n"
    "try:\n    runpy.run_module('neuroscope', run_name='__main__')\n"
    "except SystemExit:\n    pass\n"
    "assert 'torch' not in sys.modules, 'torch was imported'\n"
)


def whole(cmd: list[str], runs: int = 5) -> tuple[float, float]:
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        subprocess.run(cmd, check=True, capture_output=True)
        times.append(time.perf_counter() - t)
    return statistics.median(times), max(times)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--workdir", default=None)
    args = ap.parse_args()
    work = Path(args.workdir or tempfile.mkdtemp(prefix="neuroscope-labels-"))
    model, cache = work / "llama8b-skinny", work / "cache"
    if not (model / "config.json").exists():
        build(model)
    shutil.rmtree(cache, ignore_errors=True)
    cli = [sys.executable, "-m", "neuroscope"]
    t = time.perf_counter()
    subprocess.run([*cli, "decode", str(model), "--cache-dir", str(cache)], check=True)
    decode_s = time.perf_counter() - t

    from neuroscope.cache.store import Store

    [path] = cache.glob("*.sqlite")
    with Store(path) as store:  # the one-time upgrade path: label every unit again
        for table in ("labels", "concept_index"):
            store.conn.execute(f"DELETE FROM {table}")
        store.conn.commit()
        t = time.perf_counter()
        units = store.label_missing()
        labels_s = time.perf_counter() - t
    out = {
        "machine": f"{platform.processor() or platform.machine()}, cores={__import__('os').cpu_count()}",
        "neuron_directions": NEURON_DIRECTIONS,
        "decode_seconds": round(decode_s, 1),
        "labels_seconds": round(labels_s, 2),
        "labelled_units": units,
        "labels_over_decode": round(labels_s / decode_s, 4),
    }
    for fmt in ("jsonl", "csv", "parquet"):
        target = work / f"export.{fmt}"
        t = time.perf_counter()
        subprocess.run(
            [*cli, "export", str(model), "--format", fmt, "--out", str(target), "--cache-dir", str(cache)], check=True
        )
        seconds = time.perf_counter() - t
        out[f"export_{fmt}_per_s"] = round(NEURON_DIRECTIONS / seconds)
        out[f"export_{fmt}_mb"] = round(target.stat().st_size / 2**20, 1)
    for name, argv in (
        ("top", ["top", str(model), "--json"]),
        ("top_copy", ["top", str(model), "--by", "copy"]),
        ("concept", ["concept", str(model), "dog", "--json"]),
    ):
        subprocess.run(
            [sys.executable, "-c", TORCH_FREE, *argv, "--cache-dir", str(cache)], check=True, capture_output=True
        )
        median, slowest = whole([*cli, *argv, "--cache-dir", str(cache)])
        out[f"{name}_seconds_median"], out[f"{name}_seconds_max"] = round(median, 3), round(slowest, 3)
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
