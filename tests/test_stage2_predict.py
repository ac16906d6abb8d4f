"""A saved Stage-II model folder predicts new inputs exactly as run_stage2 predicted its test set, and motif
disruption scores a cot method's claims with it, on the real SmolLM2 and real JASPAR scans of tiny data."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import CELLS, STAGE2_MODE

from r3lm.errors import InputError
from r3lm.evaluate.disruption import TABLE_COLUMNS, run_disruption
from r3lm.llm.generate import ChatGenerator, Generation
from r3lm.predictions import read_predictions
from r3lm.rationale.claims import cited_motifs
from r3lm.rationale.format import compose
from r3lm.stage1 import writer
from r3lm.stage1.models import SHARED, Stage1Models
from r3lm.stage2.inputs import load_mode_rows
from r3lm.stage2.model import load_backbone
from r3lm.stage2.predict import Stage2Predictor


@pytest.fixture(scope="module")
def predictor(stage2_trained: dict[str, Any]) -> Stage2Predictor:
    return Stage2Predictor.load(stage2_trained["model"], device="cpu")


# a middle layer, mean-pooled, under a ridge head; in float32, which gives the same states in any batch (bfloat16 on
# a CPU with AMX does not: another batch shape rounds differently, by up to ~1e-2 here)
POOLED = {"layer": 20, "pooling": "mean", "frozen": {"head": "ridge"}, "dtype": "float32"}


@pytest.fixture(scope="module")
def stage2_pooled(smollm2_dir: Path, stage2_config: dict[str, Any], stage2_trained: dict[str, Any],
                  tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The fixture's run again on the same sets with stage2.layer, stage2.pooling and stage2.frozen.head set."""
    from r3lm.config import validate_config
    from r3lm.stage2.run import run_stage2

    root = tmp_path_factory.mktemp("stage2_pooled")
    settings = stage2_config["stage2"]
    config = validate_config({"stage2": {"training": "frozen", "per_cell_type": False,
                                         "cutoff_len": settings["cutoff_len"], **POOLED}})
    summary = run_stage2(config, STAGE2_MODE, smollm2_dir, stage2_trained["sets"], stage2_trained["data"] /
                         "summary.json", root / "work", root / "predictions", progress=False)
    return {**stage2_trained, "model": root / "work" / "model" / "shared", "models": root / "work" / "model",
            "predictions": root / "predictions", "summary": summary, "config": config}


@pytest.mark.parametrize("trained", ["stage2_trained", "stage2_pooled"])
def test_the_model_folder_reproduces_run_stage2s_test_predictions(trained, request):
    """The default (final layer, last token, AdamW head) and a middle layer mean-pooled under a ridge head: the
    folder records what the head read and predicts as the run did."""
    trained = request.getfixturevalue(trained)
    predictor = Stage2Predictor.load(trained["model"], device="cpu")
    written, _ = read_predictions(trained["predictions"])
    test = trained["sets"]["test"]
    rows = load_mode_rows(STAGE2_MODE, test.teacher_set, test.cards, test.rationales)
    expected = rows.merge(written[["id", "cell_type", "predicted"]], on=["id", "cell_type"], validate="one_to_one")
    predicted = predictor.predict(rows, batch_size=2)  # other batches than training: padding must not matter
    assert predictor.mode == STAGE2_MODE and predictor.cell_types == list(CELLS)
    pooled = "summary" in trained
    # float32 (the pooled run) must match exactly; bfloat16 (the default run's dtype on CPU) rounds differently
    # when the batch, and so the padding and the matmul shapes, change: within 0.02 on activities of ~0.3
    assert np.allclose(predicted, expected["predicted"], rtol=0, atol=1e-4 if pooled else 2e-2)
    assert np.std(predicted) > 0
    info = predictor.info
    assert (info["layer"], info["pooling"], info["head"]) == ((20, "mean", "ridge") if pooled
                                                              else (None, "last_token", "adam"))
    assert (info["ridge_alpha"] is not None) == pooled
    if pooled:
        assert trained["summary"]["groups"]["shared"]["ridge_alpha"] == info["ridge_alpha"]


