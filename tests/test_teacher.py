"""CRE-ReasonBench with the grounded teacher: evidence, roles, rationales, validation and the SFT files.

The main test builds real cards with r3lm's own scanner from Agarwal et al.'s HepG2 lentiMPRA
sequences and checks every rationale independently of validate.py: step count, level, each step
citing the card, and no JASPAR motif name that the card does not list.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pandas as pd
import pytest
from conftest import LEFT_ADAPTOR, RIGHT_ADAPTOR
from scipy.stats import fisher_exact, spearmanr

from r3lm.config import validate_config
from r3lm.data.levels import assign_levels, level_edges
from r3lm.errors import InputError
from r3lm.motifs.jaspar import load_motifs
from r3lm.motifs.scan import background_for, build_motif_set, scan_sequences
from r3lm.rationale.format import (
    THINK_CLOSE,
    THINK_OPEN,
    RationaleFormat,
    compose,
    parse,
    student_messages,
)
from r3lm.rationale.validate import (
    REASONS,
    invented_numbers,
    mentioned_motifs,
    unlisted_motifs,
    validate_rationale,
    wrong_facts,
)
from r3lm.rcc.build import cards_for_table
from r3lm.rcc.card import Card, CardSettings, build_card, parse_card
from r3lm.rcc.evidence_tags import CellEvidence, GcStats, stated_evidence
from r3lm.rcc.hits import MotifHit
from r3lm.reasoning.backend import TeacherAnswer
from r3lm.reasoning.crossfit import WHOLE_SPLIT, card_folds
from r3lm.reasoning.evidence import Evidence, compute_evidence, read_evidence_folds
from r3lm.reasoning.grounded import DETAILS, GroundedTeacher
from r3lm.reasoning.reading import TIERS
from r3lm.reasoning.roles import load_roles
from r3lm.reasoning.teacher import (
    TEACHER_COLUMNS,
    GroundedBackend,
    make_backend,
    run_teacher,
    select_set,
    stage2_rows,
    teacher_summary,
    write_sharegpt,
    write_teacher_set,
)
from r3lm.steps.reasoning_steps import (
    write_dataset_info,
    write_evidence,
    write_evidence_tags,
    write_tagged_cards,
)

CONFIG = validate_config({})
CARDS = CardSettings.from_config(CONFIG["rcc"])
GRAMMAR = CARDS.grammar
N_LEVELS = CONFIG["levels"]["n_levels"]
VOCABULARY = frozenset(motif.name for motif in load_motifs())
FAMILIES = frozenset(family for motif in load_motifs() for family in motif.family.split("; ") if family)


# ----------------------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def real_cards(hepg2_path: Path) -> pd.DataFrame:
    """300 real HepG2 sequences (adaptors trimmed), quartile levels from the train part, scanned and carded."""
    table = pd.read_csv(hepg2_path, sep="\t").sample(300, random_state=7).reset_index(drop=True)
    assert table["seq"].str.startswith(LEFT_ADAPTOR).all() and table["seq"].str.endswith(RIGHT_ADAPTOR).all()
    sequences = table["seq"].str.slice(len(LEFT_ADAPTOR), -len(RIGHT_ADAPTOR))
    split = np.where(np.arange(len(table)) < 200, "train", "test")
    edges = level_edges(table["mean_value"].to_numpy()[split == "train"], N_LEVELS)
    rows = pd.DataFrame({"id": table["seq_id"], "sequence": sequences, "cell_type": "HepG2", "split": split,
                         "activity": table["mean_value"], "level": assign_levels(table["mean_value"], edges)})
    settings = CONFIG["motifs"]
    motif_set = build_motif_set(settings, background_for(settings, rows["sequence"].tolist()))
    hits = scan_sequences(rows["id"].tolist(), rows["sequence"].tolist(), motif_set, progress=False)
    return cards_for_table(rows, hits, CARDS, progress=False)


@pytest.fixture(scope="module")
def real_evidence(real_cards: pd.DataFrame) -> Evidence:
    return compute_evidence(real_cards[real_cards["split"] == "train"], n_levels=N_LEVELS, min_count=5,
                            pseudocount=1.0, min_log2_ratio=0.5, progress=False)


def teacher(evidence: Evidence, seed: int = 0, detail: str = "full") -> GroundedTeacher:
    return GroundedTeacher(evidence=evidence, roles=load_roles(), grammar=GRAMMAR, n_levels=N_LEVELS, seed=seed,
                           detail=detail)


def hit(name: str, family: str, start: int, end: int, strand: str = "+", score: float = 12.0) -> MotifHit:
    return MotifHit(matrix_id=f"MA_{name}", name=name, family=family, tf_class="class", start=start, end=end,
                    strand=strand, score=score, pvalue=1e-5)


def card_row(card_id: str, card: Card, level: int, split: str = "train") -> dict[str, Any]:
    return {"id": card_id, "cell_type": card.cell_type, "split": split, "activity": float(level), "level": level,
            "n_motifs": len(card.motifs), "card_json": card.to_json(), "card_text": card.to_text()}


# ------------------------------------------------------------- independent checks of a rationale
_NAME_PATTERN = re.compile("(?<![A-Za-z0-9])(?:" + "|".join(
    re.escape(name) for name in sorted(VOCABULARY, key=len, reverse=True)) + ")(?![A-Za-z0-9])")


def jaspar_names_outside_card(text: str, card: Card) -> set[str]:
    """A second implementation: strip the card's families, regex-search every JASPAR name (case-sensitive)."""
    for family in sorted({f for h in card.motifs for f in (h.family, *h.family.split("; ")) if f}, key=len,
                         reverse=True):
        text = text.replace(family, " ")
    allowed = {part.upper() for h in card.motifs for part in (h.name, *h.name.split("::"))}
    return {match.group() for match in _NAME_PATTERN.finditer(text) if match.group().upper() not in allowed}


def card_motifs_in_order(text: str, card: Card) -> list[str]:
    """The card's motif names in order of first mention (card families masked as whole words, so family FOX
    leaves FOXP2 alone; "FOS::JUN" is not "JUN")."""
    for family in sorted({f for h in card.motifs for f in (h.family, *h.family.split("; ")) if f}, key=len,
                         reverse=True):
        text = re.sub(rf"(?<![A-Za-z0-9]){re.escape(family)}(?![A-Za-z0-9])", " " * len(family), text)
    first = {}
    for name in {h.name for h in card.motifs}:
        match = re.search(rf"(?<![A-Za-z0-9:-]){re.escape(name)}(?![A-Za-z0-9:-])", text)
        if match:
            first[name] = match.start()
    return sorted(first, key=first.get)


def step_cites_card(step: str, card: Card) -> bool:
    names = {part for h in card.motifs for part in (h.name, *h.name.split("::"))}
    families = {f for h in card.motifs for f in h.family.split("; ") if f}
    coordinates = {c for h in card.motifs for c in (h.start, h.end)}
    spans = any(int(a) in coordinates and int(b) in coordinates for a, b in re.findall(r"(\d+)-(\d+)", step))
    return (any(re.search(rf"(?<![A-Za-z0-9]){re.escape(n)}(?![A-Za-z0-9])", step) for n in names)
            or any(f in step for f in families) or spans or f"{card.gc_content:.3f}" in step
            or f"{card.length}-bp" in step)


