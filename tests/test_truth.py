"""The demo's truth function: it gives the simulation's own sequences their noiseless activity, and every
difference it makes comes from a site the scan found that the simulation did not plant."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml

from r3lm.config import validate_config
from r3lm.data.simulate import catalogue_motifs, load_catalogue, simulate
from r3lm.data.truth import (
    layout_presence,
    true_activity,
    true_activity_and_sites,
    true_sites,
)
from r3lm.errors import InputError
from r3lm.stats import pearson

CONFIG = Path(__file__).parents[1] / "config/config.yaml"
SITE = ["seq_id", "tf", "start", "strand"]


@pytest.fixture(scope="module")
def settings() -> dict[str, Any]:
    """The demo's own simulation settings (12,000 sequences of 200 bp, sites at p < 1e-5)."""
    return validate_config(yaml.safe_load(CONFIG.read_text()))["dataset"]["demo"]


@pytest.fixture(scope="module")
def simulated(settings: dict[str, Any]) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """(noiseless activity, planted sites, true activity, true sites) of the demo, one site per row."""
    measurements, ground_truth = simulate(settings)
    noiseless = measurements.pivot(index="id", columns="cell_type", values="activity_noiseless")
    one = measurements.drop_duplicates("id")
    started = time.perf_counter()
    activity, sites = true_activity_and_sites(one["sequence"].tolist(), settings, ids=one["id"].tolist())
    seconds = time.perf_counter() - started
    print(f"\ntruth: {len(one)} x {len(one['sequence'].iloc[0])} bp in {seconds:.2f} s, {len(one) / seconds:.0f} sequences/s")
    planted = ground_truth.drop_duplicates(["seq_id", "site_index"])
    return noiseless[activity.columns], planted, activity, sites.drop_duplicates(["seq_id", "site_index"])


def test_truth_reproduces_the_noiseless_activity_of_the_simulation(simulated) -> None:
    noiseless, _, activity, _ = simulated
    correlation = {cell: pearson(noiseless[cell], activity[cell]) for cell in activity.columns}
    print("Pearson with activity_noiseless:", {cell: round(r, 4) for cell, r in correlation.items()})
    assert list(activity.index) == list(noiseless.index)
    assert min(correlation.values()) >= 0.95


def test_every_planted_site_is_found_with_its_exact_strength(simulated) -> None:
    """The scan uses the matrix and threshold the simulation made every planted site reach."""
    _, planted, _, sites = simulated
    matched = planted.merge(sites, on=SITE, how="left", suffixes=("", "_found"))
    lost = matched["strength_found"].isna()
    # A planted site drops out only when a layout with one more site fits its cluster (two neighbours that both
    # overlap it but not each other): 2 of 17,975 in the demo.
    assert lost.sum() <= 5
    assert (matched.loc[~lost, "strength"] == matched.loc[~lost, "strength_found"]).all()


def test_differences_come_only_from_sites_that_were_not_planted(simulated) -> None:
    noiseless, planted, activity, sites = simulated
    unplanted = sites.merge(planted[SITE], on=SITE, how="left", indicator=True).query("_merge == 'left_only'")
    gap = (activity - noiseless).abs().max(axis=1)
    explained = activity.index.isin(unplanted["seq_id"])
    # Where the scan finds just the planted sites, the truth is the simulation's number bit for bit.
    assert (gap[~explained] == 0).all()
    differs = gap > 1e-9  # alternatives of equal weight can move the sum by a rounding error

    overlap = unplanted.drop(columns="_merge").merge(planted, on="seq_id", suffixes=("", "_planted"))
    overlap = overlap[(overlap["start_planted"] <= overlap["end"]) & (overlap["end_planted"] >= overlap["start"])]
    chance = unplanted[~unplanted.set_index(SITE).index.isin(overlap.set_index(SITE).index)]
    print(f"{differs.sum()} of {len(activity)} sequences differ from activity_noiseless; {len(chance)} chance "
          f"sites (overlapping no planted site) in {chance['seq_id'].nunique()} sequences, "
          f"{len(unplanted) - len(chance)} alternative readings of planted sites (other strand, shifted, other TF) "
          f"({explained.sum()} sequences hold a found site that was not planted)")
    assert activity.index[differs].isin(chance["seq_id"]).sum() == chance["seq_id"].nunique()
    assert 0 < len(chance) < 0.05 * len(planted)

    # The rest that do not differ carry alternatives that read a planted site as the same TF with the same
    # strength (its other strand, or a shifted copy of the same bases): they change nothing.
    same = overlap[(overlap["tf"] == overlap["tf_planted"]) & (overlap["strength"] == overlap["strength_planted"])]
    quiet = unplanted[unplanted["seq_id"].isin(activity.index[~differs])]
    assert quiet.set_index(SITE).index.isin(same.set_index(SITE).index).all()


def test_a_gata1_site_acts_in_k562_only_and_removing_it_removes_the_effect(settings: dict[str, Any]) -> None:
    catalogue = load_catalogue()
    gata1 = next(motif for motif in catalogue_motifs(catalogue, settings["jaspar_release"])
                 if motif.name == "GATA1::TAL1")
    consensus = "".join("ACGT"[base] for base in gata1.frequencies.argmax(axis=0))
    background = "".join(np.random.default_rng(0).choice(list("ACGT"), 200))
    with_site = background[:90] + consensus + background[90 + gata1.width:]
    activity, sites = true_activity_and_sites([background, with_site], settings)

    assert len(sites) == len(catalogue.cell_types)  # one site, nothing in the background
    site = sites.iloc[0]
    assert (site["seq_id"], site["tf"], site["start"], site["strand"]) == (1, "GATA1::TAL1", 91, "+")
    assert (site["strength"], site["presence"]) == (1.0, 1.0)
    gc = [(sequence.count("C") + sequence.count("G")) / len(sequence) for sequence in (background, with_site)]
    effect = activity.loc[1] - activity.loc[0] - settings["gc_effect"] * (gc[1] - gc[0])
    assert effect.to_dict() == pytest.approx({"K562": 1.0, "HepG2": 0.0, "SKNSH": 0.0})
    assert activity.loc[1].idxmax() == "K562" and activity.loc[1, "K562"] > activity.loc[0, "K562"] + 0.9


def test_overlapping_alternatives_share_their_bases_and_lone_sites_count_fully() -> None:
    # Sequence 0: windows 0-10 and 5-15 overlap (weights 1 : 3); 20-30 stands alone. Sequence 1: a chain
    # 0-10, 8-18, 16-26 where the outer two fit together, so the middle one is never there.
    sequence = np.array([0, 0, 0, 1, 1, 1])
    start = np.array([0, 5, 20, 0, 8, 16])
    presence = layout_presence(sequence, start, start + 10, np.log([1.0, 3.0, 5.0, 1.0, 100.0, 1.0]))
    assert presence == pytest.approx([0.25, 0.75, 1.0, 1.0, 0.0, 1.0])
    assert presence[2] == 1.0


def test_public_wrappers_and_bad_inputs(settings: dict[str, Any]) -> None:
    sequences = ["acgt" * 50, "GATTACA" * 20]
    assert true_activity(sequences, settings, ids=["a", "b"]).index.tolist() == ["a", "b"]
    assert set(true_sites(sequences, settings)["seq_id"]) <= {0, 1}
    with pytest.raises(InputError, match="A/C/G/T"):
        true_activity(["ACGTN"], settings)
    with pytest.raises(InputError, match="site_pvalue"):
        true_activity(["ACGT" * 10], {**settings, "site_pvalue": None})
