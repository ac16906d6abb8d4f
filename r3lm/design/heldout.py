"""The held-out oracle: a second CNN that judges designs made on the first, so that a design which only fools
the model it was made on shows up as one.

It has the cnn baseline's architecture and schedule but its own training seed, and it trains and stops on its
own division of the train and validation sequences: it shares neither initialisation nor early-stopping data
with the design oracle. The test split stays out of both, so natural test sequences can measure how far the
two oracles agree before any design is judged.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pandas as pd

from r3lm.data.splits import deal_groups


def heldout_division(train: pd.DataFrame, val: pd.DataFrame, *, split_seed: int, val_fraction: float,
                     group_regex: str | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The train and validation rows divided anew by sequence group (every cell type of a sequence, and every
    sequence of a group, on one side: the dataset's split `group_regex`, so that an element and its reverse
    complement never train and stop the oracle at once): `val_fraction` of the groups, drawn with
    `split_seed`, to stop on, the rest to train on."""
    rows = pd.concat([train, val], ignore_index=True)
    rank = deal_groups(rows["id"], group_regex, split_seed)
    on_stopping = rank < max(1, round(val_fraction * (int(rank.max()) + 1)))
    return rows[~on_stopping].assign(split="train"), rows[on_stopping].assign(split="val")


def heldout_settings(cnn_settings: Mapping[str, Any], seed: int) -> dict[str, Any]:
    """The cnn baseline's settings with the held-out oracle's seed, trained once (no cross-validation: one
    model judges the designs)."""
    return {**cnn_settings, "seed": seed, "cross_validation": {**cnn_settings["cross_validation"], "folds": None}}
