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
from conftest import random_sequences

from r3lm.config import validate_config
from r3lm.errors import InputError
from r3lm.evaluate import disruption
from r3lm.evaluate.disruption import TABLE_COLUMNS, run_disruption
from r3lm.evaluate.faithfulness import cited_motifs
from r3lm.io import write_json, write_parquet
from r3lm.llm.generate import ChatGenerator, Generation
from r3lm.motifs.scan import background_for, build_motif_set, scan_sequences
from r3lm.predictions import read_predictions
from r3lm.rcc.build import cards_for_table
from r3lm.rcc.grammar import GrammarSettings
from r3lm.stage2.inputs import load_mode_rows
from r3lm.stage2.model import load_backbone
from r3lm.stage2.predict import Stage2Predictor
from r3lm.stage2.run import SetFiles, run_stage2

CELLS = ("HepG2", "K562")
SIZES = {"train": 3, "val": 2, "test": 2}  # per cell type: every input costs ~0.5-1 s on two cores
MODE = "generated_cot"


def _rationale(card_json: str) -> str:
    """A teacher-style rationale: the first card motif activating, the second repressive, the third neutral."""
    names = list(dict.fromkeys(hit["name"] for hit in json.loads(card_json)["motifs"]))
    cues = ["favours activity", "works against it", "is neutral"]
    steps = [f"{name} {cue}." for name, cue in zip(names, cues)] or ["No motif is informative."]
    numbered = "\n".join(f"{number}. {step}" for number, step in enumerate(steps, start=1))
    return f"<think>\n{numbered}\n</think>\nActivity level: 1"


@pytest.fixture(scope="module")
def config() -> dict[str, Any]:
    """Frozen, shared across cell types; a short cutoff keeps the end (rationale, DNA) and the embedding cheap
    (SmolLM2 embeds ~100-200 tokens per second on two cores)."""
    return validate_config({"stage2": {"training": "frozen", "per_cell_type": False, "cutoff_len": 96,
                                       "frozen": {"epochs": 5}}})


