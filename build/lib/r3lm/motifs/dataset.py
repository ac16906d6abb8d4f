"""A prepared dataset's sequences, and the motif set scored against the background they give."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from r3lm.layout import SPLITS
from r3lm.motifs.scan import MotifSet, background_for, build_motif_set


def dataset_sequences(data_dir: str | Path) -> pd.DataFrame:
    """Unique (id, sequence) pairs of a prepared dataset, sorted by id (test_subset is part of test)."""
    frames = [pd.read_parquet(Path(data_dir) / f"{name}.parquet", columns=["id", "sequence"]) for name in SPLITS]
    return pd.concat(frames).drop_duplicates("id").sort_values("id", ignore_index=True)


def dataset_motif_set(settings: Mapping[str, Any], sequences: pd.DataFrame) -> MotifSet:
    """The `motifs` settings' matrices, scored against the background they name (`input`: every sequence of
    the dataset, so shards agree)."""
    return build_motif_set(settings, background_for(settings, sequences["sequence"].tolist()))
