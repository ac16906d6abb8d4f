"""Fast bundles: the workflow's CNN and motif ridge, packaged and loaded like the LLM bundles, scoring every cell
type of a sequence at once, and specificity rankings on their predictions."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch
from test_baselines import TINY_CNN, make_dataset

from r3lm.baselines import cnn
from r3lm.baselines.motif_ridge import (
    load_motif_ridge,
    predict_motif_ridge,
    run_motif_ridge,
)
from r3lm.cli import main
from r3lm.config import validate_config
from r3lm.data.levels import assign_levels
from r3lm.deploy import scorer
from r3lm.deploy.bundle import (
    FAST_FORMAT,
    MANIFEST,
    write_baseline_bundle,
)
from r3lm.deploy.fast import CNNBundle, FastModel, RidgeBundle, load_fast
from r3lm.deploy.specificity import rank_by_specificity, specificity
from r3lm.errors import InputError
from r3lm.predictions import read_predictions

CELLS = ["A", "B"]  # make_dataset's: AP-1 (TGACTCA) activates A; in B it helps half as much and GATA represses
LENGTH = 60
_BUILT: dict[str, dict[str, Any]] = {}


def tiny_workflow(root: Path) -> dict[str, Any]:
    """The workflow's CNN step on generated data, packaged as the package_baseline rule does: trained once per
    test session, since the variant and mutagenesis tests score with the same bundle."""
    if "cnn" not in _BUILT:
        with one_torch_thread():
            (root / "data").mkdir(parents=True)
            data = make_dataset(root / "data", sizes={"train": 600, "val": 150, "test": 100}, lengths=(LENGTH,))
            cnn.run_cnn({**TINY_CNN, "epochs": 5}, data["train"], data["val"], [data["test"]], data["summary"],
                        root / "cnn", progress=False)
            bundle = root / "models" / "cnn"
            write_baseline_bundle(workflow_config(), "cnn", root / "cnn", root / "data", bundle)
        _BUILT["cnn"] = {**data, "bundle": bundle, "predictions": root / "cnn",
                         "model": load_fast(bundle, device="cpu")}
    return _BUILT["cnn"]


@contextmanager
def one_torch_thread() -> Iterator[None]:
    """Tiny models run faster on one thread than on two (no thread sync per small op), and the cores are shared."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def workflow_config(**sections: Any) -> dict[str, Any]:
    return validate_config({"levels": {"n_levels": 3}, **sections})


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    with one_torch_thread():  # for the module's tests too
        yield tiny_workflow(tmp_path_factory.mktemp("fast"))


@pytest.fixture
def model(built: dict[str, Any]) -> FastModel:
    return built["model"]


def test_the_cnn_bundle_holds_its_model_levels_and_lengths(built):
    manifest = json.loads((built["bundle"] / MANIFEST).read_text())
    assert manifest["format"] == FAST_FORMAT and manifest["kind"] == "cnn" and manifest["cell_types"] == CELLS
    assert manifest["levels"]["edges"] == json.loads(built["summary"].read_text())["levels"]["edges"]
    assert manifest["training_data"]["length_max"] == LENGTH and "motifs" not in manifest
    assert (built["bundle"] / "model.pt").read_bytes() == (built["predictions"] / "model.pt").read_bytes()


def test_load_returns_the_kind_its_manifest_names(built):
    loaded = scorer.load(str(built["bundle"]), "cpu")
    assert isinstance(loaded, CNNBundle) and loaded.sequence_length == LENGTH


def test_the_bundle_predicts_what_the_workflow_predicted_every_cell_type_at_once(built, model):
    test = pd.read_parquet(built["test"]).drop_duplicates("id")
    scores = model.score(pd.Series(test["sequence"].to_numpy(), index=test["id"]))
    assert list(scores.columns) == ["id", "predicted_A", "level_A", "predicted_B", "level_B"]
    assert scores["id"].tolist() == test["id"].tolist()
    workflow, _ = read_predictions(built["predictions"])
    for cell in CELLS:
        expected = workflow[workflow["cell_type"] == cell].set_index("id")["predicted"].loc[test["id"]]
        np.testing.assert_allclose(scores[f"predicted_{cell}"], expected, rtol=1e-5, atol=1e-6)
        edges = json.loads(built["summary"].read_text())["levels"]["edges"][cell]
        np.testing.assert_array_equal(scores[f"level_{cell}"], assign_levels(scores[f"predicted_{cell}"], edges))


def test_a_prediction_does_not_depend_on_the_other_sequences_of_the_call(model):
    sequence = "ACGT" * (LENGTH // 4)
    alone = model.predict([sequence])
    beside_a_longer_one = model.predict([sequence, "A" * (LENGTH + 20)])
    np.testing.assert_allclose(alone[0], beside_a_longer_one[0], rtol=1e-6)


def test_planted_activator_sites_raise_the_prediction_in_a_and_b(model):
    rng = np.random.default_rng(5)
    background = "".join(rng.choice(list("ACG"), LENGTH))  # no T: no accidental AP-1 site
    planted = background[:10] + "TGACTCA" + background[17:35] + "TGACTCA" + background[42:]
    scores = model.score({"background": background, "planted": planted}, ["B", "A"])
    assert list(scores.columns[1::2]) == ["predicted_B", "predicted_A"]
    assert (scores.loc[1, ["predicted_A", "predicted_B"]].to_numpy()
            > scores.loc[0, ["predicted_A", "predicted_B"]].to_numpy()).all()


def test_bad_requests_are_one_line_input_errors(built, model, tmp_path):
    with pytest.raises(InputError, match="unknown cell type 'C': this model predicts A, B"):
        model.score(["ACGT" * 15], "C")
    with pytest.raises(InputError, match="sequence 'seq1' has 'X' at position 3"):
        model.score(["ACXT"])
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / MANIFEST).write_text((built["bundle"] / MANIFEST).read_text())
    with pytest.raises(InputError, match="cnn model file not found"):
        load_fast(broken)
    with pytest.raises(InputError, match="unknown baseline 'svm'"):
        write_baseline_bundle(workflow_config(), "svm", built["predictions"], built["summary"].parent, tmp_path / "x")


