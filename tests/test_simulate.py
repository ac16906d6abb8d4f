"""The simulated `demo` MPRA: reproducible, internally consistent, and carrying the intended biology."""

from __future__ import annotations

import dataclasses
import logging
from itertools import combinations
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml

from r3lm.config import validate_config
from r3lm.data.simulate import (
    CATALOGUE_PATH,
    CatalogueTF,
    catalogue_motifs,
    load_catalogue,
    simulate,
)
from r3lm.errors import InputError
from r3lm.motifs.jaspar import motifs_by_name
from r3lm.motifs.pssm import score_motif, uniform_background
from r3lm.steps.data_steps import write_simulation

CELL_TYPES = ["K562", "HepG2", "SKNSH"]
MEASUREMENT_COLUMNS = ["id", "sequence", "cell_type", "activity", "activity_noiseless", "gc", "n_sites"]
GROUND_TRUTH_COLUMNS = ["seq_id", "site_index", "tf", "matrix_id", "family", "start", "end", "strand", "site",
                        "strength", "cell_type", "role", "contribution", "cooperative_bonus"]


def demo_settings(**overrides: Any) -> dict[str, Any]:
    return validate_config({"dataset": {"demo": overrides}})["dataset"]["demo"]


@pytest.fixture(scope="module")
def simulated() -> tuple[pd.DataFrame, pd.DataFrame]:
    return simulate(demo_settings(n_sequences=4000, seed=11))


@pytest.fixture(scope="module")
def sites(simulated: tuple[pd.DataFrame, pd.DataFrame]) -> pd.DataFrame:
    """One row per planted site (the ground truth repeats each site once per cell type)."""
    return simulated[1].drop_duplicates(["seq_id", "site_index"]).reset_index(drop=True)


def activity_by_presence(measurements: pd.DataFrame, ids_with: set[str], cell_type: str) -> float:
    """Mean activity of sequences in `ids_with` minus that of the others, in one cell type."""
    rows = measurements[measurements["cell_type"] == cell_type]
    carrying = rows["id"].isin(ids_with)
    return rows.loc[carrying, "activity"].mean() - rows.loc[~carrying, "activity"].mean()


def test_same_seed_gives_identical_frames_and_another_seed_does_not() -> None:
    first = simulate(demo_settings(n_sequences=300, seed=5))
    again = simulate(demo_settings(n_sequences=300, seed=5))
    other = simulate(demo_settings(n_sequences=300, seed=6))
    pd.testing.assert_frame_equal(first[0], again[0])
    pd.testing.assert_frame_equal(first[1], again[1])
    assert not first[0]["sequence"].equals(other[0]["sequence"])
    assert not np.allclose(first[0]["activity"], other[0]["activity"])


