"""Bring-your-own MPRA tables: every real Agarwal 2025 file, csv/parquet/BED inputs, and every bad input."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from conftest import (
    LEFT_ADAPTOR,
    OUTPUT_FILES,
    RIGHT_ADAPTOR,
    assert_input_error,
    hepg2_table,
    random_sequences,
    read_outputs,
    read_text_table,
    table_config,
    write_text_table,
    written_files,
)

from r3lm.data.prepare import prepare_dataset
from r3lm.data.tables import read_table
from r3lm.errors import InputError

SPLITS = ("train", "val", "test")
JOINT_CELLS = ("HepG2", "K562", "WTC11")


def all_rows(tables: dict[str, pd.DataFrame]) -> pd.DataFrame:
    return pd.concat([tables[name] for name in SPLITS], ignore_index=True)


def positive(dropped: dict[str, int]) -> dict[str, int]:
    return {reason: count for reason, count in dropped.items() if count}


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def wtc11_table(path: Path, **overrides: Any) -> dict[str, Any]:
    table = {"path": str(path), "id_column": "seq_id", "sequence_column": "seq",
             "activity_columns": {"WTC11": "mean_value"}, "trim": {"left": 15, "right": 15},
             "sequence_length": 200, "split": {"method": "random", "group_regex": "_[FR]$"}}
    table.update(overrides)
    return table


def joint_table(path: Path, **overrides: Any) -> dict[str, Any]:
    table = {"path": str(path), "id_column": "name", "sequence_column": "seq",
             "activity_columns": {cell: cell for cell in JOINT_CELLS},
             "trim": {"left": LEFT_ADAPTOR, "right": RIGHT_ADAPTOR}, "sequence_length": 200}
    table.update(overrides)
    return table


# ------------------------------------------------------------------ the real Agarwal files

@pytest.fixture(scope="module")
def hepg2_raw(hepg2_path: Path) -> pd.DataFrame:
    return read_text_table(hepg2_path)


@pytest.fixture(scope="module")
def hepg2_prepared(hepg2_path: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    out = tmp_path_factory.mktemp("hepg2") / "out"
    summary = prepare_dataset(table_config(hepg2_table(hepg2_path)), out)
    tables, _ = read_outputs(out)
    return {"summary": summary, "tables": tables, "out": out}


def test_hepg2_adaptors_trimmed_to_the_200bp_element(hepg2_prepared: dict[str, Any], hepg2_raw: pd.DataFrame) -> None:
    long = all_rows(hepg2_prepared["tables"])
    assert len(long) == len(hepg2_raw) == 12_292
    assert (long["sequence"].str.len() == 200).all()
    source = hepg2_raw.set_index("seq_id")
    expected = source.loc[long["id"], "seq"].str.slice(15, -15).to_numpy()
    assert (long["sequence"].to_numpy() == expected).all()
    np.testing.assert_array_equal(long["activity"].to_numpy(), source.loc[long["id"], "mean_value"].astype(float))
    assert (long["cell_type"] == "HepG2").all()
    summary = hepg2_prepared["summary"]
    assert positive(summary["dropped"]) == {}
    assert summary["input"]["rows"] == 12_292 and summary["cell_types"] == ["HepG2"]


def test_hepg2_reverse_orientation_stays_with_its_element(hepg2_prepared: dict[str, Any]) -> None:
    tables, summary = hepg2_prepared["tables"], hepg2_prepared["summary"]
    split_of = {row.id: name for name in SPLITS for row in tables[name][["id"]].itertuples()}
    forward = [name for name in split_of if not name.endswith("_Reversed:")]
    assert len(forward) == 6146
    assert all(split_of[name] == split_of[f"{name}_Reversed:"] for name in forward)
    # groups are split 80/10/10: round(0.1 * 6146) = 615 elements, two rows each
    assert summary["sequences"] == {"train": 2 * 4916, "val": 2 * 615, "test": 2 * 615, "test_subset": 100}
    assert summary["rows"]["test_subset"] == {"HepG2": 100}
    assert set(tables["test_subset"]["id"]) <= set(tables["test"]["id"])


def test_hepg2_levels_are_quartiles_of_train(hepg2_prepared: dict[str, Any]) -> None:
    tables, summary = hepg2_prepared["tables"], hepg2_prepared["summary"]
    train = tables["train"]["activity"].to_numpy()
    edges = np.quantile(train, [0.25, 0.5, 0.75])
    np.testing.assert_allclose(summary["levels"]["edges"]["HepG2"], edges)
    shares = np.bincount(tables["train"]["level"], minlength=4) / len(train)
    np.testing.assert_allclose(shares, 0.25, atol=0.01)
    for name in ("val", "test"):
        part = tables[name]
        assert part["level"].tolist() == np.searchsorted(edges, part["activity"], side="right").tolist()


def test_wtc11_forward_reverse_pairs_trimmed_by_length(wtc11_path: Path, tmp_path: Path) -> None:
    raw = read_text_table(wtc11_path)
    summary = prepare_dataset(table_config(wtc11_table(wtc11_path), name="wtc11"), tmp_path / "out")
    tables, _ = read_outputs(tmp_path / "out")
    long = all_rows(tables)
    assert len(long) == len(raw) == 4617
    source = raw.set_index("seq_id")
    assert (long["sequence"].to_numpy() == source.loc[long["id"], "seq"].str.slice(15, -15).to_numpy()).all()
    split_of = dict(zip(long["id"], long["split"]))
    pairs = [name[:-2] for name in split_of if name.endswith("_F")]
    assert len(pairs) == 2306
    assert all(split_of[f"{stem}_F"] == split_of[f"{stem}_R"] for stem in pairs)
    groups = 2306 + 5  # five shuffled controls have no partner
    per_split = {name: len({re.sub("_[FR]$", "", i) for i in tables[name]["id"]}) for name in SPLITS}
    assert per_split == {"train": groups - 2 * 231, "val": 231, "test": 231}  # round(0.1 * 2311) = 231
    assert summary["sequences"]["val"] + summary["sequences"]["test"] + summary["sequences"]["train"] == 4617


def test_joint_library_three_cell_types_in_long_format(joint_path: Path, tmp_path: Path) -> None:
    raw = read_text_table(joint_path)
    summary = prepare_dataset(table_config(joint_table(joint_path), name="joint"), tmp_path / "out")
    tables, _ = read_outputs(tmp_path / "out")
    long = all_rows(tables)
    assert len(long) == 3 * len(raw) == 3 * 3076
    assert summary["cell_types"] == list(JOINT_CELLS)
    assert (long.groupby("id")["cell_type"].nunique() == 3).all()
    assert (long.groupby("id")["split"].nunique() == 1).all()
    source = raw.set_index("name")
    for cell in JOINT_CELLS:
        rows = long[long["cell_type"] == cell]
        np.testing.assert_array_equal(rows["activity"].to_numpy(), source.loc[rows["id"], cell].astype(float))
        train = tables["train"][tables["train"]["cell_type"] == cell]
        edges = np.quantile(train["activity"], [0.25, 0.5, 0.75])
        np.testing.assert_allclose(summary["levels"]["edges"][cell], edges)
        np.testing.assert_allclose(np.bincount(train["level"], minlength=4) / len(train), 0.25, atol=0.01)
        assert summary["levels"]["counts"]["train"][cell] == np.bincount(train["level"], minlength=4).tolist()
    # levels are per cell type: the same sequence can sit in different levels in different cells
    pivot = tables["train"].pivot(index="id", columns="cell_type", values="level")
    assert (pivot["HepG2"] != pivot["WTC11"]).any()
    assert summary["rows"]["test_subset"] == dict.fromkeys(JOINT_CELLS, 100)


def test_joint_library_keep_only_some_cell_types(joint_path: Path, tmp_path: Path) -> None:
    summary = prepare_dataset(table_config(joint_table(joint_path), cell_types=["WTC11"]), tmp_path / "out")
    tables, _ = read_outputs(tmp_path / "out")
    assert set(all_rows(tables)["cell_type"]) == {"WTC11"}
    assert summary["cell_types"] == ["WTC11"]
    assert positive(summary["dropped"]) == {"cell_type_not_selected": 2 * 3076}
    assert list(summary["levels"]["edges"]) == ["WTC11"]


def test_separate_test_file(hepg2_raw: pd.DataFrame, tmp_path: Path, expect_input_error) -> None:
    main = write_text_table(hepg2_raw.iloc[:2000], tmp_path / "main.tsv")
    test = write_text_table(hepg2_raw.iloc[2000:2400], tmp_path / "test.tsv")
    split = {"method": "random", "group_regex": "(_Reversed:?)$"}
    message = expect_input_error(table_config(hepg2_table(main, test_path=str(test), split=split)),
                                 path="config", row=None, column=None)
    assert "dataset.table.split.test_fraction" in message

    config = table_config(hepg2_table(main, test_path=str(test), split={**split, "test_fraction": 0}))
    summary = prepare_dataset(config, tmp_path / "out")
    tables, _ = read_outputs(tmp_path / "out")
    assert set(tables["test"]["id"]) == set(hepg2_raw["seq_id"].iloc[2000:2400])
    assert tables["test"]["from_test_file"].all()
    assert not tables["train"]["from_test_file"].any() and not tables["val"]["from_test_file"].any()
    assert set(tables["train"]["id"]) | set(tables["val"]["id"]) == set(hepg2_raw["seq_id"].iloc[:2000])
    assert summary["sequences"]["val"] == 2 * 100  # round(0.1 * 1000 groups)
    assert summary["input"] == {"path": str(main), "rows": 2000, "test_path": str(test), "test_rows": 400}

    clash = write_text_table(hepg2_raw.iloc[[2000, 2001, 5]], tmp_path / "clash.tsv")
    message = expect_input_error(table_config(hepg2_table(main, test_path=str(clash), split={**split, "test_fraction": 0})),
                                 path=clash, row=3, column="seq_id")
    assert str(main) in message


def test_fold_split_from_a_fold_column(tmp_path: Path) -> None:
    n = 40
    frame = pd.DataFrame({"id": [f"s{i}" for i in range(n)], "sequence": random_sequences(n, 30),
                          "act": np.random.default_rng(0).normal(size=n).round(4), "fold": np.arange(n) % 4})
    path = write_text_table(frame, tmp_path / "folds.tsv")
    table = {"path": str(path), "id_column": "id", "activity_columns": {"K562": "act"},
             "split": {"method": "fold", "fold_column": "fold", "val_folds": [1], "test_folds": [2, "3"]}}
    summary = prepare_dataset(table_config(table), tmp_path / "out")
    tables, _ = read_outputs(tmp_path / "out")
    long = all_rows(tables)
    expected = {0: "train", 1: "val", 2: "test", 3: "test"}
    assert dict(zip(long["id"], long["split"])) == {f"s{i}": expected[i % 4] for i in range(n)}
    assert (long["fold"] == (long["id"].str[1:].astype(int) % 4).astype(str)).all()
    assert summary["sequences"] == {"train": 10, "val": 10, "test": 20, "test_subset": 20}


def test_fold_split_without_fold_column_is_an_error(tmp_path: Path) -> None:
    frame = pd.DataFrame({"id": ["a", "b", "c"], "sequence": random_sequences(3, 10), "act": ["1", "2", "3"],
                          "fold": ["0", "1", "2"]})
    path = write_text_table(frame, tmp_path / "folds.tsv")
    table = {"path": str(path), "id_column": "id", "activity_columns": {"K562": "act"},
             "split": {"method": "fold", "val_folds": [1], "test_folds": [2]}}
    with pytest.raises(InputError, match="fold_column"):
        prepare_dataset(table_config(table), tmp_path / "out")


def test_fold_split_on_a_float_fold_column(tmp_path: Path) -> None:
    n = 12
    frame = pd.DataFrame({"id": [f"s{i}" for i in range(n)], "sequence": random_sequences(n, 10),
                          "act": np.arange(n, dtype=float), "fold": [i % 3 for i in range(n - 1)] + [None]})
    frame.to_parquet(tmp_path / "folds.parquet")
    table = {"path": str(tmp_path / "folds.parquet"), "id_column": "id", "activity_columns": {"K562": "act"},
             "split": {"method": "fold", "fold_column": "fold", "val_folds": [1], "test_folds": [2]}}
    summary = prepare_dataset(table_config(table), tmp_path / "out")
    assert summary["sequences"]["val"] == 4 and summary["sequences"]["test"] == 3


def test_csv_and_parquet_give_the_same_tables_as_tsv(joint_path: Path, tmp_path: Path) -> None:
    raw = read_text_table(joint_path).iloc[:300]
    tsv = write_text_table(raw, tmp_path / "joint.tsv")
    csv = write_text_table(raw, tmp_path / "joint.csv", sep=",")
    parquet = tmp_path / "joint.parquet"
    raw.astype({cell: float for cell in JOINT_CELLS}).to_parquet(parquet)
    results = {}
    for path in (tsv, csv, parquet):
        prepare_dataset(table_config(joint_table(path)), tmp_path / path.suffix[1:])
        results[path.suffix] = read_outputs(tmp_path / path.suffix[1:])
    for suffix in (".csv", ".parquet"):
        for name in (*SPLITS, "test_subset"):
            pd.testing.assert_frame_equal(results[suffix][0][name], results[".tsv"][0][name])
        assert results[suffix][1]["input"]["path"].endswith(f"joint{suffix}")
        assert results[suffix][1]["levels"] == results[".tsv"][1]["levels"]
    assert len(all_rows(results[".parquet"][0])) == 900


def test_same_seed_same_files_other_seed_other_split(wtc11_path: Path, tmp_path: Path) -> None:
    for run in ("a", "b"):
        prepare_dataset(table_config(wtc11_table(wtc11_path)), tmp_path / run)
    for name in OUTPUT_FILES[:4]:
        assert digest(tmp_path / "a" / name) == digest(tmp_path / "b" / name)
    other = wtc11_table(wtc11_path, split={"method": "random", "group_regex": "_[FR]$", "seed": 1})
    prepare_dataset(table_config(other), tmp_path / "c")
    first, _ = read_outputs(tmp_path / "a")
    second, _ = read_outputs(tmp_path / "c")
    assert set(first["test"]["id"]) != set(second["test"]["id"])
    assert len(set(first["test"]["id"]) & set(second["test"]["id"])) < len(first["test"]) / 2
    assert digest(tmp_path / "a" / "train.parquet") != digest(tmp_path / "c" / "train.parquet")


# ------------------------------------------------------------------ BED regions cut from a genome

@pytest.fixture
def genome(tmp_path: Path) -> dict[str, Any]:
    chromosomes = {"chr1": random_sequences(1, 300, seed=1)[0], "chr2": random_sequences(1, 150, seed=2)[0]}
    soft_masked = chromosomes["chr1"][:100] + chromosomes["chr1"][100:140].lower() + chromosomes["chr1"][140:]
    path = tmp_path / "genome.fa"
    with path.open("w") as handle:
        for name, sequence in (("chr1", soft_masked), ("chr2", chromosomes["chr2"])):
            handle.write(f">{name} test\n")
            handle.writelines(sequence[i:i + 60] + "\n" for i in range(0, len(sequence), 60))
    return {"path": path, "chromosomes": chromosomes}


def reverse_complement(sequence: str) -> str:
    return sequence.translate(str.maketrans("ACGT", "TGCA"))[::-1]


REGIONS = [("chr1", 0, 20, "r1", 0, "+", "1.5"), ("chr1", 95, 115, "r2", 0, "-", "-0.5"),
           ("chr2", 130, 150, "r3", 0, "+", "2.0"), ("chr2", 10, 30, "r4", 0, "-", "0.25"),
           ("chr1", 280, 300, "r5", 0, ".", "0.75")]


def write_bed(path: Path, regions: list[tuple], header: str | None = None) -> Path:
    lines = ([header] if header else []) + ["\t".join(map(str, region)) for region in regions]
    path.write_text("\n".join(lines) + "\n")
    return path


def bed_table(path: Path, genome_path: Path, activity: str = "column7") -> dict[str, Any]:
    return {"path": str(path), "genome": str(genome_path), "id_column": "name", "chromosome_column": "chrom",
            "activity_columns": {"K562": activity}, "sequence_length": 20,
            "split": {"method": "random", "val_fraction": 0, "test_fraction": 0.2}}


def test_bed_regions_are_cut_and_minus_strand_reverse_complemented(genome: dict[str, Any], tmp_path: Path) -> None:
    bed = write_bed(tmp_path / "regions.bed", REGIONS)
    summary = prepare_dataset(table_config(bed_table(bed, genome["path"])), tmp_path / "out")
    tables, _ = read_outputs(tmp_path / "out")
    long = all_rows(tables).set_index("id")
    for chrom, start, end, name, _, strand, activity in REGIONS:
        expected = genome["chromosomes"][chrom][start:end]
        if strand == "-":
            expected = reverse_complement(expected)
        assert long.loc[name, "sequence"] == expected
        assert long.loc[name, "activity"] == float(activity)
        assert long.loc[name, "chrom"] == chrom
    assert summary["input"]["rows"] == 5 and summary["sequences"]["test"] == 1

    # a '#' header line names the columns instead
    header = "#chrom\tstart\tend\tname\tscore\tstrand\tactivity"
    named = write_bed(tmp_path / "named.bed", REGIONS, header=header)
    prepare_dataset(table_config(bed_table(named, genome["path"], activity="activity")), tmp_path / "named")
    for name in (*SPLITS, "test_subset"):
        pd.testing.assert_frame_equal(read_outputs(tmp_path / "named")[0][name], tables[name])


def test_bed_region_past_the_end_or_on_an_unknown_chromosome(genome: dict[str, Any], tmp_path: Path,
                                                             expect_input_error) -> None:
    past_end = write_bed(tmp_path / "past.bed", [*REGIONS[:2], ("chr2", 140, 160, "bad", 0, "+", "1")])
    message = expect_input_error(table_config(bed_table(past_end, genome["path"])), path=past_end, row=3, column="end")
    assert "chr2:140-160" in message and "150" in message
    unknown = write_bed(tmp_path / "unknown.bed", [REGIONS[0], ("chr9", 0, 20, "bad", 0, "+", "1")])
    message = expect_input_error(table_config(bed_table(unknown, genome["path"])), path=unknown, row=2, column="chrom")
    assert "'chr9'" in message
    empty = write_bed(tmp_path / "empty_region.bed", [("chr1", 20, 20, "bad", 0, "+", "1")])
    expect_input_error(table_config(bed_table(empty, genome["path"])), path=empty, row=1, column="end")


# ------------------------------------------------------------------ bad inputs

@pytest.fixture
def small_wtc11(wtc11_path: Path) -> pd.DataFrame:
    """The first 60 real WTC11 rows as text, to edit."""
    return read_text_table(wtc11_path).iloc[:60].reset_index(drop=True)


def test_missing_column(wtc11_path: Path, expect_input_error) -> None:
    config = table_config(wtc11_table(wtc11_path, activity_columns={"WTC11": "activity"}))
    message = expect_input_error(config, path=wtc11_path, row=None, column="activity")
    assert "'seq_id', 'seq', 'mean_value'" in message
    config = table_config(wtc11_table(wtc11_path, sequence_column="sequence"))
    expect_input_error(config, path=wtc11_path, row=None, column="sequence")


@pytest.mark.parametrize("character", ["N", "R", "-"])
def test_foreign_characters_error_or_drop(small_wtc11: pd.DataFrame, tmp_path: Path, expect_input_error,
                                          character: str) -> None:
    edited = small_wtc11.copy()
    sequence = edited.loc[6, "seq"]
    edited.loc[6, "seq"] = sequence[:34] + character + sequence[35:]  # element position 20 after the adaptor
    path = write_text_table(edited, tmp_path / "bad.tsv")
    message = expect_input_error(table_config(wtc11_table(path)), path=path, row=7, column="seq")
    assert f"{character!r} at position 20" in message
    summary = prepare_dataset(table_config(wtc11_table(path), on_invalid_sequence="drop"), tmp_path / "out")
    assert positive(summary["dropped"]) == {"sequence_not_acgt": 1}
    assert edited.loc[6, "seq_id"] not in set(all_rows(read_outputs(tmp_path / "out")[0])["id"])
    assert sum(summary["sequences"][name] for name in SPLITS) == 59


def test_wrong_length_error_or_drop(small_wtc11: pd.DataFrame, tmp_path: Path, expect_input_error) -> None:
    edited = small_wtc11.copy()
    edited.loc[8, "seq"] = edited.loc[8, "seq"][:100] + edited.loc[8, "seq"][101:]
    edited.loc[20, "seq"] = edited.loc[20, "seq"][:100] + "ACG" + edited.loc[20, "seq"][100:]
    path = write_text_table(edited, tmp_path / "bad.tsv")
    message = expect_input_error(table_config(wtc11_table(path)), path=path, row=9, column="seq")
    assert "199 bp, expected 200 bp" in message
    summary = prepare_dataset(table_config(wtc11_table(path), on_invalid_sequence="drop"), tmp_path / "out")
    assert positive(summary["dropped"]) == {"sequence_wrong_length": 2}
    # without a required length, any length is kept
    summary = prepare_dataset(table_config(wtc11_table(path, sequence_length=None)), tmp_path / "any")
    lengths = all_rows(read_outputs(tmp_path / "any")[0]).set_index("id")["sequence"].str.len()
    assert lengths[edited.loc[8, "seq_id"]] == 199 and lengths[edited.loc[20, "seq_id"]] == 203


def test_empty_tables(small_wtc11: pd.DataFrame, tmp_path: Path, expect_input_error) -> None:
    header_only = write_text_table(small_wtc11.iloc[:0], tmp_path / "header.tsv")
    assert header_only.read_text() == "seq_id\tseq\tmean_value\n"
    assert "table is empty" in expect_input_error(table_config(wtc11_table(header_only)),
                                                  path=header_only, row=None, column=None)
    zero = tmp_path / "zero.tsv"
    zero.write_bytes(b"")
    assert "table is empty" in expect_input_error(table_config(wtc11_table(zero)), path=zero, row=None, column=None)
    zero_parquet = tmp_path / "zero.parquet"
    zero_parquet.write_bytes(b"")
    expect_input_error(table_config(wtc11_table(zero_parquet)), path=zero_parquet, row=None, column=None)
    empty_parquet = tmp_path / "empty.parquet"
    small_wtc11.iloc[:0].to_parquet(empty_parquet)
    assert "table is empty" in expect_input_error(table_config(wtc11_table(empty_parquet)),
                                                  path=empty_parquet, row=None, column=None)
    missing = tmp_path / "nowhere.tsv"
    assert "file not found" in expect_input_error(table_config(wtc11_table(missing)), path=missing, row=None,
                                                  column=None)


def test_duplicate_ids_error_or_drop(small_wtc11: pd.DataFrame, tmp_path: Path, expect_input_error) -> None:
    edited = small_wtc11.copy()
    edited.loc[11, "seq_id"] = edited.loc[2, "seq_id"]
    path = write_text_table(edited, tmp_path / "dup.tsv")
    message = expect_input_error(table_config(wtc11_table(path)), path=path, row=12, column="seq_id")
    assert f"{edited.loc[2, 'seq_id']!r} repeats row 3" in message
    summary = prepare_dataset(table_config(wtc11_table(path), on_duplicate_id="drop"), tmp_path / "out")
    assert positive(summary["dropped"]) == {"duplicate_id": 1}
    kept = all_rows(read_outputs(tmp_path / "out")[0]).set_index("id")
    assert kept.loc[edited.loc[2, "seq_id"], "activity"] == float(edited.loc[2, "mean_value"])
    assert len(kept) == 59


def test_non_numeric_activity(small_wtc11: pd.DataFrame, tmp_path: Path, expect_input_error) -> None:
    edited = small_wtc11.copy()
    edited.loc[4, "mean_value"] = "abc"
    path = write_text_table(edited, tmp_path / "bad.tsv")
    message = expect_input_error(table_config(wtc11_table(path)), path=path, row=5, column="mean_value")
    assert "not a number: 'abc'" in message


def test_missing_activity_dropped_and_counted_per_cell_type(joint_path: Path, tmp_path: Path) -> None:
    raw = read_text_table(joint_path).iloc[:200].reset_index(drop=True)
    raw.loc[2, "K562"] = ""
    raw.loc[4, "WTC11"] = "NA"
    raw.loc[5, ["HepG2", "K562"]] = ["nan", " "]
    path = write_text_table(raw, tmp_path / "joint.tsv")
    summary = prepare_dataset(table_config(joint_table(path)), tmp_path / "out")
    assert positive(summary["dropped"]) == {"missing_activity:K562": 2, "missing_activity:WTC11": 1,
                                            "missing_activity:HepG2": 1}
    long = all_rows(read_outputs(tmp_path / "out")[0])
    cells = long.groupby("id")["cell_type"].apply(set)
    assert cells[raw.loc[2, "name"]] == {"HepG2", "WTC11"}
    assert cells[raw.loc[4, "name"]] == {"HepG2", "K562"}
    assert cells[raw.loc[5, "name"]] == {"WTC11"}
    assert len(long) == 3 * 200 - 4


def test_unknown_cell_type(joint_path: Path, expect_input_error) -> None:
    message = expect_input_error(table_config(joint_table(joint_path), cell_types=["K562", "Liver"]),
                                 path="config", row=None, column=None)
    assert "'Liver'" in message and "dataset.cell_types" in message and "HepG2, K562, WTC11" in message


def test_unknown_file_extension(small_wtc11: pd.DataFrame, tmp_path: Path, expect_input_error) -> None:
    path = write_text_table(small_wtc11, tmp_path / "table.xlsx")
    message = expect_input_error(table_config(wtc11_table(path)), path=path, row=None, column=None)
    assert "'.xlsx'" in message
    gz = tmp_path / "table.gz"
    gz.write_bytes(b"x")
    expect_input_error(table_config(wtc11_table(gz)), path=gz, row=None, column=None)


def test_adaptor_mismatch(hepg2_raw: pd.DataFrame, tmp_path: Path, expect_input_error) -> None:
    edited = hepg2_raw.iloc[:40].reset_index(drop=True)
    edited.loc[3, "seq"] = "T" + edited.loc[3, "seq"][1:]
    edited.loc[7, "seq"] = edited.loc[7, "seq"][:-1] + "T"
    path = write_text_table(edited, tmp_path / "bad.tsv")
    split = {"method": "random", "group_regex": "(_Reversed:?)$"}
    message = expect_input_error(table_config(hepg2_table(path, split=split)), path=path, row=4, column="seq")
    assert f"does not start with the left adaptor {LEFT_ADAPTOR}" in message
    right_only = hepg2_table(path, split=split, trim={"left": 15, "right": RIGHT_ADAPTOR.lower()})
    message = expect_input_error(table_config(right_only), path=path, row=8, column="seq")
    assert f"does not end with the right adaptor {RIGHT_ADAPTOR}" in message
    summary = prepare_dataset(table_config(hepg2_table(path, split=split), on_invalid_sequence="drop"),
                              tmp_path / "out")
    assert positive(summary["dropped"]) == {"adaptor_left_missing": 1, "adaptor_right_missing": 1}
    # trimming by length does not look at the bases
    prepare_dataset(table_config(hepg2_table(path, split=split, trim={"left": 15, "right": 15})), tmp_path / "len")
    assert sum(read_outputs(tmp_path / "len")[1]["sequences"][name] for name in SPLITS) == 40


def test_sequence_not_longer_than_the_adaptors(small_wtc11: pd.DataFrame, tmp_path: Path, expect_input_error) -> None:
    edited = small_wtc11.copy()
    edited.loc[1, "seq"] = "ACGTACGTACGTACGTACGTACGTACGTAC"  # 30 bp = 15 + 15
    path = write_text_table(edited, tmp_path / "bad.tsv")
    message = expect_input_error(table_config(wtc11_table(path, sequence_length=None)), path=path, row=2,
                                 column="seq")
    assert "not longer than the adaptors" in message


def test_read_table_keeps_ids_as_text(tmp_path: Path) -> None:
    path = write_text_table(pd.DataFrame({"id": ["007", "NA", ""], "x": ["1", "2", "3"]}), tmp_path / "t.csv",
                            sep=",")
    assert read_table(path)["id"].tolist() == ["007", "NA", ""]


def test_summary_counts_every_input_row_when_the_last_is_dropped(small_wtc11: pd.DataFrame, tmp_path: Path) -> None:
    edited = small_wtc11.copy()
    edited.loc[59, "seq"] = "N" * 230
    path = write_text_table(edited, tmp_path / "bad.tsv")
    summary = prepare_dataset(table_config(wtc11_table(path), on_invalid_sequence="drop"), tmp_path / "out")
    assert summary["input"]["rows"] == 60


def test_every_row_dropped_is_an_input_error(small_wtc11: pd.DataFrame, tmp_path: Path) -> None:
    edited = small_wtc11.copy()
    edited["seq"] = "N" * 230
    path = write_text_table(edited, tmp_path / "bad.tsv")
    with pytest.raises(InputError):
        prepare_dataset(table_config(wtc11_table(path), on_invalid_sequence="drop"), tmp_path / "out")
    assert written_files(tmp_path / "out") == []


def test_missing_activity_columns_mapping_is_a_config_error(wtc11_path: Path, expect_input_error) -> None:
    message = expect_input_error(table_config(wtc11_table(wtc11_path, activity_columns={})), path="config", row=None,
                                 column=None)
    assert "activity_columns" in message
    message = expect_input_error(table_config({"activity_columns": {"A": "a"}}), path="config", row=None, column=None)
    assert "dataset.table.path" in message


def test_bad_input_in_a_separate_test_file_names_that_file(small_wtc11: pd.DataFrame, tmp_path: Path,
                                                           expect_input_error) -> None:
    main = write_text_table(small_wtc11.iloc[:40], tmp_path / "main.tsv")
    test = small_wtc11.iloc[40:].reset_index(drop=True)
    test.loc[3, "mean_value"] = "high"
    test_path = write_text_table(test, tmp_path / "test.tsv")
    split = {"method": "random", "group_regex": "_[FR]$", "test_fraction": 0}
    expect_input_error(table_config(wtc11_table(main, test_path=str(test_path), split=split)), path=test_path, row=4,
                       column="mean_value")
    assert_input_error(InputError("x", path=test_path, row=4, column="mean_value"), path=test_path, row=4,
                       column="mean_value")
