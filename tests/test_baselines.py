"""The baselines on generated data whose answer is known: activity is a count of planted sites plus noise."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import assert_input_error, written_files

from r3lm.baselines import cnn
from r3lm.baselines.motif_ridge import run_motif_ridge
from r3lm.config import load_config, validate_config
from r3lm.data.levels import assign_levels, level_edges
from r3lm.dna import encode_sequences, one_hot, reverse_complement_codes
from r3lm.errors import InputError
from r3lm.predictions import PREDICTION_COLUMNS, read_predictions
from r3lm.stats import pearson

ACTIVATOR, REPRESSOR = "TGACTCA", "AGATAAG"  # AP-1 and GATA sites
ACTIVATOR_FAMILY, REPRESSOR_FAMILY = "Fos-related; Jun-related", "C4-GATA-related"
DECOYS = ["Decoy-one", "Decoy-two", "Decoy-three"]
NOISE = 0.3  # measurement noise SD, against site effects of 0.5 and 1
SLOT = 10  # sites go into distinct 10-bp slots, so they never overlap
TINY_CNN = {"stem_channels": 16, "stage_channels": [16, 16], "kernel_size": 5, "expansion": 2, "epochs": 4,
            "batch_size": 32, "learning_rate": 0.01, "patience": 0, "device": "cpu"}


def _sequence(length: int, sites: list[str], rng: np.random.Generator) -> str:
    bases = list(rng.choice(list("ACGT"), length))
    for slot, site in zip(rng.choice(length // SLOT, len(sites), replace=False), sites):
        start = slot * SLOT + int(rng.integers(0, SLOT - len(site) + 1))
        bases[start:start + len(site)] = site
    return "".join(bases)


def _card(cell_type: str, sequence: str, families: list[str]) -> str:
    motifs = [{"matrix_id": f"MA{i:04d}.1", "name": family.split(";")[0], "family": family, "tf_class": "test",
               "start": i, "end": i + 7, "strand": "+", "score": 10.0, "pvalue": 1e-5}
              for i, family in enumerate(families)]
    gc = (sequence.count("G") + sequence.count("C")) / len(sequence)
    return json.dumps({"cell_type": cell_type, "gc_content": round(gc, 3), "sequence": sequence,
                       "length": len(sequence), "grammar_tags": [], "motifs": motifs})


def make_dataset(folder: Path, *, sizes: dict[str, int], lengths: tuple[int, ...]) -> dict[str, Path]:
    """Long-format tables with sequences and cards for cell types A (AP-1 activates) and B (GATA represses).

    A: activity = #AP-1 + noise; B: activity = 0.5 #AP-1 - #GATA + noise. Cards list the planted sites,
    decoy families that do nothing, and a 'Rare' family on the first two train sequences only.
    """
    rng = np.random.default_rng(0)
    frames = {}
    for split, n in sizes.items():
        rows = []
        for i in range(n):
            activators, repressors = int(rng.integers(0, 4)), int(rng.integers(0, 3))
            sequence = _sequence(int(rng.choice(lengths)), [ACTIVATOR] * activators + [REPRESSOR] * repressors, rng)
            families = ([ACTIVATOR_FAMILY] * activators + [REPRESSOR_FAMILY] * repressors
                        + list(rng.choice(DECOYS, int(rng.poisson(2))))
                        + (["Rare"] if split == "train" and i < 2 else []))
            signal = {"A": activators, "B": 0.5 * activators - repressors}
            for cell_type, value in signal.items():
                rows.append({"id": f"{split}{i:04d}", "sequence": sequence, "cell_type": cell_type,
                             "activity": value + NOISE * rng.standard_normal(), "split": split,
                             "card_json": _card(cell_type, sequence, families)})
        frames[split] = pd.DataFrame(rows)
    edges = {cell: level_edges(group["activity"].to_numpy(), 3) for cell, group in frames["train"].groupby("cell_type")}
    paths = {}
    for split, frame in frames.items():
        levels = np.zeros(len(frame), dtype=np.int8)
        for cell_type, index in frame.groupby("cell_type").indices.items():
            levels[index] = assign_levels(frame["activity"].to_numpy()[index], edges[cell_type])
        frame["level"] = levels
        paths[split] = folder / f"{split}.parquet"
        frame.to_parquet(paths[split], index=False)
    paths["summary"] = folder / "summary.json"
    paths["summary"].write_text(json.dumps({"levels": {"n_levels": 3, "edges": edges}}))
    return paths


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    """Tiny models train faster on one thread than on two (no thread sync per small op); the cores are shared."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return make_dataset(tmp_path_factory.mktemp("baselines"), sizes={"train": 800, "val": 200, "test": 200},
                        lengths=(50, 60))


