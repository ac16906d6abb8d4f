"""Per-cell-type z-scoring of measured activity, shared by the regressors that train on it.

A regressor that serves several cell types trains on z-scores, so cell types measured on different scales
weigh alike in its loss; it maps its outputs back with the same train means and SDs, which travel with the
saved model (`to_json`). An SD of 0 (a constant or single train value) counts as 1.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from r3lm.errors import InputError


@dataclass(frozen=True)
class ActivityScaler:
    cell_types: tuple[str, ...]
    mean: np.ndarray
    std: np.ndarray

    @classmethod
    def from_moments(cls, cell_types: Sequence[str], mean: Sequence[float], std: Sequence[float]) -> ActivityScaler:
        std = np.asarray(std, dtype=float)
        return cls(tuple(map(str, cell_types)), np.asarray(mean, dtype=float), np.where(std > 0, std, 1.0))

    @classmethod
    def fit(cls, rows: pd.DataFrame) -> ActivityScaler:
        """From long rows (cell_type, activity): one row per measurement."""
        groups = [(str(cell), values) for cell, values in rows.groupby("cell_type")["activity"]]
        return cls.from_moments([cell for cell, _ in groups], [values.mean() for _, values in groups],
                                [values.std(ddof=0) for _, values in groups])

    @classmethod
    def fit_matrix(cls, cell_types: Sequence[str], activity: np.ndarray) -> ActivityScaler:
        """From a (sequences, cell types) matrix, NaN where a sequence was not measured in a cell type."""
        return cls.from_moments(cell_types, np.nanmean(activity, axis=0), np.nanstd(activity, axis=0))

    def _positions(self, cell_types: Sequence[str] | np.ndarray) -> np.ndarray:
        cells = np.asarray(cell_types, dtype=object)
        positions = pd.Index(self.cell_types).get_indexer(cells.ravel())
        if (positions < 0).any():
            unknown = cells.ravel()[int(np.argmax(positions < 0))]
            raise InputError(f"no activity scale for cell type {unknown!r} (known: {', '.join(self.cell_types)})",
                             column="cell_type")
        return positions.reshape(cells.shape)

    def transform(self, activity: Sequence[float] | np.ndarray, cell_types: Sequence[str] | np.ndarray
                  ) -> np.ndarray:
        """Z-scores; `cell_types` names the cell type of each value, or of each column of a matrix."""
        positions = self._positions(cell_types)
        return (np.asarray(activity, dtype=float) - self.mean[positions]) / self.std[positions]

    def inverse(self, scaled: np.ndarray, cell_types: Sequence[str] | np.ndarray) -> np.ndarray:
        """Activity on each cell type's measured scale (`cell_types` as in `transform`)."""
        positions = self._positions(cell_types)
        return np.asarray(scaled) * self.std[positions] + self.mean[positions]

    def to_json(self) -> dict[str, dict[str, float]]:
        return {cell: {"mean": float(mean), "std": float(std)}
                for cell, mean, std in zip(self.cell_types, self.mean, self.std, strict=True)}

    @classmethod
    def from_json(cls, saved: Mapping[str, Mapping[str, Any]]) -> ActivityScaler:
        return cls.from_moments(list(saved), [float(value["mean"]) for value in saved.values()],
                                [float(value["std"]) for value in saved.values()])
