"""The evaluation package: metrics and their bootstrap, protocols, faithfulness and the report."""

from __future__ import annotations

import json
from collections import Counter
from itertools import pairwise, permutations
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from r3lm.dna import dinucleotide_shuffle
from r3lm.errors import InputError
from r3lm.evaluate.citations import citation_faithfulness
from r3lm.evaluate.metrics import (
    Block,
    block_rng,
    compare_blocks,
    evaluate,
    percentile_interval,
    resample_counts,
    write_metrics,
)
from r3lm.evaluate.motif_disruption import (
    disrupt_motif,
    disrupt_span,
    disruption_agreement,
)
from r3lm.evaluate.report import write_report
from r3lm.io import write_table
from r3lm.predictions import prediction_table, write_predictions
from r3lm.rationale.claims import attach_cards, cited_motifs
from r3lm.rcc.card import Card
from r3lm.rcc.hits import MotifHit

EDGES = {"HepG2": [-0.5, 0.0, 0.5], "K562": [-0.5, 0.0, 0.5]}


def _block(measured: np.ndarray, predicted: dict[str, np.ndarray], cell_type: str = "K562") -> Block:
    levels = np.searchsorted(EDGES["K562"], measured, side="right")
    return Block("full", cell_type, measured, levels, predicted,
                 {name: np.searchsorted(EDGES["K562"], values, side="right") for name, values in predicted.items()})


# ------------------------------------------------------------------------------------------------ metrics
def test_point_and_resampled_metrics_match_scipy() -> None:
    rng = np.random.default_rng(3)
    measured = np.round(rng.normal(size=300), 1)  # rounding makes ties on both sides
    predicted = np.round(0.6 * measured + rng.normal(scale=0.8, size=300), 1)
    block = _block(measured, {"m": predicted})
    point, resampled = block.bootstrap(["m"], {"n_boot": 5, "seed": 11})

    levels, predicted_levels = block.level, block.predicted_level["m"]
    assert point["m"]["pearson"] == pytest.approx(stats.pearsonr(measured, predicted)[0], abs=1e-12)
    assert point["m"]["spearman"] == pytest.approx(stats.spearmanr(measured, predicted)[0], abs=1e-12)
    assert point["m"]["rmse"] == pytest.approx(np.sqrt(np.mean((measured - predicted) ** 2)), abs=1e-12)
    assert point["m"]["r2"] == pytest.approx(
        1 - np.sum((measured - predicted) ** 2) / np.sum((measured - measured.mean()) ** 2), abs=1e-12)
    assert point["m"]["level_accuracy"] == pytest.approx(np.mean(levels == predicted_levels))

    # each resample equals the statistic of the explicitly resampled rows
    weights = next(resample_counts(len(measured), 5, block_rng(11, "full", "K562")))
    for row in range(5):
        rows = np.repeat(np.arange(len(measured)), weights[row].astype(int))
        assert resampled["m"]["pearson"][row] == pytest.approx(stats.pearsonr(measured[rows], predicted[rows])[0])
        assert resampled["m"]["spearman"][row] == pytest.approx(stats.spearmanr(measured[rows], predicted[rows])[0])
        assert resampled["m"]["rmse"][row] == pytest.approx(np.sqrt(np.mean((measured[rows] - predicted[rows]) ** 2)))


def test_constant_prediction_has_undefined_correlation() -> None:
    measured = np.random.default_rng(0).normal(size=50)
    point, _ = _block(measured, {"flat": np.full(50, 0.1)}).bootstrap(["flat"], {"n_boot": 10})
    assert np.isnan(point["flat"]["pearson"]) and np.isnan(point["flat"]["spearman"])
    assert np.isfinite(point["flat"]["rmse"])


def _correlated(rng: np.random.Generator, n: int, rho: float) -> tuple[np.ndarray, np.ndarray]:
    x = rng.normal(size=n)
    return x, rho * x + np.sqrt(1 - rho ** 2) * rng.normal(size=n)


def _pearson_interval(measured: np.ndarray, predicted: np.ndarray, seed: int) -> tuple[float, float]:
    _, resampled = _block(measured, {"m": predicted}).bootstrap(["m"], {"n_boot": 400, "seed": seed})
    return percentile_interval(resampled["m"]["pearson"], 0.95)


