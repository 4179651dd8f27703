"""Fuzz every subcommand with 10,000 Hypothesis-generated argument vectors (tests/fuzzing.py) against
decoded tiny models, and count what a user must never see: tracebacks, exit codes other than 0 and 2,
error output that is not one line, and a cache folder changed by a command that does not write by design.

    python bench/fuzz.py [--cases 10000] [--seed 0]

Prints the counts per subcommand and in total; every count of problems must be 0.
"""

from __future__ import annotations

import argparse
import collections
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
COMMANDS = [
    "decode",
    "show",
    "search",
    "models",
    "clamp",
    "compare",
    "tui",
    "trace",
    "circuit",
    "examples",
    "agreement",
    "top",
    "concept",
    "export",
]
SHARE = {
    "decode": 1,
    "show": 2,
    "search": 2,
    "models": 0.5,
    "clamp": 2,
    "compare": 1,
    "tui": 1.5,
    "trace": 1,
    "circuit": 1,
    "examples": 1,
    "agreement": 0.5,
    "top": 1,
    "concept": 0.5,
    "export": 1,
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    from hypothesis import HealthCheck, Phase, given, seed, settings

    from neuroscope.core.loading.sources import resolve
    from neuroscope.core.options import DecodeRecipe
    from neuroscope.core.pipeline import ensure_decoded
    from tests.fuzzing import argv, run, snapshot, writes_by_design
    from tests.models import build

    root = Path(tempfile.mkdtemp(prefix="neuroscope-fuzz-"))
    cache = root / "cache"
    dirs = [build(kind, root / kind) for kind in ("llama", "gpt2", "neox")]
    for folder in dirs:
        ensure_decoded(resolve(str(folder)), DecodeRecipe(device="cpu", dtype="float32"), cache_dir=cache)
    (root / "not-a-model").mkdir()
    (root / "notes.txt").write_text("hello")
    (root / "notes.bin").write_bytes(b"\0\1\2" * 50)
    (root / "empty.txt").write_text("")
    models = [str(d) for d in dirs] + [str(root / "not-a-model"), str(root / "notes.txt"), str(root / "nope")]
    os.environ.update(NEUROSCOPE_CACHE_DIR=str(cache), NEUROSCOPE_DATA_DIR=str(root / "data"), HF_HUB_OFFLINE="1")
    os.chdir(root)

    total_share = sum(SHARE.values())
    counts = {c: collections.Counter() for c in COMMANDS}
    examples: list[str] = []
    started = time.perf_counter()

    def fuzz(command: str, n: int):
        @seed(args.seed)
        @settings(
            max_examples=n,
            deadline=None,
            database=None,
            phases=[Phase.generate],
            suppress_health_check=list(HealthCheck),
        )
        @given(case=argv(command, models, str(root)))
        def one(case):
            before = snapshot(cache)
            outcome = run(case)
            tally = counts[command]
            tally["cases"] += 1
            tally[f"exit {outcome.code}"] += 1
            problems = outcome.problems()
            if outcome.traceback is not None or "Traceback" in outcome.stderr:
                tally["tracebacks"] += 1
            if not writes_by_design(outcome) and snapshot(cache) != before:
                problems.append("the cache folder changed")
                tally["cache changed"] += 1
            if problems:
                tally["problems"] += 1
                if len(examples) < 5:
                    examples.append(f"neuroscope {' '.join(map(repr, case))}: {problems[0][:300]}")

        return one

    for command in COMMANDS:
        fuzz(command, round(args.cases * SHARE[command] / total_share))()
        tally = counts[command]
        print(
            f"{command:<8} {tally['cases']:>6,} cases  exit 0: {tally['exit 0']:>5,}  exit 2: {tally['exit 2']:>5,}  "
            f"tracebacks: {tally['tracebacks']}  problems: {tally['problems']}",
            flush=True,
        )
    total = sum(counts.values(), collections.Counter())
    print(
        f"{'total':<8} {total['cases']:>6,} cases  exit 0: {total['exit 0']:>5,}  exit 2: {total['exit 2']:>5,}  "
        f"tracebacks: {total['tracebacks']}  problems: {total['problems']}  ({time.perf_counter() - started:.0f} s)"
    )
    for line in examples:
        print("  e.g.", line)
    return 1 if total["problems"] else 0


if __name__ == "__main__":
    raise SystemExit(main())
