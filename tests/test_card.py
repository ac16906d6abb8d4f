"""Golden tests for the Regulatory Context Card: text, JSON, deduplication, order, grammar tags."""

from __future__ import annotations

from dataclasses import replace

import pandas as pd
import pytest

from r3lm.config import validate_config
from r3lm.motifs.scan import HIT_COLUMNS
from r3lm.rcc.build import cards_for_table
from r3lm.rcc.card import Card, CardSettings, build_card, deduplicate, gc_content
from r3lm.rcc.evidence_tags import (
    CellEvidence,
    EvidenceTags,
    GcStats,
    net_tier,
    stated_evidence,
)
from r3lm.rcc.grammar import GrammarSettings
from r3lm.rcc.hits import MotifHit

SEQUENCE = "GGGCGGGGC" + "A" * 41 + "TTATCTGGCAGATAAG" + "C" * 24 + "T" * 20
SETTINGS = CardSettings.from_config(validate_config({})["rcc"])


def hit(name: str, family: str, start: int, end: int, strand: str = "+", score: float = 10.0,
        pvalue: float = 1e-5, matrix_id: str | None = None) -> MotifHit:
    return MotifHit(matrix_id=matrix_id or f"MA_{name}", name=name, family=family, tf_class="class",
                    start=start, end=end, strand=strand, score=score, pvalue=pvalue)


def test_card_text_is_the_official_layout_golden() -> None:
    """Written out by hand from the official rules: blank lines before both headers, hits by score (highest
    first, ties by start), the sequence and its length on one line; the same-family hit inside a kept one goes."""
    sequence = "ACGT" * 50
    hits = [hit("GATA1", "C4-GATA-related", 51, 58, "+", 11.254, 3.1e-6),
            hit("SP1", "Three-zinc finger Kruppel-related", 1, 9, "-", 12.5, 1.2e-6),
            hit("TAL1::TCF3", "Tal-related; E2A-related factors", 120, 131, "+", 11.254, 4e-6),
            hit("GATA2", "C4-GATA-related", 52, 59, "-", 10.0, 9e-6),
            hit("KLF1", "Three-zinc finger Kruppel-related", 3, 12, "+", 9.5, 2e-5)]
    card = build_card(sequence, "K562", hits, SETTINGS)
    assert card.to_text() == (
        "Context:\n"
        "- Cell Type: K562\n"
        "- GC Content: 0.500\n"
        "\n"
        "Identified Motifs:\n"
        "- SP1 (Family: Three-zinc finger Kruppel-related, Score: 12.50, Strand: -, Pos: 1-9)\n"
        "- GATA1 (Family: C4-GATA-related, Score: 11.25, Strand: +, Pos: 51-58)\n"
        "- TAL1::TCF3 (Family: Tal-related; E2A-related factors, Score: 11.25, Strand: +, Pos: 120-131)\n"
        "\n"
        "DNA Sequence:\n"
        f"{sequence} (Total Length: 200)"
    )
    assert [h.name for h in card.motifs] == ["SP1", "GATA1", "TAL1::TCF3"]  # stored by position


def test_gc_content_has_three_decimals_and_ignores_n() -> None:
    assert gc_content("GGCCAATT") == 0.5
    assert gc_content("GGNN") == 1.0
    assert gc_content("NNNN") == 0.0
    card = build_card("GGGCA", "HepG2", [], SETTINGS)
    assert "- GC Content: 0.800\n" in card.to_text()


def test_card_without_motifs_leaves_the_line_after_the_header_empty() -> None:
    text = build_card("ACGTACGT", "SKNSH", [], SETTINGS).to_text(with_grammar=True)
    assert "\nIdentified Motifs:\n\nDNA Sequence:\nACGTACGT (Total Length: 8)" in text
    assert "- Grammar Tags: none\n" in text


def test_grammar_line_only_when_switched_on() -> None:
    card = build_card(SEQUENCE, "K562", [hit("GATA1", "C4-GATA-related", 51, 58)], SETTINGS)
    assert "Grammar Tags" not in card.to_text()
    assert card.to_text(with_grammar=True).splitlines()[3].startswith("- Grammar Tags: ")