def _run_ridge(dataset: dict[str, Path], out: Path, **settings: Any) -> dict[str, Any]:
    return run_motif_ridge({"alphas": [0.1, 1.0, 10.0, 100.0], "min_count": 5, **settings}, dataset["train"],
                           dataset["val"], [dataset["test"]], dataset["summary"], out)


def _run_cnn(dataset: dict[str, Path], out: Path, **settings: Any) -> dict[str, Any]:
    return cnn.run_cnn({**TINY_CNN, **settings}, dataset["train"], dataset["val"], [dataset["test"]],
                       dataset["summary"], out, progress=False)


def assert_shared_format(out: Path, test_path: Path, summary_path: Path) -> pd.DataFrame:
    """Every test row once, the shared columns, and predicted levels by the train edges."""
    table, _ = read_predictions(out)
    test = pd.read_parquet(test_path)
    assert list(table.columns[:len(PREDICTION_COLUMNS)]) == PREDICTION_COLUMNS
    assert sorted(zip(table["id"], table["cell_type"])) == sorted(zip(test["id"], test["cell_type"]))
    edges = json.loads(summary_path.read_text())["levels"]["edges"]
    for cell_type, group in table.groupby("cell_type"):
        assert np.isfinite(group["predicted"]).all()
        np.testing.assert_array_equal(group["predicted_level"], assign_levels(group["predicted"].to_numpy(),
                                                                              edges[cell_type]))
    merged = table.merge(test, on=["id", "cell_type"])
    np.testing.assert_array_equal(merged["measured"], merged["activity"])
    np.testing.assert_array_equal(merged["level_x"], merged["level_y"])
    return table


def test_motif_ridge_recovers_the_planted_families(dataset: dict[str, Path], tmp_path: Path) -> None:
    summary = _run_ridge(dataset, tmp_path / "ridge")
    table = assert_shared_format(tmp_path / "ridge", dataset["test"], dataset["summary"])
    for cell_type, group in table.groupby("cell_type"):
        assert pearson(group["measured"], group["predicted"]) > 0.8, cell_type
    top_a, top_b = summary["top_coefficients"]["A"], summary["top_coefficients"]["B"]
    # a "Fos-related; Jun-related" hit counts for both families, so the two share the credit
    assert {entry["feature"] for entry in top_a[:2]} == {"Fos-related", "Jun-related"}
    assert all(entry["weight"] > 0 for entry in top_a[:2])
    assert top_b[0]["feature"] == REPRESSOR_FAMILY and top_b[0]["weight"] < 0
    assert summary["method"] == "motif_ridge"
    assert summary["families_dropped"] == 1  # 'Rare' is on 2 train cards, under min_count 5
    assert summary["n_features"] == len(DECOYS) + 3 + 2  # decoys, Fos, Jun, GATA, then GC content and length
    assert summary["train_rows"] == {"A": 800, "B": 800}
    assert set(summary["alpha"]) == {"A", "B"}


def test_motif_ridge_rejects_a_malformed_card(dataset: dict[str, Path], tmp_path: Path) -> None:
    train = pd.read_parquet(dataset["train"])
    train.loc[4, "card_json"] = json.dumps({"gc_content": 0.5, "length": 60})  # no motifs list
    bad = tmp_path / "train.parquet"
    train.to_parquet(bad, index=False)
    with pytest.raises(InputError) as caught:
        run_motif_ridge({}, bad, dataset["val"], [dataset["test"]], dataset["summary"], tmp_path / "out")
    assert "motifs" in assert_input_error(caught.value, path=bad, row=5, column="card_json")
    assert written_files(tmp_path / "out") == []


