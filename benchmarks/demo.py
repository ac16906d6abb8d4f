"""The demo from an empty results folder, as a user runs it (`snakemake --cores 2`), timed as a whole and by
rule, against the issue's goal of 1,200 s.

The run writes results/<--name>/ (default demo_bench, so results/demo stays as it is) with the demo config
otherwise unchanged, from scratch: an existing folder of that name is an error, not a resume. Afterwards each
rule's job time is read from Snakemake's metadata (.snakemake/metadata: start and end of every output), summed
per rule, with the wall time of the whole run. Prints one line per rule, slowest first, and a JSON summary.

    python benchmarks/demo.py [--name demo_bench] [--cores 2]
"""

from __future__ import annotations

import argparse
import base64
import json
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

HERE = Path(__file__).resolve().parents[1]
GOAL_S = 1200


def rule_times(results: str) -> dict[str, float]:
    """Seconds per rule: each job once (a job's outputs record its start and end, to a few microseconds),
    summed over the rule's jobs."""
    jobs: dict[tuple[str, int, int], float] = {}
    for path in (HERE / ".snakemake" / "metadata").iterdir():
        try:
            output = base64.b64decode(path.name + "=" * (-len(path.name) % 4)).decode()
        except (ValueError, UnicodeDecodeError):
            continue
        if output.startswith(results + "/"):
            record = json.loads(path.read_text())
            start, end = record["starttime"], record["endtime"]
            jobs[(record["rule"], round(start), round(end))] = end - start
    totals: dict[str, float] = defaultdict(float)
    for (rule, _, _), seconds in jobs.items():
        totals[rule] += seconds
    return dict(sorted(totals.items(), key=lambda item: -item[1]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--name", default="demo_bench", help="the dataset name, so results/<name>/")
    parser.add_argument("--cores", type=int, default=2)
    args = parser.parse_args()
    results = f"results/{args.name}"
    if (HERE / results).exists():
        sys.exit(f"{results} exists: the benchmark starts from an empty folder (remove it, or pass --name)")
    started = time.perf_counter()
    subprocess.run(["snakemake", "--cores", str(args.cores), "--config", f"dataset={{'name': '{args.name}'}}"],
                   cwd=HERE, check=True)
    wall = time.perf_counter() - started
    per_rule = rule_times(results)
    for rule, seconds in per_rule.items():
        print(f"{rule:28s} {seconds:8.1f} s")
    print(json.dumps({"wall_s": round(wall, 1), "goal_s": GOAL_S, "rules_s": {rule: round(seconds, 1)
                                                                               for rule, seconds in per_rule.items()}}))


if __name__ == "__main__":
    main()
