"""`r3lm predict`'s speed at the margin, beside the code before a change, in one run.

At the margin: the sequences a loaded model scores per second once its models are loaded, (64 - 4) over the
time of 64 sequences less the time of 4, after a warm-up call that loads every model (and starts vLLM), so a
design loop's cost per candidate is what is measured. Each tree (this checkout and, with --reference, another
checkout such as a `git worktree` of the commit before a change) runs in its own process on the same model
and sequences; the reference runs first. Prints one JSON line per tree and a summary line with the ratio.

    python benchmarks/predict.py --model results/demo/runs/main/models/generated_cot --cell-type HepG2
                                 [--reference ../r3lm-before] [--backend auto] [--n 64]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parents[1]


def measure(args: argparse.Namespace) -> dict[str, object]:
    """In this process: the warm-up, 4 sequences, then n."""
    import pandas as pd

    from r3lm.deploy.scorer import R3LM

    table = pd.read_parquet(args.sequences, columns=["id", "sequence"]).drop_duplicates("id")
    items = list(zip(table["id"], table["sequence"]))
    if len(items) < args.n + 5:
        sys.exit(f"{args.sequences} holds {len(items)} sequences; --n {args.n} needs {args.n + 5}")
    options = {} if args.backend is None else {"backend": args.backend}
    model = R3LM.load(args.model, device=args.device, **options)
    timings = {}
    for name, chunk in (("load_and_first", items[:1]), ("small", items[1:5]), ("large", items[5:5 + args.n])):
        started = time.perf_counter()
        model.score(dict(chunk), args.cell_type)
        timings[name] = time.perf_counter() - started
    return {"load_and_first_s": round(timings["load_and_first"], 1), "4_sequences_s": round(timings["small"], 1),
            f"{args.n}_sequences_s": round(timings["large"], 1),
            "margin_sequences_per_s": round((args.n - 4) / (timings["large"] - timings["small"]), 3)}


def run_tree(tree: Path, args: argparse.Namespace, backend: str | None) -> dict[str, object]:
    """This script's measurement with `tree`'s r3lm, in a fresh process."""
    command = [sys.executable, str(Path(__file__).resolve()), "--measure", "--model", str(Path(args.model).resolve()),
               "--cell-type", args.cell_type, "--sequences", str(Path(args.sequences).resolve()), "--n", str(args.n),
               "--device", args.device, *(["--backend", backend] if backend else [])]
    done = subprocess.run(command, cwd=tree, env={**os.environ, "PYTHONPATH": str(tree)}, capture_output=True,
                          text=True, check=False)
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode or not lines:
        sys.exit(f"the measurement in {tree} failed:\n{done.stderr[-3000:]}")
    return {"tree": str(tree), **json.loads(lines[-1])}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="a model folder (results/<dataset>/runs/<run>/models/<mode>)")
    parser.add_argument("--cell-type", required=True)
    parser.add_argument("--sequences", default="results/demo/data/test.parquet", help="a table with id, sequence")
    parser.add_argument("--n", type=int, default=64, help="sequences of the large call")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--backend", default=None, help="this tree's rationale backend (auto, hf, vllm; default auto)")
    parser.add_argument("--reference", type=Path, default=None, help="a checkout of the code before the change")
    parser.add_argument("--measure", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        print(json.dumps(measure(args)))
        return
    results = {}
    if args.reference is not None:  # code before the change may predate --backend: its own default
        results["reference"] = run_tree(args.reference.resolve(), args, None)
        print(json.dumps(results["reference"]))
    backend = args.backend or "auto"
    results["this tree"] = run_tree(HERE, args, backend)
    print(json.dumps({**results["this tree"], "backend": backend}))
    if "reference" in results:
        ratio = results["this tree"]["margin_sequences_per_s"] / results["reference"]["margin_sequences_per_s"]
        print(json.dumps({"margin_speedup": round(ratio, 2), "goal_sequences_per_s": 0.7}))


if __name__ == "__main__":
    main()
