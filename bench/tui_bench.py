"""The browser on a big cache: first paint (launch -> tree on screen, through tmux) and the filter's query
time (the worker's Store.search with the app's settings), per match mode. Not a timed test.

    python bench/tui_bench.py MODEL --cache-dir DIR [--queries dog,the,d]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import time


def first_paint(model: str, cache_dir: str, runs: int = 3) -> list[float]:
    if not shutil.which("tmux"):
        sys.exit("tmux is needed for the first-paint measurement")
    times = []
    for i in range(runs):
        session = f"nsbench{i}"
        cmd = f"{sys.executable} -m neuroscope tui {model} --cache-dir {cache_dir}"
        start = time.perf_counter()
        subprocess.run(["tmux", "new-session", "-d", "-s", session, "-x", "100", "-y", "30", cmd], check=True)
        try:
            while time.perf_counter() - start < 30:
                screen = subprocess.run(
                    ["tmux", "capture-pane", "-p", "-t", session], capture_output=True, text=True
                ).stdout
                if "L0:N0" in screen:
                    times.append(time.perf_counter() - start)
                    break
                time.sleep(0.01)
        finally:
            subprocess.run(["tmux", "kill-session", "-t", session])
    return times


def filter_times(model: str, cache_dir: str, queries: list[str]) -> None:
    from neuroscope.cache.catalog import cache_path
    from neuroscope.cache.store import Store
    from neuroscope.core.loading.sources import resolve
    from neuroscope.tui.widgets.filter import MAX_RANK, RESULT_LIMIT

    source = resolve(model)
    with Store(cache_path(source.name, source.source, source.fingerprint, cache_dir), readonly=True) as store:
        print(f"filter query ({store.layers} x {store.neurons} neurons, top {MAX_RANK}, limit {RESULT_LIMIT}):")
        for match in ("word", "exact", "prefix", "contains"):
            for q in queries:
                runs = []
                for _ in range(5):
                    t = time.perf_counter()
                    hits = store.search(q, match=match, max_rank=min(MAX_RANK, store.top_k), limit=RESULT_LIMIT)
                    runs.append(time.perf_counter() - t)
                print(f"  {match:<8} {q!r:<8} {statistics.median(runs) * 1000:7.1f} ms  ({len(hits)} hits)")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("--cache-dir", required=True)
    ap.add_argument("--queries", default="dog,t12,t")
    args = ap.parse_args()
    paint = first_paint(args.model, args.cache_dir)
    print(
        f"first paint: median {statistics.median(paint):.2f} s over {len(paint)} launches "
        f"({', '.join(f'{t:.2f}' for t in paint)})"
    )
    filter_times(args.model, args.cache_dir, args.queries.split(","))


if __name__ == "__main__":
    main()
