"""What `r3lm mutagenesis` saves with an LLM bundle by writing a rationale only for mutants whose card changes.

On one sequence (default: sim003889, the README's 200-bp demo element) it counts how many of the 3 L single-base
mutants change the card (one motif scan each: seconds), then scores mutants twice on the same loaded models: as
the command does (the wild type's rationale reused where a mutant's card shows the same motifs), and with every
mutant's rationale written (`reuse=False`). Both runs predict every mutant (the regressor reads the card's DNA
line), so what differs is the rationales. A warm-up call loads the models first, so neither run pays for loading.
Prints one line per step and a JSON line with the ratios, of wall-clock and of CPU time (the latter holds where
other jobs share the cores).

Rescoring all 600 mutants of a 200-bp element takes about an hour on 2 CPU cores, so `--region A-B` (1-based,
inclusive) times the mutants of those positions alone, each still the whole sequence with its one base changed;
the card count always covers every position. `--max-new-tokens` shortens the rationales (the bundle's own length
makes rescoring costlier still), `--threads` sets torch's CPU threads (one is faster where other jobs share the
cores).

    python benchmarks/mutagenesis.py --model results/demo/runs/main/models/generated_cot [--cell-type HepG2]
                                     [--sequence ACGT...] [--region 181-200] [--max-new-tokens 48]
                                     [--device cpu] [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from typing import Any

import torch

from r3lm.deploy.mutagenesis import (
    RESCORED,
    card_changes,
    llm_predictions,
    substitutions,
)
from r3lm.deploy.scorer import R3LM

STEPS = ("write_rationales", "predict_rows")
SIM003889 = ("TTGTTTATATTGATTAGTATGACCTTCGGACTAAGGCATGTGGCATCGGCCGAATGACTCATGTTAAGAGGTGCCATCCCGTATTATCGGATATACAGG"
             "AAGGCCTTGTTAATTGGGCAGTAAGGAATCCCCGCCCCATACACTCGAAGCCAAAATGACTCCATAGGCAGGTGCGGCACAGTCATCTATGCAATCGCAAA")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="an LLM bundle (results/<dataset>/runs/<run>/models/<mode>)")
    parser.add_argument("--cell-type", default="HepG2")
    parser.add_argument("--sequence", default=SIM003889)
    parser.add_argument("--region", default=None, help="A-B: time the runs on these bases only (1-based)")
    parser.add_argument("--max-new-tokens", type=int, default=None, help="default: the bundle's")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    model = R3LM.load(args.model, device=args.device)
    if args.max_new_tokens:
        model.manifest["generation"]["max_new_tokens"] = args.max_new_tokens  # read when the writer loads
    started = time.perf_counter()
    model.score({"wild_type": args.sequence}, args.cell_type)
    print(f"load and wild type: {time.perf_counter() - started:.1f} s")
    mutants = substitutions(args.sequence)
    sequences = [args.sequence, *mutants["sequence"]]
    started = time.perf_counter()
    _, changed = card_changes(model, sequences, [args.cell_type])
    card_seconds = time.perf_counter() - started
    print(f"cards of {len(mutants)} mutants of {len(args.sequence)} bp in {card_seconds:.1f} s: {sum(changed)} change")
    first, last = (int(bound) for bound in args.region.split("-")) if args.region else (1, len(args.sequence))
    timed = mutants["position"].between(first, last).to_numpy()
    runs = {}
    for label, reuse in (("reuse", True), ("rescore all", False)):
        steps = time_steps(model)
        started, cpu_started = time.perf_counter(), time.process_time()
        _, marks = llm_predictions(model, [args.sequence, *mutants.loc[timed, "sequence"]], [args.cell_type],
                                   reuse=reuse, progress=False)
        seconds, cpu_seconds = time.perf_counter() - started, time.process_time() - cpu_started
        runs[label] = {"seconds": round(seconds, 1), "cpu_seconds": round(cpu_seconds, 1),
                       "rationales": 1 + marks.count(RESCORED),
                       "steps_s": {name: round(value, 1) for name, value in steps.items()}}
        print(f"{label}: {int(timed.sum())} mutants at {first}-{last}, {runs[label]['rationales']} rationales, "
              f"{seconds:.1f} s ({cpu_seconds:.1f} s CPU); {runs[label]['steps_s']}")
    print(json.dumps({
        "model": args.model, "mode": model.mode, "device": model.device, "threads": torch.get_num_threads(),
        "max_new_tokens": model.manifest["generation"]["max_new_tokens"], "length": len(args.sequence),
        "mutants": len(mutants), "cards_changed": sum(changed), "changed_ratio": round(sum(changed) / len(mutants), 3),
        "card_seconds": round(card_seconds, 2), "timed_positions": [first, last], "runs": runs,
        "timed_changed_ratio": round((runs["reuse"]["rationales"] - 1) / int(timed.sum()), 3),
        "time_ratio": round(runs["reuse"]["seconds"] / runs["rescore all"]["seconds"], 3),
        "cpu_time_ratio": round(runs["reuse"]["cpu_seconds"] / runs["rescore all"]["cpu_seconds"], 3)}))


def time_steps(model: R3LM) -> dict[str, float]:
    """Seconds spent writing rationales and predicting, filled in as the model's steps run."""
    totals = dict.fromkeys(STEPS, 0.0)
    for name in STEPS:
        step = getattr(type(model), name).__get__(model)

        def timed(*args: Any, _step: Callable[..., Any] = step, _name: str = name, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return _step(*args, **kwargs)
            finally:
                totals[_name] += time.perf_counter() - started

        setattr(model, name, timed)
    return totals


if __name__ == "__main__":
    main()