def test_a_folder_written_before_layer_and_pooling_reads_the_default(stage2_pooled, predictor, tmp_path):
    """stage2.json without layer and pooling (an older folder) reads the final layer's last token; the pooled
    folder's head on that representation predicts otherwise, so the keys are read."""
    folder = shutil.copytree(stage2_pooled["model"], tmp_path / "model")
    info = json.loads((folder / "stage2.json").read_text())
    (folder / "stage2.json").write_text(json.dumps({key: value for key, value in info.items()
                                                    if key not in ("layer", "pooling")}))
    old = Stage2Predictor.load(folder, device="cpu")
    assert old.representation == predictor.representation
    test = stage2_pooled["sets"]["test"]
    rows = load_mode_rows(STAGE2_MODE, test.teacher_set, test.cards, test.rationales)
    assert not np.allclose(old.predict(rows), Stage2Predictor.load(stage2_pooled["model"], device="cpu").predict(rows),
                           atol=1e-3)


def test_a_lora_adapter_in_the_folder_is_applied(smollm2_dir, stage2_config, stage2_trained, tmp_path):
    """A folder with adapter/ predicts as the in-memory LoRA backbone it was saved from (B made non-zero, so the
    adapter changes the output)."""
    torch.manual_seed(0)
    lora = load_backbone(smollm2_dir, torch.float32, "cpu", lora=stage2_config["stage2"]["lora"])
    for name, parameter in lora.named_parameters():
        if "lora_B" in name:
            parameter.data.normal_(std=0.02)
    folder = shutil.copytree(stage2_trained["model"], tmp_path / "model")
    lora.save_pretrained(folder / "adapter")
    test = stage2_trained["sets"]["test"]
    rows = load_mode_rows(STAGE2_MODE, test.teacher_set, test.cards, test.rationales).iloc[:1]
    in_float32 = Stage2Predictor.load(stage2_trained["model"], device="cpu", dtype="float32")  # as the LoRA above
    in_memory = replace(in_float32, backbone=lora.eval()).predict(rows)
    loaded = Stage2Predictor.load(folder, device="cpu", dtype="float32").predict(rows)
    written, _ = read_predictions(stage2_trained["predictions"])
    frozen = rows[["id", "cell_type"]].merge(written, on=["id", "cell_type"])["predicted"]
    assert np.allclose(loaded, in_memory, rtol=0, atol=1e-5)
    assert not np.allclose(loaded, frozen, rtol=0, atol=1e-3)


@pytest.mark.parametrize("change", ["no head", "no stage2.json", "unknown mode"])
def test_an_incomplete_model_folder_is_an_input_error_naming_it(stage2_trained, tmp_path, change):
    folder = shutil.copytree(stage2_trained["model"], tmp_path / "model")
    if change == "no head":
        (folder / "head.pt").unlink()
    elif change == "no stage2.json":
        (folder / "stage2.json").unlink()
    else:
        info = json.loads((folder / "stage2.json").read_text())
        (folder / "stage2.json").write_text(json.dumps({**info, "mode": "dna_only"}))
    with pytest.raises(InputError, match="head.pt|stage2.json|unknown Stage II input mode") as caught:
        Stage2Predictor.load(folder)
    assert str(folder) in str(caught.value)


def test_a_cell_type_the_model_never_saw_is_an_input_error(predictor):
    rows = pd.DataFrame({"cell_type": ["HepG2", "WTC11"], "card_text": ["x", "y"], "sequence": ["ACGT", "ACGT"],
                         "rationale": ["", ""]})
    with pytest.raises(InputError, match="WTC11"):
        predictor.predict(rows)
    with pytest.raises(InputError, match="rationale"):
        predictor.predict(rows.drop(columns="rationale"))


def _disrupt(stage2_config: dict[str, Any], stage2_trained: dict[str, Any], out: Path, **options: Any
             ) -> tuple[pd.DataFrame, pd.DataFrame]:
    return run_disruption(stage2_config, {"shared": stage2_trained["model"]}, stage2_trained["predictions"],
                          stage2_trained["sets"]["test"].cards, out / "pairs.tsv", out / "summary.tsv", progress=False,
                          **options)


