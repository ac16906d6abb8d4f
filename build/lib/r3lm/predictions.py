"""The one prediction format every method writes and the evaluation reads.

A method's `predictions/<cell_type>.parquet` (beside its models) holds one row per test sequence:
id, cell_type, split, measured, predicted, level (measured), predicted_level and, for the LLM
methods, the rationale. Beside them `summary.json` states what the method was trained on and how,
so the report can print each method's training size and settings.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from r3lm.data.checks import first_row, parse_numbers, require_columns
from r3lm.data.levels import assign_levels
from r3lm.errors import InputError, require_file
from r3lm.io import write_json, write_parquet

ROW_COLUMNS = ["id", "cell_type", "split", "activity", "level"]  # a row to predict, as the split tables hold it
PREDICTION_COLUMNS = ["id", "cell_type", "split", "measured", "predicted", "level", "predicted_level"]


def read_rows(path: str | Path, columns: Sequence[str]) -> pd.DataFrame:
    """A split table (parquet) with the needed columns and at least one row; activity as float.

    The path is kept in `frame.attrs["path"]` so that row-level errors found later can name the file.
    """
    file = require_file(path)
    try:
        frame = pd.read_parquet(file)
    except (OSError, ValueError) as error:
        raise InputError(f"cannot read parquet: {str(error).splitlines()[0]}", path=file) from error
    if frame.empty:
        raise InputError("table is empty (no data rows)", path=file)
    require_columns(frame.columns, list(columns), path=file)
    frame = frame.reset_index(drop=True)
    numbers = pd.Series(np.arange(1, len(frame) + 1), index=frame.index)
    frame["activity"] = parse_numbers(frame["activity"], path=file, column="activity", row_numbers=numbers)
    level = pd.to_numeric(frame["level"], errors="coerce")
    bad_level = ~np.isfinite(level) | (level != np.round(level))
    if bad_level.any():
        position = first_row(bad_level)
        raise InputError(f"level must be an integer, found {frame['level'].iloc[position]!r}", path=file,
                         row=position + 1, column="level")
    for column in ("id", "cell_type", "split"):
        frame[column] = frame[column].astype(str)
    frame.attrs["path"] = str(file)
    return frame


def level_edges_from_summary(summary_path: str | Path) -> dict[str, list[float]]:
    """Per-cell-type level edges fixed on train by the data step (data/summary.json)."""
    with open(summary_path) as handle:
        return {str(cell): [float(edge) for edge in edges]
                for cell, edges in json.load(handle)["levels"]["edges"].items()}


def prediction_table(rows: pd.DataFrame, predicted: np.ndarray, edges: Mapping[str, list[float]], *,
                     rationale: list[str] | None = None) -> pd.DataFrame:
    """Rows (ROW_COLUMNS) with their predictions in the shared format."""
    table = pd.DataFrame({
        "id": rows["id"].astype(str).to_numpy(),
        "cell_type": rows["cell_type"].astype(str).to_numpy(),
        "split": rows["split"].astype(str).to_numpy(),
        "measured": rows["activity"].astype(float).to_numpy(),
        "predicted": np.asarray(predicted, dtype=float),
        "level": rows["level"].astype(int).to_numpy(),
    })
    predicted_level = np.zeros(len(table), dtype=np.int8)
    for cell_type, index in table.groupby("cell_type", sort=False).indices.items():
        if cell_type not in edges:
            raise InputError(f"no level edges for cell type {cell_type!r}", column="cell_type")
        predicted_level[index] = assign_levels(table["predicted"].to_numpy()[index], edges[cell_type])
    table["predicted_level"] = predicted_level
    if rationale is not None:
        table["rationale"] = list(rationale)
    return table


def write_predictions(table: pd.DataFrame, out_dir: str | Path, summary: Mapping[str, Any]) -> list[Path]:
    """One parquet per cell type plus summary.json (written last, so its presence means complete)."""
    out = Path(out_dir)
    paths = []
    for cell_type, group in table.groupby("cell_type", sort=True):
        path = out / f"{cell_type}.parquet"
        write_parquet(group.reset_index(drop=True), path)
        paths.append(path)
    write_json({**summary, "cell_types": sorted(table["cell_type"].unique().tolist()), "rows": len(table)},
               out / "summary.json")
    return paths


def read_predictions(method_dir: str | Path) -> tuple[pd.DataFrame, dict[str, Any]]:
    """All cell types of one method and its summary."""
    folder = Path(method_dir)
    summary_path = folder / "summary.json"
    if not summary_path.exists():
        raise InputError("no summary.json: the method's predictions are incomplete", path=folder)
    with open(summary_path) as handle:
        summary = json.load(handle)
    frames = [pd.read_parquet(folder / f"{cell}.parquet") for cell in summary["cell_types"]]
    table = pd.concat(frames, ignore_index=True)
    missing = [column for column in PREDICTION_COLUMNS if column not in table.columns]
    if missing:
        raise InputError(f"missing prediction columns {missing}", path=folder, column=missing[0])
    return table, summary