def test_official_dedup_merges_identical_families_only() -> None:
    best = hit("FOS::JUN", "Jun-related; Fos-related", 20, 30, score=14.0, matrix_id="MA0099")
    composite_twin = hit("FOSL1::JUN", "Jun-related; Fos-related", 30, 40, score=12.0, matrix_id="MA1130")
    shares_a_family = hit("JUN", "Jun-related", 22, 29, score=11.0, matrix_id="MA0488")
    apart = hit("JUND", "Jun-related", 60, 67, score=9.0, matrix_id="MA0491")
    no_family = [hit("X", "", 21, 28, score=10.0, matrix_id="MA1"), hit("Y", "", 22, 27, score=9.0, matrix_id="MA2")]
    hits = [shares_a_family, apart, composite_twin, best, *no_family]
    assert [h.name for h in deduplicate(hits, "same_family")] == ["FOS::JUN", "X", "Y", "JUN", "JUND"]
    # the stricter option: any shared JASPAR family; hits without a family are still never merged
    assert [h.name for h in deduplicate(hits, "shared_family")] == ["FOS::JUN", "X", "Y", "JUND"]


def test_a_matrix_without_a_jaspar_family_writes_family_empty_and_is_never_merged() -> None:
    """The official code (github DuanYi516/R3LM): r3lm/jaspar_metadata.py joins an absent JASPAR family to "", the
    card line of r3lm/rcc.py (MotifHit.motif_line) then reads `Family: `, and deduplicate_overlapping_families merges
    only hits whose family is non-empty. r3lm's JASPAR matrices without a family carry "" too (no placeholder), so
    two overlapping ones both stay and print as the official card does; a cited family needs a name."""
    from r3lm.motifs.jaspar import load_motifs

    familyless = {motif.matrix_id: motif for motif in load_motifs() if not motif.family}
    assert {"MA2538.1", "MA2552.1"} <= set(familyless)  # CGGBP1, ZNF367 in JASPAR2026
    assert all(motif.family == "" for motif in familyless.values())
    cggbp1, znf367 = familyless["MA2538.1"], familyless["MA2552.1"]
    hits = [hit(cggbp1.name, cggbp1.family, 21, 30, score=12.0, matrix_id=cggbp1.matrix_id),
            hit(znf367.name, znf367.family, 25, 34, "-", score=11.0, matrix_id=znf367.matrix_id)]
    for rule in ("same_family", "shared_family"):
        assert deduplicate(hits, rule) == tuple(hits)
    card = build_card("ACGT" * 50, "K562", hits, SETTINGS)
    assert card.motif_lines() == ["- CGGBP1 (Family: , Score: 12.00, Strand: +, Pos: 21-30)",
                                  "- ZNF367 (Family: , Score: 11.00, Strand: -, Pos: 25-34)"]
    assert all(not h.families for h in card.motifs)


def test_deduplication_visits_by_score_then_start() -> None:
    first = hit("A", "fam", 10, 20, score=10.0, pvalue=2e-5, matrix_id="MA2")
    later = hit("B", "fam", 12, 22, score=10.0, pvalue=1e-5, matrix_id="MA9")
    assert deduplicate([later, first], "same_family") == deduplicate([first, later], "same_family") == (first,)
    same = [hit("C", "fam", 10, 20, matrix_id="MA5"), hit("D", "fam", 10, 20, matrix_id="MA3")]
    assert [h.matrix_id for h in deduplicate(same, "same_family")] == ["MA3"]


