"""Design engine core (r3lm.design) on an oracle with a known answer: two planted motifs whose best match
anywhere in the sequence adds activity with cell-type weights, so the best design for A is known."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
from ledidi.losses import MinGap
from torch import nn

from r3lm.baselines.cnn import LegNet, load_trained
from r3lm.deploy.specificity import min_gap
from r3lm.design import (
    GreedySettings,
    LedidiSettings,
    Objective,
    cap_edits,
    design,
    load_oracle,
)
from r3lm.design.starts import natural_starts
from r3lm.errors import InputError

AP1, SP1 = "TTGACTCA", "GGGCGGGG"
# A reads AP1 alone; B reads SP1 and a little AP1; C half of SP1 and a little AP1. For A, MinGap is
# 0.8 x (AP1 match) - (SP1 match): an AP1 and nothing SP1-like is the answer.
WEIGHTS = [[1.0, 0.0], [0.2, 1.0], [0.2, 0.5]]
LENGTH = 40
FAST = LedidiSettings(iterations=100, patience=50)


class Planted(nn.Module):
    """Activity per cell type = WEIGHTS @ (best match of each motif, in bases)."""

    def __init__(self, weights: list[list[float]] = WEIGHTS, detach: bool = False) -> None:
        super().__init__()
        self.cell_types = ["A", "B", "C"][:len(weights)]
        self.detach = detach
        filters = torch.stack([nn.functional.one_hot(torch.tensor(["ACGT".index(base) for base in motif]), 4).T
                               for motif in (AP1, SP1)]).float()
        self.register_buffer("filters", filters)
        self.register_buffer("weights", torch.tensor(weights))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        matches = nn.functional.conv1d(x.float(), self.filters).amax(dim=2)
        activity = matches @ self.weights.T
        return activity.detach() if self.detach else activity


def ap1_site_with_mismatches() -> str:
    """A background of A with AP1 three bases off (TTGACTCA -> TAGAATAA); a new AP1 in the background needs 6."""
    return "A" * 16 + "TAGAATAA" + "A" * 16


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Small batches: one torch thread is several times faster than two on cores other jobs share."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def oracle() -> Planted:
    return Planted()


@pytest.fixture(scope="module")
def de_novo(oracle: Planted) -> pd.DataFrame:
    return design(oracle, "A", n_designs=8, length=LENGTH, seed=1, settings=FAST)


def test_the_min_gap_is_the_one_ledidi_optimises():
    activity = torch.tensor([[3.0, 1.0, 2.0], [1.0, 2.0, 0.0]])
    in_mask = torch.tensor([True, False, False])
    expected = -MinGap(in_mask)(activity, None)
    assert torch.isclose(min_gap(activity[:, in_mask], activity[:, ~in_mask]).mean(), expected)
    np.testing.assert_allclose(min_gap(activity.numpy()[:, [0, 1]], activity.numpy()[:, [2]]), [-1.0, 1.0])


def test_ledidi_designs_raise_min_gap_far_above_random_starts(de_novo):
    assert de_novo["score"].median() > de_novo["start_score"].median() + 3.5
    # the optimum is 5.4: a whole AP1 (0.8 x 8) less the one SP1 base that some window over its G or C matches;
    # one mismatch in AP1 that drops that base gives 4.6
    assert de_novo["score"].min() > 4 and (de_novo["predicted_A"] >= 7).all()
    columns = ["id", "start_id", "target", "objective", "engine", "sequence", "start", "edits", "score",
               "start_score", "predicted_A", "predicted_B", "predicted_C"]
    assert de_novo.columns.tolist() == columns
    hamming = [sum(a != b for a, b in zip(x, y, strict=True)) for x, y in zip(de_novo["sequence"], de_novo["start"],
                                                                              strict=True)]
    assert de_novo["edits"].tolist() == hamming


def test_the_same_seed_gives_the_same_designs(oracle, de_novo):
    again = design(oracle, "A", n_designs=8, length=LENGTH, seed=1, settings=FAST)
    pd.testing.assert_frame_equal(again, de_novo)
    other = design(oracle, "A", n_designs=8, length=LENGTH, seed=2, settings=FAST)
    assert other["sequence"].tolist() != de_novo["sequence"].tolist()


@pytest.mark.parametrize("engine", ["ledidi", "greedy"])
def test_an_edit_budget_holds_exactly_and_is_spent_on_the_repair(oracle, engine):
    """A's activity is its AP1 match: each repaired base adds 1, and no other use of 3 edits comes close."""
    site = ap1_site_with_mismatches()
    starts = {"site": site, "noise": "".join(np.random.default_rng(0).choice(list("ACGT"), LENGTH))}
    for budget in (0, 2, 3):
        table = design(oracle, "A", objective="max", starts=starts, budget=budget, engine=engine, seed=0,
                       settings=FAST if engine == "ledidi" else None)
        assert (table["edits"] <= budget).all()
        assert table.loc[0, "score"] == 5 + budget and table.loc[1, "score"] >= table.loc[1, "start_score"]
    assert table.loc[0, "sequence"] == site.replace("TAGAATAA", AP1)


def test_cap_edits_keeps_the_edits_that_matter(oracle):
    site = ap1_site_with_mismatches()
    _, X = natural_starts({"site": site}, None)
    _, edited = natural_starts({"site": "C" * 8 + "G" * 8 + AP1 + "T" * 16}, None)  # 30 edits, 3 of them useful
    capped = cap_edits(Objective(oracle, "A", "max"), X, edited, 3)
    assert natural_starts({"site": site.replace("TAGAATAA", AP1)}, None)[1].equal(capped)


