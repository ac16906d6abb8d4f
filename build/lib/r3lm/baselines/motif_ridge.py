"""Motif-count ridge regression: the interpretable baseline that sees only what a card lists.

Features per card are the number of motif hits per JASPAR family (a hit of family "Fos-related;
Jun-related" counts for both), GC content and length. It is a bag of motifs, blind to spacing,
orientation and affinity, so it measures how much of the activity a card's motif list explains on
its own, and its standardised coefficients say which families it credits, with their sign, per cell
type. One closed-form ridge per cell type, the penalty chosen by validation Pearson.
"""

from __future__ import annotations

import json
import logging
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from r3lm.baselines.common import (
    check_cell_types,
    finite_or_none,
    read_edges,
    resolve_settings,
    source,
    write_outputs,
)
from r3lm.errors import InputError, require_file
from r3lm.io import write_json
from r3lm.predictions import ROW_COLUMNS, read_rows
from r3lm.stats import pearson

log = logging.getLogger(__name__)

CARD_COLUMNS = [*ROW_COLUMNS, "card_json"]
EXTRA_FEATURES = ("gc_content", "length")
TOP_COEFFICIENTS = 10
MODEL_FILE = "model.json"


@dataclass
class CellRidge:
    """One cell type's ridge, in standardised feature units (weight = effect of one train SD)."""

    alpha: float
    mean: np.ndarray
    scale: np.ndarray
    weights: np.ndarray
    intercept: float
    train_rows: int
    val_pearson: float

    def predict(self, features: np.ndarray) -> np.ndarray:
        return ((features - self.mean) / self.scale) @ self.weights + self.intercept


@dataclass
class MotifRidge:
    families: list[str]
    families_dropped: int
    cells: dict[str, CellRidge]

    @property
    def feature_names(self) -> list[str]:
        return [*self.families, *EXTRA_FEATURES]

    def top_coefficients(self, cell_type: str, n: int = TOP_COEFFICIENTS) -> list[dict[str, Any]]:
        """The n largest weights by magnitude, signed: what the model credits (+) or blames (-)."""
        weights = self.cells[cell_type].weights
        order = np.argsort(-np.abs(weights), kind="stable")[:n]
        return [{"feature": self.feature_names[i], "weight": round(float(weights[i]), 6)} for i in order]


@dataclass
class CardFeatures:
    family_counts: list[Counter[str]]
    extras: np.ndarray  # (rows, len(EXTRA_FEATURES))

    def matrix(self, families: Sequence[str]) -> np.ndarray:
        index = {family: column for column, family in enumerate(families)}
        counts = np.zeros((len(self.family_counts), len(families)))
        for row, counter in enumerate(self.family_counts):
            for family, count in counter.items():
                if family in index:
                    counts[row, index[family]] = count
        return np.hstack([counts, self.extras])


def card_features(cards: pd.DataFrame) -> CardFeatures:
    """Family hit counts, GC content and length from each card_json; a malformed card is an InputError."""
    counters, extras = [], np.zeros((len(cards), len(EXTRA_FEATURES)))
    for row, text in enumerate(cards["card_json"]):
        try:
            card = json.loads(text)
            counter: Counter[str] = Counter()
            for motif in card["motifs"]:
                counter.update(part.strip() for part in str(motif.get("family") or "").split(";") if part.strip())
            extras[row] = [float(card["gc_content"]), float(card.get("length") or len(card["sequence"]))]
        except (TypeError, ValueError, KeyError, AttributeError) as error:
            detail = f"missing key {error}" if isinstance(error, KeyError) else str(error).splitlines()[0]
            raise InputError(f"malformed card: {detail}", path=source(cards), row=row + 1,
                             column="card_json") from None
        counters.append(counter)
    return CardFeatures(counters, extras)


def _vocabulary(cards: pd.DataFrame, features: CardFeatures, min_count: int) -> tuple[list[str], int]:
    """Families hit in at least min_count distinct train sequences (each sequence has a card per cell type)."""
    seen: Counter[str] = Counter()
    for first, counter in zip(~cards["id"].duplicated().to_numpy(), features.family_counts):
        if first:
            seen.update(counter.keys())
    kept = sorted(family for family, count in seen.items() if count >= min_count)
    return kept, len(seen) - len(kept)


def _fit_cell(x_train: np.ndarray, y_train: np.ndarray, x_val: np.ndarray, y_val: np.ndarray,
              alphas: Sequence[float], cell_type: str) -> CellRidge:
    """Ridge on train-standardised features with a free intercept; every alpha from one eigendecomposition."""
    mean = x_train.mean(axis=0)
    scale = x_train.std(axis=0)
    scale[scale == 0] = 1.0  # a constant feature standardises to 0 and gets weight 0
    x = (x_train - mean) / scale
    intercept = float(y_train.mean())  # with centred features the unpenalised intercept is the mean
    eigenvalues, vectors = np.linalg.eigh(x.T @ x)
    projected = vectors.T @ (x.T @ (y_train - intercept))
    x_held = (x_val - mean) / scale
    fits = []
    for alpha in alphas:
        weights = vectors @ (projected / (eigenvalues + alpha))
        fits.append((pearson(y_val, x_held @ weights + intercept), alpha, weights))
    scored = [fit for fit in fits if np.isfinite(fit[0])]
    if scored:
        score, alpha, weights = max(scored, key=lambda fit: fit[0])  # the first (smallest) alpha wins ties
    else:
        log.warning("%s: validation Pearson undefined for every alpha (no or constant val rows); using the "
                    "largest alpha %g", cell_type, alphas[-1])
        score, alpha, weights = fits[-1]
    return CellRidge(float(alpha), mean, scale, weights, intercept, len(y_train), score)