def test_max_motifs_keeps_the_strongest_sites_by_position_and_logs_what_it_left_off(
        caplog: pytest.LogCaptureFixture) -> None:
    sites = [hit("W", "f1", 5, 12, score=9.0), hit("X", "f2", 20, 30, score=15.0), hit("Y", "f3", 40, 48, score=11.0),
             hit("Z", "f4", 60, 70, score=11.0), hit("V", "f5", 80, 88, score=7.0)]
    capped = replace(SETTINGS, max_motifs=3)
    card = build_card(SEQUENCE, "K562", sites, capped)
    assert [h.name for h in card.motifs] == ["X", "Y", "Z"]  # by position; the tie at 11.0 broken by start
    assert build_card(SEQUENCE, "K562", sites, SETTINGS).motifs == deduplicate(sites, "same_family")
    assert build_card(SEQUENCE, "K562", sites[:2], capped).motifs == deduplicate(sites[:2], "same_family")
    assert CardSettings.from_config(validate_config({"rcc": {"max_motifs": 3}})["rcc"]).max_motifs == 3
    assert SETTINGS.max_motifs is None

    hits = pd.DataFrame([{"seq_id": seq_id, "matrix_id": h.matrix_id, "motif_name": h.name, "family": h.family,
                          "class": h.tf_class, "start": h.start, "end": h.end, "strand": h.strand,
                          "score": h.score, "pvalue": h.pvalue} for seq_id in ("a", "b") for h in sites[:4 if seq_id == "a" else 2]])
    table = pd.DataFrame({"id": ["a", "b"], "sequence": [SEQUENCE] * 2, "cell_type": ["K562", "HepG2"]})
    with caplog.at_level("INFO", logger="r3lm.rcc.build"):
        cards = cards_for_table(table, hits[HIT_COLUMNS], capped, progress=False)
    assert cards["n_motifs"].tolist() == [3, 2]
    assert "rcc.max_motifs=3 left 1 weaker sites off 1 cards" in caplog.text


def test_hits_are_stored_by_position_then_strand() -> None:
    hits = [hit("X", "f1", 30, 40, "-"), hit("Y", "f2", 5, 12), hit("Z", "f3", 30, 40, "+")]
    assert [(h.name, h.strand) for h in deduplicate(hits, "same_family")] == [("Y", "+"), ("Z", "+"), ("X", "-")]


def test_grammar_tags_each_rule() -> None:
    hits = [hit("GATA1", "C4-GATA-related", 10, 17, "+"),
            hit("TAL1", "Tal-related", 22, 33, "-"),
            hit("GATA2", "C4-GATA-related", 40, 47, "+"),
            hit("SP1", "Three-zinc finger Kruppel-related", 150, 160, "-"),
            hit("KLF4", "Three-zinc finger Kruppel-related", 185, 194, "+")]
    card = build_card("G" * 130 + "A" * 70, "K562", hits, SETTINGS)
    assert card.grammar_tags == (
        "GC-rich (0.65)",
        "motif cluster: 3 motifs in 10-47",
        "repeated family: C4-GATA-related x2",
        "repeated family: Three-zinc finger Kruppel-related x2",
        "GATA1 + TAL1: convergent, 4 bp apart",
        "TAL1 + GATA2: divergent, 6 bp apart",
    )
    at_rich = build_card("A" * 70 + "G" * 30, "K562", [], SETTINGS)
    assert at_rich.grammar_tags == ("AT-rich (0.30)",)


def test_grammar_thresholds_come_from_config() -> None:
    hits = [hit("GATA1", "C4-GATA-related", 10, 17), hit("TAL1", "Tal-related", 40, 51)]
    default = build_card("ACGT" * 25, "K562", hits, SETTINGS)
    assert not any("GATA1 + TAL1" in tag for tag in default.grammar_tags)  # 22 bp apart > 20
    wider = GrammarSettings.from_config({**validate_config({})["rcc"]["grammar"], "pair_max_gap": 30})
    assert "GATA1 + TAL1: tandem, 22 bp apart" in build_card("ACGT" * 25, "K562", hits,
                                                             replace(SETTINGS, grammar=wider)).grammar_tags


@pytest.mark.parametrize("with_grammar", [False, True])
def test_json_round_trip(with_grammar: bool) -> None:
    card = build_card(SEQUENCE, "HepG2", [hit("HNF4A", "Thyroid hormone receptor-related factors", 3, 15)], SETTINGS)
    again = Card.from_json(card.to_json())
    assert again == card
    assert again.to_text(with_grammar=with_grammar) == card.to_text(with_grammar=with_grammar)


