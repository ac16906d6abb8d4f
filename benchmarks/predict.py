"""Where `r3lm predict` spends its time, and what batching buys, on a model folder the workflow wrote.

Scores the same sequences once one at a time (batch 1) and once with the device's batch size, after a warm-up
call that loads every model, and times each step of the batched run: the motif scan and card, the Stage-I
rationale, the Stage-II regression. Prints one line per measurement and a JSON summary line with the speed-up
(batched over one-at-a-time sequences/s); both runs share the loaded models and write no files.

    python benchmarks/predict.py --model results/demo/runs/main/models/generated_cot --cell-type HepG2
                                 [--sequences results/demo/data/test.parquet] [--n 16] [--device cpu]
"""

from __future__ import annotations

import argparse
import json
import time
from collections import defaultdict
from collections.abc import Callable
from typing import Any

import pandas as pd

from r3lm.deploy.scorer import R3LM


def _timed(totals: dict[str, float], name: str, step: Callable[..., Any]) -> Callable[..., Any]:
    def run(*args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        result = step(*args, **kwargs)
        totals[name] += time.perf_counter() - started
        return result

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="a model folder (results/<dataset>/runs/<run>/models/<mode>)")
    parser.add_argument("--cell-type", required=True)
    parser.add_argument("--sequences", default="results/demo/data/test.parquet", help="a table with id, sequence")
    parser.add_argument("--n", type=int, default=16, help="sequences to score")
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()
    table = pd.read_parquet(args.sequences, columns=["id", "sequence"]).drop_duplicates("id").head(args.n)
    sequences = dict(zip(table["id"], table["sequence"]))
    model = R3LM.load(args.model, device=args.device)
    started = time.perf_counter()
    model.score(dict(list(sequences.items())[:1]), args.cell_type)
    print(f"load and first sequence: {time.perf_counter() - started:.1f} s")
    auto_batch = model.batch_size
    results = {}
    for label, batch in (("one at a time", 1), ("batched", auto_batch)):
        totals: dict[str, float] = defaultdict(float)
        model.batch_size = batch
        model._cards = _timed(totals, "scan and cards", type(model)._cards.__get__(model))
        model._rationales = _timed(totals, "rationales", type(model)._rationales.__get__(model))
        started = time.perf_counter()
        model.score(sequences, args.cell_type)
        seconds = time.perf_counter() - started
        steps = {name: round(value, 2) for name, value in totals.items()}
        steps["regression and the rest"] = round(seconds - sum(totals.values()), 2)
        results[label] = {"batch_size": batch, "seconds": round(seconds, 2),
                          "sequences_per_s": round(len(sequences) / seconds, 3), "steps_s": steps}
        print(f"{label} (batch {batch}): {len(sequences)} sequences in {seconds:.1f} s "
              f"({len(sequences) / seconds:.2f} sequences/s); {steps}")
    speedup = results["batched"]["sequences_per_s"] / results["one at a time"]["sequences_per_s"]
    print(json.dumps({"model": args.model, "mode": model.mode, "device": model.device, "sequences": len(sequences),
                      "runs": results, "batched_speedup": round(speedup, 2)}))


if __name__ == "__main__":
    main()
