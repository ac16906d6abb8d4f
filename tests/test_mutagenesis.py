"""Saturation mutagenesis with a fast bundle: 3 L substitutions, effects against the wild type, the planted site
the CNN learned standing out, and a logo PNG. With an LLM bundle: a rationale only where the card changes."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pandas as pd
import pytest
from test_fast_bundle import LENGTH, one_torch_thread, tiny_workflow

from r3lm.cli import main
from r3lm.deploy.fast import FastModel
from r3lm.deploy.mutagenesis import (
    RATIONALE_COLUMN,
    RESCORED,
    REUSED,
    centred_effects,
    run_mutagenesis,
    saturation_mutagenesis,
    substitutions,
)
from r3lm.deploy.scorer import load
from r3lm.errors import InputError

ACTIVATOR = "TGACTCA"  # make_dataset's AP-1 site: each one adds 1 to the activity in A
SITE_START = 25  # 0-based


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FastModel]:
    with one_torch_thread():  # for the module's tests too
        yield tiny_workflow(tmp_path_factory.mktemp("fast"))["model"]


@pytest.fixture(scope="module")
def planted() -> str:
    """One AP-1 site in a background without T, so no other site can appear by chance."""
    background = "".join(np.random.default_rng(11).choice(list("ACG"), LENGTH))
    return background[:SITE_START] + ACTIVATOR + background[SITE_START + len(ACTIVATOR):]


def test_every_single_base_substitution_once():
    table = substitutions("ACGTA")
    assert len(table) == 15 and table["position"].tolist() == [p for p in range(1, 6) for _ in range(3)]
    assert (table["ref"] != table["alt"]).all()
    assert table.loc[0, "sequence"] == "CCGTA" and table.loc[14, "sequence"] == "ACGTT"


def test_effects_are_mutant_minus_wild_type_and_strongest_in_the_planted_site(model, planted):
    table, wild_type = saturation_mutagenesis(model, planted)
    assert len(table) == 3 * LENGTH
    assert list(table.columns) == ["position", "ref", "alt", "effect_A", "effect_B"]
    mutant = substitutions(planted).loc[40, "sequence"]
    np.testing.assert_allclose(table.loc[40, ["effect_A", "effect_B"]].to_numpy(float),
                               model.predict([mutant])[0] - model.predict([planted])[0], rtol=1e-5, atol=1e-6)
    assert wild_type["A"] == pytest.approx(float(model.predict([planted])[0, 0]))
    inside = table["position"].between(SITE_START + 1, SITE_START + len(ACTIVATOR))
    strength = table["effect_A"].abs().groupby(table["position"]).mean()
    site = strength.loc[SITE_START + 1:SITE_START + len(ACTIVATOR)]
    assert site.mean() > 3 * strength.drop(site.index).mean()
    assert table.loc[inside, "effect_A"].mean() < 0  # breaking the activator lowers activity in A


def test_centred_effects_have_zero_mean_per_position(model, planted):
    table, _ = saturation_mutagenesis(model, planted, "B")
    centred = centred_effects(table, "B")
    assert centred.shape == (LENGTH, 4) and list(centred.columns) == list("ACGT")
    np.testing.assert_allclose(centred.sum(axis=1), 0.0, atol=1e-9)


def test_run_mutagenesis_writes_the_table_and_a_png_logo(model, planted, tmp_path):
    summary = run_mutagenesis(model.folder, planted, tmp_path / "effects.tsv", cell_types=["A"],
                              logo=tmp_path / "logo.png", name="planted", device="cpu", progress=False)
    table = pd.read_csv(tmp_path / "effects.tsv", sep="\t")
    assert len(table) == 3 * LENGTH and list(table.columns) == ["position", "ref", "alt", "effect_A"]
    assert summary["substitutions"] == 3 * LENGTH
    assert SITE_START < summary["strongest"]["A"][0] <= SITE_START + len(ACTIVATOR)
    fasta = tmp_path / "planted.fa"
    fasta.write_text(f">other\nACGT\n>planted\n{planted}\n")
    assert main(["mutagenesis", "--model", str(model.folder), "--fasta", str(fasta), "--id", "planted",
                 "--cell-type", "A", "--out", str(tmp_path / "cli.tsv"), "--device", "cpu", "--no-progress"]) == 0
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "cli.tsv", sep="\t"), table)
    png = (tmp_path / "logo.png").read_bytes()
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and png[12:16] == b"IHDR" and len(png) > 1000


def test_bad_requests_stop_before_any_work(model, tmp_path):
    with pytest.raises(InputError, match="has 'N' at position 2"):
        saturation_mutagenesis(model, "ANGT")
    with pytest.raises(InputError, match="logo is written as PNG"):
        run_mutagenesis(model.folder, "ACGT", tmp_path / "e.tsv", logo=tmp_path / "logo.svg", device="cpu")
    assert not (tmp_path / "e.tsv").exists()


# NFIL3's TTATGCAAT at 2-10 with its seventh base G: G8A mends the site, and no other substitution changes the card
BROKEN_NFIL3 = "TTTATGCGATG"


def test_an_llm_bundle_writes_a_rationale_only_for_mutants_whose_card_changes(bundle, tmp_path):
    with one_torch_thread():
        summary = run_mutagenesis(bundle, BROKEN_NFIL3, tmp_path / "effects.tsv", cell_types=["HepG2"], device="cpu",
                                  progress=False)
    table = pd.read_csv(tmp_path / "effects.tsv", sep="\t")
    assert list(table.columns) == ["position", "ref", "alt", "effect_HepG2", RATIONALE_COLUMN]
    assert summary["rationales"] == {REUSED: 32, RESCORED: 1}
    assert table.loc[table[RATIONALE_COLUMN] == RESCORED, ["position", "ref", "alt"]].values.tolist() == [[8, "G", "A"]]
    cards = load(str(bundle), "cpu").card_rows([BROKEN_NFIL3, *substitutions(BROKEN_NFIL3)["sequence"]],
                                               ["HepG2"])["card_text"].tolist()

    def beside_sequence(card: str) -> list[str]:  # all but the GC content and the DNA line
        return [line for line in card.splitlines()[:-1] if not line.startswith("- GC Content")]

    same = [beside_sequence(card) == beside_sequence(cards[0]) for card in cards[1:]]
    assert same == (table[RATIONALE_COLUMN] == REUSED).tolist() and "- NFIL3 (" in cards[1 + same.index(False)]
    # predicted anew all the same: the regressor reads the card's DNA line
    assert table.loc[table[RATIONALE_COLUMN] == REUSED, "effect_HepG2"].abs().gt(0).any()
