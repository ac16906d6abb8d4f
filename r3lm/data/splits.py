"""Assign each sequence to train / val / test, once for all its cell types."""

from __future__ import annotations

import re
from collections import Counter
from typing import Any

import numpy as np
import pandas as pd

from r3lm.data.checks import normalize_chromosome
from r3lm.errors import InputError


def assign_splits(units: pd.DataFrame, split: dict[str, Any], *, config_key: str,
                  drops: Counter) -> pd.Series:
    """Split name per row of `units` (one row per sequence: id, chrom, fold, from_test_file).

    Rows from a separate test file are test; the split method then only makes train and val,
    and asking it for a test part as well is a configuration error rather than a silent choice.
    Rows the method cannot place are None (and counted in `drops`).
    """
    from_test_file = units["from_test_file"].to_numpy(dtype=bool) if "from_test_file" in units else np.zeros(len(units), bool)
    method = split["method"]
    if from_test_file.any():
        asks_for_test = {"random": split["test_fraction"] > 0, "chromosome": bool(split["test_chromosomes"]),
                         "fold": bool(split["test_folds"])}[method]
        if asks_for_test:
            key = {"random": "test_fraction", "chromosome": "test_chromosomes", "fold": "test_folds"}[method]
            raise InputError(f"{config_key}.split.{key} must be empty/0 when a separate test file is given: "
                             "the test rows come from that file", path="config")
    main = units[~from_test_file]
    if method == "chromosome":
        assigned = _by_chromosome(main, split, config_key=config_key, drops=drops)
    elif method == "fold":
        assigned = _by_fold(main, split, config_key=config_key)
    else:
        assigned = _at_random(main, split)
    result = pd.Series(None, index=units.index, dtype=object)
    result[~from_test_file] = assigned
    result[from_test_file] = "test"
    return result


def _by_chromosome(units: pd.DataFrame, split: dict[str, Any], *, config_key: str, drops: Counter) -> pd.Series:
    if units["chrom"].isna().all():
        raise InputError(f"{config_key}.split.method is 'chromosome' but no row has a chromosome "
                         "(set the chromosome column, or split by fold or at random)", path="config")
    val = {normalize_chromosome(name) for name in split["val_chromosomes"]}
    test = {normalize_chromosome(name) for name in split["test_chromosomes"]}
    if val & test:
        raise InputError(f"{config_key}.split: chromosomes {sorted(val & test)} are in both val and test", path="config")
    chrom = units["chrom"]
    assigned = pd.Series(np.where(chrom.isin(test), "test", np.where(chrom.isin(val), "val", "train")),
                         index=units.index, dtype=object)
    unplaced = chrom.isna()
    if unplaced.any():
        policy = split["unplaced"]
        if policy == "drop":
            drops["no_chromosome"] += int(unplaced.sum())
            assigned[unplaced] = None
        else:
            assigned[unplaced] = policy
    return assigned


def fold_key(value: object) -> str:
    """'1', 1, 1.0 and ' 1 ' are the same fold (a parquet int column with gaps reads as float)."""
    text = str(value).strip()
    try:
        number = float(text)
    except ValueError:
        return text
    return str(int(number)) if number.is_integer() else text


def _by_fold(units: pd.DataFrame, split: dict[str, Any], *, config_key: str) -> pd.Series:
    if not split["fold_column"]:
        raise InputError(f"{config_key}.split.method is 'fold' but {config_key}.split.fold_column is not set",
                         path="config")
    val = {fold_key(fold) for fold in split["val_folds"]}
    test = {fold_key(fold) for fold in split["test_folds"]}
    if not val and not test:
        raise InputError(f"{config_key}.split: fold splitting needs val_folds and/or test_folds", path="config")
    if val & test:
        raise InputError(f"{config_key}.split: folds {sorted(val & test)} are in both val and test", path="config")
    fold = units["fold"].map(fold_key)
    return pd.Series(np.where(fold.isin(test), "test", np.where(fold.isin(val), "val", "train")),
                     index=units.index, dtype=object)


def _at_random(units: pd.DataFrame, split: dict[str, Any]) -> pd.Series:
    """Seeded split of groups (ids minus `group_regex`), independent of row order."""
    if split["val_fraction"] + split["test_fraction"] >= 1:
        raise InputError("split: val_fraction + test_fraction must be below 1", path="config")
    rank = deal_groups(units["id"], split["group_regex"], split["seed"])
    groups = int(rank.max()) + 1 if len(rank) else 0
    n_test = round(split["test_fraction"] * groups)
    n_val = round(split["val_fraction"] * groups)
    return pd.Series(np.where(rank < n_test, "test", np.where(rank < n_test + n_val, "val", "train")),
                     index=units.index, dtype=object)


def deal_groups(ids: pd.Series, group_regex: str | None, seed: int) -> pd.Series:
    """A seeded rank (0..groups-1) per id, shared by the ids of a group (the id minus `group_regex`: an element
    and its reverse complement, say) and independent of row order. Every random division takes ranks, so a
    group never sits on both sides of one."""
    ids = ids.astype(str)
    groups = ids.str.replace(_compile_group_regex(group_regex), "", regex=True) if group_regex else ids
    unique = np.sort(groups.unique())
    rank = np.empty(len(unique), dtype=np.int64)
    rank[np.random.default_rng(seed).permutation(len(unique))] = np.arange(len(unique))
    return pd.Series(groups.map(dict(zip(unique, rank))).to_numpy(), index=ids.index)


def _compile_group_regex(pattern: str) -> re.Pattern:
    try:
        return re.compile(pattern)
    except re.error as error:
        raise InputError(f"split.group_regex {pattern!r} is not a valid regular expression: {error}",
                         path="config") from error
