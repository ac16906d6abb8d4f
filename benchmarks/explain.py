"""`r3lm explain` on one sequence as a user runs it: the whole command's wall time, start-up and model loading
included, for this checkout and (with --reference) a checkout of the code before a change, in one run.

Each tree runs the command --repeats times, alternating with the other, in a fresh process from its own
folder; prints the median and every time, and how often stderr held "terminate called" (a thread torn down
at exit, which a user reads as a crash). The goal is 10 s.

    python benchmarks/explain.py --model results/demo/runs/main/models/generated_cot --cell-type K562
                                 [--reference ../r3lm-before] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd

HERE = Path(__file__).resolve().parents[1]


def explain_once(tree: Path, model: Path, cell_type: str, sequence: str) -> tuple[float, bool]:
    """Wall seconds of one explain, and whether stderr said "terminate called"."""
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "r3lm", "explain", "--model", str(model), "--cell-type", cell_type,
                           "--sequence", sequence, "--device", "cpu"], cwd=tree,
                          env={**os.environ, "PYTHONPATH": str(tree)}, check=True, capture_output=True, text=True)
    return time.perf_counter() - started, "terminate called" in done.stderr


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, type=Path)
    parser.add_argument("--cell-type", required=True)
    parser.add_argument("--sequences", default="results/demo/data/test.parquet", help="its first sequence is used")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--reference", type=Path, default=None, help="a checkout of the code before the change")
    args = parser.parse_args()
    sequence = str(pd.read_parquet(args.sequences, columns=["sequence"])["sequence"].iloc[0])
    trees = {"this tree": HERE, **({"reference": args.reference.resolve()} if args.reference else {})}
    runs: dict[str, list[tuple[float, bool]]] = {name: [] for name in trees}
    for _ in range(args.repeats):
        for name, tree in trees.items():
            runs[name].append(explain_once(tree, args.model.resolve(), args.cell_type, sequence))
    for name, times in runs.items():
        print(json.dumps({"tree": name, "median_s": round(statistics.median(t for t, _ in times), 1),
                          "runs_s": [round(t, 1) for t, _ in times], "terminate_called": sum(f for _, f in times),
                          "goal_s": 10}))


if __name__ == "__main__":
    main()