# ---------------------------------------------------------------------------------- the main test
def test_grounded_rationales_on_real_cards_all_validate(real_cards: pd.DataFrame, real_evidence: Evidence) -> None:
    frame = run_teacher(CONFIG, real_cards, real_evidence, backend=GroundedBackend(teacher(real_evidence)),
                        vocabulary=VOCABULARY, progress=False)
    assert list(frame.columns) == TEACHER_COLUMNS
    assert frame["valid"].all(), frame.loc[~frame["valid"], "reject_reason"].value_counts().to_dict()
    assert (frame["rationale"] != "").all() and frame["rationale"].nunique() == len(frame)
    for row, card_json in zip(frame.itertuples(), real_cards["card_json"], strict=True):
        card = Card.from_json(card_json)
        parsed = parse(row.rationale)
        assert parsed.has_think and 5 <= len(parsed.steps) <= 7 and parsed.level == row.level
        name = ("low", "weak", "moderate", "high")[row.level]
        assert parsed.conclusion.endswith(f"Activity level: {row.level} ({name}).")
        assert all(step_cites_card(step, card) for step in parsed.steps), row.rationale
        assert not jaspar_names_outside_card(row.rationale, card), row.rationale
        assert "noting that" not in row.rationale  # the balance step's tally is its own sentence
    assert set(frame["n_steps"]) <= {5, 6, 7}


@pytest.fixture(scope="module")
def real_rationales(real_cards: pd.DataFrame, real_evidence: Evidence) -> dict[str, pd.DataFrame]:
    return {detail: run_teacher(CONFIG, real_cards, real_evidence, backend=GroundedBackend(
        teacher(real_evidence, detail=detail)), vocabulary=VOCABULARY, progress=False) for detail in DETAILS}


def test_brief_rationales_on_real_cards_validate_and_stay_short(real_cards: pd.DataFrame,
                                                                real_rationales: dict[str, pd.DataFrame]) -> None:
    frame = real_rationales["brief"]
    assert frame["valid"].all(), frame.loc[~frame["valid"], "reject_reason"].value_counts().to_dict()
    assert frame["rationale"].nunique() == len(frame)
    assert frame["rationale"].str.len().mean() < 700
    assert frame["rationale"].str.len().mean() < real_rationales["full"]["rationale"].str.len().mean() / 3
    for row, card_json in zip(frame.itertuples(), real_cards["card_json"], strict=True):
        card = Card.from_json(card_json)
        parsed = parse(row.rationale)
        assert parsed.has_think and 5 <= len(parsed.steps) <= 7 and parsed.level == row.level
        assert parsed.conclusion.endswith(f"Activity level: {row.level} ({('low', 'weak', 'moderate', 'high')[row.level]}).")
        assert all(step_cites_card(step, card) for step in parsed.steps), row.rationale
        assert not jaspar_names_outside_card(row.rationale, card), row.rationale
        assert all(len(card_motifs_in_order(step, card)) <= 3 for step in parsed.steps), row.rationale
        assert "Fisher" not in row.rationale and row.rationale.count("log2 OR") <= 1, row.rationale


def test_brief_and_full_make_the_same_decisions(real_cards: pd.DataFrame,
                                                real_rationales: dict[str, pd.DataFrame]) -> None:
    """Same steps, level, tier and verdict; brief's activator step names the first motifs the full one does."""
    tier = re.compile(r"\b(strongly positive|positive|mixed|negative)\b")
    direction = re.compile(r"\b(higher|lower)\b")
    full, brief = real_rationales["full"], real_rationales["brief"]
    assert (full["level"] == brief["level"]).all() and (full["n_steps"] == brief["n_steps"]).all()
    for full_text, brief_text, card_json in zip(full["rationale"], brief["rationale"], real_cards["card_json"],
                                                strict=True):
        card = Card.from_json(card_json)
        full_steps, brief_steps = parse(full_text).steps, parse(brief_text).steps
        assert parse(full_text).level == parse(brief_text).level
        assert tier.findall(full_steps[-1])[-1] == tier.findall(brief_steps[-1])[-1], (full_text, brief_text)
        assert direction.findall(full_steps[-1]) == direction.findall(brief_steps[-1]), (full_text, brief_text)
        full_sites, brief_sites = card_motifs_in_order(full_steps[1], card), card_motifs_in_order(brief_steps[1], card)
        assert brief_sites and brief_sites == full_sites[:len(brief_sites)], (full_steps[1], brief_steps[1])


def test_compact_rationales_keep_the_decisions_in_half_the_text(real_cards: pd.DataFrame,
                                                                real_rationales: dict[str, pd.DataFrame]) -> None:
    """Valid on real cards, one phrasing, no positions or scores, about half of brief, and the full style's level,
    tier and lead activators."""
    tier = re.compile(r"\b(strongly positive|positive|mixed|negative)\b")
    full, brief, compact = (real_rationales[detail] for detail in ("full", "brief", "compact"))
    assert compact["valid"].all(), compact.loc[~compact["valid"], "reject_reason"].value_counts().to_dict()
    assert compact["rationale"].str.len().mean() < 0.7 * brief["rationale"].str.len().mean()
    assert (compact["level"] == full["level"]).all()
    for full_text, text, card_json in zip(full["rationale"], compact["rationale"], real_cards["card_json"],
                                          strict=True):
        card, steps = Card.from_json(card_json), parse(text).steps
        assert 5 <= len(steps) <= 7 and all(step_cites_card(step, card) for step in steps), text
        assert not re.search(r"Score|(?<![A-Za-z0-9])\d+-\d+", text), text
        assert tier.findall(parse(full_text).steps[-1])[-1] == tier.findall(steps[-1])[-1], (full_text, text)
        assert parse(text).conclusion == f"Conclusion: Activity level: {parse(text).level} " \
            f"({('low', 'weak', 'moderate', 'high')[parse(text).level]})."
        full_sites, sites = card_motifs_in_order(parse(full_text).steps[1], card), card_motifs_in_order(steps[1], card)
        assert sites == full_sites[:len(sites)], (full_text, text)


@pytest.mark.parametrize("detail", DETAILS)
def test_every_style_states_the_gc_content_as_the_card_prints_it(real_cards: pd.DataFrame,
                                                                 real_rationales: dict[str, pd.DataFrame],
                                                                 detail: str) -> None:
    """A student copies numbers; a teacher that rounds the card's 0.635 to 0.64 teaches it to invent digits."""
    stated = re.compile(r"(?<!mean )\bGC(?: content is| fraction of)? (\d\.\d+)")
    for text, card_json in zip(real_rationales[detail]["rationale"], real_cards["card_json"], strict=True):
        values = stated.findall(text)
        assert values and set(values) == {Card.from_json(card_json).gc_text}, text


def test_brief_style_is_seeded_and_configured(real_cards: pd.DataFrame, real_evidence: Evidence) -> None:
    card = parse_card(real_cards["card_json"].iloc[0])
    first = teacher(real_evidence, detail="brief").explain(card, 3, "x")
    assert first == teacher(real_evidence, detail="brief").explain(card, 3, "x")
    assert len({teacher(real_evidence, seed, detail="brief").explain(card, 3, "x") for seed in range(6)}) > 1
    backend = make_backend(validate_config({"reasoning": {"detail": "brief"}}), real_evidence, roles=load_roles())
    assert backend.explain([SimpleNamespace(card=card, level=3, card_id="x")], lambda job, text: None,
                           progress=False)[0].text == first
    assert make_backend(CONFIG, real_evidence, roles=load_roles()).teacher.detail == "full"
    with pytest.raises(ValueError, match="detail"):
        teacher(real_evidence, detail="short")


