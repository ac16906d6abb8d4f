"""The Regulatory Context Card: what R3LM's LLM reads about one sequence in one cell type.

A card holds the context (cell type, GC content, optional grammar tags), the motif hits after
deduplication, and the sequence. Its text is the official code's layout byte for byte (a blank line
before `Identified Motifs:` and before `DNA Sequence:`, hits by score, highest first, ties by start,
nothing under the header when no motif is found, the sequence and its length on one line), so cards
match the released CRE-ReasonBench data and Stage-I checkpoints.

Deduplication visits hits by score (highest first, then start, p-value, matrix id) and drops one that
overlaps (inclusive coordinates) an already kept hit of the same family: `same_family`, the official
rule, asks for the identical family string; `shared_family`, stricter, for any shared JASPAR family, so
that a site matched by related matrices of composite families is reported once. Hits without a family
are never merged (a matrix JASPAR gives no family has family "", and its card line reads `Family: `, as the
official card writes it). Kept hits are stored by position, the order grammar tags and the teacher read.
`rcc.max_motifs` (r3lm's option; the official cards list every hit) then keeps the strongest few: a card's
length, not its model, sets what every LLM step costs on a CPU.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from r3lm.errors import InputError
from r3lm.rcc.evidence_tags import CellEvidence, EvidenceTags
from r3lm.rcc.grammar import GrammarSettings, grammar_tags
from r3lm.rcc.hits import MotifHit


@dataclass(frozen=True)
class Card:
    cell_type: str
    gc_content: float
    sequence: str
    motifs: tuple[MotifHit, ...]
    grammar_tags: tuple[str, ...] = field(default=())

    @property
    def length(self) -> int:
        return len(self.sequence)

    @property
    def gc_text(self) -> str:
        """The GC content as the card prints it: a rationale that copies it copies the card's number."""
        return f"{self.gc_content:.3f}"

    def to_text(self, *, with_grammar: bool = False, evidence: CellEvidence | None = None,
                grammar: GrammarSettings | None = None) -> str:
        """The official layout (Context, Identified Motifs, DNA Sequence); grammar tags and evidence tags
        (`evidence`: this card's cell type's, rcc/evidence_tags.py) are r3lm's additions. Evidence tags end each
        motif line with the direction and add the evidence line (with `grammar`, the arrangement too)."""
        lines = ["Context:", f"- Cell Type: {self.cell_type}", f"- GC Content: {self.gc_text}"]
        if with_grammar:
            lines.append(f"- Grammar Tags: {'; '.join(self.grammar_tags) if self.grammar_tags else 'none'}")
        lines += ["", "Identified Motifs:", *self.motif_lines(evidence)]
        if evidence is not None:
            lines.append(evidence.line(self.cell_type, self.motifs, self.gc_content, self.gc_text, grammar))
        lines += ["", "DNA Sequence:", f"{self.sequence} (Total Length: {self.length})"]
        return "\n".join(lines)

    def motif_lines(self, evidence: CellEvidence | None = None) -> list[str]:
        """The Identified Motifs lines of the text, by score: what a rationale can cite of the motifs."""
        return [f"- {hit.name} (Family: {hit.family}, Score: {hit.score:.2f}, Strand: {hit.strand}, "
                f"Pos: {hit.start}-{hit.end}"
                + (f", {self.cell_type}: {evidence.direction(hit.name)})" if evidence is not None else ")")
                for hit in sorted(self.motifs, key=lambda hit: (-hit.score, hit.start))]

    def to_json(self) -> str:
        payload = asdict(self)
        payload["length"] = self.length
        return json.dumps(payload, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> Card:
        payload = json.loads(text)
        payload.pop("length")
        return cls(cell_type=payload["cell_type"], gc_content=payload["gc_content"], sequence=payload["sequence"],
                   motifs=tuple(MotifHit(**hit) for hit in payload["motifs"]),
                   grammar_tags=tuple(payload["grammar_tags"]))


def gc_content(sequence: str) -> float:
    """Fraction of G and C among the called bases (N excluded)."""
    called = len(sequence) - sequence.count("N")
    return (sequence.count("G") + sequence.count("C")) / called if called else 0.0


def _same_family(hit: MotifHit, other: MotifHit) -> bool:
    return bool(hit.family) and hit.family == other.family


def _shared_family(hit: MotifHit, other: MotifHit) -> bool:
    return bool(hit.family and other.family) and bool(hit.families & other.families)


DEDUP_RULES: dict[str, Callable[[MotifHit, MotifHit], bool]] = {
    "same_family": _same_family, "shared_family": _shared_family}


def strength_order(hit: MotifHit) -> tuple[float, int, float, str, str]:
    """Highest score first, then start, p-value, matrix id and strand: who stays in a dedup and under a cap."""
    return -hit.score, hit.start, hit.pvalue, hit.matrix_id, hit.strand


def deduplicate(hits: Iterable[MotifHit], rule: str) -> tuple[MotifHit, ...]:
    """The hits left after `rule` (see the module docstring), by position."""
    related = DEDUP_RULES[rule]
    kept: list[MotifHit] = []
    for hit in sorted(hits, key=strength_order):
        if not any(hit.overlaps(other) and related(hit, other) for other in kept):
            kept.append(hit)
    return tuple(sorted(kept, key=lambda hit: (hit.start, hit.end, hit.strand, hit.name, hit.matrix_id)))


@dataclass(frozen=True)
class CardSettings:
    """The `rcc` config block: grammar-tag thresholds, whether the text shows the tags, the dedup rule, the
    most motifs a card lists (None: all), and the evidence tags (None: the card shows none)."""

    grammar: GrammarSettings
    with_grammar: bool
    dedup: str
    evidence_tags: EvidenceTags | None = None
    max_motifs: int | None = None

    @classmethod
    def from_config(cls, rcc: Mapping[str, Any], *, with_grammar: bool | None = None,
                    evidence_tags: EvidenceTags | None = None) -> CardSettings:
        # bundles written before rcc.max_motifs existed listed every motif: .get keeps them reading as they did
        return cls(GrammarSettings.from_config(rcc["grammar"]),
                   rcc["grammar_tags"] if with_grammar is None else with_grammar, rcc["dedup"], evidence_tags,
                   rcc.get("max_motifs"))

    def text(self, card: Card) -> str:
        """The card as the LLMs read it under these settings."""
        evidence = None if self.evidence_tags is None else self.evidence_tags.get(card.cell_type)
        return card.to_text(with_grammar=self.with_grammar, evidence=evidence, grammar=self.grammar)


def strongest(motifs: Sequence[MotifHit], limit: int | None) -> tuple[MotifHit, ...]:
    """The `limit` highest-scoring motifs (the card's own order), kept by position; all of them for None."""
    if limit is None or len(motifs) <= limit:
        return tuple(motifs)
    kept = set(sorted(motifs, key=strength_order)[:limit])
    return tuple(hit for hit in motifs if hit in kept)


def build_card(sequence: str, cell_type: str, hits: Sequence[MotifHit], settings: CardSettings) -> Card:
    return card_from_sites(sequence, cell_type, deduplicate(hits, settings.dedup), settings)


def card_from_sites(sequence: str, cell_type: str, sites: Sequence[MotifHit], settings: CardSettings) -> Card:
    """The card of already deduplicated `sites`: the strongest `max_motifs` of them, its GC and grammar tags."""
    motifs = strongest(sites, settings.max_motifs)
    gc = gc_content(sequence)
    return Card(cell_type=cell_type, gc_content=gc, sequence=sequence, motifs=motifs,
                grammar_tags=grammar_tags(motifs, gc, settings.grammar))


def parse_card(card_json: str, path: str | Path | None = None, row: int | None = None) -> Card:
    try:
        return Card.from_json(card_json)
    except (ValueError, KeyError, TypeError) as error:
        raise InputError(f"unreadable card JSON: {error}", path=path, row=row, column="card_json") from error
