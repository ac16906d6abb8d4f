"""Activity levels (equal-frequency bins fixed on train) and the three split methods."""

from __future__ import annotations

import copy
from collections import Counter
from typing import Any

import numpy as np
import pandas as pd
import pytest

from r3lm.config import validate_config
from r3lm.data.levels import assign_levels, level_edges
from r3lm.data.splits import assign_splits
from r3lm.errors import InputError


def split_settings(**overrides: Any) -> dict[str, Any]:
    """The schema's defaults for a split, with overrides."""
    config = validate_config({"dataset": {"source": "table", "table": {"split": overrides}}})
    return copy.deepcopy(config["dataset"]["table"]["split"])


def units(ids: list[str], chrom: list[str | None] | None = None, fold: list[str] | None = None,
          from_test_file: list[bool] | None = None) -> pd.DataFrame:
    frame = pd.DataFrame({"id": ids, "chrom": chrom or [None] * len(ids), "fold": fold or [None] * len(ids)})
    if from_test_file is not None:
        frame["from_test_file"] = from_test_file
    return frame


# ---------------------------------------------------------------- levels

@pytest.mark.parametrize("n_levels", [2, 4, 5])
def test_level_edges_are_train_quantiles_and_bins_hold_equal_shares(n_levels: int) -> None:
    train = np.random.default_rng(1).normal(size=10_000)
    edges = level_edges(train, n_levels)
    assert len(edges) == n_levels - 1
    np.testing.assert_allclose(edges, np.quantile(train, np.arange(1, n_levels) / n_levels))
    assert edges == sorted(edges)
    counts = np.bincount(assign_levels(train, edges), minlength=n_levels)
    assert len(counts) == n_levels
    assert np.abs(counts - len(train) / n_levels).max() <= 1


def test_assign_levels_value_on_an_edge_goes_up_and_extremes_are_clamped() -> None:
    edges = [-1.0, 0.0, 2.5]
    activity = np.array([-1.0, np.nextafter(-1.0, -2), 0.0, np.nextafter(0.0, -1), 2.5, 2.4999, -50.0, 50.0])
    assert assign_levels(activity, edges).tolist() == [1, 0, 2, 1, 3, 2, 0, 3]
    assert assign_levels(activity, edges).dtype == np.int8


def test_levels_on_other_data_use_the_train_edges() -> None:
    train = np.arange(100, dtype=float)
    edges = level_edges(train, 4)
    assert assign_levels(np.array([-5.0, 24.0, 25.0, 1000.0]), edges).tolist() == [0, 0, 1, 3]


def test_level_edges_need_train_rows() -> None:
    with pytest.raises(ValueError):
        level_edges(np.array([]), 4)


# ---------------------------------------------------------------- random split

def test_random_split_ignores_row_order() -> None:
    ids = [f"seq{i}" for i in range(500)]
    settings = split_settings(seed=3)
    first = assign_splits(units(ids), settings, config_key="dataset.table", drops=Counter())
    shuffled_ids = list(np.random.default_rng(9).permutation(ids))
    second = assign_splits(units(shuffled_ids), settings, config_key="dataset.table", drops=Counter())
    assert dict(zip(ids, first)) == dict(zip(shuffled_ids, second))
    assert set(first) == {"train", "val", "test"}


def test_random_split_fractions_and_seed() -> None:
    ids = [f"seq{i}" for i in range(1000)]
    split = assign_splits(units(ids), split_settings(val_fraction=0.1, test_fraction=0.2),
                          config_key="dataset.table", drops=Counter())
    assert Counter(split) == {"train": 700, "val": 100, "test": 200}
    other = assign_splits(units(ids), split_settings(val_fraction=0.1, test_fraction=0.2, seed=1),
                          config_key="dataset.table", drops=Counter())
    assert Counter(other) == Counter(split)
    assert (other != split).sum() > 100


def test_random_split_keeps_groups_together() -> None:
    elements = [f"el{i}" for i in range(300)]
    ids = elements + [f"{name}_Reversed:" for name in elements]
    split = assign_splits(units(ids), split_settings(group_regex="(_Reversed:?)$"),
                          config_key="dataset.table", drops=Counter())
    by_id = dict(zip(ids, split))
    assert all(by_id[name] == by_id[f"{name}_Reversed:"] for name in elements)
    assert Counter(by_id[name] for name in elements) == {"train": 240, "val": 30, "test": 30}
    # without the regex the two orientations are split independently
    loose = dict(zip(ids, assign_splits(units(ids), split_settings(), config_key="dataset.table", drops=Counter())))
    assert any(loose[name] != loose[f"{name}_Reversed:"] for name in elements)


