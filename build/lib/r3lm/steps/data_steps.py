"""Stage data (workflow/rules/data.smk): download a source table, simulate the demo, prepare the splits."""

from __future__ import annotations

import argparse
import logging
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from r3lm.commands import arg, step
from r3lm.io import OutputFile, OutputFolder, write_parquet

log = logging.getLogger(__name__)


def write_simulation(settings: Mapping[str, Any], measurements_path: str | Path,
                     ground_truth_path: str | Path) -> None:
    """Simulate and write both tables as parquet (atomically, so a failed run leaves neither half-written)."""
    from r3lm.data.simulate import simulate

    started = time.perf_counter()
    measurements, ground_truth = simulate(settings)
    write_parquet(measurements, measurements_path)
    write_parquet(ground_truth, ground_truth_path)
    n_cells = measurements["cell_type"].nunique()
    log.info("simulated %d sequences x %d cell types with %d planted sites (%s, seed %s) in %.1f s",
             len(measurements) // n_cells, n_cells, len(ground_truth) // n_cells,
             settings["jaspar_release"], settings["seed"], time.perf_counter() - started)


@step("download", "resumable download with a recorded SHA-256",
      arg("--url", action="append", required=True, help="URL to try (repeat for mirrors, in order)"),
      arg("--out", type=OutputFile, required=True, help="destination file"),
      arg("--sha256", default=None, help="expected checksum (optional)"),
      arg("--no-progress", action="store_true", help="no progress bar"))
def download(args: argparse.Namespace) -> None:
    from r3lm.data.download import download

    download(args.url, args.out, sha256=args.sha256, progress=not args.no_progress)


@step("simulate", "simulate the demo MPRA from JASPAR matrices",
      arg("--out", type=OutputFile, required=True, help="measurements parquet"),
      arg("--ground-truth", type=OutputFile, required=True, help="planted sites and their contributions (parquet)"),
      sections=("dataset",))
def simulate_step(args: argparse.Namespace, config: dict[str, Any]) -> None:
    write_simulation(config["dataset"]["demo"], args.out, args.ground_truth)


@step("prepare-data", "filter, split, level and sample a dataset",
      arg("--out-dir", type=OutputFolder, required=True, help="folder for {train,val,test,test_subset}.parquet"),
      arg("--input", default=None, help="the source file (Gosai table or simulated demo)"),
      sections=("dataset", "levels", "sampling"))
def prepare_data(args: argparse.Namespace, config: dict[str, Any]) -> None:
    from r3lm.data.prepare import prepare_dataset

    prepare_dataset(config, args.out_dir, source_path=args.input)