def test_interval_covers_the_true_correlation_and_shrinks_with_n() -> None:
    rng = np.random.default_rng(7)
    rho = 0.6
    covered = [low <= rho <= high for low, high in
               (_pearson_interval(*_correlated(rng, 150, rho), seed) for seed in range(60))]
    assert np.mean(covered) >= 0.85  # nominal 0.95; 60 replicates

    small = np.mean([np.diff(_pearson_interval(*_correlated(rng, 100, rho), seed)) for seed in range(5)])
    large = np.mean([np.diff(_pearson_interval(*_correlated(rng, 1600, rho), seed)) for seed in range(5)])
    assert large < 0.5 * small  # ~1/sqrt(16) of the width


def _paired(measured: np.ndarray, better: np.ndarray, worse: np.ndarray, seed: int) -> tuple[float, float, float]:
    row = compare_blocks([_block(measured, {"a": better, "b": worse})], [("a", "b")],
                         {"n_boot": 300, "seed": seed}).iloc[0]
    return row["delta_pearson_lo"], row["delta_pearson_hi"], row["delta_pearson_p"]


def test_paired_bootstrap_detects_a_real_improvement_and_not_a_null_one() -> None:
    rng = np.random.default_rng(5)
    measured = rng.normal(size=300)
    low, _, p = _paired(measured, measured + rng.normal(scale=0.7, size=300),
                        measured + rng.normal(scale=1.4, size=300), seed=0)
    assert low > 0 and p < 0.01

    results = [_paired(measured, measured + rng.normal(size=300), measured + rng.normal(size=300), seed)
               for seed in range(20)]
    false_positives = np.mean([low > 0 or high < 0 for low, high, _ in results])
    assert false_positives <= 0.2  # nominal 0.05
    assert np.mean([p for _, _, p in results]) > 0.25


# ---------------------------------------------------------------------------------------------- protocols
def _rows(rng: np.random.Generator) -> pd.DataFrame:
    ids = [f"s{index:03d}" for index in range(40)]
    frame = pd.DataFrame({"id": ids * 2, "cell_type": ["K562"] * 40 + ["HepG2"] * 40, "split": "test",
                          "activity": rng.normal(size=80)})
    frame["level"] = np.searchsorted(EDGES["K562"], frame["activity"], side="right")
    frame["sequence"] = "ACGT" * 5
    return frame