def test_random_split_fractions_must_leave_train() -> None:
    with pytest.raises(InputError, match="val_fraction \\+ test_fraction"):
        assign_splits(units(["a", "b"]), split_settings(val_fraction=0.5, test_fraction=0.5),
                      config_key="dataset.table", drops=Counter())


def test_invalid_group_regex_is_an_input_error() -> None:
    with pytest.raises(InputError, match="group_regex") as caught:
        assign_splits(units(["a", "b"]), split_settings(group_regex="(["), config_key="dataset.table",
                      drops=Counter())
    assert caught.value.path == "config" and "\n" not in str(caught.value)


# ---------------------------------------------------------------- chromosome split

def test_chromosome_split_normalises_config_and_data_names() -> None:
    frame = units(["a", "b", "c", "d", "e", "f"], chrom=["chr19", "chrX", "chr7", "chr13", "chr1", "chr21"])
    settings = split_settings(method="chromosome", val_chromosomes=["19", "x", "Chr21"], test_chromosomes=["7", "chr13"])
    split = assign_splits(frame, settings, config_key="dataset.table", drops=Counter())
    assert split.tolist() == ["val", "val", "test", "test", "train", "val"]


@pytest.mark.parametrize("policy", ["train", "val", "test", "drop"])
def test_chromosome_split_unplaced_rows(policy: str) -> None:
    frame = units(["a", "b", "c"], chrom=["chr7", None, "chr2"])
    drops: Counter = Counter()
    split = assign_splits(frame, split_settings(method="chromosome", unplaced=policy),
                          config_key="dataset.gosai2024", drops=drops)
    assert split.iloc[0] == "test" and split.iloc[2] == "train"
    if policy == "drop":
        assert split.iloc[1] is None and drops == Counter({"no_chromosome": 1})
    else:
        assert split.iloc[1] == policy and not drops


def test_chromosome_split_errors() -> None:
    with pytest.raises(InputError, match="no row has a chromosome"):
        assign_splits(units(["a"]), split_settings(method="chromosome"), config_key="dataset.table", drops=Counter())
    with pytest.raises(InputError, match="in both val and test") as caught:
        assign_splits(units(["a"], chrom=["chr1"]),
                      split_settings(method="chromosome", val_chromosomes=["chr7"], test_chromosomes=["7"]),
                      config_key="dataset.table", drops=Counter())
    assert "dataset.table.split" in str(caught.value)


# ---------------------------------------------------------------- fold split and separate test file

def test_fold_split_and_its_errors() -> None:
    frame = units(["a", "b", "c", "d"], fold=["0", "1", "2", "3"])
    split = assign_splits(frame, split_settings(method="fold", fold_column="fold", val_folds=[1], test_folds=["2", 3]),
                          config_key="dataset.table", drops=Counter())
    assert split.tolist() == ["train", "val", "test", "test"]
    with pytest.raises(InputError, match="needs val_folds"):
        assign_splits(frame, split_settings(method="fold", fold_column="fold"), config_key="dataset.table", drops=Counter())
    with pytest.raises(InputError, match="in both val and test"):
        assign_splits(frame, split_settings(method="fold", fold_column="fold", val_folds=[1], test_folds=[1]),
                      config_key="dataset.table", drops=Counter())


def test_separate_test_file_rows_are_test_and_the_method_must_not_ask_for_test() -> None:
    frame = units([f"s{i}" for i in range(20)], from_test_file=[False] * 15 + [True] * 5)
    split = assign_splits(frame, split_settings(test_fraction=0), config_key="dataset.table", drops=Counter())
    assert (split.iloc[15:] == "test").all()
    assert set(split.iloc[:15]) <= {"train", "val"} and "train" in set(split.iloc[:15])
    with pytest.raises(InputError, match="dataset.table.split.test_fraction"):
        assign_splits(frame, split_settings(), config_key="dataset.table", drops=Counter())
    with pytest.raises(InputError, match="dataset.table.split.test_folds"):
        assign_splits(frame.assign(fold="1"), split_settings(method="fold", test_folds=[1]),
                      config_key="dataset.table", drops=Counter())