def test_cnn_learns_the_planted_signal_and_is_reproducible(dataset: dict[str, Path], tmp_path: Path) -> None:
    summary = _run_cnn(dataset, tmp_path / "first")
    table = assert_shared_format(tmp_path / "first", dataset["test"], dataset["summary"])
    for cell_type, group in table.groupby("cell_type"):
        assert pearson(group["measured"], group["predicted"]) > 0.8, cell_type
    curve = pd.read_csv(tmp_path / "first" / "curve.csv")
    assert list(curve.columns) == cnn.CURVE_COLUMNS and len(curve) == summary["epochs_run"] == TINY_CNN["epochs"]
    assert curve["train_loss"].iloc[-1] < curve["train_loss"].iloc[0]
    assert summary["best_epoch"] == int(curve["val_pearson"].idxmax()) + 1
    assert np.mean(list(summary["val_pearson"].values())) == pytest.approx(curve["val_pearson"].max())
    assert summary["method"] == "cnn" and summary["train_sequences"] == 800
    saved = torch.load(tmp_path / "first" / "model.pt")
    assert saved["cell_types"] == ["A", "B"]
    assert sum(value.numel() for name, value in saved["state_dict"].items()
               if "running" not in name and "num_batches" not in name) == summary["parameters"]

    _run_cnn(dataset, tmp_path / "second")
    second, _ = read_predictions(tmp_path / "second")
    np.testing.assert_array_equal(second["predicted"], table["predicted"])
    assert (tmp_path / "second/model.pt").read_bytes() == (tmp_path / "first/model.pt").read_bytes()


def test_cnn_cross_validation_predicts_every_row_out_of_fold(dataset: dict[str, Path], tmp_path: Path) -> None:
    """MPRA-LegNet's protocol: random folds over every row of the split tables; each row predicted once, by the
    model of its own fold; the test rows in the shared format; per-fold curves, models and stopping reasons."""
    summary = _run_cnn(dataset, tmp_path / "cv", epochs=3, cross_validation={"folds": 3, "seed": 1})
    table = assert_shared_format(tmp_path / "cv", dataset["test"], dataset["summary"])
    oof = pd.read_parquet(tmp_path / "cv" / "oof.parquet")
    every = pd.concat([pd.read_parquet(dataset[name]) for name in ("train", "val", "test")])
    assert sorted(zip(oof["id"], oof["cell_type"])) == sorted(zip(every["id"], every["cell_type"]))
    assert set(oof["fold"]) == {1, 2, 3} and oof.groupby("id")["fold"].nunique().max() == 1
    assert np.isfinite(oof["predicted"]).all()
    on_test = oof.merge(table, on=["id", "cell_type"])
    np.testing.assert_allclose(on_test["predicted_x"], on_test["predicted_y"], rtol=1e-6)
    folds = summary["cross_validation"]
    assert (folds["folds"], folds["fold_source"], folds["rows"]) == (3, "random", len(every))
    assert len(folds["stopped_by"]) == len(folds["val_pearson"]) == 3
    assert all(value > 0.7 for value in folds["oof_pearson"].values()), folds["oof_pearson"]
    assert sorted(pd.read_csv(tmp_path / "cv" / "curve.csv")["fold"].unique()) == [1, 2, 3]
    assert len(torch.load(tmp_path / "cv" / "model.pt")["folds"]) == 3


def test_cross_validation_folds_keep_a_sequence_group_together() -> None:
    """Random folds deal the data split's groups (an element and its reverse complement), not single ids,
    into equal parts; the same seed deals the same folds."""
    ids = [f"el{i}{suffix}" for i in range(30) for suffix in ("", "_Reversed")]
    rows = pd.DataFrame({"id": [name for name in ids for _ in range(2)], "cell_type": ["A", "B"] * len(ids)})
    folds, origin = cnn.assign_folds(rows, 3, 0, "(_Reversed)$")
    element = rows["id"].str.replace("_Reversed", "")
    assert origin == "random" and folds.groupby(element).nunique().max() == 1
    assert folds.value_counts().tolist() == [40, 40, 40]
    assert folds.equals(cnn.assign_folds(rows, 3, 0, "(_Reversed)$")[0])
    assert cnn.assign_folds(rows, 3, 0)[0].groupby(element).nunique().max() == 2


