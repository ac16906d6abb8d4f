"""Cross-fitted evidence (reasoning.evidence.cross_fit_folds): when Stage II trains on every train card
(reasoning.sets.stage2_train null, the paper's Stage II), no train card can be kept out of the evidence, so
each one is described by evidence computed without its own fold.

Why: a card's evidence tags and the grounded teacher's statistics about it come from the train split's
labels. A Stage-II row described by evidence its own label went into carries a little of that label into
the features Stage II learns from, and so into the score it is selected on. Cross-fitting keeps every row
(the paper trains on all 82k) while no row's description uses its label. Validation and test cards keep the
evidence of the whole train split, as before.

A card's fold follows from its id alone (crc32 modulo the number of folds), so the evidence, the tags and
the teacher agree on it without passing a table between steps.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import pandas as pd

from r3lm.errors import InputError

WHOLE_SPLIT = -1  # the fold number of the evidence computed from every train card


def cross_fit_folds(config: Mapping[str, Any]) -> int | None:
    """The number of folds when the evidence is cross-fitted, None when the Stage-II rows are simply left out
    of it (a sized stage2_train) or the evidence is computed in-sample (exclude_stage2_train off)."""
    settings = config["reasoning"]
    if settings["evidence"]["exclude_stage2_train"] and settings["sets"]["stage2_train"] is None:
        return settings["evidence"]["cross_fit_folds"]
    return None


def fold_of(ids: Iterable[object], n_folds: int) -> np.ndarray:
    return np.array([zlib.crc32(str(card_id).encode()) % n_folds for card_id in ids], dtype=int)


def card_folds(cards: pd.DataFrame, n_folds: int) -> np.ndarray:
    """Each card's fold: train cards by id, every other split WHOLE_SPLIT (described by all train cards)."""
    if "split" not in cards:
        raise InputError("cross-fitted evidence needs each card's split: the card table has no column split",
                         column="split")
    train = (cards["split"] == "train").to_numpy()
    return np.where(train, fold_of(cards["id"], n_folds), WHOLE_SPLIT)
