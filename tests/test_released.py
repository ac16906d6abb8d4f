"""The released CRE-ReasonBench read in place of a teacher: a local folder in the official layout, built from
cards r3lm makes, with the records a real release can hold that r3lm cannot use."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from conftest import random_sequences

from r3lm.config import validate_config
from r3lm.errors import InputError
from r3lm.io import write_parquet
from r3lm.motifs.scan import background_for, build_motif_set, scan_sequences
from r3lm.rationale.format import compose
from r3lm.rcc.build import cards_for_table
from r3lm.rcc.card import CardSettings
from r3lm.reasoning.released import write_released_sets
from r3lm.reasoning.teacher import STAGE2_SETS, set_tables

CELLS = ("HepG2", "K562")
PER_SPLIT = {"train": 12, "val": 4, "test": 6}
FILES = {"stage1": "1000-reason-sharegpt-short-conclu.jsonl", "stage2": "82k+1k-with-reason-sharegpt.jsonl",
         "test": "100-as-test-sharegpt-with+reason.jsonl"}
SYSTEM = "You are a computational regulatory genomics expert specializing in {cell} cell line biology."


def _config(source: Path, **overrides: Any) -> dict[str, Any]:
    return validate_config({"reasoning": {"teacher": "released", "released": {"source": str(source)},
                                          "sets": {name: None for name in ("stage1_train", "stage1_val",
                                                                           "stage2_train", "stage2_val", "test")}},
                            **overrides})


def _rationale(card_json: str, number: int) -> str:
    names = [hit["name"] for hit in json.loads(card_json)["motifs"]] or ["no motif"]
    return compose([f"{names[step % len(names)]} is read in step {step}." for step in range(5)],
                   f"Conclusion: record {number}. Activity level: 1")


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Card tables for two cell types (a sequence is in one split for both) and their test subset."""
    root = tmp_path_factory.mktemp("released")
    config = _config(root)
    rng = np.random.default_rng(3)
    table = pd.DataFrame([{"id": f"{split}{index}", "cell_type": cell, "split": split}
                          for split, size in PER_SPLIT.items() for cell in CELLS for index in range(size)])
    ids = sorted(set(table["id"]))
    table["sequence"] = table["id"].map(dict(zip(ids, random_sequences(len(ids), 80, seed=4))))
    table["activity"], table["level"] = rng.normal(size=len(table)), rng.integers(0, 4, size=len(table))
    motifs = config["motifs"]
    hits = scan_sequences(table["id"].tolist(), table["sequence"].tolist(),
                          build_motif_set(motifs, background_for(motifs, [])), progress=False)
    cards = cards_for_table(table, hits, CardSettings.from_config(config["rcc"]), progress=False)
    parts = {split: cards[cards["split"] == split] for split in ("train", "val", "test")}
    parts["test_subset"] = cards[(cards["split"] == "test") & cards["id"].isin(["test0", "test1", "test2"])]
    paths = {name: root / f"cards_{name}.parquet" for name in parts}
    for name, part in parts.items():
        write_parquet(part, paths[name])
    return {"cards": cards, "paths": paths, "root": root}