def test_cnn_cross_validation_follows_the_data_s_fold_column(dataset: dict[str, Path], tmp_path: Path) -> None:
    paths = {}
    for name in ("train", "val", "test"):
        table = pd.read_parquet(dataset[name])
        table["fold"] = table["id"].map(lambda name: f"fold{sum(map(ord, name)) % 4}")
        paths[name] = tmp_path / f"{name}.parquet"
        table.to_parquet(paths[name], index=False)
    summary = cnn.run_cnn({**TINY_CNN, "epochs": 2, "cross_validation": {"folds": 10}}, paths["train"], paths["val"],
                          [paths["test"]], dataset["summary"], tmp_path / "cv", progress=False)
    assert (summary["cross_validation"]["folds"], summary["cross_validation"]["fold_source"]) == (4, "data")
    oof = pd.read_parquet(tmp_path / "cv" / "oof.parquet")
    expected = oof["id"].map(lambda name: sum(map(ord, name)) % 4 + 1)
    assert (oof["fold"] == expected).all()
    table = pd.read_parquet(paths["train"])
    table["fold"] = table["id"].map(lambda name: f"fold{sum(map(ord, name)) % 2}")
    table.to_parquet(paths["train"], index=False)
    for name in ("val", "test"):
        pd.read_parquet(paths[name]).assign(fold="fold0").to_parquet(paths[name], index=False)
    with pytest.raises(InputError, match="needs at least 3 folds") as caught:
        cnn.run_cnn({**TINY_CNN, "cross_validation": {"folds": 10}}, paths["train"], paths["val"], [paths["test"]],
                    dataset["summary"], tmp_path / "bad", progress=False)
    assert caught.value.column == "fold" and written_files(tmp_path / "bad") == []


def test_cnn_stops_on_its_criterion_and_reports_why(dataset: dict[str, Path], tmp_path: Path) -> None:
    """No val Pearson gain of min_delta for `patience` epochs past the learning-rate peak (epoch 4 of 12) ends
    training before the cap; patience 0 runs to it."""
    stopped = _run_cnn(dataset, tmp_path / "stopped", epochs=12, patience=2, min_delta=1.0)
    assert (stopped["epochs_run"], stopped["stopped_by"]) == (6, "patience")
    curve = pd.read_csv(tmp_path / "stopped" / "curve.csv")
    assert stopped["best_epoch"] == int(curve["val_pearson"].idxmax()) + 1
    capped = _run_cnn(dataset, tmp_path / "capped", epochs=2)
    assert (capped["epochs_run"], capped["stopped_by"]) == (2, "epoch cap")


def test_the_default_cnn_is_the_published_legnet() -> None:
    """MPRA-LegNet's example.cfg: stem 64 (kernel 5), stages 80/96/112/128 (kernel 3, expansion 4, each after a
    concatenation that doubles its input), a mapper doubling 128, and a 256-wide head; AdamW at weight decay 0.1
    and a one-cycle to 0.01 over 25 epochs; its batch of 1024 in the paper config, 256 for smaller tables."""
    settings = validate_config({})["baselines"]["cnn"]
    model = cnn.LegNet.from_settings(3, settings)
    assert model.stem[0].in_channels == 4 and model.stem[0].out_channels == 64 and model.stem[0].kernel_size == (5,)
    widths = [(stage[1].in_channels, stage[1].out_channels, stage[1].kernel_size[0]) for stage in model.stages]
    assert widths == [(128, 80, 3), (160, 96, 3), (192, 112, 3), (224, 128, 3)]
    assert [stage[0].body[0].out_channels for stage in model.stages] == [256, 320, 384, 448]
    assert (model.mapper[1].in_channels, model.mapper[1].out_channels) == (128, 256)
    assert [layer.out_features for layer in model.head if isinstance(layer, torch.nn.Linear)] == [256, 3]
    assert {key: settings[key] for key in ("epochs", "learning_rate", "weight_decay")} == {
        "epochs": 25, "learning_rate": 0.01, "weight_decay": 0.1}
    paper = load_config(Path(__file__).resolve().parents[1] / "config/gosai2024.yaml")["baselines"]["cnn"]
    assert paper["batch_size"] == 1024 and settings["batch_size"] == 256  # LegNet's, at its data size
    optimizer, scheduler = cnn._one_cycle(model, settings, steps_per_epoch=10)
    rates = []
    for _ in range(250):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert rates[0] == pytest.approx(0.01 / 25) and max(rates) == pytest.approx(0.01)
    assert int(np.argmax(rates)) == 74 and rates[-1] < 1e-5  # the peak at 30% of the steps


