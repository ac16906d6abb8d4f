"""Gosai et al. 2024 Supplementary Table 2 on its real rows: file:// download, BODA2 filters, chromosome split."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from conftest import read_outputs, read_text_table, write_text_table, written_files

from r3lm.config import validate_config
from r3lm.data.download import download
from r3lm.data.prepare import prepare_dataset
from r3lm.errors import InputError

NAME = "DATA-Table_S2__MPRA_dataset.txt"
CELLS = ("K562", "HepG2", "SKNSH")
CHR7_ID = "7:70038969:G:T:A:wC"
DELETION_ID = "15:89574440:GT:G:A:wC"  # the 199 bp allele
HEADER = ["IDs", "chr", "data_project", "OL", "class", "K562_log2FC", "HepG2_log2FC", "SKNSH_log2FC",
          "K562_lfcSE", "HepG2_lfcSE", "SKNSH_lfcSE", "sequence"]


def gosai_config(**gosai2024: Any) -> dict[str, Any]:
    dataset: dict[str, Any] = {"name": "g", "source": "gosai2024"}
    if gosai2024:
        dataset["gosai2024"] = gosai2024
    return validate_config({"dataset": dataset})


def positive(dropped: dict[str, int]) -> dict[str, int]:
    return {reason: count for reason, count in dropped.items() if count}


@pytest.fixture(scope="module")
def raw(gosai_rows: Path) -> pd.DataFrame:
    frame = read_text_table(gosai_rows)
    assert list(frame.columns) == HEADER and len(frame) == 10
    return frame


@pytest.fixture(scope="module")
def prepared(gosai_rows: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The real rows fetched through a file:// URL into the workflow's resources path, then prepared."""
    root = tmp_path_factory.mktemp("gosai")
    result = download([gosai_rows.as_uri()], root / "resources" / "gosai2024" / NAME, progress=False)
    assert result.path.read_bytes() == gosai_rows.read_bytes()
    summary = prepare_dataset(gosai_config(), root / "out", source_path=result.path)
    tables, written = read_outputs(root / "out")
    assert written == json.loads(json.dumps(summary))
    return {"summary": summary, "tables": tables, "input": result.path}


def test_download_then_prepare_filters_the_deletion_allele(prepared: dict[str, Any], raw: pd.DataFrame) -> None:
    summary, tables = prepared["summary"], prepared["tables"]
    assert len(raw.loc[raw["IDs"] == DELETION_ID, "sequence"].iloc[0]) == 199
    assert positive(summary["dropped"]) == {"sequence_wrong_length": 1}
    kept_ids = set(pd.concat(tables[name] for name in ("train", "val", "test"))["id"])
    assert kept_ids == set(raw["IDs"]) - {DELETION_ID}
    assert summary["input"] == {"path": str(prepared["input"]), "rows": 10}
    assert summary["source"] == "gosai2024" and summary["cell_types"] == list(CELLS)
    assert summary["split"]["method"] == "chromosome"


def test_chr7_row_is_test_in_every_cell_type(prepared: dict[str, Any]) -> None:
    tables, summary = prepared["tables"], prepared["summary"]
    test = tables["test"]
    assert set(test["id"]) == {CHR7_ID}
    assert sorted(test["cell_type"]) == sorted(CELLS)
    assert (test["chrom"] == "chr7").all() and (test["split"] == "test").all()
    assert CHR7_ID not in set(tables["train"]["id"]) | set(tables["val"]["id"])
    assert summary["rows"] == {"train": dict.fromkeys(CELLS, 8), "val": dict.fromkeys(CELLS, 0),
                               "test": dict.fromkeys(CELLS, 1), "test_subset": dict.fromkeys(CELLS, 1)}
    assert summary["sequences"] == {"train": 8, "val": 0, "test": 1, "test_subset": 1}
    assert tables["test_subset"].equals(tables["test"])


