"""Wall time and peak memory of the data stage: the demo simulation + preparation, and the Gosai
preprocessing on a synthetic table in the exact Table S2 format (default 800,000 rows, the size of
the real one). Each step runs as its own `r3lm` process so its peak RSS is its own.

    python benchmarks/prepare_data.py [--rows 800000] [--demo-sequences 6000]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

GOSAI_HEADER = ["IDs", "chr", "data_project", "OL", "class", "K562_log2FC", "HepG2_log2FC", "SKNSH_log2FC",
                "K562_lfcSE", "HepG2_lfcSE", "SKNSH_lfcSE", "sequence"]


def synthetic_gosai_table(path: Path, n_rows: int, seed: int = 0) -> None:
    """Rows shaped like the real table: ~3% off-length, ~0.5% with N, ~5% noisy, ~15% synthetic (no chr)."""
    rng = np.random.default_rng(seed)
    bases = np.frombuffer(b"ACGT", dtype=np.uint8)
    codes = bases[rng.integers(0, 4, size=(n_rows, 200))]
    codes[rng.random(n_rows) < 0.005, 100] = ord("N")
    sequences = codes.view("S200").ravel().astype(str)
    short = rng.random(n_rows) < 0.03
    sequences[short] = [s[:199] for s in sequences[short]]
    chromosomes = rng.choice([str(c) for c in range(1, 23)] + ["X"], size=n_rows).astype(object)
    chromosomes[rng.random(n_rows) < 0.15] = ""
    frame = pd.DataFrame({
        "IDs": [f"{c or 'synth'}:{i}:A:G:R:wC" for i, c in enumerate(chromosomes)],
        "chr": chromosomes,
        "data_project": rng.choice(["UKBB", "GTEX", "BODA", "CRE"], size=n_rows),
        "OL": rng.integers(1, 40, size=n_rows),
        "class": rng.choice(["CAD", "BMI", "synthetic"], size=n_rows),
    })
    for cell in ("K562", "HepG2", "SKNSH"):
        frame[f"{cell}_log2FC"] = rng.normal(0.5, 1.2, size=n_rows)
    for cell in ("K562", "HepG2", "SKNSH"):
        frame[f"{cell}_lfcSE"] = rng.gamma(2.0, 0.1, size=n_rows) + (rng.random(n_rows) < 0.02) * 1.0
    frame["sequence"] = sequences
    frame[GOSAI_HEADER].to_csv(path, sep="\t", index=False)


def run_measured(arguments: list[str]) -> tuple[float, float]:
    """Wall seconds and peak RSS (MiB) of one r3lm subprocess."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "r3lm", "--log-level", "WARNING", *arguments], check=True)
    seconds = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    if peak <= before:
        print("note: peak RSS not above an earlier child's; reported value is a lower bound", file=sys.stderr)
    return seconds, peak / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=800_000)
    parser.add_argument("--demo-sequences", type=int, default=6000)
    args = parser.parse_args()
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        demo = json.dumps({"dataset": {"name": "demo", "source": "demo", "demo": {"n_sequences": args.demo_sequences}},
                           "levels": {}, "sampling": {}})
        results["demo_simulate"] = run_measured(["step", "simulate", "--config", demo, "--out", str(work / "sim.parquet"),
                                                 "--ground-truth", str(work / "truth.parquet")])
        results["demo_prepare"] = run_measured(["step", "prepare-data", "--config", demo, "--out-dir",
                                                str(work / "demo"), "--input", str(work / "sim.parquet")])
        started = time.perf_counter()
        synthetic_gosai_table(work / "table.tsv", args.rows)
        print(f"wrote a synthetic {args.rows:,}-row Gosai table in {time.perf_counter() - started:.1f} s "
              f"({(work / 'table.tsv').stat().st_size / 2**20:.0f} MiB)")
        gosai = json.dumps({"dataset": {"name": "gosai2024", "source": "gosai2024"}, "levels": {}, "sampling": {}})
        results["gosai_prepare"] = run_measured(["step", "prepare-data", "--config", gosai, "--out-dir",
                                                 str(work / "gosai"), "--input", str(work / "table.tsv")])
        summary = json.loads((work / "gosai" / "summary.json").read_text())
    print(f"{'step':<16}{'wall s':>10}{'peak MiB':>12}")
    for step, (seconds, peak) in results.items():
        print(f"{step:<16}{seconds:>10.1f}{peak:>12.0f}")
    print("gosai dropped:", summary["dropped"])
    print("gosai sequences per split:", summary["sequences"])


if __name__ == "__main__":
    main()
