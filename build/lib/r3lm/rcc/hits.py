"""A motif hit as the card lists it, and how JASPAR names and families are read: the base of the card, its
grammar tags and its evidence tags alike."""

from __future__ import annotations

from dataclasses import dataclass

FAMILY_SEPARATOR = "; "
FAMILY_SUFFIXES = ("related", "like", "type", "family")  # "JUN-related": a family, not the motif
DIMER_SEPARATOR = "::"  # a heterodimer matrix: "FOS::JUN"


def name_parts(name: str) -> frozenset[str]:
    """The upper-case TF names a JASPAR motif name stands for: the name itself and each dimer half."""
    return frozenset({name.upper(), *(part.upper() for part in name.split(DIMER_SEPARATOR) if part)})


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
        """The JASPAR families the hit lists; none for a matrix without one (its family is "")."""
        return frozenset(self.family.split(FAMILY_SEPARATOR)) if self.family else frozenset()

    def overlaps(self, other: MotifHit) -> bool:
        return self.start <= other.end and other.start <= self.end