@pytest.fixture(scope="module")
def kept(stage2_config: dict[str, Any], stage2_trained: dict[str, Any], tmp_path_factory: pytest.TempPathFactory
         ) -> tuple[pd.DataFrame, pd.DataFrame, Path]:
    """Disruption with the original rationales, one sequence per cell type."""
    out = tmp_path_factory.mktemp("kept")
    return (*_disrupt(stage2_config, stage2_trained, out, max_sequences=1, seed=3), out)


def test_disruption_moves_predictions_and_counts_every_cited_motif(stage2_trained, kept):
    table, summary, out = kept
    assert list(table.columns) == TABLE_COLUMNS
    assert set(table["claimed"]) <= {-1, 0, 1} and {-1, 1} <= set(table["claimed"])
    directed = table[table["claimed"] != 0]
    assert np.isfinite(directed["delta"]).all() and (directed["delta"] != 0).any()
    assert np.allclose(directed["delta"], directed["disrupted"] - directed["original"])
    assert table.loc[table["claimed"] == 0, "delta"].isna().all()
    assert table.groupby("cell_type")["id"].nunique().eq(1).all()
    written, _ = read_predictions(stage2_trained["predictions"])
    originals = table.drop_duplicates(["cell_type", "id"]).merge(written, on=["cell_type", "id"])
    # bfloat16 sums in an order that follows the batch's shape and the threads' split: ~5e-4 apart under load
    assert np.allclose(originals["original"], originals["predicted"], atol=2e-3)
    cards = pd.read_parquet(stage2_trained["sets"]["test"].cards).merge(written, on=["id", "cell_type"])
    claims = {(row.cell_type, row.id): cited_motifs(row.rationale, row.card_json) for row in cards.itertuples()}
    for row in table.itertuples():
        assert claims[(row.cell_type, row.id)][row.motif] == row.claimed
    overall = summary.set_index("cell_type").loc["all"]
    assert overall["pairs"] == len(directed) and overall["skipped"] == (table["claimed"] == 0).sum()
    assert pd.read_csv(out / "pairs.tsv", sep="\t").shape == table.shape
    assert pd.read_csv(out / "summary.tsv", sep="\t")["cell_type"].tolist() == [*CELLS, "all"]


def test_disruption_with_regenerated_rationales(stage2_config, stage2_trained, kept, tmp_path, monkeypatch):
    """Each cell type's Stage-I model sees the rebuilt card of its own disrupted sequences and Stage II reads the
    new rationale (a recording stand-in for the generator: real generation is tested in test_generate.py)."""
    seen: list[tuple[str, list[dict[str, str]]]] = []
    well_formed = compose([f"Step {number} finds nothing." for number in range(1, 6)], "Conclusion: Activity level: 0")

    def open_generator(model, settings, dtype, device, gpu_share=None):
        def generate(conversations, *, progress=True, grammar=None):
            seen.extend((Path(model).name, conversation) for conversation in conversations)
            return [Generation(well_formed, 30, False) for _ in conversations]
        return ChatGenerator("stub", generate, 16, {})

    monkeypatch.setattr(writer, "open_generator", open_generator)
    models = Stage1Models({cell: str(tmp_path / f"stage1_{cell}") for cell in CELLS})
    for folder in models.by_group.values():
        Path(folder).mkdir()
    table, _ = _disrupt(stage2_config, stage2_trained, tmp_path, max_sequences=1, seed=3, regenerate=True,
                        stage1_models=models)
    original = kept[0]
    directed = table[table["claimed"] != 0]
    assert len(seen) == len(directed) and np.isfinite(directed["delta"]).all()
    assert sorted(name for name, _ in seen) == sorted(f"stage1_{cell}" for cell in directed["cell_type"])
    stored = set(pd.read_parquet(stage2_trained["sets"]["test"].cards)["card_text"])
    for name, (system, user) in seen:
        card = user["content"].removesuffix("\n\nExplain the regulatory activity of this sequence.")
        assert system["content"].startswith("You are an expert") and "Identified Motifs:" in card
        assert f"Cell Type: {name.removeprefix('stage1_')}" in card and card not in stored
    assert np.allclose(table["original"], original["original"])
    assert not np.allclose(directed["disrupted"], original.loc[original["claimed"] != 0, "disrupted"], atol=1e-4)