def test_greedy_designs_de_novo_too(oracle):
    table = design(oracle, "A", n_designs=2, length=LENGTH, engine="greedy", seed=1, settings=GreedySettings(max_iter=8))
    assert (table["edits"] <= 8).all() and (table["score"] > table["start_score"] + 2).all()


def test_numba_loops_run_on_their_own_thread_pool_and_leave_torch_s_as_it_was(oracle):
    """tangermeme's greedy tiling and memelite's TOMTOM are numba parallel loops: on numba's default OpenMP layer
    they start the system libgomp beside torch's own, and every torch op after them ran slower (text generation
    4x on 2 cores). r3lm.design selects numba's workqueue layer, which starts no OpenMP runtime."""
    import numba

    design(oracle, "A", n_designs=1, length=LENGTH, engine="greedy", seed=1, settings=GreedySettings(max_iter=2))
    assert numba.threading_layer() == "workqueue" and torch.get_num_threads() == 1


def test_max_raises_the_target_alone(oracle):
    table = design(oracle, ["B", "C"], objective="max", n_designs=2, length=LENGTH, seed=0, settings=FAST)
    assert (table["target"] == "B+C").all()
    assert (table["score"] == table[["predicted_B", "predicted_C"]].min(axis=1)).all()
    assert (table["score"] >= 5.2).all()  # the optimum: AP1 and SP1 both full, 0.2 x 8 + 0.5 x 8 = 5.6


def test_the_oracle_maps_the_cnn_back_to_activity(tmp_path):
    """A saved LegNet: the oracle's activity is what TrainedCNN.predict gives, in the measured units."""
    settings = {"stem_channels": 8, "stem_kernel": 5, "stage_channels": [8, 8], "kernel_size": 3, "expansion": 2,
                "batch_size": 16}
    torch.manual_seed(0)
    network = LegNet.from_settings(2, settings).eval()
    network.head[-1].weight.data.normal_(0, 1.0)
    torch.save({"state_dict": network.state_dict(), "target_mean": [5.0, -1.0], "target_std": [2.0, 0.5],
                "cell_types": ["HepG2", "K562"], "settings": settings}, tmp_path / "model.pt")
    sequences = ["".join(np.random.default_rng(seed).choice(list("ACGT"), 60)) for seed in range(6)]
    oracle = load_oracle(tmp_path / "model.pt")
    _, X = natural_starts(sequences, None)
    expected = load_trained(tmp_path / "model.pt", "cpu").predict(sequences)
    np.testing.assert_allclose(oracle(X).detach().numpy(), expected, rtol=1e-2, atol=1e-2)
    assert oracle.cell_types == ["HepG2", "K562"] and abs(expected[:, 0].mean() - 5.0) < abs(expected[:, 0].mean())
    table = design(oracle, "HepG2", starts=sequences, budget=2, settings=LedidiSettings(iterations=20))
    assert (table["edits"] <= 2).all()
    design(oracle, "HepG2", starts=sequences[:1], budget=1, engine="greedy")
    assert not any(module.training for module in oracle.modules())  # tangermeme's predict restores modes
    np.testing.assert_allclose(oracle(X).detach().numpy(), expected, rtol=1e-2, atol=1e-2)


def test_a_ridge_bundle_is_refused_as_an_oracle(tmp_path):
    (tmp_path / "model.json").write_text("{}")
    manifest = {"format": "r3lm-fast-bundle/1", "kind": "motif_ridge", "cell_types": ["A"], "model_file": "model.json",
                "levels": {"edges": {"A": [0.0]}}, "training_data": {}}
    (tmp_path / "r3lm_bundle.json").write_text(json.dumps(manifest))
    with pytest.raises(InputError, match="this bundle cannot take gradients: design with the CNN bundle"):
        load_oracle(tmp_path)


@pytest.mark.parametrize(("arguments", "message"), [
    ({"target": "D"}, "unknown cell type 'D': the oracle predicts A, B, C"),
    ({"target": ["A", "B", "C"]}, "min_gap needs a cell type besides the targets"),
    ({"oracle": Planted([[1.0, 0.0]])}, "min_gap needs a cell type besides the targets, but the oracle predicts only A;"),
    ({"starts": {"s1": "A" * LENGTH, "s2": "A" * 20 + "N" + "A" * 19}}, "row 2.*sequence 's2' has 'N' at position 21"),
    ({"starts": {"s1": "A" * LENGTH, "s2": "A" * 39}}, "row 2.*start 's2' is 39 bp; the designs are 40 bp"),
    ({"budget": -1}, "budget must be a whole number of edits, 0 or more, got -1"),
    ({"oracle": Planted(detach=True)}, "the oracle cannot take gradients"),
    ({"oracle": lambda x: x}, "the oracle must be a torch module"),
    ({"engine": "beam"}, "unknown engine 'beam'"),
    ({"objective": "mean_gap"}, "unknown objective 'mean_gap'"),
    ({"n_designs": 0, "starts": None}, "n_designs must be a positive integer"),
])
def test_bad_inputs_are_one_line_input_errors(oracle, arguments, message):
    call = {"oracle": oracle, "target": "A", "starts": {"s1": "A" * LENGTH}, **arguments}
    with pytest.raises(InputError, match=message) as raised:
        design(call.pop("oracle"), call.pop("target"), **call, length=LENGTH, settings=FAST)
    assert "\n" not in str(raised.value)


def test_a_detached_oracle_still_designs_greedily():
    table = design(Planted(detach=True), "A", objective="max", starts={"site": ap1_site_with_mismatches()},
                   budget=3, engine="greedy")
    assert table.loc[0, "sequence"].count(AP1) == 1