def fit_motif_ridge(settings: Mapping[str, Any], train_cards: pd.DataFrame, val_cards: pd.DataFrame) -> MotifRidge:
    """One ridge per train cell type on the family vocabulary of the train cards."""
    settings = resolve_settings(settings, "motif_ridge")
    alphas = sorted(float(alpha) for alpha in settings["alphas"])
    if not alphas or alphas[0] <= 0:
        raise InputError(f"alphas must be a non-empty list of positive numbers, found {settings['alphas']}",
                         column="alphas")
    train_features, val_features = card_features(train_cards), card_features(val_cards)
    families, dropped = _vocabulary(train_cards, train_features, int(settings["min_count"]))
    log.info("vocabulary: %d families hit in >= %d train sequences; %d rarer families dropped",
             len(families), settings["min_count"], dropped)
    x_train, x_val = train_features.matrix(families), val_features.matrix(families)
    y_train, y_val = train_cards["activity"].to_numpy(float), val_cards["activity"].to_numpy(float)
    cells = {}
    for cell_type in sorted(train_cards["cell_type"].unique()):
        train_rows = (train_cards["cell_type"] == cell_type).to_numpy() & np.isfinite(y_train)
        val_rows = (val_cards["cell_type"] == cell_type).to_numpy()
        if not train_rows.any():
            raise InputError(f"no train row of cell type {cell_type!r} has a measured activity",
                             path=source(train_cards), column="activity")
        cells[cell_type] = _fit_cell(x_train[train_rows], y_train[train_rows], x_val[val_rows], y_val[val_rows],
                                     alphas, cell_type)
        log.info("%s: alpha %g, val Pearson %.3f on %d val rows", cell_type, cells[cell_type].alpha,
                 cells[cell_type].val_pearson, val_rows.sum())
    return MotifRidge(families, dropped, cells)


def predict_motif_ridge(model: MotifRidge, cards: pd.DataFrame) -> np.ndarray:
    """Predicted activity for each card row, by its cell type's ridge."""
    check_cell_types(cards, list(model.cells), "cell types the ridge was trained on")
    x = card_features(cards).matrix(model.families)
    predicted = np.empty(len(cards))
    for cell_type, index in cards.groupby("cell_type", sort=False).indices.items():
        predicted[index] = model.cells[cell_type].predict(x[index])
    return predicted


def save_motif_ridge(model: MotifRidge, path: str | Path) -> None:
    """JSON, not pickle: a bundle's model is read back without running code from the file."""
    cells = {cell: {"alpha": fit.alpha, "mean": fit.mean.tolist(), "scale": fit.scale.tolist(),
                    "weights": fit.weights.tolist(), "intercept": fit.intercept, "train_rows": fit.train_rows,
                    "val_pearson": finite_or_none(fit.val_pearson)} for cell, fit in model.cells.items()}
    write_json({"families": model.families, "families_dropped": model.families_dropped, "cells": cells}, path)


def load_motif_ridge(path: str | Path) -> MotifRidge:
    file = require_file(path, "motif ridge model")
    try:
        saved = json.loads(file.read_text())
        cells = {cell: CellRidge(float(fit["alpha"]), np.asarray(fit["mean"], float), np.asarray(fit["scale"], float),
                                 np.asarray(fit["weights"], float), float(fit["intercept"]), int(fit["train_rows"]),
                                 float("nan") if fit["val_pearson"] is None else float(fit["val_pearson"]))
                 for cell, fit in saved["cells"].items()}
        return MotifRidge(list(saved["families"]), int(saved["families_dropped"]), cells)
    except (ValueError, KeyError, TypeError) as error:
        raise InputError(f"not a motif ridge model ({error!r})", path=file) from None


def run_motif_ridge(settings: Mapping[str, Any], train_path: str | Path, val_path: str | Path,
                    test_paths: Sequence[str | Path], summary_path: str | Path, out_dir: str | Path) -> dict[str, Any]:
    """The workflow step: fit on the train cards, choose alpha on val, predict every test card row."""
    started = time.perf_counter()
    settings = resolve_settings(settings, "motif_ridge")
    train, val = read_rows(train_path, CARD_COLUMNS), read_rows(val_path, CARD_COLUMNS)
    tests = [read_rows(path, CARD_COLUMNS) for path in test_paths]
    if not tests:
        raise InputError("no test tables given")
    edges = read_edges(summary_path, sorted(set().union(*(set(test["cell_type"]) for test in tests))))
    model = fit_motif_ridge(settings, train, val)
    predicted = [predict_motif_ridge(model, test) for test in tests]
    save_motif_ridge(model, Path(out_dir) / MODEL_FILE)  # for `package-baseline`, before summary.json marks completion
    summary = {
        "method": "motif_ridge",
        "settings": settings,
        "train_cards": str(train_path),
        "train_rows": {cell: fit.train_rows for cell, fit in model.cells.items()},
        "alpha": {cell: fit.alpha for cell, fit in model.cells.items()},
        "val_pearson": {cell: finite_or_none(fit.val_pearson) for cell, fit in model.cells.items()},
        "n_features": len(model.feature_names),
        "n_families": len(model.families),
        "families_dropped": model.families_dropped,
        "coefficients": "ridge weights on train-standardised features: change in activity per train SD",
        "top_coefficients": {cell: model.top_coefficients(cell) for cell in model.cells},
        "seconds": round(time.perf_counter() - started, 2),
    }
    write_outputs(tests, predicted, edges, out_dir, summary)
    return summary