@pytest.fixture(scope="module")
def trained(smollm2_dir: Path, config: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Cards, teacher sets and self-rationales for two cell types, and a frozen generated_cot run on them."""
    root = tmp_path_factory.mktemp("stage2_predict")
    rng = np.random.default_rng(0)
    table = pd.DataFrame([{"id": f"{split}{index}", "cell_type": cell, "split": split}
                          for split, size in SIZES.items() for cell in CELLS for index in range(size)])
    ids = sorted(set(table["id"]))  # a sequence is the same in every cell type, as in the real data
    table["sequence"] = table["id"].map(dict(zip(ids, random_sequences(len(ids), 60, seed=1))))
    table["activity"] = rng.normal(size=len(table))
    table["level"] = rng.integers(0, 4, size=len(table))
    motifs = config["motifs"]
    hits = scan_sequences(table["id"].tolist(), table["sequence"].tolist(),
                          build_motif_set(motifs, background_for(motifs, [])), progress=False)
    cards = cards_for_table(table, hits, GrammarSettings.from_config(config["rcc"]["grammar"]),
                            with_grammar=config["rcc"]["grammar_tags"], progress=False)
    cards["rationale"] = [_rationale(card) for card in cards["card_json"]]
    sets = {}
    for split in SIZES:
        part = cards[cards["split"] == split]
        paths = [root / f"{name}_{split}.parquet" for name in ("teacher", "cards", "rationales")]
        write_parquet(part.drop(columns="card_json"), paths[0])
        write_parquet(part[["id", "cell_type", "card_json", "card_text"]], paths[1])
        write_parquet(part[["id", "cell_type", "rationale"]], paths[2])
        sets[split] = SetFiles(*paths)
    write_json({"levels": {"edges": {cell: [-0.5, 0.0, 0.5] for cell in CELLS}}}, root / "data_summary.json")
    run_stage2(config, MODE, smollm2_dir, sets, root / "data_summary.json", root / "work", root / "predictions",
               progress=False)
    return {"sets": sets, "model": root / "work" / "model" / "shared", "predictions": root / "predictions"}


@pytest.fixture(scope="module")
def predictor(trained: dict[str, Any]) -> Stage2Predictor:
    return Stage2Predictor.load(trained["model"], device="cpu")


def test_the_model_folder_reproduces_run_stage2s_test_predictions(trained, predictor):
    written, _ = read_predictions(trained["predictions"])
    test = trained["sets"]["test"]
    rows = load_mode_rows(MODE, test.teacher_set, test.cards, test.rationales)
    expected = rows.merge(written[["id", "cell_type", "predicted"]], on=["id", "cell_type"], validate="one_to_one")
    predicted = predictor.predict(rows, batch_size=2)  # other batches than training: padding must not matter
    assert predictor.mode == MODE and predictor.cell_types == list(CELLS)
    assert np.allclose(predicted, expected["predicted"], rtol=0, atol=1e-4)
    assert np.std(predicted) > 0


def test_a_lora_adapter_in_the_folder_is_applied(smollm2_dir, config, trained, predictor, tmp_path):
    """A folder with adapter/ predicts as the in-memory LoRA backbone it was saved from (B made non-zero, so the
    adapter changes the output)."""
    torch.manual_seed(0)
    lora = load_backbone(smollm2_dir, torch.float32, "cpu", lora=config["stage2"]["lora"])
    for name, parameter in lora.named_parameters():
        if "lora_B" in name:
            parameter.data.normal_(std=0.02)
    folder = shutil.copytree(trained["model"], tmp_path / "model")
    lora.save_pretrained(folder / "adapter")
    test = trained["sets"]["test"]
    rows = load_mode_rows(MODE, test.teacher_set, test.cards, test.rationales).iloc[:1]
    in_memory = replace(predictor, backbone=lora.eval()).predict(rows)
    loaded = Stage2Predictor.load(folder, device="cpu").predict(rows)
    written, _ = read_predictions(trained["predictions"])
    frozen = rows[["id", "cell_type"]].merge(written, on=["id", "cell_type"])["predicted"]
    assert np.allclose(loaded, in_memory, rtol=0, atol=1e-5)
    assert not np.allclose(loaded, frozen, rtol=0, atol=1e-3)


@pytest.mark.parametrize("change", ["no head", "no stage2.json", "unknown mode"])
def test_an_incomplete_model_folder_is_an_input_error_naming_it(trained, tmp_path, change):
    folder = shutil.copytree(trained["model"], tmp_path / "model")
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


def _disrupt(config: dict[str, Any], trained: dict[str, Any], out: Path, **options: Any
             ) -> tuple[pd.DataFrame, pd.DataFrame]:
    return run_disruption(config, {"shared": trained["model"]}, trained["predictions"],
                          trained["sets"]["test"].cards, out / "pairs.tsv", out / "summary.tsv", progress=False,
                          **options)


@pytest.fixture(scope="module")
def kept(config: dict[str, Any], trained: dict[str, Any], tmp_path_factory: pytest.TempPathFactory
         ) -> tuple[pd.DataFrame, pd.DataFrame, Path]:
    """Disruption with the original rationales, one sequence per cell type."""
    out = tmp_path_factory.mktemp("kept")
    return (*_disrupt(config, trained, out, max_sequences=1, seed=3), out)


def test_disruption_moves_predictions_and_counts_every_cited_motif(trained, kept):
    table, summary, out = kept
    assert list(table.columns) == TABLE_COLUMNS
    assert set(table["claimed"]) <= {-1, 0, 1} and {-1, 1} <= set(table["claimed"])
    directed = table[table["claimed"] != 0]
    assert np.isfinite(directed["delta"]).all() and (directed["delta"] != 0).any()
    assert np.allclose(directed["delta"], directed["disrupted"] - directed["original"])
    assert table.loc[table["claimed"] == 0, "delta"].isna().all()
    assert table.groupby("cell_type")["id"].nunique().eq(1).all()
    written, _ = read_predictions(trained["predictions"])
    originals = table.drop_duplicates(["cell_type", "id"]).merge(written, on=["cell_type", "id"])
    assert np.allclose(originals["original"], originals["predicted"], atol=1e-4)
    cards = pd.read_parquet(trained["sets"]["test"].cards).merge(written, on=["id", "cell_type"])
    claims = {(row.cell_type, row.id): cited_motifs(row.rationale, row.card_json) for row in cards.itertuples()}
    for row in table.itertuples():
        assert claims[(row.cell_type, row.id)][row.motif] == row.claimed
    overall = summary.set_index("cell_type").loc["all"]
    assert overall["pairs"] == len(directed) and overall["skipped"] == (table["claimed"] == 0).sum()
    assert pd.read_csv(out / "pairs.tsv", sep="\t").shape == table.shape
    assert pd.read_csv(out / "summary.tsv", sep="\t")["cell_type"].tolist() == [*CELLS, "all"]


def test_disruption_with_regenerated_rationales(config, trained, kept, tmp_path, monkeypatch):
    """The Stage-I model sees the rebuilt card of each disrupted sequence and Stage II reads its new rationale
    (a recording stand-in for the generator: real generation is tested in test_generate.py)."""
    seen: list[list[dict[str, str]]] = []

    def generate(conversations: list[list[dict[str, str]]], *, progress: bool = True) -> list[Generation]:
        seen.extend(conversations)
        return [Generation("<think>\n1. Nothing stands out.\n</think>\nActivity level: 0", 9, False)
                for _ in conversations]

    monkeypatch.setattr(disruption, "open_generator",
                        lambda model, settings, dtype: ChatGenerator("stub", generate, 16, {}))
    table, _ = _disrupt(config, trained, tmp_path, max_sequences=1, seed=3, regenerate=True, stage1_model="stage1")
    original = kept[0]
    directed = table[table["claimed"] != 0]
    assert len(seen) == len(directed) and np.isfinite(directed["delta"]).all()
    stored = set(pd.read_parquet(trained["sets"]["test"].cards)["card_text"])
    for system, user in seen:
        card = user["content"].removesuffix("\n\nExplain the regulatory activity of this sequence.")
        assert system["content"].startswith("You are an expert") and "Identified Motifs:" in card
        assert card not in stored
    assert np.allclose(table["original"], original["original"])
    assert not np.allclose(directed["disrupted"], original.loc[original["claimed"] != 0, "disrupted"], atol=1e-4)


def test_disruption_refuses_settings_that_did_not_build_the_cards(config, trained, tmp_path):
    with_tags = {**config, "rcc": {**config["rcc"], "grammar_tags": True}}
    with pytest.raises(InputError, match="grammar_tags=True"):
        _disrupt(with_tags, trained, tmp_path, max_sequences=1)
    with pytest.raises(InputError, match="regenerate"):
        _disrupt(config, trained, tmp_path, max_sequences=1, regenerate=True)
    assert not (tmp_path / "pairs.tsv").exists()