def test_cnn_prediction_is_strand_symmetric() -> None:
    """A sequence and its reverse complement get the same prediction, also when padding is involved."""
    sequences = [_sequence(length, [ACTIVATOR], np.random.default_rng(length)) for length in (40, 47, 60)]
    sequences[1] = sequences[1][:20] + "N" + sequences[1][21:]
    complement = str.maketrans("ACGTN", "TGCAN")
    reverse = [sequence.translate(complement)[::-1] for sequence in sequences]
    codes, lengths = encode_sequences(sequences)
    reverse_codes, _ = encode_sequences(reverse)
    np.testing.assert_array_equal(
        reverse_complement_codes(torch.from_numpy(codes).long(), torch.from_numpy(lengths)).numpy(), reverse_codes)
    torch.manual_seed(0)
    model = cnn.LegNet(2, stem_channels=8, stem_kernel=5, stage_channels=[8, 8], kernel_size=3, expansion=2)
    model(one_hot(torch.from_numpy(codes).long()))  # a train-mode pass moves BatchNorm off its initial stats
    predicted = cnn.predict_codes(model, codes, lengths, batch_size=2, device=torch.device("cpu"))
    predicted_reverse = cnn.predict_codes(model, reverse_codes, lengths, batch_size=2, device=torch.device("cpu"))
    np.testing.assert_allclose(predicted, predicted_reverse, rtol=1e-5, atol=1e-6)
    assert np.ptp(predicted[:, 0]) > 0  # not trivially symmetric because constant


def _break(path: Path, out: Path, edit: Any) -> Path:
    frame = pd.read_parquet(path)
    broken = out / path.name
    edit(frame).to_parquet(broken, index=False)
    return broken


@pytest.mark.parametrize(("split", "edit", "row", "column", "message"), [
    ("train", lambda frame: frame.drop(columns="sequence"), None, "sequence", "missing column"),
    ("test", lambda frame: frame.assign(sequence=frame["sequence"].where(frame.index != 2, "ACGTXACGT")), 3,
     "sequence", "'X' at position 5"),
    ("train", lambda frame: frame.iloc[:0], None, None, "empty"),
    ("val", lambda frame: frame.assign(activity=frame["activity"].astype(str).where(frame.index != 6, "high")), 7,
     "activity", "not a number"),
])
def test_cnn_bad_input_names_the_place_and_writes_nothing(dataset: dict[str, Path], tmp_path: Path, split: str,
                                                          edit: Any, row: int | None, column: str | None,
                                                          message: str) -> None:
    paths = {**dataset, split: _break(dataset[split], tmp_path, edit)}
    out = tmp_path / "out"
    with pytest.raises(InputError) as caught:
        _run_cnn(paths, out)
    assert message in assert_input_error(caught.value, path=paths[split], row=row, column=column)
    assert written_files(out) == []


def test_cnn_rejects_a_cell_type_without_level_edges(dataset: dict[str, Path], tmp_path: Path) -> None:
    summary = tmp_path / "summary.json"
    summary.write_text(json.dumps({"levels": {"edges": {"A": [0.0, 1.0]}}}))
    with pytest.raises(InputError) as caught:
        _run_cnn({**dataset, "summary": summary}, tmp_path / "out")
    assert "'B'" in assert_input_error(caught.value, path=summary, row=None, column=None)
    assert written_files(tmp_path / "out") == []