def test_disruption_refuses_settings_that_did_not_build_the_cards(stage2_config, stage2_trained, tmp_path):
    with_tags = {**stage2_config, "rcc": {**stage2_config["rcc"], "grammar_tags": True}}
    with pytest.raises(InputError, match="grammar_tags=True"):
        _disrupt(with_tags, stage2_trained, tmp_path, max_sequences=1)
    with pytest.raises(InputError, match="regenerate"):
        _disrupt(stage2_config, stage2_trained, tmp_path, max_sequences=1, regenerate=True)
    assert not (tmp_path / "pairs.tsv").exists()


NO_MOTIFS = "Identified Motifs:\n\n"  # a card without hits: nothing under the header


def test_self_rationales_for_several_sets_load_the_model_once(stage2_config, stage2_trained, tmp_path,
                                                             tmp_path_factory, monkeypatch):
    """One model load and one generation pass for every set; each set gets its own table (in its own row
    order) and summary, the guided rewrite covers only the broken replies, and the resume file goes."""
    from r3lm.stage1.rationales import RationaleSet, write_self_rationales

    opened: list[str] = []
    calls: list[tuple[int, bool]] = []
    good = compose([f"Step {number} finds nothing." for number in range(1, 6)], "Conclusion: Activity level: 2")

    def generate(conversations, *, progress=True, grammar=None):
        calls.append((len(conversations), grammar is not None))
        # the free attempt breaks the format on cards without motifs; the grammar repairs it
        return [Generation(good if grammar or NO_MOTIFS not in user["content"] else "no think", 20, False,
                           guided=grammar is not None)
                for _, user in conversations]

    def open_generator(model, settings, dtype, device, gpu_share=None):
        opened.append(str(model))
        return ChatGenerator("stub", generate, 64, {})

    monkeypatch.setattr(writer, "open_generator", open_generator)
    sets = [RationaleSet(stage2_trained["sets"][split].teacher_set, stage2_trained["sets"][split].cards,
                         tmp_path / f"{split}.parquet", tmp_path / f"{split}.summary.json") for split in ("train", "test")]
    model = tmp_path_factory.mktemp("stage1-model")
    summaries = write_self_rationales(stage2_config, Stage1Models({SHARED: str(model)}), sets, progress=False)
    assert opened == [str(model)]
    rows = {split: pd.read_parquet(stage2_trained["sets"][split].teacher_set) for split in ("train", "test")}
    assert calls[0] == (sum(map(len, rows.values())), False)
    broken = sum(int((frame["card_text"].str.contains(NO_MOTIFS, regex=False)).sum()) for frame in rows.values())
    assert calls[1:] == ([(broken, True)] if broken else [])
    for split, summary in zip(("train", "test"), summaries):
        table = pd.read_parquet(tmp_path / f"{split}.parquet")
        assert table[["id", "cell_type"]].equals(rows[split][["id", "cell_type"]].reset_index(drop=True))
        assert (table["stated_level"] == 2).all()
        assert table["guided"].tolist() == rows[split]["card_text"].str.contains(NO_MOTIFS, regex=False).tolist()
        assert summary["rows"] == len(table) and summary["guided"] == int(table["guided"].sum())
        assert json.loads((tmp_path / f"{split}.summary.json").read_text()) == summary
    assert sorted(path.name for path in tmp_path.iterdir()) == sorted(
        f"{split}{suffix}" for split in ("train", "test") for suffix in (".parquet", ".summary.json"))