def test_evidence_counts_hand_checked() -> None:
    """8 K562 cards, levels 0,0,1,1,2,2,3,3 (high = levels 2-3): family A on 3 high and 1 low card."""
    seq = "ACGT" * 10
    a, b = hit("GATA1::TAL1", "C4-GATA-related; Tal-related", 1, 10), hit("REST", "Zinc", 20, 30)
    motifs_per_card = [[a, b], [b], [b], [], [a], [a], [a, b], []]
    gc = [0.2, 0.3, 0.35, 0.4, 0.5, 0.6, 0.65, 0.7]
    levels = [0, 0, 1, 1, 2, 2, 3, 3]
    rows = [card_row(f"c{i}", Card("K562", gc[i], seq, tuple(motifs)), level)
            for i, (motifs, level) in enumerate(zip(motifs_per_card, levels, strict=True))]
    evidence = compute_evidence(pd.DataFrame(rows), n_levels=4, min_count=3, pseudocount=1.0, min_log2_ratio=0.5,
                                progress=False)
    gata = evidence.family("K562", "C4-GATA-related")
    assert (gata.carriers_high, gata.carriers_low, gata.n_high, gata.n_low) == (3, 1, 4, 4)
    assert gata.log2_odds_ratio == pytest.approx(math.log2((4 / 2) / (2 / 4)))  # (3+1)/(1+1) over (1+1)/(3+1)
    assert gata.fisher_p == pytest.approx(fisher_exact([[3, 1], [1, 3]])[1])
    assert gata.mean_level_carriers == pytest.approx((0 + 2 + 2 + 3) / 4)
    assert gata.mean_level_others == pytest.approx((0 + 1 + 1 + 3) / 4)
    assert gata.call == "enriched"
    assert evidence.family("K562", "Tal-related") == Evidence.from_table(evidence.table()).family("K562", "Tal-related")
    assert evidence.family("K562", "Tal-related").carriers == 4  # the dimer counts for both of its families
    rest = evidence.family("K562", "Zinc")
    assert (rest.carriers_high, rest.carriers_low) == (1, 3) and rest.call == "depleted"
    assert evidence.motif("K562", "REST").carriers == 4
    trend = evidence.gc["K562"]
    assert trend.spearman_rho == pytest.approx(spearmanr(gc, levels)[0])
    assert trend.mean_gc_high == pytest.approx(np.mean(gc[4:])) and trend.mean_gc_low == pytest.approx(np.mean(gc[:4]))
    strict = compute_evidence(pd.DataFrame(rows), n_levels=4, min_count=5, pseudocount=1.0, min_log2_ratio=0.5,
                              progress=False)
    assert strict.family("K562", "C4-GATA-related").call == "neutral"  # only 4 carriers
    assert Evidence.from_table(evidence.table()) == evidence


def test_rationales_follow_the_evidence_and_rerun_identically(real_cards: pd.DataFrame,
                                                              real_evidence: Evidence) -> None:
    train = real_cards[real_cards["split"] == "train"]
    other_evidence = compute_evidence(train.iloc[:120], n_levels=N_LEVELS, min_count=5, pseudocount=1.0,
                                      min_log2_ratio=0.5, progress=False)
    card = parse_card(real_cards["card_json"].iloc[0])
    first = teacher(real_evidence).explain(card, 3, "x")
    assert first == teacher(real_evidence).explain(card, 3, "x")
    assert first != teacher(real_evidence).explain(card, 0, "x")
    assert first != teacher(other_evidence).explain(card, 3, "x")
    phrasings = {teacher(real_evidence, seed).explain(card, 3, "x") for seed in range(6)}
    assert len(phrasings) > 1  # the seed varies the wording, not the facts


@pytest.mark.parametrize("detail", DETAILS)
def test_card_without_motifs_gets_five_grounded_steps(real_evidence: Evidence, detail: str) -> None:
    card = build_card("ATATATATGCGCAAAAAAAAAAAAGGCCTTAAGG" * 6, "HepG2", [], CARDS)
    text = teacher(real_evidence, detail=detail).explain(card, 1, "empty")
    result = validate_rationale(text, card, label=1, min_steps=5, max_steps=7, n_levels=4,
                                motif_vocabulary=VOCABULARY)
    assert result.valid and result.n_steps == 5, (result, text)
    # the longest A/T run is quoted from the sequence, except in the compact notes, which count its CpGs
    assert ("AAAAAAAAAAAA" in text) == (detail != "compact")
    assert detail != "compact" or f"{card.sequence.count('CG')} CpGs" in text
    if detail == "compact":  # on a tagged card the steps are those of every card: the count, then the sides
        tagged = replace(teacher(real_evidence, detail=detail), tier_by_count=True).explain(card, 1, "empty")
        assert list(parse(tagged).steps[:3]) == ["0 hits; no motifs on the 204-bp sequence.",
                                           "In HepG2: up none; down none; neutral none.", "Only GC 0.294 to read."]
        assert validate_rationale(tagged, card, label=1, min_steps=5, max_steps=7, n_levels=4,
                                  motif_vocabulary=VOCABULARY).valid


@pytest.mark.parametrize("detail", DETAILS)
def test_a_card_whose_hits_have_no_family_is_read_without_one(real_evidence: Evidence, detail: str) -> None:
    """The official card (r3lm/rcc.py, github DuanYi516/R3LM) writes `Family: ` for a matrix JASPAR gives no
    family: the teacher names no family for such hits (no "()" or "most frequent family is ."), and every style's
    rationale still validates."""
    hits = [hit("CGGBP1", "", 21, 30, score=12.5), hit("ZNF367", "", 60, 72, "-", score=11.0)]
    card = build_card("ACGTTGCA" * 25, "HepG2", hits, CARDS)
    for seed in range(4):
        text = teacher(real_evidence, seed=seed, detail=detail).explain(card, 1, "f")
        assert "()" not in text and "(, " not in text and "family is " not in text and "0 famil" not in text, text
        assert validate_rationale(text, card, label=1, min_steps=5, max_steps=7, n_levels=4,
                                  motif_vocabulary=VOCABULARY).valid, text


@pytest.mark.parametrize(("detail", "expected"), [("full", "no WTC11 training evidence"),
                                                 ("brief", "no WTC11 trend is known"),
                                                 ("compact", "no WTC11 trend known")])
def test_cell_type_without_evidence_still_validates(real_evidence: Evidence, detail: str, expected: str) -> None:
    card = build_card("ACGTTGCA" * 25, "WTC11", [hit("CTCF", "More than 3 adjacent zinc fingers", 20, 38)], CARDS)
    text = teacher(real_evidence, detail=detail).explain(card, 2, "w")
    assert expected in text
    assert validate_rationale(text, card, label=2, min_steps=5, max_steps=7, n_levels=4,
                              motif_vocabulary=VOCABULARY).valid


# --------------------------------------------------------------------------------------- validation
GOLDEN_CARD = Card("K562", 0.512, "ACGT" * 50, (
    hit("GATA1::TAL1", "C4-GATA-related; Tal-related", 10, 26, "+", 15.62),
    hit("FOS::JUN", "Fos-related; Jun-related", 40, 50, "-", 13.10),
    hit("Hnf4a", "RXR-related receptors (NR2)", 120, 133)))


def golden(steps: list[str], conclusion: str = "Conclusion: Active. Activity level: 3 (high).") -> str:
    return compose(steps, conclusion)


GOOD_STEPS = ["GATA1::TAL1 at 10-26 is an erythroid activator site.", "The JUN half of FOS::JUN binds AP-1 sites.",
              "GC content of 0.512 is average; the rest is unremarkable.",
              "Hnf4a (RXR-related receptors (NR2)) is off.",
              "A Jun-related family site sits at positions 40-50, Score 13.10."]


