"""Activity levels 0..n-1: equal-frequency bins per cell type, fixed on train (as regLM does)."""

from __future__ import annotations

import numpy as np


def level_edges(train_activity: np.ndarray, n_levels: int) -> list[float]:
    """Inner bin edges: the train quantiles at 1/n, 2/n, ... so each level holds ~1/n of train."""
    if len(train_activity) == 0:
        raise ValueError("no train rows to compute level edges from")
    return [float(edge) for edge in np.quantile(train_activity, np.arange(1, n_levels) / n_levels)]


def assign_levels(activity: np.ndarray, edges: list[float]) -> np.ndarray:
    """Level of each activity; a value equal to an edge goes to the upper level."""
    return np.searchsorted(np.asarray(edges), np.asarray(activity), side="right").astype(np.int8)
