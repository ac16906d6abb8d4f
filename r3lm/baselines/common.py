"""What both baselines share: input checks, level edges, settings, output.

Every check runs before any training, so bad input stops a step before it writes anything.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from r3lm.data.checks import first_row
from r3lm.errors import InputError, require_file
from r3lm.predictions import (
    level_edges_from_summary,
    prediction_table,
    write_predictions,
)

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


def source(frame: pd.DataFrame) -> str:
    """The file a table was read from (read_rows keeps it), for error messages."""
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


def read_group_regex(summary_path: str | Path) -> str | None:
    """The data split's `group_regex` (data/summary.json): the sequences that must stay on one side of any
    random division, such as an element and its reverse complement."""
    path = require_file(summary_path, "data summary")
    return (json.loads(Path(path).read_text()).get("split") or {}).get("group_regex")


def finite_or_none(value: float) -> float | None:
    """JSON has no NaN: an undefined score is stored as null."""
    return float(value) if np.isfinite(value) else None


def write_outputs(tables: Sequence[pd.DataFrame], predicted: Sequence[np.ndarray], edges: Mapping[str, list[float]],
                  out_dir: str | Path, summary: Mapping[str, Any]) -> None:
    """Every row of every test table, in the shared format (summary.json last, so it marks completion)."""
    rows = pd.concat(list(tables), ignore_index=True)
    write_predictions(prediction_table(rows, np.concatenate(list(predicted)), edges), out_dir, summary)