@pytest.mark.parametrize(("text", "label", "reason"), [
    (golden(GOOD_STEPS), 3, None),
    (golden(GOOD_STEPS), None, None),
    ("\n".join(f"{i}. {step}" for i, step in enumerate(GOOD_STEPS, 1)) + "\nActivity level: 3", 3, "missing_think"),
    (golden(GOOD_STEPS[:4]), 3, "too_few_steps"),
    (golden(GOOD_STEPS + GOOD_STEPS[:3]), 3, "too_many_steps"),
    (golden(GOOD_STEPS, "Conclusion: Active."), 3, "missing_level"),
    (golden(GOOD_STEPS, "Conclusion: Active. Activity level: 4."), 3, "level_out_of_range"),
    (golden([*GOOD_STEPS[:4], "HNF4A and GATA1::TAL1 co-bind."]), 3, None),  # Hnf4a's other spelling
    (golden([*GOOD_STEPS[:4], "GATA1::TAL1 recruits REST."]), 3, "motif_not_in_card"),
    (golden([*GOOD_STEPS[:4], "GATA1::TAL1 near a SP1 box."]), 3, "motif_not_in_card"),
    (golden([*GOOD_STEPS[:4], "The sequence looks like an enhancer."]), 3, "step_without_evidence"),
    (golden(GOOD_STEPS), 2, "level_mismatch"),
    # numbers presented as the card's must be the card's
    (golden([*GOOD_STEPS[:4], "FOS::JUN (Score 7.42) binds AP-1 sites."]), 3, "number_not_on_card"),
    (golden([*GOOD_STEPS[:4], "FOS::JUN (Score 15.62) binds AP-1 sites."]), 3, "number_not_on_card"),  # GATA's score
    (golden([*GOOD_STEPS[:4], "Hnf4a (Family: RXR-related receptors (NR2), Score: 9.99) is off."]), 3,
     "number_not_on_card"),
    (golden([*GOOD_STEPS[:4], "GATA1::TAL1 at 12-26 is an erythroid activator site."]), 3, "number_not_on_card"),
    (golden([*GOOD_STEPS[:4], "GATA1::TAL1 sits at position 11."]), 3, "number_not_on_card"),
    (golden([*GOOD_STEPS[:4], "GATA1::TAL1 with GC 0.61 favours activity."]), 3, "number_not_on_card"),
    (golden([*GOOD_STEPS[:4], "GATA1::TAL1 with GC content of 61% favours activity."]), 3, "number_not_on_card"),
    # card numbers, statistics of the training evidence and level ranges are fine
    (golden([*GOOD_STEPS[:4], "GATA1::TAL1 (log2 OR +1.20, Score 15.62) at 10-50, GC 51.2%, levels 0-3."]), 3,
     None),
])
def test_validation_reasons_golden(text: str, label: int | None, reason: str | None) -> None:
    result = validate_rationale(text, GOLDEN_CARD, label=label, min_steps=5, max_steps=7, n_levels=4,
                                motif_vocabulary=VOCABULARY)
    assert result.reason == reason and result.valid == (reason is None), result
    assert reason is None or reason in REASONS


TAGGED_GOLDEN = GOLDEN_CARD.to_text(evidence=CellEvidence({"GATA1::TAL1": "up", "Hnf4a": "down"},
                                                          GcStats(mean_gc=0.45, sd_gc=0.05, spearman_rho=0.2)))
TAGGED_STEPS = ["3 hits; top GATA1::TAL1.", "For K562: GATA1::TAL1.", "Against: Hnf4a.",
                "FOS::JUN: no K562 signal.", "GC 0.512: above the mean, favours activity; net +0, mixed."]


@pytest.mark.parametrize(("steps", "wrong"), [
    (TAGGED_STEPS, ()),
    ([*TAGGED_STEPS[:4], "GC 0.512: above the mean, favours activity; net mixed."], ()),
    (["2 hits; top GATA1::TAL1.", *TAGGED_STEPS[1:]], ("2 hits, card lists 3",)),
    ([*TAGGED_STEPS[:3], "Single site GATA1::TAL1.", TAGGED_STEPS[4]], ("a single site, card lists 3",)),
    (["For K562: GATA1::TAL1 and Hnf4a.", *TAGGED_STEPS[1:]], ("Hnf4a for",)),
    ([*TAGGED_STEPS[:2], "Against: FOS::JUN; Hnf4a architectural.", *TAGGED_STEPS[3:]], ("FOS::JUN against",)),
    ([*TAGGED_STEPS[:2], "Against: none; FOS::JUN neutral.", *TAGGED_STEPS[3:]], ()),
    ([*TAGGED_STEPS[:2], "Against: none; GATA1::TAL1 and FOS::JUN neutral.", *TAGGED_STEPS[3:]],
     ("GATA1::TAL1 neutral",)),
    ([*TAGGED_STEPS[:2], "Against: none; FOS::JUN favour it.", *TAGGED_STEPS[3:]], ("FOS::JUN favouring",)),
    # the tagged compact style's sides step: every side as the line lists it
    ([TAGGED_STEPS[0], "In K562: up GATA1::TAL1; down Hnf4a; neutral FOS::JUN.", *TAGGED_STEPS[2:]], ()),
    ([TAGGED_STEPS[0], "In K562: up GATA1::TAL1; down none; neutral Hnf4a, FOS::JUN.", *TAGGED_STEPS[2:]],
     ("Hnf4a not down", "Hnf4a neutral")),
    ([*TAGGED_STEPS[:4], "GC 0.512: below the mean, favours activity; net +0, mixed."],
     ("GC below the mean, favours",)),
    ([*TAGGED_STEPS[:4], "GC 0.512: above the mean, works against activity; net +0, mixed."],
     ("GC above the mean, works against",)),
    ([*TAGGED_STEPS[:4], "GC 0.512: above the mean, favours activity; net +1, mixed."], ("net +1 mixed",)),
    ([*TAGGED_STEPS[:4], "GC 0.512: above the mean, favours activity; net +0, positive."], ("net +0 positive",)),
    ([*TAGGED_STEPS[:4], "GC 0.512: above the mean, favours activity; net negative."], ("net negative",)),
])
def test_fact_check_holds_a_rationale_to_its_cards_evidence_line(steps: list[str], wrong: tuple[str, ...]) -> None:
    """fact_not_on_card: the hit count, the GC reading, the net count and tier and the sides of the motifs a
    rationale states must be the ones its card's evidence line states (read back from the card's text)."""
    assert wrong_facts("\n".join(steps), GOLDEN_CARD, TAGGED_GOLDEN) == wrong
    result = validate_rationale(golden(steps), GOLDEN_CARD, label=None, min_steps=5, max_steps=7, n_levels=4,
                                motif_vocabulary=VOCABULARY, card_text=TAGGED_GOLDEN)
    assert result.reason == ("fact_not_on_card" if wrong else None), result
    untagged = validate_rationale(golden(steps), GOLDEN_CARD, label=None, min_steps=5, max_steps=7, n_levels=4,
                                  motif_vocabulary=VOCABULARY, card_text=GOLDEN_CARD.to_text())
    assert untagged.reason == ("fact_not_on_card" if "card lists" in "".join(wrong) else None), untagged


def test_fact_check_holds_a_layout_step_to_the_lines_layout() -> None:
    """The arrangement a student cannot work out from positions is printed on the line; a "Layout:" step must
    state it as printed."""
    text = GOLDEN_CARD.to_text(evidence=CellEvidence({"GATA1::TAL1": "up", "Hnf4a": "down"}), grammar=GRAMMAR)
    printed = stated_evidence(text).layout
    assert printed == "no cluster, GATA1::TAL1 and FOS::JUN spread out"
    assert wrong_facts(f"Layout: {printed}.", GOLDEN_CARD, text) == ()
    assert wrong_facts("Layout: cluster around Hnf4a.", GOLDEN_CARD, text) == ("layout cluster around Hnf4a",)
    assert wrong_facts("Layout: cluster around Hnf4a.", GOLDEN_CARD, TAGGED_GOLDEN) == ()  # a line without layout