def test_measurement_table_shape_columns_and_order(simulated: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    measurements, ground_truth = simulated
    assert list(measurements.columns) == MEASUREMENT_COLUMNS
    assert len(measurements) == 4000 * 3
    assert measurements["cell_type"].tolist() == CELL_TYPES * 4000
    ids = measurements["id"].iloc[::3]
    assert ids.iloc[0] == "sim000001" and ids.iloc[-1] == "sim004000"
    assert ids.is_monotonic_increasing and ids.is_unique
    assert (measurements["id"].to_numpy().reshape(-1, 3) == ids.to_numpy()[:, None]).all()
    for column in ("activity", "activity_noiseless", "gc"):
        assert measurements[column].dtype == np.float64
    assert measurements["n_sites"].dtype == np.int64
    sequences = measurements["sequence"]
    assert (sequences.str.len() == 200).all()
    assert sequences.str.fullmatch("[ACGT]+").all()
    gc = sequences.str.count("[GC]") / 200
    np.testing.assert_allclose(measurements["gc"], gc)
    planted = ground_truth.groupby("seq_id").size() // 3
    n_sites = measurements.iloc[::3].set_index("id")["n_sites"]
    pd.testing.assert_series_equal(n_sites[n_sites > 0], planted.rename("n_sites"), check_names=False,
                                   check_index_type=False)
    assert n_sites.mean() == pytest.approx(3.0, abs=0.1)  # Poisson(mean_sites = 3); 200 bp rarely caps it


def test_ground_truth_columns_types_and_values(simulated: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    ground_truth = simulated[1]
    assert list(ground_truth.columns) == GROUND_TRUTH_COLUMNS
    for column in ("site_index", "start", "end"):
        assert ground_truth[column].dtype == np.int64
    for column in ("strength", "contribution", "cooperative_bonus"):
        assert ground_truth[column].dtype == np.float64
    assert ground_truth["cell_type"].tolist() == CELL_TYPES * (len(ground_truth) // 3)
    assert set(ground_truth["strand"]) == {"+", "-"}
    assert set(ground_truth["role"]) == {"activator", "repressor"}
    assert ground_truth["strength"].between(0, 1).all()
    assert ground_truth["strength"].std() > 0.05  # sampled sites vary in affinity
    motifs = motifs_by_name("JASPAR2026")
    for tf, rows in ground_truth.groupby("tf"):
        assert set(rows["matrix_id"]) == {motifs[tf].matrix_id}
        assert set(rows["family"]) == {motifs[tf].family}


def test_sites_lie_at_their_coordinates_without_overlap(simulated: tuple[pd.DataFrame, pd.DataFrame],
                                                         sites: pd.DataFrame) -> None:
    sequence_of = simulated[0].iloc[::3].set_index("id")["sequence"]
    motifs = motifs_by_name("JASPAR2026")
    for row in sites.itertuples():
        assert sequence_of[row.seq_id][row.start - 1:row.end] == row.site
        assert row.end - row.start + 1 == motifs[row.tf].width
    assert (sites["start"] >= 1).all() and (sites["end"] <= 200).all()
    ordered = sites.sort_values(["seq_id", "start"])
    same_sequence = ordered["seq_id"].to_numpy()[1:] == ordered["seq_id"].to_numpy()[:-1]
    assert (ordered["start"].to_numpy()[1:][same_sequence] > ordered["end"].to_numpy()[:-1][same_sequence]).all()
    expected_index = ordered.groupby("seq_id").cumcount() + 1
    assert (ordered["site_index"] == expected_index).all()


def test_strength_is_the_rescaled_log_odds_score_on_the_motif_strand(sites: pd.DataFrame) -> None:
    motifs = motifs_by_name("JASPAR2026")
    complement = str.maketrans("ACGT", "TGCA")
    for row in sites.head(300).itertuples():
        frequencies = motifs[row.tf].frequencies
        log_odds = np.log2((frequencies + 0.1 / 4) / 1.1 / 0.25)
        on_motif_strand = row.site if row.strand == "+" else row.site.translate(complement)[::-1]
        score = sum(log_odds["ACGT".index(base), position] for position, base in enumerate(on_motif_strand))
        worst, best = log_odds.min(axis=0).sum(), log_odds.max(axis=0).sum()
        assert row.strength == pytest.approx((score - worst) / (best - worst), abs=1e-9)


def test_noiseless_activity_is_the_sum_of_its_parts(simulated: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    measurements, ground_truth = simulated
    catalogue = load_catalogue()
    site_sums = ground_truth.groupby(["seq_id", "cell_type"])["contribution"].sum()
    keys = pd.MultiIndex.from_arrays([measurements["id"], measurements["cell_type"]])
    expected = (measurements["cell_type"].map(catalogue.baseline)
                + 1.0 * (measurements["gc"] - 0.5)
                + site_sums.reindex(keys, fill_value=0.0).to_numpy())
    np.testing.assert_allclose(measurements["activity_noiseless"], expected, rtol=0, atol=1e-9)
    # Each contribution is the TF's weight times the site strength plus the site's cooperative share.
    weight_of = {tf.jaspar_name: tf.weight for tf in catalogue.transcription_factors}
    weight = [weight_of[tf][cell] for tf, cell in zip(ground_truth["tf"], ground_truth["cell_type"])]
    np.testing.assert_allclose(ground_truth["contribution"] - ground_truth["cooperative_bonus"],
                               np.array(weight) * ground_truth["strength"], rtol=0, atol=1e-12)


def test_measurement_noise_has_the_configured_sd(simulated: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    measurements = simulated[0]
    residual = measurements["activity"] - measurements["activity_noiseless"]
    assert residual.std() == pytest.approx(0.3, rel=0.05)
    assert abs(residual.mean()) < 0.02
    quiet = simulate(demo_settings(n_sequences=200, noise_sd=0.0))[0]
    np.testing.assert_array_equal(quiet["activity"], quiet["activity_noiseless"])


def test_cooperative_bonus_follows_the_catalogue_spacing_and_orientation(
        simulated: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    ground_truth = simulated[1]
    catalogue = load_catalogue()
    keys = zip(ground_truth["seq_id"], ground_truth["site_index"], ground_truth["cell_type"])
    expected = dict.fromkeys(keys, 0.0)
    by_sequence = ground_truth.drop_duplicates(["seq_id", "site_index"]).groupby("seq_id")
    same_strand_pairs, opposite_strand_pairs = [], []
    for seq_id, rows in by_sequence:
        for first, second in combinations(rows.itertuples(), 2):
            for pair in catalogue.cooperative_pairs:
                if sorted((first.tf, second.tf)) != sorted(pair.tfs):
                    continue
                distance = abs((first.start + first.end) / 2 - (second.start + second.end) / 2)
                if distance > pair.max_spacing:
                    continue
                same_strand = first.strand == second.strand
                decay = 1 - distance / pair.max_spacing
                (same_strand_pairs if same_strand else opposite_strand_pairs).append(decay)
                for cell, bonus in pair.bonus.items():
                    share = bonus * decay * (1.0 if same_strand else pair.opposite_strand_factor) / 2
                    expected[(seq_id, first.site_index, cell)] += share
                    expected[(seq_id, second.site_index, cell)] += share
    assert len(same_strand_pairs) > 20 and len(opposite_strand_pairs) > 20
    np.testing.assert_allclose(ground_truth["cooperative_bonus"], list(expected.values()), rtol=0, atol=1e-12)
    assert all(0 <= pair.opposite_strand_factor < 1 for pair in catalogue.cooperative_pairs)
    assert (ground_truth["cooperative_bonus"] > 0).sum() > 100


def test_strong_hnf4a_sites_raise_activity_in_hepg2_only(simulated: tuple[pd.DataFrame, pd.DataFrame],
                                                         sites: pd.DataFrame) -> None:
    measurements = simulated[0]
    hnf4a = sites[sites["tf"] == "HNF4A"]
    strong = set(hnf4a.loc[hnf4a["strength"] >= hnf4a["strength"].median(), "seq_id"])
    without = set(measurements["id"]) - set(hnf4a["seq_id"])
    compared = measurements[measurements["id"].isin(strong | without)]
    hepg2 = activity_by_presence(compared, strong, "HepG2")
    k562 = activity_by_presence(compared, strong, "K562")
    assert hepg2 > 1.0
    assert hepg2 > k562 + 0.8


def test_rest_represses_in_k562_but_not_in_sknsh(simulated: tuple[pd.DataFrame, pd.DataFrame],
                                                 sites: pd.DataFrame) -> None:
    measurements = simulated[0]
    with_rest = set(sites.loc[sites["tf"] == "REST", "seq_id"])
    k562 = activity_by_presence(measurements, with_rest, "K562")
    sknsh = activity_by_presence(measurements, with_rest, "SKNSH")
    assert k562 < -0.5
    assert sknsh > -0.15
    assert sknsh > k562 + 0.8


def test_gc_content_follows_the_configured_range() -> None:
    low = simulate(demo_settings(n_sequences=1000, gc_range=[0.2, 0.3], mean_sites=0))
    high = simulate(demo_settings(n_sequences=1000, gc_range=[0.7, 0.8], mean_sites=0))
    assert low[0]["gc"].mean() == pytest.approx(0.25, abs=0.01)
    assert high[0]["gc"].mean() == pytest.approx(0.75, abs=0.01)
    assert low[0]["gc"].max() < 0.45 and high[0]["gc"].min() > 0.55
    # Without sites the activity is the baseline plus the GC term, and the truth table is empty.
    assert low[1].empty and list(low[1].columns) == GROUND_TRUTH_COLUMNS
    assert (low[0]["n_sites"] == 0).all()
    baseline = low[0]["cell_type"].map(load_catalogue().baseline)
    np.testing.assert_allclose(low[0]["activity_noiseless"], baseline + (low[0]["gc"] - 0.5), atol=1e-12)


def test_gc_effect_sets_how_much_gc_drives_activity() -> None:
    strong_effect = simulate(demo_settings(n_sequences=2000, gc_effect=5.0, seed=3))[0]
    no_effect = simulate(demo_settings(n_sequences=2000, gc_effect=0.0, seed=3))[0]
    assert strong_effect["gc"].corr(strong_effect["activity"]) > no_effect["gc"].corr(no_effect["activity"]) + 0.3


def test_jaspar2024_release_works() -> None:
    measurements, ground_truth = simulate(demo_settings(n_sequences=300, jaspar_release="JASPAR2024"))
    motifs = motifs_by_name("JASPAR2024")
    assert len(measurements) == 900 and not ground_truth.empty
    for tf, matrix_id in ground_truth[["tf", "matrix_id"]].drop_duplicates().itertuples(index=False):
        assert motifs[tf].matrix_id == matrix_id


def test_a_tf_missing_from_the_release_is_named() -> None:
    catalogue = load_catalogue()
    invented = CatalogueTF("NOT_A_TF", "invented", "activator", 1.0, dict.fromkeys(catalogue.cell_types, 1.0))
    extended = dataclasses.replace(catalogue,
                                   transcription_factors=catalogue.transcription_factors + (invented,))
    with pytest.raises(ValueError, match=r"NOT_A_TF.*JASPAR2024"):
        catalogue_motifs(extended, "JASPAR2024")


def test_catalogue_rejects_a_weight_against_the_role(tmp_path: Path) -> None:
    raw = yaml.safe_load(CATALOGUE_PATH.read_text())
    rest = next(entry for entry in raw["transcription_factors"] if entry["jaspar_name"] == "REST")
    rest["weight"]["SKNSH"] = 0.5
    path = tmp_path / "catalogue.yaml"
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(ValueError, match="REST has role repressor"):
        load_catalogue(path)


def test_reversed_gc_range_is_an_input_error() -> None:
    with pytest.raises(InputError, match="gc_range"):
        simulate(demo_settings(gc_range=[0.7, 0.3]))


def test_write_simulation_writes_both_tables_and_logs(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    settings = demo_settings(n_sequences=100, seed=2)
    caplog.set_level(logging.INFO, logger="r3lm.steps.data_steps")
    write_simulation(settings, tmp_path / "out" / "measurements.parquet", tmp_path / "out" / "truth.parquet")
    measurements, ground_truth = simulate(settings)
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "out" / "measurements.parquet"), measurements)
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "out" / "truth.parquet"), ground_truth)
    assert sorted(path.name for path in (tmp_path / "out").iterdir()) == ["measurements.parquet", "truth.parquet"]
    assert any("100 sequences" in record.getMessage() for record in caplog.records)


def test_site_pvalue_plants_only_sites_the_scan_would_report() -> None:
    """Every site passes the scan threshold, and the redraws keep graded affinity above it."""
    settings = demo_settings(n_sequences=600, seed=2, site_pvalue=1e-5)
    _, ground_truth = simulate(settings)
    planted = ground_truth.drop_duplicates(["seq_id", "site_index"])
    free = simulate(demo_settings(n_sequences=600, seed=2))[1].drop_duplicates(["seq_id", "site_index"])
    motifs = motifs_by_name(settings["jaspar_release"])
    scored = {name: score_motif(motifs[name], uniform_background(), 1e-5) for name in planted["tf"].unique()}
    codes = {base: index for index, base in enumerate("ACGT")}
    for site in planted.itertuples():
        text = site.site if site.strand == "+" else site.site[::-1].translate(str.maketrans("ACGT", "TGCA"))
        matrix = scored[site.tf]
        total = sum(int(matrix.forward[column, codes[base]]) for column, base in enumerate(text))
        assert total >= matrix.threshold, site
    assert planted["strength"].std() > 0.03
    assert planted["strength"].mean() > free["strength"].mean()
    assert (free.groupby("tf")["strength"].min() < planted.groupby("tf")["strength"].min()).all()


def test_a_site_pvalue_a_catalogue_matrix_cannot_reach_is_named() -> None:
    with pytest.raises(InputError, match=r"cannot reach dataset\.demo\.site_pvalue 1e-09"):
        simulate(demo_settings(n_sequences=50, site_pvalue=1e-9))