def test_long_format_activities_and_lfcse_are_the_table_values(prepared: dict[str, Any], raw: pd.DataFrame) -> None:
    long = pd.concat(prepared["tables"][name] for name in ("train", "val", "test"))
    assert list(long.columns[:7]) == ["id", "sequence", "cell_type", "activity", "level", "split", "chrom"]
    assert {"lfcse", "data_project", "OL", "class"} <= set(long.columns)
    assert long.groupby("id")["cell_type"].apply(lambda cells: sorted(cells) == sorted(CELLS)).all()
    assert len(long) == 3 * 9
    source = raw.set_index("IDs")
    for row in long.itertuples():
        assert row.activity == float(source.loc[row.id, f"{row.cell_type}_log2FC"])
        assert row.lfcse == float(source.loc[row.id, f"{row.cell_type}_lfcSE"])
        assert row.sequence == source.loc[row.id, "sequence"]
        assert row.chrom == f"chr{source.loc[row.id, 'chr']}"
    # one sequence, one split, for all its cell types
    assert (long.groupby("id")["split"].nunique() == 1).all()


def test_levels_come_from_train_quantiles_per_cell_type(prepared: dict[str, Any]) -> None:
    tables, summary = prepared["tables"], prepared["summary"]
    for cell in CELLS:
        train = tables["train"][tables["train"]["cell_type"] == cell]
        edges = np.quantile(train["activity"].to_numpy(), [0.25, 0.5, 0.75])
        np.testing.assert_allclose(summary["levels"]["edges"][cell], edges)
        assert (train["level"].to_numpy() == np.searchsorted(edges, train["activity"].to_numpy(), side="right")).all()
        assert summary["levels"]["counts"]["train"][cell] == [2, 2, 2, 2]
        test = tables["test"][tables["test"]["cell_type"] == cell]
        expected = np.searchsorted(edges, test["activity"].to_numpy(), side="right")
        assert test["level"].tolist() == expected.tolist()
    # the chr7 row's HepG2 activity (0.2336) sits between the HepG2 train edges 1 and 2
    hepg2 = tables["test"].set_index("cell_type").loc["HepG2"]
    assert hepg2["level"] == 1


def test_lfcse_filter_drops_values_not_below_one(raw: pd.DataFrame, tmp_path: Path) -> None:
    edited = raw.copy()
    edited.loc[1, "HepG2_lfcSE"] = "1.2"
    edited.loc[2, "HepG2_lfcSE"] = "1.0"  # the filter is max lfcSE < 1.0, so exactly 1.0 goes
    edited.loc[4, "SKNSH_lfcSE"] = "0.9999"  # just below stays
    path = write_text_table(edited, tmp_path / NAME)
    summary = prepare_dataset(gosai_config(), tmp_path / "out", source_path=path)
    assert positive(summary["dropped"]) == {"max_lfcse_not_below_1": 2, "sequence_wrong_length": 1}
    tables, _ = read_outputs(tmp_path / "out")
    kept = set(pd.concat(tables.values())["id"])
    assert raw.loc[1, "IDs"] not in kept and raw.loc[2, "IDs"] not in kept and len(kept) == 7
    assert raw.loc[4, "IDs"] in kept
    # a looser threshold keeps both
    summary = prepare_dataset(gosai_config(max_lfcse=1.5), tmp_path / "loose", source_path=path)
    assert positive(summary["dropped"]) == {"sequence_wrong_length": 1}


def test_chromosome_names_are_normalised(raw: pd.DataFrame, tmp_path: Path) -> None:
    edited = raw.copy()
    edited.loc[1, "chr"] = "chr19"
    edited.loc[2, "chr"] = "X"
    edited.loc[5, "chr"] = "chr7"
    path = write_text_table(edited, tmp_path / NAME)
    prepare_dataset(gosai_config(), tmp_path / "out", source_path=path)
    tables, summary = read_outputs(tmp_path / "out")
    assert set(tables["val"]["id"]) == {raw.loc[1, "IDs"], raw.loc[2, "IDs"]}
    assert set(tables["val"]["chrom"]) == {"chr19", "chrX"}
    assert set(tables["test"]["id"]) == {CHR7_ID, raw.loc[5, "IDs"]}
    assert summary["sequences"]["val"] == 2