def test_min_gap_and_mean_gap_per_cell_type():
    predicted = pd.DataFrame({"A": [3.0, 1.0], "B": [1.0, 2.0], "C": [2.0, 0.0]}, index=["x", "y"])
    min_gap = specificity(predicted)
    np.testing.assert_allclose(min_gap.to_numpy(), [[1.0, -2.0, -1.0], [-1.0, 1.0, -2.0]])
    mean_gap = specificity(predicted, "mean_gap")
    np.testing.assert_allclose(mean_gap.to_numpy(), [[1.5, -1.5, 0.0], [0.0, 1.5, -1.5]])
    pair = predicted[["A", "B"]]
    pd.testing.assert_frame_equal(specificity(pair), specificity(pair, "mean_gap"))  # two cell types: the same
    with pytest.raises(InputError, match="at least two cell types"):
        specificity(predicted[["A"]])
    with pytest.raises(InputError, match="unknown specificity method 'max'"):
        specificity(predicted, "max")


def test_the_ranking_puts_the_most_specific_first_ties_by_activity_then_id():
    scores = pd.DataFrame({"id": ["leaky", "tie_low", "best", "tie_high"], "predicted_A": [5.0, 1.0, 2.0, 2.5],
                           "predicted_B": [4.9, 0.0, -1.0, 1.5]})
    ranked = rank_by_specificity(scores, "A")  # against every cell type of the table
    assert ranked["id"].tolist() == ["best", "tie_high", "tie_low", "leaky"]
    np.testing.assert_allclose(ranked["specificity"], [3.0, 1.0, 1.0, 0.1])


def test_predict_scores_every_cell_type_and_ranks_safest_first(built, tmp_path):
    fasta = tmp_path / "query.fa"
    test = pd.read_parquet(built["test"]).drop_duplicates("id").head(20)
    fasta.write_text("".join(f">{name}\n{sequence}\n" for name, sequence in zip(test["id"], test["sequence"])))
    common = ["predict", "--model", str(built["bundle"]), "--fasta", str(fasta), "--device", "cpu", "--no-progress"]
    assert main([*common, "--cell-type", "all", "--rank-by", "specificity:A", "--out", str(tmp_path / "r.tsv")]) == 0
    written = pd.read_csv(tmp_path / "r.tsv", sep="\t")
    assert sorted(written["id"]) == sorted(test["id"]) and written["specificity"].is_monotonic_decreasing
    expected = specificity(written[[f"predicted_{cell}" for cell in CELLS]].set_axis(CELLS, axis=1))["A"]
    np.testing.assert_allclose(written["specificity"], expected, rtol=1e-6)
    # ranking compares cell types, so it needs all of them
    assert main([*common, "--cell-type", "A", "--rank-by", "specificity:A", "--out", str(tmp_path / "x.tsv")]) == 2
    assert not (tmp_path / "x.tsv").exists()


def test_the_ridge_bundle_counts_motifs_on_cards_made_as_in_training(built, tmp_path):
    """The ridge read the workflow's cards; its bundle scans new sequences with the recorded motif settings,
    and gives what the ridge gives on those cards, for every cell type from one scan. The nematode matrices
    (a ninth of the vertebrates', so a faster scan) include GATA, the family that represses in B."""
    run_motif_ridge({"alphas": [1.0, 10.0], "min_count": 5}, built["train"], built["val"], [built["test"]],
                    built["summary"], tmp_path / "ridge")
    fitted = load_motif_ridge(tmp_path / "ridge" / "model.json")
    bundle = tmp_path / "models" / "motif_ridge"
    config = workflow_config(motifs={"tax_group": "nematodes", "pvalue": 1e-4})
    manifest = write_baseline_bundle(config, "motif_ridge", tmp_path / "ridge", built["summary"].parent, bundle)
    assert manifest["motifs"]["tax_group"] == "nematodes" and manifest["rcc"]["dedup"] == "same_family"
    model = scorer.load(str(bundle), "cpu")
    assert isinstance(model, RidgeBundle)
    test = pd.read_parquet(built["test"]).drop_duplicates("id").head(6)
    predicted = model.predict(test["sequence"].tolist())
    for column, cell in enumerate(CELLS):
        rows = test.assign(cell_type=cell)[["id", "sequence", "cell_type"]]
        cards = model.pipeline.cards(rows, progress=False)
        assert cards["n_motifs"].sum() > 0
        np.testing.assert_allclose(predicted[:, column], predict_motif_ridge(fitted, cards))
    assert np.ptp(predicted[:, 1]) > 0  # the counts moved the prediction