def test_per_cell_type_models_write_their_own_rows_and_the_jobs_merge(stage2_config, stage2_trained, tmp_path,
                                                                     monkeypatch):
    """Per-cell-type Stage I: each job loads its cell type's model for that cell type's rows alone; the merge
    puts the set back in the teacher table's order and summarises it as one job would have."""
    from r3lm.stage1.rationales import (
        RationaleSet,
        merge_rationales,
        rationale_summary,
        write_self_rationales,
    )

    def open_generator(model, settings, dtype, device, gpu_share=None):
        level = CELLS.index(Path(model).name)  # each model states its own level, so rows show who wrote them
        text = compose([f"Step {number} finds nothing." for number in range(1, 6)],
                       f"Conclusion: Activity level: {level}")
        return ChatGenerator("stub", lambda conversations, **_: [Generation(text, 20, False) for _ in conversations],
                             64, {})

    monkeypatch.setattr(writer, "open_generator", open_generator)
    teacher = stage2_trained["sets"]["test"]
    for cell in CELLS:
        (tmp_path / cell).mkdir()
        write_self_rationales(stage2_config, Stage1Models({cell: str(tmp_path / cell)}),
                              [RationaleSet(teacher.teacher_set, teacher.cards, tmp_path / cell / "test.parquet",
                                            tmp_path / cell / "test.summary.json")], progress=False)
        assert set(pd.read_parquet(tmp_path / cell / "test.parquet")["cell_type"]) == {cell}
    tables = [tmp_path / cell / "test.parquet" for cell in CELLS]
    summaries = [tmp_path / cell / "test.summary.json" for cell in CELLS]
    summary = merge_rationales(stage2_config, tables, summaries, teacher.teacher_set, tmp_path / "test.parquet",
                               tmp_path / "test.summary.json")
    merged = pd.read_parquet(tmp_path / "test.parquet")
    expected = pd.read_parquet(teacher.teacher_set)[["id", "cell_type"]].reset_index(drop=True)
    assert merged[["id", "cell_type"]].equals(expected)
    assert (merged["stated_level"] == merged["cell_type"].map(CELLS.index)).all()
    assert summary["rows"] == len(merged) and summary["models"] == [f"{cell}={tmp_path / cell}" for cell in CELLS]
    assert summary == {**rationale_summary(merged, stage2_config, backend="stub", models=summary["models"],
                                           seconds=summary["seconds"])}
    agree = int((merged["level"] == merged["stated_level"]).sum())
    assert summary["level_agreement"] == {"with_level": len(merged), "agree": agree, "fraction": agree / len(merged)}
    with pytest.raises(InputError, match=f"do not cover this set's rows \\(cell types {CELLS[1]}\\)"):
        merge_rationales(stage2_config, tables[:1], summaries[:1], teacher.teacher_set, tmp_path / "x.parquet",
                         tmp_path / "x.json")
    with pytest.raises(InputError, match="comes from two jobs"):
        merge_rationales(stage2_config, tables + tables[:1], summaries + summaries[:1], teacher.teacher_set,
                         tmp_path / "x.parquet", tmp_path / "x.json")
    assert not (tmp_path / "x.parquet").exists()


def test_a_bundle_of_the_pooled_model_predicts_as_its_run(stage2_pooled, smollm2_dir, tmp_path):
    """A bundle copies the model folder, and its predictor reads the folder's layer and pooling."""
    from r3lm.deploy.bundle import write_bundle
    from r3lm.deploy.scorer import R3LM

    write_bundle(stage2_pooled["config"], STAGE2_MODE, stage2_pooled["models"], Stage1Models({SHARED: str(smollm2_dir)}),
                 stage2_pooled["data"], tmp_path / "bundle")
    model = R3LM.load(tmp_path / "bundle", device="cpu", batch_size=2)
    test = stage2_pooled["sets"]["test"]
    rows = load_mode_rows(STAGE2_MODE, test.teacher_set, test.cards, test.rationales)
    written, _ = read_predictions(stage2_pooled["predictions"])
    expected = rows.merge(written[["id", "cell_type", "predicted"]], on=["id", "cell_type"], validate="one_to_one")
    assert np.allclose(model.predict_rows(rows), expected["predicted"], rtol=0, atol=1e-4)