def test_invented_numbers_name_what_the_card_lacks() -> None:
    text = "FOS::JUN (Score 7.42) at 40-51, position 120, GC 0.7; Nkx3-2 is a name, not a span."
    assert invented_numbers(text, GOLDEN_CARD) == ("score 7.42 for FOS::JUN", "score 7.42", "span 40-51", "GC 0.7")


def test_motif_mention_rules() -> None:
    assert mentioned_motifs("REST and rest and Rest", VOCABULARY) == ["REST"]
    assert mentioned_motifs("SP140L is not SP1", VOCABULARY) == ["SP140L", "SP1"]
    assert mentioned_motifs("FOSL2::JUN; EWSR1-FLI1; Jun-related; TBX1-related factors", VOCABULARY) == [
        "FOSL2::JUN", "EWSR1-FLI1"]
    assert mentioned_motifs("NKX2-5 binds; GATA1-bound sites", VOCABULARY) == ["NKX2-5", "GATA1"]
    card = Card("K562", 0.5, "ACGT", (hit("FOS::JUN", "Fos-related; Jun-related", 1, 10),
                                      hit("TEF", "TEF-1-related factors", 12, 20)))
    assert unlisted_motifs("JUN and FOS::JUN, TEF-1-related factors, TEF", card, VOCABULARY) == ()
    assert unlisted_motifs("FOSL2::JUN and JUNB", card, VOCABULARY) == ("FOSL2::JUN", "JUNB")
    for family in sorted(FAMILIES):  # a family term never counts as a motif once the card lists it
        card = Card("K562", 0.5, "ACGT", (hit("X", family, 1, 5),))
        assert unlisted_motifs(f"a site of the {family} family", card, VOCABULARY) == (), family


# ------------------------------------------------------------------------------------------- roles
def test_packaged_roles_match_names_dimers_and_families() -> None:
    roles = load_roles()
    assert all(key in roles.sources for role in roles.roles for key in role.sources)
    for role in roles.roles:  # rationales name no TF, so the teacher never cites a motif the card lacks
        assert mentioned_motifs(role.rationale, VOCABULARY) == [], role.rationale

    def role_of(name: str, family: str, cell_type: str) -> tuple[str, str] | None:
        role = roles.role_for(hit(name, family, 1, 9), cell_type)
        return None if role is None else (role.cell_type, role.role)

    assert role_of("FOSL2::JUN", "Fos-related; Jun-related", "HepG2") == ("any", "activator")
    assert role_of("Hnf4a", "RXR-related receptors (NR2)", "HepG2") == ("HepG2", "activator")
    assert role_of("Hnf4a", "RXR-related receptors (NR2)", "K562") is None
    assert role_of("Gata3", "C4-GATA-related", "K562") == ("K562", "activator")  # by family
    assert role_of("REST", "Factors with multiple dispersed zinc fingers", "SKNSH") == ("SKNSH", "repressor")
    assert role_of("REST", "Factors with multiple dispersed zinc fingers", "K562") == ("any", "repressor")
    assert role_of("MAFG::NRF1", "Maf-related; NRF", "K562") is None  # excluded: that NRF1 is NFE2L1
    assert role_of("CTCF", "More than 3 adjacent zinc fingers", "K562") == ("any", "architectural")


@pytest.mark.parametrize(("entry", "column"), [
    ({"tfs": ["X"], "cell_type": "any", "role": "helper", "rationale": "r", "source": ["s"]}, "role"),
    ({"tfs": ["X"], "cell_type": "any", "role": "activator", "rationale": "r", "source": ["nope"]}, "source"),
    ({"cell_type": "any", "role": "activator", "rationale": "r", "source": ["s"]}, "tfs"),
    ({"tfs": ["X"], "role": "activator", "rationale": "r", "source": ["s"]}, "cell_type"),
    ({"tfs": ["X"], "cell_type": "any", "role": "activator", "rationale": "r", "source": ["s"], "x": 1}, "x"),
])
def test_bad_roles_table_names_entry_and_field(tmp_path: Path, entry: dict, column: str) -> None:
    good = {"tfs": ["Y"], "cell_type": "any", "role": "activator", "rationale": "r", "source": ["s"]}
    path = tmp_path / "roles.yaml"
    path.write_text(json.dumps({"sources": {"s": "A paper."}, "roles": [good, entry]}))
    with pytest.raises(InputError) as caught:
        load_roles(path)
    assert (caught.value.path, caught.value.row, caught.value.column) == (str(path), 2, column)


# --------------------------------------------------------------------------------- sets and writers
def test_select_set_is_stratified_seeded_and_ordered(real_cards: pd.DataFrame) -> None:
    cards = pd.concat([real_cards, real_cards.assign(cell_type="K562")], ignore_index=True)
    chosen = select_set(cards, 40, seed=3)
    assert chosen.groupby("cell_type").size().to_dict() == {"HepG2": 40, "K562": 40}
    assert list(chosen.index) == sorted(chosen.index)  # original order and row labels kept
    for cell_type, group in chosen.groupby("cell_type"):
        expected = cards[cards["cell_type"] == cell_type]["level"].value_counts(normalize=True) * 40
        assert (group["level"].value_counts().reindex(expected.index) - expected).abs().max() < 1
    assert chosen.equals(select_set(cards, 40, seed=3))
    assert not chosen.equals(select_set(cards, 40, seed=4))
    alone = select_set(cards[cards["cell_type"] == "HepG2"], 40, seed=3)
    assert alone.equals(chosen[chosen["cell_type"] == "HepG2"])  # each cell type draws from its own stream
    assert len(select_set(cards, None, seed=3)) == len(cards) and len(select_set(cards, 10_000, seed=3)) == len(cards)


class HalfBadBackend:
    """Every other card gets a rationale without its <think> block; the rest the grounded teacher's."""

    name = "half-bad"

    def __init__(self, grounded: GroundedTeacher) -> None:
        self.grounded = grounded

    def explain(self, jobs, check, *, progress: bool) -> list[TeacherAnswer]:
        answers = []
        for index, job in enumerate(jobs):
            text = self.grounded.explain(job.card, job.level, job.card_id)
            if index % 2:
                text = text.replace(THINK_OPEN, "").replace(THINK_CLOSE, "")
            answers.append(TeacherAnswer(text, check(job, text), 1))
        return answers

    def stats(self) -> dict[str, Any]:
        return {"calls": 1}


def test_summary_counts_rejections(real_cards: pd.DataFrame, real_evidence: Evidence) -> None:
    cards = real_cards.iloc[:20]
    frame = run_teacher(CONFIG, cards, real_evidence, backend=HalfBadBackend(teacher(real_evidence)),
                        vocabulary=VOCABULARY, progress=False)
    summary = teacher_summary(frame, seconds=1.5, backend_stats={"calls": 1}, set_name="test")
    assert summary["rows"] == 20 and summary["valid"] == 10 and summary["valid_fraction"] == 0.5
    assert summary["rejections"] == {**dict.fromkeys(REASONS, 0), "missing_think": 10}
    assert summary["per_cell_type"] == {"HepG2": {"rows": 20, "valid": 10}}
    assert sum(summary["level_distribution"]["HepG2"].values()) == 10
    assert summary["backend"] == "half-bad" and summary["backend_stats"] == {"calls": 1}


class WrongLevelBackend(HalfBadBackend):
    """Concludes one level above the measured one (wrapping around) on every other card."""

    name = "wrong-level"

    def explain(self, jobs, check, *, progress: bool) -> list[TeacherAnswer]:
        answers = []
        for index, job in enumerate(jobs):
            level = (job.level + index % 2) % N_LEVELS
            text = self.grounded.explain(job.card, level, job.card_id)
            answers.append(TeacherAnswer(text, check(job, text), 1))
        return answers


