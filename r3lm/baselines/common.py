"""What both baselines share: strict reading of the split tables, level edges, Pearson, settings, output.

Every check runs before any training, so bad input stops a step before it writes anything.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from r3lm.data.checks import first_row, parse_numbers, require_columns
from r3lm.errors import InputError, require_file
from r3lm.predictions import (
    level_edges_from_summary,
    prediction_table,
    write_predictions,
)

ROW_COLUMNS = ["id", "cell_type", "split", "activity", "level"]
_ACGTN = re.compile(r"[ACGTN]+")


def resolve_settings(settings: Mapping[str, Any], method: str) -> dict[str, Any]:
    """The schema's defaults (their one home: `baselines.<method>`) overlaid with the given settings; an
    unknown key is most likely a typo, so it is an error."""
    from r3lm.config import validate_config

    defaults = validate_config({})["baselines"][method]
    unknown = sorted(set(settings) - set(defaults))
    if unknown:
        raise InputError(f"unknown {method} setting(s) {unknown}; known: {sorted(defaults)}", column=unknown[0])
    return validate_config({"baselines": {method: dict(settings)}})["baselines"][method]  # nested defaults too


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


def source(frame: pd.DataFrame) -> str:
    return frame.attrs.get("path", "(table)")


def check_sequences(frame: pd.DataFrame) -> None:
    """Only A, C, G, T and N (upper case): anything else would be encoded silently as N."""
    bad = ~frame["sequence"].astype(str).str.fullmatch(_ACGTN)
    if bad.any():
        position = first_row(bad)
        value = str(frame["sequence"].iloc[position])
        where = next((i for i, base in enumerate(value, start=1) if base not in "ACGTN"), None)
        detail = "is empty" if where is None else f"has {value[where - 1]!r} at position {where}"
        raise InputError(f"sequence {detail}; only A, C, G, T, N are allowed", path=source(frame),
                         row=position + 1, column="sequence")


def check_cell_types(frame: pd.DataFrame, known: Sequence[str], what: str) -> None:
    """Test rows of a cell type the model never saw cannot be predicted."""
    unknown = ~frame["cell_type"].isin(list(known))
    if unknown.any():
        position = first_row(unknown)
        raise InputError(f"cell type {frame['cell_type'].iloc[position]!r} is not among the {what} "
                         f"{sorted(known)}", path=source(frame), row=position + 1, column="cell_type")


def read_edges(summary_path: str | Path, cell_types: Sequence[str]) -> dict[str, list[float]]:
    """The train-fixed level edges, checked to cover every cell type that will be predicted."""
    path = require_file(summary_path, "data summary")
    try:
        edges = level_edges_from_summary(path)
    except (ValueError, KeyError, TypeError, AttributeError) as error:
        raise InputError(f"no per-cell-type levels.edges in the data summary ({error!r})", path=path) from error
    missing = sorted(set(cell_types) - set(edges))
    if missing:
        raise InputError(f"no level edges for cell type(s) {missing}", path=path)
    return edges


def pearson(measured: np.ndarray, predicted: np.ndarray) -> float:
    """Pearson r over the finite pairs; NaN when it is undefined (fewer than 2 pairs or a constant side)."""
    measured, predicted = np.asarray(measured, dtype=float), np.asarray(predicted, dtype=float)
    keep = np.isfinite(measured) & np.isfinite(predicted)
    x, y = measured[keep], predicted[keep]
    if len(x) < 2 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return float("nan")
    return float(np.corrcoef(x, y)[0, 1])


def finite_or_none(value: float) -> float | None:
    """JSON has no NaN: an undefined score is stored as null."""
    return float(value) if np.isfinite(value) else None


def write_outputs(tables: Sequence[pd.DataFrame], predicted: Sequence[np.ndarray], edges: Mapping[str, list[float]],
                  out_dir: str | Path, summary: Mapping[str, Any]) -> None:
    """Every row of every test table, in the shared format (summary.json last, so it marks completion)."""
    rows = pd.concat(list(tables), ignore_index=True)
    write_predictions(prediction_table(rows, np.concatenate(list(predicted)), edges), out_dir, summary)
