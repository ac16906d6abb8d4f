"""Cell-type specificity of predicted activity, for designing or choosing elements active in one cell type only.

Two measures, both in activity units, for each cell type c with the others as off-targets:

* `min_gap`: activity in c minus the highest off-target activity, CODA's MinGap objective (Gosai et al.,
  Nature 2024). Positive only when c beats every other cell type, so one strong off-target sinks a sequence:
  the conservative choice, and the default. With several on-target cell types (design for a set,
  `r3lm.design`) it is the weakest on-target minus the strongest off-target, as in ledidi's `MinGap` loss.
* `mean_gap`: activity in c minus the mean off-target activity. Forgives one leaky off-target when the
  others are low; with two cell types it equals `min_gap`.

A ranking puts the safest first: the highest specificity for the chosen cell type, ties broken by the
higher on-target activity and then by id, so the order is the same on every run.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pandas as pd

from r3lm.deploy.fast import PREDICTED_PREFIX, predicted_column
from r3lm.errors import InputError

SPECIFICITY = "specificity"


def min_gap(on_target: Any, off_target: Any) -> Any:
    """The project's one MinGap: per row, the weakest on-target minus the strongest off-target activity.

    Args:
        on_target: (rows, on-target cell types) activity, a numpy array or a torch tensor; the designer
            (`r3lm.design`) takes its gradient, so the score reported and the one optimised are the same formula.
        off_target: (rows, off-target cell types), of the same kind.

    Returns:
        (rows,) gaps, of the inputs' kind.
    """
    return _values(on_target.min(1)) - _values(off_target.max(1))


def _values(reduced: Any) -> Any:
    """torch's min/max along a dimension return (values, indices); numpy's the values."""
    return getattr(reduced, "values", reduced)


def _mean_gap(on_target: np.ndarray, off_target: np.ndarray) -> np.ndarray:
    return on_target.mean(axis=1) - off_target.mean(axis=1)


METHODS: dict[str, Callable[[np.ndarray, np.ndarray], np.ndarray]] = {"min_gap": min_gap, "mean_gap": _mean_gap}


def specificity(predicted: pd.DataFrame, method: str = "min_gap") -> pd.DataFrame:
    """Per row and cell type, its specificity against the other cell types. `predicted` has one column per
    cell type (activity); the result has the same index and columns."""
    if method not in METHODS:
        raise InputError(f"unknown specificity method {method!r}; choose from {', '.join(METHODS)}")
    if predicted.shape[1] < 2:
        raise InputError(f"specificity needs at least two cell types, got {list(predicted.columns)}")
    values = predicted.to_numpy(dtype=float)
    result = np.empty_like(values)
    for index in range(values.shape[1]):
        result[:, index] = METHODS[method](values[:, [index]], np.delete(values, index, axis=1))
    return pd.DataFrame(result, index=predicted.index, columns=predicted.columns)


def rank_by_specificity(scores: pd.DataFrame, cell_type: str, cell_types: Sequence[str] | None = None, *,
                        method: str = "min_gap") -> pd.DataFrame:
    """A score table (`FastModel.score`: id, predicted_<cell type>, ...) with a `specificity` column for
    `cell_type` against the other `cell_types` (None: every cell type the table has), safest first."""
    if cell_types is None:
        cell_types = [column.removeprefix(PREDICTED_PREFIX) for column in scores.columns
                      if column.startswith(PREDICTED_PREFIX)]
    if cell_type not in cell_types:
        raise InputError(f"cell type {cell_type!r} is not among the scored ones: {', '.join(cell_types)}")
    matrix = scores[[predicted_column(cell) for cell in cell_types]].set_axis(list(cell_types), axis=1)
    ranked = scores.assign(**{SPECIFICITY: specificity(matrix, method)[cell_type].to_numpy()})
    return ranked.sort_values([SPECIFICITY, predicted_column(cell_type), "id"], ascending=[False, False, True],
                              kind="stable", ignore_index=True)