def test_label_filter_is_an_option_and_off_by_default(real_cards: pd.DataFrame, real_evidence: Evidence) -> None:
    """The official filter checks format and evidence only; reasoning.label_filter also rejects a rationale
    whose conclusion is not the measured level."""
    cards = real_cards.iloc[:20]
    rows = {}
    for label_filter in (False, True):
        config = validate_config({"reasoning": {"label_filter": label_filter}})
        rows[label_filter] = run_teacher(config, cards, real_evidence, backend=WrongLevelBackend(teacher(real_evidence)),
                                         vocabulary=VOCABULARY, progress=False)
    assert rows[False]["valid"].all()
    assert rows[True]["reject_reason"].tolist() == [None, "level_mismatch"] * 10


@pytest.mark.parametrize("detail", DETAILS)
def test_the_reasoning_is_the_same_at_every_level(real_cards: pd.DataFrame, real_evidence: Evidence,
                                                  detail: str) -> None:
    """The label reaches only the conclusion: for any card, the <think> part (what a Stage-II oracle reads) is
    identical at every level, and it never states one."""
    grounded = teacher(real_evidence, detail=detail)
    caveats = 0
    for row in real_cards.iloc[:60].itertuples():
        card = parse_card(row.card_json)
        texts = [grounded.explain(card, level, row.id) for level in range(N_LEVELS)]
        thinks = {text.split("</think>")[0] for text in texts}
        assert len(thinks) == 1, texts
        # a level stated as such ("level 2", "the measured level"), not a training statistic ("average level 0.86")
        assert not re.search(r"measured|\blevel [0-9](?![.0-9])", thinks.pop()), texts[0]
        assert [parse(text).level for text in texts] == list(range(N_LEVELS))
        caveats += sum("only partly" in text for text in texts)
    assert detail == "compact" or caveats > 0  # the conclusion still weighs a disagreeing card


@pytest.mark.parametrize("how", ["bracket", "level"])
def test_stage1_agreeing_draws_the_stage1_sets_from_cards_whose_reading_agrees(real_cards: pd.DataFrame,
                                                                              tmp_path: Path, how: str) -> None:
    """reasoning.stage1_agreeing: every Stage-I card's grounded reading agrees with its measured level (bracket:
    the tier fits the level's bracket; level: the tier names the level, so the level rises with the net count);
    a Stage-II set is still drawn from every card; another teacher cannot use it."""
    cards_path, train_path = tmp_path / "cards.parquet", tmp_path / "train.parquet"
    real_cards.to_parquet(cards_path)
    real_cards[real_cards["split"] == "train"].to_parquet(train_path)
    config = validate_config({"reasoning": {"stage1_agreeing": how, "sets": {"stage1_train": 200, "test": 200}}})
    write_evidence(config, train_path, tmp_path / "evidence.parquet")  # cross-fitted: stage2_train takes all
    evidence = read_evidence_folds(tmp_path / "evidence.parquet")
    readers = {fold: teacher(fold_evidence) for fold, fold_evidence in evidence.items()}
    readings = [readers[fold].read(Card.from_json(card), int(level)) for card, level, fold in zip(
        real_cards["card_json"], real_cards["level"], card_folds(real_cards, len(readers) - 1))]
    agrees = [reading.consistent if how == "bracket" else reading.tier_level == reading.level for reading in readings]
    assert 0 < sum(agrees) < len(real_cards)  # the real cards hold both kinds
    sets = {}
    for name in ("stage1_train", "test"):
        write_teacher_set(config, cards_path, tmp_path / "evidence.parquet", tmp_path / f"{name}.parquet",
                          tmp_path / name, tmp_path / f"{name}.json", set_name=name, progress=False)
        sets[name] = pd.read_parquet(tmp_path / f"{name}.parquet")
    agreeing_ids = set(real_cards.loc[agrees, "id"])
    assert len(sets["stage1_train"]) == min(200, sum(agrees)) and set(sets["stage1_train"]["id"]) <= agreeing_ids
    assert len(sets["test"]) == 200 and not set(sets["test"]["id"]) <= agreeing_ids
    if how == "level":  # one level per tier, rising with it, and always inside the tier's bracket
        chosen = [reading for reading, agree in zip(readings, agrees, strict=True) if agree]
        assert all(reading.consistent for reading in chosen)
        by_tier = {reading.tier: reading.level for reading in chosen}
        assert len(by_tier) > 1 and len(set(by_tier.values())) == len(by_tier)
        assert [by_tier[tier] for tier in TIERS if tier in by_tier] == sorted(by_tier.values())
    hf = validate_config({"reasoning": {"stage1_agreeing": how, "teacher": "hf"}})
    with pytest.raises(InputError, match="needs reasoning.teacher: grounded"):
        write_teacher_set(hf, cards_path, tmp_path / "evidence.parquet", tmp_path / "hf.parquet", tmp_path / "hf",
                          tmp_path / "hf.json", set_name="stage1_train", progress=False)


def test_write_teacher_set_sharegpt_and_dataset_info(real_cards: pd.DataFrame, tmp_path: Path) -> None:
    cards = pd.concat([real_cards, real_cards.assign(cell_type="K562")], ignore_index=True)
    cards_path, train_path = tmp_path / "cards.parquet", tmp_path / "train.parquet"
    cards.to_parquet(cards_path)
    cards[cards["split"] == "train"].to_parquet(train_path)
    config = validate_config({"reasoning": {"sets": {"stage1_train": 25}}})
    write_evidence(config, train_path, tmp_path / "evidence.parquet")
    out = tmp_path / "teacher"
    (out / "sharegpt").mkdir(parents=True)
    (out / "sharegpt" / "Stale.jsonl").write_text("{}\n")
    summary = write_teacher_set(config, cards_path, tmp_path / "evidence.parquet", out / "stage1_train.parquet",
                                out / "sharegpt", out / "summary.json", set_name="stage1_train", progress=False)
    frame = pd.read_parquet(out / "stage1_train.parquet")
    assert list(frame.columns) == TEACHER_COLUMNS and len(frame) == 50 and frame["valid"].all()
    assert json.loads((out / "summary.json").read_text()) == summary
    assert summary["set"] == "stage1_train" and summary["rejections"] == dict.fromkeys(REASONS, 0)
    assert sorted(path.name for path in (out / "sharegpt").iterdir()) == ["HepG2.jsonl", "K562.jsonl"]
    records = [json.loads(line) for line in (out / "sharegpt" / "K562.jsonl").read_text().splitlines()]
    assert len(records) == 25
    first, row = records[0], frame[frame["cell_type"] == "K562"].iloc[0]
    assert set(first) == {"id", "cell_type", "level", "system", "conversations"}
    assert first["conversations"] == [
        {"from": "human", "value": student_messages(row["card_text"], row["system"])[1]["content"]},
        {"from": "gpt", "value": row["rationale"]}]
    assert "measured activity" in row["prompt"] and "measured activity" not in first["conversations"][0]["value"]
    info = write_dataset_info({"stage1_train": out / "sharegpt"}, tmp_path / "llamafactory" / "dataset_info.json")
    assert json.loads((tmp_path / "llamafactory" / "dataset_info.json").read_text()) == info
    assert sorted(info) == ["stage1_train_HepG2", "stage1_train_K562"]
    entry = info["stage1_train_K562"]
    assert entry == {"file_name": "../teacher/sharegpt/K562.jsonl", "formatting": "sharegpt",
                     "columns": {"messages": "conversations", "system": "system"},
                     "tags": {"role_tag": "from", "content_tag": "value", "user_tag": "human", "assistant_tag": "gpt"}}
    assert (tmp_path / "llamafactory" / entry["file_name"]).resolve() == (out / "sharegpt" / "K562.jsonl").resolve()