def test_rows_without_chromosome_go_to_train_or_are_dropped(raw: pd.DataFrame, tmp_path: Path) -> None:
    edited = raw.copy()
    edited.loc[[0, 2], "chr"] = ""  # the chr7 row becomes unplaced too
    path = write_text_table(edited, tmp_path / NAME)
    prepare_dataset(gosai_config(), tmp_path / "default", source_path=path)
    tables, summary = read_outputs(tmp_path / "default")
    assert {CHR7_ID, raw.loc[2, "IDs"]} <= set(tables["train"]["id"])
    assert tables["train"].set_index("id").loc[CHR7_ID, "chrom"].isna().all()
    assert "no_chromosome" not in summary["dropped"]

    edited.loc[4, "chr"] = "chr7"  # keep one test row so the test split is not empty
    path = write_text_table(edited, tmp_path / "drop" / NAME)
    config = gosai_config(split={"method": "chromosome", "unplaced": "drop"})
    summary = prepare_dataset(config, tmp_path / "drop" / "out", source_path=path)
    tables, _ = read_outputs(tmp_path / "drop" / "out")
    kept = set(pd.concat(tables.values())["id"])
    assert positive(summary["dropped"]) == {"no_chromosome": 2, "sequence_wrong_length": 1}
    assert kept.isdisjoint({CHR7_ID, raw.loc[2, "IDs"]}) and len(kept) == 7
    assert set(tables["test"]["id"]) == {raw.loc[4, "IDs"]}


def test_partial_gosai_split_keeps_the_chromosome_method() -> None:
    """Giving one split key must not switch the Gosai split to the generic default (random)."""
    config = gosai_config(split={"unplaced": "drop"})
    assert config["dataset"]["gosai2024"]["split"]["method"] == "chromosome"
    assert config["dataset"]["gosai2024"]["split"]["test_chromosomes"] == ["chr7", "chr13"]
    table = validate_config({"dataset": {"source": "table", "table": {"split": {"seed": 4}}}})
    assert table["dataset"]["table"]["split"]["method"] == "random"


def test_missing_measurement_is_dropped_and_counted(raw: pd.DataFrame, tmp_path: Path) -> None:
    edited = raw.copy()
    assert raw.loc[3, "IDs"] == DELETION_ID
    edited.loc[2, "K562_log2FC"] = "NA"
    edited.loc[6, "SKNSH_lfcSE"] = ""
    path = write_text_table(edited, tmp_path / NAME)
    summary = prepare_dataset(gosai_config(), tmp_path / "out", source_path=path)
    assert positive(summary["dropped"]) == {"missing_measurement": 2, "sequence_wrong_length": 1}
    assert summary["sequences"]["train"] == 6


def test_bad_gosai_inputs_name_file_row_column(raw: pd.DataFrame, tmp_path: Path, expect_input_error) -> None:
    edited = raw.copy()
    edited.loc[4, "HepG2_log2FC"] = "abc"
    path = write_text_table(edited, tmp_path / "bad" / NAME)
    expect_input_error(gosai_config(), path=path, row=5, column="HepG2_log2FC", source_path=path,
                       contains="not a number: 'abc'")

    path = write_text_table(raw.drop(columns="HepG2_lfcSE"), tmp_path / "missing" / NAME)
    expect_input_error(gosai_config(), path=path, row=None, column="HepG2_lfcSE", source_path=path)

    duplicated = pd.concat([raw, raw.iloc[[1]]], ignore_index=True)
    path = write_text_table(duplicated, tmp_path / "dup" / NAME)
    message = expect_input_error(gosai_config(), path=path, row=11, column="IDs", source_path=path)
    assert "repeats row 2" in message
    config = validate_config({"dataset": {"name": "g", "source": "gosai2024", "on_duplicate_id": "drop"}})
    summary = prepare_dataset(config, tmp_path / "dup" / "out", source_path=path)
    assert positive(summary["dropped"]) == {"duplicate_id": 1, "sequence_wrong_length": 1}

    with pytest.raises(InputError, match="needs its input file"):
        prepare_dataset(gosai_config(), tmp_path / "none")
    assert written_files(tmp_path / "none") == []


def test_sequence_with_n_is_dropped_by_the_boda2_filter(raw: pd.DataFrame, tmp_path: Path) -> None:
    edited = raw.copy()
    sequence = edited.loc[6, "sequence"]
    edited.loc[6, "sequence"] = sequence[:50] + "N" + sequence[51:]
    edited.loc[7, "sequence"] = sequence.lower()  # soft-masked case is accepted
    path = write_text_table(edited, tmp_path / NAME)
    summary = prepare_dataset(gosai_config(), tmp_path / "out", source_path=path)
    assert positive(summary["dropped"]) == {"sequence_not_acgt": 1, "sequence_wrong_length": 1}
    tables, _ = read_outputs(tmp_path / "out")
    lowered = pd.concat(tables.values()).set_index("id").loc[edited.loc[7, "IDs"], "sequence"]
    assert (lowered == sequence).all()
