"""From any source to the same tables: results/<dataset>/data/{train,val,test,test_subset}.parquet.

Format (long): one row per (sequence, cell type) with `id, sequence, cell_type, activity, level,
split, chrom` first, then source metadata. A sequence sits in one split for all its cell types.
`summary.json` records the input, every drop by reason, counts per split and cell type, the
level edges and what sampling left out.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from r3lm.data.levels import assign_levels, level_edges
from r3lm.data.splits import assign_splits
from r3lm.errors import InputError
from r3lm.io import write_json, write_parquet
from r3lm.layout import SPLITS

log = logging.getLogger(__name__)

LEADING_COLUMNS = ["id", "sequence", "cell_type", "activity", "level", "split", "chrom"]
OUTPUT_TABLES = (*SPLITS, "test_subset")


def load_source(dataset: dict[str, Any], source_path: str | Path | None) -> tuple[pd.DataFrame, Counter, dict, dict, str]:
    """Long rows, drops, input facts, the split settings and their config key, for the configured source."""
    source = dataset["source"]
    if source in {"demo", "gosai2024"} and source_path is None:
        raise InputError(f"the {source} source needs its input file (--input)", path="command line")
    if source == "demo":
        frame = pd.read_parquet(source_path)
        return frame, Counter(), {"path": str(source_path), "rows": int(frame["id"].nunique())}, \
            dataset["demo"]["split"], "dataset.demo"
    if source == "gosai2024":
        from r3lm.data.gosai import load_gosai

        frame, drops, inputs = load_gosai(source_path, dataset)
        return frame, drops, inputs, dataset["gosai2024"]["split"], "dataset.gosai2024"
    from r3lm.data.tables import load_table

    frame, drops, inputs = load_table(dataset)
    return frame, drops, inputs, dataset["table"]["split"], "dataset.table"


def select_cell_types(frame: pd.DataFrame, wanted: list[str] | None) -> list[str]:
    available = list(dict.fromkeys(frame["cell_type"]))
    if wanted is None:
        return available
    unknown = [name for name in wanted if name not in available]
    if unknown:
        raise InputError(f"unknown cell type(s) {', '.join(map(repr, unknown))} in dataset.cell_types; "
                         f"this dataset has {', '.join(available)}", path="config")
    return list(wanted)


def sample_rows(frame: pd.DataFrame, per_cell_type: int | None, *, seed: int, stream: int,
                cell_types: list[str]) -> pd.DataFrame:
    """Seeded sample of at most `per_cell_type` rows per cell type, in the original order."""
    if per_cell_type is None:
        return frame
    kept = []
    for index, cell_type in enumerate(cell_types):
        rows = frame.index[frame["cell_type"] == cell_type].to_numpy()
        if len(rows) > per_cell_type:
            rows = np.sort(np.random.default_rng([seed, stream, index]).choice(rows, per_cell_type, replace=False))
        elif len(rows) < per_cell_type:
            log.warning("%s: %d rows where sampling asks for %d per cell type: all are kept (a smaller split "
                        "fraction or sampling size would say so)", cell_type, len(rows), per_cell_type)
        kept.append(rows)
    return frame.loc[np.sort(np.concatenate(kept))]


def counts_by_cell_type(frame: pd.DataFrame, cell_types: list[str]) -> dict[str, int]:
    counts = frame["cell_type"].value_counts()
    return {cell_type: int(counts.get(cell_type, 0)) for cell_type in cell_types}


def prepare_dataset(config: dict[str, Any], out_dir: str | Path, source_path: str | Path | None = None) -> dict[str, Any]:
    """Split, level, sample and write one dataset; returns the summary written to summary.json."""
    started = time.perf_counter()
    dataset, sampling = config["dataset"], config["sampling"]
    frame, drops, inputs, split, config_key = load_source(dataset, source_path)
    cell_types = select_cell_types(frame, dataset["cell_types"])
    if len(cell_types) < frame["cell_type"].nunique():
        drops["cell_type_not_selected"] += int((~frame["cell_type"].isin(cell_types)).sum())
        frame = frame[frame["cell_type"].isin(cell_types)]
    for column in ("chrom", "fold", "from_test_file"):
        if column not in frame.columns:
            frame[column] = False if column == "from_test_file" else None

    units = frame.drop_duplicates("id")[["id", "chrom", "fold", "from_test_file"]]
    split_of_id = pd.Series(assign_splits(units, split, config_key=config_key, drops=drops).to_numpy(),
                            index=units["id"].to_numpy())
    frame = frame.assign(split=frame["id"].map(split_of_id))
    frame = frame[frame["split"].notna()]

    edges: dict[str, list[float]] = {}
    levels = pd.Series(0, index=frame.index, dtype=np.int8)
    for cell_type in cell_types:
        rows = frame["cell_type"] == cell_type
        train = frame.loc[rows & (frame["split"] == "train"), "activity"].to_numpy()
        if len(train) == 0:
            raise InputError(f"cell type {cell_type!r} has no train rows, so its level edges cannot be set",
                             path=inputs["path"])
        edges[cell_type] = level_edges(train, config["levels"]["n_levels"])
        levels[rows] = assign_levels(frame.loc[rows, "activity"].to_numpy(), edges[cell_type])
    frame = frame.assign(level=levels)

    optional = [column for column in ("fold", "from_test_file") if frame[column].astype(bool).any()]
    metadata = [column for column in frame.columns if column not in {*LEADING_COLUMNS, "fold", "from_test_file"}]
    frame = frame[LEADING_COLUMNS + metadata + optional].reset_index(drop=True)

    tables: dict[str, pd.DataFrame] = {}
    before_sampling: dict[str, dict[str, int]] = {}
    for stream, name in enumerate(SPLITS):
        part = frame[frame["split"] == name].reset_index(drop=True)
        before_sampling[name] = counts_by_cell_type(part, cell_types)
        tables[name] = sample_rows(part, sampling[f"{name}_per_cell_type"], seed=sampling["seed"], stream=stream,
                                   cell_types=cell_types).reset_index(drop=True)
    tables["test_subset"] = sample_rows(tables["test"], sampling["test_subset_per_cell_type"], seed=sampling["seed"],
                                        stream=len(SPLITS), cell_types=cell_types).reset_index(drop=True)

    out = Path(out_dir)
    for name in OUTPUT_TABLES:
        write_parquet(tables[name], out / f"{name}.parquet")
    rows = {name: counts_by_cell_type(tables[name], cell_types) for name in OUTPUT_TABLES}
    train_sequences = set(tables["train"]["sequence"])
    summary = {
        "dataset": dataset["name"],
        "source": dataset["source"],
        "format": "long: one row per (sequence, cell type); a sequence is in one split for all cell types",
        "input": inputs,
        "cell_types": cell_types,
        "dropped": dict(sorted(drops.items())),
        "split": split,
        "rows": rows,
        "sequences": {name: int(tables[name]["id"].nunique()) for name in OUTPUT_TABLES},
        "sampled_out": {name: {cell: before_sampling[name][cell] - rows[name][cell] for cell in cell_types}
                        for name in SPLITS},
        "levels": {
            "n_levels": config["levels"]["n_levels"],
            "method": "equal-frequency bins per cell type on the train split (before sampling)",
            "edges": edges,
            "counts": {name: {cell: np.bincount(tables[name].loc[tables[name]["cell_type"] == cell, "level"],
                                                minlength=config["levels"]["n_levels"]).tolist()
                              for cell in cell_types} for name in OUTPUT_TABLES},
        },
        "test_sequences_also_in_train": int(tables["test"]["sequence"].isin(train_sequences).sum()),
        "seconds": round(time.perf_counter() - started, 2),
    }
    write_json(summary, out / "summary.json")
    log.info("prepared %s in %.1f s: %s; dropped %s", dataset["name"], summary["seconds"],
             {name: sum(count.values()) for name, count in rows.items()}, summary["dropped"])
    return summary
