"""`neuroscope circuit MODEL NEURON` once the graph is cached, as a whole command, against the bare start of the
same interpreter importing neuroscope, in the same run.

    python bench/circuit_lookup.py [--model demo] [--neuron L5:N100] [--runs 5]

Builds the decode and the graph first when the cache ($NEUROSCOPE_CACHE_DIR, else the platform cache dir) lacks
them (minutes for the demo), then times ``--runs`` fresh processes of each and prints the medians and their
ratio. The target is <= 0.3 s for the command on a 2-core CPU.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time


def timed(argv: list[str], runs: int) -> float:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="demo")
    ap.add_argument("--neuron", default="L5:N100")
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    command = [sys.executable, "-m", "neuroscope", "circuit", args.model, args.neuron]
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)  # decode and graph, when not cached yet
    floor = timed([sys.executable, "-c", "import neuroscope"], args.runs)
    lookup = timed(command, args.runs)
    print(
        f"[circuit lookup] {args.model} {args.neuron}, median of {args.runs} fresh processes: "
        f"command {lookup:.3f} s, bare `import neuroscope` {floor:.3f} s, ratio {lookup / floor:.2f}x "
        f"(target: command <= 0.3 s)"
    )


if __name__ == "__main__":
    main()