def _write_release(dataset: dict[str, Any], folder: Path, test_ids: Sequence[str] | None = None
                   ) -> dict[str, list[dict[str, Any]]]:
    """Stage I from train (one test sequence slipped in, one card changed), Stage II from train and val plus a
    sequence the dataset lacks, the test file from the test split (`test_ids`, or all of it: in and outside r3lm's
    seeded subset)."""
    cards = dataset["cards"]
    written: dict[str, list[dict[str, Any]]] = {}
    for cell in CELLS:
        mine = cards[cards["cell_type"] == cell]
        test = mine[mine["split"] == "test"]
        chosen = {"stage1": pd.concat([mine[mine["split"] == "train"].head(8), mine[mine["id"] == "test5"]]),
                  "stage2": mine[mine["split"].isin(["train", "val"])],
                  "test": test if test_ids is None else test[test["id"].isin(test_ids)]}
        for kind, rows in chosen.items():
            records = [{"messages": [{"role": "system", "content": SYSTEM.format(cell=cell)},
                                     {"role": "user", "content": row.card_text},
                                     {"role": "assistant", "content": _rationale(row.card_json, number)}],
                        "expression_score": float(row.activity)}
                       for number, row in enumerate(rows.itertuples())]
            if kind == "stage1":  # the first card as another release's scan would write it
                records[0]["messages"][1]["content"] = records[0]["messages"][1]["content"].replace(
                    "GC Content: ", "GC Content: 0")
            if kind == "stage2":
                alien = records[0]["messages"][1]["content"].rsplit("\n", 1)[0] + "\n" + "A" * 80 + \
                    " (Total Length: 80)"
                records.insert(3, {**records[0], "messages": [records[0]["messages"][0],
                                                              {"role": "user", "content": alien},
                                                              records[0]["messages"][2]]})
            path = folder / cell / FILES[kind]
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text("".join(json.dumps(record) + "\n" for record in records))
            written[f"{cell}/{kind}"] = records
    return written


def test_released_records_become_the_teacher_sets_with_every_fate_counted(dataset, tmp_path):
    release = tmp_path / "Cre-ReasonBench"
    written = _write_release(dataset, release)
    summary = write_released_sets(_config(release), dataset["paths"], tmp_path / "out", progress=False)
    out = tmp_path / "out"
    per_cell = {"stage1": 9, "stage2": 17, "test": 6}
    assert summary["records"] == {cell: per_cell for cell in CELLS}
    assert summary["status"] == {"used": 2 * (8 + 16 + 6), "not_in_dataset": 2, "training_record_in_test_split": 2}
    assert summary["card_mismatches"] == {cell: {"stage1": 1} for cell in CELLS}
    assert summary["card_mismatch_examples"][0].endswith(f"HepG2/{FILES['stage1']}:1")
    assert json.loads((out / "released.summary.json").read_text()) == summary

    tables = {name: pd.read_parquet(out / f"{name}.parquet") for name in
              ("stage1_train", "stage1_val", "stage2_train", "stage2_val", "test")}
    # Stage I: no released record is in the val split, so a seeded share of train is held out (100 -> 1 of 8)
    for cell in CELLS:
        stage1 = pd.concat([tables["stage1_train"], tables["stage1_val"]])
        assert sorted(stage1.loc[stage1["cell_type"] == cell, "id"]) == sorted(f"train{i}" for i in range(8))
    assert tables["stage1_val"].groupby("cell_type").size().to_dict() == {cell: 1 for cell in CELLS}
    # Stage II: by r3lm's split, as any teacher's sets (Stage II may then validate on a seeded share of both)
    for cell in CELLS:
        for name, split, size in (("stage2_train", "train", 12), ("stage2_val", "val", 4)):
            mine = tables[name][tables[name]["cell_type"] == cell]
            assert sorted(mine["id"]) == sorted(f"{split}{i}" for i in range(size))
    assert sorted(tables["test"]["id"].unique()) == [f"test{i}" for i in range(6)]  # the test file, not r3lm's subset
    # each row carries the released rationale, r3lm's card and label, and whether the two cards agree
    row = tables["stage1_train"].iloc[0]
    line = int(row["source"].rsplit(":", 1)[1])
    record = written[f"{row['cell_type']}/stage1"][line - 1]
    assert row["rationale"] == record["messages"][2]["content"] and row["backend"] == "released"
    cards = dataset["cards"].set_index(["cell_type", "id"])
    assert row["card_text"] == cards.loc[(row["cell_type"], row["id"]), "card_text"]
    assert row["level"] == cards.loc[(row["cell_type"], row["id"]), "level"]
    assert (~tables["stage1_train"]["card_matches"]).sum() + (~tables["stage1_val"]["card_matches"]).sum() == 2
    for name, table in tables.items():
        saved = json.loads((out / f"{name}.summary.json").read_text())
        assert saved["rows"] == len(table) and saved["valid"] == int(table["valid"].sum())
        lines = sum(1 for path in (out / "sharegpt" / name).glob("*.jsonl") for _ in path.open())
        assert lines == int(table["valid"].sum())


