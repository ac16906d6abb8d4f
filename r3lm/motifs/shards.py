"""Scatter/gather scanning for the workflow: each shard scans a fixed slice of the dataset's sequences.

Scanning does not depend on the cell type, so every sequence is scanned once. Shards slice the
sorted unique sequence ids, so a shard's content does not depend on how the tables are ordered;
with `background: input`, every shard estimates the background from all sequences, so shards agree.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from r3lm.io import write_parquet
from r3lm.layout import SPLITS
from r3lm.motifs.jaspar import load_motifs
from r3lm.motifs.meme_format import write_meme
from r3lm.motifs.pssm import uniform_background
from r3lm.motifs.scan import HIT_COLUMNS, MotifSet, background_for, build_motif_set, scan_sequences

log = logging.getLogger(__name__)


def dataset_sequences(data_dir: str | Path) -> pd.DataFrame:
    """Unique (id, sequence) pairs of a prepared dataset, sorted by id (test_subset is part of test)."""
    frames = [pd.read_parquet(Path(data_dir) / f"{name}.parquet", columns=["id", "sequence"]) for name in SPLITS]
    return pd.concat(frames).drop_duplicates("id").sort_values("id", ignore_index=True)


def shard_rows(n_rows: int, shard: int, shards: int) -> slice:
    """Contiguous, near-equal slices that cover every row exactly once."""
    edges = np.linspace(0, n_rows, shards + 1).round().astype(int)
    return slice(int(edges[shard]), int(edges[shard + 1]))


def dataset_motif_set(settings: Mapping[str, Any], sequences: pd.DataFrame) -> MotifSet:
    """The `motifs` settings' matrices, scored against the background they name (`input`: every sequence of
    the dataset, so shards agree)."""
    return build_motif_set(settings, background_for(settings, sequences["sequence"].tolist()))


def scan_shard(config: Mapping[str, Any], data_dir: str | Path, shard: int, out: str | Path, *, threads: int) -> None:
    settings = config["motifs"]
    sequences = dataset_sequences(data_dir)
    part = sequences.iloc[shard_rows(len(sequences), shard, settings["shards"])]
    log.info("shard %d of %d: sequences %d of %d", shard + 1, settings["shards"], len(part), len(sequences))
    hits = scan_sequences(part["id"].tolist(), part["sequence"].tolist(), dataset_motif_set(settings, sequences),
                          threads=threads)
    write_parquet(hits, out)


def gather_hits(shard_files: Sequence[str | Path], out: str | Path) -> None:
    frames = [pd.read_parquet(path) for path in shard_files]
    hits = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=HIT_COLUMNS)
    log.info("gathered %d hits from %d shards (%d sequences with at least one hit)", len(hits), len(frames),
             hits["seq_id"].nunique())
    write_parquet(hits, out)


def write_motif_table(config: Mapping[str, Any], data_dir: str | Path, out: str | Path) -> None:
    """The scanned and skipped motifs, with each one's integer score threshold, for the record."""
    write_parquet(dataset_motif_set(config["motifs"], dataset_sequences(data_dir)).table(), out)


def write_motif_file(config: Mapping[str, Any], out: str | Path) -> None:
    """The whole release as a MEME-format file (uniform background), so other tools use the same motifs."""
    settings = config["motifs"]
    write_meme(load_motifs(settings["jaspar_release"], settings["collection"], settings["tax_group"]), out,
               background=uniform_background())
