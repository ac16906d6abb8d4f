"""Time de novo design with the demo CNN: ledidi (r3lm.design's default engine) against tangermeme's greedy
substitution, on the same oracle, target, objective and random starts, in one run.

ledidi designs `--n` sequences (default 100 x 200 bp, HepG2, MinGap); greedy substitution, which scores all
3 L single-base changes per step, designs the first `--greedy-n` of the same starts with at most
`--greedy-steps` substitutions each, and its time for `--n` is extrapolated (it designs one start at a time,
so its time grows linearly). Prints one line per engine (seconds, seconds per design, MinGap median and
range of the designs and of their starts, median edits) and a JSON line; the oracle scores every design
(activity units, both strands averaged, as `r3lm score` does).

    python benchmarks/design.py --model results/demo/runs/main/models/cnn [--target HepG2] [--n 100]
        [--iterations 200] [--samples 4] [--greedy-n 10] [--greedy-steps 30] [--threads 2] [--seed 0]
        [--truth config/config.yaml]   (the demo: each engine's designs scored by the simulation's truth too)
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from r3lm.design import GreedySettings, LedidiSettings, design, load_oracle


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="a CNN fast bundle (results/<dataset>/runs/<run>/models/cnn)")
    parser.add_argument("--target", default="HepG2")
    parser.add_argument("--objective", default="min_gap")
    parser.add_argument("--n", type=int, default=100, help="ledidi designs")
    parser.add_argument("--length", type=int, default=200)
    parser.add_argument("--iterations", type=int, default=LedidiSettings.iterations)
    parser.add_argument("--patience", type=int, default=LedidiSettings.patience)
    parser.add_argument("--samples", type=int, default=LedidiSettings.samples, help="Gumbel draws per start and step")
    parser.add_argument("--draws", type=int, default=LedidiSettings.draws)
    parser.add_argument("--greedy-n", type=int, default=10, help="greedy designs (the first of the same starts)")
    parser.add_argument("--greedy-steps", type=int, default=30, help="greedy substitutions per design, at most")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--truth", default=None,
                        help="a demo config (config/config.yaml): score every design by the simulation's truth too")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    oracle = load_oracle(args.model)
    common = {"objective": args.objective, "length": args.length, "seed": args.seed}
    ledidi = LedidiSettings(iterations=args.iterations, patience=args.patience, samples=args.samples, draws=args.draws)
    runs = {"ledidi": timed(lambda: design(oracle, args.target, n_designs=args.n, settings=ledidi, **common)),
            "greedy": timed(lambda: design(oracle, args.target, n_designs=args.greedy_n, engine="greedy",
                                           settings=GreedySettings(max_iter=args.greedy_steps), **common))}
    same_starts = runs["ledidi"]["table"].head(args.greedy_n)
    summary = {"model": args.model, "target": args.target, "objective": args.objective, "length": args.length,
               "threads": torch.get_num_threads(), "cpus": os.cpu_count(), "load_1min": os.getloadavg()[0],
               "ledidi_settings": vars(ledidi), "greedy_steps": args.greedy_steps}
    for name, run in runs.items():
        summary[name] = report(name, run, args.n)
        if args.truth:
            summary[name]["median_true_score"] = true_median(run["table"], args.truth, oracle.cell_types,
                                                             args.target, args.objective)
            print(f"{name}: median true {args.objective} {summary[name]['median_true_score']:.3f}")
    summary["ledidi"]["median_score_on_greedy_starts"] = round(float(same_starts["score"].median()), 3)
    print(f"ledidi on greedy's {len(same_starts)} starts: median {args.objective} "
          f"{summary['ledidi']['median_score_on_greedy_starts']:.3f}")
    print(json.dumps(summary))


def true_median(table: pd.DataFrame, config_path: str, cell_types: list[str], target: str, objective: str) -> float:
    """The designs' median objective under the demo simulation's noiseless truth."""
    import yaml

    from r3lm.config import validate_config
    from r3lm.data.truth import true_activity
    from r3lm.design.judge import activity_columns, objective_of

    demo = validate_config(yaml.safe_load(Path(config_path).read_text()))["dataset"]["demo"]
    truth = true_activity(table["sequence"].tolist(), demo)[cell_types].to_numpy()
    frame = pd.DataFrame(activity_columns("true", truth, cell_types))
    return round(float(pd.Series(objective_of(frame, "true", [target], cell_types, objective)).median()), 3)


def timed(run: Any) -> dict[str, Any]:
    started, cpu_started = time.perf_counter(), time.process_time()
    table = run()
    return {"table": table, "seconds": time.perf_counter() - started, "cpu_seconds": time.process_time() - cpu_started}


def report(name: str, run: dict[str, Any], n: int) -> dict[str, Any]:
    table: pd.DataFrame = run["table"]
    per_design = run["seconds"] / len(table)
    line = {"designs": len(table), "seconds": round(run["seconds"], 1), "cpu_seconds": round(run["cpu_seconds"], 1),
            "seconds_per_design": round(per_design, 2), f"seconds_for_{n}": round(per_design * n, 1),
            "median_score": round(float(table["score"].median()), 3),
            "score_range": [round(float(table["score"].min()), 3), round(float(table["score"].max()), 3)],
            "median_start_score": round(float(table["start_score"].median()), 3),
            "median_edits": float(table["edits"].median())}
    print(f"{name}: {line['designs']} designs in {line['seconds']} s ({line['seconds_per_design']} s each, "
          f"{line[f'seconds_for_{n}']} s for {n}); median score {line['median_score']} (range {line['score_range']}, "
          f"starts {line['median_start_score']}), median edits {line['median_edits']}")
    return line


if __name__ == "__main__":
    main()