def test_a_broken_release_is_an_error_naming_the_file_and_line(dataset, tmp_path):
    release = tmp_path / "release"
    _write_release(dataset, release)
    (release / "K562" / FILES["test"]).unlink()
    with pytest.raises(InputError, match=rf"K562/{re.escape(FILES['test'])}: no test file for K562"):
        write_released_sets(_config(release), dataset["paths"], tmp_path / "out", progress=False)
    _write_release(dataset, release)
    path = release / "HepG2" / FILES["stage2"]
    lines = path.read_text().splitlines()
    lines[2] = json.dumps({"messages": [{"role": "user", "content": "hello"}]})
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(InputError, match=rf"{re.escape(FILES['stage2'])}.*3.*no assistant message"):
        write_released_sets(_config(release), dataset["paths"], tmp_path / "out", progress=False)
    assert not (tmp_path / "out").exists()


def test_the_released_test_records_are_the_paper_protocols_test_set_and_stage2_scores_them(dataset, smollm2_dir,
                                                                                          tmp_path):
    """The official README samples its 100 test sequences per cell type itself (100-as-test-sharegpt-with+reason.jsonl,
    github DuanYi516/R3LM), independently of r3lm's seeded subset. A release whose test records are disjoint from
    that subset: the test set is the release's records, Stage II (frozen, official 90/10 validation) trains on the
    released Stage-II records and predicts exactly those test records, and the paper protocol, read from the test
    set as the workflow does in released mode, scores it on them."""
    from r3lm.evaluate.metrics import blocks
    from r3lm.io import write_json
    from r3lm.stage2.run import SetFiles, run_stage2

    subset = set(pd.read_parquet(dataset["paths"]["test_subset"])["id"])
    release = tmp_path / "release"
    _write_release(dataset, release, test_ids=["test3", "test4", "test5"])
    config = _config(release, stage2={"training": "frozen", "per_cell_type": False, "cutoff_len": 64,
                                      "frozen": {"epochs": 5}, "validation": {"rows": "random"}})
    config["reasoning"]["sets"] |= {"stage2_train": 3, "stage2_val": 1}
    out = tmp_path / "sets"
    write_released_sets(config, dataset["paths"], out, progress=False)
    test = pd.read_parquet(out / "test.parquet")
    assert not subset & set(test["id"]) and sorted(test["id"]) == sorted(["test3", "test4", "test5"] * 2)

    tables = set_tables(config["reasoning"]["teacher"])
    sets = {name.removeprefix("stage2_"): SetFiles(out / f"{name}.parquet", dataset["paths"][tables[name]])
            for name in STAGE2_SETS}
    summary_path = tmp_path / "summary.json"
    write_json({"levels": {"edges": {cell: [-0.5, 0.0, 0.5] for cell in CELLS}}}, summary_path)
    result = run_stage2(config, "rcc_only", smollm2_dir, sets, summary_path, tmp_path / "work", tmp_path / "pred",
                        progress=False)
    assert result["test_rows"] == 6 and result["val_rows"] == 2  # 4 rows per cell type: 3 train, 1 validates
    found, skipped = blocks({"rcc_only": tmp_path / "pred"}, dataset["paths"]["test"], out / "test.parquet")
    paper = [block for block in found if block.protocol == "paper"]
    assert [block.cell_type for block in paper] == list(CELLS)
    assert all(len(block.measured) == 3 and "rcc_only" in block.predicted for block in paper)
    assert set(skipped["protocol"]) == {"full"}  # the LLM method covers the test set, not the whole split
