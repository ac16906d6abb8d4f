"""Gosai et al. 2024 (Nature) MPRA, Supplementary Table 2, preprocessed as BODA2/Malinois did.

Filters (each drop counted): the largest lfcSE over K562, HepG2 and SK-N-SH must be below
`max_lfcse` (1.0), and the sequence must be exactly `sequence_length` (200) bp of A, C, G, T.
Activities are the `<cell>_log2FC` columns; the chromosome comes from `chr` (synthetic
sequences have none and follow `split.unplaced`).
"""

from __future__ import annotations

import logging
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from r3lm.data.checks import (
    check_sequences,
    check_unique_ids,
    normalize_chromosome,
    parse_numbers,
    require_columns,
)
from r3lm.data.tables import read_table

log = logging.getLogger(__name__)

CELL_TYPES = ("K562", "HepG2", "SKNSH")
METADATA_COLUMNS = ("data_project", "OL", "class")


def load_gosai(path: str | Path, dataset: dict[str, Any]) -> tuple[pd.DataFrame, Counter, dict[str, Any]]:
    """Long rows (one per sequence and cell type) that pass the BODA2 filters, with counted drops."""
    settings = dataset["gosai2024"]
    frame = read_table(path)
    require_columns(frame.columns, ["IDs", "chr", "sequence",
                                    *(f"{cell}_{kind}" for cell in CELL_TYPES for kind in ("log2FC", "lfcSE"))],
                    path=path)
    rows = pd.Series(np.arange(1, len(frame) + 1), index=frame.index)
    drops: Counter = Counter()

    errors = pd.DataFrame({cell: parse_numbers(frame[f"{cell}_lfcSE"], path=path, column=f"{cell}_lfcSE",
                                               row_numbers=rows) for cell in CELL_TYPES})
    activities = {cell: parse_numbers(frame[f"{cell}_log2FC"], path=path, column=f"{cell}_log2FC", row_numbers=rows)
                  for cell in CELL_TYPES}
    missing = errors.isna().any(axis=1) | pd.DataFrame(activities).isna().any(axis=1)
    drops["missing_measurement"] += int(missing.sum())
    noisy = ~missing & ~(errors.max(axis=1) < settings["max_lfcse"])
    drops[f"max_lfcse_not_below_{settings['max_lfcse']:g}"] += int(noisy.sum())
    keep = ~missing & ~noisy

    sequences = frame["sequence"].str.strip().str.upper()
    # BODA2 drops sequences of other lengths or with N as part of the preprocessing, whatever the policy.
    keep &= check_sequences(sequences[keep], path=path, column="sequence", policy="drop", drops=drops,
                            length=settings["sequence_length"], row_numbers=rows[keep]).reindex(keep.index, fill_value=False)
    ids = frame["IDs"].str.strip()
    keep &= check_unique_ids(ids[keep], path=path, column="IDs", policy=dataset["on_duplicate_id"], drops=drops,
                             row_numbers=rows[keep]).reindex(keep.index, fill_value=False)

    kept = pd.DataFrame({"id": ids, "sequence": sequences, "chrom": frame["chr"].map(normalize_chromosome),
                         "source_row": rows})
    for column in METADATA_COLUMNS:
        if column in frame.columns:
            kept[column] = frame[column]
    kept = kept[keep]
    parts = []
    for cell in CELL_TYPES:
        part = kept.copy()
        part.insert(2, "cell_type", cell)
        part.insert(3, "activity", activities[cell][keep])
        part["lfcse"] = errors.loc[keep, cell]
        parts.append(part)
    long = pd.concat(parts, ignore_index=True)
    log.info("Gosai table %s: %d rows, %d kept, dropped %s", path, len(frame), int(keep.sum()), dict(drops))
    return long, drops, {"path": str(path), "rows": len(frame)}
