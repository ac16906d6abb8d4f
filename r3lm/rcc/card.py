"""The Regulatory Context Card: what R3LM's LLM reads about one sequence in one cell type.

A card holds the context (cell type, GC content, optional grammar tags), the motif hits after
deduplication, and the sequence. Deduplication: among hits whose TF families overlap (share at
least one JASPAR family) and whose spans overlap, only the highest-scoring one stays, so a
single site that several related matrices all match is reported once. Ties break by p-value,
then position, then matrix id, and hits are listed by position, so a card is deterministic.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field

from r3lm.rcc.grammar import GrammarSettings, grammar_tags

FAMILY_SEPARATOR = "; "


@dataclass(frozen=True)
class MotifHit:
    """One FIMO hit; start/end are 1-based and inclusive on the + strand, as FIMO reports them."""

    matrix_id: str
    name: str
    family: str
    tf_class: str
    start: int
    end: int
    strand: str
    score: float
    pvalue: float

    @property
    def families(self) -> frozenset[str]:
        return frozenset(self.family.split(FAMILY_SEPARATOR))

    def overlaps(self, other: MotifHit) -> bool:
        return self.start <= other.end and other.start <= self.end


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

    def to_text(self, *, with_grammar: bool = False) -> str:
        """The paper's field order: Context, Identified Motifs, DNA Sequence."""
        lines = ["Context:", f"- Cell Type: {self.cell_type}", f"- GC Content: {self.gc_content:.3f}"]
        if with_grammar:
            lines.append(f"- Grammar Tags: {'; '.join(self.grammar_tags) if self.grammar_tags else 'none'}")
        lines.append("Identified Motifs:")
        lines += [f"- {hit.name} (Family: {hit.family}, Score: {hit.score:.2f}, Strand: {hit.strand}, "
                  f"Pos: {hit.start}-{hit.end})" for hit in self.motifs] or ["- none"]
        lines += ["DNA Sequence:", self.sequence, f"(Total Length: {self.length})"]
        return "\n".join(lines)

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


def deduplicate(hits: Iterable[MotifHit]) -> tuple[MotifHit, ...]:
    """Best hit per overlapping same-family group, listed by position."""
    ranked = sorted(hits, key=lambda hit: (-hit.score, hit.pvalue, hit.start, hit.matrix_id, hit.strand))
    kept: list[MotifHit] = []
    for hit in ranked:
        if not any(hit.overlaps(other) and hit.families & other.families for other in kept):
            kept.append(hit)
    return tuple(sorted(kept, key=lambda hit: (hit.start, hit.end, hit.strand, hit.name, hit.matrix_id)))


def build_card(sequence: str, cell_type: str, hits: Sequence[MotifHit], grammar: GrammarSettings) -> Card:
    motifs = deduplicate(hits)
    gc = gc_content(sequence)
    return Card(cell_type=cell_type, gc_content=gc, sequence=sequence, motifs=motifs,
                grammar_tags=grammar_tags(motifs, gc, grammar))