def test_evidence_tags_end_each_motif_line_and_add_a_listing_golden() -> None:
    """rcc.evidence_tags: the direction in the card's cell type after each position (none for motifs the tags
    do not name), then one line with the hit count, the motifs of each direction in the tags' order (not the
    card's), the net count of sites and its tier, and where GC sits against the cell type's mean with what
    that does to activity; the rest of the card is unchanged."""
    hits = [hit("GATA1", "C4-GATA-related", 51, 58, "+", 11.254), hit("SP1", "Three-zinc finger Kruppel-related", 1, 9,
            "-", 12.5), hit("REST", "Other", 120, 140, "+", 10.0), hit("TAL1::TCF3", "Tal-related", 150, 161, "+", 9.0)]
    card = build_card("ACGT" * 50, "K562", hits, SETTINGS)
    rising = GcStats(mean_gc=0.40, sd_gc=0.05, spearman_rho=0.3)  # the card's GC 0.5 is 2 sd above the mean
    tagged = CardSettings(SETTINGS.grammar, False, SETTINGS.dedup, EvidenceTags({
        "K562": CellEvidence({"TAL1::TCF3": "up", "REST": "down", "GATA1": "up"}, rising),
        "HepG2": CellEvidence({"SP1": "up"})}))
    lines = tagged.text(card).splitlines()
    assert lines[5:11] == [
        "- SP1 (Family: Three-zinc finger Kruppel-related, Score: 12.50, Strand: -, Pos: 1-9, K562: none)",
        "- GATA1 (Family: C4-GATA-related, Score: 11.25, Strand: +, Pos: 51-58, K562: up)",
        "- REST (Family: Other, Score: 10.00, Strand: +, Pos: 120-140, K562: down)",
        "- TAL1::TCF3 (Family: Tal-related, Score: 9.00, Strand: +, Pos: 150-161, K562: up)",
        ("K562 evidence: 4 hits; up TAL1::TCF3, GATA1; down REST; neutral SP1; net +1, positive; "
         "layout: GATA1 and TAL1::TCF3 far apart; GC 0.500: above the mean, favours activity."),
        ""]
    untagged = card.to_text().splitlines()
    assert lines[:4] == untagged[:4] and lines[-2:] == untagged[-2:]
    assert ("K562 evidence: 4 hits; up none; down none; neutral SP1, GATA1, REST, TAL1::TCF3; net +0, mixed; "
            "layout: no cluster, SP1 and GATA1 spread out.") in CardSettings(
        SETTINGS.grammar, False, SETTINGS.dedup, EvidenceTags()).text(card)
    falling = GcStats(mean_gc=0.51, sd_gc=0.1, spearman_rho=-0.2)  # 0.1 sd below: close to, a term of 0.08
    assert "GC 0.500: close to the mean, hardly shifts activity." in (
        CardSettings(SETTINGS.grammar, False, SETTINGS.dedup,
                     EvidenceTags({"K562": CellEvidence({}, falling)})).text(card))
    assert SETTINGS.text(card) == card.to_text()


def test_evidence_tags_json_round_trip_reads_the_older_layout_and_the_line_reads_back() -> None:
    """The tags JSON keeps directions (in their order) and GC trends; the older layout {cell: {motif: dir}} reads
    as directions without a GC line; the evidence line a card prints is read back as the facts it states."""
    tags = EvidenceTags({"K562": CellEvidence({"GATA1": "up", "REST": "down"}, GcStats(0.4, 0.05, 0.3)),
                         "HepG2": CellEvidence({"SP1": "up"})})
    again = EvidenceTags.from_json(tags.to_json())
    assert again == tags and list(again.get("K562").directions) == ["GATA1", "REST"]
    older = EvidenceTags.from_json({"K562": {"GATA1": "up"}})
    assert older.get("K562") == CellEvidence({"GATA1": "up"}) and older.get("K562").gc is None
    hits = [hit("GATA1", "C4-GATA-related", 51, 58), hit("REST", "Other", 120, 140), hit("SP1", "Other", 1, 9)]
    card = build_card("ACGT" * 50, "K562", hits, SETTINGS)
    stated = stated_evidence(CardSettings(SETTINGS.grammar, False, SETTINGS.dedup, tags).text(card))
    assert (stated.hits, stated.up, stated.down, stated.untagged, stated.net, stated.tier, stated.gc_place,
            stated.gc_effect) == (3, ("GATA1",), ("REST",), ("SP1",), 0, "mixed", "above", "favours")
    assert stated_evidence(card.to_text()) is None
    assert [net_tier(net) for net in (-2, -1, 0, 1, 2, 3, 7)] == [
        "negative", "negative", "mixed", "positive", "positive", "strongly positive", "strongly positive"]
