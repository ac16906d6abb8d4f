"""Statistics every stage uses, on the ground floor: a stage that scores its own validation (Stage II, the
baselines) computes the same number the evaluation reports, without importing the evaluation."""

from __future__ import annotations

import numpy as np


def pearson(measured: np.ndarray, predicted: np.ndarray) -> float:
    """Pearson r over the finite pairs; NaN when it is undefined (fewer than 2 pairs or a constant side)."""
    measured, predicted = np.asarray(measured, dtype=float), np.asarray(predicted, dtype=float)
    keep = np.isfinite(measured) & np.isfinite(predicted)
    x, y = measured[keep], predicted[keep]
    if len(x) < 2 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return float("nan")
    return float(np.corrcoef(x, y)[0, 1])