def test_stage2_training_rows_stay_out_of_the_evidence_and_the_stage1_set(real_cards: pd.DataFrame,
                                                                          tmp_path: Path) -> None:
    """No Stage-II training row is described by evidence its own label went into, nor learnt by Stage I: the
    evidence step and the Stage-I set leave out exactly the rows the stage2_train set then draws."""
    train = real_cards[real_cards["split"] == "train"].reset_index(drop=True)
    train_path, evidence_path = tmp_path / "train.parquet", tmp_path / "evidence.parquet"
    train.to_parquet(train_path)
    config = validate_config({"reasoning": {"sets": {"stage1_train": 40, "stage2_train": 60}}})
    held_out = set(train.loc[stage2_rows(train, config, "stage2_train"), "id"])
    written = write_evidence(config, train_path, evidence_path)
    kept = train[~train["id"].isin(held_out)]
    expected = compute_evidence(kept, n_levels=N_LEVELS, min_count=10, pseudocount=1.0, min_log2_ratio=0.5,
                                progress=False)
    assert len(held_out) == 60 and written.table().equals(expected.table())
    in_sample = write_evidence(validate_config({"reasoning": {"evidence": {"exclude_stage2_train": False}}}),
                               train_path, tmp_path / "in_sample.parquet")
    assert not in_sample.table().equals(written.table())
    drawn = {}
    for set_name in ("stage1_train", "stage2_train"):
        out = tmp_path / set_name
        write_teacher_set(config, train_path, evidence_path, out / "set.parquet", out / "sharegpt", out / "summary.json",
                          set_name=set_name, progress=False)
        drawn[set_name] = set(pd.read_parquet(out / "set.parquet")["id"])
    assert drawn["stage2_train"] == held_out and len(drawn["stage1_train"]) == 40
    assert drawn["stage1_train"].isdisjoint(held_out)


def test_with_every_train_card_in_stage2_the_evidence_is_cross_fitted(real_cards: pd.DataFrame,
                                                                      tmp_path: Path) -> None:
    """stage2_train null (the paper's Stage II): no row can be left out of the evidence, so a train card is
    tagged, and read by the grounded teacher, with the evidence of the other folds. Relabelling every card
    of fold 0 leaves those cards' tagged text and reasoning as they were, while the whole split's tags (what
    test cards read) move: the labels do reach the evidence, just never a card's own description."""
    motifs = pd.DataFrame([{"matrix_id": m.matrix_id, "name": m.name, "family": m.family, "class": m.tf_class}
                           for m in load_motifs()])
    motifs.to_parquet(tmp_path / "motifs.parquet")
    config = validate_config({"rcc": {"evidence_tags": True}, "reasoning": {
        "evidence": {"cross_fit_folds": 2, "min_count": 5}, "sets": {"stage2_train": None}}})
    fold = card_folds(real_cards, 2)
    assert set(np.unique(fold[real_cards["split"] == "train"])) == {0, 1}
    assert (fold[real_cards["split"] == "test"] == WHOLE_SPLIT).all()

    def run(cards: pd.DataFrame, name: str) -> tuple[pd.DataFrame, pd.DataFrame, Path]:
        out = tmp_path / name
        out.mkdir()
        cards.to_parquet(out / "cards.parquet")
        cards[cards["split"] == "train"].to_parquet(out / "train.parquet")
        write_evidence(config, out / "train.parquet", out / "evidence.parquet")
        write_evidence_tags(config, tmp_path / "motifs.parquet", out / "evidence.parquet", out / "tags.json")
        write_tagged_cards(config, out / "cards.parquet", out / "tags.json", out / "tagged.parquet")
        write_teacher_set(config, out / "tagged.parquet", out / "evidence.parquet", out / "stage2.parquet",
                          out / "sharegpt", out / "summary.json", set_name="stage2_train", progress=False)
        return pd.read_parquet(out / "tagged.parquet"), pd.read_parquet(out / "stage2.parquet"), out

    tagged, stage2, out = run(real_cards, "as_measured")
    train = real_cards[real_cards["split"] == "train"]
    folds = read_evidence_folds(out / "evidence.parquet")
    assert sorted(folds) == [WHOLE_SPLIT, 0, 1]
    outside_fold0 = compute_evidence(train[fold[real_cards["split"] == "train"] != 0], n_levels=N_LEVELS,
                                     min_count=5, pseudocount=1.0, min_log2_ratio=0.5, progress=False)
    assert folds[0].table().equals(outside_fold0.table())
    assert list(stage2["id"]) == list(real_cards["id"])  # every card, test ones with the whole split's evidence
    relabelled = real_cards.assign(level=np.where(fold == 0, N_LEVELS - 1 - real_cards["level"], real_cards["level"]))
    tagged_after, stage2_after, out_after = run(relabelled, "fold0_relabelled")
    in_fold0 = fold == 0
    assert tagged_after["card_text"][in_fold0].equals(tagged["card_text"][in_fold0])
    reasoning = stage2.set_index("id")["rationale"].str.split("Conclusion:").str[0]
    reasoning_after = stage2_after.set_index("id")["rationale"].str.split("Conclusion:").str[0]
    fold0_ids = real_cards.loc[in_fold0, "id"]
    assert reasoning_after[fold0_ids].equals(reasoning[fold0_ids])
    test_rows = (real_cards["split"] == "test").to_numpy()
    assert json.loads((out_after / "tags.json").read_text())["directions"] != json.loads(
        (out / "tags.json").read_text())["directions"]
    assert not tagged_after["card_text"][test_rows].equals(tagged["card_text"][test_rows])


def test_the_official_prompt_asks_with_the_card_alone_under_the_cell_types_system_prompt(
        real_cards: pd.DataFrame, tmp_path: Path) -> None:
    """reasoning.prompt: official - Stage I trains on what the released checkpoints saw: build_rcc.py's system
    prompt for the card's cell type, and the card, byte for byte, as the user turn."""
    config = validate_config({"reasoning": {"prompt": "official"}})
    frame = pd.DataFrame({"id": ["a", "b"], "cell_type": ["HepG2", "SKNSH"], "level": [1, 2], "valid": True,
                          "card_text": [card.replace("HepG2", cell) for card, cell in
                                        zip(real_cards["card_text"].head(2), ["HepG2", "SKNSH"])],
                          "rationale": ["<think>\n1. x\n</think>\nActivity level: 1"] * 2})
    write_sharegpt(frame, tmp_path, RationaleFormat.from_config(config))
    record = json.loads((tmp_path / "SKNSH.jsonl").read_text())
    assert record["system"] == (
        "You are a computational regulatory genomics expert specializing in SKNSH cell line biology. Your task is "
        "to analyze the provided DNA sequence features and transcription factor (TF) motifs to predict the gene "
        "expression level (0-3).\nProvide a step-by-step reasoning chain explaining the biological mechanism.")
    assert record["conversations"][0] == {"from": "human", "value": frame["card_text"][1]}
    assert RationaleFormat.from_config(config).messages(frame["card_text"][0])[0]["content"].count("HepG2") == 1
    with pytest.raises(ValueError, match="names no cell type"):
        RationaleFormat.from_config(config).messages("Context:\n- GC Content: 0.5")