def _write_method(root: Path, name: str, rows: pd.DataFrame, predicted: np.ndarray, **summary: object) -> Path:
    folder = root / "predictions" / name
    write_predictions(prediction_table(rows, predicted, EDGES), folder, {"method": name, **summary})
    return folder


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Test rows (40 per cell type), the paper subset (first 10 ids), and methods with different coverage."""
    root = tmp_path_factory.mktemp("evaluation")
    rng = np.random.default_rng(1)
    test = _rows(rng)
    subset = test[test["id"].isin([f"s{index:03d}" for index in range(10)])]
    k562 = subset[subset["cell_type"] == "K562"]
    write_table(test, root / "test.parquet")
    write_table(subset, root / "test_subset.parquet")
    truth = test["activity"].to_numpy()
    broken = truth + rng.normal(scale=0.5, size=80)
    broken[0] = np.nan  # s000 in K562, a subset row
    dirs = {
        "cnn": _write_method(root, "cnn", test, truth + rng.normal(scale=0.4, size=80),
                             train_rows={"K562": 500, "HepG2": 480}, settings={"epochs": 7, "channels": 64}),
        "ridge": _write_method(root, "ridge", test, truth + rng.normal(scale=1.0, size=80), train_rows=980),
        "broken": _write_method(root, "broken", test, broken),
        "partial": _write_method(root, "partial", k562.iloc[1:], k562["activity"].to_numpy()[1:]),
        "generated_cot": _write_method(root, "generated_cot", subset, subset["activity"].to_numpy()
                                       + rng.normal(scale=0.3, size=20)),
        "rcc_only": _write_method(root, "rcc_only", subset, subset["activity"].to_numpy()
                                  + rng.normal(scale=0.9, size=20)),
        "oracle_cot": _write_method(root, "oracle_cot", subset, subset["activity"].to_numpy()
                                    + rng.normal(scale=0.1, size=20)),
    }
    metrics = evaluate(dirs, {"cnn", "ridge"}, root / "test.parquet", root / "test_subset.parquet",
                       {"n_boot": 200, "seed": 0})
    return {"root": root, "dirs": dirs, "metrics": metrics, "test": test}


def test_methods_are_scored_only_where_they_cover_every_row(dataset: dict) -> None:
    metrics, skipped = dataset["metrics"], dataset["metrics"].attrs["skipped"]
    scored = {(row.protocol, row.cell_type, row.method) for row in metrics.itertuples()}
    for cell in ("K562", "HepG2"):
        assert {("full", cell, "cnn"), ("full", cell, "ridge"), ("paper", cell, "generated_cot")} <= scored
        assert ("full", cell, "generated_cot") not in scored
        assert ("paper", cell, "partial") not in scored and ("full", cell, "partial") not in scored
    assert ("full", "HepG2", "broken") in scored and ("paper", "K562", "broken") not in scored
    assert set(metrics.loc[metrics["protocol"] == "full", "n"]) == {40}
    assert set(metrics.loc[metrics["protocol"] == "paper", "n"]) == {10}

    reasons = {(row.protocol, row.cell_type, row.method): row.reason for row in skipped.itertuples()}
    assert reasons[("full", "K562", "generated_cot")] == "covers 10 of 40 rows (30 missing)"
    assert reasons[("paper", "K562", "partial")] == "covers 9 of 10 rows (1 missing)"
    assert reasons[("paper", "K562", "broken")] == "covers 9 of 10 rows (0 missing, 1 non-finite)"
    assert reasons[("paper", "HepG2", "partial")] == "no predictions for this cell type"


def test_reference_is_the_best_baseline_and_deltas_are_paired(dataset: dict) -> None:
    metrics = dataset["metrics"]
    for (_, _), rows in metrics.groupby(["protocol", "cell_type"]):
        baselines = rows[rows["baseline"]]
        best = baselines.loc[baselines["pearson"].idxmax(), "method"]
        assert set(rows["reference"]) == {best}
        reference = rows[rows["method"] == best].iloc[0]
        assert np.isnan(reference["delta_pearson"])
        for row in rows[rows["method"] != best].itertuples():
            assert row.delta_pearson == pytest.approx(row.pearson - reference["pearson"])
            assert row.delta_pearson_lo <= row.delta_pearson_hi and 0 < row.delta_pearson_p <= 1
            assert row.pearson_lo <= row.pearson <= row.pearson_hi


def test_evaluate_rejects_predictions_of_another_data_set(dataset: dict, tmp_path: Path) -> None:
    test = dataset["test"].copy()
    other = _write_method(tmp_path, "other", test.assign(activity=test["activity"] + 1), test["activity"].to_numpy())
    root = dataset["root"]
    with pytest.raises(InputError, match="measured values differ"):
        evaluate({"other": other}, set(), root / "test.parquet", root / "test_subset.parquet", {"n_boot": 10})
    with pytest.raises(InputError, match="no predictions"):
        evaluate({"other": other}, {"cnn"}, root / "test.parquet", root / "test_subset.parquet", {"n_boot": 10})
    with pytest.raises(InputError, match="unknown evaluation setting"):
        evaluate({}, set(), root / "test.parquet", root / "test_subset.parquet", {"n_boots": 10})


# ------------------------------------------------------------------------------------------------ shuffles
def _dinucleotides(sequence: str) -> Counter:
    return Counter(left + right for left, right in pairwise(sequence))


def test_dinucleotide_shuffle_keeps_counts_is_seeded_and_uniform() -> None:
    rng = np.random.default_rng(0)
    for _ in range(20):
        sequence = "".join(rng.choice(list("ACGT"), size=int(rng.integers(3, 200))))
        shuffled = dinucleotide_shuffle(sequence, np.random.default_rng(1))
        assert _dinucleotides(shuffled) == _dinucleotides(sequence)
        assert shuffled[0] == sequence[0] and shuffled[-1] == sequence[-1]
    sequence = "".join(rng.choice(list("ACGT"), size=200))
    assert dinucleotide_shuffle(sequence, np.random.default_rng(4)) == dinucleotide_shuffle(
        sequence, np.random.default_rng(4))
    assert dinucleotide_shuffle(sequence, np.random.default_rng(4)) != dinucleotide_shuffle(
        sequence, np.random.default_rng(5))

    short = "AACAGCAT"
    valid = {"".join(order) for order in set(permutations(short)) if _dinucleotides(order) == _dinucleotides(short)}
    draws = Counter(dinucleotide_shuffle(short, rng) for _ in range(3000))
    assert set(draws) == valid and len(valid) >= 3
    assert stats.chisquare([draws[item] for item in sorted(valid)]).pvalue > 1e-3


def test_disrupt_span_changes_only_the_span_and_keeps_dinucleotides() -> None:
    rng = np.random.default_rng(2)
    sequence = "".join(rng.choice(list("ACGT"), size=120))
    disrupted = disrupt_span(sequence, 31, 45, rng)  # 1-based inclusive: indices 30..44
    assert disrupted[:30] == sequence[:30] and disrupted[45:] == sequence[45:]
    assert disrupted[30:45] != sequence[30:45]
    assert _dinucleotides(disrupted) == _dinucleotides(sequence)
    assert disrupt_span("AAAAAA", 2, 4, rng) == "AAAAAA"
    card = Card("K562", 0.5, sequence, (MotifHit("MA1", "SP1", "Sp", "C2H2", 5, 14, "+", 10.0, 1e-5),
                                        MotifHit("MA1", "SP1", "Sp", "C2H2", 12, 20, "-", 9.0, 1e-5),
                                        MotifHit("MA1", "SP1", "Sp", "C2H2", 60, 69, "+", 9.0, 1e-5),
                                        MotifHit("MA2", "GATA1", "GATA", "C4", 80, 90, "+", 9.0, 1e-5)))
    disrupted = disrupt_motif(card.to_json(), "SP1", rng)
    changed = {index + 1 for index, (old, new) in enumerate(zip(sequence, disrupted, strict=True)) if old != new}
    assert changed and changed <= set(range(5, 21)) | set(range(60, 70))
    assert _dinucleotides(disrupted) == _dinucleotides(sequence)
    with pytest.raises(InputError, match="not on the card"):
        disrupt_motif(card, "JUN", rng)
    with pytest.raises(InputError, match="not within"):
        disrupt_span(sequence, 110, 121, rng)


# ------------------------------------------------------------------------------------------------ citations
def _card(cell_type: str = "K562") -> Card:
    hits = [("MA0035.5", "GATA1", "C4-GATA-related", 10, 20), ("MA0488.2", "JUN", "Jun-related", 30, 40),
            ("MA0491.3", "JUND", "Jun-related", 50, 60),
            ("MA1141.2", "FOSL2::JUND", "Fos-related; Jun-related", 70, 80),
            ("MA0138.3", "REST", "Factors with multiple dispersed zinc fingers", 100, 120),
            ("MA1712.2", "ZNF454", "More than 3 adjacent zinc fingers", 150, 160)]
    return Card(cell_type=cell_type, gc_content=0.5, sequence="A" * 200, motifs=tuple(
        MotifHit(matrix_id, name, family, "C2H2", start, end, "+", 12.5, 1e-5)
        for matrix_id, name, family, start, end in hits))


def test_cited_motifs_reads_teacher_phrasings() -> None:
    card = _card()
    full = (
        "<think>\n1. The card lists 6 motif hits between positions 10-160; the most frequent family is Jun-related "
        "(3 hits, e.g. JUN at 30-40).\n"
        "2. Several card motifs point toward K562 activity. GATA1 (C4-GATA-related, + strand, Pos 10-20) is a "
        "curated K562 activator: a WGATAR site; GATA1 itself is enriched in K562 training data (strong), carried by "
        "323 of 2,400 high-activity vs 105 of 2,400 low-activity K562 training sequences. FOSL2::JUND "
        "(Fos-related; Jun-related, + strand, Pos 70-80); its family Jun-related is enriched in K562 training "
        "data (strong).\n"
        "3. Counterweights: REST (Factors with multiple dispersed zinc fingers, + strand, Pos 100-120) is a curated "
        "K562 repressor: a zinc-finger silencer. Also JUND.\n"
        "4. Arrangement: the activity-associated GATA1 (10-20) and FOSL2::JUND (70-80) are 49 bp apart.\n"
        "5. At GC 0.500, GATA1 and FOSL2::JUND favour activity and REST works against it.\n</think>\n"
        "Conclusion: Given GATA1 and FOSL2::JUND offset by REST and JUND, this sequence is weakly active in K562. "
        "Activity level: 1 (weak).")
    assert cited_motifs(full, card) == {"JUN": 0, "GATA1": 1, "FOSL2::JUND": 1, "REST": -1, "JUND": -1}

    brief = ("<think>\n1. 6 hits in 10-160; the best match is ZNF454.\n"
             "2. GATA1 (log2 OR +1.76) and FOSL2::JUND favour K562 activity.\n"
             "3. No repressor or depleted site; JUN and ZNF454 carry no K562 signal.\n"
             "4. GATA1 and FOSL2::JUND, 49 bp apart (tandem), can cooperate.\n</think>\n"
             "Conclusion: Given GATA1 against REST, it is weakly active in K562. Activity level: 1 (weak).")
    assert cited_motifs(brief, card) == {"ZNF454": 0, "GATA1": 1, "FOSL2::JUND": 1, "JUN": 0, "REST": -1}
    assert cited_motifs(brief, card.to_json()) == cited_motifs(brief, json.loads(card.to_json()))

    compact = ("<think>\n1. 6 hits; top ZNF454.\n2. In K562: up GATA1, FOSL2::JUND; down REST; neutral JUN, ZNF454.\n"
               "3. GATA1 and FOSL2::JUND close, cooperative.\n</think>\nConclusion: Activity level: 2 (moderate).")
    assert cited_motifs(compact, card) == {"ZNF454": 0, "GATA1": 1, "FOSL2::JUND": 1, "REST": -1, "JUN": 0}
    assert cited_motifs(compact.replace("up GATA1, FOSL2::JUND", "up none"), card)["GATA1"] == 0
    assert set(cited_motifs("GATA1 sets up a loop; REST goes down the list.", card).values()) == {0}


def test_cited_motifs_reads_free_text_and_keeps_names_apart() -> None:
    card = _card()
    assert cited_motifs("FOSL2::JUND recruits co-activators and drives expression, whereas the JUN site is weak. "
                        "REST acts as a repressor.", card) == {"FOSL2::JUND": 1, "JUN": 0, "REST": -1}
    assert cited_motifs("The FOSL2::JUND dimer site is bound.", card) == {"FOSL2::JUND": 0}  # not JUN, not JUND
    assert cited_motifs("JUND lowers expression; JUN is not an activator here.", card) == {"JUND": -1, "JUN": 0}
    assert cited_motifs("Jun-related sites and jun or rest of the card; Rest", card) == {}  # families, case
    assert cited_motifs("Without GATA1 nothing drives it. ZNF454 sits at 150-160.", card) == {"GATA1": 0,
                                                                                              "ZNF454": 0}
    assert cited_motifs("GATA1 (Score 12.50) is a strong activating site.\nJUN represses it.", card) == {
        "GATA1": 1, "JUN": -1}


def _ground_truth() -> pd.DataFrame:
    sites = [("s1", "K562", "GATA1", 12, 22, 0.8), ("s1", "K562", "REST", 105, 115, -0.5),
             ("s1", "K562", "FOS::JUN", 72, 81, 0.3), ("s1", "K562", "SP1", 180, 190, 0.4),
             ("s1", "K562", "CTCF", 130, 140, 0.0), ("s1", "HepG2", "GATA1", 12, 22, 0.0)]
    return pd.DataFrame(sites, columns=["seq_id", "cell_type", "tf", "start", "end", "contribution"])


def test_citation_faithfulness_against_a_known_answer() -> None:
    rationales = pd.DataFrame({
        "id": ["s1", "s1"], "cell_type": ["K562", "HepG2"],
        "rationale": ["GATA1 drives activity. JUN works against it. REST favours activity. ZNF454 is neutral.",
                      "GATA1 drives activity."]})
    cards = pd.DataFrame({"id": ["s1", "s1"], "cell_type": ["K562", "HepG2"],
                          "card_json": [_card("K562").to_json(), _card("HepG2").to_json()]})
    table = citation_faithfulness(attach_cards(rationales, cards), _ground_truth(), {"n_boot": 50}).set_index(
        "cell_type")
    k562 = table.loc["K562"]
    assert (k562["cited"], k562["claimed"], k562["causal_on_card"], k562["direction_n"]) == (4, 3, 3, 2)
    assert k562["precision"] == pytest.approx(2 / 4) and k562["claimed_precision"] == pytest.approx(2 / 3)
    assert k562["recall"] == pytest.approx(2 / 3) and k562["claimed_recall"] == pytest.approx(2 / 3)
    assert k562["direction_agreement"] == pytest.approx(1 / 2)  # GATA1 right, REST's sign wrong
    assert k562["card_precision"] == pytest.approx(3 / 6)  # GATA1, FOSL2::JUND, REST overlap causal sites
    assert table.loc["HepG2", "precision"] == 0 and np.isnan(table.loc["HepG2", "recall"])
    assert table.loc["all", "precision"] == pytest.approx(2 / 5)
    with pytest.raises(InputError, match="have no card"):
        attach_cards(rationales.assign(id="s9"), cards)


def test_disruption_agreement_counts_signs_with_a_tolerance() -> None:
    table = pd.DataFrame([("K562", "s1", "A", 1, 0.5), ("K562", "s1", "B", -1, 0.2), ("K562", "s2", "C", -1, -0.3),
                          ("K562", "s2", "D", 1, 1e-5), ("HepG2", "s3", "E", 0, 0.4), ("HepG2", "s3", "F", 1, np.nan),
                          ("HepG2", "s4", "G", 1, 0.1)], columns=["cell_type", "id", "motif", "claimed", "delta"])
    result = disruption_agreement(table, {"n_boot": 100}).set_index("cell_type")
    assert result.loc["K562", ["pairs", "sequences", "changed", "activating", "repressive"]].tolist() == [4, 2, 3, 2, 2]
    assert result.loc["K562", "agreement"] == pytest.approx(0.5)
    assert result.loc["K562", "agreement_lo"] <= 0.5 <= result.loc["K562", "agreement_hi"]
    assert (result.loc["HepG2", "pairs"], result.loc["HepG2", "skipped"]) == (1, 2)
    assert result.loc["all", "agreement"] == pytest.approx(3 / 5)


# ------------------------------------------------------------------------------------------------ report
def test_report_writes_every_file_with_the_numbers(dataset: dict, tmp_path: Path) -> None:
    metrics_path, skipped_path = tmp_path / "metrics.tsv", tmp_path / "skipped.tsv"
    write_metrics(dataset["metrics"], metrics_path, skipped_path)
    citations = tmp_path / "citations.tsv"
    rationales = pd.DataFrame({"id": ["s1"], "cell_type": ["K562"], "rationale": ["GATA1 drives activity."],
                               "card_json": [_card().to_json()]})
    write_table(citation_faithfulness(rationales, _ground_truth(), {"n_boot": 20}), citations)
    loss = tmp_path / "loss.csv"
    pd.DataFrame({"step": [0, 1, 2], "epoch": [0, 0.5, 1], "split": ["val", "train", "val"], "loss": [3, 2, 1.5],
                  "learning_rate": [None, 1e-4, None]}).to_csv(loss, index=False)
    curve = tmp_path / "curve.csv"
    pd.DataFrame({"epoch": [1, 2], "step": [10, 20], "train_loss": [1.0, 0.8], "val_loss": [1.1, 0.9],
                  "val_pearson": [0.3, 0.4]}).to_csv(curve, index=False)

    files = write_report(metrics_path=metrics_path, prediction_dirs=dataset["dirs"],
                         test_path=dataset["root"] / "test.parquet",
                         test_subset_path=dataset["root"] / "test_subset.parquet",
                         summary_path=tmp_path / "report" / "summary.md", figure_dir=tmp_path / "report" / "figures",
                         skipped_path=skipped_path, faithfulness={"Self-generated citations": citations},
                         curves={"Stage I": loss, "cnn": curve}, ablations=("rcc_only",),
                         settings={"n_boot": 200, "seed": 0})
    names = sorted(path.name for path in files)
    assert names == ["design_objective.png", "pearson_full.png", "pearson_paper.png", "scatter_full.png",
                     "scatter_paper.png", "summary.md", "training_curves.png"]  # no designs: an empty design figure
    for path in files:
        assert path.is_file() and not list(path.parent.glob(".*.tmp"))
        if path.suffix == ".png":
            assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    text = (tmp_path / "report" / "summary.md").read_text()
    metrics = dataset["metrics"]
    cnn = metrics[(metrics["protocol"] == "full") & (metrics["cell_type"] == "K562")
                  & (metrics["method"] == "cnn")].iloc[0]
    assert f"{cnn['pearson']:.3f} [{cnn['pearson_lo']:.3f}, {cnn['pearson_hi']:.3f}]" in text
    assert "generated_cot − rcc_only" in text and "oracle_cot †" in text and "not deployable" in text
    assert "covers 10 of 40 rows (30 missing)" in text
    assert "| cnn | baseline | 980 (K562 500, HepG2 480) | epochs=7, channels=64 |" in text
    assert "figures/scatter_paper.png" in text and "Self-generated citations" in text
    best_paper = metrics[(metrics["protocol"] == "paper") & (metrics["cell_type"] == "K562")
                         & ~metrics["method"].isin(["oracle_cot"])].sort_values("pearson").iloc[-1]
    assert f"the highest point Pearson among deployable methods is {best_paper['method']}" in text
