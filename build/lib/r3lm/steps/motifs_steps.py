"""Stage motifs (workflow/rules/motifs.smk): scatter the scan over shards of the dataset's sequences, gather the
hits, and write the motif set as a table and a MEME file.

Scanning does not depend on the cell type, so every sequence is scanned once. Shards slice the sorted unique
sequence ids, so a shard's content does not depend on how the tables are ordered; with `background: input`,
every shard estimates the background from all sequences, so shards agree.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from r3lm.commands import arg, step
from r3lm.io import OutputFile, write_parquet

log = logging.getLogger(__name__)


def shard_rows(n_rows: int, shard: int, shards: int) -> slice:
    """Contiguous, near-equal slices that cover every row exactly once."""
    edges = np.linspace(0, n_rows, shards + 1).round().astype(int)
    return slice(int(edges[shard]), int(edges[shard + 1]))


def scan_shard(config: Mapping[str, Any], data_dir: str | Path, shard: int, out: str | Path, *, threads: int) -> None:
    """The hits of one shard's sequences."""
    from r3lm.motifs.dataset import dataset_motif_set, dataset_sequences
    from r3lm.motifs.scan import scan_sequences

    settings = config["motifs"]
    sequences = dataset_sequences(data_dir)
    part = sequences.iloc[shard_rows(len(sequences), shard, settings["shards"])]
    log.info("shard %d of %d: sequences %d of %d", shard + 1, settings["shards"], len(part), len(sequences))
    hits = scan_sequences(part["id"].tolist(), part["sequence"].tolist(), dataset_motif_set(settings, sequences),
                          threads=threads)
    write_parquet(hits, out)


def gather_hits(shard_files: Sequence[str | Path], out: str | Path) -> None:
    """The shards' hits as one table."""
    import pandas as pd

    from r3lm.motifs.scan import HIT_COLUMNS

    frames = [pd.read_parquet(path) for path in shard_files]
    hits = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=HIT_COLUMNS)
    log.info("gathered %d hits from %d shards (%d sequences with at least one hit)", len(hits), len(frames),
             hits["seq_id"].nunique())
    write_parquet(hits, out)


@step("scan-shard", "scan one shard of a prepared dataset",
      arg("--data-dir", required=True, help="the prepared dataset's folder"),
      arg("--shard", type=int, required=True, help="0-based shard index (of motifs.shards)"),
      arg("--out", type=OutputFile, required=True, help="hits parquet"),
      arg("--threads", type=int, default=1),
      sections=("motifs",))
def scan_shard_step(args: argparse.Namespace, config: dict[str, Any]) -> None:
    scan_shard(config, args.data_dir, args.shard, args.out, threads=args.threads)


@step("gather-hits", "concatenate shard hits",
      arg("--out", type=OutputFile, required=True, help="hits parquet"),
      arg("shard_files", nargs="+", help="shard hit tables"))
def gather_hits_step(args: argparse.Namespace) -> None:
    gather_hits(args.shard_files, args.out)


@step("motif-table", "scanned and skipped motifs",
      arg("--data-dir", required=True, help="the prepared dataset's folder (input background)"),
      arg("--out", type=OutputFile, required=True, help="motif table parquet"),
      sections=("motifs",))
def motif_table(args: argparse.Namespace, config: dict[str, Any]) -> None:
    """The scanned and skipped motifs, with each one's integer score threshold, for the record."""
    from r3lm.motifs.dataset import dataset_motif_set, dataset_sequences

    write_parquet(dataset_motif_set(config["motifs"], dataset_sequences(args.data_dir)).table(), args.out)


@step("motif-file", "the configured JASPAR set as a MEME-format file",
      arg("--out", type=OutputFile, required=True, help="MEME-format motif file"),
      sections=("motifs",))
def motif_file(args: argparse.Namespace, config: dict[str, Any]) -> None:
    """The whole release as a MEME-format file (uniform background), so other tools use the same motifs."""
    from r3lm.motifs.jaspar import load_motifs
    from r3lm.motifs.meme_format import write_meme
    from r3lm.motifs.pssm import uniform_background

    settings = config["motifs"]
    write_meme(load_motifs(settings["jaspar_release"], settings["collection"], settings["tax_group"]), args.out,
               background=uniform_background())