def test_bad_inputs_name_file_row_and_column(real_cards: pd.DataFrame, tmp_path: Path) -> None:
    cards = real_cards.copy()
    cards.loc[4, "level"] = 9
    path = tmp_path / "cards.parquet"
    cards.to_parquet(path)
    with pytest.raises(InputError) as caught:
        write_evidence(CONFIG, path, tmp_path / "evidence.parquet")
    assert (caught.value.path, caught.value.row, caught.value.column) == (str(path), 5, "level")
    cards = real_cards.copy()
    cards.loc[2, "card_json"] = "{not json"
    cards.to_parquet(path)
    with pytest.raises(InputError) as caught:
        write_evidence(CONFIG, path, tmp_path / "evidence.parquet")
    assert (caught.value.row, caught.value.column) == (3, "card_json")
    real_cards.drop(columns="card_json").to_parquet(path)
    with pytest.raises(InputError, match="card_json"):
        write_evidence(CONFIG, path, tmp_path / "evidence.parquet")
    assert not (tmp_path / "evidence.parquet").exists()
    pd.DataFrame({"cell_type": ["K562"]}).to_parquet(tmp_path / "bad_evidence.parquet")
    real_cards.to_parquet(path)
    with pytest.raises(InputError, match="not an evidence table"):
        write_teacher_set(CONFIG, path, tmp_path / "bad_evidence.parquet", tmp_path / "o.parquet", tmp_path / "s",
                          tmp_path / "s.json")
    with pytest.raises(InputError, match="unknown teacher set"):
        write_teacher_set(CONFIG, path, tmp_path / "bad_evidence.parquet", tmp_path / "o.parquet", tmp_path / "s",
                          tmp_path / "s.json", set_name="stage3")


def test_hf_backend_resamples_only_invalid_cards(real_cards: pd.DataFrame, real_evidence: Evidence,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """The hf teacher's retry loop, with the model calls stubbed (the real model is tested with r3lm.llm)."""
    import r3lm.llm.base
    import r3lm.llm.generate
    from r3lm.reasoning.teacher import HFBackend

    grounded, calls = teacher(real_evidence), []
    by_text = dict(zip(real_cards["card_text"], real_cards["card_json"], strict=True))

    def fake_generate(model, tokenizer, conversations, settings, *, batch_size=None, progress=True):
        calls.append((len(conversations), settings["seed"]))
        replies = []
        for conversation in conversations:
            prompt = conversation[1]["content"]
            card = parse_card(by_text[prompt.split("\n\nThe measured activity")[0]])
            level = int(re.search(r"is level (\d)", prompt).group(1))
            text = grounded.explain(card, level, "hf")
            replies.append(SimpleNamespace(text=text if settings["seed"] > 0 or level < 2 else "no think"))
        return replies

    monkeypatch.setattr(r3lm.llm.base, "load_causal_lm", lambda path, dtype="auto": (None, None))
    monkeypatch.setattr(r3lm.llm.base, "resolve_base", lambda settings: "model")
    monkeypatch.setattr(r3lm.llm.generate, "generate_chats", fake_generate)
    config = validate_config({"reasoning": {"teacher": "hf"}})
    cards = real_cards.iloc[:12]
    frame = run_teacher(config, cards, real_evidence, backend=HFBackend(config), vocabulary=VOCABULARY,
                        progress=False)
    high = int((cards["level"] >= 2).sum())
    assert frame["valid"].all() and calls == [(12, 0), (high, 1)]
    assert (frame["attempts"] == np.where(cards["level"] >= 2, 2, 1)).all()


def test_an_empty_family_is_not_a_cited_family() -> None:
    """A matrix without a JASPAR family has family "" on the card, as the official r3lm/jaspar_metadata.py gives it
    and r3lm/rcc.py prints it (`Family: `; github DuanYi516/R3LM): the empty name is found in every text, so it
    must not count as a cited card element."""
    from r3lm.rationale.validate import CardElements

    card = Card("K562", 0.53, "A" * 200, (hit("CGGBP1", "", 21, 30, score=12.5),))
    assert CardElements(card).cited("The sequence looks like an enhancer.") == ()
    assert CardElements(card).cited("CGGBP1 sits here.") == ("motif:CGGBP1",)
    text = golden(["CGGBP1 is listed.", "Its score is 12.50.", "It spans 21-30.", "GC is 0.530.",
                   "The sequence looks like an enhancer."], "Conclusion: Weak. Activity level: 1 (weak).")
    result = validate_rationale(text, card, label=1, min_steps=5, max_steps=7, n_levels=4,
                                motif_vocabulary=VOCABULARY)
    assert result.reason == "step_without_evidence", result


def test_a_span_or_decimal_ending_a_sentence_still_cites_the_card() -> None:
    from r3lm.rationale.validate import CardElements
    from r3lm.rcc.card import Card
    from r3lm.rcc.hits import MotifHit

    card = Card("K562", 0.53, "A" * 200, (MotifHit("M1", "GATA1::TAL1", "fam", "c", 29, 179, "+", 12.5, 1e-5),))
    elements = CardElements(card)
    assert elements.cited("Hits in 29-179.") == ("position:29-179",)
    assert elements.cited("GC is 0.530.") == ("gc",)
    assert elements.cited("Its score is 12.50.") == ("score:12.50",)
    assert elements.cited("Hits in 29-179.5 and GC 0.61") == ()



def test_evidence_tags_are_the_teachers_reading_of_each_site(real_cards: pd.DataFrame,
                                                              real_evidence: Evidence) -> None:
    """rcc.evidence_tags: every real card's evidence line lists the motifs the grounded teacher reads as for and
    against, in the order it names them (so its compact rationale's activators and counterweights are the
    line's first names); the teacher's tier, hit count and GC reading are the line's, so every rationale
    states its card's facts (the validator's fact check passes them all)."""
    from r3lm.reasoning.tags import evidence_tags, tag_cards

    motifs = pd.DataFrame([{"matrix_id": motif.matrix_id, "name": motif.name, "family": motif.family,
                            "class": motif.tf_class} for motif in load_motifs()])
    tags = evidence_tags(motifs, real_evidence, load_roles())
    assert set(tags.cells) == {"HepG2"} and {"up", "down"} == set(tags.get("HepG2").directions.values())
    assert tags.get("HepG2").gc == real_evidence.gc["HepG2"]
    tagged = tag_cards(real_cards, CardSettings.from_config(CONFIG["rcc"], evidence_tags=tags))
    assert tagged.drop(columns="card_text").equals(real_cards.drop(columns="card_text"))
    compact = replace(teacher(real_evidence, detail="compact"), tier_by_count=True)
    frame = run_teacher(CONFIG, tagged, real_evidence, backend=GroundedBackend(compact), vocabulary=VOCABULARY,
                        progress=False)
    assert frame["valid"].all(), frame.loc[~frame["valid"], "reject_reason"].value_counts().to_dict()
    for text, card_text, card_json, level in zip(frame["rationale"], tagged["card_text"], tagged["card_json"],
                                                 tagged["level"], strict=True):
        hits, by_side, up, down, net, tier = re.search(
            r"HepG2 evidence: (\d+) hits?; (up (.+); down (.+); neutral .+); net ([+-]\d+), ([a-z ]+)(?:; layout: [^;]+)?; GC",
            card_text).groups()
        card = Card.from_json(card_json)
        reading = compact.read(card, level)
        assert int(net) == len(reading.pro) - len(reading.con) == reading.net_count and tier == reading.tier
        assert int(hits) == len(card.motifs) and f"{net}, {tier}." in text
        assert f"{reading.gc.place} the mean, {reading.gc.effect} activity" in card_text
        for listed, sites in ((up, reading.pro), (down, reading.con)):
            assert listed.split(", ") == (list(dict.fromkeys(site.hit.name for site in sites)) or ["none"])
        steps = parse(text).steps  # the sides step copies the line's words
        assert steps[1] == (f"In HepG2: {by_side}." if card.motifs else f"Only GC {card.gc_text} to read."), text
        if card.motifs:  # and the arrangement step the line's layout
            assert f"Layout: {re.search(r'; layout: ([^;]+);', card_text).group(1)}." in steps, (text, card_text)
